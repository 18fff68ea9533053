//! What a writer is told: the ownership policy, the lock timeout, and the layout of
//! files it creates. Plain values: nothing here reads the environment (the command-line
//! tools build these from their flags and `SASLDB_GROUP` / `SASLDB_LOCK_TIMEOUT`).

use std::path::PathBuf;
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

/// Where bulk work (imports, listings, exports, realm changes, conversions) puts the
/// temporary files it sorts through, and how much it holds in memory before it does.
///
/// Temporary files hold secrets: they are created without a name (`O_TMPFILE`) or
/// unlinked at once, mode 0600, so nothing is left behind even when the process is
/// killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillOptions {
    /// Directory for temporary files; `None`: the database's own directory (for
    /// PostgreSQL, the system's temporary directory).
    pub dir: Option<PathBuf>,
    /// Bytes of records one sort holds in memory before it writes a sorted run out
    /// (at least 64 KiB).
    pub memory: usize,
}

impl Default for SpillOptions {
    fn default() -> Self {
        SpillOptions {
            dir: None,
            memory: crate::storage::sort::DEFAULT_BUDGET,
        }
    }
}

impl SpillOptions {
    /// Where a sort for the database whose real file is `db_dir/db_name` spills.
    pub(crate) fn to_for(
        &self,
        db_dir: &std::path::Path,
        db_name: Option<&std::ffi::OsStr>,
    ) -> crate::storage::sort::SpillTo {
        use crate::storage::sort::SpillTo;
        match &self.dir {
            Some(d) => SpillTo::new(d, None, self.memory),
            None => SpillTo::new(
                db_dir,
                db_name.map(crate::storage::persist::temp_prefix),
                self.memory,
            ),
        }
    }
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
    /// Temporary files and memory of bulk changes.
    pub spill: SpillOptions,
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
            spill: SpillOptions::default(),
            allow_unsafe_dir: false,
        }
    }
}
