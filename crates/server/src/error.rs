//! One error type for every handler; each variant knows its status code. Bodies are always
//! `{"detail": ...}`, never a stack trace.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flowgate_store::StoreError;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 422 with a plain message.
    #[error("{0}")]
    Unprocessable(String),
    /// 422 with FastAPI's structured list, for clients that parse it.
    #[error("validation error")]
    Validation(Value),
    #[error("request body too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) | Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A 422 in FastAPI's shape for one field: `loc` is `["body", field]`.
    pub fn invalid_field(field: &str, kind: &str, msg: impl Into<String>) -> Self {
        Self::Validation(json!([{"type": kind, "loc": ["body", field], "msg": msg.into()}]))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Self::Validation(v) => v.clone(),
            Self::Internal(e) => {
                // The cause goes to the log with the request id; the client gets no internals.
                tracing::error!(error = format!("{e:#}"), "internal error");
                Value::String("Internal server error".into())
            }
            Self::Unavailable(msg) => {
                tracing::warn!(detail = %msg, "service unavailable");
                Value::String(msg.clone())
            }
            other => Value::String(other.to_string()),
        };
        let mut response = (status, axum::Json(json!({ "detail": detail }))).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyRequests {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %err, "database unavailable");
                ApiError::Unavailable("Database unavailable, try again shortly".into())
            }
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}
