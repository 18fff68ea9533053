//! The public database API: [`Database`] for reading, [`Transaction`] for writing.
//!
//! This module owns the life cycle of an access and the questions asked of a database
//! as a whole (a key, a user's properties, every user); the storage core
//! ([`crate::storage`]) does the opening, the reading and the writing, whatever the
//! format. Nothing here knows a format's bytes or dispatches on the format.
//!
//! Reading takes no lock: writers replace files atomically (or, for LMDB, SQLite and
//! PostgreSQL, commit transactions), so a reader sees either the old or the new
//! database. A [`Database`] is `Send + Sync`: one opened database serves any number
//! of threads.
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

mod transaction;
mod users;

#[cfg(test)]
mod fault_tests;

use crate::error::{Error, Result};
use crate::location::{Format, Location};
use crate::record::{Key, Record, Secret, user_prefix};
use crate::storage::sort::{SortedStream, SpillTo};
use crate::storage::{Records, Store};

pub use crate::storage::Compared;
pub use transaction::{CommitReport, Transaction};
pub(crate) use users::{Grouped, UserGroup};
pub use users::{User, Users};

/// A database opened for reading.
pub struct Database {
    location: Location,
    store: Store,
    spill: SpillOptions,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("location", &self.location)
            .field("format", &self.store.format())
            .finish()
    }
}

impl Database {
    /// Opens an existing database read-only. A missing path, an empty file, a
    /// directory, or a file of an unknown format is an error.
    pub fn open(location: &Location) -> Result<Database> {
        Ok(Database {
            location: location.clone(),
            store: Store::open(location)?,
            spill: SpillOptions::default(),
        })
    }

    /// Where listings, exports and counts that need an order the database does not
    /// keep (Berkeley DB and GDBM files are in hash order) sort through temporary
    /// files, and how much they hold in memory (by default: the database's directory,
    /// falling back to the system's temporary directory for a sort of names only when
    /// that one refuses us, and 16 MiB).
    pub fn with_spill(mut self, spill: SpillOptions) -> Database {
        self.spill = spill;
        self
    }

    /// Where a sort of this database's records spills.
    pub(crate) fn spill_to(&self) -> SpillTo {
        spill_to_for(&self.location, &self.spill)
    }

    /// Every record (or only every key, without `values`) in key order, in bounded
    /// memory: see [`Database::with_spill`].
    pub(crate) fn sorted_stream(&self, values: bool) -> Result<SortedStream<'_>> {
        self.store.scan_sorted(&self.spill_to(), values)
    }

    /// Where the database lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The database's format.
    pub fn format(&self) -> Format {
        self.store.format()
    }

    /// Looks one property up.
    pub fn get(&self, key: &Key) -> Result<Option<Secret>> {
        self.store.get(&key.encode())
    }

    /// Looks an encoded key up.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Secret>> {
        self.store.get(key)
    }

    /// Every record, in storage order (for Berkeley DB: the order libdb's cursor and
    /// Cyrus's `sasldblistusers2` use). Malformed keys are returned as they are.
    pub fn records(&self) -> Result<Records<'_>> {
        self.store.scan()
    }

    /// Calls `f` with every record, in storage order, lent for the call: a scan
    /// without an allocation per record (see [`Database::records`]).
    pub(crate) fn each_record(&self, f: &mut crate::storage::EachRecord<'_>) -> Result<()> {
        self.store.scan_each(f)
    }

    /// Whether [`Database::records`] yields keys in bytewise order (LMDB, PostgreSQL,
    /// and the SQLite table this crate creates do).
    pub fn records_are_sorted(&self) -> bool {
        self.store.sorted()
    }

    /// Every record, sorted bytewise by key, held in memory (bulk paths use a bounded
    /// stream instead).
    pub fn sorted_records(&self) -> Result<Vec<Record>> {
        let mut v: Vec<Record> = self.store.scan()?.collect::<Result<_>>()?;
        if !self.store.sorted() {
            v.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(v)
    }

    /// The property names stored for `user@realm`, sorted. This scans the database:
    /// to check a password use [`crate::account::verify_password`].
    pub fn properties(&self, user: &[u8], realm: &[u8]) -> Result<Vec<Vec<u8>>> {
        let prefix = user_prefix(user, realm);
        let mut props: Vec<Vec<u8>> = self
            .store
            .keys_with_prefix(&prefix)?
            .into_iter()
            .filter_map(|k| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains(&0)).then(|| rest.to_vec())
            })
            .collect();
        props.sort();
        Ok(props)
    }

    /// Every key, sorted bytewise, held compactly in memory (one arena, no values).
    /// [`Database::users`] streams in bounded memory instead.
    pub fn sorted_keys(&self) -> Result<KeyList> {
        let mut list = KeyList::default();
        self.store.scan_each(&mut |key, _| list.push(key))?;
        if !self.store.sorted() {
            list.sort();
        }
        Ok(list)
    }

    /// Every user with their property names, in bytewise order of `user`, then
    /// `realm`; keys that are not `user NUL realm NUL property` come separately (see
    /// [`Users`]). Memory stays bounded whatever the number of users: a Berkeley DB or
    /// GDBM file's keys are sorted through temporary files ([`Database::with_spill`]).
    pub fn users(&self) -> Result<Users<'_>> {
        Ok(Users::new(Grouped::new(self.sorted_stream(false)?)))
    }

    /// The storage this database reads from.
    #[cfg(feature = "postfix")]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }
}

/// Keys in one arena, with their spans.
#[derive(Debug, Default, Clone)]
pub struct KeyList {
    arena: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl KeyList {
    pub(crate) fn push(&mut self, key: &[u8]) -> Result<()> {
        let start = u32::try_from(self.arena.len())
            .map_err(|_| Error::Invalid("more than 4 GiB of keys".into()))?;
        self.arena.extend_from_slice(key);
        self.spans.push((start, key.len() as u32));
        Ok(())
    }

    pub(crate) fn sort(&mut self) {
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

    /// The `i`-th key in order.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.spans
            .get(i)
            .map(|&(s, l)| &self.arena[s as usize..(s + l) as usize])
    }

    /// The keys in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans
            .iter()
            .map(|&(s, l)| &self.arena[s as usize..(s + l) as usize])
    }
}

pub use crate::storage::options::{LmdbOptions, OwnershipPolicy, SpillOptions, WriteOptions};

/// Where bulk work on the database at `location` spills: the option's directory, else
/// the directory of the database's real file (symlinks followed; the file need not
/// exist), else, for PostgreSQL, the system's temporary directory.
pub(crate) fn spill_to_for(location: &Location, spill: &SpillOptions) -> SpillTo {
    if location.postgres().is_some() {
        return spill.to_for(&std::env::temp_dir(), None);
    }
    match crate::storage::persist::Target::resolve(location.path()) {
        Ok(t) => spill.to_for(&t.dir, Some(&t.name)),
        Err(_) => {
            let p = location.path();
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            spill.to_for(&dir, p.file_name())
        }
    }
}

/// Resolves a database path the way writers do (symlinks followed), for tools that
/// report on the real file.
pub fn real_path(path: &std::path::Path) -> Result<std::path::PathBuf> {
    Ok(crate::storage::persist::Target::resolve(path)?.path)
}

/// Whether a path exists at all (without following a final symlink's target).
pub fn exists(path: &std::path::Path) -> Result<bool> {
    crate::storage::exists(path)
}

// Checked at compile time, whatever the features: an opened database is shared
// between threads, a transaction can move to another thread.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    const fn sent<T: Send>() {}
    shared::<Database>();
    sent::<Transaction>();
};
