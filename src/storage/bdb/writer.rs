//! Writing a Berkeley DB hash file (hash version 9) from a set of records.
//!
//! The whole file is built anew; the write path replaces the old file by rename. The
//! layout is the one libdb itself would reach with a pre-sized table:
//!
//! - `nb = 2^k >= 2` buckets, sized so the average bucket fills about 70% of a page;
//!   `max_bucket = high_mask = nb - 1`, `low_mask = nb/2 - 1`, `spares[0..=k] = 1`, so
//!   bucket `b` starts on page `b + 1`;
//! - each bucket's pairs sorted in libdb's page order (on a common prefix the longer
//!   key first) and packed into its first page, then into chain pages;
//! - items longer than a quarter page go to overflow chains;
//! - chain and overflow pages follow the bucket pages, allocated bucket by bucket,
//!   so every region is written sequentially;
//! - the meta page last, with `nelem` = the number of keys, `ffactor` 0, an empty free
//!   list, a fresh file id, and checksums when the source file had them.
//!
//! libdb can keep updating such a file in place (it splits and chains from there as it
//! would on its own file).

use std::fs::File;
use std::io;

use zeroize::Zeroizing;

use super::hash::{CHARKEY_HASH, func5, log2c};
use super::meta::{DBMETA_CHKSUM, Meta};
use super::page::{
    H_KEYDATA, H_OFFPAGE, HOFFPAGE_SIZE, Header, P_HASH, P_OVERFLOW, P_OVERHEAD, P_OVERHEAD_CHKSUM,
    is_big, item_space, pair_space, set_page_checksum,
};
use super::page_order;
use crate::error::{Error, Result};
use crate::record::{Record, Secret};
use crate::storage::endian::Endian;
use crate::storage::sort::SpillTo;
use crate::storage::tagged::{TAG_BASE, TAG_DELETE, TAG_PUT, TaggedSort};

/// Average bucket fill the writer aims for.
const TARGET_FILL: f64 = 0.70;
/// Bytes buffered per region before a `pwrite`.
const FLUSH_BYTES: usize = 1 << 20;

/// How to lay a new file out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Page size: a power of two from 512 to 65536.
    pub page_size: u32,
    /// Byte order of every integer in the file.
    pub endian: Endian,
    /// Whether to checksum every page.
    pub checksums: bool,
}

impl Default for WriteOptions {
    /// 4096-byte pages in the host's byte order without checksums: what Cyrus's
    /// `saslpasswd2` creates on Debian.
    fn default() -> Self {
        WriteOptions {
            page_size: 4096,
            endian: if cfg!(target_endian = "big") {
                Endian::Big
            } else {
                Endian::Little
            },
            checksums: false,
        }
    }
}

/// Where pages go. Implemented for files (positioned writes) and for `Vec<u8>`
/// (an in-memory image, for tests); fault-injecting sinks can wrap either.
pub trait PageSink {
    /// Writes `buf` at byte `offset`, entirely.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
}

impl PageSink for File {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        crate::storage::persist::pwrite_all(self, buf, offset)
    }
}

impl PageSink for Vec<u8> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset as usize + buf.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }
}

/// What a write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Records written.
    pub records: u64,
    /// Buckets in the table.
    pub buckets: u32,
    /// Pages in the file, meta page included.
    pub pages: u32,
}

/// Records on their way into a new file, sorted into the order the file is written in.
///
/// The bucket of a key is the low bits of its hash, and how many bits depends on the
/// number of buckets, known only once every record is in. Records are therefore sorted
/// by their hash with its bits **reversed** (then by key length, key and tag): whatever
/// the number of buckets `2^k`, the records of one bucket are then contiguous (they
/// share the top `k` bits of the reversed hash), and buckets come in bit-reversed
/// order. Memory is the sort's budget plus one bucket, whatever the number of records.
///
/// Besides the records of the new file ([`BucketSort::put`]), the sort takes the
/// records of the file being replaced ([`BucketSort::base`]) and deletes: for each key
/// the first of delete, put, base wins, so a change set merges with the old file in
/// the same pass.
pub struct BucketSort {
    sort: TaggedSort,
    page_size: usize,
    /// Keys may repeat (base records or deletes were pushed): a counting pass is needed.
    merged: bool,
    space: u64,
    records: u64,
}

