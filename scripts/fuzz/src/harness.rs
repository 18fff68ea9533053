//! One function per fuzz target: each takes the fuzzer's bytes, drives one parser
//! family of the `sasldb` crate, and panics when an invariant breaks (a panic inside
//! the library is a finding too).
//!
//! This file is shared: the fuzz crate (`scripts/fuzz`) builds its targets on it, and
//! the main package's `tests/fuzz_regressions.rs` includes it with `#[path]` to replay
//! the seed corpora and the saved crashes through the same code. It may only use
//! crates both sides have: `sasldb`, `nix`, `tempfile`.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

use sasldb::account::secrets::plain;
use sasldb::account::secrets::{OtpSecret, ScramSecret};
use sasldb::bulk::import::{self, InputFormat, Parsed};
use sasldb::cli::getopt::{Getopt, LongOpt, error_message};
use sasldb::cyrus_conf::SaslConf;
use sasldb::internals::Backend;
use sasldb::internals::bdb::{self, BdbFile};
use sasldb::internals::endian::Endian;
use sasldb::internals::gdbm::GdbmFile;
use sasldb::internals::sql::sqlite::SqliteFile;
use sasldb::postfix::MainCf;
use sasldb::{Key, KeyRef, Record};

/// The longest SCRAM iteration count the target verifies a password against:
/// anything above is legitimately slow (PBKDF2), not a finding.
pub const SCRAM_VERIFY_MAX_ITERATIONS: u32 = 10_000;

/// Lookups tried on every database besides the keys a scan found.
const PROBE_KEYS: &[&[u8]] = &[
    b"alice\0example.com\0userPassword",
    b"u0\0realm\0userPassword",
    b"",
    b"\0\0",
    b"k",
];

/// Scan records read at most (a hostile file may hold many; a finding needs few).
const MAX_SCAN: usize = 4096;

/// A message that must fit on one line (errors are printed as `tool: message`).
pub fn assert_one_line(what: &str, msg: &str) {
    assert!(!msg.is_empty(), "{what}: empty message");
    assert!(!msg.contains('\n'), "{what}: message spans lines: {msg:?}");
}

fn check_err(e: &sasldb::Error) {
    assert_one_line("error", &e.to_string());
}

/// An anonymous in-memory file holding `data` (memfd: no disk, nothing to clean up).
pub fn mem_file(data: &[u8]) -> File {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create("sasldb-fuzz", MFdFlags::MFD_CLOEXEC).expect("memfd_create");
    let mut f = File::from(fd);
    f.write_all(data).expect("write memfd");
    f
}

/// A named file holding `data`, on tmpfs when there is one (for APIs that take a path).
pub fn named_file(data: &[u8]) -> tempfile::NamedTempFile {
    let shm = Path::new("/dev/shm");
    let mut b = tempfile::Builder::new();
    b.prefix("sasldb-fuzz-");
    let mut f = if shm.is_dir() {
        b.tempfile_in(shm)
    } else {
        b.tempfile()
    }
    .expect("temp file");
    f.write_all(data).expect("write temp file");
    f.flush().expect("flush");
    f
}

/// Scans every record (up to [`MAX_SCAN`]), looks up the first keys found and the
/// probe keys, through the [`Backend`] interface the tools use.
fn read_backend(db: &dyn Backend) {
    let mut keys = Vec::new();
    match db.scan() {
        Ok(it) => {
            for rec in it.take(MAX_SCAN) {
                match rec {
                    Ok(r) => {
                        if keys.len() < 8 {
                            keys.push(r.key);
                        }
                    }
                    Err(e) => {
                        check_err(&e);
                        break;
                    }
                }
            }
        }
        Err(e) => check_err(&e),
    }
    for k in keys
        .iter()
        .map(Vec::as_slice)
        .chain(PROBE_KEYS.iter().copied())
    {
        if let Err(e) = db.get(k) {
            check_err(&e);
        }
    }
}

// ------------------------------------------------------------------ Berkeley DB

/// A whole file of arbitrary bytes: open, scan, lookups, verify.
pub fn bdb_file(data: &[u8]) {
    let path = Path::new("fuzz.db");
    let db = match BdbFile::from_file(mem_file(data), path) {
        Ok(db) => db,
        Err(e) => return check_err(&e),
    };
    read_backend(&db);
    if let Err(e) = db.verify() {
        check_err(&e);
    }
}

