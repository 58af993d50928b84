//! Source steps against real repositories made here with the real `git`, on kiln's worker.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::harness::{TestMaster, config, http_text};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "A")
        .env("GIT_AUTHOR_EMAIL", "a@x")
        .env("GIT_COMMITTER_NAME", "A")
        .env("GIT_COMMITTER_EMAIL", "a@x")
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(repo: &Path, text: &str) -> String {
    std::fs::write(repo.join("a.txt"), text).unwrap();
    git(repo, &["add", "a.txt"]);
    git(repo, &["commit", "-q", "-m", text]);
    git(repo, &["rev-parse", "HEAD"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_checks_out_branches_and_revisions_in_every_mode() {
    Box::pin(body()).await;
}

async fn body() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path();
    git(repo, &["init", "-q", "-b", "main"]);
    let a = commit(repo, "one\n");
    let url = repo.display().to_string();
    let cfg = format!(
        r#"
def factory(**kwargs):
    return util.BuildFactory([
        steps.Git(repourl={url:?}, **kwargs),
        steps.ShellCommand(name='show', command=['sh', '-c', 'cat a.txt; ls -a']),
        steps.ShellCommand(name='dirty', command=['sh', '-c', 'touch junk; echo ignored > .git/info/exclude.tmp']),
    ])
c['builders'] = [
    util.BuilderConfig(name='inc', workernames=['w1'], factory=factory(mode='incremental')),
    util.BuilderConfig(name='fresh', workernames=['w1'], factory=factory(mode='full')),
    util.BuilderConfig(name='clobber', workernames=['w1'], factory=factory(mode='full', method='clobber', shallow=True)),
    util.BuilderConfig(name='copy', workernames=['w1'], factory=factory(mode='full', method='copy', codebase='app')),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['inc', 'fresh', 'clobber', 'copy'],
    codebases=['', 'app'])]
"#
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    m.start_worker("w1", "pass").await;
    // Each builder, twice: the first clones, the second updates after a new commit.
    let mut expected_build = 0;
    for (builder, extra) in [
        ("inc", json!({})),
        ("fresh", json!({})),
        ("clobber", json!({})),
        ("copy", json!({})),
    ] {
        let mut params = json!({"builderNames": [builder], "branch": "main", "app_branch": "main"});
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        expected_build += 1;
        assert_eq!(
            m.force_and_wait(params.clone()).await,
            0,
            "{builder} first build"
        );
        let (_, b) = m
            .get(&format!("builds/{expected_build}?property=got_revision"))
            .await;
        let got = &b["builds"][0]["properties"]["got_revision"][0];
        if builder == "copy" {
            assert_eq!(got, &json!({"app": a}), "{builder}");
        } else {
            assert_eq!(got, &json!(a), "{builder}");
        }
    }
    let b_rev = commit(repo, "two\n");
    for builder in ["inc", "fresh", "clobber", "copy"] {
        expected_build += 1;
        let params = json!({"builderNames": [builder], "branch": "main", "app_branch": "main"});
        assert_eq!(m.force_and_wait(params).await, 0, "{builder} update");
        let (_, raw) = http_text(
            &m.www(),
            "GET",
            &format!("/api/v2/builds/{expected_build}/steps/show/logs/stdio/raw"),
            None,
            &[],
        )
        .await;
        assert!(raw.contains("\ntwo\n"), "{builder}: {raw}");
        // The untracked file the first build left is gone except in an incremental update.
        assert_eq!(
            raw.contains("\njunk\n"),
            builder == "inc",
            "{builder}: {raw}"
        );
        let (_, b) = m
            .get(&format!("builds/{expected_build}?property=got_revision"))
            .await;
        let got = &b["builds"][0]["properties"]["got_revision"][0];
        let want = if builder == "copy" {
            json!({"app": b_rev})
        } else {
            json!(b_rev)
        };
        assert_eq!(got, &want, "{builder}");
    }
    // A source stamp's revision is checked out, even an older one.
    expected_build += 1;
    let params = json!({"builderNames": ["inc"], "branch": "main", "revision": a});
    assert_eq!(m.force_and_wait(params).await, 0);
    let (_, raw) = http_text(
        &m.www(),
        "GET",
        &format!("/api/v2/builds/{expected_build}/steps/show/logs/stdio/raw"),
        None,
        &[],
    )
    .await;
    assert!(raw.contains("\none\n"), "{raw}");
    // A branch that does not exist fails the step with git's own message.
    expected_build += 1;
    let params = json!({"builderNames": ["clobber"], "branch": "nope"});
    assert_eq!(m.force_and_wait(params).await, 2);
    let (_, raw) = http_text(
        &m.www(),
        "GET",
        &format!("/api/v2/builds/{expected_build}/steps/git/logs/stdio/raw"),
        None,
        &[],
    )
    .await;
    assert!(raw.contains("nope"), "{raw}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_stamp_patch_is_applied_after_checkout_or_fails_the_step() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path();
    git(repo, &["init", "-q", "-b", "main"]);
    commit(repo, "one\n");
    std::fs::write(repo.join("a.txt"), "patched\n").unwrap();
    let diff = git(repo, &["diff"]) + "\n";
    git(repo, &["checkout", "a.txt"]);
    let cfg = format!(
        r#"
f = util.BuildFactory([steps.Git(repourl={:?}),
    steps.ShellCommand(name='show', command=['cat', 'a.txt'], alwaysRun=True)])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'],
    codebases=[util.CodebaseParameter('', patch=util.PatchParameter())])]
"#,
        repo.display().to_string()
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    let show = |build: i64| {
        let www = www.clone();
        async move {
            http_text(
                &www,
                "GET",
                &format!("/api/v2/builds/{build}/steps/show/logs/stdio/raw"),
                None,
                &[],
            )
            .await
            .1
        }
    };
    let ok = m
        .force_and_wait(json!({"branch": "main", "patch_body": diff, "patch_level": 1}))
        .await;
    assert_eq!(ok, 0);
    assert!(show(1).await.contains("\npatched\n"));
    let (_, steps) = m.get("builds/1/steps/git").await;
    assert_eq!(steps["steps"][0]["state_string"], "update (patched)");
    // The same patch again on the patched tree does not apply: the step fails and the tree is
    // the checkout, unpatched.
    let bad = diff.replace("-one", "-three");
    let failed = m
        .force_and_wait(json!({"branch": "main", "patch_body": bad, "patch_level": 1}))
        .await;
    assert_eq!(failed, 2);
    let (_, steps) = m.get("builds/2/steps/git").await;
    assert_eq!(steps["steps"][0]["state_string"], "patch failed");
    assert!(
        show(2).await.contains("\none\n"),
        "unpatched for inspection"
    );
    m.stop().await;
}

/// Git over ssh with the step's key and host key, through a stand-in `ssh` that records how it
/// was called and then serves the repository locally; it fails its first call, which `retry`
/// gets past. `getDescription` describes the commit from its tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_uses_the_ssh_key_retries_and_describes_the_commit() {
    Box::pin(ssh_body()).await;
}

async fn ssh_body() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    commit(&repo, "one\n");
    git(&repo, &["tag", "-a", "v1.0", "-m", "v1.0"]);
    let head = commit(&repo, "two\n");
    let bin = upstream.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = upstream.path().join("ssh-calls");
    let ssh = format!(
        r#"#!/bin/sh
# Records the call and the key it was given, fails the first time, then runs the remote command.
for a in "$@"; do last="$a"; done
key=""; prev=""
for a in "$@"; do [ "$prev" = "-i" ] && key="$a"; prev="$a"; done
echo "args: $*" >> {record}
echo "key: $(cat "$key")" >> {record}
echo "key mode: $(stat -c %a "$key")" >> {record}
if [ ! -e {record}.failed ]; then touch {record}.failed; echo "ssh: connect to host: refused" >&2; exit 255; fi
exec sh -c "$last"
"#,
        record = record.display()
    );
    std::fs::write(bin.join("ssh"), ssh).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("ssh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let cfg = format!(
        r#"
f = util.BuildFactory([
    steps.Git(repourl='localhost:{repo}', sshPrivateKey='THE-PRIVATE-KEY', sshHostKey='ssh-ed25519 AAAAhost',
        retry=(0, 1), getDescription={{'tags': True}}, env={{'PATH': {path:?}}}),
    steps.ShellCommand(name='leftovers', command=['sh', '-c', 'ls -a ..']),
])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#,
        repo = repo.display()
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    m.start_worker("w1", "pass").await;
    let result = m.force_and_wait(json!({"branch": "main"})).await;
    let (_, log) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/git/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    assert_eq!(result, 0, "{log}");
    assert!(log.contains("trying again"), "{log}");
    let calls = std::fs::read_to_string(&record).unwrap();
    assert!(calls.contains("key: THE-PRIVATE-KEY"), "{calls}");
    assert!(calls.contains("key mode: 600"), "{calls}");
    assert!(calls.contains("BatchMode=yes"), "{calls}");
    assert!(calls.contains("UserKnownHostsFile="), "{calls}");
    let (_, b) = m
        .get("builds/1?property=got_revision&property=commit-description")
        .await;
    let props = &b["builds"][0]["properties"];
    assert_eq!(props["got_revision"][0], json!(head));
    assert!(
        props["commit-description"][0]
            .as_str()
            .is_some_and(|d| d.starts_with("v1.0-1-g")),
        "{props}"
    );
    // The key does not outlive the step.
    let (_, leftovers) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/leftovers/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    assert!(!leftovers.contains(".build.buildbot"), "{leftovers}");
    m.stop().await;
}

/// Submodules (fetched with the step's `config`), `tags`, `reference` and `clobberOnFailure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_submodules_tags_reference_and_clobber_on_failure() {
    Box::pin(git_options()).await;
}

