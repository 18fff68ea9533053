//! Reading a Berkeley DB hash file: open and validate, keyed lookup, full scan, and a
//! structural check.
//!
//! Pages are read with `pread` one at a time into a reusable buffer (no mmap: a file
//! changed underneath must not crash us). Every page number is checked against
//! `last_pgno` (which [`Meta::validate`] has checked against the file length) before it
//! is read, chain pages must point back at the page we came from (so a chain cannot
//! loop), and a full scan marks every page it visits so a page reached twice (a
//! cross-linked or cyclic chain) is reported instead of read again.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::hash::{bucket_of, bucket_page, func5};
use super::meta::{META_LEN, Meta};
use super::page::{
    HashPage, Header, Item, P_HASH, P_HASH_UNSORTED, P_INVALID, P_OVERFLOW, P_OVERHEAD,
    P_OVERHEAD_CHKSUM, verify_page_checksum,
};
use super::{Fault, key_order};
use crate::error::{Error, IoContext, Result};
use crate::location::Format;
use crate::record::{Record, Secret, WipeBuf};
use crate::storage::{Backend, EachRecord, LayoutHint, Records};

thread_local! {
    /// The page buffer of this thread's keyed lookups, kept from one lookup to the
    /// next so that a lookup (a password check makes three) neither allocates nor
    /// zeroes a page. It is wiped after every lookup: a page holds other users'
    /// secrets.
    static LOOKUP_PAGE: RefCell<WipeBuf> = RefCell::new(WipeBuf::zeroed(0));
}

/// An open Berkeley DB hash file, read-only.
#[derive(Debug)]
pub struct BdbFile {
    path: PathBuf,
    file: File,
    meta: Meta,
    overhead: usize,
}

/// What [`BdbFile::verify`] found in a file that reads correctly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Key/data pairs.
    pub records: u64,
    /// Bucket chain pages beyond each bucket's first page.
    pub chain_pages: u64,
    /// Overflow pages.
    pub overflow_pages: u64,
    /// Pages on the free list.
    pub free_pages: u64,
    /// Problems that do not stop reading but that libdb or db_verify would mind.
    pub warnings: Vec<String>,
}

