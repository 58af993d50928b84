//! Failed logins, counted per user name and per address: after too many within a window, more
//! attempts are refused until the window has passed, so that a password cannot be guessed at
//! the speed of the network. The counts are bounded: when the table is full, the oldest entries
//! go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// How long failures are remembered, in seconds.
pub const WINDOW: i64 = 300;
/// Failures for one user name within the window before its logins are refused.
pub const PER_USER: u32 = 10;
/// Failures from one address within the window before its logins are refused.
pub const PER_ADDRESS: u32 = 30;
/// The most names and addresses remembered at once.
const CAPACITY: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    /// When the first failure of the window was.
    since: i64,
}

#[derive(Default)]
pub struct Limiter {
    counts: Mutex<HashMap<Key, Count>>,
}

impl Limiter {
    /// `Err(seconds)` when a login as `user` from `address` must wait that long first.
    pub fn check(&self, user: &str, address: Option<IpAddr>, now: i64) -> Result<(), i64> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = 0;
        let mut over = |key: Key, limit: u32| {
            if let Some(c) = counts.get(&key)
                && now - c.since < WINDOW
                && c.failures >= limit
            {
                wait = wait.max(c.since + WINDOW - now);
            }
        };
        over(Key::User(user.to_string()), PER_USER);
        if let Some(a) = address {
            over(Key::Address(a), PER_ADDRESS);
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, address: Option<IpAddr>, now: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= CAPACITY {
            counts.retain(|_, c| now - c.since < WINDOW);
        }
        if counts.len() >= CAPACITY
            && let Some(oldest) = counts
                .iter()
                .min_by_key(|(_, c)| c.since)
                .map(|(k, _)| k.clone())
        {
            counts.remove(&oldest);
        }
        let keys = std::iter::once(Key::User(user.to_string())).chain(address.map(Key::Address));
        for key in keys {
            let c = counts.entry(key).or_insert(Count {
                failures: 0,
                since: now,
            });
            if now - c.since >= WINDOW {
                *c = Count {
                    failures: 0,
                    since: now,
                };
            }
            c.failures += 1;
        }
    }

    /// Forgets a user's failures once they log in.
    pub fn succeeded(&self, user: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.remove(&Key::User(user.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_failures_wait_out_the_window() {
        let l = Limiter::default();
        let here: Option<IpAddr> = Some([10, 0, 0, 1].into());
        for i in 0..PER_USER {
            assert_eq!(l.check("alice", here, 100), Ok(()), "attempt {i}");
            l.failed("alice", here, 100);
        }
        assert_eq!(l.check("alice", here, 100), Err(WINDOW));
        assert_eq!(l.check("alice", None, 250), Err(WINDOW - 150));
        // Another user from elsewhere is not held up.
        assert_eq!(l.check("bob", Some([10, 0, 0, 2].into()), 100), Ok(()));
        assert_eq!(l.check("alice", here, 100 + WINDOW), Ok(()));
        l.succeeded("alice");
        assert_eq!(l.check("alice", here, 100), Ok(()));
    }

    #[test]
    fn one_address_trying_many_names_is_held_up() {
        let l = Limiter::default();
        let here: Option<IpAddr> = Some([10, 0, 0, 1].into());
        for i in 0..PER_ADDRESS {
            l.failed(&format!("user{i}"), here, 0);
        }
        assert!(l.check("someone-new", here, 1).is_err());
        assert_eq!(l.check("someone-new", None, 1), Ok(()));
    }
}
