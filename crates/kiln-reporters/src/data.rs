//! What a report is made of, read from the database: a build with its builder, request,
//! buildset, source stamps, properties, steps and logs, its previous build and the people it
//! concerns; and the build dicts that Buildbot's formatters and JSON receivers see.

use kiln_api::{ApiError, ReadSide, shapes};
use kiln_core::{BuildId, BuilderId, Properties};
use kiln_db::listing::{Page, SqlValue};
use kiln_db::{
    BuildRequestRow, BuildRow, BuildSetRow, BuilderRow, LogRow, SourceStampRow, StepRow,
};
use serde_json::{Value, json};

use crate::cache::Builders;

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

    /// The build as it was when it started: neither it nor its request and buildset complete,
    /// without results or steps. A report of its start may be decided after it finished.
    pub fn as_started(mut self) -> BuildInfo {
        self.row.complete_at = None;
        self.row.results = None;
        self.row.state_string = "starting".to_string();
        self.steps.clear();
        if let Some(r) = &mut self.request {
            r.complete = false;
            r.complete_at = None;
            r.results = None;
        }
        if let Some(b) = &mut self.buildset {
            b.complete = false;
            b.complete_at = None;
            b.results = None;
        }
        self
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

    /// Whether what `self` loads includes what `other` needs.
    pub fn covers(self, other: Needs) -> bool {
        (self.steps || !other.steps)
            && (self.previous || !other.previous)
            && (self.users || !other.users)
    }

    /// What either needs.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            steps: self.steps || other.steps,
            previous: self.previous || other.previous,
            users: self.users || other.users,
        }
    }
}

/// Reads a build and what a report needs to say about it; `None` if there is no such build.
pub async fn load_build(
    read: &dyn ReadSide,
    id: BuildId,
    needs: Needs,
) -> Result<Option<BuildInfo>, ApiError> {
    load_build_again(read, id, needs, None, &Builders::default()).await
}

/// Reads a build as [`load_build`] does, taking from an `earlier` reading of it what does not
/// change while a build runs: its builder and source stamps. Its request and buildset are read
/// again, as they complete.
pub(crate) async fn load_build_again(
    read: &dyn ReadSide,
    id: BuildId,
    needs: Needs,
    earlier: Option<&BuildInfo>,
    builders: &Builders,
) -> Result<Option<BuildInfo>, ApiError> {
    let db = read.db();
    let Some(row) = db.get_build(id).await? else {
        return Ok(None);
    };
    let builder = match earlier {
        Some(e) => e.builder.clone(),
        None => match builders.one(read, row.builderid).await? {
            Some(b) => b,
            None => return Ok(None),
        },
    };
    let (request, buildset, sourcestamps) =
        load_origin(read, &row, earlier.map(|e| &e.sourcestamps)).await?;
    let properties = db.build_properties_set(id).await?;
    let origin = Origin {
        builder,
        request,
        buildset,
        sourcestamps,
        properties,
    };
    Ok(Some(complete(read, row, origin, needs).await?))
}

/// What a build's report says beyond the build itself, read in bulk or one by one.
pub(crate) struct Origin {
    pub(crate) builder: BuilderRow,
    pub(crate) request: Option<BuildRequestRow>,
    pub(crate) buildset: Option<BuildSetRow>,
    pub(crate) sourcestamps: Vec<SourceStampRow>,
    pub(crate) properties: Properties,
}

/// A build with its origin, and the steps, previous build and people that `needs` asks for.
pub(crate) async fn complete(
    read: &dyn ReadSide,
    row: BuildRow,
    origin: Origin,
    needs: Needs,
) -> Result<BuildInfo, ApiError> {
    let url = format!(
        "{}builders/{}/builds/{}",
        site_url(read),
        row.builderid.0,
        row.number
    );
    let mut build = BuildInfo {
        row,
        builder: origin.builder,
        request: origin.request,
        buildset: origin.buildset,
        sourcestamps: origin.sourcestamps,
        properties: origin.properties,
        steps: Vec::new(),
        previous: None,
        users: Vec::new(),
        url,
    };
    extend(read, &mut build, Needs::default(), needs).await?;
    Ok(build)
}

/// Reads what `want` asks for of a build read with `have`.
pub(crate) async fn extend(
    read: &dyn ReadSide,
    build: &mut BuildInfo,
    have: Needs,
    want: Needs,
) -> Result<(), ApiError> {
    let db = read.db();
    let id = build.row.id;
    if want.steps && !have.steps {
        let (steps, _) = db
            .list_steps(&Page {
                order: vec![("number", false)],
                ..Page::eq("buildid", SqlValue::Int(id.0))
            })
            .await?;
        let logs = db.logs_of_builds(&[id]).await?;
        build.steps = steps
            .into_iter()
            .map(|s| {
                let mine = logs.iter().filter(|l| l.stepid == s.id).cloned().collect();
                (s, mine)
            })
            .collect();
    }
    if want.previous && !have.previous {
        build.previous = db
            .previous_build(build.row.builderid, build.row.number)
            .await?;
    }
    if want.users && !have.users {
        let blamelist = db.build_blamelist(id).await?;
        build.users = users_of(blamelist, &build.properties);
    }
    Ok(())
}

/// The people a build concerns, sorted, each once: its blamelist and its owners, from the
/// properties read with it.
pub(crate) fn users_of(blamelist: Vec<String>, properties: &Properties) -> Vec<String> {
    let mut users = kiln_api::users::users_of(blamelist, properties).interested;
    users.sort();
    users.dedup();
    users
}

/// A build's request, its buildset and the buildset's source stamps.
type Requested = (
    Option<BuildRequestRow>,
    Option<BuildSetRow>,
    Vec<SourceStampRow>,
);

/// The request a build runs for, its buildset and the buildset's source stamps (`known` when
/// they were read before).
async fn load_origin(
    read: &dyn ReadSide,
    row: &BuildRow,
    known: Option<&Vec<SourceStampRow>>,
) -> Result<Requested, ApiError> {
    let db = read.db();
    let request = db.get_buildrequest(row.buildrequestid).await?;
    let buildset = match &request {
        Some(r) => db.get_buildset(r.buildsetid).await?,
        None => None,
    };
    let sourcestamps = match (&buildset, known) {
        (Some(_), Some(known)) => known.clone(),
        (Some(bs), None) => {
            let ids: Vec<kiln_core::SourceStampId> = bs
                .sourcestamps
                .iter()
                .map(|id| kiln_core::SourceStampId(*id))
                .collect();
            db.get_sourcestamps(&ids).await?
        }
        (None, _) => Vec::new(),
    };
    Ok((request, buildset, sourcestamps))
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
