//! What the kiln runtime and the components that read it (the web port, the reporters) share.
//!
//! The runtime publishes an [`Event`] after each write it makes; a reader matches events by
//! Buildbot's routing keys ([`Event::key`], [`matches`]) and reads their payload as the web API
//! shows it ([`Event::payload`]).

pub mod event;

pub use event::{Event, StepUpdate, WorkerState, matches};
