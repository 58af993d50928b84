//! How the web port answers a `kiln_api::ApiError`: the one table of statuses, JSON-RPC codes and
//! messages lives with the error; this is only its HTTP form.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_api::ApiError;
use serde_json::{Value, json};

/// An error as an HTTP answer.
pub trait Answer {
    /// `{"error": message}` with the error's status, as the REST API, the hooks and `/try` answer.
    fn answer(self) -> Response;
    /// A JSON-RPC 2.0 error reply for the request `id`.
    fn rpc_answer(self, id: &Value) -> Response;
    /// The message as a line of plain text, as the change hooks answer.
    fn text_answer(self) -> Response;
}

impl Answer for ApiError {
    fn answer(self) -> Response {
        log(&self);
        (status(&self), axum::Json(json!({"error": self.message()}))).into_response()
    }

    fn text_answer(self) -> Response {
        log(&self);
        (status(&self), format!("{}\n", self.message())).into_response()
    }

    fn rpc_answer(self, id: &Value) -> Response {
        log(&self);
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": self.rpc_code(), "message": self.rpc_message()},
        });
        (status(&self), axum::Json(body)).into_response()
    }
}

pub fn status(error: &ApiError) -> StatusCode {
    StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The details of an internal error go to the log; the client learns only that it was not its
/// fault.
fn log(error: &ApiError) {
    if let ApiError::Internal(details) = error {
        tracing::error!(error = %details, "internal error answering a request");
    }
}
