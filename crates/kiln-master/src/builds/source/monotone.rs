//! `steps.Monotone`: the branch is pulled from `repourl` into a database kept beside the working
//! directory (`db.mtn` in the builder's directory), then checked out or updated to the source
//! stamp's revision or the branch's head. `fresh` and `clean` revert local changes and remove
//! unknown files (ignored ones too for `fresh`). `got_revision` is the workspace's revision. No
//! monotone is packaged for this system, so these commands are tested as the commands they are,
//! not against a server.

use kiln_config::MonotoneConfig;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop, cmd, split_dir};

/// The database, relative to the builder's directory.
const DB: &str = "db.mtn";

pub(super) async fn update(co: &mut Checkout<'_, '_>, m: &MonotoneConfig) -> Result<(), Stop> {
    let url = co.render(&m.repourl, "repourl")?;
    let branch = match co.target.branch.clone() {
        Some(b) => b,
        None => co.render(&m.branch, "branch")?,
    };
    let db = format!("--db={}", co.ctx.builder_path(DB));
    if !co.exists(DB).await? {
        co.check_in(".", &cmd(&["mtn", "db", "init", &db]), None)
            .await?;
    }
    let mut pull = cmd(&["mtn", "pull", &format!("{url}?{branch}"), &db]);
    pull.push(
        if m.progress {
            "--ticker=dot"
        } else {
            "--ticker=none"
        }
        .into(),
    );
    co.check_in(".", &pull, None).await?;
    let revision = co
        .target
        .revision
        .clone()
        .unwrap_or_else(|| format!("h:{branch}"));
    if co.working_copy("_MTN").await? {
        if matches!(co.method, Method::Fresh | Method::Clean) {
            co.check(&cmd(&["mtn", "revert", "--missing", &db, "."]))
                .await?;
            let mut lists = vec![cmd(&["mtn", "ls", "unknown", &db])];
            if co.method == Method::Fresh {
                lists.push(cmd(&["mtn", "ls", "ignored", &db]));
            }
            let mut unknown = Vec::new();
            for list in lists {
                let out = co.check(&list).await?;
                unknown.extend(out.lines().map(|l| l.trim().to_string()));
            }
            co.remove_listed(&unknown).await?;
        }
        co.check(&cmd(&[
            "mtn",
            "update",
            &db,
            &format!("--revision={revision}"),
            &format!("--branch={branch}"),
        ]))
        .await?;
    } else {
        let (parent, name) = split_dir(&co.dir);
        co.check_in(
            &parent,
            &cmd(&[
                "mtn",
                "checkout",
                &name,
                &db,
                &format!("--revision={revision}"),
                &format!("--branch={branch}"),
            ]),
            None,
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn got_revision(co: &mut Checkout<'_, '_>) -> Result<PropertyValue, Stop> {
    let out = co.check(&cmd(&["mtn", "automate", "select", "w:"])).await?;
    Ok(PropertyValue::Str(out.trim().to_string()))
}
