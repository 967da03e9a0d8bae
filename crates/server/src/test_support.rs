//! Helpers for the crate's unit tests.

use std::path::Path;

use flowgate_store::{NewUser, PoolSettings, Store};

use crate::state::AppState;

/// A server state on a fresh SQLite database in `dir`, with users `alice` and `bob`.
pub async fn state_with_users(dir: &Path) -> AppState {
    let store = Store::connect(
        &flowgate_store::sqlite_url(&dir.join("t.db")),
        &PoolSettings::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    for u in ["alice", "bob"] {
        store
            .create_user(NewUser {
                id: u,
                username: u,
                password_hash: "x",
                is_active: true,
                is_superuser: false,
            })
            .await
            .unwrap();
    }
    let config = crate::Config::new(dir.to_path_buf());
    AppState::new(config, store, b"0123456789abcdef0123456789abcdef")
}
