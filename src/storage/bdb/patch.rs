//! A few changes to an existing file, applied by rewriting only the buckets they touch.
//!
//! Adding one user to a large database should not cost a rebuild of every page. The
//! write path still replaces the file atomically (a crash leaves the old file or the
//! new one), but the new file is the old one copied in the kernel
//! (`copy_file_range`), with the changed bucket pages, any pages appended to their
//! chains, the pages their chains gave up (put on the free list, as libdb does) and
//! the meta page written over the copy.
//!
//! [`plan`] reads the affected buckets and renders their new pages in memory; it
//! declines (returns `None`, and the caller rebuilds the file) whenever the shortcut
//! would not give the file a rebuild would: files other than hash version 9 with the
//! default hash function, items stored off-page in an affected bucket or among the
//! changes, a chain that would grow past [`MAX_CHAIN`] pages (the table needs more
//! buckets: a rebuild sizes it again), or changes spread over more than an eighth of
//! the buckets (a rebuild is then about as cheap).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use zeroize::Zeroizing;

use super::hash::{bucket_of, func5};
use super::page::{
    Header, Item, P_HASH, P_INVALID, is_big, item_space, pair_space, set_page_checksum,
};
use super::reader::BdbFile;
use super::writer::{Links, WriteOptions, WriteStats, render_page};
use super::{Meta, page_order};
use crate::error::{Error, Result};
use crate::record::Secret;

/// Longest bucket chain (in pages) a patch may create; longer ones mean the table
/// should grow, which only a rebuild does.
pub const MAX_CHAIN: usize = 4;

/// Most changed keys a patch takes; more go through a rebuild.
pub const MAX_OPS: usize = 4096;

/// One key's change: `Some(value)` to store, `None` to delete.
pub type Op<'a> = (&'a [u8], Option<&'a Secret>);

/// The planned changes: the pages to write over a copy of the file.
pub struct Patch {
    page_size: u64,
    /// `(pgno, page image)`, each page once.
    pages: Vec<(u32, Zeroizing<Vec<u8>>)>,
    /// The new meta page.
    meta_page: crate::record::WipeBuf,
    /// Bytes of the old file to copy (its pages up to `last_pgno`).
    copy_len: u64,
    stats: WriteStats,
}

impl std::fmt::Debug for Patch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patch")
            .field("pages", &self.pages.iter().map(|p| p.0).collect::<Vec<_>>())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Patch {
    /// Page numbers the patch writes (the meta page aside), in order.
    pub fn pages(&self) -> impl Iterator<Item = u32> + '_ {
        self.pages.iter().map(|p| p.0)
    }

    /// What the new file holds.
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    /// Writes the new file into `dst` (empty): a copy of `src`'s pages, then the
    /// changed pages and the meta page over it. `src` must be the file the patch was
    /// planned from.
    pub fn write(&self, src: &BdbFile, dst: &File) -> Result<WriteStats> {
        copy_range(src.file(), dst, self.copy_len).map_err(write_err)?;
        for (pgno, page) in &self.pages {
            dst.write_all_at(page, u64::from(*pgno) * self.page_size)
                .map_err(write_err)?;
        }
        dst.write_all_at(&self.meta_page, 0).map_err(write_err)?;
        dst.set_len(u64::from(self.stats.pages) * self.page_size)
            .map_err(write_err)?;
        Ok(self.stats)
    }
}

fn write_err(e: io::Error) -> Error {
    Error::io("<database being written>", e)
}

