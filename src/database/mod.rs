//! The public database API: [`Database`] for reading, [`Transaction`] for writing.
//!
//! This module owns the life cycle of an access: naming a database ([`Location`]),
//! detecting its format, picking the backend, and for writes running the write path
//! ([`crate::storage::persist`]) around the backend's commit. It knows nothing about any
//! format's bytes.
//!
//! Reading takes no lock: writers replace files atomically (or, for LMDB and SQLite,
//! commit transactions), so a reader sees either the old or the new database.
//!
//! A PostgreSQL location (`postgresql://...`) names no file: it takes its own branch
//! here (`Place::Postgres`), with no lock file, no ownership policy and no replace;
//! the writers' lock is an advisory lock in the database, and a commit is one
//! PostgreSQL transaction (see [`crate::storage::sql::pgsql`]).
//!
//! ```
//! use sasldb::{Database, Key, Location, Transaction, WriteOptions};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("sasldb2");
//! let loc = Location::path_only(&path);
//! let mut txn = Transaction::begin(&loc, &WriteOptions::default())?;
//! txn.put(&Key::new("alice", "example.com", "userPassword")?, b"s3cret".to_vec());
//! txn.commit()?;
//!
//! let db = Database::open(&loc)?;
//! let pw = db.get(&Key::new("alice", "example.com", "userPassword")?)?;
//! assert_eq!(pw.as_deref().map(|v| &v[..]), Some(&b"s3cret"[..]));
//! # Ok::<(), sasldb::Error>(())
//! ```

#[cfg(test)]
mod fault_tests;

use std::cell::{Cell, OnceCell};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::location::{Detected, Format, Location, detect};
use crate::record::{Key, Record, Secret, user_prefix};
use crate::storage::bdb::{self, BdbFile};
use crate::storage::endian::Endian;
use crate::storage::gdbm::{self, GdbmFile};
use crate::storage::lmdb::{self, LmdbFile};
use crate::storage::persist::{self, Ownership, Target, WriteLock};
use crate::storage::sql::pgsql::{self, PgStore};
use crate::storage::sql::sqlite::{self, SqliteFile};
use crate::storage::{Backend, Changes, LayoutHint, Records};

/// A database opened for reading.
pub struct Database {
    location: Location,
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("location", &self.location)
            .field("format", &self.backend.format())
            .finish()
    }
}

impl Database {
    /// Opens an existing database read-only. A missing path, an empty file, a
    /// directory, or a file of an unknown format is an error.
    pub fn open(location: &Location) -> Result<Database> {
        if let Some(url) = location.postgres() {
            return Ok(Database {
                location: location.clone(),
                backend: Box::new(PgStore::open(url)?),
            });
        }
        check_file_format(location)?;
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
        let backend = open_backend(format, path)?;
        Ok(Database {
            location: location.clone(),
            backend,
        })
    }

    /// Where the database lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The database's format.
    pub fn format(&self) -> Format {
        self.backend.format()
    }

    /// Looks one property up.
    pub fn get(&self, key: &Key) -> Result<Option<Secret>> {
        self.backend.get(&key.encode())
    }

    /// Looks an encoded key up.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Secret>> {
        self.backend.get(key)
    }

    /// Every record, in storage order (for Berkeley DB: the order libdb's cursor and
    /// Cyrus's `sasldblistusers2` use). Malformed keys are returned as they are.
    pub fn records(&self) -> Result<Records<'_>> {
        self.backend.scan()
    }

    /// Every record, sorted bytewise by key.
    pub fn sorted_records(&self) -> Result<Vec<Record>> {
        let mut v: Vec<Record> = self.backend.scan()?.collect::<Result<_>>()?;
        if !self.backend.sorted() {
            v.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(v)
    }

    /// The property names stored for `user@realm`.
    pub fn properties(&self, user: &[u8], realm: &[u8]) -> Result<Vec<Vec<u8>>> {
        let prefix = user_prefix(user, realm);
        let mut props = Vec::new();
        for rec in self.backend.scan()? {
            let rec = rec?;
            if let Some(rest) = rec.key.strip_prefix(&prefix[..])
                && !rest.is_empty()
                && !rest.contains(&0)
            {
                props.push(rest.to_vec());
            }
        }
        props.sort();
        Ok(props)
    }

    /// Every key, sorted bytewise, held compactly (one arena, no values): what
    /// listings and exports iterate, so a million keys fit in a few tens of MiB.
    pub fn sorted_keys(&self) -> Result<KeyList> {
        let mut list = KeyList::default();
        for rec in self.backend.scan()? {
            list.push(&rec?.key)?;
        }
        if !self.backend.sorted() {
            list.sort();
        }
        Ok(list)
    }

    /// The backend, for format-specific checks.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }
}

