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
use crate::location::{Detected, Format, Location, detect_bytes};
#[cfg(any(feature = "lmdb", feature = "sqlite"))]
use crate::storage::MapOps;
#[cfg(feature = "sqlite")]
use crate::storage::RecordOps;
use crate::storage::bdb;
use crate::storage::endian::Endian;
use crate::storage::gdbm;
#[cfg(feature = "lmdb")]
use crate::storage::lmdb;
use crate::storage::options::WriteOptions;
use crate::storage::persist::{self, Ownership, Target, WriteLock};
use crate::storage::sort::SpillTo;
#[cfg(feature = "lmdb")]
use crate::storage::sort::sort_records;
#[cfg(feature = "postgres")]
use crate::storage::sql::pgsql;
#[cfg(feature = "sqlite")]
use crate::storage::sql::sqlite;
use crate::storage::stage::{self, Kind, SortedOps};
use crate::storage::store::{check_file_location, check_forced, not_built};
use crate::storage::{Changes, LayoutHint, OpSource, Records, Stage, Store};

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
        target.check_safe(opts.allow_unsafe_dir)?;
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
        // Re-read the file's state now that we hold the lock, in the directory the
        // lock was taken in.
        let target = target.refresh()?;
        let detected = match &target.existing {
            Some(m) if m.len() > 0 => Some(detect_target(&target)?),
            _ => None,
        };
        let format = match detected {
            Some(Detected::Format(f)) => {
                check_forced(location, f)?;
                f
            }
            _ => location.format().unwrap_or(opts.new_format),
        };
        #[cfg(feature = "sqlite")]
        if format == Format::Sqlite {
            if target.path_is_stable() {
                sqlite::check_journal(&target)?;
            } else {
                // Root in a directory others can write (allowed): SQLite opens by
                // name, so the file is read through a descriptor and rebuilt, never
                // written in place; a journal there is refused before anything is read.
                sqlite::refuse_journal(&target)?;
            }
        }
        let gdbm_lock = match &target.existing {
            Some(_) if format == Format::Gdbm => Some(gdbm::DataFileLock::acquire_in(
                &target.handle,
                &target.name,
                &target.path,
                opts.lock_timeout,
            )?),
            _ => None,
        };
        let base = match (detected, &gdbm_lock) {
            (Some(Detected::Format(Format::Gdbm)), Some(lock)) => {
                Some(Store::Gdbm(gdbm::GdbmFile::from_locked(lock)?))
            }
            (Some(Detected::Format(f)), _) => Some(Store::open_target(f, &target)?),
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

    /// Where bulk work on this database spills: the option's directory, else the
    /// database's own (named temporary files get the database's temporary prefix, so
    /// the next writer removes any a crash left).
    pub(crate) fn spill_to(&self) -> SpillTo {
        match &self.place {
            Place::File { target, .. } => self.opts.spill.to_for(&target.dir, Some(&target.name)),
            #[cfg(feature = "postgres")]
            Place::Postgres { tmp, .. } => self.opts.spill.to_for(tmp, None),
        }
    }

    /// An empty bulk change set in the form this database's commit consumes.
    /// `replace_all`: the database is emptied first (the stage then holds the whole
    /// new content, and deletes are ignored). `complete`: the producer will also hand
    /// over every record that stays (see [`Stage::keep`]), which spares a rebuilt
    /// file a second read and merge of the old one.
    pub(crate) fn stage(&self, replace_all: bool, complete: bool) -> Result<Stage> {
        let to = self.spill_to();
        let kind = match self.format {
            Format::Bdb => {
                let o = bdb_options(&self.layout_hint(), &self.opts)?;
                Kind::Bdb(bdb::BucketSort::new(&to, o.page_size))
            }
            Format::Gdbm => {
                let o = gdbm_options(&self.layout_hint(), self.dir());
                Kind::Gdbm(gdbm::HashSort::new(&to, o.signed_char))
            }
            Format::Postgres => Kind::Map(stage::MapStage::new(replace_all)),
            _ => Kind::Ops(stage::ops_sort(&to)),
        };
        Ok(stage::new(kind, replace_all, complete))
    }

    /// Applies a stage atomically; returns the number of records afterwards (None: not
    /// counted: a PostgreSQL import whose puts the server compared).
    pub(crate) fn commit_stage(&mut self, st: Stage) -> Result<Option<u64>> {
        if st.is_small() {
            let changes = st.into_changes()?;
            return self.commit(changes).map(Some);
        }
        let replace_all = st.replace_all;
        let complete = st.wants_kept();
        match st.kind {
            Kind::Map(list) => self.commit_list(list.into_list()),
            Kind::Bdb(mut sort) => {
                let (target, own) = self.file()?;
                let opts = bdb_options(&self.layout_hint(), &self.opts)?;
                if let Some(b) = self.base.as_ref().filter(|_| !replace_all && !complete) {
                    for r in b.scan()? {
                        let r = r?;
                        sort.base(&r.key, &r.value)?;
                    }
                }
                Ok(Some(
                    persist::replace_file(&target, &own, |f| bdb::write_sorted(sort, &opts, f))?
                        .records,
                ))
            }
            Kind::Gdbm(sort) => {
                let (target, own) = self.file()?;
                let hint = self.layout_hint();
                let whole = replace_all || complete;
                self.write_gdbm(&target, &own, &hint, Source::Sorted(Box::new(sort), whole))
                    .map(Some)
            }
            Kind::Ops(sort) => {
                let mut ops = SortedOps::new(sort, replace_all)?;
                self.commit_ops(&mut ops).map(Some)
            }
        }
    }

    /// Applies changes in place (LMDB, SQLite) in one transaction, or into a new file
    /// (a bulk load of a new LMDB file).
    fn commit_ops(&mut self, ops: &mut SortedOps) -> Result<u64> {
        let (target, own) = self.file()?;
        #[cfg(not(any(feature = "lmdb", feature = "sqlite")))]
        let _ = &own;
        match self.format {
            #[cfg(feature = "lmdb")]
            Format::Lmdb if target.existing.is_none() => {
                self.base = None;
                let puts = std::mem::replace(ops, SortedOps::empty()).into_puts();
                lmdb::build_new_at(&target, puts, &own, &self.opts.lmdb)
            }
            #[cfg(any(feature = "lmdb", feature = "sqlite"))]
            Format::Lmdb | Format::Sqlite
                if self.foreign_file(&target, &own) || self.sqlite_by_name_unsafe(&target) =>
            {
                self.rebuild_foreign(&target, &own, Changes::default(), Some(ops))
            }
            #[cfg(feature = "lmdb")]
            Format::Lmdb => {
                self.base = None;
                lmdb::commit_at(&target, &own, ops, &self.opts.lmdb)
            }
            #[cfg(feature = "sqlite")]
            Format::Sqlite => {
                self.base = None;
                sqlite::commit_at(&target, &own, ops, self.opts.lock_timeout, &mut self.notes)
            }
            other => {
                let _ = ops.bytes();
                Err(not_built(other, &target.path))
            }
        }
    }

    /// Notes gathered so far (stale temporary files removed...), taken.
    pub(crate) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Whether puts of plain passwords may be left for the store to compare with what
    /// it holds ([`Stage::compare`]): a PostgreSQL table of ours holding nothing but
    /// `userPassword` records.
    pub(crate) fn compares_passwords(&self) -> Result<bool> {
        match &self.place {
            #[cfg(feature = "postgres")]
            Place::Postgres { session, .. } => session.compares_passwords(),
            Place::File { .. } => Ok(false),
        }
    }

    /// How many of `puts` (keys and values) would change the database; asked only of a
    /// store that compares ([`Writer::compares_passwords`]), others answer all of them.
    pub(crate) fn puts_that_write(&self, puts: &[(&[u8], &[u8])]) -> Result<usize> {
        match &self.place {
            #[cfg(feature = "postgres")]
            Place::Postgres { session, .. } => session.puts_that_write(puts),
            Place::File { .. } => Ok(puts.len()),
        }
    }

    /// What the store found of the last commit's compared puts, taken.
    pub(crate) fn take_compared(&mut self) -> Option<crate::storage::Compared> {
        match &mut self.place {
            #[cfg(feature = "postgres")]
            Place::Postgres { session, .. } => session.take_compared(),
            Place::File { .. } => None,
        }
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

    /// Applies a PostgreSQL stage's list of changes atomically; returns the number of
    /// records afterwards.
    fn commit_list(&mut self, list: stage::ChangeList) -> Result<Option<u64>> {
        #[cfg(feature = "postgres")]
        if let Place::Postgres { session, .. } = &mut self.place {
            return session.commit_list(&list);
        }
        self.commit(list.into_changes()).map(Some)
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
                let to = self.spill_to();
                Ok(persist::replace_file(&target, &own, |f| {
                    bdb::write_records_spilling(merged, &opts, f, &to)
                })?
                .records)
            }
            Format::Gdbm => self.write_gdbm(&target, &own, &hint, Source::Changes(&changes)),
            #[cfg(any(feature = "lmdb", feature = "sqlite"))]
            Format::Lmdb | Format::Sqlite
                if self.foreign_file(&target, &own) || self.sqlite_by_name_unsafe(&target) =>
            {
                self.rebuild_foreign(&target, &own, changes, None)
            }
            #[cfg(feature = "lmdb")]
            Format::Lmdb => {
                // Our own read handle must end first: it would keep the environment
                // open read-only in this process.
                self.base = None;
                lmdb::commit_at(&target, &own, &mut MapOps::new(&changes), &self.opts.lmdb)
            }
            #[cfg(feature = "sqlite")]
            Format::Sqlite => {
                // Changes apply in place; no read connection stays open meanwhile.
                self.base = None;
                sqlite::commit_at(
                    &target,
                    &own,
                    &mut MapOps::new(&changes),
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
        if changes.replace_all || changes.ops.len() > bdb::patch::MAX_OPS || db.is_sparse()? {
            // A file much larger than its data (a sparse one) is rebuilt compactly: a
            // copy would write out every hole.
            return Ok(None);
        }
        let ops: Vec<bdb::patch::Op<'_>> = changes
            .ops
            .iter()
            .map(|(k, v)| (&k[..], v.as_ref()))
            .collect();
        match bdb::patch::plan(db, &ops)? {
            Some(patch) => {
                // The pages a patch does not touch are copied as they are: the file
                // must pass the readers' checks first (a rebuild reads every record
                // anyway), or the write carries damage on, and says nothing.
                db.check_records()?;
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
        let to = self.spill_to();
        match self.format {
            Format::Bdb => {
                self.base = None;
                let opts = bdb_options(&hint, &self.opts)?;
                let (target, own) = self.file()?;
                Ok(persist::replace_file(&target, &own, |f| {
                    bdb::write_records_spilling(records, &opts, f, &to)
                })?
                .records)
            }
            Format::Gdbm => {
                let (target, own) = self.file()?;
                self.write_gdbm(&target, &own, &hint, Source::Records(records))
            }
            #[cfg(feature = "lmdb")]
            Format::Lmdb if self.wants_sorted_input() => {
                let (target, own) = self.file()?;
                let sorted_records = sort_records(records, sorted, &to)?;
                lmdb::build_new_at(&target, sorted_records, &own, &self.opts.lmdb)
            }
            // In place: a replace-all stage.
            _ => {
                let mut st = self.stage(true, false)?;
                for r in records {
                    let r = r?;
                    st.put(&r.key, &r.value)?;
                }
                if st.is_small() {
                    let changes = st.into_changes()?;
                    return self.commit(changes);
                }
                // A replacement's puts are never compared: its records are counted.
                self.commit_stage(st)?
                    .ok_or_else(|| Error::Invalid("internal: a replacement left no count".into()))
            }
        }
    }

    /// Whether the existing file, written in place (LMDB, SQLite), belongs to someone
    /// other than the policy's owner and group, or has a wider mode: whoever could
    /// open it may hold it open, and would read what is written through it.
    #[cfg(any(feature = "lmdb", feature = "sqlite"))]
    fn foreign_file(&self, target: &Target, own: &Ownership) -> bool {
        // An empty file too: its owner may hold it open as well.
        target
            .existing
            .as_ref()
            .is_some_and(|m| own.mismatch(m).is_some())
    }

    /// Whether this is an SQLite database that root would have to open by name in a
    /// directory others can write: rebuilt through descriptors instead (see
    /// [`rebuild_sqlite`]).
    #[cfg(any(feature = "lmdb", feature = "sqlite"))]
    fn sqlite_by_name_unsafe(&self, target: &Target) -> bool {
        self.format == Format::Sqlite && !target.path_is_stable()
    }

    /// Applies `changes`, then `then` (a stage's changes, in key order), to a file
    /// [`Writer::foreign_file`] refuses to write through: a new file with the old
    /// records and the changes, renamed over it (for LMDB, the staged changes are then
    /// made in place in that new file, which is ours).
    #[cfg(any(feature = "lmdb", feature = "sqlite"))]
    fn rebuild_foreign(
        &mut self,
        target: &Target,
        own: &Ownership,
        changes: Changes,
        then: Option<&mut dyn OpSource>,
    ) -> Result<u64> {
        let why = target
            .existing
            .as_ref()
            .and_then(|m| own.mismatch(m))
            .or_else(|| {
                target
                    .unsafe_dir
                    .as_ref()
                    .map(|u| format!("{u}, and SQLite opens files by name (root never does there)"))
            })
            .unwrap_or_default();
        let base = self.base.take();
        let replace_all = changes.replace_all || then.as_ref().is_some_and(|o| o.replace_all());
        let scan = match &base {
            Some(b) if !replace_all => Some(b.scan()?),
            _ => None,
        };
        let merged = crate::storage::merge(scan, &changes);
        let n = match self.format {
            #[cfg(feature = "lmdb")]
            Format::Lmdb => {
                let sorted = sort_records(merged, false, &self.spill_to())?;
                let n = rebuild_lmdb(target, own, sorted, &self.opts, true)?;
                match then {
                    // The new file is ours: the staged changes go in place.
                    Some(ops) => lmdb::commit_at(target, own, ops, &self.opts.lmdb)?,
                    None => n,
                }
            }
            #[cfg(feature = "sqlite")]
            Format::Sqlite => {
                let mut notes = Vec::new();
                let n = rebuild_sqlite(target, own, merged, then, &self.opts, &mut notes)?;
                self.notes.extend(notes);
                n
            }
            other => return Err(not_built(other, &target.path)),
        };
        self.notes.push(format!(
            "{}: {why}: written as a new file instead of in place (whoever had the old one \
             open keeps only the old content); running readers see the change once they \
             reopen it",
            target.path.display()
        ));
        Ok(n)
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
        let to = self.spill_to();
        let stats = match source {
            Source::Records(records) => persist::replace_file(target, own, |f| {
                gdbm::write_records_spilling(records, &opts, f, &to)
            })?,
            Source::Changes(changes) => {
                let base = match &self.base {
                    Some(b) if !changes.replace_all => Some(b.scan()?),
                    _ => None,
                };
                let merged = crate::storage::merge(base, changes);
                persist::replace_file(target, own, |f| {
                    gdbm::write_records_spilling(merged, &opts, f, &to)
                })?
            }
            Source::Sorted(mut sort, whole) => {
                // The base, read under libgdbm's lock held since the transaction
                // began, unless the stage holds the whole new content.
                if let Some(b) = self.base.as_ref().filter(|_| !whole) {
                    for r in b.scan()? {
                        let r = r?;
                        sort.base(&r.key, &r.value)?;
                    }
                }
                persist::replace_file(target, own, |f| gdbm::write_sorted(*sort, &opts, f))?
            }
        };
        self.base = None;
        if let Some(lock) = self.gdbm_lock.take() {
            lock.retire();
        }
        Ok(stats.records)
    }
}

/// What a GDBM rebuild writes: a complete record stream, changes over the file, or a
/// staged sort (over the file unless it holds the whole new content: `true`).
enum Source<'r, 'c> {
    Records(Records<'r>),
    Changes(&'c Changes),
    Sorted(Box<gdbm::HashSort>, bool),
}

/// The format of the existing file a writer resolved, from its first bytes, read
/// through the directory's descriptor.
fn detect_target(target: &Target) -> Result<Detected> {
    use std::os::unix::fs::FileExt;
    let f = target
        .handle
        .open_at(
            &target.name,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK,
        )
        .map_err(|e| Error::io(&target.path, e))?;
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(&target.path, e)),
        }
    }
    detect_bytes(&head[..n]).ok_or_else(|| Error::UnknownFormat {
        path: target.path.clone(),
        reason: if n < 16 {
            format!("only {n} bytes long")
        } else {
            "unrecognised magic bytes".to_string()
        },
    })
}

/// Builds a new SQLite file from `records` next to `target` and renames it over the
/// entry there. SQLite opens the new file by name where nobody else can change the
/// names on the way; elsewhere (root, allowed in a directory others can write) through
/// a `/proc/self/fd` link to the temporary file's descriptor, its journal in our
/// private directory (see [`sqlite::commit_via`]).
#[cfg(feature = "sqlite")]
pub(crate) fn rebuild_sqlite(
    target: &Target,
    own: &Ownership,
    records: Records<'_>,
    then: Option<&mut dyn OpSource>,
    opts: &WriteOptions,
    notes: &mut Vec<String>,
) -> Result<u64> {
    let (file, tmp) = persist::create_temp(target, own)?;
    let mut changes = RecordOps::new(records);
    let tmp_target = Target {
        given: tmp.path().to_path_buf(),
        path: tmp.path().to_path_buf(),
        name: tmp.name().to_os_string(),
        existing: None,
        ..target.clone()
    };
    let n = if target.path_is_stable() {
        drop(file);
        let n = sqlite::commit_at(&tmp_target, own, &mut changes, opts.lock_timeout, notes)?;
        match then {
            Some(ops) => sqlite::commit_at(&tmp_target, own, ops, opts.lock_timeout, notes)?,
            None => n,
        }
    } else {
        let links = sqlite::proc_links(&file)?;
        let via = links.path("db");
        let n = sqlite::commit_via(
            &tmp_target,
            own,
            &mut changes,
            opts.lock_timeout,
            notes,
            Some(&via),
        )?;
        let n = match then {
            Some(ops) => {
                sqlite::commit_via(&tmp_target, own, ops, opts.lock_timeout, notes, Some(&via))?
            }
            None => n,
        };
        // SQLite closed the file: our descriptor may go now.
        drop(links);
        drop(file);
        n
    };
    tmp.rename_into_place(&target.name)?;
    Ok(n)
}

/// Builds a new LMDB file from `records` (in key order) next to `target` and renames
/// it over the entry there, then gives it a lock file. With `new_lock`, the lock file
/// is a new one too (renamed over the old): readers of the old file keep the old pair,
/// new ones get the new pair.
#[cfg(feature = "lmdb")]
pub(crate) fn rebuild_lmdb(
    target: &Target,
    own: &Ownership,
    records: Records<'_>,
    opts: &WriteOptions,
    new_lock: bool,
) -> Result<u64> {
    let (n, tmp) = lmdb::build_temp(target, records, own, &opts.lmdb)?;
    let mut lock = target.name.clone();
    lock.push("-lock");
    let fresh_lock = if new_lock {
        let (f, t) = persist::create_temp(target, own)?;
        let o = Ownership {
            mode: lmdb::lock_mode(own.mode),
            ..own.clone()
        };
        o.apply(&f, t.path())?;
        Some(t)
    } else {
        None
    };
    tmp.rename_into_place(&target.name)?;
    match fresh_lock {
        Some(t) => t.rename_into_place(&lock)?,
        None => lmdb::prepare_lock_at(&target.handle, &lock, own)?,
    }
    Ok(n)
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