impl BdbFile {
    /// Opens and validates a file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).at(path)?;
        Self::from_file(file, path)
    }

    /// Validates an already open file; `path` is used in messages.
    pub fn from_file(file: File, path: &Path) -> Result<Self> {
        let len = file.metadata().at(path)?.len();
        let mut head = [0u8; META_LEN];
        let n = read_full_at(&file, &mut head, 0).at(path)?;
        let err = |f: Fault| f.into_error(path);
        if n < META_LEN {
            return Err(err(Fault::corrupt(format!(
                "file is {len} bytes, shorter than a metadata page"
            ))));
        }
        let meta = Meta::parse(&head, len).map_err(err)?;
        meta.verify_checksum(&head).map_err(err)?;
        meta.validate(len).map_err(err)?;
        let overhead = if meta.checksums() {
            P_OVERHEAD_CHKSUM
        } else {
            P_OVERHEAD
        };
        Ok(BdbFile {
            path: path.to_path_buf(),
            file,
            meta,
            overhead,
        })
    }

    /// Whether the file is sparse: over 1 MiB, with less than half of its length
    /// allocated. Copying it would write out every hole.
    pub fn is_sparse(&self) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata().at(&self.path)?;
        Ok(m.len() > 1 << 20 && m.blocks().saturating_mul(512) < m.len() / 2)
    }

    /// The open file (the write path copies unchanged pages from it).
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Bytes of page header (26, or 32 with checksums).
    pub(super) fn overhead(&self) -> usize {
        self.overhead
    }

    /// The keys that start with `prefix`, found by reading every bucket page without
    /// copying the keys that do not match: what a per-user question needs, at a
    /// fraction of the cost of a full scan.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let m = &self.meta;
        let mut out = Vec::new();
        let mut page = self.new_page();
        let mut visited = Bitmap::new(m.last_pgno);
        for bucket in 0..=m.max_bucket {
            let (mut pgno, mut prev) = (self.first_page(bucket)?, 0u32);
            while pgno != 0 {
                if !visited.mark(pgno) {
                    return Err(self.corrupt(format!(
                        "page {pgno} is referenced twice (bucket {bucket} chain loops or is cross-linked)"
                    )));
                }
                let hdr = self.read_page(pgno, &mut page)?;
                if hdr.is_hole() {
                    if prev != 0 {
                        return Err(self.corrupt(format!(
                            "page {prev} links to page {pgno}, which was never written"
                        )));
                    }
                    break;
                }
                let hp = self.hash_page(&page, &hdr, prev)?;
                for i in 0..hp.pairs() {
                    match hp.item(2 * i).map_err(|f| self.fault(f))? {
                        Item::Data(k) => {
                            if k.starts_with(prefix) {
                                out.push(k.to_vec());
                            }
                        }
                        Item::OffPage { pgno: first, tlen } => {
                            if tlen as usize >= prefix.len() {
                                let k = self.read_overflow(first, tlen, None)?;
                                if k.starts_with(prefix) {
                                    out.push(k.to_vec());
                                }
                            }
                        }
                    }
                }
                prev = pgno;
                pgno = hdr.next;
            }
        }
        Ok(out)
    }

    /// The parsed metadata page.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn fault(&self, f: Fault) -> Error {
        f.into_error(&self.path)
    }

    pub(super) fn corrupt(&self, what: String) -> Error {
        self.fault(Fault::corrupt(what))
    }

    /// Reads page `pgno` into `buf` (one page long) and returns its header, after
    /// checking the page number and, when enabled, the checksum. A hole reads as zeros.
    pub(super) fn read_page(&self, pgno: u32, buf: &mut [u8]) -> Result<Header> {
        if pgno > self.meta.last_pgno {
            return Err(self.corrupt(format!(
                "page {pgno} is referenced but the last page is {}",
                self.meta.last_pgno
            )));
        }
        let off = u64::from(pgno) * u64::from(self.meta.page_size);
        let n = read_full_at(&self.file, buf, off).at(&self.path)?;
        if n < buf.len() {
            // The file shrank after we validated it.
            return Err(self.corrupt(format!("page {pgno} is past the end of the file")));
        }
        let hdr = Header::parse(buf, self.meta.endian);
        if !hdr.is_hole() {
            if hdr.pgno != pgno {
                return Err(self.corrupt(format!("page {pgno} says it is page {}", hdr.pgno)));
            }
            if self.meta.checksums() {
                verify_page_checksum(buf, self.meta.endian, pgno).map_err(|f| self.fault(f))?;
            }
        }
        Ok(hdr)
    }

    pub(super) fn new_page(&self) -> WipeBuf {
        WipeBuf::zeroed(self.meta.page_size as usize)
    }

    /// Checks that a loaded page is a hash page and indexes it, checking the whole
    /// index.
    pub(super) fn hash_page<'b>(
        &self,
        buf: &'b [u8],
        hdr: &Header,
        prev: u32,
    ) -> Result<HashPage<'b>> {
        self.check_chain_page(hdr, prev)?;
        HashPage::parse(buf, self.meta.endian, self.overhead, hdr).map_err(|f| self.fault(f))
    }

    /// Checks that a page of a bucket chain is a hash page linked back to `prev`.
    fn check_chain_page(&self, hdr: &Header, prev: u32) -> Result<()> {
        if hdr.ptype != P_HASH && hdr.ptype != P_HASH_UNSORTED {
            return Err(self.corrupt(format!(
                "page {} in a bucket chain has type {}, not a hash page",
                hdr.pgno, hdr.ptype
            )));
        }
        if hdr.prev != prev {
            return Err(self.corrupt(format!(
                "page {} links back to page {}, expected {prev} (broken or cyclic chain)",
                hdr.pgno, hdr.prev
            )));
        }
        if hdr.level != 0 {
            return Err(self.corrupt(format!("page {} has tree level {}", hdr.pgno, hdr.level)));
        }
        Ok(())
    }

    /// Reads an overflow chain of `tlen` bytes starting at `pgno`. When `visited` is
    /// given, every page is marked and a page seen before is an error.
    fn read_overflow(
        &self,
        pgno: u32,
        tlen: u32,
        mut visited: Option<&mut Bitmap>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let cap = (self.meta.page_size as usize - self.overhead).max(1);
        let max_pages = (tlen as usize).div_ceil(cap).max(1);
        // Never trust tlen for the allocation: it is bounded by the pages that exist.
        let max_len = (u64::from(self.meta.last_pgno) * cap as u64).min(u64::from(tlen));
        let mut out = Zeroizing::new(Vec::with_capacity((max_len as usize).min(1 << 20)));
        let mut page = self.new_page();
        let (mut cur, mut prev, mut n) = (pgno, 0u32, 0usize);
        while cur != 0 {
            n += 1;
            if n > max_pages {
                return Err(self.corrupt(format!(
                    "overflow chain at page {pgno} is longer than its length {tlen} allows"
                )));
            }
            if let Some(v) = visited.as_deref_mut()
                && !v.mark(cur)
            {
                return Err(self.corrupt(format!(
                    "page {cur} is referenced twice (overflow chain from page {pgno})"
                )));
            }
            let hdr = self.read_page(cur, &mut page)?;
            if hdr.ptype != P_OVERFLOW {
                return Err(self.corrupt(format!(
                    "page {cur} in an overflow chain has type {}, not an overflow page",
                    hdr.ptype
                )));
            }
            if hdr.prev != prev {
                return Err(self.corrupt(format!(
                    "overflow page {cur} links back to page {}, expected {prev}",
                    hdr.prev
                )));
            }
            let len = usize::from(hdr.hf_offset);
            if len > cap || out.len() + len > tlen as usize {
                return Err(self.corrupt(format!(
                    "overflow page {cur} holds {len} bytes, more than the item's length {tlen} allows"
                )));
            }
            out.extend_from_slice(&page[self.overhead..self.overhead + len]);
            prev = cur;
            cur = hdr.next;
        }
        if out.len() != tlen as usize {
            return Err(self.corrupt(format!(
                "overflow item at page {pgno} is incomplete: {} of {tlen} bytes",
                out.len()
            )));
        }
        Ok(out)
    }

    fn resolve(&self, item: Item<'_>) -> Result<Secret> {
        match item {
            Item::Data(d) => Ok(Secret::new(d.to_vec())),
            Item::OffPage { pgno, tlen } => self.read_overflow(pgno, tlen, None),
        }
    }

    /// Compares a search key with a stored key item without copying on-page keys.
    fn key_matches(&self, item: Item<'_>, key: &[u8]) -> Result<bool> {
        match item {
            Item::Data(d) => Ok(d == key),
            Item::OffPage { tlen, .. } if tlen as usize != key.len() => Ok(false),
            Item::OffPage { .. } => Ok(self.resolve(item)?.as_slice() == key),
        }
    }

    /// Looks one key up by hashing it to its bucket and walking that bucket's chain.
    /// Files with a non-default hash function are searched by a full scan.
    pub fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        if !self.meta.standard_hash() {
            for rec in self.scan() {
                let rec = rec?;
                if rec.key == key {
                    return Ok(Some(rec.value));
                }
            }
            return Ok(None);
        }
        let len = self.meta.page_size as usize;
        LOOKUP_PAGE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                if buf.len() < len {
                    *buf = WipeBuf::zeroed(len);
                }
                let found = self.lookup(key, &mut buf[..len]);
                buf.wipe(len);
                found
            }
            // Taken: only a lookup inside a lookup would find it so.
            Err(_) => self.lookup(key, &mut self.new_page()),
        })
    }

    /// [`BdbFile::get`] with the standard hash, reading pages into `page`. Only the
    /// items the search reads are checked, not the whole index of every page.
    fn lookup(&self, key: &[u8], page: &mut [u8]) -> Result<Option<Secret>> {
        let m = &self.meta;
        let bucket = bucket_of(func5(key), m.max_bucket, m.high_mask, m.low_mask);
        let mut pgno = self.first_page(bucket)?;
        let (mut prev, mut steps) = (0u32, 0u32);
        while pgno != 0 {
            steps += 1;
            if steps > m.last_pgno {
                return Err(self.corrupt(format!("bucket {bucket}: chain does not end")));
            }
            let hdr = self.read_page(pgno, page)?;
            if hdr.is_hole() && prev == 0 {
                return Ok(None);
            }
            self.check_chain_page(&hdr, prev)?;
            let hp = HashPage::indexed(page, m.endian, self.overhead, &hdr)
                .map_err(|f| self.fault(f))?;
            if let Some(i) = self.find_pair(&hp, hdr.ptype == P_HASH, key)? {
                let d = hp.item(2 * i + 1).map_err(|f| self.fault(f))?;
                return Ok(Some(self.resolve(d)?));
            }
            prev = pgno;
            pgno = hdr.next;
        }
        Ok(None)
    }

    /// The pair of a hash page whose key is `key`. A sorted page (type 13) is
    /// searched by halves, as libdb does: in [`page_order`](super::page_order) its keys
    /// are ascending, so a key out of place on a damaged page is missed here as libdb
    /// misses it (`sasldb check` reports such pages). An unsorted page, or a search
    /// that meets an off-page key, reads the page pair by pair.
    fn find_pair(&self, hp: &HashPage<'_>, sorted: bool, key: &[u8]) -> Result<Option<usize>> {
        let (mut lo, mut hi) = (0, if sorted { hp.pairs() } else { 0 });
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Item::Data(k) = hp.item(2 * mid).map_err(|f| self.fault(f))? else {
                break;
            };
            match key_order(k, false, key, false) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
            }
        }
        // A search that ran to its end (no off-page key met): not on this page.
        if sorted && lo >= hi {
            return Ok(None);
        }
        for i in 0..hp.pairs() {
            let k = hp.item(2 * i).map_err(|f| self.fault(f))?;
            if self.key_matches(k, key)? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    pub(super) fn first_page(&self, bucket: u32) -> Result<u32> {
        match bucket_page(bucket, &self.meta.spares) {
            Some(p) if p != 0 && p <= self.meta.last_pgno => Ok(p),
            _ => Err(self.corrupt(format!("bucket {bucket} maps outside the file"))),
        }
    }

    /// Every record, bucket by bucket, page by page, in index order: the order of a
    /// libdb cursor, and so of Cyrus's `sasldblistusers2`.
    pub fn scan(&self) -> Scan<'_> {
        Scan::new(self, false)
    }

    /// Reads every record as [`BdbFile::scan`] does, with the same checks and errors,
    /// without copying on-page keys and values out (overflow items are still read
    /// whole, one at a time): what a writer runs on pages it is about to carry over.
    pub fn check_records(&self) -> Result<()> {
        Scan::new(self, false).check_rest()
    }

    /// Reads every page reachable from the buckets and the free list and checks the
    /// structure: page types and links, items, overflow chains, no page reached twice,
    /// and (with the default hash function) that every key lives in its bucket and
    /// every sorted page is in libdb's order.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut scan = Scan::new(self, true);
        for rec in scan.by_ref() {
            rec?;
        }
        let mut report = scan.report;
        // The free list: type 0 pages, each reached once.
        let mut page = self.new_page();
        let (mut cur, mut steps) = (self.meta.free, 0u32);
        while cur != 0 {
            steps += 1;
            if steps > self.meta.last_pgno {
                return Err(self.corrupt("the free list does not end".into()));
            }
            if !scan.visited.mark(cur) {
                return Err(self.corrupt(format!(
                    "free page {cur} is also in use (or the free list loops)"
                )));
            }
            let hdr = self.read_page(cur, &mut page)?;
            if hdr.ptype != P_INVALID || hdr.is_hole() {
                return Err(self.corrupt(format!(
                    "page {cur} on the free list has type {}",
                    hdr.ptype
                )));
            }
            report.free_pages += 1;
            cur = hdr.next;
        }
        Ok(report)
    }
}

