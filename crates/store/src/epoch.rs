//! A cheap cross-process signal that authentication data changed.
//!
//! The server caches verified API keys in memory so the hot path does no database read. A
//! revocation made elsewhere — `flowgate api-key revoke` in another process on the same SQLite
//! file — must still take effect on the server's very next request. Every write that can revoke
//! access (key deleted or deactivated, user deactivated or deleted, password changed) stores a
//! fresh unique value in a small file beside the database; the server reads those 8 bytes on
//! each authenticated request (one `pread` from the page cache, well under a microsecond) and
//! drops its cache when they changed. Unique values (the nanosecond clock mixed with the process
//! id) rather than a counter make concurrent writers safe without a lock. PostgreSQL deployments use LISTEN/NOTIFY instead.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::StoreError;

#[derive(Clone, Debug)]
pub struct AuthEpoch {
    file: Option<Arc<File>>,
    path: Option<PathBuf>,
}

impl AuthEpoch {
    pub(crate) fn for_database_file(db: &Path) -> Result<Self, StoreError> {
        let mut name = db.as_os_str().to_owned();
        name.push("-authepoch");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        Ok(Self {
            file: Some(Arc::new(file)),
            path: Some(path),
        })
    }

    pub(crate) fn disabled() -> Self {
        Self {
            file: None,
            path: None,
        }
    }

    /// The current value; 0 when nothing was ever written or the backend has no epoch file.
    pub fn current(&self) -> u64 {
        let Some(file) = &self.file else { return 0 };
        let mut buf = [0u8; 8];
        match file.read_at(&mut buf, 0) {
            Ok(8) => u64::from_le_bytes(buf),
            _ => 0,
        }
    }

    /// Announces a change to every process sharing the database.
    pub fn bump(&self) {
        let Some(file) = &self.file else { return };
        let mut value = [0u8; 8];
        if unique_u64(&mut value)
            && let Err(e) = file.write_at(&value, 0)
        {
            tracing::error!(path = ?self.path, error = %e, "cannot write the auth epoch file");
        }
    }
}

fn unique_u64(out: &mut [u8; 8]) -> bool {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos ^ ((std::process::id() as u64) << 40) ^ 0x9E37_79B9_7F4A_7C15;
    *out = mixed.to_le_bytes();
    mixed != 0
}
