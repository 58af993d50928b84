//! The activity loop that starts builds: whenever something changes (a new request, a worker
//! attaching, a build finishing) it asks the pure distributor in `kiln-core` which requests start on
//! which workers, claims them, and starts their builds.

use std::sync::Arc;
use std::time::Duration;

use kiln_config::{Data, MasterConfig};
use kiln_core::BuildRequestId;
use kiln_core::changefilter::FnRef;
use kiln_core::distributor::{BuilderSlots, Hooks, PendingRequest, distribute_with};
use kiln_db::DbError;

use crate::master::Master;

/// A pass also runs this often without a wake-up, to pick up requests other masters released.
const IDLE_PASS: Duration = Duration::from_secs(2);
/// The most waiting requests of one builder a `nextBuild` function chooses among.
const NEXT_BUILD_CHOICES: i64 = 1000;

pub async fn run(master: Arc<Master>) {
    let mut shutdown = master.shutdown_signal();
    loop {
        tokio::select! {
            _ = master.distributor_wake.notified() => {}
            _ = tokio::time::sleep(IDLE_PASS) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        if let Err(error) = pass(&master).await {
            tracing::error!(%error, "distributing build requests");
        }
    }
}

async fn pass(master: &Arc<Master>) -> Result<(), DbError> {
    // A master shutting down, cleanly or not, starts nothing more.
    if *master.shutdown_signal().borrow() || master.shutting_down() {
        return Ok(());
    }
    let config = master.config();
    let ids = master.builder_ids();
    let workers = master.workers.availability(
        config
            .builders
            .iter()
            .flat_map(|b| b.workernames.iter().map(String::as_str)),
    );
    let by_name: std::collections::HashMap<&str, &kiln_core::distributor::WorkerAvailability> =
        workers.iter().map(|w| (w.name.as_str(), w)).collect();
    // Only builders with a worker free for them can start anything; for each, only as many requests
    // as it has such workers can start in this pass, so only those are read, all in one query.
    let mut builders = Vec::new();
    let mut wanted = Vec::new();
    for b in &config.builders {
        let Some(id) = ids.get(&b.name).copied() else {
            continue;
        };
        // A worker named twice is still one worker.
        let named: std::collections::BTreeSet<&str> =
            b.workernames.iter().map(String::as_str).collect();
        let free = named
            .into_iter()
            .filter_map(|name| by_name.get(name))
            .filter(|w| w.available && !w.busy_builders.contains(&id))
            .filter(|w| {
                w.max_builds
                    .is_none_or(|m| (w.busy_builders.len() as u32) < m)
            })
            .count();
        if free == 0 {
            continue;
        }
        // nextBuild chooses among all the waiting requests, not just the first few.
        let read = if b.next_build.is_some() {
            NEXT_BUILD_CHOICES
        } else {
            free as i64
        };
        wanted.push((id, read));
        builders.push(BuilderSlots {
            id,
            name: b.name.clone(),
            workers: b.workernames.clone(),
        });
    }
    let rows = master.db.pending_for_builders(&wanted).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let pending: Vec<PendingRequest> = rows
        .iter()
        .map(|r| PendingRequest {
            id: r.id,
            builder: kiln_core::BuilderId(r.builderid),
            priority: r.priority,
            submitted_at: r.submitted_at,
        })
        .collect();
    // The functions see each request's properties and sources, as Buildbot's request objects
    // carry them.
    let mut properties = std::collections::HashMap::new();
    let mut sources = std::collections::HashMap::new();
    for r in &rows {
        let hooked = config.builders.iter().any(|b| {
            ids.get(&b.name).map(|id| id.0) == Some(r.builderid)
                && (b.next_worker.is_some()
                    || b.next_build.is_some()
                    || b.can_start_build.is_some())
        });
        if hooked {
            properties.insert(r.id, master.db.buildset_properties(r.buildsetid).await?);
            sources.insert(r.id, master.db.buildset_sourcestamps(r.buildsetid).await?);
        }
    }
    let idle = workers
        .iter()
        .map(|w| (w.name.clone(), w.busy_builders.is_empty()))
        .collect();
    let hooks = ConfigHooks {
        config: &config,
        properties,
        sources,
        idle,
    };
    for a in distribute_with(&pending, &builders, &workers, &hooks) {
        if !master.workers.reserve(&a.worker, a.builder) {
            continue;
        }
        let (Some(row), Some(builder), Some(workerid)) = (
            rows.iter().find(|r| r.id == a.request).cloned(),
            config
                .builders
                .iter()
                .find(|b| ids.get(&b.name) == Some(&a.builder))
                .cloned(),
            master.workers.id(&a.worker),
        ) else {
            master.workers.release(&a.worker, a.builder);
            continue;
        };
        // Claiming the request and starting its build are one write.
        let started = match master
            .updates
            .claim_and_start_build(a.request, row.buildsetid, a.builder, workerid)
            .await
        {
            Ok(started) => started,
            Err(DbError::AlreadyClaimed(_)) => {
                master.workers.release(&a.worker, a.builder);
                continue;
            }
            Err(e) => {
                master.workers.release(&a.worker, a.builder);
                return Err(e);
            }
        };
        tokio::spawn(crate::builds::runner::run(
            master.clone(),
            row,
            started,
            builder,
            a.builder,
            a.worker,
        ));
    }
    Ok(())
}

/// The configuration's `prioritizeBuilders`, `nextBuild`, `nextWorker` and `canStartBuild`
/// functions. A function that fails is logged and the default is used, so a mistake in one
/// never stops builds.
struct ConfigHooks<'a> {
    config: &'a MasterConfig,
    properties: std::collections::HashMap<BuildRequestId, kiln_core::Properties>,
    sources: std::collections::HashMap<BuildRequestId, Vec<kiln_db::SourceStampRow>>,
    /// Whether each worker runs no build now (`isIdle()`).
    idle: std::collections::HashMap<String, bool>,
}

