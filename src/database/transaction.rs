//! [`Transaction`]: the write side of the API. It holds the writer lock (through the
//! storage core's [`Writer`]), sees the database as of `begin` plus its own changes,
//! and applies every change at once on commit.

use std::cell::{Cell, OnceCell};
use std::collections::BTreeSet;
use std::path::Path;

use crate::error::Error;
use crate::error::Result;
use crate::location::{Format, Location};
use crate::record::{Key, Secret, user_prefix};
use crate::storage::options::WriteOptions;
use crate::storage::sort::{SortedStream, SpillTo};
use crate::storage::{Changes, Compared, EachRecord, Records, Stage, Writer};

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
    /// What the store found of puts it compared itself: a PostgreSQL import of plain
    /// passwords leaves telling new, changed and unchanged users apart to the server
    /// (see [`crate::bulk::import::Summary::settle`]).
    pub compared: Option<Compared>,
}

/// Per-user questions a transaction answers by looking for the user's keys before it
/// indexes every key instead.
const PREFIX_SCANS: u32 = 2;

/// A write transaction: holds the database's writer lock from [`Transaction::begin`]
/// to [`Transaction::commit`] (or drop), sees the database as of `begin` plus its own
/// changes, and applies all changes at once.
pub struct Transaction {
    location: Location,
    writer: Writer,
    changes: Changes,
    /// A bulk change set, applied by the commit instead of `changes`.
    stage: Option<Stage>,
    key_index: OnceCell<BTreeSet<Vec<u8>>>,
    prefix_scans: Cell<u32>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("location", &self.location)
            .field("format", &self.writer.format())
            .field("changes", &self.changes)
            .finish()
    }
}

impl Transaction {
    /// Resolves the database path, decides ownership (a missing group is an error
    /// here, before anything is written), takes the writer lock, removes temporary
    /// files a crashed writer left, and opens the current database if there is one.
    pub fn begin(location: &Location, opts: &WriteOptions) -> Result<Transaction> {
        Ok(Transaction {
            location: location.clone(),
            writer: Writer::begin(location, opts)?,
            changes: Changes::default(),
            stage: None,
            key_index: OnceCell::new(),
            prefix_scans: Cell::new(0),
        })
    }

    /// Where bulk work on this database spills (see [`WriteOptions::spill`]).
    pub(crate) fn spill_to(&self) -> SpillTo {
        self.writer.spill_to()
    }

