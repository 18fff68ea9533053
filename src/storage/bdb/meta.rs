//! The hash metadata page (page 0): the generic `DBMETA` header and the hash fields.
//!
//! Layout (offsets in bytes, integers in the file's byte order):
//!
//! ```text
//!   0 lsn (u32 file, u32 offset)  8 pgno        12 magic 0x061561  16 version
//!  20 pagesize   24 encrypt_alg   25 type (8)   26 metaflags       27 unused
//!  28 free       32 last_pgno     36 nparts     40 key_count       44 record_count
//!  48 flags      52 uid[20]
//!  72 max_bucket 76 high_mask     80 low_mask   84 ffactor         88 nelem
//!  92 h_charkey  96 spares[32]   224..460 unused  460 crypto_magic  464 trash[12]
//! 476 iv[16]    492 chksum (first 4 bytes used without encryption)
//! ```
//!
//! Only the first 512 bytes carry meaning, whatever the page size. [`Meta::parse`]
//! reads the fields and refuses what we cannot handle; [`Meta::validate`] checks them
//! against the file's length. [`Meta::write`] produces what libdb 5.3 writes.

use super::hash::{CHARKEY_HASH, bucket_page, func4, log2c};
use super::{Fault, MAGIC};
use crate::storage::endian::Endian;

/// Page type byte of the metadata page.
pub const P_HASHMETA: u8 = 8;
/// `metaflags` bit: every page carries a checksum.
pub const DBMETA_CHKSUM: u8 = 0x01;
const DBMETA_PART_RANGE: u8 = 0x02;
const DBMETA_PART_CALLBACK: u8 = 0x04;
/// `flags` bits of a hash database.
const DB_HASH_DUP: u32 = 0x01;
const DB_HASH_SUBDB: u32 = 0x02;
const DB_HASH_DUPSORT: u32 = 0x04;

const BTREE_MAGIC: u32 = 0x0005_3162;
const QUEUE_MAGIC: u32 = 0x0004_2253;
const HEAP_MAGIC: u32 = 0x0007_4582;
const BTM_SUBDB: u32 = 0x20;

/// Offset of the meta page checksum.
pub const META_CHKSUM_OFF: usize = 492;
/// Bytes of the meta page that carry meaning (and that the checksum covers).
pub const META_LEN: usize = 512;

/// The parsed metadata page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Byte order of the whole file.
    pub endian: Endian,
    /// Hash version (7, 8 or 9 are accepted).
    pub version: u32,
    /// Page size in bytes.
    pub page_size: u32,
    /// Meta flags (only `DBMETA_CHKSUM`, 0x01, is accepted).
    pub metaflags: u8,
    /// Head of the free list (0 = empty).
    pub free: u32,
    /// Highest page number in use.
    pub last_pgno: u32,
    /// Database flags (must be 0 for sasldb).
    pub flags: u32,
    /// The file id.
    pub uid: [u8; 20],
    /// Highest bucket in use.
    pub max_bucket: u32,
    /// Mask for the current doubling.
    pub high_mask: u32,
    /// Mask for the previous doubling.
    pub low_mask: u32,
    /// Fill factor (0 = unspecified).
    pub ffactor: u32,
    /// Approximate element count.
    pub nelem: u32,
    /// Hash of the check string, identifies the hash function.
    pub h_charkey: u32,
    /// Bucket group → page offsets.
    pub spares: [u32; 32],
}

