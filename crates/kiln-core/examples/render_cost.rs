//! What rendering a build's step arguments costs: 50 steps, each a command of seven words (three
//! of them interpolated from properties, one with a default) and an environment of three
//! properties, rendered as the master renders them when each step starts. Prints the mean time
//! per whole build over many builds.
//!
//!     cargo run --release -p kiln-core --example render_cost

use std::time::Instant;

use kiln_core::render::Renderable;
use kiln_core::{Properties, PropertyValue};

fn lit(s: &str) -> Renderable {
    Renderable::Literal(PropertyValue::Str(s.into()))
}

fn interp(s: &str) -> Renderable {
    Renderable::Interpolate {
        format: s.into(),
        kwargs: Vec::new(),
    }
}

fn prop(name: &str) -> Renderable {
    Renderable::Property {
        name: name.into(),
        default: None,
        default_when_false: false,
    }
}

fn main() {
    let mut props = Properties::new();
    for (k, v) in [
        ("buildername", "runtests"),
        ("branch", "main"),
        ("revision", "0123456789abcdef0123456789abcdef01234567"),
        ("workername", "w1"),
        ("builddir", "/var/lib/worker/runtests"),
        ("project", "kiln"),
    ] {
        props.set(k, v, "Build");
    }
    for i in 0..24 {
        props.set(format!("extra{i}"), PropertyValue::Int(i), "Builder");
    }
    let steps: Vec<(Renderable, Renderable)> = (0..50)
        .map(|i| {
            let command = Renderable::List(vec![
                lit("make"),
                lit("-j2"),
                interp("BUILDER=%(prop:buildername)s"),
                interp("REV=%(prop:revision)s"),
                interp("TARGET=%(prop:target:-all)s"),
                lit(&format!("step{i}")),
                interp("OUT=%(prop:builddir)s/out"),
            ]);
            let env = Renderable::Map(vec![
                ("BRANCH".into(), prop("branch")),
                ("WORKER".into(), prop("workername")),
                ("PROJECT".into(), prop("project")),
            ]);
            (command, env)
        })
        .collect();
    let builds = 2000;
    let started = Instant::now();
    let mut words = 0usize;
    for _ in 0..builds {
        for (command, env) in &steps {
            match (command.render(&props), env.render(&props)) {
                (Ok(PropertyValue::List(c)), Ok(_)) => words += c.len(),
                other => panic!("rendering failed: {other:?}"),
            }
        }
    }
    let per_build = started.elapsed().as_secs_f64() / builds as f64;
    assert_eq!(words, builds * 50 * 7);
    // Standard error: the measurement is printed as a report, not program output.
    eprintln!(
        "rendering a 50-step build: {:.1} µs per build (mean of {builds})",
        per_build * 1e6
    );
}
