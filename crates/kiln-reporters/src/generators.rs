//! Generators: which events become reports. Each looks at the durable events it wants
//! (a build new or finished, a buildset complete, a request new or cancelled), reads what it
//! needs, filters by builder, tag, scheduler, branch and mode, and has its formatter word the
//! report, as Buildbot 4's generators do.

use std::sync::Arc;

use base64::Engine;
use kiln_api::{ApiError, ReadSide};
use kiln_config::{GeneratorConfig, GeneratorKind, GerritStage, MasterConfig, Mode, ReportFilter};
use kiln_core::render::RenderHooks;
use kiln_core::{BuildId, BuildRequestId, BuildSetId, Results};
use serde_json::{Value, json};

use crate::data::{self, BuildInfo};
use crate::formatter::{Formatter, Message, Site};
use crate::report::{Attachment, Body, Report, ReportEvent};

/// A generator with its formatters compiled.
#[derive(Debug)]
pub struct Generator {
    pub config: GeneratorConfig,
    /// The formatter, or for `BuildStartEndStatusGenerator` the start one.
    first: Formatter,
    /// `BuildStartEndStatusGenerator`'s end formatter.
    second: Option<Formatter>,
}

/// What a generator is given to decide with.
pub struct Inputs<'a> {
    pub read: &'a dyn ReadSide,
    /// The position of the event being decided in the durable record.
    pub position: i64,
    pub builds: &'a crate::cache::BuildCache,
    pub config: &'a MasterConfig,
    pub site: &'a Site,
    pub hooks: &'a (dyn RenderHooks + Sync),
}

/// The durable events a report can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    BuildNew(BuildId),
    BuildFinished(BuildId),
    BuildsetComplete(BuildSetId),
    RequestNew(BuildRequestId),
    RequestCancelled(BuildRequestId),
}

impl Trigger {
    /// The trigger of a durable event's key (`builds.12.finished`), if it is one.
    pub fn of_key(key: &str) -> Option<Trigger> {
        let mut parts = key.split('.');
        let (Some(kind), Some(id), Some(verb), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let id: i64 = id.parse().ok()?;
        Some(match (kind, verb) {
            ("builds", "new") => Trigger::BuildNew(BuildId(id)),
            ("builds", "finished") => Trigger::BuildFinished(BuildId(id)),
            ("buildsets", "complete") => Trigger::BuildsetComplete(BuildSetId(id)),
            ("buildrequests", "new") => Trigger::RequestNew(BuildRequestId(id)),
            ("buildrequests", "canceled") => Trigger::RequestCancelled(BuildRequestId(id)),
            _ => return None,
        })
    }
}

impl Generator {
    pub fn new(config: &GeneratorConfig) -> Result<Generator, String> {
        let (first, second) = match &config.kind {
            GeneratorKind::BuildStatus { formatter, .. }
            | GeneratorKind::BuildSet { formatter, .. }
            | GeneratorKind::BuildSetCombined { formatter }
            | GeneratorKind::BuildRequest { formatter }
            | GeneratorKind::WorkerMissing { formatter, .. } => (Formatter::new(formatter)?, None),
            GeneratorKind::BuildStartEnd { start, end } => {
                (Formatter::new(start)?, Some(Formatter::new(end)?))
            }
            // A Gerrit generator's callback makes its review.
            GeneratorKind::Gerrit { .. } => {
                (Formatter::new(&kiln_config::FormatterConfig::Empty)?, None)
            }
        };
        Ok(Generator {
            config: config.clone(),
            first,
            second,
        })
    }

    /// What the generator's reports need read of a build: steps and logs when its formatters
    /// show them or it attaches logs, the previous build for `change`, `problem` and a
    /// template's `previous_results`, the people concerned unless its words are fixed or a
    /// bare build dict.
    pub fn needs(&self) -> data::Needs {
        use kiln_config::FormatterConfig as F;
        let formatters = [Some(&self.first), self.second.as_ref()];
        let mut needs = data::Needs {
            steps: self.config.add_logs.any(),
            previous: false,
            users: false,
        };
        for f in formatters.into_iter().flatten() {
            let w = f.wants();
            needs.steps |= w.steps || w.logs || w.logs_content.any();
            match f.config() {
                F::Template {
                    template: None,
                    template_type: kiln_config::TemplateType::Json,
                    ..
                }
                | F::Renderable { .. }
                | F::Empty => {}
                F::Template { .. } | F::Function { .. } | F::MissingWorker { .. } => {
                    needs.users = true;
                    needs.previous = true;
                }
            }
        }
        match &self.config.kind {
            GeneratorKind::BuildStatus { mode, .. } | GeneratorKind::BuildSet { mode, .. } => {
                needs.previous |= mode
                    .iter()
                    .any(|m| matches!(m, Mode::Change | Mode::Problem));
            }
            GeneratorKind::BuildSetCombined { .. } => needs.users = true,
            _ => {}
        }
        needs
    }

