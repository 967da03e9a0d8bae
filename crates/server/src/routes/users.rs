//! Users: whoami, and administration by superusers (api.md, "Users and sessions").

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use flowgate_store::{NewUser, StoreError, UserUpdate};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Auth, CurrentUser, SuperUser};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, check_label};
use crate::ids::parse_uuid;
use crate::password;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users/whoami", get(whoami))
        .route("/api/v1/users/", get(list).post(create))
        .route("/api/v1/users", get(list).post(create))
        .route("/api/v1/users/{id}", patch(update).delete(remove))
}

async fn whoami(auth: Auth) -> Json<Value> {
    Json(auth.user.to_json())
}

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_USERNAME_CHARS: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    password: String,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default)]
    is_superuser: Option<bool>,
    #[serde(default, rename = "optins")]
    _optins: Option<Value>,
}

pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid_field(
            "password",
            "value_error",
            format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(ApiError::invalid_field(
            "password",
            "value_error",
            "password is too long",
        ));
    }
    Ok(())
}

/// Superusers create users (active unless they say otherwise). Without credentials this is
/// public sign-up, which is off unless `LANGFLOW_ENABLE_SIGNUP=true`; signed-up users start
/// inactive unless `LANGFLOW_NEW_USER_IS_ACTIVE=true`.
async fn create(
    State(state): State<AppState>,
    caller: Result<Auth, ApiError>,
    JsonBody(body): JsonBody<CreateUser>,
) -> ApiResult<Response> {
    let (is_active, is_superuser) = match caller {
        Ok(auth) if auth.user.is_superuser => (
            body.is_active.unwrap_or(true),
            body.is_superuser.unwrap_or(false),
        ),
        Ok(_) => {
            return Err(ApiError::Forbidden(
                "The user doesn't have enough privileges".into(),
            ));
        }
        Err(ApiError::Forbidden(_)) if state.config.enable_signup => {
            (state.config.new_user_is_active, false)
        }
        Err(e) => return Err(e),
    };
    check_label("username", &body.username, MAX_USERNAME_CHARS)?;
    check_password(&body.password)?;
    let hash = hash_password(body.password).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let created = state
        .store
        .create_user(NewUser {
            id: &id,
            username: body.username.trim(),
            password_hash: &hash,
            is_active,
            is_superuser,
        })
        .await;
    let row = match created {
        Ok(row) => row,
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::BadRequest("This username is unavailable.".into()));
        }
        Err(e) => return Err(e.into()),
    };
    let mut response =
        (StatusCode::CREATED, Json(CurrentUser::from(row).to_json())).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/users/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(ApiError::Internal)
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    skip: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    _admin: SuperUser,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(page) = page.map_err(|e| ApiError::Unprocessable(e.body_text()))?;
    let skip = page.skip.unwrap_or(0);
    let limit = page.limit.unwrap_or(10);
    if skip < 0 || !(1..=1000).contains(&limit) {
        return Err(ApiError::Unprocessable(
            "skip must be ≥ 0 and limit between 1 and 1000".into(),
        ));
    }
    let (total, users) = state.store.list_users(skip, limit).await?;
    let users: Vec<Value> = users
        .into_iter()
        .map(|u| CurrentUser::from(u).to_json())
        .collect();
    Ok(Json(json!({"total_count": total, "users": users})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    profile_image: Option<Option<String>>,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default)]
    is_superuser: Option<bool>,
    #[serde(default, rename = "optins")]
    _optins: Option<Value>,
}

/// Superusers may change anything; other users only their own username, password and image.
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PatchUser>,
) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "user_id")?;
    let is_self = auth.user.id == id;
    if !auth.user.is_superuser {
        if !is_self {
            return Err(ApiError::Forbidden(
                "The user doesn't have enough privileges".into(),
            ));
        }
        if body.is_active.is_some() || body.is_superuser.is_some() {
            return Err(ApiError::Forbidden(
                "You don't have the permission to update this user".into(),
            ));
        }
    }
    if is_self && (body.is_active == Some(false) || body.is_superuser == Some(false)) {
        return Err(ApiError::BadRequest(
            "You can't deactivate or demote your own user account".into(),
        ));
    }
    if let Some(name) = &body.username {
        check_label("username", name, MAX_USERNAME_CHARS)?;
    }
    let password_hash = match body.password {
        Some(pw) => {
            check_password(&pw)?;
            Some(hash_password(pw).await?)
        }
        None => None,
    };
    let password_changed = password_hash.is_some();
    let update = UserUpdate {
        username: body.username.map(|u| u.trim().to_string()),
        password_hash,
        profile_image: body.profile_image,
        is_active: body.is_active,
        is_superuser: body.is_superuser,
    };
    let row = match state.store.update_user(&id, update).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err(ApiError::NotFound("User not found".into())),
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::BadRequest("This username is unavailable.".into()));
        }
        Err(e) => return Err(e.into()),
    };
    if password_changed || !row.is_active {
        state.store.revoke_user_refresh_tokens(&id).await?;
    }
    // Cached keys carry a copy of their owner: drop them all so every field is fresh.
    state.keys.clear();
    Ok(Json(CurrentUser::from(row).to_json()))
}

async fn remove(
    State(state): State<AppState>,
    SuperUser(auth): SuperUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "user_id")?;
    if auth.user.id == id {
        return Err(ApiError::BadRequest(
            "You can't delete your own user account".into(),
        ));
    }
    if !state.store.delete_user(&id).await? {
        return Err(ApiError::NotFound("User not found".into()));
    }
    state.keys.clear();
    Ok(Json(json!({"detail": "User deleted"})))
}
