//! Splitting command output into the whole lines the protocol carries.
//!
//! Buildbot workers rewrite every match of the master's `newline_re` into a newline, split lines
//! longer than `max_line_length`, and send only whole lines. The expression Buildbot's master sends
//! uses a look-ahead that Rust's regex engine does not have, so its meaning is implemented here by
//! hand: `\r\n`, a `\r` followed by anything, the ANSI "restore cursor", "move cursor" and "clear
//! screen" sequences, and runs of backspaces all end a line.

/// Turns a byte stream into whole lines.
#[derive(Debug)]
pub struct LineSplitter {
    /// Bytes not yet examined because they may start a sequence that continues in the next chunk.
    raw: Vec<u8>,
    /// The current, unterminated line.
    line: Vec<u8>,
    max_line_length: usize,
}

/// The longest escape sequence the rewrite recognises, so a shorter tail may still be incomplete.
const MAX_SEQUENCE: usize = 16;

impl LineSplitter {
    pub fn new(max_line_length: usize) -> Self {
        LineSplitter {
            raw: Vec::new(),
            line: Vec::new(),
            max_line_length: max_line_length.max(1),
        }
    }

    /// Feeds a chunk of output and returns the text of the lines it completed, each ending in `\n`.
    pub fn feed(&mut self, data: &[u8]) -> String {
        self.raw.extend_from_slice(data);
        let raw = std::mem::take(&mut self.raw);
        let mut out = Vec::with_capacity(raw.len() + 1);
        let mut i = 0;
        while i < raw.len() {
            // Ordinary bytes are copied a run at a time; only the few bytes that may start a
            // newline sequence are looked at one by one.
            let run_end = raw[i..]
                .iter()
                .position(|&b| SPECIAL[usize::from(b)])
                .map_or(raw.len(), |p| i + p);
            let run = &raw[i..run_end];
            // The common case, a whole ordinary line, goes straight to the output.
            if self.line.is_empty()
                && raw.get(run_end) == Some(&b'\n')
                && run.len() <= self.max_line_length
            {
                out.extend_from_slice(run);
                out.push(b'\n');
                i = run_end + 1;
                continue;
            }
            self.push_run(run, &mut out);
            i = run_end;
            if i == raw.len() {
                break;
            }
            if raw[i] == b'\n' {
                self.end_line(&mut out);
                i += 1;
                continue;
            }
            match sequence_at(&raw[i..]) {
                Sequence::Newline(len) => {
                    self.end_line(&mut out);
                    i += len;
                }
                Sequence::Incomplete => break,
                Sequence::None => {
                    self.push_run(&raw[i..=i], &mut out);
                    i += 1;
                }
            }
        }
        self.raw = raw[i..].to_vec();
        into_text(out)
    }

    /// Ends the output: whatever is left becomes a last line with a `\n` appended, as Buildbot does.
    pub fn finish(&mut self) -> String {
        let raw = std::mem::take(&mut self.raw);
        let mut out = Vec::new();
        for line in raw.split_inclusive(|&b| b == b'\n') {
            match line.strip_suffix(b"\n") {
                Some(text) => {
                    self.push_run(text, &mut out);
                    self.end_line(&mut out);
                }
                None => self.push_run(line, &mut out),
            }
        }
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        into_text(out)
    }

    /// Adds bytes that hold no newline to the current line, ending lines that grow too long.
    fn push_run(&mut self, run: &[u8], out: &mut Vec<u8>) {
        self.line.extend_from_slice(run);
        while self.line.len() > self.max_line_length {
            // Split at a character boundary so that both pieces stay valid UTF-8.
            let mut cut = self.max_line_length;
            while cut > 0 && is_continuation(self.line[cut]) {
                cut -= 1;
            }
            if cut == 0 {
                cut = self.max_line_length;
            }
            let rest = self.line.split_off(cut);
            self.end_line(out);
            self.line = rest;
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.line);
        out.push(b'\n');
    }
}

