//! Running flows (api.md "Running flows"): `/run`, `/run/advanced`, `/process`, `/predict`,
//! `/webhook`. API keys only; a key reaches its owner's flows (and only those on its flow list).
//!
//! Runs read no flow from the database in the steady state: [`FlowCache`] keeps each flow
//! compiled, by (owner, id or endpoint name). It is dropped wholesale when the store's epoch
//! changes (any process wrote flows or revoked access) and per user by the flows routes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use flowgate_engine::{CompiledFlow, Event, InputType, OutputType, RunError, RunRequest};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::auth::{self, KeyRejection, RunKey};
use crate::error::{ApiError, ApiResult};
use crate::extract::{body_bytes, parse_json};
use crate::flowdoc;
use crate::keys::VerifiedKey;
use crate::runctx::ServerRunContext;
use crate::state::AppState;

pub const WEBHOOK_KEY_MISSING: &str = "API key required when webhook authentication is enabled";
/// Most flows one cache holds before it starts over (a bound on memory, not a working limit).
const MAX_CACHED_FLOWS: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/run/{flow}", post(run))
        .route("/api/v1/run/advanced/{flow}", post(run_advanced))
        .route("/api/v1/process/{flow}", post(run))
        .route("/api/v1/predict/{flow}", post(run))
        .route("/api/v1/webhook/{flow}", post(webhook))
}

/// A flow as runs need it.
#[derive(Debug)]
pub struct CachedFlow {
    pub id: String,
    pub endpoint_name: Option<String>,
    pub updated_at: i64,
    /// The compiled flow, or the `detail` of the 422 naming each problem.
    pub compiled: Result<Arc<CompiledFlow>, String>,
}

/// Compiled flows by owner, then by the identifier the caller used (id or endpoint name).
#[derive(Default)]
pub struct FlowCache {
    users: RwLock<HashMap<String, HashMap<String, Arc<CachedFlow>>>>,
    seen_epoch: AtomicU64,
    /// Bumped by every invalidation; a load that raced one is not cached.
    generation: AtomicU64,
}

impl FlowCache {
    /// Drops everything when the store's epoch moved (a flow or access changed anywhere).
    pub fn sync_epoch(&self, epoch: u64) {
        if self.seen_epoch.load(Ordering::Acquire) != epoch {
            self.clear();
            self.seen_epoch.store(epoch, Ordering::Release);
        }
    }

