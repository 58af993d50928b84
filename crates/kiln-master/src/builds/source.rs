//! Source steps: checking out a build's source stamp on the worker with the version-control tool
//! there, through the worker's `shell`, `stat`, `rmdir` and `cpdir` commands, so the stock
//! `buildbot-worker` runs them too.
//!
//! `Git`: `mode='incremental'` updates the working copy in place (cloning it the first time);
//! `mode='full'` with `method='clobber'` removes it and clones, `'fresh'` and `'clean'` clean it
//! with `git clean` (ignored files too for `fresh`) before updating, and `'copy'` updates a
//! separate `source` directory and copies it to the working directory. The revision checked out is
//! set as `got_revision` (a dict by codebase when the step names one). A source stamp's patch is
//! applied after the checkout with `git apply` (checked first, so one that does not apply leaves
//! the tree untouched), and the step's state says the tree was patched.

use kiln_config::GitConfig;
use kiln_core::{PropertyValue, Results};
use kiln_proto::{Args, Value};

use super::steps::{StepContext, StepOutcome, WorkerLost};

/// What one remote command did.
struct Ran {
    results: Results,
    stdout: String,
}

/// Runs `command` in `dir` (relative to the builder's directory) and logs it.
async fn shell(
    ctx: &StepContext<'_>,
    log: &mut super::steps::LogSink,
    dir: &str,
    command: &[&str],
    timeout: Option<f64>,
) -> Result<Ran, WorkerLost> {
    shell_with_stdin(ctx, log, dir, command, timeout, None).await
}

/// Runs `command` with `stdin` as its standard input.
async fn shell_with_stdin(
    ctx: &StepContext<'_>,
    log: &mut super::steps::LogSink,
    dir: &str,
    command: &[&str],
    timeout: Option<f64>,
    stdin: Option<&str>,
) -> Result<Ran, WorkerLost> {
    let args = Args::build(vec![
        ("initial_stdin", stdin.map_or(Value::Nil, Value::from)),
        ("workdir", Value::from(ctx.builder_path(dir))),
        (
            "command",
            Value::Array(command.iter().map(|c| Value::from(*c)).collect()),
        ),
        ("env", Value::Map(vec![])),
        ("want_stdout", Value::Boolean(true)),
        ("want_stderr", Value::Boolean(true)),
        ("logfiles", Value::Map(vec![])),
        ("timeout", timeout.map_or(Value::Nil, Value::F64)),
        ("logEnviron", Value::Boolean(false)),
    ]);
    let (outcome, stdout) = log.run(ctx, "shell", args).await?;
    Ok(Ran {
        results: outcome,
        stdout,
    })
}

/// Whether `path` (relative to the builder's directory) exists on the worker.
async fn exists(
    ctx: &StepContext<'_>,
    log: &mut super::steps::LogSink,
    path: &str,
) -> Result<bool, WorkerLost> {
    let args = Args::build(vec![("path", Value::from(ctx.builder_path(path)))]);
    Ok(log.run_quiet(ctx, "stat", args).await? == Results::Success)
}