/// Keys in one arena, with their spans.
#[derive(Debug, Default, Clone)]
pub struct KeyList {
    arena: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl KeyList {
    fn push(&mut self, key: &[u8]) -> Result<()> {
        let start = u32::try_from(self.arena.len())
            .map_err(|_| Error::Invalid("more than 4 GiB of keys".into()))?;
        self.arena.extend_from_slice(key);
        self.spans.push((start, key.len() as u32));
        Ok(())
    }

    fn sort(&mut self) {
        let arena = &self.arena;
        self.spans.sort_unstable_by(|a, b| {
            arena[a.0 as usize..(a.0 + a.1) as usize]
                .cmp(&arena[b.0 as usize..(b.0 + b.1) as usize])
        });
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The keys in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans
            .iter()
            .map(|&(s, l)| &self.arena[s as usize..(s + l) as usize])
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
    /// Group for the ownership policy when running as root (else `SASLDB_GROUP`,
    /// else `postfix`).
    pub group: Option<String>,
    /// How long to wait for another writer.
    pub lock_timeout: Option<Duration>,
    /// LMDB options (Cyrus's `sasldb_mapsize` in KiB, `sasldb_maxreaders`).
    pub lmdb: lmdb::Options,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            new_format: Format::Bdb,
            bdb_page_size: None,
            bdb_endian: None,
            group: None,
            lock_timeout: None,
            lmdb: lmdb::Options::default(),
        }
    }
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Whether anything was written (a transaction without changes writes nothing).
    pub written: bool,
    /// Records in the database after the commit (when known).
    pub records: Option<u64>,
    /// Notes for the user (group changed, stale temporary files removed...).
    pub notes: Vec<String>,
    /// Warnings for the user (ownership not enforced...).
    pub warnings: Vec<String>,
}

/// Per-user questions a transaction answers by scanning for the user's prefix before
/// it indexes every key instead.
const PREFIX_SCANS: u32 = 2;

/// A write transaction: holds the database's writer lock from [`Transaction::begin`]
/// to [`Transaction::commit`] (or drop), sees the database as of `begin` plus its own
/// changes, and applies all changes at once.
pub struct Transaction {
    location: Location,
    place: Place,
    format: Format,
    base: Option<Box<dyn Backend>>,
    changes: Changes,
    opts: WriteOptions,
    notes: Vec<String>,
    key_index: OnceCell<BTreeSet<Vec<u8>>>,
    prefix_scans: Cell<u32>,
}

/// Where a transaction writes.
#[allow(clippy::large_enum_variant)] // one per transaction
enum Place {
    /// A file: its resolved path, the ownership policy, and the writer lock file.
    File {
        target: Target,
        own: Ownership,
        _lock: WriteLock,
    },
    /// A PostgreSQL database: the connection holding the writers' advisory lock.
    Postgres {
        session: pgsql::Session,
        tmp: PathBuf,
    },
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("location", &self.location)
            .field("format", &self.format)
            .field("changes", &self.changes)
            .finish()
    }
}

impl Transaction {
    /// Resolves the database path, decides ownership (a missing group is an error
    /// here, before anything is written), takes the writer lock, removes temporary
    /// files a crashed writer left, and opens the current database if there is one.
    pub fn begin(location: &Location, opts: &WriteOptions) -> Result<Transaction> {
        if let Some(url) = location.postgres() {
            return Self::begin_postgres(location, url, opts);
        }
        check_file_format(location)?;
        let target = Target::resolve(location.path())?;
        let own = Ownership::plan(&target, opts.group.as_deref())?;
        let timeout = opts.lock_timeout.unwrap_or_else(persist::lock_timeout);
        let lock = WriteLock::acquire(&target, &own, timeout)?;
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
        let (format, base) = match detected {
            Some(Detected::Format(f)) => {
                check_forced(location, f)?;
                (f, Some(open_backend(f, &target.path)?))
            }
            _ => (location.format().unwrap_or(opts.new_format), None),
        };
        if !format.is_file() {
            return Err(Error::Invalid(format!(
                "{}: a {format} database is named by a postgresql:// URL, not a path",
                location.path().display()
            )));
        }
        Ok(Transaction {
            location: location.clone(),
            place: Place::File {
                target,
                own,
                _lock: lock,
            },
            format,
            base,
            changes: Changes::default(),
            opts: opts.clone(),
            notes,
            key_index: OnceCell::new(),
            prefix_scans: Cell::new(0),
        })
    }

