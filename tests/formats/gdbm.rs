use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sasldb::internals::Backend;
use sasldb::internals::endian::Endian;
use sasldb::internals::gdbm::{
    DataFileLock, GdbmFile, HOST_SIGNED_CHAR, Header, Layout, WriteOptions, write_records,
};
use sasldb::{Database, Error, Format, Key, Location, Record, Transaction};
use sasldb::{Detected, detect};

use crate::support::{
    self, Rng, expected_records, fixture, peer, records_of, run_ok, run_with_stdin,
};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

// ---------------------------------------------------------------- helpers

/// Sasldb-shaped records ([`support::random_records`]) with values from empty to
/// several 64 KiB blocks.
fn random_records(seed: u64, n: usize) -> Pairs {
    let props = ["userPassword", "cmusaslsecretOTP", "authPassword", "x"];
    support::random_records(seed, n, &props, |rng| match rng.below(1000) {
        0..=2 => 20_000 + rng.below(140_000) as usize,
        3..=30 => 200 + rng.below(5000) as usize,
        _ => rng.below(64) as usize,
    })
}

fn write_file(path: &Path, pairs: &Pairs, opts: &WriteOptions) {
    let mut f = fs::File::create(path).unwrap();
    let recs = pairs
        .iter()
        .map(|(k, v)| Ok(Record::new(k.clone(), v.clone())));
    let st = write_records(recs, opts, &mut f).unwrap();
    assert_eq!(fs::metadata(path).unwrap().len(), st.file_len);
}

fn base64(s: &[u8]) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c:#x}"),
        })
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for &c in s.iter().take_while(|&&c| c != b'=') {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Every pair `gdbm_dump` (libgdbm's own iteration) gives, sorted.
fn gdbm_dump(path: &Path) -> Pairs {
    let out = run_ok(Command::new(peer("gdbm_dump")).arg(path));
    let mut items: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut count = None;
    for line in out.stdout.split(|&b| b == b'\n') {
        if let Some(n) = line.strip_prefix(b"#:len=") {
            items.push((std::str::from_utf8(n).unwrap().parse().unwrap(), Vec::new()));
        } else if let Some(n) = line.strip_prefix(b"#:count=") {
            count = Some(std::str::from_utf8(n).unwrap().parse::<usize>().unwrap());
        } else if !line.is_empty() && !line.starts_with(b"#") {
            items
                .last_mut()
                .expect("data before #:len")
                .1
                .extend_from_slice(line);
        }
    }
    let items: Vec<Vec<u8>> = items
        .into_iter()
        .map(|(len, b64)| {
            let d = base64(&b64);
            assert_eq!(d.len(), len, "gdbm_dump item length");
            d
        })
        .collect();
    assert!(items.len().is_multiple_of(2));
    assert_eq!(count, Some(items.len() / 2), "gdbm_dump #:count");
    let mut pairs: Pairs = items
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    pairs.sort();
    pairs
}

/// The C probe linked to libgdbm (tests/formats/gdbm_probe.c), compiled once per run.
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats/gdbm_probe.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("gdbm_probe.{}", std::process::id()));
        run_ok(
            Command::new(peer("cc"))
                .arg("-O1")
                .arg("-o")
                .arg(&out)
                .arg(&src)
                .arg("-lgdbm"),
        );
        out
    })
}

fn list_file(dir: &Path, pairs: &[(Vec<u8>, Vec<u8>)]) -> PathBuf {
    let list = dir.join(format!("list-{}", Rng::new(pairs.len() as u64).next_u64()));
    let mut text = Vec::new();
    for (k, v) in pairs {
        fast_hex(k, &mut text);
        text.push(b' ');
        fast_hex(v, &mut text);
        text.push(b'\n');
    }
    fs::write(&list, text).unwrap();
    list
}

fn fast_hex(b: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &x in b {
        out.push(DIGITS[usize::from(x >> 4)]);
        out.push(DIGITS[usize::from(x & 15)]);
    }
}

