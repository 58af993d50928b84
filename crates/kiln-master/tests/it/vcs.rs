//! Source steps of every version-control system but Git, against real repositories made here
//! with the real tools (hg, svn, cvs, darcs, brz, tla), on kiln's worker: each mode and method,
//! an update after a new commit, an older revision, a patch, and a checkout that cannot be done.
//! Perforce and Monotone, whose tools are not available here, are run against stand-ins that
//! record the commands they are given.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::buildbot_worker::Protocol;
use crate::harness::{TestMaster, config, http_text};

/// Runs a tool in `dir` with `env`, and returns its standard output; a failure fails the test.
fn tool(dir: &Path, env: &[(&str, &str)], program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository of one system, made in a temporary directory.
struct Repo {
    kind: Kind,
    root: PathBuf,
    /// Where commits are made (a working copy for the centralized systems).
    work: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Hg,
    Svn,
    Cvs,
    Darcs,
    Bzr,
    Arch,
}

const ARCHIVE: &str = "kiln@example.com--test";
const VERSION: &str = "proj--main--0.1";

impl Repo {
    fn new(kind: Kind) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let work = root.join("work");
        std::fs::create_dir_all(root.join("home")).unwrap();
        let repo = Repo {
            kind,
            root: root.clone(),
            work: work.clone(),
            _dir: dir,
        };
        match kind {
            Kind::Hg => {
                tool(&root, &[], "hg", &["init", "work"]);
                std::fs::write(work.join(".hgignore"), "syntax: glob\n*.ign\n").unwrap();
            }
            Kind::Svn => {
                tool(&root, &[], "svnadmin", &["create", "svnrepo"]);
                let url = format!("file://{}/svnrepo", root.display());
                tool(
                    &root,
                    &[],
                    "svn",
                    &["mkdir", "-q", "-m", "layout", &format!("{url}/trunk")],
                );
                tool(
                    &root,
                    &[],
                    "svn",
                    &["checkout", "-q", &format!("{url}/trunk"), "work"],
                );
                tool(
                    &work,
                    &[],
                    "svn",
                    &["propset", "-q", "svn:ignore", "*.ign", "."],
                );
            }
            Kind::Cvs => {
                let cvsroot = root.join("cvsroot").display().to_string();
                tool(&root, &[], "cvs", &["-d", &cvsroot, "init"]);
                let import = root.join("import");
                std::fs::create_dir_all(&import).unwrap();
                std::fs::write(import.join(".cvsignore"), "*.ign\n").unwrap();
                tool(
                    &import,
                    &[],
                    "cvs",
                    &[
                        "-d", &cvsroot, "-Q", "import", "-m", "start", "mod", "vendor", "start",
                    ],
                );
                tool(
                    &root,
                    &[],
                    "cvs",
                    &["-d", &cvsroot, "-Q", "checkout", "-d", "work", "mod"],
                );
            }
            Kind::Darcs => {
                std::fs::create_dir_all(&work).unwrap();
                tool(&work, &repo.env(), "darcs", &["init", "-q"]);
            }
            Kind::Bzr => {
                tool(&root, &repo.env(), "brz", &["init", "-q", "work"]);
                std::fs::write(work.join(".bzrignore"), "*.ign\n").unwrap();
            }
            Kind::Arch => {
                let env = repo.env();
                tool(
                    &root,
                    &env,
                    "tla",
                    &["my-id", "Kiln Test <kiln@example.com>"],
                );
                let archive = root.join("archive").display().to_string();
                tool(&root, &env, "tla", &["make-archive", ARCHIVE, &archive]);
                tool(
                    &root,
                    &env,
                    "tla",
                    &["archive-setup", &format!("{ARCHIVE}/{VERSION}")],
                );
                std::fs::create_dir_all(&work).unwrap();
                tool(
                    &work,
                    &env,
                    "tla",
                    &["init-tree", &format!("{ARCHIVE}/{VERSION}")],
                );
            }
        }
        repo
    }

    /// The environment the tools run with: a home of their own, an author for commits.
    fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("HOME", self.home()),
            ("BRZ_EMAIL", "Kiln Test <kiln@example.com>"),
            ("EMAIL", "kiln@example.com"),
        ]
    }

    fn home(&self) -> &str {
        // Leaked once per repository so the environment can borrow it for the test's length.
        Box::leak(
            self.root
                .join("home")
                .display()
                .to_string()
                .into_boxed_str(),
        )
    }

    /// Writes `a.txt` and commits it; returns the `got_revision` a checkout of it reports (None
    /// for CVS, whose `got_revision` is the time of the checkout).
    fn commit(&self, text: &str) -> Option<Value> {
        let first = !self.work.join("a.txt").exists();
        std::fs::write(self.work.join("a.txt"), text).unwrap();
        let env = self.env();
        let w = &self.work;
        let msg = text.trim();
        match self.kind {
            Kind::Hg => {
                if first {
                    tool(w, &env, "hg", &["add", "a.txt", ".hgignore"]);
                }
                tool(w, &env, "hg", &["commit", "-u", "A <a@x>", "-m", msg]);
                Some(json!(tool(
                    w,
                    &env,
                    "hg",
                    &["log", "-r", "tip", "--template", "{node}"]
                )))
            }
            Kind::Svn => {
                if first {
                    tool(w, &env, "svn", &["add", "-q", "a.txt"]);
                }
                tool(w, &env, "svn", &["commit", "-q", "-m", msg]);
                tool(w, &env, "svn", &["update", "-q"]);
                let rev = tool(w, &env, "svn", &["info", "--show-item", "revision"]);
                Some(json!(rev.trim().parse::<i64>().unwrap()))
            }
            Kind::Cvs => {
                if first {
                    tool(w, &env, "cvs", &["-Q", "add", "a.txt"]);
                }
                tool(w, &env, "cvs", &["-Q", "commit", "-m", msg, "a.txt"]);
                None
            }
            Kind::Darcs => {
                if first {
                    tool(w, &env, "darcs", &["add", "-q", "a.txt"]);
                }
                tool(
                    w,
                    &env,
                    "darcs",
                    &[
                        "record",
                        "-a",
                        "-q",
                        "--ignore-times",
                        "-A",
                        "a@x",
                        "-m",
                        msg,
                    ],
                );
                Some(json!(tool(w, &env, "darcs", &["log", "--context"])))
            }
            Kind::Bzr => {
                if first {
                    tool(w, &env, "brz", &["add", "-q", "a.txt", ".bzrignore"]);
                }
                tool(w, &env, "brz", &["commit", "-q", "-m", msg]);
                Some(json!(
                    tool(w, &env, "brz", &["revno"])
                        .trim()
                        .parse::<i64>()
                        .unwrap()
                ))
            }
            Kind::Arch => {
                if first {
                    tool(w, &env, "tla", &["add", "a.txt"]);
                    tool(w, &env, "tla", &["import", "-L", msg]);
                } else {
                    tool(w, &env, "tla", &["commit", "-L", msg]);
                }
                let logs = tool(w, &env, "tla", &["logs", "--full", "--reverse"]);
                Some(json!(logs.lines().next().unwrap().trim()))
            }
        }
    }

    /// The step in master.star, with `**kwargs` for the mode and method.
    fn step(&self) -> String {
        let root = self.root.display();
        match self.kind {
            Kind::Hg => format!("steps.Mercurial(repourl='{root}/work', **kwargs)"),
            // Branches are directories: the base URL and the branch make the URL; the default
            // branch is rendered from the build's properties.
            Kind::Svn => format!(
                "steps.SVN(baseURL='file://{root}/svnrepo/', defaultBranch=util.Interpolate('%(prop:line:-trunk)s'), **kwargs)"
            ),
            Kind::Cvs => format!("steps.CVS(cvsroot='{root}/cvsroot', cvsmodule='mod', **kwargs)"),
            Kind::Darcs => format!("steps.Darcs(repourl='{root}/work', **kwargs)"),
            Kind::Bzr => format!("steps.Bzr(baseURL='{root}/', defaultBranch='work', **kwargs)"),
            Kind::Arch => format!(
                "steps.Arch(url='{root}/archive', version='{VERSION}', env={{'HOME': '{root}/home'}}, **kwargs)"
            ),
        }
    }

    /// A file name the system ignores.
    fn ignored(&self) -> &'static str {
        match self.kind {
            // Darcs's default boring list holds object files; Arch calls `,,` files junk.
            Kind::Darcs => "x.o",
            Kind::Arch => ",,x",
            _ => "x.ign",
        }
    }

    /// Force parameters that ask for a checkout the tool cannot do, and what it then says.
    fn impossible(&self) -> (Value, &'static str) {
        match self.kind {
            Kind::Hg => (json!({"revision": "0123456789ab"}), "unknown revision"),
            Kind::Svn => (json!({"branch": "branches/nope"}), "E170000"),
            Kind::Cvs => (json!({"revision": "not a date"}), "Can't parse date"),
            Kind::Darcs => (
                json!({"revision": "\nContext:\n\n[nope\nx@y**20200101000000\n Ignore-this: 00\n] \n"}),
                "Missing patches from context",
            ),
            Kind::Bzr => (json!({"branch": "nope"}), "Not a branch"),
            Kind::Arch => (json!({"revision": "patch-99"}), "No such patchlevel"),
        }
    }
}

