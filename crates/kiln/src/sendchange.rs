//! `kiln sendchange`: tell a master about a change, through its `base` change hook.
//!
//! It takes the options of Buildbot's `buildbot sendchange`, sends them as the form fields of
//! `POST /change_hook/base`, and prints the id of the change the master stored.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::http::Master;

#[derive(clap::Args, Debug)]
pub struct SendChange {
    /// The master's web address, such as http://localhost:8010/.
    #[arg(long, short = 'm')]
    pub master: String,
    /// USER:PASSWORD for HTTP Basic authentication on the hook.
    #[arg(long, short = 'a')]
    pub auth: Option<String>,
    /// Who made the change.
    #[arg(long, short = 'W')]
    pub who: String,
    #[arg(long)]
    pub committer: Option<String>,
    #[arg(long, short = 'R')]
    pub repository: Option<String>,
    #[arg(long, short = 'P')]
    pub project: Option<String>,
    #[arg(long, short = 'b')]
    pub branch: Option<String>,
    #[arg(long, short = 'C')]
    pub category: Option<String>,
    #[arg(long, short = 's')]
    pub codebase: Option<String>,
    #[arg(long, short = 'r')]
    pub revision: Option<String>,
    /// Read the revision from this file.
    #[arg(long)]
    pub revision_file: Option<PathBuf>,
    /// A property of the change, NAME:VALUE; may be repeated.
    #[arg(long = "property", short = 'p')]
    pub properties: Vec<String>,
    #[arg(long, short = 'c')]
    pub comments: Option<String>,
    /// Read the comments from this file ('-' for standard input).
    #[arg(long, short = 'F')]
    pub logfile: Option<PathBuf>,
    /// When the change was made, in seconds since the epoch.
    #[arg(long, short = 'w')]
    pub when: Option<f64>,
    #[arg(long, short = 'l')]
    pub revlink: Option<String>,
    /// The version-control system (`git`, `svn`, `hg`, …): the kind of identity the author's
    /// name is, for finding the change's user.
    #[arg(long)]
    pub vc: Option<String>,
    /// The files the change touches.
    pub files: Vec<String>,
}

/// Sends the change and returns the ids of the changes the master stored.
pub async fn run(args: SendChange) -> anyhow::Result<Vec<i64>> {
    let fields = fields(&args)?;
    let body = serde_urlencoded::to_string(&fields).context("encoding the change")?;
    let master = Master::parse(&args.master)?;
    let (status, body) = master
        .request(
            "POST",
            "change_hook/base",
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
            args.auth.as_deref(),
        )
        .await?;
    if status != 200 {
        bail!("the master refused the change ({status}): {}", body.trim());
    }
    let reply: serde_json::Value =
        serde_json::from_str(body.trim()).context("reading the master's answer")?;
    Ok(reply["changeids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|i| i.as_i64()).collect())
        .unwrap_or_default())
}

/// The hook's form fields, in Buildbot's names.
fn fields(args: &SendChange) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut f: Vec<(&'static str, String)> = vec![("author", args.who.clone())];
    let mut opt = |name: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            f.push((name, v.clone()));
        }
    };
    opt("committer", &args.committer);
    opt("repository", &args.repository);
    opt("project", &args.project);
    opt("branch", &args.branch);
    opt("category", &args.category);
    opt("codebase", &args.codebase);
    opt("revlink", &args.revlink);
    opt("src", &args.vc);
    let revision = match (&args.revision, &args.revision_file) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the revision from {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    opt("revision", &revision);
    let comments = match (&args.comments, &args.logfile) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading the comments from standard input")?;
            Some(text)
        }
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the comments from {}", path.display()))?,
        ),
        (None, None) => None,
    };
    opt("comments", &comments);
    if let Some(when) = args.when {
        f.push(("when_timestamp", when.to_string()));
    }
    if !args.files.is_empty() {
        f.push(("files", serde_json::to_string(&args.files)?));
    }
    if !args.properties.is_empty() {
        let mut props = serde_json::Map::new();
        for p in &args.properties {
            let Some((name, value)) = p.split_once(':') else {
                bail!("--property {p:?} must be NAME:VALUE");
            };
            props.insert(name.to_string(), serde_json::Value::from(value));
        }
        f.push(("properties", serde_json::Value::Object(props).to_string()));
    }
    Ok(f)
}
