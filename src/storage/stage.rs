//! [`Stage`]: a bulk change set, held in bounded memory until its transaction commits.
//!
//! A transaction's ordinary changes live in a map in memory ([`Changes`]), which suits
//! the few changes of a password change but not the millions of an import. Bulk paths
//! (import, whole realms, convert) stage their changes here instead, in the form the
//! commit consumes, so nothing is copied twice:
//! - Berkeley DB and GDBM (files rebuilt on commit): straight into the sort that orders
//!   the new file's records by bucket or hash ([`bdb::BucketSort`], [`gdbm::HashSort`]);
//!   the commit adds the old file's records to the same sort, where a change wins over
//!   the old record of its key;
//! - LMDB and SQLite (changed in place, in one transaction): into an external sort by
//!   key, replayed in key order by the commit (and replayed again if LMDB's map must
//!   grow);
//! - PostgreSQL: into a list packed into a few wiped buffers ([`ChangeList`]), in key
//!   order, which its write path reads as it is.
//!
//! A stage that ends small and in memory is applied like ordinary changes (for a
//! Berkeley DB file: only the touched buckets are rewritten).
//!
//! A PostgreSQL stage may also leave the comparison with the stored values to the
//! server ([`Compare`]): an import of plain passwords then stages every password
//! without reading the table, and the commit reports what the server found
//! ([`Compared`]).

use crate::error::{Error, Result};
use crate::record::{Secret, WipeBuf};
use crate::storage::sort::{ExternalSort, Sorted, SpillTo};
use crate::storage::{Changes, OpSource, bdb, gdbm};

/// Stages of at most this many changes that stayed in memory are applied as ordinary
/// changes.
const SMALL: u64 = 4096;

/// How a store treats puts it compares with what it holds itself: a put whose key
/// holds the same value is no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compare {
    /// A put stores its value, whether the key exists or not.
    Upsert,
    /// A put whose key exists leaves it as it is.
    CreateOnly,
}

/// What a store found of the puts it compared with what it held (a PostgreSQL import of
/// plain passwords), reported by the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    /// Puts of new keys (`added`), puts that changed a value (`updated`) and puts that
    /// left an existing key as it was (`same`).
    Counted {
        /// Puts of keys the database did not hold.
        added: u64,
        /// Puts that changed an existing key's value.
        updated: u64,
        /// Puts of existing keys left as they were (the same value, or create-only).
        same: u64,
    },
    /// The connection dropped as the commit went, and the commit was then found to
    /// have happened: how the puts split went with the connection.
    Uncounted,
}

/// A bulk change set. Each key is staged at most once (a put, a delete or a keep).
pub(crate) struct Stage {
    pub(super) kind: Kind,
    pub(super) replace_all: bool,
    /// The producer hands over every record the database keeps ([`Stage::keep`]), so
    /// a file rebuilt on commit needs nothing from the old one.
    pub(super) complete: bool,
}

pub(super) enum Kind {
    Bdb(bdb::BucketSort),
    Gdbm(gdbm::HashSort),
    /// Key → `[1] value` for a put, `[0]` for a delete.
    Ops(ExternalSort),
    Map(MapStage),
}

/// Changes for PostgreSQL, gathered in a list whose keys and values are packed into a
/// few large wiped buffers: staging a change allocates nothing (two allocations per
/// change in a map of `Vec`s), and dropping 200,000 of them is a few buffer fills
/// rather than 400,000 frees. A bulk producer stages its keys in key order; a key
/// staged again replaces the earlier change, as in the change map ([`Changes`]).
pub(super) struct MapStage {
    replace_all: bool,
    list: ChangeList,
    /// Whether the keys came in strictly increasing order so far.
    sorted: bool,
}

impl MapStage {
    pub(super) fn new(replace_all: bool) -> MapStage {
        MapStage {
            replace_all,
            list: ChangeList {
                replace_all,
                compare: None,
                bufs: Vec::new(),
                ops: Vec::new(),
            },
            sorted: true,
        }
    }

    fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        if let Some(last) = self.list.ops.last()
            && self.list.key(last) >= key
        {
            self.sorted = false;
        }
        let need = key.len() + value.map_or(0, <[u8]>::len);
        let room = self.list.bufs.last().map_or(0, |b| b.capacity() - b.len());
        if need > room || self.list.bufs.is_empty() {
            self.list
                .bufs
                .push(WipeBuf::with_capacity(need.max(ChangeList::PIECE)));
        }
        let buf_index = self.list.bufs.len() - 1;
        let buf = &mut self.list.bufs[buf_index];
        let at = buf.len();
        buf.extend_from_slice(key);
        if let Some(v) = value {
            buf.extend_from_slice(v);
        }
        self.list.ops.push(ListOp {
            buf: buf_index,
            at,
            key: key.len(),
            value: value.map(<[u8]>::len),
        });
    }

    /// Changes staged (a key staged twice counts twice until the list is made).
    fn len(&self) -> usize {
        self.list.ops.len()
    }

    /// Room for `n` more changes, at most [`MapStage::RESERVE_MAX`] at once.
    fn reserve(&mut self, n: usize) {
        self.list.ops.reserve(n.min(Self::RESERVE_MAX));
    }

    /// The most changes [`MapStage::reserve`] makes room for in advance (40 MiB of list).
    const RESERVE_MAX: usize = 1 << 20;

    /// The changes in key order, each key once (the last change staged for it).
    pub(super) fn into_list(self) -> ChangeList {
        let mut list = self.list;
        list.replace_all = self.replace_all;
        if !self.sorted {
            let mut ops = std::mem::take(&mut list.ops);
            // Stable: of equal keys, the one staged last stays last.
            ops.sort_by(|a, b| list.key(a).cmp(list.key(b)));
            let mut kept: Vec<ListOp> = Vec::with_capacity(ops.len());
            for op in ops {
                match kept.last_mut() {
                    Some(last) if list.key(last) == list.key(&op) => *last = op,
                    _ => kept.push(op),
                }
            }
            list.ops = kept;
        }
        list
    }

    #[cfg(test)]
    pub(super) fn into_changes(self) -> Changes {
        self.into_list().into_changes()
    }
}

/// Where one change of a [`ChangeList`] is: its key at `at` in buffer `buf`, then its
/// value (None: a delete).
#[derive(Debug, Clone, Copy)]
struct ListOp {
    buf: usize,
    at: usize,
    key: usize,
    value: Option<usize>,
}

/// A change set in key order, each key once, as a list packed into wiped buffers (what
/// a PostgreSQL stage hands its commit; see [`MapStage`]).
pub(crate) struct ChangeList {
    /// Start from an empty database instead of the existing records.
    pub(crate) replace_all: bool,
    /// Puts the store compares with what it holds (then the list holds puts only).
    pub(crate) compare: Option<Compare>,
    bufs: Vec<WipeBuf>,
    ops: Vec<ListOp>,
}

impl ChangeList {
    /// Bytes of keys and values per buffer (one change longer than this gets a buffer
    /// of its own).
    const PIECE: usize = 1 << 20;

    fn key(&self, op: &ListOp) -> &[u8] {
        &self.bufs[op.buf][op.at..op.at + op.key]
    }

    fn entry(&self, op: &ListOp) -> (&[u8], Option<&[u8]>) {
        let b = &self.bufs[op.buf];
        let key = &b[op.at..op.at + op.key];
        let value = op.value.map(|n| &b[op.at + op.key..op.at + op.key + n]);
        (key, value)
    }

    /// The changes in key order: a key and `Some(value)` to store, `None` to delete.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + Clone {
        self.ops.iter().map(|op| self.entry(op))
    }

    /// How many changes.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ops.len()
    }

    /// The same changes as a change map.
    pub(crate) fn into_changes(self) -> Changes {
        let ops = self
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(|v| Secret::new(v.to_vec()))))
            .collect();
        Changes {
            replace_all: self.replace_all,
            ops,
        }
    }
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("changes", &self.len())
            .field("replace_all", &self.replace_all)
            .finish()
    }
}

