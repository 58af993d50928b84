//! The message envelope: requests and responses, and their MessagePack form.

use rmpv::Value;

/// One protocol message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request from either side, numbered by its sender.
    Request { seq: i64, op: Op },
    /// The answer to the request numbered `seq` by the other side. With `is_exception`, `result` is
    /// an error string.
    Response {
        seq: i64,
        result: Value,
        is_exception: bool,
    },
}

impl Message {
    pub fn request(seq: i64, op: Op) -> Message {
        Message::Request { seq, op }
    }

    pub fn response(seq: i64, result: Value) -> Message {
        Message::Response {
            seq,
            result,
            is_exception: false,
        }
    }

    pub fn error(seq: i64, why: impl Into<String>) -> Message {
        Message::Response {
            seq,
            result: Value::from(why.into()),
            is_exception: true,
        }
    }
}

/// The operations of the protocol. The first group goes from master to worker, the second from
/// worker to master.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Print {
        message: String,
    },
    Keepalive,
    GetWorkerInfo,
    SetWorkerSettings {
        args: Value,
    },
    StartCommand {
        command_id: String,
        command_name: String,
        args: Value,
        builder_name: Option<String>,
    },
    InterruptCommand {
        command_id: String,
        why: String,
    },
    Shutdown,
    /// Buildbot's PB `setBuilderList`: the builders a worker serves, each with its directory.
    /// msgpack workers have no such operation (the master makes their directories with `mkdir`),
    /// so the master sends it only to PB workers.
    SetBuilderList {
        builders: Vec<(String, String)>,
    },

    Update {
        command_id: String,
        args: Vec<(String, Value)>,
    },
    Complete {
        command_id: String,
        failure: Option<String>,
    },
    UploadFileWrite {
        command_id: String,
        data: Vec<u8>,
    },
    UploadFileUtime {
        command_id: String,
        access_time: f64,
        modified_time: f64,
    },
    UploadFileClose {
        command_id: String,
    },
    UploadDirectoryWrite {
        command_id: String,
        data: Vec<u8>,
    },
    UploadDirectoryUnpack {
        command_id: String,
    },
    ReadFile {
        command_id: String,
        length: u64,
    },
    ReadFileClose {
        command_id: String,
    },

    /// An operation this implementation does not know; answered with Buildbot's error.
    Unknown {
        op: String,
    },
}

impl Op {
    /// The wire name of the operation.
    pub fn name(&self) -> &str {
        match self {
            Op::Print { .. } => "print",
            Op::Keepalive => "keepalive",
            Op::GetWorkerInfo => "get_worker_info",
            Op::SetWorkerSettings { .. } => "set_worker_settings",
            Op::StartCommand { .. } => "start_command",
            Op::InterruptCommand { .. } => "interrupt_command",
            Op::Shutdown => "shutdown",
            Op::SetBuilderList { .. } => "set_builder_list",
            Op::Update { .. } => "update",
            Op::Complete { .. } => "complete",
            Op::UploadFileWrite { .. } => "update_upload_file_write",
            Op::UploadFileUtime { .. } => "update_upload_file_utime",
            Op::UploadFileClose { .. } => "update_upload_file_close",
            Op::UploadDirectoryWrite { .. } => "update_upload_directory_write",
            Op::UploadDirectoryUnpack { .. } => "update_upload_directory_unpack",
            Op::ReadFile { .. } => "update_read_file",
            Op::ReadFileClose { .. } => "update_read_file_close",
            Op::Unknown { op } => op,
        }
    }

    /// The command this operation belongs to, for worker-to-master command traffic.
    pub fn command_id(&self) -> Option<&str> {
        match self {
            Op::StartCommand { command_id, .. }
            | Op::InterruptCommand { command_id, .. }
            | Op::Update { command_id, .. }
            | Op::Complete { command_id, .. }
            | Op::UploadFileWrite { command_id, .. }
            | Op::UploadFileUtime { command_id, .. }
            | Op::UploadFileClose { command_id }
            | Op::UploadDirectoryWrite { command_id, .. }
            | Op::UploadDirectoryUnpack { command_id }
            | Op::ReadFile { command_id, .. }
            | Op::ReadFileClose { command_id } => Some(command_id),
            _ => None,
        }
    }
}

/// Why a frame could not be read as a message. The text follows Buildbot's wording where Buildbot
/// has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not valid MessagePack: {0}")]
    Malformed(String),
    #[error("frame has {0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("message is not a map")]
    NotAMap,
    #[error("message did not contain obligatory \"{0}\" key")]
    MissingKey(&'static str),
    #[error("key \"{key}\" of a \"{op}\" message has the wrong type: expected {expected}")]
    WrongType {
        op: String,
        key: &'static str,
        expected: &'static str,
    },
}

