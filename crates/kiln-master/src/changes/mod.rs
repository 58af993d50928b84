//! Change sources: the pollers of `c['change_source']`.
//!
//! Each poller runs as its own task: it polls at its interval on the master's clock (and at once
//! with `pollAtLaunch`), or when the `poller` change hook asks. Its state (the last revision of
//! each branch) is kept in `object_state` under its name, as Buildbot does, and written after
//! the changes it found; a change already stored (the same repository, branch and revision) is
//! not stored twice, so a restart between the two neither loses nor repeats a change. A poll that
//! fails (an unreachable repository, a tool error) is logged, keeps the state, and is retried at
//! the next interval.

mod command;
mod git;
mod hg;
mod svn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_config::{ChangeSourceConfig, MasterConfig};
use kiln_core::ChangeId;
use kiln_db::NewChange;
use kiln_db::listing::{Page, SqlValue};
use tokio::sync::{mpsc, oneshot, watch};

use crate::master::Master;

/// A request for an immediate poll, answered with the ids of the changes it stored.
type Poke = oneshot::Sender<Result<Vec<ChangeId>, String>>;

/// The running pollers, by name.
#[derive(Default)]
pub struct Pollers {
    running: Mutex<HashMap<String, RunningPoller>>,
    /// Pollers run only once the master serves: changes found before the schedulers read their
    /// starting point would be missed.
    started: std::sync::atomic::AtomicBool,
}

struct RunningPoller {
    config: ChangeSourceConfig,
    pokes: mpsc::Sender<Poke>,
    stop: watch::Sender<bool>,
}

