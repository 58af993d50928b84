//! The bot's commands, as Buildbot's bot answers them. Commands that change something (`force`,
//! `stop`, `join`, `leave`, `shutdown`) are refused unless the bot's `authz` allows the nick;
//! changing a channel's notifications or muting the bot there takes a channel operator.

use kiln_api::{Actor, Shutdown};
use kiln_config::{IrcAllow, irc_event_valid};
use kiln_core::{BuildId, Results};
use kiln_db::listing::{Page, SqlValue};

use super::{Bot, Target, is_channel, words};

/// The commands and what each does, for `help` and `commands`.
const COMMANDS: &[(&str, &str, &str)] = &[
    ("commands", "list available commands", "commands"),
    (
        "force",
        "force a build",
        "force build [--codebase=CODEBASE] [--branch=branch] [--revision=revision] [--props=prop1=val1,prop2=val2...] _which_ _reason_",
    ),
    ("hello", "say hello", "hello"),
    ("help", "give help for a command", "help [command]"),
    ("join", "join a channel", "join #channel"),
    (
        "last",
        "list last build status for a builder",
        "last [builder]",
    ),
    ("leave", "leave a channel", "leave #channel"),
    (
        "list",
        "list configured builders or workers",
        "list [all|N] builders|workers|changes",
    ),
    ("mute", "stop announcing builds here", "mute"),
    (
        "notify",
        "notify me about build events",
        "notify on|off|list [EVENT...]",
    ),
    (
        "shutdown",
        "shutdown the buildbot master",
        "shutdown check|start|stop|now",
    ),
    ("source", "where the source code is", "source"),
    (
        "status",
        "list status of a builder (or all builders)",
        "status [builder|all]",
    ),
    (
        "stop",
        "stop a running build",
        "stop build _which_ _reason_",
    ),
    ("unmute", "announce builds here again", "unmute"),
    ("version", "show kiln's version", "version"),
    (
        "watch",
        "announce the completion of an active build",
        "watch _which_",
    ),
];

/// Commands that change the master, refused unless `authz` allows them.
const DANGEROUS: &[&str] = &["force", "stop", "join", "leave", "shutdown"];

impl Bot {
    /// Whether `nick` may run `command`, by the bot's `authz`: `'*'` first, then the command's
    /// own entry, then `'!'` (dangerous commands) or `''` (the others); by default the others
    /// are everyone's and the dangerous ones nobody's.
    fn may(&self, nick: &str, command: &str) -> bool {
        let dangerous = DANGEROUS.contains(&command);
        let find = |key: &str| {
            self.config
                .authz
                .iter()
                .find(|(c, _)| c == key)
                .map(|(_, a)| a)
        };
        let rule = find("*")
            .or_else(|| find(command))
            .or_else(|| find(if dangerous { "!" } else { "" }));
        match rule {
            Some(IrcAllow::Everyone) => true,
            Some(IrcAllow::Nobody) => false,
            Some(IrcAllow::Nicks(nicks)) => nicks.iter().any(|n| n.eq_ignore_ascii_case(nick)),
            None => !dangerous,
        }
    }

    fn is_op(&self, channel: &str, nick: &str) -> bool {
        self.state()
            .ops
            .get(&channel.to_lowercase())
            .is_some_and(|ops| ops.contains(&nick.to_lowercase()))
    }

