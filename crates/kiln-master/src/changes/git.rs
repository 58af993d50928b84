//! `GitPoller`: lists the remote's refs, fetches the followed ones into a bare clone in its
//! workdir, and makes one change per new commit, as Buildbot does.
//!
//! New commits of a ref are those on its first-parent line that no other known ref reaches, oldest
//! first; refs known before are looked at before new ones. The first poll of a poller only
//! records where each ref is.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_config::{Data, Functions, GitBranches, GitPollerConfig};
use kiln_core::Properties;
use kiln_db::NewChange;

use super::command::run;

/// The last revision seen of each followed ref (`lastRev`, keyed by the full ref name).
pub type LastRev = BTreeMap<String, String>;

pub async fn poll(
    config: &GitPollerConfig,
    basedir: &Path,
    functions: &Functions,
    last: &mut LastRev,
    now: i64,
) -> Result<Vec<NewChange>, String> {
    let git = config.gitbin.as_str();
    let workdir = basedir.join(&config.workdir);
    if !workdir.join("HEAD").exists() {
        std::fs::create_dir_all(&workdir)
            .map_err(|e| format!("cannot create {}: {e}", workdir.display()))?;
        run(git, &["init", "--bare", "--quiet"], &workdir, &[]).await?;
    }
    let listing = run(
        git,
        &["ls-remote", "--refs", &config.repourl],
        &workdir,
        &[],
    )
    .await?;
    let mut remote: BTreeMap<String, String> = BTreeMap::new();
    for line in listing.lines() {
        if let Some((sha, name)) = line.split_once('\t') {
            remote.insert(name.to_string(), sha.to_string());
        }
    }
    let wanted: Vec<(String, String)> = remote
        .iter()
        .filter(|(name, _)| follows(config, functions, name))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    let mut moved: Vec<&(String, String)> = wanted
        .iter()
        .filter(|(name, sha)| last.get(name) != Some(sha))
        .collect();
    // Refs known before come first, so a new branch's commits are those no known ref (at its
    // new position) reaches: commits pushed to main and then branched are main's.
    moved.sort_by_key(|(name, _)| !last.contains_key(name));
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    // Fetch the moved refs under a namespace of this repository's own.
    let prefix = format!("refs/kiln/{}", encode(&config.repourl));
    let mut args = vec![
        "fetch".to_string(),
        "--quiet".into(),
        config.repourl.clone(),
    ];
    for (name, _) in &moved {
        args.push(format!("+{name}:{prefix}/{}", strip_refs(name)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(git, &args, &workdir, &[]).await?;

    let first_poll = last.is_empty();
    let mut changes = Vec::new();
    for (name, sha) in moved {
        if !first_poll {
            let known: Vec<String> = last.values().map(|r| format!("^{r}")).collect();
            let mut args = vec![
                "log",
                "--ignore-missing",
                "--first-parent",
                "--format=%H",
                sha.as_str(),
            ];
            args.extend(known.iter().map(String::as_str));
            args.push("--");
            let revs = run(git, &args, &workdir, &[]).await?;
            let mut revs: Vec<&str> = revs.lines().filter(|l| !l.is_empty()).collect();
            revs.reverse();
            if revs.is_empty() && config.build_pushes_with_no_commits {
                revs.push(sha.as_str());
            }
            changes.extend(describe(config, &workdir, name, &revs, now).await?);
        }
        last.insert(name.clone(), sha.clone());
    }
    Ok(changes)
}

/// Whether the poller follows a ref.
fn follows(config: &GitPollerConfig, functions: &Functions, name: &str) -> bool {
    match &config.branches {
        GitBranches::All => name.starts_with("refs/heads/"),
        GitBranches::Tags => name.starts_with("refs/tags/"),
        GitBranches::Named(names) => names.iter().any(|b| {
            b == name || (!b.starts_with("refs/") && name.strip_prefix("refs/heads/") == Some(b))
        }),
        GitBranches::Function(f) => match functions.call(*f, &[Data::Str(name.into())], &[]) {
            Ok(d) => d.truthy(),
            Err(e) => {
                tracing::error!(poller = %config.common.name, ref_name = %name, "the branches function failed; the ref is not followed:\n{e}");
                false
            }
        },
    }
}

/// Reads the commits in one `git log` and makes their changes.
async fn describe(
    config: &GitPollerConfig,
    workdir: &Path,
    ref_name: &str,
    revs: &[&str],
    now: i64,
) -> Result<Vec<NewChange>, String> {
    if revs.is_empty() {
        return Ok(Vec::new());
    }
    // One record per commit: a record separator, then NUL-separated fields, then the files.
    let mut args = vec![
        "log",
        "--no-walk=unsorted",
        "--format=%x1e%H%x00%ct%x00%aN <%aE>%x00%cN <%cE>%x00%B%x00",
        "--name-only",
        "--diff-merges=first-parent",
    ];
    args.extend_from_slice(revs);
    args.push("--");
    let out = run(&config.gitbin, &args, workdir, &[]).await?;
    let branch = ref_name
        .strip_prefix("refs/heads/")
        .unwrap_or(ref_name)
        .to_string();
    let mut changes = Vec::new();
    for record in out.split('\u{1e}').filter(|r| !r.trim().is_empty()) {
        let fields: Vec<&str> = record.splitn(6, '\0').collect();
        let [rev, time, author, committer, body, files] = fields[..] else {
            return Err(format!("unexpected git log output: {record:?}"));
        };
        let when = match config.use_timestamps {
            true => time.trim().parse().unwrap_or(now),
            false => now,
        };
        changes.push(NewChange {
            vcs: Some("git".into()),
            author: author.to_string(),
            committer: Some(committer.to_string()),
            comments: body.trim_end().to_string(),
            branch: Some(branch.clone()),
            revision: Some(rev.to_string()),
            revlink: None,
            when_timestamp: when,
            category: config.common.category.clone(),
            repository: config.repourl.clone(),
            codebase: config.codebase.clone(),
            project: config.common.project.clone(),
            files: files
                .lines()
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
            properties: Properties::new(),
        });
    }
    Ok(changes)
}

fn strip_refs(name: &str) -> &str {
    name.strip_prefix("refs/").unwrap_or(name)
}

/// A repository URL as one safe ref name component.
fn encode(url: &str) -> String {
    url.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
