//! Banana, the byte layer of Twisted's Perspective Broker: s-expressions of lists, integers, floats
//! and byte strings, each token a base-128 prefix, a type byte and (for strings and floats) a
//! payload.
//!
//! The decoder is incremental: bytes are fed as they arrive, and complete top-level expressions come
//! out one at a time. Every size a peer announces is checked before anything is allocated for it.

/// The longest string and the longest list Twisted accepts (640 KiB), on either side.
pub const SIZE_LIMIT: usize = 640 * 1024;
/// The longest prefix before a type byte.
pub const PREFIX_LIMIT: usize = 64;
/// Lists nest at most this deep; Twisted has no limit, but no real message comes near it.
pub const MAX_DEPTH: usize = 64;
/// The most bytes one top-level expression may take; Twisted has no limit, the master needs one.
pub const MAX_EXPRESSION_BYTES: usize = 16 << 20;

const LIST: u8 = 0x80;
const INT: u8 = 0x81;
const STRING: u8 = 0x82;
const NEG: u8 = 0x83;
const FLOAT: u8 = 0x84;
const LONGINT: u8 = 0x85;
const LONGNEG: u8 = 0x86;
const VOCAB: u8 = 0x87;

/// The `pb` dialect's vocabulary: the word at index `i` travels as the token `i` VOCAB.
/// Index 0 names no word.
const VOCABULARY: [&[u8]; 32] = [
    b"",
    b"None",
    b"class",
    b"dereference",
    b"reference",
    b"dictionary",
    b"function",
    b"instance",
    b"list",
    b"module",
    b"persistent",
    b"tuple",
    b"unpersistable",
    b"copy",
    b"cache",
    b"cached",
    b"remote",
    b"local",
    b"lcache",
    b"version",
    b"login",
    b"password",
    b"challenge",
    b"logged_in",
    b"not_logged_in",
    b"cachemessage",
    b"message",
    b"answer",
    b"error",
    b"decref",
    b"decache",
    b"uncache",
];

/// One Banana expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Sexp {
    List(Vec<Sexp>),
    Int(i64),
    Float(f64),
    /// A byte string; a vocabulary token is decoded into its word.
    Bytes(Vec<u8>),
}

impl Sexp {
    /// A byte string from text.
    pub fn bytes(text: &str) -> Sexp {
        Sexp::Bytes(text.as_bytes().to_vec())
    }
}

/// Why bytes could not be read, or an expression could not be written, as Banana.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BananaError {
    #[error("more than {PREFIX_LIMIT} bytes of prefix before a type byte")]
    PrefixTooLong,
    #[error("invalid type byte {0:#04x}")]
    InvalidType(u8),
    #[error("a string of {0} bytes is longer than the limit of {SIZE_LIMIT}")]
    StringTooLong(usize),
    #[error("a list of {0} elements is longer than the limit of {SIZE_LIMIT}")]
    ListTooLong(usize),
    #[error("lists nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("an expression of more than {MAX_EXPRESSION_BYTES} bytes")]
    ExpressionTooLarge,
    #[error("an integer does not fit in 64 bits")]
    IntegerTooLarge,
    #[error("vocabulary index {0} names no word")]
    UnknownVocabulary(u64),
    #[error("a vocabulary token before the dialect was chosen")]
    VocabularyNotInUse,
}

