//! The master's Perspective Broker side, driven by a scripted PB client that plays a worker: the
//! login and its refusals, the calls Buildbot makes, the errors in Twisted's classes that the stock
//! worker understands, and what the master does with bytes that are not PB.

use std::time::Duration;

use kiln_proto::pb::{self, Decoder, Jelly, Pb, Target};
use md5::{Digest, Md5};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestMaster, WAIT, config};

/// A PB client speaking as the stock worker does.
struct Client {
    tcp: TcpStream,
    decoder: Decoder,
    next_call: i64,
}

impl Client {
    /// Connects, takes the master's dialect offer, chooses `pb` and exchanges versions.
    async fn connect(port: u16) -> Client {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut offer = [0u8; 12];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut offer))
            .await
            .expect("the master offers its dialects")
            .unwrap();
        assert_eq!(offer.as_slice(), pb::dialect_offer());
        let mut hello = vec![0x02, 0x82, b'p', b'b'];
        hello.extend(pb::write(&Pb::Version(6)).unwrap());
        tcp.write_all(&hello).await.unwrap();
        let mut client = Client {
            tcp,
            decoder: Decoder::new(),
            next_call: 1,
        };
        client.decoder.use_vocabulary();
        assert_eq!(client.next().await, Some(Pb::Version(6)));
        client
    }

    async fn send(&mut self, message: &Pb) {
        self.tcp
            .write_all(&pb::write(message).unwrap())
            .await
            .unwrap();
    }

    /// Calls `method` on `target` and returns the call's number.
    async fn call(&mut self, target: Target, method: &str, args: Vec<Jelly>) -> i64 {
        let id = self.next_call;
        self.next_call += 1;
        self.send(&Pb::Call {
            id,
            target,
            method: method.into(),
            answer: true,
            args,
            kwargs: vec![],
        })
        .await;
        id
    }

    /// The next message from the master, or `None` once it closed the connection.
    async fn next(&mut self) -> Option<Pb> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(sexp) = self.decoder.next_expression().unwrap() {
                    return Some(pb::read(sexp).unwrap());
                }
                let mut buf = [0u8; 4096];
                match self.tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.decoder.feed(&buf[..n]),
                }
            }
        })
        .await
        .expect("the master answers in time")
    }

    /// The answer (or error) to call `id`, answering the master's own calls on the way with
    /// `serve`.
    async fn reply_to(
        &mut self,
        id: i64,
        mut serve: impl FnMut(&str, &[Jelly], &[(String, Jelly)]) -> Jelly,
    ) -> Result<Jelly, pb::Failure> {
        loop {
            match self.next().await.expect("the connection stays open") {
                Pb::Answer { id: a, result } if a == id => return Ok(result),
                Pb::Error {
                    id: a,
                    failure: Jelly::Failure(f),
                } if a == id => return Err(f),
                Pb::Call {
                    id: call,
                    method,
                    args,
                    kwargs,
                    ..
                } => {
                    let result = serve(&method, &args, &kwargs);
                    self.send(&Pb::Answer { id: call, result }).await;
                }
                other => panic!("unexpected {other:?} while waiting for {id}"),
            }
        }
    }

    /// Logs in as `name` with `password`; `Ok` holds the avatar's id.
    async fn login(
        &mut self,
        name: &str,
        password: &str,
        serve: impl FnMut(&str, &[Jelly], &[(String, Jelly)]) -> Jelly,
    ) -> Result<u64, pb::Failure> {
        let id = self
            .call(Target::Root, "login", vec![Jelly::Bytes(name.into())])
            .await;
        let (challenge, challenger) = match self.reply_to(id, |_, _, _| Jelly::None).await {
            Ok(Jelly::Tuple(t)) => match t.as_slice() {
                [Jelly::Bytes(c), Jelly::Remote(r)] => (c.clone(), *r),
                other => panic!("login answered {other:?}"),
            },
            other => panic!("login answered {other:?}"),
        };
        assert_eq!(challenge.len(), 16);
        let mut outer = Md5::new();
        outer.update(Md5::digest(password.as_bytes()));
        outer.update(&challenge);
        let digest = outer.finalize().to_vec();
        // The worker's bot is its object 1.
        let id = self
            .call(
                Target::Object(challenger),
                "respond",
                vec![Jelly::Bytes(digest), Jelly::Remote(1)],
            )
            .await;
        self.send(&Pb::Decref(challenger)).await;
        match self.reply_to(id, serve).await? {
            Jelly::Remote(avatar) => Ok(avatar),
            other => panic!("respond answered {other:?}"),
        }
    }
}

