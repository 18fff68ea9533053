//! The write path every backend and tool uses: resolving the database path, the
//! writer lock, the ownership policy, and atomic replacement.
//!
//! Guarantees, in order of a write:
//! 1. [`Target::resolve`]: the path is walked from `/` one component at a time
//!    ([`dir::walk`]) and the database's directory opened once; every later file
//!    operation goes through that descriptor ([`Dir`]: `openat` with `O_NOFOLLOW`,
//!    `renameat`, `linkat`, `fsync`), so a directory renamed or swapped on the way
//!    cannot move the write elsewhere. A symlinked database is followed to its real
//!    file (the link survives); a file with several hard links is refused (a rename
//!    would split them); anything but a regular file is refused; a missing directory
//!    is an error. [`Target::check_safe`]: as root, a path through a directory that
//!    someone else can write (another owner, a group other than root's, everyone;
//!    the database's own directory sticky or not) is refused, naming the directory,
//!    unless the caller allows it ([`crate::WriteOptions::allow_unsafe_dir`]).
//! 2. [`WriteLock::acquire`]: an exclusive `flock` on `<database>.lock` next to the
//!    real file, so concurrent writers serialise and no update is lost. It waits up to a
//!    timeout rather than forever. A lock file that is a symlink or has other hard
//!    links is refused, never followed or changed.
//! 3. [`Ownership::plan`]: as root, the result is `root:<group>` mode 0640 (group from
//!    `--group`, `SASLDB_GROUP`, else `postfix`; a missing group is an error before
//!    anything is written). Not root: the existing owner and group are kept, the mode
//!    is narrowed to at most 0640, and a warning says ownership was not enforced.
//!    Owner, group and mode are only ever set through a descriptor of the file
//!    ([`Ownership::apply`], [`apply_at`]), never by path.
//! 4. [`replace_file`]: the new content goes to a temporary file in the same directory,
//!    created `O_EXCL|O_NOFOLLOW` with mode 0600, given its final owner and mode before
//!    any byte is written, fsynced, renamed over the database, and the directory is
//!    fsynced. A crash at any point leaves the old or the new file, never a torn one;
//!    a temporary file left by a crash is removed by the next writer (under the lock).

pub mod dir;
mod lock;
mod ownership;
mod replace;

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use dir::{Dir, ProcLinks, Unsafe};
pub use lock::{WriteLock, lock_name};
#[cfg_attr(not(any(feature = "lmdb", feature = "postfix")), allow(unused_imports))]
pub(crate) use lock::{companion_lock, companion_lock_mode};
pub use ownership::{Ownership, OwnershipPolicy, apply_at, group_name, lookup_group, user_name};
#[cfg(test)]
pub(crate) use replace::create_temp_named;
pub use replace::{TempFile, create_temp, replace_file, sync_dir};

use crate::error::{Error, Result};

/// The widest mode a database file gets.
pub const DB_MODE: u32 = 0o640;

/// The group that must read the database for Postfix's smtpd: what the tools give a
/// database as root unless told otherwise.
pub const POSTFIX_GROUP: &str = "postfix";

const TEMP_MARKER: &str = ".sasldb-tmp-";
/// The path a writer's I/O errors carry (a [`crate::storage::bdb::PageSink`] knows no file
/// name); [`replace_file`] puts the database's path in its place.
pub const BEING_WRITTEN: &str = "<database being written>";

/// The real file a database path names, resolved for writing, with its directory
/// open.
#[derive(Debug, Clone)]
pub struct Target {
    /// The path as given.
    pub given: PathBuf,
    /// The real file (symlinks followed).
    pub path: PathBuf,
    /// Its directory's path.
    pub dir: PathBuf,
    /// Its file name.
    pub name: OsString,
    /// The existing file's metadata, if it exists.
    pub existing: Option<Metadata>,
    /// Its directory, open: every file operation of a write goes through it.
    pub handle: Dir,
    /// A directory on the way that someone else can write, if any.
    pub unsafe_dir: Option<Unsafe>,
    /// A symbolic link on the way that someone else can change, if any (see
    /// [`dir::Walked::unsafe_link`]).
    pub unsafe_link: Option<(PathBuf, Unsafe)>,
}

