//! kiln's own pages, driven as a browser would: pages render from the real database, forms carry
//! the CSRF token of the browser's cookie, controls redirect with their outcome, bad requests
//! get pages that say what is wrong, and every string a user or a build supplies is escaped.

use crate::harness::{Browser, TestMaster, config, http};

/// A string that would run if a page did not escape it.
const EVIL: &str = "<script>alert(1)</script>";

fn cfg() -> String {
    format!(
        r#"
c['title'] = 'Pages <b>test</b>'
c['www'] = {{'change_hook_dialects': {{'base': True}}}}
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], tags=['t1'],
    factory=util.BuildFactory([
        steps.ShellCommand(name='say', command=['printf', 'out {EVIL}\n\033[31mred\033[0m\nsecond\n']),
        steps.SetProperty(property='evil', value='{EVIL}'),
    ]))]
c['schedulers'] = [
    schedulers.AnyBranchScheduler(name='all', builderNames=['b'], treeStableTimer=None),
    schedulers.ForceScheduler(name='force', builderNames=['b'], properties=[
        util.IntParameter(name='count', label='Count', default=1),
        util.BooleanParameter(name='fast', label='Fast', default=True),
        util.ChoiceStringParameter(name='flavour', label='Flavour', choices=['plain', 'fancy'], default='plain'),
    ]),
]
"#
    )
}