impl Meta {
    /// Reads the first 512 bytes of a file. `file_len` is used to compute
    /// `last_pgno` for version 7, which does not record it.
    pub fn parse(b: &[u8], file_len: u64) -> Result<Meta, Fault> {
        if b.len() < META_LEN {
            return Err(Fault::corrupt(format!(
                "file is {} bytes, shorter than a metadata page",
                b.len()
            )));
        }
        let magic_le = Endian::Little.u32(b, 12);
        let magic_be = Endian::Big.u32(b, 12);
        let endian = if magic_le == MAGIC {
            Endian::Little
        } else if magic_be == MAGIC {
            Endian::Big
        } else {
            return Err(other_access_method(b, magic_le, magic_be));
        };
        let e = endian;
        let version = e.u32(b, 16);
        match version {
            7..=9 => {}
            10 => {
                return Err(Fault::unsupported(
                    "hash version 10 (written by libdb 6 or later; libdb 5.3 cannot read it either)",
                ));
            }
            4..=6 => {
                return Err(Fault::unsupported(format!(
                    "hash version {version} (libdb 2.x/3.0); run db_upgrade on it first"
                )));
            }
            v => return Err(Fault::corrupt(format!("unknown hash version {v}"))),
        }
        let page_size = e.u32(b, 20);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(Fault::corrupt(format!("invalid page size {page_size}")));
        }
        if b[24] != 0 {
            return Err(Fault::unsupported("the file is encrypted"));
        }
        if b[25] != P_HASHMETA {
            return Err(Fault::corrupt(format!(
                "page 0 has type {}, not a hash metadata page",
                b[25]
            )));
        }
        let metaflags = b[26];
        if metaflags & (DBMETA_PART_RANGE | DBMETA_PART_CALLBACK) != 0 || e.u32(b, 36) != 0 {
            return Err(Fault::unsupported("the database is partitioned"));
        }
        if metaflags & !DBMETA_CHKSUM != 0 {
            return Err(Fault::corrupt(format!(
                "unknown meta flags {metaflags:#04x}"
            )));
        }
        let flags = e.u32(b, 48);
        if flags & DB_HASH_SUBDB != 0 {
            return Err(Fault::unsupported("the file holds sub-databases"));
        }
        if flags & (DB_HASH_DUP | DB_HASH_DUPSORT) != 0 {
            return Err(Fault::unsupported("duplicate keys are allowed (DB_DUP)"));
        }
        if flags != 0 {
            return Err(Fault::corrupt(format!("unknown database flags {flags:#x}")));
        }
        let last_pgno = if version == 7 {
            // Version 7 has no last_pgno: every page up to the end of the file exists.
            u32::try_from((file_len / u64::from(page_size)).saturating_sub(1))
                .map_err(|_| Fault::corrupt("file too large"))?
        } else {
            e.u32(b, 32)
        };
        let mut spares = [0u32; 32];
        for (i, s) in spares.iter_mut().enumerate() {
            *s = e.u32(b, 96 + 4 * i);
        }
        Ok(Meta {
            endian,
            version,
            page_size,
            metaflags,
            free: e.u32(b, 28),
            last_pgno,
            flags,
            uid: b[52..72].try_into().expect("20 bytes"),
            max_bucket: e.u32(b, 72),
            high_mask: e.u32(b, 76),
            low_mask: e.u32(b, 80),
            ffactor: e.u32(b, 84),
            nelem: e.u32(b, 88),
            h_charkey: e.u32(b, 92),
            spares,
        })
    }

    /// Whether pages carry checksums.
    pub fn checksums(&self) -> bool {
        self.metaflags & DBMETA_CHKSUM != 0
    }

    /// Whether the file uses libdb's default hash function (keyed lookups and
    /// bucket checks rely on it).
    pub fn standard_hash(&self) -> bool {
        self.h_charkey == CHARKEY_HASH
    }

    /// Checks the fields against each other and against the file length.
    pub fn validate(&self, file_len: u64) -> Result<(), Fault> {
        let ps = u64::from(self.page_size);
        if !file_len.is_multiple_of(ps) {
            return Err(Fault::corrupt(format!(
                "file size {file_len} is not a multiple of the page size {ps}"
            )));
        }
        let pages = file_len / ps;
        if u64::from(self.last_pgno) + 1 > pages {
            return Err(Fault::corrupt(format!(
                "truncated: the last page is {} but the file holds only {pages} pages",
                self.last_pgno
            )));
        }
        let expect_high = (self.max_bucket.checked_add(1))
            .and_then(u32::checked_next_power_of_two)
            .map(|p| p - 1);
        if expect_high != Some(self.high_mask) || self.low_mask != self.high_mask >> 1 {
            return Err(Fault::corrupt(format!(
                "inconsistent bucket masks (max_bucket {}, high_mask {:#x}, low_mask {:#x})",
                self.max_bucket, self.high_mask, self.low_mask
            )));
        }
        if self.max_bucket > self.last_pgno {
            return Err(Fault::corrupt(format!(
                "max_bucket {} is beyond the last page {}",
                self.max_bucket, self.last_pgno
            )));
        }
        // The first and last bucket of every doubling group in use must lie in the file.
        let groups = log2c(self.max_bucket + 1);
        for k in 0..=groups {
            let first = if k == 0 { 0 } else { 1u32 << (k - 1) };
            let last = ((1u64 << k) - 1).min(u64::from(self.max_bucket)) as u32;
            for b in [first, last] {
                match bucket_page(b, &self.spares) {
                    Some(p) if p != 0 && p <= self.last_pgno => {}
                    _ => {
                        return Err(Fault::corrupt(format!(
                            "bucket {b} maps outside the file (spares[{k}] = {})",
                            self.spares[k as usize]
                        )));
                    }
                }
            }
        }
        if self.free > self.last_pgno {
            return Err(Fault::corrupt(format!(
                "free list head {} is beyond the last page {}",
                self.free, self.last_pgno
            )));
        }
        Ok(())
    }

    /// Verifies the meta page checksum (when checksums are on).
    pub fn verify_checksum(&self, b: &[u8]) -> Result<(), Fault> {
        if !self.checksums() {
            return Ok(());
        }
        let stored = self.endian.u32(b, META_CHKSUM_OFF);
        let mut copy = [0u8; META_LEN];
        copy.copy_from_slice(&b[..META_LEN]);
        copy[META_CHKSUM_OFF..META_CHKSUM_OFF + 4].fill(0);
        if func4(&copy) != stored {
            return Err(Fault::checksum(0));
        }
        Ok(())
    }

    /// Updates, in a copy of a file's meta page (`page`, at least 512 bytes), the
    /// fields a patch changes, leaving every other byte as it was, and recomputes the
    /// checksum when checksums are on.
    pub fn patch_page(&self, page: &mut [u8]) {
        let e = self.endian;
        e.put_u32(page, 28, self.free);
        e.put_u32(page, 32, self.last_pgno);
        page[52..72].copy_from_slice(&self.uid);
        e.put_u32(page, 88, self.nelem);
        if self.checksums() {
            page[META_CHKSUM_OFF..META_CHKSUM_OFF + 4].fill(0);
            let sum = func4(&page[..META_LEN]);
            e.put_u32(page, META_CHKSUM_OFF, sum);
        }
    }

    /// Serialises the meta page into `page` (a zeroed buffer of `page_size` bytes),
    /// as libdb 5.3 lays it out, checksum included when enabled.
    pub fn write(&self, page: &mut [u8]) {
        let e = self.endian;
        e.put_u32(page, 0, 0); // lsn file
        e.put_u32(page, 4, 1); // lsn offset: "not logged"
        e.put_u32(page, 8, 0); // pgno
        e.put_u32(page, 12, MAGIC);
        e.put_u32(page, 16, self.version);
        e.put_u32(page, 20, self.page_size);
        page[24] = 0; // encrypt_alg
        page[25] = P_HASHMETA;
        page[26] = self.metaflags;
        page[27] = 0;
        e.put_u32(page, 28, self.free);
        e.put_u32(page, 32, self.last_pgno);
        e.put_u32(page, 36, 0); // nparts
        e.put_u32(page, 40, 0); // key_count
        e.put_u32(page, 44, 0); // record_count
        e.put_u32(page, 48, self.flags);
        page[52..72].copy_from_slice(&self.uid);
        e.put_u32(page, 72, self.max_bucket);
        e.put_u32(page, 76, self.high_mask);
        e.put_u32(page, 80, self.low_mask);
        e.put_u32(page, 84, self.ffactor);
        e.put_u32(page, 88, self.nelem);
        e.put_u32(page, 92, self.h_charkey);
        for (i, s) in self.spares.iter().enumerate() {
            e.put_u32(page, 96 + 4 * i, *s);
        }
        if self.checksums() {
            page[META_CHKSUM_OFF..META_CHKSUM_OFF + 4].fill(0);
            let sum = func4(&page[..META_LEN]);
            e.put_u32(page, META_CHKSUM_OFF, sum);
        }
    }
}

