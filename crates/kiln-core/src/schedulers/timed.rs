//! The timed schedulers, `Periodic` and `Nightly`, as a state machine.
//!
//! A timed scheduler is armed with its next build time, computed from the time of its last build
//! (kept by the master across restarts) or, the first time, from now. When that time comes it
//! fires: the last build time becomes the planned time, and the outcome says what to build. A
//! time missed while the master was down is built once, at start, and the schedule continues from
//! there, as Buildbot does.
//!
//! With `onlyIfChanged`, the master classifies changes as for the tree-stable timer and hands the
//! classifications in at firing; without an important change the build is skipped, except the
//! very first one and at the `force_at_*` times.

use crate::ChangeId;
use crate::cron::{Calendar, Cron};

/// When a timed scheduler builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `Periodic`: every so many seconds after the last build.
    Periodic { interval: i64 },
    /// `Nightly`: at the times of a cron schedule.
    Cron(Cron),
}

/// What a firing asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `onlyIfChanged` and no important change: nothing is built, the classifications are kept.
    Skip,
    /// A buildset for these changes (every classified one, in order); their classifications are
    /// then forgotten.
    Changes(Vec<ChangeId>),
    /// No changes: a buildset of the scheduler's codebases at their configured defaults.
    Defaults,
}

/// A firing: what to store and what to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The new `last_build`, stored before anything is built.
    pub last_build: i64,
    /// A new `last_only_if_changed` to store, when the setting changed since the last build.
    pub store_only_if_changed: Option<bool>,
    pub outcome: Outcome,
}

/// The state of one timed scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    schedule: Schedule,
    only_if_changed: bool,
    /// The `force_at_*` schedule: with `onlyIfChanged`, a build at one of its times runs even
    /// without changes.
    force_at: Option<Cron>,
    last_build: Option<i64>,
    /// The `onlyIfChanged` setting of the last build; absent counts as true.
    last_only_if_changed: bool,
    due: Option<i64>,
}

impl Timed {
    /// A scheduler whose last build (if any) and that build's `onlyIfChanged` were stored.
    pub fn new(
        schedule: Schedule,
        only_if_changed: bool,
        force_at: Option<Cron>,
        last_build: Option<i64>,
        last_only_if_changed: Option<bool>,
    ) -> Timed {
        Timed {
            schedule,
            only_if_changed,
            force_at,
            last_build,
            last_only_if_changed: last_only_if_changed.unwrap_or(true),
            due: None,
        }
    }

    /// Computes the next build time; a time already past is due now.
    pub fn arm(&mut self, now: i64, calendar: &dyn Calendar) {
        let next = match (&self.schedule, self.last_build) {
            (Schedule::Periodic { .. }, None) => Some(now),
            (Schedule::Periodic { interval }, Some(last)) => last.checked_add(*interval),
            (Schedule::Cron(cron), last) => cron.next_timestamp(calendar, last.unwrap_or(now)),
        };
        self.due = next.map(|t| t.max(now));
    }

    /// When the scheduler fires next; `None` if its schedule never comes.
    pub fn next_deadline(&self) -> Option<i64> {
        self.due
    }

    pub fn last_build(&self) -> Option<i64> {
        self.last_build
    }

