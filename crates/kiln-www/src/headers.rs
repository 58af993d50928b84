//! Headers every answer of the web port carries, so that a browser does not guess a file's type
//! (a build's upload served as a page), other sites cannot frame the pages to trick a click, and
//! the pages' addresses are not sent to other sites as referrers.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::middleware::Next;
use axum::response::Response;

/// What kiln's own pages may load: their script and style sheet from the site, styles inline
/// (coloured log lines), images from the site or inline (badges). Nothing else runs, so markup
/// that slipped through escaping could not run a script.
pub const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

pub async fn secure(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.entry(X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("SAMEORIGIN"));
    h.entry(REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    response
}
