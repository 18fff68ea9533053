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

use std::collections::VecDeque;
use std::io;

use zeroize::Zeroizing;

use super::bucket::{Bucket, Element};
use super::hash::{HOST_SIGNED_CHAR, hash};
use super::header::{AvailBlock, Header, Layout, MagicKind};
use super::{HASH_BITS, MIN_BLOCK_SIZE, SMALL};
use crate::error::{Error, Result};
use crate::record::{Record, Secret};
use crate::storage::bdb::PageSink;
use crate::storage::sort::SpillTo;
use crate::storage::tagged::{TAG_BASE, TAG_DELETE, TAG_PUT, TaggedSort, Winners};

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

/// Records on their way into a new file, sorted by hash (then key length, key and
/// tag): the order of the directory, whose entries are the top bits of the hash.
/// Memory is the sort's budget plus one bucket's worth of hashes, whatever the number
/// of records.
///
/// Besides the records of the new file ([`HashSort::put`]), the sort takes the records
/// of the file being replaced ([`HashSort::base`]) and deletes: for each key the first
/// of delete, put, base wins, so a change set merges with the old file in the same
/// pass.
pub struct HashSort {
    sort: TaggedSort,
    signed_char: bool,
}

impl std::fmt::Debug for HashSort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashSort")
            .field("records", &self.sort.len())
            .finish()
    }
}

impl HashSort {
    /// An empty sort hashing with `signed_char` (see [`WriteOptions::signed_char`]),
    /// spilling as `to` says.
    pub fn new(to: &SpillTo, signed_char: bool) -> HashSort {
        HashSort {
            sort: TaggedSort::new(to),
            signed_char,
        }
    }

    fn push(&mut self, tag: u8, key: &[u8], value: &[u8]) -> Result<()> {
        let len = key.len() + value.len();
        if len > i32::MAX as usize {
            return Err(Error::TooLong {
                what: "GDBM record (key and value)",
                len,
                max: i32::MAX as usize,
            });
        }
        self.sort.push(hash(key, self.signed_char), tag, key, value)
    }

    /// A record of the new file.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.push(TAG_PUT, key, value)
    }

    /// A key the new file must not hold (whatever the old one has).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.push(TAG_DELETE, key, &[])
    }

    /// A record of the file being replaced: kept unless a put or delete names its key.
    pub fn base(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.push(TAG_BASE, key, value)
    }

    /// Records (of any kind) pushed.
    pub fn len(&self) -> u64 {
        self.sort.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.sort.len() == 0
    }

    /// Whether part of the sort went to a file.
    pub fn spilled(&self) -> bool {
        self.sort.spilled()
    }

    /// The puts and deletes pushed (for a change set small enough to apply another
    /// way). Base records are not expected here.
    pub fn into_ops(self) -> Result<Vec<(Vec<u8>, Option<Secret>)>> {
        self.sort.into_ops()
    }
}

/// Writes `records` (unique keys) as a complete GDBM file into `sink`, sorting them in
/// memory. Returns an error for a duplicate key, a record libgdbm cannot hold (key
/// plus value over 2 GiB), or keys whose hashes cluster beyond a 2^24-entry directory.
pub fn write_records<I>(
    records: I,
    opts: &WriteOptions,
    sink: &mut dyn PageSink,
) -> Result<WriteStats>
where
    I: IntoIterator<Item = Result<Record>>,
{
    write_records_spilling(records, opts, sink, &SpillTo::memory_only())
}

/// [`write_records`], holding at most the budget of `to` in memory (the rest spills).
pub fn write_records_spilling<I>(
    records: I,
    opts: &WriteOptions,
    sink: &mut dyn PageSink,
    to: &SpillTo,
) -> Result<WriteStats>
where
    I: IntoIterator<Item = Result<Record>>,
{
    check_block_size(opts.block_size)?;
    let mut sort = HashSort::new(to, opts.signed_char);
    for rec in records {
        let rec = rec?;
        sort.put(&rec.key, &rec.value)?;
    }
    write_sorted(sort, opts, sink)
}

fn check_block_size(bs: u32) -> Result<()> {
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) || !bs.is_power_of_two() {
        return Err(Error::Invalid(format!(
            "invalid GDBM block size {bs}: use a power of two from {MIN_BLOCK_SIZE} to \
             {MAX_BLOCK_SIZE}"
        )));
    }
    Ok(())
}

/// The hashes of the winning records, with a look-ahead of at most a bucket's worth.
struct HashFeed<'w> {
    winners: &'w mut Winners,
    ahead: VecDeque<u32>,
    done: bool,
    records: u64,
    data_len: u64,
}

impl HashFeed<'_> {
    /// How many of the next records (at most `limit`) have `prefix` as the top `bits`
    /// bits of their hash.
    fn count(&mut self, bits: u32, prefix: u32, limit: usize) -> Result<usize> {
        while self.ahead.len() < limit && !self.done {
            match self.winners.next()? {
                Some((h, k, v)) => {
                    self.ahead.push_back(h);
                    self.records += 1;
                    self.data_len += (k.len() + v.len()) as u64;
                }
                None => self.done = true,
            }
        }
        Ok(self
            .ahead
            .iter()
            .take(limit)
            .take_while(|&&h| top(h, bits) == prefix)
            .count())
    }
}

