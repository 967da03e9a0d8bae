use thiserror::Error;

/// What can go wrong in the store, sorted by what the caller should do about it.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A unique constraint said no (e.g. a duplicate username). The text names the constraint.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is overloaded: retry later (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// Anything else: a bug or a corrupt database.
    #[error("database error: {0}")]
    Other(String),
}

impl StoreError {
    pub(crate) fn from_connect(err: sqlx::Error, location: &str) -> Self {
        match err {
            sqlx::Error::Database(db) => {
                StoreError::Unavailable(format!("database at {location}: {}", db.message()))
            }
            other => StoreError::Unavailable(format!("database at {location}: {other}")),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if is_busy(db.code().as_deref()) => {
                StoreError::Unavailable(db.message().to_string())
            }
            other => StoreError::Other(other.to_string()),
        }
    }
}

/// SQLite BUSY/LOCKED and PostgreSQL's "cannot connect now"/admin-shutdown classes.
fn is_busy(code: Option<&str>) -> bool {
    matches!(code, Some("5" | "6" | "517" | "57P01" | "57P02" | "57P03"))
}
