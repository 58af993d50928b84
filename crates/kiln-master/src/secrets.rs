//! Secrets: values read from `c['secretsProviders']` when `%(secret:name)s` is rendered, and the
//! redaction of every value a build has used from its logs and state strings, as Buildbot
//! writes them: `<name>` in place of the value.

use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln_config::SecretProvider;

/// Secret files larger than this are refused rather than read.
const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Looks a secret up in the providers, in order; the first that has it gives it.
pub fn lookup(basedir: &Path, providers: &[SecretProvider], name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return Err(format!("'{name}' is not a secret name"));
    }
    if providers.is_empty() {
        return Err(format!("no secret provider is configured to give '{name}'"));
    }
    for p in providers {
        match p {
            SecretProvider::Directory {
                dir,
                strip,
                suffixes,
            } => {
                let dir = basedir.join(dir);
                let candidates: Vec<String> = if suffixes.is_empty() {
                    vec![name.to_string()]
                } else {
                    suffixes.iter().map(|s| format!("{name}{s}")).collect()
                };
                for file in candidates {
                    let path = dir.join(&file);
                    match std::fs::metadata(&path) {
                        Ok(m) if m.len() > MAX_SECRET_BYTES => {
                            return Err(format!("the secret file {} is too large", path.display()));
                        }
                        Ok(_) => {
                            let text = std::fs::read_to_string(&path)
                                .map_err(|e| format!("reading {}: {e}", path.display()))?;
                            return Ok(if *strip {
                                text.trim_end().to_string()
                            } else {
                                text
                            });
                        }
                        Err(_) => continue,
                    }
                }
            }
            SecretProvider::Environment { prefix } => {
                if let Ok(v) = std::env::var(format!("{prefix}{name}")) {
                    return Ok(v);
                }
            }
            SecretProvider::KeyValueFile { path } => {
                let path = basedir.join(path);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                for line in text.lines() {
                    if let Some((k, v)) = line.split_once('=')
                        && k.trim() == name
                    {
                        return Ok(v.trim().to_string());
                    }
                }
            }
        }
    }
    Err(format!("no secret provider has a secret named '{name}'"))
}

/// The shortest piece of a secret hidden on its own at a cut line's end or start.
pub const MIN_PIECE: usize = 3;

/// The secrets a build has used, to be hidden wherever the build writes text.
#[derive(Clone, Default)]
pub struct Redactions {
    used: Arc<Mutex<Vec<(String, String)>>>,
    /// The environment variables whose values a step's header hides.
    environment: kiln_config::HiddenEnvironment,
}

impl Redactions {
    pub fn new(environment: kiln_config::HiddenEnvironment) -> Self {
        Redactions {
            used: Arc::default(),
            environment,
        }
    }

