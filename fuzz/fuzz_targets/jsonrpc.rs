//! A JSON-RPC request body as a control endpoint reads it; the parameters of a sound envelope
//! are then read as a `force` call's, against a force scheduler with every kind of field.
#![no_main]

use std::sync::OnceLock;

const FORM: &str = r#"
c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w1', 'p'), worker.Worker('w2', 'p')]
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1', 'w2'],
    factory=util.BuildFactory([steps.ShellCommand(command='true')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'],
    username=util.UserNameParameter(label='you', need_email=True),
    reason=util.StringParameter(name='reason', required=True, regex='^[a-z ]*$', maxsize=40),
    codebases=[util.CodebaseParameter('', patch=util.PatchParameter()),
               util.CodebaseParameter('lib', branch=util.ChoiceStringParameter(name='branch',
                   choices=['main', 'next'], strict=True))],
    properties=[util.IntParameter(name='jobs', default=2),
                util.BooleanParameter(name='clean'),
                util.TextParameter(name='notes'),
                util.FixedParameter(name='fixed', default='x'),
                util.ChoiceStringParameter(name='tags', choices=['a', 'b'], multiple=True),
                util.NestedParameter(name='opts', fields=[util.StringParameter(name='flag'),
                    util.NestedParameter(name='', fields=[util.IntParameter(name='depth')])]),
                util.AnyPropertyParameter('extra'),
                util.WorkerChoiceParameter(),
                util.InheritBuildParameter(name='inherit', label='from',
                    compatible_builds=lambda master, builder: [])])]
"#;

fn scheduler() -> &'static kiln_config::ForceSchedulerConfig {
    static CONFIG: OnceLock<kiln_config::MasterConfig> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        kiln_config::load_str("master.star", FORM).expect("the fuzzed form's configuration")
    });
    config.force_schedulers().next().expect("a force scheduler")
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(params) = kiln_www::fuzzing::jsonrpc(data) {
        kiln_master::fuzzing::force_form(scheduler(), &params);
    }
});
