use kiln_core::PropertyValue;
use kiln_core::render::Renderable;

use crate::{Severity, StepKind, WorkerPort, load_str};

const GOOD: &str = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['title'] = "Example"
c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}}
c['www'] = {'port': 8010}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['properties'] = {'project_owner': 'alice', 'answer': 42}
c['workers'] = [worker.Worker('w1', 'pw', max_builds=2, properties={'os': 'linux'})]

f = util.BuildFactory()
f.addStep(steps.ShellCommand(command=['make', util.Property('target', default='all')], haltOnFailure=True, env={'CC': 'gcc'}))
f.addStep(steps.ShellCommand(name='greet', command=util.Interpolate('echo %(prop:buildername)s'), timeout=None))
f.addSteps([steps.FileUpload(workersrc='out.bin', masterdest='up/out.bin'), steps.StringDownload('hi\n', workerdest='hi.txt')])

c['builders'] = [util.BuilderConfig(name='unit', workernames=['w1'], factory=f, tags=['fast'], description='Unit tests')]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['unit'],
    reason=util.StringParameter(name='reason', default='because', required=True))]
"#;

#[test]
fn a_buildbot_style_configuration_loads() {
    let c = load_str("master.star", GOOD).unwrap();
    assert_eq!(c.title, "Example");
    assert_eq!(
        c.worker_ports,
        [WorkerPort {
            port: 9989,
            interface: None,
            msgpack: true,
            pb: false,
            tls: None,
        }]
    );
    assert_eq!(c.www.port, Some(8010));
    assert_eq!(c.properties.get("answer"), Some(&PropertyValue::Int(42)));
    assert_eq!(c.workers[0].max_builds, Some(2));
    let b = &c.builders[0];
    assert_eq!(
        (
            b.name.as_str(),
            b.builddir.as_str(),
            b.workerbuilddir.as_str()
        ),
        ("unit", "unit", "unit")
    );
    assert_eq!(b.tags, vec!["fast".to_string()]);
    let names: Vec<&str> = b.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["shell", "greet", "upload", "string_download"]);
    assert!(b.steps[0].flags.halt_on_failure);
    assert!(
        b.steps[2].flags.halt_on_failure,
        "transfer steps halt on failure by default"
    );
    let StepKind::ShellCommand(sh) = &b.steps[0].kind else {
        panic!("not a shell step")
    };
    assert_eq!(sh.timeout, Some(1200.0));
    assert!(
        matches!(&sh.command, Renderable::List(items) if matches!(&items[1], Renderable::Property { name, .. } if name == "target"))
    );
    let StepKind::ShellCommand(sh) = &b.steps[1].kind else {
        panic!("not a shell step")
    };
    assert_eq!(sh.timeout, None);
    let crate::SchedulerConfig::Force(f) = &c.schedulers[0] else {
        panic!("{:?}", c.schedulers[0]);
    };
    assert!(f.reason.required);
    assert_eq!(f.reason.default, PropertyValue::from("because"));
    assert!(f.username.need_email);
}

#[test]
fn every_problem_is_reported_at_once_with_its_location() {
    let src = r#"BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw'), worker.Worker('w1', 'pw')]
f = util.BuildFactory([steps.ShellCommand(name='nocmd')])
c['builders'] = [util.BuilderConfig(name='b', workernames=['ghost'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['nope'])]
c['frobnicate'] = 1
c['title'] = 7
"#;
    let err = load_str("master.star", src).unwrap_err();
    let text = err.to_string();
    for expected in [
        "master.star:4:24: error: ShellCommand 'nocmd' needs a command",
        "worker 'w1' is defined twice",
        "builder 'b' uses unknown worker 'ghost'",
        "scheduler 'force' names unknown builder 'nope'",
        "master.star:7:2: error: unknown configuration key c['frobnicate']",
        "master.star:8:2: error: c['title'] must be a string, not an int",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(err.0.iter().all(|d| d.severity != Severity::Note));
}

#[test]
fn a_misspelt_keyword_fails_at_its_call_with_a_traceback() {
    let src = "BuildmasterConfig = {}\nc = BuildmasterConfig\nc['workers'] = [\n    worker.Worker('w1', 'pw', max_bulds=2)]\n";
    let err = load_str("master.star", src).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Worker() got an unexpected keyword argument 'max_bulds'"),
        "{text}"
    );
    assert!(text.contains("master.star:4:"), "{text}");
}

#[test]
fn python_habits_get_hints() {
    let src = "from buildbot.plugins import *\nc = BuildmasterConfig = {}\nclass Foo:\n    pass\n";
    let text = load_str("master.star", src).unwrap_err().to_string();
    assert!(
        text.contains("master.star:3:1: note: Starlark has no classes"),
        "{text}"
    );
    let text = load_str("master.star", "x = 1\n").unwrap_err().to_string();
    assert!(text.contains("does not define BuildmasterConfig"), "{text}");
}

/// A `master.cfg` as Buildbot users write it: imports of Buildbot's modules and of standard ones,
/// a module of the master directory's own, a chained assignment, and the standard modules used.
#[test]
fn a_master_cfg_with_imports_and_a_module_of_its_own_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("helpers.py"),
        "from buildbot.steps.shell import ShellCommand\nimport re\n\n\
         def make_steps(name):\n    return [ShellCommand(name=name, command=['make', name])]\n\n\
         PROJECTS = [p for p in ['core', 'ui'] if re.match(r'^[a-z]+$', p)]\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(
        dir.path().join("lib/names.star"),
        "def builder_name(p):\n    return 'build-' + p\n",
    )
    .unwrap();
    let cfg = r#"# -*- python -*-
# ex: set syntax=python:
from buildbot.plugins import *
from buildbot.process.factory import BuildFactory
from buildbot.config import BuilderConfig
from buildbot.schedulers.forcesched import ForceScheduler, StringParameter
from buildbot.worker import Worker
from buildbot.process.properties import (
    Interpolate,
    Property,
)
from buildbot.steps import shell
import os
import os.path
import json
import datetime
import socket
from helpers import make_steps, PROJECTS
import helpers
from lib.names import builder_name

c = BuildmasterConfig = {}
c['workers'] = [Worker("w1", os.environ.get("KILN_TEST_NO_SUCH_VARIABLE", "pass"))]
c['protocols'] = {'pb': {'port': 9989}}
c['builders'] = []
for p in helpers.PROJECTS:
    f = BuildFactory(make_steps(p))
    f.addStep(shell.Compile(command=Interpolate("make %(prop:x)s")))
    c['builders'].append(BuilderConfig(name=builder_name(p), workernames=["w1"], factory=f))
c['schedulers'] = [ForceScheduler(name="force", builderNames=[builder_name(p) for p in PROJECTS],
    reason=StringParameter(name="reason", default="x"))]
c['title'] = os.path.basename(os.path.join("/srv", "masters", "example.cfg"))
c['titleURL'] = json.dumps({"a": os.path.splitext("x.tar.gz")[1]})
c['buildbotURL'] = "http://%s:8010/" % socket.gethostname() if os.path.exists("helpers.py") else "missing"
c['properties'] = {'delay': datetime.timedelta(hours=1, minutes=30).total_seconds(),
    'secret': json.load(open('passwords.json'))['w1']}
