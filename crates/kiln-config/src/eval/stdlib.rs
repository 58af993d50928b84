//! The natives behind the standard modules a configuration may import (`os`, `os.path`, `re`,
//! `socket`); the prelude builds Python's interfaces on them.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use starlark::environment::GlobalsBuilder;
use starlark::values::none::NoneOr;

/// The largest file a configuration may read with `open()`.
const MAX_READ_BYTES: u64 = 16 << 20;

thread_local! {
    /// The master directory of the evaluation running on this thread; evaluation is synchronous,
    /// so the natives it calls run on the same thread.
    static BASEDIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// The master directory, known to the natives for as long as this value lives.
pub struct EvalContext {
    previous: Option<PathBuf>,
}

impl EvalContext {
    pub fn enter(basedir: PathBuf) -> EvalContext {
        let previous = BASEDIR.with(|b| b.replace(Some(basedir)));
        EvalContext { previous }
    }
}

impl Drop for EvalContext {
    fn drop(&mut self) {
        BASEDIR.with(|b| *b.borrow_mut() = self.previous.take());
    }
}

/// The master directory of the evaluation, or the process's directory when there is none (a
/// configuration function called after loading).
fn basedir() -> PathBuf {
    BASEDIR
        .with(|b| b.borrow().clone())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Python's `re` syntax for a replacement (`\1`, `\g<name>`) in the regex crate's (`${1}`).
fn replacement(repl: &str) -> String {
    let mut out = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        n.push(d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

fn compile(pattern: &str) -> anyhow::Result<regex::Regex> {
    regex::Regex::new(pattern).map_err(|e| {
        anyhow::anyhow!(
            "re: the pattern {pattern:?} cannot be used (kiln's re has no look-around or \
             backreferences): {e}"
        )
    })
}

#[starlark::starlark_module]
pub fn natives(builder: &mut GlobalsBuilder) {
    /// The master process's environment, as `os.environ`.
    fn _environ() -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        Ok(std::env::vars().collect())
    }

    /// The master directory, as `os.getcwd()` gives it under Buildbot.
    fn _basedir() -> anyhow::Result<String> {
        Ok(basedir().display().to_string())
    }

    /// `file`, `dir` or `` for what is at `path` (relative to the master directory).
    fn _path_kind(path: &str) -> anyhow::Result<&'static str> {
        let full = basedir().join(Path::new(path));
        Ok(match std::fs::metadata(full) {
            Ok(m) if m.is_dir() => "dir",
            Ok(_) => "file",
            Err(_) => "",
        })
    }

    /// The text of a file (relative to the master directory), for Python's `open(path).read()`.
    fn _read_text(path: &str) -> anyhow::Result<String> {
        let full = basedir().join(Path::new(path));
        let size = std::fs::metadata(&full)
            .map_err(|e| anyhow::anyhow!("open({path:?}): {e}"))?
            .len();
        if size > MAX_READ_BYTES {
            anyhow::bail!("open({path:?}): the file is larger than {MAX_READ_BYTES} bytes");
        }
        std::fs::read_to_string(&full).map_err(|e| anyhow::anyhow!("open({path:?}): {e}"))
    }

    /// The machine's host name, as `socket.gethostname()`.
    fn _hostname() -> anyhow::Result<String> {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_else(|_| "localhost".into());
        Ok(name.trim().to_string())
    }

    /// Where `pattern` matches in `string` (from its start with `anchor` "start", the whole of it
    /// with "full", anywhere otherwise): each group's `[start, end]` in characters, `[-1, -1]` for
    /// a group that did not take part; None when there is no match.
    fn _re_search(
        pattern: &str,
        string: &str,
        anchor: &str,
    ) -> anyhow::Result<NoneOr<Vec<Vec<i32>>>> {
        let pattern = match anchor {
            "start" => format!("^(?:{pattern})"),
            "full" => format!("^(?:{pattern})$"),
            _ => pattern.to_string(),
        };
        let re = compile(&pattern)?;
        let Some(caps) = re.captures(string) else {
            return Ok(NoneOr::None);
        };
        // Offsets in characters, as Python counts them.
        let chars = |byte: usize| string[..byte].chars().count() as i32;
        Ok(NoneOr::Other(
            caps.iter()
                .map(|m| m.map_or(vec![-1, -1], |m| vec![chars(m.start()), chars(m.end())]))
                .collect(),
        ))
    }

    /// The names of the pattern's groups, by number (empty for an unnamed one).
    fn _re_group_names(pattern: &str) -> anyhow::Result<Vec<String>> {
        Ok(compile(pattern)?
            .capture_names()
            .map(|n| n.unwrap_or_default().to_string())
            .collect())
    }

    fn _re_sub(pattern: &str, repl: &str, string: &str, count: i32) -> anyhow::Result<String> {
        let re = compile(pattern)?;
        let limit = usize::try_from(count).unwrap_or(0);
        Ok(re
            .replacen(string, limit, replacement(repl).as_str())
            .into_owned())
    }

    /// Every match: the whole text without groups, the one group's text, or a list of the groups'.
    fn _re_findall_native(pattern: &str, string: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let re = compile(pattern)?;
        Ok(re
            .captures_iter(string)
            .map(|c| {
                let groups: Vec<String> = c
                    .iter()
                    .skip(1)
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                    .collect();
                if groups.is_empty() {
                    vec![c[0].to_string()]
                } else {
                    groups
                }
            })
            .collect())
    }

    fn _re_split(pattern: &str, string: &str, maxsplit: i32) -> anyhow::Result<Vec<String>> {
        let re = compile(pattern)?;
        Ok(if maxsplit > 0 {
            re.splitn(string, maxsplit as usize + 1)
                .map(str::to_string)
                .collect()
        } else {
            re.split(string).map(str::to_string).collect()
        })
    }

    fn _re_escape(string: &str) -> anyhow::Result<String> {
        Ok(regex::escape(string))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn python_replacements_become_the_regex_crates() {
        assert_eq!(super::replacement(r"\1-\g<name>$"), "${1}-${name}$$");
    }
}
