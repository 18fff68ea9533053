//! The lock libgdbm's users take on the data file itself.
//!
//! libgdbm (and so Cyrus's GDBM backend) takes `flock(LOCK_EX | LOCK_NB)` on the data
//! file to write and `flock(LOCK_SH | LOCK_NB)` to read, holds it until `gdbm_close`,
//! and updates the file in place; a process that cannot get the lock fails to open the
//! file instead of waiting. Our writers replace the file by rename instead, so from
//! before they read the old file (when their transaction begins) until the new one is
//! renamed over it they hold `LOCK_EX` on the old file, waiting for it as for our own
//! writer lock: a libgdbm writer already in the file makes us wait (its update is then
//! part of what we read), and one arriving while we hold the lock fails to open
//! instead of writing into a file about to be replaced. libgdbm readers fail to open
//! during that window too, as they do while any libgdbm writer works.
//!
//! A libgdbm process that opened the old file just before our rename and locks it just
//! after our release would update or read the replaced inode. To close that window,
//! the writer [`retire`](DataFileLock::retire)s the old file before it lets go: its
//! magic number is cleared, so such a process fails to open it (`Bad magic number`)
//! rather than writing where nobody will ever read.
//!
//! Readers of this crate take no lock to read; a file that does not parse is parsed
//! again under a shared lock ([`DataFileLock::acquire_shared`]) before it is called
//! corrupt, since a libgdbm writer may have been halfway through an update, and a
//! read that fails while another process holds the lock ([`held_elsewhere`]) is
//! reported as [`Error::Busy`].

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::error::{Error, IoContext, Result};
use crate::storage::persist::{Dir, Target};

/// How long a reader waits for a libgdbm writer to finish before giving up with
/// [`Error::Locked`] (libgdbm writers hold the lock for one update).
pub const READ_WAIT: Duration = Duration::from_secs(30);

/// A `flock` on a database file, as libgdbm's writers (exclusive) or readers (shared)
/// take it. Released on drop.
#[derive(Debug)]
pub struct DataFileLock {
    flock: Flock<File>,
    path: PathBuf,
    writable: bool,
    /// The directory the file was opened in, and its name there: every later look at
    /// the name goes through it.
    dir: Dir,
    name: OsString,
}

impl DataFileLock {
    /// Takes `flock(LOCK_EX)` on the existing file `path`, waiting up to `timeout` for
    /// libgdbm readers and writers to let go.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<DataFileLock> {
        let t = Target::entry(path, true)?;
        Self::acquire_in(&t.handle, &t.name, &t.path, timeout)
    }

    /// [`DataFileLock::acquire`] on the file `name` in the open directory `dir`
    /// (`path` is for messages): what a writer does, in the directory it resolved.
    pub fn acquire_in(
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        timeout: Duration,
    ) -> Result<DataFileLock> {
        Self::take(dir, name, path, timeout, FlockArg::LockExclusiveNonblock)
    }

    /// Takes `flock(LOCK_SH)` on the existing file `path`, waiting up to `timeout` for
    /// a libgdbm writer to let go.
    pub fn acquire_shared(path: &Path, timeout: Duration) -> Result<DataFileLock> {
        let t = Target::entry(path, true)?;
        Self::take(
            &t.handle,
            &t.name,
            &t.path,
            timeout,
            FlockArg::LockSharedNonblock,
        )
    }

    fn take(
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        timeout: Duration,
        how: FlockArg,
    ) -> Result<DataFileLock> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        let exclusive = matches!(how, FlockArg::LockExclusiveNonblock);
        loop {
            let (file, writable) = open(dir, name, path, exclusive)?;
            match Flock::lock(file, how) {
                Ok(flock) => {
                    // The file may have been replaced between open and flock.
                    let held = flock.metadata().at(path)?;
                    match dir.lstat(name) {
                        Ok(Some(now)) if now.ino() == held.ino() && now.dev() == held.dev() => {
                            return Ok(DataFileLock {
                                flock,
                                path: path.to_path_buf(),
                                writable,
                                dir: dir.clone(),
                                name: name.to_os_string(),
                            });
                        }
                        _ => continue,
                    }
                }
                Err((_, Errno::EWOULDBLOCK)) => {}
                Err((_, e)) => return Err(Error::io(path, e.into())),
            }
            if start.elapsed() >= timeout {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                    waited_secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(delay);
            // libgdbm never waits for the lock: short polls, or a busy libgdbm writer
            // could take it back between every two of ours.
            delay = (delay * 2).min(Duration::from_millis(10));
        }
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file's open description (read it under the lock).
    pub fn file(&self) -> &File {
        &self.flock
    }

    /// After the locked file has been replaced by a rename: clears its magic number, so
    /// that a libgdbm process that opened it before the rename and gets the lock after
    /// ours is released fails to open it instead of updating a file nobody will read.
    /// Does nothing unless `path` now names another file, or when the file could only
    /// be opened read-only. Returns whether the file was retired.
    pub fn retire(&self) -> bool {
        let Ok(held) = self.flock.metadata() else {
            return false;
        };
        let replaced = match self.dir.lstat(&self.name) {
            Ok(Some(now)) => now.ino() != held.ino() || now.dev() != held.dev(),
            Ok(None) => true,
            Err(_) => false,
        };
        if !replaced || !self.writable || held.len() < 4 {
            return false;
        }
        self.flock.write_all_at(&[0u8; 4], 0).is_ok()
    }
}

