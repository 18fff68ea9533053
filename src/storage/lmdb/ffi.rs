//! A small safe wrapper over the LMDB 0.9 C API (the `lmdb-rkv-sys` bindings): only
//! what the sasldb backend needs.
//!
//! Soundness rules this module enforces:
//! - An [`Env`] is closed exactly once, when the last owner drops it.
//! - Every environment is opened with `MDB_NOTLS`, so a read transaction is tied to
//!   its handle, not to the thread, and one thread may hold several.
//! - Slices returned by a read transaction borrow the transaction: they point into the
//!   read-only map, which stays valid (and unchanged) until the transaction ends.
//! - Write transactions expose no reads, so no slice can outlive a page it points into.
//! - The map is only resized ([`Env::set_mapsize`]) when no transaction made through
//!   this wrapper is live in the process, as `mdb_env_set_mapsize` requires; a live
//!   one makes the resize fail with `EBUSY` instead.

use std::ffi::{CStr, CString, c_int, c_uint};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use lmdb_sys as sys;

pub(crate) use sys::{
    MDB_APPEND, MDB_CORRUPTED, MDB_INVALID, MDB_KEYEXIST, MDB_MAP_FULL, MDB_MAP_RESIZED,
    MDB_NOLOCK, MDB_NOMETASYNC, MDB_NOSYNC, MDB_NOTFOUND, MDB_PAGE_NOTFOUND, MDB_PANIC, MDB_RDONLY,
    MDB_VERSION_MISMATCH,
};

/// A non-zero LMDB return code: an `MDB_*` error (negative) or an errno (positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code(pub c_int);

impl Code {
    /// LMDB's message for this code (`strerror` for errno values).
    pub fn message(self) -> String {
        // SAFETY: mdb_strerror returns a pointer to a static or strerror() string,
        // never NULL, and we copy it at once.
        let p = unsafe { sys::mdb_strerror(self.0) };
        if p.is_null() {
            return format!("error {}", self.0);
        }
        // SAFETY: p is a NUL-terminated C string (see above).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// The errno this code carries, if it is one.
    pub fn errno(self) -> Option<i32> {
        (self.0 > 0).then_some(self.0)
    }
}

/// Result of one LMDB call.
pub(crate) type MdbResult<T> = std::result::Result<T, Code>;

fn check(rc: c_int) -> MdbResult<()> {
    if rc == 0 { Ok(()) } else { Err(Code(rc)) }
}

/// The linked LMDB's version: `(major, minor, patch, "LMDB 0.9.24: (July 24, 2019)")`.
pub(crate) fn version() -> (i32, i32, i32, String) {
    let (mut major, mut minor, mut patch) = (0, 0, 0);
    // SAFETY: mdb_version writes three ints and returns a static string.
    let p = unsafe { sys::mdb_version(&mut major, &mut minor, &mut patch) };
    let text = if p.is_null() {
        String::new()
    } else {
        // SAFETY: static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    };
    (major, minor, patch, text)
}

/// Map and page size, from `mdb_env_info` and `mdb_env_stat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnvInfo {
    pub map_size: usize,
    pub page_size: u32,
}

/// An open LMDB environment (`MDB_NOSUBDIR | MDB_NOTLS` plus the caller's flags).
pub(crate) struct Env {
    raw: *mut sys::MDB_env,
    flags: c_uint,
    /// Transactions begun through this wrapper and not yet ended (including ones
    /// still waiting in `mdb_txn_begin`).
    live: Mutex<usize>,
    /// Descriptors of the files LMDB opened by their `/proc/self/fd` links (data,
    /// then lock), kept open until the environment is closed: closing any descriptor
    /// of the lock file would drop the `fcntl` locks LMDB holds on it.
    kept: Vec<std::fs::File>,
}

// SAFETY: an MDB_env is meant to be shared between threads; every call we make on it
// is thread-safe in LMDB (`MDB_NOTLS` lifts the thread affinity of read slots), and
// the one call that is not (mdb_env_set_mapsize) is serialised by `live`.
unsafe impl Send for Env {}
// SAFETY: see above.
unsafe impl Sync for Env {}

impl Env {
    /// Creates and opens an environment on the file `path` (`MDB_NOSUBDIR`, so the lock
    /// file is `path-lock` unless `MDB_NOLOCK`). Files LMDB itself creates get `0600`.
    /// `kept` are closed after the environment (see [`Env::kept`]).
    pub fn open(
        path: &Path,
        flags: c_uint,
        map_size: Option<usize>,
        max_readers: Option<u32>,
        kept: Vec<std::fs::File>,
    ) -> MdbResult<Env> {
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| Code(libc::EINVAL))?;
        let mut raw = ptr::null_mut();
        // SAFETY: out-pointer to a local.
        check(unsafe { sys::mdb_env_create(&mut raw) })?;
        let flags = flags | sys::MDB_NOSUBDIR | sys::MDB_NOTLS;
        // From here on, Drop closes the handle whatever happens (mdb_env_open's docs
        // require mdb_env_close after a failed open too).
        let env = Env {
            raw,
            flags,
            live: Mutex::new(0),
            kept,
        };
        if let Some(n) = max_readers {
            // SAFETY: env.raw is a valid, not yet opened environment.
            check(unsafe { sys::mdb_env_set_maxreaders(env.raw, n) })?;
        }
        if let Some(sz) = map_size {
            // SAFETY: as above.
            check(unsafe { sys::mdb_env_set_mapsize(env.raw, sz) })?;
        }
        // SAFETY: valid handle and NUL-terminated path.
        check(unsafe { sys::mdb_env_open(env.raw, cpath.as_ptr(), flags, 0o600) })?;
        Ok(env)
    }

