#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sasldb::{Record, Result};

/// Absolute path of a file under fixtures/.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Parses a fixture's `.expected` file: `user TAB realm TAB property TAB hex(value)`.
/// Returns (encoded key, value) pairs, sorted.
pub fn expected_records(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let parts: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
            assert_eq!(
                parts.len(),
                4,
                "bad expected line {:?}",
                String::from_utf8_lossy(line)
            );
            let mut key = parts[0].to_vec();
            key.push(0);
            key.extend_from_slice(parts[1]);
            key.push(0);
            key.extend_from_slice(parts[2]);
            (key, unhex(parts[3]))
        })
        .collect();
    out.sort();
    out
}

pub fn unhex(h: &[u8]) -> Vec<u8> {
    assert!(h.len() % 2 == 0);
    h.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}

/// Collects a record stream into sorted (key, value) pairs, panicking on error.
pub fn records_of(it: impl Iterator<Item = Result<Record>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = it
        .map(|r| r.map(|r| (r.key, r.value.to_vec())).unwrap())
        .collect();
    v.sort();
    v
}