    /// Fires if the scheduler is due at `now`, given the classified changes (`(change,
    /// important)`) of an `onlyIfChanged` scheduler, and arms the next time.
    pub fn fire_due(
        &mut self,
        now: i64,
        calendar: &dyn Calendar,
        classified: &[(ChangeId, bool)],
    ) -> Option<Fired> {
        let at = self.due.filter(|d| *d <= now)?;
        let first = self.last_build.is_none();
        self.last_build = Some(at);
        self.arm(now, calendar);
        let forced = self
            .force_at
            .as_ref()
            .is_some_and(|f| f.matches(&calendar.civil(at)));
        let any_important = classified.iter().any(|(_, important)| *important);
        let skip = self.last_only_if_changed
            && self.only_if_changed
            && !any_important
            && !first
            && !forced;
        if skip {
            return Some(Fired {
                last_build: at,
                store_only_if_changed: None,
                outcome: Outcome::Skip,
            });
        }
        let store_only_if_changed =
            (self.last_only_if_changed != self.only_if_changed).then_some(self.only_if_changed);
        self.last_only_if_changed = self.only_if_changed;
        let mut changes: Vec<ChangeId> = classified.iter().map(|(id, _)| *id).collect();
        changes.sort();
        Some(Fired {
            last_build: at,
            store_only_if_changed,
            outcome: if changes.is_empty() {
                Outcome::Defaults
            } else {
                Outcome::Changes(changes)
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::{Civil, Utc};

    const T0: i64 = 1_767_225_600; // 2026-01-01 00:00 UTC

    fn periodic(interval: i64, last: Option<i64>) -> Timed {
        let mut t = Timed::new(Schedule::Periodic { interval }, false, None, last, None);
        t.arm(T0, &Utc);
        t
    }

    #[test]
    fn periodic_builds_at_start_then_every_interval() {
        let mut p = periodic(600, None);
        assert_eq!(p.next_deadline(), Some(T0), "the first build is at once");
        let fired = p.fire_due(T0, &Utc, &[]).unwrap();
        assert_eq!(fired.last_build, T0);
        assert_eq!(fired.outcome, Outcome::Defaults);
        assert_eq!(p.next_deadline(), Some(T0 + 600));
        assert_eq!(p.fire_due(T0 + 599, &Utc, &[]), None, "not yet");
        let fired = p.fire_due(T0 + 600, &Utc, &[(ChangeId(3), false)]).unwrap();
        assert_eq!(fired.outcome, Outcome::Changes(vec![ChangeId(3)]));
    }

    #[test]
    fn a_time_missed_while_down_is_built_once_and_the_phase_moves() {
        // The last build was two hours and a bit ago: one build now, the next an interval later.
        let mut p = periodic(3600, Some(T0 - 7300));
        assert_eq!(p.next_deadline(), Some(T0));
        p.fire_due(T0, &Utc, &[]).unwrap();
        assert_eq!(p.next_deadline(), Some(T0 + 3600));
    }

    #[test]
    fn the_planned_time_is_recorded_not_the_late_wakeup() {
        let mut p = periodic(600, Some(T0 - 100));
        let fired = p.fire_due(T0 + 900, &Utc, &[]).unwrap();
        assert_eq!(fired.last_build, T0 + 500);
        assert_eq!(p.next_deadline(), Some(T0 + 1100));
    }

    fn nightly(only_if_changed: bool, force_at: Option<Cron>, last: Option<i64>) -> Timed {
        let cron = Cron::parse("0", "3", "*", "*", "*").unwrap();
        let mut t = Timed::new(Schedule::Cron(cron), only_if_changed, force_at, last, None);
        t.arm(T0, &Utc);
        t
    }

    #[test]
    fn nightly_waits_for_its_time_and_only_if_changed_skips_quiet_nights() {
        let mut n = nightly(true, None, Some(T0 - 86_400 + 3 * 3600));
        let night1 = T0 + 3 * 3600;
        assert_eq!(n.next_deadline(), Some(night1));
        let fired = n.fire_due(night1, &Utc, &[(ChangeId(7), false)]).unwrap();
        assert_eq!(fired.outcome, Outcome::Skip, "only unimportant changes");
        assert_eq!(fired.last_build, night1);
        let night2 = night1 + 86_400;
        assert_eq!(n.next_deadline(), Some(night2));
        let fired = n
            .fire_due(night2, &Utc, &[(ChangeId(9), true), (ChangeId(7), false)])
            .unwrap();
        assert_eq!(
            fired.outcome,
            Outcome::Changes(vec![ChangeId(7), ChangeId(9)])
        );
    }

    #[test]
    fn the_first_build_and_force_at_times_run_without_changes() {
        let mut first = nightly(true, None, None);
        let fired = first.fire_due(T0 + 3 * 3600, &Utc, &[]).unwrap();
        assert_eq!(
            fired.outcome,
            Outcome::Defaults,
            "never skipped the first time"
        );
        // force_at on Sundays: 2026-01-04 is one.
        let sundays = Cron::parse("0", "*", "*", "*", "0").unwrap();
        let mut n = nightly(true, Some(sundays), Some(T0));
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            let due = n.next_deadline().unwrap();
            let fired = n.fire_due(due, &Utc, &[]).unwrap();
            let day = Utc.civil(due);
            outcomes.push((day.day, fired.outcome));
        }
        assert_eq!(
            outcomes,
            [
                (1, Outcome::Skip),
                (2, Outcome::Skip),
                (3, Outcome::Skip),
                (4, Outcome::Defaults)
            ]
        );
        assert_eq!(
            Utc.civil(n.next_deadline().unwrap()),
            Civil {
                year: 2026,
                month: 1,
                day: 5,
                hour: 3,
                minute: 0
            }
        );
    }

    #[test]
    fn a_changed_only_if_changed_is_stored_with_the_next_build() {
        let mut n = Timed::new(
            Schedule::Periodic { interval: 60 },
            false,
            None,
            Some(T0),
            Some(true),
        );
        n.arm(T0 + 60, &Utc);
        let fired = n.fire_due(T0 + 60, &Utc, &[]).unwrap();
        assert_eq!(fired.store_only_if_changed, Some(false));
        let fired = n.fire_due(T0 + 120, &Utc, &[]).unwrap();
        assert_eq!(fired.store_only_if_changed, None);
    }
}