    /// The descriptors given to [`Env::open`], open as long as the environment.
    pub fn kept(&self) -> &[std::fs::File] {
        &self.kept
    }

    /// Whether the environment was opened `MDB_RDONLY`.
    pub fn is_read_only(&self) -> bool {
        self.flags & MDB_RDONLY != 0
    }

    /// Map size, last page, page size and reader slots.
    pub fn info(&self) -> MdbResult<EnvInfo> {
        // SAFETY: plain-old-data out-structs, valid open env.
        let mut info: sys::MDB_envinfo = unsafe { std::mem::zeroed() };
        check(unsafe { sys::mdb_env_info(self.raw, &mut info) })?;
        // SAFETY: as above.
        let mut st: sys::MDB_stat = unsafe { std::mem::zeroed() };
        check(unsafe { sys::mdb_env_stat(self.raw, &mut st) })?;
        Ok(EnvInfo {
            map_size: info.me_mapsize,
            page_size: st.ms_psize,
        })
    }

    /// Changes the map size (0: adopt the size in the file). Fails with `EBUSY` while
    /// any transaction made through this wrapper is live in this process.
    pub fn set_mapsize(&self, size: usize) -> MdbResult<()> {
        let live = self.live_guard();
        if *live != 0 {
            return Err(Code(libc::EBUSY));
        }
        // SAFETY: valid env; no transaction is live (checked under the lock, which
        // every transaction begin takes first).
        check(unsafe { sys::mdb_env_set_mapsize(self.raw, size) })
    }

