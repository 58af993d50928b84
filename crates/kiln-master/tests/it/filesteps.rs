//! File steps on kiln's worker: `FileExists`, `CopyDirectory`, `MultipleFileUpload`,
//! `JSONStringDownload`, `JSONPropertiesDownload`; an upload over `maxsize`; transfer paths that
//! would leave the builder's directory. And the steps that run on the master:
//! `MasterShellCommand` and `HTTPStep` against a loopback server.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestMaster, config, http_text};

async fn step(m: &TestMaster, build: i64, name: &str) -> Value {
    let (_, s) = m.get(&format!("builds/{build}/steps/{name}")).await;
    s["steps"][0].clone()
}

async fn stdio(m: &TestMaster, build: i64, step: &str) -> String {
    http_text(
        &m.www(),
        "GET",
        &format!("/api/v2/builds/{build}/steps/{step}/logs/stdio/raw"),
        None,
        &[],
    )
    .await
    .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_steps_check_copy_upload_and_write_json() {
    Box::pin(file_steps()).await;
}

async fn file_steps() {
    let cfg = r#"
c['builders'] = [util.BuilderConfig(name='files', workernames=['w1'], properties={'answer': 42},
    factory=util.BuildFactory([
        steps.ShellCommand(name='make', command=['sh', '-c',
            'mkdir -p out/sub && echo a > out/a.txt && echo b > out/b.txt && echo s > out/sub/s.txt && head -c 5000 /dev/zero > big.bin']),
        steps.FileExists(name='exists', file='out/a.txt'),
        steps.FileExists(name='missing', file='out/none.txt', flunkOnFailure=False),
        steps.FileExists(name='directory', file='out', flunkOnFailure=False),
        steps.CopyDirectory(src='build/out', dest='copied'),
        steps.FileExists(name='copied_ok', file='../copied/sub/s.txt'),
        steps.MultipleFileUpload(name='globbed', workersrcs=['out/*.txt', 'out/sub'], glob=True, masterdest='up'),
        steps.MultipleFileUpload(name='none', workersrcs=['out/*.nothing'], glob=True, masterdest='up'),
        steps.JSONStringDownload({'a': [1, 2], 'who': util.Property('answer')}, workerdest='o.json'),
        steps.JSONPropertiesDownload(name='props', workerdest='props.json'),
        steps.ShellCommand(name='show', command=['sh', '-c', 'cat o.json; echo; cat props.json']),
        steps.ShellCommand(name='stamp', command=['touch', '-d', '@1000000000', 'stamped.txt']),
        steps.FileUpload(name='stamped', workersrc='stamped.txt', masterdest='up/stamped.txt', keepstamp=True),
        steps.FileUpload(name='too_big', workersrc='big.bin', masterdest='up/big.bin', maxsize=1000, haltOnFailure=False, flunkOnFailure=False),
        steps.FileUpload(name='escape', workersrc='../../../etc/passwd', masterdest='up/passwd', haltOnFailure=False, flunkOnFailure=False),
        steps.StringDownload('x', name='absolute', workerdest='/tmp/kiln-should-not-write', alwaysRun=True),
    ]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['files'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", cfg)).await;
    m.start_worker("w1", "pass").await;
    m.force_and_wait(json!({"builderNames": ["files"]})).await;
    let exists = step(&m, 1, "exists").await;
    assert_eq!(
        (exists["results"].clone(), exists["state_string"].clone()),
        (json!(0), json!("File found."))
    );
    assert_eq!(
        step(&m, 1, "missing").await["state_string"],
        "File not found."
    );
    assert_eq!(
        step(&m, 1, "directory").await["state_string"],
        "Not a file."
    );
    assert_eq!(step(&m, 1, "copied_ok").await["results"], 0);
    // The glob's files and the directory land in masterdest under their own names.
    let globbed = step(&m, 1, "globbed").await;
    assert_eq!(globbed["results"], 0, "{globbed}");
    let up = m.path("up");
    assert_eq!(std::fs::read_to_string(up.join("a.txt")).unwrap(), "a\n");
    assert_eq!(std::fs::read_to_string(up.join("b.txt")).unwrap(), "b\n");
    assert_eq!(
        std::fs::read_to_string(up.join("sub/s.txt")).unwrap(),
        "s\n"
    );
    assert_eq!(step(&m, 1, "none").await["results"], 3);
    let shown = stdio(&m, 1, "show").await;
    assert!(shown.contains(r#"{"a":[1,2],"who":42}"#), "{shown}");
    let props_line = shown
        .lines()
        .find(|l| l.contains("\"properties\""))
        .unwrap_or_default();
    let props: Value = serde_json::from_str(props_line).unwrap();
    assert_eq!(props["properties"]["answer"], 42);
    assert_eq!(props["properties"]["buildername"], "files");
    assert!(props["sourcestamps"].is_array());
    // keepstamp: the worker's modification time comes with the file.
    let stamped = std::fs::metadata(up.join("stamped.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        stamped
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_000_000_000
    );
    // Over maxsize: the step fails and nothing is left at the destination.
    assert_eq!(step(&m, 1, "too_big").await["results"], 2);
    assert!(!up.join("big.bin").exists());
    // Paths that would leave the builder's directory are refused with a message.
    for (name, says) in [
        ("escape", "leaves the builder's directory"),
        ("absolute", "is absolute"),
    ] {
        assert_eq!(step(&m, 1, name).await["results"], 4, "{name}");
        let (_, err) = http_text(
            &m.www(),
            "GET",
            &format!("/api/v2/builds/1/steps/{name}/logs/err_text/raw"),
            None,
            &[],
        )
        .await;
        assert!(err.contains(says), "{name}: {err}");
    }
    assert!(!std::path::Path::new("/tmp/kiln-should-not-write").exists());
    m.stop().await;
}

/// A loopback HTTP server that records each request and answers 201, or 500 on `/fail`.
async fn http_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let fail = text.starts_with("POST /fail") || text.starts_with("GET /fail");
                record.lock().unwrap().push(text);
                let answer = if fail {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom"
                } else {
                    "HTTP/1.1 201 Created\r\nX-Token: tok123\r\nContent-Length: 7\r\n\r\ncreated"
                };
                let _ = sock.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_shell_commands_and_http_requests_run_on_the_master() {
    Box::pin(on_master()).await;
}

async fn on_master() {
    let (port, seen) = http_server().await;
    let cfg = format!(
        r#"
c['builders'] = [util.BuilderConfig(name='m', workernames=['w1'], properties={{'tag': 'v1'}},
    factory=util.BuildFactory([
        steps.MasterShellCommand(command=['sh', '-c', 'echo "on master $TAG in $(pwd)"; echo oops >&2'],
            env={{'TAG': util.Property('tag')}}, workdir='mwork'),
        steps.MasterShellCommand(name='fails', command='exit 7', haltOnFailure=False, flunkOnFailure=False),
        steps.POST(name='post', url='http://127.0.0.1:{port}/hook', json={{'tag': util.Property('tag')}},
            headers={{'X-Api': 'key'}}, hide_response_headers=['X-Token'], auth=('u', 'p')),
        steps.GET(name='get', url='http://127.0.0.1:{port}/status', params={{'q': 'a b'}}),
        steps.HTTPStep(name='fail', url='http://127.0.0.1:{port}/fail', method='POST', data={{'k': 'v'}},
            flunkOnFailure=False),
    ]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['m'])]
"#
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    std::fs::create_dir_all(m.path("mwork")).unwrap();
    m.start_worker("w1", "pass").await;
    m.force_and_wait(json!({"builderNames": ["m"]})).await;
    let sh = step(&m, 1, "MasterShellCommand").await;
    assert_eq!(sh["results"], 0, "{sh}");
    let out = stdio(&m, 1, "MasterShellCommand").await;
    let mwork = m.path("mwork").canonicalize().unwrap();
    assert!(
        out.contains(&format!("on master v1 in {}", mwork.display())),
        "{out}"
    );
    assert!(out.contains("oops"), "{out}");
    assert_eq!(step(&m, 1, "fails").await["results"], 2);
    // The requests as the server saw them.
    let seen = seen.lock().unwrap().clone();
    let post = seen
        .iter()
        .find(|r| r.starts_with("POST /hook"))
        .expect("the POST");
    assert!(post.contains("X-Api: key"), "{post}");
    assert!(post.contains("Content-Type: application/json"), "{post}");
    assert!(post.contains("Authorization: Basic dTpw"), "{post}");
    assert!(post.ends_with(r#"{"tag":"v1"}"#), "{post}");
    assert!(
        seen.iter().any(|r| r.starts_with("GET /status?q=a+b ")),
        "{seen:?}"
    );
    let form = seen.iter().find(|r| r.starts_with("POST /fail")).unwrap();
    assert!(form.ends_with("k=v"), "{form}");
    assert_eq!(step(&m, 1, "post").await["results"], 0);
    let log = stdio(&m, 1, "post").await;
    assert!(log.contains("Status: 201 Created"), "{log}");
    assert!(
        log.contains("X-Token: <HIDDEN>") && !log.contains("tok123"),
        "{log}"
    );
    assert!(log.contains("Authorization: <HIDDEN>"), "{log}");
    assert!(log.contains("created"), "{log}");
    assert_eq!(step(&m, 1, "fail").await["results"], 2);
    m.stop().await;
}

/// An https server on loopback with a certificate made here by openssl; answers 200.
async fn https_server(dir: &std::path::Path) -> u16 {
    crate::harness::make_certificate(dir);
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to answer.
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_steps_verify_https_servers_as_told() {
    let dir = tempfile::tempdir().unwrap();
    let port = https_server(dir.path()).await;
    let ca = dir.path().join("ca.pem").display().to_string();
    let cfg = format!(
        r#"
url = 'https://localhost:{port}/status'
c['builders'] = [util.BuilderConfig(name='tls', workernames=['w1'], factory=util.BuildFactory([
    steps.GET(name='with_ca', url=url, verify={ca:?}),
    steps.GET(name='roots', url=url, flunkOnFailure=False),
    steps.GET(name='unverified', url=url, verify=False),
]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['tls'])]
"#
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    m.start_worker("w1", "pass").await;
    m.force_and_wait(json!({"builderNames": ["tls"]})).await;
    let with_ca = stdio(&m, 1, "with_ca").await;
    assert_eq!(step(&m, 1, "with_ca").await["results"], 0, "{with_ca}");
    assert!(
        with_ca.contains("Status: 200 OK") && with_ca.contains("secure"),
        "{with_ca}"
    );
    // The usual roots do not know a certificate made here.
    let roots = stdio(&m, 1, "roots").await;
    assert_eq!(step(&m, 1, "roots").await["results"], 2, "{roots}");
    assert!(roots.contains("UnknownIssuer"), "{roots}");
    assert_eq!(step(&m, 1, "unverified").await["results"], 0);
    m.stop().await;
}
