//! Flows (api.md "Flows"): create, list, read, update, upsert, delete, upload, download.
//! Every query is scoped to the caller; another user's flow answers exactly as a missing one.

use std::io::{Cursor, Read};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use flowgate_store::{FlowRecord, FlowSaveError, OnClash, OnOwnId, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{BodyLimit, JsonBody};
use crate::flowdoc::{self, DocError};
use crate::state::AppState;

pub const FLOW_NOT_FOUND: &str = "Flow not found";
/// Most files one ZIP upload may hold.
const MAX_ZIP_ENTRIES: usize = 1000;

pub fn router(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/api/v1/flows/", get(list).post(create).delete(delete_many))
        .route("/api/v1/flows", get(list).post(create).delete(delete_many))
        .route("/api/v1/flows/upload/", post(upload))
        .route("/api/v1/flows/upload", post(upload))
        .route("/api/v1/flows/download/", post(download))
        .route("/api/v1/flows/download", post(download))
        .route(
            "/api/v1/flows/{flow}",
            get(read).patch(update).put(upsert).delete(remove),
        )
        .layer(DefaultBodyLimit::max(upload_limit))
        .layer(Extension(BodyLimit(upload_limit)))
}

fn doc_error(e: DocError) -> ApiError {
    ApiError::invalid_field(e.field, "value_error", e.message)
}

fn save_error(e: FlowSaveError) -> ApiError {
    match e {
        FlowSaveError::NameTaken | FlowSaveError::EndpointTaken => {
            ApiError::Conflict(e.to_string())
        }
        FlowSaveError::ForeignId(id) => ApiError::Conflict(format!(
            "Flow id {id} belongs to another user; remove \"id\" to import it as a new flow"
        )),
        FlowSaveError::IdExists(id) => ApiError::Conflict(format!(
            "A flow with id {id} already exists; use PUT /api/v1/flows/{id} to replace it"
        )),
        FlowSaveError::Store(StoreError::Conflict(_)) => {
            ApiError::Conflict("Name must be unique".into())
        }
        FlowSaveError::Store(e) => e.into(),
    }
}

/// Finds one of the caller's flows by UUID or by endpoint name.
pub async fn find_flow(state: &AppState, user_id: &str, ident: &str) -> ApiResult<FlowRecord> {
    let found = if let Ok(id) = uuid::Uuid::try_parse(ident) {
        state
            .store
            .flow(user_id, &id.hyphenated().to_string())
            .await?
    } else if flowdoc::valid_endpoint_name(ident) {
        state.store.flow_by_id_or_endpoint(user_id, ident).await?
    } else {
        None
    };
    found.ok_or_else(|| ApiError::NotFound(FLOW_NOT_FOUND.into()))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(doc): JsonBody<Value>,
) -> ApiResult<Response> {
    let record = flowdoc::record_from_document(&doc, &auth.user.id).map_err(doc_error)?;
    let saved = state
        .store
        .save_flows(
            &auth.user.id,
            vec![record],
            OnClash::Rename,
            OnOwnId::Refuse,
        )
        .await
        .map_err(save_error)?;
    state.flow_cache.invalidate_user(&auth.user.id);
    Ok((StatusCode::CREATED, Json(flowdoc::flow_read(&saved[0]))).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    header_flows: bool,
    #[serde(default)]
    components_only: bool,
    #[serde(default)]
    folder_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::Unprocessable(e.body_text()))?;
    let flows = state
        .store
        .list_flows(&auth.user.id, q.header_flows)
        .await?;
    let keep = |f: &&FlowRecord| {
        (!q.components_only || f.is_component)
            && q.folder_id
                .as_ref()
                .is_none_or(|id| f.folder_id.as_ref() == Some(id))
    };
    if q.header_flows {
        let headers: Vec<flowdoc::FlowHeader> = flows
            .iter()
            .filter(keep)
            .map(flowdoc::flow_header)
            .collect();
        return Ok(Json(headers).into_response());
    }
    let items: Vec<Value> = flows.iter().filter(keep).map(flowdoc::flow_read).collect();
    Ok(Json(items).into_response())
}

async fn read(
    State(state): State<AppState>,
    auth: Auth,
    Path(flow): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = find_flow(&state, &auth.user.id, &flow).await?;
    Ok(Json(flowdoc::flow_read(&record)))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(flow): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::invalid_field(
            "body",
            "model_type",
            "the body must be a JSON object",
        ));
    };
    let mut record = find_flow(&state, &auth.user.id, &flow).await?;
    let data = fields.remove("data");
    // Server-owned fields are not the client's to change.
    for key in ["id", "user_id", "updated_at"] {
        fields.remove(key);
    }
    flowdoc::apply_fields(&mut record, &fields).map_err(doc_error)?;
    if let Some(data) = data.filter(|d| !d.is_null()) {
        flowdoc::set_data(&mut record, &data).map_err(doc_error)?;
    }
    let saved = state
        .store
        .update_flow(&auth.user.id, record)
        .await
        .map_err(|e| match e {
            FlowSaveError::NameTaken | FlowSaveError::EndpointTaken => {
                ApiError::BadRequest(e.to_string())
            }
            other => save_error(other),
        })?;
    state.flow_cache.invalidate_user(&auth.user.id);
    Ok(Json(flowdoc::flow_read(&saved)))
}