    /// `nick`'s answer to `text`, said in `reply_to` (a channel, or `nick` in private).
    pub(super) async fn command(&self, nick: &str, reply_to: &str, text: &str) -> Vec<String> {
        let mut words_in = text.split_whitespace();
        let Some(command) = words_in.next().map(str::to_lowercase) else {
            return Vec::new();
        };
        let args: Vec<&str> = words_in.collect();
        let known = COMMANDS.iter().any(|(c, _, _)| *c == command);
        if known && !self.may(nick, &command) {
            return vec![format!("Thou shall not pass, {nick}!!!")];
        }
        let who = if is_channel(reply_to) {
            format!("{nick} on {reply_to}")
        } else {
            nick.to_string()
        };
        match command.as_str() {
            "help" => help(args.first().copied()),
            "commands" => vec![format!(
                "Buildbot commands: {}",
                COMMANDS
                    .iter()
                    .map(|(c, _, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            "version" => vec![format!(
                "This is kiln-{} at your service",
                env!("CARGO_PKG_VERSION")
            )],
            "source" => vec![format!(
                "kiln's sources come with it; this master is at {}",
                crate::data::site_url(&*self.services.read)
            )],
            "hello" => vec!["Hello!".into()],
            "list" => self.list(&args).await,
            "status" => self.status(args.first().copied(), false).await,
            "last" => self.status(args.first().copied(), true).await,
            "watch" => self.watch(args.first().copied(), reply_to).await,
            "notify" => self.notify(nick, reply_to, &args).await,
            "mute" | "unmute" => self.mute(nick, reply_to, command == "mute"),
            "force" => self.force(&who, &args).await,
            "stop" => self.stop(&who, &args).await,
            "join" | "leave" => self.join_leave(&command, &args).await,
            "shutdown" => self.shutdown(&args).await,
            other => {
                let mut out = vec![format!("I don't get this '{other}'...")];
                out.push(format!(
                    "Buildbot commands: {}",
                    COMMANDS
                        .iter()
                        .map(|(c, _, _)| *c)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                out
            }
        }
    }

    async fn list(&self, args: &[&str]) -> Vec<String> {
        let read = &*self.services.read;
        let config = read.config();
        let what = args.iter().rev().copied().next().unwrap_or_default();
        match what {
            "builders" => vec![format!(
                "I found the following builders: {}",
                config
                    .builders
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )],
            "workers" => vec![format!(
                "I found the following workers: {}",
                config
                    .workers
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )],
            "changes" => {
                let n = args
                    .first()
                    .and_then(|a| a.parse::<i64>().ok())
                    .unwrap_or(10)
                    .clamp(1, 50);
                let page = Page {
                    order: vec![("changeid", true)],
                    limit: Some(n),
                    ..Page::default()
                };
                match read.db().list_changes(&page).await {
                    Ok((changes, _)) => {
                        let mut out = vec!["I found the following recent changes:".to_string()];
                        for c in changes {
                            out.push(c.comments.lines().next().unwrap_or_default().to_string());
                            out.push(format!("Author: {}", c.author));
                            out.push(format!("Repository: {}", c.repository));
                            out.push(format!("Branch: {}", c.branch.unwrap_or_default()));
                            out.push(format!("Revision: {}", c.revision.unwrap_or_default()));
                        }
                        out
                    }
                    Err(e) => vec![format!("I could not read the changes: {e}")],
                }
            }
            _ => vec!["Try 'list [all|N] builders|workers|changes'.".into()],
        }
    }

    /// The builds running on a builder.
    async fn running(&self, builder: &str) -> Vec<crate::data::BuildInfo> {
        let read = &*self.services.read;
        let mut out = Vec::new();
        for id in read.running_builds() {
            if let Ok(Some(b)) =
                crate::data::load_build(read, id, crate::data::Needs::default()).await
                && b.builder.name == builder
            {
                out.push(b);
            }
        }
        out
    }

    /// `status` (each builder idle or running, with its last result) and `last` (each builder's
    /// last build).
    async fn status(&self, which: Option<&str>, last: bool) -> Vec<String> {
        let read = &*self.services.read;
        let config = read.config();
        let names: Vec<String> = match which.filter(|w| *w != "all") {
            Some(w) => {
                if !config.builders.iter().any(|b| b.name == w) {
                    return vec![format!("no such builder '{w}'")];
                }
                vec![w.to_string()]
            }
            None => config.builders.iter().map(|b| b.name.clone()).collect(),
        };
        let ids = read.builder_ids();
        let now = read.now();
        let colours = self.config.use_colors;
        let mut out = Vec::new();
        for name in names {
            if !last {
                let running = self.running(&name).await;
                if !running.is_empty() {
                    let builds: Vec<String> = running
                        .iter()
                        .map(|b| {
                            format!(
                                "build {} ({})",
                                words::build_link(b.row.number, &b.url),
                                b.row.state_string
                            )
                        })
                        .collect();
                    out.push(format!("`{name}`: running: {}", builds.join(", ")));
                    continue;
                }
            }
            let Some(id) = ids.get(&name) else {
                continue;
            };
            let page = Page {
                order: vec![("number", true)],
                limit: Some(1),
                ..Page::eq("builderid", SqlValue::Int(id.0)).and(
                    "complete_at",
                    kiln_db::listing::FilterOp::Ne,
                    SqlValue::Null,
                )
            };
            let newest = read
                .db()
                .list_builds(&page)
                .await
                .ok()
                .and_then(|(b, _)| b.into_iter().next());
            let Some(b) = newest else {
                out.push(if last {
                    format!("`{name}`: no builds run since last restart")
                } else {
                    format!("`{name}`: idle")
                });
                continue;
            };
            let r = b
                .results
                .and_then(Results::from_code)
                .unwrap_or(Results::Exception);
            let when = words::ago(now - b.complete_at.unwrap_or(now));
            out.push(if last {
                let tail = if r == Results::Success {
                    String::new()
                } else {
                    format!(": {}", b.state_string)
                };
                format!(
                    "`{name}`: last build {} ({when} ago){tail}",
                    words::coloured(words::result_words(r), r, colours)
                )
            } else {
                format!(
                    "`{name}`: idle last build {when} ago, {}",
                    words::coloured(words::result_words(r), r, colours)
                )
            });
        }
        out
    }

    async fn watch(&self, which: Option<&str>, reply_to: &str) -> Vec<String> {
        let Some(builder) = which else {
            return help(Some("watch"));
        };
        let running = self.running(builder).await;
        if running.is_empty() {
            return vec!["There are no currently running builds.".into()];
        }
        let mut out = Vec::new();
        let mut state = self.state();
        for b in running {
            state.watching.push((b.row.id, reply_to.to_string()));
            out.push(format!(
                "Watching build {} of `{builder}` until it finishes...",
                words::build_link(b.row.number, &b.url)
            ));
        }
        out
    }

    async fn notify(&self, nick: &str, reply_to: &str, args: &[&str]) -> Vec<String> {
        let action = args.first().copied().unwrap_or("list");
        let events = &args[args.len().min(1)..];
        if action != "list" {
            if !matches!(action, "on" | "off") {
                return help(Some("notify"));
            }
            if is_channel(reply_to)
                && !self.is_op(reply_to, nick)
                && !self.explicitly_allowed(nick, "notify")
            {
                return vec![format!(
                    "Only channel operators can change notified events for this channel. And you, {nick}, are neither!"
                )];
            }
            if let Some(bad) = events.iter().find(|e| !irc_event_valid(e)) {
                return vec![format!(
                    "'{bad}' is not an event I know: {} or a transition such as failureToSuccess",
                    kiln_config::IRC_EVENTS.join(", ")
                )];
            }
        }
        let events = {
            let mut state = self.state();
            let target = state.targets.entry(reply_to.to_lowercase()).or_default();
            match action {
                "on" => target.events.extend(events.iter().map(|e| e.to_string())),
                "off" if events.is_empty() => target.events.clear(),
                "off" => {
                    for e in events {
                        target.events.remove(*e);
                    }
                }
                _ => {}
            }
            target.events.clone()
        };
        if action != "list" {
            self.save_notify_events().await;
        }
        if events.is_empty() {
            vec!["No events are being notified.".into()]
        } else {
            vec![format!(
                "The following events are being notified: {}.",
                events.into_iter().collect::<Vec<_>>().join(", ")
            )]
        }
    }

    /// Whether the bot's `authz` names `nick` for `command` itself.
    fn explicitly_allowed(&self, nick: &str, command: &str) -> bool {
        self.config.authz.iter().any(|(c, a)| {
            c == command
                && match a {
                    IrcAllow::Everyone => true,
                    IrcAllow::Nobody => false,
                    IrcAllow::Nicks(n) => n.iter().any(|n| n.eq_ignore_ascii_case(nick)),
                }
        })
    }

    fn mute(&self, nick: &str, reply_to: &str, mute: bool) -> Vec<String> {
        let command = if mute { "mute" } else { "unmute" };
        if is_channel(reply_to)
            && !self.is_op(reply_to, nick)
            && !self.explicitly_allowed(nick, command)
        {
            return vec![format!(
                "Only channel operators or explicitly allowed users can mute me here, {nick}... Blah, blah, blah..."
            )];
        }
        let mut state = self.state();
        let target = state.targets.entry(reply_to.to_lowercase()).or_default();
        let was = target.muted;
        target.muted = mute;
        match (mute, was) {
            (true, _) => vec!["Shutting up for now.".into()],
            (false, true) => vec!["I'm baaaaaaaaaaack!".into()],
            (false, false) => vec![
                "No one had told me to be quiet, but it's the thought that counts, right?".into(),
            ],
        }
    }

    async fn force(&self, who: &str, args: &[&str]) -> Vec<String> {
        if args.first() != Some(&"build") {
            return help(Some("force"));
        }
        let mut params = serde_json::Map::new();
        let mut rest = Vec::new();
        for a in &args[1..] {
            match a.split_once('=') {
                Some(("--branch", v)) => {
                    params.insert("branch".into(), v.into());
                }
                Some(("--revision", v)) => {
                    params.insert("revision".into(), v.into());
                }
                Some(("--codebase", v)) => {
                    params.insert("codebase".into(), v.into());
                }
                Some(("--props", v)) => {
                    for pair in v.split(',') {
                        if let Some((k, v)) = pair.split_once('=') {
                            params.insert(k.into(), v.into());
                        }
                    }
                }
                _ if a.starts_with("--") => return vec![format!("I don't know the option '{a}'")],
                _ => rest.push(*a),
            }
        }
        let Some((builder, reason)) = rest.split_first() else {
            return help(Some("force"));
        };
        let config = self.services.read.config();
        let Some(scheduler) = config
            .force_schedulers()
            .find(|s| s.builder_names.iter().any(|b| b == builder))
        else {
            return vec![format!("no force scheduler builds '{builder}'")];
        };
        params.insert("builderNames".into(), serde_json::json!([builder]));
        params.insert("owner".into(), who.into());
        let reason = format!("forced: by {who}: {}", reason.join(" "));
        params.insert(scheduler.reason.name.clone(), reason.into());
        match self
            .services
            .control
            .force(&Actor::Master, &scheduler.name, &params)
            .await
        {
            Ok(_) => vec!["Force build successfully requested.".into()],
            Err(e) => vec![format!("Force build failed: {e}")],
        }
    }

    async fn stop(&self, who: &str, args: &[&str]) -> Vec<String> {
        let (Some(&"build"), Some(builder)) = (args.first(), args.get(1)) else {
            return help(Some("stop"));
        };
        let reason = format!("stopped: by {who}: {}", args[2..].join(" "));
        let running = self.running(builder).await;
        if running.is_empty() {
            return vec!["Sorry, no build is currently running.".into()];
        }
        let mut out = Vec::new();
        for b in running {
            let id: BuildId = b.row.id;
            match self
                .services
                .control
                .stop_build(&Actor::Master, id, &reason)
                .await
            {
                Ok(_) => out.push(format!(
                    "Build {} of `{builder}` interrupted.",
                    words::build_link(b.row.number, &b.url)
                )),
                Err(e) => out.push(format!("I could not stop it: {e}")),
            }
        }
        out
    }

    async fn join_leave(&self, command: &str, args: &[&str]) -> Vec<String> {
        let Some(channel) = args.first().filter(|c| is_channel(c)) else {
            return help(Some(command));
        };
        let line = if command == "join" {
            format!("JOIN {channel}")
        } else {
            format!("PART {channel}")
        };
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match link {
            Some(tx) if tx.send(line).await.is_ok() => {
                let mut state = self.state();
                if command == "join" {
                    state
                        .targets
                        .entry(channel.to_lowercase())
                        .or_insert_with(|| Target {
                            events: self.config.notify_events.iter().cloned().collect(),
                            muted: false,
                        });
                    vec![format!("Joining {channel}")]
                } else {
                    state.targets.remove(&channel.to_lowercase());
                    vec![format!("Leaving {channel}")]
                }
            }
            _ => vec!["I am not connected.".into()],
        }
    }

    async fn shutdown(&self, args: &[&str]) -> Vec<String> {
        let (how, done, unchanged) = match args.first().copied() {
            Some("check") => {
                return vec![if self.services.read.shutting_down() {
                    "Status: buildbot is shutting down".into()
                } else {
                    "Status: buildbot is running".into()
                }];
            }
            Some("start") => (
                Shutdown::Clean,
                "Starting clean shutdown",
                "Already started",
            ),
            Some("stop") => (
                Shutdown::Cancel,
                "Stopping clean shutdown",
                "Nothing to stop",
            ),
            Some("now") => (Shutdown::Now, "Stopping buildbot", "Stopping buildbot"),
            _ => return vec!["try 'shutdown check|start|stop|now'".into()],
        };
        match self.services.control.shutdown(&Actor::Master, how).await {
            Ok(true) => vec![done.into()],
            Ok(false) => vec![unchanged.into()],
            Err(e) => vec![format!("I could not do that: {e}")],
        }
    }
}

fn help(command: Option<&str>) -> Vec<String> {
    match command {
        None => COMMANDS
            .iter()
            .map(|(c, what, _)| format!("{c} - {what}"))
            .collect(),
        Some(c) => match COMMANDS.iter().find(|(name, _, _)| *name == c) {
            Some((_, what, usage)) => vec![format!("Usage: {usage} - {what}")],
            None => vec![format!("No usage info for '{c}'")],
        },
    }
}
