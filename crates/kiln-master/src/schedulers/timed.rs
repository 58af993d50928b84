//! `Periodic` and `Nightly`: the core's timed state machine (`kiln_core::schedulers::timed`) with
//! its last build kept in `object_state` (`last_build`, `last_only_if_changed`, as Buildbot names
//! them) and, with `onlyIfChanged`, its changes classified in `scheduler_changes`.

use kiln_config::{Functions, TimedSchedulerConfig};
use kiln_core::change::Change;
use kiln_core::cron::{Calendar, Civil};
use kiln_core::schedulers::timed::{Outcome, Timed};
use kiln_core::{ChangeId, SchedulerId};

use super::buildsets::{self, Target};
use super::runner::Interest;
use super::triggerable;
use crate::master::Master;

pub struct TimedScheduler {
    id: SchedulerId,
    objectid: i64,
    pub config: TimedSchedulerConfig,
    calendar: ZoneCalendar,
    state: Timed,
    /// The classified changes of an `onlyIfChanged` scheduler, as stored.
    classified: Vec<(ChangeId, bool)>,
}

impl TimedScheduler {
    pub async fn restore(
        master: &Master,
        config: &TimedSchedulerConfig,
    ) -> anyhow::Result<TimedScheduler> {
        let id = master.updates.find_scheduler_id(&config.name).await?;
        let objectid = master
            .updates
            .object_id(&config.name, &config.class_name)
            .await?;
        let last_build = state_value(master, objectid, "last_build")
            .await?
            .and_then(|v| v.as_f64())
            .map(|f| f as i64);
        let last_only_if_changed = state_value(master, objectid, "last_only_if_changed")
            .await?
            .and_then(|v| v.as_bool());
        let calendar = ZoneCalendar::new(config.timezone.as_deref())?;
        let mut state = Timed::new(
            config.schedule.clone(),
            config.only_if_changed,
            config.force_at.clone(),
            last_build,
            last_only_if_changed,
        );
        state.arm(master.updates.now(), &calendar);
        let stored = master.db.change_classifications(id).await?;
        let classified = if config.only_if_changed {
            stored
        } else {
            // Without onlyIfChanged, changes play no part: leftovers are dropped, as in Buildbot.
            let all: Vec<ChangeId> = stored.into_iter().map(|(c, _)| c).collect();
            master.updates.flush_classifications(id, &all).await?;
            Vec::new()
        };
        Ok(TimedScheduler {
            id,
            objectid,
            config: config.clone(),
            calendar,
            state,
            classified,
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
    ) -> anyhow::Result<()> {
        let c = &self.config;
        if !c.only_if_changed {
            return Ok(());
        }
        let interest = Interest {
            name: &c.name,
            codebases: &c.codebases,
            filter: &c.change_filter,
            file_is_important: c.file_is_important,
        };
        let Some(important) = interest.judge(functions, change) else {
            return Ok(());
        };
        if c.only_important && !important {
            return Ok(());
        }
        master
            .updates
            .classify_change(self.id, change.id, important)
            .await?;
        self.classified.push((change.id, important));
        Ok(())
    }

    pub async fn fire_due(
        &mut self,
        master: &Master,
        now: i64,
        enabled: bool,
    ) -> anyhow::Result<()> {
        let Some(fired) = self.state.fire_due(now, &self.calendar, &self.classified) else {
            return Ok(());
        };
        // The build time is stored first, so a failure below is not repeated at every start.
        master
            .updates
            .set_state(self.objectid, "last_build", &fired.last_build.to_string())
            .await?;
        if let Some(v) = fired.store_only_if_changed {
            master
                .updates
                .set_state(self.objectid, "last_only_if_changed", &v.to_string())
                .await?;
        }
        let c = &self.config;
        if !enabled {
            tracing::info!(scheduler = %c.name, "the scheduler is disabled; not building");
            return Ok(());
        }
        let target = Target {
            scheduler: &c.name,
            reason: buildsets::reason(&c.reason, &c.class_name, &c.name),
            properties: &c.properties,
            builder_names: &c.builder_names,
            rendered_builder_names: c.rendered_builder_names.as_ref(),
            priority: c.priority,
            codebases: &c.codebases,
        };
        if c.triggerable {
            // NightlyTriggerable: build what the last Trigger step asked for, once.
            if let Some(trigger) = triggerable::take_nightly(master, self.objectid).await? {
                triggerable::submit(master, &target, trigger).await?;
            }
            return Ok(());
        }
        match fired.outcome {
            Outcome::Skip => {
                tracing::info!(scheduler = %c.name, "skipping the build: no important changes");
            }
            Outcome::Defaults => buildsets::for_defaults(master, &target).await?,
            Outcome::Changes(changes) => {
                buildsets::for_changes(master, &target, &changes, None).await?;
                master
                    .updates
                    .flush_classifications(self.id, &changes)
                    .await?;
                self.classified.retain(|(id, _)| !changes.contains(id));
            }
        }
        Ok(())
    }
}

async fn state_value(
    master: &Master,
    objectid: i64,
    name: &str,
) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(text) = master.db.get_state(objectid, name).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&text) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            tracing::warn!(%name, %e, "ignoring a stored scheduler state that is not JSON");
            Ok(None)
        }
    }
}

/// The calendar of a time zone, for cron schedules.
pub struct ZoneCalendar(jiff::tz::TimeZone);

impl ZoneCalendar {
    /// The named zone, or the master's own.
    pub fn new(name: Option<&str>) -> anyhow::Result<ZoneCalendar> {
        Ok(ZoneCalendar(match name {
            Some(n) => jiff::tz::TimeZone::get(n)?,
            None => jiff::tz::TimeZone::system(),
        }))
    }
}

impl Calendar for ZoneCalendar {
    fn civil(&self, timestamp: i64) -> Civil {
        let t = jiff::Timestamp::from_second(timestamp).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let dt = self.0.to_datetime(t);
        Civil {
            year: i32::from(dt.year()),
            month: dt.month() as u8,
            day: dt.day() as u8,
            hour: dt.hour() as u8,
            minute: dt.minute() as u8,
        }
    }

    fn timestamp(&self, c: Civil) -> i64 {
        let year = i16::try_from(c.year).unwrap_or(i16::MAX);
        let dt = jiff::civil::DateTime::new(
            year,
            c.month as i8,
            c.day as i8,
            c.hour as i8,
            c.minute as i8,
            0,
            0,
        );
        // jiff's "compatible" rule: a time skipped by a change of offset is moved past the gap,
        // a repeated one is its first occurrence.
        match dt.and_then(|dt| dt.to_zoned(self.0.clone())) {
            Ok(z) => z.timestamp().as_second(),
            Err(_) => i64::MAX,
        }
    }
}