impl Backend for BdbFile {
    fn format(&self) -> Format {
        Format::Bdb
    }

    fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        BdbFile::get(self, key)
    }

    fn scan(&self) -> Result<Records<'_>> {
        Ok(Box::new(BdbFile::scan(self)))
    }

    fn scan_each(&self, f: &mut EachRecord<'_>) -> Result<()> {
        BdbFile::scan(self).for_each_lent(f)
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        BdbFile::keys_with_prefix(self, prefix)
    }

    fn layout_hint(&self) -> LayoutHint {
        LayoutHint {
            page_size: Some(self.meta.page_size),
            big_endian: Some(self.meta.endian.is_big()),
            checksums: self.meta.checksums(),
            ..LayoutHint::default()
        }
    }
}

/// Iterator over every record of a [`BdbFile`]; see [`BdbFile::scan`]. After an error
/// it yields nothing more.
pub struct Scan<'a> {
    db: &'a BdbFile,
    next_bucket: u64,
    page: WipeBuf,
    hdr: Header,
    bucket: u32,
    loaded: bool,
    pair: usize,
    pairs: usize,
    visited: Bitmap,
    checking: bool,
    prev_key: Option<(Vec<u8>, bool)>,
    report: VerifyReport,
    done: bool,
}

impl<'a> Scan<'a> {
    fn new(db: &'a BdbFile, checking: bool) -> Self {
        Scan {
            db,
            next_bucket: 0,
            page: db.new_page(),
            hdr: Header::default(),
            bucket: 0,
            loaded: false,
            pair: 0,
            pairs: 0,
            visited: Bitmap::new(db.meta.last_pgno),
            checking,
            prev_key: None,
            report: VerifyReport::default(),
            done: false,
        }
    }

