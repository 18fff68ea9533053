//! The library's error type.
//!
//! Every fallible library call returns [`Error`]. Each variant renders as one line
//! that names the file (or database) involved and says what is wrong with it, so
//! binaries can print `progname: {error}` and nothing more. Secrets never appear in
//! an error: values are reported by length only.

use std::io;
use std::path::PathBuf;

use crate::format::Format;
use crate::record::KeyError;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed on a path.
    #[error("{}: {}", path.display(), io_text(source))]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A database was expected but the path does not exist.
    #[error("{}: no such database", path.display())]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
    },

    /// The path exists but is not a regular file (a directory, FIFO, device...).
    #[error("{}: not a regular file ({kind})", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },

    /// The file's magic bytes match no supported format.
    #[error("{}: not a sasldb database ({reason})", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What was seen instead.
        reason: String,
    },

    /// The file is of a known format but a variant we refuse to handle.
    #[error("{}: unsupported {format} database: {what}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: Format,
        /// Which feature it uses (encryption, duplicates, version N, ...).
        what: String,
    },

    /// The file is damaged: a structure fails a bounds or consistency check.
    #[error("{}: corrupt {format} database: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: Format,
        /// What is wrong, with page numbers or offsets where they exist.
        what: String,
    },

    /// A read failed while another process held the file's own lock (a libgdbm writer
    /// updating the file in place): the file was changing, which says nothing about
    /// corruption. Reading again later succeeds.
    #[error("{}: the {format} database was being changed by another process while it was read; try again", path.display())]
    Busy {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: Format,
    },

    /// A key or a key component was refused.
    #[error("{0}")]
    Key(#[from] KeyError),

    /// A derived secret (OTP, SCRAM, legacy PLAIN) could not be computed or parsed.
    #[error("{0}")]
    Secret(#[from] SecretError),

    /// A value is longer than a backend (or the sasldb limits) allow.
    #[error("{what} is too long: {len} bytes (the maximum is {max})")]
    TooLong {
        /// What was too long ("password", "user name", "key", ...).
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Another process holds the database's writer lock.
    #[error("{}: database is locked by another process (gave up after {waited_secs} s)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited_secs: u64,
    },

    /// The group the ownership policy asks for does not exist.
    #[error("group `{0}` does not exist (choose one with --group or SASLDB_GROUP)")]
    NoSuchGroup(String),

    /// A database with several hard links would be split by an atomic replace.
    #[error(
        "{}: the database has {links} hard links; replacing it atomically would split them \
         (keep one name; for the Postfix chroot use sasldb sync-chroot)",
        path.display()
    )]
    HardLinked {
        /// The database.
        path: PathBuf,
        /// Its link count.
        links: u64,
    },

    /// The existing ownership cannot be kept by this (non-root) user.
    #[error(
        "{}: owned by uid {uid} gid {gid}; cannot keep that ownership when running as uid {euid}",
        path.display()
    )]
    ForeignOwner {
        /// The database.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// Who we are.
        euid: u32,
    },

    /// As root, the database's path goes through a directory someone else can write:
    /// they could swap a name on the way for a link to any file while root writes.
    #[error(
        "{}: refusing to write as root: {} is {why}, so another user could redirect the \
         write to any file (keep the database in a directory only root can write, or allow \
         this one explicitly with SASLDB_ALLOW_UNSAFE_DIR=1)",
        path.display(),
        dir.display()
    )]
    UnsafeDirectory {
        /// The database, as given.
        path: PathBuf,
        /// The directory at fault.
        dir: PathBuf,
        /// Who else can write it ("owned by alice", "writable by everyone (sticky)").
        why: String,
    },

    /// As root, the database's path follows a symbolic link that someone else can
    /// replace (it lives in a directory they can write): never followed.
    #[error(
        "{}: refusing to follow the symbolic link {} as root: {} is {why}, so the link can \
         be made to point to any file (name the real file instead)",
        path.display(),
        link.display(),
        dir.display()
    )]
    UnsafeSymlink {
        /// The database, as given.
        path: PathBuf,
        /// The link.
        link: PathBuf,
        /// The directory holding it.
        dir: PathBuf,
        /// Who else can write that directory.
        why: String,
    },

    /// A file the write would go through (a lock file, a journal) is not what it must
    /// be: a symlink, a file with other hard links...
    #[error("{}: {why}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },

    /// A symlink chain could not be resolved.
    #[error("{}: {what}", path.display())]
    BadSymlink {
        /// The link.
        path: PathBuf,
        /// What went wrong (loop, too deep...).
        what: &'static str,
    },

    /// A backend-specific failure not covered above (LMDB, SQLite, PostgreSQL...).
    #[error("{}: {format}: {message}", path.display())]
    Backend {
        /// The database.
        path: PathBuf,
        /// Its format.
        format: Format,
        /// The backend's message.
        message: String,
    },

    /// The caller asked for something the arguments do not allow.
    #[error("{0}")]
    Invalid(String),
}

