//! What a report is made of, read from the database: a build with its builder, request,
//! buildset, source stamps, properties, steps and logs, its previous build and the people it
//! concerns; and the build dicts that Buildbot's formatters and JSON receivers see.

use kiln_api::{ApiError, ReadSide, shapes};
use kiln_core::{BuildId, BuildSetId, BuilderId, Properties};
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use kiln_db::{
    BuildRequestRow, BuildRow, BuildSetRow, BuilderRow, LogRow, SourceStampRow, StepRow,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

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

/// How many loaded builds the cache keeps: enough for every reporter to decide a burst of
/// events from the same reads.
const CACHED_BUILDS: usize = 256;

/// A loaded build.
type Loaded = Arc<OnceCell<Option<Arc<BuildInfo>>>>;

/// The builds that reporters read for the events they decide, shared by all of them.
///
/// Every reporter reads the record of events on its own, so a finished build would be read
/// once per reporter; the cache keeps each build as it was read for one event, so the first
/// reporter to decide that event reads it and the others take the same reading, reading only
/// what more they need (steps, the previous build, the people concerned). A build read for a
/// later event is read again, as it may have changed since, but for what does not change.
#[derive(Default)]
pub struct BuildCache {
    /// (event, build, what it was read with, the reading), oldest first.
    entries: Mutex<VecDeque<(i64, BuildId, Needs, Loaded)>>,
}

impl BuildCache {
    /// Reads the builds of a burst of events that are not read yet, each (event position,
    /// build), all together: a burst of builds costs a few queries rather than several each.
    pub async fn preload(
        &self,
        read: &dyn ReadSide,
        wanted: &[(i64, BuildId)],
        needs: Needs,
    ) -> Result<(), ApiError> {
        let missing: Vec<(i64, BuildId)> = {
            let entries = lock(&self.entries);
            wanted
                .iter()
                .filter(|(p, b)| !entries.iter().any(|(ep, eb, _, _)| ep == p && eb == b))
                .copied()
                .collect()
        };
        // One build is read as before, which reuses what an earlier reading of it found.
        if missing.len() < 2 {
            return Ok(());
        }
        let mut ids: Vec<BuildId> = missing.iter().map(|(_, b)| *b).collect();
        ids.sort_unstable();
        ids.dedup();
        let builds = load_builds(read, &ids, needs).await?;
        let mut entries = lock(&self.entries);
        for (position, id) in missing {
            let build = builds
                .iter()
                .find(|b| b.row.id == id)
                .cloned()
                .map(Arc::new);
            let cell = Loaded::new(OnceCell::new_with(Some(build)));
            entries.push_back((position, id, needs, cell));
            if entries.len() > CACHED_BUILDS {
                entries.pop_front();
            }
        }
        Ok(())
    }

    /// The build `id` as read for the event at `position`, with at least `needs`.
    pub async fn load(
        &self,
        read: &dyn ReadSide,
        position: i64,
        id: BuildId,
        needs: Needs,
    ) -> Result<Option<BuildInfo>, ApiError> {
        let (cell, base, earlier) = {
            let mut entries = lock(&self.entries);
            let same = |(p, b, _, _): &&(i64, BuildId, Needs, Loaded)| *p == position && *b == id;
            if let Some((_, _, _, cell)) = entries.iter().filter(same).find(|e| e.2.covers(needs)) {
                (cell.clone(), None, None)
            } else {
                // A reading for the same event with less is extended; failing that, one for
                // an earlier event gives what does not change.
                let base = entries
                    .iter()
                    .filter(same)
                    .map(|(_, _, n, c)| (*n, c.clone()))
                    .next();
                let earlier = entries
                    .iter()
                    .rev()
                    .filter(|(_, b, _, _)| *b == id)
                    .find_map(|(_, _, _, cell)| cell.get().cloned().flatten());
                let cell = Loaded::default();
                entries.push_back((position, id, needs, cell.clone()));
                if entries.len() > CACHED_BUILDS {
                    entries.pop_front();
                }
                (cell, base, earlier)
            }
        };
        let loaded = cell
            .get_or_try_init(|| async {
                let Some((have, base)) = base else {
                    let build = load_build_again(read, id, needs, earlier.as_deref()).await?;
                    return Ok::<_, ApiError>(build.map(Arc::new));
                };
                let first = base
                    .get_or_try_init(|| async {
                        let build = load_build_again(read, id, have, earlier.as_deref()).await?;
                        Ok::<_, ApiError>(build.map(Arc::new))
                    })
                    .await?;
                let Some(first) = first else {
                    return Ok(None);
                };
                let mut build = (**first).clone();
                extend(read, &mut build, have, needs).await?;
                Ok(Some(Arc::new(build)))
            })
            .await?;
        Ok(loaded.as_deref().cloned())
    }

    /// A buildset's builds as read for the event at `position`, in the order of their ids.
    pub async fn buildset_builds(
        &self,
        read: &dyn ReadSide,
        position: i64,
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
                if let Some(info) = self.load(read, position, b.id, needs).await? {
                    out.push(info);
                }
            }
        }
        out.sort_by_key(|b| b.row.id);
        Ok(out)
    }
}

/// A lock that a panic elsewhere did not spoil: the cache holds no invariant a panic could
/// break half way.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads a build and what a report needs to say about it; `None` if there is no such build.
pub async fn load_build(
    read: &dyn ReadSide,
    id: BuildId,
    needs: Needs,
) -> Result<Option<BuildInfo>, ApiError> {
    load_build_again(read, id, needs, None).await
}

