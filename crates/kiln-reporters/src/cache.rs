//! The builds reporters read, shared between them and read in bursts.
//!
//! Every reporter decides the same bursts of events; without this, a finished build would be
//! read once per reporter, and each build of a burst on its own. [`BuildCache`] keeps each
//! build as it was read for one event, and reads the builds of a burst of events in one round
//! trip to the database (`Db::read_builds`), with what all reporters need, before any of them
//! decides it (the feed calls [`BuildCache::preload_burst`]). It keeps builders between bursts
//! too ([`Builders`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use kiln_api::{ApiError, Delivery, ReadSide};
use kiln_config::MasterConfig;
use kiln_core::{BuildId, BuildSetId, BuilderId};
use kiln_db::BuilderRow;
use kiln_db::listing::{Page, SqlValue};
use tokio::sync::OnceCell;

use crate::data::{BuildInfo, Needs, Origin, complete, extend, load_build_again, users_of};
use crate::generators::Trigger;

/// How many loaded builds the cache keeps: enough for every reporter to decide a burst of
/// events from the same reads.
const CACHED_BUILDS: usize = 1024;

/// How long, in seconds, builders read for one burst serve the next ones. A reconfiguration
/// of this master, which changes builders' names, tags and descriptions, makes them read
/// again at once; the other masters that run a builder, which no reconfiguration of this one
/// announces, show in reports after this long at most.
const BUILDER_TTL: i64 = 60;

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
    /// What the reporters sharing the cache need of a build, all of them together.
    needs: Mutex<Needs>,
    /// Whether any of them reports builds as they start.
    starts: AtomicBool,
    /// Held while a burst is read, so that builds asked for meanwhile are not read twice.
    preloading: tokio::sync::Mutex<()>,
    /// How many times builds were read from the database, a burst counting once.
    reads: AtomicU64,
    /// The builders of the builds read, kept between bursts.
    builders: Builders,
}

/// Builders as read, kept between bursts: a master whose builds end one at a time would
/// otherwise read a builder, its tags and its masters again for each build.
#[derive(Default)]
pub(crate) struct Builders {
    known: Mutex<Option<KnownBuilders>>,
    /// How many times builders were read from the database.
    reads: AtomicU64,
}

/// Builders read under one configuration, since `read_at`.
struct KnownBuilders {
    /// The configuration they were read under; a `Weak` keeps its address from being reused
    /// by the next configuration.
    config: Weak<MasterConfig>,
    read_at: i64,
    rows: HashMap<BuilderId, BuilderRow>,
}

impl Builders {
    /// The builders `ids` (those that exist), read from the database unless they were read
    /// under the current configuration less than [`BUILDER_TTL`] ago.
    pub(crate) async fn get(
        &self,
        read: &dyn ReadSide,
        ids: &[BuilderId],
    ) -> Result<Vec<BuilderRow>, ApiError> {
        let config = read.config();
        let now = read.now();
        let (mut found, missing) = {
            let mut known = lock(&self.known);
            let fresh = known.as_ref().is_some_and(|k| {
                std::ptr::eq(k.config.as_ptr(), Arc::as_ptr(&config))
                    && (0..BUILDER_TTL).contains(&(now - k.read_at))
            });
            if !fresh {
                *known = Some(KnownBuilders {
                    config: Arc::downgrade(&config),
                    read_at: now,
                    rows: HashMap::new(),
                });
            }
            let (mut found, mut missing) = (Vec::new(), Vec::new());
            for id in ids {
                match known.as_ref().and_then(|k| k.rows.get(id)) {
                    Some(row) => found.push(row.clone()),
                    None => missing.push(*id),
                }
            }
            (found, missing)
        };
        if missing.is_empty() {
            return Ok(found);
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let page = Page::among("id", missing.iter().map(|id| id.0));
        let (rows, _) = read.db().list_builders(&page).await?;
        let mut known = lock(&self.known);
        // Kept only if no reconfiguration came while they were read.
        if let Some(k) = known
            .as_mut()
            .filter(|k| std::ptr::eq(k.config.as_ptr(), Arc::as_ptr(&config)))
        {
            k.rows.extend(rows.iter().map(|r| (r.id, r.clone())));
        }
        found.extend(rows);
        Ok(found)
    }

    /// One builder, as [`Builders::get`] gives it.
    pub(crate) async fn one(
        &self,
        read: &dyn ReadSide,
        id: BuilderId,
    ) -> Result<Option<BuilderRow>, ApiError> {
        Ok(self.get(read, &[id]).await?.into_iter().next())
    }
}

impl BuildCache {
    /// Tells the cache what a reporter needs of a build, and whether it reports builds as they
    /// start, so that a burst is read once with what every reporter needs rather than once for
    /// each of them.
    pub fn want(&self, needs: Needs, starts: bool) {
        let mut all = lock(&self.needs);
        *all = all.union(needs);
        if starts {
            self.starts.store(true, Ordering::Relaxed);
        }
    }

