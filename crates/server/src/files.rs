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
    use flowgate_store::{FlowRecord, OnClash, OnOwnId};

    async fn flow_of(state: &AppState, user: &str, id: &str) {
        let record = FlowRecord {
            id: id.into(),
            name: format!("flow {id}"),
            data: Some(r#"{"nodes":[],"edges":[]}"#.into()),
            access_type: "PRIVATE".into(),
            flow_type: "workflow".into(),
            extra: "{}".into(),
            problems: "[]".into(),
            ..Default::default()
        };
        state
            .store
            .save_flows(user, vec![record], OnClash::Rename, OnOwnId::Replace)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn read_for_run_checks_owner_flow_and_path() {
        let dir = std::env::temp_dir().join(format!("fg-files-{}", uuid::Uuid::new_v4()));
        let state = crate::test_support::state_with_users(&dir).await;
        let flow = "0b9e7f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
        flow_of(&state, "alice", flow).await;
        let folder = flow_dir(&state, "alice", flow);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("2025-01-01_00-00-00_a.txt"), b"alice").unwrap();
        std::fs::write(dir.join("outside.txt"), b"outside").unwrap();
        let path = format!("{flow}/2025-01-01_00-00-00_a.txt");

        assert_eq!(
            read_for_run(&state, "alice", &path).await.unwrap(),
            b"alice"
        );
        // Upper-case flow ids name the same flow.
        let upper = format!("{}/2025-01-01_00-00-00_a.txt", flow.to_uppercase());
        assert_eq!(
            read_for_run(&state, "alice", &upper).await.unwrap(),
            b"alice"
        );
        // Bob: not his flow, even though he knows the path.
        assert!(read_for_run(&state, "bob", &path).await.is_err());
        // Escapes and malformed paths.
        for bad in [
            format!("{flow}/../../../outside.txt"),
            format!("{flow}/..%2Foutside.txt"),
            "../outside.txt".to_string(),
            "/etc/passwd".to_string(),
            format!("{flow}/a/b"),
            format!("{flow}/"),
            "not-a-flow/a.txt".to_string(),
            format!("{flow}/missing.txt"),
        ] {
            assert!(read_for_run(&state, "alice", &bad).await.is_err(), "{bad}");
        }
        // A symbolic link out of the folder is refused.
        std::os::unix::fs::symlink(dir.join("outside.txt"), folder.join("link.txt")).unwrap();
        let err = read_for_run(&state, "alice", &format!("{flow}/link.txt")).await;
        assert!(err.is_err());
        // Deleting the flow makes its files unreachable.
        assert!(state.store.delete_flow("alice", flow).await.unwrap());
        assert!(read_for_run(&state, "alice", &path).await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn variables_lookup_decrypts_for_the_owner_only() {
        let dir = std::env::temp_dir().join(format!("fg-vars-{}", uuid::Uuid::new_v4()));
        let state = crate::test_support::state_with_users(&dir).await;
        let mut row = flowgate_store::VariableRow {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: "alice".into(),
            name: "OPENAI_API_KEY".into(),
            var_type: crate::variables::CREDENTIAL.into(),
            ..Default::default()
        };
        row.value = state
            .variable_cipher
            .encrypt(&row.user_id, &row.id, "sk-alice")
            .unwrap();
        state.store.create_variable(&row).await.unwrap();
        let generic = flowgate_store::VariableRow {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: "alice".into(),
            name: "REGION".into(),
            value: "eu".into(),
            var_type: crate::variables::GENERIC.into(),
            ..Default::default()
        };
        state.store.create_variable(&generic).await.unwrap();
        use crate::variables::lookup;
        assert_eq!(
            lookup(&state, "alice", "OPENAI_API_KEY").await.as_deref(),
            Some("sk-alice")
        );
        assert_eq!(
            lookup(&state, "alice", "REGION").await.as_deref(),
            Some("eu")
        );
        assert_eq!(lookup(&state, "bob", "OPENAI_API_KEY").await, None);
        assert_eq!(lookup(&state, "alice", "MISSING").await, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

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
