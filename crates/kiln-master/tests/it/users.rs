//! Users: a change's author becomes a user (found again by the same identity), a build's
//! blamelist is its changes' authors, its owners who forced it, and the API shows both.

use serde_json::json;

use crate::harness::{TestMaster, config, http, rpc_as};

const CFG: &str = r#"
c['www'] = {'change_hook_dialects': {'base': True}}
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(command=['true'])]))]
c['schedulers'] = [
    schedulers.AnyBranchScheduler(name='all', builderNames=['b'], treeStableTimer=None),
    schedulers.ForceScheduler(name='force', builderNames=['b']),
]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_become_users_and_builds_know_their_blamelist_and_owners() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    // Two changes by Alice (as git knows her) and one by Bob, on one source stamp.
    for author in [
        "Alice+%3Calice%40x%3E",
        "Bob+%3Cbob%40x%3E",
        "Alice+%3Calice%40x%3E",
    ] {
        let form = format!("author={author}&src=git&revision=r1&branch=main&repository=repo");
        let (status, reply) = http(&m.www(), "POST", "/change_hook/base", Some(&form)).await;
        assert_eq!(status, 200, "{reply}");
    }
    let (_, users) = m.get("users").await;
    assert_eq!(
        users["users"],
        json!([
            {"uid": 1, "identifier": "Alice <alice@x>", "bb_username": null,
             "attributes": {"git": "Alice <alice@x>"}},
            {"uid": 2, "identifier": "Bob <bob@x>", "bb_username": null,
             "attributes": {"git": "Bob <bob@x>"}},
        ])
    );
    m.start_worker("w1", "pass").await;
    // The scheduler builds the changes; the first build, with no successful one before it, is
    // blamed on them all. (The later builds of the same source stamp are blamed on nothing new.)
    let first = m.wait_event("buildsets.*.complete").await;
    assert_eq!(first["results"], 0);
    let build = 1;
    let (_, u) = m.get(&format!("builds/{build}/users")).await;
    assert_eq!(
        u["users"][0],
        // With no owner, a build of changes is its authors', as Buildbot's `owners` says.
        json!({"buildid": build, "blamelist": ["Alice <alice@x>", "Bob <bob@x>"],
               "owners": ["Alice <alice@x>", "Bob <bob@x>"],
               "interested_users": ["Alice <alice@x>", "Bob <bob@x>"]})
    );
    // A forced build's owner, as the build's `owners` property and among its interested users.
    // The owner is who asks, whatever the form says.
    let carol = m.token("carol@x", &[], None).await;
    let params = json!({"builderNames": ["b"], "owner": "mallory@x"});
    let (status, reply) = rpc_as(&carol, &m.www(), "forceschedulers/force", "force", params).await;
    assert_eq!(status, 200, "{reply}");
    let bsid = reply["result"][0].as_i64().unwrap();
    assert_eq!(m.wait_complete(bsid).await, 0);
    let (_, b) = m
        .get("builds?buildrequestid__ne=0&order=-buildid&limit=1")
        .await;
    let forced = b["builds"][0]["buildid"].as_i64().unwrap();
    let (_, props) = m.get(&format!("builds/{forced}?property=owners")).await;
    assert_eq!(
        props["builds"][0]["properties"]["owners"],
        json!([["carol@x"], "Build"])
    );
    let (_, u) = m.get(&format!("builds/{forced}/users")).await;
    assert_eq!(u["users"][0]["owners"], json!(["carol@x"]));
    assert_eq!(u["users"][0]["interested_users"], json!(["carol@x"]));
    let (status, _) = m.get("users/nobody").await;
    assert_eq!(status, 404);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_hashes_of_earlier_versions_are_wrapped_in_bcrypt_at_start() {
    use kiln_api::credentials::{PasswordCheck, check_password};
    use sha2::{Digest, Sha256};

    // A user as an earlier version stored it: 2 rounds of SHA-256, salt "s", password "pw".
    let dir = tempfile::tempdir().unwrap();
    let first: [u8; 32] = Sha256::new()
        .chain_update("s")
        .chain_update("pw")
        .finalize()
        .into();
    let second = Sha256::new()
        .chain_update(first)
        .chain_update("pw")
        .finalize();
    let hex: String = second.iter().map(|b| format!("{b:02x}")).collect();
    let legacy = format!("sha256i$2$s${hex}");
    let url = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let writer = kiln_db::Writer::connect(&url).await.unwrap();
    let update = kiln_db::UserUpdate {
        bb_username: Some("alice".into()),
        bb_password: Some(legacy.clone()),
        ..Default::default()
    };
    writer.add_user("alice", &update).await.unwrap();
    drop(writer);

    let m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", CFG)).await;
    let stored = m
        .master()
        .db
        .user_password_hash("alice")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.starts_with("sha256i+bcrypt$2$s$$2b$"), "{stored}");
    assert!(
        !stored.contains(&hex),
        "the weak digest is still stored: {stored}"
    );
    assert_eq!(
        check_password(&stored, "pw"),
        PasswordCheck::Right { rehash: true }
    );
    assert_eq!(check_password(&stored, "px"), PasswordCheck::Wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_is_blamed_for_every_change_since_the_last_success() {
    // The build fails exactly when it builds revision r2.
    let cfg = r#"
c['www'] = {'change_hook_dialects': {'base': True}}
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(command=['sh', '-c',
        util.Interpolate('test "%(prop:revision)s" != r2')])]))]
