//! `Try_Userpass`: a try job (a patch against a base revision, for some of the scheduler's
//! builders) becomes a buildset whose source stamp carries the patch.

use kiln_api::{ApiError, Submitted, TryJob};
use kiln_config::TryConfig;
use kiln_core::Properties;

use super::buildsets::{self, Target};
use crate::master::Master;

pub async fn submit(
    master: &Master,
    scheduler: &TryConfig,
    job: TryJob,
) -> Result<Submitted, ApiError> {
    let builders = if job.builder_names.is_empty() {
        scheduler.builder_names.clone()
    } else {
        job.builder_names.clone()
    };
    let refused: Vec<&String> = builders
        .iter()
        .filter(|b| !scheduler.builder_names.contains(b))
        .collect();
    if !refused.is_empty() {
        let names: Vec<&str> = refused.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::BadRequest(format!(
            "the scheduler '{}' does not build {}",
            scheduler.name,
            names.join(", ")
        )));
    }
    // Buildbot's reason for try jobs.
    let mut reason = "'try' job".to_string();
    if !job.who.is_empty() {
        reason.push_str(&format!(" by user {}", job.who));
    }
    if !job.comment.is_empty() {
        reason.push_str(&format!(" ({})", job.comment));
    }
    let mut asked = Properties::new();
    for (name, p) in job.properties.iter() {
        asked.set(name.clone(), p.value.clone(), "try build");
    }
    if !job.who.is_empty() {
        asked.set("owner", job.who.as_str(), "try build");
    }
    let target = Target {
        scheduler: &scheduler.name,
        reason,
        properties: &scheduler.properties,
        builder_names: &builders,
        rendered_builder_names: None,
        priority: 0,
        codebases: &[],
    };
    buildsets::submit(
        master,
        &target,
        vec![job.sourcestamp],
        Properties::new(),
        &asked,
        None,
    )
    .await
    .map_err(ApiError::internal)
}
