//! Running the schedulers that wait for changes or for a time: `SingleBranchScheduler`,
//! `AnyBranchScheduler`, `Periodic` and `Nightly`.
//!
//! The database is the source of truth: the loop reads changes newer than the last it saw (so a
//! change stored by another master, or while an event was missed, is not lost), and what each
//! scheduler must remember (classified changes, its last build) is stored, so a restart picks up
//! where it stopped. Each pass hands new changes to every scheduler whose codebases, filter and
//! `fileIsImportant` accept them, then fires the timers that are due on the injected clock.

use crate::events::Event;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_config::{BasicSchedulerConfig, CodebaseDefault, Data, Functions, SchedulerConfig};
use kiln_core::change::Change;
use kiln_core::changefilter::ChangeFilter;
use kiln_core::changefilter::FnRef;
use kiln_db::ChangeRow;
use kiln_db::listing::Page;

use super::basic::BasicScheduler;
use super::dependent::DependentScheduler;
use super::timed::TimedScheduler;
use crate::master::Master;

/// Changes stored by other masters are noticed at least this often.
const IDLE_PASS: Duration = Duration::from_secs(10);
/// Changes read per query.
const CHANGE_BATCH: i64 = 100;

/// One running scheduler.
enum Running {
    Basic(Box<BasicScheduler>),
    Timed(Box<TimedScheduler>),
    Dependent(Box<DependentScheduler>),
}

impl Running {
    fn next_deadline(&self) -> Option<i64> {
        match self {
            Running::Basic(b) => b.next_deadline(),
            Running::Timed(t) => t.next_deadline(),
            Running::Dependent(_) => None,
        }
    }

    /// Whether the configuration is the one this scheduler runs with.
    fn runs(&self, config: &SchedulerConfig) -> bool {
        match (self, config) {
            (Running::Basic(b), SchedulerConfig::Basic(c)) => b.config == **c,
            (Running::Timed(t), SchedulerConfig::Timed(c)) => t.config == **c,
            (Running::Dependent(d), SchedulerConfig::Dependent(c)) => d.config == **c,
            _ => false,
        }
    }
}

/// What decides whether a change is for a scheduler.
pub struct Interest<'a> {
    pub name: &'a str,
    pub codebases: &'a [CodebaseDefault],
    pub filter: &'a ChangeFilter,
    pub file_is_important: Option<FnRef>,
}

impl Interest<'_> {
    pub fn of_basic(c: &BasicSchedulerConfig) -> Interest<'_> {
        Interest {
            name: &c.name,
            codebases: &c.codebases,
            filter: &c.change_filter,
            file_is_important: c.file_is_important,
        }
    }

    /// `None` if the change is not for the scheduler, else whether it is important.
    ///
    /// A change of a codebase the scheduler does not build is not for it, as in Buildbot. A filter
    /// function or `fileIsImportant` that fails is logged with its Starlark traceback and the
    /// change is kept: it passes, and counts as important, so an error never loses a build.
    pub fn judge(&self, functions: &Functions, change: &Change) -> Option<bool> {
        if !self.codebases.iter().any(|cb| cb.name == change.codebase) {
            tracing::debug!(scheduler = %self.name, change = %change.id, codebase = %change.codebase, "the change's codebase is not built by this scheduler");
            return None;
        }
        match self.filter.matches(change, functions) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                tracing::error!(scheduler = %self.name, change = %change.id, "the change filter failed; the change is kept:\n{error}");
            }
        }
        let Some(f) = self.file_is_important else {
            return Some(true);
        };
        match functions.call(f, &[Data::change(change)], &[]) {
            Ok(d) => Some(d.truthy()),
            Err(error) => {
                tracing::error!(scheduler = %self.name, change = %change.id, "fileIsImportant failed; the change counts as important:\n{error}");
                Some(true)
            }
        }
    }
}

/// The schedulers' state, read when the master starts: timers are armed from stored state
/// before the master serves anything, so a restart is deterministic.
pub struct Prepared {
    last_seen: i64,
    schedulers: BTreeMap<String, Running>,
}

pub async fn prepare(master: &Master) -> anyhow::Result<Prepared> {
    let last_seen = latest_change(master).await?;
    let schedulers = start(master, &master.config(), BTreeMap::new()).await;
    Ok(Prepared {
        last_seen,
        schedulers,
    })
}

