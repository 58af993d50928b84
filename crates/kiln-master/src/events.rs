//! The event bus: in-process notifications that something changed.
//!
//! The database is the source of truth; an event is a hint, published by the update layer after
//! the write it describes. Keys are Buildbot's routing keys joined with dots
//! (`builds.12.finished`, `logs.40.append`), and the payload is the resource as the REST API
//! shows it where that is cheap. Slow subscribers lose events rather than slowing the master.

use std::sync::Arc;

use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it starts losing them.
const CAPACITY: usize = 4096;

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub key: String,
    pub data: serde_json::Value,
}

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
    pub fn publish(&self, key: String, data: serde_json::Value) {
        // No subscriber is not an error: nobody is listening right now.
        let _ = self.tx.send(Arc::new(Event { key, data }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

/// Whether `key` matches `pattern`, where a `*` element of the pattern matches any one element.
pub fn matches(pattern: &str, key: &str) -> bool {
    let mut p = pattern.split('.');
    let mut k = key.split('.');
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == "*" || a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn patterns_match_element_by_element() {
        assert!(super::matches("builds.*.finished", "builds.12.finished"));
        assert!(!super::matches("builds.*.finished", "builds.12.new"));
        assert!(!super::matches("builds.*", "builds.12.new"));
    }
}
