//! The controls of the pages: forms posted by a browser. Each checks the form's CSRF token,
//! gives its command to the control handle with the actor who asks, and redirects to the page
//! it came from, which shows the outcome once.

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use kiln_api::authz::{Request as Concerns, Verb};
use kiln_api::{Actor, ApiError, Services, WorkerAction, WorkerRef};
use kiln_core::{BuildId, BuildRequestId, SchedulerId};

use super::builders::{self, Refused};
use super::{PageError, Site, Visit, csrf};

/// A posted form's fields, in order; a name given twice keeps its last value.
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `reason` field, or `otherwise` when it was left empty.
    fn reason<'a>(&'a self, otherwise: &'a str) -> &'a str {
        self.get("reason")
            .filter(|r| !r.is_empty())
            .unwrap_or(otherwise)
    }

    /// The form of `request`, URL-encoded or multipart (a force form with a patch file).
    async fn read(request: Request) -> Result<Form, PageError> {
        let multipart = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("multipart/form-data"));
        if multipart {
            let mut parts = Multipart::from_request(request, &())
                .await
                .map_err(|e| PageError::bad_request(format!("the form is malformed: {e}")))?;
            let mut fields = Vec::new();
            while let Some(field) = parts
                .next_field()
                .await
                .map_err(|e| PageError::bad_request(format!("the form is malformed: {e}")))?
            {
                let name = field.name().unwrap_or_default().to_string();
                let bytes = field.bytes().await.map_err(|e| {
                    PageError::bad_request(format!("the form field {name} is malformed: {e}"))
                })?;
                fields.push((name, String::from_utf8_lossy(&bytes).into_owned()));
            }
            return Ok(Form(fields));
        }
        let body = axum::body::to_bytes(request.into_body(), crate::MAX_BODY_BYTES)
            .await
            .map_err(|e| PageError::bad_request(format!("the form could not be read: {e}")))?;
        serde_urlencoded::from_bytes(&body)
            .map(Form)
            .map_err(|e| PageError::bad_request(format!("the form is malformed: {e}")))
    }

    /// The form, if its CSRF token is the browser's.
    pub(super) async fn checked(visit: &Visit, request: Request) -> Result<Form, PageError> {
        let form = Form::read(request).await?;
        if !csrf::accepted(&visit.headers, form.get(csrf::FIELD)) {
            tracing::warn!("a form without this browser's CSRF token was refused");
            return Err(PageError {
                status: axum::http::StatusCode::FORBIDDEN,
                message: "this form is out of date or was not sent from this site: reload the page and try again".into(),
            });
        }
        Ok(form)
    }
}

/// The template function `may(control, builder)`: whether the visitor may use a control, so
/// that a page shows only the controls its visitor may use. The control handle decides again
/// when one is used.
pub fn may(services: Services, actor: Actor) -> minijinja::Value {
    minijinja::Value::from_function(
        move |control: &str, builder: Option<&str>| -> Result<bool, minijinja::Error> {
            let verb = match control {
                "force" => Verb::Force,
                "stop" => Verb::Stop,
                "rebuild" => Verb::Rebuild,
                "cancel" => Verb::Cancel,
                "priority" => Verb::OtherControl,
                "scheduler" => Verb::EnableScheduler,
                "ping" => Verb::PingWorker,
                "pause" => Verb::PauseWorker,
                "stopworker" => Verb::StopWorker,
                "shutdown" => Verb::Shutdown,
                "users" => Verb::ShowUsers,
                "stopall" => Verb::StopAll,
                "cancelchange" => Verb::CancelChange,
                other => {
                    return Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("may() knows no control '{other}'"),
                    ));
                }
            };
            let builders: Vec<&str> = builder.into_iter().collect();
            let request = Concerns {
                builders: &builders,
                ..Concerns::plain(verb)
            };
            Ok(services.read.allowed(&actor, &request))
        },
    )
}

pub async fn force(
    State(site): State<Site>,
    visit: Visit,
    Path((builder, scheduler)): Path<(String, String)>,
    request: Request,
) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let b = builders::find(&site, &builder).await?;
        let mut params = serde_json::Map::new();
        for (k, v) in &form.0 {
            if k != csrf::FIELD {
                params.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
        params.insert("builderNames".into(), serde_json::json!([b.name]));
        match site
            .services
            .control
            .force(visit.actor(), &scheduler, &params)
            .await
        {
            Ok((bsid, requests)) => {
                let ids: Vec<String> = requests.iter().map(|(_, r)| r.0.to_string()).collect();
                let message = format!(
                    "Forced: buildset {} with build request {}",
                    bsid.0,
                    ids.join(", ")
                );
                Ok(site.redirect(&format!("builders/{}", b.id.0), &message))
            }
            Err(ApiError::FormErrors(errors)) => {
                params.remove("builderNames");
                let refused = Refused {
                    scheduler,
                    values: params,
                    errors,
                };
                builders::show(&site, &visit, &builder, None, Some(refused)).await
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    site.answer(&visit, result)
}

/// Where a build's page is, for the redirect after a control.
async fn build_path(site: &Site, build: BuildId) -> Result<String, PageError> {
    let b = site
        .services
        .read
        .db()
        .get_build(build)
        .await?
        .ok_or_else(|| PageError::not_found(format!("there is no build {}", build.0)))?;
    Ok(format!("builders/{}/builds/{}", b.builderid.0, b.number))
}

fn id_of(text: &str, what: &str) -> Result<i64, PageError> {
    text.parse()
        .map_err(|_| PageError::not_found(format!("there is no {what} '{text}'")))
}

pub async fn stop(
    State(site): State<Site>,
    visit: Visit,
    Path(build): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let build = BuildId(id_of(&build, "build")?);
        let back = build_path(&site, build).await?;
        let reason = form.reason("stopped from the web page");
        let stopped = site
            .services
            .control
            .stop_build(visit.actor(), build, reason)
            .await?;
        let message = if stopped {
            "Stopping the build"
        } else {
            "The build is not running on this master"
        };
        Ok(site.redirect(&back, message))
    }
    .await;
    site.answer(&visit, result)
}

pub async fn rebuild(
    State(site): State<Site>,
    visit: Visit,
    Path(build): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        Form::checked(&visit, request).await?;
        let build = BuildId(id_of(&build, "build")?);
        let back = build_path(&site, build).await?;
        let (bsid, _) = site.services.control.rebuild(visit.actor(), build).await?;
        Ok(site.redirect(&back, &format!("Rebuilding: buildset {}", bsid.0)))
    }
    .await;
    site.answer(&visit, result)
}

/// Where a request's builder page is.
async fn request_path(site: &Site, request: BuildRequestId) -> Result<String, PageError> {
    let r = site
        .services
        .read
        .db()
        .get_buildrequest(request)
        .await?
        .ok_or_else(|| PageError::not_found(format!("there is no build request {}", request.0)))?;
    Ok(format!("builders/{}", r.builderid))
}

pub async fn cancel(
    State(site): State<Site>,
    visit: Visit,
    Path(request_id): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let id = BuildRequestId(id_of(&request_id, "build request")?);
        let back = request_path(&site, id).await?;
        let reason = form.reason("cancelled from the web page");
        site.services
            .control
            .cancel_request(visit.actor(), id, reason)
            .await?;
        Ok(site.redirect(&back, &format!("Cancelled build request {}", id.0)))
    }
    .await;
    site.answer(&visit, result)
}

