//! The storage core: every on-disk (and in-database) format, the write path, and the
//! one dispatch over them.
//!
//! - one module per format: [`bdb`] (Berkeley DB hash, pure Rust), [`gdbm`] (GNU dbm,
//!   pure Rust), [`lmdb`] (LMDB 0.9 through its C library), [`sql`] (the `sasldb`
//!   table in SQLite or PostgreSQL);
//! - [`persist`]: the write path every file format shares (resolving the real file,
//!   the writer lock, the ownership policy, atomic replacement);
//! - [`sort`]: a bounded-memory external sort and its temporary files; [`Stage`]: a
//!   bulk change set in bounded memory; [`endian`]: byte order as a value;
//! - [`Store`]: one open database, whatever its format, through which every read
//!   goes, and [`Writer`]: a database held for writing, through which every commit
//!   and rebuild goes. These two are the only places that dispatch on the format;
//! - [`Changes`] and [`merge`]: a write set and its merge over an existing scan.
//!
//! Nothing outside this module knows a format's bytes or which format does what.

#[cfg(feature = "postfix")]
mod copy;
mod stage;
mod store;
mod tagged;
mod writer;

pub mod bdb;
pub mod endian;
pub mod gdbm;
#[cfg(feature = "lmdb")]
pub mod lmdb;
pub mod options;
pub mod persist;
pub mod sort;
pub mod sql;

#[cfg(feature = "postfix")]
pub(crate) use copy::{
    has_journal, prepare_companion_lock, prepare_companions, readers_keep_open, rebuild_file,
    update_in_place,
};
#[cfg(feature = "postfix")]
pub(crate) use options::DEFAULT_LOCK_TIMEOUT;
#[cfg(feature = "postfix")]
pub(crate) use persist::{companion_lock, companion_lock_mode};
pub use stage::Compared;
pub(crate) use stage::{Compare, Stage};
pub(crate) use store::{Store, exists};
pub(crate) use writer::Writer;

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Result;
use crate::location::Format;
use crate::record::{Record, Secret};

/// A stream of records in a backend's storage order.
pub type Records<'a> = Box<dyn Iterator<Item = Result<Record>> + 'a>;

/// What a lending scan calls with each record, `(key, value)`, lent for the call (see
/// [`Backend::scan_each`]); an error it returns ends the scan.
pub type EachRecord<'f> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'f;

/// Whether writers change a database file of `format` in place, each change one
/// transaction of the format's own (LMDB, SQLite), rather than replace the file: a
/// reader's handle then stays current until the file is replaced.
#[cfg(feature = "serve")]
pub(crate) fn changed_in_place(format: Format) -> bool {
    matches!(format, Format::Lmdb | Format::Sqlite)
}

/// Whether a scan of a database of `format` yields its records in key order (LMDB,
/// SQLite, PostgreSQL keep their keys sorted; Berkeley DB and GDBM hash them).
pub(crate) fn scans_in_key_order(format: Format) -> bool {
    matches!(format, Format::Lmdb | Format::Sqlite | Format::Postgres)
}

/// Hints a backend gives about its on-disk layout, kept when the file is rewritten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayoutHint {
    /// Page or block size.
    pub page_size: Option<u32>,
    /// Whether the file is big-endian.
    pub big_endian: Option<bool>,
    /// Whether pages carry checksums.
    pub checksums: bool,
    /// Whether a GDBM file uses the numsync (extended header) format.
    pub numsync: bool,
}

/// What every format implements for reading: keyed lookups and full scans.
pub trait Backend: Send + Sync {
    /// The format of this database.
    fn format(&self) -> Format;

    /// Looks one encoded key up.
    fn get(&self, key: &[u8]) -> Result<Option<Secret>>;

    /// Every record, in storage order (see [`Backend::sorted`]).
    fn scan(&self) -> Result<Records<'_>>;

