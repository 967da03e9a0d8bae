//! SQLite's message writer: one OS thread owning one connection, taking batches straight from
//! the message queue ([`crate::message_queue`]).
//!
//! Why not the sqlx pool like every other write: through sqlx each statement of a batch (BEGIN,
//! every INSERT, COMMIT) is a round trip to sqlx's worker thread and back to the async task, and
//! on a busy two-core server those wake-ups, not SQLite, were most of the cost of storing a run's
//! messages (about 100 µs of CPU per run, and runs waiting on the writer left a third of the
//! CPU idle). Here the thread runs BEGIN, one cached prepared upsert per row and COMMIT back to
//! back, then answers each row's receipt itself, and takes whatever was queued meanwhile.
//!
//! The thread is woken by whoever queues rows only when it sleeps deeply (idle for a while).
//! Right after a batch it sleeps lightly: rows queued then wait until an async worker runs out
//! of work ([`wake_deferred_writers`], the runtime's park hook), or [`LIGHT_SLEEP`] at most, so
//! that the batch is written while the CPU has nothing else to do and carries every run that
//! finished meanwhile. See [`take`].
//!
//! The WAL is kept bounded by a [`Checkpointer`] with a connection of its own, and without
//! the writer ever waiting for the disk: see there. The writer's connection writes the WAL
//! through [`crate::wal_vfs`], one `pwrite` per transaction instead of two per page.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::message_queue::{MessageReceipt, Queued, answer, batches, enqueue, refused};
use crate::messages::{MessageRow, batch_outcome};
use crate::scopes::ScopeCache;
use crate::{Result, StoreError};

