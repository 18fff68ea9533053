//! Listening sockets for `sasldb serve`: binding Unix sockets safely, systemd socket
//! activation, and dropping root privileges once the sockets are bound.
//!
//! Binding ([`bind`]):
//! - a socket file left by a killed server (nothing accepts on it: `connect` is
//!   refused) is removed and bound again; a socket something still listens on is
//!   refused ("in use"), and so is any path that is not a socket (never removed);
//! - the socket's directory is opened once, walking the path without following a
//!   link it does not trust ([`crate::storage::persist::dir::walk`]), and every step
//!   goes through that descriptor: the socket is bound at `/proc/self/fd/<dir>/<name>`,
//!   created with its final mode (the umask set for it), and given its owner and group
//!   through a descriptor of the socket file itself, checked to be a socket with one
//!   link. Whoever can write the directory (Postfix's `private/` belongs to `postfix`)
//!   may swap the name for a symbolic or hard link to any file at any moment: root
//!   never changes the owner or mode of anything by path;
//! - the listen backlog is [`BACKLOG`].
//!
//! Socket activation ([`activated`]): when `LISTEN_PID` is this process and
//! `LISTEN_FDS` is N, descriptors 3 .. 3+N are listening sockets; `LISTEN_FDNAMES`
//! (colon-separated, from `FileDescriptorName=`) names them. The variables are
//! removed from the environment once read.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// Connections the kernel queues before `accept`.
pub const BACKLOG: i32 = 1024;

/// Why a socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process accepts on the path.
    #[error("{}: in use by another server (stop it first)", .0.display())]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{}: exists and is not a socket (not removed)", .0.display())]
    NotASocket(PathBuf),
    /// A system call failed.
    #[error("{}: {}", .0.display(), crate::io_text(.1))]
    Io(PathBuf, #[source] io::Error),
    /// The socket's directory could not be walked to.
    #[error(transparent)]
    Path(#[from] crate::Error),
    /// No such user or group.
    #[error("no such {0} `{1}`")]
    NoSuch(&'static str, String),
    /// Socket activation variables are malformed or name something unusable.
    #[error("socket activation: {0}")]
    Activation(String),
    /// Changing user or group failed.
    #[error("cannot drop privileges: {0}")]
    Privileges(String),
}

/// Owner, group and mode for a socket file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketPerms {
    /// Owner (`None`: the process's).
    pub owner: Option<Uid>,
    /// Group (`None`: the process's).
    pub group: Option<Gid>,
    /// Permission bits.
    pub mode: u32,
}

/// Looks a user up by name or number.
pub fn user(name: &str) -> Result<User, ListenError> {
    let found = match name.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(name),
    };
    found
        .ok()
        .flatten()
        .ok_or_else(|| ListenError::NoSuch("user", name.into()))
}

/// Looks a group up by name or number.
pub fn group(name: &str) -> Result<Gid, ListenError> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid)
        .ok_or_else(|| ListenError::NoSuch("group", name.into()))
}

/// Binds a Unix socket at `path` (see the module docs). Returns the listener and the
/// (device, inode) of the socket file, so it is only removed at exit if it is still
/// ours.
pub fn bind(path: &Path, perms: &SocketPerms) -> Result<(UnixListener, (u64, u64)), ListenError> {
    use nix::fcntl::OFlag;
    use std::os::fd::{AsFd, AsRawFd};

    let io_err = |e| ListenError::Io(path.to_path_buf(), e);
    let w = crate::storage::persist::dir::walk(path, false)?;
    let (dir, name) = (&w.dir, w.name.as_os_str());
    // The name as the kernel resolves it through our descriptor of the directory (the
    // plain path where there is no /proc and nobody else can change it).
    let via = if Path::new("/proc/self/fd").is_dir() {
        let mut p = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
        p.extend_from_slice(name.as_bytes());
        PathBuf::from(std::ffi::OsString::from_vec(p))
    } else if w.unsafe_dir.is_none() {
        path.to_path_buf()
    } else {
        return Err(io_err(io::Error::other(
            "without /proc, a socket is not bound in a directory others can write",
        )));
    };
    match dir.lstat(name).map_err(io_err)? {
        Some(m) if m.file_type().is_socket() => match UnixStream::connect(&via) {
            Ok(_) => return Err(ListenError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                dir.unlink(name).map_err(io_err)?;
            }
            Err(e) => return Err(io_err(e)),
        },
        Some(_) => return Err(ListenError::NotASocket(path.to_path_buf())),
        None => {}
    }
    // Created with its final mode: umask is process-wide, and binding happens before
    // any other thread exists.
    let mask = nix::sys::stat::Mode::from_bits_truncate(!perms.mode & 0o777);
    let old = nix::sys::stat::umask(mask);
    let bound = UnixListener::bind(&via);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(io_err)?;
    // The socket file, never through a link: O_PATH | O_NOFOLLOW opens a symbolic link
    // itself, which is then refused.
    let file = dir
        .open_at(name, OFlag::O_PATH)
        .and_then(|f| f.metadata().map(|m| (f, m)));
    let (file, m) = file.map_err(io_err)?;
    if !m.file_type().is_socket() || m.nlink() != 1 {
        return Err(io_err(io::Error::other(
            "the socket was replaced after it was bound (someone else can write its directory)",
        )));
    }
    if perms.owner.is_some() || perms.group.is_some() {
        let (uid, gid) = (
            perms.owner.map_or(u32::MAX, |u| u.as_raw()),
            perms.group.map_or(u32::MAX, |g| g.as_raw()),
        );
        // SAFETY: fchownat on a descriptor we own, with an empty, NUL-terminated path.
        let r = unsafe {
            libc::fchownat(
                file.as_raw_fd(),
                c"".as_ptr(),
                uid,
                gid,
                libc::AT_EMPTY_PATH,
            )
        };
        if r != 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
    }
    set_backlog(&listener);
    Ok((listener, (m.dev(), m.ino())))
}

