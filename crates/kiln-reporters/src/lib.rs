//! kiln's reporters: who is told what, and how it reaches them.
//!
//! Each reporter of `c['services']` is a component of its own: given the master's read side,
//! event source and outbox ([`kiln_api::Services`]), it decides reports with Buildbot 4's
//! generators ([`generators`]) and formatters ([`formatter`]) from the durable record of
//! events, stores them, and delivers them ([`mail`], [`http_push`]) from that store, so that a
//! receiver that is down or a master that restarts loses nothing ([`reporter`]).
//! [`run`] keeps one task per configured reporter, and restarts a reporter whose configuration
//! a reconfiguration changed; the reporters share one reader of the record ([`feed`]), one
//! cache of the builds it is about ([`cache`]), and one way to the outbox for what they
//! decide ([`store`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kiln_api::Services;
use kiln_config::ReporterConfig;
use tokio::task::{AbortHandle, JoinSet};

pub mod cache;
pub mod data;
pub mod feed;
pub mod formatter;
pub mod generators;
pub mod gerrit;
pub mod hooks;
pub mod http_push;
pub mod irc;
mod jinja;
pub mod mail;
pub mod push;
pub mod report;
pub mod reporter;
pub mod sink;
pub mod store;

/// The reporters' component: runs every configured reporter until it is dropped.
pub fn run(services: Services) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(supervise(services))
}

async fn supervise(services: Services) {
    let mut config = services.read.watch_config();
    // Dropping the set (when this task is stopped) stops every reporter with it.
    let mut tasks = JoinSet::new();
    let mut running: HashMap<String, (ReporterConfig, AbortHandle)> = HashMap::new();
    // The reporters configured at start report what happened since the master started; those
    // a reconfiguration adds, what happens from then on.
    let mut first = Some(services.read.start_position());
    let builds = Arc::new(cache::BuildCache::default());
    let store = Arc::new(store::Store::new(services.clone()));
    tasks.spawn(store.clone().run());
    let feed = Arc::new(feed::Feed::new(
        services.clone(),
        reporter::LINGER,
        builds.clone(),
        store.clone(),
    ));
    tasks.spawn(feed.clone().run());
    loop {
        let wanted = config.borrow_and_update().reporters.clone();
        running.retain(|name, (old, handle)| {
            let keep = wanted.iter().any(|r| r.name == *name && r == old);
            if !keep {
                handle.abort();
                tracing::info!(reporter = %name, "reporter stopped");
            }
            keep
        });
        for r in wanted {
            if running.contains_key(&r.name) {
                continue;
            }
            match reporter::Reporter::new(
                r.clone(),
                services.clone(),
                builds.clone(),
                feed.clone(),
                store.clone(),
                first,
            ) {
                Ok(rep) => {
                    tracing::info!(reporter = %r.name, kind = r.kind.class(), "reporter started");
                    let handle = tasks.spawn(Arc::new(rep).run());
                    running.insert(r.name.clone(), (r, handle));
                }
                Err(error) => {
                    tracing::error!(reporter = %r.name, %error, "the reporter cannot start");
                }
            }
        }
        first = None;
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            Some(done) = tasks.join_next() => {
                if let Err(e) = done && e.is_panic() {
                    tracing::error!("a reporter stopped unexpectedly");
                }
            }
        }
    }
}

/// The receiving end of the requests to a component the reporters share, taken once by the
/// task that serves them.
pub(crate) struct Inbox<T>(std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<T>>>);

impl<T> Inbox<T> {
    pub(crate) fn new(receiver: tokio::sync::mpsc::UnboundedReceiver<T>) -> Inbox<T> {
        Inbox(std::sync::Mutex::new(Some(receiver)))
    }

    /// The receiver, for the first task that asks; `None` for any other.
    pub(crate) fn take(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
