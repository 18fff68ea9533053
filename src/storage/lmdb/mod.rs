//! LMDB sasldb files, through the C library LMDB 0.9.24 (`lmdb-rkv-sys`, built from
//! its bundled source) and a small safe wrapper (`ffi`).
//!
//! This module owns everything LMDB-specific: opening an environment the way Cyrus's
//! `sasldb/db_lmdb.c` does, checking a file before LMDB maps it, reading
//! ([`LmdbFile`], a [`Backend`]), writing in place ([`commit`]) and bulk-loading a new
//! file ([`build_new`]). Our writer lock (`<db>.lock`) and the ownership policy come
//! from [`crate::storage::persist`].
//!
//! # Notes
//! - **Why LMDB 0.9**: Cyrus and Postfix on Debian link liblmdb 0.9.24. The data file
//!   is compatible across LMDB branches, but the lock file is not: mdb.master (heed's
//!   `lmdb-master-sys`) uses lock format version 2, and while a 0.9 process has the
//!   environment open the other side gets `MDB_VERSION_MISMATCH`. We link 0.9.24 (the
//!   same source as Debian) and refuse to run against any other minor version.
//! - **Layout**: `MDB_NOSUBDIR`, so the data file is the path itself and the lock file is
//!   `<path>-lock` ([`lock_path`]); one unnamed main database, byte-order key compare,
//!   keys of 1 to 511 bytes, no duplicates. Symlinks are resolved first, so every tool
//!   of ours uses the real file's lock file (Cyrus derives the lock name from the path
//!   it was given: point `sasldb_path` at the real file).
//! - **Readers** open `MDB_RDONLY` but still need the lock file **read-write** (their
//!   reader slot lives there). A missing lock file is created before LMDB would do it
//!   with a root umask: mode 0660-style (write wherever the data file is readable), with
//!   the data file's owner and group. When it cannot be created (directory not
//!   writable) or opened read-write, opening fails with a message saying so; there is
//!   no `MDB_NOLOCK` fallback, because an unregistered reader can see pages a
//!   concurrent writer (Cyrus's `saslpasswd2`) is reusing.
//! - **Writes are in place**, in one LMDB write transaction ([`commit`]): Postfix's
//!   smtpd keeps the environment open for its whole life, so a file renamed over the
//!   database would never be seen by it. `MDB_MAP_FULL` aborts the transaction, doubles
//!   the map and retries it whole. The map size is written to the meta page, so Cyrus
//!   readers that do not set `sasldb_mapsize` pick it up. A running reader whose map is
//!   smaller than the grown *data* gets `MDB_MAP_RESIZED` on its next transaction
//!   (LMDB 0.9's rule); Cyrus does not retry then, so the lookup fails once.
//! - **Files by descriptor**: LMDB opens `<path>` and `<path>-lock` by name and follows
//!   symlinks. So we open both first, through the database's open directory, without
//!   following a link (a symlinked lock file is refused, never followed), check that
//!   they are regular files with one link (the data file of a write, and the lock
//!   file, into which LMDB writes its reader table), create a missing lock file
//!   ourselves, and give LMDB exactly these files through a private directory of
//!   `/proc/self/fd/N` links ([`persist::ProcLinks`]). Our descriptors stay open until
//!   the environment is closed (closing one would drop LMDB's `fcntl` locks).
//! - **Ownership**: a new database is created by us with `O_EXCL` mode 0600, given its
//!   owner, group and final mode (0640 as root) before LMDB writes anything; its lock
//!   file gets the same owner and group with mode 0660 (never wider, whatever the data
//!   file's mode). After every commit both are set again, through the descriptors the
//!   environment keeps. The writer (`storage::Writer`) writes in place only a
//!   file that already has the policy's owner, group and mode; any other is rebuilt
//!   and renamed over, lock file included (someone who could open it may hold it
//!   open).
//! - **One environment per file per process**: LMDB's locks are `fcntl` locks, which a
//!   process loses on *any* close of the file; opening the same file twice in one
//!   process would silently drop our reader registration. Environments are therefore
//!   shared through a process-wide table keyed by device and inode. A write needs an
//!   environment opened read-write: if the same process still holds a read-only one on
//!   that file, the write fails and says so.
//! - **Hostile files**: LMDB trusts its file. [`check`] validates the meta pages and
//!   walks every tree page with bounds checks before LMDB maps a file (once per
//!   environment open; about 0.1 s for a million records); see its docs for what is
//!   and is not covered.
//! - **Reads**: an [`LmdbFile`] keeps the environment open and runs each lookup and
//!   each scan in a read transaction of its own (`MDB_NOTLS`, so any thread may), so
//!   it can be shared between threads and always sees the latest commit; a scan sees
//!   one consistent state from its first record to its last.
//! - **Bulk load** ([`build_new`]): records sorted by key go in with `MDB_APPEND`,
//!   `BATCH` records per transaction, each batch in a freshly opened environment
//!   (`MDB_NOLOCK | MDB_NOSYNC`), into a temporary file that is fsynced once and then
//!   linked into place. Memory stays bounded whatever the record count: the batch,
//!   LMDB's dirty pages, and the few map pages a batch reads (closing the environment
//!   unmaps them). No `MDB_WRITEMAP`: with a writable shared map every written page
//!   would count in the process's RSS.

