//! `steps.P4`: a client workspace is written from the step's view (`p4base` with `p4branch`,
//! `p4extra_views`, or `p4viewspec`; a stream with `stream`) by `p4 client -i`, then synced to
//! the source stamp's change number. `mode='full'` syncs to nothing and removes the tree first
//! (`clobber` skips the sync to nothing); `fresh` and `clean` run `p4 clean` before the sync.
//! `got_revision` is the highest change the workspace has. These commands follow Buildbot's; no
//! Perforce server can be run here (its server is not free software and is not packaged), so
//! they are tested as the commands they are, not against a server.

use kiln_config::P4Config;
use kiln_core::PropertyValue;

use super::{Checkout, Method, Stop};

/// The `p4` command line: connection options first, then `args`.
fn p4(
    co: &Checkout<'_, '_>,
    p: &P4Config,
    client: &str,
    args: &[&str],
) -> Result<Vec<String>, Stop> {
    let mut c = vec![p.p4bin.clone()];
    if let Some(port) = &p.p4port {
        c.extend(["-p".into(), co.render(port, "p4port")?]);
    }
    if let Some(user) = &p.p4user {
        c.extend(["-u".into(), co.render(user, "p4user")?]);
    }
    if let (Some(pw), false) = (&p.p4passwd, p.use_tickets) {
        let pw = co.render(pw, "p4passwd")?;
        co.ctx.redactions.add("p4 password", &pw);
        c.extend(["-P".into(), pw]);
    }
    c.extend(["-c".into(), client.to_string()]);
    if args.first() == Some(&"sync") {
        c.extend(p.p4extra_args.iter().cloned());
    }
    c.extend(args.iter().map(|a| a.to_string()));
    Ok(c)
}

/// The depot paths of the view, rendered: `p4base` and `p4branch`.
struct Depot<'a> {
    base: Option<&'a str>,
    branch: Option<&'a str>,
}

/// The client specification `p4 client -i` reads.
fn client_spec(
    p: &P4Config,
    depot: &Depot<'_>,
    client: &str,
    root: &str,
    user: Option<&str>,
) -> String {
    let mut spec = format!("Client: {client}\n\nOwner: {}\n\n", user.unwrap_or(""));
    spec.push_str(&format!(
        "Description:\n\tCreated by {}\n\n",
        user.unwrap_or("kiln")
    ));
    spec.push_str(&format!("Root:\t{root}\n\n"));
    spec.push_str(&format!("Options:\t{}\n\n", p.p4client_spec_options));
    spec.push_str(&format!("LineEnd:\t{}\n\n", p.p4line_end));
    if p.stream {
        spec.push_str(&format!(
            "Stream:\t{}/{}\n",
            depot.base.unwrap_or(""),
            depot.branch.unwrap_or("")
        ));
        return spec;
    }
    spec.push_str("View:\n");
    if let Some(base) = depot.base {
        let mut path = base.trim_end_matches('/').to_string();
        if let Some(branch) = depot.branch {
            path.push('/');
            path.push_str(branch.trim_matches('/'));
        }
        spec.push_str(&format!("\t{path}/... //{client}/...\n"));
        for (src, dest) in &p.p4extra_views {
            spec.push_str(&format!(
                "\t{}/{}/... //{client}/{}/...\n",
                base.trim_end_matches('/'),
                src.trim_matches('/'),
                dest.trim_matches('/')
            ));
        }
    } else {
        for (depot, local) in &p.p4viewspec {
            let suffix = if depot.ends_with('/') {
                p.p4viewspec_suffix.as_str()
            } else {
                ""
            };
            let local_suffix = if local.is_empty() || local.ends_with('/') {
                p.p4viewspec_suffix.as_str()
            } else {
                ""
            };
            spec.push_str(&format!(
                "\t{depot}{suffix} //{client}/{local}{local_suffix}\n"
            ));
        }
    }
    spec
}

pub(super) async fn update(co: &mut Checkout<'_, '_>, p: &P4Config) -> Result<(), Stop> {
    let client = co.render(&p.p4client, "p4client")?;
    let user = match &p.p4user {
        Some(u) => Some(co.render(u, "p4user")?),
        None => None,
    };
    if let (true, Some(pw)) = (p.use_tickets, &p.p4passwd) {
        let pw = co.render(pw, "p4passwd")?;
        co.ctx.redactions.add("p4 password", &pw);
        let login = p4(co, p, &client, &["login"])?;
        co.check_in(".", &login, Some(&format!("{pw}\n"))).await?;
    }
    let root = co.ctx.builder_path(&co.dir);
    let base = p
        .p4base
        .as_ref()
        .map(|b| co.render(b, "p4base"))
        .transpose()?;
    let branch = p
        .p4branch
        .as_ref()
        .map(|b| co.render(b, "p4branch"))
        .transpose()?;
    let depot = Depot {
        base: base.as_deref(),
        branch: branch.as_deref(),
    };
    let spec = client_spec(p, &depot, &client, &root, user.as_deref());
    let create = p4(co, p, &client, &["client", "-i"])?;
    co.check_in(".", &create, Some(&spec)).await?;
    let at = co
        .target
        .revision
        .as_ref()
        .map(|r| format!("//{client}/...@{}", r.trim()));
    match co.method {
        Method::Incremental => {}
        Method::Clobber => {
            co.clobber().await?;
        }
        Method::Fresh | Method::Clean => {
            let mut clean = vec!["clean"];
            if co.method == Method::Clean {
                // Keep ignored files: only files the depot has, and unknown ones it does not ignore.
                clean.push("-I");
            }
            let cmdline = p4(co, p, &client, &clean)?;
            co.check(&cmdline).await?;
        }
        Method::Copy => {
            let none = p4(co, p, &client, &["sync", "#none"])?;
            co.check(&none).await?;
            co.clobber().await?;
        }
    }
    let mut sync = vec!["sync"];
    if co.method != Method::Incremental {
        sync.push("-f");
    }
    if let Some(at) = &at {
        sync.push(at);
    }
    let sync = p4(co, p, &client, &sync)?;
    co.check(&sync).await?;
    Ok(())
}

pub(super) async fn got_revision(
    co: &mut Checkout<'_, '_>,
    p: &P4Config,
) -> Result<PropertyValue, Stop> {
    let client = co.render(&p.p4client, "p4client")?;
    let changes = p4(co, p, &client, &["changes", "-m1", "#have"])?;
    let out = co.check(&changes).await?;
    let change = out
        .split_whitespace()
        .skip_while(|w| *w != "Change")
        .nth(1)
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| {
            Stop::Exception(format!(
                "p4 changes printed no change number: {}",
                out.trim()
            ))
        })?;
    Ok(PropertyValue::Int(change))
}
