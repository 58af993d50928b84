//! `/ws`: Buildbot's WebSocket protocol. A client sends `startConsuming` and `stopConsuming` with
//! a path pattern, or `ping`, each with an `_id` that the reply echoes; it then receives
//! `{"k": routing key, "m": resource}` for every event matching one of its patterns, once per
//! matching pattern, as Buildbot sends them.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::IntoResponse;
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{Hub, MAX_SUBSCRIPTIONS, Published, matches};

/// The largest frame a client may send: commands are small.
const MAX_CLIENT_FRAME: usize = 64 << 10;

/// Opens a socket. A session cookie that names nobody refuses it, as Buildbot does: pages
/// replace such a cookie before they open their socket, so only a client holding a changed or
/// ended session gets here with one.
pub async fn upgrade(
    State(hub): State<Hub>,
    identity: crate::auth::Identity,
    ws: WebSocketUpgrade,
) -> Response {
    if identity.how == crate::auth::How::BadSession {
        return (
            axum::http::StatusCode::FORBIDDEN,
            "the session cookie is not valid: log in again\n",
        )
            .into_response();
    }
    ws.max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| {
            let vis = crate::auth::read::Visibility::of(&hub.services, &identity.actor);
            serve(hub, vis, socket)
        })
}

async fn serve(hub: Hub, vis: crate::auth::read::Visibility, mut socket: WebSocket) {
    let mut events = hub.subscribe().await;
    let mut paths: Vec<String> = Vec::new();
    // `ws_ping_interval`: pings keep a socket that carries nothing for a while open through
    // proxies that close idle connections.
    let every = hub.services.read.config().www.ws_ping_interval;
    let mut ping = tokio::time::interval(std::time::Duration::from_secs(every.max(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.reset();
    loop {
        tokio::select! {
            _ = ping.tick(), if every > 0 => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { return };
                let text = match message {
                    Message::Text(t) => t,
                    Message::Close(_) => return,
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Binary(_) => {
                        close(&mut socket, close_code::UNSUPPORTED, "commands are JSON text frames").await;
                        return;
                    }
                };
                let Ok(Value::Object(command)) = serde_json::from_str::<Value>(&text) else {
                    close(&mut socket, close_code::INVALID, "a command must be a JSON object").await;
                    return;
                };
                let reply = answer(&mut paths, command);
                if socket.send(Message::Text(reply.into())).await.is_err() {
                    return;
                }
            }
            event = events.recv() => match event {
                Ok(published) if !published.visible(&vis) => {}
                Ok(published) => {
                    if send_matching(&mut socket, &paths, &published).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    let why = format!("too slow: {missed} events were missed");
                    close(&mut socket, close_code::AGAIN, &why).await;
                    return;
                }
                Err(RecvError::Closed) => {
                    close(&mut socket, close_code::AWAY, "the master is stopping").await;
                    return;
                }
            }
        }
    }
}

/// Sends the event's frames that a subscription asks for, one per matching subscription.
async fn send_matching(
    socket: &mut WebSocket,
    paths: &[String],
    published: &Arc<Published>,
) -> Result<(), axum::Error> {
    for frame in &published.frames {
        for path in paths {
            if matches(path, &frame.key) {
                let text = json!({"k": frame.key, "m": frame.message}).to_string();
                socket.send(Message::Text(text.into())).await?;
            }
        }
    }
    Ok(())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// The reply to one command, with Buildbot's wording and codes.
fn answer(paths: &mut Vec<String>, mut command: Map<String, Value>) -> String {
    let Some(cmd) = command.remove("cmd") else {
        return error("no 'cmd' in websocket frame", 400, &Value::Null);
    };
    let Some(id) = command.remove("_id") else {
        return error("no '_id' or 'type' in websocket frame", 400, &Value::Null);
    };
    let cmd = cmd.as_str().unwrap_or_default().to_string();
    let path = command.remove("path");
    if let Some(extra) = command.keys().next() {
        let why = format!("Invalid method argument: {cmd} takes no argument '{extra}'");
        return error(&why, 400, &id);
    }
    match (cmd.as_str(), path) {
        ("ping", None) => ok("pong", &id),
        ("startConsuming" | "stopConsuming", None) => error(
            &format!("Invalid method argument: {cmd} needs a 'path'"),
            400,
            &id,
        ),
        ("startConsuming" | "stopConsuming", Some(Value::String(path))) => {
            if cmd == "startConsuming" {
                start(paths, path, &id)
            } else {
                stop(paths, &path, &id)
            }
        }
        ("startConsuming" | "stopConsuming", Some(other)) => {
            error(&format!("invalid path format '{other}'"), 400, &id)
        }
        ("ping", Some(_)) => error(
            "Invalid method argument: ping takes no argument 'path'",
            400,
            &id,
        ),
        (other, _) => error(&format!("no such command type '{other}'"), 404, &id),
    }
}

fn start(paths: &mut Vec<String>, path: String, id: &Value) -> String {
    if !paths.contains(&path) {
        if paths.len() >= MAX_SUBSCRIPTIONS {
            let why = format!("too many subscriptions: at most {MAX_SUBSCRIPTIONS}");
            return error(&why, 400, id);
        }
        paths.push(path);
    }
    ok("OK", id)
}

fn stop(paths: &mut Vec<String>, path: &str, id: &Value) -> String {
    match paths.iter().position(|p| p == path) {
        Some(i) => {
            paths.remove(i);
            ok("OK", id)
        }
        None => error(&format!("path was not consumed '{path}'"), 400, id),
    }
}

fn ok(msg: &str, id: &Value) -> String {
    format!("{{\"msg\":{},\"code\":200,\"_id\":{id}}}", Value::from(msg))
}

fn error(message: &str, code: u16, id: &Value) -> String {
    format!(
        "{{\"error\":{},\"code\":{code},\"_id\":{id}}}",
        Value::from(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(paths: &mut Vec<String>, frame: &str) -> String {
        let Value::Object(command) = serde_json::from_str(frame).unwrap() else {
            panic!("not an object");
        };
        answer(paths, command)
    }

    #[test]
    fn commands_are_answered_as_buildbot_answers_them() {
        let mut paths = Vec::new();
        let p = &mut paths;
        assert_eq!(
            send(p, r#"{"cmd":"ping","_id":1}"#),
            r#"{"msg":"pong","code":200,"_id":1}"#
        );
        let start = r#"{"cmd":"startConsuming","path":"builds/*/*","_id":2}"#;
        assert_eq!(send(p, start), r#"{"msg":"OK","code":200,"_id":2}"#);
        assert_eq!(send(p, start), r#"{"msg":"OK","code":200,"_id":2}"#);
        assert_eq!(p.len(), 1);
        let stop = r#"{"cmd":"stopConsuming","path":"builds/*/*","_id":4}"#;
        assert_eq!(send(p, stop), r#"{"msg":"OK","code":200,"_id":4}"#);
        assert_eq!(
            send(p, stop),
            r#"{"error":"path was not consumed 'builds/*/*'","code":400,"_id":4}"#
        );
        assert_eq!(
            send(p, r#"{"cmd":"startConsuming","path":123,"_id":6}"#),
            r#"{"error":"invalid path format '123'","code":400,"_id":6}"#
        );
        assert!(send(p, r#"{"cmd":"startConsuming","_id":7}"#).contains(r#""code":400,"_id":7"#));
        assert_eq!(
            send(p, r#"{"cmd":"frobnicate","_id":8}"#),
            r#"{"error":"no such command type 'frobnicate'","code":404,"_id":8}"#
        );
        assert_eq!(
            send(p, r#"{"_id":9}"#),
            r#"{"error":"no 'cmd' in websocket frame","code":400,"_id":null}"#
        );
        assert_eq!(
            send(p, r#"{"cmd":"ping"}"#),
            r#"{"error":"no '_id' or 'type' in websocket frame","code":400,"_id":null}"#
        );
        assert!(send(p, r#"{"cmd":"ping","_id":10,"extra":1}"#).contains(r#""code":400,"_id":10"#));
        assert_eq!(
            send(p, r#"{"cmd":"ping","_id":"x"}"#),
            r#"{"msg":"pong","code":200,"_id":"x"}"#
        );
    }
}