impl std::fmt::Debug for BucketSort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketSort")
            .field("records", &self.sort.len())
            .finish()
    }
}

impl BucketSort {
    /// An empty sort for a file of `page_size`-byte pages, spilling as `to` says.
    pub fn new(to: &SpillTo, page_size: u32) -> BucketSort {
        BucketSort {
            sort: TaggedSort::new(to),
            page_size: page_size as usize,
            merged: false,
            space: 0,
            records: 0,
        }
    }

    fn push(&mut self, tag: u8, key: &[u8], value: &[u8]) -> Result<()> {
        for (what, len) in [("key", key.len()), ("value", value.len())] {
            if u32::try_from(len).is_err() {
                return Err(Error::TooLong {
                    what,
                    len,
                    max: u32::MAX as usize,
                });
            }
        }
        self.sort.push(func5(key).reverse_bits(), tag, key, value)
    }

    /// A record of the new file.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let ps = self.page_size;
        self.space += pair_space(item_space(key.len(), ps), item_space(value.len(), ps)) as u64;
        self.records += 1;
        self.push(TAG_PUT, key, value)
    }

    /// A key the new file must not hold (whatever the old one has).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.merged = true;
        self.push(TAG_DELETE, key, &[])
    }

    /// A record of the file being replaced: kept unless a put or delete names its key.
    pub fn base(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.merged = true;
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

    /// The puts and deletes pushed, in the sort's order (for a change set small
    /// enough to apply another way). Base records are not expected here.
    pub fn into_ops(self) -> Result<Vec<(Vec<u8>, Option<Secret>)>> {
        self.sort.into_ops()
    }
}

/// Writes `records` (unique keys) as a complete hash file into `sink`, sorting them in
/// memory. Returns an error for a duplicate key or an item longer than 4 GiB.
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
    check_page_size(opts.page_size)?;
    let mut sort = BucketSort::new(to, opts.page_size);
    for rec in records {
        let rec = rec?;
        sort.put(&rec.key, &rec.value)?;
    }
    write_sorted(sort, opts, sink)
}

fn check_page_size(ps: u32) -> Result<()> {
    if !(512..=65536).contains(&ps) || !ps.is_power_of_two() {
        return Err(Error::Invalid(format!(
            "invalid Berkeley DB page size {ps}"
        )));
    }
    Ok(())
}