/// The structured variant: a valid file written by [`bdb::write_records`] from a
/// layout and records the input chooses, then byte patches, then (optionally) every
/// checksum recomputed so that damage behind a checksum reaches the parser.
///
/// Input: `opts records patches...`
/// - `opts`: bits 0-1 page size (512 << n), bit 2 checksums, bit 3 big-endian,
///   bit 4 fix checksums after patching;
/// - `records`: bits 0-5 count (below 10 for the two larger classes), bits 6-7 value
///   size class (up to overflow items);
/// - each patch is 4 bytes: a 24-bit little-endian offset (modulo the file length)
///   and the byte to store there.
pub fn bdb_mutate(data: &[u8]) {
    let Some(file) = bdb_mutated_image(data) else {
        return;
    };
    bdb_file(&file);
}

/// The file [`bdb_mutate`] reads; `None` when the input is too short.
pub fn bdb_mutated_image(data: &[u8]) -> Option<Vec<u8>> {
    let [opts, recs, patches @ ..] = data else {
        return None;
    };
    let mut image = base_image(*opts, *recs);
    let len = image.len();
    for p in patches.chunks_exact(4).take(64) {
        let off = (usize::from(p[0]) | usize::from(p[1]) << 8 | usize::from(p[2]) << 16) % len;
        image[off] = p[3];
    }
    if opts & 16 != 0 {
        let endian = if opts & 8 != 0 {
            Endian::Big
        } else {
            Endian::Little
        };
        fix_bdb_checksums(&mut image, 512 << (opts & 3), endian);
    }
    Some(image)
}

/// The valid file for `opts` and `recs`, written once and then cached: the writer
/// wipes its 1 MiB buffers on drop, which would otherwise dominate every run.
fn base_image(opts: u8, recs: u8) -> Vec<u8> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static CACHE: RefCell<HashMap<(u8, u8), Vec<u8>>> = RefCell::new(HashMap::new());
    }
    let opts = opts & 0x0f;
    CACHE.with(|c| {
        c.borrow_mut()
            .entry((opts, recs))
            .or_insert_with(|| write_base_image(opts, recs))
            .clone()
    })
}

fn write_base_image(opts: u8, recs: u8) -> Vec<u8> {
    let page_size = 512u32 << (opts & 3);
    let endian = if opts & 8 != 0 {
        Endian::Big
    } else {
        Endian::Little
    };
    let checksums = opts & 4 != 0;
    let big = usize::from(recs >> 6);
    // Few records when they are long: the image stays small and fast to read.
    let n = usize::from(recs & 63) % if big >= 2 { 10 } else { 64 };
    let records = (0..n).map(|i| {
        let key = format!("u{i}\0realm\0userPassword").into_bytes();
        let len = match big {
            0 => i % 7,
            1 => 10 + 13 * i,
            2 => 100 + 97 * i,
            _ => 1000 + 701 * i,
        };
        let value = (0..len).map(|j| (i * 31 + j) as u8).collect();
        Ok(Record::new(key, value))
    });
    let wopts = bdb::WriteOptions {
        page_size,
        endian,
        checksums,
    };
    let mut image: Vec<u8> = Vec::new();
    bdb::write_records(records, &wopts, &mut image).expect("writing a valid file");
    image
}

/// Recomputes the meta page checksum and every data page's checksum as libdb does
/// (`__ham_func4` with the checksum bytes zeroed), when the meta page says so.
fn fix_bdb_checksums(image: &mut [u8], page_size: usize, endian: Endian) {
    const META_CHKSUM: usize = 492;
    const PAGE_CHKSUM: usize = 28;
    if image.len() < 512 || image[26] & 1 == 0 {
        return;
    }
    for (n, page) in image.chunks_exact_mut(page_size).enumerate() {
        let at = if n == 0 { META_CHKSUM } else { PAGE_CHKSUM };
        let covered = if n == 0 { 512 } else { page_size };
        page[at..at + 4].fill(0);
        let sum = bdb::func4(&page[..covered]);
        endian.put_u32(page, at, sum);
    }
}

// ------------------------------------------------------------------ GDBM

/// A whole file of arbitrary bytes: open, scan, lookups, verify.
pub fn gdbm_file(data: &[u8]) {
    let path = Path::new("fuzz.gdbm");
    let db = match GdbmFile::from_file(mem_file(data), path) {
        Ok(db) => db,
        Err(e) => return check_err(&e),
    };
    read_backend(&db);
    if let Err(e) = db.verify() {
        check_err(&e);
    }
}

