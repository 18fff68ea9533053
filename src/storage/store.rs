//! [`Store`]: one open database, whatever its format. Opening (format detection, the
//! forced format of a `FORMAT:` prefix, the checks every reader makes) and every read
//! go through here; this is the read side's only dispatch over the formats.

use std::fs;
use std::path::Path;
#[cfg(feature = "postgres")]
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::location::{Detected, Format, Location, detect};
use crate::record::Secret;
use crate::storage::bdb::BdbFile;
use crate::storage::gdbm::GdbmFile;
#[cfg(feature = "lmdb")]
use crate::storage::lmdb::LmdbFile;
use crate::storage::persist;
#[cfg(feature = "postgres")]
use crate::storage::sql::pgsql::PgStore;
#[cfg(feature = "sqlite")]
use crate::storage::sql::sqlite::SqliteFile;
use crate::storage::{Backend, EachRecord, LayoutHint, Records};

/// An open database. Shareable between threads: lookups and scans may run
/// concurrently.
#[derive(Debug)]
pub(crate) enum Store {
    Bdb(BdbFile),
    Gdbm(GdbmFile),
    #[cfg(feature = "lmdb")]
    Lmdb(LmdbFile),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteFile),
    /// Shared with the writer's session that holds the advisory lock, when opened by a
    /// [`crate::storage::Writer`].
    #[cfg(feature = "postgres")]
    Postgres(Arc<PgStore>),
}

