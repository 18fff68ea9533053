//! The SQLite store against the real Cyrus SASL 2.1.28 `sql` auxprop plugin
//! (Debian's `libsasl2-modules-sql`, `sql_engine: sqlite3`) and the `sqlite3` shell.
//!
//! - `roundtrip_*`: our writer and reader agree with the `sqlite3` shell on every byte.
//! - `plugin_*`: libsasl's `sasl-sample-server` with the plugin configured exactly as
//!   [`sasldb::internals::sql::sqlite::PLUGIN_CONFIG`] documents authenticates from our file (gsasl or
//!   a hand-made PLAIN message as the client), and Cyrus's own `saslpasswd2` writes
//!   into it.
//! - `hostile_*`: damaged and foreign files give one-line errors, never a panic.
//!
//! Peer tools are required: a missing one fails the test with its name. Every child
//! runs in a scratch directory with `SASL_CONF_PATH` pointing there, waits at most
//! [`STEP`] per protocol line, and is killed when its guard drops.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sasldb::account::secrets::otp::otp_chain;
use sasldb::account::secrets::{OtpAlgorithm, OtpSecret, ScramHash, ScramSecret};
use sasldb::internals::Backend;
use sasldb::internals::sql::sqlite::{APPLICATION_ID, PLUGIN_CONFIG, SqliteFile};
use sasldb::record::{AUTH_PASSWORD, OTP_SECRET, USER_PASSWORD};
use sasldb::{Database, Error, Format, Key, Location, Transaction, WriteOptions};

use crate::support::{Rng, is_root, key, peer, postfix_gid, run_ok, sql_saslpasswd2, unhex};

use crate::support::sample_server::{Peer, REALM, STEP, Server, Turn, gsasl_login};

fn loc(db: &Path) -> Location {
    Location::with_format(Format::Sqlite, db)
}