    /// Loads page `pgno` of the current bucket's chain (coming from `prev`).
    /// Returns false for an empty bucket (a hole as the first page).
    fn load(&mut self, pgno: u32, prev: u32) -> Result<bool> {
        if !self.visited.mark(pgno) {
            return Err(self.db.corrupt(format!(
                "page {pgno} is referenced twice (bucket {} chain loops or is cross-linked)",
                self.bucket
            )));
        }
        let hdr = self.db.read_page(pgno, &mut self.page)?;
        if hdr.is_hole() {
            if prev != 0 {
                return Err(self.db.corrupt(format!(
                    "page {prev} links to page {pgno}, which was never written"
                )));
            }
            return Ok(false);
        }
        let hp = self.db.hash_page(&self.page, &hdr, prev)?;
        self.pairs = hp.pairs();
        self.pair = 0;
        self.hdr = hdr;
        self.prev_key = None;
        if prev != 0 {
            self.report.chain_pages += 1;
        }
        Ok(true)
    }

    fn step(&mut self) -> Result<Option<Record>> {
        if !self.next_pair()? {
            return Ok(None);
        }
        let i = self.pair - 1;
        self.read_pair(i).map(Some)
    }

    /// Walks every remaining pair with the checks [`Scan::step`] makes (so the same
    /// errors, at the same places), without copying on-page keys or values.
    fn check_rest(&mut self) -> Result<()> {
        while self.next_pair()? {
            // Both items first, then their overflow chains, as `read_pair` does.
            let (k, d) = pair_items(self.db, &self.page, &self.hdr, self.pair - 1)?;
            for item in [k, d] {
                if let Item::OffPage { pgno, tlen } = item {
                    self.db.read_overflow(pgno, tlen, Some(&mut self.visited))?;
                }
            }
        }
        Ok(())
    }

