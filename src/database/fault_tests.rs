//! Fault injection through the whole write path: for each format that replaces its
//! file (Berkeley DB, GDBM) and for the LMDB bulk load, every I/O step of a small
//! commit fails in turn (EIO, ENOSPC, a short write, a short write then ENOSPC, a
//! failed fsync), and after each failure:
//! - the database is byte-identical to before, or, when the failure came after the
//!   rename (or link) that put the new file in place, the new complete one;
//! - no temporary file is left in the directory;
//! - the error is one line naming the file and the system error;
//! - the next transaction works and sees the database as expected.
//!
//! A writer killed outright (no destructor runs) is covered too: a temporary file it
//! left, or a second link from an interrupted bulk load, is removed by the next
//! [`Transaction::begin`].

use std::collections::BTreeMap;
use std::fs;
#[cfg(feature = "lmdb")]
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::database::{Database, Transaction, WriteOptions};
use crate::error::Error;
use crate::location::{Format, Location};
use crate::record::Key;
#[cfg(feature = "lmdb")]
use crate::record::Record;
use crate::storage::persist::fault::{Fault, Plan, Step, with_plan};

const EIO: i32 = libc::EIO;
const ENOSPC: i32 = libc::ENOSPC;

fn opts() -> WriteOptions {
    WriteOptions {
        // Our own group: valid whoever runs the tests, as root or not.
        ownership: crate::OwnershipPolicy::RootGroup(nix::unistd::getegid().as_raw().to_string()),
        ..WriteOptions::default()
    }
}

fn key(i: usize) -> Key {
    Key::new(format!("user{i:04}"), "example.com", "userPassword").unwrap()
}

/// A value long enough that some records go to overflow pages, so a commit takes
/// several writes.
fn value(i: usize, generation: u32) -> Vec<u8> {
    let len = if i.is_multiple_of(7) { 3000 } else { 20 };
    let mut v = format!("pw-{generation}-{i}-").into_bytes();
    v.resize(len, b'x');
    v
}

/// Creates a database of `n` users in `format`.
fn create(loc: &Location, n: usize) {
    let mut txn = Transaction::begin(loc, &opts()).unwrap();
    for i in 0..n {
        txn.put(&key(i), value(i, 0));
    }
    txn.commit().unwrap();
}

fn contents(loc: &Location) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = Database::open(loc).unwrap();
    db.records()
        .unwrap()
        .map(|r| r.map(|r| (r.key, r.value.to_vec())))
        .collect::<crate::Result<_>>()
        .unwrap()
}

/// Entries of `dir` other than the database and its lock files.
fn strays(dir: &Path, db: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != db && !n.starts_with(&format!("{db}.lock")) && !n.ends_with("-lock"))
        .collect();
    v.sort();
    v
}

/// The commit every run tries: a change of user 1 and a new user.
fn change(loc: &Location) -> crate::Result<()> {
    let mut txn = Transaction::begin(loc, &opts())?;
    txn.put(&key(1), b"changed".to_vec());
    txn.put(&key(9999), b"added".to_vec());
    txn.commit().map(|_| ())
}

fn faults_for(step: Step) -> Vec<Fault> {
    let mut v = vec![Fault::Errno(EIO), Fault::Errno(ENOSPC)];
    if step == Step::Write {
        v.push(Fault::Short);
        v.push(Fault::ShortThen(ENOSPC));
    }
    v
}

fn check_one_line(e: &Error, errno: i32, what: &str) {
    let text = e.to_string();
    assert!(
        !text.contains('\n'),
        "{what}: error is not one line: {text:?}"
    );
    let sys = crate::error::io_text(&std::io::Error::from_raw_os_error(errno));
    assert!(text.contains(&sys), "{what}: `{text}` does not say `{sys}`");
    assert!(text.contains('/'), "{what}: `{text}` names no file");
}

