//! Structural check of an LMDB data file, done with plain `pread`s before LMDB maps it.
//!
//! LMDB trusts its file: offsets inside pages, node sizes and overflow lengths are used
//! without bounds checks, and a page size of 0 divides by zero. This module reads the
//! file the way LMDB 0.9 will and refuses anything that would make it read outside a
//! page or outside the file:
//! - both meta pages: `P_META`, magic `0xBEEFC0DE`, data version 1, page size (a power
//!   of two, 512..=65536), page numbers, `last_pg` against the file length, roots and
//!   depths in range; the newest meta must sit in slot `txnid & 1`, as LMDB's readers
//!   pick it by that parity;
//! - every page reachable from the newest meta's main and free-list trees: page number,
//!   type, `lower`/`upper`, every node inside its page, child and overflow page numbers
//!   inside the file, tree depth, no page reached twice, overflow lengths, free-list
//!   entries (`count` then page numbers), and the record count.
//!
//! Limits: keys are not checked for order (a misordered file gives wrong lookups, not a
//! crash), and the check covers the file as it is at open time: a process that writes
//! a damaged page later is not this module's threat model. Files written on another
//! word size or byte order (LMDB files are not portable) are refused by name.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::location::Format;
use crate::storage::endian::Endian;

/// LMDB's magic number.
pub const MAGIC: u32 = 0xBEEF_C0DE;
/// The data format version LMDB 0.9 reads and writes.
pub const DATA_VERSION: u32 = 1;

const HOST: Endian = if cfg!(target_endian = "big") {
    Endian::Big
} else {
    Endian::Little
};
/// Width of `pgno_t`/`size_t` in the file (LMDB uses the host's).
const WORD: usize = std::mem::size_of::<usize>();
/// `offsetof(MDB_page, mp_ptrs)`.
const PAGE_HDR: usize = WORD + 8;
const NODE_HDR: usize = 8;
const P_INVALID: u64 = if WORD == 8 { u64::MAX } else { u32::MAX as u64 };
const CURSOR_STACK: u16 = 32;

const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
const P_LEAF2: u16 = 0x20;
const P_SUBP: u16 = 0x40;
const F_BIGDATA: u16 = 0x01;
const F_SUBDATA: u16 = 0x02;
const F_DUPDATA: u16 = 0x04;
/// DB flags (`md_flags`) that change the main database's layout.
const MDB_DUPSORT: u16 = 0x04;

/// `MDB_db` inside a meta page: pad, flags, depth, then five words.
const DB_SIZE: usize = 8 + 5 * WORD;
/// Offsets inside `MDB_meta` (which follows the page header).
const MM_MAGIC: usize = 0;
const MM_VERSION: usize = 4;
const MM_MAPSIZE: usize = 8 + WORD;
const MM_DBS: usize = 8 + 2 * WORD;
const MM_LAST_PG: usize = MM_DBS + 2 * DB_SIZE;
const MM_TXNID: usize = MM_LAST_PG + WORD;
const META_END: usize = PAGE_HDR + MM_TXNID + WORD;

fn word(b: &[u8], off: usize) -> u64 {
    if WORD == 8 {
        HOST.u64(b, off)
    } else {
        u64::from(HOST.u32(b, off))
    }
}

/// One `MDB_db` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbRecord {
    /// For the free-list DB: the page size; else unused.
    pub pad: u32,
    /// `md_flags`.
    pub flags: u16,
    /// Tree depth (0: empty).
    pub depth: u16,
    /// Number of records.
    pub entries: u64,
    /// Root page (`P_INVALID` when empty).
    pub root: u64,
}

/// One meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Map size recorded by the last writer.
    pub map_size: u64,
    /// Free-list database.
    pub free: DbRecord,
    /// Main database.
    pub main: DbRecord,
    /// Last used page.
    pub last_pg: u64,
    /// Transaction id of the commit that wrote this meta.
    pub txnid: u64,
}

