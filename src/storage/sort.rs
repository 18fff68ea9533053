//! Sorting more records than fit in a memory budget: sorted runs spilled to unnamed
//! temporary files, merged on the way out.
//!
//! Used where a destination wants keys in order (an LMDB bulk load appends) but the
//! source yields them in hash order (Berkeley DB, GDBM). Runs are written to
//! `O_TMPFILE` files in a directory the caller chooses (the destination's, which
//! already holds the same secrets and has the right permissions): they have no name,
//! so nothing is left behind even after a crash, and they are readable only by us
//! (mode 0600).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, IoContext, Result};
use crate::record::Record;

/// Bytes of records held in memory before a run is spilled, by default.
pub const DEFAULT_BUDGET: usize = 16 << 20;
/// Bytes of index per record held in memory, counted against the budget.
const INDEX_ENTRY: usize = std::mem::size_of::<Span>();

/// Where one record sits in the arena: key, then value.
#[derive(Debug, Clone, Copy)]
struct Span {
    off: u32,
    klen: u32,
    vlen: u32,
}

/// Records held in one buffer (wiped when dropped or grown), with their spans: no
/// allocation per record, so a million records sort without a million heap blocks.
struct Arena {
    bytes: Zeroizing<Vec<u8>>,
    spans: Vec<Span>,
}

impl Arena {
    fn new() -> Self {
        Arena {
            bytes: Zeroizing::new(Vec::new()),
            spans: Vec::new(),
        }
    }

    fn held(&self) -> usize {
        self.bytes.len() + self.spans.len() * INDEX_ENTRY
    }

    fn key(&self, s: &Span) -> &[u8] {
        &self.bytes[s.off as usize..(s.off + s.klen) as usize]
    }

    fn value(&self, s: &Span) -> &[u8] {
        let start = (s.off + s.klen) as usize;
        &self.bytes[start..start + s.vlen as usize]
    }

    /// Appends a record; the buffer grows into a new allocation (the old one wiped)
    /// rather than being reallocated in place, which could leave a copy behind.
    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let need = self.bytes.len() + key.len() + value.len();
        let too_long = || Error::Invalid("records too long to sort in memory".into());
        u32::try_from(need).map_err(|_| too_long())?;
        if need > self.bytes.capacity() {
            let cap = need.max(self.bytes.capacity() * 2).max(1 << 16);
            let mut grown = Zeroizing::new(Vec::with_capacity(cap));
            grown.extend_from_slice(&self.bytes);
            self.bytes = grown;
        }
        self.spans.push(Span {
            off: self.bytes.len() as u32,
            klen: key.len() as u32,
            vlen: value.len() as u32,
        });
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        Ok(())
    }

    fn sort(&mut self) {
        let bytes = &self.bytes;
        self.spans.sort_unstable_by(|a, b| {
            bytes[a.off as usize..(a.off + a.klen) as usize]
                .cmp(&bytes[b.off as usize..(b.off + b.klen) as usize])
        });
    }

    /// Forgets the records, wiping their bytes but keeping the buffer.
    fn clear(&mut self) {
        self.bytes.iter_mut().for_each(|b| *b = 0);
        self.bytes.clear();
        self.spans.clear();
    }
}

/// Collects records, then yields them sorted by key.
pub struct ExternalSort {
    dir: PathBuf,
    budget: usize,
    arena: Arena,
    runs: Vec<File>,
}

impl ExternalSort {
    /// A sorter spilling into `dir` once `budget` bytes of records are held.
    pub fn new(dir: &Path, budget: usize) -> Self {
        ExternalSort {
            dir: dir.to_path_buf(),
            budget,
            arena: Arena::new(),
            runs: Vec::new(),
        }
    }

    /// Adds a record.
    pub fn push(&mut self, rec: Record) -> Result<()> {
        let size = rec.key.len() + rec.value.len() + INDEX_ENTRY;
        if !self.arena.spans.is_empty() && self.arena.held() + size > self.budget {
            self.spill()?;
        }
        self.arena.push(&rec.key, &rec.value)
    }

    fn spill(&mut self) -> Result<()> {
        if self.arena.spans.is_empty() {
            return Ok(());
        }
        self.arena.sort();
        let mut file = anonymous_file(&self.dir)?;
        {
            let mut w = BufWriter::with_capacity(1 << 16, &mut file);
            let a = &self.arena;
            for s in &a.spans {
                let res = w
                    .write_all(&s.klen.to_le_bytes())
                    .and_then(|_| w.write_all(&s.vlen.to_le_bytes()))
                    .and_then(|_| w.write_all(a.key(s)))
                    .and_then(|_| w.write_all(a.value(s)));
                res.at(&self.dir)?;
            }
            w.flush().at(&self.dir)?;
        }
        file.seek(SeekFrom::Start(0)).at(&self.dir)?;
        self.runs.push(file);
        self.arena.clear();
        Ok(())
    }