    pub fn clear(&self) {
        let mut users = self.users.write().expect("flow cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        users.clear();
    }

    /// Forgets one user's flows (after any write to them).
    pub fn invalidate_user(&self, user_id: &str) {
        let mut users = self.users.write().expect("flow cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        users.remove(user_id);
    }

    pub fn get(&self, user_id: &str, ident: &str) -> Option<Arc<CachedFlow>> {
        let users = self.users.read().expect("flow cache lock");
        users.get(user_id)?.get(ident).cloned()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `flow` unless an invalidation happened since `generation` was read.
    fn insert(&self, generation: u64, user_id: &str, ident: &str, flow: Arc<CachedFlow>) {
        let mut users = self.users.write().expect("flow cache lock");
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let total: usize = users.values().map(HashMap::len).sum();
        if total >= MAX_CACHED_FLOWS {
            users.clear();
        }
        users
            .entry(user_id.to_owned())
            .or_default()
            .insert(ident.to_owned(), flow);
    }

    pub fn len(&self) -> usize {
        let users = self.users.read().expect("flow cache lock");
        users.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn flow_not_found(ident: &str) -> ApiError {
    ApiError::NotFound(format!("Flow identifier {ident} not found"))
}

/// The key owner's flow by id or endpoint name, compiled; 404 when missing, another user's,
/// or not on the key's flow list. The flow cache was brought up to the store's epoch when the
/// key was verified (`auth::verify_api_key`).
pub async fn flow_for_key(
    state: &AppState,
    key: &VerifiedKey,
    ident: &str,
) -> ApiResult<Arc<CachedFlow>> {
    let user_id = key.user.id.as_str();
    // A UUID in any case or without hyphens names the same flow; the 404 still echoes it as given.
    let canonical = flowdoc::canonical_ident(ident);
    let lookup = canonical.as_ref();
    let flow = match state.flow_cache.get(user_id, lookup) {
        Some(flow) => flow,
        None => load_flow(state, user_id, lookup)
            .await
            .map_err(|e| match e {
                ApiError::NotFound(_) => flow_not_found(ident),
                other => other,
            })?,
    };
    if !key.allows_flow(&flow.id, flow.endpoint_name.as_deref()) {
        return Err(flow_not_found(ident));
    }
    Ok(flow)
}

async fn load_flow(state: &AppState, user_id: &str, ident: &str) -> ApiResult<Arc<CachedFlow>> {
    if uuid::Uuid::try_parse(ident).is_err() && !flowdoc::valid_endpoint_name(ident) {
        return Err(flow_not_found(ident));
    }
    let generation = state.flow_cache.generation();
    let record = state
        .store
        .flow_by_id_or_endpoint(user_id, ident)
        .await?
        .ok_or_else(|| flow_not_found(ident))?;
    let id = record.id.clone();
    let data = record.data.clone();
    let compiled = tokio::task::spawn_blocking(move || compile(&id, data.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("compiling the flow panicked: {e}")))?;
    let flow = Arc::new(CachedFlow {
        id: record.id,
        endpoint_name: record.endpoint_name,
        updated_at: record.updated_at,
        compiled,
    });
    state
        .flow_cache
        .insert(generation, user_id, ident, flow.clone());
    Ok(flow)
}

fn compile(flow_id: &str, data: Option<&str>) -> Result<Arc<CompiledFlow>, String> {
    let data = data.ok_or("The flow has no data (nodes and edges)")?;
    let value: Value = serde_json::from_str(data)
        .map_err(|e| format!("The flow's data is not valid JSON: {e}"))?;
    let flow = flowgate_engine::parse_flow(&value).map_err(|e| e.to_string())?;
    flowgate_engine::compile(flow_id, &flow)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn run_error(e: &RunError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), error = %e, "run failed");
    }
    (status, Json(json!({"detail": e.to_string()}))).into_response()
}

fn field_error(field: &str, kind: &str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid_field(field, kind, msg)
}

fn opt_string(obj: &Map<String, Value>, field: &str, loc: &str) -> ApiResult<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_error(
            loc,
            "string_type",
            format!("{loc} must be a string"),
        )),
    }
}

fn opt_bool(obj: &Map<String, Value>, field: &str) -> ApiResult<Option<bool>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(field_error(
            field,
            "bool_type",
            format!("{field} must be true or false"),
        )),
    }
}

fn tweaks_of(obj: &Map<String, Value>) -> ApiResult<Map<String, Value>> {
    match obj.get("tweaks") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(t)) => Ok(t.clone()),
        Some(_) => Err(field_error(
            "tweaks",
            "dict_type",
            "tweaks must be an object mapping node ids (or field names) to values",
        )),
    }
}

fn input_type_of(s: Option<String>, field: &str, default: InputType) -> ApiResult<InputType> {
    match s {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|e: RunError| field_error(field, "enum", e.to_string())),
    }
}

/// The JSON object of a body; empty body = `{}`.
fn body_object(bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match parse_json::<Value>(bytes)? {
        Value::Object(o) => Ok(o),
        Value::Null => Ok(Map::new()),
        _ => Err(ApiError::Validation(json!([{
            "type": "model_attributes_type",
            "loc": ["body"],
            "msg": "The body must be a JSON object",
        }]))),
    }
}

/// `?stream=` (the query wins over the body).
fn query_stream(uri: &Uri) -> ApiResult<Option<bool>> {
    let Some(raw) = uri.query().and_then(|q| auth::query_value(q, "stream")) else {
        return Ok(None);
    };
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(ApiError::Validation(json!([{
            "type": "bool_parsing",
            "loc": ["query", "stream"],
            "msg": "stream must be true or false",
        }]))),
    }
}