/// The bytes that end a line or may start a sequence that does.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[0x08] = true;
    t[0x1b] = true;
    t
};

/// The text of `bytes`, with invalid UTF-8 replaced; valid text (the usual case) is not copied.
fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

enum Sequence {
    None,
    Incomplete,
    Newline(usize),
}

fn sequence_at(s: &[u8]) -> Sequence {
    match s[0] {
        b'\r' => match s.get(1) {
            None => Sequence::Incomplete,
            Some(b'\n') => Sequence::Newline(2),
            Some(_) => Sequence::Newline(1),
        },
        0x08 => {
            let run = s.iter().take_while(|&&b| b == 0x08).count();
            if run == s.len() {
                Sequence::Incomplete
            } else {
                Sequence::Newline(run)
            }
        }
        0x1b => escape_at(s),
        _ => Sequence::None,
    }
}

/// Recognises `ESC[u`, `ESC[2J` and `ESC[<n>;<n>H` / `ESC[<n>;<n>f`.
fn escape_at(s: &[u8]) -> Sequence {
    let incomplete_or_none = |s: &[u8]| {
        if s.len() < MAX_SEQUENCE {
            Sequence::Incomplete
        } else {
            Sequence::None
        }
    };
    match s.get(1) {
        None => return Sequence::Incomplete,
        Some(b'[') => {}
        Some(_) => return Sequence::None,
    }
    match s.get(2) {
        None => return Sequence::Incomplete,
        Some(b'u') => return Sequence::Newline(3),
        _ => {}
    }
    if s.get(2) == Some(&b'2') {
        match s.get(3) {
            None => return Sequence::Incomplete,
            Some(b'J') => return Sequence::Newline(4),
            _ => {}
        }
    }
    // ESC [ digits ; digits (H|f)
    let mut i = 2;
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return if i >= s.len() {
            incomplete_or_none(s)
        } else {
            Sequence::None
        };
    }
    match s.get(i) {
        None => return incomplete_or_none(s),
        Some(b';') => i += 1,
        Some(_) => return Sequence::None,
    }
    if !digits(&mut i) {
        return if i >= s.len() {
            incomplete_or_none(s)
        } else {
            Sequence::None
        };
    }
    match s.get(i) {
        None => incomplete_or_none(s),
        Some(b'H' | b'f') => Sequence::Newline(i + 1),
        Some(_) => Sequence::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&[u8]], expect: &str) {
        let mut s = LineSplitter::new(4096);
        let mut got = String::new();
        for c in chunks {
            got.push_str(&s.feed(c));
        }
        got.push_str(&s.finish());
        assert_eq!(got, expect);
    }

    #[test]
    fn newline_rewrites() {
        check(&[b"a\r\nb\n"], "a\nb\n");
        check(&[b"a\r", b"\nb"], "a\nb\n");
        check(&[b"50%\r100%\n"], "50%\n100%\n");
        check(&[b"x\x1b[2Jy\x1b[10;20Hz\x1b[uw"], "x\ny\nz\nw\n");
        check(&[b"abc\x08\x08d"], "abc\nd\n");
        check(&[b"partial"], "partial\n");
        check(&[b"\x1b[", b"1;2", b"fq"], "\nq\n");
        check(&[b"keep \x1b[31mcolour\n"], "keep \x1b[31mcolour\n");
    }

    #[test]
    fn only_whole_lines_are_released_until_the_end() {
        let mut s = LineSplitter::new(4096);
        assert_eq!(s.feed(b"one\ntw"), "one\n");
        assert_eq!(s.feed(b"o\n"), "two\n");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn long_lines_are_split_at_character_boundaries() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.feed(b"abcdefghij\n"), "abcd\nefgh\nij\n");
        let mut s = LineSplitter::new(4);
        let text = "aaé€x\n";
        let out = s.feed(text.as_bytes());
        assert!(out.lines().all(|l| l.len() <= 4), "{out:?}");
        assert_eq!(out.replace('\n', ""), "aaé€x");
    }
}
