//! Hash buckets and their elements.
//!
//! ```text
//! bucket (64-bit layout)                 element (24 bytes; 20 with 4-byte off_t)
//!   0 av_count      i32                    0 hash_value   i32 (-1: empty slot)
//!   8 bucket_avail  6 x avail_elem         4 key_start    4 bytes (first key bytes)
//! 104 bucket_bits   i32 (depth)            8 data_pointer off_t (key, then value)
//! 108 count         i32 (used slots)      16 key_size     i32
//! 112 h_table       bucket_elems x element 20 data_size    i32
//! ```
//!
//! The table is open addressing with linear probing from `hash % bucket_elems`.

use super::header::{AvailElem, Header, Layout, parse_avail_elem, write_avail_elem};
use super::{BUCKET_AVAIL, Fault, SMALL};

/// One slot of a bucket's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Element {
    /// The key's 31-bit hash, or −1 for an empty slot.
    pub hash: i32,
    /// The first (up to) four key bytes.
    pub key_start: [u8; SMALL],
    /// Address of the record (key bytes, then value bytes).
    pub data_pointer: i64,
    /// Key length.
    pub key_size: i32,
    /// Value length.
    pub data_size: i32,
}

impl Element {
    /// An empty slot.
    pub const EMPTY: Element = Element {
        hash: -1,
        key_start: [0; SMALL],
        data_pointer: 0,
        key_size: 0,
        data_size: 0,
    };

    /// Whether the slot is empty.
    pub fn is_empty(&self) -> bool {
        self.hash == -1
    }

    fn parse(b: &[u8], at: usize, l: Layout) -> Element {
        let o = l.off_size();
        Element {
            hash: l.int(b, at),
            key_start: b[at + 4..at + 4 + SMALL].try_into().expect("4 bytes"),
            data_pointer: l.off(b, at + 8),
            key_size: l.int(b, at + 8 + o),
            data_size: l.int(b, at + 12 + o),
        }
    }

    fn write(&self, b: &mut [u8], at: usize, l: Layout) {
        let o = l.off_size();
        l.endian.put_u32(b, at, self.hash as u32);
        b[at + 4..at + 4 + SMALL].copy_from_slice(&self.key_start);
        l.put_off(b, at + 8, self.data_pointer as u64);
        l.endian.put_u32(b, at + 8 + o, self.key_size as u32);
        l.endian.put_u32(b, at + 12 + o, self.data_size as u32);
    }

    /// Checks a used slot: a 31-bit hash, sizes not negative, the record inside the
    /// file. Returns `(address, key length, value length)`.
    pub fn record(&self, file_len: u64) -> Result<(u64, usize, usize), Fault> {
        let ok = self.hash >= 0
            && self.key_size >= 0
            && self.data_size >= 0
            && self.data_pointer >= 0
            && (self.data_pointer as u64)
                .checked_add(self.key_size as u64 + self.data_size as u64)
                .is_some_and(|end| end <= file_len);
        if !ok {
            return Err(Fault::corrupt(format!(
                "element (hash {:#x}) points at a record of {}+{} bytes at {}, outside the \
                 file ({file_len} bytes)",
                self.hash, self.key_size, self.data_size, self.data_pointer
            )));
        }
        Ok((
            self.data_pointer as u64,
            self.key_size as usize,
            self.data_size as usize,
        ))
    }

    /// Whether a key can be this element's: same hash, length and first bytes.
    pub fn may_be(&self, hash: u32, key: &[u8]) -> bool {
        let n = key.len().min(SMALL);
        self.hash as u32 == hash
            && self.key_size as usize == key.len()
            && self.key_start[..n] == key[..n]
    }
}

/// A parsed bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's free extents.
    pub avail: Vec<AvailElem>,
    /// Depth: the number of hash bits that lead here.
    pub bits: u32,
    /// Used slots, as recorded.
    pub count: u32,
    /// The slots.
    pub table: Vec<Element>,
}

