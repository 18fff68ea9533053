use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sasldb::internals::Backend;
use sasldb::internals::lmdb::{self, LmdbFile};
use sasldb::internals::persist::Ownership;
use sasldb::{Database, Error, Format, Key, Location, Record, Secret, Transaction, WriteOptions};

use crate::support::{Rng, expected_records, fixture, hex, is_root, mode, peer, run_ok, unhex};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Write options for a new LMDB database; the group is our own unless given.
fn opts(group: Option<&str>) -> WriteOptions {
    WriteOptions {
        new_format: Format::Lmdb,
        ownership: sasldb::OwnershipPolicy::RootGroup(
            group
                .map(str::to_owned)
                .unwrap_or_else(|| nix::unistd::getegid().as_raw().to_string()),
        ),
        ..WriteOptions::default()
    }
}

fn own() -> Ownership {
    Ownership {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        mode: 0o640,
        enforced: nix::unistd::geteuid().is_root(),
        note: None,
        warning: None,
    }
}

fn lmdb_loc(path: &Path) -> Location {
    Location::with_format(Format::Lmdb, path)
}

/// Our own reading of a database, in scan order (must already be sorted).
fn read_ours(path: &Path) -> Pairs {
    let db = Database::open(&Location::path_only(path)).unwrap();
    assert_eq!(db.format(), Format::Lmdb);
    assert!(db.records_are_sorted());
    let v: Pairs = db
        .records()
        .unwrap()
        .map(|r| r.map(|r| (r.key, r.value.to_vec())).unwrap())
        .collect();
    assert!(
        v.windows(2).all(|w| w[0].0 < w[1].0),
        "scan not in key order"
    );
    v
}

