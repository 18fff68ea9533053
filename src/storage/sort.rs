//! Bounded memory for bulk work: sorting more records than fit in a memory budget
//! (sorted runs spilled to temporary files, merged on the way out), and the temporary
//! files themselves.
//!
//! Every bulk path that needs an order or a grouping its source does not give goes
//! through [`ExternalSort`]: the key order of a Berkeley DB or GDBM file (listings,
//! exports, realm counts, the records an import merges with), the bucket order of a
//! file being written, an import's input grouped by user. Records are held in one
//! arena (no allocation per record) until the budget is reached, then sorted and
//! written out as a run; at most [`MAX_FAN_IN`] runs are kept (more are merged into
//! one first), so memory is the budget plus one read buffer per run, whatever the
//! number of records. The sorted output is read through [`Sorted::next`], which lends
//! each record without copying it, and can be read again ([`Sorted::rewind`]).
//!
//! # Spill files
//! Runs hold secrets (passwords, derived secrets). They are created in a directory the
//! caller chooses ([`SpillTo`]: by default the database's own, which already holds the
//! same secrets with the right permissions, or one given by an option) as unnamed files
//! (`O_TMPFILE`, mode 0600): they have no name, so nothing is left behind even when the
//! process is killed, and only we can read them. Where the filesystem has no
//! `O_TMPFILE`, a file is created `O_EXCL | O_NOFOLLOW` mode 0600 under the database's
//! temporary-file prefix and unlinked at once; a writer killed in between leaves a
//! 0600 file that the next writer removes with the other temporary files (see
//! [`crate::storage::persist::Target::remove_stale_temps`]). Buffers holding records
//! are wiped when dropped.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, IoContext, Result};
use crate::record::{Record, WipeBuf};
use crate::storage::Records;

/// Bytes of records (with their index) held in memory before a run is spilled, by
/// default.
pub const DEFAULT_BUDGET: usize = 16 << 20;
/// The smallest budget a sort accepts (smaller ones are raised to it).
pub const MIN_BUDGET: usize = 64 << 10;
/// Runs kept before they are merged into one.
pub const MAX_FAN_IN: usize = 64;
/// Read and write buffer of one run.
const RUN_BUF: usize = 64 << 10;
/// Bytes of the first key kept to find the start that every key shares.
const COMMON_MAX: usize = 64;
/// Bytes of index per record held in memory, counted against the budget.
const INDEX_ENTRY: usize = std::mem::size_of::<Span>();
/// Name prefix of a named spill file outside a database's directory.
const SPILL_PREFIX: &str = ".sasldb-spill-";

/// Where a sort may spill, and how much it may hold in memory.
#[derive(Debug, Clone)]
pub struct SpillTo {
    /// The directory for spill files; `None`: never spill (everything stays in memory).
    dir: Option<PathBuf>,
    /// Name prefix of a named spill file (where `O_TMPFILE` is not supported).
    prefix: OsString,
    /// Where to go when `dir` refuses us (read-only, not ours), for sorts that hold no
    /// secrets (keys only).
    fallback: Option<PathBuf>,
    /// Bytes of records held in memory before a run is spilled.
    budget: usize,
}

impl SpillTo {
    /// Spill files in `dir`, named (where they must be) with `prefix` followed by random
    /// hex; at most `budget` bytes held in memory.
    pub fn new(dir: &Path, prefix: Option<OsString>, budget: usize) -> SpillTo {
        SpillTo {
            dir: Some(dir.to_path_buf()),
            prefix: prefix.unwrap_or_else(|| OsString::from(SPILL_PREFIX)),
            fallback: None,
            budget: budget.max(MIN_BUDGET),
        }
    }

    /// Everything in memory, never a file (small inputs, tests, callers without a
    /// directory).
    pub fn memory_only() -> SpillTo {
        SpillTo {
            dir: None,
            prefix: OsString::from(SPILL_PREFIX),
            fallback: None,
            budget: usize::MAX,
        }
    }

    /// The same place with another budget.
    pub fn with_budget(&self, budget: usize) -> SpillTo {
        SpillTo {
            budget: budget.max(MIN_BUDGET).min(self.budget),
            ..self.clone()
        }
    }

    /// For sorts of keys only (user names, no secrets): when the directory refuses a
    /// file (a reader that may not write next to the database), the system's temporary
    /// directory is used instead.
    pub fn keys_only(&self) -> SpillTo {
        SpillTo {
            fallback: Some(std::env::temp_dir()),
            ..self.clone()
        }
    }

