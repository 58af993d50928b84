//! Rows as template values.
//!
//! A template reads a build, a step, a log or a worker by the field names of its REST shape, but
//! only the fields it reads are converted, when it reads them. A page of 1,000 builds so costs one
//! allocation per build instead of a map of a dozen values built through JSON; a page may also add
//! its own fields to a row (a build's steps, a step's logs, a worker's connection).

use std::fmt::Debug;
use std::sync::Arc;

use kiln_api::shapes;
use kiln_db::{BuildRow, LogRow, StepRow, WorkerRow};
use minijinja::Value;
use minijinja::value::{Enumerator, Object};

use super::from_json;

/// A row's fields, named as in its REST shape.
trait Fields: Debug + Send + Sync + 'static {
    /// Every field's name, in the shape's order.
    const NAMES: &'static [&'static str];

    /// The field called `name`, if the shape has one.
    fn field(&self, name: &str) -> Option<Value>;
}

/// A row with what the page adds to it; the additions hide the row's fields of the same name.
#[derive(Debug)]
struct Row<T> {
    row: T,
    extra: Vec<(&'static str, Value)>,
}

impl<T: Fields> Object for Row<T> {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        match self.extra.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => Some(v.clone()),
            None => self.row.field(name),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        if self.extra.is_empty() {
            return Enumerator::Str(T::NAMES);
        }
        let added = |name: &str| self.extra.iter().any(|(k, _)| *k == name);
        let own = T::NAMES.iter().copied().filter(|n| !added(n));
        let extra = self.extra.iter().map(|(k, _)| *k);
        Enumerator::Values(own.chain(extra).map(Value::from).collect())
    }
}

fn row<T: Fields>(row: T, extra: Vec<(&'static str, Value)>) -> Value {
    Value::from_object(Row { row, extra })
}

/// A build, as `/api/v2/builds` shows it.
pub fn build(b: BuildRow) -> Value {
    row(b, Vec::new())
}

/// A build with the page's own fields.
pub fn build_with(b: BuildRow, extra: Vec<(&'static str, Value)>) -> Value {
    row(b, extra)
}

/// Builds, in the same order.
pub fn builds(rows: impl IntoIterator<Item = BuildRow>) -> Value {
    rows.into_iter().map(build).collect()
}

/// A step, as `/api/v2/steps` shows it.
pub fn step_with(s: StepRow, extra: Vec<(&'static str, Value)>) -> Value {
    row(s, extra)
}

/// A log, as `/api/v2/logs` shows it.
pub fn log(l: LogRow) -> Value {
    row(l, Vec::new())
}

/// A worker, as `/api/v2/workers` shows it, with the page's own fields.
pub fn worker_with(w: WorkerRow, extra: Vec<(&'static str, Value)>) -> Value {
    row(w, extra)
}

impl Fields for BuildRow {
    const NAMES: &'static [&'static str] = &[
        "buildid",
        "number",
        "builderid",
        "buildrequestid",
        "workerid",
        "masterid",
        "started_at",
        "complete",
        "complete_at",
        "locks_duration_s",
        "state_string",
        "results",
        "properties",
    ];

    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "buildid" => self.id.0.into(),
            "number" => self.number.into(),
            "builderid" => self.builderid.0.into(),
            "buildrequestid" => self.buildrequestid.0.into(),
            "workerid" => self.workerid.into(),
            "masterid" => self.masterid.into(),
            "started_at" => self.started_at.into(),
            "complete" => self.complete_at.is_some().into(),
            "complete_at" => self.complete_at.into(),
            "locks_duration_s" => self.locks_duration_s.into(),
            "state_string" => self.state_string.as_str().into(),
            "results" => self.results.into(),
            "properties" => Value::from_iter(std::iter::empty::<(String, Value)>()),
            _ => return None,
        })
    }
}

impl Fields for StepRow {
    const NAMES: &'static [&'static str] = &[
        "stepid",
        "number",
        "name",
        "buildid",
        "started_at",
        "locks_acquired_at",
        "complete",
        "complete_at",
        "state_string",
        "results",
        "urls",
        "hidden",
    ];

    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "stepid" => self.id.0.into(),
            "number" => self.number.into(),
            "name" => self.name.as_str().into(),
            "buildid" => self.buildid.0.into(),
            "started_at" => self.started_at.into(),
            "locks_acquired_at" => self.locks_acquired_at.into(),
            "complete" => self.complete_at.is_some().into(),
            "complete_at" => self.complete_at.into(),
            "state_string" => self.state_string.as_str().into(),
            "results" => self.results.into(),
            "urls" => from_json(&shapes::step_urls(&self.urls_json)),
            "hidden" => self.hidden.into(),
            _ => return None,
        })
    }
}