/// An incremental Banana decoder.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    /// The open lists, innermost last, each with the number of elements it still expects.
    open: Vec<(Vec<Sexp>, usize)>,
    /// Bytes consumed by the top-level expression being read.
    expression_bytes: usize,
    vocabulary: bool,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Turns the `pb` dialect's vocabulary on: Twisted does so once the dialect is chosen.
    pub fn use_vocabulary(&mut self) {
        self.vocabulary = true;
    }

    /// Appends bytes that arrived.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The bytes fed but not read yet.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The next complete top-level expression, or `None` until more bytes arrive.
    pub fn next_expression(&mut self) -> Result<Option<Sexp>, BananaError> {
        loop {
            let Some(item) = self.token()? else {
                self.compact();
                return Ok(None);
            };
            if let Some(done) = self.place(item)? {
                self.expression_bytes = 0;
                return Ok(Some(done));
            }
        }
    }

    /// Drops the bytes already read, so that the buffer holds only what is still to come.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Puts a finished item into its list, closing every list it completes; returns the top-level
    /// expression once it is complete.
    fn place(&mut self, item: Item) -> Result<Option<Sexp>, BananaError> {
        let mut value = match item {
            Item::Open(0) => Sexp::List(Vec::new()),
            Item::Open(n) => {
                if self.open.len() >= MAX_DEPTH {
                    return Err(BananaError::TooDeep);
                }
                // The capacity a peer announces is not trusted beyond a small start.
                self.open.push((Vec::with_capacity(n.min(64)), n));
                return Ok(None);
            }
            Item::Value(v) => v,
        };
        loop {
            let Some((items, left)) = self.open.last_mut() else {
                return Ok(Some(value));
            };
            items.push(value);
            *left -= 1;
            if *left > 0 {
                return Ok(None);
            }
            let (items, _) = self.open.pop().expect("a list is open");
            value = Sexp::List(items);
        }
    }

    /// Reads one token, or `None` when the buffer does not hold a whole one yet.
    fn token(&mut self) -> Result<Option<Item>, BananaError> {
        let rest = &self.buf[self.pos..];
        let Some(type_at) = rest.iter().position(|b| b & 0x80 != 0) else {
            if rest.len() > PREFIX_LIMIT {
                return Err(BananaError::PrefixTooLong);
            }
            return Ok(None);
        };
        if type_at > PREFIX_LIMIT {
            return Err(BananaError::PrefixTooLong);
        }
        let prefix = &rest[..type_at];
        let kind = rest[type_at];
        let payload = &rest[type_at + 1..];
        let (item, payload_len) = match kind {
            LIST => {
                let n = small(prefix)?;
                if n > SIZE_LIMIT {
                    return Err(BananaError::ListTooLong(n));
                }
                (Item::Open(n), 0)
            }
            INT | LONGINT => (Item::Value(Sexp::Int(signed(prefix, false)?)), 0),
            NEG | LONGNEG => (Item::Value(Sexp::Int(signed(prefix, true)?)), 0),
            STRING => {
                let n = small(prefix)?;
                if n > SIZE_LIMIT {
                    return Err(BananaError::StringTooLong(n));
                }
                if payload.len() < n {
                    self.count(type_at + 1 + payload.len())?;
                    return Ok(None);
                }
                (Item::Value(Sexp::Bytes(payload[..n].to_vec())), n)
            }
            FLOAT => {
                if payload.len() < 8 {
                    return Ok(None);
                }
                let mut be = [0u8; 8];
                be.copy_from_slice(&payload[..8]);
                (Item::Value(Sexp::Float(f64::from_be_bytes(be))), 8)
            }
            VOCAB => {
                if !self.vocabulary {
                    return Err(BananaError::VocabularyNotInUse);
                }
                let index = unsigned(prefix)?;
                let word = usize::try_from(index)
                    .ok()
                    .filter(|i| (1..VOCABULARY.len()).contains(i))
                    .map(|i| VOCABULARY[i])
                    .ok_or(BananaError::UnknownVocabulary(index))?;
                (Item::Value(Sexp::Bytes(word.to_vec())), 0)
            }
            other => return Err(BananaError::InvalidType(other)),
        };
        let used = type_at + 1 + payload_len;
        self.count(used)?;
        self.expression_bytes += used;
        self.pos += used;
        Ok(Some(item))
    }

    /// Checks that the expression being read stays within bounds once `more` bytes are added.
    fn count(&self, more: usize) -> Result<(), BananaError> {
        if self.expression_bytes + more > MAX_EXPRESSION_BYTES {
            return Err(BananaError::ExpressionTooLarge);
        }
        Ok(())
    }
}

/// A token read: a list that starts with this many elements, or a whole value.
enum Item {
    Open(usize),
    Value(Sexp),
}