fn opts() -> WriteOptions {
    WriteOptions {
        new_format: Format::Sqlite,
        lock_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

/// Writes `(user, property, value)` rows (None deletes) in one transaction.
fn write(db: &Path, rows: &[(&str, &str, Option<&[u8]>)]) -> sasldb::CommitReport {
    let mut t = Transaction::begin(&loc(db), &opts()).unwrap();
    for (u, p, v) in rows {
        match v {
            Some(v) => t.put_raw(key(u, REALM, p), v.to_vec().into()),
            None => t.delete_raw(key(u, REALM, p)),
        }
    }
    t.commit().unwrap()
}

/// Every record through our reader, in the order it yields them.
fn ours(db: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let d = Database::open(&Location::path_only(db)).unwrap();
    assert_eq!(d.format(), Format::Sqlite);
    d.records()
        .unwrap()
        .map(|r| r.map(|r| (r.key, r.value.to_vec())).unwrap())
        .collect()
}

/// Runs the `sqlite3` shell read-only and returns its output lines.
fn sqlite3(db: &Path, sql: &str) -> Vec<String> {
    let out = run_ok(
        Command::new(peer("sqlite3"))
            .arg("-readonly")
            .arg(db)
            .arg(sql),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every row as the `sqlite3` shell sees it: (key, value, typeof(value)), sorted.
fn shell_rows(db: &Path) -> Vec<(Vec<u8>, Vec<u8>, String)> {
    let mut rows: Vec<_> = sqlite3(
        db,
        "SELECT hex(username), hex(realm), hex(property), hex(value), typeof(value) FROM sasldb",
    )
    .iter()
    .map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        assert_eq!(f.len(), 5, "{l}");
        let k = key(
            unhex(f[0].as_bytes()),
            unhex(f[1].as_bytes()),
            unhex(f[2].as_bytes()),
        );
        (k, unhex(f[3].as_bytes()), f[4].to_owned())
    })
    .collect();
    rows.sort();
    rows
}

fn expected_class(v: &[u8]) -> &'static str {
    if v != b"NULL" && !v.contains(&0) && std::str::from_utf8(v).is_ok() {
        "text"
    } else {
        "blob"
    }
}

fn check_against_shell(db: &Path, want: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let want: Vec<(Vec<u8>, Vec<u8>)> = want.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // Our reader yields bytewise key order without sorting.
    assert!(ours(db) == want, "our reader differs from what was written");
    let shell = shell_rows(db);
    assert_eq!(shell.len(), want.len());
    for ((k, v, class), (wk, wv)) in shell.iter().zip(&want) {
        assert_eq!((k, v), (wk, wv));
        assert_eq!(class, expected_class(v), "storage class of {v:?}");
    }
}

#[test]
fn roundtrip_10000_random_records_with_the_sqlite3_shell() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2.sqlite");
    let mut rng = Rng::new(0x5a1);
    let realms = ["example.org", "mail.example.org", "exämple.test", ""];
    let props = [USER_PASSWORD, OTP_SECRET, AUTH_PASSWORD, "x-note"];
    let mut want = BTreeMap::new();
    while want.len() < 10_000 {
        let user = rng.name(12);
        let realm = realms[rng.below(4) as usize];
        let prop = props[rng.below(4) as usize];
        let value = match rng.below(4) {
            0 => rng.name(40).into_bytes(),
            1 => b"NULL".to_vec(),
            _ => {
                let n = rng.below(70) as usize;
                rng.bytes(n)
            }
        };
        want.insert(Key::new(user, realm, prop).unwrap().encode(), value);
    }
    let mut t = Transaction::begin(&loc(&db), &opts()).unwrap();
    for (k, v) in &want {
        t.put_raw(k.clone(), v.clone().into());
    }
    let report = t.commit().unwrap();
    assert_eq!(report.records, Some(10_000));
    check_against_shell(&db, &want);

    // The file is ours, in rollback-journal mode, owned per the policy.
    assert_eq!(sqlite3(&db, "PRAGMA journal_mode"), ["delete"]);
    assert_eq!(
        sqlite3(&db, "PRAGMA application_id"),
        [APPLICATION_ID.to_string()]
    );
    let meta = fs::metadata(&db).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    if is_root() {
        assert_eq!((meta.uid(), meta.gid()), (0, postfix_gid().as_raw()));
    }
    let d = Database::open(&Location::path_only(&db)).unwrap();
    assert!(d.records_are_sorted());
    for (k, v) in want.iter().step_by(97) {
        assert_eq!(d.get_raw(k).unwrap().as_deref(), Some(v));
    }
    drop(d);

    // In place: delete, change and add in one more transaction.
    let keys: Vec<Vec<u8>> = want.keys().cloned().collect();
    let mut t = Transaction::begin(&loc(&db), &opts()).unwrap();
    assert!(t.existed());
    for k in keys.iter().step_by(7) {
        t.delete_raw(k.clone());
        want.remove(k);
    }
    for k in keys.iter().skip(3).step_by(11) {
        if let Some(v) = want.get_mut(k) {
            *v = rng.bytes(33);
            t.put_raw(k.clone(), v.clone().into());
        }
    }
    for i in 0..500 {
        let k = Key::new(format!("new{i}"), REALM, USER_PASSWORD)
            .unwrap()
            .encode();
        let v = format!("pw {i} ✓").into_bytes();
        t.put_raw(k.clone(), v.clone().into());
        want.insert(k, v);
    }
    let report = t.commit().unwrap();
    assert_eq!(report.records, Some(want.len() as u64));
    check_against_shell(&db, &want);
    for leftover in ["-journal", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(leftover);
        assert!(!Path::new(&p).exists(), "{leftover} left behind");
    }

    // clear() empties the table in the same transaction as the new puts.
    let mut t = Transaction::begin(&loc(&db), &opts()).unwrap();
    t.clear();
    t.put_raw(key("only", REALM, USER_PASSWORD), b"one".to_vec().into());
    assert_eq!(t.commit().unwrap().records, Some(1));
    let mut only = BTreeMap::new();
    only.insert(key("only", REALM, USER_PASSWORD), b"one".to_vec());
    check_against_shell(&db, &only);
}

// ---------------------------------------------------------------------------------
// The real plugin

/// Writes `<app>.conf` under `dir/conf`: the documented plugin configuration for `db`
/// plus `extra` lines. Returns the configuration directory.
fn plugin_conf(dir: &Path, app: &str, db: &Path, extra: &str) -> PathBuf {
    let confdir = dir.join("conf");
    fs::create_dir_all(&confdir).unwrap();
    let conf = PLUGIN_CONFIG.replace("DATABASE", db.to_str().unwrap());
    fs::write(
        confdir.join(format!("{app}.conf")),
        format!("pwcheck_method: auxprop\n{conf}{extra}"),
    )
    .unwrap();
    confdir
}