// ------------------------------------------------------------------ LMDB

/// The structural check that runs before LMDB maps a file. LMDB itself never sees
/// these bytes.
pub fn lmdb_check(data: &[u8]) {
    let path = Path::new("fuzz.lmdb");
    match sasldb::internals::lmdb::check::check_file(&mem_file(data), path) {
        Ok(info) => {
            assert!((512..=65536).contains(&info.page_size));
            assert!(info.page_size.is_power_of_two());
            let pages = data.len() as u64 / u64::from(info.page_size);
            assert!(info.meta.last_pg < pages, "last page beyond the file");
            assert!(info.main_pages <= pages);
        }
        Err(e) => check_err(&e),
    }
}

// ------------------------------------------------------------------ SQLite

/// Opening a hostile file through [`SqliteFile`]: schema check, scan, lookups.
pub fn sqlite_file(data: &[u8]) {
    let f = named_file(data);
    match SqliteFile::open_with_timeout(f.path(), Duration::ZERO) {
        Ok(db) => {
            read_backend(&db);
            if let Err(e) = db.journal_mode() {
                check_err(&e);
            }
        }
        Err(e) => check_err(&e),
    }
}

// ------------------------------------------------------------------ keys

/// `KeyRef::parse`, `Key::new` and `Key::encode` agree with each other.
///
/// The whole input is parsed as an encoded key; it is also cut into three components
/// for `Key::new` (the first two bytes give the lengths of user and realm).
pub fn key_codec(data: &[u8]) {
    let nuls = data.iter().filter(|&&b| b == 0).count();
    match KeyRef::parse(data) {
        Ok(k) => {
            assert_eq!(nuls, 2);
            assert!(!k.property.is_empty());
            for part in [k.user, k.realm, k.property] {
                assert!(!part.contains(&0));
            }
            let owned = k.to_owned();
            assert_eq!(owned.encode(), data, "encode(parse(x)) != x");
            assert_eq!(Key::parse(data).as_ref(), Ok(&owned));
            let again = Key::new(k.user, k.realm, k.property).expect("parsed parts are valid");
            assert_eq!(again, owned);
            let _ = (k.user_at_realm(), k.property_str(), owned.to_string());
        }
        Err(e) => {
            assert!(
                nuls != 2 || data.ends_with(&[0]),
                "refused a valid key: {e}"
            );
            assert_one_line("key error", &e.to_string());
        }
    }
    if let [a, b, rest @ ..] = data {
        let (a, b) = (usize::from(*a).min(rest.len()), usize::from(*b));
        let (user, rest) = rest.split_at(a);
        let (realm, prop) = rest.split_at(b.min(rest.len()));
        let valid = !prop.is_empty() && ![user, realm, prop].iter().any(|p| p.contains(&0));
        match Key::new(user, realm, prop) {
            Ok(k) => {
                assert!(valid);
                let enc = k.encode();
                let back = KeyRef::parse(&enc).expect("an encoded key parses");
                assert_eq!((back.user, back.realm, back.property), (user, realm, prop));
                assert_eq!(back.to_owned(), k);
            }
            Err(e) => {
                assert!(!valid, "Key::new refused valid parts: {e}");
                assert_one_line("key error", &e.to_string());
            }
        }
    }
}

// ------------------------------------------------------------------ import

/// What every parse result must satisfy: accepted entries are valid, reasons are one
/// line, and line numbers are in range and increasing.
fn check_parsed(input: &[u8], p: &Parsed) {
    let lines = 1 + input.iter().filter(|&&b| b == b'\n').count();
    let mut last = 0;
    for e in &p.entries {
        assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
        assert!(e.line >= last, "entries out of order");
        last = e.line;
        assert!(!e.user.is_empty(), "accepted an empty user");
        assert!(!e.user.contains(&0));
        assert!(std::str::from_utf8(&e.user).is_ok());
        if let Some(r) = &e.realm {
            assert!(!r.is_empty(), "accepted an empty realm");
            assert!(!r.contains(&0));
        }
        match &e.password {
            Some(pw) => {
                assert!(!pw.is_empty(), "accepted an empty password");
                assert!(!pw.contains(&0), "accepted a password with NUL");
                assert!(!pw.ends_with(b"\r"), "accepted a trailing CR");
                assert!(pw.len() <= sasldb::record::MAX_SECRET_LEN);
            }
            None => assert!(!e.properties.is_empty(), "an entry with nothing to write"),
        }
        for (name, _) in &e.properties {
            assert!(!name.is_empty() && !name.contains(&0), "bad property name");
            assert!(Key::new(&e.user, b"realm", name).is_ok());
        }
        // What apply() will do with it must not panic either.
        let realm = e.realm.as_deref().unwrap_or(b"default");
        Key::new(&e.user, realm, "userPassword").expect("accepted names make a key");
    }
    for r in &p.rejected {
        assert!(
            r.line >= 1 && r.line <= lines,
            "rejected line {} of {lines}",
            r.line
        );
        assert_one_line("rejection", &r.reason);
        assert_one_line("rejection", &r.to_string());
    }
}

