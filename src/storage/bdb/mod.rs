//! Berkeley DB hash files (libdb 5.3, hash version 9), read and written in pure Rust.
//!
//! This module owns the Berkeley DB hash format and nothing above it: [`BdbFile`]
//! reads a file (keyed lookup, full scan, structural check), [`write_records`]
//! writes a complete new file from records, and [`patch`] turns a few changes into
//! page rewrites over a copy of an existing file (only the touched buckets change).
//! Locking and replacing files belong to [`crate::storage::persist`].
//!
//! # Format notes
//!
//! A file is an array of `pagesize` pages (a power of two, 512 to 65536); page `n`
//! starts at byte `n * pagesize`; page numbers are u32 and 0 also means "none".
//! Integers are in the byte order of the machine that created the file: the magic
//! `0x061561` at byte 12 read little- or big-endian tells which (see the `meta` module).
//!
//! - Page 0 is the metadata page (module `meta`): page size, `last_pgno`, the bucket
//!   masks and `spares[]`, free-list head, flags.
//! - Keys hash with `__ham_func5` (FNV-1 from 0, [`hash::func5`]) to a bucket:
//!   `b = h & high_mask`, and `b & low_mask` when `b > max_bucket`. Bucket `b`'s first
//!   page is `b + spares[log2c(b + 1)]`. Never-written bucket pages are holes (zeros).
//! - Bucket pages (module `page`) hold key/data pairs indexed by `inp[]`; further pages of a
//!   bucket chain through `next_pgno`/`prev_pgno`. Type 13 pages (libdb 4.6+) are
//!   sorted and searched by binary search; type 2 pages (older) are unsorted.
//! - libdb's sort order on a common prefix is **longer key first** for on-page keys
//!   (its binary search calls the shorter search key "greater"), but shorter first when
//!   an off-page key is involved ([`page_order`]). A page in plain lexicographic order
//!   passes `db_verify` yet libdb misses keys on it.
//! - Items longer than `pagesize / 4` are stored in chains of overflow pages (type 7;
//!   `entries` is a reference count, `hf_offset` the bytes on that page).
//! - With checksums on (meta flag 0x01) the page header grows from 26 to 32 bytes and
//!   bytes 28..32 hold `__ham_func4` of the page with those bytes zeroed; the meta
//!   page's checksum covers its first 512 bytes and sits at byte 492.
//! - Freed pages form a list through `next_pgno` from the meta page's `free`.
//!
//! Refused with a specific error: encryption, duplicates (`DB_DUP`), sub-databases,
//! partitioned files, hash versions other than 7-9. Version 8 and 7 files (type 2
//! pages) are read; only version 9 is written.

mod hash;
mod meta;
mod page;
pub mod patch;
mod reader;
mod writer;

use std::cmp::Ordering;
use std::path::Path;

pub use hash::{func4, func5};
pub use meta::Meta;
pub use reader::{BdbFile, Scan, VerifyReport};
pub use writer::{PageSink, WriteOptions, WriteStats, write_records};

use crate::error::Error;
use crate::location::Format;

/// The hash access method's magic number.
pub const MAGIC: u32 = 0x0006_1561;

/// A format problem found while parsing, before the file path is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The bytes are inconsistent.
    Corrupt(String),
    /// The file uses a feature we refuse.
    Unsupported(String),
    /// A page checksum does not match.
    Checksum {
        /// The page.
        page: u32,
    },
}

impl Fault {
    pub(crate) fn corrupt(s: impl Into<String>) -> Self {
        Fault::Corrupt(s.into())
    }

    pub(crate) fn unsupported(s: impl Into<String>) -> Self {
        Fault::Unsupported(s.into())
    }

    pub(crate) fn checksum(page: u32) -> Self {
        Fault::Checksum { page }
    }

    /// Attaches the file's path.
    pub(crate) fn into_error(self, path: &Path) -> Error {
        let path = path.to_path_buf();
        match self {
            Fault::Corrupt(what) => Error::Corrupt {
                path,
                format: Format::Bdb,
                what,
            },
            Fault::Unsupported(what) => Error::Unsupported {
                path,
                format: Format::Bdb,
                what,
            },
            Fault::Checksum { page } => Error::Corrupt {
                path,
                format: Format::Bdb,
                what: format!("checksum mismatch on page {page}"),
            },
        }
    }
}

/// libdb's order of on-page keys on a sorted hash page: bytewise on the common
/// prefix, and on a tie the **longer** key first.
pub fn page_order(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        Ordering::Equal => b.len().cmp(&a.len()),
        o => o,
    }
}

/// The order libdb's binary search assumes between two adjacent keys on one page:
/// [`page_order`] for on-page keys, plain bytewise order when either is off-page.
pub(crate) fn key_order(a: &[u8], a_off: bool, b: &[u8], b_off: bool) -> Ordering {
    if a_off || b_off {
        a.cmp(b)
    } else {
        page_order(a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_key_first_on_common_prefix() {
        // Order seen in real libdb files: key18 before key1, key1 before key21.
        let mut keys: Vec<&[u8]> = vec![b"key21", b"key1", b"key18", b"key10"];
        keys.sort_by(|a, b| page_order(a, b));
        assert_eq!(keys, [&b"key10"[..], b"key18", b"key1", b"key21"]);
        assert_eq!(key_order(b"ab", true, b"abc", false), Ordering::Less);
        assert_eq!(key_order(b"ab", false, b"abc", false), Ordering::Greater);
    }
}