/// `/run`'s body (also `/process`, `/predict`): api.md, "Running flows".
pub fn run_request(bytes: &[u8], query_stream: Option<bool>) -> ApiResult<RunRequest> {
    let obj = body_object(bytes)?;
    let mut input_value = opt_string(&obj, "input_value", "input_value")?;
    // The seed's older body: {"inputs": {"text": "..."}, "tweaks": {}}.
    if input_value.is_none() {
        match obj.get("inputs") {
            None | Some(Value::Null) => {}
            Some(Value::Object(inputs)) => {
                input_value = match opt_string(inputs, "input_value", "inputs.input_value")? {
                    Some(v) => Some(v),
                    None => opt_string(inputs, "text", "inputs.text")?,
                };
            }
            Some(Value::Array(list)) => {
                if let Some(Value::Object(first)) = list.first() {
                    input_value = opt_string(first, "input_value", "inputs.input_value")?;
                }
            }
            Some(_) => {
                return Err(field_error(
                    "inputs",
                    "dict_type",
                    "inputs must be an object such as {\"text\": \"...\"}",
                ));
            }
        }
    }
    let input_type = input_type_of(
        opt_string(&obj, "input_type", "input_type")?,
        "input_type",
        InputType::Chat,
    )?;
    let output_type = match opt_string(&obj, "output_type", "output_type")? {
        None => OutputType::Chat,
        Some(s) => s
            .parse()
            .map_err(|e: RunError| field_error("output_type", "enum", e.to_string()))?,
    };
    let body_stream = opt_bool(&obj, "stream")?;
    Ok(RunRequest {
        input_value,
        input_type,
        output_type,
        output_component: opt_string(&obj, "output_component", "output_component")?
            .filter(|s| !s.is_empty()),
        tweaks: tweaks_of(&obj)?,
        session_id: opt_string(&obj, "session_id", "session_id")?.filter(|s| !s.is_empty()),
        stream: query_stream.or(body_stream).unwrap_or(false),
        webhook_payload: None,
    })
}

/// `/run/advanced`'s body: `{"inputs": [{"components", "input_value", "type"}], "outputs",
/// "tweaks", "stream", "session_id"}`.
pub fn advanced_request(bytes: &[u8], query_stream: Option<bool>) -> ApiResult<RunRequest> {
    let obj = body_object(bytes)?;
    let (mut input_value, mut input_type, mut session_id) = (None, InputType::Any, None);
    match obj.get("inputs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            if let Some(first) = list.first() {
                let Value::Object(first) = first else {
                    return Err(field_error(
                        "inputs",
                        "dict_type",
                        "inputs must be a list of objects",
                    ));
                };
                input_value = opt_string(first, "input_value", "inputs.input_value")?;
                input_type = input_type_of(
                    opt_string(first, "type", "inputs.type")?,
                    "inputs.type",
                    InputType::Any,
                )?;
                session_id = opt_string(first, "session", "inputs.session")?;
            }
        }
        Some(_) => {
            return Err(field_error(
                "inputs",
                "list_type",
                "inputs must be a list of objects",
            ));
        }
    }
    let output_component = match obj.get("outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => match list.first() {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(field_error(
                    "outputs",
                    "string_type",
                    "outputs must be a list of component ids",
                ));
            }
        },
        Some(_) => {
            return Err(field_error(
                "outputs",
                "list_type",
                "outputs must be a list of component ids",
            ));
        }
    };
    if let Some(s) = opt_string(&obj, "session_id", "session_id")? {
        session_id = Some(s);
    }
    Ok(RunRequest {
        input_value,
        input_type,
        output_type: OutputType::Any,
        output_component,
        tweaks: tweaks_of(&obj)?,
        session_id: session_id.filter(|s| !s.is_empty()),
        stream: query_stream.or(opt_bool(&obj, "stream")?).unwrap_or(false),
        webhook_payload: None,
    })
}

async fn run(
    State(state): State<AppState>,
    RunKey(key): RunKey,
    Path(ident): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    req: Request,
) -> Response {
    match prepare(&state, &key, &ident, &uri, req, run_request).await {
        Ok((flow, run)) => execute(state, &key, flow, &headers, run).await,
        Err(e) => e.into_response(),
    }
}

