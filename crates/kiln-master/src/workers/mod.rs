//! Workers: authentication, connections and the remote commands run over them.

pub mod command;
pub mod connection;
pub mod listener;
pub mod manager;

pub use connection::Connection;
pub use manager::Workers;
