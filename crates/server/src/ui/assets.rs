//! Static files, compiled into the binary. Pages link them as `/static/NAME?v=HASH`; a request
//! carrying the current hash may be cached forever (the URL changes with the content), any
//! other is revalidated with its ETag.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("login.js", JS),
    asset!("api-keys.js", JS),
    asset!("variables.js", JS),
    asset!("users.js", JS),
    asset!("flows.js", JS),
    asset!("flow.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

fn hashes() -> &'static HashMap<&'static str, String> {
    static HASHES: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| (a.name, hex::encode(&Sha256::digest(a.bytes)[..8])))
            .collect()
    })
}

/// The versioned URL of an asset, for templates. Unknown names are a programming error.
pub fn url(name: &str) -> String {
    match hashes().get(name) {
        Some(hash) => format!("/static/{name}?v={hash}"),
        None => {
            debug_assert!(false, "unknown asset {name}");
            format!("/static/{name}")
        }
    }
}

#[derive(serde::Deserialize)]
pub struct Version {
    v: Option<String>,
}

pub async fn serve(
    Path(file): Path<String>,
    Query(version): Query<Version>,
    request_headers: HeaderMap,
) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return crate::error::ApiError::NotFound("Not Found".into()).into_response();
    };
    let hash = &hashes()[asset.name];
    let etag = format!("\"{hash}\"");
    let cache = if version.v.as_deref() == Some(hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    let matches = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (headers, asset.bytes).into_response()
}
