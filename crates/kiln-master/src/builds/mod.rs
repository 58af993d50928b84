//! Builds: choosing which request runs where, and running it step by step.

pub mod canceller;
pub mod collapse;
pub mod distributor;
mod files;
pub mod lines;
pub mod logs;
pub mod onmaster;
pub mod paths;
pub mod runner;
pub mod shell;
pub mod source;
pub mod steps;
pub mod testresults;
pub mod transfer;
pub mod trigger;
pub mod warnings;