/// What waits for the writer thread.
#[derive(Default)]
struct Inbox {
    rows: Vec<Queued>,
    /// Answered once everything queued before them is written.
    flushes: Vec<oneshot::Sender<()>>,
    /// Set by `close`: the thread writes what is queued, answers, and ends; rows queued later
    /// are refused.
    closing: Option<oneshot::Sender<()>>,
    closed: bool,
    /// How the thread waits on `Shared::ready`: only a deep sleep needs queuing to wake it (a
    /// condition variable's notify is a system call even when nobody waits).
    sleep: Sleep,
    /// Rows were queued during a light sleep and the thread left asleep: counted once in
    /// [`DEFERRED`] until the thread wakes.
    deferred: bool,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum Sleep {
    #[default]
    Awake,
    /// A timed wait right after a batch ([`LIGHT_SLEEP`]): rows may wait for an idle worker.
    Light,
    /// Idle for a while: the next row wakes the thread.
    Deep,
}

impl Inbox {
    /// Marks the thread awake (the caller notifies it, or is it).
    fn wake(&mut self) {
        self.sleep = Sleep::Awake;
        if self.deferred {
            self.deferred = false;
            DEFERRED.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether what was just queued must wake the thread now: it sleeps and has work, and
    /// the work cannot wait (a deep sleep, a flush or a close). Rows queued during a light
    /// sleep are left for an idle worker instead, and counted as deferred.
    fn needs_wake(&mut self) -> bool {
        if self.sleep == Sleep::Awake || !self.has_work() {
            return false;
        }
        let urgent = !self.flushes.is_empty() || self.closing.is_some();
        if self.sleep == Sleep::Deep || urgent {
            return true;
        }
        if !self.deferred {
            self.deferred = true;
            DEFERRED.fetch_add(1, Ordering::AcqRel);
        }
        false
    }

    /// Whether the thread has something to do: rows queued, or a flush or close waiting.
    fn has_work(&self) -> bool {
        !self.rows.is_empty() || !self.flushes.is_empty() || self.closing.is_some()
    }
}

struct Shared {
    inbox: Mutex<Inbox>,
    ready: Condvar,
    /// [`LIGHT_SLEEP`]; longer in tests that need a deferred row to stay deferred.
    light_sleep: Duration,
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the inbox, then wakes the thread if it sleeps and now has work.
    fn post<T>(&self, f: impl FnOnce(&mut Inbox) -> T) -> T {
        let (out, wake) = {
            let mut inbox = self.inbox();
            let out = f(&mut inbox);
            let wake = inbox.needs_wake();
            if wake {
                inbox.wake();
            }
            (out, wake)
        };
        if wake {
            self.ready.notify_one();
        }
        out
    }
}

/// Longest a row queued during a light sleep waits for the thread when no worker runs out of
/// work meanwhile (a runtime without the park hook, or one that never idles).
const LIGHT_SLEEP: Duration = Duration::from_millis(1);
/// Light sleeps in a row before the thread sleeps deeply: after 50 ms without rows, the first
/// row wakes it at once, so an idle server answers a lone run without waiting.
const LIGHT_SLEEPS: u32 = 50;

/// Writers in light sleep with rows waiting: lets the park hook return at once (one atomic
/// load) when there are none, which is nearly every time a worker parks.
static DEFERRED: AtomicUsize = AtomicUsize::new(0);
/// Every message writer of the process (a process may open several stores, tests do).
static WRITERS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Wakes each message writer that sleeps lightly with rows queued. For the async runtime's
/// `on_thread_park` hook: a worker about to park has nothing else to do, so the batch is
/// written now, on CPU that would otherwise idle, and holds every run queued until then.
///
/// Why: a writer woken by the first row of each batch wrote 2-4 runs per transaction with
/// chat-echo at 16 connections, each transaction rewriting ~5 pages (~20 KB of WAL) and paying
/// its fixed cost. Leaving the rows for an idle worker wrote ~11 runs per transaction, and
/// runs/s rose by a fifth (BENCHMARKS.md, "Run"). An earlier wait, for a number of rows or a
/// timeout, held runs back in lock-step with the CPU idle (see [`take`]); this one ends as soon
/// as the CPU would idle.
pub fn wake_deferred_writers() {
    if DEFERRED.load(Ordering::Acquire) == 0 {
        return;
    }
    let writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
    for shared in writers.iter().filter_map(Weak::upgrade) {
        let wake = {
            let mut inbox = shared.inbox();
            let wake = inbox.deferred;
            if wake {
                inbox.wake();
            }
            wake
        };
        if wake {
            shared.ready.notify_one();
        }
    }
}

/// The queuing side; cheap to share.
pub(crate) struct SqliteMessageWriter {
    shared: Arc<Shared>,
    /// Held by the writer thread while it writes a batch; the checkpointer takes it for the
    /// short last pass that lets the log start over.
    gate: Arc<Mutex<()>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteMessageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteMessageWriter")
    }
}

impl SqliteMessageWriter {
    /// Opens the connection (the database file must exist) and starts the thread.
    pub(crate) fn start(path: &Path) -> Result<Self> {
        Self::start_with(path, LIGHT_SLEEP)
    }

    fn start_with(path: &Path, light_sleep: Duration) -> Result<Self> {
        let vfs = crate::wal_vfs::register().map_err(StoreError::Other)?;
        let conn = open(path, Some(vfs)).map_err(|e| unavailable(path, e))?;
        let shared = Arc::new(Shared {
            inbox: Mutex::default(),
            ready: Condvar::new(),
            light_sleep,
        });
        {
            let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
            writers.retain(|w| w.strong_count() > 0);
            writers.push(Arc::downgrade(&shared));
        }
        let gate = Arc::new(Mutex::new(()));
        let (thread_shared, thread_gate) = (shared.clone(), gate.clone());
        std::thread::Builder::new()
            .name("sqlite-messages".into())
            .spawn(move || run(conn, &thread_shared, &thread_gate))
            .map_err(|e| StoreError::Other(format!("cannot start the message writer: {e}")))?;
        Ok(Self {
            shared,
            gate,
            path: path.to_owned(),
        })
    }