/// What the check learnt about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// Page size.
    pub page_size: u32,
    /// The newest meta page.
    pub meta: Meta,
    /// Pages reachable from the main database.
    pub main_pages: u64,
}

fn corrupt(path: &Path, what: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        format: Format::Lmdb,
        what: what.into(),
    }
}

fn parse_db(m: &[u8], off: usize) -> DbRecord {
    DbRecord {
        pad: HOST.u32(m, off),
        flags: HOST.u16(m, off + 4),
        depth: HOST.u16(m, off + 6),
        entries: word(m, off + 8 + 3 * WORD),
        root: word(m, off + 8 + 4 * WORD),
    }
}

/// Recognises the meta page of another architecture, for a precise message.
fn foreign_layout(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, e: Endian| head.len() >= off + 4 && e.u32(head, off) == MAGIC;
    let other = match HOST {
        Endian::Little => Endian::Big,
        Endian::Big => Endian::Little,
    };
    let other_hdr = if WORD == 8 { 12 } else { 16 };
    if at(PAGE_HDR, other) || at(other_hdr, other) {
        Some("it was written on a machine of the other byte order")
    } else if at(other_hdr, HOST) {
        Some("it was written by a build with another word size (32/64-bit)")
    } else {
        None
    }
}

/// Parses the meta page in `buf` (slot `slot`); `Err` says what is wrong.
fn parse_meta(buf: &[u8], slot: u64) -> std::result::Result<Meta, String> {
    if buf.len() < META_END {
        return Err(format!("meta page {slot} is truncated"));
    }
    let pgno = word(buf, 0);
    let flags = HOST.u16(buf, WORD + 2);
    let m = &buf[PAGE_HDR..];
    if HOST.u32(m, MM_MAGIC) != MAGIC {
        return Err(format!("meta page {slot}: bad magic"));
    }
    if flags & P_META == 0 {
        return Err(format!("meta page {slot}: not flagged as a meta page"));
    }
    let version = HOST.u32(m, MM_VERSION);
    if version != DATA_VERSION {
        return Err(format!(
            "meta page {slot}: data format version {version} (LMDB 0.9 uses {DATA_VERSION})"
        ));
    }
    if pgno != slot {
        return Err(format!("meta page {slot}: claims to be page {pgno}"));
    }
    Ok(Meta {
        map_size: word(m, MM_MAPSIZE),
        free: parse_db(m, MM_DBS),
        main: parse_db(m, MM_DBS + DB_SIZE),
        last_pg: word(m, MM_LAST_PG),
        txnid: word(m, MM_TXNID),
    })
}

fn read_at(file: &File, path: &Path, buf: &mut [u8], off: u64) -> Result<()> {
    file.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(path, format!("short read at offset {off}"))
        } else {
            Error::io(path, e)
        }
    })
}