/// Plans `ops` (unique keys) against `db`; `None` when the file should be rebuilt
/// instead (see the module documentation).
pub fn plan(db: &BdbFile, ops: &[Op<'_>]) -> Result<Option<Patch>> {
    let m = db.meta();
    if m.version != 9 || !m.standard_hash() || ops.is_empty() || ops.len() > MAX_OPS {
        return Ok(None);
    }
    let ps = m.page_size as usize;
    let overhead = db.overhead();
    let mut by_bucket: std::collections::BTreeMap<u32, Vec<Op<'_>>> = Default::default();
    for &(key, value) in ops {
        if is_big(key.len(), ps) || value.is_some_and(|v| is_big(v.len(), ps)) {
            return Ok(None);
        }
        let b = bucket_of(func5(key), m.max_bucket, m.high_mask, m.low_mask);
        by_bucket.entry(b).or_default().push((key, value));
    }
    let buckets = u64::from(m.max_bucket) + 1;
    if by_bucket.len() as u64 * 8 > buckets.max(8) {
        return Ok(None);
    }
    let opts = WriteOptions {
        page_size: m.page_size,
        endian: m.endian,
        checksums: m.checksums(),
    };
    let mut page = db.new_page();
    let mut last_pgno = m.last_pgno;
    let mut freed = Vec::new();
    let mut pages = Vec::new();
    let mut nelem = i64::from(m.nelem);
    for (bucket, bops) in by_bucket {
        // The bucket's chain and its pairs.
        let first = db.first_page(bucket)?;
        let mut chain = Vec::new();
        let mut pairs: Vec<(Vec<u8>, Secret)> = Vec::new();
        let (mut pgno, mut prev) = (first, 0u32);
        while pgno != 0 {
            if chain.len() as u64 > u64::from(m.last_pgno) {
                return Err(db.corrupt(format!("bucket {bucket}: chain does not end")));
            }
            let hdr = db.read_page(pgno, &mut page)?;
            if hdr.is_hole() {
                if prev != 0 {
                    return Err(db.corrupt(format!(
                        "page {prev} links to page {pgno}, which was never written"
                    )));
                }
                break;
            }
            if hdr.ptype != P_HASH {
                return Ok(None);
            }
            let hp = db.hash_page(&page, &hdr, prev)?;
            for i in 0..hp.pairs() {
                let k = hp.item(2 * i).map_err(|f| db.fault(f))?;
                let v = hp.item(2 * i + 1).map_err(|f| db.fault(f))?;
                match (k, v) {
                    (Item::Data(k), Item::Data(v)) => {
                        pairs.push((k.to_vec(), Secret::new(v.to_vec())))
                    }
                    _ => return Ok(None),
                }
            }
            chain.push(pgno);
            prev = pgno;
            pgno = hdr.next;
        }
        // Apply the changes.
        let mut changed = false;
        for (key, value) in bops {
            let at = pairs.iter().position(|(k, _)| k == key);
            match (at, value) {
                (Some(i), Some(v)) => {
                    pairs[i].1 = v.clone();
                    changed = true;
                }
                (Some(i), None) => {
                    pairs.remove(i);
                    nelem -= 1;
                    changed = true;
                }
                (None, Some(v)) => {
                    pairs.push((key.to_vec(), v.clone()));
                    nelem += 1;
                    changed = true;
                }
                (None, None) => {}
            }
        }
        if !changed {
            continue;
        }
        pairs.sort_unstable_by(|a, b| page_order(&a.0, &b.0));
        if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(db.corrupt(format!("bucket {bucket} holds a key twice")));
        }
        // Pack into pages.
        let capacity = ps - overhead;
        let mut groups: Vec<std::ops::Range<usize>> = Vec::with_capacity(MAX_CHAIN);
        groups.push(0..0);
        let mut used = 0;
        for (i, (k, v)) in pairs.iter().enumerate() {
            let need = pair_space(item_space(k.len(), ps), item_space(v.len(), ps));
            let g = groups.last_mut().expect("one group");
            if i > g.start && used + need > capacity {
                groups.push(i..i + 1);
                used = need;
            } else {
                g.end = i + 1;
                used += need;
            }
        }
        if groups.len() > chain.len().max(MAX_CHAIN) {
            return Ok(None);
        }
        let mut numbers = Vec::with_capacity(groups.len());
        for i in 0..groups.len() {
            numbers.push(match chain.get(i) {
                Some(&p) => p,
                None if i == 0 => first,
                None => {
                    last_pgno = last_pgno
                        .checked_add(1)
                        .ok_or_else(|| Error::Invalid("the file would exceed 2^32 pages".into()))?;
                    last_pgno
                }
            });
        }
        freed.extend(chain.iter().skip(groups.len()).copied());
        for (i, g) in groups.iter().enumerate() {
            let mut img = Zeroizing::new(vec![0u8; ps]);
            let links = Links {
                pgno: numbers[i],
                prev: if i == 0 { 0 } else { numbers[i - 1] },
                next: numbers.get(i + 1).copied().unwrap_or(0),
            };
            render_page(
                &mut img,
                pairs[g.clone()].iter().map(|(k, v)| (&k[..], &v[..])),
                links,
                overhead,
                &opts,
                &mut std::iter::empty(),
            );
            pages.push((numbers[i], img));
        }
    }
    // Pages a chain gave up go on the free list, as libdb's __db_free puts them.
    let mut free = m.free;
    for pgno in freed {
        let mut img = Zeroizing::new(vec![0u8; ps]);
        Header {
            pgno,
            prev: 0,
            next: free,
            entries: 0,
            hf_offset: ps as u16,
            level: 0,
            ptype: P_INVALID,
        }
        .write(&mut img, m.endian);
        if opts.checksums {
            set_page_checksum(&mut img, m.endian);
        }
        pages.push((pgno, img));
        free = pgno;
    }
    pages.sort_unstable_by_key(|p| p.0);

    let mut uid = [0u8; 20];
    getrandom::fill(&mut uid).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
    let nelem = u32::try_from(nelem.max(0)).unwrap_or(u32::MAX);
    let new_meta = Meta {
        free,
        last_pgno,
        uid,
        nelem,
        ..m.clone()
    };
    let mut meta_page = db.new_page();
    let n = db
        .file()
        .read_at(&mut meta_page, 0)
        .map_err(|e| Error::io(db.path(), e))?;
    if n != ps {
        return Err(db.corrupt("the meta page is incomplete".into()));
    }
    new_meta.patch_page(&mut meta_page);
    Ok(Some(Patch {
        page_size: u64::from(m.page_size),
        pages,
        meta_page,
        copy_len: (u64::from(m.last_pgno) + 1) * u64::from(m.page_size),
        stats: WriteStats {
            records: u64::from(nelem),
            buckets: m.max_bucket + 1,
            pages: last_pgno + 1,
        },
    }))
}