impl ConfigHooks<'_> {
    fn request(&self, r: &PendingRequest) -> Data {
        request_data(r, self.properties.get(&r.id), self.sources.get(&r.id))
    }

    fn worker(&self, name: &str) -> Data {
        worker_data(name, self.idle.get(name).copied().unwrap_or(true))
    }

    fn builder_fn(
        &self,
        name: &str,
        pick: impl Fn(&kiln_config::BuilderConfig) -> Option<FnRef>,
    ) -> Option<FnRef> {
        self.config
            .builders
            .iter()
            .find(|b| b.name == name)
            .and_then(pick)
    }

    fn call(&self, f: FnRef, what: &str, args: &[Data]) -> Option<Data> {
        match self.config.functions.call(f, args, &[]) {
            Ok(d) => Some(d),
            Err(error) => {
                tracing::error!("{what} failed; using the default:\n{error}");
                None
            }
        }
    }
}

fn builder_data(b: &BuilderSlots) -> Data {
    Data::Object(vec![
        ("name".into(), Data::Str(b.name.clone())),
        ("builderid".into(), Data::Int(b.id.0)),
    ])
}

fn request_data(
    r: &PendingRequest,
    properties: Option<&kiln_core::Properties>,
    sources: Option<&Vec<kiln_db::SourceStampRow>>,
) -> Data {
    let properties = properties
        .map(|p| {
            p.iter()
                .map(|(k, v)| (Data::Str(k.clone()), Data::from(&v.value)))
                .collect()
        })
        .unwrap_or_default();
    // `request.sources`: each codebase's source stamp, as Buildbot's BuildRequest has them.
    let text = |s: &Option<String>| s.clone().map_or(Data::None, Data::Str);
    let sources = sources
        .map(|stamps| {
            stamps
                .iter()
                .map(|ss| {
                    let stamp = Data::Object(vec![
                        ("codebase".into(), Data::Str(ss.codebase.clone())),
                        ("repository".into(), Data::Str(ss.repository.clone())),
                        ("branch".into(), text(&ss.branch)),
                        ("revision".into(), text(&ss.revision)),
                        ("project".into(), Data::Str(ss.project.clone())),
                    ]);
                    (Data::Str(ss.codebase.clone()), stamp)
                })
                .collect()
        })
        .unwrap_or_default();
    Data::Object(vec![
        (
            "properties".into(),
            Data::Wrapped("properties", Box::new(Data::Dict(properties))),
        ),
        ("sources".into(), Data::Dict(sources)),
        ("id".into(), Data::Int(r.id.0)),
        ("buildrequestid".into(), Data::Int(r.id.0)),
        ("priority".into(), Data::Int(r.priority)),
        ("submitted_at".into(), Data::Int(r.submitted_at)),
        ("submittedAt".into(), Data::Int(r.submitted_at)),
    ])
}