async fn upsert(
    State(state): State<AppState>,
    auth: Auth,
    Path(flow): Path<String>,
    JsonBody(doc): JsonBody<Value>,
) -> ApiResult<Response> {
    let id = crate::ids::parse_uuid(&flow, "flow_id")?;
    let Value::Object(mut obj) = doc else {
        return Err(ApiError::invalid_field(
            "body",
            "model_type",
            "the body must be a JSON object",
        ));
    };
    obj.insert("id".into(), Value::String(id.clone()));
    let record =
        flowdoc::record_from_document(&Value::Object(obj), &auth.user.id).map_err(doc_error)?;
    let existed = state.store.flow(&auth.user.id, &id).await?.is_some();
    let saved = state
        .store
        .save_flows(&auth.user.id, vec![record], OnClash::Fail, OnOwnId::Replace)
        .await
        .map_err(|e| match e {
            FlowSaveError::ForeignId(_) => ApiError::NotFound(FLOW_NOT_FOUND.into()),
            other => save_error(other),
        })?;
    state.flow_cache.invalidate_user(&auth.user.id);
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(flowdoc::flow_read(&saved[0]))).into_response())
}

async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path(flow): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = find_flow(&state, &auth.user.id, &flow).await?;
    if !state.store.delete_flow(&auth.user.id, &record.id).await? {
        return Err(ApiError::NotFound(FLOW_NOT_FOUND.into()));
    }
    state.flow_cache.invalidate_user(&auth.user.id);
    Ok(Json(json!({"message": "Flow deleted successfully"})))
}

async fn delete_many(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(ids): JsonBody<Vec<String>>,
) -> ApiResult<Json<Value>> {
    let mut deleted = 0;
    for raw in &ids {
        let id = crate::ids::parse_uuid(raw, "flow_ids")?;
        if state.store.delete_flow(&auth.user.id, &id).await? {
            deleted += 1;
        }
    }
    state.flow_cache.invalidate_user(&auth.user.id);
    Ok(Json(json!({"deleted": deleted})))
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    folder_id: Option<String>,
}

