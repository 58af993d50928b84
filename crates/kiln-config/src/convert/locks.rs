//! Locks: `util.MasterLock`, `util.WorkerLock`, and the accesses builders and steps name in their
//! `locks`.

use std::collections::BTreeMap;

use super::Cx;
use crate::model::*;
use crate::node::{Location, Node};

/// A `locks` list: accesses (`lock.access('exclusive')`), or bare locks, which mean counting
/// access for one.
pub(super) fn locks(
    cx: &mut Cx,
    node: Option<&Node>,
    what: &str,
    loc: &Location,
) -> Vec<LockAccess> {
    let items = match node {
        None | Some(Node::None) => return Vec::new(),
        Some(Node::List(items)) => items.as_slice(),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{what} must be a list of lock accesses, not {}",
                    other.describe()
                ),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Node::Object { kind, .. } if kind == "LockAccess" => {
                let Some(lock) = item.field("lock").and_then(|l| lock(cx, l, loc)) else {
                    continue;
                };
                let exclusive = match item.field("mode") {
                    Some(Node::Str(m)) if m == "exclusive" => true,
                    Some(Node::Str(m)) if m == "counting" => false,
                    other => {
                        cx.error(
                            loc,
                            format!(
                                "lock '{}': the access mode must be 'counting' or 'exclusive', not {}",
                                lock.name,
                                other.map_or("nothing".into(), Node::describe)
                            ),
                        );
                        continue;
                    }
                };
                let count = match item.field("count") {
                    Some(Node::Int(n)) if *n >= 1 => *n as u32,
                    other => {
                        cx.error(
                            loc,
                            format!(
                                "lock '{}': the access count must be a positive int, not {}",
                                lock.name,
                                other.map_or("nothing".into(), Node::describe)
                            ),
                        );
                        continue;
                    }
                };
                let most = lock.max_count.max(
                    lock.max_count_for_worker
                        .values()
                        .copied()
                        .max()
                        .unwrap_or(0),
                );
                if !exclusive && count > most {
                    cx.error(
                        loc,
                        format!(
                            "lock '{}': an access count of {count} is more than its maxCount {most}",
                            lock.name
                        ),
                    );
                    continue;
                }
                out.push(LockAccess {
                    lock,
                    exclusive,
                    count,
                });
            }
            Node::Object { kind, .. } if kind == "MasterLock" || kind == "WorkerLock" => {
                if let Some(lock) = lock(cx, item, loc) {
                    out.push(LockAccess {
                        lock,
                        exclusive: false,
                        count: 1,
                    });
                }
            }
            other => cx.error(
                loc,
                format!("{what} must hold lock accesses, not {}", other.describe()),
            ),
        }
    }
    out
}

fn lock(cx: &mut Cx, node: &Node, loc: &Location) -> Option<LockConfig> {
    let Node::Object { kind, .. } = node else {
        cx.error(
            loc,
            format!("a lock access needs a lock, not {}", node.describe()),
        );
        return None;
    };
    let name = cx.string(
        node.field("name").unwrap_or(&Node::None),
        "the lock name",
        loc,
    )?;
    let count = |cx: &mut Cx, n: &Node, what: &str| match n {
        Node::Int(i) if *i >= 1 => u32::try_from(*i).ok(),
        other => {
            cx.error(
                loc,
                format!(
                    "lock '{name}': {what} must be a positive int, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let max_count = count(
        cx,
        node.field("maxCount").unwrap_or(&Node::Int(1)),
        "maxCount",
    )?;
    let mut max_count_for_worker = BTreeMap::new();
    match node.field("maxCountForWorker") {
        None | Some(Node::None) => {}
        Some(Node::Dict(entries)) => {
            for (k, v) in entries {
                let Some(worker) = cx.string(k, "maxCountForWorker keys", loc) else {
                    continue;
                };
                if let Some(n) = count(cx, v, "maxCountForWorker values") {
                    max_count_for_worker.insert(worker, n);
                }
            }
        }
        Some(other) => cx.error(
            loc,
            format!(
                "lock '{name}': maxCountForWorker must be a dict, not {}",
                other.describe()
            ),
        ),
    }
    Some(LockConfig {
        name,
        per_worker: kind == "WorkerLock",
        max_count,
        max_count_for_worker,
    })
}

/// Every lock of one name must be the same lock.
pub(super) fn check_consistent(cx: &mut Cx, all: &[&LockAccess], loc: &Location) {
    let mut seen: BTreeMap<&str, &LockConfig> = BTreeMap::new();
    for a in all {
        match seen.get(a.lock.name.as_str()) {
            Some(first) if **first != a.lock => cx.error(
                loc,
                format!(
                    "two different locks are named '{}'; a lock's name identifies it",
                    a.lock.name
                ),
            ),
            Some(_) => {}
            None => {
                seen.insert(&a.lock.name, &a.lock);
            }
        }
    }
}
