//! The timers of `WorkerMissingGenerator`, and an IRC bot's word about workers: a watched
//! worker that disconnects, or is not connected when the reporter starts, and stays away for its
//! `missing_timeout` is reported once; the bot also says when it is back.

use std::collections::BTreeMap;

use kiln_config::GeneratorKind;
use kiln_db::StoredEvent;
use kiln_db::listing::{Page, SqlValue};

use super::{Reporter, site};
use crate::generators::missing_worker_dict;
use crate::report::Report;

/// The timers of `WorkerMissingGenerator`: a worker that disconnects and stays away for its
/// `missing_timeout` is reported once, to its `notify_on_missing` addresses.
pub(super) struct MissingWorkers {
    /// Worker name → (when it is reported, what it is about).
    timers: BTreeMap<String, (i64, String)>,
    /// The workers an IRC bot said were missing: it says when they are back.
    announced: std::collections::BTreeSet<String>,
}

impl MissingWorkers {
    /// Arms a timer for each watched worker that is not connected when the reporter starts, as
    /// Buildbot does at start.
    pub(super) async fn start(reporter: &Reporter) -> MissingWorkers {
        let mut m = MissingWorkers {
            timers: BTreeMap::new(),
            announced: Default::default(),
        };
        if !reporter.watches_workers() {
            return m;
        }
        let read = &*reporter.services.read;
        let now = read.now();
        let connected = read.connected_workers();
        for w in &read.config().workers {
            if reporter.watches(&w.name) && !connected.contains(&w.name) {
                m.timers.insert(
                    w.name.clone(),
                    (
                        now + w.missing_timeout,
                        format!("missing:{}:start:{now}", w.name),
                    ),
                );
            }
        }
        m
    }

    pub(super) fn next_deadline(&self) -> Option<i64> {
        self.timers.values().map(|(at, _)| *at).min()
    }

    /// Arms or disarms a worker's timer on its connections.
    pub(super) async fn note(&mut self, reporter: &Reporter, event: &StoredEvent) {
        if !reporter.watches_workers() {
            return;
        }
        let mut parts = event.key.split('.');
        let (Some("workers"), Some(id), Some(verb)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Ok(id) = id.parse::<i64>() else {
            return;
        };
        let read = &*reporter.services.read;
        let Some(name) = read.worker_name(kiln_core::WorkerId(id)) else {
            return;
        };
        match verb {
            "connected" => {
                self.timers.remove(&name);
                if self.announced.remove(&name)
                    && let Some(bot) = &reporter.connections.irc
                {
                    let lines =
                        bot.worker_announcement(&format!("Worker `{name}` is back online."));
                    if !lines.is_empty() {
                        let payload = serde_json::json!({ "lines": lines });
                        let report = reporter.new_report(
                            &payload,
                            format!("worker {name} back"),
                            format!("back:{name}:{}", event.id),
                        );
                        reporter.enqueue(vec![report], 0, None).await;
                    }
                }
            }
            "disconnected" if reporter.watches(&name) => {
                let config = read.config();
                if let Some(w) = config.workers.iter().find(|w| w.name == name) {
                    self.timers.insert(
                        name.clone(),
                        (
                            event.at + w.missing_timeout,
                            format!("missing:{name}:{}", event.id),
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    /// Reports the workers whose time has come and that are still away.
    pub(super) async fn fire(&mut self, reporter: &Reporter) {
        let read = &*reporter.services.read;
        let now = read.now();
        let due: Vec<(String, String)> = self
            .timers
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(n, (_, d))| (n.clone(), d.clone()))
            .collect();
        for (name, dedup) in due {
            self.timers.remove(&name);
            if read.connected_workers().contains(&name) {
                continue;
            }
            if let Some(bot) = &reporter.connections.irc {
                let missing_timeout = read
                    .config()
                    .workers
                    .iter()
                    .find(|w| w.name == name)
                    .map_or(0, |w| w.missing_timeout);
                let text = format!(
                    "Worker `{name}` is missing. It was seen last on {}.",
                    ctime(now - missing_timeout)
                );
                let lines = bot.worker_announcement(&text);
                self.announced.insert(name.clone());
                if !lines.is_empty() {
                    let payload = serde_json::json!({ "lines": lines });
                    let report =
                        reporter.new_report(&payload, format!("worker {name} missing"), dedup);
                    reporter.enqueue(vec![report], 0, None).await;
                }
                continue;
            }
            let reports = reporter.missing_reports(&name).await;
            if let Some(report) = reporter.prepare(&reports, dedup).await {
                reporter.enqueue(vec![report], 0, None).await;
            }
        }
    }
}

impl Reporter {
    fn watches_workers(&self) -> bool {
        self.connections.irc.is_some()
            || self
                .generators
                .iter()
                .any(|g| matches!(g.config.kind, GeneratorKind::WorkerMissing { .. }))
    }

    /// Whether a worker-missing generator watches `worker` and the worker names people to tell.
    fn watches(&self, worker: &str) -> bool {
        let config = self.services.read.config();
        // The IRC bot tells those who asked for `worker` about every worker.
        if self.connections.irc.is_some() {
            return config.workers.iter().any(|w| w.name == worker);
        }
        let notifies = config
            .workers
            .iter()
            .any(|w| w.name == worker && !w.notify_on_missing.is_empty());
        notifies
            && self.generators.iter().any(|g| match &g.config.kind {
                GeneratorKind::WorkerMissing { workers, .. } => workers
                    .as_ref()
                    .is_none_or(|w| w.iter().any(|w| w == worker)),
                _ => false,
            })
    }

    async fn missing_reports(&self, worker: &str) -> Vec<Report> {
        let read = &*self.services.read;
        let config = read.config();
        let Some(w) = config.workers.iter().find(|w| w.name == worker) else {
            return Vec::new();
        };
        let row = read
            .db()
            .list_workers(&Page::eq("name", SqlValue::Text(worker.to_string())))
            .await
            .ok()
            .and_then(|(rows, _)| rows.into_iter().next());
        let dict = row
            .as_ref()
            .map(kiln_api::shapes::worker)
            .unwrap_or_else(|| serde_json::json!({"name": worker, "workerinfo": {}}));
        let last = ctime(read.now() - w.missing_timeout);
        let dict = missing_worker_dict(&dict, &w.notify_on_missing, &last);
        let site = site(read);
        let mut out = Vec::new();
        for g in &self.generators {
            if !matches!(g.config.kind, GeneratorKind::WorkerMissing { .. }) {
                continue;
            }
            match g.formatter().format_worker(&dict, &site) {
                Ok(m) => out.push(Report {
                    event: crate::report::ReportEvent::WorkerMissing,
                    body: m.body,
                    subject: m.subject,
                    kind: m.kind,
                    results: None,
                    builds: Vec::new(),
                    users: w.notify_on_missing.clone(),
                    patches: Vec::new(),
                    logs: Vec::new(),
                    properties: None,
                    summary: format!("worker {worker} missing"),
                }),
                Err(error) => tracing::error!(
                    reporter = %self.config.name, worker, error = %self.hooks.redact(&error),
                    "wording a missing worker's report"
                ),
            }
        }
        out
    }
}

/// A time as C's `ctime` writes it, in UTC: `Thu Dec  3 06:23:42 2026`.
fn ctime(at: i64) -> String {
    match jiff::Timestamp::from_second(at) {
        Ok(t) => t.strftime("%a %b %e %H:%M:%S %Y").to_string(),
        Err(_) => at.to_string(),
    }
}