impl Fields for LogRow {
    const NAMES: &'static [&'static str] = &[
        "logid",
        "name",
        "slug",
        "stepid",
        "complete",
        "num_lines",
        "type",
    ];

    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "logid" => self.id.0.into(),
            "name" => self.name.as_str().into(),
            "slug" => self.slug.as_str().into(),
            "stepid" => self.stepid.0.into(),
            "complete" => self.complete.into(),
            "num_lines" => self.num_lines.into(),
            "type" => self.log_type.as_str().into(),
            _ => return None,
        })
    }
}

impl Fields for WorkerRow {
    const NAMES: &'static [&'static str] = &[
        "workerid",
        "name",
        "configured_on",
        "connected_to",
        "paused",
        "pause_reason",
        "graceful",
        "workerinfo",
    ];

    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "workerid" => self.id.0.into(),
            "name" => self.name.as_str().into(),
            "configured_on" => self
                .configured_on
                .iter()
                .map(|(b, m)| Value::from_iter([("builderid", *b), ("masterid", *m)]))
                .collect(),
            "connected_to" => self
                .connected_to
                .iter()
                .map(|m| Value::from_iter([("masterid", *m)]))
                .collect(),
            "paused" => self.paused.into(),
            "pause_reason" => self.pause_reason.clone().into(),
            "graceful" => self.graceful.into(),
            "workerinfo" => from_json(&shapes::worker_info(&self.info)),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use kiln_core::{BuildId, BuildRequestId, BuilderId, LogId, StepId, WorkerId};

    use super::*;

    fn stdio() -> LogRow {
        LogRow {
            id: LogId(8),
            name: "stdio".into(),
            slug: "stdio".into(),
            stepid: StepId(5),
            complete: true,
            num_lines: 12,
            log_type: "s".into(),
        }
    }

    /// A view serializes to exactly the resource's REST shape, so a template reads the same
    /// fields whichever of the two it is given.
    fn same_as_shape(view: Value, shape: serde_json::Value) {
        assert_eq!(serde_json::to_value(&view).unwrap(), shape);
    }

    #[test]
    fn every_row_reads_as_its_rest_shape() {
        let build = BuildRow {
            id: BuildId(7),
            number: 3,
            builderid: BuilderId(2),
            buildrequestid: BuildRequestId(9),
            workerid: Some(4),
            masterid: 1,
            started_at: 100,
            complete_at: None,
            locks_duration_s: 2,
            state_string: "building <b>".into(),
            results: None,
        };
        same_as_shape(super::build(build.clone()), shapes::build(&build));
        let step = StepRow {
            id: StepId(5),
            number: 0,
            name: "compile".into(),
            buildid: BuildId(7),
            started_at: Some(101),
            locks_acquired_at: Some(101),
            complete_at: Some(150),
            state_string: "compiled".into(),
            results: Some(2),
            urls_json: r#"[{"name": "docs", "url": "https://example.org/"}]"#.into(),
            hidden: false,
        };
        same_as_shape(step_with(step.clone(), Vec::new()), shapes::step(&step));
        let log = stdio();
        same_as_shape(super::log(log.clone()), shapes::log(&log));
        let worker = WorkerRow {
            id: WorkerId(4),
            name: "w1".into(),
            info: r#"{"admin": "me", "host": "box", "worker_commands": {"shell": "3"}}"#.into(),
            paused: true,
            pause_reason: Some("disk".into()),
            graceful: false,
            configured_on: vec![(2, 1)],
            connected_to: vec![1],
        };
        same_as_shape(
            worker_with(worker.clone(), Vec::new()),
            shapes::worker(&worker),
        );
    }

    #[test]
    fn a_page_field_replaces_the_rows_field_of_that_name() {
        let log = LogRow {
            id: LogId(8),
            name: "stdio".into(),
            slug: "stdio".into(),
            stepid: StepId(5),
            complete: true,
            num_lines: 12,
            log_type: "s".into(),
        };
        let v = row(
            log,
            vec![("name", Value::from("other")), ("extra", Value::from(1))],
        );
        assert_eq!(v.get_attr("name").unwrap().as_str(), Some("other"));
        assert_eq!(v.get_attr("extra").unwrap().as_i64(), Some(1));
        let names: Vec<String> = v.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(names.iter().filter(|n| *n == "name").count(), 1);
        assert!(names.contains(&"extra".to_string()));
    }
}