async fn run_advanced(
    State(state): State<AppState>,
    RunKey(key): RunKey,
    Path(ident): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    req: Request,
) -> Response {
    match prepare(&state, &key, &ident, &uri, req, advanced_request).await {
        Ok((flow, run)) => execute(state, &key, flow, &headers, run).await,
        Err(e) => e.into_response(),
    }
}

/// Flow (404), body (413/422), then the flow's problems (422).
async fn prepare(
    state: &AppState,
    key: &VerifiedKey,
    ident: &str,
    uri: &Uri,
    req: Request,
    parse: fn(&[u8], Option<bool>) -> ApiResult<RunRequest>,
) -> ApiResult<(Arc<CompiledFlow>, RunRequest)> {
    let flow = flow_for_key(state, key, ident).await?;
    let bytes = body_bytes(req, state).await?;
    let run = parse(&bytes, query_stream(uri)?)?;
    let compiled = flow.compiled.clone().map_err(ApiError::Unprocessable)?;
    Ok((compiled, run))
}

async fn execute(
    state: AppState,
    key: &VerifiedKey,
    compiled: Arc<CompiledFlow>,
    headers: &HeaderMap,
    run: RunRequest,
) -> Response {
    let ctx = Arc::new(ServerRunContext::new(state, key.user.id.clone(), headers));
    if !run.stream {
        // Dropping this future (client gone) drops the run with it.
        return match flowgate_engine::execute(&compiled, run, &*ctx, None, CancellationToken::new())
            .await
        {
            // The answer is built while the messages are being written (the CPU would
            // otherwise wait for the writer first), and sent only once they are committed.
            Ok(v) => {
                let answer = run_response(&v);
                drop(v);
                match ctx.messages_stored().await {
                    Ok(()) => answer,
                    Err(e) => messages_not_stored(e).into_response(),
                }
            }
            Err(e) => run_error(&e),
        };
    }
    stream(ctx, compiled, run).await
}

/// A run's JSON answer. Serialized into a buffer sized for a typical answer (a chat-echo run
/// is ~2 KB) rather than through `Json`, whose 128-byte start regrows it several times.
fn run_response(output: &flowgate_engine::RunOutput) -> Response {
    let mut body = Vec::with_capacity(4096);
    match serde_json::to_writer(&mut body, output) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::Internal(anyhow::anyhow!("cannot serialize the run's result: {e}"))
            .into_response(),
    }
}

/// A run whose messages did not reach the database is not acknowledged (503: try again).
fn messages_not_stored(e: flowgate_store::StoreError) -> ApiError {
    ApiError::Unavailable(not_stored_detail(e))
}

fn not_stored_detail(e: flowgate_store::StoreError) -> String {
    tracing::warn!(error = %e, "a run's messages could not be stored");
    format!(
        "Database unavailable: the run's messages could not be stored ({})",
        match e {
            flowgate_store::StoreError::Unavailable(_) => "the database cannot be reached",
            _ => "the database refused them",
        }
    )
}