    /// A checkpointer for this writer's database, on a connection of its own.
    pub(crate) fn checkpointer(&self) -> Result<Checkpointer> {
        Ok(Checkpointer {
            conn: Mutex::new(open(&self.path, None).map_err(|e| unavailable(&self.path, e))?),
            gate: self.gate.clone(),
        })
    }

    /// See [`crate::Store::queue_messages`]: rows queued together are taken together.
    pub(crate) fn queue(&self, rows: Vec<MessageRow>) -> Vec<MessageReceipt> {
        self.shared.post(|inbox| {
            if inbox.closed {
                refused(rows.len())
            } else {
                enqueue(rows, &mut inbox.rows)
            }
        })
    }

    /// Returns once everything queued before is written.
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        let posted = self.shared.post(|inbox| {
            if inbox.closed {
                return false;
            }
            inbox.flushes.push(done);
            true
        });
        if posted {
            let _ = flushed.await;
        }
    }

    /// Refuses new rows, writes the queued ones, then closes the connection.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        let posted = self.shared.post(|inbox| {
            if inbox.closed {
                return false;
            }
            inbox.closed = true;
            inbox.closing = Some(done);
            true
        });
        if posted {
            let _ = closed.await;
        }
    }
}

fn unavailable(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("database at {}: {e}", path.display()))
}

/// The same settings as the pool's connections (`pool_options`), automatic checkpoints off too:
/// commits never stop to copy the log into the database and fsync it. `vfs`: the writer's
/// ([`crate::wal_vfs`]); `None` for SQLite's default.
fn open(path: &Path, vfs: Option<&str>) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs)?,
        None => Connection::open_with_flags(path, flags)?,
    };
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
         PRAGMA busy_timeout=5000; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY; \
         PRAGMA wal_autocheckpoint=0;",
    )?;
    Ok(conn)
}

fn run(mut conn: Connection, shared: &Shared, gate: &Mutex<()>) {
    let mut scopes = ScopeCache::default();
    loop {
        let (rows, flushes, closing) = take(shared);
        for batch in batches(rows) {
            let results = {
                let _writing = gate.lock().unwrap_or_else(|e| e.into_inner());
                write_with_fallback(&mut conn, &mut scopes, &batch)
            };
            answer(batch, results);
        }
        for done in flushes {
            let _ = done.send(());
        }
        if let Some(done) = closing {
            drop(conn);
            let _ = done.send(());
            return;
        }
    }
}

/// The next batch: everything queued, once the thread is woken for it (or a flush or close).
///
/// Rows queued while a batch is being written make the next batch, taken at once. With
/// nothing queued the thread sleeps lightly, [`LIGHT_SLEEP`] at a time and [`LIGHT_SLEEPS`]
/// times, then deeply. Rows queued during a light sleep do not wake it: the first async worker
/// that runs out of work does ([`wake_deferred_writers`]), or the end of the light sleep. So
/// while the CPU is busy with other runs, the finished ones gather, and the batch is written
/// when it would otherwise idle. During a deep sleep the first row wakes the thread.
///
/// An earlier version waited up to 400 µs for 24 rows while busy and 150 µs when idle. With
/// chat-echo at 16 connections that held the runs back in lock-step (a third of the CPU idle
/// while a batch waited for runs that were waiting on it): measured side by side, fresh servers
/// loaded in turn, 4 slices of 5 s each, 15,587-16,687 runs/s with the wait against
/// 19,809-20,893 without, p99 6.8-8.0 against 5.1-7.7 ms (BENCHMARKS.md, "Run"). The light
/// sleep differs in what ends it: not a count of rows, but the first moment a worker has
/// nothing else to do.
fn take(
    shared: &Shared,
) -> (
    Vec<Queued>,
    Vec<oneshot::Sender<()>>,
    Option<oneshot::Sender<()>>,
) {
    let mut inbox = shared.inbox();
    let mut light_sleeps = 0;
    while !inbox.has_work() {
        if light_sleeps < LIGHT_SLEEPS {
            light_sleeps += 1;
            inbox.sleep = Sleep::Light;
            inbox = shared
                .ready
                .wait_timeout(inbox, shared.light_sleep)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        } else {
            inbox.sleep = Sleep::Deep;
            inbox = shared.ready.wait(inbox).unwrap_or_else(|e| e.into_inner());
        }
    }
    inbox.wake();
    (
        std::mem::take(&mut inbox.rows),
        std::mem::take(&mut inbox.flushes),
        inbox.closing.take(),
    )
}

