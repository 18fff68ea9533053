//! The PostgreSQL store against a real PostgreSQL 15 server (Debian's `postgresql`,
//! a private instance from [`crate::support::pg`]) and Cyrus SASL 2.1.28's `sql`
//! auxprop plugin (`sql_engine: pgsql`, Debian's `libsasl2-modules-sql`).
//!
//! - `sasldb_*`: the `sasldb` binary with a `postgresql://` URL: `init`, a 10,000-user
//!   `import`, `convert` from Berkeley DB and back, two concurrent imports, the lock;
//!   `check` and `sync-chroot` on a database that is not a file.
//! - `connection_*`: URLs, pgpass, the PG* environment, one-line errors.
//! - `store_*`: values kept byte for byte, the plugin's "NULL means delete" trigger.
//! - `postfix_*`: a private Postfix smtpd whose Cyrus SASL uses the pgsql plugin, with
//!   the configuration [`sasldb::internals::sql::pgsql::PLUGIN_CONFIG`] documents; Cyrus's own
//!   `saslpasswd2` writing through the plugin.
//!
//! Every test gets its own database on the shared server; the server's password is
//! only ever read from the pgpass file (or `PGPASSWORD` where that is what is tested).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sasldb::internals::sql::pgsql::{self, PLUGIN_CONFIG};
use sasldb::record::USER_PASSWORD;
use sasldb::{Database, Format, Key, Location, Transaction, WriteOptions};

use crate::support::ours::{self, finding, problems};
use crate::support::pg::{PgServer, ROLE, server};
use crate::support::postfix::{Mech, Options, PostfixInstance};
use crate::support::{
    Out, Rng, Scratch, file_records, hex, key, peer, run_with_stdin, sql_saslpasswd2,
};

