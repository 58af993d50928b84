//! The event bus: in-process notifications that something changed.
//!
//! The database is the source of truth; an event is a hint, published by the update layer after
//! the write it describes. Events are `kiln_api::Event`s, whose keys are Buildbot's routing keys
//! (`builds.12.finished`, `logs.40.append`). Slow subscribers lose events rather than slowing the
//! master.

use std::sync::Arc;

use tokio::sync::broadcast;

pub use kiln_api::{Event, matches};

/// How many events a subscriber may fall behind before it starts losing them.
const CAPACITY: usize = 4096;

/// Publishes events to every subscriber.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        // No subscriber is not an error: nobody is listening right now.
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
