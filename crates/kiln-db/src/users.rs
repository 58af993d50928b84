//! Users, as Buildbot keeps them: a user has an identifier, attributes (`users_info`: an identity
//! per version-control system such as `git: Alice <alice@example.com>`, and others such as
//! `email` or `irc`), and optionally a web username and password. Each change is linked to the
//! user its author is (`change_users`), made on first sight; a build's blamelist is the authors
//! of its changes.

use std::collections::BTreeMap;

use crate::listing::{Page, SqlValue};
use crate::rows::RowExt;
use crate::{Db, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub uid: i64,
    pub identifier: String,
    pub bb_username: Option<String>,
    /// Whether a web password is set (its hash is never handed out).
    pub has_password: bool,
    pub attributes: BTreeMap<String, String>,
}

/// Changes to make to a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub identifier: Option<String>,
    /// Attributes to set; an empty value removes the attribute.
    pub attributes: Vec<(String, String)>,
    pub bb_username: Option<String>,
    /// The password's hash, as the caller made it.
    pub bb_password: Option<String>,
}

/// Finds the user whose `attr_type` attribute is `attr_data`, or makes one (its identifier the
/// attribute's value, with a number added if another user has it), inside a transaction.
pub(crate) async fn find_or_create_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    attr_type: &str,
    attr_data: &str,
) -> Result<i64> {
    if let Some(r) = sqlx::query(
        "SELECT uid FROM users_info WHERE attr_type = $1 AND attr_data = $2 ORDER BY uid LIMIT 1",
    )
    .bind(attr_type)
    .bind(attr_data)
    .fetch_optional(&mut **tx)
    .await?
    {
        return r.int("uid");
    }
    let mut identifier = attr_data.to_string();
    let mut n = 1;
    while sqlx::query("SELECT uid FROM users WHERE identifier = $1")
        .bind(&identifier)
        .fetch_optional(&mut **tx)
        .await?
        .is_some()
    {
        n += 1;
        identifier = format!("{attr_data} ({n})");
    }
    let uid = sqlx::query("INSERT INTO users (identifier) VALUES ($1) RETURNING uid")
        .bind(&identifier)
        .fetch_one(&mut **tx)
        .await?
        .int("uid")?;
    sqlx::query("INSERT INTO users_info (uid, attr_type, attr_data) VALUES ($1, $2, $3)")
        .bind(uid)
        .bind(attr_type)
        .bind(attr_data)
        .execute(&mut **tx)
        .await?;
    Ok(uid)
}

