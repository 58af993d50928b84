//! Twisted's Perspective Broker as the stock `buildbot-worker` speaks it by default (`--protocol pb`):
//! the Banana byte layer, the Jelly object layer, and PB's top-level messages.
//!
//! This module reads and writes messages; the master's side of the conversation (login, remote
//! references, Buildbot's calls) is in the master.

pub mod banana;
pub mod jelly;

pub use banana::{BananaError, Decoder, Sexp};
pub use jelly::{Failure, Jelly, JellyError, jelly, unjelly};

/// The PB protocol version both sides announce.
pub const VERSION: i64 = 6;

/// The dialects a PB server offers, in Twisted's order; the stock worker picks `pb`.
pub fn dialect_offer() -> Vec<u8> {
    let offer = Sexp::List(vec![Sexp::bytes("pb"), Sexp::bytes("none")]);
    let mut out = Vec::new();
    banana::encode(&offer, false, &mut out).expect("the offer is small");
    out
}

/// Whom a message is for: the server's root object, or an object by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Root,
    Object(u64),
}

/// One PB message.
#[derive(Debug, Clone, PartialEq)]
pub enum Pb {
    Version(i64),
    /// A call of `method` on `target`, numbered by its sender; `answer` is false when the caller
    /// wants no answer.
    Call {
        id: i64,
        target: Target,
        method: String,
        answer: bool,
        args: Vec<Jelly>,
        kwargs: Vec<(String, Jelly)>,
    },
    Answer {
        id: i64,
        result: Jelly,
    },
    Error {
        id: i64,
        failure: Jelly,
    },
    /// The sender dropped one of its references to the receiver's object.
    Decref(u64),
    /// A top-level command Twisted knows but Buildbot never uses (the cache messages).
    Ignored(String),
}

/// Why a top-level expression is not a PB message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PbError {
    #[error("a top-level expression that is not a list")]
    NotAList,
    #[error("unknown top-level command {0:?}")]
    UnknownCommand(String),
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("{context}: {error}")]
    Jelly {
        context: &'static str,
        error: JellyError,
    },
}

fn int(s: Option<Sexp>, what: &'static str) -> Result<i64, PbError> {
    match s {
        Some(Sexp::Int(i)) => Ok(i),
        _ => Err(PbError::Malformed(what)),
    }
}