async fn git_options() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    let main = dir.path().join("main");
    for repo in [&sub, &main] {
        std::fs::create_dir_all(repo).unwrap();
        git(repo, &["init", "-q", "-b", "main"]);
    }
    std::fs::write(sub.join("inner.txt"), "from the submodule\n").unwrap();
    git(&sub, &["add", "inner.txt"]);
    git(&sub, &["commit", "-q", "-m", "inner"]);
    git(
        &main,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &sub.display().to_string(),
            "vendor/sub",
        ],
    );
    commit(&main, "one\n");
    let reference = dir.path().join("reference");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &main.display().to_string(),
            "reference",
        ],
    );
    let url = main.display().to_string();
    let cfg = format!(
        r#"
def factory(**kwargs):
    return util.BuildFactory([
        steps.Git(repourl={url:?}, branch='main', **kwargs),
        steps.ShellCommand(name='show', command=['sh', '-c',
            'cat vendor/sub/inner.txt 2>/dev/null; git tag -l | sed "s/^/tag: /"; cat .git/objects/info/alternates 2>/dev/null; true']),
    ] + ([steps.ShellCommand(name='break', command=['sh', '-c', 'echo garbage > .git/HEAD'])]
         if kwargs.get('clobberOnFailure') else []))
c['builders'] = [
    util.BuilderConfig(name='subs', workernames=['w1'],
        factory=factory(submodules=True, config={{'protocol.file.allow': 'always'}})),
    util.BuilderConfig(name='tags', workernames=['w1'], factory=factory(tags=True)),
    util.BuilderConfig(name='notags', workernames=['w1'], factory=factory()),
    util.BuilderConfig(name='ref', workernames=['w1'], factory=factory(reference={ref:?})),
    util.BuilderConfig(name='again', workernames=['w1'],
        factory=factory(mode='full', method='fresh', clobberOnFailure=True)),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force',
    builderNames=['subs', 'tags', 'notags', 'ref', 'again'])]
