//! `steps.Git`: an incremental checkout fetches into the working copy (cloning it the first
//! time); `fresh` and `clean` run `git clean` first (ignored files too for `fresh`). A named
//! branch is checked out as that branch. With `sshPrivateKey`, the key (and the known hosts) are
//! written beside the working directory for the step's commands and removed after it.

use kiln_config::GitConfig;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop, cmd};

/// The git command line with the step's `config` options.
fn git(g: &GitConfig, args: &[&str]) -> Vec<String> {
    let mut c = vec!["git".to_string()];
    for (k, v) in &g.config {
        c.push("-c".into());
        c.push(format!("{k}={v}"));
    }
    c.extend(args.iter().map(|a| a.to_string()));
    c
}

/// The directory, beside the working directory, that holds the ssh key while the step runs.
fn ssh_dir(co: &Checkout<'_, '_>) -> String {
    format!(".{}.buildbot", co.dir.trim_matches('/').replace('/', "_"))
}

/// Writes the ssh key and known hosts on the worker and points git's ssh at them.
pub(super) async fn prepare(co: &mut Checkout<'_, '_>, g: &GitConfig) -> Result<(), Stop> {
    let Some(key) = &g.ssh_private_key else {
        return Ok(());
    };
    let key = co.render(key, "sshPrivateKey")?;
    let known = match (&g.ssh_host_key, &g.ssh_known_hosts) {
        (Some(h), _) => Some(format!("* {}\n", co.render(h, "sshHostKey")?.trim())),
        (None, Some(k)) => Some(co.render(k, "sshKnownHosts")?),
        (None, None) => None,
    };
    let dir = ssh_dir(co);
    let write = |name: &str| {
        cmd(&[
            "sh",
            "-c",
            "umask 077 && mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"",
            "sh",
            &format!("{dir}/{name}"),
        ])
    };
    co.header("writing the ssh key for git\n").await;
    let key = if key.ends_with('\n') { key } else { key + "\n" };
    co.check_in(".", &write("ssh-key"), Some(&key)).await?;
    let mut ssh = format!(
        "ssh -o \"BatchMode=yes\" -i \"{}\"",
        co.ctx.builder_path(&format!("{dir}/ssh-key"))
    );
    if let Some(known) = known {
        co.check_in(".", &write("ssh-known-hosts"), Some(&known))
            .await?;
        ssh.push_str(&format!(
            " -o \"UserKnownHostsFile={}\"",
            co.ctx.builder_path(&format!("{dir}/ssh-known-hosts"))
        ));
    }
    co.env.retain(|(k, _)| k != "GIT_SSH_COMMAND");
    co.env.push(("GIT_SSH_COMMAND".into(), ssh));
    Ok(())
}

/// Removes the ssh key written by [`prepare`].
pub(super) async fn cleanup(co: &mut Checkout<'_, '_>, g: &GitConfig) -> Result<(), Stop> {
    if g.ssh_private_key.is_none() {
        return Ok(());
    }
    let dir = ssh_dir(co);
    co.remove(&[dir]).await
}

pub(super) async fn update(co: &mut Checkout<'_, '_>, g: &GitConfig) -> Result<(), Stop> {
    let repourl = co.render(&g.repourl, "repourl")?;
    let branch = match co.target.branch.clone() {
        Some(b) => b,
        None => co.render(&g.branch, "branch")?,
    };
    // `steps.GitHub` builds a pull request's merge ref as it is now: the revision of the change
    // that named it is already out of date.
    let revision = co
        .target
        .revision
        .clone()
        .filter(|_| !(g.github && branch.ends_with("/merge")));
    let depth = (g.shallow > 0).then(|| format!("--depth={}", g.shallow));
    let full = co.method != Method::Incremental;
    let (revision, depth) = (revision.as_deref(), depth.as_deref());
    let first = if co.working_copy(".git").await? {
        update_in_place(co, g, &repourl, &branch, revision, depth).await
    } else {
        clone(co, g, &repourl, &branch, revision, depth).await
    };
    match first {
        // With `clobberOnFailure`, a working copy that cannot be updated (or a clone that
        // failed half way) is removed and cloned again, once.
        Err(Stop::Failed(_)) if full && g.clobber_on_failure => {
            co.header("updating the working copy failed; removing it and cloning again\n")
                .await;
            co.clobber().await?;
            clone(co, g, &repourl, &branch, revision, depth).await
        }
        other => other,
    }
}