impl Target {
    /// Resolves `given` for writing: follows symlinks, refuses non-regular files and
    /// hard-linked files, and requires the directory to exist.
    pub fn resolve(given: &Path) -> Result<Target> {
        let t = Self::entry(given, true)?;
        if let Some(m) = &t.existing {
            check_regular(&t.path, m)?;
            if m.nlink() > 1 && m.nlink() > 1 + temp_links(&t.handle, &t.name, m) {
                return Err(Error::HardLinked {
                    path: t.path,
                    links: m.nlink(),
                });
            }
        }
        Ok(t)
    }

    /// The same target looked at again, in the directory already open (its final
    /// name is not followed this time): what a writer does once it holds the lock.
    pub fn refresh(&self) -> Result<Target> {
        let existing = self
            .handle
            .lstat(&self.name)
            .map_err(|e| Error::io(&self.path, e))?;
        if let Some(m) = &existing {
            check_regular(&self.path, m)?;
            if m.nlink() > 1 && m.nlink() > 1 + temp_links(&self.handle, &self.name, m) {
                return Err(Error::HardLinked {
                    path: self.path.clone(),
                    links: m.nlink(),
                });
            }
        }
        Ok(Target {
            existing,
            ..self.clone()
        })
    }

    /// The directory entry `given` names, as it is (`follow` says whether a final
    /// symlink is followed); no check of what is there.
    pub fn entry(given: &Path, follow: bool) -> Result<Target> {
        let w = dir::walk(given, follow)?;
        Ok(Target {
            given: given.to_path_buf(),
            dir: w.dir.path().to_path_buf(),
            path: w.path,
            name: w.name,
            existing: w.existing,
            handle: w.dir,
            unsafe_dir: w.unsafe_dir,
            unsafe_link: w.unsafe_link,
        })
    }

