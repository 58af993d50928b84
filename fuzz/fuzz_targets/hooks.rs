//! A change hook request: the first byte picks the dialect and the second the event the forge
//! names in its headers; the rest is the query string (for the base dialect) or the body.
#![no_main]

const EVENTS: &[&str] = &[
    "push",
    "pull_request",
    "ping",
    "repo:push",
    "pullrequest:created",
    "repo:refs_changed",
    "pr:opened",
    "Push Hook",
    "Tag Push Hook",
    "Merge Request Hook",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [dialect, event, rest @ ..] = data else {
        return;
    };
    let dialects = kiln_www::fuzzing::DIALECTS;
    let dialect = dialects[usize::from(*dialect) % dialects.len()];
    let event = EVENTS[usize::from(*event) % EVENTS.len()].as_bytes();
    let headers: &[(&str, &[u8])] = &[
        ("Content-Type", b"application/json"),
        ("X-GitHub-Event", event),
        ("X-Gitea-Event", event),
        ("X-Gitlab-Event", event),
        ("X-Event-Key", event),
    ];
    let query = std::str::from_utf8(rest).ok().filter(|_| dialect == "base");
    kiln_www::fuzzing::hook(dialect, query, headers, rest);
});
