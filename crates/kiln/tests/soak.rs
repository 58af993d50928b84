//! Connection churn against a master whose file-descriptor limit is small: thousands of
//! connections opened and closed in every way a peer can close them must leave nothing behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use kiln_proto::{Message, Op, Value, decode, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{KILN, WAIT, force, free_port, kiln_worker_config, wait_api, write_master};

/// Cycles of each kind of connection.
const CYCLES: usize = 5_000;
/// Connections in flight at once: far below the limit, so only leaked ones can exhaust it.
const IN_FLIGHT: usize = 16;
/// The master's limit on open file descriptors.
const FD_LIMIT: u32 = 256;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The ways a peer opens and closes a connection, on either port.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Connects to the worker port and closes without a word.
    SilentWorkerSocket,
    /// Connects to the web port and closes without a word.
    SilentWebSocket,
    /// One API request on a kept-alive connection, then the client closes.
    ApiRequest,
    /// A raw log download abandoned before it is read.
    AbandonedLog,
    /// A worker upgrade closed at once, before the master's handshake is answered.
    CloseBeforeHandshake,
    /// A ping, then a close.
    CloseAfterPing,
    /// A text frame, then a close.
    CloseAfterText,
    /// The whole handshake answered (the worker attaches), then a close.
    CloseAfterHandshake,
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What each open descriptor is, for a failure message.
fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A line of the master's `/proc/PID/status` in KiB: `VmRSS:`, or `RssAnon:` (its heap and
/// stacks, without the database file SQLite maps).
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn upgrade(port: u16, user: &str, password: &str) -> Socket {
    let mut request = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .expect("request");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    request.headers_mut().insert(
        "Authorization",
        format!("Basic {auth}").parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade accepted")
        .0
}

/// Answers the master's handshake as a worker with no builders would, until it is attached.
async fn answer_handshake(ws: &mut Socket) {
    loop {
        let Some(Ok(Ws::Binary(bytes))) = ws.next().await else {
            panic!("the connection ended during the handshake");
        };
        let Ok(Message::Request { seq, op }) = decode(&bytes) else {
            continue;
        };
        let last = matches!(op, Op::SetWorkerSettings { .. });
        let result = match op {
            Op::GetWorkerInfo => Value::Map(vec![
                (Value::from("basedir"), Value::from("/tmp/soak")),
                (Value::from("system"), Value::from("posix")),
            ]),
            _ => Value::Nil,
        };
        ws.send(Ws::Binary(encode(&Message::response(seq, result)).into()))
            .await
            .expect("answer");
        if last {
            return;
        }
    }
}

/// Closes from our side and waits for the master's answer and the end of the stream.
async fn close(mut ws: Socket) {
    ws.send(Ws::Close(None)).await.expect("close frame");
    while let Some(Ok(frame)) = ws.next().await {
        if matches!(frame, Ws::Close(_)) {
            break;
        }
    }
}

async fn cycle(kind: Kind, worker_port: u16, www: u16, worker: &str) {
    match kind {
        Kind::SilentWorkerSocket => drop(TcpStream::connect(("127.0.0.1", worker_port)).await),
        Kind::SilentWebSocket => drop(TcpStream::connect(("127.0.0.1", www)).await),
        Kind::ApiRequest | Kind::AbandonedLog => {
            let mut tcp = TcpStream::connect(("127.0.0.1", www))
                .await
                .expect("connect");
            let path = match kind {
                Kind::ApiRequest => "/api/v2/builders",
                _ => "/api/v2/logs/1/raw",
            };
            let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            tcp.write_all(request.as_bytes()).await.expect("request");
            if matches!(kind, Kind::ApiRequest) {
                let mut first = [0u8; 16];
                let _ = tcp.read(&mut first).await;
            }
        }
        Kind::CloseBeforeHandshake => close(upgrade(worker_port, worker, "simpass").await).await,
        Kind::CloseAfterPing => {
            let mut ws = upgrade(worker_port, worker, "simpass").await;
            ws.send(Ws::Ping(b"ping".to_vec().into()))
                .await
                .expect("ping");
            close(ws).await;
        }
        Kind::CloseAfterText => {
            let mut ws = upgrade(worker_port, worker, "simpass").await;
            ws.send(Ws::Text("hello".into())).await.expect("text");
            close(ws).await;
        }
        Kind::CloseAfterHandshake => {
            let mut ws = upgrade(worker_port, worker, "simpass").await;
            answer_handshake(&mut ws).await;
            close(ws).await;
        }
    }
}

/// Runs `cycles` cycles of `kind` in `IN_FLIGHT` lanes; each must finish within `WAIT`.
///
/// Each lane is one simulated worker (`sim0`, `sim1`, …) whose connections follow each other, so
/// that none is taken for a duplicate of another.
async fn churn(kind: Kind, worker_port: u16, www: u16, cycles: usize) {
    let started = Instant::now();
    let lanes = (0..IN_FLIGHT).map(|lane| async move {
        let worker = format!("sim{lane}");
        for _ in 0..cycles / IN_FLIGHT {
            tokio::time::timeout(WAIT, cycle(kind, worker_port, www, &worker))
                .await
                .unwrap_or_else(|_| panic!("a {kind:?} cycle got no answer: the master is stuck"));
        }
    });
    futures_util::future::join_all(lanes).await;
    eprintln!("{cycles} cycles of {kind:?} in {:?}", started.elapsed());
}

/// The runtime of the simulated clients: two threads, as many as the machine's cores.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts a master in the foreground in `dir`, with at most `fd_limit` open file descriptors.
fn start_master(dir: &Path, fd_limit: u32) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {fd_limit} && exec \"$0\" start --nodaemon \"$1\""
        ))
        .arg(KILN)
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start master")
}