    /// Whether the generator looks at events like this one.
    pub fn wants(&self, trigger: Trigger) -> bool {
        match (&self.config.kind, trigger) {
            (GeneratorKind::BuildStatus { report_new, .. }, Trigger::BuildNew(_)) => *report_new,
            (GeneratorKind::BuildStatus { .. }, Trigger::BuildFinished(_)) => true,
            (
                GeneratorKind::BuildStartEnd { .. },
                Trigger::BuildNew(_) | Trigger::BuildFinished(_),
            ) => true,
            (
                GeneratorKind::BuildSet { .. } | GeneratorKind::BuildSetCombined { .. },
                Trigger::BuildsetComplete(_),
            ) => true,
            (
                GeneratorKind::BuildRequest { .. },
                Trigger::RequestNew(_) | Trigger::RequestCancelled(_),
            ) => true,
            (GeneratorKind::Gerrit { stage, .. }, t) => matches!(
                (stage, t),
                (GerritStage::BuildSet, Trigger::BuildsetComplete(_))
                    | (GerritStage::Start, Trigger::BuildNew(_))
                    | (GerritStage::End, Trigger::BuildFinished(_))
            ),
            _ => false,
        }
    }

    /// The formatter of a worker-missing generator.
    pub fn formatter(&self) -> &Formatter {
        &self.first
    }

    /// The report this generator makes of an event, if any.
    pub async fn generate(
        &self,
        inputs: &Inputs<'_>,
        trigger: Trigger,
    ) -> Result<Option<Report>, String> {
        let event = match trigger {
            Trigger::BuildNew(_) => ReportEvent::BuildStarted,
            Trigger::BuildFinished(_) => ReportEvent::BuildFinished,
            Trigger::BuildsetComplete(_) => ReportEvent::BuildsetComplete,
            Trigger::RequestNew(_) => ReportEvent::RequestNew,
            Trigger::RequestCancelled(_) => ReportEvent::RequestCancelled,
        };
        Ok(self.decide(inputs, trigger).await?.map(|mut r| {
            r.event = event;
            r
        }))
    }

    async fn decide(
        &self,
        inputs: &Inputs<'_>,
        trigger: Trigger,
    ) -> Result<Option<Report>, String> {
        let read = inputs.read;
        let err = |e: ApiError| e.to_string();
        match (&self.config.kind, trigger) {
            (GeneratorKind::BuildStatus { mode, .. }, Trigger::BuildNew(_)) => {
                self.build_report(inputs, trigger, mode, &self.first, false)
                    .await
            }
            (GeneratorKind::BuildStatus { mode, .. }, Trigger::BuildFinished(id)) => {
                let Some(build) = inputs
                    .builds
                    .load(read, inputs.position, id, self.needs())
                    .await
                    .map_err(err)?
                else {
                    return Ok(None);
                };
                if !mode_wants(mode, &build) {
                    return Ok(None);
                }
                self.report_of(inputs, &build, mode, &self.first, false)
                    .await
            }
            (GeneratorKind::BuildStartEnd { .. }, Trigger::BuildNew(_)) => {
                self.build_report(inputs, trigger, &Mode::ALL, &self.first, false)
                    .await
            }
            (GeneratorKind::BuildStartEnd { .. }, Trigger::BuildFinished(_)) => {
                let formatter = self.second.as_ref().unwrap_or(&self.first);
                self.build_report(inputs, trigger, &Mode::ALL, formatter, false)
                    .await
            }
            (GeneratorKind::BuildSet { mode, .. }, Trigger::BuildsetComplete(id)) => {
                self.buildset_report(inputs, id, mode).await
            }
            (GeneratorKind::BuildSetCombined { .. }, Trigger::BuildsetComplete(id)) => {
                self.combined_report(inputs, id).await
            }
            (GeneratorKind::BuildRequest { .. }, Trigger::RequestNew(id)) => {
                self.request_report(inputs, id, false).await
            }
            (GeneratorKind::BuildRequest { .. }, Trigger::RequestCancelled(id)) => {
                self.request_report(inputs, id, true).await
            }
            (
                GeneratorKind::Gerrit {
                    stage,
                    callback,
                    arg,
                },
                Trigger::BuildNew(_) | Trigger::BuildFinished(_),
            ) => {
                let Some(build) = self.build(inputs, trigger).await? else {
                    return Ok(None);
                };
                if !self.selects(&build) {
                    return Ok(None);
                }
                let review =
                    crate::gerrit::build_review(inputs.config, *stage, *callback, arg, &build)?;
                Ok(review.map(|r| self.review_report(r, vec![Arc::unwrap_or_clone(build)])))
            }
            (GeneratorKind::Gerrit { callback, arg, .. }, Trigger::BuildsetComplete(id)) => {
                let builds: Vec<BuildInfo> = inputs
                    .builds
                    .buildset_builds(read, inputs.position, id, self.needs())
                    .await
                    .map_err(err)?
                    .into_iter()
                    .filter(|b| self.selects(b))
                    .collect();
                if builds.is_empty() {
                    return Ok(None);
                }
                let results = read
                    .db()
                    .get_buildset(id)
                    .await
                    .map_err(|e| e.to_string())?
                    .and_then(|b| b.results)
                    .unwrap_or(-1);
                let review = crate::gerrit::buildset_review(
                    inputs.config,
                    *callback,
                    arg,
                    &builds,
                    results,
                )?;
                Ok(review.map(|r| self.review_report(r, builds)))
            }
            _ => Ok(None),
        }
    }

