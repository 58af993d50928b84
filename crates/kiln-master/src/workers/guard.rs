//! Refused worker logins, counted per address.
//!
//! A client guessing a worker's password gets a few attempts at full speed; after that each
//! answer to its address waits, longer with every failure, up to ten seconds an attempt on each
//! of its connections (the handshake deadline and the descriptor limit bound how many it holds).
//! Refusals are logged once a minute per address with how many there were, so the same client
//! cannot fill the log either. A login that succeeds clears its address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may make before its answers wait.
pub const FREE_FAILURES: u32 = 5;
/// The wait after the first failure beyond the free ones; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait.
const MAX_DELAY: Duration = Duration::from_secs(10);
/// Refusals from one address are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// An address that has not failed for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// The most addresses remembered; past it, the ones that failed longest ago are forgotten.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Default)]
pub struct LoginGuard {
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    count: u32,
    last: Instant,
    /// When a refusal from the address was last logged, and how many came since.
    logged: Option<Instant>,
    unlogged: u64,
}

impl LoginGuard {
    /// How long an attempt from `ip` waits before it is answered.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        match addresses.get(&ip) {
            Some(f) if f.count >= FREE_FAILURES => {
                let doublings = (f.count - FREE_FAILURES).min(16);
                FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Counts a refused login from `ip` for `worker`, and logs it unless its address was
    /// logged less than a minute ago; returns whether it logged.
    pub fn failed(&self, ip: IpAddr, worker: &str, why: &str, now: Instant) -> bool {
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if addresses.len() >= MAX_ADDRESSES && !addresses.contains_key(&ip) {
            addresses.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if addresses.len() >= MAX_ADDRESSES
                && let Some(oldest) = addresses
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(a, _)| *a)
            {
                addresses.remove(&oldest);
            }
        }
        let f = addresses.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            logged: None,
            unlogged: 0,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
        f.unlogged += 1;
        let due = f
            .logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        if due {
            tracing::warn!(
                peer = %ip,
                worker,
                refused = f.unlogged,
                failures = f.count,
                "refused a worker login: {why} (logged once a minute per address, with the count \
                 since the last line)"
            );
            f.logged = Some(now);
            f.unlogged = 0;
        }
        due
    }

    /// A login from `ip` succeeded: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        addresses.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_an_address_down_and_are_logged_once_a_minute() {
        let guard = LoginGuard::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        let mut logged = 0;
        for i in 0..FREE_FAILURES {
            assert_eq!(guard.delay(ip), Duration::ZERO, "attempt {i}");
            logged += usize::from(guard.failed(ip, "w1", "wrong password", t0));
        }
        assert_eq!(guard.delay(ip), FIRST_DELAY);
        guard.failed(ip, "w1", "wrong password", t0);
        assert_eq!(guard.delay(ip), FIRST_DELAY * 2);
        for _ in 0..20 {
            logged += usize::from(guard.failed(ip, "w1", "wrong password", t0));
        }
        assert_eq!(guard.delay(ip), MAX_DELAY);
        assert_eq!(logged, 1, "one line for the first minute");
        assert!(guard.failed(ip, "w1", "wrong password", t0 + LOG_EVERY));
        // Other addresses are not slowed down; a success clears its address.
        assert_eq!(guard.delay(other), Duration::ZERO);
        guard.succeeded(ip);
        assert_eq!(guard.delay(ip), Duration::ZERO);
    }

    #[test]
    fn remembered_addresses_are_bounded() {
        let guard = LoginGuard::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            guard.failed(
                ip,
                "w1",
                "unknown worker",
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(guard.addresses.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
