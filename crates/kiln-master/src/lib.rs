//! The kiln master.
//!
//! A master accepts workers on its worker port (Buildbot's `msgpack_experimental_v7` protocol),
//! serves the REST API and web pages on its web port, and turns build requests into builds:
//!
//! - [`workers`]: authentication, connections and remote commands;
//! - [`builds`]: the distributor that starts builds, and the build runner with its steps;
//! - [`schedulers`]: what submits buildsets (the force scheduler);
//! - [`updates`]: the one layer that writes the database and then publishes [`events`];
//! - [`www`]: the HTTP side, with the REST API under `/api/v2`.
//!
//! [`Master::start`] wires them together.

pub mod builds;
pub mod changes;
pub mod clock;
pub mod events;
pub mod http_client;
pub mod locks;
pub mod master;
pub mod schedulers;
pub mod secrets;
pub mod serve;
pub mod updates;
pub mod users;
pub mod values;
pub mod workers;
pub mod www;

pub use master::{Master, Running, StartOptions};
