//! One `Database` per file, shared by 8 threads that check passwords concurrently:
//! the right verdict every time, in every file format, through the public API only.

use std::path::Path;

use sasldb::{
    Database, Format, Key, Location, Record, Transaction, Verdict, WriteOptions, account,
};

const USERS: u32 = 200_000;
const THREADS: u32 = 8;
const CHECKS: u32 = 10_000;
const REALM: &str = "example.org";

fn password(i: u32) -> Vec<u8> {
    format!("pw-{:08x}", i.wrapping_mul(2_654_435_761)).into_bytes()
}

fn user(i: u32) -> String {
    format!("user{i:06}")
}

/// A database of `USERS` users with a `userPassword` each, written by a whole-database
/// replace (the bulk path).
fn build(dir: &Path, format: Format) -> Location {
    let loc = Location::with_format(format, dir.join(format!("sasldb2.{}", format.prefix())));
    let opts = WriteOptions {
        new_format: format,
        ..WriteOptions::default()
    };
    let txn = Transaction::begin(&loc, &opts).unwrap();
    let mut records: Vec<Record> = (0..USERS)
        .map(|i| {
            let key = Key::new(user(i), REALM, "userPassword").unwrap().encode();
            Record::new(key, password(i))
        })
        .collect();
    records.sort_by(|a, b| a.key.cmp(&b.key));
    let report = txn
        .replace_with(Box::new(records.into_iter().map(Ok)), true)
        .unwrap();
    assert_eq!(report.records, Some(u64::from(USERS)));
    loc
}

/// Thread `t`'s `n`-th check: a user, a password, and the verdict it must get.
fn case(t: u32, n: u32) -> (String, Vec<u8>, Verdict) {
    let i = (t * 7_919 + n * 104_729) % USERS;
    match n % 3 {
        0 => (user(i), password(i), Verdict::Match),
        1 => (user(i), password(i + 1), Verdict::Mismatch),
        _ => (format!("nobody{i:06}"), password(i), Verdict::NoSuchUser),
    }
}

fn check_concurrently(format: Format) {
    let dir = tempfile::tempdir().unwrap();
    let loc = build(dir.path(), format);
    let db = Database::open(&loc).unwrap();
    assert_eq!(db.format(), format);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let db = &db;
            s.spawn(move || {
                for n in 0..CHECKS {
                    let (u, pw, want) = case(t, n);
                    let got =
                        account::verify_password(db, u.as_bytes(), REALM.as_bytes(), &pw).unwrap();
                    assert_eq!(got, want, "{format}: {u}, check {n} of thread {t}");
                }
            });
        }
    });
}

#[test]
fn bdb_shared_by_eight_threads() {
    check_concurrently(Format::Bdb);
}

#[test]
fn gdbm_shared_by_eight_threads() {
    check_concurrently(Format::Gdbm);
}

#[test]
fn lmdb_shared_by_eight_threads() {
    check_concurrently(Format::Lmdb);
}

#[test]
fn sqlite_shared_by_eight_threads() {
    check_concurrently(Format::Sqlite);
}