/// Writes the winning records of `sort` as a complete hash file into `sink`. Returns
/// an error for a key put twice.
pub fn write_sorted(
    sort: BucketSort,
    opts: &WriteOptions,
    sink: &mut dyn PageSink,
) -> Result<WriteStats> {
    check_page_size(opts.page_size)?;
    let ps = opts.page_size as usize;
    if sort.page_size != ps {
        return Err(Error::Invalid(format!(
            "internal: records sorted for {}-byte pages written with {ps}-byte pages",
            sort.page_size
        )));
    }
    let overhead = if opts.checksums {
        P_OVERHEAD_CHKSUM
    } else {
        P_OVERHEAD
    };
    let merged = sort.merged;
    let (mut space, mut count) = (sort.space, sort.records);
    let mut winners = sort.sort.finish()?;
    if merged {
        // Which records survive is known only now: count them first.
        (space, count) = (0, 0);
        while let Some((_, k, v)) = winners.next()? {
            space += pair_space(item_space(k.len(), ps), item_space(v.len(), ps)) as u64;
            count += 1;
        }
        winners.rewind()?;
    }
    let usable = (ps - overhead) as f64;
    let wanted = (space as f64 / (usable * TARGET_FILL)).ceil() as u64;
    let nb = wanted.clamp(2, 1 << 31).next_power_of_two() as u32;
    let k = log2c(nb);

    let mut w = Writer {
        opts: *opts,
        ps,
        overhead,
        extra_region: Region::new(nb + 1, ps),
        page: Zeroizing::new(vec![0u8; ps]),
    };
    let mut next_pgno = nb + 1;
    let mut bucket = BucketBuf::default();
    // Buckets in bit-reversed order: `t` is the top k bits of the reversed hash.
    let mut t = 0u32;
    let mut written = 0u64;
    loop {
        let rec = winners.next()?;
        let rec_t = rec.map(|(rev, _, _)| top_bits(rev, k));
        // Every bucket before this record's is complete.
        while t < nb && rec_t.is_none_or(|rt| rt > t) {
            let b = t.reverse_bits() >> (32 - k);
            written += bucket.len() as u64;
            w.bucket(&mut bucket, b + 1, &mut next_pgno, sink)?;
            bucket.clear();
            t += 1;
        }
        match rec {
            Some((_, key, value)) => bucket.push(key, value),
            None => break,
        }
    }
    w.extra_region.flush(sink)?;
    debug_assert_eq!(written, count);

    let mut spares = [0u32; 32];
    spares[..=k as usize].fill(1);
    let mut uid = [0u8; 20];
    getrandom::fill(&mut uid).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
    let meta = Meta {
        endian: opts.endian,
        version: 9,
        page_size: opts.page_size,
        metaflags: if opts.checksums { DBMETA_CHKSUM } else { 0 },
        free: 0,
        last_pgno: next_pgno - 1,
        flags: 0,
        uid,
        max_bucket: nb - 1,
        high_mask: nb - 1,
        low_mask: nb / 2 - 1,
        ffactor: 0,
        nelem: u32::try_from(count).unwrap_or(u32::MAX),
        h_charkey: CHARKEY_HASH,
        spares,
    };
    let mut page = Zeroizing::new(vec![0u8; ps]);
    meta.write(&mut page);
    sink.write_all_at(&page, 0).map_err(write_err)?;
    Ok(WriteStats {
        records: count,
        buckets: nb,
        pages: next_pgno,
    })
}

/// The top `k` bits of `v` (`k` from 1 to 31).
fn top_bits(v: u32, k: u32) -> u32 {
    v >> (32 - k)
}

fn write_err(e: io::Error) -> Error {
    Error::io(crate::storage::persist::BEING_WRITTEN, e)
}

/// The records of one bucket, in one buffer (wiped when dropped).
#[derive(Default)]
struct BucketBuf {
    bytes: Zeroizing<Vec<u8>>,
    /// Key start, key length, value length.
    items: Vec<(usize, usize, usize)>,
}

impl BucketBuf {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        let need = self.bytes.len() + key.len() + value.len();
        if need > self.bytes.capacity() {
            let mut grown = Zeroizing::new(Vec::with_capacity(
                need.max(2 * self.bytes.capacity()).max(8192),
            ));
            grown.extend_from_slice(&self.bytes);
            self.bytes = grown;
        }
        self.items.push((self.bytes.len(), key.len(), value.len()));
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn clear(&mut self) {
        self.bytes.iter_mut().for_each(|b| *b = 0);
        self.bytes.clear();
        self.items.clear();
    }

    /// The pairs, sorted in libdb's page order.
    fn sorted_pairs(&self) -> Vec<(&[u8], &[u8])> {
        let mut pairs: Vec<(&[u8], &[u8])> = self
            .items
            .iter()
            .map(|&(at, kl, vl)| (&self.bytes[at..at + kl], &self.bytes[at + kl..at + kl + vl]))
            .collect();
        pairs.sort_unstable_by(|a, b| page_order(a.0, b.0));
        pairs
    }
}

