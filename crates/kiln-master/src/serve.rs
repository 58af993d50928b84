//! Serving an HTTP application on a listener, with the bounds every port of the master needs.
//!
//! `axum::serve` gives a connection that never sends its request headers as long as it likes, so a
//! client that opens sockets and stays silent holds a file descriptor each, for ever.
//! This loop serves each connection with hyper directly, with a deadline on reading the request
//! headers and one on each write the client keeps waiting by not reading, and over TLS when the
//! port is configured for it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// How long the loop waits before accepting again when accepting fails (out of file descriptors,
/// say): the condition lasts until connections close, so retrying at once would only spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How many connections the kernel queues for a port before the master accepts them.
/// The default of the standard library, 128, is overrun when hundreds of workers connect at once
/// (after a master restart, say): the kernel then drops their handshakes and each waits a second
/// or more for its retransmission. The kernel caps the number at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `host` (a name or an address) and `port`, on the first address the name resolves to
/// that can be bound, with room for `LISTEN_BACKLOG` waiting connections.
pub async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted master can listen again at once, while the
        // connections of the previous one linger in TIME-WAIT.
        socket.set_reuseaddr(true)?;
        match socket.bind(address) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} names no address to listen on"),
        )
    }))
}

/// Serves `app` on `listener` until `stop` turns true, then lets the open requests finish;
/// over TLS when `tls` is given.
///
/// A connection that has not finished its TLS handshake and sent its request headers within
/// `header_timeout` is closed, and so is one whose client reads nothing of an answer for as long.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let connection_stop = stop.clone();
    accept_loop(listener, stop, move |tcp, peer| {
        let app = app.clone();
        let stop = connection_stop.clone();
        let tls = tls.clone();
        async move {
            match tls {
                None => connection(tcp, peer, app, header_timeout, header_timeout, stop).await,
                Some(acceptor) => {
                    // The handshake counts against the same deadline as the request headers.
                    let started = tokio::time::Instant::now();
                    match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let left = header_timeout.saturating_sub(started.elapsed());
                            connection(stream, peer, app, left, header_timeout, stop).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "a TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "a TLS handshake timed out"),
                    }
                }
            }
        }
    })
    .await
}

/// Accepts connections on `listener` until `stop` turns true, serving each in a task of its own,
/// then waits for those tasks to end.
pub async fn accept_loop<F, Fut>(listener: TcpListener, mut stop: watch::Receiver<bool>, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // Each connection task holds a clone of `done_tx`; `closed()` resolves once they are all gone.
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut accept_failed = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => {
                accept_failed = false;
                pair
            }
            Err(error) => {
                // Logged once per episode, not once per attempt.
                if !accept_failed {
                    tracing::warn!(%error, "accepting a connection failed; retrying");
                    accept_failed = true;
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Traffic on both ports is many small request/response exchanges: without TCP_NODELAY,
        // Nagle's algorithm and delayed acknowledgements hold a reply back for tens of milliseconds.
        let _ = tcp.set_nodelay(true);
        let done = done_tx.clone();
        let served = serve(tcp, peer);
        tokio::spawn(async move {
            served.await;
            drop(done);
        });
    }
    drop(done_tx);
    drop(listener);
    wait_all(done_rx).await;
}

/// Waits until every connection task has dropped its end of the channel.
async fn wait_all(mut done: tokio::sync::mpsc::Receiver<()>) {
    while done.recv().await.is_some() {}
}

/// Serves one HTTP connection, starting a graceful shutdown when the server stops. The
/// connection ends when its request headers take longer than `header_timeout`, or a write
/// waits on the client for longer than `write_timeout`.
pub async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    write_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut app = app.clone();
        // The peer's address, for the access log.
        let mut request = request.map(axum::body::Body::new);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        async move { app.call(request).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(WriteDeadline::new(io, write_timeout)), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// A socket whose writes must make progress. A client that stops reading fills the socket's
/// buffers, and every write then waits; without a bound the connection, its task and whatever
/// its answer holds would stay until the client goes away. A write (or flush, or shutdown) that
/// has waited longer than `limit` fails, which ends the connection, WebSockets included.
struct WriteDeadline<IO> {
    io: IO,
    limit: Duration,
    /// Armed when a write first waits, disarmed when one goes through.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> WriteDeadline<IO> {
    fn new(io: IO, limit: Duration) -> Self {
        WriteDeadline {
            io,
            limit,
            waiting: None,
        }
    }

    /// What a write that `poll` answered comes to, with the deadline applied to a wait.
    fn within<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.waiting = None;
            return poll;
        }
        let limit = self.limit;
        let deadline = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.within(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.within(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.within(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.within(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hundreds of peers that connect before the master accepts any must all be queued by the
    /// kernel, not made to wait for a retransmitted handshake.
    #[tokio::test]
    async fn a_crowd_of_connections_waits_in_the_queue() {
        let listener = listen("127.0.0.1", 0).await.expect("listen");
        let address = listener.local_addr().expect("address");
        let mut connected = Vec::new();
        for n in 0..600 {
            // A dropped handshake is retransmitted after a second at the earliest.
            let tcp = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(address))
                .await
                .unwrap_or_else(|_| panic!("connection {n} was not queued"))
                .expect("connect");
            connected.push(tcp);
        }
        drop(listener);
    }
}