    /// The records in key order.
    pub fn finish(mut self) -> Result<Box<dyn Iterator<Item = Result<Record>>>> {
        if self.runs.is_empty() {
            self.arena.sort();
            let arena = std::mem::replace(&mut self.arena, Arena::new());
            let mut i = 0;
            return Ok(Box::new(std::iter::from_fn(move || {
                let s = arena.spans.get(i)?;
                i += 1;
                Some(Ok(Record::new(
                    arena.key(s).to_vec(),
                    arena.value(s).to_vec(),
                )))
            })));
        }
        self.spill()?;
        // The arena's buffer is no longer needed while merging.
        self.arena = Arena::new();
        let dir = self.dir.clone();
        let mut readers: Vec<RunReader> = self
            .runs
            .drain(..)
            .map(|f| RunReader {
                r: BufReader::with_capacity(1 << 16, f),
            })
            .collect();
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(rec) = r.next_record().at(&dir)? {
                heap.push(Reverse(HeapItem { rec, run: i }));
            }
        }
        Ok(Box::new(Merge {
            readers,
            heap,
            dir,
            failed: false,
        }))
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`), or a named one removed at once where the
/// filesystem does not support that.
fn anonymous_file(dir: &Path) -> Result<File> {
    let tmp = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir);
    match tmp {
        Ok(f) => Ok(f),
        Err(_) => {
            let mut rnd = [0u8; 8];
            getrandom::fill(&mut rnd).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
            let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
            let path = dir.join(format!(".sasldb-sort-{name}"));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .at(&path)?;
            std::fs::remove_file(&path).at(&path)?;
            Ok(f)
        }
    }
}

struct RunReader {
    r: BufReader<File>,
}

impl RunReader {
    fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut lens = [0u8; 8];
        match self.r.read_exact(&mut lens) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let klen = u32::from_le_bytes(lens[..4].try_into().expect("4")) as usize;
        let vlen = u32::from_le_bytes(lens[4..].try_into().expect("4")) as usize;
        let mut key = vec![0u8; klen];
        self.r.read_exact(&mut key)?;
        let mut value = Zeroizing::new(vec![0u8; vlen]);
        self.r.read_exact(&mut value)?;
        Ok(Some(Record { key, value }))
    }
}

struct HeapItem {
    rec: Record,
    run: usize,
}

impl PartialEq for HeapItem {
    fn eq(&self, o: &Self) -> bool {
        self.rec.key == o.rec.key && self.run == o.run
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HeapItem {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.rec.key.cmp(&o.rec.key).then(self.run.cmp(&o.run))
    }
}

struct Merge {
    readers: Vec<RunReader>,
    heap: BinaryHeap<Reverse<HeapItem>>,
    dir: PathBuf,
    failed: bool,
}

impl Iterator for Merge {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.failed {
            return None;
        }
        let Reverse(top) = self.heap.pop()?;
        match self.readers[top.run].next_record() {
            Ok(Some(rec)) => self.heap.push(Reverse(HeapItem { rec, run: top.run })),
            Ok(None) => {}
            Err(e) => {
                self.failed = true;
                return Some(Err(Error::io(&self.dir, e)));
            }
        }
        Some(Ok(top.rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_across_spilled_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ExternalSort::new(dir.path(), 4096);
        let mut want = Vec::new();
        for i in 0..5000u32 {
            let k = format!("k{:08}", (i.wrapping_mul(2_654_435_761)) % 100_000).into_bytes();
            want.push(k.clone());
            s.push(Record::new(k, i.to_le_bytes().to_vec())).unwrap();
        }
        assert!(s.runs.len() > 10, "spilled {} runs", s.runs.len());
        assert!(s.arena.held() <= 4096);
        want.sort();
        want.dedup();
        let got: Vec<Vec<u8>> = s.finish().unwrap().map(|r| r.unwrap().key).collect();
        assert_eq!(got.len(), 5000);
        let mut dedup = got.clone();
        dedup.dedup();
        assert_eq!(dedup, want);
        assert!(got.windows(2).all(|w| w[0] <= w[1]));
        // Nothing named was left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn small_inputs_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ExternalSort::new(dir.path(), DEFAULT_BUDGET);
        for k in ["b", "a", "c"] {
            s.push(Record::new(k.into(), b"v".to_vec())).unwrap();
        }
        let got: Vec<Vec<u8>> = s.finish().unwrap().map(|r| r.unwrap().key).collect();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }
}
