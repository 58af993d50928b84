//! What a report is made of, read from the database: a build with its builder, request,
//! buildset, source stamps, properties, steps and logs, its previous build and the people it
//! concerns; and the build dicts that Buildbot's formatters and JSON receivers see.

use kiln_api::{ApiError, ReadSide, shapes};
use kiln_core::{BuildId, BuildSetId, BuilderId, Properties};
use kiln_db::listing::{Page, SqlValue};
use kiln_db::{
    BuildRequestRow, BuildRow, BuildSetRow, BuilderRow, LogRow, SourceStampRow, StepRow,
};
use serde_json::{Value, json};

/// A log attached to a mail is cut at this size, so that one runaway log cannot make a mail
/// that no server accepts.
pub const MAX_ATTACHED_LOG: usize = 4 << 20;

/// Everything a report may say about one build.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub row: BuildRow,
    pub builder: BuilderRow,
    pub request: Option<BuildRequestRow>,
    pub buildset: Option<BuildSetRow>,
    pub sourcestamps: Vec<SourceStampRow>,
    pub properties: Properties,
    pub steps: Vec<(StepRow, Vec<LogRow>)>,
    /// The build compared with for `change`, `problem` and `previous_results`.
    pub previous: Option<BuildRow>,
    /// The blamelist and owners, sorted, each once (Buildbot's responsible users).
    pub users: Vec<String>,
    /// The build's page.
    pub url: String,
}

impl BuildInfo {
    /// The build's result, if it finished.
    pub fn results(&self) -> Option<i64> {
        self.row.results
    }

    /// A property's value as text, or `""`.
    pub fn property(&self, name: &str) -> String {
        self.properties
            .get(name)
            .map(|v| v.render())
            .unwrap_or_default()
    }

    /// The build dict: the data API's build, with its properties (when wanted), builder,
    /// buildset, request and page, its steps and their logs (when wanted), and the previous
    /// build.
    pub fn dict(&self, want_properties: bool, want_steps: bool, want_logs: bool) -> Value {
        let mut b = shapes::build(&self.row);
        if want_properties {
            b["properties"] = shapes::properties(&self.properties, |_| true);
        }
        b["builder"] = shapes::builder(&self.builder);
        b["buildset"] = match &self.buildset {
            Some(bs) => shapes::buildset(
                bs,
                self.sourcestamps.iter().map(shapes::sourcestamp).collect(),
            ),
            None => Value::Null,
        };
        b["buildrequest"] = self
            .request
            .as_ref()
            .map_or(Value::Null, shapes::buildrequest);
        b["url"] = json!(self.url);
        if want_steps {
            let steps: Vec<Value> = self
                .steps
                .iter()
                .map(|(s, logs)| {
                    let mut step = shapes::step(s);
                    if want_logs {
                        step["logs"] = logs
                            .iter()
                            .map(|l| {
                                let mut log = shapes::log(l);
                                log["url"] = json!(self.log_url(s, l));
                                log
                            })
                            .collect();
                    }
                    step
                })
                .collect();
            b["steps"] = Value::Array(steps);
        }
        if let Some(prev) = &self.previous {
            b["prev_build"] = shapes::build(prev);
        }
        b
    }

    /// A log's page.
    pub fn log_url(&self, step: &StepRow, log: &LogRow) -> String {
        format!("{}/steps/{}/logs/{}", self.url, step.number, log.slug)
    }
}

/// Where the site's pages are, ending in `/`.
pub fn site_url(read: &dyn ReadSide) -> String {
    let mut url = read.config().buildbot_url.clone();
    if !url.ends_with('/') {
        url.push('/');
    }
    url
}

/// What of a build a report needs beyond the build, its builder, request, buildset, source
/// stamps and properties: each is a few more queries, made only when asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    pub steps: bool,
    pub previous: bool,
    pub users: bool,
}

impl Needs {
    pub const ALL: Needs = Needs {
        steps: true,
        previous: true,
        users: true,
    };
}

