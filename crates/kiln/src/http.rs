//! How the command-line tools talk to a master's web port: its address, and requests sent through
//! the master's own HTTP client (`kiln_http`), bounded in time and size.

use std::time::Duration;

use anyhow::{Context, bail};
use kiln_http as http_client;

/// How long one exchange with the master may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from the master.
const MAX_ANSWER: u64 = 16 << 20;

/// How the read-only tools (`kiln status`, `kiln watch`) reach a master.
#[derive(clap::Args)]
pub struct MasterArgs {
    /// The master's web address, such as http://localhost:8010/.
    #[arg(long, short = 'm', default_value = "http://localhost:8010/")]
    pub master: String,
    /// An API token (`kiln token create`), for a master that keeps reading from anonymous users;
    /// also read from KILN_TOKEN.
    #[arg(long, env = "KILN_TOKEN")]
    pub token: Option<String>,
}

impl MasterArgs {
    /// The master, with the token if one was given.
    pub fn connect(&self) -> anyhow::Result<Master> {
        let mut master = Master::parse(&self.master)?;
        master.token = self.token.clone();
        Ok(master)
    }
}

/// A build's result by Buildbot's number (`success`, `failure`, …); `unknown` for another.
pub fn result_name(code: Option<i64>) -> &'static str {
    code.and_then(kiln_core::Results::from_code)
        .map_or("unknown", kiln_core::Results::name)
}

/// A master's web address, split.
#[derive(Debug, Clone, PartialEq)]
pub struct Master {
    pub host: String,
    pub port: u16,
    /// The path prefix, ending with `/`.
    pub prefix: String,
    /// An API token (`kiln token create`) sent with every request that has no other credentials.
    pub token: Option<String>,
}

impl Master {
    /// Splits `http://host:port/prefix/` into its parts.
    pub fn parse(master: &str) -> anyhow::Result<Master> {
        if master.starts_with("https://") {
            bail!("kiln's tools speak plain HTTP only; give the master's http:// address");
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
        Ok(Master {
            host,
            port,
            prefix,
            token: None,
        })
    }

    /// Sends one request (`path` is relative to the prefix) and returns the status and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        auth: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let Master {
            host,
            port,
            prefix,
            token,
        } = self;
        // The master answers scripts in JSON when they ask for it (its change hooks, say).
        let mut headers = vec![("Accept".to_string(), "application/json".to_string())];
        if let Some(t) = content_type {
            headers.push(("Content-Type".to_string(), t.to_string()));
        }
        if let Some(auth) = auth {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(auth);
            headers.push(("Authorization".to_string(), format!("Basic {basic}")));
        } else if let Some(token) = token {
            headers.push(("Authorization".to_string(), format!("Bearer {token}")));
        }
        let request = http_client::Request {
            method: method.to_string(),
            url: format!("http://{host}:{port}{prefix}{path}"),
            headers,
            body: body.to_vec(),
            timeout: Some(TIMEOUT),
            max_answer: Some(MAX_ANSWER),
            verify: http_client::Verify::Roots,
        };
        let answer = http_client::send(&request)
            .await
            .map_err(|e| anyhow::anyhow!("talking to the master at {host}:{port}: {e}"))?;
        Ok((
            answer.status,
            String::from_utf8_lossy(&answer.body).into_owned(),
        ))
    }

    /// GETs a REST API path as JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self
            .request("GET", &format!("api/v2/{path}"), None, b"", None)
            .await?;
        if status != 200 {
            bail!("GET {path}: {status} {}", body.trim());
        }
        serde_json::from_str(&body).with_context(|| format!("reading the answer to GET {path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addresses() {
        let m = Master::parse("http://localhost:8010/").unwrap();
        assert_eq!(
            (m.host.as_str(), m.port, m.prefix.as_str()),
            ("localhost", 8010, "/")
        );
        let m = Master::parse("127.0.0.1:9000/ci").unwrap();
        assert_eq!(
            (m.host.as_str(), m.port, m.prefix.as_str()),
            ("127.0.0.1", 9000, "/ci/")
        );
        assert!(Master::parse("https://x/").is_err());
        assert!(Master::parse("http://:80/").is_err());
    }
}
