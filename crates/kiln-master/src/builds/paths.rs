//! Paths on a worker. In the msgpack protocol the master sends absolute paths, joined with the
//! worker's own rules (POSIX or Windows, from its `system`).

use crate::workers::connection::WorkerInfo;

/// Joins `parts` onto the worker's base directory. An absolute part replaces what came before, and
/// a leading `~` is the worker's home directory.
pub fn join(info: &WorkerInfo, parts: &[&str]) -> String {
    let windows = info.system == "nt";
    let sep = if windows { '\\' } else { '/' };
    let is_absolute = |p: &str| {
        if windows {
            p.starts_with('\\') || p.starts_with('/') || p.chars().nth(1) == Some(':')
        } else {
            p.starts_with('/')
        }
    };
    let mut path = info.basedir.clone();
    for part in parts {
        if part.is_empty() || *part == "." {
            continue;
        }
        let part = match part.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with(['/', '\\']) => {
                let home = info
                    .environ
                    .get(if windows { "USERPROFILE" } else { "HOME" })
                    .cloned()
                    .unwrap_or_default();
                format!("{home}{rest}")
            }
            _ => part.to_string(),
        };
        if is_absolute(&part) {
            path = part;
        } else {
            if !path.ends_with(sep) && !path.is_empty() {
                path.push(sep);
            }
            path.push_str(&part);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_like_the_worker_would() {
        let mut info = WorkerInfo {
            basedir: "/srv/w".into(),
            system: "posix".into(),
            ..Default::default()
        };
        info.environ.insert("HOME".into(), "/home/w".into());
        assert_eq!(
            join(&info, &["b1", "build", "out.txt"]),
            "/srv/w/b1/build/out.txt"
        );
        assert_eq!(join(&info, &["b1", "/abs/dir"]), "/abs/dir");
        assert_eq!(join(&info, &["~/cache"]), "/home/w/cache");
        let win = WorkerInfo {
            basedir: "C:\\w".into(),
            system: "nt".into(),
            ..Default::default()
        };
        assert_eq!(join(&win, &["b1", "build"]), "C:\\w\\b1\\build");
    }
}