/// The value of a base-128 prefix, least significant group first.
fn unsigned(prefix: &[u8]) -> Result<u64, BananaError> {
    let mut value: u64 = 0;
    for (i, byte) in prefix.iter().enumerate() {
        let group = u64::from(*byte);
        if group == 0 {
            continue;
        }
        let shift = 7 * i as u32;
        if shift >= 64 || (group << shift) >> shift != group {
            return Err(BananaError::IntegerTooLarge);
        }
        value |= group << shift;
    }
    Ok(value)
}

fn small(prefix: &[u8]) -> Result<usize, BananaError> {
    usize::try_from(unsigned(prefix)?).map_err(|_| BananaError::IntegerTooLarge)
}

fn signed(prefix: &[u8], negative: bool) -> Result<i64, BananaError> {
    let magnitude = unsigned(prefix)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
            .ok_or(BananaError::IntegerTooLarge)
    } else {
        i64::try_from(magnitude).map_err(|_| BananaError::IntegerTooLarge)
    }
}

/// Writes `value` as a base-128 prefix; zero is one byte, as Twisted writes it.
fn prefix(mut value: u64, out: &mut Vec<u8>) {
    loop {
        out.push((value & 0x7f) as u8);
        value >>= 7;
        if value == 0 {
            return;
        }
    }
}