impl Store {
    /// Opens an existing database read-only. A missing path, an empty file, a
    /// directory, or a file of an unknown format is an error.
    pub(crate) fn open(location: &Location) -> Result<Store> {
        if let Some(url) = location.postgres() {
            return open_postgres(url);
        }
        check_file_location(location)?;
        let path = location.path();
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: path.to_path_buf(),
            },
            _ => Error::io(path, e),
        })?;
        persist::check_regular(path, &meta)?;
        let format = match detect(path)? {
            Detected::Format(f) => f,
            Detected::Empty => {
                return Err(Error::UnknownFormat {
                    path: path.to_path_buf(),
                    reason: "the file is empty".into(),
                });
            }
        };
        check_forced(location, format)?;
        Store::open_file(format, path)
    }

    /// Opens the existing file a writer resolved, through its directory's descriptor
    /// (never by path, except SQLite, whose writer requires a path nobody else can
    /// change), as a database of `format`.
    pub(crate) fn open_target(
        format: Format,
        target: &crate::storage::persist::Target,
    ) -> Result<Store> {
        let file = || {
            target
                .handle
                .open_at(
                    &target.name,
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK,
                )
                .map_err(|e| Error::io(&target.path, e))
        };
        Ok(match format {
            Format::Bdb => Store::Bdb(BdbFile::from_file(file()?, &target.path)?),
            Format::Gdbm => Store::Gdbm(GdbmFile::from_file(file()?, &target.path)?),
            #[cfg(feature = "lmdb")]
            Format::Lmdb => Store::Lmdb(LmdbFile::open_target(target)?),
            #[cfg(feature = "sqlite")]
            Format::Sqlite => Store::Sqlite(SqliteFile::open_target(
                target,
                crate::storage::options::DEFAULT_LOCK_TIMEOUT,
            )?),
            _ => Store::open_file(format, &target.path)?,
        })
    }

    /// Opens the file at `path` as a database of `format`.
    pub(crate) fn open_file(format: Format, path: &Path) -> Result<Store> {
        Ok(match format {
            Format::Bdb => Store::Bdb(BdbFile::open(path)?),
            Format::Gdbm => Store::Gdbm(GdbmFile::open(path)?),
            #[cfg(feature = "lmdb")]
            Format::Lmdb => Store::Lmdb(LmdbFile::open(path)?),
            #[cfg(feature = "sqlite")]
            Format::Sqlite => Store::Sqlite(SqliteFile::open(path)?),
            Format::Postgres => {
                return Err(Error::Invalid(format!(
                    "{}: a PostgreSQL database is named by a postgresql:// URL",
                    path.display()
                )));
            }
            #[allow(unreachable_patterns)]
            other => return Err(not_built(other, path)),
        })
    }

    fn backend(&self) -> &dyn Backend {
        match self {
            Store::Bdb(b) => b,
            Store::Gdbm(b) => b,
            #[cfg(feature = "lmdb")]
            Store::Lmdb(b) => b,
            #[cfg(feature = "sqlite")]
            Store::Sqlite(b) => b,
            #[cfg(feature = "postgres")]
            Store::Postgres(b) => &**b,
        }
    }

    /// The database's format.
    pub(crate) fn format(&self) -> Format {
        self.backend().format()
    }

    /// Looks one encoded key up.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        self.backend().get(key)
    }

    /// Every record, in storage order.
    pub(crate) fn scan(&self) -> Result<Records<'_>> {
        self.backend().scan()
    }

    /// Calls `f` with every record, in storage order, lent for the call (see
    /// [`Backend::scan_each`]).
    pub(crate) fn scan_each(&self, f: &mut EachRecord<'_>) -> Result<()> {
        self.backend().scan_each(f)
    }

    /// Every record in key order: the scan itself where the backend keeps keys sorted,
    /// else through an external sort spilling as `to` says. Without `values` the values
    /// are left out (and a sort holds no secrets).
    pub(crate) fn scan_sorted(
        &self,
        to: &crate::storage::sort::SpillTo,
        values: bool,
    ) -> Result<crate::storage::sort::SortedStream<'_>> {
        use crate::storage::sort::{ExternalSort, SortedStream};
        if self.sorted() {
            return Ok(SortedStream::Scan {
                records: self.scan()?,
                current: None,
                keys_only: !values,
            });
        }
        let mut sorter = if values {
            ExternalSort::new(to)
        } else {
            ExternalSort::new(&to.keys_only())
        };
        self.scan_each(&mut |key, value| sorter.push(key, if values { value } else { &[] }))?;
        Ok(SortedStream::Sorted(sorter.finish()?))
    }

    /// Whether [`Store::scan`] yields keys in bytewise order.
    pub(crate) fn sorted(&self) -> bool {
        self.backend().sorted()
    }

    /// Layout details to keep when the database is rewritten.
    pub(crate) fn layout_hint(&self) -> LayoutHint {
        self.backend().layout_hint()
    }

    /// The keys that start with `prefix`.
    pub(crate) fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.backend().keys_with_prefix(prefix)
    }

    /// The Berkeley DB file, for the write path's bucket patching.
    pub(super) fn as_bdb(&self) -> Option<&BdbFile> {
        match self {
            Store::Bdb(b) => Some(b),
            _ => None,
        }
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &crate::location::PostgresUrl) -> Result<Store> {
    Ok(Store::Postgres(Arc::new(PgStore::open(url)?)))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(url: &crate::location::PostgresUrl) -> Result<Store> {
    Err(not_built(Format::Postgres, Path::new(&url.to_string())))
}

impl Format {
    /// Whether this build reads and writes databases of this format (LMDB, SQLite and
    /// PostgreSQL each need their cargo feature).
    pub fn is_built(self) -> bool {
        match self {
            Format::Bdb | Format::Gdbm => true,
            Format::Lmdb => cfg!(feature = "lmdb"),
            Format::Sqlite => cfg!(feature = "sqlite"),
            Format::Postgres => cfg!(feature = "postgres"),
        }
    }
}

/// The error for a format this build leaves out (a cargo feature not enabled).
pub(crate) fn not_built(format: Format, path: &Path) -> Error {
    Error::Unsupported {
        path: path.to_path_buf(),
        format,
        what: format!(
            "this build has no {format} support (cargo feature `{}`)",
            format.feature()
        ),
    }
}

/// Refuses a file location whose forced format is not a file format.
pub(crate) fn check_file_location(location: &Location) -> Result<()> {
    match location.format() {
        Some(f) if !f.is_file() => Err(Error::Invalid(format!(
            "{}: a {f} database is named by a postgresql:// URL, not a path",
            location.path().display()
        ))),
        _ => Ok(()),
    }
}

/// Refuses a file whose format is not the one a `FORMAT:` prefix forces.
pub(crate) fn check_forced(location: &Location, found: Format) -> Result<()> {
    match location.format() {
        Some(want) if want != found => Err(Error::Invalid(format!(
            "{}: is a {found} database, not {want}",
            location.path().display()
        ))),
        _ => Ok(()),
    }
}

/// Whether a path exists at all (without following a final symlink's target).
pub(crate) fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).at(path),
    }
}
