//! `steps.Darcs`: `repourl`, or `baseURL` with the branch appended (each branch is a
//! repository). The revision is a context (the output of `darcs log --context`): a tree is
//! cloned to exactly that context, since a working copy cannot be pulled back to one. A working
//! copy of another repository is removed and cloned again. `fresh` and `clean` revert local
//! changes and remove unrecorded files (boring ones too for `fresh`). `got_revision` is the
//! context of the tree, as in Buildbot.

use kiln_config::RepoLocation;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop, cmd, location, split_dir};

pub(super) async fn update(co: &mut Checkout<'_, '_>, d: &RepoLocation) -> Result<(), Stop> {
    let url = location(co, d)?;
    // darcs reads a context to its last line's end.
    let context = co.target.revision.as_ref().map(|c| {
        let mut c = c.clone();
        if !c.ends_with('\n') {
            c.push('\n');
        }
        c
    });
    let mut present = co.working_copy("_darcs").await?;
    if present {
        let dir = co.dir.clone();
        let current = co
            .run_with(&dir, &cmd(&["cat", "_darcs/prefs/defaultrepo"]), None)
            .await?;
        if current.stdout.trim().trim_end_matches('/') != url.trim_end_matches('/') {
            present = co
                .start_again("the working copy is of another repository")
                .await?;
        } else if context.is_some() {
            present = co
                .start_again("a context is built from a new clone")
                .await?;
        }
    }
    if present {
        if matches!(co.method, Method::Fresh | Method::Clean) {
            co.check(&cmd(&["darcs", "revert", "--all"])).await?;
            let mut list = cmd(&["darcs", "whatsnew", "--look-for-adds", "--summary"]);
            if co.method == Method::Fresh {
                list.push("--boring".into());
            }
            // `whatsnew` exits 1 when there is nothing to report.
            let listed = co.try_run(&list).await?;
            let unknown: Vec<String> = listed
                .stdout
                .lines()
                .filter_map(|l| l.trim().strip_prefix("a "))
                .map(|p| p.trim().trim_start_matches("./").to_string())
                .collect();
            co.remove_listed(&unknown).await?;
        }
        co.check(&cmd(&["darcs", "pull", "--all", "--verbose", &url]))
            .await?;
    } else {
        let (parent, name) = split_dir(&co.dir);
        let mut clone = cmd(&["darcs", "clone", "--lazy", "--verbose"]);
        // darcs reads a context file more than once, so it is written to a file, not piped.
        let context_file = format!("{parent}/.{name}.darcs-context");
        if let Some(context) = &context {
            let write = cmd(&["sh", "-c", "cat > \"$1\"", "sh", &context_file]);
            co.check_in(".", &write, Some(context)).await?;
            clone.push(format!("--context={}", co.ctx.builder_path(&context_file)));
        }
        clone.extend([url, name]);
        let cloned = co.check_in(&parent, &clone, None).await;
        if context.is_some() {
            co.remove(&[context_file]).await?;
        }
        cloned?;
    }
    Ok(())
}

pub(super) async fn got_revision(co: &mut Checkout<'_, '_>) -> Result<PropertyValue, Stop> {
    let out = co.check(&cmd(&["darcs", "log", "--context"])).await?;
    Ok(PropertyValue::Str(out))
}
