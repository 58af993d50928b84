//! The build-request distributor: which pending request starts on which worker.
//!
//! This is Buildbot's `BuildRequestDistributor` as a pure function. The caller passes a snapshot of
//! the pending requests and of the workers, and gets back the builds to start. Builders are served
//! in Buildbot's default order (highest pending priority, then oldest request, then name); within a
//! builder the highest-priority, oldest request goes first. A worker takes at most one build per
//! builder and at most `max_builds` builds in all.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{BuildRequestId, BuilderId};

/// A request waiting for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub id: BuildRequestId,
    pub builder: BuilderId,
    pub priority: i64,
    pub submitted_at: i64,
}

/// A builder and the workers it may run on, in configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderSlots {
    pub id: BuilderId,
    pub name: String,
    pub workers: Vec<String>,
}

/// What the distributor needs to know about a worker right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerAvailability {
    pub name: String,
    /// Connected, attached and not paused.
    pub available: bool,
    /// `None` means unlimited.
    pub max_builds: Option<u32>,
    /// The builders this worker is running a build of.
    pub busy_builders: BTreeSet<BuilderId>,
}

/// A decision: start `request` on `worker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub request: BuildRequestId,
    pub builder: BuilderId,
    pub worker: String,
}

/// The choices a configuration may make instead of the defaults, as Buildbot's
/// `prioritizeBuilders`, `nextBuild`, `nextWorker` and `canStartBuild` do. The caller implements
/// them (with the configuration's functions); [`DefaultHooks`] keeps every default.
pub trait Hooks {
    /// The builders in the order to serve them, or `None` for the default order. Builders left
    /// out are not served in this pass.
    fn prioritize_builders(&self, builders: &[&BuilderSlots]) -> Option<Vec<BuilderId>>;
    /// The request of `builder` to start next among `requests` (in default order): `None` for the
    /// default (the first), `Some(None)` to start none now.
    fn next_build(
        &self,
        builder: &BuilderSlots,
        requests: &[&PendingRequest],
    ) -> Option<Option<BuildRequestId>>;
    /// The worker to run `request` on among the free `workers` (in default order): `None` for the
    /// default (the first), `Some(None)` for none.
    fn next_worker(
        &self,
        builder: &BuilderSlots,
        workers: &[&str],
        request: &PendingRequest,
    ) -> Option<Option<String>>;
    /// Whether `request` may start on `worker`; when not, the next worker is tried.
    fn can_start_build(
        &self,
        builder: &BuilderSlots,
        worker: &str,
        request: &PendingRequest,
    ) -> bool;
}

/// Buildbot's defaults.
pub struct DefaultHooks;

impl Hooks for DefaultHooks {
    fn prioritize_builders(&self, _: &[&BuilderSlots]) -> Option<Vec<BuilderId>> {
        None
    }
    fn next_build(
        &self,
        _: &BuilderSlots,
        _: &[&PendingRequest],
    ) -> Option<Option<BuildRequestId>> {
        None
    }
    fn next_worker(
        &self,
        _: &BuilderSlots,
        _: &[&str],
        _: &PendingRequest,
    ) -> Option<Option<String>> {
        None
    }
    fn can_start_build(&self, _: &BuilderSlots, _: &str, _: &PendingRequest) -> bool {
        true
    }
}

/// Chooses the builds to start now, with Buildbot's defaults.
pub fn distribute(
    pending: &[PendingRequest],
    builders: &[BuilderSlots],
    workers: &[WorkerAvailability],
) -> Vec<Assignment> {
    distribute_with(pending, builders, workers, &DefaultHooks)
}