    /// As root, refuses a path through a directory someone else can write (see the
    /// module docs) unless `allow`, and always a path through a symbolic link that
    /// someone else can change (`allow` lets root write *in* such a directory, never
    /// follow a link there: it could point anywhere). Not as root, everything passes
    /// (the write can only reach what the user may change anyway).
    pub fn check_safe(&self, allow: bool) -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        if let Some((link, u)) = &self.unsafe_link {
            return Err(Error::UnsafeSymlink {
                path: self.given.clone(),
                link: link.clone(),
                dir: u.dir.clone(),
                why: u.why.clone(),
            });
        }
        match &self.unsafe_dir {
            Some(u) if !allow => Err(Error::UnsafeDirectory {
                path: self.given.clone(),
                dir: u.dir.clone(),
                why: u.why.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether a library that opens files by name (SQLite) may be given
    /// [`Target::path`]: nobody else can swap a name on the way, or we are not root.
    pub fn path_is_stable(&self) -> bool {
        self.unsafe_dir.is_none() || !nix::unistd::geteuid().is_root()
    }

    /// The lock file guarding this database: `<real file>.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.handle.join(&lock_name(&self.name))
    }

    fn temp_prefix(&self) -> OsString {
        temp_prefix(&self.name)
    }

    /// The temporary files a crashed writer left behind (or a running one is
    /// writing: only a holder of the lock can tell).
    pub fn stale_temps(&self) -> Result<Vec<PathBuf>> {
        let prefix = self.temp_prefix();
        let mut found: Vec<PathBuf> = self
            .handle
            .names()
            .map_err(|e| Error::io(&self.dir, e))?
            .into_iter()
            .filter(|(n, file)| *file && n.as_bytes().starts_with(prefix.as_bytes()))
            .map(|(n, _)| self.handle.join(&n))
            .collect();
        found.sort();
        Ok(found)
    }

    /// Removes temporary files a crashed writer left behind. Call with the lock held.
    pub fn remove_stale_temps(&self) -> Result<usize> {
        let prefix = self.temp_prefix();
        let mut removed = 0;
        for (n, file) in self.handle.names().map_err(|e| Error::io(&self.dir, e))? {
            if file && n.as_bytes().starts_with(prefix.as_bytes()) && self.handle.unlink(&n).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// How many of a file's links are temporary names of ours in its directory: a writer
/// killed between linking a new file into place and removing its temporary name
/// leaves one, which the next writer removes (under the lock).
fn temp_links(dir: &Dir, name: &OsStr, m: &Metadata) -> u64 {
    let prefix = temp_prefix(name);
    let Ok(names) = dir.names() else {
        return 0;
    };
    names
        .iter()
        .filter(|(n, _)| n.as_bytes().starts_with(prefix.as_bytes()))
        .filter(|(n, _)| {
            dir.lstat(n)
                .ok()
                .flatten()
                .is_some_and(|t| t.ino() == m.ino() && t.dev() == m.dev())
        })
        .count() as u64
}

/// The name prefix of a database's temporary files: `.<name>.sasldb-tmp-`.
pub(crate) fn temp_prefix(name: &OsStr) -> OsString {
    let mut p = OsString::from(".");
    p.push(name);
    p.push(TEMP_MARKER);
    p
}

/// Refuses anything that is not a regular file.
pub fn check_regular(path: &Path, m: &Metadata) -> Result<()> {
    let ft = m.file_type();
    if ft.is_file() {
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    };
    Err(Error::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

/// Writes all of `buf` at `offset` with `pwrite`, retrying short writes and `EINTR`.
/// What [`crate::storage::bdb::PageSink`] does for files; faults are injected per `pwrite`.
pub(crate) fn pwrite_all(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    while !buf.is_empty() {
        let n = match fault::inject_write(file, buf, offset) {
            Some(r) => r,
            None => file.write_at(buf, offset),
        };
        match n {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fault injection for the write path's I/O, in unit tests only: every step of a
/// replace (temporary file creation, ownership, each `pwrite`, fsync, rename or link,
/// directory fsync) asks [`inject`] first. In other builds the calls are empty and
/// inlined away.
pub(crate) mod fault {
    #[cfg(not(test))]
    use std::{fs::File, io};

    /// One I/O step of the write path.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) enum Step {
        /// Creating the temporary file.
        Create,
        /// Giving it its owner and mode.
        Own,
        /// One `pwrite` of the new content.
        Write,
        /// fsync of the new file.
        Fsync,
        /// Renaming it over the database.
        Rename,
        /// Linking a new file into place (bulk load).
        Link,
        /// Removing the temporary name after a link.
        Unlink,
        /// fsync of the directory.
        SyncDir,
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(crate) fn inject(_step: Step) -> io::Result<()> {
        Ok(())
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(crate) fn inject_write(_f: &File, _buf: &[u8], _off: u64) -> Option<io::Result<usize>> {
        None
    }

    #[cfg(test)]
    pub(crate) use plan::*;

    #[cfg(test)]
    mod plan {
        use super::Step;
        use std::cell::RefCell;
        use std::collections::BTreeMap;
        use std::fs::File;
        use std::io;
        use std::os::unix::fs::FileExt;

        /// What goes wrong at a step.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Fault {
            /// The call fails with this errno (a write writes nothing).
            Errno(i32),
            /// A `pwrite` writes only part of its buffer (and succeeds); other steps
            /// ignore it.
            Short,
            /// A `pwrite` writes part of its buffer, then fails with this errno.
            ShortThen(i32),
        }

        /// The faults of one thread's next write, by step number (0-based, every
        /// step counted), and the steps seen so far.
        #[derive(Debug, Default)]
        pub(crate) struct Plan {
            pub faults: BTreeMap<usize, Fault>,
            pub seen: Vec<Step>,
        }

        thread_local! {
            static PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
        }

        /// Runs `f` with `plan` installed on this thread; returns its result and the
        /// steps it went through.
        pub(crate) fn with_plan<T>(plan: Plan, f: impl FnOnce() -> T) -> (T, Vec<Step>) {
            PLAN.with(|p| *p.borrow_mut() = Some(plan));
            let out = f();
            let plan = PLAN.with(|p| p.borrow_mut().take()).unwrap_or_default();
            (out, plan.seen)
        }

        fn next(step: Step) -> Option<Fault> {
            PLAN.with(|p| {
                let mut p = p.borrow_mut();
                let plan = p.as_mut()?;
                let n = plan.seen.len();
                plan.seen.push(step);
                plan.faults.get(&n).copied()
            })
        }

        pub(crate) fn inject(step: Step) -> io::Result<()> {
            match next(step) {
                Some(Fault::Errno(e)) | Some(Fault::ShortThen(e)) => {
                    Err(io::Error::from_raw_os_error(e))
                }
                _ => Ok(()),
            }
        }

        pub(crate) fn inject_write(f: &File, buf: &[u8], off: u64) -> Option<io::Result<usize>> {
            let half = &buf[..buf.len().div_ceil(2)];
            match next(Step::Write)? {
                Fault::Errno(e) => Some(Err(io::Error::from_raw_os_error(e))),
                Fault::Short => Some(f.write_at(half, off)),
                Fault::ShortThen(e) => Some(
                    f.write_at(half, off)
                        .and_then(|_| Err(io::Error::from_raw_os_error(e))),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::IoContext;
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::time::Duration;

    fn libc_flags() -> i32 {
        libc::O_NOFOLLOW | libc::O_CLOEXEC
    }

    /// Our own uid/gid with the database mode: valid whoever runs the tests.
    fn plan_for(_t: &Target) -> Ownership {
        Ownership {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mode: DB_MODE,
            enforced: false,
            note: None,
            warning: None,
        }
    }

    #[test]
    fn replace_is_atomic_and_cleans_up_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        fs::write(&db, b"old").unwrap();
        let t = Target::resolve(&db).unwrap();
        let own = plan_for(&t);
        let r: Result<()> = replace_file(&t, &own, |f| {
            f.write_all(b"half").unwrap();
            Err(Error::Invalid("boom".into()))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&db).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file removed"
        );
        replace_file(&t, &own, |f| f.write_all(b"new").at(&db)).unwrap();
        assert_eq!(fs::read(&db).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            DB_MODE
        );
    }

    #[test]
    fn symlinks_are_followed_and_survive() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.db");
        fs::write(&real, b"x").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink("real.db", &link).unwrap();
        let t = Target::resolve(&link).unwrap();
        assert_eq!(t.path, real);
        replace_file(&t, &plan_for(&t), |f| f.write_all(b"y").at(&real)).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&link).unwrap(), b"y");
        assert_eq!(t.lock_path(), dir.path().join("real.db.lock"));
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::write(&a, b"x").unwrap();
        fs::hard_link(&a, dir.path().join("b")).unwrap();
        assert!(matches!(
            Target::resolve(&a),
            Err(Error::HardLinked { links: 2, .. })
        ));
        assert!(matches!(
            Target::resolve(dir.path()),
            Err(Error::NotAFile { .. })
        ));
        let missing = dir.path().join("nodir/db");
        assert!(matches!(Target::resolve(&missing), Err(Error::Io { .. })));
        let l1 = dir.path().join("l1");
        std::os::unix::fs::symlink("l2", &l1).unwrap();
        std::os::unix::fs::symlink("l1", dir.path().join("l2")).unwrap();
        assert!(matches!(
            Target::resolve(&l1),
            Err(Error::BadSymlink { .. })
        ));
    }

    #[test]
    fn planted_symlink_at_temp_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let t = Target::resolve(&db).unwrap();
        // create_new + O_NOFOLLOW: an existing name (symlink or not) makes the open fail
        // rather than write through it; random names make a collision improbable, so
        // check the flag combination directly.
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let planted = dir.path().join(".planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let r = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_flags())
            .open(&planted);
        assert!(r.is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        drop(t);
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        fs::write(dir.path().join(".db.sasldb-tmp-0011"), b"secret").unwrap();
        fs::write(dir.path().join("other"), b"keep").unwrap();
        let t = Target::resolve(&db).unwrap();
        assert_eq!(t.remove_stale_temps().unwrap(), 1);
        assert!(dir.path().join("other").exists());
    }

    #[test]
    fn lock_excludes_second_writer() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::resolve(&dir.path().join("db")).unwrap();
        let own = plan_for(&t);
        let held = WriteLock::acquire(&t, &own, Duration::from_secs(1)).unwrap();
        let r = WriteLock::acquire(&t, &own, Duration::from_millis(50));
        assert!(matches!(r, Err(Error::Locked { .. })));
        drop(held);
        WriteLock::acquire(&t, &own, Duration::from_millis(50)).unwrap();
    }
}