pub mod check;
mod ffi;

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use std::sync::{Arc, Mutex, Weak};

pub use check::{DbRecord, FileInfo, Meta};

use crate::error::{Error, IoContext, Result};
use crate::location::Format;
use crate::record::{Record, Secret};
use crate::storage::options::LmdbOptions as Options;
use crate::storage::persist::{self, Dir, Ownership, ProcLinks, Target};
use crate::storage::{Backend, Changes, LayoutHint, MapOps, OpSource, Records};

use ffi::{Code, Env, RoTxn};

/// LMDB's default map size (and the smallest map we start a new file with).
pub const DEFAULT_MAP_SIZE: u64 = 1 << 20;
/// The longest key LMDB 0.9 stores.
pub const MAX_KEY_LEN: usize = 511;
/// Records per transaction when bulk loading.
const BATCH: usize = 10_000;
/// Environment flags for bulk loading a private temporary file: no lock file (nobody
/// else opens it), no syncs (the finished file is fsynced once before it is linked).
const BULK_FLAGS: u32 = ffi::MDB_NOLOCK | ffi::MDB_NOSYNC | ffi::MDB_NOMETASYNC;

/// The map never grows past this (LMDB would fail long before on most systems).
const MAX_MAP_SIZE: u64 = 1 << 44;

impl Options {
    /// The map size in bytes, if one is asked for.
    fn map_size(&self) -> crate::Result<Option<usize>> {
        match self.mapsize_kib {
            None | Some(0) => Ok(None),
            Some(k) => k
                .checked_mul(1024)
                .filter(|&b| b <= MAX_MAP_SIZE)
                .map(|b| Some(b as usize))
                .ok_or_else(|| Error::Invalid(format!("sasldb_mapsize {k} KiB is too large"))),
        }
    }
}

/// The LMDB version this build runs with, e.g. `LMDB 0.9.24: (July 24, 2019)`.
pub fn version() -> String {
    ffi::version().3
}

/// The lock file LMDB uses for the data file `path` (`MDB_NOSUBDIR`): `<path>-lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    persist::companion_lock(Format::Lmdb, path).expect("LMDB has a lock file")
}

/// Checks a data file without opening it in LMDB (see [`check`]).
pub fn verify(path: &Path) -> Result<FileInfo> {
    let f = File::open(path).at(path)?;
    check::check_file(&f, path)
}

fn require_09(path: &Path) -> Result<()> {
    let (major, minor, _, text) = ffi::version();
    if (major, minor) == (0, 9) {
        Ok(())
    } else {
        Err(Error::Unsupported {
            path: path.to_path_buf(),
            format: Format::Lmdb,
            what: format!(
                "this build is linked to {text}; only LMDB 0.9 shares its lock file format \
                 with Cyrus and Postfix"
            ),
        })
    }
}

/// Turns an LMDB code into our error, with the operation that failed.
fn lmdb_error(path: &Path, op: &str, code: Code) -> Error {
    if let Some(errno) = code.errno() {
        return Error::Backend {
            path: path.to_path_buf(),
            format: Format::Lmdb,
            message: format!("{op}: {}", io::Error::from_raw_os_error(errno)),
        };
    }
    match code.0 {
        ffi::MDB_CORRUPTED | ffi::MDB_PAGE_NOTFOUND | ffi::MDB_INVALID | ffi::MDB_PANIC => {
            Error::Corrupt {
                path: path.to_path_buf(),
                format: Format::Lmdb,
                what: format!("{op}: {}", code.message()),
            }
        }
        ffi::MDB_VERSION_MISMATCH => Error::Unsupported {
            path: path.to_path_buf(),
            format: Format::Lmdb,
            what: format!(
                "{op}: {} (the data or lock file belongs to another LMDB version)",
                code.message()
            ),
        },
        _ => Error::Backend {
            path: path.to_path_buf(),
            format: Format::Lmdb,
            message: format!("{op}: {}", code.message()),
        },
    }
}

/// The error for an `mdb_env_open` failure, naming the lock file when that is the cause.
fn open_error(path: &Path, code: Code) -> Error {
    match code.errno() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => Error::Backend {
            path: path.to_path_buf(),
            format: Format::Lmdb,
            message: format!(
                "cannot open the database or its lock file {} read-write ({}): LMDB readers \
                 need write access to the lock file",
                lock_path(path).display(),
                io::Error::from_raw_os_error(code.0)
            ),
        },
        _ => lmdb_error(path, "mdb_env_open", code),
    }
}

// ---------------------------------------------------------------------------------
// The process-wide table of open environments.

