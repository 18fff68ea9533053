//! Writing a GDBM file from a set of records.
//!
//! The whole file is built anew; the write path replaces the old file by rename. The
//! layout is one libgdbm could have reached itself, built with bounded work:
//!
//! - keys are sorted by hash and the hash space is split like extendible hashing
//!   does: a group of keys sharing their top `b` hash bits gets one bucket of depth `b`
//!   if it fills at most 7/8 of a bucket's table, else it is split on the next bit
//!   (an empty half still gets its own empty bucket). No bucket can overflow, and the
//!   directory depth is the deepest bucket's (at least libgdbm's minimum for the block
//!   size);
//! - block 0 is the header (empty avail table), the directory follows at block 1, then
//!   every bucket in directory order (one block each, no free extents), then every
//!   record (key bytes then value bytes) contiguously in bucket order;
//! - `next_block` is the end of the file, so libgdbm can keep updating the file in
//!   place, allocating new space from there.
//!
//! Keys are hashed with the `char` signedness asked for (by default this machine's,
//! so the local libgdbm finds every key).

use std::io;
use std::ops::Range;

use zeroize::Zeroizing;

use super::bucket::{Bucket, Element};
use super::directory::Directory;
use super::hash::{HOST_SIGNED_CHAR, hash};
use super::header::{AvailBlock, Header, Layout, MagicKind};
use super::{HASH_BITS, MIN_BLOCK_SIZE, SMALL};
use crate::error::{Error, Result};
use crate::record::{Record, Secret};
use crate::storage::bdb::PageSink;

/// Largest block size the writer accepts.
pub const MAX_BLOCK_SIZE: u32 = 1 << 24;
/// Deepest directory the writer builds (2^24 entries); keys whose hashes cluster more
/// than that allows are refused.
const MAX_DIR_BITS: u32 = 24;
/// Bytes buffered per region before a `pwrite`.
const FLUSH_BYTES: usize = 1 << 20;

/// How to lay a new file out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Block size: a power of two from 512 to 16 MiB. Buckets are one block.
    pub block_size: u32,
    /// Whether to write the numsync (extended header) format.
    pub numsync: bool,
    /// Byte order and address width.
    pub layout: Layout,
    /// Which `char` signedness to hash keys with.
    pub signed_char: bool,
}

impl Default for WriteOptions {
    /// 4096-byte blocks, standard format, this machine's layout and `char`: what
    /// libgdbm here creates (and so what Cyrus writes).
    fn default() -> Self {
        WriteOptions {
            block_size: 4096,
            numsync: false,
            layout: Layout::host(),
            signed_char: HOST_SIGNED_CHAR,
        }
    }
}

/// What a write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Records written.
    pub records: u64,
    /// Buckets in the file.
    pub buckets: u32,
    /// Directory depth.
    pub dir_bits: u32,
    /// Length of the file.
    pub file_len: u64,
}

struct Entry {
    hash: u32,
    key: Vec<u8>,
    value: Secret,
}