/// Runs the probe; returns its output (not checked).
fn probe_run(mode: &str, db: &Path, pairs: &[(Vec<u8>, Vec<u8>)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let list = list_file(dir.path(), pairs);
    Command::new(probe())
        .arg(mode)
        .arg(db)
        .arg(&list)
        .output()
        .unwrap()
}

/// Keys libgdbm's `gdbm_fetch` misses (or finds with another value).
fn libgdbm_misses(db: &Path, pairs: &[(Vec<u8>, Vec<u8>)]) -> usize {
    let out = probe_run("fetch", db, pairs);
    assert!(
        out.status.success(),
        "probe fetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn libgdbm_store(db: &Path, pairs: &[(Vec<u8>, Vec<u8>)], mode: &str) {
    let out = probe_run(mode, db, pairs);
    assert!(
        out.status.success(),
        "probe {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs gdbmtool's inspection commands read-only; they must succeed without a word on
/// stderr.
fn gdbmtool_inspect(db: &Path) -> String {
    let mut all = String::new();
    for cmd in ["header", "avail", "dir", "bucket 0", "count"] {
        let mut c = Command::new(peer("gdbmtool"));
        c.arg("-r").arg(db).args(cmd.split(' '));
        let out = run_ok(&mut c);
        assert!(
            out.stderr.is_empty(),
            "gdbmtool {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// Reads a file with our reader: scan (sorted), every key by lookup, and verify.
fn read_ours(path: &Path, want: &Pairs) {
    let db = GdbmFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    let got = records_of(db.scan());
    assert_eq!(got.len(), want.len(), "record count");
    assert!(got == *want, "records differ");
    for (k, v) in want {
        let found = db.get(k).unwrap().expect("key found by lookup");
        assert!(found[..] == v[..], "value by lookup");
    }
    assert_eq!(db.get(b"no such key \xff").unwrap(), None);
    let report = db.verify().unwrap();
    assert_eq!(report.records as usize, want.len());
}

// ---------------------------------------------------------------- fixtures

#[test]
fn cyrus_fixture_reads_exactly() {
    let path = fixture("gdbm/cyrus-master-gdbm.db");
    let want = expected_records(&fixture("gdbm/cyrus-master-gdbm.db.expected"));
    read_ours(&path, &want);
    let db = GdbmFile::open(&path).unwrap();
    assert!(db.verify().unwrap().warnings.is_empty());
    assert_eq!(db.layout_hint().page_size, Some(4096));
    assert!(!db.layout_hint().numsync);
    let db = Database::open(&Location::path_only(&path)).unwrap();
    assert_eq!(db.format(), Format::Gdbm);
    let alice = Key::new("alice", "mail.example.com", "userPassword").unwrap();
    assert_eq!(
        db.get(&alice).unwrap().as_deref().map(|v| &v[..]),
        Some(&b"S3cret!"[..])
    );
}

/// Files libgdbm made through gdbmtool: 5,000 keys (a third with UTF-8), enough to split
/// buckets and double the directory, at two block sizes, standard and numsync.
#[test]
fn gdbmtool_files_read_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let mut script = String::new();
    for i in 0..5000 {
        let name = if i % 3 == 0 {
            rng.name(12)
        } else {
            "user".into()
        };
        script.push_str(&format!(
            "store \"{name}{i}\" \"value {i} {}\"\n",
            "x".repeat(i % 50)
        ));
    }
    for bs in [512u32, 4096] {
        for numsync in [false, true] {
            let path = dir.path().join(format!("t{bs}{numsync}.db"));
            let mut cmd = Command::new(peer("gdbmtool"));
            cmd.arg("-n").arg("-b").arg(bs.to_string());
            if numsync {
                cmd.arg("-x");
            }
            let out = run_with_stdin(cmd.arg(&path), script.as_bytes());
            assert!(out.status.success());
            let want = gdbm_dump(&path);
            assert_eq!(want.len(), 5000);
            read_ours(&path, &want);
            let db = GdbmFile::open(&path).unwrap();
            let h: &Header = db.header();
            let (_, min_bits) = h.layout.min_directory(bs);
            let report = db.verify().unwrap();
            assert!(report.buckets > 1, "buckets split ({bs}, {numsync})");
            if bs == 512 {
                assert!(h.dir_bits > min_bits, "directory doubled ({bs}, {numsync})");
            }
            assert_eq!(h.numsync(), numsync);
            assert_eq!(db.layout_hint().numsync, numsync);
            assert_eq!(db.layout_hint().page_size, Some(bs));
            assert_eq!(report.foreign_hash_keys, 0);
        }
    }
}

/// A libgdbm file with a long avail stack (stores, then deletes of most records):
/// read exactly, and rewritten through a transaction without the free space.
#[test]
fn libgdbm_file_with_avail_stack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churn.db");
    run_ok(
        Command::new(peer("gdbmtool"))
            .args(["-n", "-b", "512"])
            .arg(&path)
            .arg("count"),
    );
    let pairs = random_records(61, 3000);
    libgdbm_store(&path, &pairs, "store");
    let (gone, kept): (Pairs, Pairs) = pairs.into_iter().partition(|p| p.1.len() % 3 != 0);
    libgdbm_store(&path, &gone, "delete");
    assert!(gdbm_dump(&path) == kept);
    read_ours(&path, &kept);
    let report = GdbmFile::open(&path).unwrap().verify().unwrap();
    assert!(report.avail_blocks > 10, "{report:?}");
    assert!(report.free_extents > 1000, "{report:?}");

    let before = fs::metadata(&path).unwrap().len();
    let mut txn = Transaction::begin(&Location::path_only(&path), &db_opts(Format::Gdbm)).unwrap();
    txn.delete_raw(kept[0].0.clone());
    txn.commit().unwrap();
    assert!(fs::metadata(&path).unwrap().len() < before / 2);
    assert!(gdbm_dump(&path) == kept[1..]);
}

// ---------------------------------------------------------------- our writer vs libgdbm

fn check_written(block_size: u32, numsync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let pairs = random_records(u64::from(block_size) + numsync as u64, 10_000);
    assert!(pairs.iter().any(|(_, v)| v.len() > block_size as usize));
    assert!(pairs.iter().any(|(k, _)| k.iter().any(|&b| b >= 0x80)));
    let opts = WriteOptions {
        block_size,
        numsync,
        ..Default::default()
    };
    write_file(&path, &pairs, &opts);
    assert!(
        gdbm_dump(&path) == pairs,
        "gdbm_dump differs at {block_size}"
    );
    let inspect = gdbmtool_inspect(&path);
    assert!(
        inspect.contains(&format!("block size      = {block_size}")),
        "{inspect}"
    );
    assert!(
        inspect.contains(if numsync {
            "GDBM (numsync)"
        } else {
            "GDBM (standard)"
        }),
        "{inspect}"
    );
    assert!(inspect.contains("There are 10000 items"), "{inspect}");
    assert_eq!(
        libgdbm_misses(&path, &pairs),
        0,
        "libgdbm lookups at {block_size}"
    );
    read_ours(&path, &pairs);
    let report = GdbmFile::open(&path).unwrap().verify().unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn written_512_is_read_by_libgdbm() {
    check_written(512, false);
}

#[test]
fn written_4096_numsync_is_read_by_libgdbm() {
    check_written(4096, true);
}

#[test]
fn written_65536_is_read_by_libgdbm() {
    check_written(65536, false);
}

/// libgdbm keeps updating our file in place (as Cyrus does): stores that split buckets
/// and double the directory, replacements and deletes; both libgdbm and we read the
/// result.
#[test]
fn libgdbm_updates_our_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.db");
    let pairs = random_records(11, 2000);
    let opts = WriteOptions {
        block_size: 512,
        ..Default::default()
    };
    write_file(&path, &pairs, &opts);
    let before = GdbmFile::open(&path).unwrap().header().dir_bits;
    let mut model: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = pairs.iter().cloned().collect();
    let added: Pairs = random_records(12, 3000)
        .into_iter()
        .filter(|(k, _)| !model.contains_key(k))
        .collect();
    libgdbm_store(&path, &added, "store");
    model.extend(added.iter().cloned());
    let gone: Pairs = pairs.iter().step_by(4).cloned().collect();
    libgdbm_store(&path, &gone, "delete");
    for (k, _) in &gone {
        model.remove(k);
    }
    let replaced: Pairs = pairs
        .iter()
        .skip(1)
        .step_by(4)
        .map(|(k, _)| (k.clone(), b"new value".to_vec()))
        .collect();
    libgdbm_store(&path, &replaced, "store");
    model.extend(replaced.iter().cloned());
    let want: Pairs = model.into_iter().collect();
    assert!(gdbm_dump(&path) == want);
    read_ours(&path, &want);
    assert!(GdbmFile::open(&path).unwrap().header().dir_bits > before);
}

/// Layouts libgdbm here cannot make (foreign byte order, 32-bit addresses, i386's
/// alignment) and the other `char` signedness: written by us, read back by scan and by
/// lookup (UTF-8 keys then need the second hash variant).
#[test]
fn foreign_layouts_and_hash_variants_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = random_records(21, 1000);
    let other = if cfg!(target_endian = "big") {
        Endian::Little
    } else {
        Endian::Big
    };
    let layouts = [
        Layout::lp64(other),
        Layout::ilp32(Endian::Little),
        Layout::ilp32(Endian::Big),
        Layout::ilp32_lfs(Endian::Little),
        Layout::ilp32_lfs(Endian::Big),
    ];
    for (i, layout) in layouts.into_iter().enumerate() {
        for numsync in [false, true] {
            for signed_char in [true, false] {
                let path = dir.path().join(format!("f{i}{numsync}{signed_char}.db"));
                let opts = WriteOptions {
                    block_size: 1024,
                    numsync,
                    layout,
                    signed_char,
                };
                write_file(&path, &pairs, &opts);
                read_ours(&path, &pairs);
                let db = GdbmFile::open(&path).unwrap();
                assert_eq!(db.header().layout, layout);
                assert_eq!(db.header().numsync(), numsync);
                let report = db.verify().unwrap();
                if signed_char == HOST_SIGNED_CHAR {
                    assert_eq!(report.foreign_hash_keys, 0);
                } else {
                    assert!(report.foreign_hash_keys > 0);
                    assert_eq!(report.warnings.len(), 1);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- damaged files

fn small_file(dir: &Path) -> (PathBuf, Pairs) {
    let path = dir.join("small.db");
    let pairs: Pairs = (0..40)
        .map(|i| {
            (
                format!("u{i}\0r\0p").into_bytes(),
                format!("v{i}").into_bytes(),
            )
        })
        .collect();
    let opts = WriteOptions {
        block_size: 512,
        ..Default::default()
    };
    write_file(&path, &pairs, &opts);
    (path, pairs)
}

/// Opens, scans and looks every key up; the first error, if any.
fn read_all(path: &Path, keys: &Pairs) -> Result<(), Error> {
    let db = GdbmFile::open(path)?;
    for r in db.scan() {
        r?;
    }
    for (k, _) in keys {
        db.get(k)?;
    }
    db.verify()?;
    Ok(())
}

fn is_gdbm_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt {
            format: Format::Gdbm,
            ..
        } | Error::Unsupported {
            format: Format::Gdbm,
            ..
        }
    )
}

/// Runs `f` on another thread and fails if it takes longer than `limit` (a hang).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("took too long (hang?) or panicked")
}

// Files are damaged in place (`write_at`, `set_len`): recreating a file is far slower
// than reading it on some filesystems, and these tests read thousands of variants.

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, pairs) = small_file(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    within(Duration::from_secs(20), move || {
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        for cut in (0..len).rev() {
            f.set_len(cut).unwrap();
            let r = read_all(&path, &pairs);
            assert!(r.is_err(), "truncated to {cut} bytes but read fine");
            let e = r.unwrap_err();
            assert!(is_gdbm_error(&e), "truncated to {cut}: {e}");
        }
    });
}

#[test]
fn every_flipped_byte_is_an_error_or_reads() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let (path, pairs) = small_file(dir.path());
    let bytes = fs::read(&path).unwrap();
    let errors = within(Duration::from_secs(20), move || {
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut errors = 0;
        for (off, &orig) in bytes.iter().enumerate() {
            for mask in [0xFFu8, 0x01, 0x80] {
                f.write_at(&[orig ^ mask], off as u64).unwrap();
                if let Err(e) = read_all(&path, &pairs) {
                    assert!(is_gdbm_error(&e), "offset {off}: {e}");
                    errors += 1;
                }
            }
            f.write_at(&[orig], off as u64).unwrap();
        }
        errors
    });
    // Header, directory and bucket bytes are checked; only record bytes (and unused
    // space) can change silently.
    assert!(errors > 500, "only {errors} flips were noticed");
}

#[test]
fn random_bytes_never_panic() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("random.db");
    within(Duration::from_secs(20), move || {
        let f = fs::File::create(&bad).unwrap();
        let mut rng = Rng::new(99);
        for i in 0..300 {
            let len = rng.below(5000) as usize;
            let mut b = rng.bytes(len);
            if b.len() >= 4 && i % 2 == 0 {
                b[..4].copy_from_slice(&0x1357_9ACFu32.to_le_bytes());
            }
            f.write_all_at(&b, 0).unwrap();
            f.set_len(len as u64).unwrap();
            let _ = read_all(&bad, &Vec::new());
        }
    });
}

/// Damage at known places gives the error that names it.
#[test]
fn targeted_damage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (path, pairs) = small_file(dir.path());
    let good = fs::read(&path).unwrap();
    let db = GdbmFile::open(&path).unwrap();
    let h = db.header().clone();
    assert_eq!(h.layout, Layout::host());
    let first_bucket = db.directory().entries[0] as usize;
    drop(db);
    let e = h.layout.endian;
    let table = 112; // h_table in a 64-bit bucket
    let avail_next = 40 + 8; // next_block of the header's avail block
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Patch, &str)> = vec![
        (
            "directory entry past the end",
            Box::new(move |b: &mut Vec<u8>| {
                let n = b.len() as u64;
                e.put_u64(b, 512, n);
            }),
            "directory entry 0",
        ),
        (
            "directory entry inside the header",
            Box::new(move |b: &mut Vec<u8>| e.put_u64(b, 512, 8)),
            "directory entry 0",
        ),
        (
            "directory outside the file",
            Box::new(move |b: &mut Vec<u8>| e.put_u64(b, 8, 1 << 40)),
            "directory at",
        ),
        (
            "avail stack pointing at the header's own table",
            Box::new(move |b: &mut Vec<u8>| e.put_u64(b, avail_next, 40)),
            "loops",
        ),
        (
            "avail block pointing at itself",
            Box::new(move |b: &mut Vec<u8>| {
                // Append a valid stack block whose next_block is its own address.
                let at = b.len() as u64;
                let mut blk = vec![0u8; (28 * 16 / 2) + 32];
                e.put_u32(&mut blk, 0, 28);
                e.put_u64(&mut blk, 8, at);
                b.extend_from_slice(&blk);
                let end = b.len() as u64;
                e.put_u64(b, 32, end); // next_block
                e.put_u64(b, avail_next, at);
            }),
            "loops back",
        ),
        (
            "header avail entry outside the file",
            Box::new(move |b: &mut Vec<u8>| {
                e.put_u32(b, 44, 1);
                e.put_u32(b, 56, 100);
                e.put_u64(b, 64, 1 << 40);
            }),
            "outside the allocated file",
        ),
        (
            "next_block before the end",
            Box::new(move |b: &mut Vec<u8>| e.put_u64(b, 32, 1024)),
            "recovery",
        ),
        (
            "depth does not match the directory size",
            Box::new(move |b: &mut Vec<u8>| e.put_u32(b, 20, 7)),
            "depth",
        ),
        (
            "bucket depth beyond the directory's",
            Box::new(move |b: &mut Vec<u8>| e.put_u32(b, first_bucket + 104, 30)),
            "depth 30",
        ),
        (
            "bucket count wrong",
            Box::new(move |b: &mut Vec<u8>| {
                let c = e.u32(b, first_bucket + 108);
                e.put_u32(b, first_bucket + 108, c + 1)
            }),
            "slots are used",
        ),
        (
            "element pointing past the end",
            Box::new(move |b: &mut Vec<u8>| {
                for slot in 0..16 {
                    let at = first_bucket + table + slot * 24;
                    if e.u32(b, at) != u32::MAX {
                        e.put_u64(b, at + 8, 1 << 40);
                    }
                }
            }),
            "outside the file",
        ),
        (
            "key bytes changed",
            Box::new(move |b: &mut Vec<u8>| {
                let at = first_bucket + table;
                let slot = (0..16)
                    .map(|s| at + s * 24)
                    .find(|&a| e.u32(b, a) != u32::MAX)
                    .unwrap();
                let ptr = e.u64(b, slot + 8) as usize;
                b[ptr] ^= 0x20;
            }),
            "does not match its element",
        ),
        (
            "bad magic",
            Box::new(move |b: &mut Vec<u8>| b[0] = 0),
            "magic",
        ),
    ];
    let bad = dir.path().join("bad.db");
    for (what, patch, needle) in cases {
        let mut b = good.clone();
        patch(&mut b);
        fs::write(&bad, &b).unwrap();
        let err = read_all(&bad, &pairs).expect_err(what);
        assert!(is_gdbm_error(&err), "{what}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "{what}: {msg}");
        assert!(!msg.contains('\n'), "{what}: one line");
    }
}

// ---------------------------------------------------------------- through the API

fn db_opts(format: Format) -> sasldb::WriteOptions {
    sasldb::WriteOptions {
        new_format: format,
        lock_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// put/delete on a libgdbm-made numsync file keeps it GDBM (numsync, same block size)
/// and libgdbm reads the result.
#[test]
fn transaction_keeps_gdbm_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let base = random_records(31, 300);
    // Made by libgdbm itself: numsync, 1024-byte blocks.
    run_ok(
        Command::new(peer("gdbmtool"))
            .args(["-n", "-x", "-b", "1024"])
            .arg(&path)
            .arg("count"),
    );
    libgdbm_store(&path, &base, "store");
    let loc = Location::path_only(&path);
    let mut txn = Transaction::begin(&loc, &db_opts(Format::Bdb)).unwrap();
    assert_eq!(txn.format(), Format::Gdbm);
    let uml = Key::new("jürgen", "exämple.org", "userPassword").unwrap();
    txn.put(&uml, b"n\xc3\xa9w".to_vec());
    txn.delete_raw(base[0].0.clone());
    txn.put_raw(base[1].0.clone(), b"changed".to_vec().into());
    let report = txn.commit().unwrap();
    assert!(report.written);
    let mut want: std::collections::BTreeMap<_, _> = base.iter().cloned().collect();
    want.remove(&base[0].0);
    want.insert(base[1].0.clone(), b"changed".to_vec());
    want.insert(uml.encode(), b"n\xc3\xa9w".to_vec());
    let want: Pairs = want.into_iter().collect();
    assert_eq!(detect(&path).unwrap(), Detected::Format(Format::Gdbm));
    assert!(gdbm_dump(&path) == want);
    assert_eq!(libgdbm_misses(&path, &want), 0);
    let db = GdbmFile::open(&path).unwrap();
    assert!(db.header().numsync());
    assert_eq!(db.header().block_size, 1024);
    let back = Database::open(&loc).unwrap();
    assert_eq!(
        back.get(&uml).unwrap().as_deref().map(|v| v.to_vec()),
        Some(b"n\xc3\xa9w".to_vec())
    );
}

#[test]
fn transaction_creates_new_gdbm_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let loc = Location::with_format(Format::Gdbm, &path);
    let mut txn = Transaction::begin(&loc, &db_opts(Format::Bdb)).unwrap();
    assert_eq!(txn.format(), Format::Gdbm);
    let k = Key::new("bob", "example.org", "userPassword").unwrap();
    txn.put(&k, b"pw".to_vec());
    txn.commit().unwrap();
    let want = vec![(k.encode(), b"pw".to_vec())];
    assert!(gdbm_dump(&path) == want);
    assert_eq!(libgdbm_misses(&path, &want), 0);
    use std::os::unix::fs::MetadataExt;
    let blksize = fs::metadata(dir.path()).unwrap().blksize() as u32;
    let expect_bs = if (512..=1 << 24).contains(&blksize) && blksize.is_power_of_two() {
        blksize
    } else {
        4096
    };
    assert_eq!(
        GdbmFile::open(&path).unwrap().header().block_size,
        expect_bs
    );
    gdbmtool_inspect(&path);
    // Empty transaction on an empty new file: creates an empty but valid database.
    let empty = dir.path().join("empty.db");
    let loc = Location::with_format(Format::Gdbm, &empty);
    Transaction::begin(&loc, &db_opts(Format::Bdb))
        .unwrap()
        .commit()
        .unwrap();
    assert!(gdbm_dump(&empty).is_empty());
}

/// A libgdbm writer (here util-linux `flock`, which takes the same lock) holding the
/// data file delays our transaction (which reads the file only under that lock) until
/// it lets go; with a short timeout the transaction cannot begin and the file is left
/// alone.
#[test]
fn commit_waits_for_a_gdbm_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let pairs = random_records(41, 50);
    write_file(&path, &pairs, &WriteOptions::default());
    let before = fs::read(&path).unwrap();
    let hold = |secs: &str| {
        let mut child = Command::new(peer("flock"))
            .arg("-x")
            .arg(&path)
            .args(["sh", "-c", &format!("echo locked; sleep {secs}")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        child
    };
    let loc = Location::path_only(&path);
    let k = Key::new("carol", "x", "userPassword").unwrap();

    // Short timeout: the transaction gives up, the file is untouched.
    let mut child = hold("2");
    let mut opts = db_opts(Format::Gdbm);
    opts.lock_timeout = Duration::from_millis(300);
    let err = Transaction::begin(&loc, &opts).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
    child.wait().unwrap();

    // Longer timeout: the transaction waits for the holder, then writes.
    let mut child = hold("1");
    let t = Instant::now();
    let mut txn = Transaction::begin(&loc, &db_opts(Format::Gdbm)).unwrap();
    txn.put(&k, b"pw".to_vec());
    txn.commit().unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    child.wait().unwrap();
    let db = Database::open(&loc).unwrap();
    assert_eq!(
        db.get(&k).unwrap().as_deref().map(|v| v.to_vec()),
        Some(b"pw".to_vec())
    );
}

/// A libgdbm writer's lock is held from the moment our transaction reads the file
/// until the new file has replaced it; the replaced file is retired (its magic number
/// cleared), so a libgdbm process still holding it open cannot update it.
#[test]
fn transaction_holds_the_lock_and_retires_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.db");
    let pairs = random_records(61, 20);
    write_file(&path, &pairs, &WriteOptions::default());
    let loc = Location::path_only(&path);
    let mut txn = Transaction::begin(&loc, &db_opts(Format::Gdbm)).unwrap();
    let add = vec![(b"late\0r\0userPassword".to_vec(), b"v".to_vec())];
    let out = probe_run("store", &path, &add);
    assert_eq!(
        out.status.code(),
        Some(2),
        "libgdbm wrote while we held the file"
    );
    let k = Key::new("new", "r", "userPassword").unwrap();
    txn.put(&k, b"pw".to_vec());
    // A process that opened the file before our rename.
    let held = fs::File::open(&path).unwrap();
    txn.commit().unwrap();
    // The file we held open is the replaced one: no longer GDBM for libgdbm.
    let mut magic = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&held, &mut magic, 0).unwrap();
    assert_eq!(magic, [0; 4]);
    libgdbm_store(&path, &add, "store");
    assert_eq!(libgdbm_misses(&path, &add), 0);
    assert_eq!(libgdbm_misses(&path, &pairs), 0);
}

/// A file a libgdbm writer is halfway through updating (here: a torn header while it
/// holds the lock) is not reported as corrupt: the reader waits for the lock and reads
/// the finished file; a lookup or scan that fails while the lock is held says so.
#[test]
fn a_torn_file_under_a_libgdbm_lock_is_not_corrupt() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.db");
    let pairs = random_records(71, 30);
    write_file(&path, &pairs, &WriteOptions::default());
    let good = fs::read(&path).unwrap();
    // The "writer": holds the lock, tears the header, restores it 300 ms later.
    let lock = DataFileLock::acquire(&path, Duration::from_secs(1)).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xff; 64], 8).unwrap();
    let fixer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        f.write_all_at(&good[8..72], 8).unwrap();
        drop(lock);
    });
    let t = Instant::now();
    let db = GdbmFile::open(&path).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    fixer.join().unwrap();
    assert_eq!(db.scan().count(), pairs.len());
    // Really damaged, with nobody holding the lock: corrupt, at once.
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xff; 64], 8).unwrap();
    let e = GdbmFile::open(&path).unwrap_err();
    assert!(is_gdbm_error(&e), "{e}");
}

