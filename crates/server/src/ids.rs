use serde_json::json;

use crate::error::ApiError;

/// Parses a path id as a UUID (any case, with or without hyphens) into the canonical
/// lowercase hyphenated form the database uses; anything else is 422 naming the parameter.
pub fn parse_uuid(raw: &str, param: &str) -> Result<String, ApiError> {
    uuid::Uuid::try_parse(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|e| {
            ApiError::Validation(json!([{
                "type": "uuid_parsing",
                "loc": ["path", param],
                "msg": format!("Input should be a valid UUID, {e}"),
            }]))
        })
}
