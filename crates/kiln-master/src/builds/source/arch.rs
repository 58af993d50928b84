//! `steps.Arch`, run with GNU Arch (`tla`): an archive at `url` and a version
//! (`category--branch--version`) that a source stamp's branch replaces. The archive is registered
//! for the worker's user, then the version is got into the working directory and later replayed
//! to its latest revision. A revision (`patch-N`, a bare number, or a full revision name) is got
//! afresh, since a tree cannot be replayed back. A tree of another version is removed. `fresh`
//! and `clean` undo local changes and remove untagged and unrecognized files (junk, backups and
//! precious files too for `fresh`).

use kiln_config::ArchConfig;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop, cmd, split_dir};

/// The fully qualified revision for a source stamp's revision, within `version`.
fn revision_name(version: &str, revision: &str) -> String {
    let revision = revision.trim();
    if revision.contains('/') {
        revision.to_string()
    } else if revision.parse::<u64>().is_ok() {
        format!("{version}--patch-{revision}")
    } else if let Some(level) = revision
        .rsplit("--")
        .next()
        .filter(|_| revision.contains("--"))
    {
        format!("{version}--{level}")
    } else {
        format!("{version}--{revision}")
    }
}

/// A line of `tla inventory` without its category letter (`J  ,,undo-1` → `,,undo-1`), which it
/// prints when several categories are asked for.
fn without_category(line: &str) -> &str {
    let b = line.as_bytes();
    if b.len() > 3 && b[0].is_ascii_uppercase() && &b[1..3] == b"  " {
        &line[3..]
    } else {
        line.trim()
    }
}

pub(super) async fn update(co: &mut Checkout<'_, '_>, a: &ArchConfig) -> Result<(), Stop> {
    let url = co.render(&a.url, "url")?;
    let mut register = cmd(&["tla", "register-archive", "--force"]);
    if let Some(name) = &a.archive {
        register.push(name.clone());
    }
    register.push(url.clone());
    let out = co.check_in(".", &register, None).await?;
    let archive = match &a.archive {
        Some(a) => a.clone(),
        None => out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Registering archive:"))
            .map(|s| s.trim().to_string())
            .ok_or_else(|| {
                Stop::Exception(format!(
                    "cannot tell the name of the archive at {url}: give archive="
                ))
            })?,
    };
    let version = format!(
        "{archive}/{}",
        co.target
            .branch
            .clone()
            .map_or_else(|| co.render(&a.version, "version"), Ok)?
    );
    let wanted = co
        .target
        .revision
        .as_deref()
        .map(|r| revision_name(&version, r));
    let mut present = co.working_copy("{arch}").await?;
    if present {
        let tree = co.try_run(&cmd(&["tla", "tree-version"])).await?;
        if tree.stdout.trim() != version {
            present = co.start_again("the tree is of another version").await?;
        } else if let Some(w) = &wanted {
            let latest = co
                .try_run(&cmd(&["tla", "logs", "--full", "--reverse"]))
                .await?;
            if latest.stdout.lines().next().map(str::trim) != Some(w.as_str()) {
                present = co.start_again("a revision is got afresh").await?;
            }
        }
    }
    if present {
        if matches!(co.method, Method::Fresh | Method::Clean) {
            co.check(&cmd(&["tla", "undo"])).await?;
            let mut unknown: Vec<String> = Vec::new();
            let lint = co
                .try_run(&cmd(&["tla", "tree-lint", "--untagged-files"]))
                .await?;
            unknown.extend(lint.stdout.lines().map(|l| l.trim().to_string()));
            let mut inventory = cmd(&["tla", "inventory", "--unrecognized"]);
            if co.method == Method::Fresh {
                inventory.extend(["--junk".into(), "--backups".into(), "--precious".into()]);
            } else {
                // `tla undo` leaves its own `,,undo-N` directories among the junk; only those go.
                inventory.push("--junk".into());
            }
            inventory.extend(["--both".into()]);
            let listed = co.check(&inventory).await?;
            let fresh = co.method == Method::Fresh;
            unknown.extend(
                listed
                    .lines()
                    .filter(|l| {
                        fresh || !l.starts_with("J ") || without_category(l).starts_with(",,undo-")
                    })
                    .map(|l| without_category(l).to_string()),
            );
            unknown.retain(|l| !l.is_empty());
            co.remove_listed(&unknown).await?;
        }
        if wanted.is_none() {
            co.check(&cmd(&["tla", "replay"])).await?;
        }
    } else {
        let (parent, name) = split_dir(&co.dir);
        let target = wanted.unwrap_or(version);
        co.check_in(&parent, &cmd(&["tla", "get", &target, &name]), None)
            .await?;
    }
    Ok(())
}

pub(super) async fn got_revision(co: &mut Checkout<'_, '_>) -> Result<PropertyValue, Stop> {
    let out = co
        .check(&cmd(&["tla", "logs", "--full", "--reverse"]))
        .await?;
    Ok(PropertyValue::Str(
        out.lines().next().unwrap_or_default().trim().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::revision_name;

    #[test]
    fn revisions_become_full_names() {
        let v = "a@b--x/p--main--0.1";
        assert_eq!(revision_name(v, "3"), "a@b--x/p--main--0.1--patch-3");
        assert_eq!(revision_name(v, "patch-3"), "a@b--x/p--main--0.1--patch-3");
        assert_eq!(revision_name(v, "base-0"), "a@b--x/p--main--0.1--base-0");
        assert_eq!(
            revision_name(v, "p--main--0.1--patch-2"),
            "a@b--x/p--main--0.1--patch-2"
        );
        assert_eq!(
            revision_name(v, "o@c--y/q--b--1--patch-9"),
            "o@c--y/q--b--1--patch-9"
        );
    }
}
