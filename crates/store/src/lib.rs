//! flowgate's database layer.
//!
//! One set of plain, portable SQL runs on both backends through `sqlx::Any`; only the migrations
//! differ per backend (`migrations/sqlite`, `migrations/postgres`). Portability rules the SQL
//! follows: `$N` placeholders, TEXT ids (UUID strings), BIGINT microsecond timestamps, 0/1 flags.
//!
//! Nothing here knows about HTTP. Rows come back as plain structs; the server decides what is
//! shown to whom.

mod api_keys;
mod epoch;
mod error;
mod flows;
mod message_queue;
mod messages;
mod scopes;
mod sqlite_writer;
mod tokens;
mod users;
mod variables;
mod wal_vfs;

pub use api_keys::{ApiKeyRow, NewApiKey, UsageDelta};
pub use epoch::AuthEpoch;
pub use error::StoreError;
pub use flows::{FlowRecord, FlowSaveError, OnClash, OnOwnId};
pub use message_queue::MessageReceipt;
pub use messages::{MessageFilter, MessageRow};
pub use sqlite_writer::wake_deferred_writers;
pub use users::{NewUser, UserRow, UserUpdate};
pub use variables::VariableRow;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How often a server checkpoints SQLite's WAL (see [`Store::start_background_tasks`]).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Pool settings; the defaults suit one embedded SQLite file.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(1),
        }
    }
}

/// Who writes queued chat messages.
#[derive(Clone)]
enum MessageSink {
    /// The message writer's thread and connection (its page cache stays warm: a pooled
    /// connection's cache is stale whenever another connection wrote last).
    Sqlite(std::sync::Arc<sqlite_writer::SqliteMessageWriter>),
    /// PostgreSQL: a task writing through the pool like everything else.
    Pooled(std::sync::Arc<message_queue::PooledQueue>),
}

impl std::fmt::Debug for MessageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "MessageSink::Sqlite",
            Self::Pooled(_) => "MessageSink::Pooled",
        })
    }
}