pub async fn git(
    ctx: &mut StepContext<'_>,
    step: &kiln_config::StepConfig,
    g: &GitConfig,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    let repourl = match ctx.render_string(&g.repourl, "repourl") {
        Ok(r) => r,
        Err(e) => return Ok(super::steps::exception(ctx, step, &e).await),
    };
    let stamp = ctx
        .sourcestamps
        .iter()
        .find(|s| s.codebase == g.codebase)
        .map(kiln_db::SourceStampRow::to_sourcestamp);
    let (branch, revision) = match (&stamp, g.always_use_latest) {
        (Some(ss), false) => (
            ss.branch.clone().unwrap_or_else(|| g.branch.clone()),
            ss.revision.clone(),
        ),
        _ => (g.branch.clone(), None),
    };
    let mut log = match super::steps::LogSink::open(ctx).await {
        Ok(l) => l,
        Err(e) => return Ok(super::steps::exception(ctx, step, &e).await),
    };
    let timeout = g.timeout;
    let fail = |results: Results| StepOutcome {
        results,
        state: format!("update ({})", results.name()),
    };
    // Where the repository is updated: the working directory, or `source` for the copy method.
    let copy = g.mode == "full" && g.method == "copy";
    let srcdir = if copy { "source" } else { workdir };
    if g.mode == "full" && g.method == "clobber" {
        let args = Args::build(vec![
            (
                "paths",
                Value::Array(vec![Value::from(ctx.builder_path(workdir))]),
            ),
            ("logEnviron", Value::Boolean(false)),
        ]);
        let r = log.run_quiet(ctx, "rmdir", args).await?;
        if r != Results::Success {
            log.finish().await;
            return Ok(fail(r));
        }
    }
    let has_repo = exists(ctx, &mut log, &format!("{srcdir}/.git")).await?;
    let depth: Vec<String> = if g.shallow > 0 {
        vec![format!("--depth={}", g.shallow)]
    } else {
        vec![]
    };
    let depth: Vec<&str> = depth.iter().map(String::as_str).collect();
    let mut steps: Vec<Vec<String>> = Vec::new();
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    if has_repo {
        if g.mode == "full" && (g.method == "fresh" || g.method == "clean") {
            let mut clean = vec!["git", "clean", "-f", "-f", "-d"];
            if g.method == "fresh" {
                clean.push("-x");
            }
            steps.push(owned(&clean));
        }
        let mut fetch = vec!["git", "fetch", "-f", "-t"];
        fetch.extend(&depth);
        fetch.push(&repourl);
        if branch != "HEAD" {
            fetch.push(&branch);
        }
        steps.push(owned(&fetch));
        let target = revision.clone().unwrap_or_else(|| "FETCH_HEAD".into());
        steps.push(owned(&["git", "checkout", "-f", &target]));
    } else {
        let mut clone = vec!["git", "clone"];
        if branch != "HEAD" {
            clone.extend(["--branch", branch.as_str()]);
        }
        clone.extend(&depth);
        clone.extend([repourl.as_str(), "."]);
        steps.push(owned(&clone));
        if let Some(r) = &revision {
            steps.push(owned(&["git", "checkout", "-f", r]));
        }
    }
    if branch != "HEAD" && revision.is_none() {
        // A named branch, checked out as such, as Buildbot does after an update.
        steps.push(owned(&["git", "checkout", "-B", &branch]));
    }
    if g.submodules {
        steps.push(owned(&[
            "git",
            "submodule",
            "update",
            "--init",
            "--recursive",
        ]));
    }
    for command in &steps {
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        let ran = shell(ctx, &mut log, srcdir, &command, timeout).await?;
        if ran.results != Results::Success {
            log.finish().await;
            return Ok(fail(ran.results));
        }
    }
    if copy {
        let rm = Args::build(vec![
            (
                "paths",
                Value::Array(vec![Value::from(ctx.builder_path(workdir))]),
            ),
            ("logEnviron", Value::Boolean(false)),
        ]);
        let cp = Args::build(vec![
            ("from_path", Value::from(ctx.builder_path(srcdir))),
            ("to_path", Value::from(ctx.builder_path(workdir))),
            ("logEnviron", Value::Boolean(false)),
            ("timeout", timeout.map_or(Value::Nil, Value::F64)),
        ]);
        for (name, args) in [("rmdir", rm), ("cpdir", cp)] {
            let r = log.run_quiet(ctx, name, args).await?;
            if r != Results::Success {
                log.finish().await;
                return Ok(fail(r));
            }
        }
    }
    // A patch (from `kiln try` or the force form) is applied in the working directory, at its
    // level and subdirectory; one that does not apply fails the step and changes nothing.
    let mut patched = false;
    if let Some(patch) = stamp.as_ref().and_then(|ss| ss.patch.as_ref()) {
        let dir = match patch
            .subdir
            .as_deref()
            .filter(|d| !d.is_empty() && *d != ".")
        {
            Some(sub) => format!("{workdir}/{sub}"),
            None => workdir.to_string(),
        };
        let body = String::from_utf8_lossy(&patch.body).into_owned();
        let level = format!("-p{}", patch.level);
        log.header(&format!(
            "applying the source stamp's patch at {level} in {dir}\n"
        ))
        .await;
        for command in [
            vec!["git", "apply", "--check", level.as_str(), "-"],
            vec!["git", "apply", level.as_str(), "-"],
        ] {
            let ran = shell_with_stdin(ctx, &mut log, &dir, &command, timeout, Some(&body)).await?;
            if ran.results != Results::Success {
                log.finish().await;
                return Ok(StepOutcome {
                    results: Results::Failure,
                    state: "patch failed".into(),
                });
            }
        }
        patched = true;
    }
    let head = shell(
        ctx,
        &mut log,
        srcdir,
        &["git", "rev-parse", "HEAD"],
        timeout,
    )
    .await?;
    if head.results != Results::Success {
        log.finish().await;
        return Ok(fail(head.results));
    }
    let got = head.stdout.trim().to_string();
    log.header(&format!("got_revision: {got}\n")).await;
    log.finish().await;
    let value = if g.codebase.is_empty() {
        PropertyValue::Str(got)
    } else {
        let mut map = match ctx.props.get("got_revision") {
            Some(PropertyValue::Map(m)) => m.clone(),
            _ => Default::default(),
        };
        map.insert(g.codebase.clone(), PropertyValue::Str(got));
        PropertyValue::Map(map)
    };
    ctx.set_properties
        .push(("got_revision".into(), value, "Git".into()));
    let done = step
        .description_done
        .clone()
        .unwrap_or_else(|| "update".into());
    Ok(StepOutcome {
        results: Results::Success,
        state: if patched {
            format!("{done} (patched)")
        } else {
            done
        },
    })
}