impl Stage {
    /// Stores `value` under `key`.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        match &mut self.kind {
            Kind::Bdb(s) => s.put(key, value),
            Kind::Gdbm(s) => s.put(key, value),
            Kind::Ops(s) => s.push_parts(&[key], &[&[1u8], value]),
            Kind::Map(c) => {
                c.push(key, Some(value));
                Ok(())
            }
        }
    }

    /// A record of the database that stays as it is. Only a complete stage of a file
    /// rebuilt on commit takes it (as a put); elsewhere this is a no-op.
    pub(crate) fn keep(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        match &mut self.kind {
            Kind::Bdb(s) if self.complete => s.put(key, value),
            Kind::Gdbm(s) if self.complete => s.put(key, value),
            _ => Ok(()),
        }
    }

    /// Room for about `n` more changes, where the stage is a list in memory: a producer
    /// that knows how many it will stage says so, because growing the list moves it
    /// (the binaries' allocator wipes the old block on every realloc: doubling a list
    /// up to 200,000 changes copied, wiped and faulted in about 19 MB for 10 MB of
    /// changes). Elsewhere a no-op.
    pub(crate) fn reserve(&mut self, n: u64) {
        if let Kind::Map(c) = &mut self.kind {
            c.reserve(usize::try_from(n).unwrap_or(usize::MAX));
        }
    }

    /// Leaves the comparison of the puts with the stored values to the store (which
    /// said it can: [`crate::storage::Writer::compares_passwords`]). Only puts may be
    /// staged then; the commit's report says what the store found.
    pub(crate) fn compare(&mut self, how: Compare) -> Result<()> {
        match &mut self.kind {
            Kind::Map(m) if !self.replace_all => {
                m.list.compare = Some(how);
                Ok(())
            }
            _ => Err(Error::Invalid(
                "internal: only a PostgreSQL stage compares puts itself".into(),
            )),
        }
    }

    /// Whether the producer must hand over the records that stay ([`Stage::keep`]).
    pub(crate) fn wants_kept(&self) -> bool {
        self.complete && matches!(self.kind, Kind::Bdb(_) | Kind::Gdbm(_))
    }

    /// Deletes `key` (absent keys are fine).
    pub(crate) fn delete(&mut self, key: &[u8]) -> Result<()> {
        if self.replace_all || self.wants_kept() {
            // Absent from the new content anyway.
            return Ok(());
        }
        match &mut self.kind {
            Kind::Bdb(s) => s.delete(key),
            Kind::Gdbm(s) => s.delete(key),
            Kind::Ops(s) => s.push(key, &[0u8]),
            Kind::Map(c) => {
                c.push(key, None);
                Ok(())
            }
        }
    }

    /// Changes staged.
    pub(crate) fn len(&self) -> u64 {
        match &self.kind {
            Kind::Bdb(s) => s.len(),
            Kind::Gdbm(s) => s.len(),
            Kind::Ops(s) => s.len(),
            Kind::Map(c) => c.len() as u64,
        }
    }

    /// Whether nothing is staged (and the database is not emptied).
    pub(crate) fn is_empty(&self) -> bool {
        !self.replace_all && self.len() == 0
    }

    /// Whether the stage is small enough, and still in memory, to be applied as
    /// ordinary changes. Never a PostgreSQL stage: its list is committed as it is.
    pub(super) fn is_small(&self) -> bool {
        let spilled = match &self.kind {
            Kind::Bdb(s) => s.spilled(),
            Kind::Gdbm(s) => s.spilled(),
            Kind::Ops(s) => s.spilled(),
            Kind::Map(_) => return false,
        };
        !spilled && self.len() <= SMALL
    }

    /// The staged changes as ordinary changes.
    pub(super) fn into_changes(self) -> Result<Changes> {
        let mut changes = Changes {
            // A complete stage holds the whole new content.
            replace_all: self.replace_all || self.wants_kept(),
            ..Changes::default()
        };
        let ops = match self.kind {
            Kind::Bdb(s) => s.into_ops()?,
            Kind::Gdbm(s) => s.into_ops()?,
            Kind::Ops(s) => {
                let mut out = Vec::new();
                let mut sorted = s.finish()?;
                while let Some((k, v)) = sorted.next()? {
                    let value = (v.first() == Some(&1)).then(|| Secret::new(v[1..].to_vec()));
                    out.push((k.to_vec(), value));
                }
                out
            }
            Kind::Map(c) => return Ok(c.into_list().into_changes()),
        };
        for (k, v) in ops {
            if changes.ops.insert(k, v).is_some() {
                return Err(Error::Invalid("internal: a key was staged twice".into()));
            }
        }
        Ok(changes)
    }
}

/// The changes of an [`Kind::Ops`] stage in key order.
#[cfg_attr(not(any(feature = "lmdb", feature = "sqlite")), allow(dead_code))]
pub(super) struct SortedOps {
    sorted: Sorted,
    replace_all: bool,
    bytes: u64,
    last: Vec<u8>,
    started: bool,
}

impl SortedOps {
    pub(super) fn new(sort: ExternalSort, replace_all: bool) -> Result<SortedOps> {
        let bytes = sort.bytes();
        Ok(SortedOps {
            sorted: sort.finish()?,
            replace_all,
            bytes,
            last: Vec::new(),
            started: false,
        })
    }

