//! What a writer is told: the ownership policy, the lock timeout, and the layout of
//! files it creates. Plain values: nothing here reads the environment (the command-line
//! tools build these from their flags and `SASLDB_GROUP` / `SASLDB_LOCK_TIMEOUT`).

use std::time::Duration;

use crate::location::Format;
use crate::storage::endian::Endian;

pub use crate::storage::persist::{OwnershipPolicy, POSTFIX_GROUP};

/// How long a writer waits for another writer by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// LMDB environment settings, as Cyrus reads them from its configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LmdbOptions {
    /// `sasldb_mapsize`, in **KiB** (Cyrus multiplies it by 1024, whatever its docs
    /// say). Without it, the map starts at the file's recorded size (1 MiB for a new
    /// file) and grows as needed.
    pub mapsize_kib: Option<u64>,
    /// `sasldb_maxreaders` (LMDB's default is 126).
    pub max_readers: Option<u32>,
}

/// Options for writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Format of a database that does not exist yet (a `FORMAT:` prefix wins).
    pub new_format: Format,
    /// Page size of a new Berkeley DB file (existing files keep theirs).
    pub bdb_page_size: Option<u32>,
    /// Byte order of a new Berkeley DB file (existing files keep theirs).
    pub bdb_endian: Option<Endian>,
    /// Who owns the files written.
    pub ownership: OwnershipPolicy,
    /// How long to wait for another writer.
    pub lock_timeout: Duration,
    /// LMDB settings.
    pub lmdb: LmdbOptions,
    /// As root, write even when a directory on the way to the database can be written
    /// by someone else (another owner, a group other than root's, everyone): for a
    /// database that deliberately lives in, say, a service user's directory. Every
    /// file operation still goes through the directory opened once, never following a
    /// symlink; LMDB files are opened by their descriptors; an SQLite database, which
    /// SQLite opens by name, is refused there anyway. Off by default: such a path is
    /// refused with an error naming the directory.
    pub allow_unsafe_dir: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            new_format: Format::Bdb,
            bdb_page_size: None,
            bdb_endian: None,
            ownership: OwnershipPolicy::default(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            lmdb: LmdbOptions::default(),
            allow_unsafe_dir: false,
        }
    }
}
