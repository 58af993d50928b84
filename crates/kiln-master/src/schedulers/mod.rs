//! Schedulers: what decides that something should be built.

pub mod basic;
mod buildsets;
pub mod dependent;
pub mod force;
pub mod runner;
pub mod timed;
pub mod triggerable;
pub mod tryjob;
