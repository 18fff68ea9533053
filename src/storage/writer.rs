//! [`Writer`]: a database held for writing. Every commit and every replacement of a
//! database goes through here; with [`super::copy`] (a database's copy, written by
//! file), this is the write side's only dispatch over the formats.
//!
//! How each format is changed:
//! - Berkeley DB: a few changes to a large file rewrite only the buckets they touch,
//!   on a kernel copy of the file ([`bdb::patch`]); otherwise the file is rebuilt from
//!   the merge of the old records and the changes. Either way the new file replaces
//!   the old one atomically ([`persist::replace_file`]).
//! - GDBM: rebuilt like Berkeley DB, under libgdbm's own `flock` on the data file
//!   (Cyrus edits GDBM files in place under it), taken before the file is read and
//!   held until the new file has replaced it ([`gdbm::DataFileLock`]).
//! - LMDB and SQLite: in place, in one transaction of their own (LMDB readers such as
//!   smtpd keep the environment open, so the file must not be replaced).
//! - PostgreSQL: one PostgreSQL transaction through the connection holding the
//!   writers' advisory lock.

use std::fs;
use std::path::Path;
#[cfg(feature = "postgres")]
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::location::{Detected, Format, Location, detect};
use crate::storage::bdb;
use crate::storage::endian::Endian;
use crate::storage::gdbm;
#[cfg(feature = "lmdb")]
use crate::storage::lmdb;
use crate::storage::options::WriteOptions;
use crate::storage::persist::{self, Ownership, Target, WriteLock};
#[cfg(feature = "postgres")]
use crate::storage::sql::pgsql;
#[cfg(feature = "sqlite")]
use crate::storage::sql::sqlite;
use crate::storage::store::{check_file_location, check_forced, not_built};
use crate::storage::{Changes, LayoutHint, Records, Store};

/// A database held for writing: the writer lock (a `<db>.lock` file, or PostgreSQL's
/// advisory lock) from [`Writer::begin`] until drop, and the database as it was when
/// the lock was taken.
#[derive(Debug)]
pub(crate) struct Writer {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    location: Location,
    format: Format,
    place: Place,
    base: Option<Store>,
    /// libgdbm's lock on an existing GDBM file, held from before `base` was read.
    gdbm_lock: Option<gdbm::DataFileLock>,
    opts: WriteOptions,
    notes: Vec<String>,
}

/// Where a writer writes.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per writer
enum Place {
    /// A file: its resolved path, the ownership it gets, and the writer lock file.
    File {
        target: Target,
        own: Ownership,
        _lock: WriteLock,
    },
    /// A PostgreSQL database: the connection holding the writers' advisory lock, and a
    /// directory for temporary files.
    #[cfg(feature = "postgres")]
    Postgres {
        session: pgsql::Session,
        tmp: PathBuf,
    },
}

impl Writer {
    /// Resolves the database path, decides ownership (a missing group or an owner the
    /// policy cannot keep is an error here, before anything is written), takes the
    /// writer lock, removes temporary files a crashed writer left, and opens the
    /// current database if there is one. An existing GDBM file is read only under
    /// libgdbm's exclusive lock on it, waited for like the writer lock: a libgdbm
    /// writer (Cyrus) may be halfway through an in-place update.
    pub(crate) fn begin(location: &Location, opts: &WriteOptions) -> Result<Writer> {
        if let Some(url) = location.postgres() {
            return Self::begin_postgres(location, url, opts);
        }
        check_file_location(location)?;
        let target = Target::resolve(location.path())?;
        let own = Ownership::plan(&target, &opts.ownership)?;
        let lock = WriteLock::acquire(&target, &own, opts.lock_timeout)?;
        let mut notes = Vec::new();
        let stale = target.remove_stale_temps()?;
        if stale > 0 {
            notes.push(format!(
                "{}: removed {stale} temporary file(s) left by an interrupted write",
                target.dir.display()
            ));
        }
        // Re-read the file's state now that we hold the lock.
        let target = Target::resolve(location.path())?;
        let detected = match &target.existing {
            Some(m) if m.len() > 0 => Some(detect(&target.path)?),
            _ => None,
        };
        let format = match detected {
            Some(Detected::Format(f)) => {
                check_forced(location, f)?;
                f
            }
            _ => location.format().unwrap_or(opts.new_format),
        };
        let gdbm_lock = match &target.existing {
            Some(_) if format == Format::Gdbm => Some(gdbm::DataFileLock::acquire(
                &target.path,
                opts.lock_timeout,
            )?),
            _ => None,
        };
        let base = match (detected, &gdbm_lock) {
            (Some(Detected::Format(Format::Gdbm)), Some(lock)) => {
                Some(Store::Gdbm(gdbm::GdbmFile::from_locked(lock)?))
            }
            (Some(Detected::Format(f)), _) => Some(Store::open_file(f, &target.path)?),
            _ => None,
        };
        if !format.is_file() {
            return Err(Error::Invalid(format!(
                "{}: a {format} database is named by a postgresql:// URL, not a path",
                location.path().display()
            )));
        }
        if !format.is_built() {
            return Err(not_built(format, &target.path));
        }
        Ok(Writer {
            location: location.clone(),
            format,
            place: Place::File {
                target,
                own,
                _lock: lock,
            },
            base,
            gdbm_lock,
            opts: opts.clone(),
            notes,
        })
    }

