//! `reporters.MailNotifier`: one mail per event's reports, to the interested users (looked up
//! as the configuration says) and the extra recipients, with patches and logs attached, sent
//! over SMTP (plain, STARTTLS or SMTPS, with authentication) by lettre on the connection that
//! `relay` keeps.

use kiln_api::{ApiError, ReadSide};
use kiln_config::{MailConfig, MailLookup, TemplateType, bare_address};
use kiln_core::render::{RenderContext, RenderHooks};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as MailAttachment, Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};
use serde_json::{Value, json};

use crate::report::{Report, ReportEvent};
use crate::sink::Failure;

mod relay;

pub use relay::Mailer;

/// Builds the stored form of one event's reports: who gets the mail, and what it says.
pub async fn encode(
    config: &MailConfig,
    reports: &[Report],
    read: &dyn ReadSide,
    hooks: &(dyn RenderHooks + Sync),
    title: &str,
) -> Result<Option<Value>, ApiError> {
    let Some(first) = reports.first() else {
        return Ok(None);
    };
    let mut body = String::new();
    for r in reports {
        if let Some(b) = &r.body {
            body.push_str(&b.text());
        }
    }
    if !body.ends_with("\n\n") {
        body.push_str(if body.ends_with('\n') { "\n" } else { "\n\n" });
    }
    let subject = reports
        .iter()
        .find_map(|r| r.subject.clone())
        .unwrap_or_else(|| default_subject(first, title));
    let (to, cc, envelope) = recipients(config, reports, read).await?;
    if envelope.is_empty() {
        tracing::info!(summary = %first.summary, "no recipients for this mail");
        return Ok(None);
    }
    let mut headers = Vec::new();
    for (name, value) in &config.extra_headers {
        let props = if reports.len() == 1 {
            first.properties.clone().unwrap_or_default()
        } else {
            Default::default()
        };
        let rendered = value
            .render_in(&RenderContext {
                props: &props,
                sourcestamps: &[],
                worker: &Default::default(),
                hooks,
            })
            .map(|v| v.render())
            .unwrap_or_else(|e| {
                tracing::warn!(header = %name, error = %e.0, "rendering a mail header");
                String::new()
            });
        headers.push(json!([name, rendered.replace(['\r', '\n'], " ")]));
    }
    let attachments: Vec<Value> = reports
        .iter()
        .flat_map(|r| r.patches.iter().chain(r.logs.iter()))
        .map(|a| json!({"filename": a.filename, "content": a.content}))
        .collect();
    Ok(Some(json!({
        "from": config.fromaddr,
        "to": to,
        "cc": cc,
        "envelope": envelope,
        "subject": subject.replace(['\r', '\n'], " "),
        "body": body,
        "html": first.kind == TemplateType::Html,
        "headers": headers,
        "attachments": attachments,
    })))
}

/// `Buildbot success in kiln on pass`: the subject when no formatter gave one.
fn default_subject(report: &Report, title: &str) -> String {
    let result = report
        .results
        .and_then(kiln_core::Results::from_code)
        .map_or("", |r| r.name());
    let builder = report
        .builds
        .first()
        .and_then(|b| b["builder"]["name"].as_str())
        .unwrap_or("whole buildset");
    format!("Buildbot {result} in {title} on {builder}")
}

/// To, CC and the envelope's recipients, as Buildbot chooses them: the interested users (looked
/// up) in To and the extra recipients in CC, or the extra recipients alone in To. A missing
/// worker's addresses go in the envelope only.
async fn recipients(
    config: &MailConfig,
    reports: &[Report],
    read: &dyn ReadSide,
) -> Result<(Vec<String>, Vec<String>, Vec<String>), ApiError> {
    let mut envelope: Vec<String> = Vec::new();
    let add = |envelope: &mut Vec<String>, a: &str| {
        if let Some(bare) = bare_address(a)
            && !envelope.iter().any(|e| e == bare)
        {
            envelope.push(bare.to_string());
        }
    };
    if reports
        .iter()
        .all(|r| r.event == ReportEvent::WorkerMissing)
    {
        for r in reports {
            for a in &r.users {
                add(&mut envelope, a);
            }
        }
        return Ok((Vec::new(), Vec::new(), envelope));
    }
    let mut interested: Vec<String> = Vec::new();
    if config.send_to_interested_users {
        for r in reports {
            for user in &r.users {
                match lookup(config, user, read).await? {
                    Some(a) if !interested.contains(&a) => interested.push(a),
                    Some(_) => {}
                    None => tracing::info!(user = %user, "INVALID EMAIL: no address for this user"),
                }
            }
        }
    }
    let (mut to, mut cc) = if interested.is_empty() {
        (config.extra_recipients.clone(), Vec::new())
    } else {
        (interested, config.extra_recipients.clone())
    };
    to.sort();
    cc.sort();
    for a in to.iter().chain(cc.iter()) {
        add(&mut envelope, a);
    }
    Ok((to, cc, envelope))
}

