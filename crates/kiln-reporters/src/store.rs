//! Storing what the reporters decided, several reporters in one transaction.
//!
//! The feed hands each burst of events to every reporter at once, so they decide it at about
//! the same time, and each would store its reports (with its new position in the record) in a
//! transaction of its own: a master whose builds end one at a time would commit once per
//! reporter for every build. The [`Store`] waits a moment after the first reporter asks, for
//! the others given the same burst, and stores what all of them decided in one transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kiln_api::{ApiError, Services};
use kiln_db::{Decided, ReportRow};
use tokio::sync::{mpsc, oneshot};

use crate::Inbox;

/// How long the store waits after a reporter asks for the others given the same burst. They
/// decide it at the same time, in well under this.
const GATHER: Duration = Duration::from_millis(5);

/// How many reporters' decisions one transaction stores at most.
const MAX_GATHERED: usize = 64;

/// One reporter's decisions waiting to be stored, and where the outcome goes.
struct Request {
    decided: Decided,
    reply: oneshot::Sender<Result<Vec<ReportRow>, ApiError>>,
}

/// The way every reporter's decisions reach the outbox.
pub struct Store {
    services: Services,
    requests: mpsc::UnboundedSender<Request>,
    incoming: Inbox<Request>,
    /// How many transactions stored reporters' decisions.
    transactions: AtomicU64,
}

impl Store {
    pub fn new(services: Services) -> Store {
        let (requests, incoming) = mpsc::unbounded_channel();
        Store {
            services,
            requests,
            incoming: Inbox::new(incoming),
            transactions: AtomicU64::new(0),
        }
    }

    /// How many transactions stored reporters' decisions so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Stores what one reporter decided, with the reports that other reporters asked to store
    /// at the same time; its reports that were stored (not stored before), leased to this
    /// master.
    pub async fn store(&self, decided: Decided) -> Result<Vec<ReportRow>, ApiError> {
        let (reply, outcome) = oneshot::channel();
        self.requests
            .send(Request { decided, reply })
            .map_err(|_| ApiError::internal("the reporters' store stopped"))?;
        outcome
            .await
            .map_err(|_| ApiError::internal("the reporters' store stopped"))?
    }

    /// Stores what the reporters ask to store until the task is dropped; it runs once.
    pub async fn run(self: Arc<Self>) {
        let Some(mut incoming) = self.incoming.take() else {
            return;
        };
        while let Some(first) = incoming.recv().await {
            let mut gathered = vec![first];
            let deadline = tokio::time::sleep(GATHER);
            tokio::pin!(deadline);
            while gathered.len() < MAX_GATHERED {
                tokio::select! {
                    request = incoming.recv() => match request {
                        Some(request) => gathered.push(request),
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
            self.store_gathered(gathered).await;
        }
    }

    /// Stores the gathered decisions in one transaction and tells each reporter its outcome.
    async fn store_gathered(&self, gathered: Vec<Request>) {
        let (decided, replies): (Vec<Decided>, Vec<_>) =
            gathered.into_iter().map(|r| (r.decided, r.reply)).unzip();
        let reporters: Vec<Option<String>> = decided
            .iter()
            .map(|d| d.reports.first().map(|r| r.reporter.clone()))
            .collect();
        self.transactions.fetch_add(1, Ordering::Relaxed);
        let stored = self.services.outbox.enqueue(decided).await;
        for (reply, reporter) in replies.into_iter().zip(reporters) {
            let mine = match &stored {
                Ok(rows) => Ok(rows
                    .iter()
                    .filter(|r| Some(&r.reporter) == reporter.as_ref())
                    .cloned()
                    .collect()),
                Err(error) => Err(error.clone()),
            };
            // A reporter that stopped meanwhile no longer waits for its outcome.
            let _ = reply.send(mine);
        }
    }
}