/// Copies the first `len` bytes of `src` to the start of `dst`, in the kernel where
/// it can (`copy_file_range`), else through a buffer that is wiped afterwards.
fn copy_range(src: &File, dst: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut done = 0u64;
    while done < len {
        let mut off_in = done as libc::loff_t;
        let mut off_out = done as libc::loff_t;
        let chunk = (len - done).min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the duration of the call; the offset
        // pointers are valid for writes.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                chunk,
                0,
            )
        };
        if n > 0 {
            done += n as u64;
            continue;
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the database file shrank while it was copied",
            ));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOSYS | libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::EPERM) => {
                return copy_buffered(src, dst, done, len);
            }
            _ => return Err(err),
        }
    }
    Ok(())
}

fn copy_buffered(src: &File, dst: &File, from: u64, len: u64) -> io::Result<()> {
    let mut buf = Zeroizing::new(vec![0u8; 1 << 20]);
    let mut off = from;
    while off < len {
        let want = (len - off).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..want], off)?;
        dst.write_all_at(&buf[..want], off)?;
        off += want as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::storage::bdb::write_records;
    use crate::storage::endian::Endian;
    use std::collections::BTreeMap;

    fn build(path: &std::path::Path, map: &BTreeMap<Vec<u8>, Vec<u8>>, opts: WriteOptions) {
        let mut f = File::create(path).unwrap();
        let recs = map
            .iter()
            .map(|(k, v)| Ok(Record::new(k.clone(), v.clone())));
        write_records(recs, &opts, &mut f).unwrap();
    }

    fn contents(path: &std::path::Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let db = BdbFile::open(path).unwrap();
        let report = db.verify().unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let mut out = BTreeMap::new();
        for r in db.scan() {
            let r = r.unwrap();
            assert!(out.insert(r.key, r.value.to_vec()).is_none(), "key twice");
        }
        for (k, v) in &out {
            assert_eq!(db.get(k).unwrap().as_deref().map(|v| &v[..]), Some(&v[..]));
        }
        out
    }

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    /// Many small patches in a row (adds, updates, deletes) on several layouts: the
    /// file always reads back as the model says, verifies clean, and when the patch
    /// declines (a chain would grow too long) a rebuild takes over.
    #[test]
    fn patches_match_a_model() {
        for (ps, endian, checksums) in [
            (512, Endian::Little, false),
            (512, Endian::Big, true),
            (4096, Endian::Little, false),
            (4096, Endian::Big, true),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let opts = WriteOptions {
                page_size: ps,
                endian,
                checksums,
            };
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut rng = Lcg(u64::from(ps) + checksums as u64);
            for i in 0..300 {
                model.insert(
                    format!("user{i}\0realm\0userPassword").into_bytes(),
                    format!("pw{i}").into_bytes(),
                );
            }
            build(&path, &model, opts);
            let (mut patched, mut declined) = (0, 0);
            for round in 0..150 {
                let mut ops: BTreeMap<Vec<u8>, Option<Secret>> = BTreeMap::new();
                for _ in 0..1 + rng.next() % 3 {
                    let n = rng.next() % 500;
                    let key = format!("user{n}\0realm\0userPassword").into_bytes();
                    let op = match rng.next() % 4 {
                        0 => None,
                        // Values up to a quarter page (on-page) and beyond (declined).
                        _ => Some(Secret::new(vec![
                            b'a' + (round % 26) as u8;
                            (rng.next() % 140) as usize
                        ])),
                    };
                    ops.insert(key, op);
                }
                let list: Vec<Op<'_>> = ops.iter().map(|(k, v)| (&k[..], v.as_ref())).collect();
                let db = BdbFile::open(&path).unwrap();
                let next = dir.path().join("next");
                match plan(&db, &list).unwrap() {
                    Some(p) => {
                        let f = File::create(&next).unwrap();
                        let stats = p.write(&db, &f).unwrap();
                        patched += 1;
                        for (k, v) in &ops {
                            match v {
                                Some(v) => model.insert(k.clone(), v.to_vec()),
                                None => model.remove(k),
                            };
                        }
                        assert_eq!(stats.records, model.len() as u64);
                    }
                    None => {
                        declined += 1;
                        for (k, v) in &ops {
                            match v {
                                Some(v) => model.insert(k.clone(), v.to_vec()),
                                None => model.remove(k),
                            };
                        }
                        build(&next, &model, opts);
                    }
                }
                drop(db);
                std::fs::rename(&next, &path).unwrap();
                assert_eq!(contents(&path), model, "round {round} at {ps}");
            }
            assert!(patched > 50, "{patched} patched, {declined} declined");
            assert!(BdbFile::open(&path).unwrap().meta().nelem as usize == model.len());
        }
    }

    /// Deleting every key of a bucket with a chain gives its pages to the free list.
    #[test]
    fn shrinking_chains_free_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let opts = WriteOptions {
            page_size: 512,
            endian: Endian::Little,
            checksums: false,
        };
        let mut model = BTreeMap::new();
        for i in 0..40 {
            model.insert(
                format!("u{i}\0r\0userPassword").into_bytes(),
                vec![b'x'; 100],
            );
        }
        build(&path, &model, opts);
        // Grow one bucket's chain by patches.
        let db = BdbFile::open(&path).unwrap();
        let m = db.meta().clone();
        let bucket_of_key = |k: &[u8]| bucket_of(func5(k), m.max_bucket, m.high_mask, m.low_mask);
        let target = bucket_of_key(b"u0\0r\0userPassword");
        drop(db);
        let mut added = Vec::new();
        let mut i = 0;
        while added.len() < 4 {
            let k = format!("extra{i}\0r\0userPassword").into_bytes();
            if bucket_of_key(&k) == target {
                added.push(k);
            }
            i += 1;
        }
        let value = Secret::new(vec![b'y'; 100]);
        for k in &added {
            let db = BdbFile::open(&path).unwrap();
            let p = plan(&db, &[(&k[..], Some(&value))])
                .unwrap()
                .expect("patched");
            let next = dir.path().join("next");
            p.write(&db, &File::create(&next).unwrap()).unwrap();
            std::fs::rename(&next, &path).unwrap();
            model.insert(k.clone(), value.to_vec());
        }
        assert_eq!(contents(&path), model);
        // Now delete them all again.
        let db = BdbFile::open(&path).unwrap();
        let ops: Vec<Op<'_>> = added.iter().map(|k| (&k[..], None)).collect();
        let p = plan(&db, &ops).unwrap().expect("patched");
        let next = dir.path().join("next");
        p.write(&db, &File::create(&next).unwrap()).unwrap();
        std::fs::rename(&next, &path).unwrap();
        for k in &added {
            model.remove(k);
        }
        assert_eq!(contents(&path), model);
        let db = BdbFile::open(&path).unwrap();
        assert_ne!(db.meta().free, 0, "freed chain pages are on the free list");
        assert!(db.verify().unwrap().free_pages >= 1);
    }
}