    /// The memory budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The directory spill files go to (None: memory only).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

/// A new spill file: unnamed (`O_TMPFILE`) in the spill directory, or named and
/// unlinked at once where the filesystem does not support that; mode 0600 either way.
pub fn spill_file(to: &SpillTo) -> Result<File> {
    let Some(dir) = to.dir.as_deref() else {
        return Err(Error::Invalid(
            "internal: a memory-only sort tried to spill".into(),
        ));
    };
    match spill_file_in(dir, &to.prefix) {
        Ok(f) => Ok(f),
        Err(e) => match (&to.fallback, e.raw_os_error()) {
            (Some(tmp), Some(libc::EACCES | libc::EPERM | libc::EROFS)) => {
                spill_file_in(tmp, OsString::from(SPILL_PREFIX).as_os_str())
                    .map_err(|e| spill_error(tmp, e))
            }
            _ => Err(spill_error(dir, e)),
        },
    }
}

fn spill_error(dir: &Path, e: io::Error) -> Error {
    Error::io(
        dir,
        io::Error::new(
            e.kind(),
            format!("cannot create a temporary file to sort in (choose another directory): {e}"),
        ),
    )
}

fn spill_file_in(dir: &Path, prefix: &std::ffi::OsStr) -> io::Result<File> {
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir);
    match unnamed {
        Ok(f) => Ok(f),
        // No O_TMPFILE here (EOPNOTSUPP, EISDIR on old kernels, EINVAL): a named file,
        // unlinked at once.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            named_spill_file(dir, prefix)
        }
        Err(e) => Err(e),
    }
}

/// A spill file with a name (`prefix` + random hex), unlinked as soon as it is open.
pub(crate) fn named_spill_file(dir: &Path, prefix: &std::ffi::OsStr) -> io::Result<File> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    let mut name = prefix.to_os_string();
    name.push(rnd.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let path = dir.join(&name);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(f),
        // Another writer's clean-up of temporary files got there first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(f),
        Err(e) => Err(e),
    }
}

/// Whether a file name is one a spill in a directory without `O_TMPFILE` may leave for
/// a moment (outside a database's directory).
pub fn is_spill_name(name: &std::ffi::OsStr) -> bool {
    name.as_bytes().starts_with(SPILL_PREFIX.as_bytes())
}

/// Where one record sits in the arena: its block, key then value there; with eight
/// bytes of the key as a number (set when the arena is sorted, see
/// [`Arena::set_heads`]), which decides most comparisons without reading the arena.
#[derive(Debug, Clone, Copy)]
struct Span {
    head: u64,
    block: u32,
    off: u32,
    klen: u32,
    vlen: u32,
}

