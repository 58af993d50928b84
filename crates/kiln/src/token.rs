//! `kiln token`: API tokens for scripts, made, listed and revoked directly in the master's
//! database (the master may be running). A token acts as a user, with any roles the token adds;
//! it is shown once, when it is made, and only its digest is stored.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct Token {
    /// The master's base directory.
    pub basedir: PathBuf,
    #[command(subcommand)]
    pub op: Op,
}

#[derive(Subcommand)]
pub enum Op {
    /// Make a token and print it; it is not shown again.
    Create {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// A role the token gives on top of the user's own (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// What the token is for, to recognise it in `kiln token list`.
        #[arg(long, default_value = "")]
        name: String,
        /// How long the token lasts: a number with s, m, h or d (`90d`), or `never`.
        #[arg(long, default_value = "90d")]
        expires_in: String,
    },
    /// List the tokens, never their text.
    List,
    /// Revoke a token by its id.
    Revoke { id: i64 },
}

/// Seconds in `90d`, `12h`, `30m`, `45s`; `None` for `never`.
fn lifetime(text: &str) -> anyhow::Result<Option<i64>> {
    if text == "never" {
        return Ok(None);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--expires-in {text:?}: give a number with s, m, h or d (90d), or never"),
    };
    let n: i64 =
        number.parse().ok().filter(|n| *n > 0).with_context(|| {
            format!("--expires-in {text:?}: {number:?} is not a positive number")
        })?;
    n.checked_mul(scale)
        .map(Some)
        .with_context(|| format!("--expires-in {text:?} is too long"))
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn when(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |t| t.to_string())
}

/// Runs the operation; returns what to print.
pub async fn run(args: Token) -> anyhow::Result<String> {
    let config = match kiln_config::load(&args.basedir) {
        Ok(c) => c,
        Err(d) => bail!("{d}\nthe configuration has errors; the tokens were not touched"),
    };
    let db = kiln_master::master::open_database(&args.basedir, &config).await?;
    match args.op {
        Op::Create {
            user,
            roles,
            name,
            expires_in,
        } => {
            if user.trim().is_empty() {
                bail!("--user is empty");
            }
            if let Some(r) = roles.iter().find(|r| r.trim().is_empty()) {
                bail!("--role {r:?} is empty");
            }
            let created_at = now();
            let expires_at = lifetime(&expires_in)?.map(|s| created_at.saturating_add(s));
            let text = kiln_api::credentials::new_token()
                .map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
            let digest = kiln_api::credentials::token_digest(&text);
            let id = db
                .add_token(&kiln_db::NewToken {
                    name: &name,
                    digest: &digest,
                    username: &user,
                    roles: &roles,
                    created_at,
                    expires_at,
                })
                .await
                .context("storing the token")?;
            let ends = expires_at.map_or_else(|| "never".to_string(), when);
            Ok(format!(
                "token {id} for {user} (expires: {ends}); it is shown only now:\n{text}\n"
            ))
        }
        Op::List => {
            let t = now();
            let mut out = String::new();
            for row in db.list_tokens().await? {
                let state = if row.revoked_at.is_some() {
                    "revoked".to_string()
                } else if !row.valid_at(t) {
                    "expired".to_string()
                } else {
                    match row.expires_at {
                        Some(e) => format!("expires {}", when(e)),
                        None => "never expires".to_string(),
                    }
                };
                let roles = if row.roles.is_empty() {
                    String::new()
                } else {
                    format!(" roles={}", row.roles.join(","))
                };
                out.push_str(&format!(
                    "{}\t{}\tuser={}{roles}\tcreated {}\t{state}\n",
                    row.id,
                    if row.name.is_empty() { "-" } else { &row.name },
                    row.username,
                    when(row.created_at),
                ));
            }
            if out.is_empty() {
                out.push_str("no tokens\n");
            }
            Ok(out)
        }
        Op::Revoke { id } => {
            if db.revoke_token(id, now()).await? {
                Ok(format!("token {id} revoked\n"))
            } else {
                bail!("there is no token {id} that is not revoked already")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_read_with_their_unit() {
        assert_eq!(lifetime("90d").unwrap(), Some(90 * 86_400));
        assert_eq!(lifetime("45s").unwrap(), Some(45));
        assert_eq!(lifetime("never").unwrap(), None);
        for bad in ["", "d", "0d", "-1h", "3w", "1.5h"] {
            assert!(lifetime(bad).is_err(), "{bad}");
        }
    }
}
