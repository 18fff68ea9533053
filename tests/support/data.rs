//! Test data: fixtures under fixtures/, generated records, key encoding, hex, reading
//! and writing records through the library.

use std::path::{Path, PathBuf};

use sasldb::internals::bdb::{WriteOptions, write_records};
use sasldb::{Database, Location, Record, Result};

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
            (key(parts[0], parts[1], parts[2]), unhex(parts[3]))
        })
        .collect();
    out.sort();
    out
}

/// The stored key of `user@realm`'s property `prop`: `user NUL realm NUL prop`, encoded
/// here by hand so that it checks the library's encoder rather than repeating it.
pub fn key(user: impl AsRef<[u8]>, realm: impl AsRef<[u8]>, prop: impl AsRef<[u8]>) -> Vec<u8> {
    [user.as_ref(), b"\0", realm.as_ref(), b"\0", prop.as_ref()].concat()
}

pub fn unhex(h: &[u8]) -> Vec<u8> {
    assert!(h.len().is_multiple_of(2));
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

/// A tiny deterministic PRNG (xorshift64*) so generated test data is reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
    /// A printable-ish name with occasional UTF-8 characters.
    pub fn name(&mut self, max: usize) -> String {
        const ALPHA: &[&str] = &[
            "a", "b", "c", "x", "y", "z", "0", "9", ".", "-", "_", "é", "ü", "名", "ß",
        ];
        let len = 1 + self.below(max as u64) as usize;
        (0..len)
            .map(|_| ALPHA[self.below(ALPHA.len() as u64) as usize])
            .collect()
    }
}

/// `n` sasldb-shaped records from `seed`, sorted by key: a tenth are raw keys that
/// are prefixes of each other (`k1`, `k18`, `k180`...: where libdb's page order differs
/// from bytewise order), the others `user NUL realm NUL prop` keys with UTF-8 names,
/// a property from `props` and a value of `value_len` random bytes.
pub fn random_records(
    seed: u64,
    n: usize,
    props: &[&str],
    value_len: impl Fn(&mut Rng) -> usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let mut map = std::collections::BTreeMap::new();
    for i in 0..n / 10 {
        let len = rng.below(40) as usize;
        map.insert(format!("k{i}").into_bytes(), rng.bytes(len));
    }
    while map.len() < n {
        let user = rng.name(24);
        let realm = rng.name(20);
        let prop = props[rng.below(props.len() as u64) as usize];
        let vlen = value_len(&mut rng);
        map.insert(key(user, realm, prop), rng.bytes(vlen));
    }
    map.into_iter().collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every record of a database file (format detected), read through our library, as
/// sorted (key, value) pairs.
pub fn file_records(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    Database::open(&Location::path_only(path))
        .unwrap()
        .sorted_records()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value.to_vec()))
        .collect()
}

/// Writes a Berkeley DB sasldb with this crate's writer (default options) from raw
/// (key, value) pairs.
pub fn write_bdb(path: &Path, pairs: &[(Vec<u8>, Vec<u8>)]) {
    let records = pairs
        .iter()
        .map(|(k, v)| Ok(Record::new(k.clone(), v.clone())));
    let mut f = std::fs::File::create(path).unwrap();
    write_records(records, &WriteOptions::default(), &mut f).unwrap();
}