/// One transaction; if it fails for a row's sake, one transaction per row.
fn write_with_fallback(
    conn: &mut Connection,
    scopes: &mut ScopeCache,
    batch: &[Queued],
) -> Vec<Result<()>> {
    let written = write_batch(conn, scopes, batch).map_err(store_error);
    batch_outcome(written, batch.len()).unwrap_or_else(|| {
        batch
            .iter()
            .map(|q| write_batch(conn, scopes, std::slice::from_ref(q)).map_err(store_error))
            .collect()
    })
}

/// A new message's row; `?1`..`?11` as in [`UPDATE_SQL`]. `DO NOTHING` rather than the
/// pooled path's `DO UPDATE` (`messages::upsert_sql_for`): an upsert that may update is a
/// statement SQLite must be able to undo alone, so every one of them first copied each page it
/// changed into a statement journal (9 % of this thread's time in a profile of chat-echo at 16
/// connections: `subjournalPageIfRequired`, `memjrnlWrite`). A row whose id exists is updated
/// by a second statement; both together do what the upsert does.
const INSERT_SQL: &str = "INSERT INTO messages (id, user_id, flow_id, session_id, context_id, \
     timestamp, sender, sender_name, text, data, scope) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING";
/// An existing message's new version; another user's message of the same id is left alone.
const UPDATE_SQL: &str = "UPDATE messages SET flow_id = ?3, session_id = ?4, context_id = ?5, \
     timestamp = ?6, sender = ?7, sender_name = ?8, text = ?9, data = ?10, scope = ?11 \
     WHERE id = ?1 AND user_id = ?2";

fn write_batch(
    conn: &mut Connection,
    scopes: &mut ScopeCache,
    batch: &[Queued],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Scope ids read or created in this transaction: cached only once it committed.
    let mut learned = Vec::new();
    {
        let mut insert = tx.prepare_cached(INSERT_SQL)?;
        for (i, Queued { row: m, .. }) in batch.iter().enumerate() {
            let scope = match scopes.get(m) {
                Some(id) => id,
                None => {
                    let id = scope_id(&tx, m)?;
                    learned.push((i, id));
                    id
                }
            };
            let values = params![
                m.id,
                m.user_id,
                m.flow_id,
                m.session_id,
                m.context_id,
                m.timestamp,
                m.sender,
                m.sender_name,
                m.text,
                m.data,
                scope,
            ];
            if insert.execute(values)? == 0 {
                tx.prepare_cached(UPDATE_SQL)?.execute(values)?;
            }
        }
    }
    tx.commit()?;
    for (i, id) in learned {
        scopes.insert(&batch[i].row, id);
    }
    Ok(())
}

