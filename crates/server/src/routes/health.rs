use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(liveness))
        .route("/health_check", get(readiness))
        .route("/healthz", get(readiness))
        .route("/api/v1/version", get(version))
        .route("/api/v1/auto_login", get(auto_login))
}

/// Liveness: the process answers. No I/O, so it is also the benchmark baseline.
async fn liveness() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// Readiness: one database round trip; 503 while the database is unreachable. Langflow's
/// fields, plus `cache`: `live` when other processes' changes reach this one's caches at once
/// (always on SQLite; on PostgreSQL while the LISTEN connection is up), `revalidating` while
/// every request is checked against the database instead (docs/deployment.md).
async fn readiness(State(state): State<AppState>) -> Response {
    let cache = if state.store.auth_epoch().is_live() {
        "live"
    } else {
        "revalidating"
    };
    match state.store.ping().await {
        Ok(()) => {
            Json(json!({"status": "ok", "chat": "ok", "db": "ok", "cache": cache})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "error", "chat": "ok", "db": "error", "cache": cache})),
            )
                .into_response()
        }
    }
}

async fn version() -> Json<serde_json::Value> {
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({"version": v, "main_version": v, "package": "flowgate"}))
}

/// flowgate never logs anyone in automatically; clients probe this route, so answer it as
/// Langflow does with AUTO_LOGIN off.
async fn auto_login() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"detail": {"message": "Auto login is disabled.", "auto_login": false}})),
    )
        .into_response()
}
