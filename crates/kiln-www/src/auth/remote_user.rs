//! `util.RemoteUserAuth`: a reverse proxy in front of the master authenticates users and names
//! them in a header. The header is believed only when the connection comes from one of the
//! configured proxies; from anywhere else it is ignored, since anyone can send it.

use std::net::IpAddr;
use std::sync::Mutex;

use axum::http::HeaderMap;
use kiln_api::Services;
use kiln_api::authz::UserInfo;
use kiln_config::WebAuth;
use regex::Regex;

/// The header's pattern, compiled once per configured pattern.
#[derive(Default)]
pub struct Pattern {
    compiled: Mutex<Option<(String, Regex)>>,
}

impl Pattern {
    /// The user the proxy's header names, if remote users are configured, the peer is a trusted
    /// proxy and the header matches the pattern.
    pub fn user(
        &self,
        services: &Services,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Option<UserInfo> {
        let config = services.read.config();
        let WebAuth::RemoteUser {
            header,
            header_regex,
            trusted_proxies,
        } = &config.www.auth
        else {
            return None;
        };
        let mut value = headers.get(header.as_str())?.to_str().ok()?.to_string();
        if header.eq_ignore_ascii_case("authorization") {
            // The old `useHttpHeader=True`: the proxy checked HTTP Basic credentials and passed
            // them on; their user name is the user.
            value = crate::basic_auth::credentials(headers)?.0;
        }
        let peer = peer?;
        if !trusted_proxies
            .iter()
            .any(|p| p.parse::<IpAddr>().is_ok_and(|p| p == peer))
        {
            tracing::warn!(%peer, header, "a user header from an address that is not a trusted proxy was ignored");
            return None;
        }
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if compiled.as_ref().is_none_or(|(p, _)| p != header_regex) {
            *compiled = Regex::new(header_regex)
                .ok()
                .map(|r| (header_regex.clone(), r));
        }
        let (_, re) = compiled.as_ref()?;
        let found = re.captures(value.trim())?;
        let group = |name: &str| found.name(name).map(|m| m.as_str().to_string());
        let username = group("username").filter(|u| !u.is_empty())?;
        Some(UserInfo {
            email: group("email"),
            full_name: group("full_name"),
            username,
            ..UserInfo::default()
        })
    }
}
