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

/// The secrets a build has used, to be hidden wherever the build writes text.
#[derive(Clone, Default)]
pub struct Redactions {
    used: Arc<Mutex<Vec<(String, String)>>>,
}

impl Redactions {
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
