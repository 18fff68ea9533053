//! GNU dbm files (the format of gdbm 1.x, checked against 1.23), read and written in
//! pure Rust.
//!
//! This module owns the GDBM format and nothing above it: [`GdbmFile`] reads a file
//! (keyed lookup, full scan, structural check), [`write_records`] writes a complete new
//! file from records, and [`DataFileLock`] takes the `flock` that libgdbm's own writers
//! and readers honour. Replacing files belongs to [`crate::storage::persist`].
//!
//! # Format notes
//!
//! Integers are in the byte order, width and alignment of the machine that wrote the
//! file; nothing in the file says which except the magic number at byte 0
//! ([`header`]): `0x13579ACF` (64-bit `off_t`, the usual one), `0x13579ACD` (32-bit),
//! `0x13579ACE` (the original, `off_t` of either width), and the "numsync" variants
//! `0x13579AD1`/`0x13579AD0` with a 32-byte extension header. Read byte-swapped, the
//! magic says the file is foreign-endian (libgdbm refuses those; we read them). File
//! addresses (`off_t`) are 4 or 8 bytes; 8-byte ones are 8-aligned on 64-bit ABIs and
//! 4-aligned on i386, which changes the avail and bucket layouts ([`Layout`]).
//!
//! - Block 0 is the header: block size, the directory's address, size and depth
//!   (`dir_bits`), the bucket size and element count, `next_block` (the end of the
//!   allocated file), then (numsync files) the extension, then the header's avail table
//!   of free extents, whose overflow is a stack of avail blocks chained through
//!   `next_block` ([`header`]).
//! - The directory ([`directory`]) is `2^dir_bits` file addresses of buckets; the top
//!   `dir_bits` bits of a key's 31-bit hash index it. A bucket of depth `bucket_bits`
//!   is shared by the aligned run of `2^(dir_bits - bucket_bits)` entries whose indexes
//!   agree on its top bits (extendible hashing).
//! - A bucket ([`bucket`]) is one block: six avail entries, `bucket_bits`, `count`, and
//!   an open-addressing table of `bucket_elems` elements (hash, first 4 key bytes,
//!   record address, key and value sizes), probed linearly from `hash % bucket_elems`;
//!   hash −1 marks an empty slot. A record is the key bytes followed by the value bytes.
//! - The hash ([`hash()`]) adds each key byte as a C `char`: sign-extended on x86, not on
//!   arm64/ppc/s390x, so keys with bytes ≥ 0x80 hash differently depending on the CPU
//!   that wrote them. Lookups try the host's variant first, then the other.
//!
//! libgdbm's open-time checks (`gdbmopen.c`) are all applied, plus ours: every address
//! and size is bounds-checked against the file length before it is used, the avail
//! stack is walked with a visited set, and a scan checks the directory's extendible
//! hashing structure so each bucket is read exactly once.

pub mod bucket;
pub mod directory;
pub mod hash;
pub mod header;
mod lock;
mod reader;
mod writer;

use std::path::Path;

pub use bucket::{Bucket, BucketView, Element};
pub use directory::Directory;
pub use hash::{HOST_SIGNED_CHAR, hash};
pub use header::{AvailBlock, AvailElem, Header, Layout, MagicKind};
pub use lock::DataFileLock;
pub use reader::{GdbmFile, Scan, VerifyReport};
pub use writer::{MAX_BLOCK_SIZE, WriteOptions, WriteStats, write_records};

use crate::error::Error;
use crate::location::Format;

/// The original magic number (`GDBM_OMAGIC`).
pub const OMAGIC: u32 = 0x1357_9ACE;
/// Magic of files with 32-bit file addresses (`GDBM_MAGIC32`).
pub const MAGIC32: u32 = 0x1357_9ACD;
/// Magic of files with 64-bit file addresses (`GDBM_MAGIC64`): the usual one.
pub const MAGIC64: u32 = 0x1357_9ACF;
/// Numsync (extended header) magic, 32-bit addresses.
pub const NUMSYNC_MAGIC32: u32 = 0x1357_9AD0;
/// Numsync (extended header) magic, 64-bit addresses.
pub const NUMSYNC_MAGIC64: u32 = 0x1357_9AD1;

/// Bits in a hash value.
pub const HASH_BITS: u32 = 31;
/// Key bytes kept in a bucket element (`SMALL`).
pub const SMALL: usize = 4;
/// Avail entries in a bucket (`BUCKET_AVAIL`).
pub const BUCKET_AVAIL: usize = 6;
/// Smallest block size libgdbm creates files with.
pub const MIN_BLOCK_SIZE: u32 = 512;

/// A format problem found while parsing, before the file path is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The bytes are inconsistent.
    Corrupt(String),
    /// The file uses a variant we refuse.
    Unsupported(String),
}

impl Fault {
    pub(crate) fn corrupt(s: impl Into<String>) -> Self {
        Fault::Corrupt(s.into())
    }

    /// Attaches the file's path.
    pub(crate) fn into_error(self, path: &Path) -> Error {
        let path = path.to_path_buf();
        match self {
            Fault::Corrupt(what) => Error::Corrupt {
                path,
                format: Format::Gdbm,
                what,
            },
            Fault::Unsupported(what) => Error::Unsupported {
                path,
                format: Format::Gdbm,
                what,
            },
        }
    }
}