/// libsasl's sample server for `mech` with the documented plugin configuration for `db`.
fn server(dir: &Path, db: &Path, mech: &str) -> Server {
    let confdir = plugin_conf(
        dir,
        "sample",
        db,
        "mech_list: PLAIN CRAM-MD5 SCRAM-SHA-256 OTP\n",
    );
    Server::start(dir, &confdir, mech, &[])
}

/// A login with gsasl as the client against the SQLite file `db`.
fn login(dir: &Path, db: &Path, mech: &str, user: &str, pw: &str) -> Result<String, String> {
    gsasl_login(server(dir, db, mech), dir, mech, user, pw)
}

/// A PLAIN login with raw password bytes (no client library in between).
fn plain_raw(dir: &Path, db: &Path, user: &str, pw: &[u8]) -> Result<String, String> {
    let mut srv = server(dir, db, "PLAIN");
    let mut msg = format!("PLAIN\0\0{user}\0").into_bytes();
    msg.extend_from_slice(pw);
    let r = srv
        .send(&msg)
        .and_then(|()| srv.turn(Instant::now() + STEP));
    match r {
        Ok(Turn::Complete) => {
            srv.peer.finish();
            Ok(srv.log)
        }
        Ok(Turn::Challenge(_)) => Err(srv.fail("unexpected challenge")),
        Err(why) => Err(srv.fail(&why)),
    }
}

/// Asserts that a login was refused by libsasl (not by a broken setup).
fn assert_refused(what: &str, r: Result<String, String>) {
    let err = r.expect_err(what);
    assert!(
        err.contains("authentication failure") || err.contains("user not found"),
        "{what}: refused for another reason: {err}"
    );
}

#[test]
fn plugin_authenticates_from_our_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2.sqlite");
    let alice_pw = "s3cret \\ with a backslash ✓";
    let scram = ScramSecret::generate(ScramHash::Sha256, b"carol's pencil", 4096).unwrap();
    let dave_pw: &[u8] = b"latin1 \xe9t\xe9"; // not UTF-8: stored as a BLOB
    write(
        &db,
        &[
            ("alice", USER_PASSWORD, Some(alice_pw.as_bytes())),
            ("alice", "x-unknown", Some(b"kept")),
            ("carol", AUTH_PASSWORD, Some(&scram.encode())),
            ("dave", USER_PASSWORD, Some(dave_pw)),
            ("erin", USER_PASSWORD, Some(b"erin pw")),
        ],
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT typeof(value) FROM sasldb WHERE username = 'dave'"
        ),
        ["blob"]
    );

    for mech in ["PLAIN", "CRAM-MD5"] {
        let log = login(dir.path(), &db, mech, "alice", alice_pw)
            .unwrap_or_else(|e| panic!("{mech} with the right password: {e}"));
        assert!(log.contains("Username: alice@example.org"), "{log}");
        assert_refused(
            &format!("{mech} with a wrong password"),
            login(
                dir.path(),
                &db,
                mech,
                "alice",
                "s3cret \\\\ with a backslash ✓",
            ),
        );
    }

    // SCRAM for a user who has only authPassword: the plugin hands our salt over.
    let log = login(dir.path(), &db, "SCRAM-SHA-256", "carol", "carol's pencil")
        .unwrap_or_else(|e| panic!("SCRAM-SHA-256: {e}"));
    let salt_and_count = format!(",s={},i=4096", B64.encode(scram.salt()));
    assert!(log.contains(&salt_and_count), "{log}");
    assert!(log.contains("Username: carol@example.org"), "{log}");
    assert_refused(
        "SCRAM-SHA-256 with a wrong password",
        login(dir.path(), &db, "SCRAM-SHA-256", "carol", "carol's pen"),
    );

    // A BLOB value comes back from the plugin byte for byte.
    plain_raw(dir.path(), &db, "dave", dave_pw)
        .unwrap_or_else(|e| panic!("PLAIN with a non-UTF-8 password: {e}"));
    assert_refused(
        "PLAIN with the UTF-8 spelling of dave's password",
        plain_raw(dir.path(), &db, "dave", "latin1 été".as_bytes()),
    );

    // Deleted through our API: refused.
    login(dir.path(), &db, "PLAIN", "erin", "erin pw").unwrap();
    let mut t = Transaction::begin(&loc(&db), &opts()).unwrap();
    assert_eq!(t.delete_user(b"erin", REALM.as_bytes()).unwrap(), 1);
    t.commit().unwrap();
    assert_refused(
        "PLAIN for a deleted user",
        login(dir.path(), &db, "PLAIN", "erin", "erin pw"),
    );
}