/// Cleans (with `fresh` and `clean`), fetches and checks out in an existing working copy.
async fn update_in_place(
    co: &mut Checkout<'_, '_>,
    g: &GitConfig,
    repourl: &str,
    branch: &str,
    revision: Option<&str>,
    depth: Option<&str>,
) -> Result<(), Stop> {
    if matches!(co.method, Method::Fresh | Method::Clean) {
        let mut clean = vec!["clean", "-f", "-f", "-d"];
        if co.method == Method::Fresh {
            clean.push("-x");
        }
        co.check(&git(g, &clean)).await?;
        if g.submodules {
            let inner = format!("git {}", clean.join(" "));
            co.check(&git(g, &["submodule", "foreach", "--recursive", &inner]))
                .await?;
        }
    }
    let mut fetch = vec!["fetch", "-f"];
    if g.tags {
        fetch.push("--tags");
    }
    if let Some(d) = depth {
        fetch.push(d);
    }
    fetch.push(repourl);
    if branch != "HEAD" {
        fetch.push(branch);
    }
    co.check(&git(g, &fetch)).await?;
    let target = revision.unwrap_or("FETCH_HEAD");
    co.check(&git(g, &["checkout", "-f", target])).await?;
    finish(co, g, branch, revision).await
}

async fn clone(
    co: &mut Checkout<'_, '_>,
    g: &GitConfig,
    repourl: &str,
    branch: &str,
    revision: Option<&str>,
    depth: Option<&str>,
) -> Result<(), Stop> {
    let reference = match &g.reference {
        Some(r) => Some(co.render(r, "reference")?),
        None => None,
    };
    let mut clone = vec!["clone"];
    if branch != "HEAD" {
        clone.extend(["--branch", branch]);
    }
    if let Some(d) = depth {
        clone.push(d);
    }
    if let Some(r) = &reference {
        clone.extend(["--reference", r.as_str()]);
    }
    if let Some(o) = &g.origin {
        clone.extend(["--origin", o.as_str()]);
    }
    clone.extend([repourl, "."]);
    co.check(&git(g, &clone)).await?;
    if let Some(r) = revision {
        co.check(&git(g, &["checkout", "-f", r])).await?;
    }
    finish(co, g, branch, revision).await
}

/// After the tree is at the right commit: the branch is named as such, submodules follow.
async fn finish(
    co: &mut Checkout<'_, '_>,
    g: &GitConfig,
    branch: &str,
    revision: Option<&str>,
) -> Result<(), Stop> {
    if branch != "HEAD" && revision.is_none() {
        co.check(&git(g, &["checkout", "-B", branch])).await?;
    }
    if g.submodules {
        co.check(&git(g, &["submodule", "sync", "--recursive"]))
            .await?;
        co.check(&git(
            g,
            &["submodule", "update", "--init", "--recursive", "--force"],
        ))
        .await?;
    }
    Ok(())
}

pub(super) async fn got_revision(
    co: &mut Checkout<'_, '_>,
    g: &GitConfig,
) -> Result<PropertyValue, Stop> {
    let out = co.check(&git(g, &["rev-parse", "HEAD"])).await?;
    Ok(PropertyValue::Str(out.trim().to_string()))
}

/// `getDescription`: `git describe` of the checked-out commit as `commit-description`. A commit
/// git cannot describe (no tags) sets nothing, as in Buildbot.
pub(super) async fn describe(
    co: &mut Checkout<'_, '_>,
    g: &GitConfig,
) -> Result<Vec<(String, PropertyValue)>, Stop> {
    let Some(options) = &g.get_description else {
        return Ok(Vec::new());
    };
    let mut args = vec!["describe"];
    args.extend(options.iter().map(String::as_str));
    // `--dirty` describes the working tree, which takes no commit.
    if !options.iter().any(|o| o.starts_with("--dirty")) {
        args.push("HEAD");
    }
    let ran = co.try_run(&git(g, &args)).await?;
    if ran.results != kiln_core::Results::Success {
        return Ok(Vec::new());
    }
    Ok(vec![(
        "commit-description".into(),
        PropertyValue::Str(ran.stdout.trim().to_string()),
    )])
}