    /// Connects, takes the writers' advisory lock, and reads through that connection.
    #[cfg(feature = "postgres")]
    fn begin_postgres(
        location: &Location,
        url: &crate::location::PostgresUrl,
        opts: &WriteOptions,
    ) -> Result<Writer> {
        let session = pgsql::Session::begin(url, opts.lock_timeout)?;
        let base = session.reader().map(Store::Postgres);
        Ok(Writer {
            location: location.clone(),
            format: Format::Postgres,
            place: Place::Postgres {
                session,
                tmp: std::env::temp_dir(),
            },
            base,
            gdbm_lock: None,
            opts: opts.clone(),
            notes: Vec::new(),
        })
    }

    #[cfg(not(feature = "postgres"))]
    fn begin_postgres(
        location: &Location,
        _url: &crate::location::PostgresUrl,
        _opts: &WriteOptions,
    ) -> Result<Writer> {
        Err(not_built(Format::Postgres, location.path()))
    }

    /// The format the database has (or will be created in).
    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// The database as it was when the lock was taken (None: it did not exist, or was
    /// an empty file).
    pub(crate) fn base(&self) -> Option<&Store> {
        self.base.as_ref()
    }

    /// The real file being written (symlinks resolved); for PostgreSQL, the URL.
    pub(crate) fn path(&self) -> &Path {
        match &self.place {
            Place::File { target, .. } => &target.path,
            #[cfg(feature = "postgres")]
            Place::Postgres { .. } => self.location.path(),
        }
    }

    /// The directory of the database's real file (for PostgreSQL, the directory for
    /// temporary files).
    pub(crate) fn dir(&self) -> &Path {
        match &self.place {
            Place::File { target, .. } => &target.dir,
            #[cfg(feature = "postgres")]
            Place::Postgres { tmp, .. } => tmp,
        }
    }

    /// Whether [`Writer::replace`] loads fastest from records in key order (a new LMDB
    /// file is bulk-loaded in append mode).
    pub(crate) fn wants_sorted_input(&self) -> bool {
        self.format == Format::Lmdb
            && self.base.is_none()
            && matches!(&self.place, Place::File { target, .. } if target.existing.is_none())
    }

    /// Notes gathered so far (stale temporary files removed...), taken.
    pub(crate) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// What the ownership policy has to say (a changed group; ownership not enforced).
    pub(crate) fn ownership_notes(&self) -> (Option<String>, Option<String>) {
        match &self.place {
            Place::File { own, .. } => (own.note.clone(), own.warning.clone()),
            #[cfg(feature = "postgres")]
            Place::Postgres { .. } => (None, None),
        }
    }

    fn file(&self) -> Result<(Target, Ownership)> {
        match &self.place {
            Place::File { target, own, .. } => Ok((target.clone(), own.clone())),
            #[cfg(feature = "postgres")]
            Place::Postgres { .. } => Err(Error::Invalid(format!(
                "{}: not a file",
                self.location.path().display()
            ))),
        }
    }

