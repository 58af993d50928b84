//! `SingleBranchScheduler` and `AnyBranchScheduler`: changes that interest the scheduler go into
//! its tree-stable timer (`kiln_core::schedulers::basic`), whose decisions become stored
//! classifications and buildsets.

use kiln_config::{BasicSchedulerConfig, Functions};
use kiln_core::SchedulerId;
use kiln_core::change::Change;
use kiln_core::schedulers::basic::{Basic, Decision};
use kiln_db::ChangeRow;

use super::buildsets::{self, Target};
use super::runner::{Interest, core_change};
use crate::master::Master;

pub struct BasicScheduler {
    id: SchedulerId,
    pub config: BasicSchedulerConfig,
    state: Basic,
}

impl BasicScheduler {
    /// Starts the scheduler with the timers of its stored classifications armed.
    pub async fn restore(
        master: &Master,
        config: &BasicSchedulerConfig,
    ) -> anyhow::Result<BasicScheduler> {
        let id = master.updates.find_scheduler_id(&config.name).await?;
        let mut state = Basic::new(
            config.tree_stable_timer,
            config.per_branch,
            config.only_important,
        );
        let now = master.updates.now();
        for (changeid, important) in master.db.change_classifications(id).await? {
            if let Some(row) = buildsets::get_change(master, changeid).await? {
                // The classification is stored already; only the timer needs arming.
                let _ = state.got_change(now, &core_change(&row), important);
            }
        }
        Ok(BasicScheduler {
            id,
            config: config.clone(),
            state,
        })
    }

    pub fn next_deadline(&self) -> Option<i64> {
        self.state.next_deadline()
    }

    pub async fn got_change(
        &mut self,
        master: &Master,
        functions: &Functions,
        change: &Change,
        row: &ChangeRow,
    ) -> anyhow::Result<()> {
        let Some(important) = Interest::of_basic(&self.config).judge(functions, change) else {
            return Ok(());
        };
        let decisions = self
            .state
            .got_change(master.updates.now(), change, important);
        self.apply(master, decisions, Some(row)).await
    }

    pub async fn fire_due(
        &mut self,
        master: &Master,
        now: i64,
        enabled: bool,
    ) -> anyhow::Result<()> {
        let mut decisions = self.state.fire_due(now);
        if !enabled {
            // Disabled since the changes came: they are forgotten, not built.
            decisions = decisions
                .into_iter()
                .map(|d| match d {
                    Decision::Buildset { forget, .. } => {
                        tracing::info!(scheduler = %self.config.name, "the scheduler is disabled; not building");
                        Decision::Forget(forget)
                    }
                    other => other,
                })
                .collect();
        }
        self.apply(master, decisions, None).await
    }

    async fn apply(
        &self,
        master: &Master,
        decisions: Vec<Decision>,
        known: Option<&ChangeRow>,
    ) -> anyhow::Result<()> {
        for d in decisions {
            match d {
                Decision::Classify { change, important } => {
                    master
                        .updates
                        .classify_change(self.id, change, important)
                        .await?;
                }
                Decision::Buildset { changes, forget } => {
                    let c = &self.config;
                    let target = Target {
                        scheduler: &c.name,
                        reason: buildsets::reason(&c.reason, &c.class_name, &c.name),
                        properties: &c.properties,
                        builder_names: &c.builder_names,
                        rendered_builder_names: c.rendered_builder_names.as_ref(),
                        priority: c.priority,
                        codebases: &c.codebases,
                    };
                    buildsets::for_changes(master, &target, &changes, known).await?;
                    master
                        .updates
                        .flush_classifications(self.id, &forget)
                        .await?;
                }
                Decision::Forget(forget) => {
                    master
                        .updates
                        .flush_classifications(self.id, &forget)
                        .await?
                }
            }
        }
        Ok(())
    }
}
