//! The master's clock. Everything that records a time or waits for one asks this clock, so tests
//! can set the time and move it on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;

    /// Waits until the clock reads `at` or later.
    fn sleep_until(&self, at: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn sleep_until(&self, at: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Sleeping in steps re-reads the wall clock, so a clock that jumps is followed.
            loop {
                let left = at - self.now();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(left.unsigned_abs().min(60))).await;
            }
        })
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(watch::Sender<i64>);

impl ManualClock {
    pub fn new(now: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(watch::channel(now).0))
    }

    pub fn advance(&self, seconds: i64) {
        self.0.send_modify(|t| *t += seconds);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        *self.0.borrow()
    }

    fn sleep_until(&self, at: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.0.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|t| *t >= at).await;
        })
    }
}
