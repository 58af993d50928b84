//! The IRC bot on a real IRC server (Debian's ngIRCd) with real clients: it joins, answers
//! Buildbot's commands, refuses what a nick may not do, and announces builds to those who asked.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::harness::{TestMaster, WAIT, config, make_certificate, optional_tool};

/// ngIRCd on a free loopback port, stopped when dropped.
struct Server {
    child: tokio::process::Child,
    port: u16,
}

impl Server {
    /// Stops the server and waits until it has exited, so that its port is free again.
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn ngircd(dir: &std::path::Path, port: Option<u16>) -> Option<Server> {
    ngircd_with(dir, port, "").await
}

/// ngIRCd with `extra` sections in its configuration.
async fn ngircd_with(dir: &std::path::Path, port: Option<u16>, extra: &str) -> Option<Server> {
    let binary = optional_tool("KILN_TEST_NGIRCD", "ngIRCd")?;
    let port = port.unwrap_or_else(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let conf = dir.join("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.kiln.test\nInfo = kiln test server\nListen = 127.0.0.1\nPorts = {port}\n\
             PidFile = {}\nMotdPhrase = hello\n[Limits]\nMaxNickLength = 30\n[Options]\nPAM = no\nIdent = no\nDNS = no\n{extra}",
            dir.join("ngircd.pid").display()
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(binary)
        .args(["-n", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ngircd starts");
    // Ready once it accepts connections.
    tokio::time::timeout(WAIT, async {
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ngircd listens");
    Some(Server { child, port })
}

/// A person on IRC.
struct Client {
    nick: String,
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(port: u16, nick: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (r, writer) = stream.into_split();
        let mut c = Client {
            nick: nick.into(),
            lines: BufReader::new(r).lines(),
            writer,
        };
        c.send(&format!("NICK {nick}")).await;
        c.send(&format!("USER {nick} 0 * :{nick}")).await;
        c.expect(|l| l.contains(" 001 ")).await;
        c
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// Says `text` to `target`.
    async fn say(&mut self, target: &str, text: &str) {
        self.send(&format!("PRIVMSG {target} :{text}")).await;
    }

    /// Reads lines (answering pings) until one satisfies `want`; that line.
    async fn expect(&mut self, want: impl Fn(&str) -> bool) -> String {
        let nick = self.nick.clone();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("connection open");
                if let Some(token) = line.strip_prefix("PING ") {
                    self.send(&format!("PONG {token}")).await;
                    continue;
                }
                if want(&line) {
                    return line;
                }
                seen.push(line);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("{nick} never saw the awaited line; it saw {seen:#?}"))
    }

    /// The text of the next message from the bot to `target` that contains `part`.
    async fn bot_says(&mut self, target: &str, part: &str) -> String {
        let prefix = format!(" {target} :");
        let line = self
            .expect(|l| l.starts_with(":kilnbot!") && l.contains(&prefix) && l.contains(part))
            .await;
        line.split_once(&prefix)
            .map(|(_, t)| t.to_string())
            .unwrap_or(line)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_irc_bot_answers_commands_obeys_authz_and_announces_builds() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = ngircd(dir.path(), None).await else {
        return;
    };
    let port = server.port;
    // The first to join a channel is its operator.
    let mut tester = Client::connect(port, "tester").await;
    tester.send("JOIN #bb").await;
    tester.expect(|l| l.contains(" 366 ")).await;
    let mut guest = Client::connect(port, "guest").await;
    guest.send("JOIN #bb").await;
    guest.expect(|l| l.contains(" 366 ")).await;

    let body = format!(
        r#"
c['builders'] = [
    util.BuilderConfig(name='pass', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(command='true')])),
    util.BuilderConfig(name='fail', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(name='compile', command='exit 1')])),
    util.BuilderConfig(name='slow', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(name='sleep', command='sleep 120')])),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['pass', 'fail', 'slow'])]
c['buildbotURL'] = 'http://ci.example.org/'
c['workers'] = [worker.Worker('w1', 'pass'), worker.Worker('w2', 'pass2', missing_timeout=1)]
c['services'] = [reporters.IRC(host='127.0.0.1', port={port}, nick='kilnbot', channels=['#bb'],
    notify_events=['started', 'failure', 'failureToSuccess'], useColors=False,
    authz={{('force', 'stop'): ['tester']}}, lostDelay=1, failedDelay=1)]
"#
    );
    let mut m = TestMaster::start_in(
        tempfile::tempdir().unwrap(),
        &config("sqlite:///state.sqlite", &body),
    )
    .await;
    m.start_worker("w1", "pass").await;
    tester
        .expect(|l| l.starts_with(":kilnbot!") && l.contains("JOIN"))
        .await;

    tester.say("#bb", "kilnbot: help force").await;
    assert!(
        tester
            .bot_says("#bb", "Usage:")
            .await
            .starts_with("Usage: force build [--codebase=CODEBASE]")
    );
    tester.say("#bb", "kilnbot: list builders").await;
    assert_eq!(
        tester.bot_says("#bb", "builders").await,
        "I found the following builders: pass fail slow"
    );
    // Addressed to someone else, or not addressed: the bot keeps quiet, and answers the next.
    tester.say("#bb", "guest: list builders").await;
    tester.say("#bb", "kilnbot: version").await;
    assert!(
        tester
            .bot_says("#bb", "")
            .await
            .starts_with("This is kiln-")
    );

    // A nick the authz does not name may not force; one it names may.
    guest.say("#bb", "kilnbot: force build pass").await;
    assert_eq!(
        guest.bot_says("#bb", "Thou shall").await,
        "Thou shall not pass, guest!!!"
    );
    tester
        .say("#bb", "kilnbot: force build fail because reasons")
        .await;
    assert_eq!(
        tester.bot_says("#bb", "Force").await,
        "Force build successfully requested."
    );
    let started = tester.bot_says("#bb", "started").await;
    assert_eq!(
        started,
        "Build [#1](http://ci.example.org/builders/2/builds/1) of `fail` started."
    );
    let failed = tester.bot_says("#bb", "failed").await;
    assert_eq!(
        failed,
        "Build [#1](http://ci.example.org/builders/2/builds/1) of `fail` failed: failed 'exit 1' (failure)"
    );
    let (_, build) = m.get("builds/1").await;
    let props = m.get("builds/1?property=*").await.1;
    assert_eq!(build["builds"][0]["results"], 2);
    assert_eq!(
        props["builds"][0]["properties"]["owner"][0],
        "tester on #bb"
    );
    assert_eq!(
        props["builds"][0]["properties"]["reason"][0],
        "forced: by tester on #bb: because reasons"
    );

    tester.say("#bb", "kilnbot: status fail").await;
    let status = tester.bot_says("#bb", "`fail`").await;
    assert!(
        status.starts_with("`fail`: idle last build ") && status.ends_with(" ago, failed"),
        "{status}"
    );
    tester.say("#bb", "kilnbot: last pass").await;
    assert_eq!(
        tester.bot_says("#bb", "`pass`").await,
        "`pass`: no builds run since last restart"
    );

    // Only an operator changes what the channel hears; anyone changes what they hear in private.
    guest.say("#bb", "kilnbot: notify on success").await;
    assert!(
        guest
            .bot_says("#bb", "Only channel operators")
            .await
            .ends_with("And you, guest, are neither!")
    );
    guest.say("kilnbot", "notify on finished").await;
    assert_eq!(
        guest.bot_says("guest", "notified").await,
        "The following events are being notified: finished."
    );
    tester.say("#bb", "kilnbot: notify off started").await;
    assert_eq!(
        tester.bot_says("#bb", "The following events").await,
        "The following events are being notified: failure, failureToSuccess."
    );
    tester.say("#bb", "kilnbot: notify on bogus").await;
    assert!(
        tester
            .bot_says("#bb", "bogus")
            .await
            .starts_with("'bogus' is not an event I know")
    );

    // A watched build is announced where it was watched; stopping it says so.
    tester.say("#bb", "kilnbot: force build slow please").await;
    tester.bot_says("#bb", "Force").await;
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, running) = m.get("builders/3/builds?complete=false").await;
            if running["builds"].as_array().is_some_and(|b| !b.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the slow build starts");
    tester.say("#bb", "kilnbot: watch slow").await;
    assert!(
        tester
            .bot_says("#bb", "Watching")
            .await
            .starts_with("Watching build [#1](")
    );
    tester.say("#bb", "kilnbot: stop build slow enough").await;
    assert!(
        tester
            .bot_says("#bb", "interrupted")
            .await
            .ends_with("of `slow` interrupted.")
    );
    let cancelled = tester.bot_says("#bb", "cancelled").await;
    assert!(
        cancelled.starts_with(
            "Build [#1](http://ci.example.org/builders/3/builds/1) of `slow` was cancelled: "
        ),
        "{cancelled}"
    );
    // The guest asked for every finished build in private.
    let private = guest.bot_says("guest", "`slow`").await;
    assert_eq!(private, cancelled);

    tester.say("#bb", "kilnbot: mute").await;
    assert_eq!(tester.bot_says("#bb", "").await, "Shutting up for now.");
    tester.say("#bb", "kilnbot: unmute").await;
    assert_eq!(tester.bot_says("#bb", "").await, "I'm baaaaaaaaaaack!");
    tester.say("#bb", "kilnbot: frobnicate").await;
    assert_eq!(
        tester.bot_says("#bb", "").await,
        "I don't get this 'frobnicate'..."
    );

    // Those who asked for `worker` hear that a worker is gone, and that it is back.
    tester.say("#bb", "kilnbot: notify on worker").await;
    tester.bot_says("#bb", "The following events").await;
    let w2 = m.start_worker("w2", "pass2").await;
    m.kill_worker(w2);
    let missing = tester.bot_says("#bb", "is missing").await;
    assert!(
        missing.starts_with("Worker `w2` is missing. It was seen last on "),
        "{missing}"
    );
    m.start_worker("w2", "pass2").await;
    assert_eq!(
        tester.bot_says("#bb", "back online").await,
        "Worker `w2` is back online."
    );

    // The server goes away and comes back: the bot reconnects and rejoins by itself.
    server.stop().await;
    let _again = ngircd(dir.path(), Some(port)).await.expect("ngircd again");
    let mut tester = Client::connect(port, "tester").await;
    tester.send("JOIN #bb").await;
    tester.expect(|l| l.contains(" 366 ")).await;
    tokio::time::timeout(WAIT, async {
        loop {
            tester.say("#bb", "kilnbot: version").await;
            let answer = tokio::time::timeout(
                Duration::from_millis(500),
                tester.bot_says("#bb", "This is kiln-"),
            )
            .await;
            if answer.is_ok() {
                return;
            }
        }
    })
    .await
    .expect("the bot is back in #bb");

    // What a person asked to hear survives a restart of the master.
    tester.say("kilnbot", "notify on exception").await;
    assert_eq!(
        tester.bot_says("tester", "notified").await,
        "The following events are being notified: exception."
    );
    m.stop().await;
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    let _m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", &body)).await;
    tokio::time::timeout(WAIT, async {
        loop {
            tester.say("kilnbot", "notify list").await;
            let answer =
                tokio::time::timeout(Duration::from_millis(500), tester.bot_says("tester", ""))
                    .await;
            if let Ok(answer) = answer {
                return answer;
            }
        }
    })
    .await
    .map(|answer| {
        assert_eq!(
            answer,
            "The following events are being notified: exception."
        )
    })
    .expect("the restarted bot answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_irc_bot_speaks_tls_to_a_server_its_ca_file_vouches_for_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let master_dir = tempfile::tempdir().unwrap();
    // The server's certificate is signed by a private CA, which the master's caFile names.
    make_certificate(master_dir.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "[SSL]\nCertFile = {}\nKeyFile = {}\nPorts = {tls_port}\n",
        master_dir.path().join("cert.pem").display(),
        master_dir.path().join("key.pem").display()
    );
    let Some(server) = ngircd_with(dir.path(), None, &extra).await else {
        return;
    };
    let mut tester = Client::connect(server.port, "tester").await;
    tester.send("JOIN #secure").await;
    tester.expect(|l| l.contains(" 366 ")).await;

    let body = format!(
        r#"
c['builders'] = [util.BuilderConfig(name='pass', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(command='true')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['pass'])]
c['workers'] = [worker.Worker('w1', 'pass')]
c['services'] = [reporters.IRC(host='127.0.0.1', port={tls_port}, nick='kilnbot', channels=['#secure'],
    useSSL=True, caFile='ca.pem', allowShutdown=True, lostDelay=1, failedDelay=1)]
"#
    );
    let m = TestMaster::start_in(master_dir, &config("sqlite:///state.sqlite", &body)).await;
    // The bot could join only over TLS: the port speaks nothing else.
    tester
        .expect(|l| l.starts_with(":kilnbot!") && l.contains("JOIN"))
        .await;
    tester.say("#secure", "kilnbot: version").await;
    assert!(
        tester
            .bot_says("#secure", "")
            .await
            .starts_with("This is kiln-")
    );

    // Buildbot's clean shutdown: started, checked, called off; with no build running, the
    // master is asked to stop as soon as it starts.
    let mut ask = async |command: &str, answer: &str| {
        tester.say("#secure", &format!("kilnbot: {command}")).await;
        assert_eq!(tester.bot_says("#secure", "").await, answer, "{command}");
    };
    ask("shutdown check", "Status: buildbot is running").await;
    ask("shutdown stop", "Nothing to stop").await;
    ask("shutdown start", "Starting clean shutdown").await;
    tokio::time::timeout(WAIT, m.master().stop_requested())
        .await
        .expect("a stop is requested");
    ask("shutdown start", "Already started").await;
    ask("shutdown check", "Status: buildbot is shutting down").await;
    ask("shutdown stop", "Stopping clean shutdown").await;
    ask("shutdown check", "Status: buildbot is running").await;
    server.stop().await;
}
