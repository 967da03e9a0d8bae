//! Chat history (api.md "Messages"): `GET /api/v1/monitor/messages`, `DELETE
//! /api/v1/monitor/messages/session/{session_id}`. Only the caller's messages, ever.
//! Shapes follow Langflow 1.13 (`api/v1/monitor.py`, `MessageResponse`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use flowgate_engine::context::python_json;
use flowgate_store::{MessageFilter, MessageRow};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Langflow's window: the newest 100 messages unless `limit` says otherwise (at most 200).
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 200;
const ORDER_FIELDS: [&str; 5] = ["timestamp", "sender", "sender_name", "session_id", "text"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/monitor/messages", get(list))
        .route("/api/v1/monitor/messages/", get(list))
        .route(
            "/api/v1/monitor/messages/session/{session_id}",
            delete(delete_session),
        )
}

#[derive(Deserialize)]
struct ListQuery {
    flow_id: Option<String>,
    session_id: Option<String>,
    sender: Option<String>,
    sender_name: Option<String>,
    order_by: Option<String>,
    order: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn query_error(field: &str, kind: &str, msg: &str) -> ApiError {
    ApiError::Validation(json!([{"type": kind, "loc": ["query", field], "msg": msg}]))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<Value>>> {
    let Query(q) = query.map_err(|e| ApiError::Unprocessable(e.body_text()))?;
    let flow_id = match q.flow_id.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(raw) => Some(
            uuid::Uuid::try_parse(raw)
                .map_err(|_| {
                    query_error("flow_id", "uuid_parsing", "Input should be a valid UUID")
                })?
                .hyphenated()
                .to_string(),
        ),
    };
    let descending = match q
        .order
        .as_deref()
        .unwrap_or("ASC")
        .to_ascii_uppercase()
        .as_str()
    {
        "ASC" => false,
        "DESC" => true,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "Invalid order direction: {}",
                q.order.unwrap_or_default()
            )));
        }
    };
    // Langflow's default is `timestamp`; an explicitly empty `order_by` keeps the window as is.
    let order_by = match q.order_by {
        None => Some("timestamp".to_string()),
        Some(o) => Some(o).filter(|o| !o.is_empty()),
    };
    if let Some(o) = &order_by
        && !ORDER_FIELDS.contains(&o.as_str())
    {
        return Err(ApiError::BadRequest(format!("Invalid order_by field: {o}")));
    }
    if q.limit.is_some_and(|l| l < 0) {
        return Err(query_error(
            "limit",
            "greater_than_equal",
            "Input should be greater than or equal to 0",
        ));
    }
    if q.offset.is_some_and(|o| o < 0) {
        return Err(query_error(
            "offset",
            "greater_than_equal",
            "Input should be greater than or equal to 0",
        ));
    }
    let limit = match q.limit {
        None | Some(0) => DEFAULT_LIMIT,
        Some(l) => l.min(MAX_LIMIT),
    };
    // Messages of runs that just finished may still be queued.
    state.store.flush_messages().await;
    let filter = MessageFilter {
        user_id: &auth.user.id,
        flow_id: flow_id.as_deref(),
        session_id: q.session_id.as_deref().filter(|s| !s.is_empty()),
        context_id: None,
        sender: q.sender.as_deref().filter(|s| !s.is_empty()),
        sender_name: q.sender_name.as_deref().filter(|s| !s.is_empty()),
        limit,
        offset: q.offset.unwrap_or(0),
    };
    let mut rows = state.store.messages(&filter).await?;
    // The window is newest first; put it in the requested display order.
    match order_by.as_deref() {
        None => {}
        Some("timestamp") if descending => {}
        Some("timestamp") => rows.reverse(),
        Some(field) => {
            rows.sort_by(|a, b| {
                let (x, y) = (sort_key(a, field), sort_key(b, field));
                let ord = (x.is_none(), x).cmp(&(y.is_none(), y));
                if descending { ord.reverse() } else { ord }
            });
        }
    }
    Ok(Json(rows.iter().map(message_response).collect()))
}

fn sort_key<'a>(m: &'a MessageRow, field: &str) -> Option<&'a str> {
    match field {
        "sender" => m.sender.as_deref(),
        "sender_name" => m.sender_name.as_deref(),
        "session_id" => Some(&m.session_id),
        _ => Some(&m.text),
    }
}

/// Langflow's `MessageResponse` (its `files` is serialised as a JSON string, as Langflow does).
fn message_response(row: &MessageRow) -> Value {
    let data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
    let get = |k: &str| data.get(k).cloned().unwrap_or(Value::Null);
    let files = match data.get("files") {
        Some(v @ Value::Array(_)) => {
            let mut s = String::new();
            python_json(v, &mut s);
            s
        }
        _ => "[]".to_string(),
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(row.id));
    m.insert("flow_id".into(), json!(row.flow_id));
    m.insert(
        "timestamp".into(),
        data.get("timestamp")
            .cloned()
            .unwrap_or_else(|| json!(crate::timefmt::message_time(row.timestamp))),
    );
    m.insert(
        "sender".into(),
        json!(row.sender.clone().unwrap_or_default()),
    );
    m.insert(
        "sender_name".into(),
        json!(row.sender_name.clone().unwrap_or_default()),
    );
    m.insert("session_id".into(), json!(row.session_id));
    m.insert("context_id".into(), json!(row.context_id));
    m.insert("text".into(), json!(row.text));
    m.insert("files".into(), json!(files));
    m.insert("edit".into(), json!(get("edit").as_bool().unwrap_or(false)));
    m.insert("duration".into(), get("duration"));
    m.insert("properties".into(), get("properties"));
    m.insert(
        "category".into(),
        data.get("category").cloned().unwrap_or(json!("message")),
    );
    m.insert(
        "content_blocks".into(),
        data.get("content_blocks").cloned().unwrap_or(json!([])),
    );
    m.insert("session_metadata".into(), get("session_metadata"));
    Value::Object(m)
}

/// 204, as Langflow; deleting a session with no messages is not an error.
async fn delete_session(
    State(state): State<AppState>,
    auth: Auth,
    Path(session_id): Path<String>,
) -> ApiResult<Response> {
    state.store.flush_messages().await;
    state
        .store
        .delete_session_messages(&auth.user.id, &session_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