/// Reads one top-level expression as a PB message.
pub fn read(sexp: Sexp) -> Result<Pb, PbError> {
    let Sexp::List(items) = sexp else {
        return Err(PbError::NotAList);
    };
    let mut items = items.into_iter();
    let Some(Sexp::Bytes(command)) = items.next() else {
        return Err(PbError::NotAList);
    };
    let jelly_of = |s: Option<Sexp>, context: &'static str| {
        unjelly(s.ok_or(PbError::Malformed(context))?)
            .map_err(|error| PbError::Jelly { context, error })
    };
    match command.as_slice() {
        b"version" => Ok(Pb::Version(int(items.next(), "version")?)),
        b"message" => {
            let id = int(items.next(), "message")?;
            let target = match items.next() {
                Some(Sexp::Bytes(b)) if b == b"root" => Target::Root,
                Some(Sexp::Int(i)) if i >= 0 => Target::Object(i as u64),
                _ => return Err(PbError::Malformed("message")),
            };
            let method = match items.next() {
                Some(Sexp::Bytes(b)) => {
                    String::from_utf8(b).map_err(|_| PbError::Malformed("message"))?
                }
                _ => return Err(PbError::Malformed("message")),
            };
            let answer = int(items.next(), "message")? != 0;
            let args = match jelly_of(items.next(), "message arguments")? {
                Jelly::Tuple(a) | Jelly::List(a) => a,
                _ => return Err(PbError::Malformed("message")),
            };
            let kwargs = match jelly_of(items.next(), "message keyword arguments")? {
                Jelly::Dict(entries) => entries
                    .into_iter()
                    .map(|(k, v)| match k.as_text() {
                        Some(k) => Ok((k.to_string(), v)),
                        None => Err(PbError::Malformed("message")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(PbError::Malformed("message")),
            };
            Ok(Pb::Call {
                id,
                target,
                method,
                answer,
                args,
                kwargs,
            })
        }
        b"answer" => Ok(Pb::Answer {
            id: int(items.next(), "answer")?,
            result: jelly_of(items.next(), "answer")?,
        }),
        b"error" => Ok(Pb::Error {
            id: int(items.next(), "error")?,
            failure: jelly_of(items.next(), "error")?,
        }),
        b"decref" => Ok(Pb::Decref(
            u64::try_from(int(items.next(), "decref")?)
                .map_err(|_| PbError::Malformed("decref"))?,
        )),
        b"cachemessage" | b"decache" | b"uncache" | b"didNotUnderstand" => {
            Ok(Pb::Ignored(String::from_utf8_lossy(&command).into_owned()))
        }
        other => Err(PbError::UnknownCommand(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

/// The Banana bytes of a PB message, with the `pb` vocabulary.
pub fn write(message: &Pb) -> Result<Vec<u8>, BananaError> {
    let sexp = match message {
        Pb::Version(v) => Sexp::List(vec![Sexp::bytes("version"), Sexp::Int(*v)]),
        Pb::Call {
            id,
            target,
            method,
            answer,
            args,
            kwargs,
        } => Sexp::List(vec![
            Sexp::bytes("message"),
            Sexp::Int(*id),
            match target {
                Target::Root => Sexp::bytes("root"),
                Target::Object(o) => Sexp::Int(*o as i64),
            },
            Sexp::bytes(method),
            Sexp::Int(i64::from(*answer)),
            jelly(&Jelly::Tuple(args.clone())),
            jelly(&Jelly::Dict(
                kwargs
                    .iter()
                    .map(|(k, v)| (Jelly::str(k), v.clone()))
                    .collect(),
            )),
        ]),
        Pb::Answer { id, result } => {
            Sexp::List(vec![Sexp::bytes("answer"), Sexp::Int(*id), jelly(result)])
        }
        Pb::Error { id, failure } => {
            Sexp::List(vec![Sexp::bytes("error"), Sexp::Int(*id), jelly(failure)])
        }
        Pb::Decref(o) => Sexp::List(vec![Sexp::bytes("decref"), Sexp::Int(*o as i64)]),
        Pb::Ignored(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    banana::encode(&sexp, true, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_frames_match_twisted_byte_for_byte() {
        assert_eq!(
            dialect_offer(),
            [
                0x02, 0x80, 0x02, 0x82, b'p', b'b', 0x04, 0x82, b'n', b'o', b'n', b'e'
            ]
        );
        assert_eq!(
            write(&Pb::Version(VERSION)).unwrap(),
            [0x02, 0x80, 0x13, 0x87, 0x06, 0x81]
        );
        // The kwargs key "message" is a str whose bytes are a vocabulary word.
        let print = write(&Pb::Call {
            id: 1,
            target: Target::Object(1),
            method: "print".into(),
            answer: true,
            args: vec![],
            kwargs: vec![("message".into(), Jelly::str("attached"))],
        })
        .unwrap();
        let key = [
            0x02, 0x80, 0x07, 0x82, b'u', b'n', b'i', b'c', b'o', b'd', b'e', 0x1a, 0x87,
        ];
        assert!(print.windows(key.len()).any(|w| w == key), "{print:02x?}");
    }

    #[test]
    fn messages_are_read_back() {
        let call = Pb::Call {
            id: 7,
            target: Target::Root,
            method: "login".into(),
            answer: true,
            args: vec![Jelly::Bytes(b"wk1".to_vec())],
            kwargs: vec![],
        };
        let bytes = write(&call).unwrap();
        let mut d = Decoder::new();
        d.use_vocabulary();
        d.feed(&bytes);
        assert_eq!(read(d.next_expression().unwrap().unwrap()).unwrap(), call);
        assert_eq!(
            read(Sexp::Int(3)),
            Err(PbError::NotAList),
            "a bare value is no message"
        );
        assert_eq!(
            read(Sexp::List(vec![Sexp::bytes("frobnicate")])),
            Err(PbError::UnknownCommand("frobnicate".into()))
        );
    }

    /// One whole connection between a stock Buildbot 4.3 master and a stock worker, recorded byte
    /// for byte in each direction: every expression is a PB message, and writing it back gives the
    /// bytes Twisted sent.
    #[test]
    fn a_recorded_connection_reads_and_writes_back_byte_for_byte() {
        let recorded: [(&[u8], usize); 2] = [
            (include_bytes!("testdata/worker-to-master.bin"), 381),
            (include_bytes!("testdata/master-to-worker.bin"), 342),
        ];
        for (bytes, messages) in recorded {
            let mut d = Decoder::new();
            d.feed(bytes);
            // The dialect (an offer or a choice) comes before the vocabulary is in use.
            assert!(d.next_expression().unwrap().is_some());
            d.use_vocabulary();
            let mut start = bytes.len() - d.unread().len();
            let mut count = 0;
            while let Some(sexp) = d.next_expression().unwrap() {
                let end = bytes.len() - d.unread().len();
                let message = read(sexp).unwrap();
                assert_eq!(write(&message).unwrap(), bytes[start..end], "{message:?}");
                start = end;
                count += 1;
            }
            assert_eq!((count, d.unread().len()), (messages, 0));
        }
    }
}