/// Plugin quirk (a security problem of Cyrus 2.1.28, documented in the README): the
/// sqlite3 engine escapes `'` as `\'`, which SQLite does not understand, so a user
/// name can end the string literal and inject SQL. Here a client that knows no
/// password logs in by making the lookup return a password of its choice.
#[test]
fn plugin_quirk_sql_injection_through_the_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2.sqlite");
    write(&db, &[("alice", USER_PASSWORD, Some(b"alice pw"))]);
    let log = plain_raw(dir.path(), &db, "x' UNION SELECT 4242 --", b"4242")
        .unwrap_or_else(|e| panic!("the injection no longer works; update the docs: {e}"));
    assert!(
        log.contains("Username: x' UNION SELECT 4242 --@example.org"),
        "{log}"
    );
}

/// The OTP mechanism reads `cmusaslsecretOTP` and, on success, writes the next
/// sequence back through `sql_update`: the plugin writing into our file.
#[test]
fn plugin_otp_login_updates_our_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2.sqlite");
    let pw = "an OTP pass phrase";
    let secret = OtpSecret::generate(OtpAlgorithm::Sha1, b"Host", pw.as_bytes()).unwrap();
    write(&db, &[("alice", OTP_SECRET, Some(&secret.encode()))]);

    let mut srv = server(dir.path(), &db, "OTP");
    let deadline = Instant::now() + STEP;
    let r = (|| {
        srv.send(b"OTP\0\0alice")?;
        let Turn::Challenge(c) = srv.turn(deadline)? else {
            return Err("no challenge".to_owned());
        };
        let c = String::from_utf8(c).map_err(|e| e.to_string())?;
        let f: Vec<&str> = c.split_whitespace().collect();
        if f.len() < 3 || f[0] != "otp-sha1" || f[1] != "498" {
            return Err(format!("unexpected challenge {c}"));
        }
        let v = otp_chain(OtpAlgorithm::Sha1, f[2].as_bytes(), pw.as_bytes(), 498).unwrap();
        let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
        srv.send(format!("hex:{hex}").as_bytes())?;
        match srv.turn(deadline)? {
            Turn::Complete => Ok(()),
            Turn::Challenge(_) => Err("unexpected second challenge".to_owned()),
        }
    })();
    if let Err(why) = r {
        srv.peer.wait_exit(Instant::now() + STEP, &mut srv.log);
        panic!("OTP login: {}", srv.fail(&why));
    }
    srv.peer.wait_exit(Instant::now() + STEP, &mut srv.log);
    srv.peer.finish();

    let recs = ours(&db);
    assert_eq!(recs.len(), 1);
    let next = OtpSecret::parse(&recs[0].1).unwrap();
    assert_eq!((next.sequence(), next.seed()), (498, secret.seed()));
    assert!(next.verify_password(pw.as_bytes()).unwrap());
    // Still our file, still in rollback-journal mode.
    assert!(SqliteFile::open(&db).unwrap().is_ours());
    assert_eq!(sqlite3(&db, "PRAGMA journal_mode"), ["delete"]);
}

fn props_of(db: &Path, user: &str) -> BTreeMap<String, Vec<u8>> {
    let prefix = sasldb::record::user_prefix(user.as_bytes(), REALM.as_bytes());
    ours(db)
        .into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix.as_slice())
                .map(|p| (String::from_utf8(p.to_vec()).unwrap(), v))
        })
        .collect()
}

