//! The worker port: HTTP Basic authentication on the WebSocket upgrade, then the connection loop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use kiln_api::credentials::same_secret;
use kiln_proto::{Message, decode};
use tokio::sync::mpsc;

use crate::master::Master;
use crate::workers::connection::{Connection, Outgoing, Protocol};

/// The largest frame a worker may send: a transfer block or an output batch is far smaller.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// The read and write buffers a connection starts with; they grow for larger frames.
/// The WebSocket library's default (128 KiB each) would cost a quarter of a megabyte for every idle
/// worker.
const SOCKET_BUFFER_BYTES: usize = 16 << 10;
/// Frames queued for a worker before senders wait.
const OUTGOING_QUEUE: usize = 256;
/// How long the master waits to finish the closing handshake with a peer before dropping it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub fn router(master: Arc<Master>) -> Router {
    Router::new().fallback(upgrade).with_state(master)
}

/// Why an upgrade was refused.
fn refuse(status: StatusCode, why: &str) -> Response {
    (status, why.to_string()).into_response()
}

async fn upgrade(
    State(master): State<Arc<Master>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let mut auths = headers.get_all("authorization").iter();
    let Some(auth) = auths.next() else {
        return refuse(StatusCode::UNAUTHORIZED, "authentication required");
    };
    // Two headers could be read differently by a proxy in front and by the master.
    if auths.next().is_some() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "more than one Authorization header",
        );
    }
    let ip = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|p| p.0.ip());
    // An address that failed too often waits before each answer, whatever the answer.
    if let Some(ip) = ip {
        tokio::time::sleep(master.workers.guard.delay(ip)).await;
    }
    let refused = |name: &str, why: &str| {
        if let Some(ip) = ip {
            master
                .workers
                .guard
                .failed(ip, name, why, std::time::Instant::now());
        }
        refuse(StatusCode::UNAUTHORIZED, "unknown worker or wrong password")
    };
    let Some(encoded) = auth.to_str().ok().and_then(|v| v.strip_prefix("Basic ")) else {
        return refuse(StatusCode::BAD_REQUEST, "malformed Authorization header");
    };
    let Some(decoded) = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return refuse(StatusCode::BAD_REQUEST, "malformed Authorization header");
    };
    let Some((name, password)) = decoded.split_once(':') else {
        return refuse(StatusCode::BAD_REQUEST, "malformed Authorization header");
    };
    let Some(expected) = master.workers.password(name) else {
        return refused(name, "unknown worker");
    };
    if !same_secret(expected.as_bytes(), password.as_bytes()) {
        return refused(name, "wrong password");
    }
    if let Some(ip) = ip {
        master.workers.guard.succeeded(ip);
    }
    let Ok(ws) = ws else {
        return refuse(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    };
    let name = name.to_string();
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .on_upgrade(move |socket| serve(master, name, socket))
}

async fn serve(master: Arc<Master>, name: String, socket: WebSocket) {
    let Some(id) = master.workers.id(&name) else {
        return;
    };
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(OUTGOING_QUEUE);
    let conn = Connection::new(name.clone(), id, Protocol::Msgpack, out_tx);
    let writer = tokio::spawn(write_frames(sink, out_rx, conn.clone()));
    let handshake = tokio::spawn(crate::workers::manager::attach(
        master.clone(),
        conn.clone(),
    ));
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = conn.closed() => break,
        };
        let bytes = match frame {
            Some(Ok(WsMessage::Binary(b))) => b,
            Some(Ok(WsMessage::Text(_))) => {
                tracing::warn!(worker = %name, "ignoring a text frame");
                continue;
            }
            Some(Ok(WsMessage::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            // Either the worker broke the protocol, which is worth a warning, or its connection
            // was cut without the closing handshake, which is how a stopped or crashed worker
            // goes and is told as its disconnection.
            Some(Err(error)) => {
                if was_cut(&error) {
                    tracing::info!(worker = %name, %error, "the worker's connection was cut");
                } else {
                    tracing::warn!(worker = %name, %error, "closing connection: reading from the worker failed");
                }
                conn.close(&format!("reading from the worker failed: {error}"))
                    .await;
                break;
            }
        };
        match decode(&bytes) {
            Ok(Message::Response {
                seq,
                result,
                is_exception,
            }) => conn.deliver_response(seq, result, is_exception).await,
            Ok(Message::Request { seq, op }) => {
                // Traffic is handed to its command in arrival order; the answers are awaited apart,
                // so that one slow command never holds up another.
                let routed = conn.route(op).await;
                let conn = conn.clone();
                tokio::spawn(async move {
                    let reply = match routed {
                        Ok(rx) => match rx.await.unwrap_or(Ok(kiln_proto::Value::Nil)) {
                            Ok(v) => Message::response(seq, v),
                            Err(why) => Message::error(seq, why),
                        },
                        Err(why) => Message::error(seq, why),
                    };
                    conn.respond(reply).await;
                });
            }
            Err(error) => {
                tracing::warn!(worker = %name, %error, "closing connection: malformed message");
                conn.close(&format!("malformed message: {error}")).await;
                break;
            }
        }
    }
    conn.mark_closed().await;
    handshake.abort();
    master.workers.detach(&master, &conn).await;
    // The writer ends once the connection is marked closed; the socket is released when both
    // halves are gone.
    let _ = writer.await;
}

/// Writes the connection's outgoing frames until it closes, then finishes the WebSocket closing
/// handshake: it answers the close frame the worker sent, or sends the master's own.
async fn write_frames(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut out: mpsc::Receiver<Outgoing>,
    conn: Arc<Connection>,
) {
    loop {
        // Queued frames go first, so that a close with a reason is sent after what preceded it.
        let item = tokio::select! {
            biased;
            item = out.recv() => item,
            _ = conn.closed() => None,
        };
        let message = match item {
            Some(Outgoing::Message(m)) => WsMessage::Binary(kiln_proto::encode(&m).into()),
            Some(Outgoing::Close(why)) => WsMessage::Close(Some(CloseFrame {
                code: close_code::POLICY,
                reason: why.into(),
            })),
            None => break,
        };
        let closing = matches!(message, WsMessage::Close(_));
        // A peer that stops reading must not keep this task (and the socket) alive once the
        // connection is over.
        let sent = tokio::select! {
            sent = sink.send(message) => sent.is_ok(),
            _ = conn.closed(), if !closing => false,
        };
        if !sent || closing {
            break;
        }
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

/// Whether reading a worker's WebSocket failed because the connection was cut (reset, or
/// closed without the closing handshake) rather than because the worker broke the protocol.
fn was_cut(error: &axum::Error) -> bool {
    use tungstenite::error::{Error, ProtocolError};
    let Some(inner) = std::error::Error::source(error).and_then(|e| e.downcast_ref::<Error>())
    else {
        return false;
    };
    match inner {
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | Error::ConnectionClosed
        | Error::AlreadyClosed => true,
        Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::was_cut;
    use tungstenite::error::{Error, ProtocolError};

    #[test]
    fn a_cut_connection_is_told_from_a_broken_protocol() {
        let cut = |e: Error| was_cut(&axum::Error::new(e));
        assert!(cut(Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
        )));
        assert!(cut(Error::Io(std::io::ErrorKind::ConnectionReset.into())));
        assert!(!cut(Error::Protocol(ProtocolError::NonZeroReservedBits)));
        assert!(!cut(Error::Utf8("bad".into())));
        assert!(!was_cut(&axum::Error::new(std::io::Error::other("x"))));
    }
}