/// The first eight bytes of a key (zero-padded), big-endian: ordered like the keys.
fn key_head(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// A hash to lead a sort key with, when the sort is only for grouping: records with
/// equal `parts` (as one byte string: the hash of the concatenation, wherever the parts
/// are cut) still come together, and keys that lead with it sort by distribution
/// rather than by comparing names that share long prefixes (see `Arena::sort`).
///
/// Eight bytes at a time, each word multiplied in, then a finalizer that spreads every
/// byte over the top bits, which the distribution reads. Not a defence against chosen
/// collisions: a skewed input only makes the sort fall back to comparing.
pub fn group_hash(parts: &[&[u8]]) -> [u8; 8] {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(29);
    let mut h: u64 = 0;
    let mut total: u64 = 0;
    // Bytes waiting for a whole word (a part may end mid-word).
    let mut pend = [0u8; 8];
    let mut np = 0usize;
    for part in parts {
        let mut p = *part;
        total += p.len() as u64;
        if np > 0 {
            let take = (8 - np).min(p.len());
            pend[np..np + take].copy_from_slice(&p[..take]);
            np += take;
            p = &p[take..];
            if np < 8 {
                continue;
            }
            h = mix(h, u64::from_le_bytes(pend));
        }
        let mut words = p.chunks_exact(8);
        for w in &mut words {
            h = mix(h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        pend[..rest.len()].copy_from_slice(rest);
        np = rest.len();
    }
    pend[np..].fill(0);
    h = mix(h, u64::from_le_bytes(pend)) ^ total;
    // The finalizer of MurmurHash3 (fmix64).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h.to_be_bytes()
}

/// How many records ahead [`Sorted::next`] asks the processor to fetch: records are
/// read in key order from all over the arena, and each read would otherwise wait for
/// main memory.
const PREFETCH_AHEAD: usize = 12;

/// Asks the processor to start loading the cache line at `p` (a hint: no effect on
/// what the program computes).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect visible to the program; the
    // pointer is not dereferenced (SSE, which the instruction needs, is part of
    // x86_64).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// From this many records on, [`Arena::sort`] distributes them by their first bits
/// before comparing.
const DISTRIBUTE_FROM: usize = 4096;

/// Bytes of one arena block (a longer record gets a block of its own).
const BLOCK: usize = 1 << 20;

/// Records held in blocks of fixed capacity (wiped when dropped; they never move, so
/// no copy is left behind and memory grows a block at a time), with their spans: no
/// allocation per record, so a million records sort without a million heap blocks.
struct Arena {
    blocks: Vec<WipeBuf>,
    /// Blocks in use (the others are kept, emptied, for reuse).
    used: usize,
    bytes: usize,
    spans: Vec<Span>,
}

impl Arena {
    fn new() -> Self {
        Arena {
            blocks: Vec::new(),
            used: 0,
            bytes: 0,
            spans: Vec::new(),
        }
    }

    fn held(&self) -> usize {
        self.bytes + self.spans.len() * INDEX_ENTRY
    }

    fn key(&self, s: &Span) -> &[u8] {
        &self.blocks[s.block as usize][s.off as usize..(s.off + s.klen) as usize]
    }

    fn value(&self, s: &Span) -> &[u8] {
        let start = (s.off + s.klen) as usize;
        &self.blocks[s.block as usize][start..start + s.vlen as usize]
    }

    /// Appends a record whose key is the concatenation of `key`, and value that of
    /// `value`.
    fn push(&mut self, key: &[&[u8]], value: &[&[u8]]) -> Result<()> {
        let klen: usize = key.iter().map(|k| k.len()).sum();
        let vlen: usize = value.iter().map(|v| v.len()).sum();
        let len = klen + vlen;
        if len > u32::MAX as usize {
            return Err(Error::Invalid("a record too long to sort".into()));
        }
        let fits = self
            .used
            .checked_sub(1)
            .is_some_and(|b| self.blocks[b].capacity() - self.blocks[b].len() >= len);
        if !fits {
            if self.used < self.blocks.len() && self.blocks[self.used].capacity() >= len {
                // A block emptied by the last spill.
            } else {
                let block = WipeBuf::with_capacity(len.max(BLOCK));
                self.blocks.insert(self.used, block);
            }
            self.used += 1;
        }
        let b = self.used - 1;
        let block = &mut self.blocks[b];
        self.spans.push(Span {
            head: 0,
            block: b as u32,
            off: block.len() as u32,
            klen: klen as u32,
            vlen: vlen as u32,
        });
        for part in key.iter().chain(value) {
            block.extend_from_slice(part);
        }
        self.bytes += len;
        Ok(())
    }

    /// Sorts the spans by key (records pushed first come first among equal keys), by
    /// the heads [`Arena::set_heads`] set.
    ///
    /// Most sorts here are of keys that start with a hash (an import's users, the
    /// records of a hash file being written), whose first bits spread the records
    /// evenly: those are first distributed by their top bits into a second index (a
    /// counting sort, one pass), leaving a few records per bucket to compare. Keys whose
    /// heads share their first bits are compared throughout.
    fn sort(&mut self) {
        let blocks = &self.blocks;
        let key = |s: &Span| &blocks[s.block as usize][s.off as usize..(s.off + s.klen) as usize];
        // A total order: equal keys by their place in the arena, which is push order.
        let cmp = |a: &Span, b: &Span| {
            a.head
                .cmp(&b.head)
                .then_with(|| key(a).cmp(key(b)))
                .then((a.block, a.off).cmp(&(b.block, b.off)))
        };
        let n = self.spans.len();
        if n < DISTRIBUTE_FROM {
            self.spans.sort_unstable_by(cmp);
            return;
        }
        let bits = n.ilog2().clamp(8, 16);
        let bucket = |s: &Span| (s.head >> (64 - bits)) as usize;
        let mut starts = vec![0u32; (1 << bits) + 1];
        for s in &self.spans {
            starts[bucket(s) + 1] += 1;
        }
        // Too many records under one prefix: the distribution would not pay.
        if starts.iter().any(|&c| c as usize > n / 8) {
            self.spans.sort_unstable_by(cmp);
            return;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut out = vec![self.spans[0]; n];
        let mut next = starts.clone();
        for s in &self.spans {
            let b = bucket(s);
            out[next[b] as usize] = *s;
            next[b] += 1;
        }
        for w in starts.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            if b - a > 1 {
                out[a..b].sort_unstable_by(cmp);
            }
        }
        self.spans = out;
    }

    /// Sets every record's head from the bytes after the first `skip` of its key,
    /// which all the keys share: the heads then tell apart keys with a long common
    /// start (names in key order) without reading the arena.
    fn set_heads(&mut self, skip: usize) {
        let blocks = &self.blocks;
        for s in &mut self.spans {
            let key = &blocks[s.block as usize][s.off as usize..(s.off + s.klen) as usize];
            s.head = key_head(&key[skip.min(key.len())..]);
        }
    }

    /// Forgets the records, wiping their bytes but keeping the blocks.
    fn clear(&mut self) {
        for b in &mut self.blocks[..self.used] {
            b.clear();
        }
        self.used = 0;
        self.bytes = 0;
        self.spans.clear();
    }
}

/// Collects records, then yields them sorted by key (bytewise; records with equal keys
/// in the order they were pushed).
pub struct ExternalSort {
    to: SpillTo,
    arena: Arena,
    runs: Vec<File>,
    pushed: u64,
    bytes: u64,
    /// The start of the first key pushed (at most `COMMON_MAX` bytes) and how much of
    /// it every key pushed so far shares (see [`Arena::set_heads`]).
    first: Vec<u8>,
    common: usize,
}

impl std::fmt::Debug for ExternalSort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSort")
            .field("pushed", &self.pushed)
            .field("runs", &self.runs.len())
            .finish()
    }
}

impl ExternalSort {
    /// A sorter spilling as `to` says.
    pub fn new(to: &SpillTo) -> Self {
        ExternalSort {
            to: to.clone(),
            arena: Arena::new(),
            runs: Vec::new(),
            pushed: 0,
            bytes: 0,
            first: Vec::new(),
            common: 0,
        }
    }

    /// Narrows the start that every key shares to what `key` shares with the first.
    fn narrow_common(&mut self, key: &[&[u8]]) {
        if self.pushed == 0 {
            for part in key {
                let take = part.len().min(COMMON_MAX - self.first.len());
                self.first.extend_from_slice(&part[..take]);
            }
            self.common = self.first.len();
            return;
        }
        let mut i = 0;
        for part in key {
            for &b in *part {
                if i == self.common || b != self.first[i] {
                    self.common = i;
                    return;
                }
                i += 1;
            }
        }
        self.common = self.common.min(i);
    }

    /// Adds a record.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.push_parts(&[key], &[value])
    }

    /// Adds a record whose key is the concatenation of the parts of `key`, and its
    /// value that of `value` (so callers need no buffer to build them in).
    pub fn push_parts(&mut self, key: &[&[u8]], value: &[&[u8]]) -> Result<()> {
        let klen: usize = key.iter().map(|k| k.len()).sum();
        let vlen: usize = value.iter().map(|v| v.len()).sum();
        let size = klen + vlen + INDEX_ENTRY;
        if !self.arena.spans.is_empty()
            && self.to.dir.is_some()
            && self.arena.held() + size > self.to.budget
        {
            self.spill()?;
        }
        self.narrow_common(key);
        self.pushed += 1;
        self.bytes += (klen + vlen) as u64;
        self.arena.push(key, value)
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.pushed
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Bytes of keys and values pushed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether any run went to a file.
    pub fn spilled(&self) -> bool {
        !self.runs.is_empty()
    }

    fn spill(&mut self) -> Result<()> {
        if self.arena.spans.is_empty() {
            return Ok(());
        }
        if self.runs.len() >= MAX_FAN_IN {
            self.merge_runs()?;
        }
        self.sort_arena();
        let dir = self.to.dir.clone().unwrap_or_default();
        let file = spill_file(&self.to)?;
        let mut w = RunWriter::new(file);
        let a = &self.arena;
        for s in &a.spans {
            w.write(a.key(s), a.value(s)).at(&dir)?;
        }
        let file = w.finish().at(&dir)?;
        self.runs.push(file);
        self.arena.clear();
        Ok(())
    }

    /// Sorts the records held in memory, their heads taken past the start every key
    /// shares.
    fn sort_arena(&mut self) {
        self.arena.set_heads(self.common);
        self.arena.sort();
    }

    /// Merges every run into one, so that the number of open runs (and their buffers)
    /// stays bounded.
    fn merge_runs(&mut self) -> Result<()> {
        let dir = self.to.dir.clone().unwrap_or_default();
        let runs = std::mem::take(&mut self.runs);
        let mut merge = Merge::new(runs, &dir, self.common)?;
        let mut w = RunWriter::new(spill_file(&self.to)?);
        while let Some((k, v)) = merge.next()? {
            w.write(k, v).at(&dir)?;
        }
        self.runs.push(w.finish().at(&dir)?);
        Ok(())
    }

    /// The records in key order.
    pub fn finish(mut self) -> Result<Sorted> {
        if self.runs.is_empty() {
            self.sort_arena();
            return Ok(Sorted {
                inner: Inner::Memory {
                    arena: self.arena,
                    pos: 0,
                },
                len: self.pushed,
            });
        }
        self.spill()?;
        // The arena's buffer is no longer needed while merging.
        self.arena = Arena::new();
        let dir = self.to.dir.clone().unwrap_or_default();
        let merge = Merge::new(std::mem::take(&mut self.runs), &dir, self.common)?;
        Ok(Sorted {
            inner: Inner::Merge(merge),
            len: self.pushed,
        })
    }
}

/// The output of an [`ExternalSort`]: records in key order, lent one at a time.
pub struct Sorted {
    inner: Inner,
    len: u64,
}

enum Inner {
    Memory { arena: Arena, pos: usize },
    Merge(Merge),
}

impl std::fmt::Debug for Sorted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sorted").field("len", &self.len).finish()
    }
}

