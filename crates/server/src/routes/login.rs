//! Login, token refresh and logout (api.md, "Users and sessions").

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE, cookie_of};
use crate::error::{ApiError, ApiResult};
use crate::extract::FormBody;
use crate::password::{self, Verdict};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/refresh", post(refresh))
        .route("/api/v1/logout", post(logout))
}

const BAD_CREDENTIALS: &str = "Incorrect username or password";

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    form: FormBody,
) -> ApiResult<Response> {
    let missing: Vec<_> = ["username", "password"]
        .into_iter()
        .filter(|f| form.get(f).is_none())
        .map(|f| json!({"type": "missing", "loc": ["body", f], "msg": "Field required"}))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::Validation(missing.into()));
    }
    let username = form.get("username").unwrap_or_default();
    let password = form.get("password").unwrap_or_default().to_string();
    let ip = peer.ip();
    if let Err(wait) = state.login_limiter.check(ip) {
        return Err(ApiError::TooManyRequests {
            message: format!("Too many failed login attempts. Try again in {wait} seconds."),
            retry_after_secs: wait,
        });
    }
    let user = state.store.user_by_username(username).await?;
    // Verify against a dummy hash for unknown users so timing does not reveal who exists.
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| password::dummy_hash().to_string());
    let verdict = tokio::task::spawn_blocking(move || password::verify(&password, &stored))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let (user, rehash) = match (user, verdict) {
        (Some(user), Verdict::Right) => (user, None),
        (Some(user), Verdict::RightRehash(new_hash)) => (user, Some(new_hash)),
        _ => {
            state.login_limiter.record_failure(ip);
            return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
        }
    };
    if !user.is_active {
        return Err(ApiError::Unauthorized("Inactive user".into()));
    }
    state
        .store
        .record_login(&user.id, rehash.as_deref())
        .await?;
    // The cached copy of this user (behind its API keys) now has a stale last_login_at.
    state.keys.clear();
    issue_session(&state, &user.id).await
}

/// Issues an access/refresh pair as JSON and HttpOnly cookies.
async fn issue_session(state: &AppState, user_id: &str) -> ApiResult<Response> {
    let config = &state.config;
    let (access, _, _) = state.jwt.issue(user_id, "access", config.access_token_ttl);
    let (refresh, jti, refresh_exp) = state
        .jwt
        .issue(user_id, "refresh", config.refresh_token_ttl);
    state
        .store
        .record_refresh_token(&jti, user_id, refresh_exp * 1_000_000)
        .await?;
    let mut headers = HeaderMap::new();
    headers.append(
        SET_COOKIE,
        cookie(
            state,
            REFRESH_COOKIE,
            &refresh,
            config.refresh_token_ttl.as_secs(),
        ),
    );
    headers.append(
        SET_COOKIE,
        cookie(
            state,
            ACCESS_COOKIE,
            &access,
            config.access_token_ttl.as_secs(),
        ),
    );
    // A fresh CSRF token with each session, as long-lived as the refresh token (auth.rs).
    let mut csrf = [0u8; 32];
    getrandom::fill(&mut csrf)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("no OS randomness: {e}")))?;
    headers.append(
        SET_COOKIE,
        csrf_cookie(
            state,
            &hex::encode(csrf),
            config.refresh_token_ttl.as_secs(),
        ),
    );
    let body = Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
    }));
    Ok((headers, body).into_response())
}

fn cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; Max-Age={max_age}; Path=/; SameSite=lax{secure}"
    ))
    .expect("tokens are header-safe")
}

/// Like `cookie` but readable by the page's JavaScript, which echoes it in `x-csrf-token`.
fn csrf_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={value}; Max-Age={max_age}; Path=/; SameSite=lax{secure}"
    ))
    .expect("hex is header-safe")
}

async fn refresh(State(state): State<AppState>, parts: Parts) -> ApiResult<Response> {
    let invalid = || ApiError::Unauthorized("Invalid refresh token".into());
    let token = cookie_of(&parts, REFRESH_COOKIE).ok_or_else(invalid)?;
    let claims = state
        .jwt
        .verify(token, "refresh")
        .map_err(|e| ApiError::Unauthorized(e.detail().into()))?;
    // Redeemable once: a refresh rotates the pair. Presenting a spent token again means it was
    // copied, so every session of that user is ended.
    if !state.store.revoke_refresh_token(&claims.jti).await? {
        state.store.revoke_user_refresh_tokens(&claims.sub).await?;
        return Err(invalid());
    }
    let user = state
        .store
        .user_by_id(&claims.sub)
        .await?
        .ok_or_else(invalid)?;
    if !user.is_active {
        return Err(ApiError::Unauthorized("Inactive user".into()));
    }
    issue_session(&state, &user.id).await
}

async fn logout(State(state): State<AppState>, parts: Parts) -> ApiResult<Response> {
    if let Some(token) = cookie_of(&parts, REFRESH_COOKIE) {
        // Expired or foreign tokens are simply ignored: logging out always succeeds.
        if let Ok(claims) = state.jwt.verify(token, "refresh") {
            state.store.revoke_refresh_token(&claims.jti).await?;
        }
    }
    let mut headers = HeaderMap::new();
    for name in [REFRESH_COOKIE, ACCESS_COOKIE] {
        headers.append(SET_COOKIE, cookie(&state, name, "", 0));
    }
    headers.append(SET_COOKIE, csrf_cookie(&state, "", 0));
    Ok((headers, Json(json!({"message": "Logout successful"}))).into_response())
}
