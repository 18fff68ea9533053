//! Zeroization: no freed heap block ever holds a piece of a password.
//!
//! This test binary has its own global allocator, which scans every block the program
//! frees (and every block a `realloc` abandons) for any 8-byte piece of the
//! distinctive passwords below, and records where it was freed. The library's secret
//! paths then run: reading a password from standard input, setting passwords (with
//! SCRAM and OTP secrets) in every format, bulk import of lines, CSV and JSON
//! (`properties` included), reading every record back, conversion between formats,
//! and export with secrets. Any hit fails the test with the backtrace of the free.
//!
//! Not covered: memory that C code frees itself (SQLite's and LMDB's own buffers go
//! to libc's allocator, not this one; new blocks are filled with a pattern so such
//! leftovers are not blamed on the Rust code that reuses the memory), the stack, and
//! what the binaries do on top of the library (their allocator wipes every freed
//! block: see `sasldb::cli::alloc`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use sasldb::account::{SecretPolicy, set_password};
use sasldb::bulk::export::{ExportFormat, ExportOptions, Scheme};
use sasldb::bulk::import::{InputFormat, Mode};
use sasldb::{Database, Transaction, WriteOptions};
use sasldb::{Format, Location};
use zeroize::Zeroizing;

/// The passwords the scanner looks for. `const` data, so the needles themselves never
/// live on the heap.
const SECRETS: [&[u8]; 4] = [
    b"Zq7pL9mW2xR5vK3nTb8c",
    b"Hj4sNf6dQy1gUe0aPw9r",
    b"Mx2kVb7nRt5yWq8sLc3d",
    b"Pf9gTh4jKl6mNb2vCx7z",
];
const WINDOW: usize = 8;

static ARMED: AtomicBool = AtomicBool::new(false);
static HITS: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

struct Scanning;

fn holds_secret(block: &[u8]) -> Option<usize> {
    for (i, s) in SECRETS.iter().enumerate() {
        for w in s.windows(WINDOW) {
            let first = w[0];
            let mut pos = 0;
            while let Some(off) = block[pos..].iter().position(|&b| b == first) {
                let at = pos + off;
                if block.len() - at >= WINDOW && &block[at..at + WINDOW] == w {
                    return Some(i);
                }
                pos = at + 1;
            }
        }
    }
    None
}

impl Scanning {
    /// Scans a block about to be freed.
    unsafe fn scan(&self, ptr: *mut u8, size: usize) {
        if !ARMED.load(Ordering::Relaxed) || size < WINDOW {
            return;
        }
        if IN_HOOK.with(|h| h.replace(true)) {
            return;
        }
        // SAFETY: the block is live and `size` bytes long until we free it.
        let block = unsafe { std::slice::from_raw_parts(ptr, size) };
        if let Some(i) = holds_secret(block) {
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            // Keep the frames of this crate and the project, not std's.
            let frames: Vec<&str> = bt
                .lines()
                .filter(|l| l.contains("sasldb") || l.contains("zeroize::"))
                .take(40)
                .collect();
            HITS.lock().unwrap().push(format!(
                "secret {i} in a freed block of {size} bytes:\n{}",
                frames.join("\n")
            ));
        }
        IN_HOOK.with(|h| h.set(false));
    }
}

unsafe impl GlobalAlloc for Scanning {
    /// Fills new blocks with a pattern: a block may come from memory C code (SQLite,
    /// LMDB) freed without wiping, and what a hit reports must be what Rust code
    /// wrote into the block during its life.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            let p = System.alloc(layout);
            if !p.is_null() {
                std::ptr::write_bytes(p, 0xa5, layout.size());
            }
            p
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe {
            self.scan(ptr, layout.size());
            System.dealloc(ptr, layout)
        }
    }

    /// Always moves, so the abandoned block is scanned as a freed one (a growing
    /// `Vec` that held a secret leaves its old copy behind).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[global_allocator]
static A: Scanning = Scanning;

/// A buffer holding `parts`, allocated once at its final size and wiped on drop.
fn zbuf(parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len()).sum()));
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

