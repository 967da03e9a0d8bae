//! The router and the middleware every request passes through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::routes;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let mut app = Router::new()
        .merge(routes::health::router())
        .merge(routes::login::router())
        .merge(routes::users::router())
        .merge(routes::api_keys::router())
        .merge(routes::flows::router(state.config.max_upload_bytes))
        .merge(routes::run::router())
        .merge(routes::messages::router())
        .merge(routes::files::router(state.config.max_upload_bytes))
        .merge(routes::variables::router())
        .merge(crate::ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), access_log))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(SequentialRequestId::new()));
    if let Some(cors) = cors_layer(&state.config.cors_origins) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not Found".into())
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"detail": "Method Not Allowed"})),
    )
        .into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods(tower_http::cors::Any)
            .allow_headers(tower_http::cors::Any),
    )
}

/// Request ids: a per-process random prefix and a counter — unique, cheap, sortable.
#[derive(Clone)]
struct SequentialRequestId {
    prefix: u32,
    counter: std::sync::Arc<AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> Self {
        let mut bytes = [0u8; 4];
        let _ = getrandom::fill(&mut bytes);
        Self {
            prefix: u32::from_le_bytes(bytes),
            counter: Default::default(),
        }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// Normalises the query string, carries the body limit, and writes the access log line.
///
/// The second seed document prints `...?x-api-key=KEY?stream=false`. A key never contains
/// `?`, so every `?` inside the query is read as `&` and the documented command works as
/// printed.
async fn access_log(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(fixed) = normalised_uri(req.uri()) {
        *req.uri_mut() = fixed;
    }
    req.extensions_mut()
        .insert(BodyLimit(state.config.max_body_bytes));
    if !state.config.access_log {
        return next.run(req).await;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let target = redacted_target(req.uri());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let response = next.run(req).await;
    tracing::info!(
        target: "flowgate::access",
        %method,
        path = %target,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        request_id = %request_id,
    );
    response
}

fn normalised_uri(uri: &Uri) -> Option<Uri> {
    let query = uri.query()?;
    if !query.contains('?') {
        return None;
    }
    let fixed = format!("{}?{}", uri.path(), query.replace('?', "&"));
    fixed.parse().ok()
}

/// The path and query for the log, with secret query values replaced.
pub fn redacted_target(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_string();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}=[redacted]"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "x-api-key",
        "api_key",
        "apikey",
        "token",
        "access_token",
        "refresh_token",
        "password",
    ]
    .contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_keys_in_the_query() {
        let uri: Uri = "/api/v1/run/x?stream=false&x-api-key=fgk_secret"
            .parse()
            .unwrap();
        assert_eq!(
            redacted_target(&uri),
            "/api/v1/run/x?stream=false&x-api-key=[redacted]"
        );
        let uri: Uri = "/health".parse().unwrap();
        assert_eq!(redacted_target(&uri), "/health");
    }

    #[test]
    fn normalises_a_second_question_mark() {
        let uri: Uri = "/api/v1/run/x?x-api-key=k?stream=false".parse().unwrap();
        assert_eq!(
            normalised_uri(&uri).unwrap().query(),
            Some("x-api-key=k&stream=false")
        );
        let plain: Uri = "/a?b=c".parse().unwrap();
        assert!(normalised_uri(&plain).is_none());
    }
}
