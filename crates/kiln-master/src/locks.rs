//! Locks (`util.MasterLock`, `util.WorkerLock`) held by builds and steps.
//!
//! Each lock has a number of places (`maxCount`, or a worker's `maxCountForWorker`): a counting
//! access takes `count` of them, an exclusive one all. Waiters are served in arrival order: a
//! waiter is granted its locks only when all of them are free for it and no earlier waiter is
//! waiting for any of them, so an exclusive access is not starved by a stream of counting ones,
//! and a build never holds some of its locks while waiting for others, so locks cannot deadlock.
//! Locks are master-local, as in Buildbot.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use kiln_config::LockAccess;
use tokio::sync::oneshot;

/// A real lock: a `MasterLock`'s name, or a `WorkerLock`'s name on one worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    worker: Option<String>,
}

#[derive(Debug, Clone)]
struct Want {
    key: Key,
    max: u32,
    exclusive: bool,
    count: u32,
}

#[derive(Debug, Default)]
struct Usage {
    used: u32,
    exclusive: bool,
}

struct Pending {
    id: u64,
    wants: Vec<Want>,
    granted: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    usage: HashMap<Key, Usage>,
    queue: VecDeque<Pending>,
    next_id: u64,
}

impl Inner {
    fn free_for(&self, w: &Want) -> bool {
        let u = self.usage.get(&w.key);
        let (used, exclusive) = u.map_or((0, false), |u| (u.used, u.exclusive));
        if w.exclusive {
            used == 0 && !exclusive
        } else {
            !exclusive && used + w.count <= w.max
        }
    }

    fn take(&mut self, wants: &[Want]) {
        for w in wants {
            let u = self.usage.entry(w.key.clone()).or_default();
            if w.exclusive {
                u.exclusive = true;
            } else {
                u.used += w.count;
            }
        }
    }

    fn release(&mut self, wants: &[Want]) {
        for w in wants {
            if let Some(u) = self.usage.get_mut(&w.key) {
                if w.exclusive {
                    u.exclusive = false;
                } else {
                    u.used = u.used.saturating_sub(w.count);
                }
                if u.used == 0 && !u.exclusive {
                    self.usage.remove(&w.key);
                }
            }
        }
    }

    /// Grants, in arrival order, every waiter whose locks are all free and wanted by no earlier
    /// waiter.
    fn grant(&mut self) {
        let mut blocked: HashSet<Key> = HashSet::new();
        let mut i = 0;
        while i < self.queue.len() {
            let ok = self.queue[i]
                .wants
                .iter()
                .all(|w| !blocked.contains(&w.key) && self.free_for(w));
            if !ok {
                blocked.extend(self.queue[i].wants.iter().map(|w| w.key.clone()));
                i += 1;
                continue;
            }
            let Some(p) = self.queue.remove(i) else { break };
            self.take(&p.wants);
            if p.granted.send(()).is_err() {
                // The waiter left (its build was stopped) as it was granted: undo.
                self.release(&p.wants);
            }
        }
    }
}

/// The master's locks.
#[derive(Clone, Default)]
pub struct Locks {
    inner: Arc<Mutex<Inner>>,
}

/// Locks held; dropping releases them and lets the next waiters in.
pub struct Held {
    inner: Arc<Mutex<Inner>>,
    wants: Vec<Want>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.wants.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.release(&self.wants);
        inner.grant();
    }
}

/// A waiter that leaves before being granted takes itself out of the queue.
struct Waiting {
    inner: Arc<Mutex<Inner>>,
    id: u64,
    granted: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.queue.retain(|p| p.id != self.id);
        // Its place may have held others back.
        inner.grant();
    }
}