c['schedulers'] = [
    schedulers.SingleBranchScheduler(name='main', branch='main', builderNames=['b'], treeStableTimer=None),
]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", cfg)).await;
    m.start_worker("w1", "pass").await;
    let mut results = Vec::new();
    for (author, revision) in [("alice", "r1"), ("bob", "r2"), ("carol", "r3")] {
        let form = format!("author={author}&revision={revision}&branch=main&repository=repo");
        let (status, reply) = http(&m.www(), "POST", "/change_hook/base", Some(&form)).await;
        assert_eq!(status, 200, "{reply}");
        let done = m.wait_event("buildsets.*.complete").await;
        results.push(done["results"].as_i64().unwrap());
    }
    assert_eq!(results, [0, 2, 0]);
    let blame = async |build: i64| {
        let (_, u) = m.get(&format!("builds/{build}/users")).await;
        let (_, c) = m.get(&format!("builds/{build}/changes")).await;
        let revisions: Vec<String> = c["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["revision"].as_str().unwrap().to_string())
            .collect();
        (u["users"][0]["blamelist"].clone(), revisions)
    };
    // The first build has only its own change; the failing one, its own; the build after the
    // failure, both changes since the last success, so bob hears that it is fixed.
    assert_eq!(blame(1).await, (json!(["alice"]), vec!["r1".to_string()]));
    assert_eq!(blame(2).await, (json!(["bob"]), vec!["r2".to_string()]));
    assert_eq!(
        blame(3).await,
        (
            json!(["bob", "carol"]),
            vec!["r2".to_string(), "r3".to_string()]
        )
    );

    // Reporters that read the three builds together, as they do a burst of events, find the
    // same people, the same previous builds and the same dicts as when they read each alone.
    use kiln_reporters::cache::BuildCache;
    use kiln_reporters::data::{Needs, load_build};
    let services = kiln_master::boundary::services(m.master());
    let read = &*services.read;
    let cache = BuildCache::default();
    let wanted: Vec<(i64, kiln_core::BuildId)> =
        (1..=3).map(|b| (b, kiln_core::BuildId(b))).collect();
    cache.preload(read, &wanted, Needs::ALL).await.unwrap();
    let mut people = Vec::new();
    for &(position, id) in &wanted {
        let together = cache.load(read, position, id, Needs::ALL).await.unwrap();
        let alone = load_build(read, id, Needs::ALL).await.unwrap();
        let (together, alone) = (together.unwrap(), alone.unwrap());
        assert_eq!(together.users, alone.users);
        assert_eq!(
            together.dict(true, true, true),
            alone.dict(true, true, true)
        );
        people.push(together.users.clone());
    }
    assert_eq!(people, [vec!["alice"], vec!["bob"], vec!["bob", "carol"]]);

    // Reporters read the same burst at about the same time: one that needs little and one
    // that needs everything find it read once, with what both need.
    let cache = BuildCache::default();
    cache.want(Needs::ALL, false);
    let (little, all) = tokio::join!(
        cache.preload(read, &wanted, Needs::default()),
        cache.preload(read, &wanted, Needs::ALL),
    );
    little.unwrap();
    all.unwrap();
    for &(position, id) in &wanted {
        for needs in [Needs::default(), Needs::ALL] {
            let build = cache.load(read, position, id, needs).await.unwrap();
            assert_eq!(build.unwrap().users, people[position as usize - 1]);
        }
    }
    assert_eq!(cache.reads(), 1);
}
