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

/// Chooses the builds to start now.
///
/// Among the workers free for a request, the one running the fewest builds is chosen, and the
/// builder's configured order breaks ties, so the choice is deterministic and spreads the load.
pub fn distribute(
    pending: &[PendingRequest],
    builders: &[BuilderSlots],
    workers: &[WorkerAvailability],
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
        for request in &by_builder[&builder.id] {
            let chosen = builder
                .workers
                .iter()
                .enumerate()
                .filter_map(|(rank, name)| {
                    let (running, max, busy) = state.get(name.as_str())?;
                    let has_room = max.is_none_or(|m| *running < m);
                    (has_room && !busy.contains(&builder.id)).then_some((*running, rank, name))
                })
                .min();
            let Some((_, _, name)) = chosen else { break };
            if let Some((running, _, busy)) = state.get_mut(name.as_str()) {
                *running += 1;
                busy.insert(builder.id);
            }
            assignments.push(Assignment {
                request: request.id,
                builder: builder.id,
                worker: name.clone(),
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
}
