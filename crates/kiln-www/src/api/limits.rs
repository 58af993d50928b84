//! What bounds a REST API request: its deadline (`c['www']['api_timeout']`), and the turns that
//! large answers take (`c['www']['api_large_queries']`), so that a few expensive requests cannot
//! hold every database connection and the memory they need while small requests wait.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::ApiError;

/// The limits shared by every request of one web port.
#[derive(Clone)]
pub struct Limits {
    large: Arc<Semaphore>,
}

/// When a request must be done by, and the setting that said so, for its error message.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub seconds: u64,
}

impl Deadline {
    /// The deadline of a request starting now.
    pub fn starting_now(seconds: u64) -> Deadline {
        Deadline {
            at: Instant::now() + Duration::from_secs(seconds),
            seconds,
        }
    }

    /// The error of a request that ran past it.
    pub fn passed(&self) -> ApiError {
        ApiError::Unavailable(format!(
            "this request took longer than the {} s the API allows (c['www']['api_timeout']); \
             narrow it with filters or a limit",
            self.seconds
        ))
    }

    /// Runs `work` until the deadline, answering [`Deadline::passed`] after it.
    pub async fn bound<T>(
        &self,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout_at(self.at, work)
            .await
            .unwrap_or_else(|_| Err(self.passed()))
    }
}

impl Limits {
    /// Limits allowing `large` large answers at once.
    pub fn new(large: usize) -> Limits {
        Limits {
            large: Arc::new(Semaphore::new(large.max(1))),
        }
    }

    /// Waits for a large answer's turn until the deadline; the turn lasts as long as the permit.
    pub async fn large_turn(&self, deadline: &Deadline) -> Result<OwnedSemaphorePermit, ApiError> {
        let turn = self.large.clone().acquire_owned();
        match tokio::time::timeout_at(deadline.at, turn).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one would mean no turns at all.
            Ok(Err(_)) => Err(deadline.passed()),
            Err(_) => Err(ApiError::Unavailable(format!(
                "too many large requests are being answered (c['www']['api_large_queries']); \
                 none finished within {} s; try again, or narrow the request with filters or a limit",
                deadline.seconds
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_past_its_deadline_is_stopped_with_a_clear_error() {
        let done: Result<(), ApiError> = Deadline::starting_now(0)
            .bound(std::future::pending())
            .await;
        let error = done.unwrap_err();
        assert_eq!(error.status(), 503);
        assert!(error.to_string().contains("api_timeout"), "{error}");
        let quick = Deadline::starting_now(30).bound(async { Ok(7) }).await;
        assert_eq!(quick, Ok(7));
    }

    #[tokio::test]
    async fn large_answers_wait_for_a_turn_until_their_deadline() {
        let limits = Limits::new(1);
        let held = limits
            .large_turn(&Deadline::starting_now(30))
            .await
            .expect("a free turn");
        let error = limits
            .large_turn(&Deadline::starting_now(0))
            .await
            .unwrap_err();
        assert_eq!(error.status(), 503);
        assert!(error.to_string().contains("api_large_queries"), "{error}");
        drop(held);
        assert!(limits.large_turn(&Deadline::starting_now(0)).await.is_ok());
    }
}
