//! The lock libgdbm's users take on the data file itself.
//!
//! libgdbm (and so Cyrus's GDBM backend) takes `flock(LOCK_EX | LOCK_NB)` on the data
//! file to write and `flock(LOCK_SH | LOCK_NB)` to read, and updates the file in place.
//! Our writers replace the file by rename instead, so while they read the old file and
//! build the new one they hold `LOCK_EX` on the old file: a libgdbm writer already in
//! the file makes us wait (its update is then part of what we read), and one arriving
//! while we hold the lock fails to open instead of writing into a file about to be
//! replaced. libgdbm readers fail to open during that window too, as they do while any
//! libgdbm writer works.
//!
//! A libgdbm process that opened the old file just before our rename and locks it just
//! after our release would update the replaced inode; the window is the few
//! instructions between its `open` and its `flock`.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::error::{Error, IoContext, Result};
use crate::storage::persist::Dir;

/// An exclusive `flock` on a database file, as libgdbm's writers take it. Released on
/// drop.
#[derive(Debug)]
pub struct DataFileLock {
    _flock: Flock<File>,
    path: PathBuf,
}

impl DataFileLock {
    /// Takes `flock(LOCK_EX)` on the existing file `path`, waiting up to `timeout` for
    /// libgdbm readers and writers to let go.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<DataFileLock> {
        let t = crate::storage::persist::Target::entry(path, true)?;
        Self::acquire_in(&t.handle, &t.name, &t.path, timeout)
    }

    /// [`DataFileLock::acquire`] on the file `name` in the open directory `dir`
    /// (`path` is for messages).
    pub fn acquire_in(
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        timeout: Duration,
    ) -> Result<DataFileLock> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            let file = dir.open_at(name, OFlag::O_RDONLY).at(path)?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => {
                    // The file may have been replaced between open and flock.
                    let held = flock.metadata().at(path)?;
                    match dir.lstat(name) {
                        Ok(Some(now)) if now.ino() == held.ino() && now.dev() == held.dev() => {
                            return Ok(DataFileLock {
                                _flock: flock,
                                path: path.to_path_buf(),
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
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
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
        let t = Instant::now();
        let r = DataFileLock::acquire(&p, Duration::from_millis(100));
        assert!(matches!(r, Err(Error::Locked { .. })));
        assert!(t.elapsed() >= Duration::from_millis(100));
        drop(held);
        DataFileLock::acquire(&p, Duration::from_millis(100)).unwrap();
        assert!(DataFileLock::acquire(&dir.path().join("missing"), Duration::ZERO).is_err());
    }
}