/// One flow JSON, a `{"flows": [...]}` file, or a ZIP of JSON files. All or nothing: one
/// transaction for the whole upload.
async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<UploadQuery>,
    Extension(BodyLimit(limit)): Extension<BodyLimit>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::BadRequest(format!(
            "Expected a multipart form with a file field: {}",
            e.body_text()
        ))
    })?;
    let mut file: Option<Bytes> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() == Some("file") {
            file = Some(field.bytes().await.map_err(multipart_error)?);
        }
    }
    let contents = file.ok_or_else(|| ApiError::BadRequest("No file provided".into()))?;
    if contents.is_empty() {
        return Err(ApiError::BadRequest("The uploaded file is empty".into()));
    }
    let docs = documents_in_upload(&contents, limit)?;
    let mut records = Vec::with_capacity(docs.len());
    let mut seen_ids = std::collections::HashSet::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut record = flowdoc::record_from_document(doc, &auth.user.id).map_err(|e| {
            let name = doc.get("name").and_then(Value::as_str).unwrap_or("?");
            ApiError::invalid_field(
                e.field,
                "value_error",
                format!("flows[{i}] ({name:?}): {}", e.message),
            )
        })?;
        if record.data.is_none() {
            return Err(ApiError::invalid_field(
                "data",
                "missing",
                format!("flows[{i}]: a flow needs data with nodes and edges"),
            ));
        }
        if doc.get("id").is_some_and(|v| !v.is_null()) && !seen_ids.insert(record.id.clone()) {
            return Err(ApiError::Unprocessable(
                "Invalid upload: duplicate flow IDs are not allowed".into(),
            ));
        }
        if let Some(folder) = &q.folder_id {
            record.folder_id = Some(crate::ids::parse_uuid(folder, "folder_id")?);
        }
        records.push(record);
    }
    let saved = state
        .store
        .save_flows(&auth.user.id, records, OnClash::Rename, OnOwnId::Replace)
        .await
        .map_err(save_error)?;
    state.flow_cache.invalidate_user(&auth.user.id);
    let body: Vec<Value> = saved.iter().map(flowdoc::flow_read).collect();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit: 0 }
    } else {
        ApiError::BadRequest(format!("Could not read the upload: {}", e.body_text()))
    }
}

/// The flow documents in an uploaded file, however packaged.
pub fn documents_in_upload(contents: &[u8], limit: usize) -> ApiResult<Vec<Value>> {
    if contents.starts_with(b"PK\x03\x04") || contents.starts_with(b"PK\x05\x06") {
        let mut docs = Vec::new();
        for (name, bytes) in zip_json_files(contents, limit)? {
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::BadRequest(format!("Invalid JSON file {name} in the ZIP: {e}"))
            })?;
            docs.extend(documents_in_value(value, Some(&name))?);
        }
        if docs.is_empty() {
            return Err(ApiError::BadRequest(
                "No valid flow JSON files found in the ZIP".into(),
            ));
        }
        return Ok(docs);
    }
    let value: Value = serde_json::from_slice(contents)
        .map_err(|e| ApiError::BadRequest(format!("Invalid JSON file: {e}")))?;
    documents_in_value(value, None)
}

fn documents_in_value(value: Value, file: Option<&str>) -> ApiResult<Vec<Value>> {
    let origin = file.map(|f| format!(" in {f}")).unwrap_or_default();
    let Value::Object(mut obj) = value else {
        return Err(ApiError::Unprocessable(format!(
            "Invalid JSON{origin}: expected an object with 'flows' or a single flow object"
        )));
    };
    match obj.remove("flows") {
        Some(Value::Array(flows)) => {
            if let Some(i) = flows.iter().position(|f| !f.is_object()) {
                return Err(ApiError::Unprocessable(format!(
                    "Invalid JSON{origin}: flows[{i}] is not an object"
                )));
            }
            Ok(flows)
        }
        Some(_) => Err(ApiError::Unprocessable(format!(
            "Invalid JSON{origin}: 'flows' must be a list of flow objects"
        ))),
        None => Ok(vec![Value::Object(obj)]),
    }
}