/// Which stored secret format a [`SecretError::Malformed`] concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A `cmusaslsecretOTP` value.
    Otp,
    /// An `authPassword` SCRAM value.
    Scram,
    /// A legacy `cmusaslsecretPLAIN` value.
    LegacyPlain,
}

impl std::fmt::Display for SecretKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretKind::Otp => "OTP secret (cmusaslsecretOTP)",
            SecretKind::Scram => "SCRAM secret (authPassword)",
            SecretKind::LegacyPlain => "legacy PLAIN secret (cmusaslsecretPLAIN)",
        })
    }
}

/// Why a secret could not be computed, parsed or checked.
///
/// Messages name the field at fault, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A stored value does not have the expected layout.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// Which format.
        kind: SecretKind,
        /// What is wrong (a field name and the rule it breaks).
        reason: &'static str,
    },
    /// An OTP algorithm name (`otp_mda`) other than md4, md5 or sha1.
    #[error("unknown OTP algorithm `{0}` (expected md4, md5 or sha1)")]
    UnknownOtpAlgorithm(String),
    /// A SCRAM mechanism name other than SCRAM-SHA-1/224/256/384/512.
    #[error("unknown SCRAM mechanism `{0}` (expected SCRAM-SHA-1, -224, -256, -384 or -512)")]
    UnknownScramMechanism(String),
    /// The password is empty where the mechanism refuses empty passwords (SCRAM).
    #[error("the password is empty")]
    EmptyPassword,
    /// The password contains a NUL byte: Cyrus truncates or mangles such passwords,
    /// so no secret derived from one would match what a Cyrus peer computes.
    #[error("the password contains a NUL byte")]
    NulInPassword,
    /// An OTP seed that Cyrus could not store or read back.
    #[error("invalid OTP seed: {0}")]
    BadSeed(&'static str),
    /// A SCRAM iteration count of zero was asked for.
    #[error("the SCRAM iteration count must be at least 1")]
    ZeroIterations,
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
    /// The host name (the OTP seed prefix) could not be read.
    #[error("cannot read the host name: {0}")]
    Hostname(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The underlying I/O error kind, when there is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// An I/O error as the C library's `strerror` words it (`No such file or directory`),
/// without the ` (os error N)` std appends.
pub fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    match e.raw_os_error() {
        Some(n) => s
            .strip_suffix(&format!(" (os error {n})"))
            .map_or_else(|| s.clone(), str::to_owned),
        None => s,
    }
}

/// Extension to attach a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, io::Error::from(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_strerror() {
        let e = Error::io("/x/db", io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(e.to_string(), "/x/db: No such file or directory");
        let e = io::Error::from_raw_os_error(libc::EBADF);
        assert_eq!(io_text(&e), "Bad file descriptor");
        let e = io::Error::other("custom");
        assert_eq!(io_text(&e), "custom");
    }
}