    fn live_guard(&self) -> MutexGuard<'_, usize> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self) {
        *self.live_guard() += 1;
    }

    fn leave(&self) {
        let mut g = self.live_guard();
        *g = g.saturating_sub(1);
    }

    /// Begins a transaction, adopting a map another process grew (`MDB_MAP_RESIZED`)
    /// when nothing else is live here.
    fn begin_raw(&self, flags: c_uint) -> MdbResult<(*mut sys::MDB_txn, sys::MDB_dbi)> {
        self.enter();
        let mut resized = false;
        loop {
            let mut txn = ptr::null_mut();
            // SAFETY: valid env, no parent, out-pointer to a local.
            let rc = unsafe { sys::mdb_txn_begin(self.raw, ptr::null_mut(), flags, &mut txn) };
            if rc == MDB_MAP_RESIZED && !resized {
                resized = true;
                self.leave();
                let r = self.set_mapsize(0);
                self.enter();
                if r.is_ok() {
                    continue;
                }
            }
            if rc != 0 {
                self.leave();
                return Err(Code(rc));
            }
            let mut dbi: sys::MDB_dbi = 0;
            // SAFETY: valid txn; a NULL name opens the unnamed main database.
            let rc = unsafe { sys::mdb_dbi_open(txn, ptr::null(), 0, &mut dbi) };
            if rc != 0 {
                // SAFETY: txn is live and not used again.
                unsafe { sys::mdb_txn_abort(txn) };
                self.leave();
                return Err(Code(rc));
            }
            return Ok((txn, dbi));
        }
    }

    /// Begins a read transaction: a snapshot that lives as long as the handle.
    pub fn begin_read(self: &Arc<Env>) -> MdbResult<RoTxn> {
        let (raw, dbi) = self.begin_raw(MDB_RDONLY)?;
        Ok(RoTxn {
            env: Arc::clone(self),
            raw,
            dbi,
        })
    }

    /// Begins the write transaction (blocks while another process or thread has one).
    pub fn begin_write(&self) -> MdbResult<RwTxn<'_>> {
        if self.is_read_only() {
            return Err(Code(libc::EACCES));
        }
        let (raw, dbi) = self.begin_raw(0)?;
        Ok(RwTxn {
            env: self,
            raw,
            dbi,
        })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // SAFETY: every transaction holds a borrow of or an Arc to the Env, so none is
        // live here; the handle is closed exactly once.
        unsafe { sys::mdb_env_close(self.raw) };
        // Only now may our own descriptors of the files go.
        self.kept.clear();
    }
}

fn val(b: &[u8]) -> sys::MDB_val {
    sys::MDB_val {
        mv_size: b.len(),
        mv_data: b.as_ptr() as *mut libc::c_void,
    }
}

/// # Safety
/// `v` must describe memory valid for the lifetime `'a`.
unsafe fn slice<'a>(v: &sys::MDB_val) -> &'a [u8] {
    if v.mv_size == 0 || v.mv_data.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(v.mv_data as *const u8, v.mv_size) }
    }
}

fn entries(raw: *mut sys::MDB_txn, dbi: sys::MDB_dbi) -> MdbResult<u64> {
    // SAFETY: plain-old-data out-struct; raw is a live txn.
    let mut st: sys::MDB_stat = unsafe { std::mem::zeroed() };
    check(unsafe { sys::mdb_stat(raw, dbi, &mut st) })?;
    Ok(st.ms_entries as u64)
}

/// A read-only snapshot of the main database. Ends (`mdb_txn_abort`) on drop.
pub(crate) struct RoTxn {
    env: Arc<Env>,
    raw: *mut sys::MDB_txn,
    dbi: sys::MDB_dbi,
}

impl RoTxn {
    /// Looks a key up. The slice points into the map and lives as long as `self`.
    pub fn get(&self, key: &[u8]) -> MdbResult<Option<&[u8]>> {
        let mut k = val(key);
        let mut d = sys::MDB_val {
            mv_size: 0,
            mv_data: ptr::null_mut(),
        };
        // SAFETY: live txn; LMDB only reads `k`.
        let rc = unsafe { sys::mdb_get(self.raw, self.dbi, &mut k, &mut d) };
        match rc {
            0 => Ok(Some(unsafe { slice(&d) })), // SAFETY: map memory valid until txn end.
            MDB_NOTFOUND => Ok(None),
            rc => Err(Code(rc)),
        }
    }

    /// Number of records.
    pub fn entries(&self) -> MdbResult<u64> {
        entries(self.raw, self.dbi)
    }

    /// Turns this snapshot into a cursor over it, in key order.
    pub fn into_scanner(self) -> MdbResult<Scanner> {
        let mut c = ptr::null_mut();
        // SAFETY: live txn, out-pointer to a local.
        check(unsafe { sys::mdb_cursor_open(self.raw, self.dbi, &mut c) })?;
        Ok(Scanner {
            raw: c,
            started: false,
            _txn: self,
        })
    }
}