    /// A header line that lists an environment variable (`  NAME=value`, as Buildbot's and
    /// kiln's workers list the environment), with the value hidden when the name says it is a
    /// secret.
    pub fn environment_line(&self, line: &mut String) {
        let Some((name, _)) = line.strip_prefix("  ").and_then(|l| l.split_once('=')) else {
            return;
        };
        let is_name =
            !name.is_empty() && name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric());
        if is_name && self.environment.hides(name) {
            let keep = 2 + name.len() + 1;
            line.replace_range(keep.., "<hidden>");
        }
    }

    /// Remembers a secret's value (empty values hide nothing and are not remembered).
    pub fn add(&self, name: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if !used.iter().any(|(_, v)| v == value) {
            used.push((name.to_string(), value.to_string()));
            // Longer values first, so a secret that contains another is hidden whole.
            used.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        }
    }

    /// Hides the pieces of a secret that a worker's cut of a long line left at the end of
    /// `before` and the start of `after`, the next line. Buildbot's workers lose the character
    /// at each cut, so the piece after it may start one character later than the piece before
    /// it ends; a piece before the cut of at least [`MIN_PIECE`] characters is hidden even
    /// alone, being most of what a line that ends there could show.
    pub fn across_cut(&self, before: &mut String, after: &mut String) {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for (name, value) in used.iter() {
            let cuts = || (0..value.len()).filter(|k| value.is_char_boundary(*k));
            // The longest end of `before` that starts the secret.
            let k = cuts()
                .filter(|k| *k > 0 && before.ends_with(&value[..*k]))
                .max()
                .unwrap_or(0);
            // Where the rest of the secret starts `after`: right at the cut, or one character on.
            let next = value[k..].chars().next().map_or(0, char::len_utf8);
            let j = [k, k + next].into_iter().find(|j| {
                *j < value.len()
                    && (k > 0 || value.len() - j >= MIN_PIECE)
                    && after.starts_with(&value[*j..])
            });
            if k >= MIN_PIECE || (k > 0 && j.is_some()) {
                before.truncate(before.len() - k);
                before.push_str(&format!("<{name}>"));
            }
            if let Some(j) = j {
                after.replace_range(..value.len() - j, &format!("<{name}>"));
            }
        }
    }

    /// Hides a secret's end (at least [`MIN_PIECE`] characters of it) at the start of a line
    /// shortly after a cut: Buildbot's worker sends the rest of a cut line again after an empty
    /// line when the line arrived in several pieces.
    pub fn after_cut(&self, line: &mut String) {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for (name, value) in used.iter() {
            let start = (1..value.len())
                .filter(|j| value.is_char_boundary(*j) && value.len() - j >= MIN_PIECE)
                .find(|j| line.starts_with(&value[*j..]));
            if let Some(j) = start {
                line.replace_range(..value.len() - j, &format!("<{name}>"));
            }
        }
    }

    /// The text with every used secret replaced by `<name>`.
    pub fn apply(&self, text: String) -> String {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.is_empty() {
            return text;
        }
        let mut out = text;
        for (name, value) in used.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("<{name}>"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_a_secret_at_a_cut_are_hidden() {
        let r = Redactions::default();
        r.add("tok", "s3cr3t-value-42");
        let cut = |before: &str, after: &str| {
            let (mut b, mut a) = (before.to_string(), after.to_string());
            r.across_cut(&mut b, &mut a);
            (b, a)
        };
        // Cut exactly, or with the character at the cut lost (Buildbot's worker).
        assert_eq!(
            cut("xx s3cr3t-v", "alue-42 yy"),
            ("xx <tok>".into(), "<tok> yy".into())
        );
        assert_eq!(
            cut("xx s3cr3t-v", "lue-42 yy"),
            ("xx <tok>".into(), "<tok> yy".into())
        );
        assert_eq!(
            cut("xx s", "3cr3t-value-42"),
            ("xx <tok>".into(), "<tok>".into())
        );
        assert_eq!(cut("xx ", "3cr3t-value-42"), ("xx ".into(), "<tok>".into()));
        // A long enough piece is hidden alone; text that merely ends like one is left.
        assert_eq!(cut("xx s3c", "other"), ("xx <tok>".into(), "other".into()));
        assert_eq!(cut("xx s", "other"), ("xx s".into(), "other".into()));
        let mut repeated = "e-42 and more".to_string();
        r.after_cut(&mut repeated);
        assert_eq!(repeated, "<tok> and more");
        let mut short = "42 and more".to_string();
        r.after_cut(&mut short);
        assert_eq!(short, "42 and more");
    }

    #[test]
    fn providers_are_asked_in_turn_and_values_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/token"), "abc123\n").unwrap();
        std::fs::write(dir.path().join("kv"), "# pairs\npw = hunter2\n").unwrap();
        let providers = vec![
            SecretProvider::Directory {
                dir: "s".into(),
                strip: true,
                suffixes: vec![],
            },
            SecretProvider::KeyValueFile { path: "kv".into() },
        ];
        assert_eq!(lookup(dir.path(), &providers, "token").unwrap(), "abc123");
        assert_eq!(lookup(dir.path(), &providers, "pw").unwrap(), "hunter2");
        assert!(
            lookup(dir.path(), &providers, "nope")
                .unwrap_err()
                .contains("no secret provider has")
        );
        assert!(
            lookup(dir.path(), &providers, "../kv").is_err(),
            "no path tricks"
        );
        assert!(
            lookup(dir.path(), &[], "token")
                .unwrap_err()
                .contains("no secret provider is configured")
        );
        let r = Redactions::default();
        r.add("token", "abc123");
        r.add("short", "abc");
        assert_eq!(r.apply("x=abc123 y=abc".into()), "x=<token> y=<short>");
    }
}