/// Our saslpasswd2 and a libgdbm writer (Cyrus's GDBM backend's way of writing: open
/// with `flock(LOCK_EX | LOCK_NB)`, store, close) change one file at the same time,
/// two processes each: every write succeeds (ours wait for libgdbm's lock; the libgdbm
/// writer retries an open its lock refuses) and every user is there afterwards.
#[test]
fn our_writers_and_libgdbm_writers_on_one_file() {
    const USERS: usize = 30;
    let s = crate::support::Scratch::new();
    let path = s.path("mixed.db");
    let writer = gdbm_writer();
    // The file exists before anyone writes (a GDBM file, made by libgdbm).
    run_ok(
        Command::new(peer("gdbmtool"))
            .arg("-n")
            .arg(&path)
            .arg("count"),
    );
    let mut children = Vec::new();
    for prefix in ["cyrus-a", "cyrus-b"] {
        let child = Command::new(writer)
            .arg(&path)
            // Paced to last about as long as our writers' loops.
            .args([prefix, "r", &USERS.to_string(), "40000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push((prefix.to_owned(), child));
    }
    let ours_loop = |prefix: &str| {
        let mut failures = Vec::new();
        for i in 0..USERS {
            let user = format!("{prefix}{i}");
            let mut cmd = s.ours("saslpasswd2");
            cmd.env("SASLDB_GROUP", "root")
                .args(["-p", "-u", "r", "-f"])
                .arg(&path)
                .arg(&user);
            let out = run_with_stdin(&mut cmd, format!("pw-{user}").as_bytes());
            if !out.status.success() {
                failures.push(format!(
                    "{user}: {:?} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        failures
    };
    let mut failures: Vec<String> = std::thread::scope(|scope| {
        let a = scope.spawn(|| ours_loop("ours-a"));
        let b = scope.spawn(|| ours_loop("ours-b"));
        [a, b].into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let mut retries = Vec::new();
    for (prefix, child) in children {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            failures.push(format!(
                "libgdbm writer {prefix}: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        retries.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    assert!(failures.is_empty(), "failed writes: {failures:#?}");
    // Nothing lost: every user, read by libgdbm and by us.
    let mut want: Pairs = ["cyrus-a", "cyrus-b", "ours-a", "ours-b"]
        .iter()
        .flat_map(|p| {
            (0..USERS).map(move |i| {
                (
                    format!("{p}{i}\0r\0userPassword").into_bytes(),
                    format!("pw-{p}{i}").into_bytes(),
                )
            })
        })
        .collect();
    want.sort();
    assert_eq!(
        libgdbm_misses(&path, &want),
        0,
        "libgdbm writer retries: {retries:?}"
    );
    assert!(
        gdbm_dump(&path) == want,
        "libgdbm writer retries: {retries:?}"
    );
    let db = Database::open(&Location::path_only(&path)).unwrap();
    assert_eq!(db.records().unwrap().count(), want.len());
    eprintln!("libgdbm writers' retries (lock busy or file retired): {retries:?}");
}

/// The libgdbm writer (tests/formats/gdbm_writer.c), compiled once per run.
fn gdbm_writer() -> &'static Path {
    static WRITER: OnceLock<PathBuf> = OnceLock::new();
    WRITER.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats/gdbm_writer.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("gdbm_writer.{}", std::process::id()));
        run_ok(
            Command::new(peer("cc"))
                .arg("-O1")
                .arg("-o")
                .arg(&out)
                .arg(&src)
                .arg("-lgdbm"),
        );
        out
    })
}

/// While we hold the data file's lock, libgdbm writers cannot open it.
#[test]
fn libgdbm_writer_is_refused_while_we_hold_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.db");
    write_file(&path, &random_records(51, 20), &WriteOptions::default());
    let add = vec![(b"new".to_vec(), b"v".to_vec())];
    let lock = DataFileLock::acquire(&path, Duration::from_secs(1)).unwrap();
    let out = probe_run("store", &path, &add);
    assert_eq!(out.status.code(), Some(2), "libgdbm opened a locked file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("gdbm_open"));
    drop(lock);
    libgdbm_store(&path, &add, "store");
    assert_eq!(libgdbm_misses(&path, &add), 0);
}
