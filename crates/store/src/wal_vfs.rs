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
//! Whole pages, too: a commit's write is padded with zeros to the end of its last page, and
//! starts with the bytes of its first page that the writer's previous commit wrote (kept in
//! memory, used only when the new commit starts exactly where that one ended, in the same
//! generation of the log: same salts). The log's header, when it starts over, is written as a
//! whole page. So the kernel never has to read a page of the log from the disk before it can
//! copy a write into it, which it had to whenever the page was not in memory (the benchmark
//! VM's DAMON reclaim pages out file pages idle for a minute, and the log's far end is idle
//! that long whenever it last grew past its usual size): on chat-echo at 16
//! connections the writer sat in `ext4_block_write_begin` for 20-80 ms at a time, every run
//! waiting, and one such stall in a 10 s round makes wrk's (coordinated-omission corrected)
//! p99 100-600 ms. The zeros only ever replace bytes past the last committed frame, which
//! nothing reads and recovery rejects already (stale frames of an earlier generation or of a
//! rolled-back transaction); only a write that ends with a commit frame's page is padded,
//! because SQLite rewrites spilled frames and their checksums in place, with frames after them.
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

/// A WAL frame header's size, and the log header's (the WAL file format's).
const FRAME_HEADER: usize = 24;
const LOG_HEADER: usize = 32;
/// The unit the page cache and the file system write in. A write into part of a page that is
/// not in memory makes the kernel read the rest of it from the disk first, with the write (and
/// so the commit, and every run waiting for it) blocked meanwhile.
const PAGE: i64 = 4096;
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
    /// The bytes of the log from the start of the page holding `tail_end` up to it, as this
    /// connection last wrote them: the end of its last commit (or the log's header), and the
    /// salts of that generation of the log; `tail_end` is -1 when unknown.
    tail: Vec<u8>,
    tail_end: i64,
    tail_salts: [u8; 8],
    /// `held` starts with `tail` (its first frame header comes after it).
    starts_with_tail: bool,
    /// Calls to the real xWrite so far, and of them those not on page boundaries (what the
    /// tests count).
    writes: u64,
    unaligned: u64,
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

    /// Writes what is held, as it is (before any other operation on the file).
    fn write_held(&mut self) -> c_int {
        self.flush(false)
    }

    /// Writes what is held: in one call, or in [`MAX_WRITE`] pieces when it is larger.
    /// `frame_done`: a frame's page was just added, so the held bytes end with a whole frame.
    /// When that frame is a commit's, the write is padded with zeros to the end of its last
    /// page: past its frames the log holds nothing anyone reads (stale frames of an earlier
    /// generation or of a rolled-back transaction, which recovery already rejects by their
    /// salts or checksums; zeros it rejects the same way), and the next commit starts there.
    fn flush(&mut self, frame_done: bool) -> c_int {
        if self.held.is_empty() {
            self.after_header = false;
            self.commit = false;
            return ffi::SQLITE_OK;
        }
        let end = self.held_at + self.held.len() as i64;
        let frames = self.held.len();
        // Only a commit frame just written whole is surely the log's end: bytes held otherwise
        // may be frames or frame headers SQLite rewrites in place (a transaction's spilled
        // pages, the checksums after them), with frames of the same transaction after them.
        let last_frame = frame_done && self.commit;
        if last_frame {
            self.held.resize(frames + padding(end), 0);
        }
        let rc = self.write_pieces();
        // Committed frames are never written again in this generation of the log (rolled-back
        // ones are): only a commit's end is a tail the next commit may rewrite as it was.
        if rc == ffi::SQLITE_OK && last_frame {
            let from = (end - end.rem_euclid(PAGE) - self.held_at).max(0) as usize;
            let salts = frame_salts(&self.held[self.first_frame()..]);
            let held = std::mem::take(&mut self.held);
            self.set_tail(&held[from..frames], end, salts);
            self.held = held;
        } else {
            self.tail_end = -1;
        }
        self.held.clear();
        self.after_header = false;
        self.commit = false;
        rc
    }

    fn write_pieces(&mut self) -> c_int {
        let write = self.real_methods().xWrite.expect("a file can be written");
        let real = self.real();
        let mut rc = ffi::SQLITE_OK;
        let (mut writes, mut unaligned) = (0, 0);
        for (i, piece) in self.held.chunks(MAX_WRITE).enumerate() {
            let at = self.held_at + (i * MAX_WRITE) as i64;
            // SAFETY: the real file is open; `piece` is valid for its length during the call.
            rc = unsafe { write(real, piece.as_ptr().cast(), piece.len() as c_int, at) };
            writes += 1;
            unaligned += u64::from(!on_pages(at, piece.len()));
            if rc != ffi::SQLITE_OK {
                break;
            }
        }
        self.writes += writes;
        self.unaligned += unaligned;
        rc
    }

    fn count_write(&mut self, at: i64, len: usize) {
        self.writes += 1;
        self.unaligned += u64::from(!on_pages(at, len));
    }

    /// Where the first frame header is in `held`: after the tail, when the held bytes start
    /// with it.
    fn first_frame(&self) -> usize {
        if self.starts_with_tail {
            self.tail.len()
        } else {
            0
        }
    }

    fn set_tail(&mut self, bytes: &[u8], end: i64, salts: [u8; 8]) {
        self.tail.clear();
        self.tail.extend_from_slice(bytes);
        self.tail_end = end;
        self.tail_salts = salts;
    }

    /// A write not held. The log's header (written when the log starts over, before any frame
    /// of the new generation) is padded to a whole page and kept as the tail its first frame
    /// continues; anything else (a frame rewritten in place) is written as it is and makes the
    /// tail unknown.
    fn write_through(&mut self, data: &[u8], offset: i64) -> c_int {
        let write = self.real_methods().xWrite.expect("a file can be written");
        let real = self.real();
        if offset == 0 && data.len() == LOG_HEADER {
            let mut page = vec![0u8; PAGE as usize];
            page[..LOG_HEADER].copy_from_slice(data);
            // SAFETY: the real file is open; `page` is valid for its length during the call.
            let rc = unsafe { write(real, page.as_ptr().cast(), page.len() as c_int, 0) };
            self.count_write(0, page.len());
            if rc == ffi::SQLITE_OK {
                let salts = data[16..24].try_into().unwrap_or_default();
                self.set_tail(data, LOG_HEADER as i64, salts);
            } else {
                self.tail_end = -1;
            }
            return rc;
        }
        self.tail_end = -1;
        self.count_write(offset, data.len());
        // SAFETY: the real file is open; `data` is SQLite's own buffer.
        unsafe { write(real, data.as_ptr().cast(), data.len() as c_int, offset) }
    }

    /// Starts holding a frame header written at `offset`: after the bytes of its page before
    /// it, when they are this connection's last commit's (same offset, same generation of the
    /// log), so that the write starts on a page boundary.
    fn start_held(&mut self, header: &[u8], offset: i64) {
        self.held_at = offset;
        self.starts_with_tail = false;
        let before = offset.rem_euclid(PAGE) as usize;
        if before > 0
            && offset == self.tail_end
            && self.tail.len() == before
            && frame_salts(header) == self.tail_salts
        {
            self.held.extend_from_slice(&self.tail);
            self.held_at = offset - before as i64;
            self.starts_with_tail = true;
        }
    }

    /// Whether a write of `data` at `offset` is held back: a frame header, or the page after a
    /// held header, that continues the held bytes (or starts them).
    fn holds(&self, data: &[u8], offset: i64) -> bool {
        let continues = self.held.is_empty() || offset == self.held_at + self.held.len() as i64;
        continues && (data.len() == FRAME_HEADER || self.after_header)
    }
}

