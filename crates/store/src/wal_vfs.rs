//! A SQLite VFS for the message writer's connection that writes each transaction's WAL frames
//! with one `pwrite` instead of two per frame.
//!
//! Why: SQLite writes every frame of the write-ahead log as two system calls, its 24-byte
//! header and then its page, so a transaction of ten pages is twenty writes into the page
//! cache, each finding, locking and dirtying the pages it touches. Under chat-echo at 16
//! connections those writes were 40 % of the message writer's CPU (`perf`: `walWriteOneFrame`),
//! 117,000 `pwrite` calls a second; a frame costs 1.3-2.0 µs written in two calls and 0.6 µs as
//! part of one. With this VFS: 8,800 calls a second, the writer's CPU per run 28 → 24 µs, and
//! the machine's 87 → 83 µs (BENCHMARKS.md, "Run").
//!
//! How, and why it is safe: the VFS wraps the default one (`unix`) and changes nothing but the
//! WAL file's `xWrite`. A frame header and the page after it are held in a buffer instead of
//! written, as long as they continue the bytes already held; the buffer is written, in one
//! call, as soon as the page of a *commit* frame (a header whose "database size after commit"
//! field is not zero: https://sqlite.org/fileformat2.html#walformat) has been added, before
//! that `xWrite` returns. So when SQLite goes on to publish the transaction in the WAL index
//! (what makes it visible to any other connection), the log file holds exactly the bytes it
//! would hold without this VFS, and a failed write fails the commit as it would have. Every
//! other operation on the WAL file (read, sync, size, truncate, lock, file control, close), and
//! any write that does not continue the buffer or is not a frame header or its page (the log's
//! own header, say), writes what is held first, then runs as before: the file never differs
//! from the unbuffered one when anything can look at it. What is held before a commit frame is
//! only ever frames of a transaction nobody can see yet.
//!
//! Only the writer's connection opens files through this VFS; every other connection (pool,
//! checkpointer) uses the default VFS on the same files, which is fine: the real files are the
//! `unix` VFS's own, with its locking shared across the process as always.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// This VFS's name, for `Connection::open_with_flags_and_vfs`.
pub(crate) const NAME: &str = "flowgate-wal-batch";
const NAME_C: &CStr = c"flowgate-wal-batch";

/// A WAL frame header's size (the WAL file format's).
const FRAME_HEADER: usize = 24;
/// Past this many buffered bytes the buffer is written even without a commit frame (a huge
/// transaction need not be held in memory whole).
const MAX_BUFFERED: usize = 4 << 20;
/// The most one call to the real xWrite is given: the `unix` VFS writes at most 128 KiB - 1
/// bytes per call (`seekAndWriteFd` masks the length with 0x1ffff) and reports a larger write
/// as a full disk.
const MAX_WRITE: usize = (128 << 10) - 4096;

/// Registers the VFS (once per process); returns its name, or why it could not be registered.
pub(crate) fn register() -> Result<&'static str, String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, which lives as long as
            // the process; the struct we register is leaked, so it does too.
            unsafe {
                let real = ffi::sqlite3_vfs_find(std::ptr::null());
                if real.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                // Every method but xOpen is the real VFS's own: the `unix` VFS's ignore which
                // VFS object they are called with, except xOpen, which we call with the real one.
                let mut vfs: ffi::sqlite3_vfs = *real;
                vfs.szOsFile = (*real).szOsFile + std::mem::size_of::<WalFile>() as c_int;
                vfs.zName = NAME_C.as_ptr();
                vfs.pAppData = real.cast();
                vfs.pNext = std::ptr::null_mut();
                vfs.xOpen = Some(open);
                let vfs = Box::leak(Box::new(vfs));
                match ffi::sqlite3_vfs_register(vfs, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    rc => Err(format!("cannot register SQLite VFS {NAME} (error {rc})")),
                }
            }
        })
        .clone()
        .map(|()| NAME)
}

