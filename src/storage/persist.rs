//! The write path every backend and tool uses: resolving the database path, the
//! writer lock, the ownership policy, and atomic replacement.
//!
//! Guarantees, in order of a write:
//! 1. [`Target::resolve`]: a symlinked database is followed to its real file (the link
//!    survives); a file with several hard links is refused (a rename would split
//!    them); anything but a regular file is refused; a missing directory is an error.
//! 2. [`WriteLock::acquire`]: an exclusive `flock` on `<database>.lock` next to the
//!    real file, so concurrent writers serialise and no update is lost. It waits up to a
//!    timeout rather than forever.
//! 3. [`Ownership::plan`]: as root, the result is `root:<group>` mode 0640 (group from
//!    `--group`, `SASLDB_GROUP`, else `postfix`; a missing group is an error before
//!    anything is written). Not root: the existing owner and group are kept, the mode
//!    is narrowed to at most 0640, and a warning says ownership was not enforced.
//! 4. [`replace_file`]: the new content goes to a temporary file in the same directory,
//!    created `O_EXCL|O_NOFOLLOW` with mode 0600, given its final owner and mode before
//!    any byte is written, fsynced, renamed over the database, and the directory is
//!    fsynced. A crash at any point leaves the old or the new file, never a torn one;
//!    a temporary file left by a crash is removed by the next writer (under the lock).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Group, Uid, fchown};

use crate::error::{Error, IoContext, Result};
use crate::format::Format;

/// The widest mode a database file gets.
pub const DB_MODE: u32 = 0o640;

/// The group that must read the database for Postfix's smtpd: what the tools give a
/// database as root unless told otherwise.
pub const POSTFIX_GROUP: &str = "postfix";

const TEMP_MARKER: &str = ".sasldb-tmp-";
/// The path a writer's I/O errors carry (a [`crate::storage::bdb::PageSink`] knows no file
/// name); [`replace_file`] puts the database's path in its place.
pub const BEING_WRITTEN: &str = "<database being written>";
const MAX_SYMLINKS: usize = 40;

/// The real file a database path names, resolved for writing.
#[derive(Debug, Clone)]
pub struct Target {
    /// The path as given.
    pub given: PathBuf,
    /// The real file (symlinks followed).
    pub path: PathBuf,
    /// Its directory.
    pub dir: PathBuf,
    /// Its file name.
    pub name: OsString,
    /// The existing file's metadata, if it exists.
    pub existing: Option<Metadata>,
}

