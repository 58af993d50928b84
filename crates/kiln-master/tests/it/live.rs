//! Live updates as clients receive them: Buildbot's `/ws` protocol with full resources under each
//! routing key, and `/sse`, whose streams resume from the durable record after a reconnect.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::harness::{TestMaster, WAIT, config};

const CFG: &str = r#"
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(command=['echo', 'hello'])]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
"#;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a frame");
        if let Ws::Text(t) = frame {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

async fn command(ws: &mut Socket, frame: Value) -> Value {
    ws.send(Ws::Text(frame.to_string().into())).await.unwrap();
    next_json(ws).await
}

/// A `/ws` client of the web port `www` that consumes `builds/*/*`.
async fn consuming_builds(www: &str) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{www}/ws"))
        .await
        .unwrap();
    let ok = command(
        &mut ws,
        json!({"cmd": "startConsuming", "path": "builds/*/*", "_id": 1}),
    )
    .await;
    assert_eq!(ok, json!({"msg": "OK", "code": 200, "_id": 1}));
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_clients_get_full_resources_for_the_paths_they_consume() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    m.start_worker("w1", "pass").await;
    let mut ws = consuming_builds(&m.www()).await;
    let ok = command(
        &mut ws,
        json!({"cmd": "startConsuming", "path": "logs/*/*", "_id": 2}),
    )
    .await;
    assert_eq!(ok["code"], 200);
    let pong = command(&mut ws, json!({"cmd": "ping", "_id": "p"})).await;
    assert_eq!(pong, json!({"msg": "pong", "code": 200, "_id": "p"}));

    m.force(json!({"builderid": 1})).await;
    let mut keys = Vec::new();
    let finished = loop {
        let frame = next_json(&mut ws).await;
        let key = frame["k"].as_str().expect("an event frame").to_string();
        assert!(
            kiln_api::matches("builds.*.*", &key.replace('/', "."))
                || kiln_api::matches("logs.*.*", &key.replace('/', ".")),
            "a frame nobody asked for: {key}"
        );
        keys.push(key.clone());
        if key == "builds/1/finished" {
            break frame["m"].clone();
        }
    };
    assert!(keys.contains(&"builds/1/new".to_string()), "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("logs/") && k.ends_with("/append")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("logs/") && k.ends_with("/finished")),
        "{keys:?}"
    );
    // The message is the build as the REST API shows it.
    assert_eq!(finished["buildid"], 1);
    assert_eq!(finished["builderid"], 1);
    assert_eq!(finished["number"], 1);
    assert_eq!(finished["complete"], true);
    assert_eq!(finished["results"], 0);
    assert_eq!(finished["properties"], json!({}));

    // After a stop, nothing more arrives for that path; an unknown stop is an error.
    let ok = command(
        &mut ws,
        json!({"cmd": "stopConsuming", "path": "logs/*/*", "_id": 3}),
    )
    .await;
    assert_eq!(ok["code"], 200);
    let again = command(
        &mut ws,
        json!({"cmd": "stopConsuming", "path": "logs/*/*", "_id": 4}),
    )
    .await;
    assert_eq!(
        again,
        json!({"error": "path was not consumed 'logs/*/*'", "code": 400, "_id": 4})
    );
    m.force(json!({"builderid": 1})).await;
    loop {
        let frame = next_json(&mut ws).await;
        let key = frame["k"].as_str().unwrap();
        assert!(!key.starts_with("logs/"), "{key} after stopConsuming");
        if key == "builds/2/finished" {
            break;
        }
    }
}

/// While nobody listens the hub reads nothing; a client that joins afterwards gets what happens
/// from then on, and nothing of what came before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joining_a_quiet_hub_gets_the_news_from_when_it_joined() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    m.start_worker("w1", "pass").await;
    m.force_and_wait(json!({"builderid": 1})).await;
    let mut ws = consuming_builds(&m.www()).await;
    m.force(json!({"builderid": 1})).await;
    let mut keys = Vec::new();
    loop {
        let frame = next_json(&mut ws).await;
        let key = frame["k"].as_str().expect("an event frame").to_string();
        keys.push(key.clone());
        if key == "builds/2/finished" {
            break;
        }
    }
    assert_eq!(
        keys.first().map(String::as_str),
        Some("builds/2/new"),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.starts_with("builds/1/")), "{keys:?}");
}

/// A minimal server-sent events reader.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

#[derive(Debug)]
struct SseEvent {
    kind: String,
    id: Option<String>,
    data: String,
}

