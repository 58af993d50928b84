//! The kiln worker.
//!
//! A worker connects to a master's worker port over WebSocket, authenticates with HTTP Basic auth in
//! the upgrade request, and then serves the master's requests in Buildbot's `msgpack_experimental_v7`
//! protocol: it reports its environment, runs remote commands (`shell`, file transfers, filesystem
//! operations) and streams their output back. It knows nothing of the master beyond that protocol,
//! so a kiln worker can serve a Buildbot master and the stock `buildbot-worker` can serve kiln.
//!
//! The connection is plain, or TLS when the master's worker port is configured with `ssl:`.
//!
//! [`connection::run`] is the entry point: it connects, serves until the connection drops and
//! reconnects with backoff.

pub mod commands;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod output;
pub mod tls;
