//! `steps.Bzr`, run with Breezy (`brz`): `repourl`, or `baseURL` with the branch appended. The
//! working copy is a checkout bound to the branch, so `brz update` brings it up to date; one bound
//! to another branch is removed and checked out again. `fresh` and `clean` revert local changes
//! and remove unknown files with `brz clean-tree` (ignored ones too for `fresh`). `got_revision`
//! is the revision number.

use kiln_config::RepoLocation;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop, cmd, location};

/// A location as brz prints it, comparable with the one configured.
fn normalize(url: &str) -> &str {
    url.trim()
        .strip_prefix("file://")
        .unwrap_or(url.trim())
        .trim_end_matches('/')
}

pub(super) async fn update(co: &mut Checkout<'_, '_>, b: &RepoLocation) -> Result<(), Stop> {
    let url = location(co, b)?;
    let revision: Vec<String> = match &co.target.revision {
        Some(r) => vec!["-r".into(), r.clone()],
        None => Vec::new(),
    };
    let mut present = co.working_copy(".bzr").await?;
    if present {
        let bound = co
            .try_run(&cmd(&["brz", "config", "bound_location"]))
            .await?;
        if normalize(&bound.stdout) != normalize(&url) {
            present = co
                .start_again("the working copy is bound to another branch")
                .await?;
        }
    }
    if present {
        if matches!(co.method, Method::Fresh | Method::Clean) {
            co.check(&cmd(&["brz", "revert", "--no-backup"])).await?;
            let mut clean = cmd(&["brz", "clean-tree", "--force", "--unknown"]);
            if co.method == Method::Fresh {
                clean.extend(["--ignored".into(), "--detritus".into()]);
            }
            co.check(&clean).await?;
        }
        let mut up = cmd(&["brz", "update"]);
        up.extend(revision);
        co.check(&up).await?;
    } else {
        let mut checkout = cmd(&["brz", "checkout"]);
        checkout.extend(revision);
        checkout.extend([url, ".".into()]);
        co.check(&checkout).await?;
    }
    Ok(())
}

pub(super) async fn got_revision(co: &mut Checkout<'_, '_>) -> Result<PropertyValue, Stop> {
    let out = co
        .check(&cmd(&[
            "brz",
            "version-info",
            "--custom",
            "--template={revno}",
        ]))
        .await?;
    let out = out.trim();
    Ok(match out.parse::<i64>() {
        Ok(n) => PropertyValue::Int(n),
        Err(_) => PropertyValue::Str(out.to_string()),
    })
}
