//! `Dependent`: when a buildset of its upstream scheduler completes with SUCCESS or WARNINGS, it
//! builds the same source stamps on its own builders.
//!
//! The upstream buildsets it waits for are kept in `object_state` (`upstream_bsids`, as Buildbot
//! names it), so one that completes while the master is down is built when it starts again.

use kiln_config::DependentConfig;
use kiln_core::{BuildSetId, Properties, Results, SourceStampId};
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};

use super::buildsets;
use crate::master::Master;

/// Buildsets read per query while looking for the upstream's new ones.
const BUILDSET_BATCH: i64 = 100;

pub struct DependentScheduler {
    objectid: i64,
    pub config: DependentConfig,
    /// Upstream buildsets not complete yet.
    watched: Vec<i64>,
    /// The newest buildset looked at.
    last_seen: i64,
}

impl DependentScheduler {
    pub async fn restore(
        master: &Master,
        config: &DependentConfig,
    ) -> anyhow::Result<DependentScheduler> {
        let objectid = master.updates.object_id(&config.name, "Dependent").await?;
        let watched = match master.db.get_state(objectid, "upstream_bsids").await? {
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(scheduler = %config.name, %e, "ignoring unreadable upstream_bsids");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let page = Page {
            order: vec![("id", true)],
            limit: Some(1),
            ..Page::default()
        };
        let last_seen = master
            .db
            .list_buildsets(&page)
            .await?
            .0
            .first()
            .map_or(0, |b| b.id.0);
        Ok(DependentScheduler {
            objectid,
            config: config.clone(),
            watched,
            last_seen,
        })
    }

    /// Notes the upstream's new buildsets and builds after those that completed well.
    pub async fn check(&mut self, master: &Master, enabled: bool) -> anyhow::Result<()> {
        let before = self.watched.clone();
        loop {
            let page = Page {
                filters: vec![Filter {
                    column: "id",
                    op: FilterOp::Gt,
                    values: vec![SqlValue::Int(self.last_seen)],
                }],
                order: vec![("id", false)],
                limit: Some(BUILDSET_BATCH),
                offset: None,
                count_total: false,
            };
            let (rows, _) = master.db.list_buildsets(&page).await?;
            for bs in &rows {
                let props = master.db.buildset_properties(bs.id).await?;
                let from_upstream = matches!(props.get("scheduler"),
                    Some(kiln_core::PropertyValue::Str(s)) if *s == self.config.upstream);
                if from_upstream {
                    self.watched.push(bs.id.0);
                }
                self.last_seen = bs.id.0;
            }
            if (rows.len() as i64) < BUILDSET_BATCH {
                break;
            }
        }
        let mut still = Vec::with_capacity(self.watched.len());
        for bsid in std::mem::take(&mut self.watched) {
            match master.db.get_buildset(BuildSetId(bsid)).await? {
                Some(bs) if bs.complete => {
                    let ok = matches!(
                        bs.results.and_then(Results::from_code),
                        Some(Results::Success | Results::Warnings)
                    );
                    if ok && enabled {
                        self.submit(master, &bs.sourcestamps).await?;
                    }
                }
                Some(_) => still.push(bsid),
                // Gone (deleted): nothing to wait for.
                None => {}
            }
        }
        self.watched = still;
        if self.watched != before {
            let text = serde_json::to_string(&self.watched)?;
            master
                .updates
                .set_state(self.objectid, "upstream_bsids", &text)
                .await?;
        }
        Ok(())
    }

    async fn submit(&self, master: &Master, sourcestamps: &[i64]) -> anyhow::Result<()> {
        let ids: Vec<SourceStampId> = sourcestamps.iter().map(|i| SourceStampId(*i)).collect();
        let sourcestamps = master
            .db
            .get_sourcestamps(&ids)
            .await?
            .iter()
            .map(kiln_db::SourceStampRow::to_sourcestamp)
            .collect();
        let c = &self.config;
        let target = buildsets::Target {
            scheduler: &c.name,
            reason: buildsets::reason(&c.reason, "Dependent", &c.name),
            properties: &c.properties,
            builder_names: &c.builder_names,
            rendered_builder_names: c.rendered_builder_names.as_ref(),
            priority: c.priority,
            codebases: &[],
        };
        buildsets::submit(
            master,
            &target,
            sourcestamps,
            Properties::new(),
            &Properties::new(),
            None,
        )
        .await?;
        Ok(())
    }
}
