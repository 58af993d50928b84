//! Live updates, in Buildbot's two protocols: `/ws` (the WebSocket its front-end uses) and `/sse`
//! (server-sent events, which kiln's own pages use because a browser resumes them by itself).
//!
//! One hub per web port turns each event into its frames once (the resource loaded and shaped,
//! under each of its routing keys) and hands them to every client. Durable events are read from
//! the durable record in commit order, with their position, so that a client that reconnects
//! replays what it missed from there; while no client listens, the record is not read at all.

mod resources;
mod sse;
mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use kiln_api::Services;
use tokio::sync::broadcast;

pub use resources::{Frame, frames};

/// Events buffered for each live client; a client further behind is cut off (and an SSE client
/// reconnects and replays what it missed from the durable record).
const CLIENT_QUEUE: usize = 1024;
/// Durable events read from the record at a time.
const READ_BATCH: i64 = 256;
/// The most subscriptions one client may hold.
pub const MAX_SUBSCRIPTIONS: usize = 1000;

/// One event as live clients receive it: its position in the durable record, if it is kept
/// there, and its frames.
#[derive(Debug)]
pub struct Published {
    pub position: Option<i64>,
    pub frames: Vec<Frame>,
    /// The build the event concerns, found only when the configuration hides some builds from
    /// some users.
    pub concerns: Option<crate::auth::read::Concerned>,
}

impl Published {
    /// Whether a client with `vis` may see the event.
    pub fn visible(&self, vis: &crate::auth::read::Visibility) -> bool {
        self.concerns.as_ref().is_none_or(|c| vis.concerned(c))
    }
}

/// The build (or request) an event's frames concern: a build's or a request's own, a step's
/// build, a log's step's build. Read only when the configuration hides some builds, so that
/// nothing is spent on it otherwise.
async fn concerned(
    read: &dyn kiln_api::ReadSide,
    frames: &[Frame],
) -> Option<crate::auth::read::Concerned> {
    let config = read.config();
    let by_origin = crate::auth::read::hides_origins(&config);
    if !by_origin && !crate::auth::read::hides_builds(&config) {
        return None;
    }
    let m = &frames.first()?.message;
    let db = read.db();
    let build = match (m["buildid"].as_i64(), m["stepid"].as_i64()) {
        (Some(b), _) => Some(b),
        (None, Some(s)) => db
            .get_step(kiln_core::StepId(s))
            .await
            .ok()
            .flatten()
            .map(|s| s.buildid.0),
        (None, None) => None,
    };
    let builder = match (m["builderid"].as_i64(), build) {
        (Some(b), _) => Some(b),
        (None, Some(b)) => db
            .get_build(kiln_core::BuildId(b))
            .await
            .ok()
            .flatten()
            .map(|b| b.builderid.0),
        (None, None) => None,
    }?;
    let origins = match (by_origin, build) {
        (true, Some(b)) => db
            .build_origins(&[kiln_core::BuildId(b)])
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(_, branch, project)| (branch, project))
            .collect(),
        _ => Vec::new(),
    };
    Some(crate::auth::read::Concerned { builder, origins })
}

/// The patterns one SSE stream listens to, shared with `/sse/add` and `/sse/remove`.
pub type StreamPaths = Arc<Mutex<Vec<String>>>;

/// The live event hub of a web port.
#[derive(Clone)]
pub struct Hub {
    services: Services,
    tx: broadcast::Sender<Arc<Published>>,
    /// The subscriptions of `/sse/listen` streams, by their handshake id, for `/sse/add`.
    streams: Arc<Mutex<HashMap<String, StreamPaths>>>,
    /// The lowest position of the durable record that a client joining since the hub last had
    /// none had seen before joining (`i64::MAX`: none joined).
    joined: Arc<AtomicI64>,
}

impl Hub {
    /// Starts the hub's task, which ends when the event bus closes.
    pub fn start(services: Services) -> Hub {
        let (tx, _) = broadcast::channel(CLIENT_QUEUE);
        let joined = Arc::new(AtomicI64::new(i64::MAX));
        tokio::spawn(run(services.clone(), tx.clone(), joined.clone()));
        Hub {
            services,
            tx,
            streams: Arc::default(),
            joined,
        }
    }