/// Names the access method of a Berkeley DB file that is not a hash database, or
/// says the magic is unknown.
fn other_access_method(b: &[u8], le: u32, be: u32) -> Fault {
    let (magic, e) = if [BTREE_MAGIC, QUEUE_MAGIC, HEAP_MAGIC].contains(&le) {
        (le, Endian::Little)
    } else {
        (be, Endian::Big)
    };
    match magic {
        BTREE_MAGIC if e.u32(b, 48) & BTM_SUBDB != 0 => {
            Fault::unsupported("the file holds sub-databases")
        }
        BTREE_MAGIC => Fault::unsupported("a Btree database, not a Hash database"),
        QUEUE_MAGIC => Fault::unsupported("a Queue database, not a Hash database"),
        HEAP_MAGIC => Fault::unsupported("a Heap database, not a Hash database"),
        _ => Fault::corrupt("bad magic number in the metadata page"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(endian: Endian) -> Meta {
        let mut spares = [0u32; 32];
        spares[0] = 1;
        spares[1] = 1;
        Meta {
            endian,
            version: 9,
            page_size: 4096,
            metaflags: 0,
            free: 0,
            last_pgno: 2,
            flags: 0,
            uid: [7; 20],
            max_bucket: 1,
            high_mask: 1,
            low_mask: 0,
            ffactor: 0,
            nelem: 4,
            h_charkey: CHARKEY_HASH,
            spares,
        }
    }

    #[test]
    fn round_trip_both_orders_and_checksum() {
        for endian in [Endian::Little, Endian::Big] {
            for metaflags in [0, DBMETA_CHKSUM] {
                let mut m = sample(endian);
                m.metaflags = metaflags;
                let mut page = vec![0u8; 4096];
                m.write(&mut page);
                let back = Meta::parse(&page, 3 * 4096).unwrap();
                assert_eq!(back, m);
                back.validate(3 * 4096).unwrap();
                back.verify_checksum(&page).unwrap();
                if metaflags != 0 {
                    page[100] ^= 1;
                    assert!(matches!(
                        back.verify_checksum(&page),
                        Err(Fault::Checksum { page: 0 })
                    ));
                }
            }
        }
    }

    #[test]
    fn refusals() {
        let mut page = vec![0u8; 4096];
        sample(Endian::Little).write(&mut page);
        let mut enc = page.clone();
        enc[24] = 1;
        assert!(matches!(
            Meta::parse(&enc, 12288),
            Err(Fault::Unsupported(_))
        ));
        let mut dup = page.clone();
        Endian::Little.put_u32(&mut dup, 48, DB_HASH_DUP);
        assert!(matches!(
            Meta::parse(&dup, 12288),
            Err(Fault::Unsupported(_))
        ));
        let mut part = page.clone();
        Endian::Little.put_u32(&mut part, 36, 3);
        assert!(matches!(
            Meta::parse(&part, 12288),
            Err(Fault::Unsupported(_))
        ));
        let mut v10 = page.clone();
        Endian::Little.put_u32(&mut v10, 16, 10);
        assert!(matches!(
            Meta::parse(&v10, 12288),
            Err(Fault::Unsupported(_))
        ));
        let mut btree = page.clone();
        Endian::Little.put_u32(&mut btree, 12, BTREE_MAGIC);
        Endian::Little.put_u32(&mut btree, 48, BTM_SUBDB);
        assert!(
            matches!(Meta::parse(&btree, 12288), Err(Fault::Unsupported(s)) if s.contains("sub-databases"))
        );
        let mut ps = page.clone();
        Endian::Little.put_u32(&mut ps, 20, 1000);
        assert!(matches!(Meta::parse(&ps, 12288), Err(Fault::Corrupt(_))));
    }

    #[test]
    fn validation_against_length() {
        let m = sample(Endian::Little);
        assert!(m.validate(3 * 4096).is_ok());
        assert!(matches!(m.validate(2 * 4096), Err(Fault::Corrupt(s)) if s.contains("truncated")));
        assert!(
            matches!(m.validate(3 * 4096 + 5), Err(Fault::Corrupt(s)) if s.contains("multiple"))
        );
        let mut bad = m.clone();
        bad.high_mask = 3;
        assert!(bad.validate(3 * 4096).is_err());
        let mut bad = m.clone();
        bad.spares[1] = 900;
        assert!(bad.validate(3 * 4096).is_err());
    }
}