/// Waits until the master holds no more file descriptors than `limit`.
fn wait_fds(pid: u32, limit: usize, after: &str) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = fds(pid);
        if now <= limit {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "after {after} the master still holds {now} file descriptors (started with {limit}): {:?}",
            fd_targets(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn add_simulated_worker(dir: &Path) {
    let path = dir.join("master.star");
    let mut cfg = std::fs::read_to_string(&path).expect("read config");
    for lane in 0..IN_FLIGHT {
        cfg.push_str(&format!(
            "c['workers'].append(worker.Worker('sim{lane}', 'simpass'))\n"
        ));
    }
    std::fs::write(path, cfg).expect("write config");
}

#[test]
fn connection_churn_leaves_no_descriptor_or_memory_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "echo built");
    add_simulated_worker(dir.path());
    let mut master = start_master(dir.path(), FD_LIMIT);
    let pid = master.id();
    let api = format!("http://127.0.0.1:{www}/api/v2");
    wait_api(&format!("{api}/builders"), |v| v["builders"].is_array());

    let runtime = runtime();
    // A first build, so that there is a log to download, with a real worker that then leaves.
    let worker_config = kiln_worker_config(dir.path(), worker_port);
    let worker = runtime.spawn(kiln_worker::connection::run(worker_config.clone()));
    build_once(&api, www, 1);
    worker.abort();
    wait_api(&format!("{api}/workers/w1"), |v| {
        v["workers"][0]["connected_to"] == serde_json::json!([])
    });

    // A short burst of each kind first, so that what the master keeps for good (the database
    // pool's connections, caches) is part of the starting level.
    let kinds = [
        Kind::SilentWorkerSocket,
        Kind::SilentWebSocket,
        Kind::ApiRequest,
        Kind::AbandonedLog,
        Kind::CloseBeforeHandshake,
        Kind::CloseAfterPing,
        Kind::CloseAfterText,
        Kind::CloseAfterHandshake,
    ];
    runtime.block_on(async {
        for kind in kinds {
            churn(kind, worker_port, www, IN_FLIGHT * 4).await;
        }
    });
    let start_fds = settled_fds(pid);
    let start_rss = rss_kib(pid);
    // The master itself is measured: it runs in the foreground, as this process's child.
    assert!(
        start_fds > 0 && start_rss > 0,
        "the master's descriptors and memory are read"
    );

    for kind in kinds {
        runtime.block_on(churn(kind, worker_port, www, CYCLES));
        let now = wait_fds(pid, start_fds, &format!("{CYCLES} cycles of {kind:?}"));
        eprintln!(
            "after {kind:?}: {now} fds (started with {start_fds}), RSS {} KiB (started with {start_rss} KiB)",
            rss_kib(pid)
        );
    }
    let end_rss = rss_kib(pid);
    // Memory comes back to where it started, give or take what the allocator keeps in its arenas.
    assert!(
        end_rss < start_rss + 16 * 1024,
        "RSS grew from {start_rss} KiB to {end_rss} KiB"
    );

    // A real worker still attaches and builds.
    let _worker = runtime.spawn(kiln_worker::connection::run(worker_config));
    build_once(&api, www, 2);
    let _ = master.kill();
    let _ = master.wait();
}