struct Shared {
    dev: u64,
    ino: u64,
    env: Weak<Env>,
}

static OPEN: Mutex<Vec<Shared>> = Mutex::new(Vec::new());

/// How an environment is wanted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
}

/// A data file in an open directory: where an environment is opened.
#[derive(Clone, Copy)]
struct At<'a> {
    dir: &'a Dir,
    name: &'a OsStr,
    /// The real path, for messages (and for LMDB itself when /proc is missing and the
    /// path is stable).
    path: &'a Path,
    stable: bool,
}

impl<'a> At<'a> {
    fn of(t: &'a Target) -> At<'a> {
        At {
            dir: &t.handle,
            name: &t.name,
            path: &t.path,
            stable: t.path_is_stable(),
        }
    }
}

/// Who a lock file we create belongs to: the writer's policy, or (for a reader) the
/// data file's owner and group.
#[derive(Clone, Copy)]
enum LockOwner<'a> {
    Policy(&'a Ownership),
    DataFile(&'a Metadata),
}

/// The environment of the existing data file `at`, shared with any other user in this
/// process. The data file and its lock file are opened here without following a
/// symlink and must be regular files (the data file of a write, and the lock file,
/// with one link); a missing lock file is created with `owner`'s ownership. LMDB then
/// opens exactly these two files through `/proc/self/fd` links ([`ProcLinks`]): no
/// name it opens can be swapped meanwhile. The file is checked before LMDB maps it.
fn shared_env(at: At<'_>, mode: Mode, opts: &Options, owner: LockOwner<'_>) -> Result<Arc<Env>> {
    let path = at.path;
    require_09(path)?;
    let data = at
        .dir
        .open_at(at.name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Error::Refused {
                path: path.to_path_buf(),
                why: "the LMDB data file is a symbolic link here; refusing to follow it".into(),
            },
            Some(libc::ENOENT) => Error::NotFound {
                path: path.to_path_buf(),
            },
            _ => Error::io(path, e),
        })?;
    let meta = data.metadata().at(path)?;
    persist::check_regular(path, &meta)?;
    if mode == Mode::Write && meta.nlink() > 1 {
        return Err(Error::HardLinked {
            path: path.to_path_buf(),
            links: meta.nlink(),
        });
    }
    let mut table = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    table.retain(|s| s.env.strong_count() > 0);
    if let Some(env) = table
        .iter()
        .find(|s| s.dev == meta.dev() && s.ino == meta.ino())
        .and_then(|s| s.env.upgrade())
    {
        if mode == Mode::Write && env.is_read_only() {
            return Err(Error::Backend {
                path: path.to_path_buf(),
                format: Format::Lmdb,
                message: "the database is open read-only elsewhere in this process; close it \
                          before writing (LMDB allows one environment per file per process)"
                    .into(),
            });
        }
        // Closing our descriptor of the data file is harmless: LMDB keeps its `fcntl`
        // locks on the lock file only.
        return Ok(env);
    }
    let mut file_map = 0u64;
    if meta.len() > 0 {
        let info = match check::check_file(&data, path) {
            // A writer that commits twice during the walk may reuse a page we are
            // about to read; a file at rest gives the same answer twice.
            Err(Error::Corrupt { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                check::check_file(&data, path)?
            }
            r => r?,
        };
        file_map = info.meta.map_size;
    } else if mode == Mode::Read {
        return Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    let lock = open_lock(at, &meta, owner)?;
    let mut flags = match mode {
        Mode::Read => ffi::MDB_RDONLY,
        Mode::Write => 0,
    };
    if lock.is_none() {
        // A read-only file system without a lock file: nobody can write there.
        flags |= ffi::MDB_NOLOCK;
    }
    // A writer never shrinks the map recorded in the file (Cyrus readers and writers
    // without `sasldb_mapsize` use it); a reader maps what it is told, as Cyrus does.
    let map_size = match (opts.map_size()?, mode) {
        (Some(want), Mode::Write) => Some(want.max(usize::try_from(file_map).unwrap_or(0))),
        (want, _) => want,
    };
    let links = if ProcLinks::available() {
        let mut entries = vec![("db", data.as_fd())];
        if let Some(l) = &lock {
            entries.push(("db-lock", l.as_fd()));
        }
        match ProcLinks::new(&entries) {
            Ok(l) => Some(l),
            // No temporary directory to make them in (a sandbox): the names are as
            // good where nobody else can change them.
            Err(_) if at.stable => None,
            Err(e) => return Err(Error::io(std::env::temp_dir(), e)),
        }
    } else if at.stable {
        None
    } else {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            why: "without /proc, LMDB would open this file and its lock file by name in a \
                  directory others can write; refusing"
                .into(),
        });
    };
    let env_path = links
        .as_ref()
        .map_or_else(|| path.to_path_buf(), |l| l.path("db"));
    let mut kept = vec![data];
    kept.extend(lock);
    let env = Env::open(&env_path, flags, map_size, opts.max_readers, kept)
        .map_err(|c| open_error(path, c))?;
    drop(links);
    let env = Arc::new(env);
    table.push(Shared {
        dev: meta.dev(),
        ino: meta.ino(),
        env: Arc::downgrade(&env),
    });
    Ok(env)
}

/// Opens the lock file `<name>-lock` read-write without following a symlink (creating
/// it when missing), and checks it is a regular file with one link: LMDB writes its
/// reader table into it. `None`: missing on a read-only file system.
fn open_lock(at: At<'_>, data: &Metadata, owner: LockOwner<'_>) -> Result<Option<File>> {
    let mut name = at.name.to_os_string();
    name.push("-lock");
    let lock = at.dir.join(&name);
    let rw = OFlag::O_RDWR | OFlag::O_NONBLOCK;
    let file = loop {
        match at.dir.open_at(&name, rw) {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::Refused {
                    path: lock,
                    why: "the LMDB lock file is a symbolic link; refusing to let LMDB write \
                          through it (remove it: sasldb check --fix replaces it)"
                        .into(),
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                break at
                    .dir
                    .open_at(&name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
                    .at(&lock)?;
            }
            Err(e) => {
                return Err(Error::Backend {
                    path: at.path.to_path_buf(),
                    format: Format::Lmdb,
                    message: format!(
                        "cannot open the lock file {} read-write ({}): LMDB readers need \
                         write access to the lock file",
                        lock.display(),
                        crate::error::io_text(&e)
                    ),
                });
            }
        }
        // Missing: create it before LMDB would, with our umask and identity.
        match at.dir.create_new(&name) {
            Ok(f) => {
                let given = match owner {
                    LockOwner::Policy(own) => Ownership {
                        mode: lock_mode(own.mode),
                        ..own.clone()
                    }
                    .apply(&f, &lock),
                    LockOwner::DataFile(m) => give_lock_of(&f, &lock, m),
                };
                if let Err(e) = given {
                    drop(f);
                    let _ = at.dir.unlink(&name);
                    return Err(e);
                }
                break f;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => return Ok(None),
            Err(e) => {
                return Err(Error::Backend {
                    path: at.path.to_path_buf(),
                    format: Format::Lmdb,
                    message: format!(
                        "cannot create the lock file {} ({}): LMDB readers need it; create \
                         it once as the database's owner (any write through this tool does)",
                        lock.display(),
                        crate::error::io_text(&e)
                    ),
                });
            }
        }
    };
    let _ = data;
    let m = file.metadata().at(&lock)?;
    persist::check_regular(&lock, &m)?;
    if m.nlink() > 1 {
        return Err(Error::Refused {
            path: lock,
            why: format!(
                "the LMDB lock file has {} hard links; refusing to let LMDB write its reader \
                 table into a file with other names (remove it: sasldb check --fix replaces it)",
                m.nlink()
            ),
        });
    }
    Ok(Some(file))
}

/// A lock file a reader created: the data file's owner (as root) and group (best
/// effort: a non-member cannot give it), and its lock mode.
fn give_lock_of(f: &File, lock: &Path, data: &Metadata) -> Result<()> {
    let euid = nix::unistd::geteuid();
    let uid = (euid.is_root() && data.uid() != euid.as_raw())
        .then(|| nix::unistd::Uid::from_raw(data.uid()));
    let _ = nix::unistd::fchown(f, uid, Some(nix::unistd::Gid::from_raw(data.gid())));
    f.set_permissions(fs::Permissions::from_mode(lock_mode(data.mode())))
        .at(lock)
}

// ---------------------------------------------------------------------------------
// Files and ownership.

/// The lock file's mode for a data file mode (see
/// `persist::companion_lock_mode`): never wider than 0660.
pub fn lock_mode(data_mode: u32) -> u32 {
    persist::companion_lock_mode(data_mode)
}

/// Creates `name` in `dir` with `O_EXCL` mode 0600 and gives it `own` (with `mode`)
/// before any byte is written. `Ok(None)` when it already exists.
fn create_owned(dir: &Dir, name: &OsStr, own: &Ownership, mode: u32) -> Result<Option<File>> {
    let path = dir.join(name);
    match dir.create_new(name) {
        Ok(f) => {
            let o = Ownership {
                mode,
                ..own.clone()
            };
            if let Err(e) = o.apply(&f, &path) {
                drop(f);
                let _ = dir.unlink(name);
                return Err(e);
            }
            Ok(Some(f))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Gives a file the environment holds open `own` with `mode`, through its descriptor:
/// the lock file must never be opened and closed by us while an environment of this
/// process uses it, since any close drops the process's `fcntl` locks on it. When the
/// policy is not enforced (not root), failures are ignored: the file keeps working
/// with its current owner.
fn reapply(file: &File, path: &Path, own: &Ownership, mode: u32) -> Result<()> {
    let r = (|| -> io::Result<()> {
        let m = file.metadata()?;
        if m.uid() != own.uid || m.gid() != own.gid {
            let uid = (m.uid() != own.uid).then(|| nix::unistd::Uid::from_raw(own.uid));
            nix::unistd::fchown(file, uid, Some(nix::unistd::Gid::from_raw(own.gid)))?;
        }
        if m.mode() & 0o7777 != mode {
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    })();
    match r {
        Err(_) if !own.enforced => Ok(()),
        r => r.at(path),
    }
}

/// Makes sure the lock file `lock` exists as a regular file of its own with `own`'s
/// owner and group and the lock mode of `own.mode` (0660 for 0640): created with
/// `O_EXCL` when missing; a symbolic link, a file with other hard links or anything
/// but a regular file there is replaced by a new lock file. For copies that only
/// readers open (the Postfix chroot copy) and for repairs.
pub fn prepare_lock_file(lock: &Path, own: &Ownership) -> Result<()> {
    let w = persist::dir::walk(lock, false)?;
    prepare_lock_at(&w.dir, &w.name, own)
}

/// [`prepare_lock_file`] for the name `name` in `dir`.
pub(crate) fn prepare_lock_at(dir: &Dir, name: &OsStr, own: &Ownership) -> Result<()> {
    let mode = lock_mode(own.mode);
    let path = dir.join(name);
    for _ in 0..4 {
        if create_owned(dir, name, own, mode)?.is_some() {
            return Ok(());
        }
        let m = match dir.lstat(name).at(&path)? {
            Some(m) => m,
            None => continue,
        };
        if m.file_type().is_file() && m.nlink() == 1 {
            let o = Ownership {
                mode,
                ..own.clone()
            };
            return persist::apply_at(dir, name, &o, mode);
        }
        if m.file_type().is_dir() {
            return persist::check_regular(&path, &m);
        }
        // Not a lock file of its own: a new one takes its name.
        match dir.unlink(name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Err(Error::io(
        path,
        io::Error::from(io::ErrorKind::AlreadyExists),
    ))
}

// ---------------------------------------------------------------------------------
// Reading.

/// An LMDB sasldb opened read-only. The environment stays open; every lookup and
/// every scan runs in a read transaction of its own, so the handle can be shared
/// between threads and each call sees the latest committed state.
pub struct LmdbFile {
    path: PathBuf,
    env: Arc<Env>,
    page_size: u32,
}

impl std::fmt::Debug for LmdbFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbFile")
            .field("path", &self.path)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl LmdbFile {
    /// Opens an existing database read-only (`MDB_NOSUBDIR | MDB_RDONLY`), creating a
    /// missing `-lock` file first (see the module docs).
    pub fn open(path: &Path) -> Result<LmdbFile> {
        Self::open_with(path, &Options::default())
    }

    /// [`LmdbFile::open`] with Cyrus's options.
    pub fn open_with(path: &Path, opts: &Options) -> Result<LmdbFile> {
        let not_found = |e: Error| match e.io_kind() {
            Some(io::ErrorKind::NotFound) => Error::NotFound {
                path: path.to_path_buf(),
            },
            _ => e,
        };
        let t = Target::entry(path, true).map_err(not_found)?;
        let real = t.path.clone();
        let meta = t.existing.clone().ok_or_else(|| Error::NotFound {
            path: path.to_path_buf(),
        })?;
        persist::check_regular(&real, &meta)?;
        let env = shared_env(At::of(&t), Mode::Read, opts, LockOwner::DataFile(&meta))?;
        let info = env
            .info()
            .map_err(|c| lmdb_error(&real, "mdb_env_info", c))?;
        Ok(LmdbFile {
            path: real,
            env,
            page_size: info.page_size,
        })
    }

    /// [`LmdbFile::open`] on a file a writer resolved (its directory open).
    pub(crate) fn open_target(t: &Target) -> Result<LmdbFile> {
        let meta = t.existing.clone().ok_or_else(|| Error::NotFound {
            path: t.path.clone(),
        })?;
        persist::check_regular(&t.path, &meta)?;
        let env = shared_env(
            At::of(t),
            Mode::Read,
            &Options::default(),
            LockOwner::DataFile(&meta),
        )?;
        let info = env
            .info()
            .map_err(|c| lmdb_error(&t.path, "mdb_env_info", c))?;
        Ok(LmdbFile {
            path: t.path.clone(),
            env,
            page_size: info.page_size,
        })
    }

    /// A read transaction: a snapshot of the latest committed state.
    fn read(&self) -> Result<RoTxn> {
        self.env
            .begin_read()
            .map_err(|c| lmdb_error(&self.path, "mdb_txn_begin", c))
    }

    /// The real file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records in the snapshot.
    pub fn len(&self) -> Result<u64> {
        self.read()?
            .entries()
            .map_err(|c| lmdb_error(&self.path, "mdb_stat", c))
    }

    /// Whether the snapshot holds no record.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The current map size of the environment, in bytes.
    pub fn map_size(&self) -> Result<u64> {
        let info = self
            .env
            .info()
            .map_err(|c| lmdb_error(&self.path, "mdb_env_info", c))?;
        Ok(info.map_size as u64)
    }

    /// The page size.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }
}

impl Backend for LmdbFile {
    fn format(&self) -> Format {
        Format::Lmdb
    }

    fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Ok(None);
        }
        let txn = self.read()?;
        match txn.get(key) {
            Ok(v) => Ok(v.map(|v| Secret::new(v.to_vec()))),
            Err(c) => Err(lmdb_error(&self.path, "mdb_get", c)),
        }
    }

    fn scan(&self) -> Result<Records<'_>> {
        let cursor = self
            .read()?
            .into_scanner()
            .map_err(|c| lmdb_error(&self.path, "mdb_cursor_open", c))?;
        let path = &self.path;
        let mut cursor = Some(cursor);
        Ok(Box::new(std::iter::from_fn(move || {
            let c = cursor.as_mut()?;
            match c.next() {
                Ok(Some((k, v))) => Some(Ok(Record::new(k.to_vec(), v.to_vec()))),
                Ok(None) => {
                    cursor = None;
                    None
                }
                Err(code) => {
                    cursor = None;
                    Some(Err(lmdb_error(path, "mdb_cursor_get", code)))
                }
            }
        })))
    }

    fn sorted(&self) -> bool {
        true
    }

    fn layout_hint(&self) -> LayoutHint {
        LayoutHint {
            page_size: Some(self.page_size),
            ..LayoutHint::default()
        }
    }
}

// ---------------------------------------------------------------------------------
// Writing in place.

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::Invalid("LMDB cannot store an empty key".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::TooLong {
            what: "key",
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// The next map size after `MDB_MAP_FULL`: double, rounded to whole pages.
fn grown(path: &Path, current: u64, page: u64) -> Result<u64> {
    let next = current
        .max(DEFAULT_MAP_SIZE)
        .saturating_mul(2)
        .div_ceil(page)
        * page;
    if next > MAX_MAP_SIZE {
        return Err(Error::Backend {
            path: path.to_path_buf(),
            format: Format::Lmdb,
            message: format!("the map would grow past {MAX_MAP_SIZE} bytes"),
        });
    }
    Ok(next)
}

fn grow(env: &Env, path: &Path) -> Result<()> {
    let info = env
        .info()
        .map_err(|c| lmdb_error(path, "mdb_env_info", c))?;
    let next = grown(path, info.map_size as u64, u64::from(info.page_size))?;
    env.set_mapsize(next as usize).map_err(|c| match c.errno() {
        Some(libc::EBUSY) => Error::Backend {
            path: path.to_path_buf(),
            format: Format::Lmdb,
            message: "the map is full and cannot grow while this process holds a read \
                      snapshot of the database; close it and retry"
                .into(),
        },
        _ => lmdb_error(path, "mdb_env_set_mapsize", c),
    })
}

/// Applies `changes` to the database at `path` in place, in one LMDB write transaction,
/// and returns the number of records afterwards. See [`commit_with`].
pub fn commit(path: &Path, own: &Ownership, changes: &Changes) -> Result<u64> {
    commit_with(path, own, changes, &Options::default())
}

/// Applies changes in key order in one write transaction: deletes and puts, or with
/// `replace_all` `mdb_drop` then the puts (appended in key order). The map is first
/// grown to fit the changes; `MDB_MAP_FULL` aborts the transaction, the map doubles
/// and the whole transaction runs again (the changes are read again from the start).
///
/// A missing database is created (mode 0600 with `O_EXCL`, then `own`), and so is a
/// missing lock file (0660-style, same owner and group); after the commit both get
/// `own` again. `path` should be the real file (see [`Target::resolve`]); the caller
/// holds our writer lock.
pub fn commit_with(path: &Path, own: &Ownership, changes: &Changes, opts: &Options) -> Result<u64> {
    commit_at(
        &Target::resolve(path)?,
        own,
        &mut MapOps::new(changes),
        opts,
    )
}

/// [`commit_with`] on a resolved target (its directory open: every file is opened
/// through it, never by path), the changes read one at a time in key order.
pub(crate) fn commit_at(
    target: &Target,
    own: &Ownership,
    ops: &mut dyn OpSource,
    opts: &Options,
) -> Result<u64> {
    let path = &target.path;
    require_09(path)?;
    let dir = &target.handle;
    let mut lock_name = target.name.clone();
    lock_name.push("-lock");
    let created = create_owned(dir, &target.name, own, own.mode)?.is_some();
    let lock_created = create_owned(dir, &lock_name, own, lock_mode(own.mode))?.is_some();
    let result = commit_env(At::of(target), own, ops, opts);
    if result.is_err() && created {
        // Nothing was ever committed to a file we created: leave no empty database.
        if lock_created {
            let _ = dir.unlink(&lock_name);
        }
        let _ = dir.unlink(&target.name);
    }
    result
}

fn commit_env(at: At<'_>, own: &Ownership, ops: &mut dyn OpSource, opts: &Options) -> Result<u64> {
    let path = at.path;
    // A size hint only: read through the directory, before the environment opens.
    let used = at.dir.lstat(at.name).ok().flatten().map_or(0, |m| m.len());
    let env = shared_env(at, Mode::Write, opts, LockOwner::Policy(own))?;
    let info = env
        .info()
        .map_err(|c| lmdb_error(path, "mdb_env_info", c))?;
    // Room for the changes up front (a retry reapplies every change): the file as it
    // is, plus three times the bytes the changes carry (page headers, node headers,
    // half-full pages, the copy-on-write pages of one transaction).
    let page = u64::from(info.page_size.max(1));
    let fit = (used + 3 * ops.bytes()).div_ceil(page) * page;
    let want = opts
        .map_size()?
        .map(|w| w as u64)
        .unwrap_or(0)
        .max(fit)
        .min(MAX_MAP_SIZE);
    if want > info.map_size as u64 {
        // Best effort: a live snapshot elsewhere in this process keeps the old size.
        let _ = env.set_mapsize(want as usize);
    }
    let n = loop {
        ops.rewind()?;
        match apply(&env, ops) {
            Ok(n) => break n,
            Err(Failure::Lmdb(c)) if c.0 == ffi::MDB_MAP_FULL => grow(&env, path)?,
            Err(Failure::Lmdb(c)) => return Err(lmdb_error(path, "write transaction", c)),
            Err(Failure::Other(e)) => return Err(e),
        }
    };
    // The policy again, through the descriptors the environment holds.
    let kept = env.kept();
    if let Some(data) = kept.first() {
        reapply(data, path, own, own.mode)?;
    }
    if let Some(lock) = kept.get(1) {
        reapply(lock, &lock_path(path), own, lock_mode(own.mode))?;
    }
    Ok(n)
}

/// Why a write transaction failed.
enum Failure {
    Lmdb(Code),
    Other(Error),
}

impl From<Code> for Failure {
    fn from(c: Code) -> Failure {
        Failure::Lmdb(c)
    }
}

fn apply(env: &Env, ops: &mut dyn OpSource) -> std::result::Result<u64, Failure> {
    let mut txn = env.begin_write()?;
    let mut flags = 0;
    let replace_all = ops.replace_all();
    if replace_all {
        txn.clear()?;
        // The database is empty and the changes come in key order.
        flags = ffi::MDB_APPEND;
    }
    while let Some((k, v)) = ops.next_op().map_err(Failure::Other)? {
        check_key(k).map_err(Failure::Other)?;
        match v {
            Some(v) => txn.put(k, v, flags)?,
            None if replace_all => {}
            None => {
                txn.del(k)?;
            }
        }
    }
    let n = txn.entries()?;
    txn.commit()?;
    Ok(n)
}

// ---------------------------------------------------------------------------------
// Bulk loading a new file.

/// Writes a new database at `path` from records sorted by key; see [`build_new_with`].
pub fn build_new(
    path: &Path,
    sorted_records: impl IntoIterator<Item = Result<Record>>,
    own: &Ownership,
) -> Result<u64> {
    build_new_with(path, sorted_records, own, &Options::default())
}

/// Writes a new database at `path` (which must not exist) from records in strictly
/// increasing key order, and returns how many were written.
///
/// The file is built as a temporary file in the same directory (`O_EXCL`, given `own`
/// before any byte), with `MDB_APPEND` and a commit every `BATCH` records (so memory
/// stays bounded whatever the record count) without syncing, then fsynced once and
/// linked into place without replacing anything that appeared meanwhile. The lock file
/// `<path>-lock` is created (or reused) with `own` and mode 0660 first. An existing
/// `path` is refused: this is for new files only.
pub fn build_new_with(
    path: &Path,
    sorted_records: impl IntoIterator<Item = Result<Record>>,
    own: &Ownership,
    opts: &Options,
) -> Result<u64> {
    require_09(path)?;
    let target = Target::resolve(path)?;
    build_new_at(&target, sorted_records, own, opts)
}

/// [`build_new_with`] on a resolved target.
pub(crate) fn build_new_at(
    target: &Target,
    sorted_records: impl IntoIterator<Item = Result<Record>>,
    own: &Ownership,
    opts: &Options,
) -> Result<u64> {
    if target.existing.is_some() {
        return Err(Error::Invalid(format!(
            "{}: already exists; a bulk load only creates new databases",
            target.path.display()
        )));
    }
    let (total, tmp) = build_temp(target, sorted_records, own, opts)?;
    let mut lock = target.name.clone();
    lock.push("-lock");
    prepare_lock_at(&target.handle, &lock, own)?;
    tmp.link_into_place(&target.name)?;
    Ok(total)
}

/// Builds a complete database from records in strictly increasing key order into a
/// temporary file next to `target` (see [`build_new_with`]), and returns the record
/// count and the file, which the caller links or renames into place.
pub(crate) fn build_temp(
    target: &Target,
    sorted_records: impl IntoIterator<Item = Result<Record>>,
    own: &Ownership,
    opts: &Options,
) -> Result<(u64, persist::TempFile)> {
    require_09(&target.path)?;
    let (tmp_file, tmp) = persist::create_temp(target, own)?;
    // LMDB opens the file by name: through our descriptor's /proc/self/fd link when
    // there is one (no lock file with MDB_NOLOCK), else by a name nobody else can swap.
    let env_path = if ProcLinks::available() {
        PathBuf::from(format!("/proc/self/fd/{}", tmp_file.as_raw_fd()))
    } else if target.path_is_stable() {
        tmp.path().to_path_buf()
    } else {
        return Err(Error::Refused {
            path: target.path.clone(),
            why: "without /proc, LMDB would open the new file by name in a directory others \
                  can write; refusing"
                .into(),
        });
    };
    let mut map_size = opts.map_size()?.unwrap_or(DEFAULT_MAP_SIZE as usize);
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    let mut total = 0u64;
    let mut last: Option<Vec<u8>> = None;
    let mut records = sorted_records.into_iter();
    loop {
        batch.clear();
        for r in records.by_ref() {
            let r = r?;
            check_key(&r.key)?;
            if let Some(prev) = batch.last().map(|p| &p.key).or(last.as_ref())
                && r.key <= *prev
            {
                return Err(Error::Invalid(format!(
                    "bulk load: record {} is not in strictly increasing key order",
                    total + batch.len() as u64 + 1
                )));
            }
            batch.push(r);
            if batch.len() == BATCH {
                break;
            }
        }
        // One environment per batch: closing it unmaps the pages LMDB read through
        // its map (the right edge of the tree), which would otherwise pile up in our
        // RSS as the file grows. The first round also runs for an empty input, so the
        // file gets its meta pages.
        if batch.is_empty() && total > 0 {
            break;
        }
        let env = Env::open(&env_path, BULK_FLAGS, Some(map_size), None, Vec::new())
            .map_err(|c| lmdb_error(tmp.path(), "mdb_env_open", c))?;
        load_batch(&env, tmp.path(), &batch)?;
        map_size = env
            .info()
            .map_err(|c| lmdb_error(tmp.path(), "mdb_env_info", c))?
            .map_size;
        drop(env);
        if batch.is_empty() {
            break;
        }
        total += batch.len() as u64;
        last = batch.last().map(|r| r.key.clone());
    }
    drop(tmp_file);
    Ok((total, tmp))
}

fn load_batch(env: &Env, path: &Path, batch: &[Record]) -> Result<()> {
    loop {
        let r = (|| {
            let mut txn = env.begin_write()?;
            for rec in batch {
                txn.put(&rec.key, &rec.value, ffi::MDB_APPEND)?;
            }
            txn.commit()
        })();
        match r {
            Ok(()) => return Ok(()),
            Err(c) if c.0 == ffi::MDB_MAP_FULL => grow(env, path)?,
            Err(c) if c.0 == ffi::MDB_KEYEXIST => {
                return Err(Error::Invalid(
                    "bulk load: records are not in strictly increasing key order".into(),
                ));
            }
            Err(c) => return Err(lmdb_error(path, "bulk load", c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_modes() {
        assert_eq!(lock_mode(0o640), 0o660);
        assert_eq!(lock_mode(0o600), 0o600);
        assert_eq!(lock_mode(0o100640), 0o660);
        // Never anything for others, whatever the data file allows them.
        assert_eq!(lock_mode(0o644), 0o660);
        assert_eq!(lock_mode(0o666), 0o660);
        assert_eq!(lock_mode(0o604), 0o600);
    }

    #[test]
    fn growth_doubles_in_whole_pages() {
        let p = Path::new("x");
        assert_eq!(grown(p, 1 << 20, 4096).unwrap(), 2 << 20);
        assert_eq!(grown(p, 0, 4096).unwrap(), 2 << 20);
        assert_eq!(grown(p, (1 << 20) + 1, 4096).unwrap(), (2 << 20) + 4096);
        assert!(grown(p, MAX_MAP_SIZE, 4096).is_err());
    }

    #[test]
    fn links_lmdb_09() {
        let (major, minor, patch, text) = ffi::version();
        assert_eq!((major, minor, patch), (0, 9, 24), "{text}");
        assert!(text.starts_with("LMDB 0.9.24"), "{text}");
    }

    #[test]
    fn mapsize_option_is_kib() {
        let o = Options {
            mapsize_kib: Some(2048),
            max_readers: None,
        };
        assert_eq!(o.map_size().unwrap(), Some(2 << 20));
        assert_eq!(Options::default().map_size().unwrap(), None);
        let huge = Options {
            mapsize_kib: Some(u64::MAX),
            max_readers: None,
        };
        assert!(huge.map_size().is_err());
    }
}