"#;
    std::fs::write(dir.path().join("master.cfg"), cfg).unwrap();
    std::fs::write(dir.path().join("passwords.json"), r#"{"w1": "s3cret"}"#).unwrap();
    let c = match crate::load(dir.path()) {
        Ok(c) => c,
        Err(d) => panic!("{d}"),
    };
    let names: Vec<&str> = c.builders.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["build-core", "build-ui"]);
    assert_eq!(c.builders[0].steps.len(), 2);
    assert_eq!(c.workers[0].password, "pass");
    assert_eq!(c.title, "example.cfg");
    assert_eq!(c.title_url, r#"{"a":".gz"}"#);
    assert!(c.buildbot_url.starts_with("http://") && c.buildbot_url.ends_with(":8010/"));
    assert_eq!(
        c.properties.get("delay"),
        Some(&PropertyValue::Float(5400.0))
    );
    assert_eq!(
        c.properties.get("secret"),
        Some(&PropertyValue::Str("s3cret".into()))
    );

    // A name kiln does not have is said to be missing, on the line that imports it; a module
    // that is neither Buildbot's, nor standard, nor the directory's is refused where it is named.
    let missing = "from buildbot.steps.shell import NoSuchStep\nBuildmasterConfig = {}\n";
    let text = crate::load_in("master.cfg", missing, Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("master.cfg:1:")
            && text.contains("buildbot.steps.shell.NoSuchStep is missing from kiln"),
        "{text}"
    );
    let foreign = "import subprocess\nBuildmasterConfig = {}\n";
    let text = crate::load_in("master.cfg", foreign, Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("master.cfg:1:1: error: cannot import subprocess"),
        "{text}"
    );
    // Loads stay in the master directory and do not go round in circles.
    std::fs::write(dir.path().join("a.star"), "load('b.star', 'y')\nx = 1\n").unwrap();
    std::fs::write(dir.path().join("b.star"), "load('a.star', 'x')\ny = 2\n").unwrap();
    for (src, want) in [
        (
            "load('../outside.star', 'x')\nBuildmasterConfig = {}\n",
            "only files inside the master directory",
        ),
        (
            "load('a.star', 'x')\nBuildmasterConfig = {}\n",
            "a cycle of loads: a.star -> b.star -> a.star",
        ),
    ] {
        let text = crate::load_in("master.cfg", src, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(text.contains(want), "{text}");
    }
}

#[test]
fn the_standard_modules_behave_as_python_s() {
    let src = r#"
import re
import os.path
m = re.match(r"(\w+)-(?P<num>\d+)", "build-42 done")
s = re.search("o(n)e", "gone")
BuildmasterConfig = {'properties': {
    'groups': list(m.groups()),
    'num': m.group('num'),
    'whole': m.group(0),
    'span': list(s.span(1)),
    'nomatch': str(re.match("x", "abc")),
    'sub': re.sub(r"(\d+)", r"<\1>", "a1b22"),
    'findall': re.findall(r"(\w)=(\d)", "a=1 b=2"),
    'split': re.compile(r"\s*,\s*").split("a , b,c"),
    'icase': str(re.match("ABC", "abc", re.I) != None),
    'norm': os.path.normpath("/a/./b/../c//d"),
    'dirname': os.path.dirname("/a/b/c.txt"),
    'join': os.path.join("a", "/b", "c"),
}}
"#;
    let c = match load_str("master.star", src) {
        Ok(c) => c,
        Err(d) => panic!("{d}"),
    };
    let get = |k: &str| format!("{:?}", c.properties.get(k).unwrap());
    for (key, want) in [
        ("groups", r#"List([Str("build"), Str("42")])"#),
        ("num", r#"Str("42")"#),
        ("whole", r#"Str("build-42")"#),
        ("span", "List([Int(2), Int(3)])"),
        ("nomatch", r#"Str("None")"#),
        ("sub", r#"Str("a<1>b<22>")"#),
        (
            "findall",
            r#"List([List([Str("a"), Str("1")]), List([Str("b"), Str("2")])])"#,
        ),
        ("split", r#"List([Str("a"), Str("b"), Str("c")])"#),
        ("icase", r#"Str("True")"#),
        ("norm", r#"Str("/a/c/d")"#),
        ("dirname", r#"Str("/a/b")"#),
        ("join", r#"Str("/b/c")"#),
    ] {
        assert_eq!(get(key), want, "{key}");
    }
}

#[test]
fn each_protocol_gets_its_port_and_unsupported_keys_warn() {
    let port = |port, msgpack, pb| WorkerPort {
        port,
        interface: None,
        msgpack,
        pb,
        tls: None,
    };
    let ports = |src: &str| load_str("master.star", src).unwrap().worker_ports;
    assert_eq!(
        ports("BuildmasterConfig = {'protocols': {'pb': {'port': 9989}}}\n"),
        [port(9989, false, true)]
    );
    assert_eq!(
        ports(
            "BuildmasterConfig = {'protocols': {'pb': {'port': 9989}, 'msgpack_experimental_v7': {'port': 'tcp:9989'}}}\n"
        ),
        [port(9989, true, true)]
    );
    assert_eq!(
        ports(
            "BuildmasterConfig = {'protocols': {'pb': {'port': 9989}, 'msgpack_experimental_v7': {'port': 9990}}}\n"
        ),
        [port(9989, false, true), port(9990, true, false)]
    );
    assert_eq!(ports("BuildmasterConfig = {}\n"), []);
    let text = load_str(
        "master.star",
        "BuildmasterConfig = {'protocols': {'null': {}, 'pb': {}}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        text.contains(
            "unknown worker protocol \"null\": kiln serves 'pb' and 'msgpack_experimental_v7'"
        ),
        "{text}"
    );
    assert!(
        text.contains("c['protocols'][\"pb\"] needs a 'port'"),
        "{text}"
    );
    let c = load_str(
        "master.star",
        "BuildmasterConfig = {}\nBuildmasterConfig['mq'] = {}\n",
    )
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("c['mq'] is not supported")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn a_worker_s_keepalive_interval_is_kept_and_checked() {
    let c = load_str(
        "master.star",
        "BuildmasterConfig = {'workers': [worker.Worker('w1', 'pw', keepalive_interval=30), worker.Worker('w2', 'pw')]}\n",
    )
    .unwrap();
    assert_eq!(c.workers[0].keepalive_interval, Some(30));
    assert_eq!(c.workers[1].keepalive_interval, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let text = load_str(
        "master.star",
        "BuildmasterConfig = {'workers': [worker.Worker('w1', 'pw', keepalive_interval=0)]}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("keepalive_interval must be a positive number of seconds, not 0"),
        "{text}"
    );
}

#[test]
fn hidden_environment_patterns_are_checked() {
    let c = load_str("master.star", "BuildmasterConfig = {}\n").unwrap();
    assert!(c.hidden_environment.hides("GITHUB_TOKEN"));
    assert!(c.hidden_environment.hides("aws_secret_access_key"));
    assert!(!c.hidden_environment.hides("PATH"));
    let c = load_str(
        "master.star",
        "BuildmasterConfig = {'hiddenEnvironment': ['MY_*']}\n",
    )
    .unwrap();
    assert!(c.hidden_environment.hides("my_var"));
    assert!(!c.hidden_environment.hides("GITHUB_TOKEN"));
    let c = load_str(
        "master.star",
        "BuildmasterConfig = {'hiddenEnvironment': []}\n",
    )
    .unwrap();
    assert!(!c.hidden_environment.hides("GITHUB_TOKEN"));
    let text = load_str(
        "master.star",
        "BuildmasterConfig = {'hiddenEnvironment': ['TOKEN(']}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("c['hiddenEnvironment']: \"TOKEN(\" is not a pattern"),
        "{text}"
    );
}

#[test]
fn deeply_nested_values_are_refused_not_overflowed() {
    let src = "x = []\nfor i in range(200):\n    x = [x]\nBuildmasterConfig = {'properties': {'deep': x}}\n";
    let text = load_str("master.star", src).unwrap_err().to_string();
    assert!(text.contains("nested too deeply"), "{text}");
}

const SCHEDULERS: &str = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
f = util.BuildFactory([steps.ShellCommand(command='true')])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
c['schedulers'] = [
    schedulers.SingleBranchScheduler(name='main', builderNames=['b'], branch='main',
        treeStableTimer=60, properties={'kind': 'ci'}),
    schedulers.Scheduler(name='default', builderNames=['b'], branch=None),
    schedulers.AnyBranchScheduler(name='any', builderNames=['b'], treeStableTimer=1.5, onlyImportant=True,
        change_filter=util.ChangeFilter(project=['kiln', 'oven'], branch_re='release/', category_not_eq='tag',
            repository_not_re='.*mirror', property_eq={'event': ['push', 'tag']}, property_not_re={'who': 'bot'})),
]
"#;

#[test]
fn change_driven_schedulers_load_with_their_filters() {
    use kiln_core::change::{Attribute, Change};
    use kiln_core::changefilter::NoCallbacks;

    use crate::SchedulerConfig;
    let c = load_str("master.star", SCHEDULERS).unwrap();
    let basic: Vec<_> = c
        .schedulers
        .iter()
        .map(|s| match s {
            SchedulerConfig::Basic(b) => (**b).clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(basic[0].tree_stable_timer, Some(60));
    assert!(!basic[0].per_branch);
    assert_eq!(
        basic[0].properties,
        vec![("kind".to_string(), PropertyValue::from("ci"))]
    );
    assert_eq!(
        basic[0].reason,
        "The %(classname)s scheduler named '%(name)s' triggered this build"
    );
    let on = |branch: Option<&str>, project: &str| Change {
        branch: branch.map(str::to_string),
        project: project.to_string(),
        repository: "https://example.org/kiln.git".into(),
        ..Change::default()
    };
    let accepts = |i: usize, ch: &Change| basic[i].change_filter.matches(ch, &NoCallbacks).unwrap();
    assert!(accepts(0, &on(Some("main"), "x")));
    assert!(!accepts(0, &on(Some("dev"), "x")));
    assert!(
        accepts(1, &on(None, "x")),
        "branch=None is the default branch"
    );
    assert!(!accepts(1, &on(Some("main"), "x")));

    let any = &basic[2];
    assert!(any.per_branch && any.only_important);
    assert_eq!(any.tree_stable_timer, Some(2), "fractions round up");
    let attrs: Vec<Attribute> = any
        .change_filter
        .attributes
        .iter()
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(
        attrs,
        [
            Attribute::Project,
            Attribute::Repository,
            Attribute::Branch,
            Attribute::Category
        ]
    );
    let mut ch = on(Some("release/2"), "oven");
    ch.properties.set("event", "push", "Change");
    assert!(accepts(2, &ch));
    ch.properties.set("who", "bot-1", "Change");
    assert!(!accepts(2, &ch));
    let mut ch = on(Some("main"), "oven");
    ch.properties.set("event", "push", "Change");
    assert!(!accepts(2, &ch));
}

#[test]
fn scheduler_mistakes_are_all_reported() {
    let src = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory())]
def important(change):
    return True
c['schedulers'] = [
    schedulers.SingleBranchScheduler(name='nobranch', builderNames=['b']),
    schedulers.SingleBranchScheduler(name='both', builderNames=['b'], branch='x',
        change_filter=util.ChangeFilter(branch='y')),
    schedulers.AnyBranchScheduler(name='badre', builderNames=['nope'],
        change_filter=util.ChangeFilter(branch_re='(')),
    schedulers.SingleBranchScheduler(name='fn', builderNames=['b'], branch='x', fileIsImportant='important'),
]
"#;
    let text = load_str("master.star", src).unwrap_err().to_string();
    for expected in [
        "master.star:9:",
        "'branch' argument to SingleBranchScheduler is mandatory",
        "give either change_filter or branch/categories, not both",
        "branch_re is not a valid regular expression",
        "master.star:13:",
        "scheduler 'badre' names unknown builder 'nope'",
        "fileIsImportant must be a function, not a string",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn change_hook_dialects_and_auth_are_checked() {
    let ok = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'port': 8010, 'change_hook_dialects': {'base': True}}}\n",
    )
    .unwrap();
    assert!(ok.www.change_hook_dialects.contains_key("base"));
    let off = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'change_hook_dialects': {'base': False}}}\n",
    )
    .unwrap();
    assert!(off.www.change_hook_dialects.is_empty());
    let auth = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'change_hook_auth': ['file:hooks.passwd', 'memory:a:1:b:2'], 'change_hook_max_body': 5}}\n",
    )
    .unwrap();
    assert_eq!(
        auth.www.change_hook_auth,
        vec![
            crate::HookCredentials::File("hooks.passwd".into()),
            crate::HookCredentials::Users(vec![("a".into(), "1".into()), ("b".into(), "2".into())]),
        ]
    );
    assert_eq!(auth.www.change_hook_max_body, 5);
    assert_eq!(ok.www.change_hook_max_body, 10_000_000);
    let src = "BuildmasterConfig = {'www': {'change_hook_dialects': {'svn': {}}, 'change_hook_auth': ['unix'], \
               'change_hook_max_body': -1}}\n";
    let text = load_str("master.star", src).unwrap_err().to_string();
    for expected in [
        "dialect 'svn' is not supported",
        "'unix' is not supported; use 'file:PATH' or 'memory:USER:PASSWORD'",
        "names no usable credentials",
        "change_hook_max_body'] must be a positive number of bytes",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn web_status_settings_are_read_and_their_mistakes_reported() {
    let src = r#"BuildmasterConfig = {'www': {'plugins': {'waterfall_view': {}}, 'buildbot_www': '/opt/bb',
    'versions': [('site', '1.2')], 'ui_default_config': {'Builders.buildFetchLimit': 50},
    'custom_templates_dir': 'tpl', 'logfileName': '', 'logRotateLength': 1000, 'maxRotatedFiles': 3,
    'changecommentlink': (r'#(\d+)', r'https://bugs/\1', 'Ticket')},
    'revlink': util.RevlinkMatch([r'^https://hg/(.*)$'], r'https://hg/\1/rev/%s')}
"#;
    let ok = load_str("master.star", src).unwrap();
    let www = &ok.www;
    assert!(www.plugins.contains_key("waterfall_view"));
    assert_eq!(
        www.buildbot_www.as_deref(),
        Some(std::path::Path::new("/opt/bb"))
    );
    assert_eq!(www.versions, vec![("site".to_string(), "1.2".to_string())]);
    assert_eq!(
        www.ui_default_config["Builders.buildFetchLimit"],
        PropertyValue::Int(50)
    );
    assert_eq!(www.custom_templates_dir.as_deref(), Some("tpl"));
    assert_eq!(
        (
            www.logfile_name.as_str(),
            www.log_rotate_length,
            www.max_rotated_files
        ),
        ("", 1000, 3)
    );
    assert_eq!(
        www.change_comment_link.as_ref().unwrap().url,
        r"https://bugs/\1"
    );
    assert!(matches!(ok.revlink, Some(crate::Revlink::Match { .. })));

    let bad = r#"BuildmasterConfig = {'www': {'versions': ['1.2'], 'logRotateLength': -5,
    'maxRotatedFiles': -1, 'changecommentlink': ('(', 'u', 't')},
    'revlink': util.RevlinkMatch(['('], 'x')}
"#;
    let text = load_str("master.star", bad).unwrap_err().to_string();
    for expected in [
        "c['www']['versions'] holds (name, version) pairs",
        "c['www']['logRotateLength'] must be a positive number of bytes",
        "c['www']['maxRotatedFiles'] must be a number of files",
        "changecommentlink's pattern \"(\" is not a regular expression",
        "RevlinkMatch's repo_urls pattern \"(\" is not a regular expression",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

const FUNCTIONS: &str = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory())]
def docs_only(change):
    return not all([f.startswith('docs/') for f in change.files])
def by_alice(change):
    return change.who == 'alice' and change.properties.get('event') == 'push'
def broken(change):
    return change.no_such_attribute
def forever(change):
    n = 0
    for i in range(1000000000):
        n += i
    return n
c['schedulers'] = [
    schedulers.SingleBranchScheduler(name='s', builderNames=['b'], fileIsImportant=docs_only,
        change_filter=util.ChangeFilter(filter_fn=by_alice, branch_fn=lambda b: b.startswith('rel'))),
    schedulers.AnyBranchScheduler(name='broken', builderNames=['b'], fileIsImportant=broken),
    schedulers.AnyBranchScheduler(name='forever', builderNames=['b'], fileIsImportant=forever),
]
"#;

#[test]
fn configuration_functions_are_called_with_buildbot_shaped_changes() {
    use kiln_core::change::Change;

    use crate::{Data, SchedulerConfig};
    let c = load_str("master.star", FUNCTIONS).unwrap();
    let basic: Vec<_> = c
        .schedulers
        .iter()
        .map(|s| match s {
            SchedulerConfig::Basic(b) => (**b).clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut change = Change {
        author: "alice".into(),
        branch: Some("release".into()),
        files: vec!["docs/a.md".into(), "src/lib.rs".into()],
        ..Change::default()
    };
    change.properties.set("event", "push", "Change");
    let important = |f, ch: &Change| {
        c.functions
            .call(f, &[Data::change(ch)], &[])
            .map(|d| d.truthy())
    };
    let docs = basic[0].file_is_important.unwrap();
    assert_eq!(c.functions.name(docs), "docs_only");
    assert_eq!(important(docs, &change), Ok(true));
    let mut only_docs = change.clone();
    only_docs.files = vec!["docs/a.md".into()];
    assert_eq!(important(docs, &only_docs), Ok(false));

    // The filter's functions: filter_fn gets the change, branch_fn the branch.
    assert_eq!(
        basic[0].change_filter.matches(&change, &c.functions),
        Ok(true)
    );
    let mut bob = change.clone();
    bob.author = "bob".into();
    assert_eq!(
        basic[0].change_filter.matches(&bob, &c.functions),
        Ok(false)
    );
    let mut dev = change.clone();
    dev.branch = Some("dev".into());
    assert_eq!(
        basic[0].change_filter.matches(&dev, &c.functions),
        Ok(false)
    );

    // An error carries the Starlark traceback with the user's file and line.
    let err = important(basic[1].file_is_important.unwrap(), &change).unwrap_err();
    assert!(err.contains("no_such_attribute"), "{err}");
    assert!(err.contains("master.star:11"), "{err}");

    // A runaway function is stopped.
    let started = std::time::Instant::now();
    let err = important(basic[2].file_is_important.unwrap(), &change).unwrap_err();
    assert!(err.contains("ran longer than 1 s"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn timed_schedulers_take_buildbot_arguments() {
    use kiln_core::cron::{Calendar, Civil, Cron, Utc};
    use kiln_core::schedulers::timed::Schedule;

    use crate::{CodebaseDefault, SchedulerConfig, TimedSchedulerConfig};
    let src = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory())]
c['schedulers'] = [
    schedulers.Periodic('p', ['b'], 3600, codebases=['app', 'lib']),
    schedulers.Nightly(name='n', builderNames=['b'], hour=[1, 13], minute=30, dayOfWeek=[0, 4],
        onlyIfChanged=True, force_at_day_of_week=6, timezone='Europe/Paris',
        codebases={'app': {'repository': 'https://x/app.git', 'branch': 'main'}}),
    schedulers.Nightly(name='text', builderNames=['b'], dayOfWeek='0-4', month='jan,jul'),
]
"#;
    let c = load_str("master.star", src).unwrap();
    let timed: Vec<TimedSchedulerConfig> = c
        .schedulers
        .iter()
        .map(|s| match s {
            SchedulerConfig::Timed(t) => (**t).clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(timed[0].schedule, Schedule::Periodic { interval: 3600 });
    assert_eq!(
        timed[0].reason,
        "The Periodic scheduler named '%(name)s' triggered this build"
    );
    let names: Vec<&str> = timed[0].codebases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "lib"]);
    assert!(!timed[0].only_if_changed);

    // Python's Monday = 0 becomes cron's 1; Friday = 4 becomes 5.
    let expected = Cron::parse("30", "1,13", "*", "*", "1,5").unwrap();
    assert_eq!(timed[1].schedule, Schedule::Cron(expected));
    // force_at: Sunday (Python 6 = cron 0), minute 0 of every hour by default.
    let sunday = Civil {
        year: 2026,
        month: 11,
        day: 22,
        hour: 5,
        minute: 0,
    };
    assert!(timed[1].force_at.as_ref().unwrap().matches(&sunday));
    assert_eq!(timed[1].timezone.as_deref(), Some("Europe/Paris"));
    assert_eq!(
        timed[1].codebases,
        vec![CodebaseDefault {
            name: "app".into(),
            repository: "https://x/app.git".into(),
            branch: Some("main".into()),
            ..CodebaseDefault::default()
        }]
    );
    // Text is cron syntax already: 0-4 is Sunday to Thursday.
    let Schedule::Cron(text) = &timed[2].schedule else {
        panic!()
    };
    let thursday = Utc.civil(1_767_830_400); // 2026-01-08 00:00, a Thursday
    assert!(text.matches(&thursday));
    assert_eq!(timed[2].codebases[0].name, "");

    let bad = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory())]
c['schedulers'] = [
    schedulers.Periodic(name='p0', builderNames=['b'], periodicBuildTimer=0),
    schedulers.Periodic(name='p1', builderNames=['b']),
    schedulers.Nightly(name='n1', builderNames=['b'], hour=25),
    schedulers.Nightly(name='n2', builderNames=['b'], timezone='Mars/Olympus'),
    schedulers.Nightly(name='n3', builderNames=['b'], codebases={'x': {'tag': 'v1'}}),
]
"#;
    let text = load_str("master.star", bad).unwrap_err().to_string();
    for expected in [
        "'p0': periodicBuildTimer must be positive",
        "'p1': Periodic needs periodicBuildTimer",
        "'n1': hour \"25\": 25 is outside 0-23",
        "'n2': unknown timezone \"Mars/Olympus\"",
        "codebases['x']: unknown key 'tag'",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn trigger_steps_name_triggerable_schedulers_and_consistent_options() {
    let src = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
f = util.BuildFactory([
    steps.Trigger(schedulerNames=['t'], waitForFinish=True, set_properties={'x': util.Property('y')}),
    steps.Trigger(name='bad1', schedulerNames=['force']),
    steps.Trigger(name='bad2', schedulerNames=['nope', 't'], unimportantSchedulerNames=['other']),
    steps.Trigger(name='bad3', schedulerNames=['t'], alwaysUseLatest=True, updateSourceStamp=True),
    steps.Trigger(name='bad4', schedulerNames=[]),
])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b']),
    schedulers.Triggerable('t', ['b'])]
"#;
    let text = load_str("master.star", src).unwrap_err().to_string();
    for expected in [
        "Trigger step 'bad1' names scheduler 'force', which is not a Triggerable scheduler",
        "Trigger step 'bad2' names unknown scheduler 'nope'",
        "unimportantSchedulerNames names 'other', which is not in schedulerNames",
        "'bad3': you can't specify both alwaysUseLatest and updateSourceStamp",
        "'bad4': schedulerNames must name at least one scheduler",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        !text.contains("'trigger'"),
        "the first step is fine:\n{text}"
    );
}

#[test]
fn change_sources_take_buildbot_arguments() {
    use crate::{ChangeSourceConfig, Data, GitBranches};
    let src = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['change_source'] = [
    changes.GitPoller('https://x/a.git', branches=['main', 'refs/tags/v1'], pollInterval=30, pollAtLaunch=True),
    changes.GitPoller(repourl='https://x/b.git', only_tags=True, name='tags'),
    changes.GitPoller(repourl='https://x/c.git', branches=lambda ref: ref.startswith('refs/heads/rel'), name='fn'),
    changes.HgPoller('https://x/hg', workdir='hg', bookmarks=['@']),
    changes.SVNPoller('svn://x/repo/', split_file=changes.split_file_projects_branches),
]
"#;
    let c = load_str("master.star", src).unwrap();
    let sources = &c.change_sources;
    let ChangeSourceConfig::Git(a) = &sources[0] else {
        panic!()
    };
    assert_eq!(a.common.name, "https://x/a.git");
    assert_eq!(
        (a.common.poll_interval, a.common.poll_at_launch),
        (30, true)
    );
    assert_eq!(
        a.branches,
        GitBranches::Named(vec!["main".into(), "refs/tags/v1".into()])
    );
    assert_eq!(a.workdir, "gitpoller-work");
    let ChangeSourceConfig::Git(tags) = &sources[1] else {
        panic!()
    };
    assert_eq!(tags.branches, GitBranches::Tags);
    let ChangeSourceConfig::Git(f) = &sources[2] else {
        panic!()
    };
    let GitBranches::Function(func) = f.branches else {
        panic!()
    };
    let yes = c
        .functions
        .call(func, &[Data::Str("refs/heads/rel-1".into())], &[]);
    assert_eq!(yes, Ok(Data::Bool(true)));
    let ChangeSourceConfig::Hg(hg) = &sources[3] else {
        panic!()
    };
    assert!(hg.branches.is_empty() && hg.bookmarks == ["@"]);
    let ChangeSourceConfig::Svn(svn) = &sources[4] else {
        panic!()
    };
    assert_eq!(svn.repourl, "svn://x/repo");
    assert_eq!(svn.common.poll_interval, 600);
    // Buildbot's splitters, in Starlark.
    let split = |path: &str| {
        c.functions
            .call(svn.split_file.unwrap(), &[Data::Str(path.into())], &[])
            .unwrap()
    };
    let branch = split("kiln/branches/b1/src/a.c");
    assert_eq!(branch.attr("branch"), None, "a dict, not an object");
    let Data::Dict(entries) = branch else {
        panic!("{branch:?}")
    };
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("project"), Some(Data::Str("kiln".into())));
    assert_eq!(get("branch"), Some(Data::Str("branches/b1".into())));
    assert_eq!(get("path"), Some(Data::Str("src/a.c".into())));
    assert_eq!(split("kiln/tags/v1/a.c"), Data::None);

    let bad = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['change_source'] = [changes.GitPoller(), changes.GitPoller('u', branch='a', branches=['b']),
    changes.HgPoller('h'), changes.GitPoller('u', pollInterval=0), changes.GitPoller('u', only_tags=True, branches=['x'])]
"#;
    let text = load_str("master.star", bad).unwrap_err().to_string();
    for expected in [
        "GitPoller needs a repourl",
        "give branches or branch, not both",
        "HgPoller needs a workdir",
        "pollInterval must be a positive number of seconds",
        "only_tags and branches are exclusive",
        "two change sources are named 'u'",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn locks_and_their_accesses_are_checked() {
    let src = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
db = util.MasterLock('db', maxCount=2)
cpu = util.WorkerLock('cpu', maxCountForWorker={'w1': 4})
f = util.BuildFactory([steps.ShellCommand(command='true', locks=[cpu.access('counting', count=3), db])])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f, locks=[db.access('exclusive')])]
"#;
    let c = load_str("master.star", src).unwrap();
    let b = &c.builders[0];
    assert_eq!(b.locks.len(), 1);
    assert!(b.locks[0].exclusive && !b.locks[0].lock.per_worker);
    assert_eq!(b.locks[0].lock.max_count, 2);
    let step = &b.steps[0].locks;
    assert_eq!((step[0].count, step[0].lock.per_worker), (3, true));
    assert_eq!(step[0].lock.max_count_for_worker.get("w1"), Some(&4));
    assert_eq!(
        (step[1].exclusive, step[1].count),
        (false, 1),
        "a bare lock counts one"
    );

    let bad = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
a = util.MasterLock('same')
b = util.WorkerLock('same')
f = util.BuildFactory([steps.ShellCommand(command='true', locks=[a.access('shared')])])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f,
    locks=[b.access('counting', count=5), b.access('counting'), a.access('exclusive'), 'not a lock'])]
"#;
    let text = load_str("master.star", bad).unwrap_err().to_string();
    for expected in [
        "the access mode must be 'counting' or 'exclusive', not a string",
        "an access count of 5 is more than its maxCount 1",
        "locks must hold lock accesses, not a string",
        "two different locks are named 'same'",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn source_steps_take_each_systems_arguments_and_report_mistakes() {
    let good = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
f = util.BuildFactory([
    steps.Mercurial(repourl='https://hg.example/app', branchType='inrepo', mode='full'),
    steps.SVN(baseURL='svn://svn.example/repo/', defaultBranch='trunk', retry=(5, 2), username='u'),
    steps.CVS(cvsroot=':pserver:anon@cvs.example:/cvs', cvsmodule='app', login='pw', mode='full', method='clean'),
    steps.Darcs(repourl='http://darcs.example/app', mode='full'),
    steps.Bzr(baseURL='bzr://bzr.example/', defaultBranch='trunk', env={'HOME': '/tmp'}),
    steps.Arch(url='http://arch.example/archive', version='app--main--1.0', archive='a@example.com--2026'),
    steps.P4(p4port='p4:1666', p4base='//depot', p4branch='main'),
    steps.Monotone(repourl='mtn://mtn.example', branch='org.example.app'),
    steps.Git(repourl='git@example.com:app.git', tags=True, getDescription={'always': True, 'abbrev': 7},
        sshPrivateKey=util.Secret('key'), sshHostKey='ssh-ed25519 AAAA', clobberOnFailure=True, mode='full'),
])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
"#;
    let cfg = load_str("master.star", good).unwrap();
    let steps = &cfg.builders[0].steps;
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hg", "svn", "cvs", "darcs", "bzr", "arch", "p4", "monotone", "git"
        ]
    );
    let source = |i: usize| match &steps[i].kind {
        StepKind::Source(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    // Source steps halt the build when they fail; each system has its default method.
    assert!(steps.iter().all(|s| s.flags.halt_on_failure));
    assert_eq!(source(0).method, "fresh");
    assert_eq!(source(3).method, "copy");
    assert_eq!(source(2).method, "clean");
    assert_eq!(source(1).retry, Some((5.0, 2)));
    assert_eq!(source(4).env.len(), 1);
    let crate::Vcs::Git(git) = source(8).vcs else {
        panic!()
    };
    assert!(git.tags && git.clobber_on_failure);
    assert_eq!(
        git.get_description,
        Some(vec!["--always".to_string(), "--abbrev=7".to_string()])
    );
    let crate::Vcs::P4(p4) = source(6).vcs else {
        panic!()
    };
    assert_eq!(p4.p4client_spec_options, "allwrite rmdir");
    let bad = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
f = util.BuildFactory([
    steps.Mercurial(repourl='a', baseURL='b'),
    steps.SVN(mode='full', method='shiny', repourl='x'),
    steps.Darcs(mode='incremental', method='clobber', repourl='x'),
    steps.Bzr(retry=5, repourl='x'),
    steps.CVS(cvsroot='/cvs'),
    steps.P4(p4base='//depot', p4viewspec=[('//depot/a/', '')]),
    steps.Arch(url='/archive'),
    steps.Git(repourl='x', sshHostKey='k'),
    steps.Mercurial(baseURL='b', branchType='inrepo'),
])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
"#;
    let text = load_str("master.star", bad).unwrap_err().to_string();
    for expected in [
        "Mercurial step 'hg': give repourl or baseURL, not both",
        "SVN step 'svn': method must be one of fresh, clobber, clean, copy, not 'shiny'",
        "Darcs step 'darcs': method 'clobber' needs mode='full'",
        "Bzr step 'bzr': retry must be (delay, repeats), not an int",
        "CVS step 'cvs' needs cvsmodule",
        "P4 step 'p4': give p4base or p4viewspec, not both",
        "Arch step 'arch' needs version",
        "Git step 'git': sshHostKey and sshKnownHosts need sshPrivateKey",
        "Mercurial step 'hg': branchType='inrepo' needs repourl",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn shell_file_and_http_step_mistakes_are_reported() {
    let bad = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['workers'] = [worker.Worker('w1', 'pw')]
f = util.BuildFactory([
    steps.Compile(warningPattern='(', suppressionList=[('a', 'b')], maxWarnCount=-1),
    steps.Test(testResults='xunit'),
    steps.WarningCountingShellCommand(command=['make'], warningExtractor='guess'),
    steps.ShellCommand(command=['true'], logfiles={'stdio': 'x.log', 'other': {'follow': True}}),
    steps.ShellSequence(commands=[steps.ShellCommand(command=['true'])]),
    steps.POST(url='http://x/', data='a', json={'b': 1}, verify=3),
    steps.HTTPStep(url='http://x/', method='FETCH'),
    steps.ShellCommand(command=['true'], doStepIf='yes'),
])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
"#;
    let text = load_str("master.star", bad).unwrap_err().to_string();
    for expected in [
        "warningPattern is not a valid regular expression",
        "a suppressionList entry is (file, warning, start, end)",
        "maxWarnCount must be zero or more",
        "testResults must be 'libtest', 'tap' or {'junit': 'a glob of XML files'}",
        "warningExtractor must be 'warnExtractWholeLine' or 'warnExtractFromRegexpGroups', not 'guess'",
        "logfiles cannot be named stdio",
        "logfile other needs a filename",
        "commands holds util.ShellArg, not ShellCommand",
        "HTTPStep 'HTTPStep': give data or json, not both",
        "verify must be True, False or a CA file",
        "FETCH is not an HTTP method",
        "doStepIf must be a function, a boolean or a renderable",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn web_authentication_and_authorization_are_read() {
    let src = r#"
def may_stop(user, *args):
    return user == "ann"
BuildmasterConfig = {'www': {
    'auth': util.UserPasswordAuth({'ann': 's3cret', 'bob': 'pw'}),
    'authz': util.Authz(
        stringsMatcher=util.reStrMatcher,
        allowRules=[
            util.ForceBuildEndpointMatcher(builder='rel.*', role='release'),
            util.StopBuildEndpointMatcher(role='owner', defaultDeny=False),
            util.BranchEndpointMatcher('main', role='admins'),
            util.ViewBuildsEndpointMatcher(project='secret', role='insiders'),
            util.AnyControlEndpointMatcher(role='admins'),
        ],
        roleMatchers=[
            util.RolesFromGroups(groupPrefix='buildbot-'),
            util.RolesFromEmails(admins=['ann@example.org']),
            util.RolesFromDomain(insiders=['example.org']),
            util.RolesFromUsername(roles=['release'], usernames=['bob']),
            util.RolesFromOwner(role='owner'),
        ],
        forceBuild='auth', stopBuild=may_stop, showUsersPage=False),
}}
"#;
    let ok = load_str("master.star", src).unwrap();
    assert_eq!(
        ok.www.auth,
        crate::WebAuth::UserPassword(vec![
            ("ann".into(), "s3cret".into()),
            ("bob".into(), "pw".into())
        ])
    );
    let authz = ok.www.authz.as_ref().unwrap();
    assert_eq!(authz.strings, crate::StringsMatcher::Regex);
    assert_eq!(
        authz.allow_rules[0],
        crate::AllowRule {
            endpoint: crate::Endpoint::ForceBuild {
                builder: Some("rel.*".into())
            },
            role: "release".into(),
            default_deny: true,
        }
    );
    assert!(!authz.allow_rules[1].default_deny);
    assert_eq!(
        authz.allow_rules[2].endpoint,
        crate::Endpoint::Branch {
            branch: "main".into()
        }
    );
    assert_eq!(authz.allow_rules.len(), 5);
    assert_eq!(
        authz.role_matchers[1],
        crate::RoleMatcher::Emails(vec![("admins".into(), vec!["ann@example.org".into()])])
    );
    assert_eq!(
        authz.role_matchers[3],
        crate::RoleMatcher::Username {
            roles: vec!["release".into()],
            usernames: vec!["bob".into()]
        }
    );
    assert_eq!(authz.role_matchers.len(), 5);
    let actions: Vec<_> = authz.actions.iter().map(|(a, _)| a.keyword()).collect();
    assert_eq!(actions, ["forceBuild", "stopBuild", "showUsersPage"]);
    assert!(matches!(authz.actions[1].1, crate::Permission::Function(_)));

    // Sessions last a week unless cookie_expiration_time says otherwise; no other site may
    // send controls unless allowed_origins names it.
    assert_eq!(ok.www.session_lifetime, 7 * 24 * 3600);
    assert!(ok.www.allowed_origins.is_empty());
    let remote = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'auth': util.RemoteUserAuth(header='X-User', headerRegex='(?P<username>.+)'), 'cookie_expiration_time': 3600, 'allowed_origins': ['https://*.example.org']}}\n",
    )
    .unwrap();
    assert_eq!(remote.www.session_lifetime, 3600);
    assert_eq!(remote.www.allowed_origins, ["https://*.example.org"]);
    // The host names the web port answers to besides its own.
    assert!(ok.www.allowed_hosts.is_empty());
    let hosts = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'allowed_hosts': ['ci.example.org', '.corp.example']}}\n",
    )
    .unwrap();
    assert_eq!(hosts.www.allowed_hosts, ["ci.example.org", ".corp.example"]);
    let text = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'allowed_hosts': ['https://ci.example.org:8010']}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("c['www']['allowed_hosts'] lists host names"),
        "{text}"
    );
    assert_eq!(
        remote.www.auth,
        crate::WebAuth::RemoteUser {
            header: "X-User".into(),
            header_regex: "(?P<username>.+)".into(),
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
        }
    );
}