impl EventStream {
    async fn open(url: &str, last_event_id: Option<&str>) -> EventStream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    kind: String::new(),
                    id: None,
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event.kind = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data.push_str(v);
                    }
                }
                if event.kind.is_empty() {
                    continue; // a keep-alive comment
                }
                return event;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream is open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads events until one with routing key `key`; returns the keys seen and that event.
    async fn until(&mut self, key: &str) -> (Vec<String>, SseEvent) {
        let mut keys = Vec::new();
        loop {
            let e = self.next().await;
            let data: Value = serde_json::from_str(&e.data).unwrap();
            let k = data["key"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("/");
            keys.push(k.clone());
            if k == key {
                return (keys, e);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_resume_from_the_durable_record_after_a_reconnect() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    m.start_worker("w1", "pass").await;
    let url = format!(
        "http://{}/sse/listen?path=builds/*/*&path=buildsets/*/*",
        m.www()
    );
    let mut stream = EventStream::open(&url, None).await;
    let hello = stream.next().await;
    assert_eq!(hello.kind, "handshake");
    assert_eq!(hello.data.len(), 36, "{}", hello.data);

    m.force(json!({"builderid": 1})).await;
    let (keys, done) = stream.until("buildsets/1/complete").await;
    assert!(keys.contains(&"builds/1/finished".to_string()), "{keys:?}");
    let last = done.id.expect("a durable event carries its position");
    let message: Value = serde_json::from_str(&done.data).unwrap();
    assert_eq!(message["message"]["bsid"], 1);
    assert_eq!(message["message"]["complete"], true);
    drop(stream);

    // While the browser is away, a second build runs from start to end.
    let bsid = m.force(json!({"builderid": 1})).await;
    assert_eq!(m.wait_buildset(bsid).await, 0);

    // It comes back with the last position it saw, and misses nothing.
    let mut stream = EventStream::open(&url, Some(&last)).await;
    assert_eq!(stream.next().await.kind, "handshake");
    let (keys, _) = stream.until("buildsets/2/complete").await;
    for key in ["buildsets/2/new", "builds/2/new", "builds/2/finished"] {
        assert!(
            keys.contains(&key.to_string()),
            "{key} not replayed: {keys:?}"
        );
    }
    assert!(
        !keys.iter().any(|k| k.contains("/1/")),
        "replayed what it had: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_subscriptions_change_by_handshake_id() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    let mut stream = EventStream::open(&format!("http://{www}/sse/listen"), None).await;
    let uuid = stream.next().await.data;
    let get = |path: String| {
        let url = format!("http://{www}{path}");
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        get(format!("/sse/add/{uuid}/buildsets/*/*")).await,
        (200, "ok".into())
    );
    assert_eq!(
        get("/sse/add/nosuch/builds/*/*".into()).await,
        (400, "unknown uuid".into())
    );
    assert_eq!(
        get(format!("/sse/remove/{uuid}/builds/*/*")).await,
        (404, "consumer is not listening to this event".into())
    );
    m.force(json!({"builderid": 1})).await;
    let (keys, _) = stream.until("buildsets/1/complete").await;
    assert!(keys.iter().all(|k| k.starts_with("buildsets/")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_end_gets_what_c_www_says_and_idle_sockets_are_pinged() {
    let body = format!(
        "{CFG}\nc['www'] = {{'ws_ping_interval': 1, 'default_page': 'console', 'debug': True, \
         'jsonp': False, 'project_widgets': [{{'type': 'builders'}}], \
         'theme': {{'bb-sidebar-background-color': '#123456'}}}}\n"
    );
    let m = TestMaster::start(&config("sqlite:///state.sqlite", &body)).await;
    let (code, text) = crate::harness::http_text(&m.www(), "GET", "/config", None, &[]).await;
    assert_eq!(code, 200, "{text}");
    let c: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(c["default_page"], "console", "{c}");
    assert_eq!(c["debug"], true, "{c}");
    assert_eq!(c["jsonp"], false, "{c}");
    assert_eq!(c["project_widgets"], json!([{"type": "builders"}]), "{c}");
    assert_eq!(c["theme"]["bb-sidebar-background-color"], "#123456", "{c}");
    assert_eq!(c["ws_ping_interval"], 1, "{c}");

    // A socket that carries nothing is pinged.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", m.www()))
        .await
        .unwrap();
    let frame = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame in time")
        .expect("the socket is open")
        .expect("a frame");
    assert!(matches!(frame, Ws::Ping(_)), "{frame:?}");
}
