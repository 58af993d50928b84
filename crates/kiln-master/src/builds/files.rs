//! The small steps: `SetProperty`, `SetProperties` and `SetPropertiesFromEnv`, which add to the
//! build's properties, and
//! those that work on the worker's files with one remote command (`FileExists`, `CopyDirectory`,
//! `MakeDirectory`, `RemoveDirectory`).

use kiln_config::StepConfig;
use kiln_core::render::Renderable;
use kiln_core::{PropertyValue, Results};
use kiln_proto::{Args, Value};

use crate::builds::shell::StdioLog;
use crate::builds::steps::{
    StepContext, StepOutcome, WorkerLost, exception, finished, results_of, with_result,
};
use crate::builds::{paths, transfer};

/// `SetProperty`: the rendered value, set with the step's name as its source.
pub(super) async fn set_property(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    property: &str,
    value: &Renderable,
) -> StepOutcome {
    match ctx.render(value, "value") {
        Ok(v) => {
            ctx.set_properties
                .push((property.to_string(), v, step.name.clone()));
            finished(step, || "Set".into(), Results::Success)
        }
        Err(e) => exception(ctx, step, &e).await,
    }
}

/// `SetProperties`: each entry of a dict, or of a function's answer that must be one.
pub(super) async fn set_properties(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    properties: &Renderable,
) -> StepOutcome {
    match ctx.render(properties, "properties") {
        Ok(PropertyValue::Map(map)) => {
            for (k, v) in map {
                ctx.set_properties.push((k, v, step.name.clone()));
            }
            finished(step, || "Set".into(), Results::Success)
        }
        Ok(other) => {
            let why = format!("properties must render to a dict, not {}", other.render());
            exception(ctx, step, &why).await
        }
        Err(e) => exception(ctx, step, &e).await,
    }
}

/// `SetPropertiesFromEnv`: each variable the worker's environment has (by its upper-case name on
/// Windows) becomes a property with `source`, and a `properties` log lists them, as in Buildbot.
pub(super) async fn set_properties_from_env(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    variables: &[String],
    source: &str,
) -> StepOutcome {
    let found: Vec<(String, String)> = {
        let info = ctx.conn.info.read().unwrap_or_else(|p| p.into_inner());
        variables
            .iter()
            .filter_map(|variable| {
                let key = if info.system == "nt" {
                    variable.to_uppercase()
                } else {
                    variable.clone()
                };
                info.environ
                    .get(&key)
                    .filter(|v| !v.is_empty())
                    .map(|v| (variable.clone(), v.clone()))
            })
            .collect()
    };
    let mut log = Vec::new();
    for (variable, value) in found {
        // As Python's repr writes a string.
        let repr = value.replace('\\', "\\\\").replace('\'', "\\'");
        log.push(format!("{variable} = '{repr}'"));
        ctx.set_properties
            .push((variable, PropertyValue::Str(value), source.to_string()));
    }
    ctx.text_log("properties", &log.join("\n")).await;
    finished(step, || "Set".into(), Results::Success)
}

/// `FileExists`: SUCCESS when the worker has a regular file at `file` (relative to the step's
/// working directory).
pub(super) async fn file_exists(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    file: &Renderable,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    let file = match ctx.render_string(file, "file") {
        Ok(f) => f,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let args = Args::build(vec![("path", Value::from(ctx.worker_path(workdir, &file)))]);
    let log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut io = StdioLog::plain(log);
    let outcome = ctx.remote("stat", args, &mut io).await;
    io.log.finish().await;
    let outcome = outcome?;
    let mode = outcome.stat.as_ref().and_then(|s| s.first().copied());
    let (results, state) = match (results_of(&outcome, None), mode) {
        (Results::Success, Some(m)) if transfer::is_regular_file(m) => {
            (Results::Success, "File found.")
        }
        (Results::Success, Some(_)) => (Results::Failure, "Not a file."),
        _ => (Results::Failure, "File not found."),
    };
    Ok(StepOutcome {
        results,
        state: state.into(),
    })
}

/// `CopyDirectory`: the worker's `cpdir`, both paths relative to the builder's directory.
pub(super) async fn copy_directory(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    src: &Renderable,
    dest: &Renderable,
    timeout: Option<f64>,
    max_time: Option<f64>,
) -> Result<StepOutcome, WorkerLost> {
    let (src, dest) = match (
        ctx.render_string(src, "src"),
        ctx.render_string(dest, "dest"),
    ) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return Ok(exception(ctx, step, &e).await),
    };
    let opt = |v: Option<f64>| v.map_or(Value::Nil, Value::F64);
    let args = Args::build(vec![
        ("from_path", Value::from(ctx.builder_path(&src))),
        ("to_path", Value::from(ctx.builder_path(&dest))),
        ("timeout", opt(timeout)),
        ("maxTime", opt(max_time)),
        ("logEnviron", Value::Boolean(false)),
    ]);
    let log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut io = StdioLog::plain(log);
    let outcome = ctx.remote("cpdir", args, &mut io).await;
    io.log.finish().await;
    let results = results_of(&outcome?, None);
    Ok(finished(
        step,
        || format!("Copied {src} to {dest}"),
        results,
    ))
}

/// `MakeDirectory` and `RemoveDirectory`: the worker's `mkdir` or `rmdir` of one directory.
pub(super) async fn directory(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    name: &str,
    dir: &Renderable,
) -> Result<StepOutcome, WorkerLost> {
    let dir = match ctx.render_string(dir, "dir") {
        Ok(d) => d,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    // Buildbot resolves these directories against the builder's directory, not the workdir.
    let info = ctx
        .conn
        .info
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let path = paths::join(&info, &[ctx.workerbuilddir, &dir]);
    let args = Args::build(vec![
        ("paths", Value::Array(vec![Value::from(path)])),
        ("logEnviron", Value::Boolean(false)),
    ]);
    let log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut io = StdioLog::plain(log);
    let outcome = ctx.remote(name, args, &mut io).await;
    io.log.finish().await;
    let results = results_of(&outcome?, None);
    let state = match (name, results) {
        ("rmdir", Results::Success) => "Deleted".to_string(),
        ("mkdir", Results::Success) => "Created".to_string(),
        (_, r) => with_result(step.name.clone(), r),
    };
    Ok(StepOutcome { results, state })
}