#[test]
fn authorization_mistakes_are_reported_where_they_are() {
    let bad = r#"BuildmasterConfig = {'www': {
    'auth': util.RemoteUserAuth(headerRegex='(?P<user>.+)', trustedProxies=['proxy.local']),
    'authz': util.Authz(
        allowRules=[util.ForceBuildEndpointMatcher(builder='x'), util.RolesFromGroups()],
        roleMatchers=[util.AnyEndpointMatcher(role='a')],
        forceBuild='maybe'),
}}
"#;
    let text = load_str("master.star", bad).unwrap_err().to_string();
    for expected in [
        "master.star:2",
        "RemoteUserAuth's headerRegex \"(?P<user>.+)\" has no (?P<username>…) group",
        "RemoteUserAuth's trustedProxies entry \"proxy.local\" is not an IP address",
        "master.star:4",
        "ForceBuildEndpointMatcher needs role=, the role it allows",
        "RolesFromGroups is not an endpoint matcher kiln knows",
        "master.star:5",
        "AnyEndpointMatcher is not a role matcher kiln knows",
        "Authz's forceBuild must be True, False, 'auth' or a function, not",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let old = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'authz': util.Authz(useHttpHeader='yes', auth=util.NoAuth())}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        old.contains("Authz's useHttpHeader must be True or False"),
        "{old}"
    );
    let lifetime = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'cookie_expiration_time': 0}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        lifetime.contains("cookie_expiration_time'] must be a positive number of seconds"),
        "{lifetime}"
    );
    let unknown = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'authz': util.Authz(allowRules=[util.NoSuchMatcher(role='x')])}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("NoSuchMatcher"), "{unknown}");
}

