//! The merge both hash-file writers (Berkeley DB, GDBM) are built on: records tagged
//! put, delete or base (the old file's) go through one [`ExternalSort`] under a
//! 32-bit order word of the format's choosing (its hash, bit-reversed for Berkeley DB)
//! and the key's length, so that the records of one bucket come together and a key's
//! records are adjacent; [`Winners`] then reads one record per key, the one that wins.

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::record::Secret;
use crate::storage::sort::{ExternalSort, Sorted, SpillTo};

/// Tags order a key's records: a change wins over the file's record, and a delete
/// over a put.
pub(crate) const TAG_DELETE: u8 = 0;
pub(crate) const TAG_PUT: u8 = 1;
pub(crate) const TAG_BASE: u8 = 2;

/// Bytes before the key in a sort key: the order word and the key's length.
const HEAD: usize = 8;

/// Tagged records sorted by `(order, key length, key, tag)`.
pub(crate) struct TaggedSort {
    sort: ExternalSort,
}

impl TaggedSort {
    pub(crate) fn new(to: &SpillTo) -> TaggedSort {
        TaggedSort {
            sort: ExternalSort::new(to),
        }
    }

    /// Adds a record; the caller has checked the lengths its format allows (and that
    /// the key's length fits in 32 bits).
    pub(crate) fn push(&mut self, order: u32, tag: u8, key: &[u8], value: &[u8]) -> Result<()> {
        let mut head = [0u8; HEAD];
        head[..4].copy_from_slice(&order.to_be_bytes());
        head[4..].copy_from_slice(&(key.len() as u32).to_be_bytes());
        self.sort.push_parts(&[&head, key, &[tag]], &[value])
    }

    /// Records (of any kind) pushed.
    pub(crate) fn len(&self) -> u64 {
        self.sort.len()
    }

    /// Whether part of the sort went to a file.
    pub(crate) fn spilled(&self) -> bool {
        self.sort.spilled()
    }

    /// The puts and deletes pushed, in the sort's order (for a change set small
    /// enough to apply another way). Base records are not expected here.
    pub(crate) fn into_ops(self) -> Result<Vec<(Vec<u8>, Option<Secret>)>> {
        let mut out = Vec::with_capacity(self.sort.len() as usize);
        let mut sorted = self.sort.finish()?;
        while let Some((k, v)) = sorted.next()? {
            let (key, tag) = split(k);
            out.push((
                key.to_vec(),
                (tag != TAG_DELETE).then(|| Zeroizing::new(v.to_vec())),
            ));
        }
        Ok(out)
    }

    /// The winners, one record per key.
    pub(crate) fn finish(self) -> Result<Winners> {
        Ok(Winners {
            sorted: self.sort.finish()?,
            last: Zeroizing::new(Vec::with_capacity(256)),
            have_last: false,
        })
    }
}

/// A sort key's record key and tag.
fn split(k: &[u8]) -> (&[u8], u8) {
    (&k[HEAD..k.len() - 1], k[k.len() - 1])
}

/// A winning record: `(order word, key, value)`.
pub(crate) type Winner<'a> = (u32, &'a [u8], &'a [u8]);

/// Reads a finished [`TaggedSort`]: for each key the first of delete, put, base; a
/// delete hides the key. A key given twice as a change (put or delete) is an error.
pub(crate) struct Winners {
    sorted: Sorted,
    last: Zeroizing<Vec<u8>>,
    have_last: bool,
}

impl Winners {
    /// Starts again from the first record.
    pub(crate) fn rewind(&mut self) -> Result<()> {
        self.have_last = false;
        self.sorted.rewind()
    }

    /// The next winning record.
    pub(crate) fn next(&mut self) -> Result<Option<Winner<'_>>> {
        loop {
            let skip = {
                let Some((k, _)) = self.sorted.next()? else {
                    return Ok(None);
                };
                let (key, tag) = split(k);
                if self.have_last && key == &self.last[..] {
                    // Tags sort deletes, then puts, then base records: a change after
                    // the first record of a key means the key was given twice.
                    if tag != TAG_BASE {
                        return Err(Error::Invalid(format!(
                            "duplicate key `{}` in the records to write",
                            String::from_utf8_lossy(key)
                        )));
                    }
                    true
                } else {
                    self.last.clear();
                    if key.len() > self.last.capacity() {
                        self.last = Zeroizing::new(Vec::with_capacity(key.len()));
                    }
                    self.last.extend_from_slice(key);
                    self.have_last = true;
                    tag == TAG_DELETE
                }
            };
            if !skip {
                let (k, v) = self.sorted.current().expect("a record was just read");
                let order = u32::from_be_bytes(k[..4].try_into().expect("4 bytes"));
                return Ok(Some((order, split(k).0, v)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_once_changes_first() {
        let mut s = TaggedSort::new(&SpillTo::memory_only());
        s.push(2, TAG_BASE, b"b", b"old b").unwrap();
        s.push(1, TAG_BASE, b"a", b"old a").unwrap();
        s.push(1, TAG_PUT, b"a", b"new a").unwrap();
        s.push(3, TAG_BASE, b"c", b"old c").unwrap();
        s.push(3, TAG_DELETE, b"c", b"").unwrap();
        s.push(4, TAG_PUT, b"d", b"d").unwrap();
        let mut w = s.finish().unwrap();
        let mut got = Vec::new();
        while let Some((o, k, v)) = w.next().unwrap() {
            got.push((o, k.to_vec(), v.to_vec()));
        }
        assert_eq!(
            got,
            [
                (1, b"a".to_vec(), b"new a".to_vec()),
                (2, b"b".to_vec(), b"old b".to_vec()),
                (4, b"d".to_vec(), b"d".to_vec()),
            ]
        );
        w.rewind().unwrap();
        assert_eq!(w.next().unwrap().map(|(o, _, _)| o), Some(1));
    }

    #[test]
    fn a_change_given_twice_is_an_error() {
        let mut s = TaggedSort::new(&SpillTo::memory_only());
        s.push(1, TAG_PUT, b"a", b"1").unwrap();
        s.push(1, TAG_PUT, b"a", b"2").unwrap();
        let mut w = s.finish().unwrap();
        let e = loop {
            match w.next() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("duplicate key `a`"), "{e}");
    }
}
