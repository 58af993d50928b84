//! The kiln master.
//!
//! A master accepts workers on its worker port (Buildbot's `msgpack_experimental_v7` protocol),
//! serves the REST API and web pages on its web port, and turns build requests into builds:
//!
//! - [`workers`]: authentication, connections and remote commands;
//! - [`builds`]: the distributor that starts builds, and the build runner with its steps;
//! - [`schedulers`]: what submits buildsets (the force scheduler);
//! - [`updates`]: the one layer that writes the database and then publishes [`events`];
//! - [`boundary`]: the read side, control handle and event source that the web port (a
//!   [`WebApp`] such as `kiln_www::router`) and other components are given instead of the master.
//!
//! [`Master::start`] wires them together.

mod authorize;
pub mod boundary;
pub mod builds;
pub mod changes;
pub mod clock;
pub mod events;
#[cfg(fuzzing)]
pub mod fuzzing;

pub mod locks;
pub mod master;
pub mod schedulers;
pub mod secrets;
pub mod serve;
mod tls;
pub mod updates;
pub mod values;
pub mod workers;

pub use master::{Master, Running, StartOptions, WebApp};