fn set_backlog(l: &UnixListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen on a descriptor we own; calling it again on a listening socket
    // only changes the backlog.
    unsafe {
        libc::listen(l.as_raw_fd(), BACKLOG);
    }
}

/// Removes the socket file at `path` if it is still the one we bound.
pub fn unlink_if_ours(path: &Path, id: (u64, u64)) {
    if let Ok(m) = std::fs::symlink_metadata(path)
        && m.file_type().is_socket()
        && (m.dev(), m.ino()) == id
    {
        let _ = std::fs::remove_file(path);
    }
}

/// A socket passed by the service manager.
#[derive(Debug)]
pub struct Activated {
    /// The listener.
    pub listener: UnixListener,
    /// Its name from `LISTEN_FDNAMES`, if any.
    pub name: Option<String>,
    /// The path it is bound to, if it is a path socket.
    pub path: Option<PathBuf>,
}

/// The sockets passed by systemd (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`), if
/// any; the variables are removed from the environment. Must run before any other
/// thread exists.
pub fn activated() -> Result<Vec<Activated>, ListenError> {
    let pid = std::env::var_os("LISTEN_PID");
    let fds = std::env::var_os("LISTEN_FDS");
    let names = std::env::var_os("LISTEN_FDNAMES");
    // SAFETY: called at start, before any thread is spawned (documented above).
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    let num = |v: &OsStr| std::str::from_utf8(v.as_bytes()).ok()?.parse::<u32>().ok();
    if num(&pid) != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let n = num(&fds)
        .filter(|&n| n <= 64)
        .ok_or_else(|| ListenError::Activation("LISTEN_FDS is not a small number".into()))?;
    let names: Vec<String> = names
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(':')
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..n {
        let fd = 3 + i as i32;
        // SAFETY: fcntl on a descriptor number; F_GETFD fails harmlessly if closed.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(ListenError::Activation(format!(
                "descriptor {fd} is not open"
            )));
        }
        // SAFETY: the service manager passed us this open descriptor; nothing else
        // in the process owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        check_unix_listener(&owned, fd)?;
        // SAFETY: fd is open and ours; mark it close-on-exec.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
        let listener = UnixListener::from(owned);
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        out.push(Activated {
            listener,
            name: names.get(i as usize).filter(|s| !s.is_empty()).cloned(),
            path,
        });
    }
    Ok(out)
}

/// Refuses a descriptor that is not a listening Unix stream socket.
fn check_unix_listener(fd: &OwnedFd, n: i32) -> Result<(), ListenError> {
    use std::os::fd::AsRawFd;
    let get = |opt| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a c_int with its size.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(v)
    };
    match (
        get(libc::SO_DOMAIN),
        get(libc::SO_TYPE),
        get(libc::SO_ACCEPTCONN),
    ) {
        (Some(libc::AF_UNIX), Some(libc::SOCK_STREAM), Some(1)) => Ok(()),
        _ => Err(ListenError::Activation(format!(
            "descriptor {n} is not a listening Unix stream socket"
        ))),
    }
}

/// Changes to `user` (and `group`, else the user's primary group), dropping every
/// supplementary group but that one. Only as root.
pub fn drop_privileges(user: &User, group: Option<Gid>) -> Result<(), ListenError> {
    let gid = group.unwrap_or(user.gid);
    let err = |what: &str, e: nix::Error| ListenError::Privileges(format!("{what}: {e}"));
    nix::unistd::setgroups(&[gid]).map_err(|e| err("setgroups", e))?;
    nix::unistd::setgid(gid).map_err(|e| err("setgid", e))?;
    nix::unistd::setuid(user.uid).map_err(|e| err("setuid", e))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(ListenError::Privileges("root could be regained".into()));
    }
    Ok(())
}

/// Raises the soft limit on open files to at least `want` (up to the hard limit);
/// returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < want {
            let new = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                lim.rlim_cur = new.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stale_sockets_replaced_live_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth");
        let perms = SocketPerms {
            owner: None,
            group: None,
            mode: 0o660,
        };
        let (l, id) = bind(&p, &perms).unwrap();
        let _ = id;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o660
        );
        assert!(matches!(bind(&p, &perms), Err(ListenError::InUse(_))));
        drop(l);
        // The file is left behind, as by a killed server: replaced.
        let (_l, id2) = bind(&p, &perms).unwrap();
        unlink_if_ours(&p, (id.0, id.1 ^ u64::MAX));
        assert!(p.exists());
        unlink_if_ours(&p, id2);
        assert!(!p.exists());
        std::fs::write(&p, b"x").unwrap();
        assert!(matches!(bind(&p, &perms), Err(ListenError::NotASocket(_))));
        assert!(p.exists());
        // A symbolic link at the name is never followed, to a socket or a file.
        std::fs::remove_file(&p).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"v").unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        assert!(matches!(bind(&p, &perms), Err(ListenError::NotASocket(_))));
        assert_eq!(std::fs::read(&victim).unwrap(), b"v");
        // The socket is bound in the directory opened, its mode set from the start.
        std::fs::remove_file(&p).unwrap();
        let perms = SocketPerms {
            owner: Some(nix::unistd::geteuid()),
            group: Some(nix::unistd::getegid()),
            mode: 0o666,
        };
        let (_l, id3) = bind(&p, &perms).unwrap();
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!((m.mode() & 0o777, (m.dev(), m.ino())), (0o666, id3));
    }
}
