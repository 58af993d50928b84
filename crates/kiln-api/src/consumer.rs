//! Consuming the durable record of events without losing any: what a reporter, a live stream that
//! reconnects, or another master uses.
//!
//! A `DurableConsumer` reads the record in order from where it last acknowledged, and waits on the
//! in-process bus only to learn that there is more to read. A consumer that stops (or whose master
//! restarts) resumes after its last acknowledgement: events it had been given but had not
//! acknowledged are given again, acknowledged ones never. If the record was pruned past a
//! consumer's position, it is told what it missed instead of skipping silently.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use kiln_db::StoredEvent;
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::event::Event;
use crate::services::Services;

/// How many events one read of the record takes.
const READ_BATCH: i64 = 256;

/// What the consumer gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event, in commit order.
    Event(StoredEvent),
    /// Events after `after` up to `through` were pruned before this consumer read them.
    Missed { after: i64, through: i64 },
}

/// A named reader of the durable record.
pub struct DurableConsumer {
    name: String,
    services: Services,
    bus: broadcast::Receiver<Arc<Event>>,
    /// The last position delivered.
    position: i64,
    pending: VecDeque<StoredEvent>,
    /// How long to let events gather after a wake-up before reading them.
    linger: Duration,
    /// Whether the last read may have left events unread (it was full, or was not made yet, or
    /// it found a gap).
    unread: bool,
    /// How many times the record was read.
    reads: u64,
}

impl DurableConsumer {
    /// Starts the consumer `name` after its last acknowledgement. A consumer that never
    /// acknowledged anything starts after the newest event, and records that at once, so that a
    /// new consumer is not flooded with history and resumes from there after a restart.
    pub async fn start(services: &Services, name: &str) -> Result<DurableConsumer, ApiError> {
        Self::start_from(services, name, None).await
    }

    /// Starts the consumer `name` after its last acknowledgement, or, if it never acknowledged
    /// anything, after `first` (the newest event when `None`).
    pub async fn start_from(
        services: &Services,
        name: &str,
        first: Option<i64>,
    ) -> Result<DurableConsumer, ApiError> {
        // Subscribed before the first read, so no wake-up can fall between the two.
        let bus = services.events.subscribe();
        let position = Self::position_of(services, name, first).await?;
        Ok(Self::reader(services, name, bus, position))
    }

    /// Where the consumer `name` resumes: after its last acknowledgement, or, if it never
    /// acknowledged anything, after `first` (the newest event when `None`), which is recorded
    /// as its position at once.
    pub async fn position_of(
        services: &Services,
        name: &str,
        first: Option<i64>,
    ) -> Result<i64, ApiError> {
        let db = services.read.db();
        if let Some(p) = db.consumer_position(name).await? {
            return Ok(p);
        }
        let start = match first {
            Some(p) => p,
            None => db.newest_event().await?,
        };
        services.events.acknowledge(name, start).await?;
        Ok(start)
    }

    /// A reader of the record after `position` with no name of its own, for one that reads on
    /// behalf of consumers that acknowledge their own positions. Its first read is made at once,
    /// so nothing recorded before it was made is waited for.
    pub fn after(services: &Services, position: i64) -> DurableConsumer {
        Self::reader(services, "", services.events.subscribe(), position)
    }

    fn reader(
        services: &Services,
        name: &str,
        bus: broadcast::Receiver<Arc<Event>>,
        position: i64,
    ) -> DurableConsumer {
        DurableConsumer {
            name: name.to_string(),
            services: services.clone(),
            bus,
            position,
            pending: VecDeque::new(),
            unread: true,
            linger: Duration::ZERO,
            reads: 0,
        }
    }

    /// Lets events gather for `linger` after a wake-up before they are read, so reading at most
    /// once per `linger`: a consumer that is told of each event as it is published otherwise
    /// reads, and writes, once per event when they come one at a time, however many come each
    /// second, and the first events of a burst (a build's request, its claim, its start) apart
    /// from the rest.
    pub fn with_linger(mut self, linger: Duration) -> DurableConsumer {
        self.linger = linger;
        self
    }