/// Every record as Debian's `mdb_dump -n` prints it. The default `bytevalue` (hex)
/// format is used because 0.9.24's `-p` (print) format does not escape backslashes,
/// so `\\41` in a value is ambiguous there.
fn mdb_dump(path: &Path) -> Pairs {
    let out = run_ok(Command::new(peer("mdb_dump")).arg("-n").arg(path));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(lines.by_ref().any(|l| l == "format=bytevalue"), "{text}");
    assert!(lines.by_ref().any(|l| l == "HEADER=END"));
    let items: Vec<Vec<u8>> = lines
        .take_while(|l| *l != "DATA=END")
        .map(|l| unhex(l.strip_prefix(' ').expect("data line").as_bytes()))
        .collect();
    assert!(items.len().is_multiple_of(2));
    items
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

fn mdb_stat_env(path: &Path) -> String {
    let out = run_ok(Command::new(peer("mdb_stat")).arg("-n").arg("-e").arg(path));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn map_size_of(stat: &str) -> u64 {
    stat.lines()
        .find_map(|l| l.trim().strip_prefix("Map size: "))
        .unwrap_or_else(|| panic!("no map size in {stat}"))
        .trim()
        .parse()
        .unwrap()
}

/// sasldb-shaped records: UTF-8 names, the usual properties, mostly short values and
/// a few that need overflow pages.
fn random_model(rng: &mut Rng, n: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let props = ["userPassword", "cmusaslsecretOTP", "authPassword"];
    let mut map = BTreeMap::new();
    while map.len() < n {
        let key = Key::new(rng.name(24), rng.name(20), props[rng.below(3) as usize])
            .unwrap()
            .encode();
        let vlen = match rng.below(100) {
            0 => 2000 + rng.below(10_000) as usize,
            _ => rng.below(64) as usize,
        };
        map.insert(key, rng.bytes(vlen));
    }
    map
}

fn pairs(m: &BTreeMap<Vec<u8>, Vec<u8>>) -> Pairs {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn cyrus_fixture_reads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    fs::copy(fixture("lmdb/cyrus-master-lmdb.db"), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let expected = expected_records(&fixture("lmdb/cyrus-master-lmdb.db.expected"));
    assert_eq!(expected.len(), 604);
    assert!(read_ours(&path) == expected);
    let db = LmdbFile::open(&path).unwrap();
    for (k, v) in &expected {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(v), "get {k:?}");
    }
    assert_eq!(db.get(b"nobody\0nowhere\0userPassword").unwrap(), None);
    assert_eq!(db.get(b"").unwrap(), None);
    assert_eq!(db.get(&[b'k'; 600]).unwrap(), None);
    assert_eq!(db.len().unwrap(), 604);
    assert_eq!(db.page_size(), 4096);
    // Opening created the lock file, writable wherever the data file is readable.
    let lock = lmdb::lock_path(&path);
    assert_eq!(mode(&lock), 0o660);
    assert_eq!(
        fs::metadata(&lock).unwrap().gid(),
        fs::metadata(&path).unwrap().gid()
    );
    lmdb::verify(&path).unwrap();
}

#[test]
fn our_writes_are_read_by_mdb_dump() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let loc = lmdb_loc(&path);
    let mut rng = Rng::new(7);
    let mut model = random_model(&mut rng, 10_000);

    // Create with 10,000 puts.
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    for (k, v) in &model {
        txn.put_raw(k.clone(), Secret::new(v.clone()));
    }
    let rep = txn.commit().unwrap();
    assert_eq!(rep.records, Some(10_000));
    assert!(mdb_dump(&path) == pairs(&model), "after create");
    assert!(read_ours(&path) == pairs(&model));

    // Deletes, overwrites and new keys in one transaction.
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    assert_eq!(txn.format(), Format::Lmdb);
    for (i, k) in keys.iter().enumerate() {
        match i % 7 {
            0 => {
                txn.delete_raw(k.clone());
                model.remove(k);
            }
            1 => {
                let len = rng.below(80) as usize;
                let v = rng.bytes(len);
                txn.put_raw(k.clone(), Secret::new(v.clone()));
                model.insert(k.clone(), v);
            }
            _ => {}
        }
    }
    for (k, v) in random_model(&mut rng, 1500) {
        txn.put_raw(k.clone(), Secret::new(v.clone()));
        model.insert(k, v);
    }
    txn.delete_raw(b"absent\0key\0userPassword".to_vec());
    let rep = txn.commit().unwrap();
    assert_eq!(rep.records, Some(model.len() as u64));
    assert!(mdb_dump(&path) == pairs(&model), "after updates");
    assert!(read_ours(&path) == pairs(&model));

    // replace_all: only what is put after clear() remains.
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.clear();
    let keep: BTreeMap<Vec<u8>, Vec<u8>> = model
        .iter()
        .step_by(3)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &keep {
        txn.put_raw(k.clone(), Secret::new(v.clone()));
    }
    txn.commit().unwrap();
    assert!(mdb_dump(&path) == pairs(&keep), "after replace_all");
    assert!(read_ours(&path) == pairs(&keep));
    lmdb::verify(&path).unwrap();
}

/// Renders records in the `mdb_load` bytevalue (hex) format.
fn load_format(pairs: &Pairs) -> Vec<u8> {
    let mut out =
        b"VERSION=3\nformat=bytevalue\ntype=btree\nmapsize=67108864\nHEADER=END\n".to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(format!(" {}\n {}\n", hex(k), hex(v)).as_bytes());
    }
    out.extend_from_slice(b"DATA=END\n");
    out
}

#[test]
fn mdb_load_files_are_read_by_us() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let model = pairs(&random_model(&mut Rng::new(11), 10_000));
    let dump = dir.path().join("dump.txt");
    fs::write(&dump, load_format(&model)).unwrap();
    run_ok(
        Command::new(peer("mdb_load"))
            .arg("-n")
            .arg("-f")
            .arg(&dump)
            .arg(&path),
    );
    assert!(read_ours(&path) == model);
    let db = LmdbFile::open(&path).unwrap();
    let mut rng = Rng::new(3);
    for _ in 0..500 {
        let (k, v) = &model[rng.below(model.len() as u64) as usize];
        assert_eq!(db.get(k).unwrap().as_deref(), Some(v));
    }
    drop(db);
    // And we can update a file mdb_load made.
    let mut txn = Transaction::begin(&lmdb_loc(&path), &opts(None)).unwrap();
    txn.delete_raw(model[0].0.clone());
    txn.commit().unwrap();
    assert!(mdb_dump(&path) == model[1..]);
}

