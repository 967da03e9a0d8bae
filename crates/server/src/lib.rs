//! flowgate's HTTP server: Langflow's REST API over the store and the engine.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod files;
pub mod flowdoc;
pub mod ids;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod ratelimit;
pub mod routes;
pub mod runctx;
pub mod state;
#[cfg(test)]
mod test_support;
pub mod timefmt;
pub mod ui;
pub mod variables;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use flowgate_store::{NewUser, PoolSettings, Store, UsageDelta};

pub use config::Config;
pub use state::AppState;

/// Opens the configured database and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let settings = PoolSettings {
        max_connections: config.db_max_connections,
        acquire_timeout: config.db_acquire_timeout,
    };
    let store = Store::connect(&config.database_url(), &settings).await?;
    store.migrate().await?;
    Ok(store)
}

/// Creates the configured superuser when missing; an existing user's password is never
/// overwritten. Returns `Some(uses the default password)` when it created the user, `None` when
/// the user already existed (see [`superuser_uses_default_password`]).
pub async fn ensure_superuser(store: &Store, config: &Config) -> anyhow::Result<Option<bool>> {
    let name = config.superuser.clone();
    if store.user_by_username(&name).await?.is_some() {
        return Ok(None);
    }
    let pw = config.superuser_password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw)).await??;
    let id = uuid::Uuid::new_v4().to_string();
    let created = store
        .create_user(NewUser {
            id: &id,
            username: &name,
            password_hash: &hash,
            is_active: true,
            is_superuser: true,
        })
        .await;
    match created {
        Ok(_) => {}
        // Another instance starting on the same database created it first.
        Err(flowgate_store::StoreError::Conflict(_)) => return Ok(None),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("creating the superuser {name:?}")));
        }
    }
    tracing::info!(username = %name, "created the superuser");
    Ok(Some(config.uses_default_password()))
}

/// Whether the configured superuser's stored password is still the documented default. One
/// Argon2 verification (tens of milliseconds).
pub async fn superuser_uses_default_password(
    store: &Store,
    config: &Config,
) -> anyhow::Result<bool> {
    let Some(user) = store.user_by_username(&config.superuser).await? else {
        return Ok(false);
    };
    let stored = user.password_hash;
    let default = config::DEFAULT_SUPERUSER_PASSWORD;
    Ok(tokio::task::spawn_blocking(move || {
        password::verify(default, &stored) != password::Verdict::Wrong
    })
    .await?)
}

/// Creates the superuser when missing and tells whether it uses the default password.
pub async fn bootstrap_superuser(store: &Store, config: &Config) -> anyhow::Result<bool> {
    match ensure_superuser(store, config).await? {
        Some(default) => Ok(default),
        None => superuser_uses_default_password(store, config).await,
    }
}

/// The JWT secret: configured, or generated once and kept in the data dir (mode 0600).
pub fn load_or_create_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.secret_key {
        anyhow::ensure!(
            secret.len() >= 32,
            "the secret key must be at least 32 characters"
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join("secret_key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(existing.as_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let secret = hex::encode(bytes);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())
}

/// A server ready to accept connections.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
    pub local_addr: SocketAddr,
    /// Whether the superuser still has the default password; `None` while that is being checked
    /// after start-up (on a loopback address the check does not delay the first answer).
    pub default_password: Option<bool>,
}

impl Server {
    /// Opens the database, bootstraps the superuser and binds the port; refuses a non-loopback
    /// address while the superuser password is the default, unless explicitly allowed.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        let secret = load_or_create_secret(&config)?;
        let public = !config.host.is_loopback() && !config.allow_default_password;
        let default_password = match ensure_superuser(&store, &config).await? {
            Some(default) => Some(default),
            None if public => Some(superuser_uses_default_password(&store, &config).await?),
            None => None,
        };
        if public && default_password == Some(true) {
            anyhow::bail!(
                "refusing to listen on {} while the superuser {:?} still has the default password: \
                 set LANGFLOW_SUPERUSER_PASSWORD (or change it), or set \
                 FLOWGATE_ALLOW_DEFAULT_PASSWORD=true",
                config.host,
                config.superuser
            );
        }
        let addr = SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local_addr = listener.local_addr()?;
        let state = AppState::new(config, store, &secret);
        Ok(Self {
            listener,
            state,
            local_addr,
            default_password,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and flushes the
    /// usage counters.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let flusher = tokio::spawn(flush_usage_forever(state.clone()));
        // PostgreSQL: other instances' changes arrive by LISTEN/NOTIFY. SQLite: checkpoints.
        let store_tasks = state.store.start_background_tasks();
        tokio::spawn(routes::flows::refresh_stale_problems(state.clone()));
        let app = app::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        flusher.abort();
        store_tasks.abort();
        flush_usage(&state).await;
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn flush_usage_forever(state: AppState) {
    let mut tick = tokio::time::interval(state.config.usage_flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush_usage(&state).await;
    }
}

/// Writes the API-key usage counted in memory; on failure the counts go back for next time.
pub async fn flush_usage(state: &AppState) {
    let drained = state.keys.drain_usage();
    if drained.is_empty() {
        return;
    }
    let deltas: Vec<UsageDelta> = drained
        .iter()
        .map(|(id, uses, last)| UsageDelta {
            key_id: id,
            uses: *uses,
            last_used_at: *last,
        })
        .collect();
    if let Err(e) = state.store.flush_key_usage(&deltas).await {
        tracing::warn!(error = %e, keys = deltas.len(), "could not flush API key usage; will retry");
        for (id, uses, last) in drained {
            state.keys.restore_usage(id, uses, last);
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
