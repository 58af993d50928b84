//! `kiln sendchange`: tell a master about a change, through its `base` change hook.
//!
//! It takes the options of Buildbot's `buildbot sendchange`, sends them as the form fields of
//! `POST /change_hook/base`, and prints the id of the change the master stored.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the whole exchange with the master may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from the master.
const MAX_ANSWER: u64 = 1 << 20;

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
    /// The version-control system; accepted for compatibility with Buildbot and otherwise unused.
    #[arg(long)]
    pub vc: Option<String>,
    /// The files the change touches.
    pub files: Vec<String>,
}

/// Sends the change and returns the ids of the changes the master stored.
pub async fn run(args: SendChange) -> anyhow::Result<Vec<i64>> {
    let fields = fields(&args)?;
    let body = serde_urlencoded::to_string(&fields).context("encoding the change")?;
    let (host, port, prefix) = parse_master(&args.master)?;
    let mut request = format!(
        "POST {prefix}change_hook/base HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = &args.auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(auth);
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .context("the master did not answer in time")??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .context("the master's answer is not HTTP")?;
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

/// Splits `http://host:port/prefix/` into its parts; the prefix ends with `/`.
fn parse_master(master: &str) -> anyhow::Result<(String, u16, String)> {
    if master.starts_with("https://") {
        bail!("sendchange speaks plain HTTP only; give the master's http:// address");
    }
    let rest = master.strip_prefix("http://").unwrap_or(master);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>()
                .with_context(|| format!("bad port in master address {master:?}"))?,
        ),
        None => (authority.to_string(), 80),
    };
    if host.is_empty() {
        bail!("no host in master address {master:?}");
    }
    let prefix = if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    Ok((host, port, prefix))
}

#[cfg(test)]
mod tests {
    use super::parse_master;

    #[test]
    fn master_addresses() {
        assert_eq!(
            parse_master("http://localhost:8010/").unwrap(),
            ("localhost".into(), 8010, "/".into())
        );
        assert_eq!(
            parse_master("127.0.0.1:9000/ci").unwrap(),
            ("127.0.0.1".into(), 9000, "/ci/".into())
        );
        assert!(parse_master("https://x/").is_err());
        assert!(parse_master("http://:80/").is_err());
    }
}
