//! Buildbot's worker protocols, shared by the kiln master and `kiln-worker`:
//! `msgpack_experimental_v7`, and Twisted's Perspective Broker (the [`pb`] module), which the stock
//! worker speaks by default.
//!
//! Every WebSocket binary frame carries one MessagePack map. A map is either a request (an `op`
//! other than `"response"` and a `seq_number`) or a response echoing the request's `seq_number`.
//! Each side numbers its own requests from zero. This crate turns frames into [`Message`]s and back;
//! it opens no sockets.
//!
//! ```
//! use kiln_proto::{Message, Op, decode, encode};
//! let frame = encode(&Message::request(0, Op::Print { message: "attached".into() }));
//! assert_eq!(decode(&frame).unwrap(), Message::request(0, Op::Print { message: "attached".into() }));
//! ```

mod args;
mod message;
pub mod pb;

pub use args::{ArgError, Args};
pub use message::{DecodeError, Message, Op, decode, encode};
pub use rmpv::Value;

/// The protocol name a Buildbot worker is created with (`--protocol msgpack_experimental_v7`).
pub const PROTOCOL_NAME: &str = "msgpack_experimental_v7";

/// The version every command is reported with by the stock worker.
pub const COMMAND_VERSION: &str = "3.3";

/// The remote commands both workers implement.
pub const WORKER_COMMANDS: &[&str] = &[
    "shell",
    "upload_file",
    "upload_directory",
    "download_file",
    "mkdir",
    "rmdir",
    "cpdir",
    "stat",
    "glob",
    "listdir",
    "rmfile",
];

/// The settings the master sends with `set_worker_settings`, as Buildbot's master does.
pub mod settings {
    /// Bytes of output a worker buffers before it sends an `update`.
    pub const BUFFER_SIZE: i64 = 65536;
    /// Seconds a worker holds buffered output at most.
    pub const BUFFER_TIMEOUT: i64 = 5;
    /// The expression whose matches end a line in command output.
    pub const NEWLINE_RE: &str = r"(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)";
    /// Longer lines are cut by the worker at this many bytes. Buildbot's master asks for 4,096;
    /// its worker then loses a character at each cut, and a secret falling across a cut reaches
    /// the master in two pieces that neither look like it. kiln's master hides secrets in whole
    /// lines and cuts the lines it stores itself, so workers are asked to cut only lines too long
    /// to hold.
    pub const MAX_LINE_LENGTH: i64 = 1 << 20;
}
