//! The pages' login form and logout button. Passwords are checked by `auth::login::log_in`,
//! which counts failures and answers them all in the same time; a login starts a session
//! cookie and goes back to the page the user came from.

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::Response;
use kiln_config::WebAuth;
use minijinja::context;

use super::controls::Form;
use super::{PageError, PageResult, Site, Visit};
use crate::auth::Peer;
use crate::auth::login::{Failure, end_session, log_in, start_session};

/// How the pages offer a login: kiln's form when kiln checks passwords, the provider's page
/// for an OAuth2 login, nothing otherwise (a reverse proxy logs users in before they reach
/// kiln).
pub fn offered(www: &kiln_config::WwwConfig) -> Option<minijinja::Value> {
    if let Some(link) = &www.login_link {
        return Some(context! { kind => "link", label => "Log in", href => link });
    }
    match &www.auth {
        WebAuth::UserPassword(_) | WebAuth::HtPasswd(_) => {
            Some(context! { kind => "form", label => "Log in" })
        }
        WebAuth::OAuth2(o) => Some(context! {
            kind => "oauth2",
            label => format!("Log in with {}", crate::auth::oauth2::label(o)),
        }),
        WebAuth::None | WebAuth::RemoteUser { .. } => None,
    }
}

/// Whether the pages' own form is how users log in.
fn takes_form(auth: &WebAuth) -> bool {
    auth.takes_passwords()
}

#[derive(serde::Deserialize)]
pub struct Then {
    then: Option<String>,
}

/// A path of this site to go back to; anything else (another site's address) is the root.
fn back_to(site: &Site, then: Option<&str>) -> String {
    let root = site.root();
    then.filter(|t| t.starts_with(&root) && !t.starts_with("//") && !t.contains('\\'))
        .map_or(root.clone(), str::to_string)
}

pub async fn form(State(site): State<Site>, visit: Visit, Query(q): Query<Then>) -> Response {
    let then = back_to(&site, q.then.as_deref());
    let result = show(&site, &visit, StatusCode::OK, &then, "", None);
    site.answer(&visit, result)
}

fn show(
    site: &Site,
    visit: &Visit,
    status: StatusCode,
    then: &str,
    username: &str,
    error: Option<String>,
) -> PageResult {
    if !takes_form(&site.services.read.config().www.auth) {
        return Err(PageError::not_found(
            "this master does not take passwords: nobody logs in here",
        ));
    }
    let data = context! { then => then, username => username, error => error };
    site.render_status(visit, status, "login.html", data)
}

pub async fn submit(
    State(site): State<Site>,
    visit: Visit,
    Peer(peer): Peer,
    request: Request,
) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let then = back_to(&site, form.get("then"));
        let username = form.get("username").unwrap_or_default().trim();
        let password = form.get("password").unwrap_or_default();
        if !takes_form(&site.services.read.config().www.auth) {
            return Err(PageError::from_failure(&Failure::NoPasswords));
        }
        if username.is_empty() {
            let error = Some("give a user name".to_string());
            return show(&site, &visit, StatusCode::BAD_REQUEST, &then, "", error);
        }
        match log_in(&site.auth, username, password, peer).await {
            Ok(user) => {
                let mut response =
                    site.redirect_to(&then, &format!("Logged in as {}", user.username));
                if let Some(cookie) = start_session(&site.auth, &user) {
                    response.headers_mut().append(SET_COOKIE, cookie);
                }
                Ok(response)
            }
            Err(failure) => {
                let error = Some(failure.message());
                show(&site, &visit, failure.status(), &then, username, error)
            }
        }
    }
    .await;
    site.answer(&visit, result)
}

pub async fn logout(State(site): State<Site>, visit: Visit, request: Request) -> Response {
    let result = async {
        let form = Form::checked(&visit, request).await?;
        let then = back_to(&site, form.get("then"));
        let mut response = site.redirect_to(&then, "Logged out");
        if let Some(cookie) = end_session(&site.auth) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        Ok(response)
    }
    .await;
    site.answer(&visit, result)
}

impl PageError {
    fn from_failure(failure: &Failure) -> PageError {
        PageError {
            status: failure.status(),
            message: failure.message(),
        }
    }
}
