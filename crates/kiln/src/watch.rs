//! `kiln watch`: a master's builds, live in the terminal, as the old status clients showed them.
//! Without `--build` it prints each build as it starts and finishes (of one builder with
//! `--builder`) until interrupted; with `--build ID` it follows that build, its steps and the new
//! lines of its logs, and exits with the build's result as its status (0 success, 1 warnings,
//! 2 failure, …, as Buildbot numbers results).
//!
//! It listens on the master's `/sse` stream and reads what the events name from the REST API,
//! so that it needs nothing a browser does not.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use crate::http::{Master, MasterArgs, result_name};

#[derive(Args)]
pub struct Watch {
    #[command(flatten)]
    pub master: MasterArgs,
    /// Only this builder's builds.
    #[arg(long)]
    pub builder: Option<String>,
    /// Follow this build (by its id) to its end, and exit with its result.
    #[arg(long)]
    pub build: Option<i64>,
}

/// The master's event stream: one event's routing key and message at a time.
struct Stream {
    answer: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(master: &Master, paths: &[String]) -> anyhow::Result<Stream> {
        let query: Vec<(&str, &str)> = paths.iter().map(|p| ("path", p.as_str())).collect();
        let query = serde_urlencoded::to_string(query)?;
        let url = format!(
            "http://{}:{}{}sse/listen?{query}",
            master.host, master.port, master.prefix
        );
        // The stream is plain HTTP, but the client wants a TLS provider chosen all the same.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut request = reqwest::Client::new().get(&url);
        if let Some(t) = &master.token {
            request = request.bearer_auth(t);
        }
        let answer = request
            .send()
            .await
            .with_context(|| format!("listening to the master at {url}"))?;
        if !answer.status().is_success() {
            bail!("the master refused its event stream: {}", answer.status());
        }
        Ok(Stream {
            answer,
            buffer: String::new(),
        })
    }

    /// The next event's key (its parts joined with `/`) and message; `None` when the stream
    /// ends. The handshake comes through as the key `handshake`.
    async fn next(&mut self) -> anyhow::Result<Option<(String, Value)>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = if e.trim() == "handshake" {
                            "handshake"
                        } else {
                            "event"
                        };
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                match event {
                    "handshake" => return Ok(Some(("handshake".into(), Value::Null))),
                    "event" => {
                        let v: Value = serde_json::from_str(&data)
                            .with_context(|| format!("reading an event: {data}"))?;
                        let key = v["key"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("/");
                        return Ok(Some((key, v["message"].clone())));
                    }
                    _ => continue,
                }
            }
            match self.answer.chunk().await? {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                None => return Ok(None),
            }
        }
    }
}