async fn raw_log(m: &TestMaster, build: i64, step: &str) -> String {
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

async fn got_revision(m: &TestMaster, build: i64) -> Value {
    let (_, b) = m
        .get(&format!("builds/{build}?property=got_revision"))
        .await;
    b["builds"][0]["properties"]["got_revision"][0].clone()
}

/// Every mode and method, twice (a checkout, then an update after a commit), then an older
/// revision, a patch, and a checkout that cannot be done.
async fn exercise(kind: Kind) {
    exercise_on(kind, None).await;
}

/// [`exercise`] on kiln's worker, or on the stock buildbot-worker at `stock`.
async fn exercise_on(kind: Kind, stock: Option<(PathBuf, Protocol)>) {
    let repo = Repo::new(kind);
    let first = repo.commit("one\n");
    let ignored = repo.ignored();
    let cfg = format!(
        r#"
def factory(**kwargs):
    return util.BuildFactory([
        {step},
        steps.ShellCommand(name='show', command=['sh', '-c', 'cat a.txt; ls -a'], alwaysRun=True),
        steps.ShellCommand(name='dirty', command=['sh', '-c', 'touch junk {ignored}']),
    ])
names = ['incremental', 'fresh', 'clean', 'clobber', 'copy']
c['builders'] = [
    util.BuilderConfig(name=n, workernames=['w1'],
        factory=factory(mode='incremental') if n == 'incremental' else factory(mode='full', method=n))
    for n in names
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=names,
    codebases=[util.CodebaseParameter('', patch=util.PatchParameter())])]
"#,
        step = repo.step().replace("**kwargs)", "name='update', **kwargs)"),
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    let mut stock_worker = None;
    match &stock {
        Some((exe, protocol)) => {
            let dir = m.path("bbworker");
            std::fs::create_dir_all(&dir).unwrap();
            stock_worker = Some(crate::buildbot_worker::start_buildbot_worker(
                &m, exe, &dir, *protocol,
            ));
            m.wait_attached("w1").await;
        }
        None => {
            m.start_worker("w1", "pass").await;
        }
    }
    let builders = ["incremental", "fresh", "clean", "clobber", "copy"];
    let mut build = 0;
    let mut first_got = Value::Null;
    for builder in builders {
        build += 1;
        let result = m.force_and_wait(json!({"builderNames": [builder]})).await;
        assert_eq!(
            result,
            0,
            "{kind:?} {builder}: {}",
            raw_log(&m, build, "update").await
        );
        assert!(raw_log(&m, build, "show").await.contains("one"));
        let got = got_revision(&m, build).await;
        match &first {
            Some(want) => assert_eq!(&got, want, "{kind:?} {builder}"),
            None => assert!(got.as_str().is_some_and(|s| s.ends_with(" +0000")), "{got}"),
        }
        first_got = got;
    }
    if kind == Kind::Cvs {
        // CVS finds revisions by date, to the second: the next commit must be in a later second
        // than the last checkout for the older revision to be told apart.
        let stamp = |s: &str| jiff::Timestamp::strptime("%Y-%m-%d %H:%M:%S %z", s).unwrap();
        let last = stamp(first_got.as_str().unwrap());
        while jiff::Timestamp::now().as_second() <= last.as_second() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let second = repo.commit("two\n");
    for builder in builders {
        build += 1;
        let result = m.force_and_wait(json!({"builderNames": [builder]})).await;
        assert_eq!(
            result,
            0,
            "{kind:?} {builder} update: {}",
            raw_log(&m, build, "update").await
        );
        let shown = raw_log(&m, build, "show").await;
        assert!(shown.contains("\ntwo\n"), "{kind:?} {builder}: {shown}");
        // What the first build left: unknown files stay only in an incremental update, ignored
        // ones in an incremental update and with the clean method.
        let keeps_unknown = builder == "incremental";
        let keeps_ignored = builder == "incremental" || builder == "clean";
        assert_eq!(
            shown.contains("\njunk\n"),
            keeps_unknown,
            "{kind:?} {builder}: {shown}"
        );
        assert_eq!(
            shown.contains(&format!("\n{ignored}\n")),
            keeps_ignored,
            "{kind:?} {builder}: {shown}"
        );
        if let Some(want) = &second {
            assert_eq!(&got_revision(&m, build).await, want, "{kind:?} {builder}");
        }
    }
    // An older revision: the one the first build reported.
    build += 1;
    let revision = match &first_got {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let result = m
        .force_and_wait(json!({"builderNames": ["incremental"], "revision": revision}))
        .await;
    assert_eq!(
        result,
        0,
        "{kind:?}: {}",
        raw_log(&m, build, "update").await
    );
    let shown = raw_log(&m, build, "show").await;
    assert!(shown.contains("\none\n"), "{kind:?}: {shown}");
    // A patch, applied after the checkout; the step says so.
    build += 1;
    let diff = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-two\n+patched\n";
    let result = m
        .force_and_wait(json!({"builderNames": ["fresh"], "patch_body": diff, "patch_level": 1}))
        .await;
    assert_eq!(
        result,
        0,
        "{kind:?}: {}",
        raw_log(&m, build, "update").await
    );
    assert!(raw_log(&m, build, "show").await.contains("\npatched\n"));
    let (_, steps) = m.get(&format!("builds/{build}/steps/update")).await;
    assert_eq!(steps["steps"][0]["state_string"], "update (patched)");
    // A checkout the tool cannot do fails the step, with the tool's own words in its log.
    build += 1;
    let (mut params, says) = repo.impossible();
    params["builderNames"] = json!(["clobber"]);
    assert_eq!(m.force_and_wait(params).await, 2, "{kind:?}");
    let log = raw_log(&m, build, "update").await;
    assert!(log.contains(says), "{kind:?}: {log}");
    if let Some(mut child) = stock_worker {
        let _ = child.kill().await;
    }
    m.stop().await;
}

/// The stock worker runs the source steps too: Darcs writes its context file through `shell`'s
/// standard input, CVS lists untracked files with a shell script, both remove files with `rmdir`;
/// the one over PB, the other over msgpack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_runs_darcs_and_cvs_steps() {
    let Some(exe) = crate::buildbot_worker::buildbot_worker() else {
        return;
    };
    Box::pin(exercise_on(Kind::Darcs, Some((exe.clone(), Protocol::Pb)))).await;
    Box::pin(exercise_on(Kind::Cvs, Some((exe, Protocol::Msgpack)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mercurial_checks_out_in_every_mode() {
    Box::pin(exercise(Kind::Hg)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subversion_checks_out_branches_in_every_mode() {
    Box::pin(exercise(Kind::Svn)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cvs_checks_out_by_date_in_every_mode() {
    Box::pin(exercise(Kind::Cvs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn darcs_checks_out_contexts_in_every_mode() {
    Box::pin(exercise(Kind::Darcs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breezy_checks_out_branches_in_every_mode() {
    Box::pin(exercise(Kind::Bzr)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arch_checks_out_versions_in_every_mode() {
    Box::pin(exercise(Kind::Arch)).await;
}

/// A stand-in for a tool that is not available here: it records each command line (and its
/// standard input, when there is one) in `calls`, and prints `answers` for the commands it knows.
fn stand_in(dir: &Path, name: &str, answers: &str) -> PathBuf {
    let path = dir.join(name);
    let calls = dir.join("calls");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {calls}\n\
             if [ ! -t 0 ]; then cat | sed 's/^/  stdin: /' >> {calls}; fi\n\
             case \"$*\" in\n{answers}\nesac\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perforce_and_monotone_issue_buildbots_commands() {
    Box::pin(perforce_and_monotone()).await;
}

async fn perforce_and_monotone() {
    let dir = tempfile::tempdir().unwrap();
    let p4 = stand_in(
        dir.path(),
        "p4",
        "  *changes*) echo \"Change 4321 on 2026/01/01 by u@c\" ;;",
    );
    stand_in(
        dir.path(),
        "mtn",
        "  *automate*) echo 0123456789abcdef0123456789abcdef01234567 ;;\n  *checkout*) mkdir -p \"$2/_MTN\" ;;\n  db\\ init*) touch \"${3#--db=}\" ;;",
    );
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let cfg = format!(
        r#"
c['builders'] = [
    util.BuilderConfig(name='p4', workernames=['w1'], factory=util.BuildFactory([
        steps.P4(p4port='perforce:1666', p4user='builder', p4passwd='s3cret', p4bin={p4:?},
            p4base='//depot', p4branch=util.Interpolate('%(prop:line:-trunk)s'), p4extra_views=[('lib', 'vendor/lib')],
            p4client='kiln_ws', mode='full', method='fresh')])),
    util.BuilderConfig(name='mtn', workernames=['w1'], factory=util.BuildFactory([
        steps.Monotone(repourl='mtn://monotone.example', branch='org.example.app',
            env={{'PATH': {path:?}}})])),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['p4', 'mtn'])]
"#,
        p4 = p4.display().to_string(),
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    m.start_worker("w1", "pass").await;
    let calls = dir.path().join("calls");
    let read_calls = || {
        let text = std::fs::read_to_string(&calls).unwrap_or_default();
        std::fs::remove_file(&calls).ok();
        text
    };
    // Perforce: the client spec from the view, a clean, a forced sync to the change.
    let result = m
        .force_and_wait(json!({"builderNames": ["p4"], "revision": "1234"}))
        .await;
    assert_eq!(result, 0, "{}", raw_log(&m, 1, "p4").await);
    let calls_text = read_calls();
    let lines: Vec<&str> = calls_text.lines().collect();
    let conn = "-p perforce:1666 -u builder -P s3cret -c kiln_ws";
    assert_eq!(lines[0], format!("{conn} client -i"), "{calls_text}");
    let spec: String = lines
        .iter()
        .skip(1)
        .take_while(|l| l.starts_with("  stdin: "))
        .map(|l| format!("{}\n", &l["  stdin: ".len()..]))
        .collect();
    assert!(spec.contains("Client: kiln_ws\n"), "{spec}");
    assert!(spec.contains("Options:\tallwrite rmdir\n"), "{spec}");
    assert!(spec.contains("LineEnd:\tlocal\n"), "{spec}");
    assert!(
        spec.contains("\t//depot/trunk/... //kiln_ws/...\n"),
        "{spec}"
    );
    assert!(
        spec.contains("\t//depot/lib/... //kiln_ws/vendor/lib/...\n"),
        "{spec}"
    );
    assert!(
        spec.contains("/p4/build\n"),
        "the root is the working directory: {spec}"
    );
    let rest: Vec<&str> = lines
        .iter()
        .filter(|l| !l.starts_with("  stdin: "))
        .copied()
        .collect();
    assert_eq!(
        rest,
        vec![
            format!("{conn} client -i"),
            format!("{conn} clean"),
            format!("{conn} sync -f //kiln_ws/...@1234"),
            format!("{conn} changes -m1 #have"),
        ]
    );
    let (_, b) = m.get("builds/1?property=got_revision").await;
    assert_eq!(
        b["builds"][0]["properties"]["got_revision"],
        json!([4321, "P4"])
    );
    // The password is hidden in the log, like a secret.
    let (_, log) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/p4/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    assert!(!log.contains("s3cret"), "{log}");
    // Monotone: a database is made and pulled into, then the branch's head checked out; the next
    // build updates.
    for (build, want_last) in [(2, "checkout"), (3, "update")] {
        assert_eq!(m.force_and_wait(json!({"builderNames": ["mtn"]})).await, 0);
        let calls_text = read_calls();
        let lines: Vec<&str> = calls_text.lines().collect();
        let db = lines
            .iter()
            .find_map(|l| l.split(' ').find(|w| w.starts_with("--db=")))
            .expect("a database")
            .to_string();
        assert!(db.ends_with("/mtn/db.mtn"), "{db}");
        let mut want = Vec::new();
        if build == 2 {
            want.push(format!("db init {db}"));
        }
        want.push(format!(
            "pull mtn://monotone.example?org.example.app {db} --ticker=none"
        ));
        want.push(if want_last == "checkout" {
            format!("checkout build {db} --revision=h:org.example.app --branch=org.example.app")
        } else {
            format!("update {db} --revision=h:org.example.app --branch=org.example.app")
        });
        want.push("automate select w:".into());
        assert_eq!(lines, want, "build {build}");
        let (_, b) = m
            .get(&format!("builds/{build}?property=got_revision"))
            .await;
        assert_eq!(
            b["builds"][0]["properties"]["got_revision"][0],
            "0123456789abcdef0123456789abcdef01234567"
        );
    }
    m.stop().await;
}