impl Sorted {
    /// An empty output.
    pub fn empty() -> Sorted {
        Sorted {
            inner: Inner::Memory {
                arena: Arena::new(),
                pos: 0,
            },
            len: 0,
        }
    }

    /// How many records there are.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next record, `(key, value)`, valid until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        match &mut self.inner {
            Inner::Memory { arena, pos } => {
                let Some(s) = arena.spans.get(*pos) else {
                    // Past the end, so that `current` says None.
                    *pos = arena.spans.len() + 1;
                    return Ok(None);
                };
                if let Some(ahead) = arena.spans.get(*pos + PREFETCH_AHEAD) {
                    let block = &arena.blocks[ahead.block as usize];
                    let at = ahead.off as usize;
                    prefetch(block[at..].as_ptr());
                    if (at & 63) + (ahead.klen + ahead.vlen) as usize > 64 {
                        prefetch(block[(at + 64).min(block.len() - 1)..].as_ptr());
                    }
                }
                *pos += 1;
                Ok(Some((arena.key(s), arena.value(s))))
            }
            Inner::Merge(m) => m.next(),
        }
    }

    /// The record the last call of [`Sorted::next`] returned (None before the first
    /// call and at the end).
    pub fn current(&self) -> Option<(&[u8], &[u8])> {
        match &self.inner {
            Inner::Memory { arena, pos } => {
                let s = arena.spans.get(pos.checked_sub(1)?)?;
                Some((arena.key(s), arena.value(s)))
            }
            Inner::Merge(m) => m.lent.map(|r| m.readers[r].record()),
        }
    }

    /// Starts again from the first record.
    pub fn rewind(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Memory { pos, .. } => {
                *pos = 0;
                Ok(())
            }
            Inner::Merge(m) => m.rewind(),
        }
    }

    /// The records as owned values (an iterator for callers that keep them).
    pub fn into_records(mut self) -> Records<'static> {
        let mut failed = false;
        Box::new(std::iter::from_fn(move || {
            if failed {
                return None;
            }
            match self.next() {
                Ok(Some((k, v))) => Some(Ok(Record::new(k.to_vec(), v.to_vec()))),
                Ok(None) => None,
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        }))
    }
}

