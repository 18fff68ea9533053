//! Directory handles, and the walk that finds a database's directory.
//!
//! Every file operation of a write goes through a [`Dir`]: a descriptor of the
//! database's directory, opened once by [`walk`], then used with `openat` (always
//! `O_NOFOLLOW`), `renameat`, `linkat`, `unlinkat` and `fsync`. Once the walk has opened
//! the directory, renaming or replacing any directory on the way (or the path's
//! symlinks) changes nothing for the write: it stays in the directory it opened.
//!
//! The walk opens one component at a time from `/` (`O_DIRECTORY | O_NOFOLLOW`), reads
//! symbolic links itself, and judges every name it looks up: a name in a directory
//! that someone else can write (another owner, a group other than root's, everyone)
//! can be swapped for a link anywhere, so the path as a whole is then [`Unsafe`]. A
//! sticky directory (`/tmp`) protects the names of its trusted owners' entries, so
//! `/tmp/dir` created by root is safe to pass through, but no file is written *in* a
//! sticky world-writable directory. Trusted owners are root and the running user.
//!
//! [`ProcLinks`] lets a C library that opens files by name (LMDB, SQLite) open exactly the
//! descriptors we opened: a private directory holding links to `/proc/self/fd/N`.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, readlinkat, renameat, renameat2};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use super::ownership::{group_name, user_name};
use crate::error::{Error, Result};

const MAX_SYMLINKS: usize = 40;

/// An open directory: every file operation of a write goes through one.
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn nofollow() -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

