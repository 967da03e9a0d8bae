//! Files uploaded for a flow (api.md "Files"): Langflow's `/api/v1/files/...` routes and the
//! older `/api/v1/upload/{flow_id}`. Every route first checks that the caller owns the flow
//! (another user's flow is `404 Flow not found`), then works inside that user's folder only.

use axum::body::Body;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::files;
use crate::routes::flows::find_flow;
use crate::state::AppState;

pub const FILE_NOT_FOUND: &str = "File not found";
/// Room for the multipart framing around a file of the largest allowed size.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

pub fn router(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/api/v1/files/upload/{flow_id}", post(upload))
        .route("/api/v1/upload/{flow_id}", post(upload))
        .route("/api/v1/files/list/{flow_id}", get(list))
        .route("/api/v1/files/download/{flow_id}/{name}", get(download))
        .route("/api/v1/files/delete/{flow_id}/{name}", delete(remove))
        .layer(DefaultBodyLimit::max(
            upload_limit.saturating_add(MULTIPART_OVERHEAD),
        ))
}

fn multipart_error(e: MultipartError, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::BadRequest(format!("Could not read the upload: {}", e.body_text()))
    }
}

/// Multipart field `file` → `201 {"flowId", "file_path": "<flow_id>/<timestamp>_<name>"}`.
/// The bytes stream to a temporary file, renamed into place once complete and within the
/// limit; a larger file is 413 and leaves nothing behind.
async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    Path(flow): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let flow = find_flow(&state, &auth.user.id, &flow).await?;
    let limit = state.config.max_upload_bytes;
    let mut multipart = multipart.map_err(|e| {
        ApiError::BadRequest(format!(
            "Expected a multipart form with a file field: {}",
            e.body_text()
        ))
    })?;
    let dir = files::flow_dir(&state, &auth.user.id, &flow.id);
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let given = field
            .file_name()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if let Some(name) = &given {
            files::check_upload_name(name).map_err(ApiError::BadRequest)?;
        }
        create_private_dir(&dir).await?;
        let temp = dir.join(format!(".upload-{}", uuid::Uuid::new_v4()));
        let written = async {
            let mut out = tokio::fs::File::create(&temp)
                .await
                .map_err(anyhow::Error::from)?;
            let mut size = 0usize;
            let mut hash = sha2::Sha256::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                size += chunk.len();
                if size > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                if given.is_none() {
                    hash.update(&chunk);
                }
                out.write_all(&chunk).await.map_err(anyhow::Error::from)?;
            }
            out.flush().await.map_err(anyhow::Error::from)?;
            Ok::<_, ApiError>(hex::encode(hash.finalize()))
        }
        .await;
        let digest = match written {
            Ok(d) => d,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(e);
            }
        };
        // Langflow names a file sent without a name after the SHA-256 of its bytes.
        let name = files::stored_name(given.as_deref().unwrap_or(&digest));
        if let Err(e) = tokio::fs::rename(&temp, dir.join(&name)).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(anyhow::Error::from(e).into());
        }
        let body = json!({"flowId": flow.id, "file_path": format!("{}/{name}", flow.id)});
        return Ok((StatusCode::CREATED, Json(body)).into_response());
    }
    Err(ApiError::invalid_field("file", "missing", "Field required"))
}

async fn create_private_dir(dir: &std::path::Path) -> ApiResult<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder
        .create(dir)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("creating {}: {e}", dir.display())))
}

/// `{"files": [stored names]}`, sorted; none yet → an empty list.
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(flow): Path<String>,
) -> ApiResult<Json<Value>> {
    let flow = find_flow(&state, &auth.user.id, &flow).await?;
    let dir = files::flow_dir(&state, &auth.user.id, &flow.id);
    let mut names = Vec::new();
    match tokio::fs::read_dir(&dir).await {
        Ok(mut entries) => {
            while let Some(entry) = entries.next_entry().await.map_err(anyhow::Error::from)? {
                let is_file = entry.file_type().await.is_ok_and(|t| t.is_file());
                if let Some(name) = entry.file_name().to_str()
                    && is_file
                    && !files::is_hidden(name)
                {
                    names.push(name.to_string());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::from(e).into()),
    }
    names.sort();
    Ok(Json(json!({ "files": names })))
}

/// The path of one of the caller's files after every check: a plain name, the caller's flow,
/// and (symbolic links resolved) inside the caller's folder.
async fn owned_file(
    state: &AppState,
    auth: &Auth,
    flow: &str,
    name: &str,
) -> ApiResult<std::path::PathBuf> {
    files::check_stored_name(name).map_err(ApiError::BadRequest)?;
    let flow = find_flow(state, &auth.user.id, flow).await?;
    if files::is_hidden(name) {
        return Err(ApiError::NotFound(FILE_NOT_FOUND.into()));
    }
    let user_root = files::files_root(state).join(&auth.user.id);
    let path = files::flow_dir(state, &auth.user.id, &flow.id).join(name);
    files::confined(&user_root, &path)
        .await
        .map_err(|_| ApiError::NotFound(FILE_NOT_FOUND.into()))
}

async fn download(
    State(state): State<AppState>,
    auth: Auth,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let path = owned_file(&state, &auth, &flow, &name).await?;
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(FILE_NOT_FOUND.into()));
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `attachment` with an ASCII fallback name and the exact name in RFC 5987 form.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let path = owned_file(&state, &auth, &flow, &name).await?;
    match tokio::fs::remove_file(&path).await {
        Ok(()) => Ok(Json(
            json!({"message": format!("File {name} deleted successfully")}),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::NotFound(FILE_NOT_FOUND.into()))
        }
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}
