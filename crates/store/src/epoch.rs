//! A cheap cross-process signal that authentication or flow data changed.
//!
//! Servers cache verified API keys and compiled flows in memory so the hot path does no
//! database read. A change made elsewhere — `flowgate api-key revoke` in another process, or
//! another server instance on the same PostgreSQL database — must still take effect on the
//! server's very next request. Every write that can revoke access or change a flow (key
//! deleted, user changed or deleted, flow written or deleted) announces itself; readers compare
//! an epoch value on each request and drop their caches when it moved.
//!
//! - **SQLite**: a small file beside the database holds a fresh unique value after each change;
//!   the server reads those 8 bytes on each authenticated request, from a shared memory map of
//!   the file (the page cache page every process's writes go to, so a write by another process
//!   is seen by the next read, without a system call: a `pread` cost ~1 µs of each run on the
//!   benchmark VM). Unique values (the nanosecond clock mixed with the process id) rather than a
//!   counter make concurrent writers safe without a lock.
//! - **PostgreSQL**: the writer sends `NOTIFY flowgate_changes` and each instance keeps one
//!   `LISTEN` connection ([`run_listener`]); a notification bumps an in-memory counter. The
//!   writer waits (briefly) until its own notification comes back through its own listener: by
//!   then PostgreSQL has handed it to every listening instance, so the response to the change
//!   is not sent before the others have been told. While the listener is not connected the
//!   epoch changes on every read, so caches are bypassed and every request re-validates against
//!   the database (the fallback); on reconnecting the epoch moves once more, because
//!   notifications sent meanwhile were lost.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::StoreError;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "flowgate_changes";
/// How long a writer waits for its own notification to come back before answering anyway.
const ECHO_WAIT: Duration = Duration::from_secs(2);
/// How often an idle listener checks that its connection is alive (a half-open TCP connection
/// would otherwise look like a quiet one).
const LISTENER_PING: Duration = Duration::from_secs(5);
/// Pause between reconnection attempts while PostgreSQL is unreachable.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct AuthEpoch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    File {
        file: File,
        path: PathBuf,
        /// The file's first 8 bytes, mapped; `None` where mapping failed (then `pread`).
        map: Option<EpochMap>,
    },
    Notified(Notified),
}

/// A shared, read-only mapping of an epoch file's first page.
#[derive(Debug)]
struct EpochMap(std::ptr::NonNull<libc::c_void>);

// SAFETY: the mapping is read-only and only read with volatile 8-byte reads; it lives until
// the `EpochMap` is dropped, which no reader outlives (it is owned by `Inner`).
unsafe impl Send for EpochMap {}
unsafe impl Sync for EpochMap {}

impl EpochMap {
    /// Maps `file`, which must be at least 8 bytes long and never shortened: reading a mapped
    /// page past the end of a file is a SIGBUS. Only `bump_file` writes it (8 bytes at 0).
    fn new(file: &File) -> Option<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared read-only mapping of 8 bytes of an open file; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        std::ptr::NonNull::new(ptr).map(EpochMap)
    }

    fn read(&self) -> u64 {
        // SAFETY: the mapping covers 8 readable bytes at a page-aligned address. Another
        // process's write may be seen half done; a torn value differs from the old one, so it
        // only drops caches once more.
        let bytes = unsafe { std::ptr::read_volatile(self.0.as_ptr().cast::<[u8; 8]>()) };
        u64::from_le_bytes(bytes)
    }
}

impl Drop for EpochMap {
    fn drop(&mut self) {
        // SAFETY: mapped by `new` with this length, and not used after this.
        unsafe { libc::munmap(self.0.as_ptr(), 8) };
    }
}

