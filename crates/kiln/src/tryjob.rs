//! `kiln try`: send the changes of a working copy (or a patch file) to a master's `Try_Userpass`
//! scheduler, to be built on some of its builders, and optionally wait for the results.
//!
//! The options are those of Buildbot's `buildbot try` that make sense over HTTP. The diff comes
//! from git, Mercurial or Subversion (found from the working directory, or named with `--vc`), or
//! from `--diff FILE`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::http::Master;

/// How often `--wait` asks the master about the builds.
const POLL: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub struct Try {
    /// The master's web address, such as http://localhost:8010/.
    #[arg(long, short = 'm')]
    pub master: String,
    #[arg(long, short = 'u')]
    pub username: String,
    #[arg(long)]
    pub passwd: String,
    /// The try scheduler to use, when the user may use several.
    #[arg(long)]
    pub scheduler: Option<String>,
    /// A builder to build on; may be repeated (all the scheduler's builders if none).
    #[arg(long = "builder", short = 'b')]
    pub builders: Vec<String>,
    /// git, hg or svn; found from the working copy when not given.
    #[arg(long)]
    pub vc: Option<String>,
    /// The working copy (the current directory by default).
    #[arg(long)]
    pub topdir: Option<PathBuf>,
    #[arg(long)]
    pub branch: Option<String>,
    /// The revision the patch applies to (found from the working copy when not given).
    #[arg(long)]
    pub baserev: Option<String>,
    #[arg(long)]
    pub repository: Option<String>,
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub codebase: Option<String>,
    /// Send this patch file ('-' for standard input) instead of the working copy's diff.
    #[arg(long)]
    pub diff: Option<PathBuf>,
    /// The patch level of the diff (1 for git and hg, 0 for svn by default).
    #[arg(long, short = 'p')]
    pub patchlevel: Option<i64>,
    /// Properties, as NAME=VALUE[,NAME=VALUE…].
    #[arg(long)]
    pub properties: Option<String>,
    /// One property, NAME=VALUE; may be repeated.
    #[arg(long = "property")]
    pub property: Vec<String>,
    #[arg(long)]
    pub who: Option<String>,
    #[arg(long, short = 'C')]
    pub comment: Option<String>,
    /// Wait for the builds and show their results as they finish.
    #[arg(long)]
    pub wait: bool,
    /// Show what would be sent, and send nothing.
    #[arg(long, short = 'n')]
    pub dryrun: bool,
}

/// The source of the job: a base revision, a branch and a diff.
struct Source {
    baserev: Option<String>,
    branch: Option<String>,
    diff: Vec<u8>,
    patchlevel: i64,
}

/// Sends the job; with `--wait`, returns whether every build succeeded.
pub async fn run(args: Try) -> anyhow::Result<bool> {
    let source = source(&args)?;
    let mut properties = serde_json::Map::new();
    let pairs = args
        .properties
        .iter()
        .flat_map(|p| p.split(','))
        .chain(args.property.iter().map(String::as_str))
        .filter(|p| !p.is_empty());
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("a property must be NAME=VALUE, not {p:?}");
        };
        properties.insert(k.to_string(), Value::from(v));
    }
    let body = json!({
        "scheduler": args.scheduler,
        "builderNames": args.builders,
        "properties": properties,
        "who": args.who.clone().unwrap_or_else(|| args.username.clone()),
        "comment": args.comment,
        "branch": args.branch.clone().or(source.branch),
        "revision": args.baserev.clone().or(source.baserev),
        "repository": args.repository,
        "project": args.project,
        "codebase": args.codebase,
        "patch_level": args.patchlevel.unwrap_or(source.patchlevel),
        "patch_body": String::from_utf8_lossy(&source.diff),
    });
    let mut out = std::io::stdout();
    if args.dryrun {
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        return Ok(true);
    }
    let master = Master::parse(&args.master)?;
    let auth = format!("{}:{}", args.username, args.passwd);
    let (status, answer) = master
        .request(
            "POST",
            "try",
            Some("application/json"),
            body.to_string().as_bytes(),
            Some(&auth),
        )
        .await?;
    let reply: Value = serde_json::from_str(answer.trim()).unwrap_or(Value::String(answer.clone()));
    if status != 200 {
        let why = reply["error"].as_str().map_or(answer.trim(), |s| s);
        bail!("the master refused the try job ({status}): {why}");
    }
    let bsid = reply["bsid"]
        .as_i64()
        .context("the master's answer has no bsid")?;
    writeln!(out, "try job submitted: buildset {bsid}")?;
    if !args.wait {
        return Ok(true);
    }
    wait(&master, bsid, &mut out).await
}

