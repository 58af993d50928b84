//! Builds: choosing which request runs where, and running it step by step.

pub mod canceller;
pub mod collapse;
pub mod distributor;
pub mod logs;
pub mod paths;
pub mod runner;
pub mod source;
pub mod steps;
pub mod transfer;
pub mod trigger;
