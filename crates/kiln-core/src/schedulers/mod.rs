//! Scheduling decisions, one module per kind of Buildbot scheduler. Each keeps its state in memory
//! as plain data, takes the current time as an argument, and answers with decisions for the master
//! to carry out (store a classification, submit a buildset); it never waits or reads a clock.

pub mod basic;
pub mod timed;
