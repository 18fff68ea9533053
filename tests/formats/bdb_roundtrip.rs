use std::fs::File;
use std::path::Path;
use std::process::Command;

use sasldb::internals::bdb::{BdbFile, WriteOptions, write_records};
use sasldb::internals::endian::Endian;
use sasldb::{Key, Record};

use crate::support::{self, Rng, db_dump, libdb_lookup_misses, peer, records_of, run_ok};

/// Sasldb-shaped records ([`support::random_records`]) with value lengths from empty to
/// several pages (so some exceed pagesize/4 at every page size).
fn random_records(seed: u64, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let props = [
        "userPassword",
        "cmusaslsecretOTP",
        "authPassword",
        "x",
        "xy",
        "xyz",
    ];
    support::random_records(seed, n, &props, |rng| match rng.below(100) {
        0 => 20_000 + rng.below(50_000) as usize,
        1..=3 => 200 + rng.below(3000) as usize,
        _ => rng.below(64) as usize,
    })
}

fn write(path: &Path, pairs: &[(Vec<u8>, Vec<u8>)], opts: WriteOptions) {
    let mut f = File::create(path).unwrap();
    let recs = pairs
        .iter()
        .map(|(k, v)| Ok(Record::new(k.clone(), v.clone())));
    write_records(recs, &opts, &mut f).unwrap();
    f.sync_all().unwrap();
}

fn check_with_peers(page_size: u32, endian: Endian) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let pairs = random_records(u64::from(page_size) ^ endian.is_big() as u64, 10_000);
    write(
        &path,
        &pairs,
        WriteOptions {
            page_size,
            endian,
            checksums: false,
        },
    );

    run_ok(Command::new(peer("db_verify")).arg("-q").arg(&path));
    assert!(
        db_dump(&path) == pairs,
        "db_dump -p differs at {page_size} {endian:?}"
    );
    assert_eq!(
        libdb_lookup_misses(&path, &pairs),
        0,
        "libdb lookups at {page_size} {endian:?}"
    );
    // And we read back what we wrote, by scan and by lookup.
    let db = BdbFile::open(&path).unwrap();
    assert!(records_of(db.scan()) == pairs);
    assert!(db.verify().unwrap().warnings.is_empty());
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        file_len,
        (u64::from(db.meta().last_pgno) + 1) * u64::from(page_size)
    );
}

#[test]
fn peers_accept_512_little() {
    check_with_peers(512, Endian::Little);
}

#[test]
fn peers_accept_512_big() {
    check_with_peers(512, Endian::Big);
}

#[test]
fn peers_accept_4096_little() {
    check_with_peers(4096, Endian::Little);
}

#[test]
fn peers_accept_4096_big() {
    check_with_peers(4096, Endian::Big);
}

#[test]
fn peers_accept_65536_little() {
    check_with_peers(65536, Endian::Little);
}

#[test]
fn peers_accept_65536_big() {
    check_with_peers(65536, Endian::Big);
}

#[test]
fn checksummed_files_pass_db_verify() {
    for endian in [Endian::Little, Endian::Big] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let pairs = random_records(77, 2000);
        write(
            &path,
            &pairs,
            WriteOptions {
                page_size: 8192,
                endian,
                checksums: true,
            },
        );
        run_ok(Command::new(peer("db_verify")).arg("-q").arg(&path));
        assert!(db_dump(&path) == pairs);
        assert_eq!(libdb_lookup_misses(&path, &pairs), 0);
        assert!(records_of(BdbFile::open(&path).unwrap().scan()) == pairs);
    }
}

#[test]
fn empty_database_matches_libdb_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    write(&path, &[], WriteOptions::default());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * 4096);
    run_ok(Command::new(peer("db_verify")).arg("-q").arg(&path));
    assert!(BdbFile::open(&path).unwrap().scan().next().is_none());
}

/// libdb keeps updating our file in place: 2,000 puts and deleting half the
/// original keys through libdb, then db_verify and our reader agree on the result.
#[test]
fn libdb_updates_our_file_in_place() {
    for (page_size, endian) in [
        (512, Endian::Little),
        (4096, Endian::Big),
        (65536, Endian::Little),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.db");
        let pairs = random_records(5, 3000);
        write(
            &path,
            &pairs,
            WriteOptions {
                page_size,
                endian,
                checksums: false,
            },
        );
        let script = r#"
use strict; use DB_File; use Fcntl;
my ($db) = @ARGV; my %h;
tie(%h, 'DB_File', $db, O_RDWR, 0644, $DB_HASH) or die "tie: $!";
my @keys = sort keys %h; my $i = 0;
for my $k (@keys) { delete $h{$k} if $i++ % 2 == 0; }
for my $n (1..2000) { $h{"new$n\0realm\0userPassword"} = ("v" x ($n % 7 == 0 ? 3000 : $n % 50)); }
untie %h;
"#;
        run_ok(Command::new(peer("perl")).arg("-e").arg(script).arg(&path));
        run_ok(Command::new(peer("db_verify")).arg("-q").arg(&path));
        let want = db_dump(&path);
        assert_eq!(want.len(), 1500 + 2000);
        let db = BdbFile::open(&path).unwrap();
        assert!(records_of(db.scan()) == want, "{page_size} {endian:?}");
        assert!(db.verify().unwrap().warnings.is_empty());
        for (k, v) in &want {
            assert_eq!(db.get(k).unwrap().as_deref().map(|v| &v[..]), Some(&v[..]));
        }
    }
}