/// Appends the Banana bytes of `sexp`; with `vocabulary`, byte strings that are words of the `pb`
/// dialect travel as their index, as Twisted sends them.
pub fn encode(sexp: &Sexp, vocabulary: bool, out: &mut Vec<u8>) -> Result<(), BananaError> {
    match sexp {
        Sexp::List(items) => {
            if items.len() > SIZE_LIMIT {
                return Err(BananaError::ListTooLong(items.len()));
            }
            prefix(items.len() as u64, out);
            out.push(LIST);
            for item in items {
                encode(item, vocabulary, out)?;
            }
        }
        Sexp::Int(v) => {
            let (magnitude, kind) = match *v {
                0..=0x7fff_ffff => (v.unsigned_abs(), INT),
                -0x8000_0000..0 => (v.unsigned_abs(), NEG),
                0x8000_0000.. => (v.unsigned_abs(), LONGINT),
                _ => (v.unsigned_abs(), LONGNEG),
            };
            prefix(magnitude, out);
            out.push(kind);
        }
        Sexp::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Sexp::Bytes(b) => {
            if vocabulary && let Some(i) = VOCABULARY[1..].iter().position(|w| *w == &b[..]) {
                prefix(i as u64 + 1, out);
                out.push(VOCAB);
                return Ok(());
            }
            if b.len() > SIZE_LIMIT {
                return Err(BananaError::StringTooLong(b.len()));
            }
            prefix(b.len() as u64, out);
            out.push(STRING);
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &Sexp, vocabulary: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode(s, vocabulary, &mut out).unwrap();
        out
    }

    #[test]
    fn tokens_are_written_as_twisted_writes_them() {
        let offer = Sexp::List(vec![Sexp::bytes("pb"), Sexp::bytes("none")]);
        assert_eq!(
            bytes(&offer, false),
            [
                0x02, 0x80, 0x02, 0x82, b'p', b'b', 0x04, 0x82, b'n', b'o', b'n', b'e'
            ]
        );
        let version = Sexp::List(vec![Sexp::bytes("version"), Sexp::Int(6)]);
        assert_eq!(bytes(&version, true), [0x02, 0x80, 0x13, 0x87, 0x06, 0x81]);
        assert_eq!(bytes(&Sexp::Int(0), true), [0x00, 0x81]);
        assert_eq!(bytes(&Sexp::Int(253), true), [0x7d, 0x01, 0x81]);
        assert_eq!(bytes(&Sexp::Int(-1), true), [0x01, 0x83]);
        assert_eq!(
            bytes(&Sexp::Int(1 << 40), true),
            [0, 0, 0, 0, 0, 0x20, 0x85]
        );
        assert_eq!(
            bytes(&Sexp::Float(0.010788917541503906), true),
            [0x84, 0x3f, 0x86, 0x18, 0x80, 0, 0, 0, 0]
        );
        assert_eq!(bytes(&Sexp::Bytes(vec![]), true), [0x00, 0x82]);
        let twenty_thousand = Sexp::Bytes(vec![1; 20000]);
        assert_eq!(bytes(&twenty_thousand, true)[..4], [0x20, 0x1c, 0x01, 0x82]);
    }

    #[test]
    fn expressions_are_read_across_arbitrary_splits() {
        let message = Sexp::List(vec![
            Sexp::bytes("message"),
            Sexp::Int(1),
            Sexp::bytes("root"),
            Sexp::bytes("login"),
            Sexp::Int(1),
            Sexp::List(vec![Sexp::bytes("tuple"), Sexp::bytes("wk1")]),
            Sexp::List(vec![Sexp::bytes("dictionary")]),
            Sexp::List(vec![]),
            Sexp::Float(-2.5),
            Sexp::Int(-5_000_000_000),
        ]);
        let mut wire = bytes(&message, true);
        wire.extend(bytes(&Sexp::Int(7), true));
        for split in 0..wire.len() {
            let mut d = Decoder::new();
            d.use_vocabulary();
            d.feed(&wire[..split]);
            let mut got = Vec::new();
            while let Some(s) = d.next_expression().unwrap() {
                got.push(s);
            }
            d.feed(&wire[split..]);
            while let Some(s) = d.next_expression().unwrap() {
                got.push(s);
            }
            assert_eq!(got, vec![message.clone(), Sexp::Int(7)], "split at {split}");
        }
    }

    #[test]
    fn the_login_frame_of_a_stock_worker_decodes() {
        let frame = [
            0x07, 0x80, 0x1a, 0x87, 0x01, 0x81, 0x04, 0x82, b'r', b'o', b'o', b't', 0x14, 0x87,
            0x01, 0x81, 0x02, 0x80, 0x0b, 0x87, 0x03, 0x82, b'w', b'k', b'1', 0x01, 0x80, 0x05,
            0x87,
        ];
        let mut d = Decoder::new();
        d.use_vocabulary();
        d.feed(&frame);
        let Some(Sexp::List(items)) = d.next_expression().unwrap() else {
            panic!("a list")
        };
        assert_eq!(items[0], Sexp::bytes("message"));
        assert_eq!(items[3], Sexp::bytes("login"));
        assert_eq!(
            items[5],
            Sexp::List(vec![Sexp::bytes("tuple"), Sexp::bytes("wk1")])
        );
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_allocated() {
        let refuse = |wire: &[u8], vocabulary: bool| {
            let mut d = Decoder::new();
            if vocabulary {
                d.use_vocabulary();
            }
            d.feed(wire);
            loop {
                match d.next_expression() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("accepted {wire:02x?}"),
                    Err(e) => return e,
                }
            }
        };
        // 655361 bytes announced.
        assert_eq!(
            refuse(&[0x01, 0x00, 0x28, 0x82], true),
            BananaError::StringTooLong(655361)
        );
        assert_eq!(
            refuse(&[0x01, 0x00, 0x28, 0x80], true),
            BananaError::ListTooLong(655361)
        );
        assert_eq!(refuse(&[0x01; 65], true), BananaError::PrefixTooLong);
        assert_eq!(
            refuse(&[0x63, 0x87], true),
            BananaError::UnknownVocabulary(99)
        );
        assert_eq!(
            refuse(&[0x01, 0x87], false),
            BananaError::VocabularyNotInUse
        );
        assert_eq!(refuse(&[0x01, 0x88], true), BananaError::InvalidType(0x88));
        assert_eq!(
            refuse(
                &[
                    0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x81
                ],
                true
            ),
            BananaError::IntegerTooLarge
        );
        let deep = [0x01, 0x80].repeat(MAX_DEPTH + 1);
        assert_eq!(refuse(&deep, true), BananaError::TooDeep);
    }
}