impl Bucket {
    /// An empty bucket of depth `bits` with `elems` slots.
    pub fn new(bits: u32, elems: u32) -> Bucket {
        Bucket {
            avail: Vec::new(),
            bits,
            count: 0,
            table: vec![Element::EMPTY; elems as usize],
        }
    }

    /// Parses a bucket (`b` is `bucket_size` bytes) with libgdbm's checks: count within
    /// the table, depth within the directory's, at most six valid free extents.
    pub fn parse(b: &[u8], header: &Header, addr: u64) -> Result<Bucket, Fault> {
        let view = BucketView::parse(b, header, addr)?;
        let table = (0..header.bucket_elems as usize)
            .map(|i| view.element(i))
            .collect();
        Ok(Bucket {
            avail: view.avail,
            bits: view.bits,
            count: view.count,
            table,
        })
    }

    /// Writes the bucket into `b` (`bucket_size` bytes, zeroed).
    pub fn write(&self, b: &mut [u8], l: Layout) {
        l.endian.put_u32(b, 0, self.avail.len() as u32);
        for (i, e) in self.avail.iter().enumerate() {
            write_avail_elem(b, l.bucket_avail_off() + i * l.avail_elem_len(), l, e);
        }
        l.endian.put_u32(b, l.bucket_bits_off(), self.bits);
        l.endian.put_u32(b, l.bucket_bits_off() + 4, self.count);
        for (i, e) in self.table.iter().enumerate() {
            e.write(b, l.bucket_table_off() + i * l.element_len(), l);
        }
    }

    /// The slots a lookup of `hash` visits, in order: from its home slot up to the first
    /// empty one, at most once round the table.
    pub fn probe(&self, hash: u32) -> impl Iterator<Item = &Element> {
        let n = self.table.len();
        let home = if n == 0 { 0 } else { hash as usize % n };
        (0..n)
            .map(move |i| &self.table[(home + i) % n])
            .take_while(|e| !e.is_empty())
    }

    /// Puts an element in the first free slot from its home slot. False if full.
    pub fn insert(&mut self, e: Element) -> bool {
        let n = self.table.len();
        let home = e.hash as usize % n;
        for i in 0..n {
            let slot = &mut self.table[(home + i) % n];
            if slot.is_empty() {
                *slot = e;
                self.count += 1;
                return true;
            }
        }
        false
    }
}

/// A bucket whose fixed fields are checked and whose table is read slot by slot (for
/// lookups, which visit a few slots of a table that can hold thousands).
#[derive(Debug)]
pub struct BucketView<'a> {
    raw: &'a [u8],
    layout: Layout,
    elems: usize,
    /// The bucket's free extents.
    pub avail: Vec<AvailElem>,
    /// Depth.
    pub bits: u32,
    /// Used slots, as recorded.
    pub count: u32,
}

impl<'a> BucketView<'a> {
    /// Checks the fixed fields of a bucket (`b` is `bucket_size` bytes) as libgdbm
    /// does when it loads one.
    pub fn parse(b: &'a [u8], header: &Header, addr: u64) -> Result<Self, Fault> {
        let l = header.layout;
        let at = |what: String| Fault::corrupt(format!("bucket at {addr}: {what}"));
        let av_count = l.int(b, 0);
        let bits = l.int(b, l.bucket_bits_off());
        let count = l.int(b, l.bucket_bits_off() + 4);
        if !(0..=i64::from(header.bucket_elems)).contains(&i64::from(count)) {
            return Err(at(format!(
                "count {count} is outside 0..={}",
                header.bucket_elems
            )));
        }
        if !(0..=i64::from(header.dir_bits)).contains(&i64::from(bits)) {
            return Err(at(format!(
                "depth {bits} is outside 0..={}",
                header.dir_bits
            )));
        }
        if !(0..=BUCKET_AVAIL as i32).contains(&av_count) {
            return Err(at(format!(
                "{av_count} free extents (at most {BUCKET_AVAIL})"
            )));
        }
        let mut avail = Vec::with_capacity(av_count as usize);
        for i in 0..av_count as usize {
            let off = l.bucket_avail_off() + i * l.avail_elem_len();
            let e = parse_avail_elem(b, off, l, header.bucket_size, header.next_block).map_err(
                |f| match f {
                    Fault::Corrupt(w) => at(w),
                    other => other,
                },
            )?;
            avail.push(e);
        }
        Ok(BucketView {
            raw: b,
            layout: l,
            elems: header.bucket_elems as usize,
            avail,
            bits: bits as u32,
            count: count as u32,
        })
    }

