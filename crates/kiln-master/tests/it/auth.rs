//! Logging in and acting as a user on every door of the web port: password logins from each
//! source (with password files made by Apache's own `htpasswd`), sessions, API tokens, a trusted
//! proxy's header, the pages' login form and the controls they show, and requests from other
//! sites.

use std::process::Command;

use kiln_master::clock::ManualClock;
use serde_json::{Value, json};

use crate::api::refused;
use crate::harness::{Answer, Browser, TestMaster, config, rpc, rpc_as};

const BUILDERS: &str = r#"
f = util.BuildFactory([steps.ShellCommand(name='say', command=['echo', 'hi'])])
c['builders'] = [util.BuilderConfig(name='alpha', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['alpha'])]
"#;

/// Control is for the `admins` role, which the role matcher gives to `admins`.
fn authz(admins: &[&str]) -> String {
    format!(
        "util.Authz(allowRules=[util.AnyControlEndpointMatcher(role='admins')], \
         roleMatchers=[util.RolesFromUsername(roles=['admins'], usernames={admins:?})])"
    )
}

fn master_star(auth: &str, admins: &[&str], more: &str) -> String {
    let www = format!(
        "c['www'] = {{'auth': {auth}, 'authz': {}{more}}}",
        authz(admins)
    );
    config("sqlite:///state.sqlite", &format!("{BUILDERS}\n{www}\n"))
}

/// Runs Apache's `htpasswd` with `args`; it must be installed (Debian's `apache2-utils`).
fn htpasswd(args: &[&str]) {
    let out = Command::new("htpasswd")
        .args(args)
        .output()
        .expect("Apache's htpasswd runs (install apache2-utils)");
    assert!(out.status.success(), "htpasswd {args:?}: {out:?}");
}

/// Logs in through Buildbot's `auth/login` with HTTP Basic credentials.
async fn basic_login(b: &mut Browser, user: &str, password: &str) -> Answer {
    let url = format!("http://{}/auth/login?redirect=/builders", b.www);
    let request = b.client.get(url).basic_auth(user, Some(password));
    b.send(request).await
}

/// Logs in with the pages' form, with the token of the browser's last page.
async fn form_login(b: &mut Browser, user: &str, password: &str, then: &str) -> Answer {
    let token = b.token();
    let fields = [
        ("csrf", token.as_str()),
        ("username", user),
        ("password", password),
        ("then", then),
    ];
    b.post("/login", &fields).await
}

/// A JSON-RPC force of `alpha` with the browser's cookies (and so its session).
async fn force(b: &mut Browser) -> Answer {
    let url = format!("http://{}/api/v2/forceschedulers/force", b.www);
    let body = json!({"jsonrpc": "2.0", "method": "force", "id": 1,
                      "params": {"builderNames": ["alpha"]}});
    let request = b
        .client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string());
    b.send(request).await
}

