//! Global variables (api.md "Variables"): Langflow's `/api/v1/variables/` routes and shapes.
//! Only the caller's variables exist for the caller; a Credential value is encrypted before it
//! reaches the database and never appears in a response (`value: null`, as Langflow 1.13).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use flowgate_store::{StoreError, VariableRow};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, check_label};
use crate::ids::parse_uuid;
use crate::state::AppState;
use crate::variables::{CREDENTIAL, GENERIC};

pub const VARIABLE_NOT_FOUND: &str = "Variable not found";
pub const NAME_EXISTS: &str = "Variable name already exists";
pub const MAX_NAME_CHARS: usize = 255;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/variables/", get(list).post(create))
        .route("/api/v1/variables", get(list).post(create))
        .route("/api/v1/variables/{id}", patch(update).delete(remove))
}

/// Langflow's `VariableRead`. A Credential's value is `null`: never the plaintext, and not
/// the ciphertext either (it is of no use to a client).
pub fn variable_json(row: &VariableRow) -> Value {
    let credential = row.var_type == CREDENTIAL;
    let value = (!credential).then(|| row.value.clone());
    // A Credential's stored form is longer than its empty encryption exactly when it has a value.
    let has_value = if credential {
        row.value.len() > crate::variables::EMPTY_SEALED_LEN
    } else {
        !row.value.is_empty()
    };
    json!({
        "id": row.id,
        "name": row.name,
        "type": row.var_type,
        "value": value,
        "has_value": has_value,
        "default_fields": row.default_fields,
        "is_owner": true,
        "can_manage_shares": true,
        "validation_error": null,
        "is_valid": null,
    })
}

async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let rows = state.store.list_variables(&auth.user.id).await?;
    Ok(Json(Value::Array(rows.iter().map(variable_json).collect())))
}

#[derive(Deserialize)]
struct CreateVariable {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "type")]
    var_type: Option<String>,
    #[serde(default)]
    default_fields: Option<Vec<String>>,
}

fn check_type(t: Option<String>) -> ApiResult<Option<String>> {
    match t.as_deref() {
        None => Ok(None),
        Some(CREDENTIAL | GENERIC) => Ok(t),
        Some(_) => Err(ApiError::invalid_field(
            "type",
            "value_error",
            "type must be Credential or Generic",
        )),
    }
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiError::BadRequest("Variable name cannot be empty".into()));
    }
    check_label("name", name, MAX_NAME_CHARS)
}

/// The value as stored: encrypted for Credential variables.
fn sealed(state: &AppState, row: &VariableRow, plaintext: &str) -> ApiResult<String> {
    if row.var_type == CREDENTIAL {
        Ok(state
            .variable_cipher
            .encrypt(&row.user_id, &row.id, plaintext)?)
    } else {
        Ok(plaintext.to_string())
    }
}

fn clash(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => ApiError::BadRequest(NAME_EXISTS.into()),
        other => other.into(),
    }
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateVariable>,
) -> ApiResult<Response> {
    let name = body.name.unwrap_or_default();
    let value = body.value.unwrap_or_default();
    if name.is_empty() && value.is_empty() {
        return Err(ApiError::BadRequest(
            "Variable name and value cannot be empty".into(),
        ));
    }
    check_name(&name)?;
    if value.is_empty() {
        return Err(ApiError::BadRequest(
            "Variable value cannot be empty".into(),
        ));
    }
    let var_type = check_type(body.var_type)?.unwrap_or_else(|| CREDENTIAL.to_string());
    if state
        .store
        .variable_by_name(&auth.user.id, &name)
        .await?
        .is_some()
    {
        return Err(ApiError::BadRequest(NAME_EXISTS.into()));
    }
    let mut row = VariableRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: auth.user.id.clone(),
        name,
        value: String::new(),
        var_type,
        default_fields: body.default_fields.unwrap_or_default(),
        created_at: 0,
        updated_at: 0,
    };
    row.value = sealed(&state, &row, &value)?;
    let saved = state.store.create_variable(&row).await.map_err(clash)?;
    Ok((StatusCode::CREATED, Json(variable_json(&saved))).into_response())
}

#[derive(Deserialize)]
struct UpdateVariable {
    /// Langflow requires the id in the body too; flowgate takes the path's.
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "type")]
    var_type: Option<String>,
    #[serde(default)]
    default_fields: Option<Vec<String>>,
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateVariable>,
) -> ApiResult<Json<Value>> {
    let id = parse_uuid(&id, "variable_id")?;
    let old = state
        .store
        .variable(&auth.user.id, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(VARIABLE_NOT_FOUND.into()))?;
    let mut row = old.clone();
    if let Some(name) = body.name.filter(|n| *n != old.name) {
        check_name(&name)?;
        if state
            .store
            .variable_by_name(&auth.user.id, &name)
            .await?
            .is_some()
        {
            return Err(ApiError::BadRequest(NAME_EXISTS.into()));
        }
        row.name = name;
    }
    if let Some(t) = check_type(body.var_type)? {
        row.var_type = t;
    }
    if let Some(fields) = body.default_fields {
        row.default_fields = fields;
    }
    match body.value {
        Some(value) => row.value = sealed(&state, &row, &value)?,
        None if old.var_type == row.var_type => {}
        None if old.var_type == CREDENTIAL => {
            return Err(ApiError::BadRequest(
                "Cannot change a credential variable to a generic variable without providing a new value."
                    .into(),
            ));
        }
        // Generic → Credential: encrypt the value it already has.
        None => row.value = sealed(&state, &row, &old.value)?,
    }
    let saved = state
        .store
        .update_variable(&row)
        .await
        .map_err(clash)?
        .ok_or_else(|| ApiError::NotFound(VARIABLE_NOT_FOUND.into()))?;
    Ok(Json(variable_json(&saved)))
}

async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_uuid(&id, "variable_id")?;
    if state.store.delete_variable(&auth.user.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(VARIABLE_NOT_FOUND.into()))
    }
}
