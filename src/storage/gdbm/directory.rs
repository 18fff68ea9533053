//! The hash directory: `2^dir_bits` bucket addresses, indexed by the top `dir_bits`
//! bits of a key's 31-bit hash.
//!
//! Several entries share a bucket whose depth (`bucket_bits`) is below `dir_bits`: the
//! aligned run of `2^(dir_bits - bucket_bits)` entries agreeing on the bucket's top
//! bits. [`Directory::parse`] checks every address against the file; the run structure
//! needs the buckets' depths and is checked by the scan.

use super::header::{Header, Layout};
use super::{Fault, HASH_BITS};

/// The parsed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// Bucket address per entry.
    pub entries: Vec<u64>,
    /// `log2` of the entry count.
    pub bits: u32,
}

impl Directory {
    /// Parses `b` (the header's `dir_size` bytes) and checks that every entry points
    /// past the header block at a whole bucket inside the file.
    pub fn parse(b: &[u8], header: &Header, file_len: u64) -> Result<Directory, Fault> {
        let l = header.layout;
        let o = l.off_size();
        let mut entries = Vec::with_capacity(b.len() / o);
        for (i, chunk) in b.chunks_exact(o).enumerate() {
            let adr = l.off(chunk, 0);
            let ok = adr >= i64::from(header.block_size)
                && (adr as u64)
                    .checked_add(u64::from(header.bucket_size))
                    .is_some_and(|end| end <= file_len);
            if !ok {
                return Err(Fault::corrupt(format!(
                    "directory entry {i} points at {adr}, outside the file ({file_len} bytes)"
                )));
            }
            entries.push(adr as u64);
        }
        if entries.len() != 1usize << header.dir_bits {
            return Err(Fault::corrupt(format!(
                "directory has {} entries, expected 2^{}",
                entries.len(),
                header.dir_bits
            )));
        }
        Ok(Directory {
            entries,
            bits: header.dir_bits,
        })
    }

    /// The entry a hash selects.
    pub fn index(&self, hash: u32) -> usize {
        (hash >> (HASH_BITS - self.bits)) as usize
    }

    /// The run of entries a bucket of depth `bucket_bits` reached from entry `i` must
    /// own: `(first, len)`.
    pub fn run(&self, i: usize, bucket_bits: u32) -> (usize, usize) {
        let len = 1usize << (self.bits - bucket_bits.min(self.bits));
        (i & !(len - 1), len)
    }

    /// Writes the directory into `b` (`entries.len() * off_size` bytes).
    pub fn write(&self, b: &mut [u8], layout: Layout) {
        let o = layout.off_size();
        for (i, &adr) in self.entries.iter().enumerate() {
            layout.put_off(b, i * o, adr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_runs() {
        let d = Directory {
            entries: vec![0; 8],
            bits: 3,
        };
        assert_eq!(d.index(0), 0);
        assert_eq!(d.index(0x7FFF_FFFF), 7);
        assert_eq!(d.index(0x4000_0000), 4);
        assert_eq!(d.run(5, 1), (4, 4));
        assert_eq!(d.run(5, 3), (5, 1));
        assert_eq!(d.run(6, 0), (0, 8));
        let d0 = Directory {
            entries: vec![0; 1],
            bits: 0,
        };
        assert_eq!(d0.index(0x7FFF_FFFF), 0);
    }
}