/// Pages that differ between two files (a page missing from one counts).
fn pages_differing(a: &[u8], b: &[u8], page_size: usize) -> usize {
    let n = a.len().max(b.len()).div_ceil(page_size);
    (0..n)
        .filter(|&i| {
            let r = i * page_size..(i + 1) * page_size;
            a.get(r.clone()) != b.get(r)
        })
        .count()
}

/// Single-key transactions (what `saslpasswd2` does) on a file libdb made and on a
/// checksummed big-endian file of ours: each commit rewrites only the pages of the
/// touched bucket (plus the meta page) on a copy that replaces the file, and the
/// result stays right for db_verify, db_dump, libdb lookups and libdb's own updates.
#[test]
fn single_changes_rewrite_only_their_buckets() {
    use sasldb::{Location, Transaction, WriteOptions as TxnOptions};
    for variant in ["db_load", "ours-checksummed-big-endian"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut model = std::collections::BTreeMap::new();
        for i in 0..3000 {
            model.insert(
                format!("user{i}\0realm{}\0userPassword", i % 3).into_bytes(),
                format!("pw{i}").into_bytes(),
            );
        }
        if variant == "db_load" {
            let mut text = String::new();
            for (k, v) in &model {
                let k = String::from_utf8(k.clone()).unwrap().replace('\0', "\\00");
                text.push_str(&format!("{k}\n{}\n", String::from_utf8_lossy(v)));
            }
            let input = dir.path().join("input");
            std::fs::write(&input, text).unwrap();
            run_ok(
                Command::new(peer("db_load"))
                    .args(["-T", "-t", "hash", "-f"])
                    .arg(&input)
                    .arg(&path),
            );
        } else {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> =
                model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            write(
                &path,
                &pairs,
                WriteOptions {
                    page_size: 4096,
                    endian: Endian::Big,
                    checksums: true,
                },
            );
        }
        let page_size = BdbFile::open(&path).unwrap().meta().page_size as usize;
        let loc = Location::path_only(&path);
        let opts = TxnOptions {
            ownership: sasldb::OwnershipPolicy::RootGroup("root".into()),
            ..TxnOptions::default()
        };
        let mut rng = Rng::new(41);
        let mut small = 0;
        for round in 0..200 {
            let before = std::fs::read(&path).unwrap();
            let n = rng.below(4000);
            let key = Key::new(
                format!("user{n}"),
                format!("realm{}", n % 3),
                "userPassword",
            )
            .unwrap();
            let mut txn = Transaction::begin(&loc, &opts).unwrap();
            if rng.below(4) == 0 {
                txn.delete(&key);
                model.remove(&key.encode());
            } else {
                let v = format!("new{round}").into_bytes();
                txn.put(&key, v.clone());
                model.insert(key.encode(), v);
            }
            let report = txn.commit().unwrap();
            let after = std::fs::read(&path).unwrap();
            if pages_differing(&before, &after, page_size) <= 4 {
                small += 1;
            }
            assert_eq!(
                report.records,
                Some(model.len() as u64),
                "{variant} round {round}"
            );
        }
        assert!(
            small >= 190,
            "{variant}: only {small} of 200 commits were patches"
        );
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        run_ok(Command::new(peer("db_verify")).arg("-q").arg(&path));
        assert!(db_dump(&path) == pairs, "{variant}: db_dump differs");
        assert_eq!(libdb_lookup_misses(&path, &pairs), 0, "{variant}");
        let db = BdbFile::open(&path).unwrap();
        assert!(db.verify().unwrap().warnings.is_empty());
        assert!(records_of(db.scan()) == pairs);
        drop(db);
        // libdb keeps updating the patched file in place.
        let script = r#"
use strict; use DB_File; use Fcntl;
my ($db) = @ARGV; my %h;
tie(%h, 'DB_File', $db, O_RDWR, 0644, $DB_HASH) or die "tie: $!";
for my $n (1..500) { $h{"libdb$n\0realm\0userPassword"} = "v$n"; }
untie %h;
"#;
        run_ok(Command::new(peer("perl")).arg("-e").arg(script).arg(&path));
        run_ok(Command::new(peer("db_verify")).arg("-q").arg(&path));
        let db = BdbFile::open(&path).unwrap();
        assert_eq!(db.scan().count(), model.len() + 500);
    }
}