/// A blamelist entry's address: through the domain (`bob` → `bob@example.org`) or the users
/// table, or the entry itself when it is an address.
async fn lookup(
    config: &MailConfig,
    user: &str,
    read: &dyn ReadSide,
) -> Result<Option<String>, ApiError> {
    let found = match &config.lookup {
        Some(MailLookup::Domain(domain)) if !user.contains('@') => {
            Some(format!("{}@{domain}", user.trim()))
        }
        Some(MailLookup::Users) => match read.db().find_user(user).await? {
            Some(u) => u.attributes.get("email").cloned(),
            None => None,
        },
        _ => None,
    };
    let candidate = found.unwrap_or_else(|| user.to_string());
    Ok(bare_address(&candidate).map(|_| candidate.clone()))
}

/// Sends a stored mail.
pub async fn deliver(
    config: &MailConfig,
    mailer: &Mailer,
    basedir: &std::path::Path,
    credentials: Option<(String, String)>,
    payload: &Value,
) -> Result<(), Failure> {
    let message = build_message(payload).map_err(Failure::Permanent)?;
    if config.dump_mails_to_log {
        tracing::info!(mail = %String::from_utf8_lossy(&message.formatted()), "mail");
    }
    mailer.send(config, basedir, credentials, &message).await
}

/// The mail of a stored payload.
fn build_message(p: &Value) -> Result<Message, String> {
    let strings = |key: &str| -> Vec<String> {
        p[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let from: Mailbox = p["from"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("fromaddr: {e}"))?;
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(p["subject"].as_str().unwrap_or_default());
    for h in p["headers"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (h[0].as_str(), h[1].as_str()) else {
            continue;
        };
        let name = HeaderName::new_from_ascii(name.to_string())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        builder = builder.raw_header(HeaderValue::new(name, value.to_string()));
    }
    for a in strings("to") {
        builder = builder.to(a.parse().map_err(|e| format!("recipient {a}: {e}"))?);
    }
    for a in strings("cc") {
        builder = builder.cc(a.parse().map_err(|e| format!("recipient {a}: {e}"))?);
    }
    let rcpt: Vec<Address> = strings("envelope")
        .iter()
        .map(|a| a.parse().map_err(|e| format!("recipient {a}: {e}")))
        .collect::<Result<_, String>>()?;
    let envelope = lettre::address::Envelope::new(Some(from.email.clone()), rcpt)
        .map_err(|e| format!("the mail's envelope: {e}"))?;
    builder = builder.envelope(envelope);
    let kind = if p["html"].as_bool().unwrap_or(false) {
        ContentType::TEXT_HTML
    } else {
        ContentType::TEXT_PLAIN
    };
    let body = p["body"].as_str().unwrap_or_default().to_string();
    let attachments = p["attachments"].as_array().cloned().unwrap_or_default();
    let message = if attachments.is_empty() {
        builder.singlepart(SinglePart::builder().header(kind).body(body))
    } else {
        let mut parts =
            MultiPart::mixed().singlepart(SinglePart::builder().header(kind).body(body));
        for a in &attachments {
            let filename = a["filename"].as_str().unwrap_or("attachment").to_string();
            let content = a["content"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            parts = parts
                .singlepart(MailAttachment::new(filename).body(content, ContentType::TEXT_PLAIN));
        }
        builder.multipart(parts)
    };
    message.map_err(|e| format!("building the mail: {e}"))
}
