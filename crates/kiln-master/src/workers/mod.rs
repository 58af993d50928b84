//! Workers: the worker ports and their two protocols, authentication, connections and the remote
//! commands run over them.

pub mod command;
pub mod connection;
pub mod guard;
pub mod listener;
pub mod manager;
pub mod pb;
pub mod port;

pub use connection::Connection;
pub use manager::Workers;
