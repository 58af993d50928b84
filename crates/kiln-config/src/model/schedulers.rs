//! The schedulers: change-driven, timed, triggered, dependent, try and force, with the force
//! form's parameters.

use kiln_core::PropertyValue;

/// One codebase a scheduler builds (`codebases={'name': {'repository': …, 'branch': …}}`), with
/// the source used when no change of it is in a buildset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CodebaseDefault {
    pub name: String,
    pub repository: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub project: String,
}

/// `Periodic` or `Nightly`: builds on a schedule, optionally only when changes came.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedSchedulerConfig {
    pub name: String,
    /// `Periodic` or `Nightly`, for the state kept in the database.
    pub class_name: String,
    pub builder_names: Vec<String>,
    /// `builderNames` given as a renderable (`util.Property`, `util.renderer`, …): the builders are
    /// those it renders to with each buildset's properties, as in Buildbot.
    pub rendered_builder_names: Option<kiln_core::render::Renderable>,
    pub schedule: kiln_core::schedulers::timed::Schedule,
    /// `force_at_*`: with `onlyIfChanged`, times at which a build runs even without changes.
    pub force_at: Option<kiln_core::cron::Cron>,
    /// The time zone of the cron fields (`timezone`); `None` is the master's own.
    pub timezone: Option<String>,
    /// `NightlyTriggerable`: at each time, builds what the last `Trigger` step asked for, if
    /// anything, instead of looking at changes.
    pub triggerable: bool,
    pub only_if_changed: bool,
    pub change_filter: kiln_core::changefilter::ChangeFilter,
    pub file_is_important: Option<kiln_core::changefilter::FnRef>,
    pub only_important: bool,
    pub codebases: Vec<CodebaseDefault>,
    pub properties: Vec<(String, PropertyValue)>,
    pub reason: String,
    pub priority: i64,
}

/// `Dependent`: builds the source stamps of each buildset of its upstream scheduler that
/// succeeds (SUCCESS or WARNINGS).
#[derive(Debug, Clone, PartialEq)]
pub struct DependentConfig {
    pub name: String,
    /// The upstream scheduler's name.
    pub upstream: String,
    pub builder_names: Vec<String>,
    /// `builderNames` given as a renderable (`util.Property`, `util.renderer`, …): the builders are
    /// those it renders to with each buildset's properties, as in Buildbot.
    pub rendered_builder_names: Option<kiln_core::render::Renderable>,
    pub properties: Vec<(String, PropertyValue)>,
    pub reason: String,
    pub priority: i64,
}

/// `Try_Userpass`: builds a patch sent by `kiln try` with one of its users' passwords.
#[derive(Debug, Clone, PartialEq)]
pub struct TryConfig {
    pub name: String,
    /// The builders a try job may ask for (all of them when it names none).
    pub builder_names: Vec<String>,
    pub userpass: Vec<(String, String)>,
    pub properties: Vec<(String, PropertyValue)>,
}

/// `Triggerable`: builds when a `Trigger` step asks.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerableConfig {
    pub name: String,
    pub builder_names: Vec<String>,
    /// `builderNames` given as a renderable (`util.Property`, `util.renderer`, …): the builders are
    /// those it renders to with each buildset's properties, as in Buildbot.
    pub rendered_builder_names: Option<kiln_core::render::Renderable>,
    pub codebases: Vec<CodebaseDefault>,
    pub properties: Vec<(String, PropertyValue)>,
    pub reason: String,
    pub priority: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerConfig {
    Force(Box<ForceSchedulerConfig>),
    Basic(Box<BasicSchedulerConfig>),
    Timed(Box<TimedSchedulerConfig>),
    Triggerable(Box<TriggerableConfig>),
    Dependent(Box<DependentConfig>),
    Try(Box<TryConfig>),
}

impl SchedulerConfig {
    pub fn name(&self) -> &str {
        match self {
            SchedulerConfig::Force(f) => &f.name,
            SchedulerConfig::Basic(b) => &b.name,
            SchedulerConfig::Timed(t) => &t.name,
            SchedulerConfig::Triggerable(t) => &t.name,
            SchedulerConfig::Dependent(d) => &d.name,
            SchedulerConfig::Try(t) => &t.name,
        }
    }

    /// The renderable `builderNames`, when they were given as one.
    pub fn rendered_builder_names(&self) -> Option<&kiln_core::render::Renderable> {
        match self {
            SchedulerConfig::Basic(b) => b.rendered_builder_names.as_ref(),
            SchedulerConfig::Timed(t) => t.rendered_builder_names.as_ref(),
            SchedulerConfig::Triggerable(t) => t.rendered_builder_names.as_ref(),
            SchedulerConfig::Dependent(d) => d.rendered_builder_names.as_ref(),
            SchedulerConfig::Force(_) | SchedulerConfig::Try(_) => None,
        }
    }