#[test]
fn plugin_saslpasswd2_writes_into_our_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2.sqlite");
    let confdir = plugin_conf(dir.path(), "sqltest", &db, "");
    write(
        &db,
        &[
            ("bob", USER_PASSWORD, Some(b"bob pw")),
            ("bob", "x-note", Some(b"\x00binary\xff")),
        ],
    );
    let bob_before = props_of(&db, "bob");

    // Create: userPassword exactly as typed (the backslash survives the plugin's
    // MySQL-style escaping), plus the OTP secret Debian's OTP plugin adds.
    let first = "first \\ pass ✓";
    let out = sql_saslpasswd2(&confdir, REALM, &["-p", "-c", "alice"], Some(first));
    assert!(out.status.success(), "{out:?}");
    let alice = props_of(&db, "alice");
    assert_eq!(
        alice.keys().collect::<Vec<_>>(),
        [OTP_SECRET, USER_PASSWORD]
    );
    assert_eq!(alice[USER_PASSWORD], first.as_bytes());
    let otp = OtpSecret::parse(&alice[OTP_SECRET]).unwrap();
    assert!(otp.verify_password(first.as_bytes()).unwrap());

    // Change the password (the user exists: the plugin's UPDATE path).
    let out = sql_saslpasswd2(&confdir, REALM, &["-p", "alice"], Some("second"));
    assert!(out.status.success(), "{out:?}");
    let alice = props_of(&db, "alice");
    assert_eq!(alice[USER_PASSWORD], b"second");
    let otp = OtpSecret::parse(&alice[OTP_SECRET]).unwrap();
    assert!(otp.verify_password(b"second").unwrap());
    // ...and the plugin reads back what it wrote.
    login(dir.path(), &db, "PLAIN", "alice", "second").unwrap();

    // Delete: the plugin writes 'NULL', the schema's triggers remove the rows.
    let out = sql_saslpasswd2(&confdir, REALM, &["-d", "alice"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(props_of(&db, "alice").is_empty());
    assert_eq!(
        sqlite3(&db, "SELECT count(*) FROM sasldb WHERE username = 'alice'"),
        ["0"]
    );
    assert_refused(
        "PLAIN after saslpasswd2 -d",
        login(dir.path(), &db, "PLAIN", "alice", "second"),
    );
    assert_refused(
        "PLAIN with the password NULL after saslpasswd2 -d",
        login(dir.path(), &db, "PLAIN", "alice", "NULL"),
    );

    // Plugin quirk: a ' in a value breaks the plugin's statement; saslpasswd2 fails.
    let out = sql_saslpasswd2(&confdir, REALM, &["-p", "-c", "quote"], Some("it's"));
    assert!(!out.status.success(), "{out:?}");
    assert!(!props_of(&db, "quote").contains_key(USER_PASSWORD));

    // Bob and his unknown property were never touched; the file is still ours and
    // our own writer goes on working on it.
    assert_eq!(props_of(&db, "bob"), bob_before);
    assert!(SqliteFile::open(&db).unwrap().is_ours());
    assert_eq!(sqlite3(&db, "PRAGMA journal_mode"), ["delete"]);
    write(&db, &[("bob", USER_PASSWORD, Some(b"bob pw 2"))]);
    assert_eq!(props_of(&db, "bob")[USER_PASSWORD], b"bob pw 2");
}

/// A writer in another process (the `sqlite3` shell standing in for saslpasswd2
/// through the plugin) holds the write lock: our commit waits for it, then succeeds.
#[test]
fn concurrent_foreign_writer_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2.sqlite");
    write(&db, &[("alice", USER_PASSWORD, Some(b"a"))]);
    let mut shell = Peer::spawn(
        "sqlite3",
        Command::new(peer("stdbuf"))
            .arg("-oL")
            .arg(peer("sqlite3"))
            .arg(&db),
    );
    let mut log = String::new();
    shell
        .send(
            "BEGIN IMMEDIATE; INSERT INTO sasldb VALUES ('cyrus', 'example.org', 'userPassword', 'c'); SELECT 'locked';",
            &mut log,
        )
        .unwrap();
    assert_eq!(
        shell.line(Instant::now() + STEP, &mut log).unwrap(),
        "locked"
    );
    let path = db.clone();
    let ours = std::thread::spawn(move || {
        let start = Instant::now();
        write(&path, &[("bob", USER_PASSWORD, Some(b"b"))]);
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(600));
    assert!(!ours.is_finished(), "our commit did not wait for the lock");
    shell.send("COMMIT; SELECT 'done';", &mut log).unwrap();
    assert_eq!(shell.line(Instant::now() + STEP, &mut log).unwrap(), "done");
    let waited = ours.join().unwrap();
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    shell.finish();
    let users: Vec<Vec<u8>> = ours_keys(&db);
    assert_eq!(
        users,
        [
            key("alice", REALM, USER_PASSWORD),
            key("bob", REALM, USER_PASSWORD),
            key("cyrus", REALM, USER_PASSWORD)
        ]
    );
}

fn ours_keys(db: &Path) -> Vec<Vec<u8>> {
    ours(db).into_iter().map(|(k, _)| k).collect()
}

// ---------------------------------------------------------------------------------
// Hostile and foreign files

/// Reads everything a file offers; returns the first error, if any. Never panics.
fn read_all(db: &Path) -> Option<Error> {
    let d = match Database::open(&Location::path_only(db)) {
        Ok(d) => d,
        Err(e) => return Some(e),
    };
    let _ = d.get_raw(&key("alice", REALM, USER_PASSWORD));
    let recs = match d.records() {
        Ok(r) => r,
        Err(e) => return Some(e),
    };
    for r in recs {
        if let Err(e) = r {
            return Some(e);
        }
    }
    None
}

fn one_line(e: &Error) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "multi-line error: {s:?}");
    s
}