/// Checks a non-empty data file; see the module docs for what is checked.
pub fn check_file(file: &File, path: &Path) -> Result<FileInfo> {
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = vec![0u8; META_END.min(usize::try_from(len).unwrap_or(META_END))];
    read_at(file, path, &mut head, 0)?;
    let meta0 = match parse_meta(&head, 0) {
        Ok(m) => m,
        Err(why) => {
            if let Some(arch) = foreign_layout(&head) {
                return Err(Error::Unsupported {
                    path: path.to_path_buf(),
                    format: Format::Lmdb,
                    what: format!("{arch}; LMDB files are not portable between architectures"),
                });
            }
            if len < META_END as u64 {
                return Err(corrupt(
                    path,
                    format!("the file is {len} bytes long, too short for an LMDB meta page"),
                ));
            }
            return Err(corrupt(path, why));
        }
    };
    let psize = meta0.free.pad;
    if !(512..=65536).contains(&psize) || !psize.is_power_of_two() {
        return Err(corrupt(path, format!("invalid page size {psize}")));
    }
    let ps = u64::from(psize);
    if len < 2 * ps {
        return Err(corrupt(
            path,
            format!("the file is {len} bytes long, shorter than its two {psize}-byte meta pages"),
        ));
    }
    let mut page1 = vec![0u8; META_END];
    read_at(file, path, &mut page1, ps)?;
    let meta1 = parse_meta(&page1, 1).map_err(|why| corrupt(path, why))?;
    if meta1.free.pad != psize {
        return Err(corrupt(
            path,
            format!(
                "the meta pages disagree on the page size ({psize} and {})",
                meta1.free.pad
            ),
        ));
    }
    // LMDB's choice at open (mdb_env_read_header): the higher txnid, meta 0 on a tie.
    let (slot, meta) = if meta1.txnid > meta0.txnid {
        (1, meta1)
    } else {
        (0, meta0)
    };
    if meta.txnid & 1 != slot {
        return Err(corrupt(
            path,
            format!(
                "the newest meta page (transaction {}) is in slot {slot}, not slot {}",
                meta.txnid,
                meta.txnid & 1
            ),
        ));
    }
    for (i, m) in [(0u64, &meta0), (1, &meta1)] {
        check_meta_bounds(path, i, m, ps, len)?;
    }
    if meta.main.flags & MDB_DUPSORT != 0 {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            format: Format::Lmdb,
            what: "the main database uses MDB_DUPSORT (sasldb never does)".into(),
        });
    }
    let mut walk = Walk {
        file,
        path,
        psize: usize::try_from(psize).expect("<= 65536"),
        last_pg: meta.last_pg,
        seen: vec![0u64; usize::try_from(meta.last_pg / 64 + 1).unwrap_or(usize::MAX)],
        buf: zeroize::Zeroizing::new(vec![0u8; psize as usize]),
    };
    // Meta pages are never part of a tree.
    walk.mark(0)?;
    walk.mark(1)?;
    let main = walk.tree(&meta.main, Tree::Main)?;
    walk.tree(&meta.free, Tree::Free)?;
    Ok(FileInfo {
        page_size: psize,
        meta,
        main_pages: main,
    })
}