    /// Calls `f` with every remaining record, lent for the call: on-page keys and
    /// values straight from the page, without an allocation per record (overflow
    /// items are read whole, as [`Scan::step`] reads them). An error of the scan or of
    /// `f` ends it and is returned.
    pub fn for_each_lent(mut self, f: &mut EachRecord<'_>) -> Result<()> {
        while self.next_pair()? {
            let i = self.pair - 1;
            match pair_items(self.db, &self.page, &self.hdr, i)? {
                (Item::Data(key), Item::Data(value)) if !self.checking => {
                    self.report.records += 1;
                    f(key, value)?;
                }
                _ => {
                    let r = self.read_pair(i)?;
                    f(&r.key, &r.value)?;
                }
            }
        }
        Ok(())
    }

    /// Moves to the next pair, loading the pages of the bucket chains as needed;
    /// false at the end.
    fn next_pair(&mut self) -> Result<bool> {
        loop {
            if self.loaded && self.pair < self.pairs {
                self.pair += 1;
                return Ok(true);
            }
            if self.loaded && self.hdr.next != 0 {
                let (next, cur) = (self.hdr.next, self.hdr.pgno);
                self.loaded = self.load(next, cur)?;
                if !self.loaded {
                    return Err(self
                        .db
                        .corrupt(format!("page {cur} links to an empty page")));
                }
                continue;
            }
            self.loaded = false;
            if self.next_bucket > u64::from(self.db.meta.max_bucket) {
                return Ok(false);
            }
            self.bucket = self.next_bucket as u32;
            self.next_bucket += 1;
            let first = self.db.first_page(self.bucket)?;
            self.loaded = self.load(first, 0)?;
        }
    }

    fn read_pair(&mut self, i: usize) -> Result<Record> {
        let db = self.db;
        let (k, d) = pair_items(db, &self.page, &self.hdr, i)?;
        let key = match k {
            Item::Data(b) => b.to_vec(),
            Item::OffPage { pgno, tlen } => {
                self.report.overflow_pages += overflow_pages(tlen, db);
                std::mem::take(&mut *db.read_overflow(pgno, tlen, Some(&mut self.visited))?)
            }
        };
        let value = match d {
            Item::Data(b) => Secret::new(b.to_vec()),
            Item::OffPage { pgno, tlen } => {
                self.report.overflow_pages += overflow_pages(tlen, db);
                db.read_overflow(pgno, tlen, Some(&mut self.visited))?
            }
        };
        if self.checking {
            self.check_pair(&key, matches!(k, Item::OffPage { .. }));
        }
        self.report.records += 1;
        Ok(Record { key, value })
    }

