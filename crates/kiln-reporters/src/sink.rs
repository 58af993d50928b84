//! Where a reporter's reports go: each kind of reporter turns one event's reports into what it
//! stores, and later delivers what it stored.

use kiln_api::{ApiError, ReadSide};
use kiln_config::{ReporterConfig, ReporterKind};
use serde_json::Value;

use crate::hooks::Hooks;
use crate::report::Report;

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again later: the receiver is down, busy, or broke the connection.
    Retry(String),
    /// Trying again would fail the same way: the receiver refused the report itself.
    Permanent(String),
}

/// What a reporter keeps open between deliveries.
#[derive(Default)]
pub struct Connections {
    /// An IRC reporter's bot, whose connection delivers its announcements.
    pub irc: Option<std::sync::Arc<crate::irc::Bot>>,
    pub mail: crate::mail::Mailer,
    /// Kept connections to the servers that HTTP reporters post to.
    pub http: kiln_http::Pool,
}

/// Turns one event's reports into the payload to store, or `None` when there is nothing to send.
pub async fn encode(
    config: &ReporterConfig,
    reports: &[Report],
    read: &dyn ReadSide,
    hooks: &Hooks,
) -> Result<Option<Value>, ApiError> {
    match &config.kind {
        ReporterKind::Mail(mail) => {
            let title = read.config().title.clone();
            crate::mail::encode(mail, reports, read, hooks, &title).await
        }
        ReporterKind::HttpPush(_) => Ok(crate::http_push::encode(reports)),
        ReporterKind::Push(push) => Ok(crate::push::encode(push, reports, hooks)),
        ReporterKind::Gerrit(_) => Ok(crate::gerrit::encode(reports)),
        // The bot decides its announcements itself (`irc::Bot::announcements`).
        ReporterKind::Irc(_) => Ok(None),
    }
}

/// Delivers a stored payload.
pub async fn deliver(
    config: &ReporterConfig,
    report_id: i64,
    payload: &Value,
    read: &dyn ReadSide,
    hooks: &Hooks,
    connections: &Connections,
) -> Result<(), Failure> {
    match &config.kind {
        ReporterKind::Mail(mail) => {
            let credentials = match (&mail.smtp_user, &mail.smtp_password) {
                (Some(user), Some(password)) => {
                    let render = |r| hooks.render(r).map_err(Failure::Permanent);
                    Some((render(user)?, render(password)?))
                }
                _ => None,
            };
            crate::mail::deliver(
                mail,
                &connections.mail,
                read.basedir(),
                credentials,
                payload,
            )
            .await
        }
        ReporterKind::HttpPush(push) => {
            crate::http_push::deliver(push, read.basedir(), hooks, payload, &connections.http).await
        }
        ReporterKind::Push(push) => {
            let (basedir, pool) = (read.basedir(), &connections.http);
            crate::push::deliver(push, basedir, hooks, report_id, payload, pool).await
        }
        ReporterKind::Gerrit(gerrit) => {
            crate::gerrit::deliver(gerrit, read.basedir(), hooks, payload).await
        }
        ReporterKind::Irc(_) => match &connections.irc {
            Some(bot) => bot.deliver(payload).await,
            None => Err(Failure::Permanent("the IRC bot is not running".into())),
        },
    }
}
