//! Steps that run on the master itself: `MasterShellCommand`, a command in the master's base
//! directory (or `workdir` below it), and `HTTPStep`, a request sent from the master. Both log
//! what they did in `stdio`; a stop of the build kills the command.

use std::process::Stdio;

use kiln_config::{HttpStepConfig, MasterShellCommandConfig, StepConfig};
use kiln_core::{PropertyValue, Results};
use tokio::io::AsyncReadExt;

use super::logs::LogWriter;
use super::steps::{StepContext, StepOutcome, exception, finished, master_path};
use crate::workers::command::Stream;
use kiln_http as http_client;

/// The most of a response body logged.
const MAX_LOGGED_BODY: usize = 1 << 20;

pub async fn master_shell_command(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    m: &MasterShellCommandConfig,
) -> StepOutcome {
    let command = match ctx.render(&m.command, "command") {
        Ok(c) => c,
        Err(e) => return exception(ctx, step, &e).await,
    };
    let argv: Vec<String> = match &command {
        PropertyValue::List(items) => items.iter().map(PropertyValue::render).collect(),
        other => vec!["/bin/sh".into(), "-c".into(), other.render()],
    };
    if argv.is_empty() {
        return exception(ctx, step, "the command is empty").await;
    }
    let mut env = Vec::new();
    for (k, v) in &m.env {
        match ctx.render_string(v, &format!("env {k}")) {
            Ok(v) => env.push((k.clone(), v)),
            Err(e) => return exception(ctx, step, &e).await,
        }
    }
    let dir = match &m.workdir {
        Some(w) => match ctx.render_string(w, "workdir") {
            Ok(w) => master_path(ctx.master, &w),
            Err(e) => return exception(ctx, step, &e).await,
        },
        None => ctx.master.basedir.clone(),
    };
    let mut log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return exception(ctx, step, &e).await,
    };
    let mut head = format!(
        "{}\n in dir {}\n argv: {argv:?}\n",
        argv.join(" "),
        dir.display()
    );
    if m.log_environ && !env.is_empty() {
        head.push_str(" environment (added to the master's):\n");
        for (k, v) in &env {
            head.push_str(&format!("  {k}={v}\n"));
        }
    }
    log.write(Stream::Header, &head).await;
    let spawned = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(&dir)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            log.write(Stream::Header, &format!("cannot run {:?}: {e}\n", argv[0]))
                .await;
            log.finish().await;
            return finished(step, || "failed to start".into(), Results::Failure);
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Stream, String)>(16);
    for (stream, reader) in [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ),
    ] {
        let Some(mut reader) = reader else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if tx.send((stream, text)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    let mut interrupt = ctx.interrupt.clone();
    let mut killed = false;
    loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some((stream, text)) => log.write(stream, &text).await,
                None => break,
            },
            changed = interrupt.changed(), if !killed => {
                if changed.is_ok() && interrupt.borrow().is_some() {
                    let _ = child.start_kill();
                    killed = true;
                    log.write(Stream::Header, "killing: the build was stopped\n").await;
                }
            }
        }
    }
    let status = child.wait().await;
    let results = match (&status, killed) {
        (_, true) => Results::Cancelled,
        (Ok(s), false) if s.success() => Results::Success,
        _ => Results::Failure,
    };
    let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    log.write(
        Stream::Header,
        &format!("program finished with exit code {code}\n"),
    )
    .await;
    log.finish().await;
    finished(step, || "Ran".into(), results)
}

/// Renders an optional dict of strings (params, headers).
fn string_pairs(
    ctx: &StepContext<'_>,
    r: Option<&kiln_core::render::Renderable>,
    what: &str,
) -> Result<Vec<(String, String)>, String> {
    match r.map(|r| ctx.render(r, what)).transpose()? {
        None | Some(PropertyValue::Null) => Ok(Vec::new()),
        Some(PropertyValue::Map(m)) => Ok(m.into_iter().map(|(k, v)| (k, v.render())).collect()),
        Some(other) => Err(format!("{what} must be a dict, not {}", other.render())),
    }
}

