//! `/sse`: Buildbot's server-sent events. `GET /sse/listen/<pattern>` streams a `handshake` event
//! with the stream's id, then an `event` for each matching routing key; `/sse/add/<id>/<pattern>`
//! and `/sse/remove/<id>/<pattern>` change what a stream listens to.
//!
//! kiln adds two things Buildbot lacks. `GET /sse/listen?path=A&path=B` listens to several
//! patterns in one stream, so a page needs one connection. Each durable event carries its
//! position as the event's `id`, and a browser that reconnects sends it back as `Last-Event-ID`:
//! the stream then first replays, from the durable record, the events the browser missed.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::{Hub, MAX_SUBSCRIPTIONS, Published, StreamPaths, matches};

/// Events queued for a slow browser before the stream waits for it.
const STREAM_QUEUE: usize = 64;
/// Durable events replayed per read.
const REPLAY_BATCH: i64 = 256;
/// A comment sent when nothing else was, so that proxies keep an idle stream open.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub async fn listen(
    State(hub): State<Hub>,
    identity: crate::auth::Identity,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match query_paths(query.as_deref()) {
        Ok(paths) => stream(hub, &identity, &headers, paths),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

pub async fn listen_path(
    State(hub): State<Hub>,
    identity: crate::auth::Identity,
    Path(path): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match query_paths(query.as_deref()) {
        Ok(mut paths) => {
            paths.insert(0, path);
            stream(hub, &identity, &headers, paths)
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

pub async fn add(State(hub): State<Hub>, Path((uuid, path)): Path<(String, String)>) -> Response {
    let Some(paths) = lookup(&hub, &uuid) else {
        return text(StatusCode::BAD_REQUEST, "unknown uuid");
    };
    let mut paths = paths.lock().unwrap_or_else(|p| p.into_inner());
    if !paths.contains(&path) {
        if paths.len() >= MAX_SUBSCRIPTIONS {
            return text(StatusCode::BAD_REQUEST, "too many subscriptions");
        }
        paths.push(path);
    }
    text(StatusCode::OK, "ok")
}

pub async fn remove(
    State(hub): State<Hub>,
    Path((uuid, path)): Path<(String, String)>,
) -> Response {
    let Some(paths) = lookup(&hub, &uuid) else {
        return text(StatusCode::BAD_REQUEST, "unknown uuid");
    };
    let mut paths = paths.lock().unwrap_or_else(|p| p.into_inner());
    match paths.iter().position(|p| *p == path) {
        Some(i) => {
            paths.remove(i);
            text(StatusCode::OK, "ok")
        }
        None => text(
            StatusCode::NOT_FOUND,
            "consumer is not listening to this event",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn lookup(hub: &Hub, uuid: &str) -> Option<StreamPaths> {
    hub.streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(uuid)
        .cloned()
}

/// The `path=` arguments of kiln's several-pattern form.
fn query_paths(query: Option<&str>) -> Result<Vec<String>, String> {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
        .map_err(|e| format!("the query string is malformed: {e}\n"))?;
    let mut paths = Vec::new();
    for (k, v) in pairs {
        if k != "path" {
            return Err(format!("unknown argument '{k}': only path= is taken\n"));
        }
        paths.push(v);
    }
    if paths.len() > MAX_SUBSCRIPTIONS {
        return Err(format!("too many paths: at most {MAX_SUBSCRIPTIONS}\n"));
    }
    Ok(paths)
}

/// The position a reconnecting browser last received.
fn last_event_id(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn stream(
    hub: Hub,
    identity: &crate::auth::Identity,
    headers: &HeaderMap,
    paths: Vec<String>,
) -> Response {
    let vis = crate::auth::read::Visibility::of(&hub.services, &identity.actor);
    let uuid = handshake_id();
    let paths = Arc::new(Mutex::new(paths));
    hub.streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(uuid.clone(), paths.clone());
    let resume = last_event_id(headers);
    let (tx, rx) = mpsc::channel::<Event>(STREAM_QUEUE);
    tokio::spawn(feed(hub, vis, uuid, paths, resume, tx));
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE))
        .into_response()
}

/// Forgets a stream's subscriptions when its feed ends.
struct Registered {
    hub: Hub,
    uuid: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.hub
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.uuid);
    }
}

/// Feeds one stream until the browser goes away or falls too far behind.
async fn feed(
    hub: Hub,
    vis: crate::auth::read::Visibility,
    uuid: String,
    paths: StreamPaths,
    resume: Option<i64>,
    tx: mpsc::Sender<Event>,
) {
    let _registered = Registered {
        hub: hub.clone(),
        uuid: uuid.clone(),
    };
    // Subscribed before the replay reads the record, so nothing falls between the two.
    let mut live = hub.subscribe().await;
    if tx
        .send(Event::default().event("handshake").data(uuid))
        .await
        .is_err()
    {
        return;
    }
    let mut replayed = resume.unwrap_or(i64::MAX);
    if let Some(after) = resume {
        replayed = after;
        loop {
            let batch = match hub.replay(replayed, REPLAY_BATCH).await {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(%error, "replaying the durable record to a live stream");
                    return;
                }
            };
            if batch.is_empty() {
                break;
            }
            for published in batch {
                replayed = published.position.unwrap_or(replayed);
                if published.visible(&vis) && !send(&tx, &paths, &published).await {
                    return;
                }
            }
        }
    }
    loop {
        match live.recv().await {
            Ok(published) => {
                // Already sent by the replay.
                if resume.is_some() && published.position.is_some_and(|p| p <= replayed) {
                    continue;
                }
                if !published.visible(&vis) {
                    continue;
                }
                if !send(&tx, &paths, &published).await {
                    return;
                }
            }
            // The browser reconnects with its last position and replays what it missed.
            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
        }
    }
}

/// Sends the frames the stream listens to; false once the browser is gone.
async fn send(tx: &mpsc::Sender<Event>, paths: &Mutex<Vec<String>>, published: &Published) -> bool {
    let wanted: Vec<Event> = {
        let paths = paths.lock().unwrap_or_else(|p| p.into_inner());
        published
            .frames
            .iter()
            .filter(|f| paths.iter().any(|p| matches(p, &f.key)))
            .map(|f| {
                let key: Vec<&str> = f.key.split('/').collect();
                let data = json!({"key": key, "message": f.message}).to_string();
                let event = Event::default().event("event").data(data);
                match published.position {
                    Some(p) => event.id(p.to_string()),
                    None => event,
                }
            })
            .collect()
    };
    for event in wanted {
        if tx.send(event).await.is_err() {
            return false;
        }
    }
    true
}

/// A random id in the form of a version 4 UUID, as Buildbot's handshake gives.
fn handshake_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness the id need only be unique among this master's streams.
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b[..8].copy_from_slice(&n.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
