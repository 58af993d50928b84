//! What the IRC bot says about builds, in Buildbot's words: results with mIRC colours, build
//! links, and which events a finished build is.

use kiln_core::Results;

/// Buildbot's words for a result.
pub fn result_words(r: Results) -> &'static str {
    match r {
        Results::Success => "completed successfully",
        Results::Warnings => "completed with warnings",
        Results::Failure => "failed",
        Results::Skipped => "was skipped",
        Results::Exception => "stopped with exception",
        Results::Retry => "has been retried",
        Results::Cancelled => "was cancelled",
    }
}

/// The mIRC colour of a result.
fn colour(r: Results) -> u8 {
    match r {
        Results::Success => 3,
        Results::Warnings => 8,
        Results::Failure => 4,
        Results::Skipped => 12,
        Results::Exception => 6,
        Results::Retry => 11,
        Results::Cancelled => 13,
    }
}

/// `text` in the result's colour, when colours are on.
pub fn coloured(text: &str, r: Results, colours: bool) -> String {
    if colours {
        format!("\x03{}{text}\x0f", colour(r))
    } else {
        text.to_string()
    }
}

/// `[#4](url)`: a build's number, linked.
pub fn build_link(number: i64, url: &str) -> String {
    format!("[#{number}]({url})")
}

/// The line that announces a finished build.
pub fn finished_line(
    number: i64,
    url: &str,
    builder: &str,
    r: Results,
    state: &str,
    colours: bool,
) -> String {
    let words = coloured(result_words(r), r, colours);
    let tail = if r == Results::Success {
        ".".to_string()
    } else {
        format!(": {state}")
    };
    format!(
        "Build {} of `{builder}` {words}{tail}",
        build_link(number, url)
    )
}

/// How bad a result is, for `better` and `worse`.
fn severity(r: Results) -> u8 {
    match r {
        Results::Skipped => 0,
        Results::Success => 1,
        Results::Warnings => 2,
        Results::Failure => 3,
        Results::Cancelled => 4,
        Results::Exception => 5,
        Results::Retry => 1,
    }
}

/// The events a finished build is, given the previous build's result: `finished`, its result's
/// name, and the transitions (`problem`, `recovery`, `better`, `worse`, `failureToSuccess`, …).
pub fn finished_events(r: Results, previous: Option<Results>) -> Vec<String> {
    let mut events = vec!["finished".to_string(), r.name().to_string()];
    if let Some(p) = previous {
        let good = |x: Results| matches!(x, Results::Success | Results::Warnings);
        let bad = |x: Results| matches!(x, Results::Failure | Results::Exception);
        if good(p) && bad(r) {
            events.push("problem".into());
        }
        if bad(p) && good(r) {
            events.push("recovery".into());
        }
        if severity(r) < severity(p) {
            events.push("better".into());
        }
        if severity(r) > severity(p) {
            events.push("worse".into());
        }
        if p != r {
            let mut to = r.name().to_string();
            if let Some(first) = to.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            events.push(format!("{}To{to}", p.name()));
        }
    }
    events
}

/// `2 minutes`: a duration as people say it.
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    if n == 1 {
        format!("a {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_are_announced_in_buildbots_words() {
        assert_eq!(
            finished_line(4, "u", "fail", Results::Failure, "failed compile", false),
            "Build [#4](u) of `fail` failed: failed compile"
        );
        assert_eq!(
            finished_line(8, "u", "flip", Results::Success, "", true),
            "Build [#8](u) of `flip` \x033completed successfully\x0f."
        );
        let e = finished_events(Results::Success, Some(Results::Failure));
        for x in [
            "finished",
            "success",
            "recovery",
            "better",
            "failureToSuccess",
        ] {
            assert!(e.contains(&x.to_string()), "{x} in {e:?}");
        }
        let e = finished_events(Results::Failure, Some(Results::Success));
        assert!(e.contains(&"problem".into()) && e.contains(&"worse".into()));
        assert_eq!(
            finished_events(Results::Failure, None),
            ["finished", "failure"]
        );
        assert_eq!(ago(1), "a second");
        assert_eq!(ago(150), "2 minutes");
    }
}