/// `stream=true`: the engine's events as Langflow frames them. The run stops when the client
/// goes away: the response body holds a guard that cancels it when dropped. The `end` event is
/// sent only once the run's messages are committed; if they cannot be, an `error` event
/// replaces it.
async fn stream(
    ctx: Arc<ServerRunContext>,
    compiled: Arc<CompiledFlow>,
    run: RunRequest,
) -> Response {
    let cancel = CancellationToken::new();
    let guard = cancel.clone().drop_guard();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(64);
    let run_ctx = ctx.clone();
    let task = tokio::spawn(async move {
        flowgate_engine::execute(&compiled, run, &*run_ctx, Some(tx), cancel).await
    });
    let first = rx.recv().await;
    if matches!(first, None | Some(Event::Error(_))) {
        // A request the engine refused before running anything is an HTTP error, not a stream.
        if let Ok(Err(e)) = task.await
            && matches!(e.status(), 400 | 422)
        {
            return run_error(&e);
        }
    }
    let body = futures::stream::unfold(
        (rx, guard, first, ctx),
        |(mut rx, guard, first, ctx)| async move {
            let event = match first {
                Some(event) => event,
                None => rx.recv().await?,
            };
            let event = match event {
                Event::End(result) => match ctx.messages_stored().await {
                    Ok(()) => Event::End(result),
                    Err(e) => Event::Error(not_stored_detail(e)),
                },
                other => other,
            };
            let chunk = Bytes::from(event.to_sse_chunk());
            Some((Ok::<_, Infallible>(chunk), (rx, guard, None, ctx)))
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A webhook caller: an API key is required, with the webhook route's texts.
pub struct WebhookKey(pub Arc<VerifiedKey>);

impl FromRequestParts<AppState> for WebhookKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let raw = auth::api_key_of(parts, state.config.allow_query_api_key)
            .ok_or_else(|| ApiError::Forbidden(WEBHOOK_KEY_MISSING.into()))?;
        match auth::verify_api_key(state, raw).await {
            Ok(key) => Ok(WebhookKey(key)),
            Err(KeyRejection::Invalid) => Err(ApiError::Forbidden(auth::INVALID_API_KEY.into())),
            Err(KeyRejection::Unavailable(e)) => Err(e),
        }
    }
}

/// Starts the flow in the background with the body as the Webhook components' `data`.
async fn webhook(
    State(state): State<AppState>,
    WebhookKey(key): WebhookKey,
    Path(ident): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response> {
    let flow = flow_for_key(&state, &key, &ident).await?;
    let bytes = body_bytes(req, &state).await?;
    let compiled = flow.compiled.clone().map_err(ApiError::Unprocessable)?;
    let run = RunRequest {
        webhook_payload: Some(String::from_utf8_lossy(&bytes).into_owned()),
        ..Default::default()
    };
    let ctx = ServerRunContext::new(state, key.user.id.clone(), &headers);
    let flow_id = flow.id.clone();
    tokio::spawn(async move {
        if let Err(e) =
            flowgate_engine::execute(&compiled, run, &ctx, None, CancellationToken::new()).await
        {
            tracing::warn!(flow_id = %flow_id, status = e.status(), error = %e, "webhook run failed");
        }
        if let Err(e) = ctx.messages_stored().await {
            tracing::warn!(flow_id = %flow_id, error = %e, "a webhook run's messages could not be stored");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"message": "Task started in the background", "status": "in progress"})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let r = run_request(b"", None).unwrap();
        assert_eq!(r, RunRequest::default());
        let r = run_request(br#"{"inputs": {"text": "hi"}, "tweaks": {}}"#, None).unwrap();
        assert_eq!(r.input_value.as_deref(), Some("hi"));
        let r = run_request(
            br#"{"inputs": {"input_value": "x"}, "stream": true}"#,
            Some(false),
        )
        .unwrap();
        assert_eq!(r.input_value.as_deref(), Some("x"));
        assert!(!r.stream, "the query wins");
        assert!(run_request(br#"{"stream": true}"#, None).unwrap().stream);
        for bad in [
            r#"{"input_type": "foo"}"#,
            r#"{"output_type": "foo"}"#,
            r#"{"tweaks": []}"#,
            r#"{"input_value": 3}"#,
            r#"{"stream": "yes"}"#,
            r#"[1]"#,
            r#"{"input_value":"#,
        ] {
            assert!(run_request(bad.as_bytes(), None).is_err(), "{bad}");
        }
        let r = advanced_request(
            br#"{"inputs":[{"components":[],"input_value":"adv"}],"outputs":[],"tweaks":{},"stream":false}"#,
            None,
        )
        .unwrap();
        assert_eq!(r.input_value.as_deref(), Some("adv"));
        assert_eq!(r.input_type, InputType::Any);
    }

    #[test]
    fn cache_invalidation_wins_over_a_racing_load() {
        let cache = FlowCache::default();
        let flow = Arc::new(CachedFlow {
            id: "f".into(),
            endpoint_name: None,
            updated_at: 0,
            compiled: Err("x".into()),
        });
        let generation = cache.generation();
        cache.invalidate_user("u");
        cache.insert(generation, "u", "f", flow.clone());
        assert!(cache.get("u", "f").is_none());
        cache.insert(cache.generation(), "u", "f", flow);
        assert!(cache.get("u", "f").is_some());
        cache.sync_epoch(7);
        assert!(cache.is_empty());
    }
}