/// The deepest nesting a frame may have; deeper frames are refused rather than recursed into.
const MAX_DEPTH: usize = 64;

/// Encodes a message as one frame.
pub fn encode(message: &Message) -> Vec<u8> {
    // Values are written by reference: an update or upload carries the bulk of the traffic, and
    // copying it into a message tree first would double the work.
    let mut entries: Vec<(&str, Field<'_>)> = Vec::with_capacity(6);
    let mut put = |k: &'static str, v| entries.push((k, v));
    match message {
        Message::Response {
            seq,
            result,
            is_exception,
        } => {
            put("op", Field::V(Value::from("response")));
            put("seq_number", Field::V(Value::from(*seq)));
            put("result", Field::R(result));
            if *is_exception {
                put("is_exception", Field::V(Value::Boolean(true)));
            }
        }
        Message::Request { seq, op } => {
            put("op", Field::V(Value::from(op.name())));
            put("seq_number", Field::V(Value::from(*seq)));
            let id = |s: &str| Value::from(s);
            match op {
                Op::Print { message } => put("message", Field::V(Value::from(message.as_str()))),
                Op::Keepalive | Op::GetWorkerInfo | Op::Shutdown | Op::Unknown { .. } => {}
                Op::SetWorkerSettings { args } => put("args", Field::R(args)),
                Op::SetBuilderList { builders } => {
                    let pairs = builders
                        .iter()
                        .map(|(name, dir)| {
                            Value::Array(vec![
                                Value::from(name.as_str()),
                                Value::from(dir.as_str()),
                            ])
                        })
                        .collect();
                    put("builders", Field::V(Value::Array(pairs)));
                }
                Op::StartCommand {
                    command_id,
                    command_name,
                    args,
                    builder_name,
                } => {
                    put("command_id", Field::V(id(command_id)));
                    put("command_name", Field::V(Value::from(command_name.as_str())));
                    put("args", Field::R(args));
                    if let Some(b) = builder_name {
                        put("builder_name", Field::V(Value::from(b.as_str())));
                    }
                }
                Op::InterruptCommand { command_id, why } => {
                    put("command_id", Field::V(id(command_id)));
                    put("why", Field::V(Value::from(why.as_str())));
                }
                Op::Update { command_id, args } => {
                    put("command_id", Field::V(id(command_id)));
                    put("args", Field::Pairs(args));
                }
                Op::Complete {
                    command_id,
                    failure,
                } => {
                    put("command_id", Field::V(id(command_id)));
                    put(
                        "args",
                        Field::V(failure.as_deref().map_or(Value::Nil, Value::from)),
                    );
                }
                Op::UploadFileWrite { command_id, data }
                | Op::UploadDirectoryWrite { command_id, data } => {
                    put("command_id", Field::V(id(command_id)));
                    put("args", Field::Bin(data));
                }
                Op::UploadFileUtime {
                    command_id,
                    access_time,
                    modified_time,
                } => {
                    put("command_id", Field::V(id(command_id)));
                    put("access_time", Field::V(Value::F64(*access_time)));
                    put("modified_time", Field::V(Value::F64(*modified_time)));
                }
                Op::UploadFileClose { command_id }
                | Op::UploadDirectoryUnpack { command_id }
                | Op::ReadFileClose { command_id } => put("command_id", Field::V(id(command_id))),
                Op::ReadFile { command_id, length } => {
                    put("command_id", Field::V(id(command_id)));
                    put("length", Field::V(Value::from(*length)));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail, so the results are ignored.
    let _ = rmp::encode::write_map_len(&mut out, entries.len() as u32);
    for (key, field) in &entries {
        let _ = rmp::encode::write_str(&mut out, key);
        match field {
            Field::V(v) => {
                let _ = rmpv::encode::write_value(&mut out, v);
            }
            Field::R(v) => {
                let _ = rmpv::encode::write_value(&mut out, v);
            }
            Field::Pairs(pairs) => {
                let _ = rmp::encode::write_array_len(&mut out, pairs.len() as u32);
                for (name, value) in pairs.iter() {
                    let _ = rmp::encode::write_array_len(&mut out, 2);
                    let _ = rmp::encode::write_str(&mut out, name);
                    let _ = rmpv::encode::write_value(&mut out, value);
                }
            }
            Field::Bin(data) => {
                let _ = rmp::encode::write_bin(&mut out, data);
            }
        }
    }
    out
}

/// One value of an encoded message, owned or borrowed from the message.
enum Field<'a> {
    V(Value),
    R(&'a Value),
    /// An update's `[name, value]` pairs.
    Pairs(&'a [(String, Value)]),
    Bin(&'a [u8]),
}

/// Decodes one frame.
pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    let mut reader = frame;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::TrailingBytes(reader.len()));
    }
    let Value::Map(entries) = value else {
        return Err(DecodeError::NotAMap);
    };
    let fields = Fields {
        entries,
        op: String::new(),
    };
    let op = fields.required_str("op")?;
    // Values are moved out of the decoded frame rather than copied (see `Fields::take`).
    let mut fields = Fields {
        op: op.clone(),
        ..fields
    };
    let seq = fields.required_int("seq_number")?;
    if op == "response" {
        let result = fields.take("result").unwrap_or(Value::Nil);
        let is_exception = matches!(fields.get("is_exception"), Some(Value::Boolean(true)));
        return Ok(Message::Response {
            seq,
            result,
            is_exception,
        });
    }
    let op = match op.as_str() {
        "print" => Op::Print {
            message: fields.optional_str("message")?.unwrap_or_default(),
        },
        "keepalive" => Op::Keepalive,
        "get_worker_info" => Op::GetWorkerInfo,
        "shutdown" => Op::Shutdown,
        "set_worker_settings" => Op::SetWorkerSettings {
            args: fields.take("args").ok_or(DecodeError::MissingKey("args"))?,
        },
        "start_command" => Op::StartCommand {
            command_id: fields.command_id()?,
            command_name: fields.required_str("command_name")?,
            args: fields.take("args").unwrap_or(Value::Map(Vec::new())),
            builder_name: fields.optional_str("builder_name")?,
        },
        "interrupt_command" => Op::InterruptCommand {
            command_id: fields.command_id()?,
            why: fields.optional_str("why")?.unwrap_or_default(),
        },
        "update" => Op::Update {
            command_id: fields.command_id()?,
            args: fields.take_update_args()?,
        },
        "complete" => Op::Complete {
            command_id: fields.command_id()?,
            failure: match fields.get("args") {
                None | Some(Value::Nil) => None,
                Some(Value::String(s)) => Some(s.as_str().unwrap_or("<invalid utf-8>").to_string()),
                Some(other) => Some(other.to_string()),
            },
        },
        "update_upload_file_write" => Op::UploadFileWrite {
            command_id: fields.command_id()?,
            data: fields.take_bin("args")?,
        },
        "update_upload_directory_write" => Op::UploadDirectoryWrite {
            command_id: fields.command_id()?,
            data: fields.take_bin("args")?,
        },
        "update_upload_file_utime" => Op::UploadFileUtime {
            command_id: fields.command_id()?,
            access_time: fields.required_f64("access_time")?,
            modified_time: fields.required_f64("modified_time")?,
        },
        "update_upload_file_close" => Op::UploadFileClose {
            command_id: fields.command_id()?,
        },
        "update_upload_directory_unpack" => Op::UploadDirectoryUnpack {
            command_id: fields.command_id()?,
        },
        "update_read_file" => Op::ReadFile {
            command_id: fields.command_id()?,
            length: u64::try_from(fields.required_int("length")?)
                .map_err(|_| fields.wrong("length", "a non-negative integer"))?,
        },
        "update_read_file_close" => Op::ReadFileClose {
            command_id: fields.command_id()?,
        },
        _ => Op::Unknown { op },
    };
    Ok(Message::Request { seq, op })
}

struct Fields {
    entries: Vec<(Value, Value)>,
    op: String,
}

impl Fields {
    fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    fn wrong(&self, key: &'static str, expected: &'static str) -> DecodeError {
        DecodeError::WrongType {
            op: self.op.clone(),
            key,
            expected,
        }
    }

    /// Moves a value out, leaving nil in its place.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| std::mem::replace(v, Value::Nil))
    }

    fn required(&self, key: &'static str) -> Result<&Value, DecodeError> {
        self.get(key).ok_or(DecodeError::MissingKey(key))
    }

    fn required_str(&self, key: &'static str) -> Result<String, DecodeError> {
        match self.required(key)? {
            Value::String(s) => s
                .as_str()
                .map(str::to_string)
                .ok_or(self.wrong(key, "a string")),
            _ => Err(self.wrong(key, "a string")),
        }
    }

    fn optional_str(&self, key: &'static str) -> Result<Option<String>, DecodeError> {
        match self.get(key) {
            None | Some(Value::Nil) => Ok(None),
            Some(_) => self.required_str(key).map(Some),
        }
    }

    fn required_int(&self, key: &'static str) -> Result<i64, DecodeError> {
        self.required(key)?
            .as_i64()
            .ok_or(self.wrong(key, "an integer"))
    }

    fn required_f64(&self, key: &'static str) -> Result<f64, DecodeError> {
        let v = self.required(key)?;
        v.as_f64()
            .or_else(|| v.as_i64().map(|i| i as f64))
            .ok_or(self.wrong(key, "a number"))
    }

    fn take_bin(&mut self, key: &'static str) -> Result<Vec<u8>, DecodeError> {
        match self.take(key).ok_or(DecodeError::MissingKey(key))? {
            Value::Binary(b) => Ok(b),
            // Some encoders send raw bytes as str; accept them as the bytes they are.
            Value::String(s) => Ok(s.into_bytes()),
            _ => Err(self.wrong(key, "binary data")),
        }
    }

    /// The stock worker sends `command_id` as a string; accept integers too, as they name the same
    /// command.
    fn command_id(&self) -> Result<String, DecodeError> {
        match self.required("command_id")? {
            Value::String(s) => s
                .as_str()
                .map(str::to_string)
                .ok_or(self.wrong("command_id", "a string")),
            Value::Integer(i) => Ok(i.to_string()),
            _ => Err(self.wrong("command_id", "a string")),
        }
    }

    fn take_update_args(&mut self) -> Result<Vec<(String, Value)>, DecodeError> {
        let expected = "a list of [name, value] pairs";
        let Value::Array(items) = self.take("args").ok_or(DecodeError::MissingKey("args"))? else {
            return Err(self.wrong("args", expected));
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    let mut pair = pair.into_iter();
                    match (pair.next(), pair.next()) {
                        (Some(Value::String(name)), Some(value)) => name
                            .into_str()
                            .map(|n| (n, value))
                            .ok_or(self.wrong("args", expected)),
                        _ => Err(self.wrong("args", expected)),
                    }
                }
                _ => Err(self.wrong("args", expected)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: Message) {
        assert_eq!(decode(&encode(&message)), Ok(message));
    }

    #[test]
    fn every_op_round_trips() {
        let cid = || "7".to_string();
        let ops = vec![
            Op::Print {
                message: "ping".into(),
            },
            Op::Keepalive,
            Op::GetWorkerInfo,
            Op::Shutdown,
            Op::SetWorkerSettings {
                args: Value::Map(vec![(Value::from("buffer_size"), Value::from(1))]),
            },
            Op::StartCommand {
                command_id: cid(),
                command_name: "shell".into(),
                args: Value::Map(vec![]),
                builder_name: Some("b1".into()),
            },
            Op::InterruptCommand {
                command_id: cid(),
                why: "stop".into(),
            },
            Op::Update {
                command_id: cid(),
                args: vec![("rc".into(), Value::from(0))],
            },
            Op::Complete {
                command_id: cid(),
                failure: None,
            },
            Op::Complete {
                command_id: cid(),
                failure: Some("boom".into()),
            },
            Op::UploadFileWrite {
                command_id: cid(),
                data: vec![0, 1, 2],
            },
            Op::UploadFileUtime {
                command_id: cid(),
                access_time: 1.5,
                modified_time: 2.5,
            },
            Op::UploadFileClose { command_id: cid() },
            Op::UploadDirectoryWrite {
                command_id: cid(),
                data: vec![9],
            },
            Op::UploadDirectoryUnpack { command_id: cid() },
            Op::ReadFile {
                command_id: cid(),
                length: 16384,
            },
            Op::ReadFileClose { command_id: cid() },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            round_trip(Message::request(i as i64, op));
        }
        round_trip(Message::response(3, Value::Binary(b"data".to_vec())));
        round_trip(Message::error(4, "Command foo does not exist."));
    }

    #[test]
    fn bad_frames_are_errors_with_buildbot_wording() {
        assert!(matches!(
            decode(&[0x92, 0x01]),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(decode(&[0x90]), Err(DecodeError::NotAMap));
        let no_seq = encode_map(vec![("op", Value::from("print"))]);
        assert_eq!(
            decode(&no_seq).map_err(|e| e.to_string()),
            Err("message did not contain obligatory \"seq_number\" key".to_string())
        );
        let no_cid = encode_map(vec![
            ("op", Value::from("complete")),
            ("seq_number", Value::from(1)),
        ]);
        assert_eq!(decode(&no_cid), Err(DecodeError::MissingKey("command_id")));
        let mut trailing = encode(&Message::response(1, Value::Nil));
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn deeply_nested_frames_are_refused_without_recursion() {
        let mut frame = vec![0x91; 100_000];
        frame.push(0xc0);
        assert!(matches!(decode(&frame), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn unknown_ops_are_kept_for_an_error_reply() {
        let frame = encode_map(vec![
            ("op", Value::from("frobnicate")),
            ("seq_number", Value::from(2)),
        ]);
        assert_eq!(
            decode(&frame),
            Ok(Message::request(
                2,
                Op::Unknown {
                    op: "frobnicate".into()
                }
            ))
        );
    }

    fn encode_map(entries: Vec<(&str, Value)>) -> Vec<u8> {
        let map = Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        );
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &map).unwrap();
        out
    }
}