#[test]
fn hostile_random_bytes_behind_the_sqlite_header() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hostile.sqlite");
    let mut rng = Rng::new(7);
    for round in 0..40 {
        let mut bytes = b"SQLite format 3\0".to_vec();
        let n = 84 + rng.below(4 * 4096) as usize;
        bytes.extend(rng.bytes(n));
        if round % 2 == 0 {
            // A plausible page size (4096) so SQLite gets further into the file.
            bytes[16] = 0x10;
            bytes[17] = 0x00;
        }
        fs::write(&db, &bytes).unwrap();
        let err = read_all(&db).unwrap_or_else(|| panic!("round {round}: no error"));
        let msg = one_line(&err);
        assert!(msg.contains("hostile.sqlite"), "{msg}");
        // Writing refuses too, and leaves the file as it was.
        let w = Transaction::begin(&loc(&db), &opts()).and_then(|mut t| {
            t.put_raw(key("x", REALM, USER_PASSWORD), b"y".to_vec().into());
            t.commit()
        });
        one_line(&w.expect_err("writing a hostile file must fail"));
        assert_eq!(fs::read(&db).unwrap(), bytes, "round {round}");
    }
}

#[test]
fn hostile_damaged_pages_of_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.sqlite");
    let rows: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|i| (format!("user{i}"), format!("password {i}").into_bytes()))
        .collect();
    let rows_ref: Vec<(&str, &str, Option<&[u8]>)> = rows
        .iter()
        .map(|(u, v)| (u.as_str(), USER_PASSWORD, Some(v.as_slice())))
        .collect();
    write(&good, &rows_ref);
    let pristine = fs::read(&good).unwrap();
    assert!(pristine.len() > 8 * 4096);
    let db = dir.path().join("damaged.sqlite");
    let mut rng = Rng::new(11);
    let mut errors = 0;
    for round in 0..60 {
        let mut bytes = pristine.clone();
        // Damage page 2 onwards (keep the header so the file is still "SQLite").
        for _ in 0..1 + rng.below(64) {
            let at = 4096 + rng.below((bytes.len() - 4096) as u64) as usize;
            bytes[at] = rng.next_u64() as u8;
        }
        if round % 3 == 0 {
            bytes.truncate(4096 * (1 + rng.below(6) as usize));
        }
        fs::write(&db, &bytes).unwrap();
        if let Some(e) = read_all(&db) {
            one_line(&e);
            errors += 1;
        }
    }
    assert!(errors > 10, "only {errors} damaged files were noticed");
}