    /// The checks only a verify makes: the key's bucket and the page order.
    fn check_pair(&mut self, key: &[u8], off_page: bool) {
        let m = &self.db.meta;
        if m.standard_hash() {
            let b = bucket_of(func5(key), m.max_bucket, m.high_mask, m.low_mask);
            if b != self.bucket {
                self.report.warnings.push(format!(
                    "page {}: a key hashes to bucket {b} but is stored in bucket {}",
                    self.hdr.pgno, self.bucket
                ));
            }
            if self.hdr.ptype == P_HASH {
                if let Some((prev, prev_off)) = &self.prev_key
                    && key_order(prev, *prev_off, key, off_page) != std::cmp::Ordering::Less
                {
                    self.report.warnings.push(format!(
                        "page {}: keys are not in libdb's sort order; libdb lookups may miss them",
                        self.hdr.pgno
                    ));
                }
                self.prev_key = Some((key.to_vec(), off_page));
            }
        }
    }
}

/// The key and value items of pair `i` of a loaded `page` (whose index `Scan::load`
/// validated).
fn pair_items<'p>(
    db: &BdbFile,
    page: &'p [u8],
    hdr: &Header,
    i: usize,
) -> Result<(Item<'p>, Item<'p>)> {
    let hp = HashPage::trusted(page, db.meta.endian, db.overhead, hdr);
    let k = hp.item(2 * i).map_err(|f| db.fault(f))?;
    let d = hp.item(2 * i + 1).map_err(|f| db.fault(f))?;
    Ok((k, d))
}

fn overflow_pages(tlen: u32, db: &BdbFile) -> u64 {
    let cap = (db.meta.page_size as usize - db.overhead).max(1);
    (tlen as usize).div_ceil(cap) as u64
}

impl Iterator for Scan<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One bit per page: has the scan reached it yet?
#[derive(Debug)]
struct Bitmap(Vec<u64>);

impl Bitmap {
    fn new(last_pgno: u32) -> Self {
        Bitmap(vec![0; (last_pgno as usize + 1).div_ceil(64)])
    }

    /// Marks a page; false if it was marked already.
    fn mark(&mut self, pgno: u32) -> bool {
        let (w, b) = ((pgno / 64) as usize, pgno % 64);
        match self.0.get_mut(w) {
            Some(word) if *word & (1 << b) == 0 => {
                *word |= 1 << b;
                true
            }
            Some(_) => false,
            // Out-of-range page numbers are reported by read_page.
            None => true,
        }
    }
}

/// `pread` until `buf` is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::bdb::{WriteOptions, write_records};

    #[test]
    fn lookups_on_sorted_pages_find_every_key_and_no_other() {
        // Keys that are prefixes of each other (`key1`, `key18`: libdb puts the longer
        // first on a page), a few off-page keys and values, and many pairs per page.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut keys: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| format!("key{}", i % 1500).into_bytes())
            .collect();
        keys.sort();
        keys.dedup();
        keys.push(vec![b'k'; 3000]);
        let value = |k: &[u8]| {
            let mut v = k.to_vec();
            if k.ends_with(b"7") {
                v.resize(5000, b'v');
            }
            v
        };
        let recs: Vec<Result<Record>> = keys
            .iter()
            .map(|k| Ok(Record::new(k.clone(), value(k))))
            .collect();
        let mut f = File::create(&path).unwrap();
        write_records(recs, &WriteOptions::default(), &mut f).unwrap();
        drop(f);
        let db = BdbFile::open(&path).unwrap();
        assert!(db.verify().unwrap().warnings.is_empty());
        for k in &keys {
            assert_eq!(db.get(k).unwrap().as_deref(), Some(&value(k)), "{k:?}");
        }
        for absent in [
            &b"key"[..],
            b"key15000",
            b"key1500",
            b"ke",
            b"",
            b"zzz",
            &[b'k'; 2999],
        ] {
            assert_eq!(db.get(absent).unwrap(), None, "{absent:?}");
        }
    }
}
