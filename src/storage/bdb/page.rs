//! Berkeley DB page codecs: the generic page header, hash bucket pages and their
//! items, overflow pages, and page checksums. Pure functions over byte slices; no I/O.
//!
//! Page header (26 bytes, `P_OVERHEAD`; 32 when checksums are on, the checksum at
//! 28..32):
//!
//! ```text
//!  0 lsn (8)   8 pgno   12 prev_pgno   16 next_pgno   20 entries (u16)
//! 22 hf_offset (u16)    24 level (0)   25 type
//! ```
//!
//! A hash page holds `entries` u16 offsets (`inp[]`) right after the header; entries
//! come in key/data pairs. Items carry no length: item `i` spans
//! `inp[i] .. (i == 0 ? pagesize : inp[i-1])`, so items are packed downward from the
//! end of the page in index order. The first byte of an item is its type.

use super::Fault;
use super::hash::func4;
use crate::storage::endian::Endian;

/// Free-list page (or an all-zero hole).
pub const P_INVALID: u8 = 0;
/// Unsorted hash page (libdb < 4.6, hash version 8 and older).
pub const P_HASH_UNSORTED: u8 = 2;
/// Overflow (big item) page.
pub const P_OVERFLOW: u8 = 7;
/// Sorted hash page (libdb 4.6 and later).
pub const P_HASH: u8 = 13;

/// On-page key or data bytes.
pub const H_KEYDATA: u8 = 1;
/// An on-page duplicate set.
pub const H_DUPLICATE: u8 = 2;
/// A reference to an overflow chain.
pub const H_OFFPAGE: u8 = 3;
/// A reference to an off-page duplicate tree.
pub const H_OFFDUP: u8 = 4;
/// An external blob (hash version 10 only).
pub const H_BLOB: u8 = 5;

/// Length of an `H_OFFPAGE` item.
pub const HOFFPAGE_SIZE: usize = 12;
/// Header size without checksums.
pub const P_OVERHEAD: usize = 26;
/// Header size with checksums (2 bytes padding, 4 bytes checksum).
pub const P_OVERHEAD_CHKSUM: usize = 32;
/// Offset of a data page's checksum.
pub const CHKSUM_OFF: usize = 28;

/// The generic page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// The page's own number.
    pub pgno: u32,
    /// Previous page in a chain (0 = none).
    pub prev: u32,
    /// Next page in a chain (0 = none).
    pub next: u32,
    /// Index slots (hash pages) or reference count (overflow pages).
    pub entries: u16,
    /// Start of item data (hash pages) or payload length (overflow pages).
    pub hf_offset: u16,
    /// Tree level, always 0 in hash files.
    pub level: u8,
    /// Page type.
    pub ptype: u8,
}

impl Header {
    /// Reads the header of a page (at least 26 bytes).
    pub fn parse(page: &[u8], e: Endian) -> Header {
        Header {
            pgno: e.u32(page, 8),
            prev: e.u32(page, 12),
            next: e.u32(page, 16),
            entries: e.u16(page, 20),
            hf_offset: e.u16(page, 22),
            level: page[24],
            ptype: page[25],
        }
    }

    /// Writes the header (LSN `[0][1]`, "not logged", as libdb does without an
    /// environment).
    pub fn write(&self, page: &mut [u8], e: Endian) {
        e.put_u32(page, 0, 0);
        e.put_u32(page, 4, 1);
        e.put_u32(page, 8, self.pgno);
        e.put_u32(page, 12, self.prev);
        e.put_u32(page, 16, self.next);
        e.put_u16(page, 20, self.entries);
        e.put_u16(page, 22, self.hf_offset);
        page[24] = self.level;
        page[25] = self.ptype;
    }

    /// Whether this is a never-written page (a hole, or past the end of the file).
    pub fn is_hole(&self) -> bool {
        self.pgno == 0 && self.ptype == P_INVALID
    }
}

