//! One error type for everything the web port answers: each kind maps once to its HTTP status,
//! its JSON-RPC code and the message a client sees, whether the REST API, JSON-RPC, a change hook,
//! `/try` or a page reports it.

use std::collections::BTreeMap;

/// JSON-RPC 2.0's standard error codes.
pub mod rpc {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// What went wrong, in the terms a client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON (or not the format the endpoint reads).
    #[error("{0}")]
    Parse(String),
    /// The request is malformed: a bad query, a bad envelope, a payload that says nothing usable.
    #[error("{0}")]
    BadRequest(String),
    /// A parameter of a command is wrong.
    #[error("{0}")]
    InvalidParams(String),
    /// A form's fields are wrong, each with its message, keyed by the field's full name.
    #[error("invalid form fields")]
    FormErrors(BTreeMap<String, String>),
    /// No such action on this resource.
    #[error("{0}")]
    MethodNotFound(String),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// Credentials are needed, or the ones given are wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller is known but may not do this, or a signature does not match.
    #[error("{0}")]
    Forbidden(String),
    /// The request body is larger than the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The master will not do this now: the request ran past its deadline, or too many large
    /// ones are under way; the client may try again.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the master; the details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Parse(_)
            | ApiError::BadRequest(_)
            | ApiError::InvalidParams(_)
            | ApiError::FormErrors(_) => 400,
            // As Buildbot answers an action a resource does not have.
            ApiError::MethodNotFound(_) => 501,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The JSON-RPC error code. A missing resource is `invalid params`, as in Buildbot.
    pub fn rpc_code(&self) -> i64 {
        match self {
            ApiError::Parse(_) => rpc::PARSE_ERROR,
            ApiError::BadRequest(_) | ApiError::Unauthorized(_) | ApiError::Forbidden(_) => {
                rpc::INVALID_REQUEST
            }
            ApiError::PayloadTooLarge(_) => rpc::INVALID_REQUEST,
            ApiError::InvalidParams(_) | ApiError::FormErrors(_) | ApiError::NotFound(_) => {
                rpc::INVALID_PARAMS
            }
            ApiError::MethodNotFound(_) => rpc::METHOD_NOT_FOUND,
            ApiError::Unavailable(_) | ApiError::Internal(_) => rpc::INTERNAL_ERROR,
        }
    }

    /// The message a client sees: an internal error's details stay in the log.
    pub fn message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error".into(),
            // As text, a force form's errors are the JSON of the field map.
            ApiError::FormErrors(fields) => {
                serde_json::to_string(fields).unwrap_or_else(|_| "invalid form fields".into())
            }
            other => other.to_string(),
        }
    }

    /// The `message` of a JSON-RPC error: a force form's errors are an object of each field's
    /// full name and its error, which Buildbot's front-end shows next to the field; any other
    /// error is its text.
    pub fn rpc_message(&self) -> serde_json::Value {
        match self {
            ApiError::FormErrors(fields) => serde_json::json!(fields),
            other => serde_json::Value::String(other.message()),
        }
    }

    /// An internal failure; what caused it is kept for the log, not for the client.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(error.to_string())
    }

    /// Buildbot's wording for a path that names nothing.
    pub fn not_found(path: &str) -> ApiError {
        ApiError::NotFound(format!("not found while getting from {path}"))
    }
}

impl From<kiln_db::DbError> for ApiError {
    fn from(error: kiln_db::DbError) -> ApiError {
        ApiError::internal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_one_status_code_and_message() {
        let cases = [
            (
                ApiError::Parse("invalid JSON".into()),
                400,
                rpc::PARSE_ERROR,
            ),
            (
                ApiError::BadRequest("bad".into()),
                400,
                rpc::INVALID_REQUEST,
            ),
            (
                ApiError::InvalidParams("bad".into()),
                400,
                rpc::INVALID_PARAMS,
            ),
            (
                ApiError::MethodNotFound("no".into()),
                501,
                rpc::METHOD_NOT_FOUND,
            ),
            (ApiError::not_found("builds/9"), 404, rpc::INVALID_PARAMS),
            (
                ApiError::Unauthorized("who".into()),
                401,
                rpc::INVALID_REQUEST,
            ),
            (ApiError::Forbidden("no".into()), 403, rpc::INVALID_REQUEST),
            (
                ApiError::PayloadTooLarge("big".into()),
                413,
                rpc::INVALID_REQUEST,
            ),
            (
                ApiError::Unavailable("busy".into()),
                503,
                rpc::INTERNAL_ERROR,
            ),
            (ApiError::Internal("disk".into()), 500, rpc::INTERNAL_ERROR),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.rpc_code(), code, "{error:?}");
        }
        assert_eq!(
            ApiError::not_found("builds/9").message(),
            "not found while getting from builds/9"
        );
        assert_eq!(
            ApiError::Internal("disk full".into()).message(),
            "internal error"
        );
        let form = ApiError::FormErrors([("reason".to_string(), "required".to_string())].into());
        assert_eq!(form.message(), r#"{"reason":"required"}"#);
    }
}