    /// Connects, takes the writers' advisory lock, and reads through that connection.
    fn begin_postgres(
        location: &Location,
        url: &crate::location::PostgresUrl,
        opts: &WriteOptions,
    ) -> Result<Transaction> {
        let timeout = opts.lock_timeout.unwrap_or_else(persist::lock_timeout);
        let session = pgsql::Session::begin(url, timeout)?;
        let base = session.reader().map(|r| Box::new(r) as Box<dyn Backend>);
        Ok(Transaction {
            location: location.clone(),
            place: Place::Postgres {
                session,
                tmp: std::env::temp_dir(),
            },
            format: Format::Postgres,
            base,
            changes: Changes::default(),
            opts: opts.clone(),
            notes: Vec::new(),
            key_index: OnceCell::new(),
            prefix_scans: Cell::new(0),
        })
    }

    /// The file parts of the place (the file formats' write paths only run for them).
    fn file(&self) -> Result<(Target, Ownership)> {
        match &self.place {
            Place::File { target, own, .. } => Ok((target.clone(), own.clone())),
            Place::Postgres { .. } => Err(Error::Invalid(format!(
                "{}: not a file",
                self.location.path().display()
            ))),
        }
    }

    /// The format the database has (or will be created in).
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the database existed (non-empty) when the transaction began.
    pub fn existed(&self) -> bool {
        self.base.is_some()
    }

    /// The real file being written (symlinks resolved); for PostgreSQL, the URL.
    pub fn path(&self) -> &Path {
        match &self.place {
            Place::File { target, .. } => &target.path,
            Place::Postgres { .. } => self.location.path(),
        }
    }

    /// The directory of the database's real file (for PostgreSQL, the directory for
    /// temporary files).
    pub fn dir(&self) -> &Path {
        match &self.place {
            Place::File { target, .. } => &target.dir,
            Place::Postgres { tmp, .. } => tmp,
        }
    }

    /// Whether [`Transaction::replace_with`] loads fastest from records in key order
    /// (a new LMDB file is bulk-loaded in append mode).
    pub fn wants_sorted_input(&self) -> bool {
        self.format == Format::Lmdb
            && self.base.is_none()
            && matches!(&self.place, Place::File { target, .. } if target.existing.is_none())
    }

