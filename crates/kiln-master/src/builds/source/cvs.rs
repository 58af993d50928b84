//! `steps.CVS`: a `cvsroot` and a module, a branch tag (the trunk by default) and, as the
//! revision, a date (a number is read as seconds since the epoch). A working copy of another root
//! or module is removed and checked out again. `fresh` and `clean` overwrite local changes and
//! remove the files CVS reports as unknown (`fresh` clears the ignore list first, so ignored files
//! go too). CVS has no revision of its own to report: `got_revision` is the time of the checkout,
//! as in Buildbot.

use kiln_config::CvsConfig;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop, cmd, split_dir};

/// Prints every file and directory of the working copy that its directory's `CVS/Entries` does
/// not list, ignored or not (a directory CVS does not know is printed with its contents).
const UNTRACKED: &str = r#"find . -name CVS -prune -o ! -name . -print | while IFS= read -r f; do
  d=$(dirname "$f"); b=$(basename "$f")
  grep -q -F -e "/$b/" "$d/CVS/Entries" 2>/dev/null || echo "$f"
done"#;

/// `cvs` with the step's global options, `-z3` and the root.
fn cvs(c: &CvsConfig, root: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec!["cvs".to_string()];
    v.extend(c.global_options.iter().cloned());
    v.extend(["-z3".into(), "-d".into(), root.to_string()]);
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// A revision as CVS's `-D` understands it: seconds since the epoch become a UTC date.
fn date(revision: &str) -> String {
    match revision.trim().parse::<i64>() {
        Ok(secs) => utc(secs),
        Err(_) => revision.to_string(),
    }
}

/// `YYYY-MM-DD HH:MM:SS +0000` for seconds since the epoch.
fn utc(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S +0000").to_string(),
        Err(_) => secs.to_string(),
    }
}

pub(super) async fn update(co: &mut Checkout<'_, '_>, c: &CvsConfig) -> Result<(), Stop> {
    let root = co.render(&c.cvsroot, "cvsroot")?;
    let module = co.render(&c.cvsmodule, "cvsmodule")?;
    let branch = match (co.target.branch.clone(), &c.branch) {
        (Some(b), _) => Some(b),
        (None, Some(b)) => Some(co.render(b, "branch")?),
        (None, None) => None,
    };
    let date = co.target.revision.as_deref().map(date);
    if let Some(password) = &c.login {
        let password = co.render(password, "login")?;
        co.ctx.redactions.add("cvs password", &password);
        co.check_in(
            ".",
            &cvs(c, &root, &["login"]),
            Some(&format!("{password}\n")),
        )
        .await?;
    }
    let mut present = co.working_copy("CVS").await?;
    if present {
        let dir = co.dir.clone();
        let ran = co
            .run_with(&dir, &cmd(&["cat", "CVS/Root", "CVS/Repository"]), None)
            .await?;
        let mut lines = ran.stdout.lines().map(str::trim);
        let same = lines.next() == Some(root.as_str())
            && lines.next().map(|m| m.trim_end_matches('/')) == Some(module.as_str());
        if !same {
            present = co
                .start_again("the working copy is of another root or module")
                .await?;
        }
    }
    let mut sel: Vec<String> = Vec::new();
    if let Some(b) = &branch {
        sel.extend(["-r".into(), b.clone()]);
    }
    if let Some(d) = &date {
        sel.extend(["-D".into(), d.clone()]);
    }
    if present {
        let purge = matches!(co.method, Method::Fresh | Method::Clean);
        if purge {
            let unknown: Vec<String> = if co.method == Method::Fresh {
                // `.cvsignore` files cannot be switched off, so what CVS does not know is found
                // by comparing each directory with its `CVS/Entries`.
                let listed = co.check(&cmd(&["sh", "-c", UNTRACKED])).await?;
                listed
                    .lines()
                    .map(|p| p.trim().trim_start_matches("./").to_string())
                    .collect()
            } else {
                let listed = co
                    .check(&cvs(c, &root, &["-n", "-q", "update", "-d"]))
                    .await?;
                listed
                    .lines()
                    .filter_map(|l| l.strip_prefix("? "))
                    .map(|p| p.trim().to_string())
                    .collect()
            };
            co.remove_listed(&unknown).await?;
        }
        let mut up = cvs(c, &root, &["update", "-dP"]);
        if purge {
            up.push("-C".into());
        }
        if sel.is_empty() {
            up.push("-A".into());
        }
        up.extend(sel);
        up.extend(c.extra_options.iter().cloned());
        co.check(&up).await?;
    } else {
        let (parent, name) = split_dir(&co.dir);
        let mut checkout = cvs(c, &root, &["checkout", "-d", &name]);
        checkout.extend(sel);
        checkout.extend(c.extra_options.iter().cloned());
        checkout.push(module.clone());
        co.check_in(&parent, &checkout, None).await?;
    }
    Ok(())
}

pub(super) fn got_revision(co: &Checkout<'_, '_>) -> PropertyValue {
    PropertyValue::Str(utc(co.ctx.master.updates.clock.now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_revision_becomes_a_utc_date() {
        assert_eq!(date("0"), "1970-01-01 00:00:00 +0000");
        assert_eq!(date("1700000000"), "2023-11-14 22:13:20 +0000");
        assert_eq!(date("2024-01-02 03:04"), "2024-01-02 03:04");
    }
}