/// Asserts that no user- or build-supplied markup reached the page unescaped.
fn assert_escaped(page: &str) {
    assert!(!page.contains(EVIL), "unescaped markup in:\n{page}");
    assert!(!page.contains("<b>test</b>"), "unescaped title in:\n{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_builds_and_their_controls_work() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg())).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    let mut browser = Browser::new(&www);

    // A change whose every field carries markup builds once.
    let evil = urlencode(EVIL);
    let files = urlencode(&serde_json::json!([EVIL]).to_string());
    let form = format!(
        "author={evil}&comments={evil}&revision=r1&branch=main&repository={evil}&project=p&files={files}"
    );
    let (status, reply) = http(&www, "POST", "/change_hook/base", Some(&form)).await;
    assert_eq!(status, 200, "{reply}");
    m.wait_event("buildsets.*.complete").await;

    let home = browser.get("/").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert_escaped(&home.body);
    assert!(
        home.body.contains("Pages &lt;b&gt;test&lt;/b&gt;"),
        "{}",
        home.body
    );
    assert!(
        home.body.contains(r#"href="/builders/1/builds/1""#),
        "{}",
        home.body
    );
    let token = browser.token();
    assert_eq!(token.len(), 64);

    // The build page: steps, logs, properties with their sources, the change, all escaped.
    let build = browser.get("/builders/1/builds/1").await;
    assert_eq!(build.status, 200, "{}", build.body);
    assert_escaped(&build.body);
    assert!(
        build
            .body
            .contains("/builders/1/builds/1/steps/1/logs/stdio"),
        "{}",
        build.body
    );
    assert!(
        build.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        build.body
    );
    assert!(
        build.body.contains(r#"<span class="name">say</span>"#),
        "{}",
        build.body
    );
    assert!(build.body.contains("<td>evil</td>"), "{}", build.body);
    assert!(build.body.contains("Rebuild"), "{}", build.body);
    // The builder by name gives the same page.
    assert_eq!(browser.get("/builders/b/builds/1").await.status, 200);

    // The log: streams told apart, ANSI colours as markup, the rest escaped.
    let log = browser.get("/builders/1/builds/1/steps/1/logs/stdio").await;
    assert_eq!(log.status, 200, "{}", log.body);
    assert_escaped(&log.body);
    assert!(log.body.contains("out &lt;script&gt;"), "{}", log.body);
    assert!(
        log.body
            .contains("<span style='color:var(--red,#a00)'>red</span>"),
        "{}",
        log.body
    );
    assert!(log.body.contains(r#"class="line h""#), "{}", log.body);
    assert!(
        log.body.contains(r#"<span class="line o" id="L"#),
        "{}",
        log.body
    );
    assert!(log.body.contains(r#"id="L0""#), "{}", log.body);
    let found = browser
        .get("/builders/1/builds/1/steps/1/logs/stdio?search=SECOND")
        .await;
    // The command, shown twice in the header, has the word too.
    assert!(found.body.contains("3 lines with"), "{}", found.body);
    let one = browser
        .get("/builders/1/builds/1/steps/1/logs/stdio?first=0&lines=1")
        .await;
    assert!(
        one.body.contains(r#"id="L0""#) && !one.body.contains(r#"id="L1""#),
        "{}",
        one.body
    );

    // The other pages render and escape.
    for path in [
        "/builders",
        "/builders/1",
        "/workers",
        "/workers/w1",
        "/workers?no_builders=1",
        "/changes",
        "/changes/1",
        "/about",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert_escaped(&page.body);
    }
    let change = browser.get("/changes/1").await;
    assert!(
        change.body.contains(r#"href="/builders/1/builds/1""#),
        "{}",
        change.body
    );

    // Controls need the browser's token.
    let refused = browser
        .post("/builders/1/force/force", &[("reason", "x")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let forged = browser
        .post("/builders/1/force/force", &[("csrf", &"0".repeat(64))])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);

    // A bad field is shown next to the field, with what was typed kept.
    let bad = browser
        .post(
            "/builders/1/force/force",
            &[("csrf", &token), ("count", "many"), ("reason", EVIL)],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_escaped(&bad.body);
    assert!(
        bad.body
            .contains("count: &#x27;many&#x27; is not an integer")
            || bad.body.contains("count: 'many' is not an integer"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains(r#"value="many""#), "{}", bad.body);

    // A good form forces a build and says so once on the page it redirects to.
    let forced = browser
        .post(
            "/builders/1/force/force",
            &[
                ("csrf", &token),
                ("count", "3"),
                ("fast", "false"),
                ("reason", "from the page"),
            ],
        )
        .await;
    assert_eq!(forced.status, 303, "{}", forced.body);
    assert_eq!(forced.location.as_deref(), Some("/builders/1"));
    let after = browser.get("/builders/1").await;
    assert!(after.body.contains("Forced: buildset 2"), "{}", after.body);
    assert!(
        !browser
            .get("/builders/1")
            .await
            .body
            .contains("Forced: buildset")
    );
    m.wait_event("buildsets.*.complete").await;
    let (_, props) = m.get("builds/2/properties").await;
    assert_eq!(props["properties"][0]["count"][0], 3, "{props}");
    assert_eq!(props["properties"][0]["fast"][0], false, "{props}");

    // Rebuild from the build page.
    let rebuilt = browser.post("/builds/1/rebuild", &[("csrf", &token)]).await;
    assert_eq!(rebuilt.status, 303, "{}", rebuilt.body);
    assert_eq!(rebuilt.location.as_deref(), Some("/builders/1/builds/1"));
    m.wait_event("buildsets.*.complete").await;

    // Worker controls.
    let paused = browser
        .post("/workers/w1/pause", &[("csrf", &token), ("reason", EVIL)])
        .await;
    assert_eq!(paused.status, 303, "{}", paused.body);
    let worker = browser.get("/workers/1").await;
    assert!(
        worker.body.contains("Worker w1 is paused"),
        "{}",
        worker.body
    );
    assert_escaped(&worker.body);
    let pinged = browser.post("/workers/1/ping", &[("csrf", &token)]).await;
    assert_eq!(pinged.status, 303, "{}", pinged.body);
    assert!(
        browser
            .get("/workers/1")
            .await
            .body
            .contains("answered the ping")
    );

    // Schedulers are disabled and enabled from their page.
    let schedulers = browser.get("/schedulers").await;
    assert!(
        schedulers.body.contains("<td>force</td>"),
        "{}",
        schedulers.body
    );
    let (_, rows) = m.get("schedulers").await;
    let force = rows["schedulers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "force")
        .unwrap()["schedulerid"]
        .clone();
    let off = browser
        .post(
            &format!("/schedulers/{force}/enable"),
            &[("csrf", &token), ("enabled", "false")],
        )
        .await;
    assert_eq!(off.status, 303, "{}", off.body);
    assert!(
        browser
            .get("/schedulers")
            .await
            .body
            .contains("is disabled")
    );
    let (_, s) = m.get(&format!("schedulers/{force}")).await;
    assert_eq!(s["schedulers"][0]["enabled"], false, "{s}");
    let bad = browser
        .post(
            &format!("/schedulers/{force}/enable"),
            &[("csrf", &token), ("enabled", "maybe")],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // The master shuts down cleanly from the about page.
    let down = browser.post("/shutdown", &[("csrf", &token)]).await;
    assert_eq!(down.status, 303, "{}", down.body);
    tokio::time::timeout(crate::harness::WAIT, m.master().stop_requested())
        .await
        .expect("the master was asked to stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_are_404_pages_and_bad_arguments_400_pages() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg())).await;
    let mut browser = Browser::new(&m.www());
    for (path, status, says) in [
        (
            "/builders/nosuch",
            404,
            "there is no builder &#x27;nosuch&#x27;",
        ),
        (
            "/builders/1/builds/99",
            404,
            "builder &#x27;b&#x27; has no build 99",
        ),
        ("/builders/1/builds/x", 404, "has no build x"),
        ("/workers/nosuch", 404, "there is no worker"),
        ("/changes/5", 404, "there is no change"),
        ("/no/such/page", 404, "there is no page at /no/such/page"),
        (
            "/builders/1?numbuilds=lots",
            400,
            "numbuilds must be a whole number from 1 to 1000, not &#x27;lots&#x27;",
        ),
        (
            "/workers?no_builders=maybe",
            400,
            "no_builders must be true or false",
        ),
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, status, "{path}: {}", page.body);
        assert!(page.body.contains(says), "{path}: {}", page.body);
        assert!(
            page.body.contains("<html"),
            "{path}: not a page: {}",
            page.body
        );
    }
    let markup = browser.get(&format!("/builders/{}", urlencode(EVIL))).await;
    assert_eq!(markup.status, 404);
    assert_escaped(&markup.body);
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_string()
}

const VIEWS: &str = r#"
c['www'] = {'change_hook_dialects': {'base': True}}
c['builders'] = [
    util.BuilderConfig(name='a', workernames=['w1', 'w2'], tags=['good'],
        factory=util.BuildFactory([steps.ShellCommand(name='ok', command=['true'])])),
    util.BuilderConfig(name='b', workernames=['w1', 'w2'], tags=['bad'],
        factory=util.BuildFactory([steps.ShellCommand(name='broken', command=['false'])])),
]
c['schedulers'] = [schedulers.AnyBranchScheduler(name='all', builderNames=['a', 'b'], treeStableTimer=None)]
"#;

/// The page at `path`, which must be 200.
async fn page(www: &str, path: &str) -> String {
    let (status, body) = crate::harness::http_text(www, "GET", path, None, &[]).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_escaped(&body);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waterfall_grid_and_console_show_builds_by_time_stamp_and_change() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", VIEWS)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    for (rev, author) in [("r1", "Alice"), ("r2", EVIL)] {
        let form = format!(
            "author={}&comments=c&revision={rev}&branch=main&repository=repo&project=p",
            urlencode(author)
        );
        let (status, reply) = http(&www, "POST", "/change_hook/base", Some(&form)).await;
        assert_eq!(status, 200, "{reply}");
        m.wait_event("buildsets.*.complete").await;
    }

    // A worker that connects once the builds ran: the waterfall shows worker events from its
    // oldest build on, and w1 connected before it, in the same second or not.
    // Its connection is recorded just after it attaches, which `start_worker` waits for.
    let mut bus = m.master().events.subscribe();
    m.start_worker("w2", "pass2").await;
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while !kiln_master::events::matches(
            "workers.*.connected",
            &bus.recv().await.expect("bus").key(),
        ) {}
    })
    .await
    .expect("w2's connection is recorded");

    // The waterfall: both columns, each build with its steps and log links.
    let all = page(&www, "/waterfall").await;
    for needle in [
        r#"href="/builders/1">a</a>"#,
        r#"href="/builders/2">b</a>"#,
        r#"href="/builders/1/builds/2">#2</a>"#,
        r#"href="/builders/2/builds/1">#1</a>"#,
        "/builders/2/builds/2/steps/1/logs/stdio",
        "broken",
    ] {
        assert!(all.contains(needle), "{needle} not in\n{all}");
    }
    // Workers' connections show only when asked for, in each column the worker serves.
    assert!(!all.contains("w2 connected"), "{all}");
    let events = page(&www, "/waterfall?show_events=true").await;
    assert_eq!(
        events
            .matches(r#"class="worker-event">w2 connected</td>"#)
            .count(),
        2,
        "{events}"
    );
    let only_a = page(&www, "/waterfall?builder=a").await;
    assert!(!only_a.contains(r#"href="/builders/2">b</a>"#), "{only_a}");
    let failing = page(&www, "/waterfall?failures_only=true").await;
    assert!(failing.contains(r#"href="/builders/2">b</a>"#), "{failing}");
    assert!(
        !failing.contains(r#"href="/builders/1">a</a>"#),
        "{failing}"
    );
    let tagged = page(&www, "/waterfall?tag=good").await;
    assert!(!tagged.contains(r#"href="/builders/2">b</a>"#), "{tagged}");
    let elsewhere = page(&www, "/waterfall?branch=nosuch").await;
    assert!(
        elsewhere.contains("No builds in this period"),
        "{elsewhere}"
    );
    let one = page(&www, "/waterfall?num_events=1").await;
    assert_eq!(one.matches(r#"class="build-box"#).count(), 1, "{one}");
    let reloading = page(&www, "/waterfall?reload=30").await;
    assert!(
        reloading.contains(r#"<meta http-equiv="refresh" content="30">"#),
        "{reloading}"
    );
    for (query, says) in [
        ("num_events=0", "num_events must be a whole number"),
        ("reload=1", "reload must be a whole number from 15"),
        ("builder=nosuch", "there is no builder &#x27;nosuch&#x27;"),
        (
            "failures_only=perhaps",
            "failures_only must be true or false",
        ),
    ] {
        let (status, body) =
            crate::harness::http_text(&www, "GET", &format!("/waterfall?{query}"), None, &[]).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }

    // The grid: a column per source stamp, newest first; transposed, a row per stamp.
    let grid = page(&www, "/grid").await;
    let (r2, r1) = (
        grid.find("<code>r2</code>").unwrap(),
        grid.find("<code>r1</code>").unwrap(),
    );
    assert!(r2 < r1, "newest first:\n{grid}");
    assert!(grid.contains(r#"href="/builders/2/builds/2""#), "{grid}");
    let narrow = page(&www, "/grid?width=1").await;
    assert!(!narrow.contains("<code>r1</code>"), "{narrow}");
    let oldest_first = page(&www, "/tgrid?rev_order=asc").await;
    assert!(
        oldest_first.find("<code>r1</code>").unwrap()
            < oldest_first.find("<code>r2</code>").unwrap(),
        "{oldest_first}"
    );
    let (status, _) =
        crate::harness::http_text(&www, "GET", "/tgrid?rev_order=up", None, &[]).await;
    assert_eq!(status, 400);

    // The console: builder a passed both changes; b failed the first anew and the second still.
    let console = page(&www, "/console").await;
    let row2 = console.find("<code>r2</code>").unwrap();
    let row1 = console.find("<code>r1</code>").unwrap();
    assert!(row2 < row1, "{console}");
    let (newer, older) = (&console[row2..row1], &console[row1..]);
    assert!(
        newer.contains(r#"console-cell passed"><a href="/builders/1/builds/2""#),
        "{newer}"
    );
    assert!(
        newer.contains(r#"console-cell still-failing"><a href="/builders/2/builds/2""#),
        "{newer}"
    );
    assert!(
        older.contains(r#"console-cell newly-failing"><a href="/builders/2/builds/1""#),
        "{older}"
    );
    let alice = page(&www, "/console?name=Alice").await;
    assert!(
        alice.contains("<code>r1</code>") && !alice.contains("<code>r2</code>"),
        "{alice}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_badges_users_and_served_files() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", VIEWS)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    let form = format!(
        "author={}&comments=c&revision=r1&branch=main&repository=repo&project=p",
        urlencode(EVIL)
    );
    let (status, reply) = http(&www, "POST", "/change_hook/base", Some(&form)).await;
    assert_eq!(status, 200, "{reply}");
    m.wait_event("buildsets.*.complete").await;

    // The feeds list the failed build of b, not the good one of a.
    let rss = page(&www, "/rss").await;
    assert!(rss.starts_with("<?xml"), "{rss}");
    assert!(rss.contains("<title>b build #1 failure</title>"), "{rss}");
    assert!(
        rss.contains("<link>http://localhost:8010/builders/2/builds/1</link>"),
        "{rss}"
    );
    assert!(!rss.contains("a build #1"), "{rss}");
    let atom = page(&www, "/atom?builder=a").await;
    assert!(
        atom.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">") && !atom.contains("<entry>"),
        "{atom}"
    );
    assert!(page(&www, "/atom?branch=main").await.contains("<entry>"));

    // Badges: the latest build's result, by name or number, unknown for nothing; still SVG.
    for (path, status) in [
        ("/badges/a.svg", "success"),
        ("/badges/2.svg", "failure"),
        ("/plugins/badges/b.svg?branch=main", "failure"),
        ("/badges/b.svg?branch=dev", "unknown"),
        ("/badges/nosuch.svg", "unknown"),
    ] {
        let svg = page(&www, path).await;
        assert!(svg.starts_with("<svg"), "{path}: {svg}");
        assert!(svg.contains(&format!(">{status}</text>")), "{path}: {svg}");
    }
    let custom = page(
        &www,
        &format!("/badges/a.svg?left_text={}", urlencode(EVIL)),
    )
    .await;
    assert!(custom.contains("&lt;script&gt;"), "{custom}");

    // Users: the author became a user, shown with their change.
    let users = page(&www, "/users").await;
    assert!(users.contains(r#"href="/users/1""#), "{users}");
    let user = page(&www, "/users/1").await;
    assert!(user.contains(r#"href="/changes/1""#), "{user}");
    let (status, _) = crate::harness::http_text(&www, "GET", "/users/99", None, &[]).await;
    assert_eq!(status, 404);

    let lines = page(&www, "/one_line_per_build?builder=b").await;
    assert!(
        lines.contains(r#"href="/builders/2/builds/1""#)
            && !lines.contains(r#"href="/builders/1/builds/1""#),
        "{lines}"
    );
    assert!(
        lines.contains(r#"<span class="tag">main</span>"#),
        "{lines}"
    );

    // Files: robots.txt keeps crawlers off; public_html is served as it is, and only it.
    assert_eq!(
        page(&www, "/robots.txt").await,
        "User-agent: *\nDisallow: /\n"
    );
    std::fs::create_dir_all(m.path("public_html")).unwrap();
    std::fs::write(m.path("public_html/logo.txt"), "hello").unwrap();
    std::fs::write(m.path("secret.txt"), "TOPSECRET").unwrap();
    assert_eq!(page(&www, "/public_html/logo.txt").await, "hello");
    for path in [
        "/public_html/../secret.txt",
        "/public_html/%2e%2e/secret.txt",
        "/public_html/.hidden",
    ] {
        let (status, body) = crate::harness::http_text(&www, "GET", path, None, &[]).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("TOPSECRET"), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_and_ticket_numbers_become_links() {
    let cfg = r#"
c['www'] = {'change_hook_dialects': {'base': True},
    'changecommentlink': (r'#(\d+)', r'https://bugs.example.org/show?id=\1', r'Ticket \g<0>')}
c['revlink'] = util.RevlinkMatch([r'^https://hg\.example\.org/(.*)$'], r'https://hg.example.org/\1/rev/%s')
"#;
    let m = TestMaster::start(&config("sqlite:///state.sqlite", cfg)).await;
    let www = m.www();
    let comments = urlencode(&format!("fixes #12 and {EVIL}"));
    let form = format!(
        "author=dev&comments={comments}&revision=abc&branch=main&repository=https%3A%2F%2Fhg.example.org%2Fproj"
    );
    let (status, reply) = http(&www, "POST", "/change_hook/base", Some(&form)).await;
    assert_eq!(status, 200, "{reply}");
    let change = page(&www, "/changes/1").await;
    assert!(
        change.contains(r#"<a href="https://hg.example.org/proj/rev/abc"><code>abc</code></a>"#),
        "{change}"
    );
    assert!(
        change.contains(r#"fixes <a href="https://bugs.example.org/show?id=12" title="Ticket #12">#12</a> and &lt;script&gt;"#),
        "{change}"
    );
    let list = page(&www, "/changes").await;
    assert!(
        list.contains(r#"<a href="https://hg.example.org/proj/rev/abc">"#),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_written_to_the_access_log() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg())).await;
    let (status, _) = crate::harness::http_text(
        &m.www(),
        "GET",
        "/about?x=1",
        None,
        &[
            ("User-Agent", "tester \"quoted\""),
            ("Referer", "http://elsewhere/"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let log = m.path("http.log");
    let expected = "\"GET /about?x=1 HTTP/1.1\" 200 ";
    // The writer is a task of its own: wait, within bounds, for the line to reach the disk.
    let deadline = std::time::Instant::now() + crate::harness::WAIT;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(expected) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let line = text
        .lines()
        .find(|l| l.contains(expected))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.ends_with(r#""http://elsewhere/" "tester \"quoted\"""#),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_forms_take_every_parameter_kind_and_a_patch_file() {
    let body = r#"
c['buildbotURL'] = 'https://ci.example.org/kiln/'
f = util.BuildFactory([steps.ShellCommand(command='true')])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'],
    codebases=[util.CodebaseParameter('', branch=util.FixedParameter(name='branch', default='main'), patch=util.PatchParameter())],
    properties=[util.NestedParameter(name='opts', label='Options', fields=[util.IntParameter(name='jobs', default=2),
                    util.ChoiceStringParameter(name='mode', choices=['fast', 'slow'], default='slow')]),
                util.BooleanParameter(name='clean', default=True),
                util.TextParameter(name='notes', default='n'),
                util.AnyPropertyParameter(name='extra')])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let mut browser = Browser::new(&m.www());
    // Behind a proxy at /kiln/, every link and form is under it.
    let page = browser.get("/builders/1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for needle in [
        r#"action="/kiln/builders/1/force/force""#,
        r#"enctype="multipart/form-data""#,
        r#"<legend>Options</legend>"#,
        r#"name="opts_jobs" value="2""#,
        r#"<option selected>slow</option>"#,
        r#"type="checkbox" id="f-clean" name="clean" value="true" checked"#,
        r#"<textarea id="f-notes" name="notes" rows="4">n</textarea>"#,
        r#"type="file" id="f-patch_body" name="patch_body""#,
        r#"name="extra_name""#,
        r#"type="hidden" name="branch" value="main""#,
        r#"href="/kiln/static/kiln.css""#,
    ] {
        assert!(page.body.contains(needle), "{needle} not in\n{}", page.body);
    }
    let token = browser.token();
    // A multipart form, as a browser sends it with a file.
    let boundary = "XkilnX";
    let mut form = String::new();
    for (name, value) in [
        ("csrf", token.as_str()),
        ("revision", "abc"),
        ("patch_level", "1"),
        ("opts_jobs", "4"),
        ("opts_mode", "fast"),
        ("clean", "false"),
        ("extra_name", "color"),
        ("extra_value", "blue"),
    ] {
        form.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    form.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"patch_body\"; filename=\"fix.diff\"\r\n\
         Content-Type: text/x-diff\r\n\r\n--- a/x\n+++ b/x\n\r\n--{boundary}--\r\n"
    ));
    let url = format!("http://{}/builders/1/force/force", m.www());
    let request = browser
        .client
        .post(url)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form);
    let forced = browser.send(request).await;
    assert_eq!(forced.status, 303, "{}", forced.body);
    assert_eq!(forced.location.as_deref(), Some("/kiln/builders/1"));
    m.wait_event("buildsets.*.complete").await;
    let (_, bs) = m.get("buildsets/1").await;
    let stamp = &bs["buildsets"][0]["sourcestamps"][0];
    assert_eq!(stamp["revision"], "abc", "{bs}");
    assert_eq!(stamp["patch"]["level"], 1, "{bs}");
    // The API gives a patch's body in base64, as Buildbot does: "--- a/x\n+++ b/x\n".
    assert_eq!(stamp["patch"]["body"], "LS0tIGEveAorKysgYi94Cg==", "{bs}");
    let (_, b) = m.get("builds/1?property=*").await;
    let props = &b["builds"][0]["properties"];
    assert_eq!(
        props["opts"][0],
        serde_json::json!({"jobs": 4, "mode": "fast"}),
        "{props}"
    );
    assert_eq!(props["clean"][0], false, "{props}");
    assert_eq!(props["color"][0], "blue", "{props}");
}