    /// Looks an encoded key up, seeing this transaction's own changes.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Secret>> {
        if let Some(op) = self.changes.ops.get(key) {
            return Ok(op.clone());
        }
        if self.changes.replace_all {
            return Ok(None);
        }
        if let Some(index) = self.key_index.get()
            && !index.contains(key)
        {
            return Ok(None);
        }
        match &self.base {
            Some(b) => b.get(key),
            None => Ok(None),
        }
    }

    /// Looks a property up, seeing this transaction's own changes.
    pub fn get(&self, key: &Key) -> Result<Option<Secret>> {
        self.get_raw(&key.encode())
    }

    /// Stores a property.
    pub fn put(&mut self, key: &Key, value: impl Into<Secret>) {
        self.changes.ops.insert(key.encode(), Some(value.into()));
    }

    /// Stores an encoded key.
    pub fn put_raw(&mut self, key: Vec<u8>, value: Secret) {
        self.changes.ops.insert(key, Some(value));
    }

    /// Deletes a property (absent properties are fine).
    pub fn delete(&mut self, key: &Key) {
        self.changes.ops.insert(key.encode(), None);
    }

    /// Deletes an encoded key.
    pub fn delete_raw(&mut self, key: Vec<u8>) {
        self.changes.ops.insert(key, None);
    }

    /// Empties the database: the commit writes only what is put afterwards.
    pub fn clear(&mut self) {
        self.changes.replace_all = true;
        self.changes.ops.clear();
    }

    /// The records of the database as it was when the transaction began (without
    /// this transaction's changes).
    pub fn base_records(&self) -> Result<Records<'_>> {
        match &self.base {
            Some(b) if !self.changes.replace_all => b.scan(),
            _ => Ok(Box::new(std::iter::empty())),
        }
    }

    /// The keys of the database as it was when the transaction began, indexed on
    /// first use (one scan), so per-user questions cost a range lookup.
    fn base_keys(&self) -> Result<&BTreeSet<Vec<u8>>> {
        if let Some(k) = self.key_index.get() {
            return Ok(k);
        }
        let mut keys = BTreeSet::new();
        if let Some(b) = &self.base {
            for rec in b.scan()? {
                keys.insert(rec?.key);
            }
        }
        Ok(self.key_index.get_or_init(|| keys))
    }

    /// The property names a user has, this transaction's changes included.
    pub fn properties(&self, user: &[u8], realm: &[u8]) -> Result<Vec<Vec<u8>>> {
        let prefix = user_prefix(user, realm);
        let mut props = BTreeSet::new();
        let prop_of = |k: &[u8]| -> Option<Vec<u8>> {
            let rest = &k[prefix.len()..];
            (!rest.is_empty() && !rest.contains(&0)).then(|| rest.to_vec())
        };
        if !self.changes.replace_all {
            // On a Berkeley DB file the first few questions scan the pages for the
            // prefix (cheap, nothing kept); a transaction that keeps asking (an import)
            // indexes every key once.
            let direct = self.key_index.get().is_none() && self.prefix_scans.get() < PREFIX_SCANS;
            match &self.base {
                Some(base) if direct && base.as_bdb().is_some() => {
                    self.prefix_scans.set(self.prefix_scans.get() + 1);
                    for k in base.keys_with_prefix(&prefix)? {
                        if !self.changes.ops.contains_key(&k) {
                            props.extend(prop_of(&k));
                        }
                    }
                }
                _ => {
                    for k in self
                        .base_keys()?
                        .range(prefix.clone()..)
                        .take_while(|k| k.starts_with(&prefix))
                    {
                        if !self.changes.ops.contains_key(k) {
                            props.extend(prop_of(k));
                        }
                    }
                }
            }
        }
        for (k, v) in self
            .changes
            .ops
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            if v.is_some() {
                props.extend(prop_of(k));
            }
        }
        Ok(props.into_iter().collect())
    }

    /// Every key of the database as it was when the transaction began.
    pub fn base_keys_sorted(&self) -> Result<impl Iterator<Item = &Vec<u8>>> {
        Ok(self.base_keys()?.iter())
    }

    /// Deletes every property of `user@realm`; returns how many existed.
    pub fn delete_user(&mut self, user: &[u8], realm: &[u8]) -> Result<usize> {
        let props = self.properties(user, realm)?;
        for p in &props {
            let mut key = user_prefix(user, realm);
            key.extend_from_slice(p);
            self.changes.ops.insert(key, None);
        }
        Ok(props.len())
    }

    /// The pending changes.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Whether the transaction holds no changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Applies every change atomically and releases the lock. A transaction without
    /// changes on an existing database writes nothing; on a missing database it
    /// creates an empty one. A Berkeley DB file that a few keys change is copied with
    /// only their buckets rewritten ([`bdb::patch`]); otherwise the file is rebuilt.
    pub fn commit(mut self) -> Result<CommitReport> {
        let mut report = CommitReport {
            notes: std::mem::take(&mut self.notes),
            ..Default::default()
        };
        if self.changes.is_empty() && self.base.is_some() {
            return Ok(report);
        }
        let records = self.write()?;
        report.notes.append(&mut self.notes);
        report.written = true;
        report.records = Some(records);
        self.ownership_notes(&mut report);
        Ok(report)
    }

    fn write(&mut self) -> Result<u64> {
        if let Place::Postgres { session, .. } = &mut self.place {
            // One PostgreSQL transaction, through the connection holding the lock.
            return session.commit(&self.changes);
        }
        let (target, own) = self.file()?;
        match self.format {
            Format::Bdb => {
                // A few changes to a large file: rewrite only the buckets they touch,
                // on a copy that still replaces the file atomically.
                if !self.changes.replace_all
                    && self.changes.ops.len() <= bdb::patch::MAX_OPS
                    && let Some(db) = self.base.as_ref().and_then(|b| b.as_bdb())
                {
                    let ops: Vec<bdb::patch::Op<'_>> = self
                        .changes
                        .ops
                        .iter()
                        .map(|(k, v)| (&k[..], v.as_ref()))
                        .collect();
                    if let Some(patch) = bdb::patch::plan(db, &ops)? {
                        let stats = persist::replace_file(&target, &own, |f| patch.write(db, f))?;
                        return Ok(stats.records);
                    }
                }
                let hint = self
                    .base
                    .as_ref()
                    .map(|b| b.layout_hint())
                    .unwrap_or_default();
                let base = match &self.base {
                    Some(b) if !self.changes.replace_all => Some(b.scan()?),
                    _ => None,
                };
                let merged = crate::storage::merge_owned(base, std::mem::take(&mut self.changes));
                let opts = bdb_options(&hint, &self.opts)?;
                let stats =
                    persist::replace_file(&target, &own, |f| bdb::write_records(merged, &opts, f))?;
                Ok(stats.records)
            }
            Format::Gdbm => {
                let hint = self
                    .base
                    .as_ref()
                    .map(|b| b.layout_hint())
                    .unwrap_or_default();
                self.write_gdbm(&hint)
            }
            Format::Lmdb => {
                // In place, in one LMDB transaction. Our snapshot must end first: it
                // would pin old pages and keep the map from growing.
                self.base = None;
                lmdb::commit_with(&target.path, &own, &self.changes, &self.opts.lmdb)
            }
            Format::Sqlite => {
                // Changes apply in place; no read connection stays open meanwhile.
                self.base = None;
                let timeout = self.opts.lock_timeout.unwrap_or_else(persist::lock_timeout);
                sqlite::commit_with(&target.path, &own, &self.changes, timeout, &mut self.notes)
            }
            Format::Postgres => Err(Error::Invalid(format!(
                "{}: a PostgreSQL database is named by a postgresql:// URL",
                target.path.display()
            ))),
        }
    }
}

