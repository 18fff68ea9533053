//! The ownership policy: who owns what a write leaves, and giving it to them through
//! descriptors only (never by path).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::unistd::{Gid, Group, Uid, fchown, fchownat};

use super::dir::Dir;
use super::{DB_MODE, POSTFIX_GROUP, Target, check_regular};
use crate::error::{Error, IoContext, Result};

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
                    None => (euid.as_raw(), new_file_gid(&target.handle), DB_MODE),
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

    /// Why an existing file (metadata `m`) must not be changed in place under this
    /// policy, if it must not: it belongs to another owner or group, or its mode is
    /// wider. Whoever could open it then may still hold it open, and would read what
    /// is written into it through that descriptor whatever its mode becomes; such a
    /// file is rebuilt as a new one instead. `None` when the policy is not enforced.
    pub fn mismatch(&self, m: &fs::Metadata) -> Option<String> {
        let mode = m.mode() & 0o7777;
        (self.enforced && (m.uid() != self.uid || m.gid() != self.gid || mode & !self.mode != 0))
            .then(|| {
                format!(
                    "{}:{} mode {mode:04o}, not {}:{} {:04o}",
                    user_name(m.uid()),
                    group_name(m.gid()),
                    user_name(self.uid),
                    group_name(self.gid),
                    self.mode
                )
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
fn new_file_gid(dir: &Dir) -> u32 {
    match dir.metadata() {
        Ok(m) if m.permissions().mode() & 0o2000 != 0 => m.gid(),
        _ => nix::unistd::getegid().as_raw(),
    }
}

/// Gives the existing file `name` in `dir` the owner and group of `own` (when the
/// policy is enforced) and `mode`, through a descriptor of the file itself: a symbolic
/// link there is an error (never followed), and so are a file with several hard links
/// (changing it would change every other name of it) and anything but a regular file.
///
/// The descriptor is an `O_PATH` one (the mode is set through `/proc/self/fd`), so it
/// takes no part in POSIX record locks: closing it does not drop a lock LMDB holds on
/// the same file in this process.
pub fn apply_at(dir: &Dir, name: &OsStr, own: &Ownership, mode: u32) -> Result<()> {
    let path = dir.join(name);
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .at(&path)?;
    let file = File::from(fd);
    let m = file.metadata().at(&path)?;
    if m.file_type().is_symlink() {
        return Err(Error::Refused {
            path,
            why: "a symbolic link; refusing to change what it points to (remove it)".into(),
        });
    }
    check_regular(&path, &m)?;
    if m.nlink() > 1 {
        return Err(Error::Refused {
            path,
            why: format!(
                "{} hard links; refusing to change a file that has other names (remove this \
                 name)",
                m.nlink()
            ),
        });
    }
    if own.enforced && (m.uid() != own.uid || m.gid() != own.gid) {
        let uid = (m.uid() != own.uid).then(|| Uid::from_raw(own.uid));
        fchownat(
            file.as_fd(),
            "",
            uid,
            Some(Gid::from_raw(own.gid)),
            AtFlags::AT_EMPTY_PATH,
        )
        .at(&path)?;
    }
    if m.mode() & 0o7777 != mode {
        set_mode_of(&file, dir, name, &m, mode).at(&path)?;
    }
    Ok(())
}

/// Sets the mode of the file an `O_PATH` descriptor holds: through its
/// `/proc/self/fd` link, else (no /proc) through a descriptor opened without following
/// links and checked to be the same file.
fn set_mode_of(
    file: &File,
    dir: &Dir,
    name: &OsStr,
    m: &fs::Metadata,
    mode: u32,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let via_proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    match fs::set_permissions(&via_proc, fs::Permissions::from_mode(mode)) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let f = dir.open_at(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    let now = f.metadata()?;
    if now.dev() != m.dev() || now.ino() != m.ino() {
        return Err(std::io::Error::other("the file was replaced meanwhile"));
    }
    f.set_permissions(fs::Permissions::from_mode(mode))
}