    /// The last position delivered.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// How many times the consumer read the record.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Waits for the next delivery.
    pub async fn next(&mut self) -> Result<Delivery, ApiError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.position = event.id;
                return Ok(Delivery::Event(event));
            }
            if let Some(missed) = self.fill().await? {
                return Ok(missed);
            }
        }
    }

    /// Waits for the next deliveries: every event read and not yet delivered (at least one), or
    /// what was missed. Handling a burst of events together lets a consumer write once for
    /// all of them.
    pub async fn next_batch(&mut self) -> Result<Vec<Delivery>, ApiError> {
        if self.pending.is_empty()
            && let Some(missed) = self.fill().await?
        {
            return Ok(vec![missed]);
        }
        let events: Vec<StoredEvent> = self.pending.drain(..).collect();
        if let Some(last) = events.last() {
            self.position = last.id;
        }
        Ok(events.into_iter().map(Delivery::Event).collect())
    }

    /// Reads the record until there is an event to deliver, or returns what was missed.
    async fn fill(&mut self) -> Result<Option<Delivery>, ApiError> {
        loop {
            // Every wake-up queued so far is answered by the read that follows; one that comes
            // later means a read is needed again. Without one, and with nothing left unread by
            // the last read, there is nothing to read. What a wake-up announced stays unread
            // until a read's events are kept, so a read cancelled half way (the consumer sits in
            // a `select!`) is made again.
            if self.woken() {
                self.unread = true;
            }
            if !self.unread {
                self.wait().await;
                self.unread = true;
            }
            // A lingering consumer lets the events gather after a wake-up, however long it was
            // idle before, so that what it reads comes in bursts.
            if !self.linger.is_zero() {
                tokio::time::sleep(self.linger).await;
            }
            // The wake-ups queued by now are answered by this read too: an event is published
            // once it is recorded, so what they announce is there to read. Left queued, the
            // rest of a burst's wake-ups (a build's end is several events) would cost a read
            // that finds nothing.
            self.woken();
            let db = self.services.read.db();
            self.reads += 1;
            let read = db.events_after(self.position, READ_BATCH).await?;
            let full = read.len() as i64 >= READ_BATCH;
            // Pruning past this consumer leaves a gap before the first event it reads (ids may
            // have gaps of their own, from transactions rolled back): only then is the record
            // asked how far it was pruned.
            if read.first().is_some_and(|e| e.id > self.position + 1) {
                let pruned = db.pruned_through().await?;
                if pruned > self.position {
                    let missed = Delivery::Missed {
                        after: self.position,
                        through: pruned,
                    };
                    self.position = pruned;
                    self.unread = true;
                    return Ok(Some(missed));
                }
            }
            self.unread = full;
            if !read.is_empty() {
                self.pending.extend(read);
                return Ok(None);
            }
        }
    }

    /// Records that everything up to `position` is handled: a restart resumes after it.
    pub async fn acknowledge(&self, position: i64) -> Result<(), ApiError> {
        self.services.events.acknowledge(&self.name, position).await
    }

    /// Waits until an event that the record keeps is published. A lagging or closed bus ends the
    /// wait too: the record is read again either way.
    async fn wait(&mut self) {
        loop {
            match self.bus.recv().await {
                Ok(e) if !e.is_durable() => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Whether an event that the record keeps was published since the last look, emptying the
    /// bus's queue: events come in bursts (a build's end is several), and one read answers them
    /// all.
    fn woken(&mut self) -> bool {
        let mut woken = false;
        loop {
            match self.bus.try_recv() {
                Ok(e) => woken |= e.is_durable(),
                Err(broadcast::error::TryRecvError::Lagged(_)) => woken = true,
                Err(_) => return woken,
            }
        }
    }
}
