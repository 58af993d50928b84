//! `steps.SVN`: the URL is `repourl`, or `baseURL` with the branch appended (branches are
//! directories of the repository). A working copy of another URL is removed and checked out
//! again. `fresh` and `clean` revert local changes and remove unversioned files with
//! `svn cleanup` (ignored ones too for `fresh`). A password given to the step is hidden in the
//! logs like a secret.

use kiln_config::SvnConfig;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop, cmd, location};

/// The options every svn command takes: no prompts, no cached credentials, the step's own.
fn options(co: &Checkout<'_, '_>, s: &SvnConfig) -> Result<Vec<String>, Stop> {
    let mut o = cmd(&["--non-interactive", "--no-auth-cache"]);
    if let Some(u) = &s.username {
        o.extend(["--username".into(), co.render(u, "username")?]);
    }
    if let Some(p) = &s.password {
        let p = co.render(p, "password")?;
        co.ctx.redactions.add("svn password", &p);
        o.extend(["--password".into(), p]);
    }
    o.extend(s.extra_args.iter().cloned());
    Ok(o)
}

pub(super) async fn update(co: &mut Checkout<'_, '_>, s: &SvnConfig) -> Result<(), Stop> {
    let url = location(co, &s.location)?;
    let opts = options(co, s)?;
    let revision: Vec<String> = match &co.target.revision {
        Some(r) => vec!["--revision".into(), r.clone()],
        None => Vec::new(),
    };
    let mut present = co.working_copy(".svn").await?;
    if present {
        let mut info = cmd(&["svn", "info", "--show-item", "url"]);
        info.extend(opts.iter().cloned());
        let current = co.try_run(&info).await?;
        if current.stdout.trim().trim_end_matches('/') != url.trim_end_matches('/') {
            present = co.start_again("the working copy is of another URL").await?;
        }
    }
    if present {
        if matches!(co.method, Method::Fresh | Method::Clean) {
            co.check(&cmd(&["svn", "revert", "--recursive", "."]))
                .await?;
            let mut cleanup = cmd(&["svn", "cleanup", "--remove-unversioned"]);
            if co.method == Method::Fresh {
                cleanup.push("--remove-ignored".into());
            }
            co.check(&cleanup).await?;
        }
        let mut up = cmd(&["svn", "update"]);
        up.extend(revision);
        up.extend(opts);
        co.check(&up).await?;
    } else {
        let mut checkout = cmd(&["svn", "checkout", &url, "."]);
        checkout.extend(revision);
        checkout.extend(opts);
        co.check(&checkout).await?;
    }
    Ok(())
}

/// The working copy's revision (the last one that changed it with `preferLastChangedRev`), as a
/// number.
pub(super) async fn got_revision(
    co: &mut Checkout<'_, '_>,
    s: &SvnConfig,
) -> Result<PropertyValue, Stop> {
    let item = if s.prefer_last_changed_rev {
        "last-changed-revision"
    } else {
        "revision"
    };
    let out = co
        .check(&cmd(&[
            "svn",
            "info",
            "--show-item",
            item,
            "--non-interactive",
        ]))
        .await?;
    let out = out.trim();
    Ok(match out.parse::<i64>() {
        Ok(n) => PropertyValue::Int(n),
        Err(_) => PropertyValue::Str(out.to_string()),
    })
}