/// Who Buildbot's front-end is told is logged in.
async fn frontend_user(b: &mut Browser) -> Value {
    let answer = b.get("/buildbot/config").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str::<Value>(&answer.body).unwrap()["user"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_password_source_logs_in_and_the_session_acts_as_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let file = file.to_str().unwrap();
    // One line of each kind Apache's htpasswd writes: bcrypt, apr1-MD5, SHA-1 and crypt.
    htpasswd(&["-cbB", "-C", "5", file, "bcrypt", "pw-bcrypt"]);
    htpasswd(&["-bm", file, "apr1", "pw-apr1"]);
    htpasswd(&["-bs", file, "sha", "pw-sha"]);
    htpasswd(&["-bd", file, "des", "pw-des"]);
    htpasswd(&["-bB", "-C", "5", file, "eve", "pw-eve"]);
    // A user of the users table, with a web password set as `kiln user` sets it.
    let url = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let writer = kiln_db::Writer::connect(&url).await.unwrap();
    let update = kiln_db::UserUpdate {
        bb_username: Some("carol".into()),
        bb_password: Some(kiln_api::credentials::hash_password("pw-carol").unwrap()),
        attributes: vec![("email".into(), "carol@example.org".into())],
        ..Default::default()
    };
    writer.add_user("carol", &update).await.unwrap();
    drop(writer);
    let admins = ["bcrypt", "apr1", "sha", "des", "carol"];
    let star = master_star("util.HTPasswdAuth('htpasswd')", &admins, "");
    let mut m = TestMaster::start_in(dir, &star).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    let mut forced_sets = Vec::new();

    // Nobody logged in: the front-end is told so, and control is refused.
    let mut anonymous = Browser::new(&www);
    assert_eq!(
        frontend_user(&mut anonymous).await,
        json!({"anonymous": true})
    );
    assert_eq!(force(&mut anonymous).await.status, 403);

    for (user, password) in [
        ("bcrypt", "pw-bcrypt"),
        ("apr1", "pw-apr1"),
        ("sha", "pw-sha"),
        ("des", "pw-des"),
        ("carol", "pw-carol"),
    ] {
        let mut b = Browser::new(&www);
        // A wrong password is challenged again, and starts no session.
        let wrong = basic_login(&mut b, user, "wrong").await;
        assert_eq!(wrong.status, 401, "{user}: {}", wrong.body);
        assert!(!b.cookies.contains_key("kiln_session"), "{user}");
        let right = basic_login(&mut b, user, password).await;
        assert_eq!(right.status, 302, "{user}: {}", right.body);
        assert_eq!(right.location.as_deref(), Some("/builders"), "{user}");
        assert!(b.cookies.contains_key("kiln_session"), "{user}");
        let who = frontend_user(&mut b).await;
        assert_eq!(who["username"], user, "{who}");
        let forced = force(&mut b).await;
        assert_eq!(forced.status, 200, "{user}: {}", forced.body);
        let reply: Value = serde_json::from_str(&forced.body).unwrap();
        forced_sets.push(reply["result"][0].as_i64().unwrap());
    }
    // The users table gives the user's email, and the force records it as the owner.
    let mut carol = Browser::new(&www);
    basic_login(&mut carol, "carol", "pw-carol").await;
    assert_eq!(
        frontend_user(&mut carol).await["email"],
        "carol@example.org"
    );

    // A user who logs in but has no role may not force.
    let mut eve = Browser::new(&www);
    assert_eq!(basic_login(&mut eve, "eve", "pw-eve").await.status, 302);
    let refused = force(&mut eve).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("you need to have role 'admins'"),
        "{}",
        refused.body
    );

    // A session cookie changed by hand names nobody, and is dropped; the socket refuses it.
    let mut forger = Browser::new(&www);
    basic_login(&mut forger, "eve", "pw-eve").await;
    let cookie = forger.cookies["kiln_session"].clone();
    let (payload, signature) = cookie.split_once('.').unwrap();
    let claims = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap()
    .replace("\"eve\"", "\"des\"");
    let forged_payload =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims);
    let forged = format!("{forged_payload}.{signature}");
    forger.cookies.insert("kiln_session".into(), forged.clone());
    assert_eq!(force(&mut forger).await.status, 403);
    assert!(
        !forger.cookies.contains_key("kiln_session"),
        "a forged cookie is cleared"
    );
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{www}/ws"),
    );
    let mut request = request.unwrap();
    request
        .headers_mut()
        .insert("Cookie", format!("kiln_session={forged}").parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("the socket should be refused: {other:?}"),
    }

    // Logging out ends the session.
    let mut b = Browser::new(&www);
    basic_login(&mut b, "bcrypt", "pw-bcrypt").await;
    let out = b.get("/auth/logout?redirect=/about").await;
    assert_eq!(out.status, 302);
    assert_eq!(out.location.as_deref(), Some("/about"));
    assert!(!b.cookies.contains_key("kiln_session"));
    assert_eq!(frontend_user(&mut b).await, json!({"anonymous": true}));
    // Buildbot's front-end logs in under its mount, and goes back to its own route.
    let url = format!("http://{www}/buildbot/auth/login?redirect=/builders/1");
    let request = b.client.get(url).basic_auth("bcrypt", Some("pw-bcrypt"));
    let front = b.send(request).await;
    assert_eq!(front.location.as_deref(), Some("/buildbot/#/builders/1"));
    let out = b.get("/buildbot/auth/logout?redirect=//evil.example").await;
    assert_eq!(out.location.as_deref(), Some("/buildbot/#/"));
    assert!(!b.cookies.contains_key("kiln_session"));

    // Guessing is held up: after ten failures for a name, even its right password waits.
    let guesses = (0..10).map(|_| {
        let www = www.clone();
        async move {
            basic_login(&mut Browser::new(&www), "apr1", "guess")
                .await
                .status
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let held = basic_login(&mut Browser::new(&www), "apr1", "pw-apr1").await;
    assert_eq!(held.status, 429, "{}", held.body);
    assert!(
        held.body.contains("too many failed logins"),
        "{}",
        held.body
    );

    // Every build forced by a logged-in user is owned by them; none by the refused.
    for bsid in forced_sets {
        m.wait_buildset(bsid).await;
    }
    let (_, builds) = m.get("builds?property=owner").await;
    let owners: Vec<&str> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["properties"]["owner"][0].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        owners,
        ["bcrypt", "apr1", "sha", "des", "carol@example.org"],
        "{builds}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_tokens_end_when_they_should() {
    let now = 1_800_000_000;
    let clock = ManualClock::new(now);
    let dir = tempfile::tempdir().unwrap();
    let star = master_star(
        "util.UserPasswordAuth({'alice': 'pw1', 'bob': 'pw2'})",
        &["alice"],
        ", 'cookie_expiration_time': 600",
    );
    let clock_for_master = clock.clone();
    let mut m = TestMaster::start_with(dir, &star, move |o| o.clock = clock_for_master).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();

    // A session lasts cookie_expiration_time.
    let mut alice = Browser::new(&www);
    assert_eq!(basic_login(&mut alice, "alice", "pw1").await.status, 302);
    assert_eq!(frontend_user(&mut alice).await["username"], "alice");
    clock.advance(599);
    assert_eq!(frontend_user(&mut alice).await["username"], "alice");
    clock.advance(1);
    assert_eq!(frontend_user(&mut alice).await, json!({"anonymous": true}));

    // Tokens: one for bob with the admins role, one for bob alone, one ended, one revoked.
    let admin = m.token("bob", &["admins"], None).await;
    let plain = m.token("bob", &[], Some(now + 10_000)).await;
    let ended = m.token("bob", &[], Some(now + 600)).await;
    let revoked = m.token("bob", &[], None).await;
    let digest = kiln_api::credentials::token_digest(&revoked);
    let row = m
        .master()
        .db
        .token_by_digest(&digest)
        .await
        .unwrap()
        .unwrap();
    let writer =
        kiln_master::master::open_database(m.dir.path(), &kiln_config::load(m.dir.path()).unwrap())
            .await
            .unwrap();
    assert!(writer.revoke_token(row.id, now).await.unwrap());

    let with = |token: &str| vec![("Authorization".to_string(), format!("Bearer {token}"))];
    let call = |headers: Vec<(String, String)>| {
        let www = www.clone();
        async move {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::new();
            let body = json!({"jsonrpc": "2.0", "method": "force", "id": 1,
                              "params": {"builderNames": ["alpha"]}});
            let mut r = client
                .post(format!("http://{www}/api/v2/forceschedulers/force"))
                .header("Content-Type", "application/json")
                .body(body.to_string());
            for (k, v) in headers {
                r = r.header(k, v);
            }
            let answer = r.send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.text().await.unwrap())
        }
    };
    // The token's role lets bob force; his own token alone does not.
    let (status, body) = call(with(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(with(&plain)).await;
    assert_eq!(status, 403, "{body}");
    // A token that ended, was revoked or was never made is refused outright, not anonymous.
    for (token, why) in [
        (ended.as_str(), "has expired"),
        (revoked.as_str(), "was revoked"),
        ("kiln_0000", "is not known"),
    ] {
        let (status, body) = call(with(token)).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains(why), "{body}");
    }
    // Tokens work on the REST API, the event stream and the socket too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    for path in ["/api/v2/builders", "/sse/listen"] {
        let ok = client
            .get(format!("http://{www}{path}"))
            .bearer_auth(&plain)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200, "{path}");
        let bad = client
            .get(format!("http://{www}{path}"))
            .bearer_auth(&revoked)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status().as_u16(), 401, "{path}");
    }
    let socket = |token: String| {
        let www = www.clone();
        async move {
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    format!("ws://{www}/ws"),
                )
                .unwrap();
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {token}").parse().unwrap());
            tokio_tungstenite::connect_async(request).await
        }
    };
    assert!(socket(plain.clone()).await.is_ok());
    match socket(revoked.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a revoked token opens no socket: {other:?}"),
    }
    // The database holds digests only.
    let text = std::fs::read(m.path("state.sqlite")).unwrap();
    for token in [&admin, &plain] {
        assert!(
            !text.windows(token.len()).any(|w| w == token.as_bytes()),
            "a token is stored in the clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_log_in_with_a_form_and_show_the_controls_the_user_may_use() {
    let star = master_star(
        "util.UserPasswordAuth({'alice': 'pw1', 'bob': 'pw2'})",
        &["alice"],
        "",
    );
    let mut m = TestMaster::start(&star).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();

    // Anonymous: a login link and no force form, no shutdown button.
    let mut b = Browser::new(&www);
    let page = b.get("/builders/1").await;
    // Pages run only the site's own script, and cannot be framed by another site.
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert_eq!(page.headers["x-frame-options"], "SAMEORIGIN");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(
        page.body.contains("href=\"/login?then=/builders/1\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("class=\"force\""), "{}", page.body);
    assert!(page.body.contains("to force builds"), "{}", page.body);
    assert!(!b.get("/about").await.body.contains("Shut down the master"));

    // The form: a wrong password says so, and a form without the page's token is refused.
    let form = b.get("/login?then=/builders/1").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let wrong = form_login(&mut b, "alice", "nope", "/builders/1").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong.body.contains("the user name or password is wrong"),
        "{}",
        wrong.body
    );
    let forged = b
        .post("/login", &[("username", "alice"), ("password", "pw1")])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(!b.cookies.contains_key("kiln_session"));

    // bob logs in: he is named, but may not force.
    let bob = form_login(&mut b, "bob", "pw2", "/builders/1").await;
    assert_eq!(bob.status, 303, "{}", bob.body);
    assert_eq!(bob.location.as_deref(), Some("/builders/1"));
    let page = b.get("/builders/1").await;
    assert!(page.body.contains("<span class=\"user\""), "{}", page.body);
    assert!(page.body.contains(">bob</span>"), "{}", page.body);
    assert!(
        page.body.contains("You may not force builds here."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("class=\"force\""), "{}", page.body);
    // Posting the form anyway is refused by the control handle.
    let token = b.token();
    let refused = b.post("/builders/1/force/force", &[("csrf", &token)]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("you need to have role"),
        "{}",
        refused.body
    );

    // Logging out, then in as alice, who sees and uses the form.
    let out = b
        .post("/logout", &[("csrf", &token), ("then", "/about")])
        .await;
    assert_eq!(out.status, 303);
    assert!(!b.cookies.contains_key("kiln_session"));
    form_login(&mut b, "alice", "pw1", "/").await;
    let page = b.get("/builders/1").await;
    assert!(page.body.contains("class=\"force\""), "{}", page.body);
    assert!(b.get("/about").await.body.contains("Shut down the master"));
    let token = b.token();
    let forced = b.post("/builders/1/force/force", &[("csrf", &token)]).await;
    assert_eq!(forced.status, 303, "{}", forced.body);
    m.wait_event("buildsets.*.complete").await;
    let (_, builds) = m.get("builds?property=owner").await;
    assert_eq!(
        builds["builds"][0]["properties"]["owner"][0], "alice",
        "{builds}"
    );
    // A login page never sends the user elsewhere.
    let away = form_login(&mut b, "alice", "pw1", "https://evil.example/").await;
    assert_eq!(away.location.as_deref(), Some("/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxys_user_header_is_believed_only_from_a_trusted_proxy() {
    for (trusted, believed) in [("127.0.0.1", true), ("10.9.9.9", false)] {
        let auth =
            format!("util.RemoteUserAuth(header='X-Remote-User', trustedProxies=['{trusted}'])");
        let m = TestMaster::start(&master_star(&auth, &["alice"], "")).await;
        let mut b = Browser::new(&m.www());
        let url = format!("http://{}/buildbot/config", m.www());
        let request = b
            .client
            .get(url)
            .header("X-Remote-User", "alice@EXAMPLE.ORG");
        let answer = b.send(request).await;
        let config: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(config["auth"]["name"], "RemoteUserAuth");
        if believed {
            assert_eq!(config["user"]["username"], "alice", "{config}");
        } else {
            assert_eq!(config["user"], json!({"anonymous": true}), "{config}");
        }
        // Without the header nobody is logged in.
        assert_eq!(frontend_user(&mut b).await, json!({"anonymous": true}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_requests_from_other_sites_are_refused() {
    let star = config(
        "sqlite:///state.sqlite",
        &format!("{BUILDERS}\nc['www'] = {{'allowed_origins': ['https://*.example.org']}}\n"),
    );
    let mut m = TestMaster::start(&star).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "method": "force", "id": 1,
                      "params": {"builderNames": ["alpha"]}});
    let post = |origin: &str| {
        client
            .post(format!("http://{www}/api/v2/forceschedulers/force"))
            .header("Content-Type", "application/json")
            .header("Origin", origin)
            .body(body.to_string())
            .send()
    };
    let evil = post("https://evil.example").await.unwrap();
    assert_eq!(evil.status().as_u16(), 400);
    assert!(evil.text().await.unwrap().contains("invalid origin"));
    let (_, sets) = m.get("buildsets").await;
    assert_eq!(sets["meta"]["total"], 0, "{sets}");
    // The site's own pages, and the sites allowed_origins names, may.
    let own = post(&format!("http://{www}")).await.unwrap();
    assert_eq!(own.status().as_u16(), 200);
    let listed = post("https://ci.example.org").await.unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://ci.example.org"
    );
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{www}/api/v2/forceschedulers/force"),
        )
        .header("Origin", "https://ci.example.org")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 200);
    // A script without a browser names no origin, and is not held to one.
    let (status, reply) = rpc(
        &www,
        "forceschedulers/force",
        "force",
        json!({"builderNames": ["alpha"]}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_can_be_kept_from_anonymous_visitors() {
    let star = config(
        "sqlite:///state.sqlite",
        &format!(
            "{BUILDERS}\nc['www'] = {{'auth': util.UserPasswordAuth({{'alice': 'pw1', 'bob': 'pw2'}}), \
             'authz': util.Authz(allowRules=[util.AnyEndpointMatcher(role='readers')], \
             roleMatchers=[util.RolesFromUsername(roles=['readers'], usernames=['alice'])])}}\n"
        ),
    );
    let m = TestMaster::start(&star).await;
    let www = m.www();
    let mut anonymous = Browser::new(&www);
    // Data is refused; a page sends the visitor to the login form, and back after.
    for path in ["/api/v2/builders", "/sse/listen", "/buildbot/api/v2/builds"] {
        let refused = anonymous.get(path).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        assert!(refused.body.contains("log in to read"), "{}", refused.body);
    }
    for path in ["/", "/builders/1", "/rss", "/badges/alpha.svg"] {
        let sent = anonymous.get(path).await;
        assert_eq!(sent.status, 303, "{path}");
        let to = sent.location.unwrap();
        assert!(to.starts_with("/login?then="), "{to}");
    }
    // What a visitor needs to log in stays open.
    for path in ["/login", "/static/kiln.css", "/buildbot/config"] {
        assert_eq!(anonymous.get(path).await.status, 200, "{path}");
    }
    // alice reads; bob, logged in without the role, is told he may not.
    let mut alice = Browser::new(&www);
    assert_eq!(basic_login(&mut alice, "alice", "pw1").await.status, 302);
    assert_eq!(alice.get("/api/v2/builders").await.status, 200);
    assert_eq!(alice.get("/builders/1").await.status, 200);
    let mut bob = Browser::new(&www);
    assert_eq!(basic_login(&mut bob, "bob", "pw2").await.status, 302);
    let refused = bob.get("/builders/1").await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("you may not read"),
        "{}",
        refused.body
    );
    // A token acts for its user here too.
    let token = m.token("alice", &[], None).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ok = reqwest::Client::new()
        .get(format!("http://{www}/api/v2/builds"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_stopped_cancelled_or_rebuilt_a_build_is_recorded() {
    let slow = r#"
f = util.BuildFactory([steps.ShellCommand(name='wait', command=['sleep', '30'])])
c['builders'] = [util.BuilderConfig(name='slow', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['slow'])]
"#;
    let www_config = format!(
        "c['www'] = {{'auth': util.UserPasswordAuth({{'alice': 'pw1'}}), 'authz': {}}}",
        authz(&["alice"])
    );
    let star = config("sqlite:///state.sqlite", &format!("{slow}\n{www_config}\n"));
    let mut m = TestMaster::start(&star).await;
    let www = m.www();
    let alice = m.token("alice", &[], None).await;
    let force = async || {
        let params = json!({"builderNames": ["slow"]});
        let (status, reply) = rpc_as(&alice, &www, "forceschedulers/force", "force", params).await;
        assert_eq!(status, 200, "{reply}");
        reply["result"][0].as_i64().unwrap()
    };
    let first = force().await;
    let second = force().await;
    m.start_worker("w1", "pass").await;
    let build = m.wait_event("builds.*.new").await["buildid"]
        .as_i64()
        .unwrap();

    // The second request waits for the worker: alice cancels it.
    let (_, requests) = m.get(&format!("buildrequests?buildsetid={second}")).await;
    let request = requests["buildrequests"][0]["buildrequestid"]
        .as_i64()
        .unwrap();
    let (status, reply) = rpc_as(
        &alice,
        &www,
        &format!("buildrequests/{request}"),
        "cancel",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(m.wait_buildset(second).await, 6);
    let (_, props) = m.get(&format!("buildsets/{second}/properties")).await;
    assert_eq!(
        props["properties"][0]["cancelled_by"],
        json!(["alice", "Cancel Build Request"]),
        "{props}"
    );

    // She stops the running build; the build says so, on its page too.
    let (status, reply) = rpc_as(
        &alice,
        &www,
        &format!("builds/{build}"),
        "stop",
        json!({"reason": "enough"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(m.wait_buildset(first).await, 6);
    let (_, b) = m.get(&format!("builds/{build}?property=stopped_by")).await;
    assert_eq!(
        b["builds"][0]["properties"]["stopped_by"],
        json!(["alice", "Stop Build"]),
        "{b}"
    );
    let page = Browser::new(&www).get("/builders/1/builds/1").await;
    assert!(page.body.contains("stopped_by"), "{}", page.body);
    assert!(page.body.contains("Stop Build"), "{}", page.body);

    // She rebuilds it: the new buildset, and so its build, says who asked.
    let (status, reply) = rpc_as(
        &alice,
        &www,
        &format!("builds/{build}"),
        "rebuild",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let rebuilt = reply["result"][0].as_i64().unwrap();
    let (_, props) = m.get(&format!("buildsets/{rebuilt}/properties")).await;
    assert_eq!(
        props["properties"][0]["rebuilt_by"],
        json!(["alice", "Rebuild"]),
        "{props}"
    );
    m.stop().await;
}

/// A stand-in OAuth2 provider on loopback, speaking GitHub's, GitLab's and OpenID Connect's
/// endpoints: it approves every login at once, gives a code naming the user, and answers for
/// the token the code was exchanged for.
pub(crate) async fn oauth_provider() -> String {
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::{get, post};
    use std::collections::HashMap;

    async fn authorize(Query(q): Query<HashMap<String, String>>) -> Response {
        if q.get("client_id").map(String::as_str) != Some("kiln-client") {
            return (StatusCode::BAD_REQUEST, "unknown client").into_response();
        }
        let back = format!(
            "{}?code=code-{}&state={}",
            q["redirect_uri"],
            q["scope"].replace(' ', "_"),
            q["state"]
        );
        Redirect::to(&back).into_response()
    }
    async fn token(body: String) -> Response {
        let f: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
        if f.get("client_secret").map(String::as_str) != Some("s3cret")
            || f.get("grant_type").map(String::as_str) != Some("authorization_code")
        {
            return axum::Json(json!({"error": "invalid_client"})).into_response();
        }
        axum::Json(json!({"access_token": format!("token-{}", f["code"]), "token_type": "bearer"}))
            .into_response()
    }
    fn bearer(h: &HeaderMap) -> bool {
        h.get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer token-code-"))
    }
    let app = axum::Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(token))
        .route("/api/v3/user", get(|h: HeaderMap| async move {
            assert!(bearer(&h));
            axum::Json(json!({"login": "octo", "name": "Octo Cat", "email": null}))
        }))
        .route("/api/v3/user/emails", get(|| async {
            axum::Json(json!([{"email": "old@example.org", "primary": false},
                              {"email": "octo@example.org", "primary": true}]))
        }))
        .route("/api/v3/user/orgs", get(|| async { axum::Json(json!([{"login": "kiln-admins"}])) }))
        .route("/api/v3/user/teams", get(|| async {
            axum::Json(json!([{"slug": "core", "organization": {"login": "kiln-admins"}}]))
        }))
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/token", post(token))
        .route("/api/v4/user", get(|| async {
            axum::Json(json!({"username": "tanuki", "name": "Tanu Ki", "email": "tanuki@example.org"}))
        }))
        .route("/api/v4/groups", get(|| async { axum::Json(json!([{"full_path": "kiln-admins"}])) }))
        .route("/oidc/authorize", get(authorize))
        .route("/oidc/token", post(token))
        .route("/oidc/userinfo", get(|| async {
            axum::Json(json!({"sub": "u-17", "preferred_username": "oidc-user",
                              "email": "oidc@example.org", "name": "O. Idc", "groups": ["kiln-admins"]}))
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let discovery = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oidc/authorize"),
        "token_endpoint": format!("{base}/oidc/token"),
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
    });
    let app = app.route(
        "/.well-known/openid-configuration",
        get(move || {
            let d = discovery.clone();
            async move { axum::Json(d) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_providers_log_users_in_with_their_groups() {
    let provider = oauth_provider().await;
    let cases = [
        (
            format!(
                "util.GitHubAuth('kiln-client', 's3cret', serverURL='{provider}', getTeamsMembership=True)"
            ),
            "GitHub",
            json!({"username": "octo", "email": "octo@example.org", "full_name": "Octo Cat",
                   "groups": ["kiln-admins", "kiln-admins/core"]}),
        ),
        (
            format!("util.GitLabAuth('{provider}', 'kiln-client', 's3cret')"),
            "GitLab",
            json!({"username": "tanuki", "email": "tanuki@example.org", "full_name": "Tanu Ki",
                   "groups": ["kiln-admins"]}),
        ),
        (
            format!(
                "util.GenericOAuth2Auth('kiln-client', 's3cret', name='Corp SSO', discoveryUri='{provider}/.well-known/openid-configuration')"
            ),
            "Corp SSO",
            json!({"username": "oidc-user", "email": "oidc@example.org", "full_name": "O. Idc",
                   "groups": ["kiln-admins"]}),
        ),
    ];
    for (auth, label, user) in cases {
        let www_config = format!(
            "c['www'] = {{'auth': {auth}, 'authz': util.Authz(\
             allowRules=[util.AnyControlEndpointMatcher(role='kiln-admins')], \
             roleMatchers=[util.RolesFromGroups(groupPrefix='')])}}"
        );
        let star = config(
            "sqlite:///state.sqlite",
            &format!("{BUILDERS}\n{www_config}\n"),
        );
        let mut m = TestMaster::start(&star).await;
        m.start_worker("w1", "pass").await;
        let www = m.www();
        let mut b = Browser::new(&www);
        let config: Value = serde_json::from_str(&b.get("/buildbot/config").await.body).unwrap();
        assert_eq!(config["auth"]["name"], label);
        assert_eq!(config["auth"]["oauth2"], true);
        let page = b.get("/builders/1").await;
        assert!(
            page.body.contains(&format!("Log in with {label}")),
            "{}",
            page.body
        );

        // Off to the provider, which sends the browser back with a code.
        let off = b.get("/auth/login?redirect=/builders/1").await;
        assert_eq!(off.status, 302, "{label}: {}", off.body);
        let at_provider = off.location.unwrap();
        assert!(at_provider.starts_with(&provider), "{at_provider}");
        assert!(
            at_provider.contains("redirect_uri=http%3A%2F%2Flocalhost%3A8010%2Fauth%2Flogin"),
            "{at_provider}"
        );
        let approved = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(&at_provider)
            .send()
            .await
            .unwrap();
        let callback = approved.headers()["location"].to_str().unwrap().to_string();
        let query = callback.split_once('?').unwrap().1;
        // A callback with another login's state is refused.
        let (code, state) = query.split_once("&state=").unwrap();
        let forged = b.get(&format!("/auth/login?{code}&state=0000")).await;
        assert_eq!(forged.status, 401, "{}", forged.body);
        assert!(
            forged.body.contains("state does not match"),
            "{}",
            forged.body
        );
        assert!(!b.cookies.contains_key("kiln_session"));
        let back = b.get(&format!("/auth/login?{code}&state={state}")).await;
        assert_eq!(back.status, 302, "{label}: {}", back.body);
        assert_eq!(back.location.as_deref(), Some("/builders/1"));
        let config: Value = serde_json::from_str(&b.get("/buildbot/config").await.body).unwrap();
        assert_eq!(config["user"], user, "{label}");
        // The provider's groups are roles here.
        assert_eq!(force(&mut b).await.status, 200, "{label}");
        // A provider that refuses says so.
        let refused = b
            .get("/auth/login?error=access_denied&error_description=no+thanks")
            .await;
        assert_eq!(refused.status, 401);
        assert!(refused.body.contains("no thanks"), "{}", refused.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_login_goes_to_google_with_the_masters_client() {
    let star = config(
        "sqlite:///state.sqlite",
        &format!("{BUILDERS}\nc['www'] = {{'auth': util.GoogleAuth('id-123', 'secret')}}\n"),
    );
    let m = TestMaster::start(&star).await;
    let mut b = Browser::new(&m.www());
    let off = b.get("/auth/login?redirect=/").await;
    assert_eq!(off.status, 302);
    let to = off.location.unwrap();
    assert!(
        to.starts_with("https://accounts.google.com/o/oauth2/auth?client_id=id-123&"),
        "{to}"
    );
    assert!(to.contains("scope=openid+email+profile"), "{to}");
    assert!(b.cookies.contains_key("kiln_oauth"));
    // No client secret ever leaves for the browser.
    assert!(!to.contains("secret"), "{to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_webstatus_authz_logs_in_as_its_manual_says() {
    // The brief's own example: BasicAuth users, forcing for those logged in, pinging for all.
    let www_config = "c['www'] = {'authz': util.Authz(auth=util.BasicAuth([('bob', 'secret-pass'), ('jill', 'super-pass')]), forceBuild='auth', pingBuilder=True)}";
    let star = config(
        "sqlite:///state.sqlite",
        &format!("{BUILDERS}\n{www_config}\n"),
    );
    let mut m = TestMaster::start(&star).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    let mut anonymous = Browser::new(&www);
    let refused = force(&mut anonymous).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("forceBuild"), "{}", refused.body);
    let mut bob = Browser::new(&www);
    assert_eq!(
        basic_login(&mut bob, "bob", "secret-pass").await.status,
        302
    );
    assert_eq!(force(&mut bob).await.status, 200);
    // showUsersPage is not named, so the users table is nobody's, in the pages and the API.
    let users = bob.get("/users").await;
    assert_eq!(users.status, 403);
    assert!(
        users.body.contains("you may not see the users"),
        "{}",
        users.body
    );
    assert_eq!(bob.get("/api/v2/users").await.status, 403);
    let home = bob.get("/").await;
    assert!(!home.body.contains("href=\"/users\""), "{}", home.body);

    // Behind a web server that checks HTTP Basic credentials and passes them on: its user
    // name is believed, and anonymous visitors are offered the server's login link.
    let www_config = "c['www'] = {'authz': util.Authz(useHttpHeader=True, httpLoginLink='https://ci.example.org/login', forceBuild='auth')}";
    let star = config(
        "sqlite:///state.sqlite",
        &format!("{BUILDERS}\n{www_config}\n"),
    );
    let m = TestMaster::start(&star).await;
    let www = m.www();
    let mut visitor = Browser::new(&www);
    let page = visitor.get("/builders/1").await;
    assert!(
        page.body
            .contains(r#"<a href="https://ci.example.org/login">Log in</a>"#),
        "{}",
        page.body
    );
    assert_eq!(force(&mut visitor).await.status, 403);
    let url = format!("http://{www}/buildbot/config");
    let request = visitor
        .client
        .get(url)
        .basic_auth("jill", Some("checked-by-the-proxy"));
    let answer = visitor.send(request).await;
    let config: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(config["user"]["username"], "jill", "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_shows_on_any_surface() {
    // Every kind of secret the configuration and the users hold, each a value found nowhere else.
    let secrets = [
        "wk-S3cr3t-91",  // a worker's password
        "pw-S3cr3t-17",  // a web user's password
        "hk-S3cr3t-33",  // the change hook's password
        "try-S3cr3t-77", // a try user's password
        "sp-S3cr3t-55",  // a secret from a secrets provider, used by a step
    ];
    let body = r#"
c['workers'].append(worker.Worker('w3', 'wk-S3cr3t-91'))
c['secretsProviders'] = [secrets.SecretInAFile('secrets')]
f = util.BuildFactory([steps.ShellCommand(name='use', command=['sh', '-c', util.Interpolate('echo key=%(secret:key)s')])])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b']),
    schedulers.Try_Userpass(name='try', builderNames=['b'], port=8031, userpass=[('tryer', 'try-S3cr3t-77')])]
c['www'] = {'auth': util.UserPasswordAuth({'alice': 'pw-S3cr3t-17'}),
    'change_hook_dialects': {'base': True}, 'change_hook_auth': ['memory:hook:hk-S3cr3t-33']}
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/key"), "sp-S3cr3t-55\n").unwrap();
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();

    // Use everything once: a login, a token, a hooked change, a forced build that uses the secret.
    let mut b = Browser::new(&www);
    assert_eq!(
        basic_login(&mut b, "alice", "pw-S3cr3t-17").await.status,
        302
    );
    let token = m.token("alice", &[], None).await;
    let request = b
        .client
        .post(format!("http://{www}/change_hook/base"))
        .basic_auth("hook", Some("hk-S3cr3t-33"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("author=someone&comments=c&revision=r1&branch=main&repository=repo");
    assert_eq!(b.send(request).await.status, 200);
    let params = json!({"builderNames": ["b"]});
    let (status, reply) = rpc_as(&token, &www, "forceschedulers/force", "force", params).await;
    assert_eq!(status, 200, "{reply}");
    m.wait_buildset(reply["result"][0].as_i64().unwrap()).await;
    let session_key = {
        let db = &m.master().db;
        let object = db
            .lookup_object_id("www", "SessionKey")
            .await
            .unwrap()
            .unwrap();
        let stored = db.get_state(object, "key").await.unwrap().unwrap();
        serde_json::from_str::<String>(&stored).unwrap()
    };

    // Every surface, read as the logged-in user.
    let mut surfaces: Vec<(String, String)> = Vec::new();
    let pages = [
        "/",
        "/builders",
        "/builders/1",
        "/builders/1/builds/1",
        "/builders/1/builds/1/steps/1/logs/stdio",
        "/workers",
        "/workers/w1",
        "/workers/w3",
        "/changes",
        "/changes/1",
        "/waterfall",
        "/grid",
        "/tgrid",
        "/console",
        "/one_line_per_build",
        "/rss",
        "/atom",
        "/badges/b.svg",
        "/users",
        "/schedulers",
        "/about",
        "/login",
        "/buildbot/config",
    ];
    for path in pages {
        let answer = b.get(path).await;
        assert_eq!(answer.status, 200, "{path}");
        surfaces.push((path.to_string(), answer.body));
    }
    let api = [
        "builders",
        "builds?property=*",
        "builds/1/properties",
        "builds/1/steps",
        "builds/1/users",
        "workers",
        "changes",
        "buildsets",
        "buildsets/1/properties",
        "buildsets/2/properties",
        "buildrequests",
        "masters",
        "schedulers",
        "forceschedulers",
        "changesources",
        "users",
        "sourcestamps",
        "application.spec",
        "logs/1/contents",
        "logs/1/raw",
    ];
    for path in api {
        let answer = b.get(&format!("/api/v2/{path}")).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        surfaces.push((path.to_string(), answer.body));
    }
    let events = m.master().db.events_after(0, 100_000).await.unwrap();
    assert!(!events.is_empty());
    for e in events {
        surfaces.push((format!("event {}", e.key), e.payload));
    }
    // The access log, written from its own task: wait until it holds the last request.
    let log_path = m.path("http.log");
    let last = "/api/v2/logs/1/raw";
    let log = tokio::time::timeout(crate::harness::WAIT, async {
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains(last) {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the access log is written");
    surfaces.push(("http.log".into(), log));
    // The surfaces are real: they name the user, and the step's log says the secret was used,
    // hidden.
    let config = &surfaces
        .iter()
        .find(|(p, _)| p == "/buildbot/config")
        .unwrap()
        .1;
    assert!(config.contains("\"username\":\"alice\""), "{config}");
    let raw = &surfaces.iter().find(|(p, _)| p == "logs/1/raw").unwrap().1;
    assert!(raw.contains("key=<key>"), "{raw}");

    for (surface, text) in &surfaces {
        for secret in secrets
            .iter()
            .copied()
            .chain([token.as_str(), session_key.as_str()])
        {
            assert!(!text.contains(secret), "{surface} shows a secret:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_a_rule_hides_are_hidden_everywhere() {
    let body = r#"
f = util.BuildFactory([steps.ShellCommand(name='say', command=['echo', 'hi'])])
c['builders'] = [util.BuilderConfig(name='public', workernames=['w1'], factory=f),
                 util.BuilderConfig(name='secret', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['public', 'secret'])]
c['www'] = {'auth': util.UserPasswordAuth({'alice': 'pw1'}),
    'authz': util.Authz(allowRules=[util.ViewBuildsEndpointMatcher(builder='secret*', role='insiders')],
        roleMatchers=[util.RolesFromUsername(roles=['insiders'], usernames=['alice'])])}
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    // The secret builder's build comes first, so a stream replayed in order meets it first.
    m.force_and_wait(json!({"builderNames": ["secret"]})).await;
    m.force_and_wait(json!({"builderNames": ["public"]})).await;
    let alice = m.token("alice", &[], None).await;
    let mut anonymous = Browser::new(&www);
    let get = async |b: &mut Browser, path: &str| {
        let a = b.get(path).await;
        (a.status, a.body)
    };

    // The REST API: listings leave the secret build out, and paths through it are not found.
    let (_, builds) = get(&mut anonymous, "/api/v2/builds").await;
    let builds: Value = serde_json::from_str(&builds).unwrap();
    assert_eq!(builds["builds"].as_array().unwrap().len(), 1, "{builds}");
    assert_eq!(builds["builds"][0]["builderid"], 1, "{builds}");
    for path in [
        "/api/v2/builds/1",
        "/api/v2/builds/1/steps",
        "/api/v2/builders/secret/builds",
        "/api/v2/builders/2/builds/1/steps/1/logs/stdio/raw",
        "/api/v2/logs/1/contents",
        "/api/v2/steps/1",
    ] {
        let (status, body) = get(&mut anonymous, path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (_, requests) = get(&mut anonymous, "/api/v2/buildrequests").await;
    assert!(!requests.contains("\"builderid\":2"), "{requests}");
    // The builders themselves stay listed.
    let (_, builders) = get(&mut anonymous, "/api/v2/builders").await;
    assert!(builders.contains("secret"), "{builders}");

    // The pages: the secret builder's pages are refused, and no list shows its build.
    for path in [
        "/builders/2",
        "/builders/secret/builds/1",
        "/builders/2/builds/1/steps/1/logs/stdio",
    ] {
        let (status, body) = get(&mut anonymous, path).await;
        assert_eq!(status, 403, "{path}");
        assert!(
            body.contains("you may not see the builds of secret"),
            "{body}"
        );
    }
    for path in [
        "/",
        "/waterfall",
        "/grid",
        "/console",
        "/one_line_per_build",
        "/rss",
        "/workers/w1",
    ] {
        let (status, body) = get(&mut anonymous, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            !body.contains("builders/2/builds/1"),
            "{path} links the secret build:\n{body}"
        );
    }
    let (_, badge) = get(&mut anonymous, "/badges/secret.svg").await;
    assert!(
        badge.contains("unknown") && !badge.contains("success"),
        "{badge}"
    );

    // The event stream, replayed from the start, carries the public build but not the secret.
    let public_done = |t: &str| t.contains("\"builderid\":1") && t.contains("\"complete\":true");
    let seen = replayed_builds(&www, None, public_done).await;
    assert!(!seen.contains("\"builderid\":2"), "{seen}");
    // alice, who has the role, sees both.
    let all = get_as(&www, &alice, "builds").await;
    assert_eq!(all["builds"].as_array().unwrap().len(), 2, "{all}");
    let seen = replayed_builds(&www, Some(&alice), public_done).await;
    assert!(seen.contains("\"builderid\":2"), "{seen}");
}

/// The build events of `/sse`, replayed from the start of the durable record (as `token`'s user
/// when given), until `done` says enough has arrived.
async fn replayed_builds(www: &str, token: Option<&str>, done: impl Fn(&str) -> bool) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .get(format!("http://{www}/sse/listen?path=builds/*/*"))
        .header("Last-Event-ID", "0");
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let mut answer = request.send().await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(crate::harness::WAIT, async {
        while !done(&text) {
            let chunk = answer.chunk().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the awaited events arrive");
    text
}

/// A REST answer read with an API token.
async fn get_as(www: &str, token: &str, path: &str) -> Value {
    let (status, body) = crate::harness::http_text(
        www,
        "GET",
        &format!("/api/v2/{path}"),
        None,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_door_is_refused_or_allowed_by_the_same_rules() {
    let body = r#"
f = util.BuildFactory([steps.ShellCommand(name='say', command=['echo', 'hi'])])
c['builders'] = [util.BuilderConfig(name='alpha', workernames=['w1'], factory=f),
                 util.BuilderConfig(name='idle', workernames=['w2'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['alpha', 'idle'])]
c['www'] = {'auth': util.UserPasswordAuth({'alice': 'pw1', 'bob': 'pw2'}),
    'authz': util.Authz(allowRules=[util.AnyControlEndpointMatcher(role='admins')],
        roleMatchers=[util.RolesFromUsername(roles=['admins'], usernames=['alice'])])}
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    let admin = m.token("alice", &[], None).await;
    let plain = m.token("bob", &[], None).await;
    // A finished build of alpha, and a request on idle that waits for a worker that never comes.
    let params = json!({"builderNames": ["alpha"]});
    let (_, reply) = rpc_as(&admin, &www, "forceschedulers/force", "force", params).await;
    m.wait_buildset(reply["result"][0].as_i64().unwrap()).await;
    let params = json!({"builderNames": ["idle"]});
    let (_, reply) = rpc_as(&admin, &www, "forceschedulers/force", "force", params).await;
    let pending = reply["result"][1]["2"].as_i64().unwrap();

    // JSON-RPC: each call, anonymous, as bob, then as alice.
    let calls: Vec<(String, &str, Value)> = vec![
        ("workers/w1".into(), "pause", json!({})),
        ("workers/w1".into(), "unpause", json!({})),
        (
            format!("buildrequests/{pending}"),
            "set_priority",
            json!({"priority": 5}),
        ),
        ("schedulers/1".into(), "enable", json!({"enabled": true})),
        ("builds/1".into(), "rebuild", json!({})),
        ("builds/1".into(), "stop", json!({})),
        (format!("buildrequests/{pending}"), "cancel", json!({})),
        (
            "forceschedulers/force".into(),
            "force",
            json!({"builderNames": ["alpha"]}),
        ),
    ];
    for (path, method, params) in &calls {
        let (status, reply) = rpc(&www, path, method, params.clone()).await;
        refused(status, &reply, "you need to have role 'admins'");
        let (status, reply) = rpc_as(&plain, &www, path, method, params.clone()).await;
        refused(status, &reply, "you need to have role 'admins'");
        let (status, reply) = rpc_as(&admin, &www, path, method, params.clone()).await;
        assert_eq!(status, 200, "{method} {path}: {reply}");
    }

    // The pages' forms: the same, with each browser's session and the page's token.
    let mut anonymous = Browser::new(&www);
    let mut bob = Browser::new(&www);
    assert_eq!(basic_login(&mut bob, "bob", "pw2").await.status, 302);
    let mut alice = Browser::new(&www);
    assert_eq!(basic_login(&mut alice, "alice", "pw1").await.status, 302);
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/workers/w1/ping".into(), vec![]),
        ("/workers/w1/pause".into(), vec![("reason", "test")]),
        ("/workers/w1/unpause".into(), vec![]),
        (
            format!("/buildrequests/{pending}/priority"),
            vec![("priority", "7")],
        ),
        ("/schedulers/1/enable".into(), vec![("enabled", "true")]),
        ("/builds/1/rebuild".into(), vec![]),
        ("/builds/1/stop".into(), vec![]),
        (format!("/buildrequests/{pending}/cancel"), vec![]),
        ("/builders/1/force/force".into(), vec![]),
        ("/workers/w1/stop".into(), vec![]),
        ("/workers/w1/kill".into(), vec![]),
        ("/shutdown".into(), vec![]),
    ];
    for (path, fields) in &forms {
        for (who, b, allowed) in [
            ("anonymous", &mut anonymous, false),
            ("bob", &mut bob, false),
            ("alice", &mut alice, true),
        ] {
            b.get("/about").await;
            let token = b.token();
            let mut form = vec![("csrf", token.as_str())];
            form.extend(fields.iter().copied());
            let answer = b.post(path, &form).await;
            if allowed {
                assert_eq!(answer.status, 303, "{who} {path}: {}", answer.body);
            } else {
                assert_eq!(answer.status, 403, "{who} {path}: {}", answer.body);
                assert!(
                    answer.body.contains("you need to have role"),
                    "{who} {path}: {}",
                    answer.body
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_of_a_hidden_branch_are_hidden_everywhere() {
    let body = r#"
f = util.BuildFactory([steps.ShellCommand(name='say', command=['echo', 'hi'])])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
c['www'] = {'auth': util.UserPasswordAuth({'alice': 'pw1'}),
    'authz': util.Authz(allowRules=[
        util.BranchEndpointMatcher('main', role='admins'),
        util.ViewBuildsEndpointMatcher(branch='release*', role='insiders')],
        roleMatchers=[util.RolesFromUsername(roles=['insiders'], usernames=['alice'])])}
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    // Build 1 is of a release branch, build 2 of main.
    m.force_and_wait(json!({"builderNames": ["b"], "branch": "release-1"}))
        .await;
    m.force_and_wait(json!({"builderNames": ["b"], "branch": "main"}))
        .await;
    let alice = m.token("alice", &[], None).await;
    let mut anonymous = Browser::new(&www);

    let answer = anonymous.get("/api/v2/builds").await;
    let builds: Value = serde_json::from_str(&answer.body).unwrap();
    let ids: Vec<i64> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["buildid"].as_i64().unwrap())
        .collect();
    // The branch rule about main concerns what is done to its builds, not reading them.
    assert_eq!(ids, [2], "{builds}");
    for path in [
        "/api/v2/builds/1",
        "/api/v2/builds/1/steps",
        "/api/v2/builders/1/builds/1",
    ] {
        assert_eq!(anonymous.get(path).await.status, 404, "{path}");
    }
    let page = anonymous.get("/builders/1/builds/1").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("you may not see build 1 of b"),
        "{}",
        page.body
    );
    assert_eq!(anonymous.get("/builders/1/builds/2").await.status, 200);
    for path in [
        "/",
        "/builders/1",
        "/waterfall",
        "/console",
        "/grid",
        "/one_line_per_build",
    ] {
        let body = anonymous.get(path).await.body;
        assert!(
            !body.contains("builders/1/builds/1\""),
            "{path} links the hidden build:\n{body}"
        );
        // The console shows builds of changes only; these were forced.
        if path != "/console" {
            assert!(
                body.contains("builders/1/builds/2\""),
                "{path} lacks the visible build:\n{body}"
            );
        }
    }
    // The event stream leaves the hidden build's events out.
    let done = |t: &str| t.contains("\"buildid\":2") && t.contains("\"complete\":true");
    let text = replayed_builds(&www, None, done).await;
    assert!(!text.contains("\"buildid\":1,"), "{text}");
    // alice, an insider, sees both.
    let all = get_as(&www, &alice, "builds").await;
    assert_eq!(all["builds"].as_array().unwrap().len(), 2, "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_keep_their_own_credentials_when_the_pages_are_locked() {
    // A site locked down for reading and control, as many are, still takes its hooks' changes.
    let star = config(
        "sqlite:///state.sqlite",
        &format!(
            "{BUILDERS}\nc['www'] = {{'auth': util.UserPasswordAuth({{'alice': 'pw1'}}), \
             'change_hook_dialects': {{'base': True}}, 'change_hook_auth': ['memory:hook:hookpw'], \
             'authz': util.Authz(allowRules=[util.AnyEndpointMatcher(role='admins')], \
             roleMatchers=[util.RolesFromUsername(roles=['admins'], usernames=['alice'])])}}\n"
        ),
    );
    let m = TestMaster::start(&star).await;
    let www = m.www();
    let mut b = Browser::new(&www);
    assert_eq!(b.get("/api/v2/changes").await.status, 403);
    let client = b.client.clone();
    let post = |user: &str, password: &str| {
        client
            .post(format!("http://{www}/change_hook/base"))
            .basic_auth(user, Some(password))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("author=someone&comments=c&revision=r1&branch=main&repository=repo")
    };
    let wrong = post("hook", "nope");
    assert_eq!(b.send(wrong).await.status, 401);
    let right = post("hook", "hookpw");
    let answer = b.send(right).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let alice = m.token("alice", &[], None).await;
    let changes = get_as(&www, &alice, "changes").await;
    assert_eq!(changes["meta"]["total"], 1, "{changes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_stop_all_builds_and_stop_change_are_controls_of_their_own() {
    let body = r#"
slow = util.BuildFactory([steps.ShellCommand(name='wait', command=['sleep', '30'])])
c['builders'] = [util.BuilderConfig(name='slow', workernames=['w1'], factory=slow),
                 util.BuilderConfig(name='idle', workernames=['w2'], factory=slow)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['slow']),
    schedulers.SingleBranchScheduler(name='main', branch='main', treeStableTimer=None, builderNames=['idle'])]
c['www'] = {'change_hook_dialects': {'base': True},
    'authz': util.Authz(auth=util.BasicAuth([('bob', 'pw2')]), forceBuild=True,
        stopAllBuilds='auth', stopChange='auth')}
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    // A change builds on idle, whose worker never comes: its request waits.
    let form = "author=a&comments=c&revision=r1&branch=main&repository=repo";
    let (status, reply) = crate::harness::http(&www, "POST", "/change_hook/base", Some(form)).await;
    assert_eq!(status, 200, "{reply}");
    let pending = m.wait_event("buildrequests.*.new").await;
    let buildset = pending["buildsetid"].as_i64().unwrap();
    // A forced build runs on slow.
    let forced = m.force(json!({"builderNames": ["slow"]})).await;
    let build = m.wait_event("builds.*.new").await["buildid"]
        .as_i64()
        .unwrap();

    let mut anonymous = Browser::new(&www);
    let changes_page = anonymous.get("/changes/1").await;
    assert!(
        !changes_page.body.contains("Cancel the pending builds"),
        "{}",
        changes_page.body
    );
    let token = anonymous.token();
    for path in ["/changes/1/cancel", "/stop_all_builds"] {
        let refused = anonymous.post(path, &[("csrf", &token)]).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        assert!(
            refused.body.contains("needs you to log in"),
            "{}",
            refused.body
        );
    }

    let mut bob = Browser::new(&www);
    assert_eq!(basic_login(&mut bob, "bob", "pw2").await.status, 302);
    let page = bob.get("/changes/1").await;
    assert!(
        page.body.contains("Cancel the pending builds"),
        "{}",
        page.body
    );
    let token = bob.token();
    let cancelled = bob.post("/changes/1/cancel", &[("csrf", &token)]).await;
    assert_eq!(cancelled.status, 303, "{}", cancelled.body);
    assert_eq!(m.wait_buildset(buildset).await, 6);
    let (_, props) = m.get(&format!("buildsets/{buildset}/properties")).await;
    assert_eq!(props["properties"][0]["cancelled_by"][0], "bob", "{props}");

    assert!(
        bob.get("/builders")
            .await
            .body
            .contains("Stop all running builds")
    );
    let stopped = bob.post("/stop_all_builds", &[("csrf", &token)]).await;
    assert_eq!(stopped.status, 303, "{}", stopped.body);
    assert_eq!(m.wait_buildset(forced).await, 6);
    let (_, b) = m.get(&format!("builds/{build}?property=stopped_by")).await;
    assert_eq!(b["builds"][0]["properties"]["stopped_by"][0], "bob", "{b}");
    m.stop().await;
}

/// A page of another site that points its own name at the master (DNS rebinding) reaches it
/// with that name in `Host`: such requests are refused before they read or change anything,
/// while the master's own names, its addresses and the names the configuration lists work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_port_answers_only_to_the_master_s_own_host_names() {
    // No login: anyone who reaches the master may force.
    let star = config(
        "sqlite:///state.sqlite",
        &format!(
            "{BUILDERS}\nc['www'] = {{'allowed_hosts': ['.corp.example']}}\n\
             c['buildbotURL'] = 'https://ci.example.org/'\n"
        ),
    );
    let mut m = TestMaster::start(&star).await;
    let mut b = Browser::new(&m.www());
    let as_host = |b: &Browser, method: reqwest::Method, path: &str, host: &str| {
        b.client
            .request(method, format!("http://{}{path}", b.www))
            .header("Host", host)
    };

    for host in [
        "evil.example",
        "ci.example.org.evil.example:8010",
        "corp.example.evil",
    ] {
        let answer = b
            .send(as_host(&b, reqwest::Method::GET, "/api/v2/builders", host))
            .await;
        assert_eq!(answer.status, 421, "{host}: {}", answer.body);
        assert!(
            answer.body.contains("allowed_hosts") && answer.body.contains(host),
            "{}",
            answer.body
        );
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    }
    // A force from such a page changes nothing; from the master's own name it works.
    let body = json!({"jsonrpc": "2.0", "method": "force", "id": 1,
                      "params": {"builderNames": ["alpha"]}});
    let answer = b
        .send(
            as_host(
                &b,
                reqwest::Method::POST,
                "/api/v2/forceschedulers/force",
                "evil.example",
            )
            .header("Content-Type", "application/json")
            .body(body.to_string()),
        )
        .await;
    assert_eq!(answer.status, 421, "{}", answer.body);
    let (_, buildsets) = m.get("buildsets").await;
    assert_eq!(buildsets["meta"]["total"], 0, "{buildsets}");
    let answer = b
        .send(
            as_host(
                &b,
                reqwest::Method::POST,
                "/api/v2/forceschedulers/force",
                "ci.example.org",
            )
            .header("Content-Type", "application/json")
            .body(body.to_string()),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (_, buildsets) = m.get("buildsets").await;
    assert_eq!(buildsets["meta"]["total"], 1, "{buildsets}");

    let port = m.www().rsplit_once(':').unwrap().1.to_string();
    for host in [
        "ci.example.org".to_string(),
        format!("CI.example.org:{port}"),
        "builds.corp.example".to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let answer = b
            .send(as_host(&b, reqwest::Method::GET, "/api/v2/builders", &host))
            .await;
        assert_eq!(answer.status, 200, "{host}: {}", answer.body);
    }
    m.stop().await;
}