    /// Calls `f` with every record, in the order of [`Backend::scan`], lending the
    /// key and value for the call: formats that can read a record in place override
    /// it to spare an allocation per record. An error of `f` ends the scan and is
    /// returned unchanged.
    fn scan_each(&self, f: &mut EachRecord<'_>) -> Result<()> {
        for rec in self.scan()? {
            let rec = rec?;
            f(&rec.key, &rec.value)?;
        }
        Ok(())
    }

    /// Whether [`Backend::scan`] yields keys in bytewise order.
    fn sorted(&self) -> bool {
        false
    }

    /// Layout details to keep when the database is rewritten.
    fn layout_hint(&self) -> LayoutHint {
        LayoutHint::default()
    }

    /// The keys that start with `prefix` (by default, from a full scan).
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for rec in self.scan()? {
            let rec = rec?;
            if rec.key.starts_with(prefix) {
                out.push(rec.key);
            }
        }
        Ok(out)
    }
}

/// A set of changes to apply in one transaction.
#[derive(Default)]
pub struct Changes {
    /// Start from an empty database instead of the existing records.
    pub replace_all: bool,
    /// Per key: `Some(value)` to store, `None` to delete.
    pub ops: BTreeMap<Vec<u8>, Option<Secret>>,
}

impl Changes {
    /// Whether applying these changes would leave the database untouched.
    pub fn is_empty(&self) -> bool {
        !self.replace_all && self.ops.is_empty()
    }
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("replace_all", &self.replace_all)
            .field("puts", &self.ops.values().filter(|v| v.is_some()).count())
            .field(
                "deletes",
                &self.ops.values().filter(|v| v.is_none()).count(),
            )
            .finish()
    }
}

/// One change: a key and its new value (`None`: delete).
#[cfg_attr(not(any(feature = "lmdb", feature = "sqlite")), allow(dead_code))]
pub(crate) type Op<'a> = (&'a [u8], Option<&'a [u8]>);

/// Changes in key order, read one at a time, and again from the start when a
/// transaction is retried: what the formats changed in place (LMDB, SQLite) apply.
#[cfg_attr(not(any(feature = "lmdb", feature = "sqlite")), allow(dead_code))]
pub(crate) trait OpSource {
    /// Starts again from the first change.
    fn rewind(&mut self) -> Result<()>;
    /// The next change.
    fn next_op(&mut self) -> Result<Option<Op<'_>>>;
    /// Whether the database is emptied first (deletes are then not given).
    fn replace_all(&self) -> bool;
    /// Bytes of keys and values, for sizing.
    fn bytes(&self) -> u64;
}

/// A [`Changes`] map as an [`OpSource`].
#[cfg(any(feature = "lmdb", feature = "sqlite"))]
pub(crate) struct MapOps<'a> {
    changes: &'a Changes,
    iter: std::collections::btree_map::Iter<'a, Vec<u8>, Option<Secret>>,
}

#[cfg(any(feature = "lmdb", feature = "sqlite"))]
impl<'a> MapOps<'a> {
    pub(crate) fn new(changes: &'a Changes) -> MapOps<'a> {
        MapOps {
            changes,
            iter: changes.ops.iter(),
        }
    }
}

#[cfg(any(feature = "lmdb", feature = "sqlite"))]
impl OpSource for MapOps<'_> {
    fn rewind(&mut self) -> Result<()> {
        self.iter = self.changes.ops.iter();
        Ok(())
    }

    fn next_op(&mut self) -> Result<Option<Op<'_>>> {
        Ok(self
            .iter
            .next()
            .map(|(k, v)| (&k[..], v.as_ref().map(|v| &v[..]))))
    }

    fn replace_all(&self) -> bool {
        self.changes.replace_all
    }

    fn bytes(&self) -> u64 {
        self.changes
            .ops
            .iter()
            .map(|(k, v)| (k.len() + v.as_ref().map_or(0, |v| v.len())) as u64)
            .sum()
    }
}

/// A stream of records as an [`OpSource`] of puts that replace everything, readable
/// once (for a transaction that is never retried).
#[cfg(feature = "sqlite")]
pub(crate) struct RecordOps<'a> {
    records: Records<'a>,
    current: Option<Record>,
    started: bool,
}