    /// A new client's receiver of what the hub publishes from now on.
    pub async fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        // The hub reads nothing while nobody listens; the newest event before this client
        // joined tells it where the client's news start. Read before subscribing, so that every
        // event after it reaches the client.
        let seen = self.services.read.db().newest_event().await.unwrap_or(0);
        self.joined.fetch_min(seen, Ordering::SeqCst);
        self.tx.subscribe()
    }

    /// The durable events after `after`, up to `limit` of them, as clients receive them.
    pub async fn replay(&self, after: i64, limit: i64) -> Result<Vec<Published>, kiln_db::DbError> {
        let read = &self.services.read;
        let mut out = Vec::new();
        for stored in read.db().events_after(after, limit).await? {
            let frames = frames(read.as_ref(), &stored.key).await?;
            out.push(Published {
                position: Some(stored.id),
                concerns: concerned(read.as_ref(), &frames).await,
                frames,
            });
        }
        Ok(out)
    }
}

pub fn router<S: Clone + Send + Sync + 'static>(hub: Hub) -> Router<S> {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/sse/listen", get(sse::listen))
        .route("/sse/listen/{*path}", get(sse::listen_path))
        .route("/sse/add/{uuid}/{*path}", get(sse::add))
        .route("/sse/remove/{uuid}/{*path}", get(sse::remove))
        .with_state(hub)
}

/// Whether a routing key is one a subscription `pattern` asks for: the same number of
/// `/`-separated elements, each equal or matched by `*`.
pub fn matches(pattern: &str, key: &str) -> bool {
    let mut p = pattern.split('/');
    let mut k = key.split('/');
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == "*" || a == b => {}
            _ => return false,
        }
    }
}

async fn run(services: Services, tx: broadcast::Sender<Arc<Published>>, joined: Arc<AtomicI64>) {
    let mut bus = services.events.subscribe();
    let mut position = services.read.db().newest_event().await.unwrap_or(0);
    // Whether durable events went unread because no client was listening.
    let mut skipping = false;
    loop {
        let event = match bus.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => None,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Some(event) = &event
            && !event.is_durable()
        {
            if tx.receiver_count() > 0 {
                publish(&services, &tx, &event.key(), None).await;
            }
            continue;
        }
        // The durable events of one commit arrive together, and one read of the record covers
        // them all; the other events that came with them are published after it.
        let mut others = Vec::new();
        loop {
            match bus.try_recv() {
                Ok(e) if !e.is_durable() => others.push(e),
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        if tx.receiver_count() == 0 {
            // Nobody would receive what the record says: it is not read. Clients that join
            // from now on say where they joined (`Hub::subscribe`).
            if !skipping {
                joined.store(i64::MAX, Ordering::SeqCst);
                skipping = true;
            }
            continue;
        }
        if skipping {
            // What the record got before the first of the clients that joined since is no news
            // to any of them. Without a floor (a join raced with the start of skipping), the
            // skipped events are read and published, which is late but loses nothing.
            let floor = joined.swap(i64::MAX, Ordering::SeqCst);
            if floor != i64::MAX {
                position = position.max(floor);
            }
            skipping = false;
        }
        position = drain(&services, &tx, position).await;
        for e in others {
            if tx.receiver_count() > 0 {
                publish(&services, &tx, &e.key(), None).await;
            }
        }
    }
}

/// Publishes the durable events after `position`, and returns the last one's position.
async fn drain(
    services: &Services,
    tx: &broadcast::Sender<Arc<Published>>,
    mut position: i64,
) -> i64 {
    loop {
        let read = match services.read.db().events_after(position, READ_BATCH).await {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(%error, "reading the durable record for live clients");
                return position;
            }
        };
        let full = read.len() as i64 == READ_BATCH;
        for stored in read {
            position = stored.id;
            if tx.receiver_count() > 0 {
                publish(services, tx, &stored.key, Some(stored.id)).await;
            }
        }
        if !full {
            return position;
        }
    }
}

async fn publish(
    services: &Services,
    tx: &broadcast::Sender<Arc<Published>>,
    key: &str,
    position: Option<i64>,
) {
    match frames(services.read.as_ref(), key).await {
        Ok(frames) if frames.is_empty() && position.is_none() => {}
        Ok(frames) => {
            let concerns = concerned(services.read.as_ref(), &frames).await;
            let _ = tx.send(Arc::new(Published {
                position,
                frames,
                concerns,
            }));
        }
        Err(error) => tracing::error!(%error, key, "loading a resource for live clients"),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_whole_keys_element_by_element() {
        assert!(matches("builds/*/*", "builds/10/new"));
        assert!(!matches("builds/*/*", "builds/10/steps/31/new"));
        assert!(!matches("builds/*/*", "builds/10"));
        assert!(matches(
            "builders/1/builds/*/*",
            "builders/1/builds/4/finished"
        ));
        assert!(!matches(
            "builders/1/builds/*/*",
            "builders/2/builds/4/finished"
        ));
        assert!(matches("logs/5/append", "logs/5/append"));
        assert!(!matches("", "logs/5/append"));
    }
}
