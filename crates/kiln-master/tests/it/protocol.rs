use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use kiln_proto::{Message, Op, Value, decode, encode};
use serde_json::json;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{TestMaster, config};

const ONE_BUILDER: &str = r#"
f = util.BuildFactory([steps.ShellCommand(command='echo fine')])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;

/// A worker-port WebSocket as a test client holds it.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(port: u16, auth: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://127.0.0.1:{port}/").into_client_request()?;
    if let Some(auth) = auth {
        request
            .headers_mut()
            .insert("Authorization", auth.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn status(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_get_401_and_change_nothing() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let port = m.worker_port();
    assert_eq!(
        status(
            connect(port, Some(&basic("w1", "wrong")))
                .await
                .expect_err("refused")
        ),
        401
    );
    assert_eq!(
        status(
            connect(port, Some(&basic("nobody", "pass")))
                .await
                .expect_err("refused")
        ),
        401
    );
    assert_eq!(status(connect(port, None).await.expect_err("refused")), 401);
    assert_eq!(
        status(connect(port, Some("Basic !!!")).await.expect_err("refused")),
        400
    );
    let (_, workers) = m.get("workers?name=w1").await;
    assert_eq!(workers["workers"][0]["connected_to"], json!([]));
}

/// Plays the worker side by hand: answers the handshake, then misbehaves.
pub async fn handshake(ws: &mut Socket) {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("handshake in time")
            .expect("open")
            .expect("frame");
        let tungstenite::Message::Binary(bytes) = frame else {
            continue;
        };
        let Ok(Message::Request { seq, op }) = decode(&bytes) else {
            continue;
        };
        let result = match &op {
            Op::GetWorkerInfo => Value::Map(vec![
                (Value::from("basedir"), Value::from("/tmp/fake")),
                (Value::from("system"), Value::from("posix")),
            ]),
            _ => Value::Nil,
        };
        if let Op::StartCommand { command_id, .. } = &op {
            ws.send(tungstenite::Message::Binary(
                encode(&Message::response(seq, Value::Nil)).into(),
            ))
            .await
            .unwrap();
            let update = Message::request(
                0,
                Op::Update {
                    command_id: command_id.clone(),
                    args: vec![("rc".into(), Value::from(0))],
                },
            );
            ws.send(tungstenite::Message::Binary(encode(&update).into()))
                .await
                .unwrap();
            let done = Message::request(
                1,
                Op::Complete {
                    command_id: command_id.clone(),
                    failure: None,
                },
            );
            ws.send(tungstenite::Message::Binary(encode(&done).into()))
                .await
                .unwrap();
            continue;
        }
        ws.send(tungstenite::Message::Binary(
            encode(&Message::response(seq, result)).into(),
        ))
        .await
        .unwrap();
        if matches!(op, Op::StartCommand { .. }) || matches!(op, Op::SetWorkerSettings { .. }) {
            // The mkdir of builder directories follows; then the worker is attached.
        }
        if let Op::Print { message } = &op
            && message == "attached"
        {
            continue;
        }
        if matches!(op, Op::SetWorkerSettings { .. }) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_that_connection() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let mut bad = connect(m.worker_port(), Some(&basic("w2", "pass2")))
        .await
        .expect("accepted");
    handshake(&mut bad).await;
    bad.send(tungstenite::Message::Binary(vec![0x92, 0x01].into()))
        .await
        .unwrap();
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(30), bad.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(tungstenite::Message::Close(Some(frame)))) => break frame.reason.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame with a reason, got {other:?}"),
        }
    };
    assert!(reason.contains("malformed message"), "{reason}");
    // The master still serves everyone else.
    m.start_worker("w1", "pass").await;
    assert_eq!(m.force_and_wait(json!({})).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ops_and_commands_get_buildbot_errors() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let mut ws = connect(m.worker_port(), Some(&basic("w2", "pass2")))
        .await
        .expect("accepted");
    handshake(&mut ws).await;
    let ask = |seq, op| tungstenite::Message::Binary(encode(&Message::request(seq, op)).into());
    ws.send(ask(
        100,
        Op::Unknown {
            op: "frobnicate".into(),
        },
    ))
    .await
    .unwrap();
    ws.send(ask(
        101,
        Op::Complete {
            command_id: "999".into(),
            failure: None,
        },
    ))
    .await
    .unwrap();
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("answer")
            .expect("open")
            .expect("frame");
        if let tungstenite::Message::Binary(b) = frame
            && let Ok(Message::Response {
                seq,
                result,
                is_exception,
            }) = decode(&b)
        {
            assert!(is_exception);
            answers.insert(seq, result.as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(answers[&100], "Command frobnicate does not exist.");
    assert_eq!(answers[&101], "'unknown \"command_id\"'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_are_sent_and_a_silent_worker_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestMaster::start_with(dir, &config("sqlite:///state.sqlite", ONE_BUILDER), |o| {
        o.keepalive_interval = Duration::from_millis(200);
    })
    .await;
    let mut ws = connect(m.worker_port(), Some(&basic("w2", "pass2")))
        .await
        .expect("accepted");
    handshake(&mut ws).await;
    // Answer two keepalives, then fall silent.
    let mut answered = 0;
    let reason = loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("traffic in time");
        match frame {
            Some(Ok(tungstenite::Message::Binary(b))) => {
                if let Ok(Message::Request {
                    seq,
                    op: Op::Keepalive,
                }) = decode(&b)
                    && answered < 2
                {
                    answered += 1;
                    ws.send(tungstenite::Message::Binary(
                        encode(&Message::response(seq, Value::Nil)).into(),
                    ))
                    .await
                    .unwrap();
                }
            }
            Some(Ok(tungstenite::Message::Close(Some(frame)))) => break frame.reason.to_string(),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(answered, 2);
    assert_eq!(reason, "keepalive not answered");
}

async fn close_reason(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(tungstenite::Message::Close(Some(frame)))) => return frame.reason.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame with a reason, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_connection_is_refused_while_the_first_one_answers() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    // The real worker is connected and answers.
    m.start_worker("w1", "pass").await;
    let mut second = connect(m.worker_port(), Some(&basic("w1", "pass")))
        .await
        .expect("upgrade accepted");
    assert!(
        close_reason(&mut second)
            .await
            .contains("duplicate connection")
    );
    // The first connection still builds.
    assert_eq!(m.force_and_wait(json!({})).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_replaces_one_that_no_longer_answers() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let mut first = connect(m.worker_port(), Some(&basic("w2", "pass2")))
        .await
        .expect("accepted");
    handshake(&mut first).await;
    // The first connection falls silent (it never reads again); a second one takes over once the
    // master's ping to the first goes unanswered.
    let mut second = connect(m.worker_port(), Some(&basic("w2", "pass2")))
        .await
        .expect("accepted");
    tokio::time::timeout(Duration::from_secs(60), handshake(&mut second))
        .await
        .expect("the new connection is attached");
    let (_, workers) = m.get("workers/w2").await;
    assert_eq!(
        workers["workers"][0]["connected_to"],
        json!([{"masterid": 1}])
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_only_that_connection() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let mut big = connect(m.worker_port(), Some(&basic("w2", "pass2")))
        .await
        .expect("accepted");
    handshake(&mut big).await;
    let frame = vec![0u8; kiln_master::workers::listener::MAX_FRAME_BYTES + 1];
    // The master may close the socket before the whole frame is written; either way it must go.
    let _ = big.send(tungstenite::Message::Binary(frame.into())).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), big.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(tungstenite::Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        }
    }
    m.start_worker("w1", "pass").await;
    assert_eq!(
        m.force_and_wait(json!({})).await,
        0,
        "every other worker is still served"
    );
}

/// Guessing is slowed down: after a few refused logins from an address, each answer to it waits,
/// longer every time; a second `Authorization` header is refused; the right password still gets
/// in, and clears the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_worker_passwords_is_slowed_down_per_address() {
    use kiln_master::workers::guard::FREE_FAILURES;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let port = m.worker_port();
    let wrong = basic("w1", "wrong");
    for _ in 0..FREE_FAILURES + 2 {
        let refused = connect(port, Some(&wrong)).await.expect_err("refused");
        assert_eq!(status(refused), 401);
    }
    // Seven failures: the next answer waits 100 ms doubled twice.
    let asked = std::time::Instant::now();
    assert_eq!(
        status(connect(port, Some(&wrong)).await.expect_err("refused")),
        401
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(400),
        "answered after {:?}",
        asked.elapsed()
    );
    let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert!(m.master().workers.guard.delay(local) >= Duration::from_millis(800));

    let mut request = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    for auth in [basic("w1", "pass"), basic("w2", "pass2")] {
        request
            .headers_mut()
            .append("Authorization", auth.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 400);
            let body =
                String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned();
            assert!(
                body.contains("more than one Authorization header"),
                "{body}"
            );
        }
        other => panic!("two Authorization headers are refused: {other:?}"),
    }

    m.start_worker("w1", "pass").await;
    assert_eq!(m.master().workers.guard.delay(local), Duration::ZERO);
}