/// The top `bits` bits of a hash.
fn top(h: u32, bits: u32) -> u32 {
    if bits == 0 {
        0
    } else {
        h >> (HASH_BITS - bits)
    }
}

/// Plans the buckets of the hash range `prefix` (top `bits` bits): one bucket if it
/// holds at most `cap` records, else the two halves; appends `(depth, records)` in
/// hash order.
fn plan(
    feed: &mut HashFeed<'_>,
    bits: u32,
    prefix: u32,
    cap: usize,
    elems: usize,
    out: &mut Vec<(u8, u32)>,
) -> Result<()> {
    let mut n = feed.count(bits, prefix, cap + 1)?;
    if n > cap && bits < MAX_DIR_BITS {
        plan(feed, bits + 1, prefix << 1, cap, elems, out)?;
        return plan(feed, bits + 1, (prefix << 1) | 1, cap, elems, out);
    }
    if n > cap {
        n = feed.count(bits, prefix, elems + 1)?;
        if n > elems {
            return Err(Error::Invalid(format!(
                "more than {elems} keys share the top {bits} bits of their GDBM hash; a \
                 bucket holds {elems}"
            )));
        }
    }
    feed.ahead.drain(..n);
    out.push((bits as u8, n as u32));
    Ok(())
}

/// Writes the winning records of `sort` as a complete GDBM file into `sink`.
///
/// Two passes over the sorted records: the first plans the buckets (a group of keys
/// sharing their top `b` hash bits gets one bucket of depth `b` if it fills at most 7/8
/// of a bucket's table, else it is split on the next bit), the second writes them.
pub fn write_sorted(
    sort: HashSort,
    opts: &WriteOptions,
    sink: &mut dyn PageSink,
) -> Result<WriteStats> {
    let bs = opts.block_size;
    let l = opts.layout;
    check_block_size(bs)?;
    if sort.signed_char != opts.signed_char {
        return Err(Error::Invalid(
            "internal: records hashed for another char signedness".into(),
        ));
    }
    let elems = l.bucket_elems(bs).expect("a 512-byte block holds a bucket");
    let mut winners = sort.sort.finish()?;

    // Pass 1: buckets, in hash (= directory) order.
    let cap = (elems * 7 / 8).max(1) as usize;
    let mut buckets: Vec<(u8, u32)> = Vec::new();
    let (records, data_len) = {
        let mut feed = HashFeed {
            winners: &mut winners,
            ahead: VecDeque::new(),
            done: false,
            records: 0,
            data_len: 0,
        };
        plan(&mut feed, 0, 0, cap, elems as usize, &mut buckets)?;
        debug_assert!(feed.ahead.is_empty());
        (feed.records, feed.data_len)
    };
    let (_, min_bits) = l.min_directory(bs);
    let dir_bits = buckets
        .iter()
        .map(|b| u32::from(b.0))
        .max()
        .unwrap_or(0)
        .max(min_bits);

    let block = u64::from(bs);
    let dir_size = (l.off_size() as u64) << dir_bits;
    let bucket_base = block + dir_size;
    let data_base = bucket_base + buckets.len() as u64 * block;
    let end = data_base + data_len;
    if end > l.max_offset() {
        return Err(Error::Invalid(format!(
            "{end} bytes do not fit in a GDBM file with {}-byte addresses",
            l.off_size()
        )));
    }

    // Pass 2: buckets pointing at the records, laid out in the same order.
    winners.rewind()?;
    let mut out = Stream::new(bucket_base);
    let mut data = Stream::new(data_base);
    let mut raw = Zeroizing::new(vec![0u8; bs as usize]);
    let mut ptr = data_base;
    for &(bits, n) in &buckets {
        let mut bucket = Bucket::new(u32::from(bits), elems);
        for _ in 0..n {
            let (h, key, value) = winners
                .next()?
                .ok_or_else(|| Error::Invalid("internal: fewer records than planned".into()))?;
            let mut key_start = [0u8; SMALL];
            let k = key.len().min(SMALL);
            key_start[..k].copy_from_slice(&key[..k]);
            let placed = bucket.insert(Element {
                hash: h as i32,
                key_start,
                data_pointer: ptr as i64,
                key_size: key.len() as i32,
                data_size: value.len() as i32,
            });
            debug_assert!(placed, "buckets are planned not to overflow");
            ptr += (key.len() + value.len()) as u64;
            data.push(key, sink)?;
            data.push(value, sink)?;
        }
        raw.fill(0);
        bucket.write(&mut raw, l);
        out.push(&raw, sink)?;
    }
    out.flush(sink)?;
    data.flush(sink)?;
    debug_assert_eq!(ptr, end);

    // The directory: each bucket's address, once per entry it owns.
    let mut dir = Stream::new(block);
    let o = l.off_size();
    let mut entry = [0u8; 8];
    for (i, &(bits, _)) in buckets.iter().enumerate() {
        let addr = bucket_base + i as u64 * block;
        l.put_off(&mut entry, 0, addr);
        for _ in 0..1u64 << (dir_bits - u32::from(bits)) {
            dir.push(&entry[..o], sink)?;
        }
    }
    dir.flush(sink)?;

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
        records,
        buckets: buckets.len() as u32,
        dir_bits,
        file_len: end,
    })
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