/// Runs the watch; the process's exit status when it follows a build.
pub async fn run(args: Watch, out: &mut impl Write) -> anyhow::Result<u8> {
    let master = args.master.connect()?;
    let builders = master.get_json("builders").await?;
    let names: HashMap<i64, String> = builders["builders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| Some((b["builderid"].as_i64()?, b["name"].as_str()?.to_string())))
        .collect();
    if let Some(b) = &args.builder
        && !names.values().any(|n| n == b)
    {
        bail!("the master has no builder {b:?}");
    }
    match args.build {
        Some(build) => follow(&master, &names, build, out).await,
        None => {
            watch_all(&master, &names, args.builder.as_deref(), out).await?;
            Ok(0)
        }
    }
}

/// Prints each build as it starts and finishes, until the stream ends.
async fn watch_all(
    master: &Master,
    names: &HashMap<i64, String>,
    builder: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut stream = Stream::open(master, &["builds/*/*".to_string()]).await?;
    while let Some((key, m)) = stream.next().await? {
        // Said once the master has the stream: every build that starts from now on is shown.
        if key == "handshake" {
            match builder {
                Some(b) => eprintln!("watching the builds of {b}"),
                None => eprintln!("watching every build"),
            }
            continue;
        }
        let verb = key.rsplit('/').next().unwrap_or("");
        let name = m["builderid"]
            .as_i64()
            .and_then(|id| names.get(&id))
            .map_or("?", String::as_str);
        if builder.is_some_and(|b| b != name) {
            continue;
        }
        match verb {
            "new" => writeln!(
                out,
                "{name} #{} started (build {})",
                m["number"], m["buildid"]
            )?,
            "finished" => writeln!(
                out,
                "{name} #{} {}: {}",
                m["number"],
                result_name(m["results"].as_i64()),
                m["state_string"].as_str().unwrap_or("")
            )?,
            _ => continue,
        }
        out.flush()?;
    }
    Ok(())
}

/// Follows one build to its end; its result code.
async fn follow(
    master: &Master,
    names: &HashMap<i64, String>,
    build: i64,
    out: &mut impl Write,
) -> anyhow::Result<u8> {
    let paths = [
        format!("builds/{build}/*"),
        format!("builds/{build}/steps/*/*"),
        "logs/*/append".to_string(),
        "logs/*/finished".to_string(),
    ];
    // Opened before the first read, so nothing between the two is missed.
    let mut stream = Stream::open(master, &paths).await?;
    let b = master.get_json(&format!("builds/{build}")).await?;
    let Some(b) = b["builds"].get(0).cloned() else {
        bail!("the master has no build {build}");
    };
    let name = b["builderid"]
        .as_i64()
        .and_then(|id| names.get(&id))
        .map_or("?", String::as_str);
    writeln!(out, "{name} #{} (build {build})", b["number"])?;
    let mut steps: HashSet<i64> = HashSet::new();
    let mut printed: HashMap<i64, i64> = HashMap::new();
    // What happened before the stream opened: the steps so far and their logs' lines.
    catch_up(master, build, &mut steps, &mut printed, out).await?;
    if b["complete"] == true {
        return Ok(finish(&b, out)?);
    }
    while let Some((key, m)) = stream.next().await? {
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["handshake"] => catch_up(master, build, &mut steps, &mut printed, out).await?,
            ["builds", _, "steps", _, verb] => {
                if let Some(s) = m["stepid"].as_i64() {
                    steps.insert(s);
                }
                let step = m["name"].as_str().unwrap_or("?");
                match *verb {
                    "started" => writeln!(out, "-- {step} started")?,
                    "finished" => writeln!(
                        out,
                        "-- {step} {}: {}",
                        result_name(m["results"].as_i64()),
                        m["state_string"].as_str().unwrap_or("")
                    )?,
                    _ => {}
                }
            }
            // The lines of this build's logs; other builds' are not this watch's.
            ["logs", _, _] if m["stepid"].as_i64().is_some_and(|s| steps.contains(&s)) => {
                print_new_lines(master, &m, &mut printed, out).await?;
            }
            ["builds", _, "finished"] => {
                catch_up(master, build, &mut steps, &mut printed, out).await?;
                return Ok(finish(&m, out)?);
            }
            _ => {}
        }
        out.flush()?;
    }
    bail!("the master closed its event stream before build {build} finished")
}

/// Reads the build's steps and prints their logs' lines not printed yet.
async fn catch_up(
    master: &Master,
    build: i64,
    steps: &mut HashSet<i64>,
    printed: &mut HashMap<i64, i64>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let found = master.get_json(&format!("builds/{build}/steps")).await?;
    for s in found["steps"].as_array().into_iter().flatten() {
        let Some(id) = s["stepid"].as_i64() else {
            continue;
        };
        steps.insert(id);
        let logs = master.get_json(&format!("steps/{id}/logs")).await?;
        for log in logs["logs"].as_array().into_iter().flatten() {
            print_new_lines(master, log, printed, out).await?;
        }
    }
    Ok(())
}

/// Prints a log's lines after those already printed.
async fn print_new_lines(
    master: &Master,
    log: &Value,
    printed: &mut HashMap<i64, i64>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (Some(id), Some(total)) = (log["logid"].as_i64(), log["num_lines"].as_i64()) else {
        return Ok(());
    };
    let done = printed.entry(id).or_insert(0);
    if total <= *done {
        return Ok(());
    }
    let path = format!(
        "logs/{id}/contents?offset={}&limit={}",
        *done,
        total - *done
    );
    let body = master.get_json(&path).await?;
    let stdio = log["type"] == "s";
    for chunk in body["logchunks"].as_array().into_iter().flatten() {
        for line in chunk["content"].as_str().unwrap_or("").lines() {
            // A stdio log's lines start with their stream's letter.
            let text = if stdio {
                line.get(1..).unwrap_or("")
            } else {
                line
            };
            writeln!(out, "{text}")?;
            *done += 1;
        }
    }
    Ok(())
}

/// Prints the build's end; its result as an exit status.
fn finish(b: &Value, out: &mut impl Write) -> std::io::Result<u8> {
    let code = b["results"].as_i64().unwrap_or(-1);
    writeln!(
        out,
        "finished: {} ({})",
        result_name(Some(code)),
        b["state_string"].as_str().unwrap_or("")
    )?;
    out.flush()?;
    Ok(u8::try_from(code).unwrap_or(u8::MAX))
}