/// Writes `records` (unique keys) as a complete GDBM file into `sink`. Returns an
/// error for a duplicate key, a record libgdbm cannot hold (key plus value over
/// 2 GiB), or keys whose hashes cluster beyond a 2^24-entry directory.
pub fn write_records<I>(
    records: I,
    opts: &WriteOptions,
    sink: &mut dyn PageSink,
) -> Result<WriteStats>
where
    I: IntoIterator<Item = Result<Record>>,
{
    let bs = opts.block_size;
    let l = opts.layout;
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) || !bs.is_power_of_two() {
        return Err(Error::Invalid(format!(
            "invalid GDBM block size {bs}: use a power of two from {MIN_BLOCK_SIZE} to \
             {MAX_BLOCK_SIZE}"
        )));
    }
    let elems = l.bucket_elems(bs).expect("a 512-byte block holds a bucket");
    let mut entries = Vec::new();
    for rec in records {
        let Record { key, value } = rec?;
        let len = key.len() + value.len();
        if len > i32::MAX as usize {
            return Err(Error::TooLong {
                what: "GDBM record (key and value)",
                len,
                max: i32::MAX as usize,
            });
        }
        entries.push(Entry {
            hash: hash(&key, opts.signed_char),
            key,
            value,
        });
    }
    entries.sort_unstable_by(|a, b| a.hash.cmp(&b.hash).then_with(|| a.key.cmp(&b.key)));
    if let Some(w) = entries.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(Error::Invalid(format!(
            "duplicate key `{}` in the records to write",
            String::from_utf8_lossy(&w[0].key)
        )));
    }

    // Buckets, in hash (= directory) order.
    let cap = (elems * 7 / 8).max(1) as usize;
    let mut plan = Vec::new();
    split(
        &entries,
        0..entries.len(),
        0,
        cap,
        elems as usize,
        &mut plan,
    )?;
    let (_, min_bits) = l.min_directory(bs);
    let dir_bits = plan.iter().map(|p| p.0).max().unwrap_or(0).max(min_bits);

    let block = u64::from(bs);
    let dir_size = (l.off_size() as u64) << dir_bits;
    let bucket_base = block + dir_size;
    let data_base = bucket_base + plan.len() as u64 * block;
    let data_len: u64 = entries
        .iter()
        .map(|e| (e.key.len() + e.value.len()) as u64)
        .sum();
    let end = data_base + data_len;
    if end > l.max_offset() {
        return Err(Error::Invalid(format!(
            "{end} bytes do not fit in a GDBM file with {}-byte addresses",
            l.off_size()
        )));
    }

    // Buckets, pointing at the records laid out in the same order.
    let mut dir = Directory {
        entries: Vec::with_capacity(1 << dir_bits),
        bits: dir_bits,
    };
    let mut out = Stream::new(bucket_base);
    let mut raw = vec![0u8; bs as usize];
    let mut ptr = data_base;
    for (i, (bits, range)) in plan.iter().enumerate() {
        let mut bucket = Bucket::new(*bits, elems);
        for e in &entries[range.clone()] {
            let mut key_start = [0u8; SMALL];
            let n = e.key.len().min(SMALL);
            key_start[..n].copy_from_slice(&e.key[..n]);
            let placed = bucket.insert(Element {
                hash: e.hash as i32,
                key_start,
                data_pointer: ptr as i64,
                key_size: e.key.len() as i32,
                data_size: e.value.len() as i32,
            });
            debug_assert!(placed, "buckets are planned not to overflow");
            ptr += (e.key.len() + e.value.len()) as u64;
        }
        raw.fill(0);
        bucket.write(&mut raw, l);
        out.push(&raw, sink)?;
        let addr = bucket_base + i as u64 * block;
        dir.entries
            .extend(std::iter::repeat_n(addr, 1 << (dir_bits - bits)));
    }
    out.flush(sink)?;
    debug_assert_eq!(dir.entries.len(), 1 << dir_bits);

    let mut data = Stream::new(data_base);
    for e in &entries {
        data.push(&e.key, sink)?;
        data.push(&e.value, sink)?;
    }
    data.flush(sink)?;

    let mut raw_dir = vec![0u8; dir_size as usize];
    dir.write(&mut raw_dir, l);
    sink.write_all_at(&raw_dir, block).map_err(write_err)?;

    let mut header = Header {
        layout: l,
        magic: MagicKind::for_layout(l, opts.numsync),
        block_size: bs,
        dir: block,
        dir_size: dir_size as u32,
        dir_bits,
        bucket_size: bs,
        bucket_elems: elems,
        next_block: end,
        ext: opts.numsync.then_some((0, 0)),
        avail: AvailBlock::default(),
    };
    header.avail.size = header.avail_capacity();
    raw.fill(0);
    header.write(&mut raw);
    sink.write_all_at(&raw, 0).map_err(write_err)?;
    Ok(WriteStats {
        records: entries.len() as u64,
        buckets: plan.len() as u32,
        dir_bits,
        file_len: end,
    })
}