pub fn import_lines(data: &[u8]) {
    let p = import::parse(data, InputFormat::Lines);
    check_parsed(data, &p);
    // Every line that is not blank or a comment is either accepted or rejected.
    let candidates = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count();
    assert_eq!(p.entries.len() + p.rejected.len(), candidates);
    for e in &p.entries {
        assert!(!e.user.contains(&b'@'), "user@realm was not split");
        assert!(e.properties.is_empty());
    }
}

pub fn import_csv(data: &[u8]) {
    let p = import::parse(data, InputFormat::Csv);
    check_parsed(data, &p);
    let records = 1 + data.iter().filter(|&&b| b == b'\n').count();
    assert!(p.entries.len() + p.rejected.len() <= records);
    for e in &p.entries {
        assert!(e.properties.is_empty());
    }
}

pub fn import_json(data: &[u8]) {
    let p = import::parse(data, InputFormat::Json);
    check_parsed(data, &p);
    for e in &p.entries {
        assert!(
            !e.properties.iter().any(|(n, _)| n == b"userPassword"),
            "userPassword left among the properties"
        );
    }
    // Differential: when the whole input is a JSON array, every element is accounted
    // for exactly once.
    if let Ok(all) = serde_json_array_len(data) {
        assert_eq!(
            p.entries.len() + p.rejected.len(),
            all,
            "entries {} + rejected {:?} != {all} array elements",
            p.entries.len(),
            p.rejected
        );
    }
}

/// The number of elements when `data` is a JSON array, by a strict reader of our own
/// (no serde_json here: the test suite must not need it as a dev-dependency).
fn serde_json_array_len(data: &[u8]) -> Result<usize, ()> {
    json::array_len(data)
}

/// A minimal strict JSON validator (RFC 8259), enough to count a top-level array's
/// elements.
mod json {
    pub fn array_len(b: &[u8]) -> Result<usize, ()> {
        let mut p = P { b, i: 0, depth: 0 };
        p.ws();
        if p.peek() != Some(b'[') {
            return Err(());
        }
        p.i += 1;
        p.ws();
        let mut n = 0;
        if p.peek() == Some(b']') {
            p.i += 1;
        } else {
            loop {
                p.value()?;
                n += 1;
                p.ws();
                match p.next() {
                    Some(b',') => p.ws(),
                    Some(b']') => break,
                    _ => return Err(()),
                }
            }
        }
        p.ws();
        if p.i == b.len() { Ok(n) } else { Err(()) }
    }