#[test]
fn ports_bind_the_interface_they_name_and_nothing_else_is_taken() {
    let ok = load_str(
        "master.star",
        "BuildmasterConfig = {'protocols': {'msgpack_experimental_v7': {'port': 'tcp:9989:interface=10.1.2.3'}}, 'www': {'port': 'tcp:port=8010:interface=::1'}}\n",
    )
    .unwrap();
    assert_eq!(ok.worker_ports[0].port, 9989);
    assert_eq!(ok.worker_ports[0].interface.as_deref(), Some("10.1.2.3"));
    assert_eq!((ok.www.port, ok.www.host.as_str()), (Some(8010), "::1"));
    assert_eq!(ok.www.tls, None);
    let https = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'port': 'ssl:8443:privateKey=tls/key.pem:certKey=tls/cert.pem'}}\n",
    )
    .unwrap();
    assert_eq!(
        https.www.tls,
        Some(crate::TlsFiles {
            key: "tls/key.pem".into(),
            cert: "tls/cert.pem".into()
        })
    );
    // The worker port takes the same `ssl:` form, for workers created with --use-tls.
    let secure = load_str(
        "master.star",
        "BuildmasterConfig = {'protocols': {'pb': {'port': 'ssl:9989:privateKey=k.pem:certKey=c.pem'},\n 'msgpack_experimental_v7': {'port': 'ssl:9989:privateKey=k.pem:certKey=c.pem'}}}\n",
    )
    .unwrap();
    assert_eq!(
        secure.worker_ports,
        [crate::WorkerPort {
            port: 9989,
            interface: None,
            msgpack: true,
            pb: true,
            tls: Some(crate::TlsFiles {
                key: "k.pem".into(),
                cert: "c.pem".into()
            }),
        }]
    );
    let mixed = load_str(
        "master.star",
        "BuildmasterConfig = {'protocols': {'pb': {'port': 'ssl:9989:privateKey=k.pem:certKey=c.pem'},\n 'msgpack_experimental_v7': {'port': 9989}}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        mixed.contains("one port serves TLS to all its workers or to none"),
        "{mixed}"
    );
    let bad = load_str(
        "master.star",
        "BuildmasterConfig = {'protocols': {'msgpack_experimental_v7': {'port': 'tcp:9989:interface=localhost'}},\n 'www': {'port': 'ssl:8443', 'host': 'example.org'}}\n",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "the worker port must be a port number, \"tcp:PORT[:interface=ADDRESS]\", \"ssl:PORT:privateKey=KEY:certKey=CERT\" or \"ADDRESS:PORT\": \"localhost\" is not an IP address",
        "c['www']['port'] must be a port number",
        "\"ssl:8443\" needs privateKey=, the key's PEM file",
        "c['www']['host'] must be an IP address to listen on, not \"example.org\"",
    ] {
        assert!(bad.contains(expected), "{expected:?} missing from:\n{bad}");
    }
}

