//! The steps that run on the master in the configuration: `MasterShellCommand` and the HTTP
//! steps.

use kiln_core::render::Renderable;

use super::Cx;
use super::steps::StepNode;
use crate::model::*;
use crate::node::Node;

/// The HTTP step kinds: `HTTPStep` with its `method`, and one per method.
pub(super) const HTTP_KINDS: [&str; 7] = [
    "HTTPStep", "POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS",
];

/// The methods an `HTTPStep` may use.
const METHODS: [&str; 7] = ["POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];

pub(super) fn master_shell_command(cx: &mut Cx, s: &StepNode) -> Option<StepKind> {
    let env = match s.field("env") {
        None | Some(Node::None) => Vec::new(),
        Some(e) => match cx.renderable(e, "env", s.loc) {
            Renderable::Map(m) => m,
            _ => {
                cx.error(s.loc, "env must be a dict");
                Vec::new()
            }
        },
    };
    Some(StepKind::MasterShellCommand(Box::new(
        MasterShellCommandConfig {
            command: s.required(cx, "command")?,
            env,
            workdir: s.optional(cx, "workdir"),
            log_environ: s.boolean(cx, "logEnviron", true),
        },
    )))
}

pub(super) fn http_step(cx: &mut Cx, s: &StepNode) -> Option<StepKind> {
    let name = s.name;
    let method = if s.kind == "HTTPStep" {
        s.string(cx, "method")
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase()
    } else {
        s.kind.to_string()
    };
    if !METHODS.contains(&method.as_str()) {
        cx.error(
            s.loc,
            format!("HTTPStep '{name}': {method} is not an HTTP method"),
        );
    }
    let given = |field: &str| s.field(field).is_some_and(|n| *n != Node::None);
    if given("data") && given("json") {
        cx.error(
            s.loc,
            format!("HTTPStep '{name}': give data or json, not both"),
        );
    }
    Some(StepKind::Http(Box::new(HttpStepConfig {
        method,
        url: s.required(cx, "url")?,
        params: s.optional(cx, "params"),
        headers: s.optional(cx, "headers"),
        data: s.optional(cx, "data"),
        json: s.optional(cx, "json"),
        auth: s.optional(cx, "auth"),
        timeout: s.number(cx, "timeout"),
        verify: verify(cx, s),
        hide_request_headers: cx.strings(
            s.field("hide_request_headers"),
            "hide_request_headers",
            s.loc,
        ),
        hide_response_headers: cx.strings(
            s.field("hide_response_headers"),
            "hide_response_headers",
            s.loc,
        ),
    })))
}

/// `verify`: `None` checks against the usual roots, `""` not at all, a path against that CA file.
fn verify(cx: &mut Cx, s: &StepNode) -> Option<String> {
    match s.field("verify") {
        None | Some(Node::None) | Some(Node::Bool(true)) => None,
        Some(Node::Bool(false)) => Some(String::new()),
        Some(Node::Str(path)) if !path.is_empty() => Some(path.clone()),
        Some(other) => {
            cx.error(
                s.loc,
                format!(
                    "HTTPStep '{}': verify must be True, False or a CA file, not {}",
                    s.name,
                    other.describe()
                ),
            );
            None
        }
    }
}
