//! A worker port: each connection is served with the protocol it speaks, among those the port
//! serves.
//!
//! The two protocols start differently: a msgpack worker opens a WebSocket, so it speaks first
//! (an HTTP request); a PB worker waits for the server's list of dialects. A port that serves both
//! waits briefly for the client's first bytes, and a silent client is taken for a PB worker. A
//! client that speaks a protocol the port does not serve is told so in the log, with what to change.
//! A port configured with `ssl:` serves both inside TLS, and tells the same way which one a
//! client speaks once its handshake is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::master::Master;

/// How long a port that serves both protocols waits for a client's first bytes before it takes a
/// silent client for a PB worker. An HTTP client sends its request as soon as it is connected.
pub const FIRST_BYTES_WAIT: Duration = Duration::from_millis(500);

/// Which worker protocols a port serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub msgpack: bool,
    pub pb: bool,
}

impl Protocols {
    fn names(self) -> &'static str {
        match (self.msgpack, self.pb) {
            (true, true) => "msgpack_experimental_v7 and pb",
            (true, false) => "msgpack_experimental_v7",
            _ => "pb",
        }
    }
}

/// What a client's first bytes say it speaks, when it is not PB: a PB client never speaks first.
pub fn foreign_protocol(first: &[u8]) -> Option<&'static str> {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    if METHODS
        .iter()
        .any(|m| first.starts_with(m) || m.starts_with(first) && !first.is_empty())
    {
        Some("HTTP (a msgpack_experimental_v7 worker, or a browser)")
    } else if first.first() == Some(&0x16) {
        Some("TLS")
    } else {
        None
    }
}

/// Serves workers on `listener` until `stop` turns true, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    master: Arc<Master>,
    protocols: Protocols,
    tls: Option<TlsAcceptor>,
    app: Router,
    stop: watch::Receiver<bool>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let handshake_timeout = master.handshake_timeout;
    let http_stop = stop.clone();
    crate::serve::accept_loop(listener, stop, move |tcp, peer| {
        let served = Served {
            master: master.clone(),
            app: app.clone(),
            stop: http_stop.clone(),
            peer,
            port,
            protocols,
        };
        let tls = tls.clone();
        async move {
            match tls {
                None => {
                    let spoke = first_words(&tcp, protocols).await;
                    served.dispatch(tcp, spoke).await;
                }
                Some(acceptor) => {
                    let started = tokio::time::Instant::now();
                    let Some(stream) = served.handshake(tcp, acceptor, handshake_timeout).await
                    else {
                        return;
                    };
                    let left = handshake_timeout.saturating_sub(started.elapsed());
                    let (spoke, stream) = first_words_within(stream, protocols, left).await;
                    served.dispatch(stream, spoke).await;
                }
            }
        }
    })
    .await
}

/// One accepted connection on a worker port, and what serving it needs.
struct Served {
    master: Arc<Master>,
    app: Router,
    stop: watch::Receiver<bool>,
    peer: SocketAddr,
    port: u16,
    protocols: Protocols,
}

impl Served {
    /// Serves the connection with the protocol its client `spoke`, or says why it cannot.
    async fn dispatch<IO>(self, io: IO, spoke: Spoke)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Served {
            master,
            app,
            stop,
            peer,
            port,
            protocols,
        } = self;
        let timeout = master.handshake_timeout;
        match spoke {
            Spoke::Http if protocols.msgpack => {
                crate::serve::connection(io, peer, app, timeout, timeout, stop).await
            }
            Spoke::Silent if protocols.pb => {
                crate::workers::pb::serve(master, io, peer, port, protocols).await
            }
            Spoke::Silent => {
                tracing::warn!(
                    %peer,
                    "a client on worker port {port} is waiting for the master to speak first, \
                     as a PB worker does; this port serves only msgpack_experimental_v7: add \
                     'pb': {{'port': {port}}} to c['protocols'], or create the worker with \
                     --protocol msgpack_experimental_v7"
                );
                crate::serve::connection(io, peer, app, timeout, timeout, stop).await
            }
            Spoke::Foreign(what) => refuse(peer, port, protocols, what),
            Spoke::Http => refuse(peer, port, protocols, "HTTP"),
            Spoke::Closed => {}
        }
    }

    /// Completes the TLS handshake within `timeout`, or says in the log why there is none: a
    /// worker that was not told to use TLS speaks in the clear, or waits for the master to.
    async fn handshake(
        &self,
        tcp: TcpStream,
        acceptor: TlsAcceptor,
        timeout: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        let (peer, port) = (self.peer, self.port);
        let started = tokio::time::Instant::now();
        let plain = |what: &str| {
            tracing::warn!(
                %peer,
                "a client spoke {what} on worker port {port}, which serves TLS: create the \
                 worker with --use-tls (buildbot-worker) or use_tls = true (kiln-worker)"
            );
        };
        let mut first = [0u8; 8];
        match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
            Err(_) => {
                plain("nothing (a PB worker waits for the master to speak first)");
                return None;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            // A TLS client opens with a handshake record.
            Ok(Ok(_)) if first[0] == 0x16 => {}
            Ok(Ok(n)) => {
                plain(foreign_protocol(&first[..n]).unwrap_or("an unknown protocol"));
                return None;
            }
        }
        // The wait for the first bytes and the handshake share one deadline.
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "a TLS handshake on worker port {port} failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "a TLS handshake on worker port {port} timed out");
                None
            }
        }
    }
}