pub async fn priority(
    State(site): State<Site>,
    visit: Visit,
    Path(request_id): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let id = BuildRequestId(id_of(&request_id, "build request")?);
        let back = request_path(&site, id).await?;
        let text = form.get("priority").unwrap_or_default();
        let priority: i64 = text.trim().parse().map_err(|_| {
            PageError::bad_request(format!("the priority must be a whole number, not '{text}'"))
        })?;
        site.services
            .control
            .set_request_priority(visit.actor(), id, priority)
            .await?;
        Ok(site.redirect(
            &back,
            &format!("Build request {} now has priority {priority}", id.0),
        ))
    }
    .await;
    site.answer(&visit, result)
}

pub async fn worker(
    State(site): State<Site>,
    visit: Visit,
    Path((worker, action)): Path<(String, String)>,
    request: Request,
) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let (action, done) = match action.as_str() {
            "ping" => (WorkerAction::Ping, "answered the ping"),
            "pause" => (WorkerAction::Pause, "is paused"),
            "unpause" => (WorkerAction::Unpause, "is unpaused"),
            "stop" => (
                WorkerAction::StopGracefully,
                "will stop once its builds are done",
            ),
            "kill" => (WorkerAction::Kill, "is disconnected"),
            other => {
                return Err(PageError::not_found(format!(
                    "workers have no action '{other}'"
                )));
            }
        };
        let row = super::workers::find(&site, &worker).await?;
        let reason = form.get("reason").unwrap_or_default();
        site.services
            .control
            .worker_action(visit.actor(), &WorkerRef::Id(row.id.0), action, reason)
            .await?;
        Ok(site.redirect(
            &format!("workers/{}", row.id.0),
            &format!("Worker {} {done}", row.name),
        ))
    }
    .await;
    site.answer(&visit, result)
}

pub async fn scheduler(
    State(site): State<Site>,
    visit: Visit,
    Path(scheduler): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let id = SchedulerId(id_of(&scheduler, "scheduler")?);
        let enabled = match form.get("enabled") {
            Some("true") => true,
            Some("false") => false,
            other => {
                return Err(PageError::bad_request(format!(
                    "enabled must be true or false, not '{}'",
                    other.unwrap_or_default()
                )));
            }
        };
        site.services
            .control
            .set_scheduler_enabled(visit.actor(), id, enabled)
            .await?;
        let state = if enabled { "enabled" } else { "disabled" };
        Ok(site.redirect("schedulers", &format!("Scheduler {} is {state}", id.0)))
    }
    .await;
    site.answer(&visit, result)
}

/// The old "stop all builds": every build running on this master.
pub async fn stop_all(State(site): State<Site>, visit: Visit, request: Request) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let reason = form.reason("stopped with all the others from the web page");
        let stopped = site
            .services
            .control
            .stop_all_builds(visit.actor(), reason)
            .await?;
        Ok(site.redirect("builders", &format!("Stopping {stopped} running builds")))
    }
    .await;
    site.answer(&visit, result)
}

/// The old "stop change": the requests built from a change that have not started.
pub async fn cancel_change(
    State(site): State<Site>,
    visit: Visit,
    Path(change): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let id = kiln_core::ChangeId(id_of(&change, "change")?);
        let reason = form.reason("cancelled with its change from the web page");
        let cancelled = site
            .services
            .control
            .cancel_change(visit.actor(), id, reason)
            .await?;
        Ok(site.redirect(
            &format!("changes/{}", id.0),
            &format!("Cancelled {cancelled} pending build requests"),
        ))
    }
    .await;
    site.answer(&visit, result)
}

/// A clean shutdown of the master, as SIGTERM asks for.
pub async fn shutdown(State(site): State<Site>, visit: Visit, request: Request) -> Response {
    let result = async {
        Form::checked(&visit, request).await?;
        site.services
            .control
            .shutdown(visit.actor(), kiln_api::Shutdown::Clean)
            .await?;
        Ok(site.redirect(
            "about",
            "The master is shutting down once its running builds are done",
        ))
    }
    .await;
    site.answer(&visit, result)
}