/// Runs our `sasldb` binary with the server's environment (PGPASSFILE).
fn sasldb(srv: &PgServer, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = ours::sasldb();
    cmd.args(args);
    srv.env(&mut cmd);
    run_with_stdin(&mut cmd, stdin.unwrap_or_default())
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one-line error of a failed run.
fn failed(what: &str, out: &Output) -> String {
    assert!(!out.status.success(), "{what}: succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err}"
    );
    err
}

fn loc(srv: &PgServer, db: &str) -> Location {
    srv.lib_url(db).parse().unwrap()
}

/// Every record through our reader, in the order it yields them (key order).
fn records(srv: &PgServer, db: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let d = Database::open(&loc(srv, db)).unwrap();
    assert_eq!(d.format(), Format::Postgres);
    let recs: Vec<(Vec<u8>, Vec<u8>)> = d
        .records()
        .unwrap()
        .map(|r| r.map(|r| (r.key, r.value.to_vec())).unwrap())
        .collect();
    assert!(recs.windows(2).all(|w| w[0].0 < w[1].0), "not in key order");
    recs
}

fn write_opts() -> WriteOptions {
    WriteOptions {
        lock_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------
// The sasldb binary

/// The acceptance run: `init`, 10,000 users with `sasldb import`, a Berkeley
/// DB file converted into the database and back with identical content.
#[test]
fn sasldb_import_10000_users_and_convert_bdb_into_postgres_and_back() {
    let srv = server();
    let db = srv.database("import10k", "");
    let url = srv.url(&db);

    // Nothing there yet: reading says so; init creates the table and its triggers.
    let err = failed(
        "list before init",
        &sasldb(srv, &["-f", &url, "list"], None),
    );
    assert!(err.contains("no such database"), "{err}");
    let out = ok("init", &sasldb(srv, &["-f", &url, "init"], None));
    assert!(
        out.contains("created an empty PostgreSQL database"),
        "{out}"
    );
    let out = sasldb(srv, &["-f", &url, "init"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a PostgreSQL database"),
        "{out:?}"
    );
    let mut c = srv.client(&db);
    let triggers: Vec<String> = c
        .query(
            "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'sasldb'::regclass \
             AND NOT tgisinternal ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(triggers, ["sasldb_null_insert", "sasldb_null_update"]);

    // 10,000 users in one import.
    let mut input = String::new();
    for i in 0..10_000 {
        input.push_str(&format!("user{i:05}@example.org:pw {i} \\ ✓\n"));
    }
    let start = Instant::now();
    let out = ok(
        "import",
        &sasldb(srv, &["-f", &url, "import", "-"], Some(input.as_bytes())),
    );
    let took = start.elapsed();
    assert!(out.contains("10000 added"), "{out}");
    eprintln!("sasldb import of 10,000 users into PostgreSQL: {took:?}");
    let recs = records(srv, &db);
    assert_eq!(recs.len(), 10_000);
    for (i, (k, v)) in recs.iter().enumerate() {
        assert_eq!(k, &key(format!("user{i:05}"), "example.org", USER_PASSWORD));
        assert_eq!(v, format!("pw {i} \\ ✓").as_bytes());
    }
    // What the plugin's sql_select returns, straight from the server.
    let row = c
        .query_one(
            "SELECT convert_from(value, getdatabaseencoding()) FROM sasldb \
             WHERE username = 'user04242' AND realm = 'example.org' AND property = 'userPassword'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pw 4242 \\ ✓");

    // A Berkeley DB file with awkward content: UTF-8 names, an empty realm, values
    // with NUL and 0xff bytes, an empty value, the word NULL.
    let dir = tempfile::tempdir().unwrap();
    let bdb = dir.path().join("sasldb2.db");
    let mut rng = Rng::new(0x9a5);
    let realms = ["example.org", "exämple.test", ""];
    let mut want = BTreeMap::new();
    while want.len() < 3_000 {
        let user = rng.name(12);
        let realm = realms[rng.below(3) as usize];
        let prop =
            ["userPassword", "cmusaslsecretOTP", "authPassword", "x-note"][rng.below(4) as usize];
        let value = match rng.below(5) {
            0 => b"NULL".to_vec(),
            1 => Vec::new(),
            2 => rng.name(30).into_bytes(),
            _ => {
                let n = 1 + rng.below(60) as usize;
                rng.bytes(n)
            }
        };
        want.insert(key(&user, realm, prop), value);
    }
    let mut t =
        Transaction::begin(&Location::with_format(Format::Bdb, &bdb), &write_opts()).unwrap();
    for (k, v) in &want {
        t.put_raw(k.clone(), v.clone().into());
    }
    t.commit().unwrap();
    let original = file_records(&bdb);
    assert_eq!(original.len(), 3_000);

    // Into PostgreSQL: refused while the database holds users, then with --force.
    let bdb_s = bdb.to_str().unwrap();
    let err = failed(
        "convert without --force",
        &sasldb(srv, &["convert", bdb_s, &url], None),
    );
    assert!(err.contains("--force"), "{err}");
    let out = ok(
        "convert into PostgreSQL",
        &sasldb(srv, &["convert", "--force", bdb_s, &url], None),
    );
    assert!(out.contains("converted 3000 records"), "{out}");
    assert_eq!(records(srv, &db), original);
    let n: i64 = c
        .query_one("SELECT count(*) FROM sasldb", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 3_000);
    // Values are bytea, byte for byte (hex from the server itself).
    let (k, v) = original.iter().find(|(_, v)| v.contains(&0)).unwrap();
    let kr = sasldb::KeyRef::parse(k).unwrap();
    let row = c
        .query_one(
            "SELECT encode(value, 'hex') FROM sasldb WHERE username = $1 AND realm = $2 \
             AND property = $3",
            &[
                &std::str::from_utf8(kr.user).unwrap(),
                &std::str::from_utf8(kr.realm).unwrap(),
                &std::str::from_utf8(kr.property).unwrap(),
            ],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), hex(v));

    // And back into a new Berkeley DB file: identical content.
    let back = dir.path().join("back.db");
    let back_s = format!("bdb:{}", back.display());
    ok(
        "convert back",
        &sasldb(srv, &["convert", &url, &back_s], None),
    );
    assert_eq!(file_records(&back), original);
    let err = failed(
        "convert onto itself",
        &sasldb(srv, &["convert", &url, &url], None),
    );
    assert!(err.contains("same database"), "{err}");
}

/// Two `sasldb import` runs started at the same moment into one database: both
/// succeed, every user of both is there, and the users both name come entirely from
/// one of them (each import is one transaction, applied after the other's).
#[test]
fn sasldb_two_concurrent_imports_lose_nothing() {
    let srv = server();
    let db = srv.database("concurrent", "");
    let url = srv.url(&db);
    assert!(pgsql::init(&srv.lib_url(&db).parse().unwrap(), Duration::from_secs(10)).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for side in ["a", "b"] {
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!("{side}{i:04}@example.org:{side} pw {i}\n"));
        }
        for i in 0..500 {
            text.push_str(&format!("shared{i:03}@example.org:{side} shared {i}\n"));
        }
        let f = dir.path().join(format!("{side}.txt"));
        fs::write(&f, text).unwrap();
        files.push(f);
    }
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            let mut cmd = ours::sasldb();
            cmd.args(["-f", &url, "import", "-q"])
                .arg(f)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            srv.env(&mut cmd);
            cmd.spawn().unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        ok(&format!("import {i}"), &c.wait_with_output().unwrap());
    }
    let recs: BTreeMap<Vec<u8>, Vec<u8>> = records(srv, &db).into_iter().collect();
    assert_eq!(recs.len(), 6_500, "records lost");
    for side in ["a", "b"] {
        for i in 0..3000 {
            let k = key(format!("{side}{i:04}"), "example.org", USER_PASSWORD);
            assert_eq!(recs[&k], format!("{side} pw {i}").as_bytes());
        }
    }
    let winner = |i: usize| {
        let v = &recs[&key(format!("shared{i:03}"), "example.org", USER_PASSWORD)];
        String::from_utf8_lossy(&v[..1]).into_owned()
    };
    let first = winner(0);
    for i in 0..500 {
        assert_eq!(winner(i), first, "shared{i:03} from the other import");
        let v = &recs[&key(format!("shared{i:03}"), "example.org", USER_PASSWORD)];
        assert_eq!(v, format!("{first} shared {i}").as_bytes());
    }
}

/// The writers' lock is an advisory lock in the database: a writer that cannot get it
/// within SASLDB_LOCK_TIMEOUT fails with a one-line "locked" error and writes nothing.
/// Row locks of a writer that takes no advisory lock are waited for.
#[test]
fn sasldb_writers_wait_for_the_advisory_lock_and_foreign_row_locks() {
    let srv = server();
    let db = srv.database("locked", "");
    let url = srv.url(&db);
    let holder = Transaction::begin(&loc(srv, &db), &write_opts()).unwrap();
    assert!(!holder.existed());
    let mut cmd = ours::sasldb();
    cmd.args(["-f", &url, "init"])
        .env("SASLDB_LOCK_TIMEOUT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    srv.env(&mut cmd);
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let err = failed("init while locked", &out);
    assert!(err.contains("locked by another process"), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(900));
    // The holder's commit creates the table; then the next writer gets the lock.
    holder.commit().unwrap();
    ok(
        "import after the lock",
        &sasldb(
            srv,
            &["-f", &url, "import", "-q", "-"],
            Some(b"zed@example.org:z\n"),
        ),
    );
    assert_eq!(records(srv, &db).len(), 1);

    // A foreign writer that takes no advisory lock (the plugin) inserts a row our
    // import also writes, and keeps its transaction open: our commit waits for the row
    // lock, then its upsert updates the row instead of failing on the duplicate key.
    let mut foreign = srv.client(&db);
    let mut ft = foreign.transaction().unwrap();
    ft.execute(
        "INSERT INTO sasldb VALUES ('cyrus', 'example.org', 'userPassword', 'theirs'::bytea)",
        &[],
    )
    .unwrap();
    let mut cmd = ours::sasldb();
    cmd.args(["-f", &url, "import", "-q", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    srv.env(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"cyrus@example.org:ours\nyan@example.org:y\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the import did not wait for the foreign row lock"
    );
    ft.commit().unwrap();
    ok(
        "import past a foreign writer",
        &child.wait_with_output().unwrap(),
    );
    let recs: BTreeMap<Vec<u8>, Vec<u8>> = records(srv, &db).into_iter().collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[&key("cyrus", "example.org", USER_PASSWORD)], b"ours");
    assert_eq!(recs[&key("yan", "example.org", USER_PASSWORD)], b"y");
}

/// A PostgreSQL database has no file: check looks at its content and realm only, and
/// sync-chroot refuses it.
#[test]
fn check_and_sync_chroot_on_postgresql() {
    let srv = server();
    let url = srv.url(&srv.database("sasldb_cli_check", ""));
    let s = Scratch::with_postfix();
    // The scratch Postfix setup of the file tests: the realm of logins without @ is
    // mail.example.com.
    let run = |args: &[&str], stdin: &[u8]| -> Out {
        let mut c = s.ours("sasldb");
        c.args(["-f", &url]).args(args);
        srv.env(&mut c);
        Out::run(&mut c, stdin)
    };
    run(&["init"], b"").ok();
    run(&["import"], b"alice@example.org:a\n").ok();
    let r = run(&["check", "--json"], b"").code(1).json();
    assert_eq!(problems(&r), ["realm-mismatch"], "{r:#}");
    assert_eq!(finding(&r, "not-a-file")["severity"], "info");
    assert_eq!(r["format"], "PostgreSQL");
    run(&["sync-chroot"], b"").code(1).err_has("is not a file");
}

// ---------------------------------------------------------------------------------
// Connections: URLs, pgpass, environment

#[test]
fn connection_password_sources_and_errors() {
    let srv = server();
    let db = srv.database("conn", "");
    pgsql::init(&srv.lib_url(&db).parse().unwrap(), Duration::from_secs(10)).unwrap();
    let url = srv.url(&db);
    let run = |envs: &[(&str, &str)], url: &str| {
        let mut cmd = ours::sasldb();
        cmd.args(["-f", url, "list"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        srv.env(&mut cmd);
        cmd.env_remove("PGPASSFILE").env("HOME", "/nonexistent");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let pgpass = srv.pgpass();
    let pgpass_s = pgpass.to_str().unwrap();

    // A password in the URL is refused, and never repeated.
    let bad = format!(
        "postgresql://{ROLE}:{}@127.0.0.1:{}/{db}",
        srv.role_password(),
        srv.port()
    );
    let err = failed(
        "password in the URL",
        &run(&[("PGPASSFILE", pgpass_s)], &bad),
    );
    assert!(err.contains("password in the URL is refused"), "{err}");
    assert!(!err.contains(srv.role_password()), "{err}");
    let err = failed("?password=", &run(&[], &format!("{url}?password=whatever")));
    assert!(
        err.contains("refused") && !err.contains("whatever"),
        "{err}"
    );

    // No password anywhere: the error says where to put one.
    let err = failed("no password", &run(&[], &url));
    assert!(
        err.contains("PGPASSWORD") && err.contains(".pgpass"),
        "{err}"
    );

    // PGPASSFILE (mode 0600) and PGPASSWORD both work; a wrong password fails cleanly.
    ok("PGPASSFILE", &run(&[("PGPASSFILE", pgpass_s)], &url));
    ok(
        "PGPASSWORD",
        &run(&[("PGPASSWORD", srv.role_password())], &url),
    );
    let err = failed("wrong PGPASSWORD", &run(&[("PGPASSWORD", "nope")], &url));
    assert!(err.contains("password authentication failed"), "{err}");

    // ~/.pgpass is found through HOME; libpq's 0600 rule is enforced.
    let home = tempfile::tempdir().unwrap();
    let dot = home.path().join(".pgpass");
    fs::copy(&pgpass, &dot).unwrap();
    let home_s = home.path().to_str().unwrap();
    fs::set_permissions(&dot, fs::Permissions::from_mode(0o644)).unwrap();
    let err = failed("group-readable ~/.pgpass", &run(&[("HOME", home_s)], &url));
    assert!(err.contains("group or world access"), "{err}");
    fs::set_permissions(&dot, fs::Permissions::from_mode(0o600)).unwrap();
    ok("~/.pgpass", &run(&[("HOME", home_s)], &url));

    // PGHOST, PGPORT, PGUSER, PGDATABASE fill in what the URL leaves out.
    let port = srv.port().to_string();
    let envs = [
        ("PGPASSFILE", pgpass_s),
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", ROLE),
        ("PGDATABASE", db.as_str()),
    ];
    ok("PG* environment", &run(&envs, "postgresql://"));

    // A Unix-socket directory as the host, in the URL's host part or as ?host=.
    let sock = srv.socket_dir().to_str().unwrap().replace('/', "%2F");
    let pw = [("PGPASSWORD", srv.role_password())];
    ok(
        "socket host",
        &run(
            &pw,
            &format!("postgresql://{ROLE}@{sock}:{}/{db}", srv.port()),
        ),
    );
    ok(
        "?host=socket",
        &run(
            &pw,
            &format!(
                "postgresql://{ROLE}@/{db}?host={}&port={}",
                srv.socket_dir().display(),
                srv.port()
            ),
        ),
    );

    // Wrong places: a refused connection, a database without the table.
    let err = failed(
        "closed port",
        &run(
            &[("PGPASSFILE", pgpass_s)],
            "postgresql://sasl@127.0.0.1:1/x",
        ),
    );
    assert!(err.contains("cannot connect to 127.0.0.1:1"), "{err}");
    let empty = srv.database("conn_empty", "");
    let err = failed(
        "no table",
        &run(&[("PGPASSFILE", pgpass_s)], &srv.url(&empty)),
    );
    assert!(err.contains("no such database"), "{err}");
    // This server has ssl = off: sslmode=require cannot be met, prefer falls back.
    let err = failed(
        "TLS",
        &run(
            &[("PGPASSFILE", pgpass_s)],
            &format!("{url}?sslmode=require"),
        ),
    );
    assert!(err.contains("server does not support TLS"), "{err}");
    ok(
        "sslmode=prefer",
        &run(
            &[("PGPASSFILE", pgpass_s)],
            &format!("{url}?sslmode=prefer"),
        ),
    );
}

// ---------------------------------------------------------------------------------
// The store

#[test]
fn store_values_byte_for_byte_and_null_means_delete() {
    let srv = server();
    let db = srv.database("bytevalues", "");
    let l = loc(srv, &db);
    let values: Vec<(&str, Vec<u8>)> = vec![
        ("nul", b"a\0b".to_vec()),
        ("high", b"\xff\xfe\x80".to_vec()),
        ("empty", Vec::new()),
        ("null", b"NULL".to_vec()),
        ("quote", b"it's \\ \"x\"".to_vec()),
    ];
    let mut t = Transaction::begin(&l, &write_opts()).unwrap();
    assert!(!t.existed());
    for (u, v) in &values {
        t.put_raw(key(u, "example.org", USER_PASSWORD), v.clone().into());
    }
    assert_eq!(t.commit().unwrap().records, Some(values.len() as u64));
    let d = Database::open(&l).unwrap();
    assert!(d.records_are_sorted());
    for (u, v) in &values {
        let got = d.get_raw(&key(u, "example.org", USER_PASSWORD)).unwrap();
        assert_eq!(got.as_deref(), Some(v), "{u}");
    }
    drop(d);

    // Cyrus's plugin deletes by writing the text 'NULL': the trigger removes the row,
    // both on insert and on update. Our own NULL value above was kept.
    let mut c = srv.client(&db);
    for stmt in [
        "INSERT INTO sasldb VALUES ('gone', 'example.org', 'userPassword', convert_to('NULL', 'UTF8'))",
        "INSERT INTO sasldb VALUES ('high', 'example.org', 'userPassword', convert_to('NULL', 'UTF8')) \
         ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value",
    ] {
        c.batch_execute(stmt).unwrap();
    }
    let users: Vec<String> = c
        .query("SELECT username FROM sasldb ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, ["empty", "nul", "null", "quote"]);

    // A name that is not UTF-8 cannot be a PostgreSQL text: refused, nothing written.
    let mut t = Transaction::begin(&l, &write_opts()).unwrap();
    t.put_raw(
        Key::new(&b"caf\xe9"[..], "example.org", USER_PASSWORD)
            .unwrap()
            .encode(),
        b"x".to_vec().into(),
    );
    t.put_raw(
        key("fine", "example.org", USER_PASSWORD),
        b"y".to_vec().into(),
    );
    let err = t.commit().unwrap_err().to_string();
    assert!(err.contains("not UTF-8"), "{err}");
    assert_eq!(records(srv, &db).len(), 4);

    // Deletes and clear() through a transaction.
    let mut t = Transaction::begin(&l, &write_opts()).unwrap();
    assert_eq!(t.delete_user(b"nul", b"example.org").unwrap(), 1);
    t.commit().unwrap();
    assert_eq!(records(srv, &db).len(), 3);
    let mut t = Transaction::begin(&l, &write_opts()).unwrap();
    t.clear();
    t.put_raw(
        key("only", "example.org", USER_PASSWORD),
        b"1".to_vec().into(),
    );
    assert_eq!(t.commit().unwrap().records, Some(1));
    assert_eq!(
        records(srv, &db),
        [(key("only", "example.org", USER_PASSWORD), b"1".to_vec())]
    );
}

// ---------------------------------------------------------------------------------
// Postfix with the pgsql plugin

/// The documented plugin configuration for the test server's database `db`.
fn plugin_conf(srv: &PgServer, db: &str) -> String {
    PLUGIN_CONFIG
        .replace("HOST:PORT", &format!("127.0.0.1:{}", srv.port()))
        .replace("sql_user: USER", &format!("sql_user: {ROLE}"))
        .replace("PASSWORD", srv.role_password())
        .replace("DATABASE", db)
}

/// Runs Cyrus's `saslpasswd2 -a sqltest` with the plugin configuration in `confdir`.
#[test]
fn postfix_smtpd_authenticates_through_the_pgsql_plugin() {
    let srv = server();
    let db = srv.database("postfix", "");
    let url = srv.url(&db);
    let realm = "mail.example.test"; // what a bare login gets (myhostname, lowercased)
    let alice_pw = "Alice's pässword \\ ✓";
    let input = format!("alice@{realm}:{alice_pw}\no'brien@{realm}:quote pw\n");
    ok(
        "import",
        &sasldb(srv, &["-f", &url, "import", "-"], Some(input.as_bytes())),
    );

    let conf = plugin_conf(srv, &db);
    let inst = PostfixInstance::start(Options {
        sasl_conf: Some(format!(
            "pwcheck_method: auxprop\nmech_list: PLAIN LOGIN CRAM-MD5\n{conf}"
        )),
        ..Options::default()
    });
    assert_eq!(inst.default_realm(), realm);
    let cases: Vec<(&str, &str, Mech, u16)> = vec![
        ("alice", alice_pw, Mech::Plain, 235),
        ("alice", alice_pw, Mech::CramMd5, 235),
        ("alice", alice_pw, Mech::Login, 235),
        ("alice", "Alice's pässword \\\\ ✓", Mech::Plain, 535),
        ("alice", "wrong", Mech::CramMd5, 535),
        ("o'brien", "quote pw", Mech::Plain, 235),
        ("nobody", "x", Mech::Plain, 535),
        // The pgsql engine escapes quotes properly: no way into the query.
        ("x' UNION SELECT '4242' --", "4242", Mech::Plain, 535),
        ("x'' UNION SELECT '4242' --", "4242", Mech::Plain, 535),
    ];
    inst.check_logins(&cases);

    // Cyrus's saslpasswd2 writes through the plugin (sql_insert/sql_update); our reader
    // sees exactly what it wrote, and smtpd authenticates from it.
    let confdir = tempfile::tempdir().unwrap();
    fs::write(
        confdir.path().join("sqltest.conf"),
        format!("pwcheck_method: auxprop\n{conf}"),
    )
    .unwrap();
    let carol_pw = "carol's \\ pw";
    let out = sql_saslpasswd2(
        confdir.path(),
        realm,
        &["-p", "-c", "carol"],
        Some(carol_pw),
    );
    assert!(out.status.success(), "{out:?}");
    let carol = |srv: &PgServer| -> BTreeMap<String, Vec<u8>> {
        let prefix = sasldb::record::user_prefix(b"carol", realm.as_bytes());
        records(srv, &db)
            .into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(&prefix[..])
                    .map(|p| (String::from_utf8(p.to_vec()).unwrap(), v))
            })
            .collect()
    };
    assert_eq!(carol(srv)[USER_PASSWORD], carol_pw.as_bytes());
    // Changing the password updates the existing rows (the plugin takes sql_insert).
    let out = sql_saslpasswd2(confdir.path(), realm, &["-p", "carol"], Some("second pw"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(carol(srv)[USER_PASSWORD], b"second pw");
    inst.check_logins(&[
        ("carol", "second pw", Mech::Plain, 235),
        ("carol", carol_pw, Mech::Plain, 535),
    ]);
    // saslpasswd2 -d: the plugin writes 'NULL', the trigger deletes the rows.
    let out = sql_saslpasswd2(confdir.path(), realm, &["-d", "carol"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(carol(srv).is_empty(), "{:?}", carol(srv));

    // Our saslpasswd2 deletes alice from the same database.
    let out = ours::saslpasswd2()
        .args(["-d", "-f", &url, "-u", realm, "alice"])
        .env("PGPASSFILE", srv.pgpass())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    inst.check_logins(&[
        ("carol", "second pw", Mech::Plain, 535),
        ("carol", "NULL", Mech::Plain, 535),
        ("alice", alice_pw, Mech::Plain, 535),
        ("o'brien", "quote pw", Mech::CramMd5, 235),
    ]);
}

/// One PLAIN login with raw password bytes against `sasl-sample-server` using the
/// plugin configuration in `confdir`; true when libsasl completes the negotiation.
fn sample_plain(confdir: &Path, user: &str, pw: &[u8]) -> bool {
    use base64::Engine;
    let mut msg = format!("PLAIN\0\0{user}\0").into_bytes();
    msg.extend_from_slice(pw);
    let line = format!(
        "C: {}\n",
        base64::engine::general_purpose::STANDARD.encode(msg)
    );
    let out = run_with_stdin(
        Command::new(peer("timeout"))
            .arg("10")
            .arg(peer("sasl-sample-server"))
            .args(["-m", "PLAIN", "-s", "sample", "-u", "example.org"])
            .env("SASL_CONF_PATH", confdir),
        line.as_bytes(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains(&format!("Username: {user}@example.org"))
}

/// The plugin sees values exactly through `convert_from(value, getdatabaseencoding())`:
/// any value in a SQL_ASCII database (a Latin-1 password), UTF-8 values in a UTF8
/// database (where a Latin-1 value makes the lookup fail, as documented).
#[test]
fn plugin_sees_exact_value_bytes_by_database_encoding() {
    let srv = server();
    let latin1: &[u8] = b"latin1 \xe9t\xe9";
    let utf8 = "utf8 \u{e9}t\u{e9} \\ ' x";
    for (db, extra, latin1_ok) in [
        (
            "enc_ascii",
            "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
            true,
        ),
        ("enc_utf8", "", false),
    ] {
        let db = srv.database(db, extra);
        let mut t = Transaction::begin(&loc(srv, &db), &write_opts()).unwrap();
        t.put_raw(
            key("dave", "example.org", USER_PASSWORD),
            latin1.to_vec().into(),
        );
        t.put_raw(
            key("erin", "example.org", USER_PASSWORD),
            utf8.as_bytes().to_vec().into(),
        );
        t.commit().unwrap();
        assert_eq!(records(srv, &db).len(), 2);
        let confdir = tempfile::tempdir().unwrap();
        fs::write(
            confdir.path().join("sample.conf"),
            format!(
                "pwcheck_method: auxprop\nmech_list: PLAIN\n{}",
                plugin_conf(srv, &db)
            ),
        )
        .unwrap();
        assert_eq!(
            sample_plain(confdir.path(), "dave", latin1),
            latin1_ok,
            "{db}: dave"
        );
        assert!(
            !sample_plain(confdir.path(), "dave", "latin1 \u{e9}t\u{e9}".as_bytes()),
            "{db}: the UTF-8 spelling of dave's password"
        );
        assert!(
            sample_plain(confdir.path(), "erin", utf8.as_bytes()),
            "{db}: erin"
        );
        assert!(
            !sample_plain(confdir.path(), "erin", b"utf8"),
            "{db}: erin, wrong"
        );
    }
}

/// The README shows exactly the tested plugin configuration.
#[test]
fn readme_shows_the_tested_plugin_config() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let example = PLUGIN_CONFIG
        .replace("HOST:PORT", "db.example.org:5432")
        .replace("sql_user: USER", "sql_user: sasl_smtpd")
        .replace("PASSWORD", "smtpd-db-password")
        .replace("DATABASE", "mail");
    assert!(
        readme.contains(&example),
        "README.md does not show PLUGIN_CONFIG:\n{example}"
    );
}

/// A bulk import (1,500 users) while a foreign writer that takes no advisory lock (the
/// plugin) holds an uncommitted insert of one of its users, on each bulk path: into a
/// table with rows (the rows copied into a temporary table, existing ones changed by
/// one UPDATE, new ones added by a plain INSERT), into an empty table (one COPY
/// straight into it), and without the right to make temporary tables (the rows passed
/// as arrays). The INSERT or COPY waits for the foreign row, fails on the duplicate key
/// once it commits, and the transaction runs again as an upsert. Nothing is lost and
/// the import's value wins.
#[test]
fn sasldb_bulk_import_past_a_foreign_insert() {
    let srv = server();
    for (db, old, temp) in [
        ("bulk_foreign", true, true),
        ("bulk_foreign_empty", false, true),
        ("bulk_foreign_no_temp", true, false),
    ] {
        let db = srv.database(db, "");
        if !temp {
            srv.superuser(&format!(
                "REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC, {}",
                crate::support::pg::ROLE
            ));
        }
        let url = srv.url(&db);
        ok("init", &sasldb(srv, &["-f", &url, "init"], None));
        if old {
            ok(
                "first import",
                &sasldb(
                    srv,
                    &["-f", &url, "import", "-q", "-"],
                    Some(b"old@example.org:old\n"),
                ),
            );
        }
        let mut foreign = srv.client(&db);
        let mut ft = foreign.transaction().unwrap();
        ft.execute(
            "INSERT INTO sasldb VALUES ('u0700', 'example.org', 'userPassword', 'theirs'::bytea)",
            &[],
        )
        .unwrap();
        let mut input = String::from("old@example.org:changed\n");
        for i in 0..1500 {
            input.push_str(&format!("u{i:04}@example.org:ours {i}\n"));
        }
        let mut cmd = ours::sasldb();
        cmd.args(["-f", &url, "import", "-q", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        srv.env(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        assert!(
            child.try_wait().unwrap().is_none(),
            "{db}: the import did not wait for the foreign insert"
        );
        ft.commit().unwrap();
        ok("bulk import", &child.wait_with_output().unwrap());
        let recs: BTreeMap<Vec<u8>, Vec<u8>> = records(srv, &db).into_iter().collect();
        assert_eq!(recs.len(), 1501, "{db}");
        assert_eq!(
            recs[&key("old", "example.org", USER_PASSWORD)],
            b"changed",
            "{db}"
        );
        assert_eq!(
            recs[&key("u0700", "example.org", USER_PASSWORD)],
            b"ours 700",
            "{db}"
        );
        assert_eq!(
            recs[&key("u1499", "example.org", USER_PASSWORD)],
            b"ours 1499",
            "{db}"
        );
    }
}

/// The summary line of a `sasldb import` (its last line of output).
fn summary(out: &str) -> &str {
    out.trim_end().lines().last().unwrap_or_default()
}

/// Imports of plain passwords into a table holding only passwords leave the
/// comparison to the server: the summary still tells new, changed, unchanged and kept
/// users apart, through the array statements (a few users), the temporary table (1,000
/// and more, when nine in ten of them are written) and the `COPY` into an empty table;
/// a large import that writes little, or a table holding another secret, makes the
/// import read the table (and recompute that secret, as everywhere else).
#[test]
fn plain_password_imports_are_compared_by_the_server() {
    let srv = server();
    let db = srv.database("compared", "");
    let url = srv.url(&db);
    ok("init", &sasldb(srv, &["-f", &url, "init"], None));
    let import = |args: &[&str], input: &str| {
        let mut a = vec!["-f", url.as_str(), "import"];
        a.extend_from_slice(args);
        a.push("-");
        ok("import", &sasldb(srv, &a, Some(input.as_bytes())))
    };
    let value = |user: &str, prop: &str| -> Option<Vec<u8>> {
        records(srv, &db)
            .into_iter()
            .find(|(k, _)| *k == key(user, "example.org", prop))
            .map(|(_, v)| v)
    };

    // Into the empty table: one COPY.
    let out = import(
        &[],
        "alice@example.org:a\nbob@example.org:b\ncarol@example.org:c\n",
    );
    assert_eq!(summary(&out), "3 added, 0 updated, 0 unchanged, 0 rejected");
    // A few users: the array statements. A repeated user is rejected (first line wins).
    let out = import(
        &["--skip-bad"],
        "alice@example.org:a\nbob@example.org:B\ndave@example.org:d\ndave@example.org:dup\n",
    );
    assert_eq!(summary(&out), "1 added, 1 updated, 1 unchanged, 1 rejected");
    assert_eq!(value("bob", USER_PASSWORD).as_deref(), Some(&b"B"[..]));
    assert_eq!(value("dave", USER_PASSWORD).as_deref(), Some(&b"d"[..]));
    let out = import(
        &["--mode", "create-only"],
        "carol@example.org:X\nerin@example.org:e\n",
    );
    assert_eq!(
        summary(&out),
        "1 added, 0 updated, 0 unchanged, 0 rejected, 1 existing kept"
    );
    assert_eq!(value("carol", USER_PASSWORD).as_deref(), Some(&b"c"[..]));

    // 2,000 users: the temporary table. 100 the same, 900 changed, 1,000 new: nine in
    // ten are written, so the server compares. Then the same again: nothing is
    // written, so the import reads the table instead (the same summary either way).
    let many = |changed_from: usize, n: usize| {
        (0..n)
            .map(|i| {
                let pw = if i >= changed_from { "new" } else { "old" };
                format!("u{i:04}@example.org:{pw} {i}\n")
            })
            .collect::<String>()
    };
    let out = import(&[], &many(usize::MAX, 1000));
    assert_eq!(
        summary(&out),
        "1000 added, 0 updated, 0 unchanged, 0 rejected"
    );
    let out = import(&[], &many(100, 2000));
    assert_eq!(
        summary(&out),
        "1000 added, 900 updated, 100 unchanged, 0 rejected"
    );
    assert_eq!(records(srv, &db).len(), 2005);
    assert_eq!(
        value("u0099", USER_PASSWORD).as_deref(),
        Some(&b"old 99"[..])
    );
    assert_eq!(
        value("u0100", USER_PASSWORD).as_deref(),
        Some(&b"new 100"[..])
    );
    assert_eq!(
        value("u1999", USER_PASSWORD).as_deref(),
        Some(&b"new 1999"[..])
    );
    let out = import(&[], &many(100, 2000));
    assert_eq!(
        summary(&out),
        "0 added, 0 updated, 2000 unchanged, 0 rejected"
    );

    // alice gets a SCRAM secret; a plain import then reads the table and recomputes it.
    let out = import(&["--scram"], "alice@example.org:a2\n");
    assert_eq!(summary(&out), "0 added, 1 updated, 0 unchanged, 0 rejected");
    let scram = value("alice", "authPassword").expect("a SCRAM secret");
    let out = import(&[], "alice@example.org:a3\nfrank@example.org:f\n");
    assert_eq!(summary(&out), "1 added, 1 updated, 0 unchanged, 0 rejected");
    assert_eq!(value("alice", USER_PASSWORD).as_deref(), Some(&b"a3"[..]));
    let now = value("alice", "authPassword").expect("the SCRAM secret kept");
    assert_ne!(now, scram, "the SCRAM secret was not recomputed");
    assert_eq!(records(srv, &db).len(), 2007);
}