#[test]
fn map_grows_past_the_initial_mib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let loc = lmdb_loc(&path);
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.put(&Key::new("a", "r", "userPassword").unwrap(), b"x".to_vec());
    txn.commit().unwrap();
    assert_eq!(map_size_of(&mdb_stat_env(&path)), 1 << 20);

    // About 3.5 MiB of records in one transaction.
    let mut rng = Rng::new(5);
    let mut model = BTreeMap::new();
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    for i in 0..3000 {
        let k = Key::new(format!("user{i}"), "example.org", "userPassword")
            .unwrap()
            .encode();
        let v = rng.bytes(1200);
        txn.put_raw(k.clone(), Secret::new(v.clone()));
        model.insert(k, v);
    }
    model.insert(b"a\0r\0userPassword".to_vec(), b"x".to_vec());
    txn.commit().unwrap();
    let map = map_size_of(&mdb_stat_env(&path));
    assert!(map >= 4 << 20, "map size {map}");
    assert!(mdb_dump(&path) == pairs(&model));

    // A smaller sasldb_mapsize never shrinks the map a file already has.
    let mut o = opts(None);
    o.lmdb.mapsize_kib = Some(1024);
    let mut txn = Transaction::begin(&loc, &o).unwrap();
    txn.delete(&Key::new("a", "r", "userPassword").unwrap());
    txn.commit().unwrap();
    assert_eq!(map_size_of(&mdb_stat_env(&path)), map);

    // Cyrus's sasldb_mapsize (KiB) is honoured for a new database.
    let p2 = dir.path().join("sized");
    let mut o = opts(None);
    o.lmdb.mapsize_kib = Some(8192);
    let mut txn = Transaction::begin(&lmdb_loc(&p2), &o).unwrap();
    txn.put(&Key::new("a", "r", "userPassword").unwrap(), b"x".to_vec());
    txn.commit().unwrap();
    assert_eq!(map_size_of(&mdb_stat_env(&p2)), 8 << 20);
}

#[test]
fn ownership_and_modes() {
    let root = is_root();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let lock = lmdb::lock_path(&path);
    // As root the group comes from the options; otherwise our own group is kept.
    let group = if root { Some("4242") } else { None };
    let want_gid = if root {
        4242
    } else {
        nix::unistd::getegid().as_raw()
    };
    let mut txn = Transaction::begin(&lmdb_loc(&path), &opts(group)).unwrap();
    txn.put(&Key::new("a", "r", "userPassword").unwrap(), b"x".to_vec());
    txn.commit().unwrap();
    for (p, mode) in [(&path, 0o640), (&lock, 0o660)] {
        let m = fs::metadata(p).unwrap();
        assert_eq!(m.mode() & 0o7777, mode, "{}", p.display());
        assert_eq!(m.gid(), want_gid, "{}", p.display());
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    }

    // Loosened or narrowed modes are put back by the next commit.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o600)).unwrap();
    let mut txn = Transaction::begin(&lmdb_loc(&path), &opts(group)).unwrap();
    txn.put(&Key::new("b", "r", "userPassword").unwrap(), b"y".to_vec());
    txn.commit().unwrap();
    if root {
        assert_eq!(mode(&path), 0o640);
    } else {
        // Not root: the mode is narrowed to at most 0640, never widened.
        assert_eq!(mode(&path), 0o640 & 0o644);
    }
    assert_eq!(mode(&lock), 0o660);

    // A reader recreates a missing lock file with the data file's group.
    fs::remove_file(&lock).unwrap();
    let db = Database::open(&Location::path_only(&path)).unwrap();
    drop(db);
    let m = fs::metadata(&lock).unwrap();
    assert_eq!((m.mode() & 0o7777, m.gid()), (0o660, want_gid));

    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("sasldb-tmp")), "{names:?}");
}

