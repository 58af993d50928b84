//! Reporters against real receivers on the loopback address: an HTTP receiver that records what
//! it is posted, and aiosmtpd, a real SMTP server with STARTTLS and logins. Reports survive a
//! receiver that is down and a master that restarts, and go out once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::harness::{TestMaster, WAIT, config, make_certificate};

/// What the receiver was posted: headers and body of each request.
#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    arrived: Arc<Notify>,
    /// Answer 500 to this many requests before accepting.
    refuse: Arc<Mutex<usize>>,
}

impl Receiver {
    /// Serves on `port` (0: any) until the test ends; the port it listens on.
    async fn serve(&self, port: u16) -> u16 {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("receiver port");
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/status", axum::routing::post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    /// Waits until `n` requests have been accepted; their bodies.
    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Value)> {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                {
                    let posts = self.posts.lock().unwrap();
                    if posts.len() >= n {
                        return posts.clone();
                    }
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} reports never arrived"))
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    {
        let mut refuse = r.refuse.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    r.posts.lock().unwrap().push((headers, value));
    r.arrived.notify_waiters();
    StatusCode::OK
}

/// A port nothing listens on yet.
async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn builders() -> &'static str {
    r#"
c['builders'] = [
    util.BuilderConfig(name='pass', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(name='hello', command='echo hello')])),
    util.BuilderConfig(name='fail', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(name='compile', command='echo compiling; echo "error: it broke" >&2; exit 1')])),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['pass', 'fail'])]
c['buildbotURL'] = 'http://ci.example.org/'
c['title'] = 'KilnRef'
"#
}

/// How the reporter's deliveries stand, from the database.
async fn status(m: &TestMaster, name: &str) -> kiln_db::ReporterStatus {
    m.master()
        .db
        .reporter_statuses()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.reporter == name)
        .unwrap_or_default()
}

