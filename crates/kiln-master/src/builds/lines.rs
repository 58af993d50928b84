//! Output split into lines as it arrives in pieces, for the steps that read their command's
//! output line by line (warning counting, test results). A line is cut at [`MAX_LINE`] bytes, so
//! a command that never ends a line cannot make the master hold its output.

/// The longest line considered.
pub const MAX_LINE: usize = 64 << 10;

#[derive(Default)]
pub struct LineBuffer {
    partial: String,
}

impl LineBuffer {
    /// Feeds output; `line` is called with each whole line (without its newline or `\r`).
    pub fn feed(&mut self, text: &str, mut line: impl FnMut(&str)) {
        let mut rest = text;
        while let Some(nl) = rest.find('\n') {
            let mut whole = std::mem::take(&mut self.partial);
            push_bounded(&mut whole, &rest[..nl]);
            line(whole.strip_suffix('\r').unwrap_or(&whole));
            rest = &rest[nl + 1..];
        }
        push_bounded(&mut self.partial, rest);
    }

    /// Ends the output: what is left is a last line.
    pub fn finish(&mut self, mut line: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            line(last.strip_suffix('\r').unwrap_or(&last));
        }
    }
}

fn push_bounded(buf: &mut String, text: &str) {
    let room = MAX_LINE.saturating_sub(buf.len());
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    buf.push_str(&text[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_whole_across_pieces_and_bounded() {
        let mut b = LineBuffer::default();
        let mut got = Vec::new();
        b.feed("a\r\nb", |l| got.push(l.to_string()));
        b.feed("c\nd", |l| got.push(l.to_string()));
        b.finish(|l| got.push(l.to_string()));
        assert_eq!(got, ["a", "bc", "d"]);
        let mut long = Vec::new();
        b.feed(&"é".repeat(MAX_LINE), |_| {});
        b.feed("\n", |l| long.push(l.len()));
        assert!(long[0] <= MAX_LINE && long[0] > MAX_LINE - 2);
    }
}
