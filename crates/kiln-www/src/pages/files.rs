//! Files served as they are: `robots.txt`, and the master's `public_html/` directory, whose files
//! a site adds (a logo, a page of its own) without touching kiln.

use std::path::{Component, Path as FsPath};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::{PageError, Site, Visit};

/// The directory under the master's base directory served at `/public_html/`.
pub const PUBLIC_HTML: &str = "public_html";
/// The largest file served from it.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// `robots.txt`: the site's own from `public_html/` if there is one; otherwise crawlers are kept
/// off the pages, whose links multiply without end.
pub async fn robots(State(site): State<Site>) -> Response {
    let own = site
        .services
        .read
        .basedir()
        .join(PUBLIC_HTML)
        .join("robots.txt");
    let body = tokio::fs::read(&own)
        .await
        .unwrap_or_else(|_| b"User-agent: *\nDisallow: /\n".to_vec());
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

pub async fn public(State(site): State<Site>, visit: Visit, Path(path): Path<String>) -> Response {
    let missing = || PageError::not_found(format!("there is no file public_html/{path}"));
    // Only plain names below the directory: no `..`, no absolute paths, no hidden files.
    let safe = FsPath::new(&path).components().all(|c| match c {
        Component::Normal(n) => !n.to_string_lossy().starts_with('.'),
        _ => false,
    });
    if !safe || path.is_empty() {
        return site.answer(&visit, Err(missing()));
    }
    let file = site.services.read.basedir().join(PUBLIC_HTML).join(&path);
    let readable = tokio::fs::metadata(&file)
        .await
        .is_ok_and(|m| m.is_file() && m.len() <= MAX_FILE_BYTES);
    if !readable {
        return site.answer(&visit, Err(missing()));
    }
    match tokio::fs::read(&file).await {
        Ok(body) => ([(CONTENT_TYPE, content_type(&path))], body).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// The type of a file, from its extension.
fn content_type(path: &str) -> &'static str {
    match path
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}