/// Writes records to a run file through a buffer that is wiped after every flush.
struct RunWriter {
    file: File,
    buf: Zeroizing<Vec<u8>>,
}

impl RunWriter {
    fn new(file: File) -> RunWriter {
        RunWriter {
            file,
            buf: Zeroizing::new(Vec::with_capacity(RUN_BUF)),
        }
    }

    fn write(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let head = [
            (key.len() as u32).to_le_bytes(),
            (value.len() as u32).to_le_bytes(),
        ];
        for part in [&head[0][..], &head[1][..], key, value] {
            if self.buf.len() + part.len() > self.buf.capacity() {
                self.flush()?;
            }
            if part.len() > self.buf.capacity() {
                self.file.write_all(part)?;
            } else {
                self.buf.extend_from_slice(part);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.buf.iter_mut().for_each(|b| *b = 0);
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<File> {
        self.flush()?;
        self.file.seek(SeekFrom::Start(0))?;
        Ok(self.file)
    }
}

/// Reads the records of a run, one at a time, lending each from its buffer (a record
/// cut by the buffer's end is moved to its start first; one longer than the buffer is
/// read whole into a buffer of its own).
struct RunReader {
    file: File,
    /// `RUN_BUF` bytes (wiped when dropped); `pos..len` are read and not yet consumed.
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    len: usize,
    /// A record longer than `buf`.
    big: Zeroizing<Vec<u8>>,
    /// Where the current record starts in `buf` (None: in `big`).
    at: Option<usize>,
    klen: usize,
    total: usize,
    /// Eight bytes of the current key as a number ([`key_head`]), from past the
    /// start every key of the sort shares.
    head: u64,
    /// Bytes of that shared start.
    skip: usize,
    /// No current record: the run is read to its end.
    done: bool,
}

impl RunReader {
    fn new(file: File, skip: usize) -> RunReader {
        RunReader {
            file,
            buf: Zeroizing::new(vec![0u8; RUN_BUF]),
            pos: 0,
            len: 0,
            big: Zeroizing::new(Vec::new()),
            at: None,
            klen: 0,
            total: 0,
            head: 0,
            skip,
            done: false,
        }
    }

    fn rewind(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.pos = 0;
        self.len = 0;
        self.done = false;
        Ok(())
    }

    /// Makes `need` (at most the buffer's size) unread bytes lie together from `pos`,
    /// reading as needed; returns how many lie there (fewer only at the end of the run).
    fn ensure(&mut self, need: usize) -> io::Result<usize> {
        if self.len - self.pos >= need {
            return Ok(need);
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        while self.len < need {
            match self.file.read(&mut self.buf[self.len..]) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.len.min(need))
    }

    /// Reads the next record; false at the end.
    fn advance(&mut self) -> io::Result<bool> {
        let ended = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a temporary sort file ended early",
            )
        };
        match self.ensure(8)? {
            0 => {
                self.done = true;
                return Ok(false);
            }
            8 => {}
            _ => return Err(ended()),
        }
        let head = &self.buf[self.pos..self.pos + 8];
        let klen = u32::from_le_bytes(head[..4].try_into().expect("4")) as usize;
        let vlen = u32::from_le_bytes(head[4..].try_into().expect("4")) as usize;
        self.pos += 8;
        let total = klen + vlen;
        if total <= self.buf.len() {
            if self.ensure(total)? < total {
                return Err(ended());
            }
            self.at = Some(self.pos);
            self.pos += total;
        } else {
            // A new buffer; the last one is wiped as it drops.
            let mut big = Zeroizing::new(vec![0u8; total]);
            let have = self.len - self.pos;
            big[..have].copy_from_slice(&self.buf[self.pos..self.len]);
            self.pos = self.len;
            self.file.read_exact(&mut big[have..]).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    ended()
                } else {
                    e
                }
            })?;
            self.big = big;
            self.at = None;
        }
        self.klen = klen;
        self.total = total;
        let key = self.key();
        self.head = key_head(&key[self.skip.min(key.len())..]);
        Ok(true)
    }

    fn bytes(&self) -> &[u8] {
        match self.at {
            Some(at) => &self.buf[at..at + self.total],
            None => &self.big,
        }
    }

    fn key(&self) -> &[u8] {
        &self.bytes()[..self.klen]
    }

    fn record(&self) -> (&[u8], &[u8]) {
        self.bytes().split_at(self.klen)
    }
}

