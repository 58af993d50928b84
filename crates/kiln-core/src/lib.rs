//! The pure core of kiln: Buildbot's domain model and the decisions made on it.
//!
//! Nothing in this crate does IO, reads a clock or knows SQL, JSON or the wire protocol. Callers pass
//! state (and the current time where it matters) in, and get values or decisions out. That keeps the
//! scheduling rules deterministic and testable without a runtime.
//!
//! ```
//! use kiln_core::results::{Results, worst_status};
//! assert_eq!(worst_status(Results::Success, Results::Failure), Results::Failure);
//! ```

pub mod change;
pub mod changefilter;
pub mod collapse;
pub mod cron;
pub mod distributor;
pub mod ids;
pub mod properties;
pub mod render;
pub mod results;
pub mod schedulers;
pub mod sourcestamp;
pub mod step;

pub use ids::*;
pub use properties::{Properties, PropertyValue};
pub use results::Results;