/// Whether a write starts and ends on page boundaries.
fn on_pages(at: i64, len: usize) -> bool {
    at % PAGE == 0 && len as i64 % PAGE == 0
}

/// Zeros from `end` to the end of its page.
fn padding(end: i64) -> usize {
    ((PAGE - end.rem_euclid(PAGE)) % PAGE) as usize
}

/// The salts a frame header carries (bytes 8..16): those of the log's generation it belongs to.
fn frame_salts(header: &[u8]) -> [u8; 8] {
    header
        .get(8..16)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default()
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
                tail: Vec::new(),
                tail_end: -1,
                tail_salts: [0; 8],
                starts_with_tail: false,
                writes: 0,
                unaligned: 0,
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
            return w.write_through(data, offset);
        }
    }
    if w.held.is_empty() {
        w.start_held(data, offset);
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
        return w.flush(true);
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
    unsafe { wal(file) }.tail_end = -1;
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

    /// Rows recovered from a copy of the database and its log taken now, into `dir/name`, as
    /// a crash of the writer's process would leave them.
    fn count_in_copy(dir: &std::path::Path, name: &str) -> i64 {
        let copy = dir.join(name);
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["t.db", "t.db-wal"] {
            std::fs::copy(dir.join(f), copy.join(f)).unwrap();
        }
        count(&copy.join("t.db"))
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
        assert_eq!(
            count_in_copy(&dir, "copy"),
            rows,
            "recovered from the copied log"
        );
        drop(conn);
        assert_eq!(count(&dir.join("t.db")), rows);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Calls to the real xWrite made for `conn`'s WAL file so far.
    fn real_writes(conn: &Connection) -> u64 {
        wal_file(conn, |w| w.writes)
    }

    /// Of them, those that did not start and end on page boundaries.
    fn unaligned_writes(conn: &Connection) -> u64 {
        wal_file(conn, |w| w.unaligned)
    }

    fn wal_file(conn: &Connection, f: impl Fn(&super::WalFile) -> u64) -> u64 {
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
            f(&*file.cast::<super::WalFile>())
        }
    }

    /// Frames in the log (the WAL index header's `mxFrame`, in the `-shm` file).
    fn log_frames(dir: &std::path::Path) -> u64 {
        let shm = std::fs::read(dir.join("t.db-shm")).unwrap();
        u64::from(u32::from_ne_bytes(shm[16..20].try_into().unwrap()))
    }

    /// Commits of a few rows, as the message writer makes them, write whole pages of the log
    /// (its header with the first one, padded to a page): a write into part of a page the
    /// kernel no longer holds in memory has it read the page from the disk first, with the
    /// commit waiting. The log stays what SQLite wrote: every row is read back, and recovered
    /// from a copy of the files.
    #[test]
    fn commits_write_whole_pages() {
        let dir = temp_dir();
        let mut conn = writer(&dir, 2000);
        let mut rows = 0;
        for i in 0..200 {
            let n = 1 + i % 5;
            insert(&mut conn, rows, n, 150 + 97 * (i as usize % 13));
            rows += n;
        }
        assert!(real_writes(&conn) >= 200);
        assert!(log_frames(&dir) >= 200, "every commit is still in the log");
        assert_eq!(
            unaligned_writes(&conn),
            0,
            "of {} writes",
            real_writes(&conn)
        );
        assert_eq!(
            std::fs::metadata(dir.join("t.db-wal")).unwrap().len() % 4096,
            0
        );
        assert_eq!(
            count_in_copy(&dir, "copy"),
            rows,
            "recovered from the copied log"
        );
        assert_eq!(count(&dir.join("t.db")), rows);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The case the salts are checked for: another connection starts the log over and its
    /// first commit ends exactly where the writer's last one did. The bytes before that point
    /// are now the other connection's, and must not be rewritten with the writer's old ones.
    #[test]
    fn a_restart_by_another_connection_ending_at_the_same_place() {
        let dir = temp_dir();
        let mut conn = writer(&dir, 2000);
        let other = Connection::open(dir.join("t.db")).unwrap();
        other.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
        insert(&mut conn, 0, 1, 10);
        let frames = log_frames(&dir);
        other
            .execute_batch("PRAGMA wal_checkpoint(RESTART);")
            .unwrap();
        other
            .execute(
                "INSERT INTO t (k, v) VALUES (1, ?1)",
                params!["0000000".repeat(3)],
            )
            .unwrap();
        assert_eq!(log_frames(&dir), frames, "the same pages, so the same end");
        insert(&mut conn, 2, 1, 10);
        assert_eq!(
            count_in_copy(&dir, "copy"),
            3,
            "recovered from the copied log"
        );
        let check: String = other
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        assert_eq!(count(&dir.join("t.db")), 3);
        drop((conn, other));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Another connection (default VFS, as the pool's) commits between the writer's commits
    /// and checkpoints the log, restarting and truncating it: a commit that starts where the
    /// writer's last one ended rewrites that page's earlier bytes only when they are still the
    /// writer's own (same generation of the log). Every row of both is there, the database is
    /// consistent, and a copy taken at any point recovers what was committed.
    #[test]
    fn other_connections_writes_and_restarts_are_kept() {
        let dir = temp_dir();
        let mut conn = writer(&dir, 2000);
        let other = Connection::open(dir.join("t.db")).unwrap();
        other
            .execute_batch("PRAGMA wal_autocheckpoint=0; CREATE TABLE o (v TEXT NOT NULL);")
            .unwrap();
        let (mut rows, mut others) = (0, 0i64);
        for i in 0..300u64 {
            insert(
                &mut conn,
                rows,
                1 + (i % 3) as i64,
                200 + 131 * (i as usize % 7),
            );
            rows += 1 + (i % 3) as i64;
            match i % 7 {
                0 | 3 => {
                    other
                        .execute("INSERT INTO o VALUES (?1)", params!["z".repeat(700)])
                        .unwrap();
                    others += 1;
                }
                1 => {
                    other
                        .execute_batch("PRAGMA wal_checkpoint(RESTART);")
                        .unwrap();
                    // The other connection starts the new log, the writer continues it.
                    other
                        .execute("INSERT INTO o VALUES (?1)", params!["r".repeat(33)])
                        .unwrap();
                    others += 1;
                }
                5 => other
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                    .unwrap(),
                _ => {}
            }
            if i % 50 == 49 {
                let recovered = count_in_copy(&dir, &format!("copy{i}"));
                assert_eq!(recovered, rows, "copy after commit {i}");
            }
        }
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        assert_eq!(count(&dir.join("t.db")), rows);
        let o: i64 = other
            .query_row("SELECT COUNT(*) FROM o", [], |r| r.get(0))
            .unwrap();
        assert_eq!(o, others);
        drop((conn, other));
        let _ = std::fs::remove_dir_all(dir);
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