impl Transaction {
    /// Rebuilds a GDBM database. libgdbm users (Cyrus) edit the file in place under
    /// `flock`, so the existing file is locked `LOCK_EX` (waiting like for our own lock)
    /// and read again under that lock before the new file is built and renamed over it.
    fn write_gdbm(&mut self, hint: &LayoutHint) -> Result<u64> {
        self.write_gdbm_from(hint, None)
    }

    /// Rebuilds a GDBM database from the merge of the current file and the changes,
    /// or, with `replacement`, from those records alone.
    fn write_gdbm_from(
        &mut self,
        hint: &LayoutHint,
        replacement: Option<Records<'_>>,
    ) -> Result<u64> {
        let timeout = self.opts.lock_timeout.unwrap_or_else(persist::lock_timeout);
        let (target, own) = self.file()?;
        // Our own descriptor on the old file must not be what keeps the lock busy.
        let had_base = self.base.take().is_some();
        let _data_lock = match &target.existing {
            Some(_) => Some(gdbm::DataFileLock::acquire(&target.path, timeout)?),
            None => None,
        };
        let opts = gdbm_options(hint, &target.dir);
        if let Some(records) = replacement {
            let stats =
                persist::replace_file(&target, &own, |f| gdbm::write_records(records, &opts, f))?;
            return Ok(stats.records);
        }
        let fresh = if had_base && !self.changes.replace_all {
            Some(GdbmFile::open(&target.path)?)
        } else {
            None
        };
        let base = fresh.as_ref().map(|f| Box::new(f.scan()) as Records<'_>);
        let merged = crate::storage::merge(base, &self.changes);
        let stats =
            persist::replace_file(&target, &own, |f| gdbm::write_records(merged, &opts, f))?;
        Ok(stats.records)
    }

    /// Replaces the whole database with `records` (unique keys), streaming them into
    /// the new file where the format allows, and releases the lock. `sorted` says the
    /// records already come in key order (an LMDB bulk load needs that; otherwise they
    /// are sorted on the way with a bounded memory budget).
    ///
    /// Any pending changes of this transaction are discarded. An error from the
    /// records aborts the write: the database is left as it was.
    pub fn replace_with(mut self, records: Records<'_>, sorted: bool) -> Result<CommitReport> {
        self.changes = Changes::default();
        let hint = self
            .base
            .as_ref()
            .map(|b| b.layout_hint())
            .unwrap_or_default();
        let count = match self.format {
            Format::Bdb => {
                self.base = None;
                let opts = bdb_options(&hint, &self.opts)?;
                let (target, own) = self.file()?;
                persist::replace_file(&target, &own, |f| bdb::write_records(records, &opts, f))?
                    .records
            }
            Format::Gdbm => self.write_gdbm_from(&hint, Some(records))?,
            Format::Lmdb if self.wants_sorted_input() => {
                let (target, own) = self.file()?;
                let sorted_records: Records<'_> = if sorted {
                    records
                } else {
                    let mut sorter = crate::storage::sort::ExternalSort::new(
                        &target.dir,
                        crate::storage::sort::DEFAULT_BUDGET,
                    );
                    for r in records {
                        sorter.push(r?)?;
                    }
                    sorter.finish()?
                };
                lmdb::build_new_with(&target.path, sorted_records, &own, &self.opts.lmdb)?
            }
            Format::Lmdb | Format::Sqlite | Format::Postgres => {
                let mut changes = Changes {
                    replace_all: true,
                    ..Changes::default()
                };
                for r in records {
                    let r = r?;
                    changes.ops.insert(r.key, Some(r.value));
                }
                self.changes = changes;
                self.write()?
            }
        };
        let mut report = CommitReport {
            written: true,
            records: Some(count),
            notes: std::mem::take(&mut self.notes),
            ..Default::default()
        };
        self.ownership_notes(&mut report);
        Ok(report)
    }