/// Logs that a client spoke `what` on a port that does not serve it, with what to change.
pub(crate) fn refuse(peer: SocketAddr, port: u16, protocols: Protocols, what: &str) {
    let hint = if protocols.pb && !protocols.msgpack {
        format!(
            "; a msgpack_experimental_v7 worker needs 'msgpack_experimental_v7': \
             {{'port': {port}}} in c['protocols']"
        )
    } else {
        String::new()
    };
    tracing::warn!(
        %peer,
        "a client spoke {what} on worker port {port}, which serves {}{hint}",
        protocols.names()
    );
}

/// What a new connection's client said first.
enum Spoke {
    /// An HTTP request: a WebSocket worker.
    Http,
    /// Nothing yet: a PB worker, which waits for the server.
    Silent,
    /// Something else the port cannot serve, named.
    Foreign(&'static str),
    /// The client closed without a word (a port probe, say).
    Closed,
}

/// Peeks at the client's first bytes without taking them, waiting as long as the port needs to.
async fn first_words(tcp: &TcpStream, protocols: Protocols) -> Spoke {
    // A PB-only port answers at once: its clients wait for it.
    if !protocols.msgpack {
        return Spoke::Silent;
    }
    let mut buf = [0u8; 8];
    match tokio::time::timeout(FIRST_BYTES_WAIT, tcp.peek(&mut buf)).await {
        Err(_) => Spoke::Silent,
        Ok(Ok(0)) | Ok(Err(_)) => Spoke::Closed,
        Ok(Ok(n)) => spoke(&buf[..n]),
    }
}

/// The same inside TLS, where bytes cannot be peeked: they are read, then put back in front of
/// the stream for whichever protocol serves it. The wait is bounded by what is `left` of the
/// handshake deadline too.
async fn first_words_within<IO>(
    mut io: IO,
    protocols: Protocols,
    left: Duration,
) -> (Spoke, impl AsyncRead + AsyncWrite + Unpin + Send + 'static)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = Vec::with_capacity(8);
    let spoke = if !protocols.msgpack {
        Spoke::Silent
    } else {
        let read = tokio::time::timeout(FIRST_BYTES_WAIT.min(left), io.read_buf(&mut buf));
        match read.await {
            Err(_) => Spoke::Silent,
            Ok(Ok(0)) | Ok(Err(_)) => Spoke::Closed,
            Ok(Ok(_)) => spoke(&buf),
        }
    };
    let (reader, writer) = tokio::io::split(io);
    let replayed = std::io::Cursor::new(buf).chain(reader);
    (spoke, tokio::io::join(replayed, writer))
}

/// What a client's first bytes say it speaks.
fn spoke(first: &[u8]) -> Spoke {
    match foreign_protocol(first) {
        Some(what) if what.starts_with("HTTP") => Spoke::Http,
        Some(what) => Spoke::Foreign(what),
        None => Spoke::Foreign("an unknown protocol"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_name_the_protocol() {
        assert!(foreign_protocol(b"GET /ws HTTP/1.1").is_some_and(|p| p.starts_with("HTTP")));
        assert!(foreign_protocol(b"GE").is_some_and(|p| p.starts_with("HTTP")));
        assert_eq!(foreign_protocol(&[0x16, 0x03, 0x01]), Some("TLS"));
        // A PB worker's dialect choice.
        assert_eq!(foreign_protocol(&[0x02, 0x82, b'p', b'b']), None);
        assert_eq!(foreign_protocol(b""), None);
    }
}