/// The PostgreSQL side: state shared between the listener task and the request path.
#[derive(Debug)]
struct Notified {
    /// This process's name in notification payloads, to recognise its own echoes.
    instance: String,
    value: AtomicU64,
    connected: AtomicBool,
    /// Sequence numbers of this process's notifications: last sent, last echoed back.
    sent: AtomicU64,
    echoed: AtomicU64,
    echo: tokio::sync::Notify,
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
        // A new file is empty: give it its 8 bytes (zeros: "no change yet") before mapping it.
        // Setting the length it already has changes nothing, even beside another process.
        let short = file.metadata().map(|m| m.len() < 8).unwrap_or(true);
        if short && let Err(e) = file.set_len(8) {
            return Err(StoreError::Unavailable(format!(
                "cannot size {}: {e}",
                path.display()
            )));
        }
        let map = EpochMap::new(&file);
        Ok(Self {
            inner: Arc::new(Inner::File { file, path, map }),
        })
    }

    /// PostgreSQL: driven by [`run_listener`]. Until the listener connects, caches are bypassed.
    pub(crate) fn notified() -> Self {
        let mut id = [0u8; 8];
        unique_u64(&mut id);
        Self {
            inner: Arc::new(Inner::Notified(Notified {
                instance: format!("{:016x}", u64::from_le_bytes(id)),
                value: AtomicU64::new(1),
                connected: AtomicBool::new(false),
                sent: AtomicU64::new(0),
                echoed: AtomicU64::new(0),
                echo: tokio::sync::Notify::new(),
            })),
        }
    }

    /// The current value; compare it with the one a cache was filled under.
    pub fn current(&self) -> u64 {
        match &*self.inner {
            Inner::File { map: Some(map), .. } => map.read(),
            Inner::File { file, .. } => {
                let mut buf = [0u8; 8];
                match file.read_at(&mut buf, 0) {
                    Ok(8) => u64::from_le_bytes(buf),
                    _ => 0,
                }
            }
            Inner::Notified(n) => {
                if n.connected.load(Ordering::Acquire) {
                    n.value.load(Ordering::Acquire)
                } else {
                    // Not listening: a new value per read, so nothing cached is trusted.
                    n.value.fetch_add(1, Ordering::AcqRel) + 1
                }
            }
        }
    }

    /// Whether changes made by other processes reach this one without a database read (always
    /// for SQLite's file; for PostgreSQL while the listener is connected).
    pub fn is_live(&self) -> bool {
        match &*self.inner {
            Inner::Notified(n) => n.connected.load(Ordering::Acquire),
            _ => true,
        }
    }

    /// SQLite: writes a fresh value to the file. PostgreSQL: the store sends the notification
    /// (see `Store::announce_change`); this reserves its sequence number and payload.
    pub(crate) fn bump_file(&self) {
        if let Inner::File { file, path, .. } = &*self.inner {
            let mut value = [0u8; 8];
            if unique_u64(&mut value)
                && let Err(e) = file.write_at(&value, 0)
            {
                tracing::error!(path = ?path, error = %e, "cannot write the auth epoch file");
            }
        }
    }

    /// The payload of this process's next notification, and its sequence number.
    pub(crate) fn next_notification(&self) -> Option<(String, u64)> {
        match &*self.inner {
            Inner::Notified(n) => {
                let seq = n.sent.fetch_add(1, Ordering::AcqRel) + 1;
                // Our own caches must not serve the old data meanwhile either.
                n.value.fetch_add(1, Ordering::AcqRel);
                Some((format!("{}:{seq}", n.instance), seq))
            }
            _ => None,
        }
    }

    /// Waits until this process's listener has seen its notification `seq` (or [`ECHO_WAIT`]
    /// passed, or the listener is down — then every instance re-validates anyway).
    pub(crate) async fn wait_for_echo(&self, seq: u64) {
        let Inner::Notified(n) = &*self.inner else {
            return;
        };
        let _ = tokio::time::timeout(ECHO_WAIT, async {
            loop {
                let notified = n.echo.notified();
                if n.echoed.load(Ordering::Acquire) >= seq || !n.connected.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    fn notified_state(&self) -> Option<&Notified> {
        match &*self.inner {
            Inner::Notified(n) => Some(n),
            _ => None,
        }
    }
}

/// Keeps a `LISTEN flowgate_changes` connection to `url` open for as long as the process runs,
/// reconnecting after any failure. Spawned by `Store::start_listener` on PostgreSQL.
pub(crate) async fn run_listener(epoch: AuthEpoch, url: String) {
    let Some(state) = epoch.notified_state() else {
        return;
    };
    let mut logged_down = false;
    loop {
        match listen_until_lost(state, &url).await {
            Ok(()) => {
                tracing::warn!(
                    "lost the PostgreSQL notification connection; caches are bypassed until it is back"
                );
                logged_down = false;
            }
            Err(e) if !logged_down => {
                tracing::warn!(error = %e, "cannot listen for changes on PostgreSQL; caches are bypassed until it works");
                logged_down = true;
            }
            Err(_) => {}
        }
        state.connected.store(false, Ordering::Release);
        state.echo.notify_waiters();
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// One connection's life: `Err` when it could not be set up, `Ok` when it was lost later.
async fn listen_until_lost(state: &Notified, url: &str) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    // Anything announced while we were not listening is lost: treat it as "everything changed".
    state.value.fetch_add(1, Ordering::AcqRel);
    state.connected.store(true, Ordering::Release);
    tracing::info!("listening for changes on PostgreSQL");
    let own_prefix = format!("{}:", state.instance);
    loop {
        let next = tokio::time::timeout(LISTENER_PING, listener.try_recv()).await;
        match next {
            Ok(Ok(Some(notification))) => {
                state.value.fetch_add(1, Ordering::AcqRel);
                if let Some(seq) = notification
                    .payload()
                    .strip_prefix(&own_prefix)
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    state.echoed.fetch_max(seq, Ordering::AcqRel);
                    state.echo.notify_waiters();
                }
            }
            // `None`: the connection closed; sqlx would reconnect silently on the next call,
            // but we must know, to bypass caches meanwhile.
            Ok(Ok(None)) | Ok(Err(_)) => return Ok(()),
            Err(_idle) => {
                let ping = tokio::time::timeout(LISTENER_PING, (&mut listener).execute("SELECT 1"));
                if !matches!(ping.await, Ok(Ok(_))) {
                    return Ok(());
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A change written to the file by anyone (here a second handle, as another process's
    /// `flowgate api-key revoke` would) is seen by the very next read through the mapping.
    #[test]
    fn the_epoch_file_is_read_through_its_mapping() {
        let dir = std::env::temp_dir().join(format!("fg-epoch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("t.db");
        let epoch = AuthEpoch::for_database_file(&db).unwrap();
        assert!(matches!(&*epoch.inner, Inner::File { map: Some(_), .. }));
        assert_eq!(epoch.current(), 0, "a new file: no change yet");
        let other = AuthEpoch::for_database_file(&db).unwrap();
        other.bump_file();
        let seen = epoch.current();
        assert_ne!(seen, 0);
        assert_eq!(seen, other.current());
        let path = dir.join("t.db-authepoch");
        let writer = OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_at(&42u64.to_le_bytes(), 0).unwrap();
        assert_eq!(epoch.current(), 42);
        epoch.bump_file();
        assert_ne!(other.current(), 42);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        drop((epoch, other));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_disconnected_listener_bypasses_caches() {
        let e = AuthEpoch::notified();
        let (a, b) = (e.current(), e.current());
        assert_ne!(a, b, "not listening: every read is new");
        assert!(!e.is_live());
        let n = e.notified_state().unwrap();
        n.connected.store(true, Ordering::Release);
        let (c, d) = (e.current(), e.current());
        assert_eq!(c, d, "listening: stable until a change");
        let (payload, seq) = e.next_notification().unwrap();
        assert_eq!(payload, format!("{}:1", n.instance));
        assert_eq!(seq, 1);
        assert_ne!(e.current(), c, "our own change drops our caches at once");
    }
}