/// A handle to the database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Where queued chat messages go (see [`message_queue`]).
    messages: MessageSink,
    backend: Backend,
    epoch: AuthEpoch,
    location: String,
    /// The URL as given (with its password), for the PostgreSQL notification connection.
    url: DatabaseUrl,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`). A SQLite file and its folder are
    /// created when missing.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let (url, location, epoch, sqlite_file) = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot create the database folder {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let epoch = AuthEpoch::for_database_file(&path)?;
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    path.display().to_string(),
                    epoch,
                    Some(path),
                )
            }
            Backend::Postgres => (
                url.to_string(),
                redact_url(url),
                AuthEpoch::notified(),
                None,
            ),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("invalid database URL: {e}")))?
            .disable_statement_logging();
        let max = match backend {
            Backend::Sqlite => settings.max_connections.max(2),
            Backend::Postgres => settings.max_connections,
        };
        let pool = pool_options(backend, max, settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::from_connect(e, &location))?;
        let messages = match sqlite_file {
            // After the pool's first connection: it created the file and switched it to WAL.
            Some(path) => MessageSink::Sqlite(std::sync::Arc::new(
                sqlite_writer::SqliteMessageWriter::start(&path)?,
            )),
            None => {
                let queue = std::sync::Arc::new(message_queue::PooledQueue::default());
                tokio::spawn(message_queue::write_forever(queue.clone(), pool.clone()));
                MessageSink::Pooled(queue)
            }
        };
        Ok(Self {
            pool,
            messages,
            backend,
            epoch,
            location,
            url: DatabaseUrl(url.into()),
        })
    }

    /// What a long-running server needs beside requests; servers call this once. PostgreSQL:
    /// a `LISTEN` connection for other processes' changes (see [`AuthEpoch`]). SQLite: WAL
    /// checkpoints every [`CHECKPOINT_INTERVAL`] on a connection of their own, off the message
    /// writer's path (see `sqlite_writer::Checkpointer`).
    pub fn start_background_tasks(&self) -> tokio::task::JoinHandle<()> {
        match self.backend {
            Backend::Postgres => tokio::spawn(epoch::run_listener(
                self.epoch.clone(),
                self.url.0.to_string(),
            )),
            Backend::Sqlite => {
                let checkpointer = match &self.messages {
                    MessageSink::Sqlite(writer) => {
                        Some(writer.checkpointer().map(std::sync::Arc::new))
                    }
                    MessageSink::Pooled(_) => None,
                };
                tokio::spawn(async move {
                    let checkpointer = match checkpointer {
                        Some(Ok(c)) => c,
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "cannot open the WAL checkpointer; the WAL will grow");
                            return;
                        }
                        None => return,
                    };
                    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let c = checkpointer.clone();
                        match tokio::task::spawn_blocking(move || c.checkpoint()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                            Err(e) => tracing::warn!(error = %e, "WAL checkpoint task failed"),
                        }
                    }
                })
            }
        }
    }

    /// Tells every process sharing the database that keys, users or flows changed, so they
    /// drop what they cached. Called after the change is committed. On PostgreSQL it returns
    /// once this process's own listener has received the notification (bounded wait).
    pub(crate) async fn announce_change(&self) {
        self.epoch.bump_file();
        let Some((payload, seq)) = self.epoch.next_notification() else {
            return;
        };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(epoch::CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await;
        match sent {
            Ok(_) => self.epoch.wait_for_echo(seq).await,
            // Other instances lose their listener too when the database is unreachable, and
            // re-validate every request until it is back.
            Err(e) => tracing::warn!(error = %e, "could not announce a change to other instances"),
        }
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock meanwhile, so
    /// instances starting together do not race.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the data lives, for humans (a file path, or the URL without its password).
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The cross-process "something about authentication changed" signal. See [`AuthEpoch`].
    pub fn auth_epoch(&self) -> &AuthEpoch {
        &self.epoch
    }

    /// A transaction that will write. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes fails at once with
    /// SQLITE_BUSY_SNAPSHOT if another connection committed in between, which `busy_timeout`
    /// cannot help with. Waiting for the lock at BEGIN is what `busy_timeout` handles.
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.begin_write(&self.pool).await
    }

    async fn begin_write(&self, pool: &AnyPool) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => pool.begin().await?,
        })
    }

    /// Makes concurrent transactions writing one user's rows take turns, so read-then-write
    /// steps (picking "Name (3)") do not race. SQLite's `BEGIN IMMEDIATE` already serialises all
    /// writers; PostgreSQL's READ COMMITTED does not, so this takes a transaction-scoped
    /// advisory lock keyed by the user.
    pub(crate) async fn serialize_user_writes(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        user_id: &str,
    ) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))::text")
                .bind(format!("flowgate-user-writes:{user_id}"))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Readiness probe: one round trip.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Writes the queued messages (new ones are refused from now on), then closes the
    /// connections.
    pub async fn close(&self) {
        match &self.messages {
            MessageSink::Sqlite(writer) => writer.close().await,
            MessageSink::Pooled(queue) => queue.close(&self.pool).await,
        }
        self.pool.close().await;
    }
}

fn pool_options(backend: Backend, max: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max.max(1))
        .acquire_timeout(acquire_timeout)
        // An embedded SQLite connection cannot go stale; a PostgreSQL one can (server restart,
        // network cut), so it is checked before use.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the one writer; NORMAL sync is durable
                    // across process crashes, which is what a server needs. A 16 MiB page
                    // cache (default 2 MiB) keeps the message indexes' hot pages in memory
                    // instead of spilling on every batch; statement journals of the
                    // batched upserts stay in memory. No automatic checkpoints: a server's
                    // checkpointer copies the log (`start_background_tasks`), and SQLite
                    // checkpoints when a process's last connection closes. With them on, the
                    // commit that found the log past 1,000 pages (a server's once-a-second
                    // key-usage flush, under load) copied the whole log itself, fsyncs and all,
                    // on sqlx's worker, while holding the checkpoint lock the checkpointer's
                    // passes then found busy.
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                         PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000; \
                         PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY; \
                         PRAGMA wal_autocheckpoint=0;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
}

/// A database URL that may hold a password: `Debug` shows it redacted, so a `Store` printed
/// for debugging never leaks it.
#[derive(Clone)]
struct DatabaseUrl(std::sync::Arc<str>);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::Config(format!(
            "unsupported database URL {:?}: use sqlite://PATH or postgres://...",
            redact_url(url)
        )))
    }
}

/// `sqlite:///abs/path`, `sqlite://rel/path` and `sqlite:path` all name a file; query
/// parameters are ours to set.
///
/// Langflow's SQLAlchemy-style URLs work too: `sqlite:////abs/path` (absolute) and
/// `sqlite:///./rel` (relative).
fn sqlite_path(url: &str) -> PathBuf {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let rest = rest.split('?').next().unwrap_or(rest);
    if let Some(relative) = rest.strip_prefix("/./") {
        return PathBuf::from(format!("./{relative}"));
    }
    if let Some(absolute) = rest.strip_prefix("//") {
        return PathBuf::from(format!("/{absolute}"));
    }
    PathBuf::from(rest)
}