/// A reader linked to Debian's liblmdb.so (not our bundled copy): it opens the
/// environment, prints its LMDB version, holds a read transaction, and on each input
/// line renews the transaction and prints the value of that key (or NOTFOUND).
const PROBE_C: &str = r#"
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    MDB_env *env; MDB_txn *txn; MDB_dbi dbi; int rc;
    if ((rc = mdb_env_create(&env)) || (rc = mdb_env_open(env, argv[1], MDB_NOSUBDIR | MDB_RDONLY, 0660))) {
        printf("ERR open %s\n", mdb_strerror(rc)); return 1;
    }
    if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) || (rc = mdb_dbi_open(txn, NULL, 0, &dbi))) {
        printf("ERR txn %s\n", mdb_strerror(rc)); return 1;
    }
    printf("READY %s\n", mdb_version(NULL, NULL, NULL)); fflush(stdout);
    char line[600];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strcspn(line, "\n");
        for (size_t i = 0; i < n; i++) if (line[i] == '|') line[i] = 0;
        mdb_txn_reset(txn);
        if ((rc = mdb_txn_renew(txn))) {
            if (rc == MDB_MAP_RESIZED) { mdb_txn_abort(txn); mdb_env_set_mapsize(env, 0);
                rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn); }
            if (rc) { printf("ERR renew %s\n", mdb_strerror(rc)); fflush(stdout); continue; }
        }
        MDB_val k = { n, line }, v;
        rc = mdb_get(txn, dbi, &k, &v);
        if (rc == 0) printf("VALUE %.*s\n", (int)v.mv_size, (char *)v.mv_data);
        else printf("NOTFOUND %s\n", mdb_strerror(rc));
        fflush(stdout);
    }
    mdb_txn_abort(txn); mdb_env_close(env); return 0;
}
"#;

struct Probe {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Probe {
    fn start(dir: &Path, db: &Path) -> Probe {
        let src = dir.join("probe.c");
        let exe = dir.join("probe");
        fs::write(&src, PROBE_C).unwrap();
        run_ok(
            Command::new(peer("gcc"))
                .arg("-O1")
                .arg("-o")
                .arg(&exe)
                .arg(&src)
                .arg("-llmdb"),
        );
        let ldd = run_ok(Command::new(peer("ldd")).arg(&exe));
        assert!(
            String::from_utf8_lossy(&ldd.stdout).contains("liblmdb.so"),
            "probe is not linked to the system liblmdb"
        );
        let mut child = Command::new(&exe)
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut p = Probe { child, out };
        let ready = p.line();
        assert!(ready.starts_with("READY LMDB 0.9."), "probe: {ready}");
        p
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.out.read_line(&mut s).unwrap();
        s.trim_end().to_owned()
    }