/// A WAL file as this VFS opens it: the buffer, then the real (`unix`) file right after it in
/// the same allocation (SQLite allocates `szOsFile` bytes per file).
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    /// Bytes held back, and where in the file they go.
    held: Vec<u8>,
    held_at: i64,
    /// The last write held was a frame header (its page comes next); `commit`: of a commit frame.
    after_header: bool,
    commit: bool,
    /// Calls to the real xWrite so far (what the tests count).
    writes: u64,
}

impl WalFile {
    /// The real file, right after this struct (its size is a multiple of 8, SQLite's alignment).
    fn real(&mut self) -> *mut ffi::sqlite3_file {
        // SAFETY: `open` placed the real file there, inside the `szOsFile` bytes SQLite gave us.
        unsafe { (self as *mut Self).add(1).cast() }
    }

    fn real_methods(&mut self) -> &ffi::sqlite3_io_methods {
        // SAFETY: the real xOpen succeeded (or this file would not have our methods), so its
        // pMethods points to the `unix` VFS's static method table.
        unsafe { &*(*self.real()).pMethods }
    }

    /// Writes what is held: in one call, or in [`MAX_WRITE`] pieces when it is larger.
    fn write_held(&mut self) -> c_int {
        let write = self.real_methods().xWrite.expect("a file can be written");
        let real = self.real();
        let mut rc = ffi::SQLITE_OK;
        for (i, piece) in self.held.chunks(MAX_WRITE).enumerate() {
            let at = self.held_at + (i * MAX_WRITE) as i64;
            // SAFETY: the real file is open; `piece` is valid for its length during the call.
            rc = unsafe { write(real, piece.as_ptr().cast(), piece.len() as c_int, at) };
            self.writes += 1;
            if rc != ffi::SQLITE_OK {
                break;
            }
        }
        self.held.clear();
        self.after_header = false;
        self.commit = false;
        rc
    }

    /// Whether a write of `data` at `offset` is held back: a frame header, or the page after a
    /// held header, that continues the held bytes (or starts them).
    fn holds(&self, data: &[u8], offset: i64) -> bool {
        let continues = self.held.is_empty() || offset == self.held_at + self.held.len() as i64;
        continues && (data.len() == FRAME_HEADER || self.after_header)
    }
}

/// `xOpen`: WAL files get [`WalFile`]; every other file is the real VFS's, untouched.
unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY (whole function): SQLite hands us `szOsFile` bytes at `file`, 8-byte aligned;
    // `pAppData` is the real VFS (see `register`).
    unsafe {
        let real_vfs: *mut ffi::sqlite3_vfs = (*vfs).pAppData.cast();
        let real_open = (*real_vfs).xOpen.expect("a VFS can open files");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return real_open(real_vfs, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        std::ptr::write(
            wal,
            WalFile {
                base: ffi::sqlite3_file {
                    pMethods: std::ptr::null(),
                },
                held: Vec::new(),
                held_at: 0,
                after_header: false,
                commit: false,
                writes: 0,
            },
        );
        let rc = real_open(real_vfs, name, (*wal).real(), flags, out_flags);
        if rc != ffi::SQLITE_OK || (*(*wal).real()).pMethods.is_null() {
            // SQLite calls no method of a file whose open failed: drop our part here.
            std::ptr::drop_in_place(wal);
            (*file).pMethods = std::ptr::null();
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_CANTOPEN
            } else {
                rc
            };
        }
        (*wal).base.pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// The [`WalFile`] behind a file SQLite hands to one of [`WAL_METHODS`].
///
/// # Safety
/// `file` must be a WAL file opened by [`open`] and not yet closed.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    unsafe { &mut *file.cast::<WalFile>() }
}