#[test]
fn hostile_foreign_sqlite_files() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "other.sqlite",
            "CREATE TABLE users (name TEXT, pw TEXT); INSERT INTO users VALUES ('a', 'b');",
            "no sasldb table",
        ),
        (
            "columns.sqlite",
            "CREATE TABLE sasldb (username TEXT, realm TEXT, userPassword TEXT);",
            "lacks property, value",
        ),
        (
            "view.sqlite",
            "CREATE TABLE t (username, realm, property, value); \
             CREATE VIEW sasldb AS SELECT * FROM t;",
            "sasldb is a view",
        ),
        (
            "utf16.sqlite",
            "PRAGMA encoding = 'UTF-16le'; \
             CREATE TABLE sasldb (username, realm, property, value);",
            "text encoding UTF-16le",
        ),
    ];
    for (name, sql, want) in cases {
        let db = dir.path().join(name);
        run_ok(Command::new(peer("sqlite3")).arg(&db).arg(sql));
        let before = fs::read(&db).unwrap();
        let err = read_all(&db).unwrap_or_else(|| panic!("{name}: no error"));
        let msg = one_line(&err);
        assert!(msg.contains(want), "{name}: {msg}");
        let err = Transaction::begin(&loc(&db), &opts()).expect_err(name);
        assert!(one_line(&err).contains(want), "{name}: {err}");
        assert_eq!(fs::read(&db).unwrap(), before, "{name} was modified");
    }
}

#[test]
fn hand_made_table_is_read_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hand.sqlite");
    run_ok(Command::new(peer("sqlite3")).arg(&db).arg(
        "CREATE TABLE sasldb (username TEXT, realm TEXT, property TEXT, value TEXT); \
         INSERT INTO sasldb VALUES ('zed', 'example.org', 'userPassword', 'z'); \
         INSERT INTO sasldb VALUES ('amy', 'example.org', 'userPassword', 'a'); \
         INSERT INTO sasldb VALUES ('nul', 'example.org', 'userPassword', NULL); \
         INSERT INTO sasldb VALUES (42, 'example.org', 'userPassword', 7);",
    ));
    let f = SqliteFile::open(&db).unwrap();
    assert!(!f.is_ours() && !f.sorted());
    drop(f);
    let d = Database::open(&Location::path_only(&db)).unwrap();
    let recs: Vec<(Vec<u8>, Vec<u8>)> = d
        .sorted_records()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value.to_vec()))
        .collect();
    assert_eq!(
        recs,
        [
            (key("42", REALM, USER_PASSWORD), b"7".to_vec()),
            (key("amy", REALM, USER_PASSWORD), b"a".to_vec()),
            (key("zed", REALM, USER_PASSWORD), b"z".to_vec()),
        ]
    );
    drop(d);
    write(
        &db,
        &[
            ("amy", USER_PASSWORD, Some(b"a2")),
            ("zed", USER_PASSWORD, None),
        ],
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT username, value FROM sasldb WHERE value IS NOT NULL ORDER BY username"
        ),
        ["42|7", "amy|a2"]
    );
}

#[test]
fn wal_file_is_converted_and_empty_file_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wal.sqlite");
    write(&db, &[("alice", USER_PASSWORD, Some(b"a"))]);
    assert_eq!(sqlite3_rw(&db, "PRAGMA journal_mode = WAL"), ["wal"]);
    let header = fs::read(&db).unwrap();
    assert_eq!((header[18], header[19]), (2, 2), "not a WAL file");
    assert_eq!(ours_keys(&db), [key("alice", REALM, USER_PASSWORD)]);
    let report = write(&db, &[("bob", USER_PASSWORD, Some(b"b"))]);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("converted from WAL")),
        "{:?}",
        report.notes
    );
    let header = fs::read(&db).unwrap();
    assert_eq!((header[18], header[19]), (1, 1), "still in WAL mode");
    assert_eq!(
        ours_keys(&db),
        [
            key("alice", REALM, USER_PASSWORD),
            key("bob", REALM, USER_PASSWORD)
        ]
    );

    // A zero-byte file (what sqlite3_open leaves behind) becomes a new database.
    let empty = dir.path().join("empty.sqlite");
    fs::write(&empty, b"").unwrap();
    write(&empty, &[("carol", USER_PASSWORD, Some(b"c"))]);
    assert!(SqliteFile::open(&empty).unwrap().is_ours());
    assert_eq!(ours_keys(&empty), [key("carol", REALM, USER_PASSWORD)]);
}

fn sqlite3_rw(db: &Path, sql: &str) -> Vec<String> {
    let out = run_ok(Command::new(peer("sqlite3")).arg(db).arg(sql));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
