//! Running `SingleBranchScheduler` and `AnyBranchScheduler`: new changes go through each
//! scheduler's filter into its tree-stable timer (`kiln_core::schedulers::basic`), and the timer's
//! decisions become stored classifications and buildsets.
//!
//! The database is the source of truth: the loop reads changes newer than the last it saw (so a
//! change stored by another master, or while an event was missed, is not lost), and a scheduler's
//! classified changes are stored, so its timer starts again after a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_config::{BasicSchedulerConfig, Data, Functions, SchedulerConfig};
use kiln_core::change::Change;
use kiln_core::schedulers::basic::{Basic, Decision};
use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{ChangeId, Properties, SchedulerId};
use kiln_db::listing::{FilterOp, Page, SqlValue};
use kiln_db::{ChangeRow, NewBuildSet};

use crate::master::Master;

/// Changes stored by other masters are noticed at least this often.
const IDLE_PASS: Duration = Duration::from_secs(10);
/// Changes read per query.
const CHANGE_BATCH: i64 = 100;

/// One configured scheduler and its timer state.
struct Running {
    id: SchedulerId,
    config: BasicSchedulerConfig,
    state: Basic,
}

/// The schedulers' state, read when the master starts: timers are armed from stored
/// classifications before the master serves anything, so a restart is deterministic.
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
    loop {
        let deadline = schedulers
            .values()
            .filter_map(|s| s.state.next_deadline())
            .min();
        let clock = master.updates.clock.clone();
        tokio::select! {
            _ = master.schedulers_wake.notified() => {}
            _ = tokio::time::sleep(IDLE_PASS) => {}
            _ = async {
                match deadline {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let current = master.config();
        if !Arc::ptr_eq(&current, &config) {
            config = current;
            schedulers = start(&master, &config, schedulers).await;
        }
        if let Err(error) = pass(&master, &mut schedulers, &mut last_seen).await {
            tracing::error!(%error, "running the change schedulers");
        }
    }
}

/// The configured basic schedulers. One whose configuration is unchanged keeps its running timer;
/// a new or changed one starts from its stored classifications.
async fn start(
    master: &Master,
    config: &kiln_config::MasterConfig,
    mut old: BTreeMap<String, Running>,
) -> BTreeMap<String, Running> {
    let mut out = BTreeMap::new();
    for s in &config.schedulers {
        let SchedulerConfig::Basic(b) = s else {
            continue;
        };
        if let Some(kept) = old.remove(&b.name).filter(|r| r.config == **b) {
            out.insert(b.name.clone(), kept);
            continue;
        }
        match restore(master, b).await {
            Ok(r) => {
                out.insert(b.name.clone(), r);
            }
            Err(error) => {
                tracing::error!(scheduler = %b.name, %error, "starting the scheduler");
            }
        }
    }
    out
}

async fn restore(master: &Master, config: &BasicSchedulerConfig) -> anyhow::Result<Running> {
    let id = master.db.find_scheduler_id(&config.name).await?;
    let mut state = Basic::new(
        config.tree_stable_timer,
        config.per_branch,
        config.only_important,
    );
    let now = master.updates.now();
    for (changeid, important) in master.db.change_classifications(id).await? {
        if let Some(row) = get_change(master, changeid).await? {
            // The classification is stored already; only the timer needs arming.
            let _ = state.got_change(now, &core_change(&row), important);
        }
    }
    Ok(Running {
        id,
        config: config.clone(),
        state,
    })
}

async fn pass(
    master: &Master,
    schedulers: &mut BTreeMap<String, Running>,
    last_seen: &mut i64,
) -> anyhow::Result<()> {
    loop {
        let page = Page {
            filters: vec![kiln_db::listing::Filter {
                column: "changeid",
                op: FilterOp::Gt,
                values: vec![SqlValue::Int(*last_seen)],
            }],
            order: vec![("changeid", false)],
            limit: Some(CHANGE_BATCH),
            offset: None,
        };
        let (rows, _) = master.db.list_changes(&page).await?;
        let config = master.config();
        for row in &rows {
            let change = core_change(row);
            for s in schedulers.values_mut() {
                if !wanted(&config.functions, &s.config, &change) {
                    continue;
                }
                let important = important(&config.functions, &s.config, &change);
                let decisions = s.state.got_change(master.updates.now(), &change, important);
                apply(master, s, decisions).await?;
            }
            *last_seen = row.id.0;
        }
        if (rows.len() as i64) < CHANGE_BATCH {
            break;
        }
    }
    let now = master.updates.now();
    for s in schedulers.values_mut() {
        let decisions = s.state.fire_due(now);
        apply(master, s, decisions).await?;
    }
    Ok(())
}

/// Whether the scheduler's change filter passes the change. A filter function that fails is
/// reported with its traceback and the change is kept: dropping it silently would lose a build.
fn wanted(functions: &Functions, config: &BasicSchedulerConfig, change: &Change) -> bool {
    match config.change_filter.matches(change, functions) {
        Ok(pass) => pass,
        Err(error) => {
            tracing::error!(scheduler = %config.name, change = %change.id, "the change filter failed; the change is kept:\n{error}");
            true
        }
    }
}

/// `fileIsImportant`: without it every change that passes the filter is important; a function
/// that fails is reported with its traceback and the change counts as important.
fn important(functions: &Functions, config: &BasicSchedulerConfig, change: &Change) -> bool {
    let Some(f) = config.file_is_important else {
        return true;
    };
    match functions.call(f, &[Data::change(change)], &[]) {
        Ok(d) => d.truthy(),
        Err(error) => {
            tracing::error!(scheduler = %config.name, change = %change.id, "fileIsImportant failed; the change counts as important:\n{error}");
            true
        }
    }
}

async fn apply(master: &Master, s: &Running, decisions: Vec<Decision>) -> anyhow::Result<()> {
    for d in decisions {
        match d {
            Decision::Classify { change, important } => {
                master.db.classify_change(s.id, change, important).await?;
            }
            Decision::Buildset { changes, forget } => {
                submit(master, &s.config, &changes).await?;
                master.db.flush_classifications(s.id, &forget).await?;
            }
            Decision::Forget(forget) => master.db.flush_classifications(s.id, &forget).await?,
        }
    }
    Ok(())
}

/// Submits a buildset for `changes`: one source stamp per codebase, that of its latest change, as
/// Buildbot does; the changes' properties come along for the builds.
async fn submit(
    master: &Master,
    config: &BasicSchedulerConfig,
    changes: &[ChangeId],
) -> anyhow::Result<()> {
    let mut latest: BTreeMap<String, ChangeRow> = BTreeMap::new();
    let mut properties = Properties::new();
    for id in changes {
        if let Some(row) = get_change(master, *id).await? {
            properties.update(&row.properties);
            latest.insert(row.codebase.clone(), row);
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    for (name, value) in &config.properties {
        properties.set(name.clone(), value.clone(), "Scheduler");
    }
    properties.set("scheduler", config.name.as_str(), "Scheduler");
    let ids = master.builder_ids();
    let buildset = NewBuildSet {
        reason: config
            .reason
            .replace("%(classname)s", &config.class_name)
            .replace("%(name)s", &config.name),
        sourcestamps: latest
            .values()
            .map(|c| SourceStamp {
                codebase: c.codebase.clone(),
                repository: c.repository.clone(),
                branch: c.branch.clone(),
                revision: c.revision.clone(),
                project: c.project.clone(),
                patch: None,
            })
            .collect(),
        properties,
        builders: config
            .builder_names
            .iter()
            .filter_map(|b| ids.get(b).map(|id| (*id, config.priority)))
            .collect(),
        ..Default::default()
    };
    master.updates.add_buildset(buildset).await?;
    master.wake_distributor();
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

async fn get_change(master: &Master, id: ChangeId) -> anyhow::Result<Option<ChangeRow>> {
    let page = Page::eq("changeid", SqlValue::Int(id.0));
    Ok(master.db.list_changes(&page).await?.0.into_iter().next())
}

fn core_change(row: &ChangeRow) -> Change {
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