struct Writer {
    opts: WriteOptions,
    ps: usize,
    overhead: usize,
    extra_region: Region,
    page: Zeroizing<Vec<u8>>,
}

impl Writer {
    /// Packs one bucket's records into pages and writes them: the first page at
    /// `first_pgno`, chain pages and overflow pages into the extra region.
    fn bucket(
        &mut self,
        buf: &mut BucketBuf,
        first_pgno: u32,
        next_pgno: &mut u32,
        sink: &mut dyn PageSink,
    ) -> Result<()> {
        let entries = buf.sorted_pairs();
        let groups = self.pack(&entries);
        // Page numbers: chain pages first, then every overflow chain in item order.
        let chain: Vec<u32> = (0..groups.len())
            .map(|i| {
                if i == 0 {
                    first_pgno
                } else {
                    *next_pgno += 1;
                    *next_pgno - 1
                }
            })
            .collect();
        let mut ovf_pgno = *next_pgno;
        let mut overflow_starts = Vec::new();
        for (k, v) in &entries {
            for len in [k.len(), v.len()] {
                if is_big(len, self.ps) {
                    overflow_starts.push(ovf_pgno);
                    ovf_pgno += self.overflow_pages(len);
                }
            }
        }
        let mut ovf_iter = overflow_starts.iter().copied();
        for (i, group) in groups.iter().enumerate() {
            let prev = if i == 0 { 0 } else { chain[i - 1] };
            let next = chain.get(i + 1).copied().unwrap_or(0);
            let links = Links {
                pgno: chain[i],
                prev,
                next,
            };
            render_page(
                &mut self.page,
                entries[group.clone()].iter().copied(),
                links,
                self.overhead,
                &self.opts,
                &mut ovf_iter,
            );
            if i == 0 {
                sink.write_all_at(&self.page, u64::from(first_pgno) * self.ps as u64)
                    .map_err(write_err)?;
            } else {
                self.extra_region.push(chain[i], &self.page, sink)?;
            }
        }
        for (k, v) in &entries {
            for data in [*k, *v] {
                if is_big(data.len(), self.ps) {
                    let start = self.extra_region.next;
                    self.write_overflow(data, start, sink)?;
                }
            }
        }
        *next_pgno = ovf_pgno;
        debug_assert_eq!(self.extra_region.next, ovf_pgno);
        Ok(())
    }

    /// Splits sorted entries into page-sized groups. An off-page key never shares a
    /// page with a key it is a prefix of (or that is a prefix of it): libdb compares
    /// off-page keys shorter-first but on-page keys longer-first, so such a page could
    /// not be sorted for both.
    fn pack(&self, entries: &[(&[u8], &[u8])]) -> Vec<std::ops::Range<usize>> {
        let capacity = self.ps - self.overhead;
        let mut groups = Vec::new();
        let (mut start, mut used, mut big_key_on_page) = (0, 0, false);
        for (i, (key, value)) in entries.iter().enumerate() {
            let need = pair_space(
                item_space(key.len(), self.ps),
                item_space(value.len(), self.ps),
            );
            let big_key = is_big(key.len(), self.ps);
            let conflict = (big_key || big_key_on_page)
                && entries[start..i].iter().any(|(x, _)| {
                    (big_key || is_big(x.len(), self.ps))
                        && (x.starts_with(key) || key.starts_with(x))
                });
            if i > start && (used + need > capacity || conflict) {
                groups.push(start..i);
                start = i;
                used = 0;
                big_key_on_page = false;
            }
            used += need;
            big_key_on_page |= big_key;
        }
        groups.push(start..entries.len());
        groups
    }

    fn overflow_pages(&self, len: usize) -> u32 {
        len.div_ceil(self.ps - self.overhead) as u32
    }