/// Reads a build and what a report needs to say about it; `None` if there is no such build.
pub async fn load_build(
    read: &dyn ReadSide,
    id: BuildId,
    needs: Needs,
) -> Result<Option<BuildInfo>, ApiError> {
    let db = read.db();
    let Some(row) = db.get_build(id).await? else {
        return Ok(None);
    };
    let Some(builder) = load_builder(read, row.builderid).await? else {
        return Ok(None);
    };
    let request = db.get_buildrequest(row.buildrequestid).await?;
    let buildset = match &request {
        Some(r) => db.get_buildset(r.buildsetid).await?,
        None => None,
    };
    let sourcestamps = match &buildset {
        Some(bs) => {
            let ids: Vec<kiln_core::SourceStampId> = bs
                .sourcestamps
                .iter()
                .map(|id| kiln_core::SourceStampId(*id))
                .collect();
            db.get_sourcestamps(&ids).await?
        }
        None => Vec::new(),
    };
    let properties = db.build_properties_set(id).await?;
    let steps = if needs.steps {
        let (steps, _) = db
            .list_steps(&Page {
                order: vec![("number", false)],
                ..Page::eq("buildid", SqlValue::Int(id.0))
            })
            .await?;
        let logs = db.logs_of_builds(&[id]).await?;
        steps
            .into_iter()
            .map(|s| {
                let mine = logs.iter().filter(|l| l.stepid == s.id).cloned().collect();
                (s, mine)
            })
            .collect()
    } else {
        Vec::new()
    };
    let previous = if needs.previous {
        db.previous_build(row.builderid, row.number).await?
    } else {
        None
    };
    let users = if needs.users {
        let mut users = read.build_users(id).await?.interested;
        users.sort();
        users.dedup();
        users
    } else {
        Vec::new()
    };
    let url = format!(
        "{}builders/{}/builds/{}",
        site_url(read),
        row.builderid.0,
        row.number
    );
    Ok(Some(BuildInfo {
        row,
        builder,
        request,
        buildset,
        sourcestamps,
        properties,
        steps,
        previous,
        users,
        url,
    }))
}

pub async fn load_builder(
    read: &dyn ReadSide,
    id: BuilderId,
) -> Result<Option<BuilderRow>, ApiError> {
    Ok(read
        .db()
        .list_builders(&Page::eq("id", SqlValue::Int(id.0)))
        .await?
        .0
        .into_iter()
        .next())
}

/// A buildset's builds, in the order of their ids.
pub async fn buildset_builds(
    read: &dyn ReadSide,
    buildset: BuildSetId,
    needs: Needs,
) -> Result<Vec<BuildInfo>, ApiError> {
    let db = read.db();
    let (requests, _) = db
        .list_buildrequests(&Page::eq("buildsetid", SqlValue::Int(buildset.0)))
        .await?;
    let mut out = Vec::new();
    for r in requests {
        let (builds, _) = db
            .list_builds(&Page::eq("buildrequestid", SqlValue::Int(r.id.0)))
            .await?;
        for b in builds {
            if let Some(info) = load_build(read, b.id, needs).await? {
                out.push(info);
            }
        }
    }
    out.sort_by_key(|b| b.row.id);
    Ok(out)
}

/// A log's stored text (each line with its stream's letter, as Buildbot keeps it), cut at
/// [`MAX_ATTACHED_LOG`].
pub async fn log_text(read: &dyn ReadSide, log: &LogRow) -> Result<String, ApiError> {
    let mut out = String::new();
    let mut from = 0;
    while from < log.num_lines {
        let chunks = read.db().log_chunks(log.id, from, 16).await?;
        if chunks.is_empty() {
            break;
        }
        for c in &chunks {
            out.push_str(&c.text);
            out.push('\n');
            from = c.last_line + 1;
        }
        if out.len() > MAX_ATTACHED_LOG {
            let mut cut = MAX_ATTACHED_LOG;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("\n[log truncated: the rest is on the log's page]\n");
            break;
        }
    }
    Ok(out)
}