/// Chooses the builds to start now.
///
/// By default, among the workers free for a request, the one running the fewest builds is
/// chosen, and the builder's configured order breaks ties, so the choice is deterministic and
/// spreads the load; `hooks` may choose otherwise.
pub fn distribute_with(
    pending: &[PendingRequest],
    builders: &[BuilderSlots],
    workers: &[WorkerAvailability],
    hooks: &dyn Hooks,
) -> Vec<Assignment> {
    let mut by_builder: BTreeMap<BuilderId, Vec<&PendingRequest>> = BTreeMap::new();
    for request in pending {
        by_builder.entry(request.builder).or_default().push(request);
    }
    for requests in by_builder.values_mut() {
        requests.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.submitted_at.cmp(&b.submitted_at))
                .then(a.id.cmp(&b.id))
        });
    }

    // Builders in Buildbot's default order, keyed by their most urgent request.
    let mut order: Vec<&BuilderSlots> = builders
        .iter()
        .filter(|b| by_builder.contains_key(&b.id))
        .collect();
    order.sort_by(|a, b| {
        let (ra, rb) = (by_builder[&a.id][0], by_builder[&b.id][0]);
        rb.priority
            .cmp(&ra.priority)
            .then(ra.submitted_at.cmp(&rb.submitted_at))
            .then(a.name.cmp(&b.name))
    });
    if let Some(chosen) = hooks.prioritize_builders(&order) {
        let mut seen = BTreeSet::new();
        order = chosen
            .iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| order.iter().find(|b| b.id == *id).copied())
            .collect();
    }

    let mut state: BTreeMap<&str, (u32, Option<u32>, BTreeSet<BuilderId>)> = workers
        .iter()
        .filter(|w| w.available)
        .map(|w| {
            let running = u32::try_from(w.busy_builders.len()).unwrap_or(u32::MAX);
            (
                w.name.as_str(),
                (running, w.max_builds, w.busy_builders.clone()),
            )
        })
        .collect();

    let mut assignments = Vec::new();
    for builder in order {
        let mut remaining: Vec<&PendingRequest> = by_builder[&builder.id].clone();
        while !remaining.is_empty() {
            // The workers free for this builder, least busy first, then in configured order.
            let mut free: Vec<(u32, usize, &str)> = builder
                .workers
                .iter()
                .enumerate()
                .filter_map(|(rank, name)| {
                    let (running, max, busy) = state.get(name.as_str())?;
                    let has_room = max.is_none_or(|m| *running < m);
                    (has_room && !busy.contains(&builder.id)).then_some((
                        *running,
                        rank,
                        name.as_str(),
                    ))
                })
                .collect();
            if free.is_empty() {
                break;
            }
            free.sort();
            let request = match hooks.next_build(builder, &remaining) {
                None => remaining[0],
                Some(Some(id)) => match remaining.iter().find(|r| r.id == id) {
                    Some(r) => *r,
                    None => break,
                },
                Some(None) => break,
            };
            let mut candidates: Vec<&str> = free.iter().map(|(_, _, n)| *n).collect();
            let mut chosen = None;
            while !candidates.is_empty() {
                let pick = match hooks.next_worker(builder, &candidates, request) {
                    None => candidates[0].to_string(),
                    Some(Some(name)) if candidates.contains(&name.as_str()) => name,
                    Some(_) => break,
                };
                if hooks.can_start_build(builder, &pick, request) {
                    chosen = Some(pick);
                    break;
                }
                candidates.retain(|c| *c != pick);
            }
            let Some(name) = chosen else { break };
            if let Some((running, _, busy)) = state.get_mut(name.as_str()) {
                *running += 1;
                busy.insert(builder.id);
            }
            remaining.retain(|r| r.id != request.id);
            assignments.push(Assignment {
                request: request.id,
                builder: builder.id,
                worker: name,
            });
        }
    }
    assignments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: i64, builder: i64, priority: i64, submitted_at: i64) -> PendingRequest {
        PendingRequest {
            id: BuildRequestId(id),
            builder: BuilderId(builder),
            priority,
            submitted_at,
        }
    }

    fn builder(id: i64, name: &str, workers: &[&str]) -> BuilderSlots {
        BuilderSlots {
            id: BuilderId(id),
            name: name.to_string(),
            workers: workers.iter().map(|w| w.to_string()).collect(),
        }
    }

    fn worker(name: &str, max_builds: Option<u32>, busy: &[i64]) -> WorkerAvailability {
        WorkerAvailability {
            name: name.to_string(),
            available: true,
            max_builds,
            busy_builders: busy.iter().map(|&b| BuilderId(b)).collect(),
        }
    }

    fn check(
        pending: &[PendingRequest],
        builders: &[BuilderSlots],
        workers: &[WorkerAvailability],
        expect: &[(i64, &str)],
    ) {
        let got: Vec<(i64, String)> = distribute(pending, builders, workers)
            .into_iter()
            .map(|a| (a.request.0, a.worker))
            .collect();
        let expect: Vec<(i64, String)> = expect.iter().map(|(r, w)| (*r, w.to_string())).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn one_build_per_builder_per_worker_oldest_first() {
        check(
            &[req(2, 1, 0, 20), req(1, 1, 0, 10), req(3, 1, 0, 30)],
            &[builder(1, "b", &["w1", "w2"])],
            &[worker("w1", None, &[]), worker("w2", None, &[])],
            &[(1, "w1"), (2, "w2")],
        );
    }

    #[test]
    fn priority_beats_age_and_max_builds_is_respected() {
        check(
            &[req(1, 1, 0, 10), req(2, 2, 5, 20)],
            &[builder(1, "a", &["w1"]), builder(2, "b", &["w1"])],
            &[worker("w1", Some(1), &[])],
            &[(2, "w1")],
        );
    }

    #[test]
    fn busy_and_unavailable_workers_are_skipped() {
        let mut gone = worker("w2", None, &[]);
        gone.available = false;
        check(
            &[req(1, 1, 0, 10)],
            &[builder(1, "a", &["w1", "w2", "w3"])],
            &[worker("w1", None, &[1]), gone, worker("w3", None, &[])],
            &[(1, "w3")],
        );
    }

    #[test]
    fn load_is_spread_to_the_least_busy_worker() {
        check(
            &[req(1, 1, 0, 10), req(2, 2, 0, 11)],
            &[
                builder(1, "a", &["w1", "w2"]),
                builder(2, "b", &["w1", "w2"]),
            ],
            &[worker("w1", None, &[]), worker("w2", None, &[])],
            &[(1, "w1"), (2, "w2")],
        );
    }

    struct Custom;
    impl Hooks for Custom {
        fn prioritize_builders(&self, builders: &[&BuilderSlots]) -> Option<Vec<BuilderId>> {
            // Reversed: the last in default order goes first.
            Some(builders.iter().rev().map(|b| b.id).collect())
        }
        fn next_build(
            &self,
            _: &BuilderSlots,
            requests: &[&PendingRequest],
        ) -> Option<Option<BuildRequestId>> {
            Some(requests.last().map(|r| r.id))
        }
        fn next_worker(
            &self,
            _: &BuilderSlots,
            workers: &[&str],
            _: &PendingRequest,
        ) -> Option<Option<String>> {
            Some(workers.last().map(|w| w.to_string()))
        }
        fn can_start_build(&self, _: &BuilderSlots, worker: &str, _: &PendingRequest) -> bool {
            worker != "w3"
        }
    }

    #[test]
    fn hooks_choose_builders_requests_and_workers() {
        let pending = [req(1, 1, 0, 10), req(2, 1, 0, 20), req(3, 2, 0, 30)];
        let builders = [
            builder(1, "a", &["w1", "w2", "w3"]),
            builder(2, "b", &["w1"]),
        ];
        let workers = [
            worker("w1", Some(1), &[]),
            worker("w2", None, &[]),
            worker("w3", None, &[]),
        ];
        let got: Vec<(i64, String)> = distribute_with(&pending, &builders, &workers, &Custom)
            .into_iter()
            .map(|a| (a.request.0, a.worker))
            .collect();
        // b first (reversed) takes w1; a's newest request goes to the last free worker that may
        // start it (w3 refuses, so w2); a's other request finds no worker left but w3.
        assert_eq!(got, [(3, "w1".to_string()), (2, "w2".to_string())]);
    }
}
