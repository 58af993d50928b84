//! A master started in-process on free ports, workers attached to it, and a small HTTP client, so
//! tests drive kiln the way users do: over the worker protocol and the REST API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kiln_master::events::{Event, matches};
use kiln_master::{Master, Running, StartOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

/// Every wait in the suite gives up after this long, so a broken build fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct TestMaster {
    pub dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub events: broadcast::Receiver<Arc<Event>>,
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A `master.star` with one worker `w1`/`pass` and the given builders and schedulers.
pub fn config(db_url: &str, body: &str) -> String {
    format!(
        "BuildmasterConfig = {{}}\nc = BuildmasterConfig\nc['db'] = {{'db_url': {db_url:?}}}\nc['collapseRequests'] = False\n\
         c['workers'] = [worker.Worker('w1', 'pass'), worker.Worker('w2', 'pass2')]\n{body}\n"
    )
}

impl TestMaster {
    pub async fn start(source: &str) -> TestMaster {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, source).await
    }

    pub async fn start_in(dir: tempfile::TempDir, source: &str) -> TestMaster {
        Self::start_with(dir, source, |_| {}).await
    }

    /// Starts a master with adjusted start options.
    pub async fn start_with(
        dir: tempfile::TempDir,
        source: &str,
        adjust: impl FnOnce(&mut StartOptions),
    ) -> TestMaster {
        std::fs::write(dir.path().join("master.star"), source).expect("write master.star");
        let config = match kiln_config::load(dir.path()) {
            Ok(c) => c,
            Err(d) => panic!("test configuration is invalid:\n{d}"),
        };
        let mut options = StartOptions {
            worker_port: Some(0),
            www_port: Some(0),
            web: Arc::new(kiln_www::router),
            components: vec![Arc::new(kiln_reporters::run)],
            ..Default::default()
        };
        adjust(&mut options);
        let running = Master::start(dir.path(), config, options)
            .await
            .expect("master starts");
        let events = running.master.events.subscribe();
        TestMaster {
            dir,
            running: Some(running),
            events,
            workers: Vec::new(),
        }
    }

    pub fn master(&self) -> &Arc<Master> {
        &self.running.as_ref().expect("running").master
    }

    pub fn worker_port(&self) -> u16 {
        self.running.as_ref().expect("running").worker_addr.port()
    }

    pub fn www(&self) -> String {
        self.running.as_ref().expect("running").www_addr.to_string()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts kiln's worker in this process, and waits until it is attached.
    pub async fn start_worker(&mut self, name: &str, password: &str) -> usize {
        let config = self.worker_config(name, password, None);
        self.workers
            .push(tokio::spawn(kiln_worker::connection::run(config)));
        self.wait_attached(name).await;
        self.workers.len() - 1
    }

    /// A new worker directory for kiln's worker, created and loaded as `kiln-worker` does; over
    /// TLS to `localhost` (the name the test certificate carries) when `ca_file` is given.
    pub fn worker_config(
        &self,
        name: &str,
        password: &str,
        ca_file: Option<&std::path::Path>,
    ) -> kiln_worker::config::WorkerConfig {
        // A master restarted in the same directory gets workers of its own.
        let mut n = self.workers.len();
        while self.dir.path().join(format!("worker-{name}-{n}")).exists() {
            n += 1;
        }
        let basedir = self.dir.path().join(format!("worker-{name}-{n}"));
        let config = kiln_worker::config::WorkerConfig {
            basedir: basedir.clone(),
            master_host: if ca_file.is_some() {
                "localhost"
            } else {
                "127.0.0.1"
            }
            .into(),
            master_port: self.worker_port(),
            name: name.into(),
            password: password.into(),
            max_retries: Some(0),
            use_tls: ca_file.is_some(),
            ca_file: ca_file.map(Into::into),
        };
        config.create().expect("create worker");
        kiln_worker::config::WorkerConfig::load(&basedir).expect("load worker")
    }

    /// The protocol the worker's connection speaks.
    pub fn worker_protocol(&self, name: &str) -> kiln_master::workers::connection::Protocol {
        self.master()
            .workers
            .connection(name)
            .expect("the worker is connected")
            .protocol
    }

    pub async fn wait_attached(&mut self, name: &str) {
        let master = self.master().clone();
        let name = name.to_string();
        tokio::time::timeout(WAIT, async {
            loop {
                if master
                    .workers
                    .availability([name.as_str()])
                    .iter()
                    .any(|w| w.available)
                {
                    return;
                }
                let _ = self.events.recv().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("worker {name} did not attach"));
    }

    /// Drops a worker's connection abruptly, as a crashed worker would.
    pub fn kill_worker(&mut self, index: usize) {
        self.workers[index].abort();
    }

    /// Waits for the first event whose key matches `pattern` (`*` matches one element).
    pub async fn wait_event(&mut self, pattern: &str) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Ok(e) if matches(pattern, &e.key()) => return e.payload(),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no event matching {pattern}"))
    }

    /// Waits until `check` holds, checking again after each event whose key matches `pattern`:
    /// the write that `check` reads publishes that event once it is committed.
    pub async fn wait_until<F, Fut>(&mut self, pattern: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        tokio::time::timeout(WAIT, async {
            while !check().await {
                loop {
                    match self.events.recv().await {
                        Ok(e) if matches(pattern, &e.key()) => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no event matching {pattern} brought the awaited state"))
    }

    /// Forces a build through JSON-RPC and waits until its buildset completes; returns the results.
    pub async fn force_and_wait(&mut self, params: Value) -> i64 {
        let bsid = self.force(params).await;
        self.wait_buildset(bsid).await
    }

    pub async fn force(&mut self, params: Value) -> i64 {
        let (status, body) = rpc(&self.www(), "forceschedulers/force", "force", params).await;
        assert_eq!(status, 200, "force failed: {body}");
        body["result"][0].as_i64().expect("bsid")
    }

    /// A new API token acting as `user` with `roles`, stored as `kiln token create` stores it.
    pub async fn token(&self, user: &str, roles: &[&str], expires_at: Option<i64>) -> String {
        let config = kiln_config::load(self.dir.path()).expect("configuration");
        let writer = kiln_master::master::open_database(self.dir.path(), &config)
            .await
            .expect("database");
        let text = kiln_api::credentials::new_token().expect("randomness");
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let token = kiln_db::NewToken {
            name: "test",
            digest: &kiln_api::credentials::token_digest(&text),
            username: user,
            roles: &roles,
            created_at: self.master().updates.now(),
            expires_at,
        };
        writer.add_token(&token).await.expect("token stored");
        text
    }

    pub async fn wait_buildset(&mut self, bsid: i64) -> i64 {
        loop {
            let data = self.wait_event("buildsets.*.complete").await;
            if data["bsid"] == bsid {
                return data["results"].as_i64().expect("results");
            }
        }
    }

    /// Waits until a buildset is complete, reading the API (events of buildsets that completed
    /// earlier may be gone); returns its results.
    pub async fn wait_complete(&self, bsid: i64) -> i64 {
        tokio::time::timeout(WAIT, async {
            loop {
                let (_, bs) = self.get(&format!("buildsets/{bsid}")).await;
                let bs = &bs["buildsets"][0];
                if bs["complete"] == true {
                    return bs["results"].as_i64().expect("results");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("buildset {bsid} never completed"))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        http(&self.www(), "GET", &format!("/api/v2/{path}"), None).await
    }

    /// Stops the master cleanly.
    pub async fn stop(&mut self) {
        for w in self.workers.drain(..) {
            w.abort();
        }
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

impl Drop for TestMaster {
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

/// A JSON-RPC call.
pub async fn rpc(www: &str, path: &str, method: &str, params: Value) -> (u16, Value) {
    let body = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    http(
        www,
        "POST",
        &format!("/api/v2/{path}"),
        Some(&body.to_string()),
    )
    .await
}

/// A JSON-RPC call with an API token.
pub async fn rpc_as(
    token: &str,
    www: &str,
    path: &str,
    method: &str,
    params: Value,
) -> (u16, Value) {
    let body = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    let auth = format!("Bearer {token}");
    let (status, text) = http_text(
        www,
        "POST",
        &format!("/api/v2/{path}"),
        Some(&body.to_string()),
        &[("Accept", "application/json"), ("Authorization", &auth)],
    )
    .await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A minimal HTTP/1.1 client: one request per connection.
pub async fn http(www: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, text) =
        http_text(www, method, path, body, &[("Accept", "application/json")]).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub async fn http_text(
    www: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    // The change hooks answer a script that asks in JSON with the ids of the changes they stored
    // (and otherwise in Buildbot's words, which `buildbot_api.rs` checks).
    let mut headers = headers.to_vec();
    if path.starts_with("/change_hook")
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        headers.push(("Accept", "application/json"));
    }
    let (status, raw) = http_raw(www, method, path, body, &headers).await;
    (status, String::from_utf8_lossy(&raw).into_owned())
}

pub async fn http_raw(
    www: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(www).await.expect("connect");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {www}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method == "POST" {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    // A server that refuses a large body answers and closes before reading it all: the rest of
    // the send, and the read after the answer, may then fail with a reset. The answer counts.
    let sent = stream.write_all(req.as_bytes()).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("response in time");
    if raw.is_empty() {
        sent.expect("send");
        read.expect("read");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// A browser: it keeps cookies, and does not follow redirects so tests can see them.
pub struct Browser {
    pub www: String,
    pub client: reqwest::Client,
    pub cookies: std::collections::BTreeMap<String, String>,
}

pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Browser {
    pub fn new(www: &str) -> Browser {
        // The client speaks plain HTTP here, but reqwest wants a TLS provider chosen all the same.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Browser {
            www: www.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: std::collections::BTreeMap::new(),
        }
    }

    pub async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("Cookie", cookie.join("; "))
        };
        let answer = request.send().await.unwrap();
        for set in answer.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        Answer {
            headers: answer.headers().clone(),
            status: answer.status().as_u16(),
            location: answer
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string()),
            body: answer.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let url = format!("http://{}{path}", self.www);
        let request = self.client.get(url);
        self.send(request).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let url = format!("http://{}{path}", self.www);
        let body = serde_urlencoded::to_string(fields).unwrap();
        let request = self
            .client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// The CSRF token the last page gave this browser.
    pub fn token(&self) -> String {
        self.cookies["kiln_csrf"].clone()
    }
}

/// A private CA (`ca.pem`) and a certificate it signed for `localhost` and 127.0.0.1
/// (`cert.pem`, key `key.pem`), made in `dir` by openssl.
pub fn make_certificate(dir: &std::path::Path) {
    // A CA, and the server's certificate signed by it, as a private CA would make them.
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=kiln test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
}

/// A tool the suite is given through an environment variable: required under CI (its absence
/// fails the test), and otherwise skipped with a warning.
/// A connection to `addr` whose receive buffer is 4 KiB, for a client that stops reading: the
/// server's writes soon wait on it.
pub async fn small_buffered(addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    socket
        .connect(addr.parse().expect("address"))
        .await
        .expect("connect")
}

pub fn optional_tool(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} must name {what} when CI is set"
            );
            eprintln!("warning: {var} is not set; a test that needs {what} does not run");
            None
        }
    }
}