    fn ownership_notes(&self, report: &mut CommitReport) {
        if let Place::File { own, .. } = &self.place {
            report.notes.extend(own.note.clone());
            report.warnings.extend(own.warning.clone());
        }
    }
}

/// Layout of the GDBM file to write: the existing file's block size and numsync
/// setting, else the directory's preferred I/O size (libgdbm's default, what Cyrus gets),
/// else 4096; always this machine's layout (byte order, address width) and `char`
/// signedness, so the local libgdbm can open the file and find every key.
pub(crate) fn gdbm_options(hint: &LayoutHint, dir: &Path) -> gdbm::WriteOptions {
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
pub(crate) fn bdb_options(hint: &LayoutHint, opts: &WriteOptions) -> Result<bdb::WriteOptions> {
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

/// Refuses a file location whose forced format is not a file format.
fn check_file_format(location: &Location) -> Result<()> {
    match location.format() {
        Some(f) if !f.is_file() => Err(Error::Invalid(format!(
            "{}: a {f} database is named by a postgresql:// URL, not a path",
            location.path().display()
        ))),
        _ => Ok(()),
    }
}

fn check_forced(location: &Location, found: Format) -> Result<()> {
    match location.format() {
        Some(want) if want != found => Err(Error::Invalid(format!(
            "{}: is a {found} database, not {want}",
            location.path().display()
        ))),
        _ => Ok(()),
    }
}

fn open_backend(format: Format, path: &Path) -> Result<Box<dyn Backend>> {
    Ok(match format {
        Format::Bdb => Box::new(BdbFile::open(path)?),
        Format::Lmdb => Box::new(LmdbFile::open(path)?),
        Format::Gdbm => Box::new(GdbmFile::open(path)?),
        Format::Sqlite => Box::new(SqliteFile::open(path)?),
        Format::Postgres => {
            return Err(Error::Invalid(format!(
                "{}: a PostgreSQL database is named by a postgresql:// URL",
                path.display()
            )));
        }
    })
}

/// Resolves a database path the way writers do (symlinks followed), for tools that
/// report on the real file.
pub fn real_path(path: &Path) -> Result<PathBuf> {
    Ok(Target::resolve(path)?.path)
}

/// Whether a path exists at all (without following a final symlink's target).
pub fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).at(path),
    }
}
