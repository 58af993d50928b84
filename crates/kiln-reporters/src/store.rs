//! Storing what the reporters decided, and recording what they delivered, several reporters in
//! one transaction.
//!
//! The feed hands each burst of events to every reporter at once, so they decide it at about
//! the same time, and each would store its reports (with its new position in the record) in a
//! transaction of its own; they then deliver them at about the same time too, and each would
//! record its deliveries in another: a master whose builds end one at a time would commit
//! twice per reporter for every build. The [`Store`] waits a moment after the first reporter
//! asks, for the others, and writes what all of them asked for in one transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kiln_api::{ApiError, Services};
use kiln_db::{Decided, OutboxUpdate, ReportRow};
use tokio::sync::{mpsc, oneshot};

use crate::Inbox;

/// How long the store waits after a reporter asks for the others given the same burst. They
/// decide it, and deliver what they decided over a connection kept open, in well under this.
const GATHER: Duration = Duration::from_millis(5);

/// How many reporters' requests one transaction answers at most.
const MAX_GATHERED: usize = 64;

/// What one reporter asks to write, and where the outcome goes.
struct Request {
    asked: Asked,
    reply: oneshot::Sender<Result<Vec<ReportRow>, ApiError>>,
}

enum Asked {
    /// What the reporter decided, to store.
    Decided(Decided),
    /// The ids of reports it delivered, to record.
    Delivered(Vec<i64>),
}

/// The way every reporter's decisions reach the outbox.
pub struct Store {
    services: Services,
    requests: mpsc::UnboundedSender<Request>,
    incoming: Inbox<Request>,
    /// How many transactions wrote what reporters asked.
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

    /// How many transactions wrote what reporters asked so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Stores what one reporter decided, with the reports that other reporters asked to store
    /// at the same time; its reports that were stored (not stored before), leased to this
    /// master.
    pub async fn store(&self, decided: Decided) -> Result<Vec<ReportRow>, ApiError> {
        self.ask(Asked::Decided(decided)).await
    }

    /// Records that one reporter delivered the reports `ids`, with what other reporters asked
    /// to write at the same time.
    pub async fn delivered(&self, ids: Vec<i64>) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.ask(Asked::Delivered(ids)).await.map(|_| ())
    }

    async fn ask(&self, asked: Asked) -> Result<Vec<ReportRow>, ApiError> {
        let (reply, outcome) = oneshot::channel();
        self.requests
            .send(Request { asked, reply })
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

    /// Writes what was gathered in one transaction and tells each reporter its outcome.
    async fn store_gathered(&self, gathered: Vec<Request>) {
        let mut update = OutboxUpdate::default();
        let mut replies = Vec::with_capacity(gathered.len());
        for Request { asked, reply } in gathered {
            // Only a reporter that decided reports gets any back.
            let reporter = match asked {
                Asked::Decided(decided) => {
                    let reporter = decided.reports.first().map(|r| r.reporter.clone());
                    update.decided.push(decided);
                    reporter
                }
                Asked::Delivered(ids) => {
                    update.delivered.extend(ids);
                    None
                }
            };
            replies.push((reply, reporter));
        }
        self.transactions.fetch_add(1, Ordering::Relaxed);
        let stored = self.services.outbox.update(update).await;
        for (reply, reporter) in replies {
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