/// What a worker with one builder, `b1` (its object 2), answers the master during the attach.
fn worker(method: &str, _args: &[Jelly], _kwargs: &[(String, Jelly)]) -> Jelly {
    match method {
        "getWorkerInfo" => Jelly::Dict(vec![
            (Jelly::str("basedir"), Jelly::str("/nonexistent/w1")),
            (Jelly::str("system"), Jelly::str("posix")),
            (Jelly::str("version"), Jelly::str("4.3.0")),
        ]),
        "setBuilderList" => Jelly::Dict(vec![(Jelly::str("b1"), Jelly::Remote(2))]),
        _ => Jelly::None,
    }
}

const ONE_BUILDER: &str = "c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], \
     factory=util.BuildFactory([steps.ShellCommand(command='echo hi', workdir='wd')]))]\n\
     c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]\n";

fn is_unauthorized(f: &pb::Failure) -> bool {
    f.parents
        .iter()
        .any(|p| p == "twisted.cred.error.UnauthorizedLogin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pb_login_is_unauthorized_login_so_the_stock_worker_retries() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    for (name, password) in [("w1", "wrong"), ("nobody", "pass")] {
        let mut c = Client::connect(m.worker_port()).await;
        let refused = c.login(name, password, worker).await.unwrap_err();
        assert!(is_unauthorized(&refused), "{name}: {refused:?}");
        // Wrong password and unknown name look the same, as in Buildbot.
        assert_eq!(refused.value, "", "{name}");
        // No second guess on the same connection.
        let id = c
            .call(Target::Root, "login", vec![Jelly::Bytes(name.into())])
            .await;
        let again = c.reply_to(id, worker).await.unwrap_err();
        assert!(again.value.contains("not tried again"), "{again:?}");
    }
    assert!(m.master().workers.connection("w1").is_none());
    // Refusals count against the address as on msgpack: past the free ones, answers wait.
    let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    for _ in 2..kiln_master::workers::guard::FREE_FAILURES + 1 {
        let mut c = Client::connect(m.worker_port()).await;
        c.login("w1", "wrong", worker).await.unwrap_err();
    }
    assert!(m.master().workers.guard.delay(local) > std::time::Duration::ZERO);
    let mut c = Client::connect(m.worker_port()).await;
    let asked = std::time::Instant::now();
    c.login("w1", "wrong", worker).await.unwrap_err();
    assert!(asked.elapsed() >= std::time::Duration::from_millis(100));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pb_worker_attaches_runs_a_command_and_is_shut_down_when_it_asks() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let mut c = Client::connect(m.worker_port()).await;
    let mut calls = Vec::new();
    let avatar = c
        .login("w1", "pass", |method, args, kwargs| {
            calls.push((method.to_string(), args.to_vec(), kwargs.to_vec()));
            worker(method, args, kwargs)
        })
        .await
        .expect("logged in");
    // Buildbot's attach, all before the login is answered.
    let methods: Vec<&str> = calls.iter().map(|(m, _, _)| m.as_str()).collect();
    assert_eq!(methods, ["print", "getWorkerInfo", "setBuilderList"]);
    assert_eq!(
        calls[0].2,
        [("message".to_string(), Jelly::str("attached"))]
    );
    assert_eq!(
        calls[2].1,
        [Jelly::List(vec![Jelly::Tuple(vec![
            Jelly::str("b1"),
            Jelly::str("b1")
        ])])]
    );
    m.wait_attached("w1").await;

    // The avatar takes keepalives; other names and objects get Twisted's errors.
    let id = c.call(Target::Object(avatar), "keepalive", vec![]).await;
    assert_eq!(c.reply_to(id, worker).await, Ok(Jelly::None));
    let id = c.call(Target::Object(avatar), "frobnicate", vec![]).await;
    let e = c.reply_to(id, worker).await.unwrap_err();
    assert_eq!(
        (e.class.as_str(), e.value.as_str()),
        (
            "twisted.spread.flavors.NoSuchMethod",
            "No such method: remote_frobnicate"
        )
    );
    let id = c.call(Target::Object(999), "update", vec![]).await;
    let e = c.reply_to(id, worker).await.unwrap_err();
    assert_eq!(e.value, "Invalid Object ID");

    // A build: the preparation ping, then the command on the builder's object, with full paths.
    let bsid = m.force(json!({})).await;
    let (command, command_id, args) = loop {
        match c.next().await.expect("open") {
            Pb::Call {
                id,
                target,
                method,
                args,
                kwargs,
                ..
            } if method == "startCommand" => {
                assert_eq!(target, Target::Object(2));
                c.send(&Pb::Answer {
                    id,
                    result: Jelly::None,
                })
                .await;
                assert!(kwargs.is_empty());
                let [Jelly::Remote(cmd), Jelly::Str(cid), Jelly::Str(name), args] = args.as_slice()
                else {
                    panic!("startCommand arguments {args:?}");
                };
                assert_eq!(name, "shell");
                break (*cmd, cid.clone(), args.clone());
            }
            Pb::Call { id, method, .. } => {
                assert_eq!(method, "print", "only the ping comes first");
                c.send(&Pb::Answer {
                    id,
                    result: Jelly::None,
                })
                .await;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        args.get("workdir"),
        Some(&Jelly::str("/nonexistent/w1/b1/wd"))
    );
    assert_eq!(args.get("command"), Some(&Jelly::str("echo hi")));
    assert!(!command_id.is_empty());
    let update = |key: &str, value: Jelly| {
        vec![Jelly::List(vec![Jelly::List(vec![
            Jelly::Dict(vec![(Jelly::str(key), value)]),
            Jelly::Int(0),
        ])])]
    };
    for (key, value) in [
        ("stdout", Jelly::str("hi\n")),
        ("rc", Jelly::Int(0)),
        ("elapsed", Jelly::Float(0.01)),
    ] {
        let id = c
            .call(Target::Object(command), "update", update(key, value))
            .await;
        assert_eq!(c.reply_to(id, worker).await, Ok(Jelly::Int(0)));
    }
    let id = c
        .call(Target::Object(command), "complete", vec![Jelly::None])
        .await;
    assert_eq!(c.reply_to(id, worker).await, Ok(Jelly::None));
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, log) = m.get("builds/1/steps/1/logs/stdio/contents").await;
    let text = log["logchunks"][0]["content"].as_str().unwrap_or_default();
    assert!(text.contains("ohi\n"), "{log}");

    // The worker asks to stop once idle (a SIGHUP with allow_shutdown): it is idle, so the master
    // tells its bot to shut down at once.
    let id = c.call(Target::Object(avatar), "shutdown", vec![]).await;
    assert_eq!(c.reply_to(id, worker).await, Ok(Jelly::None));
    loop {
        match c.next().await.expect("open") {
            Pb::Call {
                target, method, id, ..
            } if method == "shutdown" => {
                assert_eq!(target, Target::Object(1));
                c.send(&Pb::Answer {
                    id,
                    result: Jelly::None,
                })
                .await;
                break;
            }
            Pb::Answer { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pb_worker_of_the_same_name_is_refused_while_the_first_answers() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let mut first = Client::connect(m.worker_port()).await;
    first.login("w1", "pass", worker).await.expect("logged in");
    m.wait_attached("w1").await;
    let port = m.worker_port();
    let second = tokio::spawn(async move {
        let mut c = Client::connect(port).await;
        c.login("w1", "pass", worker).await
    });
    // The first connection is asked whether it is still there, and answers.
    match first.next().await.expect("open") {
        Pb::Call {
            id, method, kwargs, ..
        } => {
            assert_eq!(method, "print");
            assert_eq!(
                kwargs,
                [(
                    "message".to_string(),
                    Jelly::str("master got a duplicate connection")
                )]
            );
            first
                .send(&Pb::Answer {
                    id,
                    result: Jelly::None,
                })
                .await;
        }
        other => panic!("unexpected {other:?}"),
    }
    let refused = second.await.unwrap().unwrap_err();
    // Not UnauthorizedLogin: the stock worker exits rather than retrying, as it does with Buildbot.
    assert!(!is_unauthorized(&refused));
    assert_eq!(refused.class, "builtins.RuntimeError");
    assert!(refused.value.contains("duplicate"), "{refused:?}");
    assert!(m.master().workers.connection("w1").is_some());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_pb_close_the_connection_and_leave_the_port_serving() {
    let src = format!(
        "{}c['protocols'] = {{'pb': {{'port': 9989}}}}\n",
        ONE_BUILDER
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &src)).await;
    let port = m.worker_port();
    let closes = |mut tcp: TcpStream| async move {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest))
            .await
            .expect("the master closes the connection")
            .ok();
    };
    // A msgpack worker's WebSocket upgrade on a port that serves only PB.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    closes(tcp).await;
    // A list announcing more elements than Banana allows, after a proper dialect choice.
    let mut c = Client::connect(port).await;
    c.tcp.write_all(&[0x01, 0x00, 0x28, 0x80]).await.unwrap();
    closes(c.tcp).await;
    // A message before the login, to an object that does not exist, is answered, not fatal.
    let mut c = Client::connect(port).await;
    let id = c.call(Target::Object(5), "respond", vec![]).await;
    assert_eq!(
        c.reply_to(id, worker).await.unwrap_err().value,
        "Invalid Object ID"
    );
    // The port still serves a worker.
    let mut c = Client::connect(port).await;
    c.login("w1", "pass", worker).await.expect("logged in");
    tokio::time::timeout(Duration::from_secs(30), m.wait_attached("w1"))
        .await
        .expect("attached");
    m.stop().await;
}
