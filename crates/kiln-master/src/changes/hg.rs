//! `HgPoller`: pulls the followed branches and bookmarks into a clone in its workdir and makes one
//! change per new changeset, oldest first. The first poll only records each head.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_config::HgPollerConfig;
use kiln_core::Properties;
use kiln_db::NewChange;

use super::command::run;

/// The last head seen of each branch or bookmark (`lastRev`).
pub type LastRev = BTreeMap<String, String>;

/// Each changeset on one line: fields JSON-encoded so none holds a tab or a newline.
const TEMPLATE: &str = "{node}\\t{date|hgdate}\\t{author|json}\\t{files|json}\\t{desc|json}\\n";

pub async fn poll(
    config: &HgPollerConfig,
    basedir: &Path,
    last: &mut LastRev,
    now: i64,
) -> Result<Vec<NewChange>, String> {
    let hg = config.hgbin.as_str();
    let workdir = basedir.join(&config.workdir);
    // Mercurial reads no user configuration here, so the output is always the plain one.
    let env = [("HGPLAIN", "1")];
    if !workdir.join(".hg").exists() {
        std::fs::create_dir_all(&workdir)
            .map_err(|e| format!("cannot create {}: {e}", workdir.display()))?;
        run(hg, &["init", "."], &workdir, &env).await?;
    }
    let mut args: Vec<String> = vec!["pull".into(), "--quiet".into()];
    for b in &config.branches {
        args.push("-b".into());
        args.push(b.clone());
    }
    for b in &config.bookmarks {
        args.push("-B".into());
        args.push(b.clone());
    }
    args.push(config.repourl.clone());
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    run(hg, &args_ref, &workdir, &env).await?;

    let first_poll = last.is_empty();
    let mut changes = Vec::new();
    let followed = config
        .branches
        .iter()
        .map(|b| (b, format!("max(branch({}))", quote(b))))
        .chain(
            config
                .bookmarks
                .iter()
                .map(|b| (b, format!("bookmark({})", quote(b)))),
        );
    for (name, revset) in followed {
        let head = run(
            hg,
            &["log", "-r", &revset, "--template", "{node}"],
            &workdir,
            &env,
        )
        .await?
        .trim()
        .to_string();
        if head.is_empty() || last.get(name) == Some(&head) {
            continue;
        }
        if !first_poll {
            let range = match last.get(name) {
                Some(old) => format!("ancestors({head}) and not ancestors({old})"),
                // A branch first seen: what no other followed head reaches.
                None => {
                    let others: Vec<String> =
                        last.values().map(|r| format!("ancestors({r})")).collect();
                    if others.is_empty() {
                        format!("ancestors({head})")
                    } else {
                        format!("ancestors({head}) and not ({})", others.join(" or "))
                    }
                }
            };
            let revset = format!("sort({range}, rev)");
            let out = run(
                hg,
                &["log", "-r", &revset, "--template", TEMPLATE],
                &workdir,
                &env,
            )
            .await?;
            for line in out.lines().filter(|l| !l.is_empty()) {
                changes.push(change(config, name, line, now)?);
            }
        }
        last.insert(name.clone(), head);
    }
    Ok(changes)
}

fn change(
    config: &HgPollerConfig,
    branch: &str,
    line: &str,
    now: i64,
) -> Result<NewChange, String> {
    let fields: Vec<&str> = line.splitn(5, '\t').collect();
    let [node, date, author, files, desc] = fields[..] else {
        return Err(format!("unexpected hg log output: {line:?}"));
    };
    let text = |s: &str| serde_json::from_str::<String>(s).map_err(|e| format!("{e} in {s:?}"));
    let files: Vec<String> =
        serde_json::from_str(files).map_err(|e| format!("{e} in {files:?}"))?;
    let when = match config.use_timestamps {
        true => date
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
            .map_or(now, |t| t as i64),
        false => now,
    };
    Ok(NewChange {
        vcs: Some("hg".into()),
        author: text(author)?,
        committer: None,
        comments: text(desc)?,
        branch: Some(branch.to_string()),
        revision: Some(node.to_string()),
        revlink: config.revlink.as_ref().map(|t| t.replace("%s", node)),
        when_timestamp: when,
        category: config.common.category.clone(),
        repository: config.repourl.clone(),
        codebase: String::new(),
        project: config.common.project.clone(),
        files,
        properties: Properties::new(),
    })
}

/// A name as a revset string literal.
fn quote(name: &str) -> String {
    format!("'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}