    /// Slot `i` (below `bucket_elems`).
    pub fn element(&self, i: usize) -> Element {
        let l = self.layout;
        Element::parse(self.raw, l.bucket_table_off() + i * l.element_len(), l)
    }

    /// The slots a lookup of `hash` visits: from its home slot up to the first empty
    /// one, at most once round the table.
    pub fn probe(&self, hash: u32) -> impl Iterator<Item = Element> + '_ {
        let n = self.elems;
        let home = if n == 0 { 0 } else { hash as usize % n };
        (0..n)
            .map(move |i| self.element((home + i) % n))
            .take_while(|e| !e.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::endian::Endian;
    use crate::storage::gdbm::header::{AvailBlock, MagicKind};

    fn header(l: Layout) -> Header {
        Header {
            layout: l,
            magic: MagicKind::for_layout(l, false),
            block_size: 512,
            dir: 512,
            dir_size: 512,
            dir_bits: 6,
            bucket_size: 512,
            bucket_elems: l.bucket_elems(512).unwrap(),
            next_block: 1 << 20,
            ext: None,
            avail: AvailBlock::default(),
        }
    }

    #[test]
    fn round_trip_and_probe() {
        for l in [
            Layout::lp64(Endian::Little),
            Layout::ilp32(Endian::Big),
            Layout::ilp32_lfs(Endian::Little),
        ] {
            let h = header(l);
            let mut b = Bucket::new(3, h.bucket_elems);
            b.avail.push(AvailElem {
                size: 40,
                addr: 2000,
            });
            let n = h.bucket_elems;
            // Three keys with the same home slot: they probe in order.
            for (i, k) in [b"k1", b"k2", b"k3"].iter().enumerate() {
                assert!(b.insert(Element {
                    hash: (n * 7 + 2) as i32,
                    key_start: [k[0], k[1], 0, 0],
                    data_pointer: 4096 + i as i64,
                    key_size: 2,
                    data_size: 5,
                }));
            }
            let mut raw = vec![0u8; 512];
            b.write(&mut raw, l);
            let back = Bucket::parse(&raw, &h, 1024).unwrap();
            assert_eq!(back, b, "{l:?}");
            let hits: Vec<i64> = back.probe(n * 7 + 2).map(|e| e.data_pointer).collect();
            assert_eq!(hits, [4096, 4097, 4098]);
            assert!(back.table[2].may_be(n * 7 + 2, b"k1"));
            assert!(!back.table[2].may_be(n * 7 + 2, b"k2"));
            assert_eq!(back.probe(0).count(), 0);
            let view = BucketView::parse(&raw, &h, 1024).unwrap();
            let hits: Vec<i64> = view.probe(n * 7 + 2).map(|e| e.data_pointer).collect();
            assert_eq!(hits, [4096, 4097, 4098]);
            assert_eq!((view.bits, view.count), (3, 3));
        }
    }

    #[test]
    fn full_bucket_probe_ends() {
        let h = header(Layout::lp64(Endian::Little));
        let mut b = Bucket::new(0, h.bucket_elems);
        for i in 0..h.bucket_elems {
            assert!(b.insert(Element {
                hash: i as i32,
                ..Element::default()
            }));
        }
        assert!(!b.insert(Element::default()));
        assert_eq!(b.probe(5).count(), h.bucket_elems as usize);
    }
}