impl Dir {
    /// Opens the directory `path` as it is (no checks; the last component may be a
    /// symlink to a directory). For directories the caller trusts, such as the
    /// temporary directory.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        Ok(Dir {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
        })
    }

    /// The directory's path as the walk found it (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in this directory, as a path (for messages and for libraries that open
    /// by name).
    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` with `flags` plus `O_NOFOLLOW | O_CLOEXEC`: a symbolic link there
    /// fails with `ELOOP`, never followed.
    pub fn open_at(&self, name: &OsStr, flags: OFlag) -> io::Result<File> {
        openat(self.as_fd(), name, flags | nofollow(), Mode::empty())
            .map(File::from)
            .map_err(io_err)
    }

    /// Creates `name` (`O_CREAT | O_EXCL | O_NOFOLLOW`, read-write, mode 0600): fails
    /// with `AlreadyExists` whatever is there, a symlink included.
    pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
        openat(
            self.as_fd(),
            name,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | nofollow(),
            Mode::from_bits_truncate(0o600),
        )
        .map(File::from)
        .map_err(io_err)
    }

    /// The metadata of `name` itself (a symlink is not followed); `None` if missing.
    pub fn lstat(&self, name: &OsStr) -> io::Result<Option<Metadata>> {
        match openat(
            self.as_fd(),
            name,
            OFlag::O_PATH | nofollow(),
            Mode::empty(),
        ) {
            Ok(fd) => File::from(fd).metadata().map(Some),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// `renameat(from, to)` within this directory (replaces `to`).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        renameat(self.as_fd(), from, self.as_fd(), to).map_err(io_err)
    }

    /// Renames `from` to `to` within this directory, failing if `to` exists.
    pub fn rename_noreplace(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        renameat2(
            self.as_fd(),
            from,
            self.as_fd(),
            to,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(io_err)
    }

    /// `linkat(from, to)` within this directory (fails if `to` exists).
    pub fn link(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        linkat(self.as_fd(), from, self.as_fd(), to, AtFlags::empty()).map_err(io_err)
    }

    /// Removes the name `name` (not a directory).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(self.as_fd(), name, UnlinkatFlags::NoRemoveDir).map_err(io_err)
    }

    /// fsyncs the directory, so renames in it are durable.
    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(self.as_fd()).map_err(io_err)
    }

    /// The names in the directory (without `.` and `..`) and whether each is a
    /// regular file, as `readdir` reports it.
    pub fn names(&self) -> io::Result<Vec<(OsString, bool)>> {
        let fd = openat(
            self.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        let mut d = nix::dir::Dir::from_fd(fd).map_err(io_err)?;
        let mut out = Vec::new();
        for entry in d.iter() {
            let entry = entry.map_err(io_err)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let file = match entry.file_type() {
                Some(t) => t == nix::dir::Type::File,
                None => self.lstat(name)?.is_some_and(|m| m.file_type().is_file()),
            };
            out.push((name.to_os_string(), file));
        }
        Ok(out)
    }

    /// The directory's own metadata.
    pub fn metadata(&self) -> io::Result<Metadata> {
        let fd = self.fd.try_clone()?;
        File::from(fd).metadata()
    }
}

/// Why a path is not safe to write through as root: a directory someone else can
/// write, which can swap a name on the way for a link anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsafe {
    /// The directory at fault.
    pub dir: PathBuf,
    /// Who else can write it, e.g. "owned by alice", "writable by everyone (sticky)".
    pub why: String,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.dir.display(), self.why)
    }
}

/// Whether `uid` is trusted: root, or the user we run as.
fn trusted(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// What makes a directory writable by someone untrusted, if anything: another owner
/// (who can always chmod it), write access for a group other than root's, or for
/// everyone.
pub fn dir_problem(m: &Metadata) -> Option<String> {
    let mode = m.mode();
    if !trusted(m.uid()) {
        return Some(format!("owned by {}", user_name(m.uid())));
    }
    if mode & 0o002 != 0 {
        return Some(if mode & 0o1000 != 0 {
            "writable by everyone (sticky)".into()
        } else {
            "writable by everyone".into()
        });
    }
    if mode & 0o020 != 0 && m.gid() != 0 {
        return Some(format!("writable by group {}", group_name(m.gid())));
    }
    None
}

/// Whether the name of an entry owned by `entry_uid` in directory `d` is bound for
/// good: `d` is safe, or it is sticky with a trusted owner and the entry is trusted
/// (nobody else may rename or remove it).
fn binding_safe(d: &Metadata, entry_uid: u32) -> bool {
    dir_problem(d).is_none() || (d.mode() & 0o1000 != 0 && trusted(d.uid()) && trusted(entry_uid))
}

/// What [`walk`] found.
#[derive(Debug, Clone)]
pub struct Walked {
    /// The directory holding the final name, opened.
    pub dir: Dir,
    /// The final name.
    pub name: OsString,
    /// The real path (symlinks resolved), for messages and for libraries that open by
    /// name.
    pub path: PathBuf,
    /// The final entry's metadata (a symlink itself when not followed); `None` if it
    /// does not exist.
    pub existing: Option<Metadata>,
    /// The deepest problem on the way: a directory someone untrusted can write, among
    /// those a name was looked up in (the final directory included).
    pub unsafe_dir: Option<Unsafe>,
    /// The first symbolic link followed whose name someone untrusted can change (it
    /// lives in a directory of [`Walked::unsafe_dir`]'s kind): the link's path, and the
    /// directory's problem.
    pub unsafe_link: Option<(PathBuf, Unsafe)>,
}

fn metadata_of(fd: &OwnedFd) -> io::Result<Metadata> {
    File::from(fd.try_clone()?).metadata()
}

/// Walks `given` from `/` one component at a time (see the module docs). With
/// `follow_final`, a symlink as the last component is followed like the others (a
/// dangling one names the file it would create); without, the final entry is
/// reported as it is. Missing directories are an error; a missing final name is not.
pub fn walk(given: &Path, follow_final: bool) -> Result<Walked> {
    let cwd = if given.is_absolute() {
        None
    } else {
        Some(std::env::current_dir().map_err(|e| Error::io(".", e))?)
    };
    let abs = match &cwd {
        None => given.to_path_buf(),
        Some(c) => c.join(given),
    };
    // Paths in messages stay relative when the given one was and the result is below
    // the current directory.
    let shown = |p: &Path| -> PathBuf {
        match cwd.as_deref().and_then(|c| p.strip_prefix(c).ok()) {
            Some(r) if r.as_os_str().is_empty() => PathBuf::from("."),
            Some(r) => r.to_path_buf(),
            None => p.to_path_buf(),
        }
    };
    let mut queue: VecDeque<OsString> = VecDeque::new();
    for c in abs.components() {
        match c {
            Component::Normal(n) => queue.push_back(n.to_os_string()),
            Component::ParentDir => queue.push_back("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if matches!(
        given.components().next_back(),
        Some(Component::ParentDir) | None
    ) || given.as_os_str().as_bytes().ends_with(b"/")
    {
        return Err(Error::Invalid(format!(
            "{}: not a file name",
            given.display()
        )));
    }
    let root = Dir::open(Path::new("/")).map_err(|e| Error::io("/", e))?;
    let root_meta = root.metadata().map_err(|e| Error::io("/", e))?;
    // The directories on the textual path, each with its metadata.
    let mut stack: Vec<(Dir, Metadata)> = vec![(root, root_meta)];
    let mut links = 0usize;
    let mut unsafe_dir: Option<Unsafe> = None;
    let mut unsafe_link: Option<(PathBuf, Unsafe)> = None;
    let note = |unsafe_dir: &mut Option<Unsafe>, d: &Dir, m: &Metadata, entry_uid: u32| {
        if !binding_safe(m, entry_uid)
            && let Some(why) = dir_problem(m)
        {
            *unsafe_dir = Some(Unsafe {
                dir: d.path().to_path_buf(),
                why,
            });
        }
    };
    while let Some(name) = queue.pop_front() {
        let last = queue.is_empty();
        let (cur, cur_meta) = stack.last().cloned().expect("the root stays");
        if name == ".." {
            if last {
                return Err(Error::Invalid(format!(
                    "{}: not a file name",
                    given.display()
                )));
            }
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let here = cur.join(&name);
        let entry = match nix::sys::stat::fstatat(
            cur.as_fd(),
            name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Some(st),
            Err(Errno::ENOENT) if last => None,
            Err(e) => return Err(Error::io(&here, io_err(e))),
        };
        let is_link = entry.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
        if is_link && (!last || follow_final) {
            let st = entry.expect("checked");
            note(&mut unsafe_dir, &cur, &cur_meta, st.st_uid);
            if unsafe_link.is_none()
                && !binding_safe(&cur_meta, st.st_uid)
                && let Some(why) = dir_problem(&cur_meta)
            {
                unsafe_link = Some((
                    shown(&here),
                    Unsafe {
                        dir: cur.path().to_path_buf(),
                        why,
                    },
                ));
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Error::BadSymlink {
                    path: given.to_path_buf(),
                    what: "too many levels of symbolic links",
                });
            }
            let target = readlinkat(cur.as_fd(), name.as_os_str())
                .map_err(|e| Error::io(&here, io_err(e)))?;
            let target = PathBuf::from(target);
            if target.as_os_str().is_empty() {
                return Err(Error::io(&here, io::Error::from(io::ErrorKind::NotFound)));
            }
            if target.is_absolute() {
                stack.truncate(1);
            }
            let mut parts: Vec<OsString> = Vec::new();
            for c in target.components() {
                match c {
                    Component::Normal(n) => parts.push(n.to_os_string()),
                    Component::ParentDir => parts.push("..".into()),
                    _ => {}
                }
            }
            if last && parts.last().is_none_or(|n| n == "..") {
                return Err(Error::Invalid(format!(
                    "{}: the symbolic link {} does not name a file",
                    given.display(),
                    here.display()
                )));
            }
            for p in parts.into_iter().rev() {
                queue.push_front(p);
            }
            continue;
        }
        if last {
            note(
                &mut unsafe_dir,
                &cur,
                &cur_meta,
                entry.map_or(u32::MAX, |st| st.st_uid),
            );
            // Nothing is written in a directory others can write, even a sticky one.
            if let Some(why) = dir_problem(&cur_meta) {
                unsafe_dir = Some(Unsafe {
                    dir: cur.path().to_path_buf(),
                    why,
                });
            }
            let existing = match entry {
                None => None,
                Some(_) => cur.lstat(&name).map_err(|e| Error::io(&here, e))?,
            };
            return Ok(Walked {
                path: shown(&here),
                dir: Dir {
                    path: shown(cur.path()),
                    fd: cur.fd,
                },
                name,
                existing,
                unsafe_dir,
                unsafe_link,
            });
        }
        let fd = openat(
            cur.as_fd(),
            name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow(),
            Mode::empty(),
        )
        .map_err(|e| Error::io(&here, io_err(e)))?;
        let m = metadata_of(&fd).map_err(|e| Error::io(&here, e))?;
        note(&mut unsafe_dir, &cur, &cur_meta, m.uid());
        stack.push((
            Dir {
                fd: Arc::new(fd),
                path: here,
            },
            m,
        ));
    }
    unreachable!("the walk returns at the last component")
}

/// A private directory of symbolic links to `/proc/self/fd/N`, for a C library that
/// opens files by name (LMDB opens `<path>` and `<path>-lock`; SQLite `<path>`, and
/// its journal next to it): through the links it opens exactly the files we opened,
/// whatever happens to their names meanwhile. Removed on drop; the descriptors must
/// outlive the library's opens.
#[derive(Debug)]
pub struct ProcLinks {
    parent: Dir,
    name: OsString,
    dir: OwnedFd,
    links: Vec<OsString>,
}

impl ProcLinks {
    /// Whether `/proc/self/fd` can be used.
    pub fn available() -> bool {
        Path::new("/proc/self/fd").is_dir()
    }

    /// Creates the directory (in the temporary directory, mode 0700, ours) with a link
    /// `name -> /proc/self/fd/<fd>` for each entry.
    pub fn new(entries: &[(&str, BorrowedFd<'_>)]) -> io::Result<ProcLinks> {
        let tmp = std::env::temp_dir();
        let parent = Dir::open(&tmp)?;
        let euid = nix::unistd::geteuid().as_raw();
        for _ in 0..8 {
            let mut rnd = [0u8; 8];
            getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
            let name: OsString = format!(
                ".sasldb-lmdb-{}",
                rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
            .into();
            match nix::sys::stat::mkdirat(
                parent.as_fd(),
                name.as_os_str(),
                Mode::from_bits_truncate(0o700),
            ) {
                Ok(()) => {}
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(io_err(e)),
            }
            let dir = openat(
                parent.as_fd(),
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow(),
                Mode::empty(),
            )
            .map_err(io_err)?;
            let m = metadata_of(&dir)?;
            // What we opened must be the directory we made: ours, and nobody else's
            // to write into.
            if m.uid() != euid {
                return Err(io::Error::other(format!(
                    "{}: a directory of another user replaced ours",
                    tmp.join(&name).display()
                )));
            }
            nix::sys::stat::fchmod(dir.as_fd(), Mode::from_bits_truncate(0o700)).map_err(io_err)?;
            let mut me = ProcLinks {
                parent,
                name,
                dir,
                links: Vec::new(),
            };
            for (link, fd) in entries {
                let target = format!("/proc/self/fd/{}", fd.as_raw_fd());
                nix::unistd::symlinkat(target.as_str(), me.dir.as_fd(), *link).map_err(io_err)?;
                me.links.push(OsString::from(*link));
            }
            return Ok(me);
        }
        Err(io::Error::from(io::ErrorKind::AlreadyExists))
    }

    /// The path through which `link` opens its descriptor:
    /// `/proc/self/fd/<dir>/<link>`.
    pub fn path(&self, link: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{link}", self.dir.as_raw_fd()))
    }
}

impl Drop for ProcLinks {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = unlinkat(self.dir.as_fd(), l.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        // Only an empty directory goes (whatever replaced ours keeps its content).
        let _ = unlinkat(
            self.parent.as_fd(),
            self.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn walk_follows_links_and_pins_the_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/db"), b"x").unwrap();
        symlink("d/db", t.path().join("link")).unwrap();
        let w = walk(&t.path().join("link"), true).unwrap();
        assert_eq!(w.name, "db");
        assert_eq!(w.path, t.path().join("d/db"));
        assert!(w.existing.unwrap().is_file());
        // The directory stays the one opened, whatever happens to its name.
        std::fs::rename(t.path().join("d"), t.path().join("e")).unwrap();
        assert!(w.dir.lstat(OsStr::new("db")).unwrap().is_some());
        let w = walk(&t.path().join("link"), false).unwrap();
        assert!(w.existing.unwrap().file_type().is_symlink());
        let w = walk(&t.path().join("e/../e/./db"), true).unwrap();
        assert_eq!(w.path, t.path().join("e/db"));
        assert!(walk(&t.path().join("missing/db"), true).is_err());
        let w = walk(&t.path().join("e/new"), true).unwrap();
        assert!(w.existing.is_none());
    }

    #[test]
    fn directories_others_can_write_are_unsafe() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let set = |m: u32| {
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
        };
        assert_eq!(walk(&d.join("db"), true).unwrap().unsafe_dir, None);
        set(0o777);
        let u = walk(&d.join("db"), true).unwrap().unsafe_dir.unwrap();
        assert_eq!((u.dir, u.why.as_str()), (d.clone(), "writable by everyone"));
        set(0o1777);
        let u = walk(&d.join("db"), true).unwrap().unsafe_dir.unwrap();
        assert_eq!(u.why, "writable by everyone (sticky)");
        // Passing through a sticky directory to a directory of ours is fine.
        std::fs::create_dir(d.join("sub")).unwrap();
        assert_eq!(walk(&d.join("sub/db"), true).unwrap().unsafe_dir, None);
        // A symlink in it is not (unless it is ours: protected by the sticky bit).
        set(0o777);
        symlink("sub/db", d.join("l")).unwrap();
        let u = walk(&d.join("l"), true).unwrap().unsafe_dir.unwrap();
        assert_eq!(u.dir, d);
    }

    #[test]
    fn proc_links_open_the_descriptor() {
        if !ProcLinks::available() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), b"one").unwrap();
        let f = File::open(t.path().join("a")).unwrap();
        std::fs::rename(t.path().join("a"), t.path().join("b")).unwrap();
        std::fs::write(t.path().join("a"), b"two").unwrap();
        let links = ProcLinks::new(&[("x", f.as_fd())]).unwrap();
        assert_eq!(std::fs::read(links.path("x")).unwrap(), b"one");
        let p = links.path("x");
        drop(links);
        assert!(std::fs::read(p).is_err());
    }
}