/// Writes what is held, then runs `f` on the real file (every WAL method but xWrite).
macro_rules! after_held {
    ($file:expr, $method:ident, $($arg:expr),*) => {{
        let w = unsafe { wal($file) };
        let rc = w.write_held();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let real = w.real();
        match w.real_methods().$method {
            // SAFETY: the real file is open, and the arguments are SQLite's own.
            Some(f) => unsafe { f(real, $($arg),*) },
            None => ffi::SQLITE_OK,
        }
    }};
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let w = unsafe { wal(file) };
    // SAFETY: SQLite passes `amount` readable bytes at `buf`.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), amount.max(0) as usize) };
    if !w.holds(data, offset) {
        let rc = w.write_held();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if !w.holds(data, offset) {
            w.writes += 1;
            let real = w.real();
            let write = w.real_methods().xWrite.expect("a file can be written");
            // SAFETY: the real file is open; the arguments are SQLite's own.
            return unsafe { write(real, buf, amount, offset) };
        }
    }
    if w.held.is_empty() {
        w.held_at = offset;
    }
    w.held.extend_from_slice(data);
    if data.len() == FRAME_HEADER && !w.after_header {
        // A frame header: bytes 4..8 are the database size after a commit, 0 otherwise.
        w.after_header = true;
        w.commit = data[4..8] != [0, 0, 0, 0];
        return ffi::SQLITE_OK;
    }
    // The page of the header before it.
    w.after_header = false;
    if w.commit || w.held.len() >= MAX_BUFFERED {
        return w.write_held();
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let w = unsafe { wal(file) };
    let held = w.write_held();
    let real = w.real();
    let close = w.real_methods().xClose;
    // SAFETY: the real file is open; closing it is the last call it gets.
    let closed = close.map_or(ffi::SQLITE_OK, |f| unsafe { f(real) });
    // SAFETY: written by `open`; SQLite frees the memory after xClose, and calls nothing more.
    unsafe { std::ptr::drop_in_place(file.cast::<WalFile>()) };
    if held != ffi::SQLITE_OK { held } else { closed }
}

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    after_held!(file, xRead, buf, amount, offset)
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    after_held!(file, xTruncate, size)
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_held!(file, xSync, flags)
}

unsafe extern "C" fn wal_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    after_held!(file, xFileSize, size)
}

unsafe extern "C" fn wal_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    after_held!(file, xLock, level)
}

unsafe extern "C" fn wal_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    after_held!(file, xUnlock, level)
}

unsafe extern "C" fn wal_check_reserved_lock(
    file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    after_held!(file, xCheckReservedLock, out)
}

unsafe extern "C" fn wal_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    let w = unsafe { wal(file) };
    let rc = w.write_held();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let real = w.real();
    match w.real_methods().xFileControl {
        // SAFETY: the real file is open, and the arguments are SQLite's own.
        Some(f) => unsafe { f(real, op, arg) },
        None => ffi::SQLITE_NOTFOUND,
    }
}

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let w = unsafe { wal(file) };
    let real = w.real();
    // SAFETY: the real file is open.
    w.real_methods()
        .xSectorSize
        .map_or(4096, |f| unsafe { f(real) })
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let w = unsafe { wal(file) };
    let real = w.real();
    // SAFETY: the real file is open.
    w.real_methods()
        .xDeviceCharacteristics
        .map_or(0, |f| unsafe { f(real) })
}