#[test]
fn oauth2_logins_are_read_and_their_mistakes_reported() {
    let ok = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'auth': util.GitHubAuth('id', 'secret', serverURL='https://ghe.example.org', getTeamsMembership=True)}}\n",
    )
    .unwrap();
    assert_eq!(
        ok.www.auth,
        crate::WebAuth::OAuth2(crate::OAuth2 {
            provider: crate::OAuthProvider::GitHub {
                server: Some("https://ghe.example.org".into()),
                teams: true
            },
            client_id: "id".into(),
            client_secret: "secret".into(),
            scope: None,
        })
    );
    let gitlab = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'auth': util.GitLabAuth('https://gitlab.example.org', 'id', 'secret')}}\n",
    )
    .unwrap();
    assert!(matches!(
        gitlab.www.auth,
        crate::WebAuth::OAuth2(crate::OAuth2 {
            provider: crate::OAuthProvider::GitLab { .. },
            ..
        })
    ));
    let bad = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'auth': util.GenericOAuth2Auth('id', '', authUri='ftp://x')}}\n",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "util.GenericOAuth2Auth needs clientSecret",
        "GenericOAuth2Auth's authUri must be an http:// or https:// URL, not \"ftp://x\"",
        "util.GenericOAuth2Auth needs discoveryUri, or authUri, tokenUri and userinfoUri",
    ] {
        assert!(bad.contains(expected), "{expected:?} missing from:\n{bad}");
    }
}

