//! Reading a GDBM file: open and validate, keyed lookup, full scan, structural check.
//!
//! Blocks are read with `pread` (no mmap: a file changed underneath must not crash
//! us). Opening reads the header, its avail table, the whole avail stack (with a
//! visited set, so a looping chain is an error) and the directory, checking every
//! address against the file length. Buckets and records are read on demand; every
//! element is checked against the file length before its record is read, so no
//! allocation is larger than the file.
//!
//! Reading takes no lock. libgdbm writers (Cyrus's GDBM backend) update the file in
//! place under `flock`, so a read racing one may see a torn update. A file that does
//! not parse is therefore parsed again under a shared lock ([`GdbmFile::open`]), a
//! lookup that fails is repeated under it, and a scan that fails while another process
//! holds the lock reports [`Error::Busy`], not corruption. Writers of this crate read
//! the file under their exclusive lock ([`GdbmFile::from_locked`]).

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::bucket::{Bucket, BucketView, Element};
use super::directory::Directory;
use super::hash::{HOST_SIGNED_CHAR, hash, variants_differ};
use super::header::{AvailBlock, HEAD_PROBE, Header};
use super::lock::{DataFileLock, READ_WAIT, held_elsewhere};
use super::{Fault, SMALL};
use crate::error::{Error, IoContext, Result};
use crate::location::Format;
use crate::record::{Record, Secret};
use crate::storage::{Backend, EachRecord, LayoutHint, Records};

/// An open GDBM file, read-only.
#[derive(Debug)]
pub struct GdbmFile {
    path: PathBuf,
    file: File,
    len: u64,
    header: Header,
    dir: Directory,
    stack: Vec<(u64, AvailBlock)>,
    /// Read under a lock this process holds for the whole life of the handle: no
    /// libgdbm writer can be in the file, so a fault is corruption.
    own_lock: bool,
}

/// What [`GdbmFile::verify`] found in a file that reads correctly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Key/value pairs.
    pub records: u64,
    /// Distinct buckets.
    pub buckets: u64,
    /// Blocks on the avail stack (beyond the header's table).
    pub avail_blocks: u64,
    /// Free extents in the header, the avail stack and the buckets.
    pub free_extents: u64,
    /// Keys whose hash is the other `char` signedness's than this machine's: the local
    /// libgdbm cannot find them (and its dumps stop at them). Rewriting fixes that.
    pub foreign_hash_keys: u64,
    /// Problems that do not stop reading but that libgdbm would mind.
    pub warnings: Vec<String>,
}