/// A `Write` sink whose buffer is wiped on drop and never reallocates.
struct Sink(Zeroizing<Vec<u8>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        assert!(
            self.0.len() + buf.len() <= self.0.capacity(),
            "sink too small"
        );
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn opts() -> WriteOptions {
    WriteOptions {
        ownership: sasldb::OwnershipPolicy::RootGroup(nix::unistd::getegid().as_raw().to_string()),
        ..WriteOptions::default()
    }
}

fn policy() -> SecretPolicy {
    SecretPolicy {
        scram: true,
        otp: true,
        scram_iterations: 16,
        ..SecretPolicy::default()
    }
}

/// Feeds `data` to fd 0 (replaced by a pipe) and reads one password as the tools do.
fn read_password_from_pipe(data: &[u8]) -> sasldb::Secret {
    let (r, w) = nix::unistd::pipe().unwrap();
    let saved = nix::unistd::dup(std::io::stdin()).unwrap();
    nix::unistd::dup2_stdin(&r).unwrap();
    let mut wf = std::fs::File::from(w);
    wf.write_all(data).unwrap();
    drop(wf);
    let pw = sasldb::cli::password::read_password("", true).unwrap();
    nix::unistd::dup2_stdin(&saved).unwrap();
    let _ = r.as_raw_fd();
    pw
}

fn run_all() {
    let dir = tempfile::tempdir().unwrap();
    let s = |i: usize| SECRETS[i];

    // Password input.
    let pw = read_password_from_pipe(&zbuf(&[s(0), b"\nrest"]));
    assert_eq!(&pw[..], s(0));
    drop(pw);

    for (n, format) in [Format::Bdb, Format::Gdbm, Format::Lmdb, Format::Sqlite]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("db{n}"));
        let loc = Location::with_format(format, &path);
        // saslpasswd2's path: set passwords with SCRAM and OTP secrets.
        let mut txn = Transaction::begin(&loc, &opts()).unwrap();
        for (i, user) in ["alice", "bob"].iter().enumerate() {
            set_password(&mut txn, user.as_bytes(), b"z.test", s(i), &policy()).unwrap();
        }
        txn.commit().unwrap();
        // A second change rewrites (or updates in place) a file holding secrets.
        let mut txn = Transaction::begin(&loc, &opts()).unwrap();
        set_password(&mut txn, b"alice", b"z.test", s(2), &policy()).unwrap();
        txn.commit().unwrap();

        // Imports: lines, CSV, JSON with properties.
        let inputs: [(InputFormat, Zeroizing<Vec<u8>>); 3] = [
            (
                InputFormat::Lines,
                zbuf(&[b"carol@z.test:", s(3), b"\r\ndave@z.test:", s(1), b"\n"]),
            ),
            (
                InputFormat::Csv,
                zbuf(&[
                    b"user,realm,password\nerin,z.test,\"",
                    s(0),
                    b"\"\nfrank,z.test,",
                    s(2),
                    b"\n",
                ]),
            ),
            (
                InputFormat::Json,
                zbuf(&[
                    br#"[{"user": "gina", "realm": "z.test", "password": ""#,
                    s(3),
                    br#""}, {"user": "hank", "realm": "z.test", "properties": {"userPassword": ""#,
                    s(1),
                    br#"", "cmusaslsecretX": {"base64": "SGo0c05mNmRReTFnVWUwYVB3OXI="}}}]"#,
                ]),
            ),
        ];
        for (fmt, input) in &inputs {
            let parsed = sasldb::bulk::import::parse(input, *fmt);
            assert!(parsed.rejected.is_empty(), "{fmt:?}: {:?}", parsed.rejected);
            let mut txn = Transaction::begin(&loc, &opts()).unwrap();
            sasldb::bulk::import::apply(
                &mut txn,
                parsed.entries,
                Mode::Upsert,
                &policy(),
                b"z.test",
                &mut |_| {},
            )
            .unwrap();
            txn.commit().unwrap();
        }

        // Reading back.
        let db = Database::open(&loc).unwrap();
        let n_records = db
            .records()
            .unwrap()
            .inspect(|r| assert!(r.is_ok()))
            .count();
        assert!(n_records >= 8, "{format}: {n_records}");
        let got = db
            .get(&sasldb::Key::new("carol", "z.test", "userPassword").unwrap())
            .unwrap();
        assert_eq!(got.as_deref().map(|v| &v[..]), Some(s(3)));
        // Export with secrets.
        for format in [
            ExportFormat::Json,
            ExportFormat::Csv,
            ExportFormat::Dovecot(Scheme::Plain),
        ] {
            let mut sink = Sink(Zeroizing::new(Vec::with_capacity(1 << 20)));
            let o = ExportOptions {
                format,
                with_secrets: true,
                realm: None,
            };
            sasldb::bulk::export::export(&db, &o, &mut sink).unwrap();
            assert!(sink.0.windows(WINDOW).any(|w| w == &s(3)[..WINDOW]));
        }
        drop(db);
    }
    // Conversion between every pair.
    for (i, from) in ["bdb", "gdbm", "lmdb", "sqlite"].iter().enumerate() {
        for to in ["bdb", "gdbm", "lmdb", "sqlite"] {
            let src: Location = format!("{from}:{}", dir.path().join(format!("db{i}")).display())
                .parse()
                .unwrap();
            let dst: Location = format!(
                "{to}:{}",
                dir.path().join(format!("conv-{from}-{to}")).display()
            )
            .parse()
            .unwrap();
            let o = sasldb::bulk::convert::ConvertOptions {
                overwrite: false,
                skip_malformed: false,
                write: opts(),
            };
            sasldb::bulk::convert::convert(&src, &dst, &o).unwrap();
        }
    }
}

#[test]
fn no_freed_block_holds_a_password() {
    // The scanner itself: a plain Vec holding a secret is seen when freed.
    ARMED.store(true, Ordering::SeqCst);
    drop(std::hint::black_box(SECRETS[1].to_vec()));
    ARMED.store(false, Ordering::SeqCst);
    let seen = std::mem::take(&mut *HITS.lock().unwrap());
    assert_eq!(seen.len(), 1, "the scanner missed a plain Vec: {seen:?}");

    ARMED.store(true, Ordering::SeqCst);
    run_all();
    ARMED.store(false, Ordering::SeqCst);
    let hits = std::mem::take(&mut *HITS.lock().unwrap());
    // Where they were freed: the innermost frame of the project.
    let mut places = std::collections::BTreeMap::<String, usize>::new();
    for h in &hits {
        let place = h
            .lines()
            .find(|l| l.contains("sasldb::"))
            .unwrap_or("?")
            .trim()
            .to_string();
        *places.entry(place).or_default() += 1;
    }
    assert!(
        hits.is_empty(),
        "{} freed blocks held a password, freed in:\n{}\nthe first ones:\n\n{}",
        hits.len(),
        places
            .iter()
            .map(|(p, n)| format!("  {n:5}  {p}"))
            .collect::<Vec<_>>()
            .join("\n"),
        hits.iter()
            .filter(|h| !h.contains("export::write_user") && !h.contains("csv_records"))
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