    /// A report carrying a Gerrit review of `builds`.
    fn review_report(&self, review: crate::gerrit::Review, builds: Vec<BuildInfo>) -> Report {
        let message = Message {
            body: Some(Body::Json(review.to_json())),
            subject: None,
            kind: kiln_config::TemplateType::Json,
        };
        let mut report = report_from(message, &builds);
        report.results = builds.first().and_then(BuildInfo::results);
        report.summary = match builds.as_slice() {
            [one] => describe_build(one),
            _ => format!("{} builds reviewed", builds.len()),
        };
        report
    }

    async fn build_report(
        &self,
        inputs: &Inputs<'_>,
        trigger: Trigger,
        mode: &[Mode],
        formatter: &Formatter,
        is_buildset: bool,
    ) -> Result<Option<Report>, String> {
        let Some(build) = self.build(inputs, trigger).await? else {
            return Ok(None);
        };
        self.report_of(inputs, &build, mode, formatter, is_buildset)
            .await
    }

    /// The build a build event is about, as it was at that event: a build that started is
    /// shown starting, even when it finished before its start was decided.
    async fn build(
        &self,
        inputs: &Inputs<'_>,
        trigger: Trigger,
    ) -> Result<Option<Arc<BuildInfo>>, String> {
        let (Trigger::BuildNew(id) | Trigger::BuildFinished(id)) = trigger else {
            return Ok(None);
        };
        let build = inputs
            .builds
            .load(inputs.read, inputs.position, id, self.needs())
            .await
            .map_err(|e| e.to_string())?;
        Ok(match trigger {
            Trigger::BuildNew(_) => build.map(|b| Arc::new(Arc::unwrap_or_clone(b).as_started())),
            _ => build,
        })
    }

    /// Whether the generator's filters take the build.
    fn selects(&self, build: &BuildInfo) -> bool {
        filter_takes(&self.config.filter, build)
    }

    async fn report_of(
        &self,
        inputs: &Inputs<'_>,
        build: &BuildInfo,
        mode: &[Mode],
        formatter: &Formatter,
        is_buildset: bool,
    ) -> Result<Option<Report>, String> {
        if !self.selects(build) {
            return Ok(None);
        }
        let message = formatter.format_build(
            build,
            mode,
            is_buildset,
            inputs.site,
            inputs.config,
            inputs.hooks,
        )?;
        let mut report = report_from(message, std::slice::from_ref(build));
        report.results = build.results();
        report.properties = Some(build.properties.clone());
        report.summary = describe_build(build);
        self.attach(inputs, &mut report, std::slice::from_ref(build), formatter)
            .await?;
        Ok(Some(report))
    }