/// A k-way merge of sorted runs through a tree of losers: each internal node holds the
/// run that lost the match played there, the root the overall winner, so the next
/// record costs one match per level (a heap costs two). Runs are ordered by their
/// current key, then by run, so equal keys come in push order; a run read to its end
/// loses every match.
struct Merge {
    readers: Vec<RunReader>,
    /// `tree[0]`: the run whose record comes next; `tree[1..k]`: the losers. The
    /// leaves, runs `0..k`, sit at positions `k..2k`; a position's parent is half of it.
    tree: Vec<usize>,
    /// The run whose record was lent last, advanced on the next call.
    lent: Option<usize>,
    dir: PathBuf,
}

impl Merge {
    /// A merge of `runs`, whose keys all share their first `skip` bytes.
    fn new(runs: Vec<File>, dir: &Path, skip: usize) -> Result<Merge> {
        let mut m = Merge {
            readers: runs.into_iter().map(|f| RunReader::new(f, skip)).collect(),
            tree: Vec::new(),
            lent: None,
            dir: dir.to_path_buf(),
        };
        m.start()?;
        Ok(m)
    }

    fn start(&mut self) -> Result<()> {
        self.lent = None;
        for r in &mut self.readers {
            r.advance().at(&self.dir)?;
        }
        let k = self.readers.len();
        self.tree = vec![0; k.max(1)];
        // Every internal node's winner, children before parents.
        let mut win = vec![0usize; k.max(1)];
        for p in (1..k).rev() {
            let side = |c: usize| if c >= k { c - k } else { win[c] };
            let (a, b) = (side(2 * p), side(2 * p + 1));
            let (w, l) = if self.before(a, b) { (a, b) } else { (b, a) };
            win[p] = w;
            self.tree[p] = l;
        }
        self.tree[0] = if k > 1 { win[1] } else { 0 };
        Ok(())
    }

    fn rewind(&mut self) -> Result<()> {
        for r in &mut self.readers {
            r.rewind().at(&self.dir)?;
        }
        self.start()
    }