/// Waits until the reporter's deliveries stand as `done` says (the outbox records an outcome a
/// moment after the receiver has the report); how they stand then.
async fn wait_status(
    m: &TestMaster,
    name: &str,
    done: impl Fn(&kiln_db::ReporterStatus) -> bool,
    what: &str,
) -> kiln_db::ReporterStatus {
    tokio::time::timeout(WAIT, async {
        loop {
            let s = status(m, name).await;
            if done(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name}: never {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_push_survives_a_receiver_outage_and_a_master_restart() {
    let receiver = Receiver::default();
    let port = free_port().await;
    let body = format!(
        "{}\nc['services'] = [reporters.HttpStatusPush(serverUrl='http://127.0.0.1:{port}/status', \
         auth=('hook', util.Secret('pushpass')), headers={{'X-Custom': 'custom-value'}}, \
         retryDelay=1, maxRetryDelay=1)]\n\
         c['secretsProviders'] = [secrets.SecretInAFile(dirname='secrets')]\n",
        builders()
    );
    let source = config("sqlite:///state.sqlite", &body);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/pushpass"), "s3cret").unwrap();
    let mut m = TestMaster::start_in(dir, &source).await;
    m.start_worker("w1", "pass").await;
    m.wait_attached("w1").await;

    // The receiver is down: the start and the end of the build are decided and kept.
    let results = m
        .force_and_wait(json!({"builderid": 2, "builderNames": ["fail"], "reason": "push"}))
        .await;
    assert_eq!(results, 2);
    let name = "HttpStatusPush_BuildStatusGenerator";
    let s = wait_status(
        &m,
        name,
        |s| s.pending == 2 && s.last_error.is_some(),
        "two pending reports with an error",
    )
    .await;
    let error = s.last_error.unwrap().0;
    assert!(error.contains(&port.to_string()), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
    // The reporter's state is in the API and on its page.
    let (_, api) = m.get(&format!("reporters/{name}")).await;
    let r = &api["reporters"][0];
    assert_eq!(r["class"], "HttpStatusPush", "{api}");
    assert_eq!(r["generators"], json!(["BuildStatusGenerator"]));
    assert_eq!(
        (r["pending"].as_i64(), r["sent"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(r["last_error"], json!(error));
    let (code, page) = crate::harness::http_text(&m.www(), "GET", "/reporters", None, &[]).await;
    assert_eq!(code, 200);
    assert!(page.contains(name), "{page}");
    assert!(page.contains("fail #1 finished: failure"), "{page}");
    assert!(page.contains("<td class=\"pending\">2</td>"), "{page}");

    // The master stops with the reports pending, and comes back after the receiver does.
    m.stop().await;
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    receiver.serve(port).await;
    let mut m = TestMaster::start_in(dir, &source).await;
    let posts = receiver.wait_for(2).await;
    let (headers, start) = &posts[0];
    let (_, end) = &posts[1];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-custom"], "custom-value");
    // Basic hook:s3cret.
    assert_eq!(headers["authorization"], "Basic aG9vazpzM2NyZXQ=");
    assert_eq!(start["complete"], false, "{start}");
    assert_eq!(start["results"], Value::Null);
    assert_eq!(end["complete"], true, "{end}");
    assert_eq!(end["results"], 2);
    assert_eq!(end["builder"]["name"], "fail");
    assert_eq!(end["number"], 1);
    assert_eq!(end["url"], "http://ci.example.org/builders/2/builds/1");
    assert_eq!(end["properties"]["buildername"][0], "fail");
    assert!(end["buildset"]["reason"].as_str().is_some(), "{end}");

    // A receiver that answers 500 gets the report again; nothing is sent twice.
    *receiver.refuse.lock().unwrap() = 1;
    m.start_worker("w1", "pass").await;
    m.wait_attached("w1").await;
    m.force_and_wait(json!({"builderid": 1, "builderNames": ["pass"]}))
        .await;
    let posts = receiver.wait_for(4).await;
    assert_eq!(posts[2].1["builder"]["name"], "pass");
    assert_eq!(posts[3].1["results"], 0);
    // The receiver has the last report a moment before the outbox records it.
    let s = wait_status(
        &m,
        name,
        |s| s.pending == 0,
        "every report recorded as sent",
    )
    .await;
    assert_eq!((s.pending, s.sent, s.failed), (0, 4, 0));
    assert!(s.last_error.unwrap().0.starts_with("500"));
    m.stop().await;
    assert_eq!(receiver.posts.lock().unwrap().len(), 4, "sent once each");
}

/// aiosmtpd, started with `args`, writing each mail it accepts into `out`.
struct SmtpServer {
    _child: tokio::process::Child,
    port: u16,
    out: std::path::PathBuf,
}

impl SmtpServer {
    /// The server, or `None` where no Python with aiosmtpd is given (outside CI).
    async fn start(out: &std::path::Path, args: &[&str]) -> Option<SmtpServer> {
        use tokio::io::AsyncBufReadExt;
        let python = crate::harness::optional_tool("KILN_TEST_PYTHON", "a Python with aiosmtpd")?;
        let script = out.join("smtp_server.py");
        std::fs::write(&script, include_str!("smtp_server.py")).unwrap();
        let mut child = tokio::process::Command::new(python)
            .arg(&script)
            .arg(out)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the SMTP server starts in time")
            .unwrap()
            .expect("the SMTP server says it is ready");
        let port = line
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected: {line}"));
        Some(SmtpServer {
            _child: child,
            port,
            out: out.to_path_buf(),
        })
    }

    /// Waits for the `n`th mail.
    async fn mail(&self, n: usize) -> Value {
        let path = self.out.join(format!("{n}.json"));
        tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    return serde_json::from_str(&text).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("mail {n} never arrived"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_to_the_blamelist_over_starttls_with_a_login_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    make_certificate(dir.path());
    let out = dir.path().join("mails");
    std::fs::create_dir(&out).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let Some(smtp) = SmtpServer::start(
        &out,
        &[
            "--tls",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            "--user",
            "mailer:smtp-pw",
            "--refuse",
            "nobody@example.org",
        ],
    )
    .await
    else {
        return;
    };
    let body = format!(
        r#"{builders}
c['secretsProviders'] = [secrets.SecretInAFile(dirname='secrets')]
mail = dict(relayhost='localhost', smtpPort={port}, useTls=True, caFile='ca.pem',
            smtpUser='mailer', smtpPassword=util.Secret('smtp'))
c['services'] = [
    reporters.MailNotifier(fromaddr='Kiln Bot <bot@example.org>', lookup='example.org',
        extraRecipients=['Ops Team <ops@example.org>'],
        extraHeaders={{'X-Builder': util.Interpolate('%(prop:buildername)s')}},
        generators=[reporters.BuildStatusGenerator(mode=('failing',),
            message_formatter=reporters.MessageFormatter(want_logs_content=True))],
        **mail),
    reporters.MailNotifier(name='refused', fromaddr='bot@example.org', sendToInterestedUsers=False,
        extraRecipients=['nobody@example.org'], retries=0,
        generators=[reporters.BuildStatusGenerator(mode='all')], **mail),
]
"#,
        builders = builders(),
        port = smtp.port
    );
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/smtp"), "smtp-pw").unwrap();
    let source = config("sqlite:///state.sqlite", &body);
    let mut m = TestMaster::start_in(dir, &source).await;
    m.start_worker("w1", "pass").await;
    m.wait_attached("w1").await;
    // A passing build mails nobody on the failing-only notifier.
    m.force_and_wait(json!({"builderid": 1, "builderNames": ["pass"]}))
        .await;
    m.force_and_wait(json!({"builderid": 2, "builderNames": ["fail"], "reason": "mail test", "username": "Alice <alice@example.org>"}))
        .await;
    let mail = smtp.mail(1).await;
    assert_eq!(mail["mail_from"], "bot@example.org");
    assert_eq!(mail["auth"], "mailer");
    assert_eq!(mail["tls"], true);
    let mut rcpt: Vec<String> = serde_json::from_value(mail["rcpt_tos"].clone()).unwrap();
    rcpt.sort();
    // The forced build's owner (the form's name and address) and the extra recipient.
    assert_eq!(rcpt, ["alice@example.org", "ops@example.org"]);
    let data = mail["data"].as_str().unwrap();
    assert!(
        data.contains("From: \"Kiln Bot\" <bot@example.org>"),
        "{data}"
    );
    assert!(data.contains("To: Alice <alice@example.org>"), "{data}");
    assert!(
        data.contains("Cc: \"Ops Team\" <ops@example.org>"),
        "{data}"
    );
    assert!(data.contains("X-Builder: fail"), "{data}");
    // The subject is ☠ Buildbot (KilnRef): fail - …, encoded.
    assert!(data.contains("Subject: =?utf-8?"), "{data}");
    assert!(data.contains("multipart/mixed"), "{data}");
    assert!(
        data.contains("A failed build has been detected on builder fail while building KilnRef."),
        "{data}"
    );
    assert!(
        data.contains("http://ci.example.org/builders/2/builds/1"),
        "{data}"
    );
    assert!(data.contains("filename=\"compile.stdio\""), "{data}");
    assert!(!data.contains("smtp-pw"), "{data}");
    // The refused recipient makes that reporter's mails fail for good, with the server's words.
    let s = wait_status(
        &m,
        "refused",
        |s| s.failed == 2,
        "both mails of the refused reporter fail",
    )
    .await;
    assert_eq!(s.pending, 0);
    assert!(s.last_error.unwrap().0.contains("550"));
    drop(smtp);
    m.stop().await;
}

/// A mail reporter keeps its connection to the relay from one mail to the next, without a NOOP
/// before each, and a relay that ended the session in between costs the mail no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_share_a_connection_and_one_the_relay_closed_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, closing) = (dir.path().join("kept"), dir.path().join("closing"));
    std::fs::create_dir(&kept).unwrap();
    std::fs::create_dir(&closing).unwrap();
    let Some(keeps) = SmtpServer::start(&kept, &[]).await else {
        return;
    };
    let Some(closes) = SmtpServer::start(&closing, &["--one-mail-per-session"]).await else {
        return;
    };
    let notifier = |name: &str, port: u16| {
        format!(
            "reporters.MailNotifier(name='{name}', fromaddr='bot@example.org', \
             relayhost='127.0.0.1', smtpPort={port}, sendToInterestedUsers=False, \
             extraRecipients=['ops@example.org'], retries=0, \
             generators=[reporters.BuildStatusGenerator(mode='all')])"
        )
    };
    let body = format!(
        "{}\nc['services'] = [{}, {}]\n",
        builders(),
        notifier("kept", keeps.port),
        notifier("closing", closes.port)
    );
    let source = config("sqlite:///state.sqlite", &body);
    let mut m = TestMaster::start_in(dir, &source).await;
    m.start_worker("w1", "pass").await;
    m.wait_attached("w1").await;
    for n in 1..=3 {
        m.force_and_wait(json!({"builderid": 1, "builderNames": ["pass"]}))
            .await;
        let mail = keeps.mail(n).await;
        assert_eq!(mail["session_mail"], n, "{mail}");
        assert_eq!(mail["noops"], 0, "{mail}");
        let mail = closes.mail(n).await;
        assert_eq!(mail["session_mail"], 1, "{mail}");
    }
    let s = wait_status(&m, "closing", |s| s.sent == 3, "three mails sent").await;
    assert_eq!((s.pending, s.failed), (0, 0));
    m.stop().await;
}

/// Every request a stand-in forge or chat got: method, path and query, headers, body.
type Seen = Arc<Mutex<Vec<(String, String, HeaderMap, Value)>>>;

/// A stand-in for a forge, a chat or Gerrit that records every request: what it saw, a
/// notification for each request, and its base URL.
async fn stand_in() -> (Seen, Arc<Notify>, String) {
    let seen: Seen = Arc::default();
    let arrived = Arc::new(Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(record)
        .with_state((seen.clone(), arrived.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (seen, arrived, at)
}

async fn record(
    State((seen, arrived)): State<(Seen, Arc<Notify>)>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    seen.lock()
        .unwrap()
        .push((method.to_string(), uri.to_string(), headers, value));
    arrived.notify_waiters();
    StatusCode::CREATED
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forges_and_chats_get_each_builds_statuses_in_their_own_words() {
    let (seen, arrived, at) = stand_in().await;
    let body = format!(
        r#"
c['builders'] = [util.BuilderConfig(name='fail', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(name='compile', command='exit 1')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['fail'],
    properties=[util.StringParameter(name='pullrequesturl', default='https://bb.example.org/projects/P/repos/r/pull-requests/12')])]
c['buildbotURL'] = 'http://ci.example.org/'
c['secretsProviders'] = [secrets.SecretInAFile(dirname='secrets')]
c['services'] = [
    reporters.GitHubStatusPush(token='gh-token', baseURL='{at}/gh'),
    reporters.GitHubCommentPush(token='gh-token', baseURL='{at}/gh'),
    reporters.GitLabStatusPush(token=util.Secret('gitlab'), baseURL='{at}/gl/'),
    reporters.GiteaStatusPush('{at}/gitea', 'gt-token', context=util.Interpolate('ci/%(prop:buildername)s')),
    reporters.BitbucketStatusPush(auth=('bbuser', 'bbpass'), base_url='{at}/bb'),
    reporters.BitbucketServerStatusPush('{at}/bbs', 'u', 'p'),
    reporters.BitbucketServerPRCommentPush('{at}/bbs', 'u', 'p'),
    reporters.ZulipStatusPush('{at}/zulip', 'zk', 'builds'),
    reporters.MatrixStatusPush('{at}/matrix', 'mx-token', '!room:example.org'),
    reporters.SlackStatusPush('{at}/slack', channel='#ci'),
    reporters.WebhookPush('{at}/hook', headers={{'X-Kiln': 'yes'}}),
]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/gitlab"), "gl-token").unwrap();
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", &body)).await;
    m.start_worker("w1", "pass").await;
    let sha = "0123456789abcdef0123456789abcdef01234567";
    m.force_and_wait(
        json!({"builderNames": ["fail"], "branch": "refs/pull/7/head",
        "revision": sha, "repository": "https://github.com/o/r", "project": "demo"}),
    )
    .await;
    tokio::time::timeout(WAIT, async {
        loop {
            let notified = arrived.notified();
            if seen.lock().unwrap().len() >= 21 {
                return;
            }
            notified.await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {:?} arrived",
            seen.lock()
                .unwrap()
                .iter()
                .map(|s| s.1.clone())
                .collect::<Vec<_>>()
        )
    });
    let seen = seen.lock().unwrap().clone();
    let at_path = |prefix: &str| -> Vec<(String, String, HeaderMap, Value)> {
        seen.iter()
            .filter(|s| s.1.starts_with(prefix))
            .cloned()
            .collect()
    };
    let states = |prefix: &str, key: &str| -> Vec<String> {
        at_path(prefix)
            .iter()
            .filter_map(|s| s.3[key].as_str().map(String::from))
            .collect()
    };
    let build_url = "http://ci.example.org/builders/1/builds/1";

    let gh = at_path(&format!("/gh/repos/o/r/statuses/{sha}"));
    assert_eq!(gh.len(), 3, "{gh:?}");
    assert_eq!(gh[0].2["authorization"], "token gh-token");
    assert_eq!(
        gh[2].3,
        json!({"state": "failure", "description": "Build done.", "target_url": build_url, "context": "buildbot/fail"})
    );
    assert_eq!(
        states("/gh/repos", "state"),
        ["pending", "pending", "failure"]
    );
    assert_eq!(gh[0].3["target_url"], "http://ci.example.org/builders/1");
    let comment = at_path("/gh/repos/o/r/issues/7/comments");
    assert_eq!(comment.len(), 1);
    assert_eq!(comment[0].3, json!({"body": "Build done."}));

    let gl = at_path(&format!("/gl/api/v4/projects/o%2Fr/statuses/{sha}"));
    assert_eq!(gl[0].2["private-token"], "gl-token");
    assert_eq!(states("/gl/", "state"), ["pending", "running", "failed"]);
    assert_eq!(gl[2].3["ref"], "refs/pull/7/head");
    assert_eq!(gl[2].3["name"], "buildbot/fail");

    let gitea = at_path(&format!("/gitea/api/v1/repos/o/r/statuses/{sha}"));
    assert_eq!(gitea[0].2["authorization"], "token gt-token");
    assert_eq!(
        states("/gitea/", "state"),
        ["pending", "pending", "failure"]
    );
    assert_eq!(gitea[2].3["context"], "ci/fail");

    let bb = at_path(&format!("/bb/o/r/commit/{sha}/statuses/build"));
    assert_eq!(bb[0].2["authorization"], "Basic YmJ1c2VyOmJicGFzcw==");
    assert_eq!(states("/bb/", "state"), ["INPROGRESS", "FAILED"]);
    assert_eq!(bb[1].3["key"], "a602e216eb44a3ac5e096036eeaaef6bb9159677");
    assert_eq!(bb[1].3["name"], "fail");

    assert_eq!(
        states(
            &format!("/bbs/rest/build-status/1.0/commits/{sha}"),
            "state"
        ),
        ["INPROGRESS", "FAILED"]
    );
    let pr = at_path("/bbs/rest/api/1.0/projects/P/repos/r/pull-requests/12/comments");
    assert_eq!(pr.len(), 1);
    assert!(
        pr[0].3["text"]
            .as_str()
            .unwrap()
            .starts_with("A failed build has been detected on builder fail"),
        "{:?}",
        pr[0].3
    );

    let zulip = at_path("/zulip/api/v1/external/buildbot?stream=builds&api_key=zk");
    assert_eq!(states("/zulip/", "event"), ["new", "finished"]);
    assert_eq!(zulip[1].3["results"], 2);
    assert_eq!(zulip[1].3["buildername"], "fail");
    assert_eq!(zulip[1].3["project"], "demo");

    let matrix =
        at_path("/matrix/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/kiln-");
    assert_eq!(matrix.len(), 1);
    assert_eq!(matrix[0].0, "PUT");
    assert_eq!(matrix[0].2["authorization"], "Bearer mx-token");
    assert_eq!(
        matrix[0].3["body"],
        format!("fail #1: failed build (failed 'exit 1' (failure)) {build_url}")
    );
    let slack = at_path("/slack");
    assert_eq!(slack[0].3["channel"], "#ci");
    assert_eq!(slack[0].3["text"], matrix[0].3["body"]);

    let hook = at_path("/hook");
    assert_eq!(
        states("/hook", "event"),
        ["build_started", "build_finished"]
    );
    assert_eq!(hook[1].2["x-kiln"], "yes");
    assert_eq!(hook[1].3["result_name"], "failure");
    assert_eq!(hook[1].3["builds"][0]["url"], build_url);
    assert_eq!(seen.len(), 21, "nothing more: {seen:?}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gerrit_gets_reviews_over_ssh_from_old_and_new_callbacks_and_over_rest() {
    let (seen, _, at) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for ssh that keeps each call's arguments, NUL-separated, in a file of its own.
    let calls = dir.path().join("ssh-calls");
    std::fs::create_dir(&calls).unwrap();
    let ssh = dir.path().join("fake-ssh");
    std::fs::write(
        &ssh,
        format!(
            "#!/bin/sh\nt=$(mktemp {0}/tmp-XXXXXX)\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > $t\nmv $t {0}/call-$$\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/gerrit"), "http-pw").unwrap();
    let body = format!(
        r#"
c['builders'] = [util.BuilderConfig(name='fail', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(name='compile', command='exit 1')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['fail'], properties=[
    util.StringParameter(name='event.change.id', default='I0123'),
    util.StringParameter(name='event.change.number', default='4711'),
    util.StringParameter(name='event.change.project', default='kiln-demo'),
    util.StringParameter(name='event.patchSet.revision', default='bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb')])]
c['buildbotURL'] = 'http://ci.example.org/'
c['secretsProviders'] = [secrets.SecretInAFile(dirname='secrets')]

# The brief's own callbacks, as written there.
def gerritReviewCB(builderName, build, result, status, arg):
    if result == util.RETRY:
        return None, 0, 0

    message =  "Buildbot finished compiling your patchset\n"
    message += "on configuration: %s\n" % builderName
    message += "The result is: %s\n" % util.Results[result].upper()

    if arg:
        message += "\nFor more details visit:\n"
        message += status.getURLForThing(build) + "\n"

    # message, verified, reviewed
    return message, (result == util.SUCCESS or -1), 0

def gerritStartCB(builderName, build, arg):
    message = "Buildbot started compiling your patchset\n"
    message += "on configuration: %s\n" % builderName
    return message

def review(builderName, build, arg):
    return reporters.makeReviewResult("It's " + builderName + " " + arg,
        (reporters.GERRIT_LABEL_VERIFIED, 1 if build['results'] == util.SUCCESS else -1),
        (reporters.GERRIT_LABEL_REVIEWED, 0))

c['services'] = [
    reporters.GerritStatusPush('gerrit.example.org', 'bbuser', name='old', sshCommand='{ssh}',
        reviewCB=gerritReviewCB, reviewArg=c['buildbotURL'], startCB=gerritStartCB, startArg=c['buildbotURL']),
    reporters.GerritStatusPush('gerrit.example.org', 'bbuser', port=2222, identity_file='id_gerrit',
        notify='OWNER', name='new', sshCommand='{ssh}',
        generators=[reporters.GerritBuildEndStatusGenerator(callback=review, callback_arg='done')]),
    reporters.GerritStatusPush('{at}/gerrit', 'bbuser', password=util.Secret('gerrit'), name='rest'),
]
"#,
        ssh = ssh.display()
    );
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", &body)).await;
    m.start_worker("w1", "pass").await;
    m.force_and_wait(json!({"builderNames": ["fail"]})).await;
    let read_calls = || -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = std::fs::read_dir(&calls)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("call-"))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .split('\0')
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect();
        out.sort();
        out
    };
    tokio::time::timeout(WAIT, async {
        loop {
            if read_calls().len() >= 3 && !seen.lock().unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("reviews missing: {:?}", read_calls()));
    let calls = read_calls();
    let sha = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let old_end: Vec<&str> = [
        "-o", "BatchMode=yes", "bbuser@gerrit.example.org", "-p", "29418", "gerrit", "review",
        "--project kiln-demo", "--tag autogenerated:buildbot",
        "--message 'Buildbot finished compiling your patchset\non configuration: fail\nThe result is: FAILURE\n\nFor more details visit:\nhttp://ci.example.org/builders/1/builds/1\n'",
        "--label Verified=-1", sha,
    ]
    .to_vec();
    assert!(calls.iter().any(|c| *c == old_end), "{calls:#?}");
    assert!(
        calls.iter().any(|c| c.iter().any(|a| a
            == "--message 'Buildbot started compiling your patchset\non configuration: fail\n'")
            && !c.iter().any(|a| a.starts_with("--label"))),
        "{calls:#?}"
    );
    let new = calls
        .iter()
        .find(|c| {
            c.iter()
                .any(|a| a.starts_with("--message 'It\"s fail done'"))
        })
        .unwrap_or_else(|| panic!("{calls:#?}"));
    assert!(new.contains(&"2222".to_string()) && new.contains(&"--notify OWNER".to_string()));
    assert!(new.contains(&"-i".to_string()) && new.iter().any(|a| a.ends_with("/id_gerrit")));
    assert!(new.contains(&"--label Verified=-1".to_string()), "{new:?}");
    // makeReviewResult's labels go as they are, zero too, as in Buildbot.
    assert!(
        new.contains(&"--label Code-Review=0".to_string()),
        "{new:?}"
    );

    let rest = seen.lock().unwrap().clone();
    assert_eq!(rest.len(), 1, "{rest:?}");
    let (method, uri, headers, review) = &rest[0];
    assert_eq!(method, "POST");
    assert_eq!(
        uri,
        &format!("/gerrit/a/changes/4711/revisions/{sha}/review")
    );
    // Basic bbuser:http-pw.
    assert_eq!(headers["authorization"], "Basic YmJ1c2VyOmh0dHAtcHc=");
    assert_eq!(
        review,
        &json!({"message": "Builder fail failed (failed 'exit 1' (failure)) - http://ci.example.org/builders/1/builds/1",
                "labels": {"Verified": -1}, "tag": "autogenerated:buildbot"})
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildsets_functions_broken_templates_and_missing_workers_are_reported_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mails");
    std::fs::create_dir(&out).unwrap();
    let Some(smtp) = SmtpServer::start(&out, &[]).await else {
        return;
    };
    let (seen, arrived, at) = stand_in().await;
    let body = format!(
        r#"
c['workers'] = [worker.Worker('w1', 'pass'),
    worker.Worker('w2', 'pass2', notify_on_missing=['ops@example.org'], missing_timeout=1)]
c['builders'] = [
    util.BuilderConfig(name='pass', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(command='true')])),
    util.BuilderConfig(name='fail', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(command='false')])),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['pass', 'fail'])]
c['title'] = 'KilnRef'

def summary(ctx):
    return {{'buildset': ctx['buildset']['bsid'],
            'builds': sorted([b['builder']['name'] + ':' + str(b['results']) for b in ctx['builds']])}}

def per_build(ctx):
    return {{'builder': ctx['build']['builder']['name'], 'results': ctx['build']['results']}}

c['services'] = [
    reporters.HttpStatusPush(serverUrl='{at}/combined', generators=[
        reporters.BuildSetCombinedStatusGenerator(
            message_formatter=reporters.MessageFormatterFunction(summary, 'json'))]),
    reporters.HttpStatusPush(serverUrl='{at}/each', generators=[
        reporters.BuildSetStatusGenerator(mode='failing',
            message_formatter=reporters.MessageFormatterFunction(per_build, 'json'))]),
    reporters.HttpStatusPush(serverUrl='{at}/broken', generators=[
        reporters.BuildStatusGenerator(mode='all',
            message_formatter=reporters.MessageFormatter(template='{{{{ no_such_function() }}}}', template_type='json'))]),
    reporters.MailNotifier(fromaddr='bot@example.org', relayhost='127.0.0.1', smtpPort={port},
        generators=[reporters.WorkerMissingGenerator(workers=['w2'])]),
]
"#,
        port = smtp.port
    );
    let source = format!(
        "BuildmasterConfig = {{}}\nc = BuildmasterConfig\nc['db'] = {{'db_url': 'sqlite:///state.sqlite'}}\n{body}"
    );
    let mut m = TestMaster::start_in(dir, &source).await;
    m.start_worker("w1", "pass").await;
    let w2 = m.start_worker("w2", "pass2").await;
    // One buildset of two builds: one passes, one fails.
    m.force_and_wait(json!({"builderNames": ["pass", "fail"]}))
        .await;
    tokio::time::timeout(WAIT, async {
        loop {
            let notified = arrived.notified();
            if seen.lock().unwrap().len() >= 2 {
                return;
            }
            notified.await;
        }
    })
    .await
    .expect("the buildset's reports");
    let seen = seen.lock().unwrap().clone();
    let at_path = |p: &str| -> Vec<Value> {
        seen.iter()
            .filter(|s| s.1 == p)
            .map(|s| s.3.clone())
            .collect()
    };
    assert_eq!(
        at_path("/combined"),
        [json!({"buildset": 1, "builds": ["fail:2", "pass:0"]})]
    );
    // BuildSetStatusGenerator keeps the builds its mode wants.
    assert_eq!(
        at_path("/each"),
        [json!([{"builder": "fail", "results": 2}])]
    );
    // A template that fails to render reports nothing, and holds nothing else back.
    assert!(at_path("/broken").is_empty(), "{seen:?}");

    // A watched worker that goes away and stays away is reported to its addresses alone.
    m.kill_worker(w2);
    let mail = smtp.mail(1).await;
    assert_eq!(mail["rcpt_tos"], json!(["ops@example.org"]));
    let data = mail["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: Buildbot KilnRef worker w2 missing"),
        "{data}"
    );
    assert!(!data.contains("\nTo:"), "no To header: {data}");
    assert!(
        data.contains("The Buildbot worker named w2 went away."),
        "{data}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_builds_finishing_together_are_each_reported_once() {
    let (seen, arrived, at) = stand_in().await;
    let body = format!(
        r#"
c['builders'] = [util.BuilderConfig(name='b{{}}'.format(i), workernames=['w1', 'w2'],
    factory=util.BuildFactory([steps.ShellCommand(command='true')])) for i in range(10)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b{{}}'.format(i) for i in range(10)])]
def compared(ctx):
    b = ctx['build']
    prev = b.get('prev_build')
    return {{'builderid': b['builderid'], 'number': b['number'],
            'prev': None if prev == None else [prev['builderid'], prev['number'], prev['complete']]}}

c['services'] = [reporters.HttpStatusPush(serverUrl='{at}/status', name='push'),
    reporters.HttpStatusPush(serverUrl='{at}/compared', name='compared', generators=[
        reporters.BuildStatusGenerator(mode='all',
            message_formatter=reporters.MessageFormatterFunction(compared, 'json'))])]
"#
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &body)).await;
    m.start_worker("w1", "pass").await;
    m.start_worker("w2", "pass2").await;
    // 100 forces of 10 builders each: 1,000 builds, queued at once.
    let www = m.www();
    let forces: Vec<_> = (0..100)
        .map(|_| {
            let www = www.clone();
            tokio::spawn(async move {
                let names: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
                crate::harness::rpc(
                    &www,
                    "forceschedulers/force",
                    "force",
                    json!({"builderNames": names}),
                )
                .await
            })
        })
        .collect();
    for f in forces {
        assert_eq!(f.await.unwrap().0, 200);
    }
    // HttpStatusPush posts when each build starts and when it ends; the second reporter when
    // each ends.
    tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            let notified = arrived.notified();
            if seen.lock().unwrap().len() >= 3000 {
                return;
            }
            notified.await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} of 3000 reports arrived",
            seen.lock().unwrap().len()
        )
    });
    let all = seen.lock().unwrap().clone();
    let (seen, compared): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| s.1 == "/status");
    let mut finished: Vec<i64> = seen
        .iter()
        .filter(|s| s.3["complete"] == true)
        .map(|s| s.3["buildid"].as_i64().unwrap())
        .collect();
    finished.sort();
    finished.dedup();
    assert_eq!(finished.len(), 1000, "each build's end once");
    assert_eq!(seen.len(), 2000, "nothing twice");
    // Builds read together for a burst of events are each read whole: its own builder, and
    // the build it is compared with, an earlier finished one of the same builder.
    for (_, _, _, b) in seen.iter().filter(|s| s.3["complete"] == true) {
        assert_eq!(b["builder"]["builderid"], b["builderid"], "{b}");
        assert_eq!(b["properties"]["buildnumber"][0], b["number"], "{b}");
    }
    assert_eq!(compared.len(), 1000, "each build's end once");
    let mut compared_with = 0;
    for (_, _, _, c) in &compared {
        let prev = &c["prev"];
        if !prev.is_null() {
            compared_with += 1;
            assert_eq!(prev[0], c["builderid"], "{c}");
            assert!(prev[1].as_i64() < c["number"].as_i64(), "{c}");
            assert_eq!(prev[2], true, "{c}");
        }
    }
    // Only a builder's first build has none to be compared with; the others, built two at a
    // time, have one unless the one before them is still running.
    assert!(
        compared_with >= 500,
        "{compared_with} builds had a previous one"
    );
    let (_, r) = m.get("reporters/push").await;
    // The outbox keeps the newest thousand finished reports, pending ones always.
    assert_eq!(r["reporters"][0]["pending"], 0, "{r}");
    assert_eq!(r["reporters"][0]["failed"], 0, "{r}");
    let kept = r["reporters"][0]["sent"].as_i64().unwrap();
    assert!((1000..1100).contains(&kept), "{r}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_mail_goes_over_smtps_in_html_with_the_patch_attached() {
    let dir = tempfile::tempdir().unwrap();
    make_certificate(dir.path());
    let out = dir.path().join("mails");
    std::fs::create_dir(&out).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let Some(smtp) = SmtpServer::start(
        &out,
        &["--smtps", cert.to_str().unwrap(), key.to_str().unwrap()],
    )
    .await
    else {
        return;
    };
    let body = format!(
        r#"
c['builders'] = [util.BuilderConfig(name='pass', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(name='hello', command='echo hello')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['pass'],
    codebases=[util.CodebaseParameter('', patch=util.PatchParameter())])]
c['title'] = 'KilnRef'
c['buildbotURL'] = 'http://ci.example.org/'
c['services'] = [reporters.MailNotifier(fromaddr='bot@example.org', relayhost='localhost',
    smtpPort={port}, useSmtps=True, lookup='example.org')]
"#,
        port = smtp.port
    );
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", &body)).await;
    m.start_worker("w1", "pass").await;
    m.force_and_wait(
        json!({"builderNames": ["pass"], "username": "Dave Try <dave@example.com>",
        "patch_body": "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n+y\n", "patch_level": 1}),
    )
    .await;
    let mail = smtp.mail(1).await;
    assert_eq!(mail["tls"], true);
    assert_eq!(mail["rcpt_tos"], json!(["dave@example.com"]));
    let data = mail["data"].as_str().unwrap();
    assert!(
        data.contains("To: \"Dave Try\" <dave@example.com>"),
        "{data}"
    );
    // Buildbot's default generator: html, steps listed, the patch attached.
    assert!(
        data.contains("Content-Type: text/html; charset=utf-8"),
        "{data}"
    );
    assert!(data.contains("filename=\"source patch 0\""), "{data}");
    assert!(
        data.contains("A passing build has been detected on builder"),
        "{data}"
    );
    assert!(data.contains("1: hello ( success )"), "{data}");
    m.stop().await;
}

/// The bursts a feed's subscriber received until one held `key`.
async fn bursts_until(
    rx: &mut tokio::sync::mpsc::Receiver<kiln_reporters::feed::Handed>,
    got: &mut Vec<kiln_reporters::feed::Burst>,
    key: &str,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            let burst = rx.recv().await.expect("the feed runs").burst;
            let found = burst
                .iter()
                .any(|d| matches!(d, kiln_api::Delivery::Event(e) if e.key == key));
            got.push(burst);
            if found {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no burst held {key}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporters_share_each_read_of_the_events_from_the_furthest_behind() {
    use kiln_reporters::cache::BuildCache;
    use kiln_reporters::data::Needs;
    use kiln_reporters::feed::Feed;

    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", builders())).await;
    m.start_worker("w1", "pass").await;
    m.wait_attached("w1").await;
    let services = kiln_master::boundary::services(m.master());
    let newest = async || services.read.db().newest_event().await.unwrap();
    m.force_and_wait(json!({"builderNames": ["pass"]})).await;
    let after_first = newest().await;
    m.force_and_wait(json!({"builderNames": ["pass"]})).await;
    let after_second = newest().await;

    // One reporter has handled both builds, another only the first: the feed reads from the
    // one behind, once for both.
    let cache = Arc::new(BuildCache::default());
    cache.want(Needs::default(), true);
    let store = Arc::new(kiln_reporters::store::Store::new(services.clone()));
    let feed = Arc::new(Feed::new(
        services.clone(),
        Duration::ZERO,
        cache.clone(),
        store,
    ));
    let mut ahead = feed.subscribe(after_second);
    let mut behind = feed.subscribe(after_first);
    let running = tokio::spawn(feed.run());
    let (mut of_ahead, mut of_behind) = (Vec::new(), Vec::new());
    bursts_until(&mut behind, &mut of_behind, "builds.2.finished").await;
    let ids = |bursts: &[kiln_reporters::feed::Burst]| -> Vec<i64> {
        bursts
            .iter()
            .flat_map(|b| b.iter())
            .filter_map(|d| match d {
                kiln_api::Delivery::Event(e) => Some(e.id),
                kiln_api::Delivery::Missed { .. } => None,
            })
            .collect()
    };
    let read = ids(&of_behind);
    assert!(read.iter().all(|id| *id > after_first), "{read:?}");
    assert!(read.contains(&after_second), "{read:?}");
    // The second build's start and end came in one burst: it was read once, for both.
    assert_eq!(cache.reads(), 1);
    for position in &read {
        let build = cache
            .load(
                &*services.read,
                *position,
                kiln_core::BuildId(2),
                Needs::default(),
            )
            .await
            .unwrap();
        assert_eq!(build.unwrap().row.number, 2);
    }

    // A third build reaches both in the same bursts: one read each time, not one each.
    m.force_and_wait(json!({"builderNames": ["pass"]})).await;
    bursts_until(&mut behind, &mut of_behind, "builds.3.finished").await;
    bursts_until(&mut ahead, &mut of_ahead, "builds.3.finished").await;
    let shared = &of_behind[of_behind.len() - of_ahead.len()..];
    assert!(
        of_ahead.iter().zip(shared).all(|(a, b)| Arc::ptr_eq(a, b)),
        "each burst is one reading, handed to both"
    );
    assert!(ids(&of_ahead).contains(&newest().await));
    running.abort();

    // Builders are kept from one burst to the next, until a reconfiguration, which may have
    // changed them.
    let read = &*services.read;
    let third = cache
        .load(
            read,
            newest().await,
            kiln_core::BuildId(3),
            Needs::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.builder.description, None);
    assert_eq!(cache.builder_reads(), 1);
    let described = builders().replace(
        "util.BuilderConfig(name='pass',",
        "util.BuilderConfig(name='pass', description='says hello',",
    );
    std::fs::write(
        m.path("master.star"),
        config("sqlite:///state.sqlite", &described),
    )
    .unwrap();
    let reloaded = kiln_config::load(m.dir.path()).expect("the new configuration loads");
    m.master().apply_config(reloaded).await.unwrap();
    m.force_and_wait(json!({"builderNames": ["pass"]})).await;
    let fourth = cache
        .load(
            read,
            newest().await,
            kiln_core::BuildId(4),
            Needs::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fourth.builder.description.as_deref(), Some("says hello"));
    assert_eq!(cache.builder_reads(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporters_that_decide_together_store_together() {
    use kiln_db::{Decided, NewReport, ReportState};
    use kiln_reporters::store::Store;

    let m = TestMaster::start(&config("sqlite:///state.sqlite", builders())).await;
    let services = kiln_master::boundary::services(m.master());
    let store = Arc::new(Store::new(services.clone()));
    let running = tokio::spawn(store.clone().run());
    let decided = |reporter: &str, position: i64| Decided {
        consumer: format!("reporter:{reporter}"),
        position,
        reports: vec![NewReport {
            reporter: reporter.to_string(),
            dedup: format!("event:{position}"),
            summary: format!("{reporter} about {position}"),
            payload: "{}".to_string(),
        }],
    };
    // Three reporters given the same burst store what they decided in one transaction, each
    // getting back its own report, leased to this master, and the store's expectation that
    // its deliverer will record sending it.
    let given = [store.expect(), store.expect(), store.expect()];
    let [for_mail, for_irc, for_push] = given;
    let (mail, irc, push) = tokio::join!(
        store.store(decided("mail", 7), vec![for_mail]),
        store.store(decided("irc", 7), vec![for_irc]),
        store.store(decided("push", 7), vec![for_push]),
    );
    assert_eq!(store.transactions(), 1);
    let mut ids = Vec::new();
    let mut delivering = Vec::new();
    for (stored, reporter) in [(mail, "mail"), (irc, "irc"), (push, "push")] {
        let stored = stored.unwrap();
        let rows = stored.rows;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].reporter, reporter);
        assert_eq!(rows[0].summary, format!("{reporter} about 7"));
        let db = services.read.db();
        let position = db.consumer_position(&format!("reporter:{reporter}")).await;
        assert_eq!(position.unwrap(), Some(7));
        ids.push(rows[0].id);
        delivering.push(stored.delivering.expect("a delivery to record"));
    }
    // Deliveries that reporters record at the same time go in one transaction, with what
    // another decided meanwhile; push's deliverer sent nothing, and gives its expectation up.
    let (for_mail, for_irc, for_push) = (
        delivering.remove(0),
        delivering.remove(0),
        delivering.remove(0),
    );
    drop(for_push);
    let decision = store.expect();
    let waiting = store.expect();
    let (mail, irc, push) = tokio::join!(
        store.delivered(vec![ids[0]], vec![for_mail]),
        store.delivered(vec![ids[1]], vec![for_irc]),
        async {
            let stored = store.store(decided("push", 8), vec![decision]);
            // The store gathers for the request still expected, given up here.
            drop(waiting);
            stored.await
        },
    );
    mail.unwrap();
    irc.unwrap();
    assert_eq!(push.unwrap().rows[0].dedup, "event:8");
    assert_eq!(store.transactions(), 2);
    let sent = |reporter: &'static str| {
        let db = services.read.db();
        async move { db.reports(reporter, 10).await.unwrap() }
    };
    assert_eq!(sent("mail").await[0].state, ReportState::Sent);
    assert_eq!(sent("irc").await[0].state, ReportState::Sent);
    let push = sent("push").await;
    assert_eq!(push.len(), 2);
    assert!(
        push.iter().all(|r| r.state == ReportState::Pending),
        "{push:?}"
    );
    // What one decided alone later is stored on its own.
    let again = store.store(decided("mail", 8), Vec::new()).await.unwrap();
    assert_eq!(again.rows[0].dedup, "event:8");
    assert_eq!(store.transactions(), 3);
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_writes_once_every_request_it_expects_has_come() {
    use kiln_db::{Decided, NewReport};
    use kiln_reporters::store::Store;

    let m = TestMaster::start(&config("sqlite:///state.sqlite", builders())).await;
    let services = kiln_master::boundary::services(m.master());
    // A window far longer than the test may take: a store that waited it out would fail it.
    let store = Arc::new(Store::new(services.clone()).with_gather(Duration::from_secs(3600)));
    let running = tokio::spawn(store.clone().run());
    let decided = |reporter: &str| Decided {
        consumer: format!("reporter:{reporter}"),
        position: 3,
        reports: vec![NewReport {
            reporter: reporter.to_string(),
            dedup: "event:3".to_string(),
            summary: format!("{reporter} about 3"),
            payload: "{}".to_string(),
        }],
    };
    // The store has taken a request when it no longer expects it.
    let taken = async |left: usize| {
        tokio::time::timeout(WAIT, async {
            while store.expected() != left {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the store takes the request")
    };

    // Two reporters were given a burst: the first to decide waits for the other, and both
    // are written together as soon as the other asks.
    let (first, second) = (store.expect(), store.expect());
    let early = tokio::spawn({
        let store = store.clone();
        async move { store.store(decided("mail"), vec![first]).await }
    });
    taken(1).await;
    let late = tokio::time::timeout(WAIT, store.store(decided("irc"), vec![second])).await;
    let late = late.expect("written once both asked").unwrap();
    let early = tokio::time::timeout(WAIT, early).await.unwrap();
    let early = early.unwrap().unwrap();
    assert_eq!(store.transactions(), 1, "the first waited for the second");
    assert_eq!(early.rows[0].reporter, "mail");

    // Each deliverer is expected to record what it was handed: the first to send waits for
    // the other's record.
    let (mail, irc) = (early.delivering.unwrap(), late.delivering.unwrap());
    assert_eq!(store.expected(), 2);
    let (mail_id, irc_id) = (early.rows[0].id, late.rows[0].id);
    let recorded = tokio::spawn({
        let store = store.clone();
        async move { store.delivered(vec![mail_id], vec![mail]).await }
    });
    taken(1).await;
    let other = store.delivered(vec![irc_id], vec![irc]);
    tokio::time::timeout(WAIT, other).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, recorded)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(store.transactions(), 2, "both deliveries in one write");

    // One expected that gives up (a reporter that decided nothing) no longer holds the other
    // back.
    let (asks, gives_up) = (store.expect(), store.expect());
    let alone = tokio::spawn({
        let store = store.clone();
        async move { store.store(decided("push"), vec![asks]).await }
    });
    taken(1).await;
    drop(gives_up);
    let alone = tokio::time::timeout(WAIT, alone)
        .await
        .expect("written once the other gave up");
    drop(alone.unwrap().unwrap());
    assert_eq!(store.transactions(), 3);
    running.abort();
}