#[cfg(feature = "sqlite")]
impl<'a> RecordOps<'a> {
    pub(crate) fn new(records: Records<'a>) -> RecordOps<'a> {
        RecordOps {
            records,
            current: None,
            started: false,
        }
    }
}

#[cfg(feature = "sqlite")]
impl OpSource for RecordOps<'_> {
    fn rewind(&mut self) -> Result<()> {
        if self.started {
            return Err(crate::error::Error::Invalid(
                "internal: a record stream cannot be read twice".into(),
            ));
        }
        Ok(())
    }

    fn next_op(&mut self) -> Result<Option<Op<'_>>> {
        self.started = true;
        self.current = self.records.next().transpose()?;
        Ok(self
            .current
            .as_ref()
            .map(|r| (&r.key[..], Some(&r.value[..]))))
    }

    fn replace_all(&self) -> bool {
        true
    }

    fn bytes(&self) -> u64 {
        0
    }
}

/// The records of `base` with `changes` applied: existing records not touched by the
/// changes (unless `replace_all`), then every put. Deletes of absent keys are no-ops.
///
/// The output never holds a key twice, provided `base` does not.
pub fn merge<'a>(base: Option<Records<'a>>, changes: &'a Changes) -> Records<'a> {
    let kept = base
        .filter(|_| !changes.replace_all)
        .into_iter()
        .flatten()
        .filter(move |r| match r {
            Ok(rec) => !changes.ops.contains_key(&rec.key),
            Err(_) => true,
        });
    let puts = changes.ops.iter().filter_map(|(k, v)| {
        v.as_ref().map(|v| {
            Ok(Record {
                key: k.clone(),
                value: v.clone(),
            })
        })
    });
    Box::new(kept.chain(puts))
}

/// [`merge`], consuming the changes: puts are moved into the output, not copied.
pub fn merge_owned<'a>(base: Option<Records<'a>>, changes: Changes) -> Records<'a> {
    let Changes { replace_all, ops } = changes;
    let ops = std::rc::Rc::new(ops);
    let filter_ops = std::rc::Rc::clone(&ops);
    let kept = base
        .filter(|_| !replace_all)
        .into_iter()
        .flatten()
        .filter(move |r| match r {
            Ok(rec) => !filter_ops.contains_key(&rec.key),
            Err(_) => true,
        });
    // The puts follow once the base is exhausted, when the filter no longer needs
    // the map: take it then.
    let puts = std::iter::once_with(move || {
        let map = std::rc::Rc::try_unwrap(ops).unwrap_or_else(|rc| (*rc).clone());
        map.into_iter()
            .filter_map(|(key, v)| v.map(|value| Ok(Record { key, value })))
    })
    .flatten();
    Box::new(kept.chain(puts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_applies_puts_and_deletes() {
        let base: Vec<Result<Record>> = vec![
            Ok(Record::new(b"a".to_vec(), b"1".to_vec())),
            Ok(Record::new(b"b".to_vec(), b"2".to_vec())),
            Ok(Record::new(b"c".to_vec(), b"3".to_vec())),
        ];
        let mut ch = Changes::default();
        ch.ops.insert(b"b".to_vec(), None);
        ch.ops
            .insert(b"c".to_vec(), Some(Secret::new(b"33".to_vec())));
        ch.ops
            .insert(b"d".to_vec(), Some(Secret::new(b"4".to_vec())));
        ch.ops.insert(b"zz".to_vec(), None);
        let out: Vec<(Vec<u8>, Vec<u8>)> = merge(Some(Box::new(base.into_iter())), &ch)
            .map(|r| r.map(|r| (r.key, r.value.to_vec())))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            out,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"33".to_vec()),
                (b"d".to_vec(), b"4".to_vec())
            ]
        );
        ch.replace_all = true;
        let n = merge(Some(Box::new(std::iter::empty())), &ch).count();
        assert_eq!(n, 2);
    }
}
