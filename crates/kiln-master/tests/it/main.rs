//! End-to-end tests of the master: a real master on free loopback ports, real workers (kiln's own
//! and the stock `buildbot-worker`), real SQLite (and PostgreSQL when configured), driven over the
//! worker protocol and the REST API.

// Tests stop at the first unexpected value; unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod auth;
mod boundary;
mod browser;
mod buildbot_api;
mod buildbot_worker;
mod builds;
mod connections;
mod durable;
mod filesteps;
mod harness;
mod hooks;
mod irc;
mod live;
mod locks;
mod pages;
mod pb;
mod pollers;
mod properties;
mod protocol;
mod recovery;
mod reporters;
mod schedulers;
mod shellsteps;
mod source;
mod trigger;
mod users;
mod vcs;
