//! API errors: a status and a JSON body that says what was wrong.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    Internal(String),
}

impl From<kiln_db::DbError> for ApiError {
    fn from(e: kiln_db::DbError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ApiError {
    pub fn into_response_for(self, _headers: &HeaderMap) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Internal(m) => {
                // The details go to the log; the client learns only that it was not its fault.
                tracing::error!(error = %m, "internal error answering an API request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                )
            }
        };
        (status, axum::Json(serde_json::json!({"error": message}))).into_response()
    }
}
