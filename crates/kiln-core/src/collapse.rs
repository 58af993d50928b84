//! Buildbot's default rule for collapsing build requests: whether a new request on a builder
//! makes an older unclaimed one unnecessary.

use std::collections::BTreeMap;

use crate::{BuildRequestId, BuildSetId, PropertyValue};

/// One source stamp of a request's buildset, as the rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub codebase: String,
    pub repository: String,
    pub branch: Option<String>,
    pub project: String,
    pub revision: Option<String>,
    pub patched: bool,
    /// Whether changes are attached to the source stamp.
    pub has_changes: bool,
}

/// A build request with what the rule compares.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: BuildRequestId,
    pub buildset: BuildSetId,
    pub stamps: Vec<Stamp>,
    /// The buildset's properties set by its scheduler (source `Scheduler`), except `scheduler`.
    pub scheduler_properties: BTreeMap<String, PropertyValue>,
}

/// Whether `new` makes `old` unnecessary: requests of one buildset always collapse; otherwise
/// `new` must be the newer, both must have the same codebases with the same repository, branch and
/// project, no patch, and either changes on both sides or the same revision, and their
/// schedulers must have set the same properties.
pub fn can_be_collapsed(new: &Request, old: &Request) -> bool {
    if new.buildset == old.buildset {
        return true;
    }
    if new.id < old.id {
        return false;
    }
    let by_codebase = |r: &Request| -> BTreeMap<String, Stamp> {
        r.stamps
            .iter()
            .map(|s| (s.codebase.clone(), s.clone()))
            .collect()
    };
    let (mine, theirs) = (by_codebase(new), by_codebase(old));
    if mine.keys().ne(theirs.keys()) {
        return false;
    }
    for (codebase, a) in &mine {
        let Some(b) = theirs.get(codebase) else {
            return false;
        };
        if a.repository != b.repository || a.branch != b.branch || a.project != b.project {
            return false;
        }
        if a.patched || b.patched {
            return false;
        }
        match (a.has_changes, b.has_changes) {
            (true, true) => {}
            (false, false) if a.revision == b.revision => {}
            _ => return false,
        }
    }
    new.scheduler_properties == old.scheduler_properties
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(branch: &str, revision: Option<&str>, has_changes: bool) -> Stamp {
        Stamp {
            codebase: String::new(),
            repository: "https://x/r.git".into(),
            branch: Some(branch.into()),
            project: "p".into(),
            revision: revision.map(str::to_string),
            patched: false,
            has_changes,
        }
    }

    fn request(id: i64, buildset: i64, stamps: Vec<Stamp>) -> Request {
        Request {
            id: BuildRequestId(id),
            buildset: BuildSetId(buildset),
            stamps,
            scheduler_properties: BTreeMap::new(),
        }
    }

    #[test]
    fn buildbot_default_rules() {
        let old = request(1, 1, vec![stamp("main", Some("a"), true)]);
        let new = request(2, 2, vec![stamp("main", Some("b"), true)]);
        assert!(can_be_collapsed(&new, &old), "both with changes");
        assert!(
            !can_be_collapsed(&old, &new),
            "only a newer request collapses an older one"
        );
        assert!(
            can_be_collapsed(&old, &request(9, 1, vec![])),
            "one buildset always collapses"
        );
        let other_branch = request(3, 3, vec![stamp("dev", Some("b"), true)]);
        assert!(!can_be_collapsed(&other_branch, &old));
        // Without changes the revisions must match; one side with changes never matches.
        let forced = |id, rev| request(id, id, vec![stamp("main", rev, false)]);
        assert!(can_be_collapsed(
            &forced(5, Some("r")),
            &forced(4, Some("r"))
        ));
        assert!(!can_be_collapsed(
            &forced(5, Some("s")),
            &forced(4, Some("r"))
        ));
        assert!(can_be_collapsed(&forced(5, None), &forced(4, None)));
        assert!(!can_be_collapsed(&forced(5, Some("b")), &old));
        let mut patched = forced(6, Some("r"));
        patched.stamps[0].patched = true;
        assert!(!can_be_collapsed(&patched, &forced(4, Some("r"))));
        // Codebases must be the same set.
        let mut two = forced(7, Some("r"));
        two.stamps.push(Stamp {
            codebase: "lib".into(),
            ..stamp("main", Some("r"), false)
        });
        assert!(!can_be_collapsed(&two, &forced(4, Some("r"))));
        // Different scheduler properties keep both.
        let mut props = forced(8, Some("r"));
        props
            .scheduler_properties
            .insert("kind".into(), PropertyValue::from("nightly"));
        assert!(!can_be_collapsed(&props, &forced(4, Some("r"))));
    }
}
