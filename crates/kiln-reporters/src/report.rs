//! A report: what a generator decided to tell and how its formatter worded it, before a reporter
//! turns it into a mail or a request (Buildbot's report dict).

use kiln_config::TemplateType;
use serde_json::Value;

/// A message's body: text, or a JSON value for the reporters that post JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Text(String),
    Json(Value),
}

impl Body {
    /// The body as text (JSON encoded).
    pub fn text(&self) -> String {
        match self {
            Body::Text(t) => t.clone(),
            Body::Json(v) => v.to_string(),
        }
    }
}

/// A file attached to a message: a patch or a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content: String,
}

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportEvent {
    RequestNew,
    RequestCancelled,
    BuildStarted,
    BuildFinished,
    BuildsetComplete,
    WorkerMissing,
}

impl ReportEvent {
    /// The event's name in kiln's webhook document.
    pub fn name(self) -> &'static str {
        match self {
            ReportEvent::RequestNew => "request_new",
            ReportEvent::RequestCancelled => "request_cancelled",
            ReportEvent::BuildStarted => "build_started",
            ReportEvent::BuildFinished => "build_finished",
            ReportEvent::BuildsetComplete => "buildset_complete",
            ReportEvent::WorkerMissing => "worker_missing",
        }
    }
}

/// One decided report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub event: ReportEvent,
    pub body: Option<Body>,
    pub subject: Option<String>,
    pub kind: TemplateType,
    /// The result reported on, if the report is about finished work.
    pub results: Option<i64>,
    /// The builds the report is about, as build dicts.
    pub builds: Vec<Value>,
    /// Who the report concerns: the blamelist and owners of its builds, or the addresses a
    /// missing worker's configuration names, used as they are.
    pub users: Vec<String>,
    pub patches: Vec<Attachment>,
    pub logs: Vec<Attachment>,
    /// The properties of the report's build when it is about exactly one, for rendering the
    /// reporter's own renderables (a mail's `extraHeaders`).
    pub properties: Option<kiln_core::Properties>,
    /// One line for people: what the report is about.
    pub summary: String,
}
