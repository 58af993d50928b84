//! Builds read with where they came from, in one round trip: what a report about them needs.
//!
//! A report about a build names its builder, its request and buildset, the source stamps it
//! was built from, its properties, and often its steps, the build before it and whether changes
//! made it. Read one kind of row after another, that is ten statements, each a round trip to
//! SQLite's thread that costs far more than the rows it reads; and a master whose builds end
//! one at a time pays them for every build. Here each kind of row is selected through the
//! build ids alone (the requests of these builds, the buildsets of those requests, ...), so
//! that all the statements go together ([`Db::select_each`]).

use std::collections::{HashMap, HashSet};

use kiln_core::{BuildId, Properties};

use crate::listing::{Select, json_ids, qualified};
use crate::rows::RowExt;
use crate::{
    BuildRequestRow, BuildRow, BuildSetRow, Db, LogRow, Result, SourceStampRow, StepRow,
    buildrequests, builds, buildsets, logs, sourcestamps, steps,
};

/// What to read besides the builds, their requests, buildsets, source stamps and properties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildsWanted {
    /// The builds' steps, and their logs.
    pub steps: bool,
    /// Each build's previous build: the newest numbered below it on its builder that is
    /// complete and is not to be retried (Buildbot passes over those too).
    pub previous: bool,
    /// Which of the source stamps a change made.
    pub changed: bool,
}

/// Builds and where they came from, as [`Db::read_builds`] read them; each list in the order
/// of its ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildsRead {
    pub builds: Vec<BuildRow>,
    pub requests: Vec<BuildRequestRow>,
    pub buildsets: Vec<BuildSetRow>,
    pub sourcestamps: Vec<SourceStampRow>,
    pub properties: HashMap<BuildId, Properties>,
    /// In the order of their builds, then of their numbers.
    pub steps: Vec<StepRow>,
    pub logs: Vec<LogRow>,
    /// The previous builds, when asked for.
    pub previous: Vec<BuildRow>,
    /// The ids of the source stamps that a change made, when asked for.
    pub changed: HashSet<i64>,
}

/// The request ids of the builds listed in `{ids}`.
const REQUESTS: &str = "SELECT buildrequestid FROM builds WHERE id IN ({ids})";
/// The buildset ids of those requests.
const BUILDSETS: &str = "SELECT buildsetid FROM buildrequests WHERE id IN ({requests})";
/// The source stamp ids of those buildsets.
const SOURCESTAMPS: &str =
    "SELECT sourcestampid FROM buildset_sourcestamps WHERE buildsetid IN ({buildsets})";

impl Db {
    /// Reads the builds `ids` with their requests, buildsets, source stamps (with their
    /// patches) and properties, and what `wanted` asks for, in one round trip for up to
    /// [`crate::listing::IN_LIST_MAX`] builds.
    pub async fn read_builds(&self, ids: &[BuildId], wanted: BuildsWanted) -> Result<BuildsRead> {
        let mut out = BuildsRead::default();
        for chunk in ids.chunks(crate::listing::IN_LIST_MAX) {
            self.read_chunk(chunk, wanted, &mut out).await?;
        }
        Ok(out)
    }

