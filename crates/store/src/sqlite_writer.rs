//! SQLite's message writer: one OS thread owning one connection, fed batches over a channel.
//!
//! Why not the sqlx pool like every other write: through sqlx each statement of a batch (BEGIN,
//! every INSERT, COMMIT) is a round trip to sqlx's worker thread and back to the async task, and
//! on a busy two-core server those wake-ups, not SQLite, were most of the cost of storing a run's
//! messages (about 100 µs of CPU per run, and runs waiting on the writer left a third of the
//! CPU idle). Here a whole batch is one hand-off: the thread runs BEGIN, one cached prepared
//! upsert per row and COMMIT back to back, and answers once.
//!
//! The WAL is kept bounded by a [`Checkpointer`] with a connection of its own, and without
//! the writer ever waiting for the disk: see there.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ErrorCode, OpenFlags, params};
use tokio::sync::oneshot;

use crate::messages::{MessageRow, batch_outcome, upsert_sql_for};
use crate::{Result, StoreError};

enum Job {
    Write {
        rows: Vec<MessageRow>,
        done: oneshot::Sender<Vec<Result<()>>>,
    },
    /// Finish what was sent before, close the connection, end the thread.
    Close(oneshot::Sender<()>),
}

/// The sending side; cheap to share.
pub(crate) struct SqliteMessageWriter {
    jobs: mpsc::Sender<Job>,
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
        let conn = open(path).map_err(|e| unavailable(path, e))?;
        let (jobs, receiver) = mpsc::channel();
        let gate = Arc::new(Mutex::new(()));
        let writer_gate = gate.clone();
        std::thread::Builder::new()
            .name("sqlite-messages".into())
            .spawn(move || run(conn, receiver, &writer_gate))
            .map_err(|e| StoreError::Other(format!("cannot start the message writer: {e}")))?;
        Ok(Self {
            jobs,
            gate,
            path: path.to_owned(),
        })
    }

    /// A checkpointer for this writer's database, on a connection of its own.
    pub(crate) fn checkpointer(&self) -> Result<Checkpointer> {
        Ok(Checkpointer {
            conn: Mutex::new(open(&self.path).map_err(|e| unavailable(&self.path, e))?),
            gate: self.gate.clone(),
        })
    }

    /// See [`crate::Store::upsert_messages`].
    pub(crate) async fn write(&self, rows: Vec<MessageRow>) -> Vec<Result<()>> {
        let n = rows.len();
        let all_refused = || (0..n).map(|_| Err(closed())).collect();
        let (done, answer) = oneshot::channel();
        if self.jobs.send(Job::Write { rows, done }).is_err() {
            return all_refused();
        }
        answer.await.unwrap_or_else(|_| all_refused())
    }

    /// Waits for the writes sent so far, then closes the connection.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Job::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn unavailable(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("database at {}: {e}", path.display()))
}

fn closed() -> StoreError {
    StoreError::Unavailable("the message writer is closed".into())
}

/// The same settings as the pool's connections (`pool_options`), minus automatic checkpoints:
/// commits never stop to copy the log into the database and fsync it.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
         PRAGMA busy_timeout=5000; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY; \
         PRAGMA wal_autocheckpoint=0;",
    )?;
    Ok(conn)
}

fn run(mut conn: Connection, jobs: mpsc::Receiver<Job>, gate: &Mutex<()>) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Write { rows, done } => {
                let results = {
                    let _writing = gate.lock().unwrap_or_else(|e| e.into_inner());
                    write_with_fallback(&mut conn, &rows)
                };
                let _ = done.send(results);
            }
            Job::Close(done) => {
                drop(conn);
                let _ = done.send(());
                return;
            }
        }
    }
}

/// One transaction; if it fails for a row's sake, one transaction per row.
fn write_with_fallback(conn: &mut Connection, rows: &[MessageRow]) -> Vec<Result<()>> {
    let batch = write_batch(conn, rows).map_err(store_error);
    batch_outcome(batch, rows.len()).unwrap_or_else(|| {
        rows.iter()
            .map(|row| write_batch(conn, std::slice::from_ref(row)).map_err(store_error))
            .collect()
    })
}

fn write_batch(conn: &mut Connection, rows: &[MessageRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut upsert = tx.prepare_cached(upsert_sql_for(1))?;
        for m in rows {
            upsert.execute(params![
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
            ])?;
        }
    }
    tx.commit()
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
/// pass (its fsyncs: a few milliseconds on this machine's disk under load), not for a whole
/// checkpoint as when the writer checkpointed itself. PASSIVE never waits for readers either:
/// one that still reads an old snapshot only postpones the restart to a later pass.
pub(crate) struct Checkpointer {
    conn: Mutex<Connection>,
    gate: Arc<Mutex<()>>,
}

impl Checkpointer {
    /// One pass (blocking: call it off the async workers).
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut log_pages = passive_checkpoint(&conn).map_err(store_error)?;
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
            let next = passive_checkpoint(&conn).map_err(store_error)?;
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

/// Runs a PASSIVE checkpoint; returns the log's size in pages.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
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
        let checkpointer = store
            .sqlite_writer
            .as_ref()
            .unwrap()
            .checkpointer()
            .unwrap();
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
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(count, (batches * per_batch) as i64);
        store.close().await;
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