impl GdbmFile {
    /// Opens and validates a file. One that does not parse is parsed again under
    /// libgdbm's shared lock (waiting up to [`READ_WAIT`] for a libgdbm writer to
    /// finish its update) before the error is believed.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).at(path)?;
        match Self::from_file(file, path) {
            Ok(f) => Ok(f),
            Err(_) => {
                let lock = DataFileLock::acquire_shared(path, READ_WAIT)?;
                let mut f = Self::from_locked(&lock)?;
                drop(lock);
                f.own_lock = false;
                Ok(f)
            }
        }
    }

    /// Validates the file `lock` holds; the handle is meant to be used while the lock
    /// is held (a fault is then corruption, never a concurrent update).
    pub fn from_locked(lock: &DataFileLock) -> Result<Self> {
        let file = lock.file().try_clone().at(lock.path())?;
        let mut f = Self::from_file(file, lock.path())?;
        f.own_lock = true;
        Ok(f)
    }

    /// Validates an already open file; `path` is used in messages.
    pub fn from_file(file: File, path: &Path) -> Result<Self> {
        let len = file.metadata().at(path)?.len();
        let err = |f: Fault| f.into_error(path);
        let mut head = vec![0u8; HEAD_PROBE.min(len as usize)];
        read_exact_at(&file, &mut head, 0, path)?;
        let mut header = Header::parse(&head).map_err(err)?;
        header.validate(len).map_err(err)?;
        let mut block = vec![0u8; header.block_size as usize];
        read_exact_at(&file, &mut block, 0, path)?;
        header.parse_avail(&block).map_err(err)?;
        drop(block);
        let stack = read_avail_stack(&file, &header, len).map_err(err)?;
        let mut raw = vec![0u8; header.dir_size as usize];
        read_exact_at(&file, &mut raw, header.dir, path)?;
        let dir = Directory::parse(&raw, &header, len).map_err(err)?;
        Ok(GdbmFile {
            path: path.to_path_buf(),
            file,
            len,
            header,
            dir,
            stack,
            own_lock: false,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The parsed directory.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length when it was opened.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    fn fault(&self, f: Fault) -> Error {
        f.into_error(&self.path)
    }

    /// A read error, unless another process holds libgdbm's lock on the file (a libgdbm
    /// writer updating it in place): then [`Error::Busy`].
    fn busy_or(&self, e: Error) -> Error {
        let from_file = matches!(
            e,
            Error::Corrupt { .. } | Error::Unsupported { .. } | Error::Io { .. }
        );
        if from_file && !self.own_lock && held_elsewhere(&self.path) {
            Error::Busy {
                path: self.path.clone(),
                format: Format::Gdbm,
            }
        } else {
            e
        }
    }

    fn corrupt(&self, what: String) -> Error {
        self.fault(Fault::Corrupt(what))
    }

    /// Reads and checks the bucket at `addr` (the directory checked it is in the file).
    pub fn bucket(&self, addr: u64) -> Result<Bucket> {
        let mut raw = vec![0u8; self.header.bucket_size as usize];
        read_exact_at(&self.file, &mut raw, addr, &self.path)?;
        Bucket::parse(&raw, &self.header, addr).map_err(|f| self.fault(f))
    }

    /// Reads the record an element points at: `(key, value)`.
    fn record(&self, e: &Element) -> Result<(Vec<u8>, Secret)> {
        let (at, k, d) = e.record(self.len).map_err(|f| self.fault(f))?;
        let mut buf = Zeroizing::new(vec![0u8; k + d]);
        read_exact_at(&self.file, &mut buf, at, &self.path)?;
        Ok((buf[..k].to_vec(), Zeroizing::new(buf[k..].to_vec())))
    }

    /// The record an element points at, `(key, value)`, lent from `window`, a
    /// read-ahead buffer over the file: a scan reads records that mostly lie one after
    /// another, so one `pread` serves many. A record longer than the window is read
    /// whole into `big`.
    fn record_lent<'w>(
        &self,
        e: &Element,
        window: &'w mut Window,
        big: &'w mut Secret,
    ) -> Result<(&'w [u8], &'w [u8])> {
        let (at, k, d) = e.record(self.len).map_err(|f| self.fault(f))?;
        let n = k + d;
        let hit = at >= window.at && at + n as u64 <= window.at + window.len as u64;
        if !hit && n > WINDOW {
            // The last record's bytes are wiped as they are dropped.
            *big = Secret::new(vec![0u8; n]);
            read_exact_at(&self.file, big, at, &self.path)?;
            return Ok(big.split_at(k));
        }
        if !hit {
            let want = (self.len - at).min(WINDOW as u64) as usize;
            window.len = 0;
            let got = read_full_at(&self.file, &mut window.buf[..want], at).at(&self.path)?;
            if got < n {
                return Err(Fault::corrupt(format!(
                    "{n} bytes at {at} are past the end of the file"
                ))
                .into_error(&self.path));
            }
            window.at = at;
            window.len = got;
        }
        let off = (at - window.at) as usize;
        Ok(window.buf[off..off + n].split_at(k))
    }

    /// Looks one key up: hash, directory entry, bucket, linear probe. Keys are tried
    /// with this machine's `char` signedness first, then (if they have bytes ≥ 0x80)
    /// with the other, so files written on x86 and on arm64 both work.
    ///
    /// A lookup that fails is repeated on the file opened again under libgdbm's shared
    /// lock (a libgdbm writer may have been updating it), unless this handle was read
    /// under a lock of this process.
    pub fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        match self.get_once(key) {
            Err(_) if !self.own_lock => {
                let lock = DataFileLock::acquire_shared(&self.path, READ_WAIT)?;
                Self::from_locked(&lock)?.get_once(key)
            }
            r => r,
        }
    }

    fn get_once(&self, key: &[u8]) -> Result<Option<Secret>> {
        let mut variants = vec![HOST_SIGNED_CHAR];
        if variants_differ(key) {
            variants.push(!HOST_SIGNED_CHAR);
        }
        let mut raw = vec![0u8; self.header.bucket_size as usize];
        for signed in variants {
            let h = hash(key, signed);
            let addr = self.dir.entries[self.dir.index(h)];
            read_exact_at(&self.file, &mut raw, addr, &self.path)?;
            let bucket = BucketView::parse(&raw, &self.header, addr).map_err(|f| self.fault(f))?;
            for e in bucket.probe(h) {
                if !e.may_be(h, key) {
                    continue;
                }
                let (k, v) = self.record(&e)?;
                if k == key {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    /// Every record, bucket by bucket in directory order, slot by slot: the order of
    /// libgdbm's `gdbm_firstkey`/`gdbm_nextkey` (and so of Cyrus's listing).
    pub fn scan(&self) -> Scan<'_> {
        Scan {
            db: self,
            next_dir: 0,
            current: None,
            slot: 0,
            seen: HashSet::new(),
            window: Window {
                buf: Zeroizing::new(vec![0u8; WINDOW]),
                at: 0,
                len: 0,
            },
            big: Secret::default(),
            report: VerifyReport {
                avail_blocks: self.stack.len() as u64,
                free_extents: (self.header.avail.elems.len()
                    + self.stack.iter().map(|(_, b)| b.elems.len()).sum::<usize>())
                    as u64,
                ..Default::default()
            },
            done: false,
        }
    }

    /// Reads every bucket and record and checks the structure: the directory's runs,
    /// each bucket's count, each key's hash, first bytes and bucket.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut scan = self.scan();
        for rec in scan.by_ref() {
            rec?;
        }
        let mut report = scan.report;
        if report.foreign_hash_keys > 0 {
            report.warnings.push(format!(
                "{} key(s) are hashed with {} `char`, unlike this machine: libgdbm here cannot \
                 find them",
                report.foreign_hash_keys,
                if HOST_SIGNED_CHAR {
                    "unsigned"
                } else {
                    "signed"
                }
            ));
        }
        Ok(report)
    }
}

impl Backend for GdbmFile {
    fn format(&self) -> Format {
        Format::Gdbm
    }

    fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        GdbmFile::get(self, key)
    }

    fn scan(&self) -> Result<Records<'_>> {
        Ok(Box::new(GdbmFile::scan(self)))
    }

    fn scan_each(&self, f: &mut EachRecord<'_>) -> Result<()> {
        GdbmFile::scan(self).for_each_lent(f)
    }

    fn layout_hint(&self) -> LayoutHint {
        LayoutHint {
            page_size: Some(self.header.block_size),
            big_endian: Some(self.header.layout.endian.is_big()),
            numsync: self.header.numsync(),
            ..LayoutHint::default()
        }
    }
}

