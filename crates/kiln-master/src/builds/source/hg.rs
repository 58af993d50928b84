//! `steps.Mercurial`: with `branchType='dirname'` each branch is a repository (`baseURL` +
//! branch); with `'inrepo'` branches are named inside `repourl` and the working copy is updated
//! to the branch's head. A working copy of another repository, or (with `clobberOnBranchChange`)
//! of another branch, is removed and cloned again. `fresh` and `clean` purge unknown files with
//! the purge extension that ships with Mercurial (ignored ones too for `fresh`).

use kiln_config::HgConfig;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop, cmd, location};

pub(super) async fn update(co: &mut Checkout<'_, '_>, h: &HgConfig) -> Result<(), Stop> {
    let inrepo = h.branch_type == "inrepo";
    let (repourl, branch) = if inrepo {
        let url = co.render(
            h.location
                .repourl
                .as_ref()
                .ok_or_else(|| Stop::Exception("branchType='inrepo' needs repourl".into()))?,
            "repourl",
        )?;
        let branch = match (co.target.branch.clone(), &h.location.default_branch) {
            (Some(b), _) => b,
            (None, Some(d)) => co.render(d, "defaultBranch")?,
            (None, None) => "default".into(),
        };
        (url, Some(branch))
    } else {
        (location(co, &h.location)?, None)
    };
    let mut present = co.working_copy(".hg").await?;
    if present {
        let current = co.try_run(&cmd(&["hg", "paths", "default"])).await?;
        if current.stdout.trim().trim_end_matches('/') != repourl.trim_end_matches('/') {
            present = co
                .start_again("the working copy is of another repository")
                .await?;
        } else if let Some(b) = &branch {
            let on = co.check(&cmd(&["hg", "identify", "--branch"])).await?;
            if on.trim() != b && h.clobber_on_branch_change {
                let why = format!("the working copy is on branch {}, not {b}", on.trim());
                present = co.start_again(&why).await?;
            }
        }
    }
    if present {
        if matches!(co.method, Method::Fresh | Method::Clean) {
            let mut purge = cmd(&["hg", "--config", "extensions.purge=", "purge"]);
            if co.method == Method::Fresh {
                purge.push("--all".into());
            }
            co.check(&purge).await?;
        }
        co.check(&cmd(&["hg", "pull", &repourl])).await?;
    } else {
        co.check(&cmd(&["hg", "clone", "--noupdate", &repourl, "."]))
            .await?;
    }
    let mut up = cmd(&["hg", "update", "--clean"]);
    match (&co.target.revision, &branch) {
        (Some(r), _) => up.extend(["--rev".into(), r.clone()]),
        (None, Some(b)) => up.extend(["--rev".into(), b.clone()]),
        (None, None) => {}
    }
    co.check(&up).await?;
    Ok(())
}

pub(super) async fn got_revision(co: &mut Checkout<'_, '_>) -> Result<PropertyValue, Stop> {
    let out = co
        .check(&cmd(&["hg", "log", "--rev", ".", "--template", "{node}"]))
        .await?;
    Ok(PropertyValue::Str(out.trim().to_string()))
}
