//! `kiln user`: the master's users table, worked on directly in the master's database (the
//! master may be running). A user has an identifier, attributes (`--info git='Alice <a@x>'`,
//! `--info email=a@x`, `--info irc=alice`; one identity per version-control system), and
//! optionally a web username and password.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct User {
    /// The master's base directory.
    pub basedir: PathBuf,
    #[command(subcommand)]
    pub op: Op,
}

#[derive(Subcommand)]
pub enum Op {
    /// Add a user.
    Add {
        /// The user's identifier (the first --info value when not given).
        #[arg(long)]
        identifier: Option<String>,
        #[command(flatten)]
        fields: Fields,
    },
    /// Change a user, named by uid, identifier, web username or an attribute's value.
    Update {
        who: String,
        #[arg(long)]
        identifier: Option<String>,
        #[command(flatten)]
        fields: Fields,
    },
    /// Remove a user.
    Remove { who: String },
    /// Show one user, or all.
    Show { who: Option<String> },
}

#[derive(Args)]
pub struct Fields {
    /// An attribute, TYPE=VALUE (repeatable); an empty VALUE removes it on update.
    #[arg(long = "info", value_name = "TYPE=VALUE")]
    info: Vec<String>,
    /// The name the user logs into the web pages with.
    #[arg(long)]
    username: Option<String>,
    /// The web password (stored hashed).
    #[arg(long)]
    password: Option<String>,
}

impl Fields {
    fn update(&self, identifier: Option<String>) -> anyhow::Result<kiln_db::UserUpdate> {
        let mut attributes = Vec::new();
        for i in &self.info {
            let Some((t, v)) = i.split_once('=') else {
                bail!("--info {i:?}: expected TYPE=VALUE");
            };
            if t.trim().is_empty() {
                bail!("--info {i:?}: the attribute type is empty");
            }
            attributes.push((t.trim().to_string(), v.to_string()));
        }
        let bb_password = match &self.password {
            Some(p) if p.is_empty() => bail!("--password is empty"),
            Some(p) => {
                Some(kiln_api::credentials::hash_password(p).context("hashing the password")?)
            }
            None => None,
        };
        Ok(kiln_db::UserUpdate {
            identifier,
            attributes,
            bb_username: self.username.clone(),
            bb_password,
        })
    }
}

fn show(u: &kiln_db::UserRow) -> String {
    let mut s = format!("uid: {}\nidentifier: {}\n", u.uid, u.identifier);
    if let Some(name) = &u.bb_username {
        s.push_str(&format!("username: {name}\n"));
    }
    if u.has_password {
        s.push_str("password: set\n");
    }
    for (t, v) in &u.attributes {
        s.push_str(&format!("{t}: {v}\n"));
    }
    s
}

/// Runs the operation; returns what to print.
pub async fn run(args: User) -> anyhow::Result<String> {
    let config = match kiln_config::load(&args.basedir) {
        Ok(c) => c,
        Err(d) => bail!("{d}\nthe configuration has errors; the users were not touched"),
    };
    let db = kiln_master::master::open_database(&args.basedir, &config).await?;
    let found = |who: &str| {
        let db = db.clone();
        let who = who.to_string();
        async move {
            db.find_user(&who).await?.with_context(|| {
                format!("no user {who:?} (give a uid, identifier, username or attribute value)")
            })
        }
    };
    match args.op {
        Op::Add { identifier, fields } => {
            let update = fields.update(None)?;
            let identifier =
                match identifier.or_else(|| update.attributes.first().map(|(_, v)| v.clone())) {
                    Some(i) if !i.is_empty() => i,
                    _ => bail!("a new user needs --identifier or an --info attribute"),
                };
            if db
                .find_user(&identifier)
                .await?
                .is_some_and(|u| u.identifier == identifier)
            {
                bail!("a user with identifier {identifier:?} already exists");
            }
            let uid = db
                .add_user(&identifier, &update)
                .await
                .context("adding the user (is the username or identifier taken?)")?;
            Ok(format!("user added: uid {uid}\n"))
        }
        Op::Update {
            who,
            identifier,
            fields,
        } => {
            let user = found(&who).await?;
            let update = fields.update(identifier)?;
            db.update_user(user.uid, &update)
                .await
                .context("updating the user (is the username or identifier taken?)")?;
            Ok(format!("user updated: uid {}\n", user.uid))
        }
        Op::Remove { who } => {
            let user = found(&who).await?;
            db.remove_user(user.uid).await?;
            Ok(format!(
                "user removed: uid {} ({})\n",
                user.uid, user.identifier
            ))
        }
        Op::Show { who: Some(who) } => Ok(show(&found(&who).await?)),
        Op::Show { who: None } => {
            let users = db.list_users(&kiln_db::listing::Page::default()).await?;
            Ok(users.iter().map(show).collect::<Vec<_>>().join("\n"))
        }
    }
}
