//! Connections the peer closes, or never uses, are released: the closing handshake is answered,
//! the socket is closed by the master, and silent sockets go at the handshake deadline.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::{TestMaster, config};
use crate::protocol::{Socket, basic, connect, handshake};

const ONE_BUILDER: &str = r#"
f = util.BuildFactory([steps.ShellCommand(command='echo fine')])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;

/// Longer than any of the master's own deadlines in these tests: a wait that reaches it fails.
const BOUND: Duration = Duration::from_secs(20);

/// Sends a close frame, then expects the master's close frame and the end of the TCP stream.
async fn close_and_expect_release(mut ws: Socket, what: &str) {
    ws.send(Ws::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .expect("close frame sent");
    loop {
        match tokio::time::timeout(BOUND, ws.next()).await {
            Err(_) => panic!("{what}: the master never answered the close frame"),
            Ok(Some(Ok(Ws::Close(_)))) => break,
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("{what}: expected the master's close frame, got {other:?}"),
        }
    }
    expect_eof(ws.get_mut(), what).await;
}

/// Waits until the master closes its end of the socket.
async fn expect_eof(stream: &mut tokio_tungstenite::MaybeTlsStream<TcpStream>, what: &str) {
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = stream else {
        panic!("plain TCP expected");
    };
    expect_tcp_eof(tcp, what).await;
}

async fn expect_tcp_eof(tcp: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(BOUND, tcp.read(&mut buf)).await {
            Err(_) => panic!("{what}: the master kept the socket open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_frame_is_answered_and_the_socket_released() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let port = m.worker_port();
    let auth = basic("w2", "pass2");

    // Before the worker has answered anything of the handshake.
    let ws = connect(port, Some(&auth)).await.expect("upgrade");
    close_and_expect_release(ws, "close before the handshake").await;

    // After a ping, and after a text frame.
    let mut ws = connect(port, Some(&auth)).await.expect("upgrade");
    ws.send(Ws::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    close_and_expect_release(ws, "close after a ping").await;
    let mut ws = connect(port, Some(&auth)).await.expect("upgrade");
    ws.send(Ws::Text("hello".into())).await.expect("text");
    close_and_expect_release(ws, "close after a text frame").await;

    // After the handshake: the worker is attached, then shown disconnected.
    let mut ws = connect(port, Some(&auth)).await.expect("upgrade");
    handshake(&mut ws).await;
    m.wait_event("workers.*.connected").await;
    close_and_expect_release(ws, "close after the handshake").await;
    m.wait_event("workers.*.disconnected").await;

    // A connection that just drops is forgotten too, and the worker can come back at once.
    let mut ws = connect(port, Some(&auth)).await.expect("upgrade");
    handshake(&mut ws).await;
    m.wait_event("workers.*.connected").await;
    drop(ws);
    m.wait_event("workers.*.disconnected").await;
    let mut ws = connect(port, Some(&auth)).await.expect("upgrade");
    handshake(&mut ws).await;
    m.wait_event("workers.*.connected").await;

    // The real worker still attaches and builds.
    m.start_worker("w1", "pass").await;
    assert_eq!(m.force_and_wait(serde_json::json!({})).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_at_the_handshake_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = TestMaster::start_with(dir, &config("sqlite:///state.sqlite", ONE_BUILDER), |o| {
        o.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let worker_port = m.worker_port();
    let www = m.www();

    // Sockets that never send a request, or only part of its headers, on both ports.
    let mut silent = Vec::new();
    for addr in [format!("127.0.0.1:{worker_port}"), www.clone()] {
        silent.push(TcpStream::connect(&addr).await.expect("connect"));
        let mut partial = TcpStream::connect(&addr).await.expect("connect");
        partial
            .write_all(b"GET /api/v2/builders HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("partial headers");
        silent.push(partial);
    }
    // Upgraded worker connections, all for the same worker, that never answer the handshake: each
    // one waits for the one before it to answer the duplicate check, which never comes.
    let mut upgraded = Vec::new();
    for _ in 0..18 {
        upgraded.push(
            connect(worker_port, Some(&basic("w2", "pass2")))
                .await
                .expect("upgrade"),
        );
    }

    for (i, tcp) in silent.iter_mut().enumerate() {
        expect_tcp_eof(tcp, &format!("silent socket {i}")).await;
    }
    for (i, ws) in upgraded.iter_mut().enumerate() {
        expect_eof(ws.get_mut(), &format!("silent worker connection {i}")).await;
    }
}

/// A client that asks for a large answer and reads none of it is let go once a write has waited
/// on it for the handshake timeout; one that reads gets the whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_let_go_at_the_write_deadline() {
    const LINES: usize = 60_000;
    const WIDTH: usize = 200;
    let big = format!(
        "f = util.BuildFactory([steps.ShellCommand(command='yes ' + 'x' * {WIDTH} + ' | head -n {LINES}')])\n\
         c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
         c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let limit = Duration::from_secs(1);
    let mut m = TestMaster::start_with(dir, &config("sqlite:///state.sqlite", &big), |o| {
        o.handshake_timeout = limit;
    })
    .await;
    m.start_worker("w1", "pass").await;
    assert_eq!(m.force_and_wait(serde_json::json!({})).await, 0);
    let (_, logs) = m.get("builds/1/steps/1/logs").await;
    let logid = logs["logs"][0]["logid"].as_i64().expect("the stdio log");
    let request = format!(
        "GET /api/v2/logs/{logid}/raw HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        m.www()
    );
    let whole = LINES * (WIDTH + 1);

    // A client that reads everything gets everything.
    let mut reader = TcpStream::connect(m.www()).await.expect("connect");
    reader.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, reader.read_to_end(&mut answer))
        .await
        .expect("the whole answer in time")
        .expect("read");
    assert!(
        answer.len() > whole,
        "{} bytes of at least {whole}",
        answer.len()
    );

    // One that stops reading: the master's writes wait on its full buffers, and the connection
    // is closed once they have waited for the deadline. What the kernel had buffered is all it
    // gets then, far less than the answer.
    let mut stalled = crate::harness::small_buffered(&m.www()).await;
    stalled.write_all(request.as_bytes()).await.expect("send");
    // Well past the deadline, counted from when the buffers filled.
    tokio::time::sleep(limit * 4).await;
    let mut cut = Vec::new();
    tokio::time::timeout(BOUND, stalled.read_to_end(&mut cut))
        .await
        .expect("the master closed the connection")
        .ok();
    assert!(
        cut.len() < whole,
        "{} bytes: the answer was not cut",
        cut.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_port_binds_the_interface_its_configuration_names() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let running = m.running.as_ref().unwrap();
    // Buildbot's default: workers connect from anywhere, the web port is kiln's loopback.
    assert!(running.worker_addr.ip().is_unspecified());
    assert!(running.www_addr.ip().is_loopback());
    let named = format!(
        "{ONE_BUILDER}\nc['protocols'] = {{'msgpack_experimental_v7': {{'port': 'tcp:9989:interface=127.0.0.1'}}}}\n\
         c['www'] = {{'port': 'tcp:8010:interface=127.0.0.1'}}\n"
    );
    let m = TestMaster::start(&config("sqlite:///state.sqlite", &named)).await;
    let running = m.running.as_ref().unwrap();
    assert_eq!(running.worker_addr.ip().to_string(), "127.0.0.1");
    assert_eq!(running.www_addr.ip().to_string(), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_port_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    crate::harness::make_certificate(dir.path());
    let star = format!(
        "{ONE_BUILDER}\nc['buildbotURL'] = 'https://127.0.0.1:8443/'\n\
         c['www'] = {{'port': 'ssl:8443:privateKey=key.pem:certKey=cert.pem'}}\n"
    );
    let m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", &star)).await;
    let request = kiln_http::Request {
        method: "GET".into(),
        url: format!("https://{}/api/v2/builders", m.www()),
        verify: kiln_http::Verify::CaFile(m.path("ca.pem")),
        ..Default::default()
    };
    let answer = kiln_http::send(&request).await.unwrap();
    assert_eq!(answer.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["builders"][0]["name"], "b1");
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/api/v2/builders", m.www()))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}