    /// Whether run `a`'s record comes before run `b`'s.
    fn before(&self, a: usize, b: usize) -> bool {
        let (ra, rb) = (&self.readers[a], &self.readers[b]);
        if ra.done || rb.done {
            return !ra.done;
        }
        ra.head
            .cmp(&rb.head)
            .then_with(|| ra.key().cmp(rb.key()))
            .then(a.cmp(&b))
            .is_lt()
    }

    fn next(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if self.readers.is_empty() {
            return Ok(None);
        }
        if let Some(run) = self.lent.take() {
            self.readers[run].advance().at(&self.dir)?;
            // The run's new record plays its way up from its leaf.
            let mut w = run;
            let mut p = (run + self.readers.len()) / 2;
            while p >= 1 {
                if self.before(self.tree[p], w) {
                    std::mem::swap(&mut self.tree[p], &mut w);
                }
                p /= 2;
            }
            self.tree[0] = w;
        }
        let top = self.tree[0];
        if self.readers[top].done {
            return Ok(None);
        }
        self.lent = Some(top);
        Ok(Some(self.readers[top].record()))
    }
}

/// Records in key order, lent one at a time: a scan that is already in key order, or
/// the output of an external sort.
pub enum SortedStream<'a> {
    /// A backend scan in key order.
    Scan {
        /// The scan.
        records: Records<'a>,
        /// The record lent last.
        current: Option<Record>,
        /// Whether values are dropped (keys only).
        keys_only: bool,
    },
    /// A sort's output.
    Sorted(Sorted),
}

impl SortedStream<'_> {
    /// The next record, `(key, value)` (the value is empty for a keys-only stream),
    /// valid until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        match self {
            SortedStream::Scan {
                records,
                current,
                keys_only,
            } => {
                *current = records.next().transpose()?;
                Ok(current.as_ref().map(|r| {
                    let v: &[u8] = if *keys_only { &[] } else { &r.value };
                    (&r.key[..], v)
                }))
            }
            SortedStream::Sorted(s) => s.next(),
        }
    }

    /// The record the last call of [`SortedStream::next`] returned (None before the
    /// first call and at the end).
    pub fn current(&self) -> Option<(&[u8], &[u8])> {
        match self {
            SortedStream::Scan {
                current, keys_only, ..
            } => current.as_ref().map(|r| {
                let v: &[u8] = if *keys_only { &[] } else { &r.value };
                (&r.key[..], v)
            }),
            SortedStream::Sorted(s) => s.current(),
        }
    }
}

