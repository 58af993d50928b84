//! Warning counting for `Compile`, `Test` and `WarningCountingShellCommand`: each line of the
//! command's output is matched against the warning pattern; `make`'s "Entering directory" and
//! "Leaving directory" lines keep track of the directory a file name is relative to; warnings the
//! suppression list (or file) names do not count. The warnings found become the `warnings (N)`
//! log and the `warnings-count` property.

use regex::Regex;

use kiln_config::{Suppression, WarningCountingConfig};

/// At most this much warning text is kept for the `warnings (N)` log; all are counted.
const MAX_KEPT: usize = 1 << 20;

/// A suppression with its patterns compiled.
struct Suppress {
    file: Option<Regex>,
    warning: Option<Regex>,
    start: Option<i64>,
    end: Option<i64>,
}

pub struct WarningScanner {
    pattern: Regex,
    extract_groups: bool,
    enter: Regex,
    leave: Regex,
    suppressions: Vec<Suppress>,
    directories: Vec<String>,
    lines: super::lines::LineBuffer,
    pub count: u64,
    pub kept: String,
}

impl WarningScanner {
    /// The scanner for a step; a pattern that does not compile (checked when the configuration
    /// was loaded) is reported.
    pub fn new(cfg: &WarningCountingConfig, extra: Vec<Suppression>) -> Result<Self, String> {
        let re = |p: &str| Regex::new(p).map_err(|e| format!("bad pattern {p:?}: {e}"));
        let mut suppressions = Vec::new();
        for s in cfg.suppression_list.iter().chain(extra.iter()) {
            suppressions.push(Suppress {
                file: s
                    .file
                    .as_deref()
                    .map(|p| re(&format!("^(?:{p})")))
                    .transpose()?,
                warning: s.warning.as_deref().map(re).transpose()?,
                start: s.start,
                end: s.end,
            });
        }
        Ok(WarningScanner {
            pattern: re(&cfg.warning_pattern)?,
            extract_groups: cfg.extract_groups,
            enter: re(&cfg.directory_enter_pattern)?,
            leave: re(&cfg.directory_leave_pattern)?,
            suppressions,
            directories: Vec::new(),
            lines: super::lines::LineBuffer::default(),
            count: 0,
            kept: String::new(),
        })
    }

    /// Feeds output; whole lines are scanned, the rest waits for its end.
    pub fn feed(&mut self, text: &str) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(text, |l| self.line(l));
        self.lines = lines;
    }

    /// Scans what is left after the command ends.
    pub fn finish(&mut self) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.finish(|l| self.line(l));
    }

    fn line(&mut self, line: &str) {
        if let Some(c) = self.enter.captures(line) {
            if let Some(d) = c.get(1) {
                self.directories.push(d.as_str().to_string());
            }
            return;
        }
        if self.leave.is_match(line) {
            self.directories.pop();
            return;
        }
        let Some(c) = self.pattern.captures(line) else {
            return;
        };
        let (file, number, text) = if self.extract_groups {
            (
                c.get(1).map(|m| m.as_str().to_string()),
                c.get(2).and_then(|m| m.as_str().parse::<i64>().ok()),
                c.get(3).map_or(line, |m| m.as_str()).to_string(),
            )
        } else {
            (None, None, line.to_string())
        };
        // A relative file name is relative to the directory make last entered.
        let file = match (file, self.directories.last()) {
            (Some(f), Some(dir)) if !f.starts_with('/') => Some(format!("{dir}/{f}")),
            (f, _) => f,
        };
        if self.suppressed(file.as_deref(), number, &text) {
            return;
        }
        self.count += 1;
        if self.kept.len() + line.len() < MAX_KEPT {
            self.kept.push_str(line);
            self.kept.push('\n');
        }
    }

    fn suppressed(&self, file: Option<&str>, line: Option<i64>, text: &str) -> bool {
        self.suppressions.iter().any(|s| {
            let file_ok = match (&s.file, file) {
                (None, _) => true,
                (Some(re), Some(f)) => re.is_match(f),
                // A warning with no file name matches only suppressions that name none.
                (Some(_), None) => false,
            };
            let text_ok = s.warning.as_ref().is_none_or(|re| re.is_match(text));
            let line_ok = match (s.start, s.end, line) {
                (Some(a), Some(b), Some(n)) => a <= n && n <= b,
                (Some(a), None, Some(n)) => a == n,
                (Some(_), _, None) => false,
                (None, _, _) => true,
            };
            file_ok && text_ok && line_ok
        })
    }
}

