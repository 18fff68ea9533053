use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sasldb::internals::bdb::BdbFile;
use sasldb::{Database, Error, Location};

use crate::support::{Rng, fixture};

/// Opens and fully reads a file (scan, verify, every lookup the scan found), with a
/// watchdog: a hang fails the test instead of blocking it. The writers' check
/// (`check_records`, run before a patch carries pages over) must fail exactly where
/// and as the scan does.
fn read_all(path: &Path) -> Result<usize, Error> {
    let p = path.to_path_buf();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut disagree = None;
        let r = (|| {
            let db = BdbFile::open(&p)?;
            let checked = db.check_records().map_err(|e| e.to_string());
            let mut n = 0;
            let mut keys = Vec::new();
            for rec in db.scan() {
                let rec = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        if checked.as_ref().err() != Some(&e.to_string()) {
                            disagree = Some(format!("scan: {e}; check_records: {checked:?}"));
                        }
                        return Err(e);
                    }
                };
                keys.push(rec.key);
                n += 1;
            }
            if let Err(c) = &checked {
                disagree = Some(format!("scan: ok; check_records: {c}"));
            }
            for k in keys.iter().take(50) {
                db.get(k)?;
            }
            db.verify()?;
            Ok(n)
        })();
        let _ = tx.send((r, disagree));
    });
    let (r, disagree) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("reading a damaged file hung");
    assert_eq!(disagree, None, "{}", path.display());
    r
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn one_line(e: &Error) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error message spans lines: {s:?}");
    assert!(!s.is_empty());
    s
}

#[test]
fn flipped_bytes_never_panic_or_hang() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "bulk2000-p512.db",
        "bulk500-p8192-checksum.db",
        "cyrus-2.1.28-debian.db",
        "bulk2000-p4096-bigendian.db",
    ] {
        let orig = std::fs::read(fixture(&format!("bdb/{name}"))).unwrap();
        let mut rng = Rng::new(orig.len() as u64);
        // Every byte of the meta page, the header and index area of pages 1-2 (where
        // the structure lives), plus random offsets anywhere.
        let ps = if name.contains("512") {
            512
        } else if name.contains("8192") {
            8192
        } else {
            4096
        };
        let mut offsets: Vec<usize> = (0..512).collect();
        for pg in 1..3 {
            offsets.extend((pg * ps..pg * ps + 96).filter(|&o| o < orig.len()));
        }
        offsets.extend((0..300).map(|_| rng.below(orig.len() as u64) as usize));
        let mut errors = 0;
        for off in offsets {
            let mut bytes = orig.clone();
            bytes[off] ^= 1 << rng.below(8);
            let p = write_tmp(dir.path(), "flip.db", &bytes);
            if let Err(e) = read_all(&p) {
                one_line(&e);
                errors += 1;
            }
        }
        assert!(errors > 0, "{name}: no flip was detected at all");
    }
}

#[test]
fn checksum_mismatch_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture("bdb/bulk500-p8192-checksum.db")).unwrap();
    // A byte in the item area of page 1 (not the header, not the checksum).
    bytes[8192 + 8000] ^= 0x40;
    let p = write_tmp(dir.path(), "c.db", &bytes);
    let e = read_all(&p).unwrap_err();
    assert!(one_line(&e).contains("checksum mismatch on page 1"), "{e}");
}

#[test]
fn truncated_empty_directory_random() {
    let dir = tempfile::tempdir().unwrap();
    let orig = std::fs::read(fixture("bdb/bulk2000-p4096.db")).unwrap();
    for len in [0, 100, 511, 4096, 4097, orig.len() - 4096, orig.len() - 1] {
        let p = write_tmp(dir.path(), "t.db", &orig[..len]);
        let e = read_all(&p).unwrap_err();
        let msg = one_line(&e);
        if len >= 4096 && len % 4096 == 0 {
            assert!(msg.contains("truncated"), "{len}: {msg}");
        }
    }
    // Through the Database API too (detection first).
    let empty = write_tmp(dir.path(), "empty.db", b"");
    let e = Database::open(&Location::path_only(&empty)).unwrap_err();
    assert!(one_line(&e).contains("empty"), "{e}");
    let e = Database::open(&Location::path_only(dir.path())).unwrap_err();
    assert!(one_line(&e).contains("directory"), "{e}");
    let mut rng = Rng::new(9);
    for i in 0..50 {
        let len = 512 + rng.below(20_000) as usize;
        let mut bytes = rng.bytes(len);
        if i % 2 == 0 {
            // Random bytes that carry the hash magic and a plausible header.
            bytes[12..16].copy_from_slice(&0x0006_1561u32.to_le_bytes());
            bytes[16..20].copy_from_slice(&9u32.to_le_bytes());
            bytes[20..24].copy_from_slice(&512u32.to_le_bytes());
            bytes[24] = 0;
            bytes[25] = 8;
            bytes[26] = 0;
            bytes[36..40].fill(0);
            bytes[48..52].fill(0);
        }
        let p = write_tmp(dir.path(), "r.db", &bytes);
        if let Err(e) = Database::open(&Location::path_only(&p)).and_then(|_| read_all(&p)) {
            one_line(&e);
        }
    }
}

/// Finds a bucket chain in a little-endian file: a hash page whose `next` is set.
fn find_chain(bytes: &[u8], ps: usize) -> (usize, usize) {
    for pg in 1..bytes.len() / ps {
        let p = &bytes[pg * ps..];
        let next = u32::from_le_bytes(p[16..20].try_into().unwrap()) as usize;
        let prev = u32::from_le_bytes(p[12..16].try_into().unwrap());
        if p[25] == 13 && next != 0 && prev == 0 {
            return (pg, next);
        }
    }
    panic!("no chain in the file");
}

#[test]
fn page_chain_cycles_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let orig = std::fs::read(fixture("bdb/bulk2000-p512.db")).unwrap();
    let ps = 512;
    let (first, second) = find_chain(&orig, ps);
    let set_next = |bytes: &mut Vec<u8>, pg: usize, to: usize| {
        bytes[pg * ps + 16..pg * ps + 20].copy_from_slice(&(to as u32).to_le_bytes());
    };
    // second -> first (a two-page cycle), second -> second (self loop),
    // and a cycle whose back links are forged to match.
    let mut a = orig.clone();
    set_next(&mut a, second, first);
    let mut b = orig.clone();
    set_next(&mut b, second, second);
    let mut c = orig.clone();
    set_next(&mut c, second, first);
    c[first * ps + 12..first * ps + 16].copy_from_slice(&(second as u32).to_le_bytes());
    for (i, bytes) in [a, b, c].iter().enumerate() {
        let p = write_tmp(dir.path(), "cycle.db", bytes);
        let e = read_all(&p).unwrap_err();
        let msg = one_line(&e);
        assert!(
            msg.contains("links back") || msg.contains("referenced twice"),
            "case {i}: {msg}"
        );
    }
}