    pub fn builder_names(&self) -> &[String] {
        match self {
            SchedulerConfig::Force(f) => &f.builder_names,
            SchedulerConfig::Basic(b) => &b.builder_names,
            SchedulerConfig::Timed(t) => &t.builder_names,
            SchedulerConfig::Triggerable(t) => &t.builder_names,
            SchedulerConfig::Dependent(d) => &d.builder_names,
            SchedulerConfig::Try(t) => &t.builder_names,
        }
    }
}

/// `SingleBranchScheduler` (alias `Scheduler`) or `AnyBranchScheduler`: builds changes that pass
/// its filter once their tree has been stable for a while.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicSchedulerConfig {
    pub name: String,
    /// `SingleBranchScheduler` or `AnyBranchScheduler`, for the default reason.
    pub class_name: String,
    pub builder_names: Vec<String>,
    /// `builderNames` given as a renderable (`util.Property`, `util.renderer`, …): the builders are
    /// those it renders to with each buildset's properties, as in Buildbot.
    pub rendered_builder_names: Option<kiln_core::render::Renderable>,
    /// One tree-stable timer per codebase, project, repository and branch (`AnyBranchScheduler`).
    pub per_branch: bool,
    pub change_filter: kiln_core::changefilter::ChangeFilter,
    /// Seconds; `None` builds each important change at once.
    pub tree_stable_timer: Option<i64>,
    pub only_important: bool,
    /// `fileIsImportant`: decides whether a change that passed the filter starts the timer.
    pub file_is_important: Option<kiln_core::changefilter::FnRef>,
    /// The codebases the scheduler builds, with their defaults (`codebases`); changes of other
    /// codebases are not for it.
    pub codebases: Vec<CodebaseDefault>,
    pub properties: Vec<(String, PropertyValue)>,
    pub reason: String,
    pub priority: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForceSchedulerConfig {
    pub name: String,
    pub builder_names: Vec<String>,
    pub label: String,
    pub button_name: String,
    pub reason_string: String,
    pub username: ParameterConfig,
    pub reason: ParameterConfig,
    pub priority: ParameterConfig,
    pub properties: Vec<ParameterConfig>,
    /// One `CodebaseParameter` per codebase (by default one for the codebase `''`): each makes a
    /// source stamp from its `branch`, `revision`, `repository`, `project` and `patch` fields.
    pub codebases: Vec<ParameterConfig>,
}

/// The kinds of force-form parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterKind {
    String,
    Text,
    /// A file's contents, uploaded from the form (a patch's body).
    File,
    Int,
    Boolean,
    UserName,
    Fixed,
    ChoiceString,
    /// A group of fields; its value is a dict of theirs (flattened into the properties when the
    /// group has no name).
    Nested,
    /// A codebase's source stamp fields.
    Codebase,
    /// A property whose name and value are both typed in (`NAME_name`, `NAME_value`).
    AnyProperty,
    /// A patch to apply: `body`, `level`, `subdir`, `author`, `comment`.
    Patch,
    /// A choice among the builders' workers, or `*` for any; sets `workername`.
    WorkerChoice,
    /// `builder/number`: the properties set by that build's force form, and its source stamps.
    InheritBuild,
}

impl ParameterKind {
    /// Buildbot's `type` name for the REST API.
    pub fn type_name(self) -> &'static str {
        match self {
            ParameterKind::String => "text",
            ParameterKind::Text => "textarea",
            ParameterKind::File => "file",
            ParameterKind::Int => "int",
            ParameterKind::Boolean => "bool",
            ParameterKind::UserName => "username",
            ParameterKind::Fixed => "fixed",
            ParameterKind::ChoiceString | ParameterKind::WorkerChoice => "list",
            ParameterKind::Nested | ParameterKind::Codebase | ParameterKind::Patch => "nested",
            ParameterKind::AnyProperty => "anyproperty",
            ParameterKind::InheritBuild => "inherit",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParameterConfig {
    pub kind: ParameterKind,
    pub name: String,
    pub label: String,
    pub default: PropertyValue,
    pub required: bool,
    pub regex: Option<String>,
    pub need_email: bool,
    pub choices: Vec<String>,
    pub strict: bool,
    pub hide: bool,
    /// The fields of a nested, codebase or patch parameter.
    pub fields: Vec<ParameterConfig>,
    /// `InheritBuildParameter`'s `compatible_builds(master, buildername)`, listing the choices.
    pub compatible_builds: Option<kiln_core::changefilter::FnRef>,
}

impl ParameterConfig {
    /// A parameter of `kind` with Buildbot's defaults.
    pub fn new(kind: ParameterKind, name: &str, label: &str, default: PropertyValue) -> Self {
        ParameterConfig {
            kind,
            name: name.to_string(),
            label: label.to_string(),
            default,
            required: false,
            regex: None,
            need_email: kind == ParameterKind::UserName,
            choices: Vec::new(),
            strict: true,
            hide: false,
            fields: Vec::new(),
            compatible_builds: None,
        }
    }

    /// The field of a group called `name`.
    pub fn field(&self, name: &str) -> Option<&ParameterConfig> {
        self.fields.iter().find(|f| f.name == name)
    }
}