    async fn read_chunk(
        &self,
        ids: &[BuildId],
        wanted: BuildsWanted,
        out: &mut BuildsRead,
    ) -> Result<()> {
        // Every select names the ids once, as `$1`.
        let (marks, list) = json_ids(self.backend(), ids.iter().map(|id| id.0));
        let requests = REQUESTS.replace("{ids}", marks);
        let buildsets = BUILDSETS.replace("{requests}", &requests);
        let stamps = SOURCESTAMPS.replace("{buildsets}", &buildsets);
        let binds = vec![list];
        let select = |columns: &str, rest: String| Select {
            columns: columns.to_string(),
            rest,
            binds: binds.clone(),
        };
        let mut selects = vec![
            select(
                builds::COLUMNS,
                format!("FROM builds WHERE id IN ({marks}) ORDER BY id"),
            ),
            select(
                buildrequests::COLUMNS,
                format!(
                    "FROM {} WHERE br.id IN ({requests}) ORDER BY br.id",
                    buildrequests::FROM
                ),
            ),
            select(
                buildsets::COLUMNS,
                format!("FROM buildsets WHERE id IN ({buildsets}) ORDER BY id"),
            ),
            select(
                "buildsetid, sourcestampid",
                format!("FROM buildset_sourcestamps WHERE buildsetid IN ({buildsets}) ORDER BY id"),
            ),
            select(
                sourcestamps::COLUMNS,
                format!("FROM sourcestamps WHERE id IN ({stamps}) ORDER BY id"),
            ),
            // Joined rather than selected through the source stamps' patch ids, which SQLite
            // reads ten times slower.
            select(
                &qualified("p", sourcestamps::PATCH_COLUMNS),
                format!(
                    "FROM sourcestamps s JOIN patches p ON p.id = s.patchid \
                     WHERE s.id IN ({stamps}) ORDER BY p.id"
                ),
            ),
            select(
                builds::PROPERTY_COLUMNS,
                format!("FROM build_properties WHERE buildid IN ({marks}) ORDER BY buildid, name"),
            ),
        ];
        if wanted.steps {
            selects.push(select(
                steps::COLUMNS,
                format!("FROM steps WHERE buildid IN ({marks}) ORDER BY buildid, number"),
            ));
            selects.push(select(
                &logs::log_columns("l"),
                format!(
                    "FROM logs l JOIN steps s ON s.id = l.stepid WHERE s.buildid IN ({marks}) \
                     ORDER BY l.id"
                ),
            ));
        }
        if wanted.previous {
            // Each build's previous build is one step down the (builderid, number) index; the
            // innermost `builds` is unaliased, so that the unqualified columns of
            // `builds::COMPARABLE` are its own.
            selects.push(select(
                builds::COLUMNS,
                format!(
                    "FROM builds WHERE id IN (SELECT (SELECT id FROM builds \
                     WHERE builderid = b.builderid AND number < b.number AND {} \
                     ORDER BY number DESC LIMIT 1) FROM builds b WHERE b.id IN ({marks})) \
                     ORDER BY id",
                    builds::COMPARABLE
                ),
            ));
        }
        if wanted.changed {
            selects.push(select(
                "sourcestampid",
                format!(
                    "FROM changes WHERE sourcestampid IN ({stamps}) GROUP BY sourcestampid \
                     ORDER BY sourcestampid"
                ),
            ));
        }
        let mut read = self.select_each(selects).await?.into_iter();
        let mut next = || read.next().unwrap_or_default();
        out.builds.extend(
            next()
                .iter()
                .map(builds::build)
                .collect::<Result<Vec<_>>>()?,
        );
        for r in next() {
            out.requests.push(buildrequests::request(&r)?);
        }
        let (buildset_rows, stamp_links) = (next(), next());
        let mut stamps_of: HashMap<i64, Vec<i64>> = HashMap::new();
        for r in &stamp_links {
            stamps_of
                .entry(r.int("buildsetid")?)
                .or_default()
                .push(r.int("sourcestampid")?);
        }
        for r in &buildset_rows {
            out.buildsets.push(buildsets::buildset(r, &mut stamps_of)?);
        }
        let (stamp_rows, patch_rows) = (next(), next());
        let patches = patch_rows
            .iter()
            .map(sourcestamps::patch)
            .collect::<Result<Vec<_>>>()?;
        for r in &stamp_rows {
            let patch = r
                .opt_int("patchid")?
                .and_then(|id| patches.iter().find(|p| p.id == id).cloned());
            out.sourcestamps.push(sourcestamps::sourcestamp(r, patch)?);
        }
        for r in next() {
            builds::add_property(&mut out.properties, &r)?;
        }
        if wanted.steps {
            for r in next() {
                out.steps.push(steps::step(&r)?);
            }
            for r in next() {
                out.logs.push(logs::log(&r)?);
            }
        }
        if wanted.previous {
            for r in next() {
                out.previous.push(builds::build(&r)?);
            }
        }
        if wanted.changed {
            for r in next() {
                out.changed.insert(r.int("sourcestampid")?);
            }
        }
        Ok(())
    }
}