/// Walks the avail stack from the header, checking every block; a block reached twice
/// (a loop) or more blocks than the file can hold is an error.
fn read_avail_stack(
    file: &File,
    header: &Header,
    len: u64,
) -> Result<Vec<(u64, AvailBlock)>, Fault> {
    let blk_len = header.stack_block_len();
    let max_blocks = len / blk_len as u64 + 1;
    let mut seen = HashSet::from([header.avail_offset() as u64]);
    let mut out = Vec::new();
    let mut next = header.avail.next_block;
    let mut buf = vec![0u8; blk_len];
    while next != 0 {
        if !seen.insert(next) {
            return Err(Fault::corrupt(format!(
                "the avail stack loops back to the block at {next}"
            )));
        }
        if out.len() as u64 >= max_blocks {
            return Err(Fault::corrupt(
                "the avail stack is longer than the file allows",
            ));
        }
        if next.checked_add(blk_len as u64).is_none_or(|end| end > len) {
            return Err(Fault::corrupt(format!(
                "avail block at {next} ({blk_len} bytes) is outside the file ({len} bytes)"
            )));
        }
        let n = read_full_at(file, &mut buf, next)
            .map_err(|e| Fault::corrupt(format!("avail block at {next}: {e}")))?;
        if n < blk_len {
            return Err(Fault::corrupt(format!(
                "avail block at {next} is past the end"
            )));
        }
        let blk = AvailBlock::parse(&buf, header.layout, header.bucket_size, header.next_block)
            .map_err(|f| match f {
                Fault::Corrupt(w) => Fault::Corrupt(format!("avail block at {next}: {w}")),
                other => other,
            })?;
        let following = blk.next_block;
        out.push((next, blk));
        next = following;
    }
    Ok(out)
}