/// The `.json` entries of a ZIP, refusing unsafe names and bounding what it expands to (ZIP
/// bombs): at most `limit` bytes per entry and 4 × `limit` in all, whatever the headers claim.
fn zip_json_files(contents: &[u8], limit: usize) -> ApiResult<Vec<(String, Vec<u8>)>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(contents))
        .map_err(|e| ApiError::BadRequest(format!("Invalid ZIP file: {e}")))?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(ApiError::BadRequest(format!(
            "The ZIP holds more than {MAX_ZIP_ENTRIES} files"
        )));
    }
    let total_limit = limit.saturating_mul(4);
    let mut total = 0usize;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| ApiError::BadRequest(format!("Invalid ZIP file: {e}")))?;
        let name = entry.name().to_string();
        let unsafe_name = name.starts_with('/')
            || name.contains('\\')
            || name.contains('\0')
            || name.split('/').any(|part| part == "..")
            || entry.enclosed_name().is_none();
        if unsafe_name {
            return Err(ApiError::BadRequest(format!(
                "Unsafe file name in the ZIP: {name:?}"
            )));
        }
        let is_json = name.to_ascii_lowercase().ends_with(".json");
        if entry.is_dir() || !is_json || name.starts_with("__MACOSX/") {
            continue;
        }
        let room = limit.min(total_limit - total);
        let mut bytes = Vec::new();
        (&mut entry)
            .take(room as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ApiError::BadRequest(format!("Cannot read {name} in the ZIP: {e}")))?;
        if bytes.len() > room {
            return Err(ApiError::PayloadTooLarge { limit: total_limit });
        }
        total += bytes.len();
        files.push((name, bytes));
    }
    Ok(files)
}

/// One flow as a JSON document, several as a ZIP (Langflow's behaviour).
async fn download(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(ids): JsonBody<Vec<String>>,
) -> ApiResult<Response> {
    let mut wanted = Vec::with_capacity(ids.len());
    for raw in &ids {
        wanted.push(crate::ids::parse_uuid(raw, "flow_ids")?);
    }
    let flows = state.store.flows_by_ids(&auth.user.id, &wanted).await?;
    match flows.as_slice() {
        [] => Err(ApiError::NotFound("No flows found.".into())),
        [one] => Ok(Json(flowdoc::export_document(one)).into_response()),
        many => {
            let zip = zip_of(many).map_err(ApiError::Internal)?;
            let stamp = chrono::Utc::now().format("%Y%m%d_%H%M%S");
            let disposition = format!("attachment; filename=\"{stamp}_flowgate_flows.zip\"");
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/x-zip-compressed"),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_str(&disposition).expect("ascii"),
                    ),
                ],
                zip,
            )
                .into_response())
        }
    }
}

/// A ZIP with one export document per flow; clashing file names get the flow id appended.
pub fn zip_of(flows: &[FlowRecord]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut used = std::collections::HashSet::new();
    for flow in flows {
        let mut name = flowdoc::file_name_for(flow);
        if !used.insert(name.clone()) {
            name = format!("{}_{}.json", name.trim_end_matches(".json"), flow.id);
            used.insert(name.clone());
        }
        writer.start_file(name, options)?;
        writer
            .write_all(serde_json::to_string_pretty(&flowdoc::export_document(flow))?.as_bytes())?;
    }
    Ok(writer.finish()?.into_inner())
}

/// Re-checks stored flows whose problems were computed by another version of the engine's
/// registry, so `problems` follows the components this binary has. Runs in the background.
pub async fn refresh_stale_problems(state: AppState) {
    let fingerprint = flowdoc::registry_fingerprint();
    loop {
        let batch = match state
            .store
            .flows_with_stale_problems(fingerprint, 100)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "could not re-check stored flows");
                return;
            }
        };
        if batch.is_empty() {
            return;
        }
        for mut flow in batch {
            let flow = tokio::task::spawn_blocking(move || {
                flowdoc::recheck(&mut flow);
                flow
            })
            .await;
            let Ok(flow) = flow else { return };
            if let Err(e) = state
                .store
                .set_flow_problems(&flow.id, &flow.problems, fingerprint)
                .await
            {
                tracing::warn!(error = %e, "could not store re-checked problems");
                return;
            }
        }
    }
}