fn run_replace_format(format: Format) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let loc = Location::with_format(format, &path);
    create(&loc, 60);
    let original = fs::read(&path).unwrap();
    let before = contents(&loc);
    let mut after = before.clone();
    after.insert(key(1).encode(), b"changed".to_vec());
    after.insert(key(9999).encode(), b"added".to_vec());

    // A clean run, to learn the steps.
    let (r, steps) = with_plan(Plan::default(), || change(&loc));
    r.unwrap();
    assert_eq!(steps.first(), Some(&Step::Create), "{steps:?}");
    assert!(
        steps.iter().filter(|s| **s == Step::Write).count() >= 3,
        "{steps:?}"
    );
    let rename_at = steps.iter().position(|s| *s == Step::Rename).unwrap();
    assert_eq!(steps.last(), Some(&Step::SyncDir), "{steps:?}");

    let mut runs = 0;
    for (n, &step) in steps.iter().enumerate() {
        for fault in faults_for(step) {
            fs::write(&path, &original).unwrap();
            let what = format!("{format} step {n} ({step:?}) {fault:?}");
            let plan = Plan {
                faults: BTreeMap::from([(n, fault)]),
                ..Plan::default()
            };
            let (r, _) = with_plan(plan, || change(&loc));
            runs += 1;
            match (fault, r) {
                (Fault::Short, Ok(())) => {
                    assert_eq!(contents(&loc), after, "{what}: short write retried");
                }
                (Fault::Short, Err(e)) => panic!("{what}: a short write must be retried: {e}"),
                (_, Ok(())) => panic!("{what}: the commit succeeded"),
                (Fault::Errno(e) | Fault::ShortThen(e), Err(err)) => {
                    check_one_line(&err, e, &what);
                    if n < rename_at || (n == rename_at && step == Step::Rename) {
                        assert!(fs::read(&path).unwrap() == original, "{what}: file changed");
                    } else {
                        assert_eq!(contents(&loc), after, "{what}: renamed file incomplete");
                    }
                }
            }
            assert_eq!(
                strays(dir.path(), "sasldb2"),
                Vec::<String>::new(),
                "{what}"
            );
            // The next writer works.
            change(&loc).unwrap_or_else(|e| panic!("{what}: next commit: {e}"));
            assert_eq!(contents(&loc), after, "{what}");
        }
    }
    assert!(runs > 20, "only {runs} fault runs");
}

#[test]
fn bdb_commit_survives_a_fault_at_every_step() {
    run_replace_format(Format::Bdb);
}

#[test]
fn gdbm_commit_survives_a_fault_at_every_step() {
    run_replace_format(Format::Gdbm);
}

/// A new LMDB file is bulk-loaded into a temporary file and linked into place.
#[test]
#[cfg(feature = "lmdb")]
fn lmdb_bulk_load_survives_a_fault_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let loc = Location::with_format(Format::Lmdb, &path);
    let load = || -> crate::Result<()> {
        let txn = Transaction::begin(&loc, &opts())?;
        let recs: Vec<crate::Result<Record>> = (0..50)
            .map(|i| Ok(Record::new(key(i).encode(), value(i, 0))))
            .collect();
        txn.replace_with(Box::new(recs.into_iter()), true)?;
        Ok(())
    };
    let (r, steps) = with_plan(Plan::default(), load);
    r.unwrap();
    let link_at = steps.iter().position(|s| *s == Step::Link).unwrap();
    assert!(steps.contains(&Step::Unlink), "{steps:?}");
    let expected = contents(&loc);
    assert_eq!(expected.len(), 50);
    for (n, &step) in steps.iter().enumerate() {
        for fault in faults_for(step) {
            for f in fs::read_dir(dir.path()).unwrap() {
                fs::remove_file(f.unwrap().path()).unwrap();
            }
            let what = format!("LMDB bulk load step {n} ({step:?}) {fault:?}");
            let plan = Plan {
                faults: BTreeMap::from([(n, fault)]),
                ..Plan::default()
            };
            let (r, _) = with_plan(plan, load);
            let Fault::Errno(e) = fault else {
                unreachable!("LMDB writes its pages itself")
            };
            check_one_line(&r.expect_err(&what), e, &what);
            if n < link_at || (n == link_at && step == Step::Link) {
                assert!(!path.exists(), "{what}: a database appeared");
            } else {
                assert_eq!(contents(&loc), expected, "{what}");
                assert_eq!(fs::metadata(&path).unwrap().nlink(), 1, "{what}");
            }
            assert_eq!(
                strays(dir.path(), "sasldb2"),
                Vec::<String>::new(),
                "{what}"
            );
        }
    }
}