#[test]
fn reporters_take_buildbot_generators_and_formatters() {
    use crate::{
        FormatterConfig, GeneratorKind, LogSelection, MailLookup, Mode, ReporterKind, TemplateType,
    };
    let source = format!(
        "{GOOD}\n{}",
        r#"
def body(ctx):
    return {'builder': ctx['build']['builder']['name']}
c['services'] = [
    reporters.MailNotifier(fromaddr='bot@example.org', lookup='example.org',
        extraRecipients=['Ops <ops@example.org>'], useTls=True, smtpUser='u', smtpPassword=util.Secret('smtp'),
        generators=[
            reporters.BuildStatusGenerator(mode=('change', 'problem'), builders=['unit'],
                message_formatter=reporters.MessageFormatter(template='{{ buildername }}', subject='[{{ buildbot_title }}]',
                    template_type='html', want_logs_content=['compile.stdio'])),
            reporters.BuildSetStatusGenerator(mode='warnings', tags=['fast']),
            reporters.WorkerMissingGenerator(workers=['w1']),
        ]),
    reporters.MailNotifier(fromaddr='old@example.org', mode='all', categories=['fast'], addLogs=True, buildSetSummary=True),
    reporters.HttpStatusPush(serverUrl='https://hooks.example.org/status', verify=False,
        generators=[reporters.BuildStartEndStatusGenerator(
            start_formatter=reporters.MessageFormatterFunction(body, 'json'),
            end_formatter=reporters.MessageFormatterRenderable(util.Interpolate('done %(prop:buildername)s')))]),
]
"#
    );
    let c = load_str("master.star", &source).unwrap();
    assert_eq!(c.reporters.len(), 3);
    let mail = &c.reporters[0];
    assert_eq!(
        mail.name,
        "MailNotifier_BuildStatusGenerator_BuildSetStatusGenerator_WorkerMissingGenerator"
    );
    let ReporterKind::Mail(m) = &mail.kind else {
        panic!("{mail:?}")
    };
    assert_eq!(m.lookup, Some(MailLookup::Domain("example.org".into())));
    assert!(m.use_tls && m.smtp_password.is_some());
    let GeneratorKind::BuildStatus {
        mode, formatter, ..
    } = &mail.generators[0].kind
    else {
        panic!()
    };
    assert_eq!(mode, &[Mode::Change, Mode::Problem]);
    assert_eq!(
        mail.generators[0].filter.builders,
        Some(vec!["unit".into()])
    );
    let FormatterConfig::Template {
        template_type,
        want_logs_content,
        ..
    } = formatter
    else {
        panic!()
    };
    assert_eq!(*template_type, TemplateType::Html);
    assert_eq!(
        *want_logs_content,
        LogSelection::Named(vec!["compile.stdio".into()])
    );
    assert!(
        matches!(&mail.generators[1].kind, GeneratorKind::BuildSet { mode, .. } if mode == &[Mode::Failing, Mode::Warnings])
    );
    // The 0.8 options become a generator, with a warning naming the modern spelling.
    let old = &c.reporters[1];
    assert!(
        matches!(&old.generators[0].kind, GeneratorKind::BuildSet { mode, .. } if mode.len() == 5)
    );
    assert_eq!(old.generators[0].filter.tags, Some(vec!["fast".into()]));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("0.8 spellings")
                && w.message.contains("reporters.BuildStatusGenerator("))
    );
    let push = &c.reporters[2];
    assert_eq!(push.name, "HttpStatusPush_BuildStartEndStatusGenerator");
    assert!(matches!(
        &push.generators[0].kind,
        GeneratorKind::BuildStartEnd {
            start: FormatterConfig::Function {
                template_type: TemplateType::Json,
                ..
            },
            end: FormatterConfig::Renderable { .. },
        }
    ));
    // Without generators, Buildbot 4's defaults.
    let plain = load_str(
        "master.star",
        &format!("{GOOD}\nc['services'] = [reporters.MailNotifier('bot@example.org')]\n"),
    )
    .unwrap();
    let kinds: Vec<&str> = plain.reporters[0]
        .generators
        .iter()
        .map(|g| g.kind.class())
        .collect();
    assert_eq!(kinds, ["BuildStatusGenerator", "WorkerMissingGenerator"]);
}