    struct P<'a> {
        b: &'a [u8],
        i: usize,
        depth: usize,
    }

    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }
        fn next(&mut self) -> Option<u8> {
            let c = self.peek();
            self.i += 1;
            c
        }
        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }
        fn lit(&mut self, s: &[u8]) -> Result<(), ()> {
            if self.b[self.i..].starts_with(s) {
                self.i += s.len();
                Ok(())
            } else {
                Err(())
            }
        }
        fn value(&mut self) -> Result<(), ()> {
            self.ws();
            // serde_json's default recursion limit.
            if self.depth >= 127 {
                return Err(());
            }
            match self.peek().ok_or(())? {
                b'{' => {
                    self.depth += 1;
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                    } else {
                        loop {
                            self.ws();
                            if self.peek() != Some(b'"') {
                                return Err(());
                            }
                            self.string()?;
                            self.ws();
                            if self.next() != Some(b':') {
                                return Err(());
                            }
                            self.value()?;
                            self.ws();
                            match self.next() {
                                Some(b',') => {}
                                Some(b'}') => break,
                                _ => return Err(()),
                            }
                        }
                    }
                    self.depth -= 1;
                    Ok(())
                }
                b'[' => {
                    self.depth += 1;
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        loop {
                            self.value()?;
                            self.ws();
                            match self.next() {
                                Some(b',') => {}
                                Some(b']') => break,
                                _ => return Err(()),
                            }
                        }
                    }
                    self.depth -= 1;
                    Ok(())
                }
                b'"' => self.string(),
                b't' => self.lit(b"true"),
                b'f' => self.lit(b"false"),
                b'n' => self.lit(b"null"),
                b'-' | b'0'..=b'9' => self.number(),
                _ => Err(()),
            }
        }
        fn string(&mut self) -> Result<(), ()> {
            self.i += 1;
            let start = self.i;
            loop {
                match self.next().ok_or(())? {
                    b'"' => break,
                    b'\\' => match self.next().ok_or(())? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).ok_or(())?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(());
                            }
                            // Lone surrogates are refused by serde_json: stay away.
                            if matches!(hex[0], b'd' | b'D')
                                && matches!(hex[1], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
                            {
                                return Err(());
                            }
                            self.i += 4;
                        }
                        _ => return Err(()),
                    },
                    c if c < 0x20 => return Err(()),
                    _ => {}
                }
            }
            std::str::from_utf8(&self.b[start..self.i - 1])
                .map(|_| ())
                .map_err(|_| ())
        }
        fn number(&mut self) -> Result<(), ()> {
            if self.peek() == Some(b'-') {
                self.i += 1;
            }
            let digits = |p: &mut Self| {
                let s = p.i;
                while matches!(p.peek(), Some(b'0'..=b'9')) {
                    p.i += 1;
                }
                if p.i == s { Err(()) } else { Ok(()) }
            };
            if self.peek() == Some(b'0') {
                self.i += 1;
            } else {
                digits(self)?;
            }
            if self.peek() == Some(b'.') {
                self.i += 1;
                digits(self)?;
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                digits(self)?;
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ Postfix

/// Parameters evaluated on every parsed main.cf.
const POSTFIX_PARAMS: &[&str] = &[
    "myhostname",
    "mydomain",
    "myorigin",
    "mydestination",
    "smtpd_sasl_local_domain",
    "config_directory",
    "mail_name",
    "a",
    "b",
];

/// main.cf parsing, then expansion of the well-known parameters and of the input's
/// last line as free text.
pub fn postfix_main_cf(data: &[u8]) {
    let cf = match MainCf::parse(Path::new("/etc/postfix"), data) {
        Ok(cf) => cf,
        Err(e) => return assert_one_line("main.cf error", &e.to_string()),
    };
    for w in cf.warnings() {
        assert_one_line("main.cf warning", w);
    }
    let params = cf.params("fuzz.example.com");
    for name in POSTFIX_PARAMS {
        match params.eval(name) {
            Ok(_) => {}
            Err(e) => assert_one_line("expansion error", &e.to_string()),
        }
    }
    let last = data.rsplit(|&b| b == b'\n').next().unwrap_or_default();
    if let Err(e) = params.expand(last) {
        assert_one_line("expansion error", &e.to_string());
    }
}

// ------------------------------------------------------------------ Cyrus SASL conf

/// `<appname>.conf` parsing and every typed accessor.
pub fn cyrus_conf(data: &[u8]) {
    let conf = match SaslConf::parse(Path::new("/etc/sasl2/fuzz.conf"), data) {
        Ok(c) => c,
        Err(e) => return assert_one_line("conf error", &e.to_string()),
    };
    let n = conf.iter().count();
    let dups = conf.ignored_duplicates().count();
    assert!(n + dups <= 1 + data.len());
    for (key, _) in conf.iter().take(16) {
        assert!(conf.get_os(key).is_some());
        assert!(conf.line(key).is_some());
    }
    let _ = (
        conf.sasldb_path(),
        conf.scram_secret_generate(),
        conf.scram_iteration_counter(),
        conf.mech_list(),
        conf.auxprop_plugin(),
    );
    for r in [
        conf.otp_mda().map(|_| ()),
        conf.sasldb_mapsize().map(|_| ()),
        conf.sasldb_maxreaders().map(|_| ()),
    ] {
        if let Err(e) = r {
            assert_one_line("conf value error", &e.to_string());
        }
    }
}

// ------------------------------------------------------------------ secrets

/// Stored OTP and SCRAM values (and the legacy PLAIN check) on hostile input.
///
/// Input: `stored 0xFF password` (everything is the stored value when there is no
/// 0xFF byte; a stored value may hold NULs, as the binary OTP layout does). Round trips:
/// `parse(encode(parse(x))) == parse(x)`. Password checks run only for cheap values:
/// an OTP sequence is at most 9999 steps; SCRAM above
/// [`SCRAM_VERIFY_MAX_ITERATIONS`] is skipped.
pub fn secrets_parse(data: &[u8]) {
    // The stored value may itself contain NULs (binary OTP layout): split at the last.
    let (stored, password) = match data.iter().rposition(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"secret"[..]),
    };
    match OtpSecret::parse(stored) {
        Ok(s) => {
            let enc = s.encode();
            let back = OtpSecret::parse(&enc).expect("an encoded OTP secret parses");
            assert_eq!(back, s, "OTP round trip");
            let _ = (s.is_expired(), s.seed_is_alphanumeric(), format!("{s:?}"));
            match s.verify_password(password) {
                Ok(_) => assert!(!password.contains(&0)),
                Err(e) => assert_one_line("otp verify", &e.to_string()),
            }
        }
        Err(e) => assert_one_line("otp parse", &e.to_string()),
    }
    match ScramSecret::parse(stored) {
        Ok(s) => {
            let enc = s.encode();
            let back = ScramSecret::parse(&enc).expect("an encoded SCRAM secret parses");
            assert_eq!(back, s, "SCRAM round trip");
            assert_eq!(s.stored_key().len(), s.hash().output_len());
            assert_eq!(s.server_key().len(), s.hash().output_len());
            let _ = format!("{s:?}");
            if s.iterations() <= SCRAM_VERIFY_MAX_ITERATIONS {
                match s.verify_password(password) {
                    Ok(ok) => assert!(!ok || !password.is_empty()),
                    Err(e) => assert_one_line("scram verify", &e.to_string()),
                }
            }
        }
        Err(e) => assert_one_line("scram parse", &e.to_string()),
    }
    match plain::verify_legacy_plain(stored, password) {
        Ok(_) => assert!(stored.len() >= 33),
        Err(e) => assert_one_line("legacy plain", &e.to_string()),
    }
    let _ = plain::verify_user_password(stored, password);
    let _ = plain::verify_checkpass(Some(stored), Some(stored), password);
}

// ------------------------------------------------------------------ getopt

const SHORTS: &str = "vpcdnf:u:a:h?";
const LONGS: &[LongOpt] = &[
    LongOpt {
        name: "group",
        has_arg: true,
    },
    LongOpt {
        name: "format",
        has_arg: true,
    },
    LongOpt {
        name: "force",
        has_arg: false,
    },
    LongOpt {
        name: "help",
        has_arg: false,
    },
];

/// The command-line parser: NUL-separated arguments.
pub fn getopt(data: &[u8]) {
    let args: Vec<OsString> = data
        .split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    let total: usize = args.iter().map(|a| a.len() + 1).sum();
    let mut g = Getopt::new(args, SHORTS, LONGS);
    let mut events = 0usize;
    for ev in g.by_ref() {
        events += 1;
        assert!(events <= total, "more events than argument bytes");
        if let Some(msg) = error_message("saslpasswd2", &ev) {
            assert!(msg.starts_with("saslpasswd2: "));
        }
    }
    assert!(g.operands().len() <= total);
}

// ------------------------------------------------------------------ sasldb serve

/// The decoy secrets the mechanisms need (made once: it costs a PBKDF2).
#[cfg(feature = "serve")]
fn serve_env() -> sasldb::serve::mech::MechEnv<'static> {
    use std::sync::OnceLock;
    static DECOY: OnceLock<sasldb::serve::verify::Decoy> = OnceLock::new();
    sasldb::serve::mech::MechEnv {
        hostname: "fuzz.example",
        decoy: DECOY.get_or_init(|| sasldb::serve::verify::Decoy::new().expect("random numbers")),
    }
}