impl Locks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the accesses (a `WorkerLock` on `worker`) and holds them until the result is
    /// dropped.
    pub async fn acquire(&self, accesses: &[LockAccess], worker: &str) -> Held {
        let mut wants: Vec<Want> = Vec::new();
        for a in accesses {
            let key = Key {
                name: a.lock.name.clone(),
                worker: a.lock.per_worker.then(|| worker.to_string()),
            };
            let max = match a.lock.per_worker {
                true => a
                    .lock
                    .max_count_for_worker
                    .get(worker)
                    .copied()
                    .unwrap_or(a.lock.max_count),
                false => a.lock.max_count,
            };
            // The same lock twice: the stronger access counts.
            match wants.iter_mut().find(|w| w.key == key) {
                Some(w) => {
                    w.exclusive |= a.exclusive;
                    w.count = w.count.max(a.count);
                }
                None => wants.push(Want {
                    key,
                    max,
                    exclusive: a.exclusive,
                    count: a.count.min(max),
                }),
            }
        }
        if wants.is_empty() {
            return Held {
                inner: self.inner.clone(),
                wants,
            };
        }
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = self.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            inner.queue.push_back(Pending {
                id,
                wants: wants.clone(),
                granted: tx,
            });
            inner.grant();
            id
        };
        let mut waiting = Waiting {
            inner: self.inner.clone(),
            id,
            granted: false,
        };
        // The sender lives in the queue until it is used; it is never dropped unused while this
        // waiter is queued.
        let _ = rx.await;
        waiting.granted = true;
        Held {
            inner: self.inner.clone(),
            wants,
        }
    }

    /// How many waiters are queued, for tests and status.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kiln_config::LockConfig;

    use super::*;

    fn access(name: &str, per_worker: bool, max: u32, exclusive: bool, count: u32) -> LockAccess {
        LockAccess {
            lock: LockConfig {
                name: name.into(),
                per_worker,
                max_count: max,
                max_count_for_worker: BTreeMap::from([("big".to_string(), 3)]),
            },
            exclusive,
            count,
        }
    }

    fn ready<F: std::future::Future>(f: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = Box::pin(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn counting_places_exclusive_access_and_fair_order() {
        let locks = Locks::default();
        let two = access("db", false, 2, false, 1);
        let excl = access("db", false, 2, true, 1);
        let a = locks.acquire(std::slice::from_ref(&two), "w1").await;
        let b = locks.acquire(std::slice::from_ref(&two), "w2").await;
        // Full: a third counting access waits, and so does an exclusive one behind it.
        let third = tokio::spawn({
            let locks = locks.clone();
            let two = two.clone();
            async move { locks.acquire(&[two], "w3").await }
        });
        while locks.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let exclusive = tokio::spawn({
            let locks = locks.clone();
            async move { locks.acquire(&[excl], "w1").await }
        });
        while locks.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        drop(a);
        let third = third.await.unwrap();
        // A newcomer cannot jump ahead of the waiting exclusive access though a place is free.
        assert!(ready(locks.acquire(std::slice::from_ref(&two), "w4")).is_none());
        drop(b);
        drop(third);
        let e = exclusive.await.unwrap();
        assert!(ready(locks.acquire(std::slice::from_ref(&two), "w4")).is_none());
        drop(e);
        assert!(ready(locks.acquire(&[two], "w4")).is_some());
        assert_eq!(locks.waiting(), 0, "waiters that gave up left the queue");
    }

    #[tokio::test]
    async fn worker_locks_are_per_worker_with_their_own_counts() {
        let locks = Locks::default();
        let one = access("cpu", true, 1, false, 1);
        let _w1 = locks.acquire(std::slice::from_ref(&one), "w1").await;
        assert!(ready(locks.acquire(std::slice::from_ref(&one), "w1")).is_none());
        let _w2 = locks.acquire(std::slice::from_ref(&one), "w2").await;
        let _b1 = locks.acquire(std::slice::from_ref(&one), "big").await;
        let _b2 = locks.acquire(std::slice::from_ref(&one), "big").await;
        let _b3 = locks.acquire(std::slice::from_ref(&one), "big").await;
        assert!(ready(locks.acquire(&[one], "big")).is_none());
    }
}