/// Computes the checksum libdb stores in a data page: `func4` over the page with
/// the four checksum bytes taken as zero.
pub fn page_checksum(page: &[u8]) -> u32 {
    let h = func4(&page[..CHKSUM_OFF]);
    let h = (0..4).fold(h, |h: u32, _| h.wrapping_mul(33));
    page[CHKSUM_OFF + 4..]
        .iter()
        .fold(h, |h, &b| h.wrapping_mul(33).wrapping_add(u32::from(b)))
}

/// Stores a data page's checksum.
pub fn set_page_checksum(page: &mut [u8], e: Endian) {
    let sum = page_checksum(page);
    e.put_u32(page, CHKSUM_OFF, sum);
}

/// Verifies a data page's checksum.
pub fn verify_page_checksum(page: &[u8], e: Endian, pgno: u32) -> Result<(), Fault> {
    if page_checksum(page) != e.u32(page, CHKSUM_OFF) {
        return Err(Fault::checksum(pgno));
    }
    Ok(())
}

/// One item of a hash page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// Bytes stored on the page.
    Data(&'a [u8]),
    /// Bytes stored in an overflow chain.
    OffPage {
        /// First overflow page.
        pgno: u32,
        /// Total length.
        tlen: u32,
    },
}

/// A hash bucket page's items. Every item read is bounds-checked; [`HashPage::parse`]
/// checks the whole index up front, [`HashPage::indexed`] only its size.
#[derive(Debug, Clone, Copy)]
pub struct HashPage<'a> {
    page: &'a [u8],
    e: Endian,
    inp_start: usize,
    entries: usize,
    pgno: u32,
}

impl<'a> HashPage<'a> {
    /// Checks a hash page's index: an even number of entries, every offset inside
    /// the item area and strictly decreasing (so every item is at least one byte).
    pub fn parse(page: &'a [u8], e: Endian, overhead: usize, hdr: &Header) -> Result<Self, Fault> {
        let hp = HashPage::indexed(page, e, overhead, hdr)?;
        for i in 0..hp.entries {
            hp.raw(i)?;
        }
        Ok(hp)
    }

    /// Checks only that the index has an even number of entries and fits in the
    /// page; each item's offsets are checked when it is read ([`HashPage::item`]).
    /// For a keyed lookup, which reads a few items of the page, not all of them.
    pub fn indexed(
        page: &'a [u8],
        e: Endian,
        overhead: usize,
        hdr: &Header,
    ) -> Result<Self, Fault> {
        let pgno = hdr.pgno;
        let entries = usize::from(hdr.entries);
        if entries % 2 != 0 {
            return Err(Fault::corrupt(format!(
                "page {pgno}: odd entry count {entries}"
            )));
        }
        if overhead + 2 * entries > page.len() {
            return Err(Fault::corrupt(format!(
                "page {pgno}: {entries} entries do not fit in the page"
            )));
        }
        Ok(HashPage {
            page,
            e,
            inp_start: overhead,
            entries,
            pgno,
        })
    }

    /// Where the item area starts: just past the index.
    fn data_start(&self) -> usize {
        self.inp_start + 2 * self.entries
    }

    /// Re-creates the view of a page whose index [`HashPage::parse`] has already
    /// checked (the page buffer unchanged since).
    pub fn trusted(page: &'a [u8], e: Endian, overhead: usize, hdr: &Header) -> Self {
        HashPage {
            page,
            e,
            inp_start: overhead,
            entries: usize::from(hdr.entries),
            pgno: hdr.pgno,
        }
    }

    /// Number of key/data pairs.
    pub fn pairs(&self) -> usize {
        self.entries / 2
    }