/// Credentials for the fuzzed exchanges: alice has a plaintext password, anyone else
/// is unknown.
#[cfg(feature = "serve")]
fn serve_creds(authcid: &[u8]) -> Option<sasldb::serve::Credentials> {
    authcid
        .starts_with(b"alice")
        .then(|| sasldb::serve::Credentials {
            user_password: Some(sasldb::Secret::new(b"secret".to_vec())),
            ..Default::default()
        })
}

/// Drives an exchange to its end with `inputs` as the client's messages; checks that
/// a lookup is only asked for once the id is known and that nothing follows the end.
#[cfg(feature = "serve")]
fn serve_exchange(
    mut x: sasldb::serve::mech::Exchange,
    mut p: sasldb::serve::mech::Progress,
    inputs: &mut dyn Iterator<Item = &[u8]>,
) -> (sasldb::serve::mech::Exchange, Option<Vec<u8>>) {
    use sasldb::serve::mech::Progress;
    let env = serve_env();
    for _ in 0..8 {
        match p {
            Progress::Lookup => {
                let id = x.authcid().expect("a lookup names the user").to_vec();
                assert!(!id.is_empty() && !id.contains(&0));
                p = x.credentials(serve_creds(&id), &env);
            }
            Progress::Challenge(c) => match inputs.next() {
                Some(i) => {
                    // A SCRAM proof costs a PBKDF2: only worth it for a well-formed one.
                    if x.input_costly()
                        && sasldb::serve::mech::scram::parse_client_final(i).is_err()
                    {
                        return (x, None);
                    }
                    p = x.input(i, &env)
                }
                None => return (x, Some(c)),
            },
            Progress::Success { .. } | Progress::Failure(_) => {
                let again = x.input(b"more", &env);
                assert!(
                    matches!(again, Progress::Failure(_)),
                    "input after the end: {again:?}"
                );
                return (x, None);
            }
        }
    }
    panic!("an exchange did not end after 8 steps");
}