fn check_meta_bounds(path: &Path, slot: u64, m: &Meta, ps: u64, len: u64) -> Result<()> {
    let end = m
        .last_pg
        .checked_add(1)
        .and_then(|n| n.checked_mul(ps))
        .filter(|_| m.last_pg >= 1);
    match end {
        Some(end) if end <= len => {}
        _ => {
            return Err(corrupt(
                path,
                format!(
                    "meta page {slot}: last page {} lies beyond the end of the file ({len} bytes, \
                     {ps}-byte pages): the file is truncated",
                    m.last_pg
                ),
            ));
        }
    }
    for (name, db) in [("main", &m.main), ("free-list", &m.free)] {
        if db.root == P_INVALID {
            if db.depth != 0 || db.entries != 0 {
                return Err(corrupt(
                    path,
                    format!("meta page {slot}: empty {name} database with depth or records"),
                ));
            }
            continue;
        }
        if db.root < 2 || db.root > m.last_pg {
            return Err(corrupt(
                path,
                format!(
                    "meta page {slot}: {name} root page {} outside pages 2..={}",
                    db.root, m.last_pg
                ),
            ));
        }
        if db.depth == 0 || db.depth > CURSOR_STACK {
            return Err(corrupt(
                path,
                format!("meta page {slot}: {name} tree depth {}", db.depth),
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tree {
    Main,
    Free,
}

struct Walk<'a> {
    file: &'a File,
    path: &'a Path,
    psize: usize,
    last_pg: u64,
    seen: Vec<u64>,
    /// The page being checked: leaf pages hold secrets.
    buf: zeroize::Zeroizing<Vec<u8>>,
}

impl Walk<'_> {
    fn fail(&self, pgno: u64, what: impl std::fmt::Display) -> Error {
        corrupt(self.path, format!("page {pgno}: {what}"))
    }

    fn mark(&mut self, pgno: u64) -> Result<()> {
        if pgno > self.last_pg {
            return Err(corrupt(
                self.path,
                format!("page {pgno} is beyond the last page {}", self.last_pg),
            ));
        }
        let (i, bit) = ((pgno / 64) as usize, 1u64 << (pgno % 64));
        if self.seen[i] & bit != 0 {
            return Err(corrupt(
                self.path,
                format!("page {pgno} is reached twice (a loop or a shared page)"),
            ));
        }
        self.seen[i] |= bit;
        Ok(())
    }

    fn load(&mut self, pgno: u64) -> Result<()> {
        let off = pgno * self.psize as u64;
        let mut buf = std::mem::take(&mut self.buf);
        let r = read_at(self.file, self.path, &mut buf, off);
        self.buf = buf;
        r
    }

    /// Walks one tree; returns the number of pages it uses.
    fn tree(&mut self, db: &DbRecord, which: Tree) -> Result<u64> {
        if db.root == P_INVALID {
            return Ok(0);
        }
        let mut pages = 0u64;
        let mut records = 0u64;
        let mut stack = vec![(db.root, 1u16)];
        while let Some((pgno, level)) = stack.pop() {
            self.mark(pgno)?;
            self.load(pgno)?;
            pages += 1;
            let want_leaf = level == db.depth;
            let (flags, n) = self.page_header(pgno)?;
            match flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2 | P_SUBP) {
                P_BRANCH if !want_leaf => {}
                P_LEAF if want_leaf => {}
                f => {
                    return Err(self.fail(
                        pgno,
                        format!(
                            "page type {f:#x} at tree level {level} of {} (expected a {} page)",
                            db.depth,
                            if want_leaf { "leaf" } else { "branch" }
                        ),
                    ));
                }
            }
            if n == 0 && (level > 1 || !want_leaf) {
                return Err(self.fail(pgno, "empty page inside a tree"));
            }
            let mut overflow = Vec::new();
            for i in 0..n {
                let ptr = usize::from(HOST.u16(&self.buf, PAGE_HDR + 2 * i));
                let upper = usize::from(HOST.u16(&self.buf, WORD + 6));
                if ptr < upper || !ptr.is_multiple_of(2) || ptr + NODE_HDR > self.psize {
                    return Err(self.fail(pgno, format!("node {i} at bad offset {ptr}")));
                }
                let lo = u64::from(HOST.u16(&self.buf, ptr));
                let hi = u64::from(HOST.u16(&self.buf, ptr + 2));
                let nflags = HOST.u16(&self.buf, ptr + 4);
                let ksize = usize::from(HOST.u16(&self.buf, ptr + 6));
                let kend = ptr + NODE_HDR + ksize;
                if kend > self.psize {
                    return Err(self.fail(pgno, format!("node {i}: key runs past the page")));
                }
                if !want_leaf {
                    let child = lo
                        | hi << 16
                        | if WORD == 8 {
                            u64::from(nflags) << 32
                        } else {
                            0
                        };
                    if child < 2 || child > self.last_pg {
                        return Err(self.fail(pgno, format!("node {i}: child page {child}")));
                    }
                    stack.push((child, level + 1));
                    continue;
                }
                records += 1;
                let dsize = lo | hi << 16;
                if nflags & F_DUPDATA != 0 || (which == Tree::Free && nflags & F_SUBDATA != 0) {
                    return Err(self.fail(
                        pgno,
                        format!("node {i}: duplicate or sub-database data (flags {nflags:#x})"),
                    ));
                }
                if nflags & F_BIGDATA != 0 {
                    if kend + WORD > self.psize {
                        return Err(self.fail(pgno, format!("node {i}: runs past the page")));
                    }
                    overflow.push((word(&self.buf, kend), dsize));
                } else {
                    if kend as u64 + dsize > self.psize as u64 {
                        return Err(self.fail(pgno, format!("node {i}: data runs past the page")));
                    }
                    if which == Tree::Free {
                        let data = self.buf[kend..kend + dsize as usize].to_vec();
                        self.free_list(pgno, &data)?;
                    }
                }
            }
            for (ovpg, dsize) in overflow {
                let data = self.overflow(pgno, ovpg, dsize, which == Tree::Free)?;
                pages += data.0;
                if let Some(d) = data.1 {
                    self.free_list(ovpg, &d)?;
                }
            }
        }
        if which == Tree::Main && records != db.entries {
            return Err(corrupt(
                self.path,
                format!(
                    "the main database holds {records} records but its meta page says {}",
                    db.entries
                ),
            ));
        }
        Ok(pages)
    }

    /// Returns (flags, number of nodes) of the loaded page after checking its header.
    fn page_header(&self, pgno: u64) -> Result<(u16, usize)> {
        let b = &self.buf;
        if word(b, 0) != pgno {
            return Err(self.fail(pgno, format!("claims to be page {}", word(b, 0))));
        }
        let flags = HOST.u16(b, WORD + 2);
        let lower = usize::from(HOST.u16(b, WORD + 4));
        let upper = usize::from(HOST.u16(b, WORD + 6));
        if lower < PAGE_HDR
            || lower > upper
            || upper > self.psize
            || !(lower - PAGE_HDR).is_multiple_of(2)
        {
            return Err(self.fail(pgno, format!("bad bounds lower {lower} upper {upper}")));
        }
        Ok((flags, (lower - PAGE_HDR) / 2))
    }

    /// Checks an overflow run; returns its page count and, when `want`, its data.
    fn overflow(
        &mut self,
        from: u64,
        ovpg: u64,
        dsize: u64,
        want: bool,
    ) -> Result<(u64, Option<Vec<u8>>)> {
        if ovpg < 2 || ovpg > self.last_pg {
            return Err(self.fail(from, format!("overflow page {ovpg} out of range")));
        }
        self.load(ovpg)?;
        if word(&self.buf, 0) != ovpg || HOST.u16(&self.buf, WORD + 2) & P_OVERFLOW == 0 {
            return Err(self.fail(ovpg, "is not the overflow page its node points to"));
        }
        let count = u64::from(HOST.u32(&self.buf, WORD + 4));
        let ps = self.psize as u64;
        let last = ovpg.checked_add(count).map(|e| e - 1);
        if count == 0
            || last.is_none_or(|l| l > self.last_pg)
            || dsize + PAGE_HDR as u64 > count * ps
        {
            return Err(self.fail(
                ovpg,
                format!("overflow run of {count} pages cannot hold {dsize} bytes"),
            ));
        }
        for p in ovpg..ovpg + count {
            self.mark(p)?;
        }
        let data = if want {
            let mut d = vec![0u8; dsize as usize];
            read_at(self.file, self.path, &mut d, ovpg * ps + PAGE_HDR as u64)?;
            Some(d)
        } else {
            None
        };
        Ok((count, data))
    }

    /// A free-list record: an ID list, `count` then `count` page numbers.
    fn free_list(&self, pgno: u64, data: &[u8]) -> Result<()> {
        if data.len() < WORD || !data.len().is_multiple_of(WORD) {
            return Err(self.fail(pgno, format!("free-list entry of {} bytes", data.len())));
        }
        let n = word(data, 0);
        if n != (data.len() / WORD - 1) as u64 {
            return Err(self.fail(pgno, format!("free-list entry counts {n} pages")));
        }
        for i in 1..=n as usize {
            let p = word(data, i * WORD);
            if p < 2 || p > self.last_pg {
                return Err(self.fail(pgno, format!("free-list names page {p}")));
            }
        }
        Ok(())
    }
}