impl Pollers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningPoller>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The names of the running pollers.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// Asks a poller to poll now; `None` if no poller has that name.
    pub fn poke(&self, name: &str) -> Option<oneshot::Receiver<Result<Vec<ChangeId>, String>>> {
        let sender = self.lock().get(name)?.pokes.clone();
        let (tx, rx) = oneshot::channel();
        // A full queue means polls are pending already; this one rides along with them.
        match sender.try_send(tx) {
            Ok(()) => Some(rx),
            Err(mpsc::error::TrySendError::Full(tx)) => {
                let _ = tx.send(Ok(Vec::new()));
                Some(rx)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// Starts the configured pollers: one whose configuration is unchanged keeps running, the
    /// others are stopped and started anew.
    pub fn configure(&self, master: &Arc<Master>, config: &MasterConfig) {
        if !self.started.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut running = self.lock();
        let wanted: HashMap<&str, &ChangeSourceConfig> = config
            .change_sources
            .iter()
            .map(|c| (c.common().name.as_str(), c))
            .collect();
        running.retain(|name, p| {
            let keep = wanted.get(name.as_str()).is_some_and(|c| **c == p.config);
            if !keep {
                p.stop.send_replace(true);
            }
            keep
        });
        for (name, c) in wanted {
            if running.contains_key(name) {
                continue;
            }
            let (pokes, rx) = mpsc::channel(16);
            let (stop, stop_rx) = watch::channel(false);
            tokio::spawn(run(master.clone(), c.clone(), rx, stop_rx));
            running.insert(
                name.to_string(),
                RunningPoller {
                    config: c.clone(),
                    pokes,
                    stop,
                },
            );
        }
    }

    /// Starts polling with the master's current configuration.
    pub fn start(&self, master: &Arc<Master>) {
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.configure(master, &master.config());
    }

    /// Stops every poller.
    pub fn stop_all(&self) {
        self.started
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for p in self.lock().values() {
            p.stop.send_replace(true);
        }
    }
}

/// What a poller remembers between polls.
enum State {
    Git(git::LastRev),
    Hg(hg::LastRev),
    Svn(Option<i64>),
}

const LAST_REV: &str = "lastRev";
const LAST_CHANGE: &str = "last_change";

async fn run(
    master: Arc<Master>,
    config: ChangeSourceConfig,
    mut pokes: mpsc::Receiver<Poke>,
    mut stop: watch::Receiver<bool>,
) {
    let common = config.common().clone();
    let objectid = match master
        .updates
        .object_id(&common.name, &common.class_name)
        .await
    {
        Ok(id) => id,
        Err(error) => {
            tracing::error!(poller = %common.name, %error, "cannot start the poller");
            return;
        }
    };
    let mut state = match load(&master, objectid, &config).await {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(poller = %common.name, %error, "cannot read the poller's state");
            return;
        }
    };
    let clock = master.updates.clock.clone();
    let mut next = if common.poll_at_launch {
        master.updates.now()
    } else {
        master.updates.now() + common.poll_interval
    };
    loop {
        let reply = tokio::select! {
            _ = clock.sleep_until(next) => None,
            poke = pokes.recv() => match poke {
                Some(p) => Some(p),
                None => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let result = poll_once(&master, objectid, &config, &mut state).await;
        if let Err(error) = &result {
            tracing::error!(poller = %common.name, "polling failed; retrying at the next interval: {error}");
        }
        if reply.is_none() {
            next = master.updates.now() + common.poll_interval;
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

async fn load(
    master: &Master,
    objectid: i64,
    config: &ChangeSourceConfig,
) -> anyhow::Result<State> {
    let key = match config {
        ChangeSourceConfig::Svn(_) => LAST_CHANGE,
        _ => LAST_REV,
    };
    let stored = master.db.get_state(objectid, key).await?;
    let value: serde_json::Value = match stored {
        Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(%e, "ignoring a poller state that is not JSON");
            serde_json::Value::Null
        }),
        None => serde_json::Value::Null,
    };
    let revs = || -> std::collections::BTreeMap<String, String> {
        serde_json::from_value(value.clone()).unwrap_or_default()
    };
    Ok(match config {
        ChangeSourceConfig::Git(_) => State::Git(revs()),
        ChangeSourceConfig::Hg(_) => State::Hg(revs()),
        ChangeSourceConfig::Svn(_) => State::Svn(value.as_i64()),
    })
}

/// One poll: the tool is asked, new changes are stored, then the state.
async fn poll_once(
    master: &Master,
    objectid: i64,
    config: &ChangeSourceConfig,
    state: &mut State,
) -> Result<Vec<ChangeId>, String> {
    let now = master.updates.now();
    let functions = master.config().functions.clone();
    let basedir = master.basedir.as_path();
    let (changes, key, value) = match (config, state) {
        (ChangeSourceConfig::Git(c), State::Git(last)) => {
            let mut next = last.clone();
            let changes = git::poll(c, basedir, &functions, &mut next, now).await?;
            let value = serde_json::json!(next);
            *last = next;
            (changes, LAST_REV, value)
        }
        (ChangeSourceConfig::Hg(c), State::Hg(last)) => {
            let mut next = last.clone();
            let changes = hg::poll(c, basedir, &mut next, now).await?;
            let value = serde_json::json!(next);
            *last = next;
            (changes, LAST_REV, value)
        }
        (ChangeSourceConfig::Svn(c), State::Svn(last)) => {
            let mut next = *last;
            let changes = svn::poll(c, basedir, &functions, &mut next, now).await?;
            let value = serde_json::json!(next);
            *last = next;
            (changes, LAST_CHANGE, value)
        }
        _ => return Err("the poller's state does not match its kind".into()),
    };
    let mut ids = Vec::new();
    for change in &changes {
        if already_stored(master, change)
            .await
            .map_err(|e| e.to_string())?
        {
            continue;
        }
        ids.push(
            master
                .add_change(change.clone())
                .await
                .map_err(|e| format!("storing a change: {e}"))?,
        );
    }
    master
        .updates
        .set_state(objectid, key, &value.to_string())
        .await
        .map_err(|e| format!("storing the poller's state: {e}"))?;
    if !ids.is_empty() {
        master.wake_schedulers();
    }
    Ok(ids)
}

/// Whether a change with the same repository, branch and revision is stored already.
async fn already_stored(master: &Master, change: &NewChange) -> anyhow::Result<bool> {
    let Some(revision) = &change.revision else {
        return Ok(false);
    };
    let page = Page::eq("revision", SqlValue::Text(revision.clone()));
    let (rows, _) = master.db.list_changes(&page).await?;
    Ok(rows
        .iter()
        .any(|r| r.repository == change.repository && r.branch == change.branch))
}