/// The SQLite URL for a file.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Hides the password of a database URL so it can be printed.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Current time as UTC microseconds since the epoch, the unit of every timestamp column.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What the store's unit tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A migrated SQLite store in a fresh folder (returned, for the test to remove), with one
    /// active user per id in `users` (id and username alike).
    pub(crate) async fn sqlite_store(users: &[&str]) -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("fg-store-{}", uuid::Uuid::new_v4()));
        let store = Store::connect(&sqlite_url(&dir.join("t.db")), &PoolSettings::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        create_users(&store, users).await;
        (store, dir)
    }

    /// One active user per id in `users` (id and username alike).
    pub(crate) async fn create_users(store: &Store, users: &[&str]) {
        for &u in users {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db"),
            PathBuf::from("/tmp/a.db")
        );
        assert_eq!(sqlite_path("sqlite://a.db?mode=rwc"), PathBuf::from("a.db"));
        assert_eq!(sqlite_path("sqlite:a.db"), PathBuf::from("a.db"));
        assert_eq!(
            sqlite_path("sqlite:////srv/lf.db"),
            PathBuf::from("/srv/lf.db")
        );
        assert_eq!(sqlite_path("sqlite:///./lf.db"), PathBuf::from("./lf.db"));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let url = DatabaseUrl("postgres://u:secret@h/db".into());
        assert_eq!(format!("{url:?}"), "postgres://u:***@h/db");
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }

    /// A commit through the pool never checkpoints: past 1,000 log pages (SQLite's default
    /// trigger) nothing is copied into the database file until someone checkpoints.
    #[tokio::test]
    async fn pool_commits_leave_checkpoints_to_the_checkpointer() {
        let (store, dir) = test_support::sqlite_store(&[]).await;
        let pool = store.pool();
        sqlx::query("CREATE TABLE filler (x TEXT)")
            .execute(pool)
            .await
            .unwrap();
        for _ in 0..12 {
            sqlx::query(
                "INSERT INTO filler SELECT hex(randomblob(2000)) FROM \
                 (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
                 SELECT i FROM n)",
            )
            .execute(pool)
            .await
            .unwrap();
        }
        let check = rusqlite::Connection::open(dir.join("t.db")).unwrap();
        let (log, copied): (i64, i64) = check
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .unwrap();
        // An automatic checkpoint would have copied the log at the commit that took it past
        // 1,000 pages, and the next commit would have started it over.
        assert!(log > 1000, "the log holds {log} pages");
        assert_eq!(copied, log, "an explicit checkpoint copies it all");
        drop(check);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rejects_unknown_schemes() {
        assert!(matches!(
            backend_of("mysql://x"),
            Err(StoreError::Config(_))
        ));
    }
}

#[cfg(test)]
impl Store {
    /// The SQLite message writer (panics on PostgreSQL).
    pub(crate) fn sqlite_writer(&self) -> &sqlite_writer::SqliteMessageWriter {
        match &self.messages {
            MessageSink::Sqlite(writer) => writer,
            MessageSink::Pooled(_) => panic!("not a SQLite store"),
        }
    }
}