#[test]
fn reporter_mistakes_are_reported_where_they_are() {
    let bad = format!(
        "{GOOD}\n{}",
        r#"c['services'] = [
    reporters.MailNotifier(fromaddr='not an address', extraRecipients=['nobody'],
        generators=[reporters.BuildStatusGenerator(mode=('all',)),
                    reporters.BuildStatusGenerator(mode='sometimes'),
                    reporters.BuildStatusGenerator(builders=['a'], tags=['b'],
                        message_formatter=reporters.MessageFormatter(template='{% if %}'))]),
    reporters.HttpStatusPush(serverUrl='http://x/'),
    reporters.HttpStatusPush(serverUrl='ftp://x'),
    reporters.HttpStatusPush(serverUrl='http://y'),
    reporters.GitHubStatusPush(context='ci'),
    reporters.BitbucketStatusPush(),
    reporters.MatrixStatusPush('matrix.example.org', 't', '!r:example.org'),
    reporters.IRC(host='irc.example.org', nick='bb', channels=['#ok', 'nochan'],
        notify_events=['started', 'bogus', 'failureToSuccess', 'successToSuccess'],
        authz={'force': ['tester']}, allowForce=True),
]
"#
    );
    let text = load_str("master.star", &bad).unwrap_err().to_string();
    for expected in [
        "fromaddr \"not an address\" is not a valid email address",
        "extra recipient nobody is not a valid email",
        "mode 'all' is not valid in a list",
        "mode \"sometimes\" is not one of change, failing",
        "a generator takes builders or tags, not both",
        "the message formatter's template is not a valid template",
        "serverUrl \"http://x/\" must not end with '/'",
        "serverUrl \"ftp://x\" is not an http:// or https:// URL",
        "two reporters are named 'HttpStatusPush_BuildStatusGenerator'",
        "GitHubStatusPush needs token",
        "BitbucketStatusPush needs either auth=(user, app password) or oauth_key and oauth_secret",
        "MatrixStatusPush: \"matrix.example.org\" is not an http:// or https:// URL",
        "IRC: \"nochan\" is not a channel name",
        "IRC: notify event \"bogus\" is not one of",
        "IRC: notify event \"successToSuccess\" is not one of",
        "IRC: allowForce and authz exclude each other",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // A formatter's misspelt keyword fails at its call.
    let typo = load_str(
        "master.star",
        &format!("{GOOD}\nc['services'] = [reporters.MailNotifier('a@b.c', generators=[reporters.BuildStatusGenerator(message_formater=None)])]\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(typo.contains("message_formater"), "{typo}");
    assert!(typo.contains("master.star:"), "{typo}");
}

#[test]
fn the_briefs_status_targets_work_as_written_with_a_warning_each() {
    use crate::{GeneratorKind, ReporterKind};
    // The brief's status chapter, its imports deleted.
    let source = format!(
        "{}\n{}",
        GOOD.replace("c['www'] = {'port': 8010}", ""),
        r##"
c['status'] = []
c['status'].append(html.WebStatus(http_port=8011, allowForce=False))
m = mail.MailNotifier(fromaddr="buildbot@localhost",
                      extraRecipients=["builds@lists.example.com"],
                      sendToInterestedUsers=False)
c['status'].append(m)
c['status'].append(words.IRC(host="irc.example.com", nick="bb",
                             channels=[{"channel": "#example1"},
                                       {"channel": "#example2",
                                        "password": "somesecretpassword"}]))
pbl = buildbot.status.client.PBListener(port=9988, user="u", passwd="p")
c['status'].append(pbl)
sp = buildbot.status.status_push.HttpStatusPush(
        serverUrl="http://example.com/submit")
c['status'].append(sp)

def gerritReviewCB(builderName, build, result, status, arg):
    if result == RETRY:
        return None, 0, 0
    message =  "Buildbot finished compiling your patchset\n"
    message += "on configuration: %s\n" % builderName
    message += "The result is: %s\n" % Results[result].upper()
    return message, (result == SUCCESS or -1), 0

Results = buildbot.status.builder.Results
SUCCESS = buildbot.status.builder.SUCCESS
RETRY = buildbot.status.builder.RETRY
c['status'].append(status_gerrit.GerritStatusPush('127.0.0.1', 'buildbot',
                                    reviewCB=gerritReviewCB,
                                    reviewArg=c['buildbotURL'] if 'buildbotURL' in c else None))
"##
    );
    let c = load_str("master.star", &source).unwrap();
    assert_eq!(c.www.port, Some(8011));
    assert!(c.www.authz.is_some(), "allowForce=False forbids forcing");
    let classes: Vec<&str> = c.reporters.iter().map(|r| r.kind.class()).collect();
    assert_eq!(
        classes,
        ["MailNotifier", "IRC", "HttpStatusPush", "GerritStatusPush"]
    );
    let ReporterKind::Irc(irc) = &c.reporters[1].kind else {
        panic!()
    };
    assert_eq!(
        irc.channels,
        [
            ("#example1".to_string(), None),
            (
                "#example2".to_string(),
                Some("somesecretpassword".to_string())
            )
        ]
    );
    let ReporterKind::Mail(m) = &c.reporters[0].kind else {
        panic!()
    };
    assert!(!m.send_to_interested_users);
    assert!(matches!(
        &c.reporters[3].generators[0].kind,
        GeneratorKind::Gerrit { callback: Some(cb), .. } if cb.call.is_some()
    ));
    let warnings: Vec<&str> = c.warnings.iter().map(|w| w.message.as_str()).collect();
    for expected in [
        "html.WebStatus is the 0.8 spelling; write c['www']",
        "MailNotifier is a reporter in Buildbot 4; write c['services'] = [reporters.MailNotifier(…)]",
        "words.IRC is a reporter in Buildbot 4",
        "PBListener is ignored",
        "HttpStatusPush is a reporter in Buildbot 4",
        "reviewCB, startCB and summaryCB are the 0.8 spellings",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(expected)),
            "{expected:?} missing from {warnings:#?}"
        );
    }
}

#[test]
fn buildbot_0_8_names_load_with_warnings_naming_the_modern_ones() {
    let src = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}}
c['slaves'] = [BuildSlave('s1', 'pw'), buildslave.BuildSlave('s2', 'pw')]
f = util.BuildFactory([steps.FileUpload(slavesrc='out.bin', masterdest='up/out.bin')])
c['builders'] = [util.BuilderConfig(name='b', slavenames=['s1', 's2'], slavebuilddir='bdir', factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
c['mergeRequests'] = False
"#;
    let c = load_str("master.star", src).unwrap();
    let names: Vec<&str> = c.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["s1", "s2"]);
    let b = &c.builders[0];
    assert_eq!(b.workernames, ["s1", "s2"]);
    assert_eq!(b.workerbuilddir, "bdir");
    let StepKind::FileUpload { workersrc, .. } = &b.steps[0].kind else {
        panic!("not an upload: {:?}", b.steps[0].kind)
    };
    assert!(
        format!("{workersrc:?}").contains("out.bin"),
        "{workersrc:?}"
    );
    assert_eq!(c.collapse_requests, crate::Collapse::Never);
    let warnings: Vec<String> = c
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.location.line, w.message))
        .collect();
    for want in [
        "5: c['slaves'] is Buildbot 0.8's name: write c['workers']",
        "5: BuildSlave is Buildbot 0.8's name: write Worker",
        "6: FileUpload(): 'slavesrc' is Buildbot 0.8's name: write 'workersrc'",
        "7: BuilderConfig(): 'slavenames' is Buildbot 0.8's name: write 'workernames'",
        "7: BuilderConfig(): 'slavebuilddir' is Buildbot 0.8's name: write 'workerbuilddir'",
        "9: c['mergeRequests'] is Buildbot 0.8's name: write c['collapseRequests']",
    ] {
        assert!(
            warnings.iter().any(|w| w == want),
            "{want} not in {warnings:#?}"
        );
    }

    // The old port key means Buildbot's PB protocol; a key set under both names is an error.
    let both = "BuildmasterConfig = {'slaves': [], 'workers': [], 'slavePortnum': 9989}\n";
    let err = load_str("master.star", both).unwrap_err().to_string();
    assert!(
        err.contains("c['slaves'] and c['workers'] are both set"),
        "{err}"
    );
    let old_port = "BuildmasterConfig = {'slavePortnum': 9989}\n";
    let c = load_str("master.star", old_port).unwrap();
    assert_eq!((c.worker_ports[0].port, c.worker_ports[0].pb), (9989, true));
}