    /// No changes.
    #[cfg(feature = "lmdb")]
    pub(super) fn empty() -> SortedOps {
        SortedOps {
            sorted: Sorted::empty(),
            replace_all: false,
            bytes: 0,
            last: Vec::new(),
            started: false,
        }
    }

    /// Only puts, in strictly increasing key order (what a bulk load takes).
    #[cfg(feature = "lmdb")]
    pub(super) fn into_puts(mut self) -> crate::storage::Records<'static> {
        let mut failed = false;
        Box::new(std::iter::from_fn(move || {
            if failed {
                return None;
            }
            loop {
                match self.next_op() {
                    Ok(Some((k, Some(v)))) => {
                        return Some(Ok(crate::record::Record::new(k.to_vec(), v.to_vec())));
                    }
                    Ok(Some((_, None))) => continue,
                    Ok(None) => return None,
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }))
    }
}

impl OpSource for SortedOps {
    fn rewind(&mut self) -> Result<()> {
        self.started = false;
        self.sorted.rewind()
    }

    fn next_op(&mut self) -> Result<Option<(&[u8], Option<&[u8]>)>> {
        {
            let Some((k, _)) = self.sorted.next()? else {
                return Ok(None);
            };
            if self.started && k == &self.last[..] {
                return Err(Error::Invalid(format!(
                    "internal: the key `{}` was staged twice",
                    String::from_utf8_lossy(k)
                )));
            }
            self.last.clear();
            self.last.extend_from_slice(k);
            self.started = true;
        }
        let (k, v) = self.sorted.current().expect("a record was just read");
        Ok(Some((k, (v.first() == Some(&1)).then(|| &v[1..]))))
    }

    fn replace_all(&self) -> bool {
        self.replace_all
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A new stage of the given kind.
pub(super) fn new(kind: Kind, replace_all: bool, complete: bool) -> Stage {
    Stage {
        kind,
        replace_all,
        complete,
    }
}

/// An empty sort of changes by key.
pub(super) fn ops_sort(to: &SpillTo) -> ExternalSort {
    ExternalSort::new(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(c: &Changes) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        c.ops
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.to_vec())))
            .collect()
    }

    #[test]
    fn map_stage_in_order_and_out_of_order_match_the_map() {
        // In key order: the map is built from the list.
        let mut m = MapStage::new(false);
        m.push(b"a", Some(b"1"));
        m.push(b"b", None);
        m.push(b"c", Some(b"3"));
        assert!(m.sorted);
        let c = m.into_changes();
        assert!(!c.replace_all);
        assert_eq!(
            ops(&c),
            vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"b".to_vec(), None),
                (b"c".to_vec(), Some(b"3".to_vec())),
            ]
        );
        // Out of order, and a key staged again: the later change wins, as in the map.
        let mut m = MapStage::new(true);
        m.push(b"b", Some(b"x"));
        m.push(b"a", Some(b"1"));
        m.push(b"b", None);
        assert!(!m.sorted);
        let c = m.into_changes();
        assert!(c.replace_all);
        assert_eq!(
            ops(&c),
            vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)]
        );
    }

    #[test]
    fn map_stage_packs_changes_of_any_size() {
        // Out of order, across buffers, one change longer than a buffer, an empty key.
        let big = vec![7u8; ChangeList::PIECE + 10];
        let mut m = MapStage::new(false);
        let mut want = std::collections::BTreeMap::new();
        for i in (0..5000u32).rev() {
            let key = format!("user{i:05}\0r\0p").into_bytes();
            let value = (i % 7 != 0).then(|| vec![b'v'; (i % 300) as usize]);
            m.push(&key, value.as_deref());
            want.insert(key, value);
        }
        m.push(b"user02500\0r\0p", Some(&big));
        want.insert(b"user02500\0r\0p".to_vec(), Some(big.clone()));
        m.push(b"", None);
        want.insert(Vec::new(), None);
        let list = m.into_list();
        assert_eq!(list.len(), want.len());
        let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = list
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn map_stage_reserve_is_capped_and_keeps_the_changes() {
        let mut m = MapStage::new(false);
        m.push(b"a", None);
        m.reserve(usize::MAX);
        // Capped: room for RESERVE_MAX more, not usize::MAX (which would not fit).
        assert!(m.list.ops.capacity() > MapStage::RESERVE_MAX);
        assert!(m.list.ops.capacity() < 2 * MapStage::RESERVE_MAX);
        m.push(b"b", Some(b"2"));
        assert_eq!(
            ops(&m.into_changes()),
            vec![(b"a".to_vec(), None), (b"b".to_vec(), Some(b"2".to_vec()))]
        );
    }
}