/// Reads a suppression file: `FILE-RE : WARNING-RE [: START[-END]]` per line, `#` comments,
/// `NAME=VALUE` lines ignored. A bad line is reported with its number.
pub fn parse_suppression_file(text: &str) -> Result<Vec<Suppression>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=')
            && !name.contains(':')
            && !name.trim().contains(' ')
        {
            continue;
        }
        let parts: Vec<&str> = line.splitn(3, ':').map(str::trim).collect();
        if parts.len() < 2 {
            return Err(format!(
                "line {}: expected FILE-RE : WARNING-RE [: START[-END]], got {raw:?}",
                i + 1
            ));
        }
        let (start, end) = match parts.get(2) {
            None => (None, None),
            Some(range) => {
                let number = |s: &str| {
                    s.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("line {}: {s:?} is not a line number", i + 1))
                };
                match range.split_once('-') {
                    Some((a, b)) => (Some(number(a)?), Some(number(b)?)),
                    None => {
                        let n = number(range)?;
                        (Some(n), Some(n))
                    }
                }
            }
        };
        for p in &parts[..2] {
            Regex::new(p).map_err(|e| format!("line {}: {e}", i + 1))?;
        }
        out.push(Suppression {
            file: Some(parts[0].to_string()),
            warning: Some(parts[1].to_string()),
            start,
            end,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        extract_groups: bool,
        pattern: &str,
        list: Vec<Suppression>,
    ) -> WarningCountingConfig {
        WarningCountingConfig {
            shell: kiln_config::ShellCommandConfig {
                logfiles: vec![],
                lazylogfiles: false,
                command: kiln_core::render::Renderable::List(vec![]),
                env: vec![],
                want_stdout: true,
                want_stderr: true,
                timeout: None,
                max_time: None,
                max_lines: None,
                sigterm_time: None,
                use_pty: false,
                log_environ: false,
                interrupt_signal: "KILL".into(),
                initial_stdin: None,
                decode_rc: Default::default(),
            },
            warning_pattern: pattern.into(),
            extract_groups,
            directory_enter_pattern: "make.*: Entering directory [\u{2019}\"`'](.*)[\u{2019}'`\"]"
                .into(),
            directory_leave_pattern: "make.*: Leaving directory".into(),
            suppression_file: None,
            suppression_list: list,
            max_warn_count: None,
            test_results: None,
        }
    }

    #[test]
    fn whole_lines_that_mention_warnings_count_across_chunks() {
        let mut s =
            WarningScanner::new(&config(false, "^.*warning[: ].*", vec![]), vec![]).unwrap();
        s.feed("cc a.c\na.c:3: warn");
        s.feed("ing: unused x\nok\nb.c:1: warning: y");
        s.finish();
        assert_eq!(s.count, 2);
        assert_eq!(s.kept, "a.c:3: warning: unused x\nb.c:1: warning: y\n");
    }

    #[test]
    fn suppressions_match_file_in_directory_text_and_line_range() {
        let pattern = r"^(.*?):(\d+): warning: (.*)$";
        let list = vec![Suppression {
            file: Some(r"lib/gen/.*\.c".into()),
            warning: Some("unused".into()),
            start: Some(10),
            end: Some(20),
        }];
        let mut s = WarningScanner::new(&config(true, pattern, list), vec![]).unwrap();
        s.feed("make[1]: Entering directory 'lib/gen'\n");
        s.feed("x.c:15: warning: unused variable\n"); // suppressed: lib/gen/x.c, line 15
        s.feed("x.c:25: warning: unused variable\n"); // out of range
        s.feed("x.c:12: warning: shadowed\n"); // other text
        s.feed("make[1]: Leaving directory 'lib/gen'\n");
        s.feed("x.c:15: warning: unused variable\n"); // x.c, not lib/gen/x.c
        s.finish();
        assert_eq!(s.count, 3);
        assert!(!s.kept.contains(":15: warning: unused variable\nx.c:25"));
    }

    #[test]
    fn suppression_files_are_read_and_bad_lines_named() {
        let text =
            "# comment\nMAX_WARN=3\nfoo\\.c : deprecated\nbar\\.c : unused : 5-9\nbaz : x : 7\n";
        let list = parse_suppression_file(text).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!((list[1].start, list[1].end), (Some(5), Some(9)));
        assert_eq!((list[2].start, list[2].end), (Some(7), Some(7)));
        let err = parse_suppression_file("ok : fine\njust one field\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = parse_suppression_file("a : b : x-y\n").unwrap_err();
        assert!(err.contains("not a line number"), "{err}");
    }
}
