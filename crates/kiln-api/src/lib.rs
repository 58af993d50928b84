//! The kiln runtime's API boundary: what the runtime and the components that read it (the web
//! port, the reporters) share.
//!
//! The runtime implements the interfaces of [`services`] (the read side, the control handle, the
//! event source and the reporters' outbox); components are given them as [`Services`] and see nothing else of the
//! master. The runtime publishes an [`Event`] after each write; a reader matches events by
//! Buildbot's routing keys ([`Event::key`], [`matches`]). Every error a component answers a client
//! with is an [`ApiError`], which knows its HTTP status and JSON-RPC code.
//! A resource's JSON shape, the same for the REST API and the events' full resources, is in
//! [`shapes`].

pub mod authz;
pub mod consumer;
pub mod credentials;
pub mod error;
pub mod event;
pub mod services;
pub mod shapes;
pub mod users;

pub use consumer::{Delivery, DurableConsumer};
pub use error::ApiError;
pub use event::{Event, StepUpdate, WorkerState, matches};
pub use services::{
    Actor, BoxFuture, Control, EventSource, Outbox, PollOutcome, ReadSide, Services, Shutdown,
    Submitted, TryJob, WorkerAction, WorkerRef,
};
pub use users::{BuildUsers, build_users};