/// A worker as Buildbot's `WorkerForBuilder` shows it: `wfb.worker.workername`, `wfb.isIdle()`.
fn worker_data(name: &str, idle: bool) -> Data {
    Data::Wrapped(
        "worker",
        Box::new(Data::Object(vec![
            ("workername".into(), Data::Str(name.into())),
            ("idle".into(), Data::Bool(idle)),
            ("paused".into(), Data::Bool(false)),
            ("properties".into(), Data::Dict(Vec::new())),
        ])),
    )
}

/// The name an object returned by a function stands for.
fn named(d: &Data) -> Option<String> {
    match d {
        Data::Str(s) => Some(s.clone()),
        other => other
            .attr("name")
            .and_then(Data::as_str)
            .map(str::to_string),
    }
}

impl Hooks for ConfigHooks<'_> {
    fn prioritize_builders(&self, builders: &[&BuilderSlots]) -> Option<Vec<kiln_core::BuilderId>> {
        let f = self.config.prioritize_builders?;
        let list = Data::List(builders.iter().map(|b| builder_data(b)).collect());
        match self.call(f, "prioritizeBuilders", &[Data::None, list])? {
            Data::List(items) => Some(
                items
                    .iter()
                    .filter_map(named)
                    .filter_map(|n| builders.iter().find(|b| b.name == n).map(|b| b.id))
                    .collect(),
            ),
            other => {
                tracing::error!(
                    "prioritizeBuilders returned {other:?}, not a list; using the default"
                );
                None
            }
        }
    }

    fn next_build(
        &self,
        builder: &BuilderSlots,
        requests: &[&PendingRequest],
    ) -> Option<Option<BuildRequestId>> {
        let f = self.builder_fn(&builder.name, |b| b.next_build)?;
        let list = Data::List(requests.iter().map(|r| self.request(r)).collect());
        let chosen = self.call(f, "nextBuild", &[builder_data(builder), list])?;
        Some(match chosen {
            Data::None => None,
            other => other.attr("buildrequestid").and_then(|d| match d {
                Data::Int(i) => Some(BuildRequestId(*i)),
                _ => None,
            }),
        })
    }

    fn next_worker(
        &self,
        builder: &BuilderSlots,
        workers: &[&str],
        request: &PendingRequest,
    ) -> Option<Option<String>> {
        let f = self.builder_fn(&builder.name, |b| b.next_worker)?;
        let list = Data::List(workers.iter().map(|w| self.worker(w)).collect());
        let chosen = self.call(
            f,
            "nextWorker",
            &[builder_data(builder), list, self.request(request)],
        )?;
        Some(match chosen {
            Data::None => None,
            other => named(&other),
        })
    }

    fn can_start_build(
        &self,
        builder: &BuilderSlots,
        worker: &str,
        request: &PendingRequest,
    ) -> bool {
        let Some(f) = self.builder_fn(&builder.name, |b| b.can_start_build) else {
            return true;
        };
        self.call(
            f,
            "canStartBuild",
            &[
                builder_data(builder),
                self.worker(worker),
                self.request(request),
            ],
        )
        .is_none_or(|d| d.truthy())
    }
}