impl Target {
    /// Resolves `given` for writing: follows symlinks, refuses non-regular files and
    /// hard-linked files, and requires the directory to exist.
    pub fn resolve(given: &Path) -> Result<Target> {
        let mut path = given.to_path_buf();
        for _ in 0..MAX_SYMLINKS {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    let link = fs::read_link(&path).at(&path)?;
                    path = match path.parent() {
                        Some(parent) if link.is_relative() => parent.join(link),
                        _ => link,
                    };
                }
                Ok(m) => return Self::finish(given, path, Some(m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Self::finish(given, path, None);
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::BadSymlink {
            path: given.to_path_buf(),
            what: "too many levels of symbolic links",
        })
    }

    fn finish(given: &Path, path: PathBuf, meta: Option<Metadata>) -> Result<Target> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{}: not a file name", path.display())))?
            .to_os_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Some(m) = &meta {
            check_regular(&path, m)?;
            if m.nlink() > 1 && m.nlink() > 1 + temp_links(&dir, &name, m) {
                return Err(Error::HardLinked {
                    path,
                    links: m.nlink(),
                });
            }
        } else {
            match fs::metadata(&dir) {
                Ok(d) if d.is_dir() => {}
                Ok(_) => {
                    return Err(Error::io(
                        &dir,
                        io::Error::from(io::ErrorKind::NotADirectory),
                    ));
                }
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        Ok(Target {
            given: given.to_path_buf(),
            path,
            dir,
            name,
            existing: meta,
        })
    }

    /// The lock file guarding this database: `<real file>.lock`.
    pub fn lock_path(&self) -> PathBuf {
        let mut n = self.name.clone();
        n.push(".lock");
        self.dir.join(n)
    }

    fn temp_prefix(&self) -> OsString {
        temp_prefix(&self.name)
    }

    /// The temporary files a crashed writer left behind (or a running one is
    /// writing: only a holder of the lock can tell).
    pub fn stale_temps(&self) -> Result<Vec<PathBuf>> {
        let prefix = self.temp_prefix();
        let rd = fs::read_dir(&self.dir).at(&self.dir)?;
        let mut found: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| {
                e.file_name().as_bytes().starts_with(prefix.as_bytes())
                    && e.file_type().map(|t| t.is_file()).unwrap_or(false)
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        Ok(found)
    }

    /// Removes temporary files a crashed writer left behind. Call with the lock held.
    pub fn remove_stale_temps(&self) -> Result<usize> {
        let prefix = self.temp_prefix();
        let mut removed = 0;
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for entry in rd.flatten() {
            let fname = entry.file_name();
            if fname.as_bytes().starts_with(prefix.as_bytes())
                && entry.file_type().map(|t| t.is_file()).unwrap_or(false)
                && fs::remove_file(entry.path()).is_ok()
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
fn temp_links(dir: &Path, name: &OsStr, m: &Metadata) -> u64 {
    let prefix = temp_prefix(name);
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(prefix.as_bytes()))
        .filter(|e| {
            fs::symlink_metadata(e.path()).is_ok_and(|t| t.ino() == m.ino() && t.dev() == m.dev())
        })
        .count() as u64
}

/// The name prefix of a database's temporary files: `.<name>.sasldb-tmp-`.
fn temp_prefix(name: &OsStr) -> OsString {
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
    } else {
        "not a regular file"
    };
    Err(Error::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

/// Who owns a database file (and its companion files: LMDB's `-lock`, the writer lock)
/// after a write.
///
/// ```
/// use sasldb::OwnershipPolicy;
/// // The default, and what the tools do: as root, root:postfix with mode 0640.
/// assert_eq!(OwnershipPolicy::default(), OwnershipPolicy::RootGroup("postfix".into()));
/// // An embedder that manages ownership itself.
/// let keep = OwnershipPolicy::Keep;
/// # let _ = keep;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnershipPolicy {
    /// Keep the existing file's owner and group; narrow its mode to at most 0640. A new
    /// file belongs to the writer (and the directory's group when it is setgid), mode
    /// 0640. A process that is not root cannot keep another user's file and is refused.
    Keep,
    /// Running as root: `root:<group>` with mode 0640, what Postfix's smtpd needs (it
    /// reads the database through its group); a group that does not exist is an error
    /// before anything is written. Not running as root: [`OwnershipPolicy::Keep`], with
    /// a warning in the commit report that ownership was not enforced.
    RootGroup(String),
    /// Give every file this owner, group and mode (the writer must be root, or be
    /// `uid` and a member of `gid`).
    Set {
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Permission bits (the tools use 0640: never readable by others).
        mode: u32,
    },
}

impl Default for OwnershipPolicy {
    /// `root:postfix` 0640 as root, else keep.
    fn default() -> Self {
        OwnershipPolicy::RootGroup(POSTFIX_GROUP.to_owned())
    }
}

impl OwnershipPolicy {
    /// The policy as this process applies it: [`OwnershipPolicy::RootGroup`] becomes
    /// `Set` (as root; the group looked up) or `Keep`.
    fn resolve(&self) -> Result<OwnershipPolicy> {
        match self {
            OwnershipPolicy::RootGroup(group) if Uid::effective().is_root() => {
                Ok(OwnershipPolicy::Set {
                    uid: 0,
                    gid: lookup_group(group)?,
                    mode: DB_MODE,
                })
            }
            OwnershipPolicy::RootGroup(_) => Ok(OwnershipPolicy::Keep),
            other => Ok(other.clone()),
        }
    }
}

/// Who should own the written files, and with which mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Whether the policy was enforced (running as root).
    pub enforced: bool,
    /// A note for stderr (e.g. the group changed from `sasl` to `postfix`).
    pub note: Option<String>,
    /// A warning for stderr (ownership not enforced).
    pub warning: Option<String>,
}

impl Ownership {
    /// Decides the ownership of a database about to be written, under `policy`.
    pub fn plan(target: &Target, policy: &OwnershipPolicy) -> Result<Ownership> {
        let euid = Uid::effective();
        match policy.resolve()? {
            OwnershipPolicy::Set { uid, gid, mode } => {
                if !euid.is_root() && uid != euid.as_raw() {
                    return Err(Error::Invalid(format!(
                        "{}: cannot give the database to uid {uid} when running as uid {}",
                        target.path.display(),
                        euid.as_raw()
                    )));
                }
                let note = match &target.existing {
                    Some(m) if m.gid() != gid => Some(format!(
                        "{}: group changed from {} to {} (mode {:o})",
                        target.path.display(),
                        group_name(m.gid()),
                        group_name(gid),
                        mode
                    )),
                    _ => None,
                };
                Ok(Ownership {
                    uid,
                    gid,
                    mode,
                    enforced: true,
                    note,
                    warning: None,
                })
            }
            OwnershipPolicy::Keep | OwnershipPolicy::RootGroup(_) => {
                let (uid, gid, mode) = match &target.existing {
                    Some(m) => {
                        if !euid.is_root() && m.uid() != euid.as_raw() {
                            return Err(Error::ForeignOwner {
                                path: target.path.clone(),
                                uid: m.uid(),
                                gid: m.gid(),
                                euid: euid.as_raw(),
                            });
                        }
                        (m.uid(), m.gid(), m.permissions().mode() & DB_MODE)
                    }
                    None => (euid.as_raw(), new_file_gid(&target.dir), DB_MODE),
                };
                let warning = (!euid.is_root()).then(|| {
                    format!(
                        "not running as root: ownership not enforced ({} kept as {}:{}, mode {:o})",
                        target.path.display(),
                        user_name(uid),
                        group_name(gid),
                        mode
                    )
                });
                Ok(Ownership {
                    uid,
                    gid,
                    mode,
                    enforced: false,
                    note: None,
                    warning,
                })
            }
        }
    }

    /// The ownership `policy` gives every file it writes, for checks (`sasldb check`);
    /// `None` when it keeps what is there.
    pub fn of_policy(policy: &OwnershipPolicy) -> Result<Option<Ownership>> {
        Ok(match policy.resolve()? {
            OwnershipPolicy::Set { uid, gid, mode } => Some(Ownership {
                uid,
                gid,
                mode,
                enforced: true,
                note: None,
                warning: None,
            }),
            _ => None,
        })
    }

    /// Gives an open file this ownership and mode.
    pub fn apply(&self, file: &File, path: &Path) -> Result<()> {
        let m = file.metadata().at(path)?;
        if m.uid() != self.uid || m.gid() != self.gid {
            let uid = (m.uid() != self.uid).then(|| Uid::from_raw(self.uid));
            fchown(file, uid, Some(Gid::from_raw(self.gid))).at(path)?;
        }
        file.set_permissions(fs::Permissions::from_mode(self.mode))
            .at(path)?;
        Ok(())
    }
}

/// Looks a group up by name (or a number); a missing group is
/// [`Error::NoSuchGroup`].
pub fn lookup_group(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(Error::NoSuchGroup(name.to_owned())),
        Err(e) => Err(Error::Invalid(format!(
            "cannot look group `{name}` up: {e}"
        ))),
    }
}

/// A group's name, or its number when it has none.
pub fn group_name(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

/// A user's name, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// The group a new file in `dir` gets: the directory's when it is setgid, else ours.
fn new_file_gid(dir: &Path) -> u32 {
    match fs::metadata(dir) {
        Ok(m) if m.permissions().mode() & 0o2000 != 0 => m.gid(),
        _ => nix::unistd::getegid().as_raw(),
    }
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
/// permission wherever the data file is readable (0640 gives 0660, 0600 gives 0600),
/// since readers open it read-write.
#[cfg_attr(not(any(feature = "lmdb", feature = "postfix")), allow(dead_code))]
pub(crate) fn companion_lock_mode(data_mode: u32) -> u32 {
    let m = data_mode & 0o777;
    m | ((m & 0o444) >> 1)
}

/// The exclusive writer lock of one database. Released on drop.
#[derive(Debug)]
pub struct WriteLock {
    _flock: Flock<File>,
    path: PathBuf,
}

impl WriteLock {
    /// Takes the lock `<database>.lock`, creating it (mode 0640, the database's
    /// ownership) if needed, waiting up to `timeout`.
    pub fn acquire(target: &Target, own: &Ownership, timeout: Duration) -> Result<WriteLock> {
        let path = target.lock_path();
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            let file = open_lock_file(&path)?;
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
                    match fs::symlink_metadata(&path) {
                        Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
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

fn open_lock_file(path: &Path) -> Result<File> {
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        // Never more open than the database, even for a moment (umask 000 would give
        // root's group read access before the chown).
        .mode(0o600)
        .custom_flags(libc_flags())
        .open(path);
    match rw {
        Ok(f) => Ok(f),
        // flock works on a read-only descriptor too.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags())
            .open(path)
            .map_err(|_| Error::io(path, e)),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn libc_flags() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_CLOEXEC.bits()
}

/// A temporary file in a database's directory, removed on drop unless it was moved
/// into place.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    dir: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the temporary file the name `dest` without replacing anything there
    /// (`link` then `unlink`: fails with `AlreadyExists` if `dest` appeared), fsyncs it
    /// and the directory.
    pub fn link_into_place(mut self, dest: &Path) -> Result<()> {
        File::open(&self.path)
            .and_then(|f| {
                fault::inject(fault::Step::Fsync)?;
                f.sync_all()
            })
            .at(&self.path)?;
        fault::inject(fault::Step::Link)
            .and_then(|()| fs::hard_link(&self.path, dest))
            .at(dest)?;
        // From here the database exists under its name. If removing the temporary
        // name fails, drop retries; a crash here leaves a second link that
        // `Target::resolve` tolerates and the next writer removes.
        fault::inject(fault::Step::Unlink)
            .and_then(|()| fs::remove_file(&self.path))
            .at(&self.path)?;
        self.armed = false;
        sync_dir(&self.dir)
    }
}

impl TempFile {
    /// Renames the temporary file over `dest` (replacing whatever directory entry is
    /// there: a file, a hard link or a symlink, which is not followed), after fsyncing
    /// it, and fsyncs the directory.
    pub fn rename_into_place(mut self, dest: &Path) -> Result<()> {
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .at(&self.path)?;
        fs::rename(&self.path, dest).at(dest)?;
        self.armed = false;
        sync_dir(&self.dir)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates a temporary file next to the database: a random name with the prefix that
/// [`Target::remove_stale_temps`] cleans up, `O_EXCL | O_NOFOLLOW` (a planted symlink is
/// never followed), mode 0600, then given `own` before anything is written to it.
pub fn create_temp(target: &Target, own: &Ownership) -> Result<(File, TempFile)> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
    let mut name = target.temp_prefix();
    name.push(OsStr::new(
        &rnd.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ));
    create_temp_named(target, own, &name)
}

/// [`create_temp`] with a given name (tests plant files at it).
pub(crate) fn create_temp_named(
    target: &Target,
    own: &Ownership,
    name: &OsStr,
) -> Result<(File, TempFile)> {
    let tmp_path = target.dir.join(name);
    let file = fault::inject(fault::Step::Create)
        .and_then(|()| {
            OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_flags())
                .open(&tmp_path)
        })
        .at(&tmp_path)?;
    let guard = TempFile {
        path: tmp_path.clone(),
        dir: target.dir.clone(),
        armed: true,
    };
    fault::inject(fault::Step::Own).at(&tmp_path)?;
    own.apply(&file, &tmp_path)?;
    Ok((file, guard))
}

/// Replaces the database atomically with what `write` puts into a new file.
///
/// The temporary file comes from [`create_temp`] (owned and moded per `own` before
/// `write` runs); it is fsynced, renamed over the database, and the directory fsynced.
/// On any error the temporary file is removed and the database is untouched.
pub fn replace_file<T>(
    target: &Target,
    own: &Ownership,
    write: impl FnOnce(&mut File) -> Result<T>,
) -> Result<T> {
    let (mut file, mut guard) = create_temp(target, own)?;
    let out = write(&mut file).map_err(|e| match e {
        Error::Io { path, source } if path.as_os_str() == BEING_WRITTEN => Error::Io {
            path: target.path.clone(),
            source,
        },
        e => e,
    })?;
    fault::inject(fault::Step::Fsync)
        .and_then(|()| file.sync_all())
        .at(&guard.path)?;
    drop(file);
    fault::inject(fault::Step::Rename)
        .and_then(|()| fs::rename(&guard.path, &target.path))
        .at(&target.path)?;
    guard.armed = false;
    sync_dir(&target.dir)?;
    Ok(out)
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).at(dir)?;
    fault::inject(fault::Step::SyncDir)
        .and_then(|()| d.sync_all())
        .at(dir)
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
    use std::io::Write;

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
