//! Buildbot's basic schedulers: `SingleBranchScheduler` (one tree-stable timer) and
//! `AnyBranchScheduler` (one timer per codebase, project, repository and branch).
//!
//! Without a tree-stable timer an important change is built at once, alone, and an unimportant one
//! is ignored. With a timer, an important change starts or restarts its timer, an unimportant one
//! restarts it only if it is already running, and every change is classified (remembered with its
//! importance). When a timer fires, one buildset is made from all the changes classified for it, in
//! change order (only the important ones with `onlyImportant`), and their classifications are
//! forgotten. Classifications are stored by the master, so after a restart [`Basic::got_change`]
//! is called again for each and the timers start afresh, as Buildbot does.

use std::collections::BTreeMap;

use crate::ChangeId;
use crate::change::Change;

/// Which timer a change belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    /// The single timer of a `SingleBranchScheduler`.
    Only,
    /// One timer of an `AnyBranchScheduler`.
    Branch {
        codebase: String,
        project: String,
        repository: String,
        branch: Option<String>,
    },
}

/// What the master must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Remember that `change` was seen, and whether it was important.
    Classify { change: ChangeId, important: bool },
    /// Submit one buildset for `changes` (in order), then forget the classifications in `forget`.
    Buildset {
        changes: Vec<ChangeId>,
        forget: Vec<ChangeId>,
    },
    /// Forget these classifications without building (none of them was important enough).
    Forget(Vec<ChangeId>),
}

#[derive(Debug, Clone)]
pub struct Basic {
    /// Seconds of quiet before building; `None` builds each important change at once.
    tree_stable_timer: Option<i64>,
    per_branch: bool,
    only_important: bool,
    /// Running timers and when they fire.
    timers: BTreeMap<TimerKey, i64>,
    /// Classified changes: their timer and importance.
    classified: BTreeMap<ChangeId, (TimerKey, bool)>,
}

impl Basic {
    /// A `SingleBranchScheduler` (`per_branch` false) or `AnyBranchScheduler` (true). A timer of
    /// zero seconds or less counts as no timer, as in Buildbot.
    pub fn new(tree_stable_timer: Option<i64>, per_branch: bool, only_important: bool) -> Basic {
        Basic {
            tree_stable_timer: tree_stable_timer.filter(|t| *t > 0),
            per_branch,
            only_important,
            timers: BTreeMap::new(),
            classified: BTreeMap::new(),
        }
    }

    pub fn key_for(&self, change: &Change) -> TimerKey {
        if self.per_branch {
            TimerKey::Branch {
                codebase: change.codebase.clone(),
                project: change.project.clone(),
                repository: change.repository.clone(),
                branch: change.branch.clone(),
            }
        } else {
            TimerKey::Only
        }
    }

    /// A change that passed the scheduler's filter arrives at `now`.
    pub fn got_change(&mut self, now: i64, change: &Change, important: bool) -> Vec<Decision> {
        let Some(wait) = self.tree_stable_timer else {
            return if important {
                vec![Decision::Buildset {
                    changes: vec![change.id],
                    forget: Vec::new(),
                }]
            } else {
                Vec::new()
            };
        };
        let key = self.key_for(change);
        if important || self.timers.contains_key(&key) {
            self.timers.insert(key.clone(), now + wait);
        }
        self.classified.insert(change.id, (key, important));
        vec![Decision::Classify {
            change: change.id,
            important,
        }]
    }

    /// When the next timer fires, if one is running.
    pub fn next_deadline(&self) -> Option<i64> {
        self.timers.values().min().copied()
    }

