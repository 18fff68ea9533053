//! Writes the seed corpora under `scripts/fuzz/corpus/<target>/` (committed; rerun
//! after a format change): small valid databases of every layout this crate writes,
//! the smallest reference fixtures, and hand-written text inputs.
//!
//! Usage: cargo run --manifest-path scripts/fuzz/Cargo.toml --example gen-corpus -- [corpus dir]

use std::fs;
use std::path::{Path, PathBuf};

use sasldb::endian::Endian;
use sasldb::{Database, Format, Key, Location, Record, Transaction, WriteOptions, bdb, gdbm};

fn records(n: usize, value_len: impl Fn(usize) -> usize) -> Vec<Record> {
    let mut v: Vec<Record> = (0..n)
        .map(|i| {
            let prop = ["userPassword", "cmusaslsecretOTP", "authPassword"][i % 3];
            let key = Key::new(format!("u{i}"), "realm", prop).unwrap().encode();
            let value = (0..value_len(i))
                .map(|j| b'a' + ((i + j) % 26) as u8)
                .collect();
            Record::new(key, value)
        })
        .collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn bdb_seeds(root: &Path) {
    let dir = root.join("bdb_file");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bdb");
    let f = fs::read(fixtures.join("cyrus-2.1.28-debian.db")).unwrap();
    put(&dir, "cyrus-2.1.28-debian.db", &f);
    for (name, ps, endian, sums, n, big) in [
        ("empty-512", 512, Endian::Little, false, 0, 0),
        ("small-512", 512, Endian::Little, false, 5, 10),
        ("small-512-be", 512, Endian::Big, false, 5, 10),
        ("small-512-sum", 512, Endian::Little, true, 5, 10),
        ("chain-512", 512, Endian::Little, false, 30, 40),
        ("overflow-512", 512, Endian::Little, false, 3, 700),
        ("overflow-1024-be-sum", 1024, Endian::Big, true, 4, 900),
        ("small-4096", 4096, Endian::Little, false, 9, 20),
    ] {
        let opts = bdb::WriteOptions {
            page_size: ps,
            endian,
            checksums: sums,
        };
        let mut image = Vec::new();
        let recs = records(n, |i| big + i);
        bdb::write_records(recs.into_iter().map(Ok), &opts, &mut image).unwrap();
        put(&dir, &format!("{name}.db"), &image);
    }
    // bdb_mutate: `opts records patches` (see the harness).
    let dir = root.join("bdb_mutate");
    for (name, seed) in [
        ("plain", vec![0u8, 5]),
        ("checksums-fixed", vec![4 | 16, 8]),
        ("big-endian-chain", vec![8, 40]),
        ("overflow", vec![1, 3 | 0xc0]),
        (
            "overflow-sum-patched",
            vec![4 | 16, 2 | 0xc0, 20, 0, 0, 0xff],
        ),
        ("meta-patch", vec![0, 5, 72, 0, 0, 7, 76, 0, 0, 3]),
    ] {
        put(&dir, name, &seed);
    }
}

fn gdbm_seeds(root: &Path) {
    let dir = root.join("gdbm_file");
    for (name, bs, numsync, layout, n, big) in [
        ("empty-512", 512, false, gdbm::Layout::host(), 0, 0),
        ("small-512", 512, false, gdbm::Layout::host(), 6, 10),
        ("numsync-512", 512, true, gdbm::Layout::host(), 6, 10),
        (
            "ilp32-be-512",
            512,
            false,
            gdbm::Layout::ilp32(Endian::Big),
            6,
            10,
        ),
        (
            "lfs-1024",
            1024,
            false,
            gdbm::Layout::ilp32_lfs(Endian::Little),
            8,
            30,
        ),
        ("split-512", 512, false, gdbm::Layout::host(), 60, 5),
    ] {
        let opts = gdbm::WriteOptions {
            block_size: bs,
            numsync,
            layout,
            signed_char: gdbm::HOST_SIGNED_CHAR,
        };
        let mut image = Vec::new();
        let recs = records(n, |i| big + i);
        gdbm::write_records(recs.into_iter().map(Ok), &opts, &mut image).unwrap();
        put(&dir, &format!("{name}.gdbm"), &image);
    }
}

/// LMDB and SQLite files come from the normal write path (a transaction).
fn via_transaction(format: Format, n: usize, value_len: usize) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db");
    let opts = WriteOptions {
        new_format: format,
        group: Some("root".into()),
        ..WriteOptions::default()
    };
    let mut txn = Transaction::begin(&Location::with_format(format, &path), &opts).unwrap();
    for r in records(n, |i| value_len + i) {
        txn.put_raw(r.key, r.value);
    }
    txn.commit().unwrap();
    let db = Database::open(&Location::with_format(format, &path)).unwrap();
    assert_eq!(db.sorted_records().unwrap().len(), n);
    drop(db);
    fs::read(&path).unwrap()
}