    /// The database as it was when the transaction began (without this transaction's
    /// changes), in key order, in bounded memory: a Berkeley DB or GDBM file is sorted
    /// through temporary files. Without `values`, values are left out.
    pub(crate) fn base_sorted(&self, values: bool) -> Result<SortedStream<'_>> {
        match self.writer.base() {
            Some(b) if !self.changes.replace_all => b.scan_sorted(&self.spill_to(), values),
            _ => Ok(SortedStream::Sorted(crate::storage::sort::Sorted::empty())),
        }
    }

    /// Whether the database as it was when the transaction began is read in key order
    /// without a sort (LMDB, our SQLite table, PostgreSQL); None when there is none.
    pub(crate) fn base_in_key_order(&self) -> Option<bool> {
        match self.writer.base() {
            Some(b) if !self.changes.replace_all => Some(b.sorted()),
            _ => None,
        }
    }

    /// Whether a stage of plain-password puts may leave comparing them with the stored
    /// values to the database ([`Stage::compare`]): a PostgreSQL table of ours holding
    /// nothing but `userPassword` records, and no change made in this transaction yet.
    pub(crate) fn compares_passwords(&self) -> Result<bool> {
        if !self.changes.is_empty() || self.stage.is_some() {
            return Ok(false);
        }
        self.writer.compares_passwords()
    }

    /// How many of `puts` (keys and values) would change the database as it was when
    /// the transaction began: a sample's question, to choose how to write (see
    /// [`Transaction::compares_passwords`]).
    pub(crate) fn puts_that_write(&self, puts: &[(&[u8], &[u8])]) -> Result<usize> {
        self.writer.puts_that_write(puts)
    }

    /// An empty bulk change set for this database; [`Transaction::set_stage`] hands it
    /// back for the commit. `replace_all`: the commit empties the database first.
    /// `complete`: the caller reads every record of the database and will hand over
    /// those that stay ([`Stage::keep`]); worth it for large change sets, whose commit
    /// then rebuilds a file without reading the old one again.
    pub(crate) fn new_stage(&self, replace_all: bool, complete: bool) -> Result<Stage> {
        self.writer.stage(replace_all, complete)
    }

    /// Makes `stage` what the commit applies. A transaction holds either ordinary
    /// changes or a stage.
    pub(crate) fn set_stage(&mut self, stage: Stage) -> Result<()> {
        if !self.changes.is_empty() || self.stage.is_some() {
            return Err(Error::Invalid(
                "internal: a bulk change in a transaction that already holds changes".into(),
            ));
        }
        self.stage = Some(stage);
        Ok(())
    }

    /// The format the database has (or will be created in).
    pub fn format(&self) -> Format {
        self.writer.format()
    }

    /// Whether the database existed (non-empty) when the transaction began.
    pub fn existed(&self) -> bool {
        self.writer.base().is_some()
    }

    /// The real file being written (symlinks resolved); for PostgreSQL, the URL.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// The directory of the database's real file (for PostgreSQL, the directory for
    /// temporary files).
    pub fn dir(&self) -> &Path {
        self.writer.dir()
    }

    /// Whether [`Transaction::replace_with`] loads fastest from records in key order
    /// (a new LMDB file is bulk-loaded in append mode).
    pub fn wants_sorted_input(&self) -> bool {
        self.writer.wants_sorted_input()
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
        match self.writer.base() {
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
        match self.writer.base() {
            Some(b) if !self.changes.replace_all => b.scan(),
            _ => Ok(Box::new(std::iter::empty())),
        }
    }

    /// Calls `f` with every record of the database as it was when the transaction
    /// began, lent for the call (the records of [`Transaction::base_records`], without
    /// an allocation per record).
    pub fn base_each(&self, f: &mut EachRecord<'_>) -> Result<()> {
        match self.writer.base() {
            Some(b) if !self.changes.replace_all => b.scan_each(f),
            _ => Ok(()),
        }
    }

    /// The keys of the database as it was when the transaction began, indexed on
    /// first use (one scan), so per-user questions cost a range lookup.
    fn base_keys(&self) -> Result<&BTreeSet<Vec<u8>>> {
        if let Some(k) = self.key_index.get() {
            return Ok(k);
        }
        let mut keys = BTreeSet::new();
        if let Some(b) = self.writer.base() {
            b.scan_each(&mut |key, _| {
                keys.insert(key.to_vec());
                Ok(())
            })?;
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
            // The first few questions look for the user's keys (nothing kept); a
            // transaction that keeps asking (an import) indexes every key once.
            let direct = self.key_index.get().is_none() && self.prefix_scans.get() < PREFIX_SCANS;
            match self.writer.base() {
                Some(base) if direct => {
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

    /// Whether the transaction holds no changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.stage.as_ref().is_none_or(Stage::is_empty)
    }

    /// Applies every change atomically and releases the lock. A transaction without
    /// changes on an existing database writes nothing; on a missing database it
    /// creates an empty one.
    pub fn commit(mut self) -> Result<CommitReport> {
        if self.is_empty() && self.existed() {
            return Ok(CommitReport {
                notes: self.writer.take_notes(),
                ..Default::default()
            });
        }
        let records = match self.stage.take() {
            Some(stage) => self.writer.commit_stage(stage)?,
            None => {
                let changes = std::mem::take(&mut self.changes);
                Some(self.writer.commit(changes)?)
            }
        };
        Ok(self.report(records))
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
        self.stage = None;
        let count = self.writer.replace(records, sorted)?;
        Ok(self.report(Some(count)))
    }

    fn report(&mut self, records: Option<u64>) -> CommitReport {
        let (note, warning) = self.writer.ownership_notes();
        let mut notes = self.writer.take_notes();
        notes.extend(note);
        CommitReport {
            written: true,
            records,
            notes,
            warnings: warning.into_iter().collect(),
            compared: self.writer.take_compared(),
        }
    }
}
