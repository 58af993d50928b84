//! The small HTTP/1.1 client the command-line tools use to talk to a master's web port: one
//! request per connection, plain HTTP, bounded in time and size.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one exchange with the master may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from the master.
const MAX_ANSWER: u64 = 16 << 20;

/// A master's web address, split.
#[derive(Debug, Clone, PartialEq)]
pub struct Master {
    pub host: String,
    pub port: u16,
    /// The path prefix, ending with `/`.
    pub prefix: String,
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
        Ok(Master { host, port, prefix })
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
        let Master { host, port, prefix } = self;
        let mut head = format!(
            "{method} {prefix}{path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = content_type {
            head.push_str(&format!("Content-Type: {t}\r\n"));
        }
        if let Some(auth) = auth {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(auth);
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .with_context(|| format!("connecting to {host}:{port}"))?;
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
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
        // Chunked answers (the API streams some) are reassembled.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok((status, body))
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

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
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
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