/// Waits for the worker, forces a build and waits for it to succeed.
fn build_once(api: &str, www: u16, number: usize) {
    wait_api(&format!("{api}/workers/w1"), |v| {
        v["workers"][0]["connected_to"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    force(www, "b1");
    wait_api(&format!("{api}/builds?order=buildid"), |v| {
        v["builds"][number - 1]["complete"] == true && v["builds"][number - 1]["results"] == 0
    });
}

/// The master's descriptor count once it stops moving: the connections of the warm-up cycles
/// may still be closing.
fn settled_fds(pid: u32) -> usize {
    let mut last = fds(pid);
    let deadline = Instant::now() + WAIT;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = fds(pid);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Simulated workers attached for the measure of how attaching grows with their number.
const MANY_WORKERS: usize = 5_000;

/// A benchmark, not a test (run with `--ignored --nocapture`): attaches `MANY_WORKERS` simulated
/// workers, 500 at a time, and prints how long each thousand took, the master's memory per idle
/// connection, and how long `GET /api/v2/workers` takes with all of them connected.
#[test]
#[ignore]
fn many_workers_attach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "echo built");
    let path = dir.path().join("master.star");
    let mut cfg = std::fs::read_to_string(&path).expect("read config");
    cfg.push_str(&format!(
        "c['workers'] += [worker.Worker('many%d' % i, 'simpass') for i in range({MANY_WORKERS})]\n"
    ));
    std::fs::write(&path, cfg).expect("write config");
    let mut master = Command::new(KILN)
        .args(["start", "--nodaemon"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start master");
    let pid = master.id();
    let api = format!("http://127.0.0.1:{www}/api/v2");
    wait_api(&format!("{api}/builders"), |v| v["builders"].is_array());
    let idle_rss = rss_kib(pid);
    let runtime = runtime();
    let started = Instant::now();
    let api_ref = &api;
    let sockets = runtime.block_on(async {
        let api = api_ref;
        let mut sockets = Vec::with_capacity(MANY_WORKERS);
        for chunk in (0..MANY_WORKERS).collect::<Vec<_>>().chunks(500) {
            let batch = chunk.iter().map(|i| async move {
                let mut ws = upgrade(worker_port, &format!("many{i}"), "simpass").await;
                answer_handshake(&mut ws).await;
                ws
            });
            sockets.extend(futures_util::future::join_all(batch).await);
            if sockets.len() % 1000 == 0 {
                let attached = started.elapsed();
                let asked = Instant::now();
                let listed = super::curl(&[&format!("{api}/workers")]);
                eprintln!(
                    "{} workers attached after {:.1} s; RSS {} KiB; GET /api/v2/workers ({} workers) in {:?}",
                    sockets.len(),
                    attached.as_secs_f64(),
                    rss_kib(pid),
                    listed["workers"].as_array().map_or(0, Vec::len),
                    asked.elapsed()
                );
            }
        }
        sockets
    });
    let rss = rss_kib(pid);
    eprintln!(
        "master RSS {rss} KiB with {MANY_WORKERS} workers (idle {idle_rss} KiB): {:.1} KiB each",
        (rss.saturating_sub(idle_rss)) as f64 / MANY_WORKERS as f64
    );
    for _ in 0..3 {
        let asked = Instant::now();
        let v = super::curl(&[&format!("{api}/workers")]);
        eprintln!(
            "GET /api/v2/workers: {} workers in {:?}",
            v["workers"].as_array().map_or(0, Vec::len),
            asked.elapsed()
        );
    }
    drop(sockets);
    let _ = master.kill();
    let _ = master.wait();
}

/// How long the soak's load lasts, in seconds (`KILN_SOAK_SECONDS`, 60 by default).
fn soak_seconds() -> u64 {
    std::env::var("KILN_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// One HTTP/1.1 `GET` on a connection of its own, read to the end: its time and size.
async fn timed_get(www: u16, path: &str) -> (Duration, usize) {
    let asked = Instant::now();
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", www)).await else {
        return (asked.elapsed(), 0);
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return (asked.elapsed(), 0);
    }
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    (asked.elapsed(), answer.len())
}

/// What the sampler saw of the master once a second: file descriptors and RSS.
#[derive(Default)]
struct Samples {
    fds: Vec<usize>,
    rss_kib: Vec<u64>,
    anon_kib: Vec<u64>,
}

/// A benchmark, not a test (run with `--ignored --nocapture`): the soak and load of a master
/// with a long history. `KILN_SOAK_HISTORY` names a master directory filled by
/// `python3 bench/api.py --keep DIR` (100,000 builds and changes); its database is copied. Then
/// `MANY_WORKERS` simulated workers attach and stay (answering the master's pings), and for
/// `KILN_SOAK_SECONDS` connection churn of every kind, four clients asking the expensive
/// queries over and over, and a cheap query timed every 50 ms run together; the master's file
/// descriptors and RSS are read once a second. Prints what it measured.
#[test]
#[ignore]
fn soak_under_load() {
    let history = std::env::var_os("KILN_SOAK_HISTORY")
        .map(std::path::PathBuf::from)
        .expect("KILN_SOAK_HISTORY names a master directory filled by bench/api.py --keep");
    let dir = tempfile::tempdir().expect("tempdir");
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "echo built");
    std::fs::copy(
        history.join("state.sqlite"),
        dir.path().join("state.sqlite"),
    )
    .expect("the filled history's database");
    add_simulated_worker(dir.path());
    let path = dir.path().join("master.star");
    let mut cfg = std::fs::read_to_string(&path).expect("read config");
    cfg.push_str(&format!(
        "c['workers'] += [worker.Worker('many%d' % i, 'simpass') for i in range({MANY_WORKERS})]\n"
    ));
    std::fs::write(&path, cfg).expect("write config");
    let mut master = start_master(dir.path(), 16_384);
    let pid = master.id();
    let api = format!("http://127.0.0.1:{www}/api/v2");
    wait_api(&format!("{api}/builders"), |v| v["builders"].is_array());
    let runtime = runtime();
    let idle = (settled_fds(pid), rss_kib(pid));
    eprintln!(
        "idle: {} fds, RSS {} KiB (heap {} KiB)",
        idle.0,
        idle.1,
        status_kib(pid, "RssAnon:")
    );

    // The workers attach and stay; reading their sockets answers the master's pings.
    let started = Instant::now();
    let readers = runtime.block_on(async {
        let mut readers = Vec::with_capacity(MANY_WORKERS);
        for chunk in (0..MANY_WORKERS).collect::<Vec<_>>().chunks(500) {
            let batch = chunk.iter().map(|i| async move {
                let mut ws = upgrade(worker_port, &format!("many{i}"), "simpass").await;
                answer_handshake(&mut ws).await;
                ws
            });
            for mut ws in futures_util::future::join_all(batch).await {
                readers.push(tokio::spawn(async move {
                    while let Some(Ok(_)) = ws.next().await {}
                }));
            }
        }
        readers
    });
    let attached = (fds(pid), rss_kib(pid));
    eprintln!(
        "{MANY_WORKERS} workers attached in {:.1} s: {} fds, RSS {} KiB (heap {} KiB)",
        started.elapsed().as_secs_f64(),
        attached.0,
        attached.1,
        status_kib(pid, "RssAnon:")
    );

    let seconds = soak_seconds();
    let until = Instant::now() + Duration::from_secs(seconds);
    let (cheap, expensive, churned, samples) = runtime.block_on(async move {
        let expensive_paths = [
            "/api/v2/changes",
            "/api/v2/builds",
            "/api/v2/changes?files__contains=README",
            "/api/v2/buildsets?sourcestamps__contains=1&limit=10",
        ];
        let expensive = expensive_paths.map(|path| {
            tokio::spawn(async move {
                let mut answered = 0usize;
                while Instant::now() < until {
                    timed_get(www, path).await;
                    answered += 1;
                }
                answered
            })
        });
        let kinds = [
            Kind::SilentWorkerSocket,
            Kind::SilentWebSocket,
            Kind::ApiRequest,
            Kind::CloseBeforeHandshake,
            Kind::CloseAfterPing,
            Kind::CloseAfterText,
            Kind::CloseAfterHandshake,
        ];
        let churn = tokio::spawn(async move {
            let mut cycles = 0usize;
            while Instant::now() < until {
                for kind in kinds {
                    churn(kind, worker_port, www, IN_FLIGHT * 4).await;
                    cycles += IN_FLIGHT * 4;
                }
            }
            cycles
        });
        let sampler = tokio::spawn(async move {
            let mut samples = Samples::default();
            while Instant::now() < until {
                samples.fds.push(fds(pid));
                samples.rss_kib.push(rss_kib(pid));
                samples.anon_kib.push(status_kib(pid, "RssAnon:"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            samples
        });
        let mut cheap = Vec::new();
        while Instant::now() < until {
            let (took, bytes) = timed_get(www, "/api/v2/builds?limit=10&order=-buildid").await;
            assert!(bytes > 0, "the cheap query got no answer");
            cheap.push(took);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut answered = 0;
        for e in expensive {
            answered += e.await.expect("expensive client");
        }
        let churned = churn.await.expect("churn");
        (cheap, answered, churned, sampler.await.expect("sampler"))
    });
    let mut sorted = cheap.clone();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{seconds} s of load: {churned} churn cycles, {expensive} expensive answers; the cheap \
         query {} times: median {:?}, p99 {:?}, max {:?}",
        sorted.len(),
        at(0.5),
        at(0.99),
        sorted.last().expect("a cheap query")
    );
    eprintln!(
        "during the load: fds {}..{}, RSS {}..{} KiB, heap {}..{} KiB",
        samples.fds.iter().min().expect("a sample"),
        samples.fds.iter().max().expect("a sample"),
        samples.rss_kib.iter().min().expect("a sample"),
        samples.rss_kib.iter().max().expect("a sample"),
        samples.anon_kib.iter().min().expect("a sample"),
        samples.anon_kib.iter().max().expect("a sample")
    );
    std::thread::sleep(Duration::from_secs(5));
    eprintln!(
        "5 s after the load: {} fds (with the workers attached: {}), RSS {} KiB (heap {} KiB)",
        fds(pid),
        attached.0,
        rss_kib(pid),
        status_kib(pid, "RssAnon:")
    );
    for r in readers {
        r.abort();
    }
    let _ = master.kill();
    let _ = master.wait();
}