/// Shows each build as it starts and finishes, until the buildset completes.
async fn wait(master: &Master, bsid: i64, out: &mut impl Write) -> anyhow::Result<bool> {
    let builders = master.get_json("builders").await?;
    let name = |id: &Value| {
        builders["builders"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["builderid"] == *id))
            .and_then(|b| b["name"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut started = std::collections::BTreeSet::new();
    let mut finished = std::collections::BTreeSet::new();
    loop {
        // The buildset is read first: once it is complete, so are the builds listed after it,
        // and every result is shown before the summary.
        let bs = master.get_json(&format!("buildsets/{bsid}")).await?;
        let bs = &bs["buildsets"][0];
        let requests = master
            .get_json(&format!("buildrequests?buildsetid={bsid}"))
            .await?;
        for r in requests["buildrequests"].as_array().into_iter().flatten() {
            let brid = r["buildrequestid"].as_i64().unwrap_or_default();
            let builds = master
                .get_json(&format!("builds?buildrequestid={brid}"))
                .await?;
            for b in builds["builds"].as_array().into_iter().flatten() {
                let id = b["buildid"].as_i64().unwrap_or_default();
                let label = format!("{} #{}", name(&b["builderid"]), b["number"]);
                if started.insert(id) {
                    writeln!(out, "{label}: started")?;
                }
                if b["complete"] == true && finished.insert(id) {
                    let results = b["results"].as_i64().unwrap_or(-1);
                    writeln!(
                        out,
                        "{label}: {} ({})",
                        results_name(results),
                        b["state_string"].as_str().unwrap_or("")
                    )?;
                }
            }
        }
        if bs["complete"] == true {
            let results = bs["results"].as_i64().unwrap_or(-1);
            writeln!(out, "buildset {bsid}: {}", results_name(results))?;
            return Ok(results == 0 || results == 1);
        }
        out.flush()?;
        tokio::time::sleep(POLL).await;
    }
}

fn results_name(code: i64) -> &'static str {
    match code {
        0 => "success",
        1 => "warnings",
        2 => "failure",
        3 => "skipped",
        4 => "exception",
        5 => "retry",
        6 => "cancelled",
        _ => "unknown",
    }
}

fn source(args: &Try) -> anyhow::Result<Source> {
    if let Some(path) = &args.diff {
        let diff = if path.as_os_str() == "-" {
            let mut d = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut d)
                .context("reading the diff from standard input")?;
            d
        } else {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        };
        return Ok(Source {
            baserev: None,
            branch: None,
            diff,
            patchlevel: 0,
        });
    }
    let top = match &args.topdir {
        Some(t) => t.clone(),
        None => std::env::current_dir()?,
    };
    let vc = match &args.vc {
        Some(v) => v.clone(),
        None => detect(&top)
            .context("no git, hg or svn working copy here: give --vc and --topdir, or --diff")?,
    };
    match vc.as_str() {
        "git" => {
            let branch = tool(&top, "git", &["rev-parse", "--abbrev-ref", "HEAD"]).ok();
            // The base is where the branch left its upstream, or HEAD without one.
            let base = match tool(
                &top,
                "git",
                &["rev-parse", "--verify", "--quiet", "@{upstream}"],
            ) {
                Ok(up) if !up.is_empty() => tool(&top, "git", &["merge-base", "HEAD", &up])?,
                _ => tool(&top, "git", &["rev-parse", "HEAD"])?,
            };
            let diff = bytes(
                &top,
                "git",
                &[
                    "diff",
                    "--no-ext-diff",
                    "--no-textconv",
                    "--src-prefix=a/",
                    "--dst-prefix=b/",
                    &base,
                ],
            )?;
            Ok(Source {
                baserev: Some(base),
                branch: branch.filter(|b| b != "HEAD"),
                diff,
                patchlevel: 1,
            })
        }
        "hg" => {
            let base = tool(&top, "hg", &["log", "-r", ".", "--template", "{node}"])?;
            let branch = tool(&top, "hg", &["branch"]).ok();
            let diff = bytes(&top, "hg", &["diff", "--git", "-r", &base])?;
            Ok(Source {
                baserev: Some(base),
                branch,
                diff,
                patchlevel: 1,
            })
        }
        "svn" => {
            let base = tool(&top, "svn", &["info", "--show-item", "revision"])?;
            let diff = bytes(&top, "svn", &["diff"])?;
            Ok(Source {
                baserev: Some(base),
                branch: None,
                diff,
                patchlevel: 0,
            })
        }
        other => bail!("--vc {other} is not supported: use git, hg or svn, or send a --diff"),
    }
}

/// The version-control system of the working copy at or above `dir`.
fn detect(dir: &Path) -> Option<String> {
    for d in dir.ancestors() {
        for (marker, vc) in [(".git", "git"), (".hg", "hg"), (".svn", "svn")] {
            if d.join(marker).exists() {
                return Some(vc.to_string());
            }
        }
    }
    None
}

fn bytes(dir: &Path, program: &str, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HGPLAIN", "1")
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn tool(dir: &Path, program: &str, args: &[&str]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&bytes(dir, program, args)?)
        .trim()
        .to_string())
}