    /// Writes one overflow chain starting at page `start`.
    fn write_overflow(&mut self, data: &[u8], start: u32, sink: &mut dyn PageSink) -> Result<()> {
        let cap = self.ps - self.overhead;
        let n = data.len().div_ceil(cap);
        for (i, chunk) in data.chunks(cap).enumerate() {
            let pgno = start + i as u32;
            let page = &mut self.page[..];
            page.fill(0);
            Header {
                pgno,
                prev: if i == 0 { 0 } else { pgno - 1 },
                next: if i + 1 == n { 0 } else { pgno + 1 },
                entries: 1, // reference count
                hf_offset: chunk.len() as u16,
                level: 0,
                ptype: P_OVERFLOW,
            }
            .write(page, self.opts.endian);
            page[self.overhead..self.overhead + chunk.len()].copy_from_slice(chunk);
            if self.opts.checksums {
                set_page_checksum(page, self.opts.endian);
            }
            self.extra_region.push(pgno, &self.page, sink)?;
        }
        Ok(())
    }
}

/// A hash page's place in its chain.
#[derive(Debug, Clone, Copy)]
pub(super) struct Links {
    pub pgno: u32,
    pub prev: u32,
    pub next: u32,
}

/// Renders a hash page holding `pairs` (sorted in libdb's page order, known to fit)
/// into `page`. Items longer than a quarter page become overflow references to the
/// pages `ovf` yields, in item order.
pub(super) fn render_page<'a>(
    page: &mut [u8],
    pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    links: Links,
    overhead: usize,
    opts: &WriteOptions,
    ovf: &mut impl Iterator<Item = u32>,
) {
    let (ps, e) = (page.len(), opts.endian);
    page.fill(0);
    let mut off = ps;
    let mut idx = overhead;
    let mut items = 0usize;
    for (key, value) in pairs {
        for data in [key, value] {
            if is_big(data.len(), ps) {
                off -= HOFFPAGE_SIZE;
                page[off] = H_OFFPAGE;
                e.put_u32(page, off + 4, ovf.next().expect("overflow page allocated"));
                e.put_u32(page, off + 8, data.len() as u32);
            } else {
                off -= 1 + data.len();
                page[off] = H_KEYDATA;
                page[off + 1..off + 1 + data.len()].copy_from_slice(data);
            }
            e.put_u16(page, idx, off as u16);
            idx += 2;
            items += 1;
        }
    }
    Header {
        pgno: links.pgno,
        prev: links.prev,
        next: links.next,
        entries: items as u16,
        // An empty 64 KiB page stores 65536, which wraps to 0 as libdb's does.
        hf_offset: off as u16,
        level: 0,
        ptype: P_HASH,
    }
    .write(page, e);
    if opts.checksums {
        set_page_checksum(page, e);
    }
}

/// Buffers pages that are written in ascending, contiguous page order.
struct Region {
    first: u32,
    next: u32,
    ps: usize,
    buf: Zeroizing<Vec<u8>>,
}

impl Region {
    fn new(first: u32, ps: usize) -> Self {
        // Capacity is fixed up front so the buffer (which holds secrets) never moves.
        let cap = FLUSH_BYTES.max(ps);
        Region {
            first,
            next: first,
            ps,
            buf: Zeroizing::new(Vec::with_capacity(cap)),
        }
    }

    fn push(&mut self, pgno: u32, page: &[u8], sink: &mut dyn PageSink) -> Result<()> {
        debug_assert_eq!(pgno, self.next, "pages of a region are written in order");
        if self.buf.len() + self.ps > self.buf.capacity() {
            self.flush(sink)?;
        }
        self.buf.extend_from_slice(page);
        self.next += 1;
        Ok(())
    }

    fn flush(&mut self, sink: &mut dyn PageSink) -> Result<()> {
        if !self.buf.is_empty() {
            sink.write_all_at(&self.buf, u64::from(self.first) * self.ps as u64)
                .map_err(write_err)?;
            self.buf.iter_mut().for_each(|b| *b = 0);
            self.buf.clear();
            self.first = self.next;
        }
        Ok(())
    }
}