    /// Attaches the builds' patches and the logs the generator or formatter wants.
    async fn attach(
        &self,
        inputs: &Inputs<'_>,
        report: &mut Report,
        builds: &[BuildInfo],
        formatter: &Formatter,
    ) -> Result<(), String> {
        if self.config.add_patch {
            for b in builds {
                for s in &b.sourcestamps {
                    if let Some(p) = &s.patch {
                        let body = base64::engine::general_purpose::STANDARD
                            .decode(&p.body_base64)
                            .unwrap_or_default();
                        let n = report.patches.len();
                        report.patches.push(Attachment {
                            filename: format!("source patch {n}"),
                            content: String::from_utf8_lossy(&body).into_owned(),
                        });
                    }
                }
            }
        }
        let wanted = formatter.wants().logs_content;
        let several = builds.len() > 1;
        for b in builds {
            for (step, logs) in &b.steps {
                for log in logs {
                    if !(wanted.wants(&step.name, &log.name)
                        || self.config.add_logs.wants(&step.name, &log.name))
                    {
                        continue;
                    }
                    let content = data::log_text(inputs.read, log)
                        .await
                        .map_err(|e| e.to_string())?;
                    let filename = if several {
                        format!("{}.{}.{}", b.builder.name, step.name, log.name)
                    } else {
                        format!("{}.{}", step.name, log.name)
                    };
                    report.logs.push(Attachment { filename, content });
                }
            }
        }
        Ok(())
    }

    async fn buildset_report(
        &self,
        inputs: &Inputs<'_>,
        id: BuildSetId,
        mode: &[Mode],
    ) -> Result<Option<Report>, String> {
        let builds = inputs
            .builds
            .buildset_builds(inputs.read, inputs.position, id, self.needs())
            .await
            .map_err(|e| e.to_string())?;
        let chosen: Vec<BuildInfo> = builds
            .into_iter()
            .filter(|b| self.selects(b) && mode_wants(mode, b))
            .collect();
        if chosen.is_empty() {
            return Ok(None);
        }
        let mut body = String::new();
        let mut json_bodies = Vec::new();
        let mut subject = None;
        let mut kind = kiln_config::TemplateType::Plain;
        for b in &chosen {
            let m =
                self.first
                    .format_build(b, mode, true, inputs.site, inputs.config, inputs.hooks)?;
            kind = m.kind;
            match m.body {
                Some(Body::Text(t)) => body.push_str(&t),
                Some(Body::Json(v)) => json_bodies.push(v),
                None => {}
            }
            if subject.is_none() {
                subject = m.subject;
            }
        }
        let buildset = inputs
            .read
            .db()
            .get_buildset(id)
            .await
            .map_err(|e| e.to_string())?;
        let message = Message {
            body: Some(if json_bodies.is_empty() {
                Body::Text(body)
            } else {
                Body::Json(Value::Array(json_bodies))
            }),
            subject,
            kind,
        };
        let mut report = report_from(message, &chosen);
        report.results = buildset.and_then(|b| b.results);
        report.summary = format!("buildset {} complete", id.0);
        if chosen.len() == 1 {
            report.properties = Some(chosen[0].properties.clone());
        }
        self.attach(inputs, &mut report, &chosen, &self.first)
            .await?;
        Ok(Some(report))
    }