/// What SIGKILL leaves: no destructor runs.
#[test]
fn temp_files_of_a_killed_writer_are_removed_by_the_next_one() {
    for format in Format::ALL.into_iter().filter(|f| f.is_built()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sasldb2");
        let loc = Location::with_format(format, &path);
        create(&loc, 3);
        // A temporary file as a killed replace leaves it.
        let target = crate::storage::persist::Target::resolve(&path).unwrap();
        let own = crate::storage::persist::Ownership::plan(&target, &opts().ownership).unwrap();
        let (f, guard) = crate::storage::persist::create_temp(&target, &own).unwrap();
        fs::write(guard.path(), b"half a database").unwrap();
        drop(f);
        std::mem::forget(guard);
        assert_eq!(strays(dir.path(), "sasldb2").len(), 1);
        let txn = Transaction::begin(&loc, &opts()).unwrap();
        assert_eq!(
            strays(dir.path(), "sasldb2"),
            Vec::<String>::new(),
            "{format}"
        );
        drop(txn);
    }
}

/// A bulk load killed between `link` and `unlink` leaves the new database with a second
/// name; it must not make the database unwritable ("has 2 hard links").
#[test]
#[cfg(feature = "lmdb")]
fn second_link_of_an_interrupted_bulk_load_is_tolerated_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let loc = Location::with_format(Format::Lmdb, &path);
    create(&loc, 3);
    fs::hard_link(
        &path,
        dir.path().join(".sasldb2.sasldb-tmp-00112233aabbccdd"),
    )
    .unwrap();
    change(&loc).unwrap();
    assert_eq!(strays(dir.path(), "sasldb2"), Vec::<String>::new());
    assert_eq!(fs::metadata(&path).unwrap().nlink(), 1);
    // Any other second link is still refused.
    fs::hard_link(&path, dir.path().join("other")).unwrap();
    assert!(matches!(
        Transaction::begin(&loc, &opts()),
        Err(Error::HardLinked { links: 2, .. })
    ));
}

/// The temporary file is opened `O_CREAT|O_EXCL|O_NOFOLLOW`: whatever is planted at its
/// name (a symlink to a file, a dangling symlink, a file) is never written through,
/// and the write fails cleanly.
#[test]
fn planted_entries_at_the_temp_name_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    fs::write(&path, b"").unwrap();
    let target = crate::storage::persist::Target::resolve(&path).unwrap();
    let own = crate::storage::persist::Ownership::plan(&target, &opts().ownership).unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"keep").unwrap();
    let name = std::ffi::OsStr::new(".db.sasldb-tmp-planted");
    let planted = dir.path().join(name);
    for plant in ["symlink", "dangling", "file"] {
        let _ = fs::remove_file(&planted);
        match plant {
            "symlink" => std::os::unix::fs::symlink(&victim, &planted).unwrap(),
            "dangling" => std::os::unix::fs::symlink(dir.path().join("nowhere"), &planted).unwrap(),
            _ => fs::write(&planted, b"planted").unwrap(),
        }
        let r = crate::storage::persist::create_temp_named(&target, &own, name);
        let e = r.expect_err(plant);
        assert_eq!(
            e.io_kind(),
            Some(std::io::ErrorKind::AlreadyExists),
            "{plant}: {e}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!dir.path().join("nowhere").exists(), "{plant}");
    }
    // The stale-temp sweep removes regular files only; a planted symlink is left alone
    // (and its target untouched).
    let _ = fs::remove_file(&planted);
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    target.remove_stale_temps().unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
}