    /// The raw bytes of item `i` (type byte included), between its offset and the
    /// previous item's (the page's end for the first), checked as
    /// [`HashPage::parse`] checks every item.
    fn raw(&self, i: usize) -> Result<&'a [u8], Fault> {
        let at = |j: usize| usize::from(self.e.u16(self.page, self.inp_start + 2 * j));
        let off = at(i);
        let end = if i == 0 { self.page.len() } else { at(i - 1) };
        if off < self.data_start() || off >= end || end > self.page.len() {
            return Err(Fault::corrupt(format!(
                "page {}: item {i} offset {off} is out of order or outside the page",
                self.pgno
            )));
        }
        Ok(&self.page[off..end])
    }

    /// Decodes item `i` (`2n` for the key of pair `n`, `2n + 1` for its data).
    pub fn item(&self, i: usize) -> Result<Item<'a>, Fault> {
        let raw = self.raw(i)?;
        let what = if i.is_multiple_of(2) { "key" } else { "data" };
        match raw[0] {
            H_KEYDATA => Ok(Item::Data(&raw[1..])),
            H_OFFPAGE if raw.len() >= HOFFPAGE_SIZE => Ok(Item::OffPage {
                pgno: self.e.u32(raw, 4),
                tlen: self.e.u32(raw, 8),
            }),
            H_OFFPAGE => Err(Fault::corrupt(format!(
                "page {}: {what} item {i} is a truncated overflow reference",
                self.pgno
            ))),
            H_DUPLICATE | H_OFFDUP => Err(Fault::corrupt(format!(
                "page {}: {what} item {i} is a duplicate set, but the database does not allow duplicates",
                self.pgno
            ))),
            H_BLOB => Err(Fault::unsupported(format!(
                "page {}: external blob items (libdb 6 or later)",
                self.pgno
            ))),
            t => Err(Fault::corrupt(format!(
                "page {}: {what} item {i} has unknown type {t}",
                self.pgno
            ))),
        }
    }
}

/// Space a pair takes on a hash page: both items plus two index slots.
#[inline]
pub fn pair_space(key_item: usize, data_item: usize) -> usize {
    key_item + data_item + 4
}

/// Space one item takes: `1 + len` on the page, or an overflow reference when the
/// item is longer than a quarter page (libdb's `ISBIG`).
#[inline]
pub fn item_space(len: usize, page_size: usize) -> usize {
    if is_big(len, page_size) {
        HOFFPAGE_SIZE
    } else {
        1 + len
    }
}

