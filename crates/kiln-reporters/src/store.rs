//! Storing what the reporters decided, and recording what they delivered, several reporters in
//! one transaction.
//!
//! The feed hands each burst of events to every reporter at once, so they decide it at about
//! the same time, and each would store its reports (with its new position in the record) in a
//! transaction of its own; they then deliver them at about the same time too, and each would
//! record its deliveries in another: a master whose builds end one at a time would commit
//! twice per reporter for every build. The [`Store`] gathers what the reporters ask and writes
//! it in one transaction.
//!
//! It knows whom to wait for: whoever hands a reporter work that ends in a request to the store
//! (the feed a burst, the store itself the reports it hands to their deliverers, a deliverer
//! its batch) holds an [`Expected`] for that request until it is made or given up. Once every
//! expected request has come, the store writes at once, in the same wake-up of the master as
//! the work that led to it, rather than after a pause of its own, which on a master whose
//! builds end one at a time was one more wake-up of every thread for each write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use kiln_api::{ApiError, Services};
use kiln_db::{Decided, OutboxUpdate, ReportRow};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::Inbox;

/// How long the store gathers at most after a reporter asks, for the requests still expected:
/// those of reporters given the same burst, or delivering over a connection kept open, come in
/// well under this.
const GATHER: Duration = Duration::from_millis(5);

/// How many reporters' requests one transaction answers at most.
const MAX_GATHERED: usize = 64;

/// What one reporter asks to write, and where the outcome goes.
struct Request {
    asked: Asked,
    reply: oneshot::Sender<Result<Stored, ApiError>>,
    /// What expected this request, let go of once the store has it.
    expected: Vec<Expected>,
}

/// What the store wrote for one reporter's decision.
pub struct Stored {
    /// Its reports that were stored (not stored before), leased to this master.
    pub rows: Vec<ReportRow>,
    /// The request recording their delivery, expected from the reporter's deliverer.
    pub delivering: Option<Expected>,
}

/// A request to the store still to come, or given up when this is dropped without it.
pub struct Expected {
    pending: Arc<Pending>,
}

impl Drop for Expected {
    fn drop(&mut self) {
        if self.pending.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.pending.settled.notify_one();
        }
    }
}

/// How many requests are expected, and a wake-up for the store when none is left.
#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    settled: Notify,
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
    pending: Arc<Pending>,
    /// How long it gathers at most for the requests it expects.
    gather: Duration,
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
            pending: Arc::default(),
            gather: GATHER,
            transactions: AtomicU64::new(0),
        }
    }

    /// How many requests the store expects and does not have yet.
    pub fn expected(&self) -> usize {
        self.pending.count.load(Ordering::Acquire)
    }

    /// The same store, gathering for at most `gather` instead of [`GATHER`].
    pub fn with_gather(mut self, gather: Duration) -> Store {
        self.gather = gather;
        self
    }

    /// Tells the store that a request is coming: while it is expected, the store gathers for
    /// it (up to its window), and it writes at once when no request is expected any more.
    pub fn expect(&self) -> Expected {
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        Expected {
            pending: self.pending.clone(),
        }
    }

    /// How many transactions wrote what reporters asked so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Stores what one reporter decided, with the reports that other reporters asked to store
    /// at the same time; `expected` is what expected this request.
    pub async fn store(
        &self,
        decided: Decided,
        expected: Vec<Expected>,
    ) -> Result<Stored, ApiError> {
        self.ask(Asked::Decided(decided), expected).await
    }

    /// Records that one reporter delivered the reports `ids`, with what other reporters asked
    /// to write at the same time; `expected` is what expected this request.
    pub async fn delivered(&self, ids: Vec<i64>, expected: Vec<Expected>) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.ask(Asked::Delivered(ids), expected).await.map(|_| ())
    }

    async fn ask(&self, asked: Asked, expected: Vec<Expected>) -> Result<Stored, ApiError> {
        let (reply, outcome) = oneshot::channel();
        self.requests
            .send(Request {
                asked,
                reply,
                expected,
            })
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
            let mut gathered = vec![received(first)];
            let deadline = tokio::time::sleep(self.gather);
            tokio::pin!(deadline);
            while gathered.len() < MAX_GATHERED {
                // Requests that came with the last expected one are queued already.
                if self.pending.count.load(Ordering::Acquire) == 0 {
                    while gathered.len() < MAX_GATHERED
                        && let Ok(request) = incoming.try_recv()
                    {
                        gathered.push(received(request));
                    }
                    break;
                }
                tokio::select! {
                    request = incoming.recv() => match request {
                        Some(request) => gathered.push(received(request)),
                        None => break,
                    },
                    // Looked at again above: a wake-up may be left from an earlier write.
                    _ = self.pending.settled.notified() => {}
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
        for Request { asked, reply, .. } in gathered {
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
                Ok(rows) => {
                    let rows: Vec<ReportRow> = rows
                        .iter()
                        .filter(|r| Some(&r.reporter) == reporter.as_ref())
                        .cloned()
                        .collect();
                    // The reporter's deliverer will record sending these: expected from now,
                    // so that a deliverer done sooner does not write before the others.
                    let delivering = (!rows.is_empty()).then(|| self.expect());
                    Ok(Stored { rows, delivering })
                }
                Err(error) => Err(error.clone()),
            };
            // A reporter that stopped meanwhile no longer waits for its outcome.
            let _ = reply.send(mine);
        }
    }
}

/// A request the store has, no longer expected.
fn received(mut request: Request) -> Request {
    request.expected.clear();
    request
}
