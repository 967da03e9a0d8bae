//! The web UI (docs/ui.md): server-rendered page shells (askama templates compiled into the
//! binary) and a little hand-written JavaScript that calls the same REST API as every other
//! client, authenticated by the `access_token_lf` cookie plus the CSRF header.
//!
//! Pages only need to know who is signed in (for the header and the superuser check); every
//! list and every change goes through `/api/v1/...`, so the UI and the API cannot diverge.

mod assets;
mod pages;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::get;

use crate::state::AppState;

pub use pages::safe_next;

/// The Content-Security-Policy of every UI response: no inline script or style, nothing from
/// another origin, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login))
        .route("/flows", get(pages::flows))
        .route("/flows/", get(pages::flows))
        .route("/flows/{flow}", get(pages::flow))
        .route("/settings", get(pages::settings))
        .route("/settings/", get(pages::settings))
        .route("/settings/api-keys", get(pages::api_keys))
        .route("/settings/variables", get(pages::variables))
        .route("/admin/users", get(pages::users))
        .route("/static/{file}", get(assets::serve))
        .layer(map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    // Pages name the signed-in user: never cache them. Assets set their own policy.
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}