"#,
        ref = reference.display().to_string()
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    m.start_worker("w1", "pass").await;
    let show = |m: &TestMaster, build: i64, step: &str| {
        let www = m.www();
        let step = step.to_string();
        async move {
            http_text(
                &www,
                "GET",
                &format!("/api/v2/builds/{build}/steps/{step}/logs/stdio/raw"),
                None,
                &[],
            )
            .await
            .1
        }
    };
    let mut build = 0;
    for builder in ["subs", "tags", "notags", "ref", "again"] {
        build += 1;
        let result = m.force_and_wait(json!({"builderNames": [builder]})).await;
        assert_eq!(result, 0, "{builder}: {}", show(&m, build, "git").await);
    }
    assert!(show(&m, 1, "show").await.contains("from the submodule"));
    assert!(
        show(&m, 4, "show")
            .await
            .contains(&reference.display().to_string())
    );
    // A tag made after the first checkout arrives with `tags`, not without.
    git(&main, &["tag", "v1.0"]);
    build += 1;
    assert_eq!(m.force_and_wait(json!({"builderNames": ["tags"]})).await, 0);
    assert!(show(&m, build, "show").await.contains("tag: v1.0"));
    build += 1;
    assert_eq!(
        m.force_and_wait(json!({"builderNames": ["notags"]})).await,
        0
    );
    assert!(!show(&m, build, "show").await.contains("tag: v1.0"));
    // The first `again` build broke its working copy: updating it fails and it is cloned again.
    build += 1;
    let result = m.force_and_wait(json!({"builderNames": ["again"]})).await;
    let log = show(&m, build, "git").await;
    assert_eq!(result, 0, "{log}");
    assert!(log.contains("cloning again"), "{log}");
    m.stop().await;
}

/// `steps.GitHub` builds a pull request's `/merge` ref as it is, not the revision the change
/// named (which GitHub has since merged again); on other branches it is the Git step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_step_ignores_the_revision_of_a_merge_ref() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path();
    git(repo, &["init", "-q", "-b", "main"]);
    let old = commit(repo, "one\n");
    git(repo, &["checkout", "-q", "-b", "pull/7/merge"]);
    let merged = commit(repo, "two\n");
    let cfg = format!(
        "c['builders'] = [util.BuilderConfig(name='gh', workernames=['w1'], factory=util.BuildFactory([\n\
             steps.GitHub(repourl={:?}, mode='full', method='clobber')]))]\n\
         c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['gh'])]\n",
        repo.display().to_string()
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    m.start_worker("w1", "pass").await;
    for (build, branch, want) in [(1, "pull/7/merge", &merged), (2, "main", &old)] {
        let results = m
            .force_and_wait(json!({"branch": branch, "revision": old}))
            .await;
        assert_eq!(results, 0, "{branch}");
        let (_, b) = m
            .get(&format!("builds/{build}?property=got_revision"))
            .await;
        assert_eq!(
            b["builds"][0]["properties"]["got_revision"][0],
            want.as_str(),
            "{branch}"
        );
    }
    m.stop().await;
}