/// Version 1: SQLite calls the shared-memory and memory-map methods on the database file only.
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags, params};

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("fg-walvfs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A connection through this VFS, and the database created for it (WAL mode).
    fn writer(dir: &std::path::Path, cache_pages: i64) -> Connection {
        let path = dir.join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
                 CREATE INDEX t_v ON t(v);",
            )
            .unwrap();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags_and_vfs(&path, flags, super::register().unwrap()).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;
             PRAGMA cache_size={cache_pages}; PRAGMA temp_store=MEMORY;"
        ))
        .unwrap();
        conn
    }

    fn insert(conn: &mut Connection, from: i64, n: i64, size: usize) {
        let tx = conn.transaction().unwrap();
        for k in from..from + n {
            tx.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                params![k, format!("{k:08}{}", "x".repeat(size))],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    fn count(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// Every commit is in the WAL file when it returns: another connection (default VFS) sees
    /// it at once, and a copy of the files taken while the writer is still open (as a crash
    /// would leave them) recovers every committed row from the log's bytes alone.
    #[test]
    fn commits_are_in_the_log_when_they_return() {
        let dir = temp_dir();
        let mut conn = writer(&dir, 2000);
        let mut rows = 0;
        for (i, size) in [10, 100, 3000, 10, 9000]
            .into_iter()
            .cycle()
            .take(60)
            .enumerate()
        {
            insert(&mut conn, rows, 1 + i as i64 % 7, size);
            rows += 1 + i as i64 % 7;
            assert_eq!(count(&dir.join("t.db")), rows, "after commit {i}");
        }
        let copy = dir.join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["t.db", "t.db-wal"] {
            std::fs::copy(dir.join(f), copy.join(f)).unwrap();
        }
        assert_eq!(
            count(&copy.join("t.db")),
            rows,
            "recovered from the copied log"
        );
        drop(conn);
        assert_eq!(count(&dir.join("t.db")), rows);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Calls to the real xWrite made for `conn`'s WAL file so far.
    fn real_writes(conn: &Connection) -> u64 {
        let mut file: *mut rusqlite::ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: `conn` is open; in WAL mode SQLite writes the WAL's file object into `file`,
        // which this VFS opened as a `WalFile`.
        unsafe {
            let rc = rusqlite::ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                rusqlite::ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                (&mut file as *mut *mut rusqlite::ffi::sqlite3_file).cast(),
            );
            assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
            (*file.cast::<super::WalFile>()).writes
        }
    }

    /// A commit of many pages is one write into the log (it was two per page), or one per
    /// [`super::MAX_WRITE`] bytes.
    #[test]
    fn a_commit_is_one_write() {
        let dir = temp_dir();
        let mut conn = writer(&dir, 2000);
        insert(&mut conn, 0, 5, 10); // the log's header, written with the first commit
        for (from, size) in [(5, 600), (100, 2000), (200, 3500), (300, 9000)] {
            let wal_size = || std::fs::metadata(dir.join("t.db-wal")).unwrap().len();
            let (before, size_before) = (real_writes(&conn), wal_size());
            insert(&mut conn, from, 20, size);
            let frames = (wal_size() - size_before) / (24 + 4096);
            assert!(frames > 3, "{frames} frames");
            // One write, or one per MAX_WRITE bytes when the commit is larger.
            let pieces = (frames * (24 + 4096)).div_ceil(super::MAX_WRITE as u64);
            assert_eq!(
                real_writes(&conn) - before,
                pieces,
                "{frames} frames of {size}-byte rows"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A transaction larger than the buffer (written part by part), and one whose pages spill
    /// into the log before it is rolled back (frames that no commit follows): the log stays
    /// consistent and only committed rows are there.
    #[test]
    fn large_and_rolled_back_transactions() {
        let dir = temp_dir();
        // A 20-page cache makes big transactions spill dirty pages into the log early.
        let mut conn = writer(&dir, 20);
        insert(&mut conn, 0, 3000, 3000); // ~9 MB: past MAX_BUFFERED
        assert_eq!(count(&dir.join("t.db")), 3000);
        {
            let tx = conn.transaction().unwrap();
            for k in 3000..4000 {
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, ?2)",
                    params![k, "y".repeat(2000)],
                )
                .unwrap();
            }
            tx.rollback().unwrap();
        }
        insert(&mut conn, 3000, 10, 10);
        assert_eq!(count(&dir.join("t.db")), 3010);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        drop(conn);
        let check: String = Connection::open(dir.join("t.db"))
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        assert_eq!(count(&dir.join("t.db")), 3010);
        let _ = std::fs::remove_dir_all(dir);
    }
}
