//! API tokens: what `kiln token` makes and the web port checks. A token is stored as the
//! SHA-256 digest of its text only; whoever reads the database cannot use it.

use crate::rows::RowExt;
use crate::{Db, Result, Writer};

/// A stored token, without its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    /// The user the token acts as.
    pub username: String,
    /// Roles the token gives on top of the user's own.
    pub roles: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TokenRow {
    /// Whether the token may be used at `now`: not revoked and not expired.
    pub fn valid_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub name: &'a str,
    /// The SHA-256 digest of the token's text, in hex.
    pub digest: &'a str,
    pub username: &'a str,
    pub roles: &'a [String],
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// The columns of a [`TokenRow`], as a literal for the statements.
macro_rules! columns {
    () => {
        "id, name, username, roles_json, created_at, expires_at, revoked_at"
    };
}

fn token_row(r: &impl RowExt) -> Result<TokenRow> {
    Ok(TokenRow {
        id: r.int("id")?,
        name: r.text("name")?,
        username: r.text("username")?,
        roles: serde_json::from_str(&r.text("roles_json")?).unwrap_or_default(),
        created_at: r.int("created_at")?,
        expires_at: r.opt_int("expires_at")?,
        revoked_at: r.opt_int("revoked_at")?,
    })
}

impl Db {
    /// The token whose text has this digest.
    pub async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRow>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM api_tokens WHERE digest = $1"
        ))
        .bind(digest)
        .fetch_optional(&mut *self.reading().await?)
        .await?
        .as_ref()
        .map(token_row)
        .transpose()
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM api_tokens ORDER BY id"
        ))
        .fetch_all(&mut *self.reading().await?)
        .await?
        .iter()
        .map(token_row)
        .collect()
    }
}

impl Writer {
    /// Stores a token; its id.
    pub async fn add_token(&self, token: &NewToken<'_>) -> Result<i64> {
        let mut w = self.writing().await?;
        let roles = serde_json::to_string(token.roles).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO api_tokens (name, digest, username, roles_json, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(token.name)
        .bind(token.digest)
        .bind(token.username)
        .bind(roles)
        .bind(token.created_at)
        .bind(token.expires_at)
        .fetch_one(&mut *w)
        .await?
        .int("id")
    }

    /// Revokes the token `id` at `now`; false if there is no such token or it was revoked.
    pub async fn revoke_token(&self, id: i64, now: i64) -> Result<bool> {
        let mut w = self.writing().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *w)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