/// Every message of every mechanism: the first byte picks the mechanism, the rest is
/// the client's messages separated by 0xff (the first one is the initial response,
/// or none if empty). Also the SCRAM parsers on the raw bytes.
#[cfg(feature = "serve")]
pub fn serve_sasl(data: &[u8]) {
    use sasldb::serve::mech::{Exchange, Mechanism, scram};
    let _ = scram::parse_client_first(data);
    let _ = scram::parse_client_final(data);
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mech = Mechanism::ALL[usize::from(pick) % Mechanism::ALL.len()];
    let mut parts = rest.split(|&b| b == 0xff);
    let initial = parts.next().filter(|p| !p.is_empty());
    let (x, p) = Exchange::start(mech, initial, &serve_env());
    let _ = serve_exchange(x, p, &mut parts);
    let _ = sasldb::serve::mech::cram_md5::parse(data);
    let _ = sasldb::serve::mech::plain::parse(data);
}

/// The Dovecot auth-client protocol: the bytes fed in pieces (split at 0xfe) to a
/// session offering every mechanism; each request is driven through its exchange
/// and answered; reply lines must be single lines; nothing follows a close.
#[cfg(feature = "serve")]
pub fn serve_dovecot(data: &[u8]) {
    use sasldb::serve::dovecot::{Event, MAX_LINE, Session};
    use sasldb::serve::mech::{Exchange, Mechanism, Progress};
    use std::time::{Duration, Instant};
    let check = |line: &[u8]| {
        assert!(line.ends_with(b"\n"), "reply without LF: {line:?}");
        assert_eq!(
            line.iter().filter(|&&b| b == b'\n').count(),
            1,
            "reply spans lines"
        );
        assert!(!line.contains(&0), "NUL in a reply");
        assert!(line.len() <= MAX_LINE, "reply over the line limit");
    };
    let env = serve_env();
    let mut s = Session::new(Mechanism::ALL.to_vec());
    let now = Instant::now();
    let mut closed = false;
    let mut out = Vec::new();
    let mut chunks = 0;
    for chunk in data.split(|&b| b == 0xfe) {
        chunks += 1;
        if chunks > 64 {
            break;
        }
        s.feed(chunk, now, &mut out);
        for ev in out.drain(..) {
            assert!(!closed, "an event after Close");
            match ev {
                Event::Send(l) => check(&l),
                Event::Close(why) => {
                    assert_one_line("close", &why);
                    closed = true;
                }
                Event::Auth {
                    id, mech, initial, ..
                } => {
                    let (x, p) = Exchange::start(mech, initial.as_deref().map(|v| &v[..]), &env);
                    answer(&mut s, id, x, p, now, &check);
                }
                Event::Cont {
                    id,
                    mut exchange,
                    data,
                    ..
                } => {
                    let p = if exchange.input_costly()
                        && sasldb::serve::mech::scram::parse_client_final(&data).is_err()
                    {
                        Progress::Failure(sasldb::serve::mech::Failure::Malformed("skipped"))
                    } else {
                        exchange.input(&data, &env)
                    };
                    answer(&mut s, id, exchange, p, now, &check);
                }
            }
        }
    }
    s.expire(
        now + Duration::from_secs(3600),
        Duration::from_secs(150),
        &mut out,
    );
    for ev in out.drain(..) {
        if let Event::Send(l) = ev {
            check(&l);
        }
    }

    fn answer(
        s: &mut Session,
        id: u32,
        x: Exchange,
        p: Progress,
        now: Instant,
        check: &dyn Fn(&[u8]),
    ) {
        let (x, challenge) = serve_exchange(x, p, &mut std::iter::empty());
        let line = match challenge {
            Some(c) => s.challenge(id, &c, x, now),
            None => match x.authcid() {
                Some(u) if u.starts_with(b"alice") => s.success(id, u, Some(b"v=x"), now),
                u => s.failure(id, u, Some("temp_fail"), "Authentication\tfailed"),
            },
        };
        if let Some(l) = line {
            check(&l);
        }
    }
}

