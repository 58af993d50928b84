//! The files a shell command's `logfiles` argument names, followed while the command runs and
//! sent as `log` updates. As on Buildbot's worker, a file that already exists when the command
//! starts is sent only once it changes (so an old file from an earlier build is not mistaken
//! for this one's); with `follow`, only what is written after the start is sent.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use kiln_proto::Value;

/// At most this much of a file is read per poll, so one busy file cannot hold up the command.
const MAX_READ: u64 = 1 << 20;

/// Identity and size of a file when the command started.
type Stat = Option<(u64, u64, std::time::SystemTime)>;

fn stat(path: &Path) -> Stat {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

struct Watched {
    name: String,
    path: PathBuf,
    at_start: Stat,
    /// Where the next read starts, once the file is being followed.
    offset: Option<u64>,
    follow: bool,
    /// The end of a UTF-8 character cut by a read, kept for the next one.
    carry: Vec<u8>,
}

pub struct LogFiles {
    files: Vec<Watched>,
}

impl LogFiles {
    /// The files named by `logfiles` (name → file name, or name → `{filename, follow}`), relative
    /// to `workdir`. Entries that name no file are skipped.
    pub fn new(workdir: &Path, spec: &[(String, Value)]) -> LogFiles {
        let files = spec
            .iter()
            .filter_map(|(name, v)| {
                let (file, follow) = match v {
                    Value::String(s) => (s.as_str()?.to_string(), false),
                    Value::Map(entries) => {
                        let get = |k: &str| {
                            entries
                                .iter()
                                .find(|(key, _)| key.as_str() == Some(k))
                                .map(|(_, v)| v)
                        };
                        (
                            get("filename")?.as_str()?.to_string(),
                            get("follow").and_then(Value::as_bool).unwrap_or(false),
                        )
                    }
                    _ => return None,
                };
                let path = workdir.join(file);
                let at_start = stat(&path);
                Some(Watched {
                    name: name.clone(),
                    path,
                    at_start,
                    offset: None,
                    follow,
                    carry: Vec::new(),
                })
            })
            .collect();
        LogFiles { files }
    }

    /// The names the updates will carry, for the command's header.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("'{}': '{}'", f.name, f.path.display()))
            .collect();
        format!("{{{}}}", names.join(", "))
    }

    /// What was written to each file since the last poll, as (log name, text).
    pub fn poll(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for f in &mut self.files {
            let now = stat(&f.path);
            let offset = match f.offset {
                Some(o) => o,
                None => {
                    if now.is_none() || now == f.at_start {
                        continue;
                    }
                    let start = match (f.follow, f.at_start) {
                        (true, Some((ino, len, _))) if now.is_some_and(|n| n.0 == ino) => len,
                        _ => 0,
                    };
                    f.offset = Some(start);
                    start
                }
            };
            let Some((_, len, _)) = now else { continue };
            // A file truncated or replaced is read again from its start.
            let offset = if len < offset { 0 } else { offset };
            if len == offset {
                continue;
            }
            let Ok(mut file) = std::fs::File::open(&f.path) else {
                continue;
            };
            if file.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut buf = std::mem::take(&mut f.carry);
            let read = file
                .take(MAX_READ)
                .read_to_end(&mut buf)
                .unwrap_or_default();
            f.offset = Some(offset + read as u64);
            let valid = match std::str::from_utf8(&buf) {
                Ok(_) => buf.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => buf.len(),
            };
            f.carry = buf[valid..].to_vec();
            let text = String::from_utf8_lossy(&buf[..valid]).into_owned();
            if !text.is_empty() {
                out.push((f.name.clone(), text));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, file: &str, follow: bool) -> (String, Value) {
        (
            name.into(),
            Value::Map(vec![
                (Value::from("filename"), Value::from(file)),
                (Value::from("follow"), Value::Boolean(follow)),
            ]),
        )
    }

    #[test]
    fn files_are_sent_once_changed_and_followed_from_their_end() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.log"), "from an earlier build\n").unwrap();
        std::fs::write(dir.path().join("tail.log"), "before\n").unwrap();
        let mut files = LogFiles::new(
            dir.path(),
            &[
                spec("old", "old.log", false),
                spec("tail", "tail.log", true),
                ("new".into(), Value::from("new.log")),
            ],
        );
        assert!(files.poll().is_empty(), "nothing changed yet");
        std::fs::write(dir.path().join("new.log"), "one\n").unwrap();
        use std::io::Write;
        let mut tail = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("tail.log"))
            .unwrap();
        tail.write_all("after\n".as_bytes()).unwrap();
        let got = files.poll();
        assert_eq!(
            got,
            vec![
                ("tail".to_string(), "after\n".to_string()),
                ("new".to_string(), "one\n".to_string())
            ]
        );
        // A character cut between two reads arrives whole.
        tail.write_all(&"é".as_bytes()[..1]).unwrap();
        assert!(files.poll().is_empty());
        tail.write_all(&"é".as_bytes()[1..]).unwrap();
        assert_eq!(files.poll(), vec![("tail".to_string(), "é".to_string())]);
    }
}