/// Splits the entries of `range` (sorted by hash, sharing their top `bits` bits) into
/// buckets of at most `cap` entries, appending `(depth, range)` in hash order.
fn split(
    entries: &[Entry],
    range: Range<usize>,
    bits: u32,
    cap: usize,
    elems: usize,
    plan: &mut Vec<(u32, Range<usize>)>,
) -> Result<()> {
    if range.len() <= cap || bits >= MAX_DIR_BITS {
        if range.len() > elems {
            return Err(Error::Invalid(format!(
                "{} keys share the top {bits} bits of their GDBM hash; a bucket holds {elems}",
                range.len()
            )));
        }
        plan.push((bits, range));
        return Ok(());
    }
    let bit = 1u32 << (HASH_BITS - 1 - bits);
    let mid = range.start + entries[range.clone()].partition_point(|e| e.hash & bit == 0);
    split(entries, range.start..mid, bits + 1, cap, elems, plan)?;
    split(entries, mid..range.end, bits + 1, cap, elems, plan)
}

fn write_err(e: io::Error) -> Error {
    Error::io(crate::storage::persist::BEING_WRITTEN, e)
}

/// Buffers bytes written sequentially from `start`. The buffer (which holds secrets)
/// has a fixed capacity so it never moves, and is zeroed after every flush.
struct Stream {
    start: u64,
    buf: Zeroizing<Vec<u8>>,
}

impl Stream {
    fn new(start: u64) -> Self {
        Stream {
            start,
            buf: Zeroizing::new(Vec::with_capacity(FLUSH_BYTES)),
        }
    }

    fn push(&mut self, data: &[u8], sink: &mut dyn PageSink) -> Result<()> {
        if self.buf.len() + data.len() > self.buf.capacity() {
            self.flush(sink)?;
        }
        if data.len() >= self.buf.capacity() {
            sink.write_all_at(data, self.start).map_err(write_err)?;
            self.start += data.len() as u64;
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    fn flush(&mut self, sink: &mut dyn PageSink) -> Result<()> {
        if !self.buf.is_empty() {
            sink.write_all_at(&self.buf, self.start)
                .map_err(write_err)?;
            self.start += self.buf.len() as u64;
            self.buf.iter_mut().for_each(|b| *b = 0);
            self.buf.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::endian::Endian;

    fn recs(n: usize) -> Vec<Result<Record>> {
        (0..n)
            .map(|i| {
                Ok(Record::new(
                    format!("user{i}\0realm\0userPassword").into_bytes(),
                    format!("secret {i}").into_bytes(),
                ))
            })
            .collect()
    }

    #[test]
    fn empty_database_is_header_directory_bucket() {
        let mut img = Vec::new();
        let st = write_records(recs(0), &WriteOptions::default(), &mut img).unwrap();
        assert_eq!(st.buckets, 1);
        assert_eq!(st.dir_bits, 9);
        assert_eq!(img.len() as u64, st.file_len);
        assert_eq!(img.len(), 4096 * 3);
    }

    #[test]
    fn buckets_never_overflow_and_directory_grows() {
        let opts = WriteOptions {
            block_size: 512,
            ..Default::default()
        };
        let mut img = Vec::new();
        let st = write_records(recs(3000), &opts, &mut img).unwrap();
        assert!(st.buckets > 3000 / 16, "{st:?}");
        assert!(st.dir_bits > 6, "{st:?}");
    }

    #[test]
    fn refusals() {
        let mut img = Vec::new();
        let dup = vec![
            Ok(Record::new(b"a".to_vec(), b"1".to_vec())),
            Ok(Record::new(b"a".to_vec(), b"2".to_vec())),
        ];
        assert!(write_records(dup, &WriteOptions::default(), &mut img).is_err());
        for bs in [256, 1000, 1 << 25] {
            let o = WriteOptions {
                block_size: bs,
                ..Default::default()
            };
            assert!(write_records(recs(1), &o, &mut img).is_err(), "{bs}");
        }
        let o = WriteOptions {
            layout: Layout::ilp32(Endian::Little),
            ..Default::default()
        };
        write_records(recs(10), &o, &mut img).unwrap();
    }
}