/// The saslauthd mux protocol: every prefix parses without panic; a request's fields
/// are within limits and NUL-free, and its answer frames round-trip.
#[cfg(feature = "serve")]
pub fn serve_saslauthd(data: &[u8]) {
    use sasldb::serve::saslauthd::{
        MAX_FIELD, Parsed, encode_request, frame, parse, user_and_realm,
    };
    for end in [data.len(), data.len() / 2, data.len().min(8)] {
        match parse(&data[..end]) {
            Parsed::Request(r, used) => {
                assert!(used <= end);
                for f in [&r.login[..], &r.password[..], &r.service[..], &r.realm[..]] {
                    assert!(f.len() <= MAX_FIELD && !f.contains(&0));
                }
                assert!(!r.login.is_empty() && !r.password.is_empty());
                let again = encode_request(&r.login, &r.password, &r.service, &r.realm);
                assert!(
                    matches!(parse(&again), Parsed::Request(ref b, n) if *b == r && n == again.len())
                );
                let (u, realm) = user_and_realm(&r, b"default.example");
                assert!(!realm.is_empty() || !r.realm.is_empty() || u.len() <= r.login.len());
                let _ = format!("{r:?}");
            }
            Parsed::Refused(text) => assert!(text.starts_with(b"NO")),
            Parsed::Incomplete => {}
        }
    }
    let f = frame(data);
    assert_eq!(usize::from(u16::from_be_bytes([f[0], f[1]])), f.len() - 2);
}

/// checkpassword's descriptor-3 input and its decisions; the `password=` field for
/// Dovecot never holds a raw TAB, LF, CR or NUL.
#[cfg(feature = "serve")]
pub fn serve_checkpassword(data: &[u8]) {
    use sasldb::serve::checkpassword::{Decision, Mode, decide, parse_input, password_field};
    let env = serve_env();
    match parse_input(data) {
        Ok(input) => {
            assert!(data.len() <= 512 && !input.login.is_empty());
            for mode in [
                Mode::Authenticate,
                Mode::Lookup { credentials: true },
                Mode::Lookup { credentials: false },
            ] {
                let creds = serve_creds(&input.login);
                match decide(creds.as_ref(), &input, &mode, env.decoy) {
                    Decision::Exit(c) => assert!([1, 3].contains(&c)),
                    Decision::Run { fd4, .. } => {
                        if let Some(f) = fd4 {
                            assert!(f.ends_with(b"\t"));
                            let body = &f[..f.len() - 1];
                            assert!(!body.iter().any(|b| [b'\t', b'\n', b'\r', 0].contains(b)));
                        }
                    }
                }
            }
        }
        Err(e) => assert_one_line("checkpassword", e),
    }
    // The stored value itself as a password, escaped.
    let creds = sasldb::serve::Credentials {
        user_password: Some(sasldb::Secret::new(data.to_vec())),
        ..Default::default()
    };
    if let Some(f) = password_field(&creds) {
        let body = &f[..f.len() - 1];
        assert!(!body.iter().any(|b| [b'\t', b'\n', b'\r', 0].contains(b)));
    }
}