/// `records` in key order: as they are when `sorted`, else through an external sort
/// spilling as `to` says.
pub fn sort_records<'a>(records: Records<'a>, sorted: bool, to: &SpillTo) -> Result<Records<'a>> {
    if sorted {
        return Ok(records);
    }
    let mut sorter = ExternalSort::new(to);
    for r in records {
        let r = r?;
        sorter.push(&r.key, &r.value)?;
    }
    Ok(sorter.finish()?.into_records())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Sorted) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((k, v)) = s.next().unwrap() {
            out.push((k.to_vec(), v.to_vec()));
        }
        out
    }

    #[test]
    fn group_hash_is_the_hash_of_the_concatenation() {
        let whole = b"someone.with.a.long.name\0example.org\0";
        for cut in 0..whole.len() {
            for cut2 in cut..whole.len() {
                let parts = [&whole[..cut], &whole[cut..cut2], &whole[cut2..]];
                assert_eq!(group_hash(&parts), group_hash(&[whole]), "{cut} {cut2}");
            }
        }
        assert_ne!(group_hash(&[b"a"]), group_hash(&[b"a\0"]));
        // The top byte, which the distribution reads, takes many values.
        let tops: std::collections::HashSet<u8> = (0..1000u32)
            .map(|i| group_hash(&[format!("user{i}\0example.org\0").as_bytes()])[0])
            .collect();
        assert!(tops.len() > 200, "{} distinct top bytes", tops.len());
    }

    #[test]
    fn sorts_across_spilled_runs_and_rewinds() {
        let dir = tempfile::tempdir().unwrap();
        let to = SpillTo::new(dir.path(), None, 0);
        let mut s = ExternalSort::new(&to);
        let mut want = Vec::new();
        for i in 0..20_000u32 {
            let k = format!("k{:08}", (i.wrapping_mul(2_654_435_761)) % 100_000).into_bytes();
            want.push((k.clone(), i.to_le_bytes().to_vec()));
            s.push(&k, &i.to_le_bytes()).unwrap();
        }
        assert!(s.runs.len() > 1, "spilled {} runs", s.runs.len());
        assert!(s.runs.len() <= MAX_FAN_IN);
        assert!(s.arena.held() <= MIN_BUDGET);
        // Equal keys keep their push order.
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = s.finish().unwrap();
        assert_eq!(out.len(), 20_000);
        assert_eq!(drain(&mut out), want);
        out.rewind().unwrap();
        assert_eq!(drain(&mut out), want);
        // Nothing named was left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn merges_records_of_every_size_across_many_runs() {
        // Records from a few bytes to twice a run's buffer, so that some are cut by the
        // buffer's end and some are longer than it; more runs than the fan-in, so runs
        // are merged into one before the last merge; keys repeated across runs.
        let dir = tempfile::tempdir().unwrap();
        let to = SpillTo::new(dir.path(), None, 0);
        let mut s = ExternalSort::new(&to);
        let mut want = Vec::new();
        let mut x: u32 = 7;
        for i in 0..3_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let key = format!("{:04}", (x >> 8) % 700).into_bytes();
            let len = match i % 50 {
                0 => 2 * RUN_BUF + (x as usize % 100),
                1 => RUN_BUF - 3,
                _ => (x as usize >> 4) % 3000,
            };
            let value: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            want.push((key.clone(), value.clone()));
            s.push(&key, &value).unwrap();
        }
        assert!(s.runs.len() > 2, "spilled {} runs", s.runs.len());
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = s.finish().unwrap();
        assert_eq!(drain(&mut out), want);
        out.rewind().unwrap();
        assert_eq!(drain(&mut out), want);
        assert!(out.current().is_none());
    }

    #[test]
    fn keys_with_a_long_common_start() {
        // Every key starts with the same 20 bytes (one is only those), the rest in
        // pseudo-random order with repeats; in memory and spilled.
        for budget in [DEFAULT_BUDGET, 0] {
            let dir = tempfile::tempdir().unwrap();
            let to = SpillTo::new(dir.path(), None, budget);
            let mut s = ExternalSort::new(&to);
            let mut want = Vec::new();
            for i in 0..30_000u32 {
                let mut k = b"user.with.long.start".to_vec();
                if i != 17 {
                    let n = i.wrapping_mul(2_654_435_761) % 9_000;
                    k.extend_from_slice(format!("{n}").as_bytes());
                }
                want.push((k.clone(), i.to_le_bytes().to_vec()));
                s.push(&k, &i.to_le_bytes()).unwrap();
            }
            assert_eq!(s.common, 20);
            assert_eq!(s.spilled(), budget == 0);
            want.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(drain(&mut s.finish().unwrap()), want);
        }
    }

    #[test]
    fn in_memory_order_with_and_without_distribution() {
        // Keys led by a hash (distributed by their first bits), keys sharing their
        // first bytes (compared throughout), and both around the size where the
        // distribution starts; duplicates keep their push order either way.
        for n in [DISTRIBUTE_FROM - 1, DISTRIBUTE_FROM, 50_000] {
            for hashed in [true, false] {
                let mut s = ExternalSort::new(&SpillTo::memory_only());
                let mut want = Vec::new();
                for i in 0..n as u64 {
                    let j = i % (n as u64 / 3 + 1);
                    let k = if hashed {
                        let h = j.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        let mut k = h.to_be_bytes().to_vec();
                        k.extend_from_slice(format!("u{j}").as_bytes());
                        k
                    } else {
                        format!("user{j:09}").into_bytes()
                    };
                    s.push(&k, &i.to_le_bytes()).unwrap();
                    want.push((k, i.to_le_bytes().to_vec()));
                }
                want.sort_by(|a, b| a.0.cmp(&b.0));
                let mut out = s.finish().unwrap();
                assert_eq!(drain(&mut out), want, "{n} records, hashed {hashed}");
            }
        }
    }

    #[test]
    fn small_inputs_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ExternalSort::new(&SpillTo::new(dir.path(), None, DEFAULT_BUDGET));
        for k in ["b", "a", "c"] {
            s.push_parts(&[k.as_bytes(), b"!"], &[b"v"]).unwrap();
        }
        assert!(!s.spilled());
        let got: Vec<Vec<u8>> = s
            .finish()
            .unwrap()
            .into_records()
            .map(|r| r.unwrap().key)
            .collect();
        assert_eq!(got, [b"a!".to_vec(), b"b!".to_vec(), b"c!".to_vec()]);
    }

    #[test]
    fn spill_files_are_unnamed_or_gone_and_private() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let to = SpillTo::new(dir.path(), None, 0);
        let f = spill_file(&to).unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o600);
        let named = named_spill_file(dir.path(), std::ffi::OsStr::new(".x-")).unwrap();
        assert_eq!(named.metadata().unwrap().mode() & 0o777, 0o600);
        assert_eq!(named.metadata().unwrap().nlink(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A directory that refuses files: keys-only sorts go to the temporary directory.
        let missing = dir.path().join("missing");
        assert!(spill_file(&SpillTo::new(&missing, None, 0)).is_err());
    }
}