#[test]
fn www_settings_for_the_front_end_are_read_and_a_theme_cannot_break_out_of_its_style() {
    let src = "BuildmasterConfig = {'www': {'port': 8010, 'default_page': 'console', 'debug': True, \
               'jsonp': True, 'ws_ping_interval': 30, 'project_widgets': [{'type': 'builders'}], \
               'theme': {'bb-link-color': '#337ab7'}}}\n";
    let c = load_str("master.star", src).unwrap();
    assert_eq!(c.www.ws_ping_interval, 30);
    assert_eq!(
        c.www.frontend.get("default_page"),
        Some(&PropertyValue::Str("console".into()))
    );
    assert_eq!(
        c.www.frontend.get("debug"),
        Some(&PropertyValue::Bool(true))
    );
    assert!(c.www.frontend.contains_key("project_widgets"));
    assert_eq!(c.www.theme["bb-link-color"], "#337ab7");

    let bad = "BuildmasterConfig = {'www': {'theme': {'bb-link-color': 'red;} body {display:none'}, \
               'ws_ping_interval': -1}}\n";
    let err = load_str("master.star", bad).unwrap_err().to_string();
    assert!(err.contains("is not a plain CSS value"), "{err}");
    assert!(
        err.contains("ws_ping_interval'] must be a number of seconds"),
        "{err}"
    );
}

#[test]
fn a_misspelled_keyword_key_or_setting_gets_a_did_you_mean() {
    let bad_keyword = "BuildmasterConfig = {}\nc = BuildmasterConfig\n\
        c['builders'] = [util.BuilderConfig(name='b', workernmes=['w'], factory=util.BuildFactory())]\n";
    let err = load_str("master.star", bad_keyword)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected keyword argument 'workernmes'; did you mean 'workernames'?"),
        "{err}"
    );
    let bad_step =
        "BuildmasterConfig = {}\nx = steps.ShellCommand(command='x', haltOnFaliure=True)\n";
    let err = load_str("master.star", bad_step).unwrap_err().to_string();
    assert!(err.contains("did you mean 'haltOnFailure'?"), "{err}");
    let bad_key = "BuildmasterConfig = {'schedulrs': [], 'www': {'prot': 8010}}\n";
    let err = load_str("master.star", bad_key).unwrap_err().to_string();
    assert!(
        err.contains("unknown configuration key c['schedulrs']; did you mean 'schedulers'?"),
        "{err}"
    );
    assert!(
        err.contains("unknown c['www'] setting prot; did you mean 'port'?"),
        "{err}"
    );
    // A name nothing resembles gets no guess.
    let far = "BuildmasterConfig = {'zzzzzz': 1}\n";
    let err = load_str("master.star", far).unwrap_err().to_string();
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn cross_checks_point_at_the_object_at_fault_and_multi_master_relaxes_them_as_buildbot_does() {
    let src = "BuildmasterConfig = {}\nc = BuildmasterConfig\n\
               c['workers'] = [worker.Worker('linux', 'p')]\n\
               c['builders'] = [\n    util.BuilderConfig(name='a', workernames=['linux'], factory=util.BuildFactory()),\n    \
               util.BuilderConfig(name='b', workernames=['linx'], factory=util.BuildFactory()),\n]\n\
               c['schedulers'] = [\n    schedulers.ForceScheduler(name='f', builderNames=['a', 'elsewhere']),\n]\n";
    let text = load_str("master.star", src).unwrap_err().to_string();
    assert!(
        text.contains(
            "master.star:6:5: error: builder 'b' uses unknown worker 'linx'; did you mean 'linux'?"
        ),
        "{text}"
    );
    assert!(
        text.contains("master.star:9:5: error: scheduler 'f' names unknown builder 'elsewhere'"),
        "{text}"
    );
    let multi = src.replace(
        "c['workers'] = [worker.Worker('linux', 'p')]",
        "c['workers'] = [worker.Worker('linux', 'p'), worker.Worker('linx', 'p')]\nc['multiMaster'] = True",
    );
    let c = load_str("master.star", &multi).unwrap();
    assert!(c.multi_master);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let single = multi.replace("c['multiMaster'] = True", "");
    let text = load_str("master.star", &single).unwrap_err().to_string();
    assert!(text.contains("names unknown builder 'elsewhere'"), "{text}");
    assert!(
        text.contains("master.star:7:5: warning: builder 'b' has no scheduler to drive it"),
        "{text}"
    );
}

#[test]
fn identical_warnings_are_said_once_with_a_count_and_errors_say_error_once() {
    let mut src = String::from(
        "BuildmasterConfig = {}\nc = BuildmasterConfig\nc['workers'] = [worker.Worker('w1', 'p')]\nc['builders'] = [\n",
    );
    for i in 0..12 {
        src.push_str(&format!(
            "    util.BuilderConfig(name='b{i}', workernames=['w1'], factory=util.BuildFactory(), slavebuilddir='d{i}'),\n"
        ));
    }
    src.push_str("]\nc['nope'] = 1\n");
    let text = load_str("master.star", &src).unwrap_err().to_string();
    let lines: Vec<&str> = text.lines().collect();
    let legacy: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("'slavebuilddir' is Buildbot 0.8's name"))
        .collect();
    assert_eq!(legacy.len(), 1, "{text}");
    assert!(
        legacy[0].starts_with("master.star:5:")
            && legacy[0]
                .ends_with("(11 more like this, at line 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, …)"),
        "{text}"
    );
    assert!(!text.contains("error: error"), "{text}");
    let typo = load_str(
        "master.star",
        "BuildmasterConfig = {}\nx = steps.ShellComand()\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        typo.starts_with("master.star:2:5: error: steps.ShellComand is missing from kiln; did you mean steps.ShellCommand?\n  2 | x = steps.ShellComand()"),
        "{typo}"
    );
    assert!(!typo.contains("prelude"), "{typo}");
}

/// What configuration functions read of Buildbot's objects, and objects given extra attributes.
#[test]
fn objects_take_extra_attributes_and_functions_read_buildbot_s_attributes() {
    let src = r#"
BuildmasterConfig = {}
c = BuildmasterConfig
w = worker.Worker('w1', 'p')
w.max_builds = 3
w.notes = 'kept'
f = util.BuildFactory()
f.addStep(steps.ShellCommand(command='true'))
f.useProgress = False
f.addStep(steps.ShellCommand(command='false'))
b = util.BuilderConfig(name='b', workernames=['w1'], factory=f)
b.team = 'infra'
c['workers'] = [w]
c['builders'] = [b]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
def important(change):
    return change.properties.getProperty('important', False) and change.properties.hasProperty('important')
c['properties'] = {'notes': w.notes, 'team': b.team}
c['change_source'] = []
KEEP = important
"#;
    let c = match load_str("master.star", src) {
        Ok(c) => c,
        Err(d) => panic!("{d}"),
    };
    assert_eq!(c.workers[0].max_builds, Some(3));
    assert_eq!(c.builders[0].steps.len(), 2);
    assert_eq!(
        c.properties.get("team"),
        Some(&PropertyValue::Str("infra".into()))
    );
}

/// The REST API's bounds are read from `c['www']`, and a bad one is an error that names it.
#[test]
fn api_limits_are_read_and_checked() {
    let ok = load_str("master.star", "BuildmasterConfig = {}\n").unwrap();
    assert_eq!(
        (ok.www.api_timeout, ok.www.api_large_queries),
        (
            crate::model::DEFAULT_API_TIMEOUT,
            crate::model::DEFAULT_API_LARGE_QUERIES
        )
    );
    let set = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'api_timeout': 5, 'api_large_queries': 4}}\n",
    )
    .unwrap();
    assert_eq!((set.www.api_timeout, set.www.api_large_queries), (5, 4));
    let text = load_str(
        "master.star",
        "BuildmasterConfig = {'www': {'api_timeout': 0}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("master.star:1:")
            && text.contains("c['www']['api_timeout'] must be a positive number of seconds"),
        "{text}"
    );
}
