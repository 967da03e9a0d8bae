//! Who is calling. Management routes take a JWT (bearer, then cookie) or an API key; run routes
//! take API keys only. Texts follow Langflow (api.md, "Authenticating API calls").

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use flowgate_store::UserRow;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::keys::{self, KeyScope, VerifiedKey};
use crate::state::AppState;
use crate::timefmt;

pub const NO_CREDENTIALS: &str = "No authentication credentials provided";
pub const INVALID_API_KEY: &str = "Invalid API key";
pub const RUN_KEY_MISSING: &str = "An API key must be passed as query or header";
pub const RUN_KEY_INVALID: &str = "Invalid or missing API key";
pub const KEY_NOT_ALLOWED: &str = "This API key is not allowed to do that";
pub const ACCESS_COOKIE: &str = "access_token_lf";
pub const REFRESH_COOKIE: &str = "refresh_token_lf";
/// Readable by the page's JavaScript (not HttpOnly): the double-submit CSRF token.
pub const CSRF_COOKIE: &str = "csrf_token_lf";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_INVALID: &str = "CSRF token missing or invalid";

/// The user a request acts as.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: String,
    pub username: String,
    pub profile_image: Option<String>,
    pub is_active: bool,
    pub is_superuser: bool,
    pub create_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

impl From<UserRow> for CurrentUser {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            username: row.username,
            profile_image: row.profile_image,
            is_active: row.is_active,
            is_superuser: row.is_superuser,
            create_at: row.create_at,
            updated_at: row.updated_at,
            last_login_at: row.last_login_at,
        }
    }
}

impl CurrentUser {
    /// Langflow's `UserRead` shape.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "username": self.username,
            "profile_image": self.profile_image,
            "store_api_key": null,
            "is_active": self.is_active,
            "is_superuser": self.is_superuser,
            "create_at": timefmt::user_time(self.create_at),
            "updated_at": timefmt::user_time(self.updated_at),
            "last_login_at": self.last_login_at.map(timefmt::user_time),
            "optins": {"github_starred": false, "dialog_dismissed": false, "discord_clicked": false},
        })
    }
}

/// An authenticated caller on a management route.
pub struct Auth {
    pub user: Arc<CurrentUser>,
    /// Set when the caller used an API key (rather than a login token).
    pub key: Option<Arc<VerifiedKey>>,
}

/// The same, restricted to superusers.
pub struct SuperUser(pub Auth);

/// A caller on a run-type route: an API key is required.
pub struct RunKey(pub Arc<VerifiedKey>);

/// Why a presented API key was refused. All reasons look the same from outside.
#[derive(Debug)]
pub enum KeyRejection {
    Invalid,
    Unavailable(ApiError),
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let api_key = api_key_of(parts, state.config.allow_query_api_key);
        if let Some(token) = bearer_of(parts) {
            match user_from_access_token(state, token).await {
                Ok(user) => return Ok(Auth { user, key: None }),
                // An invalid token does not shadow a valid x-api-key: try the key.
                Err(err) if api_key.is_none() => return Err(err),
                Err(_) => {}
            }
        }
        if let Some(raw) = api_key {
            let key = match verify_api_key(state, raw).await {
                Ok(key) => key,
                Err(KeyRejection::Invalid) => {
                    return Err(ApiError::Forbidden(INVALID_API_KEY.into()));
                }
                Err(KeyRejection::Unavailable(e)) => return Err(e),
            };
            if key.scope != KeyScope::Full {
                return Err(ApiError::Forbidden(KEY_NOT_ALLOWED.into()));
            }
            return Ok(Auth {
                user: key.user.clone(),
                key: Some(key),
            });
        }
        if let Some(token) = cookie_of(parts, ACCESS_COOKIE) {
            let user = user_from_access_token(state, token).await?;
            check_csrf(parts)?;
            return Ok(Auth { user, key: None });
        }
        Err(ApiError::Forbidden(NO_CREDENTIALS.into()))
    }
}

impl FromRequestParts<AppState> for SuperUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = Auth::from_request_parts(parts, state).await?;
        if !auth.user.is_superuser {
            return Err(ApiError::Forbidden(
                "The user doesn't have enough privileges".into(),
            ));
        }
        Ok(SuperUser(auth))
    }
}

impl FromRequestParts<AppState> for RunKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let raw = api_key_of(parts, state.config.allow_query_api_key)
            .ok_or_else(|| ApiError::Forbidden(RUN_KEY_MISSING.into()))?;
        match verify_api_key(state, raw).await {
            Ok(key) => Ok(RunKey(key)),
            Err(KeyRejection::Invalid) => Err(ApiError::Forbidden(RUN_KEY_INVALID.into())),
            Err(KeyRejection::Unavailable(e)) => Err(e),
        }
    }
}