/// Opens `name` in `dir` for locking (never following a link): read-write when `rw`
/// and allowed (so that it can be retired), else read-only.
fn open(dir: &Dir, name: &OsStr, path: &Path, rw: bool) -> Result<(File, bool)> {
    // O_NONBLOCK: a FIFO planted there must not block the open.
    let flags = |write: bool| {
        OFlag::O_NONBLOCK
            | if write {
                OFlag::O_RDWR
            } else {
                OFlag::O_RDONLY
            }
    };
    if rw {
        match dir.open_at(name, flags(true)) {
            Ok(f) => return Ok((f, true)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EACCES | libc::EROFS | libc::EPERM)
                ) => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok((dir.open_at(name, flags(false)).at(path)?, false))
}

/// Whether another open file description (in practice another process: a libgdbm
/// writer) holds an exclusive lock on `path` right now.
pub fn held_elsewhere(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, e)) => e == Errno::EWOULDBLOCK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_then_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, b"x").unwrap();
        let held = DataFileLock::acquire(&p, Duration::from_secs(1)).unwrap();
        assert!(held_elsewhere(&p));
        let t = Instant::now();
        let r = DataFileLock::acquire(&p, Duration::from_millis(100));
        assert!(matches!(r, Err(Error::Locked { .. })));
        assert!(t.elapsed() >= Duration::from_millis(100));
        let r = DataFileLock::acquire_shared(&p, Duration::from_millis(50));
        assert!(matches!(r, Err(Error::Locked { .. })));
        drop(held);
        assert!(!held_elsewhere(&p));
        DataFileLock::acquire(&p, Duration::from_millis(100)).unwrap();
        assert!(DataFileLock::acquire(&dir.path().join("missing"), Duration::ZERO).is_err());
        // Shared locks coexist, and keep writers out.
        let a = DataFileLock::acquire_shared(&p, Duration::ZERO).unwrap();
        let _b = DataFileLock::acquire_shared(&p, Duration::ZERO).unwrap();
        assert!(DataFileLock::acquire(&p, Duration::ZERO).is_err());
        assert!(!a.retire());
    }

    #[test]
    fn retire_clears_the_magic_of_a_replaced_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, b"\xcf\x9a\x57\x13rest").unwrap();
        let lock = DataFileLock::acquire(&p, Duration::ZERO).unwrap();
        assert!(!lock.retire(), "not replaced yet");
        assert_eq!(std::fs::read(&p).unwrap(), b"\xcf\x9a\x57\x13rest");
        let keep = dir.path().join("old");
        std::fs::hard_link(&p, &keep).unwrap();
        std::fs::write(dir.path().join("new"), b"new").unwrap();
        std::fs::rename(dir.path().join("new"), &p).unwrap();
        assert!(lock.retire());
        assert_eq!(std::fs::read(&keep).unwrap(), b"\0\0\0\0rest");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }
}