fn form_encode(pairs: &[(String, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

pub async fn http_step(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    h: &HttpStepConfig,
) -> StepOutcome {
    let prepared = (|| -> Result<http_client::Request, String> {
        let mut url = ctx.render_string(&h.url, "url")?;
        let params = string_pairs(ctx, h.params.as_ref(), "params")?;
        if !params.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&form_encode(&params));
        }
        let mut headers = string_pairs(ctx, h.headers.as_ref(), "headers")?;
        let mut body = Vec::new();
        let has_type = |headers: &[(String, String)]| {
            headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        };
        if let Some(j) = &h.json {
            let value = ctx.render(j, "json")?;
            body = kiln_db::property_to_json(&value).to_string().into_bytes();
            if !has_type(&headers) {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
        } else if let Some(d) = &h.data {
            match ctx.render(d, "data")? {
                PropertyValue::Map(m) => {
                    let pairs: Vec<(String, String)> =
                        m.into_iter().map(|(k, v)| (k, v.render())).collect();
                    body = form_encode(&pairs).into_bytes();
                    if !has_type(&headers) {
                        headers.push((
                            "Content-Type".into(),
                            "application/x-www-form-urlencoded".into(),
                        ));
                    }
                }
                other => body = other.render().into_bytes(),
            }
        }
        if let Some(a) = &h.auth {
            match ctx.render(a, "auth")? {
                PropertyValue::List(parts) if parts.len() == 2 => {
                    use base64::Engine;
                    let token = base64::engine::general_purpose::STANDARD.encode(format!(
                        "{}:{}",
                        parts[0].render(),
                        parts[1].render()
                    ));
                    headers.push(("Authorization".into(), format!("Basic {token}")));
                }
                other => {
                    return Err(format!(
                        "auth must be (user, password), not {}",
                        other.render()
                    ));
                }
            }
        }
        Ok(http_client::Request {
            method: h.method.clone(),
            url,
            headers,
            body,
            timeout: h.timeout.map(std::time::Duration::from_secs_f64),
            max_answer: None,
            verify: match h.verify.as_deref() {
                None => http_client::Verify::Roots,
                Some("") => http_client::Verify::Off,
                Some(path) => http_client::Verify::CaFile(master_path(ctx.master, path)),
            },
        })
    })();
    let req = match prepared {
        Ok(r) => r,
        Err(e) => return exception(ctx, step, &e).await,
    };
    let mut log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return exception(ctx, step, &e).await,
    };
    let hidden = |name: &str, list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(name));
    let mut head = format!("Performing {} request to {}\n", req.method, req.url);
    for (k, v) in &req.headers {
        let shown = if hidden(k, &h.hide_request_headers) || k.eq_ignore_ascii_case("authorization")
        {
            "<HIDDEN>"
        } else {
            v.as_str()
        };
        head.push_str(&format!(" {k}: {shown}\n"));
    }
    if !req.body.is_empty() {
        head.push_str(&format!(
            " ==== Request Body ====\n{}\n",
            String::from_utf8_lossy(&req.body)
        ));
    }
    log.write(Stream::Header, &head).await;
    let outcome = http_client::send(&req).await;
    let results = match outcome {
        Ok(resp) => {
            log_response(&mut log, &resp, &h.hide_response_headers).await;
            if resp.status < 400 {
                Results::Success
            } else {
                Results::Failure
            }
        }
        Err(e) => {
            log.write(Stream::Header, &format!("request failed: {e}\n"))
                .await;
            Results::Failure
        }
    };
    log.finish().await;
    finished(step, || "Requested".into(), results)
}

async fn log_response(log: &mut LogWriter, resp: &http_client::Response, hide: &[String]) {
    let mut text = format!(
        "==== Response ====\nStatus: {} {}\n",
        resp.status, resp.reason
    );
    for (k, v) in &resp.headers {
        let shown = if hide.iter().any(|h| h.eq_ignore_ascii_case(k)) {
            "<HIDDEN>"
        } else {
            v.as_str()
        };
        text.push_str(&format!(" {k}: {shown}\n"));
    }
    log.write(Stream::Header, &text).await;
    let body = &resp.body[..resp.body.len().min(MAX_LOGGED_BODY)];
    if !body.is_empty() {
        log.write(Stream::Header, " ------ Content ------\n").await;
        let mut body = String::from_utf8_lossy(body).into_owned();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        log.write(Stream::Stdout, &body).await;
    }
}