pub async fn run(master: Arc<Master>, prepared: Prepared) {
    let mut shutdown = master.shutdown_signal();
    let Prepared {
        mut last_seen,
        mut schedulers,
    } = prepared;
    let mut config = master.config();
    // Dependent schedulers follow buildsets: their events wake the loop too.
    let mut events = master.events.subscribe();
    loop {
        let deadline = schedulers.values().filter_map(Running::next_deadline).min();
        let follows_buildsets = schedulers
            .values()
            .any(|s| matches!(s, Running::Dependent(_)));
        let clock = master.updates.clock.clone();
        let now = master.updates.now();
        // A deadline already reached is handled at once, without waiting for a wake-up.
        if deadline.is_none_or(|d| d > now) {
            tokio::select! {
                _ = master.schedulers_wake.notified() => {}
                _ = tokio::time::sleep(IDLE_PASS) => {}
                _ = async {
                    match deadline {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = buildset_event(&mut events), if follows_buildsets => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        if *shutdown.borrow() {
            break;
        }
        let current = master.config();
        if !Arc::ptr_eq(&current, &config) {
            config = current;
            schedulers = start(&master, &config, schedulers).await;
        }
        if let Err(error) = pass(&master, &mut schedulers, &mut last_seen).await {
            tracing::error!(%error, "running the schedulers");
            // A failing database is not retried in a tight loop.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    }
}

/// Waits for a buildset to be added or completed; a lost event counts, since the pass reads the
/// database anyway.
async fn buildset_event(events: &mut tokio::sync::broadcast::Receiver<Arc<Event>>) {
    loop {
        match events.recv().await {
            Ok(e)
                if matches!(
                    *e,
                    Event::BuildsetNew { .. }
                        | Event::BuildsetComplete { .. }
                        | Event::BuildsetFirstFailure { .. }
                ) =>
            {
                return;
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                std::future::pending::<()>().await
            }
        }
    }
}

/// The configured schedulers. One whose configuration is unchanged keeps running as it was; a
/// new or changed one starts from its stored state.
async fn start(
    master: &Master,
    config: &kiln_config::MasterConfig,
    mut old: BTreeMap<String, Running>,
) -> BTreeMap<String, Running> {
    let mut out = BTreeMap::new();
    for s in &config.schedulers {
        let name = s.name();
        if let Some(kept) = old.remove(name).filter(|r| r.runs(s)) {
            out.insert(name.to_string(), kept);
            continue;
        }
        let restored = match s {
            SchedulerConfig::Basic(b) => BasicScheduler::restore(master, b)
                .await
                .map(|b| Running::Basic(Box::new(b))),
            SchedulerConfig::Timed(t) => TimedScheduler::restore(master, t)
                .await
                .map(|t| Running::Timed(Box::new(t))),
            SchedulerConfig::Dependent(d) => DependentScheduler::restore(master, d)
                .await
                .map(|d| Running::Dependent(Box::new(d))),
            SchedulerConfig::Force(_)
            | SchedulerConfig::Triggerable(_)
            | SchedulerConfig::Try(_) => {
                continue;
            }
        };
        match restored {
            Ok(r) => {
                out.insert(name.to_string(), r);
            }
            Err(error) => {
                tracing::error!(scheduler = %name, %error, "starting the scheduler");
            }
        }
    }
    out
}

async fn pass(
    master: &Master,
    schedulers: &mut BTreeMap<String, Running>,
    last_seen: &mut i64,
) -> anyhow::Result<()> {
    let disabled = master.db.disabled_schedulers().await?;
    loop {
        let rows = master
            .db
            .changes_after(kiln_core::ChangeId(*last_seen), CHANGE_BATCH)
            .await?;
        let config = master.config();
        for row in &rows {
            let change = core_change(row);
            for (name, s) in schedulers.iter_mut() {
                // A disabled scheduler does not see changes, as in Buildbot.
                if disabled.contains(name) {
                    continue;
                }
                match s {
                    Running::Basic(b) => {
                        b.got_change(master, &config.functions, &change, row)
                            .await?
                    }
                    Running::Timed(t) => t.got_change(master, &config.functions, &change).await?,
                    Running::Dependent(_) => {}
                }
            }
            *last_seen = row.id.0;
        }
        if (rows.len() as i64) < CHANGE_BATCH {
            break;
        }
    }
    let now = master.updates.now();
    for (name, s) in schedulers.iter_mut() {
        // A disabled scheduler keeps time but builds nothing.
        let enabled = !disabled.contains(name);
        match s {
            Running::Basic(b) => b.fire_due(master, now, enabled).await?,
            Running::Timed(t) => t.fire_due(master, now, enabled).await?,
            Running::Dependent(d) => d.check(master, enabled).await?,
        }
    }
    Ok(())
}

async fn latest_change(master: &Master) -> anyhow::Result<i64> {
    let page = Page {
        order: vec![("changeid", true)],
        limit: Some(1),
        ..Page::default()
    };
    Ok(master
        .db
        .list_changes(&page)
        .await?
        .0
        .first()
        .map_or(0, |c| c.id.0))
}

pub fn core_change(row: &ChangeRow) -> Change {
    Change {
        id: row.id,
        author: row.author.clone(),
        committer: row.committer.clone(),
        files: row.files.clone(),
        comments: row.comments.clone(),
        revision: row.revision.clone(),
        when: row.when_timestamp,
        branch: row.branch.clone(),
        category: row.category.clone(),
        project: row.project.clone(),
        repository: row.repository.clone(),
        codebase: row.codebase.clone(),
        revlink: row.revlink.clone(),
        properties: row.properties.clone(),
    }
}