    /// Applies `changes` atomically; returns the number of records afterwards.
    pub(crate) fn commit(&mut self, changes: Changes) -> Result<u64> {
        #[cfg(feature = "postgres")]
        if let Place::Postgres { session, .. } = &mut self.place {
            return session.commit(&changes);
        }
        let (target, own) = self.file()?;
        let hint = self.layout_hint();
        match self.format {
            Format::Bdb => {
                if let Some(n) = self.patch_bdb(&target, &own, &changes)? {
                    return Ok(n);
                }
                let base = match &self.base {
                    Some(b) if !changes.replace_all => Some(b.scan()?),
                    _ => None,
                };
                let merged = crate::storage::merge_owned(base, changes);
                let opts = bdb_options(&hint, &self.opts)?;
                Ok(
                    persist::replace_file(&target, &own, |f| bdb::write_records(merged, &opts, f))?
                        .records,
                )
            }
            Format::Gdbm => self.write_gdbm(&target, &own, &hint, Source::Changes(&changes)),
            #[cfg(feature = "lmdb")]
            Format::Lmdb => {
                // Our own read handle must end first: it would keep the environment
                // open read-only in this process.
                self.base = None;
                lmdb::commit_with(&target.path, &own, &changes, &self.opts.lmdb)
            }
            #[cfg(feature = "sqlite")]
            Format::Sqlite => {
                // Changes apply in place; no read connection stays open meanwhile.
                self.base = None;
                sqlite::commit_with(
                    &target.path,
                    &own,
                    &changes,
                    self.opts.lock_timeout,
                    &mut self.notes,
                )
            }
            other => Err(not_built(other, &target.path)),
        }
    }

    /// A Berkeley DB file that a few keys change: a copy with only their buckets
    /// rewritten. None when the changes do not suit a patch.
    fn patch_bdb(
        &self,
        target: &Target,
        own: &Ownership,
        changes: &Changes,
    ) -> Result<Option<u64>> {
        let Some(db) = self.base.as_ref().and_then(Store::as_bdb) else {
            return Ok(None);
        };
        if changes.replace_all || changes.ops.len() > bdb::patch::MAX_OPS {
            return Ok(None);
        }
        let ops: Vec<bdb::patch::Op<'_>> = changes
            .ops
            .iter()
            .map(|(k, v)| (&k[..], v.as_ref()))
            .collect();
        match bdb::patch::plan(db, &ops)? {
            Some(patch) => {
                let stats = persist::replace_file(target, own, |f| patch.write(db, f))?;
                Ok(Some(stats.records))
            }
            None => Ok(None),
        }
    }

    /// Replaces the whole database with `records` (unique keys), streaming them into a
    /// new file where the format allows. `sorted` says they come in key order (a new
    /// LMDB file is bulk-loaded in append mode; otherwise they are sorted on the way
    /// with a bounded memory budget). An error from the records aborts the write: the
    /// database is left as it was.
    pub(crate) fn replace(&mut self, records: Records<'_>, sorted: bool) -> Result<u64> {
        #[cfg(not(feature = "lmdb"))]
        let _ = sorted;
        let hint = self.layout_hint();
        match self.format {
            Format::Bdb => {
                self.base = None;
                let opts = bdb_options(&hint, &self.opts)?;
                let (target, own) = self.file()?;
                Ok(
                    persist::replace_file(&target, &own, |f| {
                        bdb::write_records(records, &opts, f)
                    })?
                    .records,
                )
            }
            Format::Gdbm => {
                let (target, own) = self.file()?;
                self.write_gdbm(&target, &own, &hint, Source::Records(records))
            }
            #[cfg(feature = "lmdb")]
            Format::Lmdb if self.wants_sorted_input() => {
                let (target, own) = self.file()?;
                let sorted_records = sort_if_needed(records, sorted, &target.dir)?;
                lmdb::build_new_with(&target.path, sorted_records, &own, &self.opts.lmdb)
            }
            // In place: a replace-all change set.
            _ => {
                let mut changes = Changes {
                    replace_all: true,
                    ..Changes::default()
                };
                for r in records {
                    let r = r?;
                    changes.ops.insert(r.key, Some(r.value));
                }
                self.commit(changes)
            }
        }
    }