/// Bytes a scan reads ahead at once (records are usually written one after another).
const WINDOW: usize = 64 << 10;

/// A scan's read-ahead buffer: `len` bytes of the file from offset `at` (wiped when
/// dropped: records hold secrets).
struct Window {
    buf: Zeroizing<Vec<u8>>,
    at: u64,
    len: usize,
}

/// Iterator over every record of a [`GdbmFile`]; see [`GdbmFile::scan`]. It checks the
/// structure as it goes and, after an error, yields nothing more.
pub struct Scan<'a> {
    db: &'a GdbmFile,
    next_dir: usize,
    current: Option<(Bucket, u64, usize, usize)>,
    slot: usize,
    seen: HashSet<u64>,
    window: Window,
    /// A record longer than the window, read whole.
    big: Secret,
    report: VerifyReport,
    done: bool,
}

impl Scan<'_> {
    /// The next used element, with its bucket's address and directory run.
    fn next_element(&mut self) -> Result<Option<(Element, u64, usize, usize)>> {
        let db = self.db;
        loop {
            if let Some((bucket, addr, first, run)) = &self.current {
                while self.slot < bucket.table.len() {
                    let e = bucket.table[self.slot];
                    self.slot += 1;
                    if !e.is_empty() {
                        return Ok(Some((e, *addr, *first, *run)));
                    }
                }
            }
            self.current = None;
            let i = self.next_dir;
            let Some(&addr) = db.dir.entries.get(i) else {
                return Ok(None);
            };
            if !self.seen.insert(addr) {
                return Err(db.corrupt(format!(
                    "bucket at {addr} is referenced again from directory entry {i}, apart \
                     from its first run"
                )));
            }
            let bucket = db.bucket(addr)?;
            let (first, run) = db.dir.run(i, bucket.bits);
            if first != i || db.dir.entries[i..i + run].iter().any(|&a| a != addr) {
                return Err(db.corrupt(format!(
                    "bucket at {addr} of depth {} should own directory entries {first}..{}, \
                     but it is reached from entry {i} and the run differs",
                    bucket.bits,
                    first + run
                )));
            }
            let used = bucket.table.iter().filter(|e| !e.is_empty()).count();
            if used != bucket.count as usize {
                return Err(db.corrupt(format!(
                    "bucket at {addr} says it holds {} elements but {used} slots are used",
                    bucket.count
                )));
            }
            self.report.buckets += 1;
            self.report.free_extents += bucket.avail.len() as u64;
            self.next_dir = i + run;
            self.slot = 0;
            self.current = Some((bucket, addr, first, run));
        }
    }

    /// The next record, lent until the next call.
    fn step_lent(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        let Some((e, addr, first, run)) = self.next_element()? else {
            return Ok(None);
        };
        let (key, value) = self.db.record_lent(&e, &mut self.window, &mut self.big)?;
        check_placement(self.db, &mut self.report, &e, addr, first..first + run, key)?;
        Ok(Some((key, value)))
    }

    /// Calls `f` with every remaining record, lent for the call: the scan without an
    /// allocation per record. An error of the scan ends it as the iterator's does;
    /// an error of `f` ends it and is returned unchanged.
    pub fn for_each_lent(mut self, f: &mut EachRecord<'_>) -> Result<()> {
        let db = self.db;
        while !self.done {
            match self.step_lent() {
                Ok(Some((key, value))) => f(key, value)?,
                Ok(None) => self.done = true,
                Err(e) => return Err(db.busy_or(e)),
            }
        }
        Ok(())
    }
}

