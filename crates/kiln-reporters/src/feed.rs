//! The durable record of events, read once for every reporter.
//!
//! Each reporter keeps its own position in the record, and stores its reports with it, but the
//! reporters read the same events at about the same time: read by each of them, a burst would
//! cost one statement per reporter, and a master whose builds end one at a time pays that for
//! every build. The [`Feed`] reads the record from the position of the reporter furthest
//! behind, reads the builds the burst is about for all reporters at once ([`BuildCache`]),
//! and hands the burst to every reporter, which takes the events past its own position.

use std::sync::Arc;
use std::time::Duration;

use kiln_api::{Delivery, DurableConsumer, Services};
use tokio::sync::mpsc;

use crate::Inbox;
use crate::cache::BuildCache;
use crate::store::{Expected, Store};

/// How many bursts a reporter may have waiting before the feed waits for it.
const QUEUED_BURSTS: usize = 4;

/// A burst of events as the feed read it, shared by every reporter.
pub type Burst = Arc<Vec<Delivery>>;

/// A burst handed to one reporter, with the store's expectation of what it decides from it
/// (dropped when it decides nothing).
pub struct Handed {
    pub burst: Burst,
    pub expected: Expected,
}

/// The reader of the record that every reporter shares.
pub struct Feed {
    services: Services,
    builds: Arc<BuildCache>,
    store: Arc<Store>,
    linger: Duration,
    requests: mpsc::UnboundedSender<Subscription>,
    incoming: Inbox<Subscription>,
}

/// A reporter that wants the events after `position`.
struct Subscription {
    position: i64,
    bursts: mpsc::Sender<Handed>,
}

impl Feed {
    /// A feed that reads at most once per `linger`, and reads the builds of each burst into
    /// `builds` before the reporters decide it; `store` expects what they decide.
    pub fn new(
        services: Services,
        linger: Duration,
        builds: Arc<BuildCache>,
        store: Arc<Store>,
    ) -> Feed {
        let (requests, incoming) = mpsc::unbounded_channel();
        Feed {
            services,
            builds,
            store,
            linger,
            requests,
            incoming: Inbox::new(incoming),
        }
    }

    /// The bursts of events read after `position` from now on. A reporter filters out what it
    /// handled already: a burst may start before its position when another reporter is behind
    /// it. The receiver ends only when the feed stops.
    pub fn subscribe(&self, position: i64) -> mpsc::Receiver<Handed> {
        let (bursts, receiver) = mpsc::channel(QUEUED_BURSTS);
        // A feed that stopped drops the request, which ends the receiver.
        let _ = self.requests.send(Subscription { position, bursts });
        receiver
    }

    /// Reads the record for the subscribed reporters until the task is dropped; it runs once.
    pub async fn run(self: Arc<Self>) {
        let Some(mut incoming) = self.incoming.take() else {
            return;
        };
        let mut readers: Vec<Subscription> = Vec::new();
        let mut consumer: Option<DurableConsumer> = None;
        loop {
            tokio::select! {
                // New reporters are taken in before the next read, so that a reporter behind
                // the feed moves the read back before the others move on.
                biased;
                request = incoming.recv() => match request {
                    Some(request) => {
                        let behind = consumer
                            .as_ref()
                            .is_none_or(|c| request.position < c.position());
                        if behind {
                            consumer = Some(
                                DurableConsumer::after(&self.services, request.position)
                                    .with_linger(self.linger),
                            );
                        }
                        readers.push(request);
                    }
                    None => std::future::pending::<()>().await,
                },
                burst = next_burst(consumer.as_mut()) => match burst {
                    Ok(burst) => {
                        self.builds.preload_burst(&*self.services.read, &burst).await;
                        let burst = Arc::new(burst);
                        // A reporter that stopped is dropped at the next burst.
                        readers.retain(|r| !r.bursts.is_closed());
                        // Every reporter's decision is expected before the first can be made,
                        // so that the store waits for all of them.
                        let expected: Vec<Expected> =
                            readers.iter().map(|_| self.store.expect()).collect();
                        for (reader, expected) in readers.iter().zip(expected) {
                            let handed = Handed { burst: burst.clone(), expected };
                            let _ = reader.bursts.send(handed).await;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading events for the reporters");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
    }
}

/// The next burst of a consumer, or never without one.
async fn next_burst(
    consumer: Option<&mut DurableConsumer>,
) -> Result<Vec<Delivery>, kiln_api::ApiError> {
    match consumer {
        Some(c) => c.next_batch().await,
        None => std::future::pending().await,
    }
}