    /// Fires every timer due at `now`.
    pub fn fire_due(&mut self, now: i64) -> Vec<Decision> {
        let due: Vec<TimerKey> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut decisions = Vec::new();
        for key in due {
            self.timers.remove(&key);
            let mine: Vec<(ChangeId, bool)> = self
                .classified
                .iter()
                .filter(|(_, (k, _))| *k == key)
                .map(|(id, (_, important))| (*id, *important))
                .collect();
            if mine.is_empty() {
                continue;
            }
            for (id, _) in &mine {
                self.classified.remove(id);
            }
            let changes: Vec<ChangeId> = mine
                .iter()
                .filter(|(_, important)| *important || !self.only_important)
                .map(|(id, _)| *id)
                .collect();
            let forget = mine.into_iter().map(|(id, _)| id).collect();
            if changes.is_empty() {
                decisions.push(Decision::Forget(forget));
            } else {
                decisions.push(Decision::Buildset { changes, forget });
            }
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: i64, branch: &str) -> Change {
        Change {
            id: ChangeId(id),
            branch: Some(branch.to_string()),
            ..Change::default()
        }
    }

    fn ids(v: &[i64]) -> Vec<ChangeId> {
        v.iter().map(|i| ChangeId(*i)).collect()
    }

    #[test]
    fn without_a_timer_important_changes_build_at_once_and_others_are_ignored() {
        let mut s = Basic::new(None, false, false);
        assert_eq!(
            s.got_change(100, &change(1, "main"), true),
            vec![Decision::Buildset {
                changes: ids(&[1]),
                forget: vec![]
            }]
        );
        assert_eq!(s.got_change(100, &change(2, "main"), false), vec![]);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(Basic::new(Some(0), false, false).tree_stable_timer, None);
    }

    #[test]
    fn the_timer_restarts_on_each_change_and_builds_everything_classified() {
        let mut s = Basic::new(Some(60), false, false);
        // An unimportant change alone starts nothing.
        s.got_change(100, &change(1, "main"), false);
        assert_eq!(s.next_deadline(), None);
        // An important change starts the timer; a later unimportant one restarts it.
        s.got_change(110, &change(2, "main"), true);
        assert_eq!(s.next_deadline(), Some(170));
        s.got_change(150, &change(3, "main"), false);
        assert_eq!(s.next_deadline(), Some(210));
        assert_eq!(s.fire_due(209), vec![]);
        assert_eq!(
            s.fire_due(210),
            vec![Decision::Buildset {
                changes: ids(&[1, 2, 3]),
                forget: ids(&[1, 2, 3])
            }]
        );
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.fire_due(1000), vec![]);
    }

    #[test]
    fn only_important_leaves_unimportant_changes_out_of_the_buildset() {
        let mut s = Basic::new(Some(10), false, true);
        s.got_change(0, &change(1, "main"), true);
        s.got_change(1, &change(2, "main"), false);
        assert_eq!(
            s.fire_due(11),
            vec![Decision::Buildset {
                changes: ids(&[1]),
                forget: ids(&[1, 2])
            }]
        );
    }

    #[test]
    fn any_branch_keeps_one_timer_per_branch() {
        let mut s = Basic::new(Some(30), true, false);
        s.got_change(0, &change(1, "main"), true);
        s.got_change(10, &change(2, "dev"), true);
        s.got_change(20, &change(3, "main"), false);
        assert_eq!(s.next_deadline(), Some(40));
        assert_eq!(
            s.fire_due(40),
            vec![Decision::Buildset {
                changes: ids(&[2]),
                forget: ids(&[2])
            }]
        );
        assert_eq!(
            s.fire_due(50),
            vec![Decision::Buildset {
                changes: ids(&[1, 3]),
                forget: ids(&[1, 3])
            }]
        );
    }

    #[test]
    fn classifications_given_again_after_a_restart_rearm_the_timer() {
        let mut before = Basic::new(Some(60), false, false);
        assert_eq!(
            before.got_change(0, &change(7, "main"), true),
            vec![Decision::Classify {
                change: ChangeId(7),
                important: true
            }]
        );
        // The master restarts at 500 and hands back the stored classification.
        let mut after = Basic::new(Some(60), false, false);
        after.got_change(500, &change(7, "main"), true);
        assert_eq!(after.next_deadline(), Some(560));
        assert_eq!(
            after.fire_due(560),
            vec![Decision::Buildset {
                changes: ids(&[7]),
                forget: ids(&[7])
            }]
        );
    }
}