/// Reads a build as [`load_build`] does, taking from an `earlier` reading of it what does not
/// change while a build runs: its builder and source stamps. Its request and buildset are read
/// again, as they complete.
async fn load_build_again(
    read: &dyn ReadSide,
    id: BuildId,
    needs: Needs,
    earlier: Option<&BuildInfo>,
) -> Result<Option<BuildInfo>, ApiError> {
    let db = read.db();
    let Some(row) = db.get_build(id).await? else {
        return Ok(None);
    };
    let builder = match earlier {
        Some(e) => e.builder.clone(),
        None => match load_builder(read, row.builderid).await? {
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
struct Origin {
    builder: BuilderRow,
    request: Option<BuildRequestRow>,
    buildset: Option<BuildSetRow>,
    sourcestamps: Vec<SourceStampRow>,
    properties: Properties,
}

/// A build with its origin, and the steps, previous build and people that `needs` asks for.
async fn complete(
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
async fn extend(
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
fn users_of(blamelist: Vec<String>, properties: &Properties) -> Vec<String> {
    let mut users = kiln_api::users::users_of(blamelist, properties).interested;
    users.sort();
    users.dedup();
    users
}

/// Reads the builds `ids` with their builders, requests, buildsets, source stamps and
/// properties in one query for each kind of row, whatever their number.
async fn load_builds(
    read: &dyn ReadSide,
    ids: &[BuildId],
    needs: Needs,
) -> Result<Vec<BuildInfo>, ApiError> {
    let db = read.db();
    let among = |column: &'static str, values: Vec<i64>| Page {
        filters: vec![Filter {
            column,
            op: FilterOp::In,
            values: values.into_iter().map(SqlValue::Int).collect(),
        }],
        ..Page::default()
    };
    let distinct = |mut v: Vec<i64>| {
        v.sort_unstable();
        v.dedup();
        v
    };
    let (rows, _) = db
        .list_builds(&among("id", ids.iter().map(|i| i.0).collect()))
        .await?;
    let (builders, _) = db
        .list_builders(&among(
            "id",
            distinct(rows.iter().map(|r| r.builderid.0).collect()),
        ))
        .await?;
    let (requests, _) = db
        .list_buildrequests(&among(
            "br.id",
            distinct(rows.iter().map(|r| r.buildrequestid.0).collect()),
        ))
        .await?;
    let (buildsets, _) = db
        .list_buildsets(&among(
            "id",
            distinct(requests.iter().map(|r| r.buildsetid.0).collect()),
        ))
        .await?;
    let (sourcestamps, _) = db
        .list_sourcestamps(&among(
            "id",
            distinct(
                buildsets
                    .iter()
                    .flat_map(|b| b.sourcestamps.clone())
                    .collect(),
            ),
        ))
        .await?;
    let mut properties = db.build_properties_of(ids).await?;
    // Steps and their logs are read for all the builds together too.
    let (steps, logs) = if needs.steps {
        let (steps, _) = db
            .list_steps(&Page {
                order: vec![("buildid", false), ("number", false)],
                ..among("buildid", ids.iter().map(|i| i.0).collect())
            })
            .await?;
        (steps, db.logs_of_builds(ids).await?)
    } else {
        (Vec::new(), Vec::new())
    };
    // So are the builds they are compared with, in one query for each builder.
    let mut comparable: Vec<BuildRow> = Vec::new();
    if needs.previous {
        let mut builders: Vec<BuilderId> = rows.iter().map(|r| r.builderid).collect();
        builders.sort_unstable_by_key(|b| b.0);
        builders.dedup();
        for builder in builders {
            let numbers = rows
                .iter()
                .filter(|r| r.builderid == builder)
                .map(|r| r.number);
            let (low, high) = (numbers.clone().min(), numbers.max());
            if let (Some(low), Some(high)) = (low, high) {
                comparable.extend(db.comparable_builds(builder, high, high - low + 1).await?);
            }
        }
    }
    // A build whose source stamps no change made blames nobody: only the others' blamelists
    // are read, one by one.
    let changed = if needs.users {
        let stamps: Vec<i64> = sourcestamps.iter().map(|s| s.id.0).collect();
        db.sourcestamps_with_changes(&stamps).await?
    } else {
        Default::default()
    };
    let rest = Needs {
        steps: false,
        previous: false,
        users: false,
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(builder) = builders.iter().find(|b| b.id == row.builderid) else {
            continue;
        };
        let request = requests.iter().find(|r| r.id == row.buildrequestid);
        let buildset = request.and_then(|r| buildsets.iter().find(|b| b.id.0 == r.buildsetid.0));
        let stamps = buildset.map_or_else(Vec::new, |b| {
            b.sourcestamps
                .iter()
                .filter_map(|id| sourcestamps.iter().find(|s| s.id.0 == *id).cloned())
                .collect()
        });
        let origin = Origin {
            builder: builder.clone(),
            request: request.cloned(),
            buildset: buildset.cloned(),
            sourcestamps: stamps,
            properties: properties.remove(&row.id).unwrap_or_default(),
        };
        // The newest comparable build numbered below this one.
        let previous = comparable
            .iter()
            .filter(|p| p.builderid == row.builderid && p.number < row.number)
            .max_by_key(|p| p.number)
            .cloned();
        let mut build = complete(read, row, origin, rest).await?;
        build.previous = previous;
        if needs.users {
            let blamed = build.sourcestamps.iter().any(|s| changed.contains(&s.id.0));
            let blamelist = if blamed {
                db.build_blamelist(build.row.id).await?
            } else {
                Vec::new()
            };
            build.users = users_of(blamelist, &build.properties);
        }
        build.steps = steps
            .iter()
            .filter(|s| s.buildid == build.row.id)
            .map(|s| {
                let mine = logs.iter().filter(|l| l.stepid == s.id).cloned().collect();
                (s.clone(), mine)
            })
            .collect();
        out.push(build);
    }
    Ok(out)
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