/// Checks that a record's key belongs to the element that points at it (its first
/// bytes and hash) and to the bucket it was found in (the hash's directory entry is
/// in `run`), and counts it.
fn check_placement(
    db: &GdbmFile,
    report: &mut VerifyReport,
    e: &Element,
    addr: u64,
    run: std::ops::Range<usize>,
    key: &[u8],
) -> Result<()> {
    let n = key.len().min(SMALL);
    let h = e.hash as u32;
    let host = hash(key, HOST_SIGNED_CHAR);
    let matches_hash = h == host || h == hash(key, !HOST_SIGNED_CHAR);
    let idx = db.dir.index(h);
    if e.key_start[..n] != key[..n] || !matches_hash || !run.contains(&idx) {
        return Err(db.corrupt(format!(
            "bucket at {addr}: the {}-byte key at {} does not match its element (hash \
             {h:#x}, directory entry {idx})",
            key.len(),
            e.data_pointer
        )));
    }
    if h != host {
        report.foreign_hash_keys += 1;
    }
    report.records += 1;
    Ok(())
}

impl Iterator for Scan<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step_lent() {
            Ok(Some((k, v))) => Some(Ok(Record::new(k.to_vec(), v.to_vec()))),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(self.db.busy_or(e)))
            }
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

/// `pread` exactly `buf.len()` bytes; a short read means the file shrank since it was
/// checked, reported as corruption.
fn read_exact_at(file: &File, buf: &mut [u8], off: u64, path: &Path) -> Result<()> {
    let n = read_full_at(file, buf, off).at(path)?;
    if n < buf.len() {
        return Err(Fault::corrupt(format!(
            "{} bytes at {off} are past the end of the file",
            buf.len()
        ))
        .into_error(path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::gdbm::{WriteOptions, write_records};

    #[test]
    fn scans_lend_records_longer_than_the_window() {
        // Small records around values longer than the read-ahead window: the lending
        // scan and the iterator give the same records, each once.
        let value = |i: usize| {
            let len = if i.is_multiple_of(40) {
                WINDOW + 1000 * i
            } else {
                20
            };
            (0..len).map(|j| (i + j) as u8).collect::<Vec<u8>>()
        };
        let recs = (0..200).map(|i| {
            Ok(Record::new(
                format!("user{i}\0realm\0userPassword").into_bytes(),
                value(i),
            ))
        });
        let mut img = Vec::new();
        write_records(recs, &WriteOptions::default(), &mut img).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gdbm");
        std::fs::write(&path, &img).unwrap();
        let db = GdbmFile::open(&path).unwrap();
        let mut lent = Vec::new();
        Backend::scan_each(&db, &mut |k, v| {
            lent.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        let owned: Vec<(Vec<u8>, Vec<u8>)> = db
            .scan()
            .map(|r| r.map(|r| (r.key, r.value.to_vec())))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(lent, owned);
        let mut got = lent.clone();
        got.sort();
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
            .map(|i| {
                (
                    format!("user{i}\0realm\0userPassword").into_bytes(),
                    value(i),
                )
            })
            .collect();
        want.sort();
        assert_eq!(got, want);
    }
}