/// The id of `row`'s scope, created if it does not exist yet (this thread is the only writer
/// of messages, so nobody creates it meanwhile).
fn scope_id(tx: &rusqlite::Transaction<'_>, row: &MessageRow) -> rusqlite::Result<i64> {
    let (user, session, flow) = crate::scopes::key_of(row);
    let mut select = tx.prepare_cached(crate::scopes::SELECT_SQL)?;
    if let Some(id) = select
        .query_row(params![user, session, flow], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    tx.prepare_cached(crate::scopes::INSERT_SQL)?
        .execute(params![user, session, flow])?;
    select.query_row(params![user, session, flow], |r| r.get(0))
}

/// The store's error classes, as `From<sqlx::Error>` sorts them.
fn store_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        Some(ErrorCode::ConstraintViolation) if e.to_string().contains("UNIQUE") => {
            StoreError::Conflict(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

/// WAL size (4 KiB pages) past which the checkpointer makes the log start over: 16 MiB.
/// Measured with chat-echo at 16 connections (20 s each, same build): 2 MiB 8,180 runs/s, p99
/// 17.5 ms; 8 MiB 8,660, 18.4 ms; 16 MiB 10,380, 19.0 ms; 32 MiB 10,250, 26.3 ms; 64 MiB 9,750,
/// 37.1 ms. Every restart pauses the writer once, so a small log pauses it often; a large one
/// makes each checkpoint pass, and so the last, gated one, longer.
const WAL_RESTART_PAGES: i64 = 4096;
/// Ungated passes at most before the gated one.
const MAX_UNGATED_PASSES: u32 = 5;
/// A pass that found fewer new pages than this was short enough that the gated pass will be.
const SMALL_RESIDUE_PAGES: i64 = 64;

/// Copies SQLite's WAL into the database file, off the writer's path.
///
/// A PASSIVE checkpoint copies what it can without waiting for anyone, and fsyncs; but under a
/// steady stream of writes it never catches up with the end of the log (the writer appended
/// while it copied), so the log would only grow. Past [`WAL_RESTART_PAGES`] the checkpointer
/// therefore runs more passes, each copying what was appended during the previous one, and
/// then one last pass holding the writer's gate: nothing can be appended during it, so the
/// writer's next transaction starts the log over. The writer waits only for that last, small
/// pass (its fsyncs, of what it copied itself: about 2 ms on this machine's disk under load,
/// see [`ungated_pass`]), not for a whole checkpoint as when the writer checkpointed itself.
/// PASSIVE never waits for readers either: one that still reads an old snapshot only postpones
/// the restart to a later pass.
pub(crate) struct Checkpointer {
    conn: Mutex<Connection>,
    gate: Arc<Mutex<()>>,
}

impl Checkpointer {
    /// One pass (blocking: call it off the async workers).
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut log_pages = ungated_pass(&conn)?;
        if log_pages <= WAL_RESTART_PAGES {
            return Ok(());
        }
        let mut passes = 1;
        let mut copied = log_pages;
        // Each pass copies what the writer appended during the previous one; passes get shorter
        // until the writer had little time to append. When they stop getting shorter (the
        // writer appends faster than a pass copies), more passes would only let the log grow:
        // pause the writer now.
        while passes < MAX_UNGATED_PASSES {
            let next = ungated_pass(&conn)?;
            passes += 1;
            let appended = next - log_pages;
            log_pages = next;
            if appended < SMALL_RESIDUE_PAGES || appended >= copied {
                break;
            }
            copied = appended;
        }
        let _writer_paused = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        passive_checkpoint(&conn).map_err(store_error)?;
        Ok(())
    }
}

/// A PASSIVE checkpoint while the writer goes on, then an fsync of the database file; returns
/// the log's size in pages.
///
/// SQLite fsyncs the database file only after a pass that reached the end of the log, which
/// under steady writes is only the gated pass: that one then flushed every page the ungated
/// passes before it had copied, with the writer paused (measured with chat-echo at 16
/// connections: a median of 13.3 ms, 20.6 at most; run p99 11-17 ms). With the fsync here,
/// the gated pass flushes only the few pages it copies itself: 1.7 ms median, 4.8 at most;
/// run p99 3.4-7.5 ms in the same interleaved slices.
fn ungated_pass(conn: &Connection) -> Result<i64> {
    let pass = passive_checkpoint(conn).map_err(store_error)?;
    if pass.copied > 0 {
        sync_database(conn)?;
    }
    Ok(pass.log_pages)
}

struct Pass {
    /// Pages in the log.
    log_pages: i64,
    /// Of them, copied into the database file (by this pass or earlier ones).
    copied: i64,
}

fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<Pass> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Pass {
            log_pages: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// fsyncs the database file through SQLite's own file handle (`SQLITE_FCNTL_FILE_POINTER`):
/// a descriptor of our own would, once closed, drop every POSIX lock this process holds on
/// the file, SQLite's included.
fn sync_database(conn: &Connection) -> Result<()> {
    use rusqlite::ffi;
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the caller holds `conn` (open) for the whole call. SQLite writes into `file` the
    // main database's `sqlite3_file`, which the connection owns while it is open; calling its
    // xSync from the connection's thread is what SQLite itself does.
    let rc = unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&mut file as *mut *mut ffi::sqlite3_file).cast(),
        );
        let sync = file
            .as_ref()
            .and_then(|f| f.pMethods.as_ref())
            .and_then(|methods| methods.xSync);
        match (rc, sync) {
            (ffi::SQLITE_OK, Some(sync)) => sync(file, ffi::SQLITE_SYNC_NORMAL),
            (rc, _) => rc,
        }
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "cannot fsync the database file (SQLite error {rc})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::{MessageRow, StoreError};

    fn rows(batch: usize, n: usize, data: &str) -> Vec<MessageRow> {
        (0..n)
            .map(|i| MessageRow {
                id: format!("{batch:06}-{i:03}"),
                user_id: "u".into(),
                session_id: "s".into(),
                timestamp: (batch * 1000 + i) as i64,
                text: "t".into(),
                data: data.into(),
                ..Default::default()
            })
            .collect()
    }

    async fn message_count(store: &crate::Store) -> i64 {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
            .fetch_one(store.pool())
            .await
            .unwrap();
        count
    }

    /// A writer of its own on a fresh store's database, once its thread sleeps as `sleep` says.
    async fn writer_asleep(
        light_sleep: std::time::Duration,
        sleep: super::Sleep,
    ) -> (crate::Store, std::path::PathBuf, super::SqliteMessageWriter) {
        let (store, dir) = crate::test_support::sqlite_store(&["u"]).await;
        let writer =
            super::SqliteMessageWriter::start_with(&dir.join("t.db"), light_sleep).unwrap();
        let started = std::time::Instant::now();
        while writer.shared.inbox().sleep != sleep {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the thread never slept {sleep:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        (store, dir, writer)
    }

    /// Rows queued while the writer sleeps lightly stay queued (here for the 100 ms looked at;
    /// the light sleep is 60 s) until a worker runs out of work and calls
    /// `wake_deferred_writers`; a flush wakes the writer at once. Both write every row.
    #[tokio::test]
    async fn rows_queued_in_a_light_sleep_wait_for_an_idle_worker_and_a_flush_does_not() {
        let (store, dir, writer) =
            writer_asleep(std::time::Duration::from_secs(60), super::Sleep::Light).await;
        let bound = std::time::Duration::from_secs(20);

        let mut receipts = writer.queue(rows(1, 2, "{}"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            writer.shared.inbox().deferred,
            "the rows wait, counted as deferred"
        );
        assert!(super::DEFERRED.load(std::sync::atomic::Ordering::Acquire) >= 1);
        assert!(
            matches!(
                receipts[0].try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
            ),
            "written before any worker was idle"
        );
        assert_eq!(message_count(&store).await, 0);

        super::wake_deferred_writers();
        for receipt in receipts {
            let written = tokio::time::timeout(bound, receipt).await.expect("woken");
            assert!(matches!(written, Ok(Ok(()))), "{written:?}");
        }
        assert_eq!(message_count(&store).await, 2);
        assert!(!writer.shared.inbox().deferred);

        let receipts = writer.queue(rows(2, 3, "{}"));
        tokio::time::timeout(bound, writer.flush())
            .await
            .expect("a flush wakes the writer");
        for receipt in receipts {
            assert!(matches!(receipt.await, Ok(Ok(()))));
        }
        assert_eq!(message_count(&store).await, 5);
        tokio::time::timeout(bound, writer.close()).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Who wakes the thread: rows wake it from a deep sleep only; a flush or close from any
    /// sleep; nothing while it is awake (it takes the queue when its batch is written).
    #[test]
    fn rows_wake_a_deep_sleep_and_wait_out_a_light_one() {
        use super::{Inbox, Sleep};
        let row = || {
            let mut queue = Vec::new();
            let receipts = crate::message_queue::enqueue(rows(0, 1, "{}"), &mut queue);
            (queue, receipts)
        };

        let mut inbox = Inbox {
            sleep: Sleep::Deep,
            ..Inbox::default()
        };
        assert!(!inbox.needs_wake(), "nothing queued");
        let (queued, _receipts) = row();
        inbox.rows = queued;
        assert!(inbox.needs_wake());
        assert!(!inbox.deferred);

        let mut inbox = Inbox {
            sleep: Sleep::Awake,
            ..Inbox::default()
        };
        let (queued, _receipts) = row();
        inbox.rows = queued;
        assert!(!inbox.needs_wake(), "an awake writer takes the rows itself");

        let mut inbox = Inbox {
            sleep: Sleep::Light,
            ..Inbox::default()
        };
        let (queued, _receipts) = row();
        inbox.rows = queued;
        assert!(!inbox.needs_wake());
        assert!(inbox.deferred);
        assert!(!inbox.needs_wake(), "still left waiting, counted once");
        let (done, _flushed) = tokio::sync::oneshot::channel();
        inbox.flushes.push(done);
        assert!(inbox.needs_wake(), "a flush cannot wait");
        inbox.wake();
        assert!(!inbox.deferred);
        assert_eq!(inbox.sleep, Sleep::Awake);
    }

    /// After its light sleeps the writer sleeps deeply, and then the first row wakes it.
    #[tokio::test]
    async fn an_idle_writer_sleeps_deeply_and_the_first_row_wakes_it() {
        let (store, dir, writer) =
            writer_asleep(std::time::Duration::from_millis(1), super::Sleep::Deep).await;
        let receipts = writer.queue(rows(1, 1, "{}"));
        assert!(
            !writer.shared.inbox().deferred,
            "woken by the row, not left waiting"
        );
        for receipt in receipts {
            assert!(matches!(receipt.await, Ok(Ok(()))));
        }
        assert_eq!(message_count(&store).await, 1);
        writer.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The fsync after an ungated pass goes through SQLite's own handle of the database file,
    /// for a file and for a database without one.
    #[test]
    fn ungated_passes_fsync_the_database_file() {
        let dir = std::env::temp_dir().join(format!("fg-sync-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x);")
            .unwrap();
        let conn = super::open(&path, None).unwrap();
        conn.execute_batch("INSERT INTO t VALUES (1), (2);")
            .unwrap();
        assert!(super::ungated_pass(&conn).unwrap() > 0);
        super::sync_database(&conn).unwrap();
        let memory = rusqlite::Connection::open_in_memory().unwrap();
        super::sync_database(&memory).unwrap();
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The salts in a WAL file's header: SQLite changes them each time the log starts over.
    fn wal_salts(dir: &std::path::Path) -> [u8; 8] {
        use std::io::Read;
        let mut header = [0u8; 32];
        std::fs::File::open(dir.join("t.db-wal"))
            .unwrap()
            .read_exact(&mut header)
            .unwrap();
        header[16..24].try_into().unwrap()
    }

    /// Rows written back to back while the checkpointer runs beside them, as on a busy server:
    /// the WAL must start over (its header's salts change) while the writes go on, instead of
    /// growing with the data, and every row must be there. A checkpointer without its gated
    /// last pass never catches up with a writer this busy: the log never starts over (it held
    /// all 260 MB of a 200 MB run). Ends when the log started over; fails after 60 s or 400 MB
    /// of rows without.
    /// (An earlier version wrote a fixed 200 MB and compared the log's size with it: on a
    /// loaded CI machine the writes could end before the first gated pass did.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_continuous_writes_and_loses_nothing() {
        let (store, dir) = crate::test_support::sqlite_store(&["u"]).await;
        let checkpointer = store.sqlite_writer().checkpointer().unwrap();
        let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let still_writing = writing.clone();
        let background = std::thread::spawn(move || {
            while still_writing.load(std::sync::atomic::Ordering::Acquire) {
                checkpointer.checkpoint().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        let data = "x".repeat(4000);
        let per_batch = 50;
        let started = std::time::Instant::now();
        let mut batches = 0;
        let mut first_salts = None;
        loop {
            let results = store.upsert_messages(rows(batches, per_batch, &data)).await;
            assert!(
                results.iter().all(Result::is_ok),
                "batch {batches}: {results:?}"
            );
            batches += 1;
            let salts = wal_salts(&dir);
            if *first_salts.get_or_insert(salts) != salts {
                break;
            }
            let written = batches * per_batch * data.len();
            if started.elapsed() > std::time::Duration::from_secs(60) || written > 400_000_000 {
                let wal = std::fs::metadata(dir.join("t.db-wal")).unwrap().len();
                let _ = std::fs::remove_dir_all(&dir);
                panic!("the WAL did not start over: {written} bytes of rows, WAL {wal} bytes");
            }
        }
        writing.store(false, std::sync::atomic::Ordering::Release);
        background.join().unwrap();
        assert_eq!(message_count(&store).await, (batches * per_batch) as i64);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Queuing returns before anything is written; `flush_messages` returns only once every row
    /// queued before it is in the database, and `close` writes what is still queued before it
    /// refuses new rows: no acknowledged row is lost, no receipt is left unanswered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_and_close_write_everything_queued_before_them() {
        let (store, dir) = crate::test_support::sqlite_store(&["u"]).await;
        let mut receipts = Vec::new();
        for batch in 0..50 {
            receipts.extend(store.queue_messages(rows(batch, 7, "{}")));
        }
        store.flush_messages().await;
        assert_eq!(
            message_count(&store).await,
            350,
            "flush returned before the queue was written"
        );
        for r in crate::message_queue::settle(receipts).await {
            assert!(r.is_ok(), "{r:?}");
        }

        let last: Vec<_> = (50..80)
            .flat_map(|batch| store.queue_messages(rows(batch, 3, "{}")))
            .collect();
        store.close().await;
        for r in crate::message_queue::settle(last).await {
            assert!(
                r.is_ok(),
                "a row queued before close was not written: {r:?}"
            );
        }
        let after = store.upsert_messages(rows(99, 2, "{}")).await;
        assert!(
            after
                .iter()
                .all(|r| matches!(r, Err(StoreError::Unavailable(_)))),
            "{after:?}"
        );
        let conn = rusqlite::Connection::open(dir.join("t.db")).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 350 + 90);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A row that breaks a constraint fails alone; after `close` writes are refused, not lost
    /// silently.
    #[tokio::test]
    async fn a_bad_row_fails_alone_and_a_closed_writer_refuses() {
        let (store, dir) = crate::test_support::sqlite_store(&["u"]).await;
        let mut batch = rows(0, 3, "{}");
        batch[1].user_id = "nobody".into(); // foreign key: no such user
        let results = store.upsert_messages(batch).await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(
            matches!(&results[1], Err(StoreError::Other(e)) if e.contains("FOREIGN KEY")),
            "{results:?}"
        );
        store.close().await;
        let refused = store.upsert_messages(rows(1, 1, "{}")).await;
        assert!(
            matches!(&refused[..], [Err(StoreError::Unavailable(_))]),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