impl Drop for RoTxn {
    fn drop(&mut self) {
        // SAFETY: live txn, ended exactly once; a Scanner owns its txn and closes its
        // cursor before dropping it.
        unsafe { sys::mdb_txn_abort(self.raw) };
        self.env.leave();
    }
}

/// A cursor that owns its read transaction: a scan that can outlive the borrow of the
/// environment's handle (each scan of a shared [`super::LmdbFile`] has its own).
pub(crate) struct Scanner {
    raw: *mut sys::MDB_cursor,
    started: bool,
    // Drop closes the cursor first, then this field ends the txn.
    _txn: RoTxn,
}

impl Scanner {
    /// The next record in key order; the slices live until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> MdbResult<Option<(&[u8], &[u8])>> {
        let op = if self.started {
            sys::MDB_NEXT
        } else {
            sys::MDB_FIRST
        };
        self.started = true;
        let mut k = sys::MDB_val {
            mv_size: 0,
            mv_data: ptr::null_mut(),
        };
        let mut d = sys::MDB_val {
            mv_size: 0,
            mv_data: ptr::null_mut(),
        };
        // SAFETY: live cursor on the live read txn we own.
        let rc = unsafe { sys::mdb_cursor_get(self.raw, &mut k, &mut d, op) };
        match rc {
            // SAFETY: read-only txn: both point into the map, valid while self._txn lives
            // (and self is borrowed mutably, so no other call moves the cursor).
            0 => Ok(Some(unsafe { (slice(&k), slice(&d)) })),
            MDB_NOTFOUND => Ok(None),
            rc => Err(Code(rc)),
        }
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        // SAFETY: the cursor belongs to self.txn, which is still live here.
        unsafe { sys::mdb_cursor_close(self.raw) };
    }
}

/// The write transaction. Aborted on drop unless committed.
pub(crate) struct RwTxn<'e> {
    env: &'e Env,
    raw: *mut sys::MDB_txn,
    dbi: sys::MDB_dbi,
}

impl RwTxn<'_> {
    /// Stores a record (`flags`: 0 or `MDB_APPEND`).
    pub fn put(&mut self, key: &[u8], data: &[u8], flags: c_uint) -> MdbResult<()> {
        let mut k = val(key);
        let mut d = val(data);
        // SAFETY: live write txn; LMDB copies both buffers.
        check(unsafe { sys::mdb_put(self.raw, self.dbi, &mut k, &mut d, flags) })
    }

    /// Deletes a record; `Ok(false)` when it did not exist.
    pub fn del(&mut self, key: &[u8]) -> MdbResult<bool> {
        let mut k = val(key);
        // SAFETY: live write txn.
        match unsafe { sys::mdb_del(self.raw, self.dbi, &mut k, ptr::null_mut()) } {
            0 => Ok(true),
            MDB_NOTFOUND => Ok(false),
            rc => Err(Code(rc)),
        }
    }

    /// Empties the main database (`mdb_drop(dbi, 0)`).
    pub fn clear(&mut self) -> MdbResult<()> {
        // SAFETY: live write txn.
        check(unsafe { sys::mdb_drop(self.raw, self.dbi, 0) })
    }

    /// Number of records, this transaction's changes included.
    pub fn entries(&self) -> MdbResult<u64> {
        entries(self.raw, self.dbi)
    }

    /// Commits. On error the transaction is already freed by LMDB.
    pub fn commit(self) -> MdbResult<()> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: live write txn, freed by mdb_txn_commit whatever it returns.
        let rc = unsafe { sys::mdb_txn_commit(this.raw) };
        this.env.leave();
        check(rc)
    }
}

impl Drop for RwTxn<'_> {
    fn drop(&mut self) {
        // SAFETY: live write txn, ended exactly once.
        unsafe { sys::mdb_txn_abort(self.raw) };
        self.env.leave();
    }
}
