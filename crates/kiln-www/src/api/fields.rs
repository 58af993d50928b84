//! The kinds of resources of the REST API, with the fields each has and the column behind each.

use kiln_db::listing::{Elements, Listed};

use super::query::{Field, Kind, f};

/// A kind of resource: its plural name, its fields, and the column behind each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Builders,
    Builds,
    Steps,
    Logs,
    BuildRequests,
    BuildSets,
    SourceStamps,
    Changes,
    Workers,
    Masters,
    ForceSchedulers,
    Schedulers,
    ChangeSources,
    Projects,
    /// kiln's reporters and how their deliveries stand.
    Reporters,
    TestResultSets,
    TestResults,
}

const BUILDS: &[Field] = &[
    f("buildid", "id", Kind::Int),
    f("number", "number", Kind::Int),
    f("builderid", "builderid", Kind::Int),
    f("buildrequestid", "buildrequestid", Kind::Int),
    f("workerid", "workerid", Kind::Int),
    f("masterid", "masterid", Kind::Int),
    f("started_at", "started_at", Kind::Int),
    f("complete", "complete_at", Kind::NotNull),
    f("complete_at", "complete_at", Kind::Int),
    f("locks_duration_s", "locks_duration_s", Kind::Int),
    f("state_string", "state_string", Kind::Text),
    f("results", "results", Kind::Int),
    f("properties", "", Kind::Computed),
];
const STEPS: &[Field] = &[
    f("stepid", "id", Kind::Int),
    f("number", "number", Kind::Int),
    f("name", "name", Kind::Text),
    f("buildid", "buildid", Kind::Int),
    f("started_at", "started_at", Kind::Int),
    f("locks_acquired_at", "locks_acquired_at", Kind::Int),
    f("complete", "complete_at", Kind::NotNull),
    f("complete_at", "complete_at", Kind::Int),
    f("state_string", "state_string", Kind::Text),
    f("results", "results", Kind::Int),
    f("urls", "", Kind::Computed),
    f("hidden", "hidden", Kind::Bool),
];
const LOGS: &[Field] = &[
    f("logid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("slug", "slug", Kind::Text),
    f("stepid", "stepid", Kind::Int),
    f("complete", "complete", Kind::Bool),
    f("num_lines", "num_lines", Kind::Int),
    f("type", "type", Kind::Text),
];
const BUILDREQUESTS: &[Field] = &[
    f("buildrequestid", "br.id", Kind::Int),
    f("buildsetid", "br.buildsetid", Kind::Int),
    f("builderid", "br.builderid", Kind::Int),
    f("priority", "br.priority", Kind::Int),
    f("claimed", "c.masterid", Kind::Claim("br.complete")),
    f("claimed_at", "c.claimed_at", Kind::Int),
    f("claimed_by_masterid", "c.masterid", Kind::Int),
    f("complete", "br.complete", Kind::Bool),
    f("complete_at", "br.complete_at", Kind::Int),
    f("results", "br.results", Kind::Int),
    f("submitted_at", "br.submitted_at", Kind::Int),
    f("waited_for", "br.waited_for", Kind::Bool),
    f("properties", "", Kind::Computed),
];
const BUILDSETS: &[Field] = &[
    f("bsid", "id", Kind::Int),
    f("external_idstring", "external_idstring", Kind::Text),
    f("reason", "reason", Kind::Text),
    f("submitted_at", "submitted_at", Kind::Int),
    f("complete", "complete", Kind::Bool),
    f("complete_at", "complete_at", Kind::Int),
    f("results", "results", Kind::Int),
    f("sourcestamps", "", Kind::Computed),
    f("parent_buildid", "parent_buildid", Kind::Int),
    f("parent_relationship", "parent_relationship", Kind::Text),
    f("rebuilt_buildid", "rebuilt_buildid", Kind::Int),
];
const SOURCESTAMPS: &[Field] = &[
    f("ssid", "id", Kind::Int),
    f("branch", "branch", Kind::Text),
    f("revision", "revision", Kind::Text),
    f("project", "project", Kind::Text),
    f("repository", "repository", Kind::Text),
    f("codebase", "codebase", Kind::Text),
    f("created_at", "created_at", Kind::Int),
    f("patch", "", Kind::Computed),
];
/// A change's files, one row each.
const CHANGE_FILES: Elements = Elements {
    table: "change_files",
    owner: "changeid",
    element: "filename",
};
/// A change's properties, one row each: `contains` asks for a property's name, as Python's `in`
/// on Buildbot's dictionary of them does.
const CHANGE_PROPERTIES: Elements = Elements {
    table: "change_properties",
    owner: "changeid",
    element: "property_name",
};
const CHANGES: &[Field] = &[
    f("changeid", "changeid", Kind::Int),
    f("author", "author", Kind::Text),
    f("committer", "committer", Kind::Text),
    f("comments", "comments", Kind::Text),
    f("branch", "branch", Kind::Text),
    f("revision", "revision", Kind::Text),
    f("revlink", "revlink", Kind::Text),
    f("when_timestamp", "when_timestamp", Kind::Int),
    f("category", "category", Kind::Text),
    f("repository", "repository", Kind::Text),
    f("codebase", "codebase", Kind::Text),
    f("project", "project", Kind::Text),
    f("files", "changeid", Kind::Elements(CHANGE_FILES)),
    f("properties", "changeid", Kind::Elements(CHANGE_PROPERTIES)),
    f("sourcestamp", "", Kind::Computed),
    f("parent_changeids", "parent_changeids", Kind::ListOfOne),
];
const WORKERS: &[Field] = &[
    f("workerid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("paused", "paused", Kind::Bool),
    f("pause_reason", "pause_reason", Kind::Text),
    f("graceful", "graceful", Kind::Bool),
    f("configured_on", "", Kind::Computed),
    f("connected_to", "", Kind::Computed),
    f("workerinfo", "", Kind::Computed),
];
const BUILDERS: &[Field] = &[
    f("builderid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("description", "description", Kind::Text),
    f("description_format", "description_format", Kind::Text),
    f("description_html", "description_html", Kind::Text),
    f("projectid", "projectid", Kind::Int),
    f("masterids", "", Kind::Computed),
    f("tags", "", Kind::Computed),
];
const MASTERS: &[Field] = &[
    f("masterid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("active", "active", Kind::Bool),
    f("last_active", "last_active", Kind::Int),
];
const FORCESCHEDULERS: &[Field] = &[
    f("name", "", Kind::Computed),
    f("label", "", Kind::Computed),
    f("button_name", "", Kind::Computed),
    f("builder_names", "", Kind::Computed),
    f("enabled", "", Kind::Computed),
    f("all_fields", "", Kind::Computed),
];
const SCHEDULERS: &[Field] = &[
    f("schedulerid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("enabled", "enabled", Kind::Bool),
    f("master", "", Kind::Computed),
];
const NAMED: &[Field] = &[f("name", "", Kind::Computed)];
const REPORTERS: &[Field] = &[
    f("name", "", Kind::Text),
    f("class", "", Kind::Text),
    f("generators", "", Kind::Computed),
    f("pending", "", Kind::Int),
    f("sent", "", Kind::Int),
    f("failed", "", Kind::Int),
    f("last_success_at", "", Kind::Int),
    f("last_error", "", Kind::Text),
    f("last_error_at", "", Kind::Int),
];
const TEST_RESULT_SETS: &[Field] = &[
    f("test_result_setid", "id", Kind::Int),
    f("builderid", "builderid", Kind::Int),
    f("buildid", "buildid", Kind::Int),
    f("stepid", "stepid", Kind::Int),
    f("description", "description", Kind::Text),
    f("category", "category", Kind::Text),
    f("value_unit", "value_unit", Kind::Text),
    f("tests_passed", "tests_passed", Kind::Int),
    f("tests_failed", "tests_failed", Kind::Int),
    f("complete", "complete", Kind::Bool),
];
/// Buildbot's fields, and the build each result belongs to, so a test's history can be listed
/// with its builds (`/builders/{b}/test_results?test_name=…`).
const TEST_RESULTS: &[Field] = &[
    f("test_resultid", "id", Kind::Int),
    f("builderid", "builderid", Kind::Int),
    f("test_result_setid", "test_result_setid", Kind::Int),
    f("buildid", "buildid", Kind::Int),
    f("test_name", "test_name", Kind::Text),
    f("test_code_path", "test_code_path", Kind::Text),
    f("line", "line", Kind::Int),
    f("duration_ns", "duration_ns", Kind::Int),
    f("value", "value", Kind::Text),
];

/// Whether `name` is one of the API's collections.
pub fn is_collection(name: &str) -> bool {
    Ty::ALL.iter().any(|t| t.plural() == name) || name == "users"
}

impl Ty {
    pub(crate) const ALL: [Ty; 17] = [
        Ty::Builders,
        Ty::Builds,
        Ty::Steps,
        Ty::Logs,
        Ty::BuildRequests,
        Ty::BuildSets,
        Ty::SourceStamps,
        Ty::Changes,
        Ty::Workers,
        Ty::Masters,
        Ty::ForceSchedulers,
        Ty::Schedulers,
        Ty::ChangeSources,
        Ty::Projects,
        Ty::Reporters,
        Ty::TestResultSets,
        Ty::TestResults,
    ];

    pub fn plural(self) -> &'static str {
        match self {
            Ty::Builders => "builders",
            Ty::Builds => "builds",
            Ty::Steps => "steps",
            Ty::Logs => "logs",
            Ty::BuildRequests => "buildrequests",
            Ty::BuildSets => "buildsets",
            Ty::SourceStamps => "sourcestamps",
            Ty::Changes => "changes",
            Ty::Workers => "workers",
            Ty::Masters => "masters",
            Ty::ForceSchedulers => "forceschedulers",
            Ty::Schedulers => "schedulers",
            Ty::ChangeSources => "changesources",
            Ty::Projects => "projects",
            Ty::Reporters => "reporters",
            Ty::TestResultSets => "test_result_sets",
            Ty::TestResults => "test_results",
        }
    }

    /// The table of a kind that grows with the history kept, whose answers are read and written
    /// out a batch at a time; the other kinds grow with the configuration and are listed whole.
    pub fn history(self) -> Option<Listed> {
        Some(match self {
            Ty::Builds => Listed::Builds,
            Ty::Steps => Listed::Steps,
            Ty::Logs => Listed::Logs,
            Ty::BuildRequests => Listed::BuildRequests,
            Ty::BuildSets => Listed::BuildSets,
            Ty::SourceStamps => Listed::SourceStamps,
            Ty::Changes => Listed::Changes,
            Ty::TestResultSets => Listed::TestResultSets,
            Ty::TestResults => Listed::TestResults,
            Ty::Builders
            | Ty::Workers
            | Ty::Masters
            | Ty::ForceSchedulers
            | Ty::Schedulers
            | Ty::ChangeSources
            | Ty::Projects
            | Ty::Reporters => return None,
        })
    }

    /// The field that identifies an item: the first of its fields for every listed kind.
    pub fn id_field(self) -> &'static str {
        self.fields()[0].name
    }

    pub fn fields(self) -> &'static [Field] {
        match self {
            Ty::Builders => BUILDERS,
            Ty::Builds => BUILDS,
            Ty::Steps => STEPS,
            Ty::Logs => LOGS,
            Ty::BuildRequests => BUILDREQUESTS,
            Ty::BuildSets => BUILDSETS,
            Ty::SourceStamps => SOURCESTAMPS,
            Ty::Changes => CHANGES,
            Ty::Workers => WORKERS,
            Ty::Masters => MASTERS,
            Ty::ForceSchedulers => FORCESCHEDULERS,
            Ty::Schedulers => SCHEDULERS,
            Ty::ChangeSources | Ty::Projects => NAMED,
            Ty::Reporters => REPORTERS,
            Ty::TestResultSets => TEST_RESULT_SETS,
            Ty::TestResults => TEST_RESULTS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::query::{parse, push_down};

    /// The lists of a change that tables hold are filtered in the database, not on a scan of every
    /// change in memory.
    #[test]
    fn a_changes_lists_are_filtered_in_the_database() {
        for raw in [
            "files__contains=README&limit=10",
            "properties__contains=reviewer&limit=10",
            "parent_changeids__contains=1&limit=10",
        ] {
            let q = parse(raw, Ty::Changes.fields(), &[]).unwrap();
            let (page, rest, all) = push_down(&q, Ty::Changes.fields(), vec![]).unwrap();
            assert!(all && rest.is_empty(), "{raw} is finished in memory");
            assert_eq!(page.limit, Some(10), "{raw}");
        }
    }
}