    fn layout_hint(&self) -> LayoutHint {
        self.base
            .as_ref()
            .map(Store::layout_hint)
            .unwrap_or_default()
    }

    /// Rebuilds a GDBM database. libgdbm users (Cyrus) edit the file in place under
    /// `flock`; the existing file has been locked `LOCK_EX` since [`Writer::begin`]
    /// read it, so the base is what the new file is built from and renamed over it.
    /// The replaced file is then retired ([`gdbm::DataFileLock::retire`]) and the lock
    /// released.
    fn write_gdbm(
        &mut self,
        target: &Target,
        own: &Ownership,
        hint: &LayoutHint,
        source: Source<'_, '_>,
    ) -> Result<u64> {
        let opts = gdbm_options(hint, &target.dir);
        let stats = match source {
            Source::Records(records) => {
                persist::replace_file(target, own, |f| gdbm::write_records(records, &opts, f))?
            }
            Source::Changes(changes) => {
                let base = match &self.base {
                    Some(b) if !changes.replace_all => Some(b.scan()?),
                    _ => None,
                };
                let merged = crate::storage::merge(base, changes);
                persist::replace_file(target, own, |f| gdbm::write_records(merged, &opts, f))?
            }
        };
        self.base = None;
        if let Some(lock) = self.gdbm_lock.take() {
            lock.retire();
        }
        Ok(stats.records)
    }
}

/// What a GDBM rebuild writes: a complete record stream, or changes over the file.
enum Source<'r, 'c> {
    Records(Records<'r>),
    Changes(&'c Changes),
}

/// `records` in key order: as they are when `sorted`, else through an external sort
/// spilling to `dir`.
#[cfg(feature = "lmdb")]
pub(super) fn sort_if_needed<'a>(
    records: Records<'a>,
    sorted: bool,
    dir: &Path,
) -> Result<Records<'a>> {
    if sorted {
        return Ok(records);
    }
    let mut sorter =
        crate::storage::sort::ExternalSort::new(dir, crate::storage::sort::DEFAULT_BUDGET);
    for r in records {
        sorter.push(r?)?;
    }
    sorter.finish()
}

/// Layout of the GDBM file to write: the existing file's block size and numsync
/// setting, else the directory's preferred I/O size (libgdbm's default, what Cyrus gets),
/// else 4096; always this machine's layout (byte order, address width) and `char`
/// signedness, so the local libgdbm can open the file and find every key.
pub(super) fn gdbm_options(hint: &LayoutHint, dir: &Path) -> gdbm::WriteOptions {
    use std::os::unix::fs::MetadataExt;
    let usable = |bs: u32| {
        (gdbm::MIN_BLOCK_SIZE..=gdbm::MAX_BLOCK_SIZE).contains(&bs) && bs.is_power_of_two()
    };
    let fs_block = fs::metadata(dir)
        .ok()
        .and_then(|m| u32::try_from(m.blksize()).ok());
    let block_size = [hint.page_size, fs_block]
        .into_iter()
        .flatten()
        .find(|&bs| usable(bs))
        .unwrap_or(4096);
    gdbm::WriteOptions {
        block_size,
        numsync: hint.numsync,
        ..Default::default()
    }
}

/// Layout of the Berkeley DB file to write: the existing file's page size, byte order
/// and checksum setting, else the options, else libdb's defaults.
pub(super) fn bdb_options(hint: &LayoutHint, opts: &WriteOptions) -> Result<bdb::WriteOptions> {
    let mut o = bdb::WriteOptions::default();
    if let Some(ps) = hint.page_size.or(opts.bdb_page_size) {
        if !(512..=65536).contains(&ps) || !ps.is_power_of_two() {
            return Err(Error::Invalid(format!(
                "invalid page size {ps}: use a power of two from 512 to 65536"
            )));
        }
        o.page_size = ps;
    }
    if let Some(big) = hint.big_endian {
        o.endian = if big { Endian::Big } else { Endian::Little };
    } else if let Some(e) = opts.bdb_endian {
        o.endian = e;
    }
    o.checksums = hint.checksums;
    Ok(o)
}
