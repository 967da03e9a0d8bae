//! Request body extractors whose failures are 4xx in FastAPI's shape, never a 500 or a panic.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;

/// A JSON body. Malformed JSON and wrong types are 422 naming the problem; a body over the
/// limit is 413. The Content-Type is not required (curl users often forget it).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::Validation(
                json!([{"type": "missing", "loc": ["body"], "msg": "Field required"}]),
            ));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or(usize::MAX);
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadRequest(format!("Could not read the request body: {rejection}"))
        }
    })
}

/// The configured body limit, put in request extensions so rejections can name it.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::Validation(json!([{
                "type": "json_invalid",
                "loc": ["body", e.column()],
                "msg": "JSON decode error",
            }])),
            Category::Data => ApiError::Validation(json!([{
                "type": "invalid",
                "loc": ["body"],
                "msg": strip_position(&e.to_string()),
            }])),
        }
    })
}

/// serde's messages end with " at line 1 column 17"; the field name is what helps.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// An `application/x-www-form-urlencoded` body as name/value pairs.
pub struct FormBody(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        Ok(FormBody(pairs))
    }
}

impl FormBody {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Names and labels people type: no control characters, not blank, bounded length.
pub fn check_label(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid_field(
            field,
            "value_error",
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid_field(
            field,
            "value_error",
            format!("{field} must be at most {max_chars} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')) {
        return Err(ApiError::invalid_field(
            field,
            "value_error",
            format!("{field} must not contain control or invisible formatting characters"),
        ));
    }
    Ok(())
}