    /// Reads the builds that the events of a burst are about, for every reporter at once,
    /// before any of them decides it. A failure only means that each build is read when a
    /// reporter asks for it.
    pub async fn preload_burst(&self, read: &dyn ReadSide, burst: &[Delivery]) {
        let starts = self.starts.load(Ordering::Relaxed);
        let wanted: Vec<(i64, BuildId)> = burst
            .iter()
            .filter_map(|d| match d {
                Delivery::Event(e) => match Trigger::of_key(&e.key)? {
                    Trigger::BuildNew(id) if starts => Some((e.id, id)),
                    Trigger::BuildFinished(id) => Some((e.id, id)),
                    _ => None,
                },
                Delivery::Missed { .. } => None,
            })
            .collect();
        if let Err(error) = self.preload(read, &wanted, Needs::default()).await {
            tracing::warn!(%error, "reading the builds of a burst of events");
        }
    }

    /// How many times the cache read builds from the database: a burst counts once, as does
    /// each build read alone.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// How many times the cache read builders from the database.
    pub fn builder_reads(&self) -> u64 {
        self.builders.reads.load(Ordering::Relaxed)
    }

    /// Reads the builds of a burst of events that are not read yet, each (event position,
    /// build), all together: a burst of builds costs a few queries rather than several each.
    /// They are read with what any reporter needs, so that the others find them read.
    pub async fn preload(
        &self,
        read: &dyn ReadSide,
        wanted: &[(i64, BuildId)],
        needs: Needs,
    ) -> Result<(), ApiError> {
        let _one_at_a_time = self.preloading.lock().await;
        let needs = needs.union(*lock(&self.needs));
        let missing: Vec<(i64, BuildId)> = {
            let entries = lock(&self.entries);
            wanted
                .iter()
                .filter(|(p, b)| {
                    !entries
                        .iter()
                        .any(|(ep, eb, n, _)| ep == p && eb == b && n.covers(needs))
                })
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
        self.reads.fetch_add(1, Ordering::Relaxed);
        let builds = load_builds(read, &ids, needs, &self.builders).await?;
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

    /// The build `id` as read for the event at `position`, with at least `needs`, shared with
    /// every other reporter that reads it: a build's reports only read it.
    pub async fn load(
        &self,
        read: &dyn ReadSide,
        position: i64,
        id: BuildId,
        needs: Needs,
    ) -> Result<Option<Arc<BuildInfo>>, ApiError> {
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
                self.reads.fetch_add(1, Ordering::Relaxed);
                let Some((have, base)) = base else {
                    let build =
                        load_build_again(read, id, needs, earlier.as_deref(), &self.builders)
                            .await?;
                    return Ok::<_, ApiError>(build.map(Arc::new));
                };
                let first = base
                    .get_or_try_init(|| async {
                        let build =
                            load_build_again(read, id, have, earlier.as_deref(), &self.builders)
                                .await?;
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
        Ok(loaded.clone())
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
                    out.push(Arc::unwrap_or_clone(info));
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

/// Reads the builds `ids` with their builders, requests, buildsets, source stamps and
/// properties, and the steps, previous builds and changes that `needs` asks for, in one round
/// trip to the database whatever their number (the builders are kept in `known`).
async fn load_builds(
    read: &dyn ReadSide,
    ids: &[BuildId],
    needs: Needs,
    known: &Builders,
) -> Result<Vec<BuildInfo>, ApiError> {
    let db = read.db();
    let wanted = kiln_db::BuildsWanted {
        steps: needs.steps,
        previous: needs.previous,
        changed: needs.users,
    };
    let kiln_db::BuildsRead {
        builds: rows,
        requests,
        buildsets,
        sourcestamps,
        mut properties,
        steps,
        logs,
        previous: comparable,
        changed,
    } = db.read_builds(ids, wanted).await?;
    let mut builder_ids: Vec<BuilderId> = rows.iter().map(|r| r.builderid).collect();
    builder_ids.sort_unstable_by_key(|b| b.0);
    builder_ids.dedup();
    let builders = known.get(read, &builder_ids).await?;
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
