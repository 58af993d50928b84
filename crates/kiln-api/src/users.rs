//! Who a build concerns.

use kiln_core::{BuildId, Properties, PropertyValue};
use kiln_db::{Db, DbError};

/// A build's users, as `/api/v2/builds/N/users` shows them and reporters address them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUsers {
    /// The authors of the build's changes.
    pub blamelist: Vec<String>,
    /// Who forced or tried the build.
    pub owners: Vec<String>,
    /// Both together, without repeats: the users a reporter tells about the build.
    pub interested: Vec<String>,
}

/// A build's blamelist (the authors of its changes), its owners (from the `owners` property the
/// build runner sets, or `owner`), and both together.
pub async fn build_users(db: &Db, build: BuildId) -> Result<BuildUsers, DbError> {
    let blamelist = db.build_blamelist(build).await?;
    let props = db.build_properties_set(build).await?;
    Ok(users_of(blamelist, &props))
}

/// A build's users from its blamelist and its properties, for a caller that read them already.
pub fn users_of(blamelist: Vec<String>, props: &Properties) -> BuildUsers {
    // An anonymous force's owner is "": nobody to tell.
    let owners: Vec<String> = match props.get("owners") {
        Some(PropertyValue::List(l)) => l.iter().map(|v| v.render()).collect(),
        _ => match props.get("owner") {
            Some(o) => vec![o.render()],
            None => Vec::new(),
        },
    }
    .into_iter()
    .filter(|o| !o.is_empty())
    .collect();
    let mut interested = blamelist.clone();
    for o in &owners {
        if !interested.contains(o) {
            interested.push(o.clone());
        }
    }
    BuildUsers {
        blamelist,
        owners,
        interested,
    }
}