/// Whether an item of `len` bytes goes off-page.
#[inline]
pub fn is_big(len: usize, page_size: usize) -> bool {
    len > page_size / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with(items: &[&[u8]], e: Endian) -> Vec<u8> {
        let ps = 512;
        let mut page = vec![0u8; ps];
        let mut end = ps;
        for (i, it) in items.iter().enumerate() {
            let off = end - it.len();
            page[off..end].copy_from_slice(it);
            e.put_u16(&mut page, P_OVERHEAD + 2 * i, off as u16);
            end = off;
        }
        Header {
            pgno: 1,
            entries: items.len() as u16,
            hf_offset: end as u16,
            ptype: P_HASH,
            ..Header::default()
        }
        .write(&mut page, e);
        page
    }

    #[test]
    fn parses_items() {
        for e in [Endian::Little, Endian::Big] {
            let mut off = vec![H_OFFPAGE, 0, 0, 0];
            off.extend_from_slice(&match e {
                Endian::Little => 9u32.to_le_bytes(),
                Endian::Big => 9u32.to_be_bytes(),
            });
            off.extend_from_slice(&match e {
                Endian::Little => 5000u32.to_le_bytes(),
                Endian::Big => 5000u32.to_be_bytes(),
            });
            let page = page_with(&[b"\x01key", &off], e);
            let hdr = Header::parse(&page, e);
            let hp = HashPage::parse(&page, e, P_OVERHEAD, &hdr).unwrap();
            assert_eq!(hp.pairs(), 1);
            assert_eq!(hp.item(0).unwrap(), Item::Data(b"key"));
            assert_eq!(
                hp.item(1).unwrap(),
                Item::OffPage {
                    pgno: 9,
                    tlen: 5000
                }
            );
        }
    }

    #[test]
    fn rejects_bad_indexes() {
        let e = Endian::Little;
        let mut page = page_with(&[b"\x01k", b"\x01v"], e);
        // Offsets out of order.
        let a = e.u16(&page, P_OVERHEAD);
        let b = e.u16(&page, P_OVERHEAD + 2);
        e.put_u16(&mut page, P_OVERHEAD, b);
        e.put_u16(&mut page, P_OVERHEAD + 2, a);
        let hdr = Header::parse(&page, e);
        assert!(HashPage::parse(&page, e, P_OVERHEAD, &hdr).is_err());
        // Entry count larger than the page.
        let mut page = page_with(&[b"\x01k", b"\x01v"], e);
        e.put_u16(&mut page, 20, 1000);
        let hdr = Header::parse(&page, e);
        assert!(HashPage::parse(&page, e, P_OVERHEAD, &hdr).is_err());
        // Odd entry count.
        let mut page = page_with(&[b"\x01k", b"\x01v"], e);
        e.put_u16(&mut page, 20, 1);
        let hdr = Header::parse(&page, e);
        assert!(HashPage::parse(&page, e, P_OVERHEAD, &hdr).is_err());
        // Duplicate item type.
        let page = page_with(&[b"\x01k", b"\x02\x01\x00v\x01\x00"], e);
        let hdr = Header::parse(&page, e);
        let hp = HashPage::parse(&page, e, P_OVERHEAD, &hdr).unwrap();
        assert!(hp.item(1).is_err());
    }

    #[test]
    fn an_index_checked_only_for_size_checks_each_item_read() {
        let e = Endian::Little;
        let page = page_with(&[b"\x01k", b"\x01v", b"\x01k2", b"\x01v2"], e);
        // Offsets inside the index or past the page, at every entry: `parse` refuses
        // the page; `indexed` refuses the item and reads the ones it does not bound.
        for i in 0..4 {
            for bad in [0u16, 20, (P_OVERHEAD + 7) as u16, 512, 600, u16::MAX] {
                let mut page = page.clone();
                e.put_u16(&mut page, P_OVERHEAD + 2 * i, bad);
                let hdr = Header::parse(&page, e);
                assert!(HashPage::parse(&page, e, P_OVERHEAD, &hdr).is_err());
                let hp = HashPage::indexed(&page, e, P_OVERHEAD, &hdr).unwrap();
                for j in 0..4 {
                    // Item j spans [offset j, offset j-1), so a bad offset i spoils
                    // items i and i + 1 (unless, by luck, it still bounds them).
                    let r = hp.item(j);
                    if j == i {
                        assert!(r.is_err(), "item {j}, bad offset {bad}");
                    } else if j != i + 1 {
                        assert!(r.is_ok(), "item {j}, bad offset {bad} at {i}");
                    }
                }
            }
        }
        // Untouched, both views read the same items.
        let hdr = Header::parse(&page, e);
        let (a, b) = (
            HashPage::parse(&page, e, P_OVERHEAD, &hdr).unwrap(),
            HashPage::indexed(&page, e, P_OVERHEAD, &hdr).unwrap(),
        );
        for j in 0..4 {
            assert_eq!(a.item(j).unwrap(), b.item(j).unwrap());
        }
        let mut page = page.clone();
        e.put_u16(&mut page, 20, 1000);
        let hdr = Header::parse(&page, e);
        assert!(HashPage::indexed(&page, e, P_OVERHEAD, &hdr).is_err());
    }

    #[test]
    fn checksum_ignores_its_own_bytes() {
        let mut page = vec![0u8; 512];
        page[40] = 7;
        page[CHKSUM_OFF] = 0xAA;
        let a = page_checksum(&page);
        page[CHKSUM_OFF] = 0x55;
        assert_eq!(page_checksum(&page), a);
        let mut zeroed = page.clone();
        zeroed[CHKSUM_OFF..CHKSUM_OFF + 4].fill(0);
        assert_eq!(func4(&zeroed), a);
        set_page_checksum(&mut page, Endian::Big);
        verify_page_checksum(&page, Endian::Big, 3).unwrap();
        page[100] = 1;
        assert!(verify_page_checksum(&page, Endian::Big, 3).is_err());
    }

    #[test]
    fn big_item_threshold() {
        assert!(!is_big(1024, 4096));
        assert!(is_big(1025, 4096));
        assert_eq!(item_space(1024, 4096), 1025);
        assert_eq!(item_space(1025, 4096), HOFFPAGE_SIZE);
    }
}
