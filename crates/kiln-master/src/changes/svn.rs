//! `SVNPoller`: reads the repository's log and makes one change per revision and branch, with
//! the paths below the poller's URL mapped to branches by `split_file`, as Buildbot does. The
//! first poll only records the latest revision.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_config::{Data, Functions, SvnPollerConfig};
use kiln_core::Properties;
use kiln_db::NewChange;

use super::command::run;

pub async fn poll(
    config: &SvnPollerConfig,
    basedir: &Path,
    functions: &Functions,
    last_change: &mut Option<i64>,
    now: i64,
) -> Result<Vec<NewChange>, String> {
    let mut base: Vec<String> = vec!["--xml".into(), "--non-interactive".into()];
    if let Some(u) = &config.svnuser {
        base.extend(["--username".into(), u.clone()]);
    }
    if let Some(p) = &config.svnpasswd {
        base.extend(["--password".into(), p.clone()]);
    }
    base.extend(config.extra_args.iter().cloned());
    let svn = |sub: &'static str, more: Vec<String>| {
        let mut args = vec![sub.to_string()];
        args.extend(base.iter().cloned());
        args.extend(more);
        args.push(config.repourl.clone());
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&config.svnbin, &a, basedir, &[]).await
        }
    };
    let info = svn("info", vec![]).await?;
    let url = element_text(&info, "url").ok_or("svn info gave no <url>")?;
    let root = element_text(&info, "root").ok_or("svn info gave no <root>")?;
    let prefix = url
        .strip_prefix(&root)
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    let log = svn(
        "log",
        vec!["--verbose".into(), format!("--limit={}", config.histmax)],
    )
    .await?;
    let mut entries = parse_log(&log)?;
    entries.sort_by_key(|e| e.revision);
    let Some(newest) = entries.last().map(|e| e.revision) else {
        return Ok(Vec::new());
    };
    let Some(last) = *last_change else {
        *last_change = Some(newest);
        return Ok(Vec::new());
    };
    let mut changes = Vec::new();
    for e in entries.iter().filter(|e| e.revision > last) {
        // One change per (branch, project, repository, codebase) the revision touched.
        let mut groups: BTreeMap<(Option<String>, String, String, String), Vec<String>> =
            BTreeMap::new();
        for path in &e.paths {
            let Some(rel) = relative(path, &prefix) else {
                continue;
            };
            if let Some(split) = split(config, functions, &rel) {
                groups
                    .entry((
                        split.branch,
                        split.project,
                        split.repository,
                        split.codebase,
                    ))
                    .or_default()
                    .push(split.file);
            }
        }
        for ((branch, project, repository, codebase), files) in groups {
            let revision = e.revision.to_string();
            changes.push(NewChange {
                vcs: Some("svn".into()),
                author: e.author.clone(),
                committer: None,
                comments: e.message.clone(),
                branch,
                revlink: config
                    .revlinktmpl
                    .as_ref()
                    .map(|t| t.replace("%s", &revision)),
                revision: Some(revision),
                when_timestamp: e.when.unwrap_or(now),
                category: config.common.category.clone(),
                repository: if repository.is_empty() {
                    config.repourl.clone()
                } else {
                    repository
                },
                codebase,
                project: if project.is_empty() {
                    config.common.project.clone()
                } else {
                    project
                },
                files,
                properties: Properties::new(),
            });
        }
    }
    *last_change = Some(newest.max(last));
    Ok(changes)
}

/// A path of the log relative to the poller's URL, or `None` when it lies elsewhere.
fn relative(path: &str, prefix: &str) -> Option<String> {
    let path = path.trim_start_matches('/');
    if prefix.is_empty() {
        return Some(path.to_string());
    }
    let rest = path.strip_prefix(prefix)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    Some(rest.trim_start_matches('/').to_string())
}

struct Split {
    branch: Option<String>,
    file: String,
    project: String,
    repository: String,
    codebase: String,
}

/// `split_file`: `None` ignores the path; a `(branch, file)` pair or a dict with `branch` and
/// `path` (and optionally `project`, `repository`, `codebase`) places it.
fn split(config: &SvnPollerConfig, functions: &Functions, path: &str) -> Option<Split> {
    let Some(f) = config.split_file else {
        return Some(Split {
            branch: None,
            file: path.to_string(),
            project: String::new(),
            repository: String::new(),
            codebase: String::new(),
        });
    };
    let text = |d: Option<&Data>| d.and_then(Data::as_str).map(str::to_string);
    match functions.call(f, &[Data::Str(path.into())], &[]) {
        Ok(Data::None) => None,
        Ok(Data::List(pair)) if pair.len() == 2 => Some(Split {
            branch: text(pair.first()),
            file: text(pair.get(1)).unwrap_or_default(),
            project: String::new(),
            repository: String::new(),
            codebase: String::new(),
        }),
        Ok(Data::Dict(entries)) => {
            let get = |k: &str| {
                entries
                    .iter()
                    .find(|(key, _)| key.as_str() == Some(k))
                    .map(|(_, v)| v)
            };
            Some(Split {
                branch: text(get("branch")),
                file: text(get("path")).unwrap_or_default(),
                project: text(get("project")).unwrap_or_default(),
                repository: text(get("repository")).unwrap_or_default(),
                codebase: text(get("codebase")).unwrap_or_default(),
            })
        }
        Ok(other) => {
            tracing::error!(poller = %config.common.name, %path, "split_file returned {other:?}; the path is ignored");
            None
        }
        Err(e) => {
            tracing::error!(poller = %config.common.name, %path, "split_file failed; the path is ignored:\n{e}");
            None
        }
    }
}