/// The verification hot path (keys.md): shape and checksum with no I/O, then the in-memory
/// cache, then the database's unique index. Counts the use without writing to the database.
pub async fn verify_api_key(state: &AppState, raw: &str) -> Result<Arc<VerifiedKey>, KeyRejection> {
    if !keys::well_formed(raw) {
        return Err(KeyRejection::Invalid);
    }
    // One epoch read per request serves both caches: a key is verified before any flow it
    // runs is looked up (`routes::run::flow_for_key` takes the verified key).
    let epoch = state.store.auth_epoch().current();
    state.keys.sync_epoch(epoch);
    state.flow_cache.sync_epoch(epoch);
    let now = flowgate_store::now_micros();
    let hash = keys::hash_key_bytes(raw);
    if let Some(key) = state.keys.get(&hash) {
        if key.is_expired(now) {
            state.keys.remove(&hash);
            return Err(KeyRejection::Invalid);
        }
        state.keys.record_use(&key, now);
        return Ok(key);
    }
    if state.keys.known_unknown(&hash) {
        return Err(KeyRejection::Invalid);
    }
    let found = state
        .store
        .api_key_by_hash(&hex::encode(hash))
        .await
        .map_err(|e| KeyRejection::Unavailable(e.into()))?;
    let Some((row, owner)) = found else {
        state.keys.remember_unknown(hash);
        return Err(KeyRejection::Invalid);
    };
    // The index matched on the hash; compare once more in constant time.
    let stored = keys::hash_bytes(&row.key_hash).ok_or(KeyRejection::Invalid)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&stored[..], &hash[..])) {
        return Err(KeyRejection::Invalid);
    }
    let expired = row.expires_at.is_some_and(|t| t <= now);
    if !row.is_active || !owner.is_active || expired {
        // Refused the same way until something about authentication changes (re-activating
        // the owner clears this memory, here or through the epoch).
        state.keys.remember_unknown(hash);
        return Err(KeyRejection::Invalid);
    }
    let scope = KeyScope::parse(&row.scope).unwrap_or(KeyScope::Run);
    let key = state.keys.insert(
        row.id,
        hash,
        scope,
        row.flows,
        row.expires_at,
        Arc::new(owner.into()),
    );
    state.keys.record_use(&key, now);
    Ok(key)
}

/// A browser sends the access cookie with any request, even one another site makes it send.
/// So a cookie-authenticated change must also carry the `csrf_token_lf` cookie's value in the
/// `x-csrf-token` header: only a page of this origin can read the cookie (double submit).
fn check_csrf(parts: &Parts) -> Result<(), ApiError> {
    if parts.method.is_safe() {
        return Ok(());
    }
    let cookie = cookie_of(parts, CSRF_COOKIE);
    let header = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match (cookie, header) {
        (Some(c), Some(h))
            if bool::from(subtle::ConstantTimeEq::ct_eq(c.as_bytes(), h.as_bytes())) =>
        {
            Ok(())
        }
        _ => Err(ApiError::Forbidden(CSRF_INVALID.into())),
    }
}

pub(crate) async fn user_from_access_token(
    state: &AppState,
    token: &str,
) -> Result<Arc<CurrentUser>, ApiError> {
    let claims = state
        .jwt
        .verify(token, "access")
        .map_err(|e| ApiError::Unauthorized(e.detail().into()))?;
    let user = state
        .store
        .user_by_id(&claims.sub)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("Invalid token".into()))?;
    if !user.is_active {
        return Err(ApiError::Unauthorized("Inactive user".into()));
    }
    Ok(Arc::new(user.into()))
}

/// `x-api-key` header (any case), else the query parameter when allowed. Empty values count
/// as absent (Langflow does the same).
pub fn api_key_of(parts: &Parts, allow_query: bool) -> Option<&str> {
    let header = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if header.is_some() {
        return header;
    }
    if !allow_query {
        return None;
    }
    query_value(parts.uri.query()?, "x-api-key").filter(|v| !v.is_empty())
}

/// Looks up a raw (not percent-decoded) query value. Keys are base62/URL-safe, so no decoding
/// is needed for them.
pub fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split(['&', '?'])
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer_of(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub fn cookie_of<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_value_handles_the_documented_double_question_mark() {
        // The seed's curl: ...?x-api-key=KEY?stream=false
        let q = "x-api-key=fgk_abc?stream=false";
        assert_eq!(query_value(q, "x-api-key"), Some("fgk_abc"));
        assert_eq!(query_value(q, "stream"), Some("false"));
        assert_eq!(
            query_value("stream=true&x-api-key=k", "x-api-key"),
            Some("k")
        );
        assert_eq!(query_value("stream=true", "x-api-key"), None);
    }
}