    async fn combined_report(
        &self,
        inputs: &Inputs<'_>,
        id: BuildSetId,
    ) -> Result<Option<Report>, String> {
        let read = inputs.read;
        let Some(bs) = read
            .db()
            .get_buildset(id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let builds = inputs
            .builds
            .buildset_builds(read, inputs.position, id, self.needs())
            .await
            .map_err(|e| e.to_string())?;
        let sourcestamps = builds
            .first()
            .map(|b| {
                b.sourcestamps
                    .iter()
                    .map(kiln_api::shapes::sourcestamp)
                    .collect()
            })
            .unwrap_or_default();
        let dict = kiln_api::shapes::buildset(&bs, sourcestamps);
        let message =
            self.first
                .format_buildset(&dict, &builds, bs.results, inputs.site, inputs.config)?;
        let mut report = report_from(message, &builds);
        report.results = bs.results;
        report.summary = format!("buildset {} complete", id.0);
        Ok(Some(report))
    }

    async fn request_report(
        &self,
        inputs: &Inputs<'_>,
        id: BuildRequestId,
        cancelled: bool,
    ) -> Result<Option<Report>, String> {
        let Some(build) = pending_build(inputs.read, id, cancelled)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if !self.selects(&build) {
            return Ok(None);
        }
        let message = self.first.format_build(
            &build,
            &Mode::ALL,
            false,
            inputs.site,
            inputs.config,
            inputs.hooks,
        )?;
        let mut report = report_from(message, std::slice::from_ref(&build));
        report.results = build.results();
        report.properties = Some(build.properties.clone());
        report.summary = format!(
            "request {} on {} {}",
            id.0,
            build.builder.name,
            if cancelled { "cancelled" } else { "pending" }
        );
        Ok(Some(report))
    }
}

/// Whether a finished build's result is one the mode reports.
pub fn mode_wants(mode: &[Mode], build: &BuildInfo) -> bool {
    let Some(results) = build.results().and_then(Results::from_code) else {
        return false;
    };
    let previous = build.previous.as_ref().map(|p| p.results);
    mode.iter().any(|m| match m {
        Mode::Failing => results == Results::Failure,
        Mode::Passing => results == Results::Success,
        Mode::Warnings => results == Results::Warnings,
        Mode::Exception => results == Results::Exception,
        Mode::Cancelled => results == Results::Cancelled,
        Mode::Problem => {
            results == Results::Failure
                && previous.is_some_and(|p| p != Some(Results::Failure.code()))
        }
        Mode::Change => previous.is_some_and(|p| p != Some(results.code())),
    })
}

/// Whether a build passes a generator's `builders`, `tags`, `schedulers` and `branches`.
pub fn filter_takes(filter: &ReportFilter, build: &BuildInfo) -> bool {
    let prop = |name: &str| build.property(name);
    filter
        .builders
        .as_ref()
        .is_none_or(|b| b.contains(&build.builder.name))
        && filter
            .tags
            .as_ref()
            .is_none_or(|t| t.iter().any(|t| build.builder.tags.contains(t)))
        && filter
            .schedulers
            .as_ref()
            .is_none_or(|s| s.contains(&prop("scheduler")))
        && filter
            .branches
            .as_ref()
            .is_none_or(|b| b.contains(&prop("branch")))
}

fn report_from(message: Message, builds: &[BuildInfo]) -> Report {
    let mut users: Vec<String> = builds.iter().flat_map(|b| b.users.clone()).collect();
    users.sort();
    users.dedup();
    Report {
        event: ReportEvent::BuildFinished,
        body: message.body,
        subject: message.subject,
        kind: message.kind,
        results: None,
        builds: builds.iter().map(|b| b.dict(true, false, false)).collect(),
        users,
        patches: Vec::new(),
        logs: Vec::new(),
        properties: None,
        summary: String::new(),
    }
}

/// `fail #2 finished: failure`, or `fail #2 started`.
fn describe_build(build: &BuildInfo) -> String {
    match build.results().and_then(Results::from_code) {
        Some(r) => format!(
            "{} #{} finished: {}",
            build.builder.name,
            build.row.number,
            r.name()
        ),
        None => format!("{} #{} started", build.builder.name, build.row.number),
    }
}

/// A request's partial build, as Buildbot's `BuildRequestGenerator` reports it: no number, no
/// worker, the buildset's properties, complete and CANCELLED when it was cancelled.
async fn pending_build(
    read: &dyn ReadSide,
    id: BuildRequestId,
    cancelled: bool,
) -> Result<Option<BuildInfo>, ApiError> {
    let db = read.db();
    let Some(request) = db.get_buildrequest(id).await? else {
        return Ok(None);
    };
    let Some(builder) = data::load_builder(read, kiln_core::BuilderId(request.builderid)).await?
    else {
        return Ok(None);
    };
    let buildset = db.get_buildset(request.buildsetid).await?;
    let properties = db.buildset_properties(request.buildsetid).await?;
    let sourcestamps = match &buildset {
        Some(bs) => {
            let ids: Vec<kiln_core::SourceStampId> = bs
                .sourcestamps
                .iter()
                .map(|i| kiln_core::SourceStampId(*i))
                .collect();
            db.get_sourcestamps(&ids).await?
        }
        None => Vec::new(),
    };
    let url = format!("{}builders/{}", data::site_url(read), request.builderid);
    let row = kiln_db::BuildRow {
        id: BuildId(-1),
        number: -1,
        builderid: builder.id,
        buildrequestid: id,
        workerid: None,
        masterid: 0,
        started_at: request.submitted_at,
        complete_at: cancelled.then_some(request.complete_at.unwrap_or(request.submitted_at)),
        locks_duration_s: 0,
        state_string: if cancelled { "cancelled" } else { "pending" }.into(),
        results: cancelled.then_some(Results::Cancelled.code()),
    };
    Ok(Some(BuildInfo {
        row,
        builder,
        request: Some(request),
        buildset,
        sourcestamps,
        properties,
        steps: Vec::new(),
        previous: None,
        users: Vec::new(),
        url,
    }))
}

/// A worker dict for `MessageFormatterMissingWorker`: the data API's worker, with who is told
/// and when it was last seen.
pub fn missing_worker_dict(worker: &Value, notify: &[String], last_connection: &str) -> Value {
    let mut w = worker.clone();
    w["notify"] = json!(notify);
    w["last_connection"] = json!(last_connection);
    w
}
