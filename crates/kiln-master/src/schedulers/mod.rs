//! Schedulers: what decides that something should be built.

pub mod basic;
pub mod force;
