//! The worker's base directory and its `worker.conf`.
//!
//! `kiln-worker create-worker` writes `worker.conf` (one `key = value` per line) and the `info/`
//! files that Buildbot workers also have (`admin`, `host`), whose contents are reported to the master.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The name of the configuration file in the base directory.
pub const CONFIG_FILE: &str = "worker.conf";

/// Everything a worker needs to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub basedir: PathBuf,
    pub master_host: String,
    pub master_port: u16,
    pub name: String,
    pub password: String,
    /// Give up after this many failed connection attempts in a row; `None` retries forever.
    pub max_retries: Option<u32>,
    /// Connect over TLS (`use_tls = true`), for a master whose worker port is `ssl:`.
    pub use_tls: bool,
    /// The PEM file of the certificate authorities the master's certificate is checked against
    /// (`ca_file`, relative to the base directory); without it, the public web's authorities.
    pub ca_file: Option<PathBuf>,
}

impl WorkerConfig {
    /// Parses `HOST:PORT` as given on the command line.
    pub fn parse_master(master: &str) -> anyhow::Result<(String, u16)> {
        let (host, port) = master
            .rsplit_once(':')
            .with_context(|| format!("master address {master:?} must be HOST:PORT"))?;
        let port = port
            .parse::<u16>()
            .with_context(|| format!("bad port in {master:?}"))?;
        if host.is_empty() {
            bail!("master address {master:?} has no host");
        }
        Ok((host.trim_matches(['[', ']']).to_string(), port))
    }

    /// Writes a new base directory. Refuses to overwrite an existing configuration.
    pub fn create(&self) -> anyhow::Result<()> {
        if self.name.contains(':') {
            bail!("worker name {:?} must not contain ':'", self.name);
        }
        let conf = self.basedir.join(CONFIG_FILE);
        if conf.exists() {
            bail!("{} already exists; not overwriting it", conf.display());
        }
        std::fs::create_dir_all(self.basedir.join("info"))
            .with_context(|| format!("creating {}", self.basedir.display()))?;
        let mut text =
            String::from("# kiln worker configuration, written by `kiln-worker create-worker`.\n");
        text.push_str(&format!("master_host = {}\n", self.master_host));
        text.push_str(&format!("master_port = {}\n", self.master_port));
        text.push_str(&format!("name = {}\n", self.name));
        text.push_str(&format!("password = {}\n", self.password));
        if let Some(n) = self.max_retries {
            text.push_str(&format!("max_retries = {n}\n"));
        }
        if self.use_tls {
            text.push_str("use_tls = true\n");
        }
        if let Some(ca) = &self.ca_file {
            text.push_str(&format!("ca_file = {}\n", ca.display()));
        }
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        let info = self.basedir.join("info");
        write_if_missing(&info.join("admin"), "Your Name Here <admin@example.com>\n")?;
        let host =
            std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost\n".into());
        write_if_missing(&info.join("host"), &host)?;
        Ok(())
    }

    /// Reads `worker.conf` from `basedir`, naming the line of any problem.
    pub fn load(basedir: &Path) -> anyhow::Result<WorkerConfig> {
        let path = basedir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (run `kiln-worker create-worker` first)",
                path.display()
            )
        })?;
        let (mut host, mut port, mut name, mut password, mut max_retries) =
            (None, None, None, None, None);
        let (mut use_tls, mut ca_file) = (false, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!("{}:{}: expected `key = value`", path.display(), n + 1);
            };
            let value = value.trim().to_string();
            match key.trim() {
                "master_host" => host = Some(value),
                "master_port" => {
                    port = Some(value.parse::<u16>().with_context(|| {
                        format!(
                            "{}:{}: master_port must be a port number",
                            path.display(),
                            n + 1
                        )
                    })?)
                }
                "name" => name = Some(value),
                "password" => password = Some(value),
                "max_retries" => {
                    max_retries = Some(value.parse::<u32>().with_context(|| {
                        format!("{}:{}: max_retries must be a number", path.display(), n + 1)
                    })?)
                }
                "use_tls" => {
                    use_tls = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => bail!(
                            "{}:{}: use_tls must be true or false",
                            path.display(),
                            n + 1
                        ),
                    }
                }
                "ca_file" => ca_file = Some(PathBuf::from(value)),
                other => bail!("{}:{}: unknown setting {other:?}", path.display(), n + 1),
            }
        }
        if ca_file.is_some() && !use_tls {
            bail!(
                "{}: ca_file is set but use_tls is not: add `use_tls = true`",
                path.display()
            );
        }
        let missing = |what: &str| anyhow::anyhow!("{}: {what} is not set", path.display());
        Ok(WorkerConfig {
            basedir: std::path::absolute(basedir).unwrap_or_else(|_| basedir.to_path_buf()),
            master_host: host.ok_or_else(|| missing("master_host"))?,
            master_port: port.ok_or_else(|| missing("master_port"))?,
            name: name.ok_or_else(|| missing("name"))?,
            password: password.ok_or_else(|| missing("password"))?,
            max_retries,
            use_tls,
            ca_file,
        })
    }
}

fn write_if_missing(path: &Path, text: &str) -> anyhow::Result<()> {
    if !path.exists() {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> anyhow::Result<WorkerConfig> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join(CONFIG_FILE), text)?;
        WorkerConfig::load(dir.path())
    }

    const BASE: &str = "master_host = m\nmaster_port = 9989\nname = w\npassword = p\n";

    #[test]
    fn tls_settings_are_read_and_bad_ones_named() {
        let tls = load_text(&format!("{BASE}use_tls = true\nca_file = ca.pem\n"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(tls.use_tls);
        assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
        let bad = load_text(&format!("{BASE}use_tls = yes\n")).map_err(|e| format!("{e:#}"));
        assert!(
            bad.as_ref()
                .is_err_and(|e| e.contains(":5: use_tls must be true or false")),
            "{bad:?}"
        );
        let alone = load_text(&format!("{BASE}ca_file = ca.pem\n")).map_err(|e| format!("{e:#}"));
        assert!(
            alone
                .as_ref()
                .is_err_and(|e| e.contains("ca_file is set but use_tls is not")),
            "{alone:?}"
        );
    }
}