    /// Renews the probe's snapshot and looks `user|realm|prop` up.
    fn get(&mut self, key: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{key}").unwrap();
        stdin.flush().unwrap();
        self.line()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The reader table as `mdb_stat -r` (Debian's liblmdb) prints it: the pids.
fn reader_pids(path: &Path) -> Vec<u32> {
    // mdb_stat 0.9.24 exits 1 after printing the reader table (it returns
    // mdb_reader_list's count), so judge it by its output.
    let out = Command::new(peer("mdb_stat"))
        .arg("-n")
        .arg("-r")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(text.starts_with("Reader Table Status"), "{text}{err}");
    assert!(err.is_empty(), "{err}");
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn lock_file_is_shared_with_debian_liblmdb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let loc = lmdb_loc(&path);
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.put(
        &Key::new("alice", "example.com", "userPassword").unwrap(),
        b"one".to_vec(),
    );
    txn.commit().unwrap();

    // We hold a read transaction (a scan in progress): Debian's tools work on the same
    // environment, and its reader table (the lock file) shows our slot.
    let db_ours = Database::open(&Location::path_only(&path)).unwrap();
    let ours = db_ours.records().unwrap();
    let me = std::process::id();
    assert!(
        reader_pids(&path).contains(&me),
        "our reader slot is not in the lock file"
    );
    assert_eq!(mdb_dump(&path).len(), 1);
    mdb_stat_env(&path);

    // A Debian-linked reader holds a transaction while we hold ours.
    let mut probe = Probe::start(dir.path(), &path);
    assert_eq!(probe.get("alice|example.com|userPassword"), "VALUE one");
    let pids = reader_pids(&path);
    assert!(
        pids.contains(&me) && pids.contains(&probe.pid()),
        "{pids:?}"
    );
    drop(ours);
    drop(db_ours);

    // Opening (read and write) while it holds its transaction: no version mismatch,
    // and our committed change is visible to it.
    let db = Database::open(&Location::path_only(&path)).unwrap();
    assert!(
        db.get(&Key::new("alice", "example.com", "userPassword").unwrap())
            .unwrap()
            .is_some()
    );
    drop(db);
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.put(
        &Key::new("alice", "example.com", "userPassword").unwrap(),
        b"two".to_vec(),
    );
    txn.put(
        &Key::new("bob", "example.com", "userPassword").unwrap(),
        b"three".to_vec(),
    );
    txn.commit().unwrap();
    assert_eq!(probe.get("alice|example.com|userPassword"), "VALUE two");
    assert_eq!(probe.get("bob|example.com|userPassword"), "VALUE three");

    // Grow the data past the probe's 1 MiB map: it must adopt the new size.
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    for i in 0..2000 {
        txn.put(
            &Key::new(format!("u{i}"), "example.com", "userPassword").unwrap(),
            vec![b'p'; 1000],
        );
    }
    txn.commit().unwrap();
    assert!(map_size_of(&mdb_stat_env(&path)) > 1 << 20);
    assert_eq!(probe.get("bob|example.com|userPassword"), "VALUE three");
    assert!(
        probe
            .get("u1999|example.com|userPassword")
            .starts_with("VALUE ppp")
    );
}

#[test]
fn a_read_only_env_in_this_process_blocks_writes_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let loc = lmdb_loc(&path);
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.put(&Key::new("a", "r", "userPassword").unwrap(), b"x".to_vec());
    txn.commit().unwrap();
    let reader = Database::open(&Location::path_only(&path)).unwrap();
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.put(&Key::new("b", "r", "userPassword").unwrap(), b"y".to_vec());
    let err = txn.commit().unwrap_err().to_string();
    assert!(
        err.contains("open read-only elsewhere in this process"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    drop(reader);
    assert_eq!(mdb_dump(&path).len(), 1);
}

#[test]
fn long_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let loc = lmdb_loc(&path);
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.put(&Key::new("a", "r", "userPassword").unwrap(), b"x".to_vec());
    txn.commit().unwrap();
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.put(&Key::new("b", "r", "userPassword").unwrap(), b"y".to_vec());
    txn.put_raw(vec![b'k'; 512], Secret::new(b"z".to_vec()));
    match txn.commit() {
        Err(Error::TooLong {
            what: "key",
            len: 512,
            max: 511,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        mdb_dump(&path).len(),
        1,
        "nothing of the refused commit was written"
    );
    // 511 bytes is fine.
    let mut txn = Transaction::begin(&loc, &opts(None)).unwrap();
    txn.put_raw(vec![b'k'; 511], Secret::new(b"z".to_vec()));
    txn.commit().unwrap();
    assert_eq!(mdb_dump(&path).len(), 2);
}

fn records(pairs: &[(Vec<u8>, Vec<u8>)]) -> impl Iterator<Item = sasldb::Result<Record>> + '_ {
    pairs
        .iter()
        .map(|(k, v)| Ok(Record::new(k.clone(), v.clone())))
}

#[test]
fn bulk_load_writes_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    // More than one batch, and more than the initial 1 MiB map.
    let model: Pairs = (0..120_000u32)
        .map(|i| {
            (
                format!("user{i:07}\0example.org\0userPassword").into_bytes(),
                format!("secret-{i}").into_bytes(),
            )
        })
        .collect();
    let n = lmdb::build_new(&path, records(&model), &own()).unwrap();
    assert_eq!(n, 120_000);
    assert!(mdb_dump(&path) == model);
    assert!(read_ours(&path) == model);
    assert_eq!(mode(&path), 0o640);
    assert_eq!(mode(&lmdb::lock_path(&path)), 0o660);
    assert!(map_size_of(&mdb_stat_env(&path)) > 1 << 20);
    lmdb::verify(&path).unwrap();

    // Never over an existing file.
    let err = lmdb::build_new(&path, records(&model[..1]), &own()).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    // Unsorted input fails and leaves nothing behind.
    let p2 = dir.path().join("unsorted");
    let bad = vec![model[1].clone(), model[0].clone()];
    let err = lmdb::build_new(&p2, records(&bad), &own()).unwrap_err();
    assert!(err.to_string().contains("increasing key order"), "{err}");
    let dup = vec![model[0].clone(), model[0].clone()];
    assert!(lmdb::build_new(&p2, records(&dup), &own()).is_err());
    assert!(!p2.exists());
    let left: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // An empty record set makes a valid empty database.
    let p3 = dir.path().join("empty");
    assert_eq!(lmdb::build_new(&p3, std::iter::empty(), &own()).unwrap(), 0);
    assert!(mdb_dump(&p3).is_empty());
    assert!(read_ours(&p3).is_empty());
}

// ---------------------------------------------------------------------------------
// Hostile files: errors, never a crash.

fn open_err(path: &Path) -> String {
    match Database::open(&Location::with_format(Format::Lmdb, path)) {
        Ok(db) => {
            // Anything it can still read must not crash either.
            let _ = db.records().map(|it| it.count());
            "opened".into()
        }
        Err(e) => {
            let s = e.to_string();
            assert!(!s.contains('\n'), "multi-line error: {s}");
            s
        }
    }
}

fn meta_page(psize: u32, last_pg: u64, txnid: u64, pgno: u64) -> Vec<u8> {
    let mut p = vec![0u8; (psize as usize).max(256)];
    p[0..8].copy_from_slice(&pgno.to_le_bytes());
    p[10..12].copy_from_slice(&0x08u16.to_le_bytes());
    p[16..20].copy_from_slice(&0xBEEF_C0DEu32.to_le_bytes());
    p[20..24].copy_from_slice(&1u32.to_le_bytes());
    p[32..40].copy_from_slice(&(1u64 << 20).to_le_bytes());
    p[40..44].copy_from_slice(&psize.to_le_bytes());
    // Both roots empty.
    p[80..88].copy_from_slice(&u64::MAX.to_le_bytes());
    p[128..136].copy_from_slice(&u64::MAX.to_le_bytes());
    p[136..144].copy_from_slice(&last_pg.to_le_bytes());
    p[144..152].copy_from_slice(&txnid.to_le_bytes());
    p
}

#[test]
fn hostile_meta_pages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h");
    let good = [meta_page(4096, 1, 0, 0), meta_page(4096, 1, 0, 1)].concat();
    fs::write(&path, &good).unwrap();
    assert_eq!(
        open_err(&path),
        "opened",
        "a hand-made empty environment is valid"
    );
    assert!(read_ours(&path).is_empty());

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "page size 0",
            [meta_page(0, 1, 0, 0), vec![0; 4096]].concat(),
        ),
        (
            "page size 3000",
            [meta_page(3000, 1, 0, 0), meta_page(3000, 1, 0, 1)].concat(),
        ),
        (
            "last page past the end",
            [meta_page(4096, 9, 0, 0), meta_page(4096, 9, 0, 1)].concat(),
        ),
        ("truncated second meta", good[..5000].to_vec()),
        ("meta 1 version 2", {
            let mut b = good.clone();
            b[4096 + 20] = 2;
            b
        }),
        (
            "odd txnid in slot 0",
            [meta_page(4096, 1, 3, 0), meta_page(4096, 1, 0, 1)].concat(),
        ),
        ("32-bit layout", {
            let mut b = vec![0u8; 8192];
            b[12..16].copy_from_slice(&0xBEEF_C0DEu32.to_le_bytes());
            b
        }),
        ("big-endian", {
            let mut b = vec![0u8; 8192];
            b[16..20].copy_from_slice(&0xBEEF_C0DEu32.to_be_bytes());
            b
        }),
        ("main root out of range", {
            let mut b = good.clone();
            b[128..136].copy_from_slice(&7u64.to_le_bytes());
            b[86..88].copy_from_slice(&0u16.to_le_bytes());
            b
        }),
    ];
    for (what, bytes) in cases {
        fs::write(&path, &bytes).unwrap();
        let _ = fs::remove_file(lmdb::lock_path(&path));
        let err = open_err(&path);
        assert_ne!(err, "opened", "{what}");
        assert!(err.contains("LMDB"), "{what}: {err}");
    }
    // Random bytes behind a valid-looking first meta page.
    let mut rng = Rng::new(99);
    for i in 0..200 {
        let pages = 2 + rng.below(6) as usize;
        let mut b = rng.bytes(4096 * pages);
        b[..160].copy_from_slice(&meta_page(4096, 1 + rng.below(8), rng.below(3), 0)[..160]);
        if i % 2 == 0 {
            b[4096..4096 + 160]
                .copy_from_slice(&meta_page(4096, 1 + rng.below(8), rng.below(3), 1)[..160]);
        }
        fs::write(&path, &b).unwrap();
        open_err(&path);
    }
}

#[test]
fn damaged_copies_of_a_real_file_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let src = fs::read(fixture("lmdb/cyrus-master-lmdb.db")).unwrap();
    let path = dir.path().join("d");
    // Every truncation at a page boundary and a few inside pages.
    let mut refused = 0;
    for cut in (0..src.len())
        .step_by(4096)
        .chain([100, 5000, 20_000, src.len() - 1])
    {
        fs::write(&path, &src[..cut]).unwrap();
        if open_err(&path) != "opened" {
            refused += 1;
        }
    }
    assert!(refused >= 28, "only {refused} truncations refused");
    // Random byte damage inside the tree pages (the metas stay valid).
    let mut rng = Rng::new(1234);
    let mut errors = 0;
    for _ in 0..300 {
        let mut b = src.clone();
        for _ in 0..1 + rng.below(8) {
            let page = 2 + rng.below(src.len() as u64 / 4096 - 2) as usize;
            let off = if rng.below(2) == 0 {
                rng.below(64)
            } else {
                rng.below(4096)
            } as usize;
            b[page * 4096 + off] = rng.next_u64() as u8;
        }
        fs::write(&path, &b).unwrap();
        if open_err(&path) != "opened" {
            errors += 1;
        }
    }
    assert!(errors > 50, "only {errors} damaged files refused");
}

#[test]
fn empty_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e");
    fs::write(&path, b"").unwrap();
    assert!(LmdbFile::open(&path).is_err());
    assert!(matches!(
        LmdbFile::open(&dir.path().join("missing")),
        Err(Error::NotFound { .. })
    ));
    assert!(!lmdb::lock_path(&dir.path().join("missing")).exists());
}

#[test]
fn empty_transaction_creates_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasldb2");
    let rep = Transaction::begin(&lmdb_loc(&path), &opts(None))
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(rep.records, Some(0));
    assert!(mdb_dump(&path).is_empty());
    assert!(read_ours(&path).is_empty());
    assert_eq!(mode(&lmdb::lock_path(&path)), 0o660);
    // The format is detected from the file from now on.
    let bdb_default = WriteOptions {
        new_format: Format::Bdb,
        ..opts(None)
    };
    let txn = Transaction::begin(&Location::path_only(&path), &bdb_default).unwrap();
    assert_eq!(txn.format(), Format::Lmdb);
    assert!(txn.existed());
}
