//! Uploaded files, stored under `<data_dir>/files/<user_id>/<flow_id>/<timestamp>_<name>`.
//!
//! No database rows: the bytes and their names are the metadata, so the two can never
//! disagree. Every access first checks in the database that the caller owns the flow, so a
//! deleted flow (or user, whose flows cascade) makes its files unreachable even while the bytes
//! are still on disk, and the user id in the path keeps two users' flows apart even if a flow
//! id is ever reused.

use std::path::{Path, PathBuf};

use crate::state::AppState;

/// Longest file name accepted, in bytes (the stored name adds a 20-byte timestamp; file
/// systems stop at 255).
pub const MAX_NAME_BYTES: usize = 200;
/// Longest stored name (`<timestamp>_<name>`).
const MAX_STORED_NAME_BYTES: usize = 255;

/// Why a file name is refused (400), or `Ok` when it is a plain, safe name.
pub fn check_name(name: &str, max_bytes: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("Invalid file name: it is empty.".into());
    }
    if name.contains("..") || name.contains('/') || name.contains('\\') {
        return Err(
            "Invalid file name. Use a simple file name without directory paths or '..'.".into(),
        );
    }
    if name.chars().any(char::is_control) {
        return Err("Invalid file name: it contains NUL or other control characters.".into());
    }
    if name.len() > max_bytes {
        return Err(format!(
            "Invalid file name: it is longer than {max_bytes} bytes."
        ));
    }
    Ok(())
}

/// A name as uploaded (the multipart file name).
pub fn check_upload_name(name: &str) -> Result<(), String> {
    check_name(name, MAX_NAME_BYTES)
}

/// A stored name as given back in a path (`<timestamp>_<name>`).
pub fn check_stored_name(name: &str) -> Result<(), String> {
    check_name(name, MAX_STORED_NAME_BYTES)
}

/// Where every user's files live.
pub fn files_root(state: &AppState) -> PathBuf {
    state.config.data_dir.join("files")
}

/// The folder of one flow of one user. Both ids are canonical UUIDs from the database.
pub fn flow_dir(state: &AppState, user_id: &str, flow_id: &str) -> PathBuf {
    files_root(state).join(user_id).join(flow_id)
}

/// The stored name for an upload made now: `<UTC timestamp>_<name>` (Langflow's format).
pub fn stored_name(name: &str) -> String {
    format!("{}_{name}", chrono::Utc::now().format("%Y-%m-%d_%H-%M-%S"))
}

/// Temporary files being written start with a dot; no stored name does.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// `path` resolved, refusing anything outside `root` (symbolic links included).
pub async fn confined(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let real_root = tokio::fs::canonicalize(root)
        .await
        .map_err(|_| "file not found".to_string())?;
    let real = tokio::fs::canonicalize(path)
        .await
        .map_err(|_| "file not found".to_string())?;
    if !real.starts_with(&real_root) {
        return Err("file is outside the storage folder".into());
    }
    Ok(real)
}

/// The bytes of a file the user uploaded, given the `file_path` the upload returned
/// (`<flow_id>/<timestamp>_<name>`). Refuses paths of another user's flow (or a deleted one),
/// and anything that would leave the storage folder.
pub async fn read_for_run(state: &AppState, user_id: &str, path: &str) -> Result<Vec<u8>, String> {
    let (flow, name) = path
        .split_once('/')
        .ok_or_else(|| format!("file path {path:?} is not <flow_id>/<file name>"))?;
    let flow_id = uuid::Uuid::try_parse(flow)
        .map_err(|_| format!("file path {path:?} does not start with a flow id"))?
        .hyphenated()
        .to_string();
    check_stored_name(name).map_err(|e| format!("file path {path:?}: {e}"))?;
    if is_hidden(name) {
        return Err(format!("file {path:?} not found"));
    }
    let owned = state
        .store
        .flow(user_id, &flow_id)
        .await
        .map_err(|e| format!("could not check the file's flow: {e}"))?
        .is_some();
    if !owned {
        return Err(format!("file {path:?} not found"));
    }
    let user_root = files_root(state).join(user_id);
    let file = flow_dir(state, user_id, &flow_id).join(name);
    let real = confined(&user_root, &file)
        .await
        .map_err(|_| format!("file {path:?} not found"))?;
    tokio::fs::read(&real)
        .await
        .map_err(|e| format!("could not read file {path:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_upload_name("report.pdf").is_ok());
        assert!(check_upload_name("my file (1).txt").is_ok());
        assert!(check_upload_name(".env").is_ok());
        for bad in ["", "..", "../x", "a/b", "a\\b", "a\0b", "a\nb", "x..y"] {
            assert!(check_upload_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_upload_name(&"a".repeat(200)).is_ok());
        assert!(check_upload_name(&"a".repeat(201)).is_err());
        let name = stored_name("a.txt");
        assert!(name.ends_with("_a.txt") && name.len() == 20 + 5, "{name}");
    }
}
