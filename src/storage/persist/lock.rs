//! The writers' lock file `<database>.lock`, and the names and modes of a format's
//! companion lock file (LMDB's `<database>-lock`).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg, OFlag};

use super::dir::Dir;
use super::{Ownership, Target, check_regular};
use crate::error::{Error, IoContext, Result};
use crate::format::Format;

/// The name of the writers' lock file of the database file `name`: `<name>.lock`.
pub fn lock_name(name: &OsStr) -> OsString {
    let mut n = name.to_os_string();
    n.push(".lock");
    n
}

/// The lock file that belongs to a database file of `format` besides our `.lock`
/// (LMDB's `<path>-lock`, which every reader opens read-write), if any.
#[cfg_attr(not(any(feature = "lmdb", feature = "postfix")), allow(dead_code))]
pub(crate) fn companion_lock(format: Format, path: &Path) -> Option<PathBuf> {
    (format == Format::Lmdb).then(|| {
        let mut s = path.as_os_str().to_os_string();
        s.push("-lock");
        PathBuf::from(s)
    })
}

/// The mode of a companion lock file for a data file of mode `data_mode`: write
/// permission wherever the data file is readable by owner or group (0640 gives 0660,
/// 0600 gives 0600), since readers open it read-write; never anything for others
/// (a lock file others could write lets them corrupt every reader's slot).
#[cfg_attr(not(any(feature = "lmdb", feature = "postfix")), allow(dead_code))]
pub(crate) fn companion_lock_mode(data_mode: u32) -> u32 {
    let m = data_mode & 0o660;
    m | ((m & 0o440) >> 1)
}

/// The exclusive writer lock of one database. Released on drop.
#[derive(Debug)]
pub struct WriteLock {
    _flock: Flock<File>,
    path: PathBuf,
}

impl WriteLock {
    /// Takes the lock `<database>.lock`, creating it (mode 0640, the database's
    /// ownership) if needed, waiting up to `timeout`. A lock file that is a symbolic
    /// link, has several hard links or is not a regular file is refused.
    pub fn acquire(target: &Target, own: &Ownership, timeout: Duration) -> Result<WriteLock> {
        Self::acquire_in(&target.handle, &lock_name(&target.name), own, timeout)
    }

    /// [`WriteLock::acquire`] for the lock file `name` in `dir`.
    pub fn acquire_in(
        dir: &Dir,
        name: &OsStr,
        own: &Ownership,
        timeout: Duration,
    ) -> Result<WriteLock> {
        let path = dir.join(name);
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            let file = open_lock_file(dir, name, &path)?;
            // Created 0600; then the database's owner, group and mode. Best effort: a
            // lock file someone else created keeps working either way.
            if own.enforced {
                let _ = own.apply(&file, &path);
            } else {
                let _ = file.set_permissions(fs::Permissions::from_mode(own.mode));
            }
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => {
                    // The lock file may have been replaced between open and flock.
                    let held = flock.metadata().at(&path)?;
                    match dir.lstat(name) {
                        Ok(Some(now)) if now.ino() == held.ino() && now.dev() == held.dev() => {
                            return Ok(WriteLock {
                                _flock: flock,
                                path,
                            });
                        }
                        _ => continue,
                    }
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {}
                Err((_, e)) => return Err(Error::io(&path, e.into())),
            }
            if start.elapsed() >= timeout {
                return Err(Error::Locked {
                    path,
                    waited_secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating, mode 0600) the lock file without following a symlink, and checks
/// it is a regular file with one link before anything is done to it.
fn open_lock_file(dir: &Dir, name: &OsStr, path: &Path) -> Result<File> {
    // Never more open than the database, even for a moment (umask 000 would give
    // root's group read access before the chown).
    let rw = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .map(File::from)
    .map_err(io::Error::from);
    let file = match rw {
        Ok(f) => f,
        // flock works on a read-only descriptor too.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => dir
            .open_at(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .map_err(|_| Error::io(path, e))?,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::Refused {
                path: path.to_path_buf(),
                why: "the writers' lock file is a symbolic link; refusing to follow it \
                      (remove it: sasldb check --fix does)"
                    .into(),
            });
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let m = file.metadata().at(path)?;
    check_regular(path, &m)?;
    if m.nlink() > 1 {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            why: format!(
                "the writers' lock file has {} hard links; refusing to use (and chown) a file \
                 with other names (remove it: sasldb check --fix does)",
                m.nlink()
            ),
        });
    }
    Ok(file)
}
