//! IRC lines (RFC 1459 and 2812): `[:prefix] COMMAND params… [:trailing]`.

/// The longest line the bot reads; a longer one is cut (servers send at most 512 bytes).
pub const MAX_LINE: usize = 8192;

/// The longest text the bot puts in one message, leaving room for the prefix the server adds.
pub const MAX_TEXT: usize = 400;

/// A line from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub prefix: Option<String>,
    pub command: String,
    pub params: Vec<String>,
}

impl Line {
    /// Parses one line (without its CR LF); `None` for an empty one.
    pub fn parse(text: &str) -> Option<Line> {
        let mut rest = text.trim_end_matches(['\r', '\n']);
        let prefix = match rest.strip_prefix(':') {
            Some(p) => {
                let (prefix, after) = p.split_once(' ').unwrap_or((p, ""));
                rest = after;
                Some(prefix.to_string())
            }
            None => None,
        };
        let mut params = Vec::new();
        let mut words = rest.trim_start();
        let (command, after) = words.split_once(' ').unwrap_or((words, ""));
        if command.is_empty() {
            return None;
        }
        let command = command.to_ascii_uppercase();
        words = after;
        loop {
            words = words.trim_start_matches(' ');
            if words.is_empty() {
                break;
            }
            if let Some(trailing) = words.strip_prefix(':') {
                params.push(trailing.to_string());
                break;
            }
            let (word, after) = words.split_once(' ').unwrap_or((words, ""));
            params.push(word.to_string());
            words = after;
        }
        Some(Line {
            prefix,
            command,
            params,
        })
    }

    /// The nick of the line's sender (`nick!user@host`).
    pub fn nick(&self) -> Option<&str> {
        let p = self.prefix.as_deref()?;
        Some(p.split(['!', '@']).next().unwrap_or(p))
    }
}

/// The lines that say `text` to `target` with `verb` (PRIVMSG or NOTICE): one per line of the
/// text, empty ones left out, long ones cut into pieces at character boundaries. Line breaks
/// and NULs can never end up inside a command.
pub fn messages(verb: &str, target: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split(['\n', '\r']) {
        let line = line.replace('\0', "");
        if line.trim().is_empty() {
            continue;
        }
        let mut rest = line.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(MAX_TEXT);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(format!("{verb} {target} :{}", &rest[..cut]));
            rest = &rest[cut..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_and_written_as_servers_do() {
        let l =
            Line::parse(":tester!~t@127.0.0.1 PRIVMSG #bb :bot: force build fail now\r\n").unwrap();
        assert_eq!(l.nick(), Some("tester"));
        assert_eq!(l.command, "PRIVMSG");
        assert_eq!(l.params, ["#bb", "bot: force build fail now"]);
        let l = Line::parse("PING :irc.example.org").unwrap();
        assert_eq!((l.prefix, l.command.as_str()), (None, "PING"));
        let l = Line::parse(":srv 353 bot = #bb :@tester bot +v").unwrap();
        assert_eq!(l.params, ["bot", "=", "#bb", "@tester bot +v"]);
        assert_eq!(Line::parse(""), None);
        assert_eq!(
            messages("PRIVMSG", "#bb", "one\n\ntwo\r\nQUIT :x"),
            [
                "PRIVMSG #bb :one",
                "PRIVMSG #bb :two",
                "PRIVMSG #bb :QUIT :x"
            ]
        );
        assert_eq!(messages("NOTICE", "n", &"é".repeat(300)).len(), 2);
    }
}