struct Entry {
    revision: i64,
    author: String,
    when: Option<i64>,
    message: String,
    paths: Vec<String>,
}

/// Parses `svn log --xml --verbose`: each `logentry` with its revision, author, date, message
/// and changed paths.
fn parse_log(xml: &str) -> Result<Vec<Entry>, String> {
    use quick_xml::events::Event as Xml;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut entry: Option<Entry> = None;
    // The element whose text is being read, and the text so far.
    let mut field: Option<Vec<u8>> = None;
    let mut text = String::new();
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("svn log: malformed XML at byte {at}: {e}"))?;
        match event {
            Xml::Start(tag) if tag.name().as_ref() == b"logentry" => {
                let revision = tag
                    .try_get_attribute("revision")
                    .map_err(|e| format!("svn log: a malformed <logentry>: {e}"))?
                    .and_then(|a| a.unescape_value().ok()?.parse().ok())
                    .ok_or("svn log: a <logentry> without a revision")?;
                entry = Some(Entry {
                    revision,
                    author: String::new(),
                    when: None,
                    message: String::new(),
                    paths: Vec::new(),
                });
            }
            Xml::Start(tag) if entry.is_some() => {
                field = Some(tag.name().as_ref().to_vec());
                text.clear();
            }
            ref carrying @ (Xml::Text(_) | Xml::GeneralRef(_) | Xml::CData(_))
                if field.is_some() =>
            {
                if let Some(piece) = event_text(carrying, at)? {
                    text.push_str(&piece);
                }
            }
            Xml::End(tag) => {
                let name = tag.name();
                if name.as_ref() == b"logentry" {
                    out.extend(entry.take());
                } else if let (Some(e), Some(f)) = (entry.as_mut(), field.take()) {
                    let value = std::mem::take(&mut text);
                    match f.as_slice() {
                        b"author" => e.author = value,
                        b"date" => {
                            e.when = value.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
                        }
                        b"msg" => e.message = value,
                        b"path" => e.paths.push(value),
                        _ => {}
                    }
                }
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    if entry.is_some() {
        return Err("svn log: an unterminated <logentry>".into());
    }
    Ok(out)
}

/// The text an XML event carries inside an element, with entities and character references
/// resolved; `None` for events that carry none.
fn event_text(event: &quick_xml::events::Event<'_>, at: u64) -> Result<Option<String>, String> {
    use quick_xml::events::Event as Xml;
    let bad = |e: &dyn std::fmt::Display| format!("svn: bad text at byte {at}: {e}");
    Ok(Some(match event {
        Xml::Text(t) => {
            let decoded = t.decode().map_err(|e| bad(&e))?;
            quick_xml::escape::unescape(&decoded)
                .map_err(|e| bad(&e))?
                .into_owned()
        }
        Xml::GeneralRef(r) => {
            let name = r.decode().map_err(|e| bad(&e))?;
            quick_xml::escape::resolve_xml_entity(&name)
                .map(str::to_string)
                .or_else(|| r.resolve_char_ref().ok().flatten().map(String::from))
                .ok_or_else(|| format!("svn: unknown entity &{name}; at byte {at}"))?
        }
        Xml::CData(c) => String::from_utf8_lossy(c).into_owned(),
        _ => return Ok(None),
    }))
}

/// The text of the first `<name>` element of `xml` (`svn info --xml`'s `url` and `root`).
fn element_text(xml: &str, name: &str) -> Option<String> {
    use quick_xml::events::Event as Xml;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    let mut text = String::new();
    loop {
        let at = reader.buffer_position();
        match reader.read_event().ok()? {
            Xml::Start(t) if t.name().as_ref() == name.as_bytes() => inside = true,
            Xml::End(t) if inside && t.name().as_ref() == name.as_bytes() => return Some(text),
            Xml::Eof => return None,
            other if inside => text.push_str(&event_text(&other, at).ok()??),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_read_and_paths_are_placed_below_the_url() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<log>
<logentry revision="3">
<author>bob</author>
<date>2026-11-21T10:00:00.000000Z</date>
<paths>
<path action="M" prop-mods="false" text-mods="true" kind="file">/proj/trunk/a&amp;b.c</path>
</paths>
<msg>fix &lt;it&gt;</msg>
</logentry>
</log>"#;
        let entries = parse_log(xml).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].revision, 3);
        assert_eq!(entries[0].author, "bob");
        assert_eq!(entries[0].message, "fix <it>");
        assert_eq!(entries[0].paths, ["/proj/trunk/a&b.c"]);
        assert_eq!(entries[0].when, Some(1_795_255_200));
        assert_eq!(
            relative("/proj/trunk/a.c", "proj").as_deref(),
            Some("trunk/a.c")
        );
        assert_eq!(relative("/project2/a.c", "proj"), None);
    }
}