fn lmdb_seeds(root: &Path) {
    let dir = root.join("lmdb_check");
    for (name, n, len) in [
        ("one", 1, 10),
        ("small", 8, 20),
        ("overflow", 3, 5000),
        ("branch", 120, 30),
    ] {
        put(
            &dir,
            &format!("{name}.lmdb"),
            &via_transaction(Format::Lmdb, n, len),
        );
    }
}

fn sqlite_seeds(root: &Path) {
    let dir = root.join("sqlite_file");
    for (name, n, len) in [("one", 1, 10), ("small", 8, 20), ("blob", 3, 3000)] {
        put(
            &dir,
            &format!("{name}.sqlite"),
            &via_transaction(Format::Sqlite, n, len),
        );
    }
}

fn text_seeds(root: &Path) {
    let sets: &[(&str, &[(&str, &[u8])])] = &[
        (
            "key_codec",
            &[
                ("key", b"alice\0example.com\0userPassword"),
                ("empty-parts", b"\0\0p"),
                ("one-nul", b"user\0prop"),
                ("three-nuls", b"a\0b\0c\0d"),
                ("lengths", b"\x05\x0balice\0example.comuserPassword"),
            ],
        ),
        (
            "import_lines",
            &[
                ("basic", b"alice:secret\nbob@example.com:pa:ss\r\n# comment\n\ncarol@:x\nnocolon\n"),
                ("bad", b"@r:pw\nu:\nu:\0x\nu\x01:pw\n\xff:pw\n"),
            ],
        ),
        (
            "import_csv",
            &[
                ("basic", b"user,realm,password\nalice,example.com,secret\r\nbob,,\"pa,\"\"ss\"\n"),
                ("reordered", b"\xef\xbb\xbfPassword, User\n\"x\ny\",bob\n"),
                ("bad", b"user,password\n\"unterminated\n"),
                ("quote", b"user,password\na\"b,c\n\"a\"x,b\n"),
            ],
        ),
        (
            "import_json",
            &[
                (
                    "basic",
                    br#"[{"user":"alice","realm":"example.com","password":"secret"},
 {"user":"bob@r","properties":{"userPassword":"pw","authPassword":{"base64":"AAE="}}}]"#,
                ),
                ("bad", br#"[1, {"user":2}, {"user":"a","x":1}, {"user":"a"}, {"user":"a\"]","password":"\u0000"}]"#),
                ("empty", b"\xef\xbb\xbf [ ] "),
                ("nested", br#"[{"user":"a","password":"p","properties":[[{"}":"]"}]]}]"#),
            ],
        ),
        (
            "postfix_main_cf",
            &[
                (
                    "basic",
                    b"# main.cf\nmyhostname = mail.$mydomain\nmydomain = example.com\n  .continued\nsmtpd_sasl_local_domain = $myhostname\n",
                ),
                (
                    "operators",
                    b"a = ${b?yes}|${c:no}|$(b)|$$a|${{$b} == {x}?t:f}\nb = x\nc =\n${b} ${{1} <= {2}?one} ${a:{x}}",
                ),
                ("loop", b"a = $b\nb = $a\n$a"),
                ("errors", b"x = ${\ny = ${{a} ~ {b}}\nz = $\n = v\nq\n"),
                ("default", b"myorigin = $myhostname\n$mydestination"),
            ],
        ),
        (
            "cyrus_conf",
            &[
                (
                    "basic",
                    b"# app.conf\npwcheck_method: auxprop\nauxprop_plugin: sasldb sql\nmech_list: PLAIN LOGIN\nsasldb_path: /etc/sasldb2\n",
                ),
                (
                    "values",
                    b"scram_secret_generate: yes\nscram_iteration_counter: -1\notp_mda: SHA1\nsasldb_mapsize: 2048k\nsasldb_maxreaders: 99999999999\nSASLDB_Path: /dup\n",
                ),
                ("bad", b"key value\n"),
                ("empty-value", b"key:   \n"),
            ],
        ),
        (
            "secrets_parse",
            &[
                ("otp", b"md5\t0499\tvm4355\ta60b12d2be16af7f\t00000000000000000000\xffsecret"),
                ("otp-sha1", b"SHA1 12 seed 0123456789abcdef -5"),
                (
                    "otp-binary",
                    b"md5\x000099\x00seed\x00\x01\x02\x03\x04\x05\x06\x07\x08\x00\x00\x00\x00\x00\x00\x00\x00",
                ),
                (
                    "scram",
                    b"SCRAM-SHA-1$4096:HZ+t6CojMV0tgwDiOM1M2w==$1ZFL+gCrlkg3X6Vpgx1hEhPZlTI=:FIL5/bE/FDAMFfJPDnF+zNfJ9T8=\xffsecret-md5",
                ),
                (
                    "scram-cheap",
                    b"SCRAM-SHA-256 $ 3:c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \xffpw",
                ),
                ("legacy", b"0123456789abcdef\x000123456789abcdef\xffpw"),
            ],
        ),
        (
            "getopt",
            &[
                ("basic", b"-c\0-u\0example.com\0alice"),
                ("cluster", b"-pcf/etc/sasldb2\0--group=postfix\0--\0-d"),
                ("errors", b"-x\0-f\0--gr\0--force=1\0--nope\0-"),
            ],
        ),
    ];
    for (target, seeds) in sets {
        for (name, bytes) in *seeds {
            put(&root.join(target), name, bytes);
        }
    }
}

/// Seeds for the `sasldb serve` targets: protocol transcripts as Postfix, doveadm,
/// libsasl and Dovecot send them (pieces fed separately are split by 0xfe, messages
/// of one exchange by 0xff; see the harness).
fn serve_seeds(root: &Path) {
    fn mux(fields: [&[u8]; 4]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in fields {
            v.extend_from_slice(&(f.len() as u16).to_be_bytes());
            v.extend_from_slice(f);
        }
        v
    }
    let hello = "VERSION\t1\t0\nCPID\t42\n";
    let dovecot: Vec<(&str, Vec<String>)> = vec![
        (
            "postfix-plain",
            vec![format!("{hello}AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tsecured\tresp=AGFsaWNlAHNlY3JldA==\n")],
        ),
        (
            "login-in-pieces",
            vec![
                format!("{hello}AUTH\t2\tLOGIN\tservice=smtp\tresp=\n"),
                "CONT\t2\tYWxpY2U=\n".into(),
                "CONT\t2\tc2VjcmV0\n".into(),
            ],
        ),
        (
            "cram-md5",
            vec![
                format!("{hello}AUTH\t3\tCRAM-MD5\tservice=smtp\n"),
                "CONT\t3\tYWxpY2UgMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=\n".into(),
            ],
        ),
        (
            "scram-first",
            vec!["VERSION\t1\t2\nCPID\t7\nAUTH\t4\tSCRAM-SHA-256\tservice=smtp\tfinal-resp-ok\tresp=bixuPWFsaWNlLHI9YWJj\n".into()],
        ),
        (
            "errors",
            vec![format!("{hello}AUTH\t5\tPLAIN\tservice=smtp\tresp=!!\nCONT\t9\tAA==\nCANCEL\t5\nAUTH\t6\tPLAIN\tservice=smtp\nCONT\t6\t\x01t\nAUTH\t6\tPLAIN\tservice=smtp\n")],
        ),
    ];
    for (name, pieces) in &dovecot {
        let bytes: Vec<Vec<u8>> = pieces.iter().map(|p| p.as_bytes().to_vec()).collect();
        put(&root.join("serve_dovecot"), name, &bytes.join(&0xfe));
    }
    let sasl: &[(&str, &[u8])] = &[
        ("plain", b"\x00\0alice\0secret"),
        ("plain-authzid", b"\x00alice\0alice\0secret"),
        ("login", b"\x01\xffalice\xffsecret"),
        ("cram", b"\x02\xffalice 5c6e2b5ea6d3ec6b1fc2ccd9ee1a2c24"),
        ("scram-sha1", b"\x03n,,n=alice,r=abc\xffc=biws,r=abc,p=AAAA"),
        ("scram-sha256-authzid", b"\x04y,a=alice,n=alice,r=x=2C\xff"),
    ];
    for (name, bytes) in sasl {
        put(&root.join("serve_sasl"), name, bytes);
    }
    put(
        &root.join("serve_saslauthd"),
        "postfix",
        &mux([b"alice", b"secret", b"smtp", b""]),
    );
    put(
        &root.join("serve_saslauthd"),
        "realm",
        &mux([b"alice", b"secret", b"imap", b"example.org"]),
    );
    put(
        &root.join("serve_saslauthd"),
        "empty-login",
        &mux([b"", b"pw", b"smtp", b""]),
    );
    put(
        &root.join("serve_saslauthd"),
        "too-long",
        &[&b"\x01\x01"[..], &[b'a'; 257]].concat(),
    );
    for (name, bytes) in [
        ("dovecot", &b"alice@example.org\0secret\0\0"[..]),
        ("lookup", b"alice\0\0\0"),
        ("djb-timestamp", b"bob\0pw\x001234567890\0extra"),
        ("short", b"alice\0pw"),
    ] {
        put(&root.join("serve_checkpassword"), name, bytes);
    }
}

fn main() {
    let root: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    bdb_seeds(&root);
    gdbm_seeds(&root);
    lmdb_seeds(&root);
    sqlite_seeds(&root);
    text_seeds(&root);
    serve_seeds(&root);
    println!("seed corpora written under {}", root.display());
}