/// Sets a user's attributes: each replaces the one of its type; an empty value removes it.
async fn set_attributes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    uid: i64,
    attributes: &[(String, String)],
) -> Result<()> {
    for (t, d) in attributes {
        sqlx::query("DELETE FROM users_info WHERE uid = $1 AND attr_type = $2")
            .bind(uid)
            .bind(t)
            .execute(&mut **tx)
            .await?;
        if !d.is_empty() {
            sqlx::query("INSERT INTO users_info (uid, attr_type, attr_data) VALUES ($1, $2, $3)")
                .bind(uid)
                .bind(t)
                .bind(d)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

impl Db {
    async fn user_row(&self, r: &(impl RowExt + Sync)) -> Result<UserRow> {
        let uid = r.int("uid")?;
        let attributes = sqlx::query(
            "SELECT attr_type, attr_data FROM users_info WHERE uid = $1 ORDER BY attr_type",
        )
        .bind(uid)
        .fetch_all(&mut *self.reading().await?)
        .await?
        .iter()
        .map(|a| Ok((a.text("attr_type")?, a.text("attr_data")?)))
        .collect::<Result<_>>()?;
        Ok(UserRow {
            uid,
            identifier: r.text("identifier")?,
            bb_username: r.opt_text("bb_username")?,
            has_password: r.opt_text("bb_password")?.is_some(),
            attributes,
        })
    }

    /// Users, all or filtered (by `uid`, `identifier` or `bb_username`).
    pub async fn list_users(&self, page: &Page) -> Result<Vec<UserRow>> {
        let (rows, _) = self
            .list_rows(
                "uid, identifier, bb_username, bb_password",
                "users",
                "uid",
                page,
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.user_row(r).await?);
        }
        Ok(out)
    }

    /// The user named by a uid, an identifier, a web username, or an attribute value.
    pub async fn find_user(&self, who: &str) -> Result<Option<UserRow>> {
        if let Ok(uid) = who.parse::<i64>()
            && let Some(u) = self
                .list_users(&Page::eq("uid", SqlValue::Int(uid)))
                .await?
                .pop()
        {
            return Ok(Some(u));
        }
        for column in ["identifier", "bb_username"] {
            if let Some(u) = self
                .list_users(&Page::eq(column, SqlValue::Text(who.to_string())))
                .await?
                .pop()
            {
                return Ok(Some(u));
            }
        }
        let by_attr =
            sqlx::query("SELECT uid FROM users_info WHERE attr_data = $1 ORDER BY uid LIMIT 1")
                .bind(who)
                .fetch_optional(&mut *self.reading().await?)
                .await?;
        match by_attr {
            Some(r) => Ok(self
                .list_users(&Page::eq("uid", SqlValue::Int(r.int("uid")?)))
                .await?
                .pop()),
            None => Ok(None),
        }
    }

    /// The stored password hash of a web username, for checking a login.
    pub async fn user_password_hash(&self, username: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query("SELECT bb_password FROM users WHERE bb_username = $1")
                .bind(username)
                .fetch_optional(&mut *self.reading().await?)
                .await?
                .map(|r| r.opt_text("bb_password"))
                .transpose()?
                .flatten(),
        )
    }

    /// The users whose stored password hash starts with `prefix`, as (uid, hash): the hashes of
    /// an older kind, to upgrade.
    pub async fn password_hashes_starting(&self, prefix: &str) -> Result<Vec<(i64, String)>> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        sqlx::query(
            "SELECT uid, bb_password FROM users WHERE bb_password LIKE $1 ESCAPE '\\' ORDER BY uid",
        )
        .bind(pattern)
        .fetch_all(&mut *self.reading().await?)
        .await?
        .iter()
        .map(|r| Ok((r.int("uid")?, r.text("bb_password")?)))
        .collect()
    }

    /// The users linked to a change.
    pub async fn change_user_ids(&self, changeid: i64) -> Result<Vec<i64>> {
        sqlx::query("SELECT uid FROM change_users WHERE changeid = $1 ORDER BY uid")
            .bind(changeid)
            .fetch_all(&mut *self.reading().await?)
            .await?
            .iter()
            .map(|r| r.int("uid"))
            .collect()
    }

    /// A build's blamelist: the distinct authors of the changes it is blamed for
    /// (`build_change_ids`), sorted.
    pub async fn build_blamelist(&self, build: kiln_core::BuildId) -> Result<Vec<String>> {
        let mut authors = Vec::new();
        for id in self.build_change_ids(build).await? {
            let author = sqlx::query("SELECT author FROM changes WHERE changeid = $1")
                .bind(id)
                .fetch_one(&mut *self.reading().await?)
                .await?
                .text("author")?;
            if !author.is_empty() && !authors.contains(&author) {
                authors.push(author);
            }
        }
        authors.sort();
        Ok(authors)
    }
}

impl Writer {
    /// Adds a user; the identifier, the web username and each attribute must be free.
    pub async fn add_user(&self, identifier: &str, update: &UserUpdate) -> Result<i64> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        let uid = sqlx::query(
            "INSERT INTO users (identifier, bb_username, bb_password) VALUES ($1, $2, $3) RETURNING uid",
        )
        .bind(identifier)
        .bind(update.bb_username.clone())
        .bind(update.bb_password.clone())
        .fetch_one(&mut *tx)
        .await?
        .int("uid")?;
        set_attributes(&mut tx, uid, &update.attributes).await?;
        tx.commit().await?;
        Ok(uid)
    }

    /// Changes a user; false if there is none with that uid.
    pub async fn update_user(&self, uid: i64, update: &UserUpdate) -> Result<bool> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        let found = sqlx::query("SELECT uid FROM users WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !found {
            return Ok(false);
        }
        for (column, value) in [
            ("identifier", &update.identifier),
            ("bb_username", &update.bb_username),
            ("bb_password", &update.bb_password),
        ] {
            if let Some(v) = value {
                let sql = match column {
                    "identifier" => "UPDATE users SET identifier = $1 WHERE uid = $2",
                    "bb_username" => "UPDATE users SET bb_username = $1 WHERE uid = $2",
                    _ => "UPDATE users SET bb_password = $1 WHERE uid = $2",
                };
                sqlx::query(sql).bind(v).bind(uid).execute(&mut *tx).await?;
            }
        }
        set_attributes(&mut tx, uid, &update.attributes).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces a user's password hash if it is still `old`, so that a password changed
    /// meanwhile is not overwritten; false if it was not replaced.
    pub async fn replace_password_hash(&self, uid: i64, old: &str, new: &str) -> Result<bool> {
        let mut w = self.writing().await?;
        let done =
            sqlx::query("UPDATE users SET bb_password = $1 WHERE uid = $2 AND bb_password = $3")
                .bind(new)
                .bind(uid)
                .bind(old)
                .execute(&mut *w)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a user and its links to changes; false if there is none with that uid.
    pub async fn remove_user(&self, uid: i64) -> Result<bool> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        for sql in [
            "DELETE FROM change_users WHERE uid = $1",
            "DELETE FROM users_info WHERE uid = $1",
        ] {
            sqlx::query(sql).bind(uid).execute(&mut *tx).await?;
        }
        let n = sqlx::query("DELETE FROM users WHERE uid = $1")
            .bind(uid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }
}
