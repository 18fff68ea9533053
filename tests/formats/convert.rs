//! `sasldb convert` through the real binary: a 10,000-record round trip through every
//! format, peers reading each intermediate file, and the refusals (existing
//! destination, malformed source keys).

use std::path::Path;
use std::process::{Command, Output};

use sasldb::{Database, Key, Location};

use crate::support::{Rng, db_dump, ours, peer, records_of, run_ok, write_bdb};

fn sasldb(args: &[&str]) -> Output {
    ours::sasldb()
        .args(args)
        .env("SASL_CONF_PATH", "/nonexistent")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = sasldb(args);
    assert!(
        out.status.success(),
        "sasldb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn all_records(loc: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = Database::open(&loc.parse::<Location>().unwrap()).unwrap();
    records_of(db.records().unwrap())
}

/// 10,000 records: UTF-8 users over several realms, several properties, binary values.
fn records() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = Rng::new(4242);
    let mut map = std::collections::BTreeMap::new();
    let props = [
        "userPassword",
        "cmusaslsecretOTP",
        "authPassword",
        "customProp",
    ];
    while map.len() < 10_000 {
        let user = rng.name(20);
        let realm = ["example.com", "example.org", "mail.bücher.example"][rng.below(3) as usize];
        let prop = props[rng.below(4) as usize];
        let len = 1 + rng.below(80) as usize;
        map.insert(
            Key::new(&user, realm, prop).unwrap().encode(),
            rng.bytes(len),
        );
    }
    map.into_iter().collect()
}

#[test]
fn round_trip_through_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let want = records();
    write_bdb(Path::new(&p("start.db")), &want);
    let chain = [
        format!("bdb:{}", p("start.db")),
        format!("lmdb:{}", p("a.lmdb")),
        format!("gdbm:{}", p("b.gdbm")),
        format!("sqlite:{}", p("c.sqlite")),
        format!("bdb:{}", p("end.db")),
    ];
    for pair in chain.windows(2) {
        let out = ok(&["convert", &pair[0], &pair[1]]);
        assert!(out.contains("converted 10000 records"), "{out}");
        assert!(
            all_records(&pair[1]) == want,
            "{} differs after the conversion",
            pair[1]
        );
    }
    // The peers read the intermediate files too.
    let mdb = run_ok(
        Command::new(peer("mdb_dump"))
            .args(["-n", "-p"])
            .arg(p("a.lmdb")),
    );
    assert!(String::from_utf8_lossy(&mdb.stdout).lines().count() > 2 * want.len());
    let gdbm = run_ok(Command::new(peer("gdbm_dump")).arg(p("b.gdbm")).arg("-"));
    assert!(!gdbm.stdout.is_empty());
    let cnt = run_ok(
        Command::new(peer("sqlite3"))
            .arg(p("c.sqlite"))
            .arg("SELECT count(*) FROM sasldb"),
    );
    assert_eq!(String::from_utf8_lossy(&cnt.stdout).trim(), "10000");
    run_ok(Command::new(peer("db_verify")).arg("-q").arg(p("end.db")));
    assert!(db_dump(Path::new(&p("end.db"))) == want);
    // Byte-identical content at both ends.
    assert!(all_records(&chain[0]) == all_records(&chain[4]));
}

#[test]
fn existing_destination_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let dst = dir.path().join("dst.db");
    write_bdb(
        &src,
        &[(
            Key::new("a", "r", "userPassword").unwrap().encode(),
            b"one".to_vec(),
        )],
    );
    write_bdb(
        &dst,
        &[(
            Key::new("b", "r", "userPassword").unwrap().encode(),
            b"two".to_vec(),
        )],
    );
    let before = std::fs::read(&dst).unwrap();
    let out = sasldb(&["convert", src.to_str().unwrap(), dst.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), before, "destination changed");
    ok(&[
        "convert",
        "--force",
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
    ]);
    assert_eq!(all_records(dst.to_str().unwrap()).len(), 1);
    assert_eq!(all_records(dst.to_str().unwrap())[0].1, b"one");
    // The same file on both sides is refused.
    let out = sasldb(&["convert", src.to_str().unwrap(), src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn malformed_source_keys_fail_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bad.db");
    let mut pairs = vec![
        (
            Key::new("good", "r", "userPassword").unwrap().encode(),
            b"pw".to_vec(),
        ),
        (b"badkey\0onlyonenul".to_vec(), b"x".to_vec()),
        (b"no-separators".to_vec(), b"y".to_vec()),
    ];
    pairs.sort();
    write_bdb(&src, &pairs);
    for fmt in ["lmdb", "bdb", "gdbm", "sqlite"] {
        let dst = dir.path().join(format!("out.{fmt}"));
        let dst_loc = format!("{fmt}:{}", dst.display());
        let out = sasldb(&["convert", src.to_str().unwrap(), &dst_loc]);
        assert_eq!(out.status.code(), Some(1), "{fmt}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("malformed key") && err.contains("nothing written"),
            "{fmt}: {err}"
        );
        assert!(
            !dst.exists(),
            "{fmt}: destination created despite the failure"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("sasldb-tmp") || n.contains("sasldb-sort"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{fmt}: temporary files left: {leftovers:?}"
        );
        let out = ok(&[
            "convert",
            "--skip-malformed",
            src.to_str().unwrap(),
            &dst_loc,
        ]);
        assert!(
            out.contains("converted 1 records") && out.contains("2 malformed skipped"),
            "{fmt}: {out}"
        );
        assert_eq!(all_records(&dst_loc).len(), 1, "{fmt}");
    }
}
