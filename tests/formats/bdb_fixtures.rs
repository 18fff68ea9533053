use std::path::Path;

use sasldb::internals::bdb::BdbFile;

use crate::support::{expected_records, fixture, records_of};

fn check_fixture(name: &str) {
    let path = fixture(&format!("bdb/{name}"));
    let db = BdbFile::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut got = records_of(db.scan());
    got.sort();
    let want = expected_records(Path::new(&format!("{}.expected", path.display())));
    assert_eq!(got.len(), want.len(), "{name}: record count");
    assert!(got == want, "{name}: records differ");
    // Every key is found by a keyed lookup too.
    for (k, v) in &want {
        let found = db
            .get(k)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: key not found"));
        assert_eq!(&found[..], &v[..], "{name}: value by lookup");
    }
    let report = db.verify().unwrap();
    assert!(report.warnings.is_empty(), "{name}: {:?}", report.warnings);
    assert_eq!(report.records as usize, want.len());
}

#[test]
fn cyrus_debian() {
    check_fixture("cyrus-2.1.28-debian.db");
}

#[test]
fn bulk_4096() {
    check_fixture("bulk2000-p4096.db");
}

#[test]
fn bulk_512_overflow_and_offpage_keys() {
    check_fixture("bulk2000-p512.db");
}

#[test]
fn bulk_65536() {
    check_fixture("bulk300-p65536.db");
}

#[test]
fn big_endian() {
    check_fixture("bulk2000-p4096-bigendian.db");
}

#[test]
fn checksummed() {
    check_fixture("bulk500-p8192-checksum.db");
}
