//! API keys over REST (api.md "API keys", keys.md). The full key is in the create response and
//! nowhere else, ever.

use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use flowgate_store::{ApiKeyRow, NewApiKey};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, check_label};
use crate::ids::parse_uuid;
use crate::keys::{self, KeyScope};
use crate::state::AppState;
use crate::timefmt;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api_key/", get(list).post(create))
        .route("/api/v1/api_key", get(list).post(create))
        .route("/api/v1/api_key/revoke", post(revoke_leaked))
        .route("/api/v1/api_key/{id}", delete(remove))
}

pub const MAX_KEY_NAME_CHARS: usize = 255;

/// Langflow's `ApiKeyRead` shape, with the masked key; `full_key` only on creation.
pub fn key_json(row: &ApiKeyRow, full_key: Option<&str>) -> Value {
    let masked;
    let shown = match full_key {
        Some(k) => k,
        None => {
            masked = keys::mask(&row.prefix, row.key_length as usize);
            &masked
        }
    };
    let mut value = json!({
        "name": row.name,
        "last_used_at": row.last_used_at.map(timefmt::second_time),
        "total_uses": row.total_uses,
        "is_active": row.is_active,
        "expires_at": row.expires_at.map(timefmt::second_time),
        "id": row.id,
        "api_key": shown,
        "user_id": row.user_id,
    });
    let obj = value.as_object_mut().expect("object");
    if full_key.is_none() {
        obj.insert(
            "created_at".into(),
            timefmt::second_time(row.created_at).into(),
        );
    }
    obj.insert("scope".into(), row.scope.clone().into());
    obj.insert("flows".into(), json!(row.flows));
    value
}

async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let rows = state.store.list_api_keys(&auth.user.id).await?;
    let keys: Vec<Value> = rows.iter().map(|r| key_json(r, None)).collect();
    Ok(Json(json!({
        "total_count": keys.len(),
        "user_id": auth.user.id,
        "api_keys": keys,
    })))
}

#[derive(Deserialize)]
struct CreateKey {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    expires_at: Option<Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    flows: Option<Vec<String>>,
}

/// Validated settings for a new key, shared by REST and the CLI.
pub struct KeySpec {
    pub name: Option<String>,
    pub expires_at: Option<i64>,
    pub scope: KeyScope,
    pub flows: Option<Vec<String>>,
}

impl KeySpec {
    fn from_request(body: CreateKey) -> ApiResult<Self> {
        if let Some(name) = &body.name {
            check_label("name", name, MAX_KEY_NAME_CHARS)?;
        }
        let expires_at = match body.expires_at {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(timefmt::parse_datetime(&s).ok_or_else(|| {
                ApiError::invalid_field(
                    "expires_at",
                    "datetime_parsing",
                    "expires_at must be an ISO 8601 date-time such as 2030-01-31T12:00:00Z",
                )
            })?),
            Some(Value::Number(n)) => Some(
                n.as_f64()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e11)
                    .map(|s| (s * 1e6) as i64)
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            "expires_at",
                            "value_error",
                            "expires_at is out of range",
                        )
                    })?,
            ),
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "expires_at",
                    "datetime_type",
                    "expires_at must be a date-time string",
                ));
            }
        };
        let scope = match body.scope.as_deref() {
            None => KeyScope::Full,
            Some(s) => KeyScope::parse(s).ok_or_else(|| {
                ApiError::invalid_field("scope", "enum", "scope must be one of full, run")
            })?,
        };
        if let Some(flows) = &body.flows {
            if flows.is_empty() || flows.len() > 1000 {
                return Err(ApiError::invalid_field(
                    "flows",
                    "value_error",
                    "flows must list between 1 and 1000 flow ids or endpoint names",
                ));
            }
            for f in flows {
                check_label("flows", f, 255)?;
            }
        }
        let spec = KeySpec {
            name: body.name,
            expires_at,
            scope,
            flows: body.flows,
        };
        spec.check_expiry(flowgate_store::now_micros())?;
        Ok(spec)
    }

    /// Langflow accepts a date in the past and issues a dead key; flowgate refuses it.
    pub fn check_expiry(&self, now_micros: i64) -> ApiResult<()> {
        if self.expires_at.is_some_and(|t| t <= now_micros) {
            return Err(ApiError::invalid_field(
                "expires_at",
                "value_error",
                "expires_at must be in the future",
            ));
        }
        Ok(())
    }
}

/// Creates a key for `user_id` and returns its row and the full key (shown once).
pub async fn issue_key(
    store: &flowgate_store::Store,
    user_id: &str,
    spec: &KeySpec,
) -> Result<(ApiKeyRow, String), flowgate_store::StoreError> {
    let generated = keys::generate();
    let id = uuid::Uuid::new_v4().to_string();
    let row = store
        .create_api_key(NewApiKey {
            id: &id,
            user_id,
            name: spec.name.as_deref(),
            key_hash: &generated.hash,
            prefix: &generated.prefix,
            key_length: generated.key.len() as i64,
            scope: spec.scope.as_str(),
            flows: spec.flows.as_deref(),
            expires_at: spec.expires_at,
        })
        .await?;
    Ok((row, generated.key))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateKey>,
) -> ApiResult<Json<Value>> {
    let spec = KeySpec::from_request(body)?;
    let (row, key) = issue_key(&state.store, &auth.user.id, &spec).await?;
    Ok(Json(key_json(&row, Some(&key))))
}

async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "api_key_id")?;
    match state.store.delete_api_key(&auth.user.id, &id).await? {
        Some(hash) => {
            if let Some(bytes) = keys::hash_bytes(&hash) {
                state.keys.remove(&bytes);
            }
            Ok(Json(json!({"detail": "API Key deleted"})))
        }
        None => Err(ApiError::BadRequest("API Key not found".into())),
    }
}

#[derive(Deserialize)]
struct LeakedKey {
    api_key: String,
}

/// Leak response (keys.md): revoke a raw key found in the wild, whoever owns it. The answer
/// is the same whether or not the key existed, so this is no oracle. No credentials needed:
/// holding the key is the proof.
async fn revoke_leaked(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<LeakedKey>,
) -> ApiResult<Json<Value>> {
    let raw = body.api_key.trim();
    if keys::well_formed(raw) {
        let hash = keys::hash_key_bytes(raw);
        state
            .store
            .delete_api_key_by_hash(&hex::encode(hash))
            .await?;
        state.keys.remove(&hash);
    }
    Ok(Json(
        json!({"detail": "If this key existed, it is now revoked"}),
    ))
}
