//! The `sasldb` admin tool, driven through its real binary: every subcommand, the bad
//! inputs the issue names, round trips, `check`/`sync-chroot` against a scratch
//! Postfix configuration, a SCRAM login through Cyrus's sample server after a
//! hashed-only import, and a 200,000-user import read back by Cyrus's
//! `sasldblistusers2`.
//!
//! Hermetic: every test has its own scratch directory with a Postfix configuration
//! ([`Scratch::with_postfix`], `MAIL_CONFIG`: main.cf and master.cf dated an hour
//! back, because `postconf` re-reads a just-written main.cf for up to 2 s;
//! `cyrus_sasl_config_path` pointing at its own `sasl/smtpd.conf`), an empty
//! `SASL_CONF_PATH`, a queue directory given with `--queue-directory`, and databases
//! given with `-f`. Nothing under /etc is read or written. (`check` on a PostgreSQL
//! database is tested with the PostgreSQL store.)

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sasldb::record::{AUTH_PASSWORD, USER_PASSWORD};
use sasldb::{Location, Transaction, WriteOptions};

use crate::support::ours::{self, finding, problems};
use crate::support::{
    HOST_REALM, Out, Scratch, file_records, is_root, key, mode, peer, postfix_gid, sample_server,
};

/// The `sasldb` runs of these tests, in a [`Scratch::with_postfix`] directory.
trait Cli {
    /// `sasldb ARGS` ([`Scratch::ours`]).
    fn cmd(&self, args: &[&str]) -> Command;
    /// Runs `sasldb` with `stdin` (empty when `None`).
    fn run_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Out;
    fn run(&self, args: &[&str]) -> Out;
    /// `sasldb -f <db> ARGS`.
    fn on(&self, db: &Path, args: &[&str]) -> Out;
    fn on_in(&self, db: &Path, args: &[&str], stdin: &[u8]) -> Out;
    /// `check --json` with the scratch queue directory.
    fn check(&self, db: &Path, extra: &[&str]) -> Out;
    fn sync(&self, db: &Path, extra: &[&str]) -> Out;
    /// Where a chrooted smtpd finds `db()`.
    fn copy(&self) -> PathBuf;
}

impl Cli for Scratch {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.ours("sasldb");
        c.args(args);
        c
    }

    fn run_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        Out::run(&mut self.cmd(args), stdin.unwrap_or_default())
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_in(args, None)
    }

    fn on(&self, db: &Path, args: &[&str]) -> Out {
        let f = db.to_str().unwrap().to_owned();
        let mut all = vec!["-f", f.as_str()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn on_in(&self, db: &Path, args: &[&str], stdin: &[u8]) -> Out {
        let f = db.to_str().unwrap().to_owned();
        let mut all = vec!["-f", f.as_str()];
        all.extend_from_slice(args);
        self.run_in(&all, Some(stdin))
    }

    fn check(&self, db: &Path, extra: &[&str]) -> Out {
        let q = self.path("queue");
        let mut args = vec!["check", "--json", "--queue-directory", q.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.on(db, &args)
    }

    fn sync(&self, db: &Path, extra: &[&str]) -> Out {
        let q = self.path("queue");
        let mut args = vec!["sync-chroot", "--queue-directory", q.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.on(db, &args)
    }

    fn copy(&self) -> PathBuf {
        sasldb::postfix::chroot::in_root(&self.path("queue"), &self.db())
    }
}

fn value(db: &Path, user: &str, realm: &str, prop: &str) -> Option<Vec<u8>> {
    let k = key(user, realm, prop);
    file_records(db)
        .into_iter()
        .find(|(x, _)| *x == k)
        .map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------
// import

#[test]
fn import_lines_csv_json_with_summary() {
    let s = Scratch::with_postfix();
    let db = s.db();
    s.on_in(
        &db,
        &["import"],
        b"alice@example.org:pw:with:colons\nbob:bobpw\r\n# comment\n\ncarol@example.org:c\n",
    )
    .ok()
    .out_has("3 added, 0 updated, 0 unchanged, 0 rejected");
    assert_eq!(
        value(&db, "alice", "example.org", USER_PASSWORD).unwrap(),
        b"pw:with:colons"
    );
    // No @: the realm Postfix uses for logins without @.
    assert_eq!(
        value(&db, "bob", HOST_REALM, USER_PASSWORD).unwrap(),
        b"bobpw"
    );
    // Again: unchanged; a new password: updated.
    s.on_in(
        &db,
        &["import", "-"],
        b"alice@example.org:pw:with:colons\nbob:new\n",
    )
    .ok()
    .out_has("0 added, 1 updated, 1 unchanged, 0 rejected");

    // CSV: any column order, RFC 4180 quoting, an empty realm means the default.
    fs::write(
        s.path("u.csv"),
        "password,realm,user\n\"p,w\"\"1\",example.net,dave\nx,,erin\n",
    )
    .unwrap();
    s.on(&db, &["import", "u.csv"])
        .ok()
        .out_has("2 added, 0 updated");
    assert_eq!(
        value(&db, "dave", "example.net", USER_PASSWORD).unwrap(),
        b"p,w\"1"
    );
    assert!(value(&db, "erin", HOST_REALM, USER_PASSWORD).is_some());
    // --csv on standard input.
    s.on_in(
        &db,
        &["import", "--csv"],
        b"user,realm,password\nfrank,example.net,f\n",
    )
    .ok()
    .out_has("1 added");

    // JSON, with a stored secret restored verbatim.
    s.on_in(
        &db,
        &["import", "--json"],
        br#"[{"user": "gina", "realm": "example.net", "password": "g"},
             {"user": "hank@example.net", "properties": {"x-custom": {"base64": "AAEC/w=="}}}]"#,
    )
    .ok()
    .out_has("2 added");
    assert_eq!(
        value(&db, "hank", "example.net", "x-custom").unwrap(),
        [0, 1, 2, 255]
    );
    if is_root() {
        let m = fs::metadata(&db).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (0, postfix_gid().as_raw(), 0o640)
        );
    }
}

#[test]
fn import_bad_inputs_are_reported_and_nothing_is_written() {
    let s = Scratch::with_postfix();
    let db = s.db();
    s.on_in(&db, &["import"], b"keep@example.org:k\n").ok();
    let before = fs::read(&db).unwrap();
    let long_user = format!("{}@example.org:pw\n", "u".repeat(300));
    let long_realm = format!("u@{}:pw\n", "r".repeat(300));
    let long_pw = format!("u@example.org:{}\n", "p".repeat(2000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"nocolon\n".to_vec(), "no `:`"),
        (b"nul@example.org:p\0w\n".to_vec(), "NUL"),
        (b"empty@example.org:\n".to_vec(), "password is empty"),
        (long_user.into_bytes(), "too long"),
        (long_realm.into_bytes(), "too long"),
        (long_pw.into_bytes(), "too long"),
        (b"\xff\xfe@example.org:pw\n".to_vec(), "UTF-8"),
    ];
    for (input, reason) in &cases {
        // The bad entry on line 2, after a good one.
        let mut text = b"good@example.org:g\n".to_vec();
        text.extend_from_slice(input);
        let o = s.on_in(&db, &["import"], &text);
        o.code(1)
            .err_has("line 2:")
            .err_has(reason)
            .err_has("nothing written");
        assert_eq!(fs::read(&db).unwrap(), before, "{reason}: database changed");
    }
    // All at once: every line reported.
    let all: Vec<u8> = cases.iter().flat_map(|(i, _)| i.clone()).collect();
    let o = s.on_in(&db, &["import"], &all);
    o.code(1);
    for line in 1..=cases.len() {
        o.err_has(&format!("line {line}:"));
    }
    o.err_has("7 bad entries");
    // A duplicate user is refused too (the first wins only with --skip-bad).
    s.on_in(&db, &["import"], b"d@example.org:1\nd@example.org:2\n")
        .code(1)
        .err_has("line 2: d@example.org appears again (first on line 1)");
    // CSV and JSON problems.
    s.on_in(&db, &["import", "--csv"], b"user,pass\nx,y\n")
        .code(1)
        .err_has("unknown CSV column");
    s.on_in(&db, &["import", "--csv"], b"user,realm,password\na,b\n")
        .code(1)
        .err_has("line 2: 2 fields, the header has 3");
    s.on_in(&db, &["import", "--json"], b"{\"user\": \"a\"}")
        .code(1)
        .err_has("array");
    s.on_in(
        &db,
        &["import", "--json"],
        b"[\n{\"user\": \"a@r\", \"password\": \"\xff\"}\n]",
    )
    .code(1)
    .err_has("line 2:");
    s.on_in(&db, &["import", "--json"], b"[\n{\"user\": \"a@r\"}\n]")
        .code(1)
        .err_has("line 2: no `password`");
    assert_eq!(fs::read(&db).unwrap(), before);

    // A missing database is not created by a refused import.
    let fresh = s.path("fresh");
    s.on_in(&fresh, &["import"], b"x\n").code(1);
    assert!(!fresh.exists());

    // --skip-bad imports the rest and reports the bad ones.
    s.on_in(
        &db,
        &["import", "--skip-bad"],
        b"ok@example.org:1\nnocolon\n",
    )
    .ok()
    .err_has("skipped line 2")
    .out_has("1 added, 0 updated, 0 unchanged, 1 rejected");
}

#[test]
fn import_modes_and_dry_run() {
    let s = Scratch::with_postfix();
    let db = s.db();
    s.on_in(
        &db,
        &["import"],
        b"a@example.org:1\nb@example.org:2\nc@example.org:3\n",
    )
    .ok();
    // Dry run: the summary, nothing written.
    let before = fs::read(&db).unwrap();
    s.on_in(
        &db,
        &["import", "--dry-run"],
        b"a@example.org:new\nz@example.org:z\n",
    )
    .ok()
    .out_has("1 added, 1 updated, 0 unchanged, 0 rejected (dry run: nothing written)");
    assert_eq!(fs::read(&db).unwrap(), before);
    let fresh = s.path("fresh");
    s.on_in(&fresh, &["import", "--dry-run"], b"a@example.org:1\n")
        .ok();
    assert!(!fresh.exists());

    // create-only: existing users are left exactly as they were.
    s.on_in(
        &db,
        &["import", "--mode", "create-only"],
        b"a@example.org:changed\nd@example.org:4\n",
    )
    .ok()
    .out_has("1 added, 0 updated, 0 unchanged, 0 rejected, 1 existing kept");
    assert_eq!(value(&db, "a", "example.org", USER_PASSWORD).unwrap(), b"1");

    // replace-all: exactly the input afterwards.
    s.on_in(
        &db,
        &["import", "--mode", "replace-all"],
        b"b@example.org:two\ne@example.net:5\n",
    )
    .ok()
    .out_has("1 added, 1 updated, 0 unchanged, 0 rejected, 3 removed");
    assert_eq!(
        file_records(&db),
        vec![
            (key("b", "example.org", USER_PASSWORD), b"two".to_vec()),
            (key("e", "example.net", USER_PASSWORD), b"5".to_vec()),
        ]
    );
    // upsert (the default) keeps users not in the input.
    s.on_in(&db, &["import", "--mode", "upsert"], b"f@example.org:6\n")
        .ok();
    assert_eq!(file_records(&db).len(), 3);
    s.on_in(&db, &["import", "--mode", "everything"], b"")
        .code(64);
}

/// A large import on a terminal shows a progress bar (on stderr); through a pipe it
/// does not.
#[test]
fn import_progress_bar_only_on_a_terminal() {
    let s = Scratch::with_postfix();
    let list = s.path("users.txt");
    let text: String = (0..12_000)
        .map(|i| format!("u{i}@example.org:pw{i}\n"))
        .collect();
    fs::write(&list, text).unwrap();
    let line = format!(
        "{} -f {} import {}",
        ours::exe("sasldb"),
        s.path("tty.db").display(),
        list.display()
    );
    // script(1) runs the command on a pseudo-terminal and copies what it shows.
    let c = s.cmd(&[]);
    let out = crate::support::run_ok(
        Command::new(peer("script"))
            .args(["-qfec", &line, "/dev/null"])
            .envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .current_dir(s.root()),
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("importing ["), "{shown}");
    assert!(shown.contains("/12000"), "{shown}");
    assert!(shown.contains("12000 added"), "{shown}");
    let piped = s.on(&s.path("pipe.db"), &["import", list.to_str().unwrap()]);
    piped.ok().out_has("12000 added");
    assert!(piped.stderr.is_empty(), "{piped:?}");
}

/// Hashed-only import: users with nothing but a SCRAM authPassword log in with
/// SCRAM-SHA-1 through Cyrus's own server (sasl-sample-server, sasldb auxprop plugin);
/// a wrong password fails.
#[test]
fn import_hashed_only_then_scram_login_through_cyrus() {
    let s = Scratch::with_postfix();
    let db = s.db();
    let realm = sample_server::REALM;
    let input = format!("alice@{realm}:correct horse ✓\nbob@{realm}:b:o:b\n");
    s.on_in(&db, &["import", "--hashed-only"], input.as_bytes())
        .ok()
        .out_has("2 added");
    let recs = file_records(&db);
    assert_eq!(recs.len(), 2);
    assert!(
        recs.iter()
            .all(|(k, v)| k.ends_with(AUTH_PASSWORD.as_bytes()) && v.starts_with(b"SCRAM-SHA-1$"))
    );
    assert!(!fs::read(&db).unwrap().windows(5).any(|w| w == b"horse"));
    s.on(&db, &["list"])
        .ok()
        .out_has(&format!("alice@{realm}: authPassword\n"));

    sample_server::scram_login(s.root(), &db, "SCRAM-SHA-1", "alice", "correct horse ✓")
        .unwrap_or_else(|e| panic!("SCRAM-SHA-1 login with the right password: {e}"));
    sample_server::scram_login(s.root(), &db, "SCRAM-SHA-1", "bob", "b:o:b")
        .unwrap_or_else(|e| panic!("bob: {e}"));
    let err = sample_server::scram_login(s.root(), &db, "SCRAM-SHA-1", "alice", "wrong")
        .expect_err("a wrong password must fail");
    assert!(err.contains("authentication failure"), "{err}");

    // verify checks the authPassword when there is no plaintext.
    s.on_in(
        &db,
        &["verify", &format!("alice@{realm}")],
        "correct horse ✓\n".as_bytes(),
    )
    .ok();
    s.on_in(&db, &["verify", &format!("alice@{realm}")], b"wrong\n")
        .code(1);
}

// ---------------------------------------------------------------------------------
// export, list, round trips

/// Users with every kind of secret: plaintext, SCRAM, OTP, a custom binary property.
fn rich_db(s: &Scratch, db: &Path) {
    s.on_in(
        db,
        &["import", "--scram", "--otp"],
        "alice@example.org:al:ice\nbob@example.net:bøb\n".as_bytes(),
    )
    .ok();
    s.on_in(db, &["import", "--hashed-only"], b"carol@example.org:c\n")
        .ok();
    s.on_in(
        db,
        &["import", "--json"],
        br#"[{"user": "dave", "realm": "example.org",
              "properties": {"cmusaslsecretOTP": "md5\t0499\tvm0001\t0123456789abcdef\t0000", "x": {"base64": "/wAB"}}}]"#,
    )
    .ok();
}

#[test]
fn export_formats() {
    let s = Scratch::with_postfix();
    let db = s.db();
    rich_db(&s, &db);

    // Default: JSON, names and properties only.
    let o = s.on(&db, &["export"]);
    o.ok();
    assert!(!o.stdout.contains("al:ice") && !o.stdout.contains("SCRAM-SHA-1$"));
    let v = o.json();
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(v[0]["user"], "alice");
    assert_eq!(
        v[0]["properties"],
        serde_json::json!(["authPassword", "cmusaslsecretOTP", "userPassword"])
    );
    // With secrets.
    let v = s.on(&db, &["export", "--json", "--with-secrets"]).json();
    assert_eq!(v[0]["password"], "al:ice");
    assert!(
        v[0]["properties"]["authPassword"]
            .as_str()
            .unwrap()
            .starts_with("SCRAM-SHA-1$4096:")
    );
    assert_eq!(v[3]["properties"]["x"]["base64"], "/wAB");

    // CSV.
    let o = s.on(&db, &["export", "--csv"]);
    o.ok().out_has(
        "user,realm,properties\nalice,example.org,authPassword;cmusaslsecretOTP;userPassword\n",
    );
    let o = s.on(
        &db,
        &[
            "export",
            "--csv",
            "--with-secrets",
            "--only-realm",
            "example.org",
        ],
    );
    o.ok();
    assert_eq!(o.stdout, "user,realm,password\nalice,example.org,al:ice\n");
    o.err_has("carol@example.org: no userPassword to export");

    // Dovecot passwd-file: needs --with-secrets; SHA512-CRYPT by default, checked
    // with glibc's crypt(3) (through Python), which Dovecot's CRYPT schemes use.
    s.on(&db, &["export", "--dovecot"])
        .code(1)
        .err_has("--with-secrets");
    let o = s.on(&db, &["export", "--dovecot", "--with-secrets"]);
    o.ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    let alice = lines[0]
        .strip_prefix("alice@example.org:{SHA512-CRYPT}")
        .unwrap();
    assert!(alice.starts_with("$6$"), "{alice}");
    let crypt = |hash: &str, pw: &str| {
        let out = crate::support::run_ok(Command::new(peer("python3")).args([
            "-W",
            "ignore",
            "-c",
            "import crypt, sys; print(crypt.crypt(sys.argv[2], sys.argv[1]))",
            hash,
            pw,
        ]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(crypt(alice, "al:ice"), alice);
    assert_ne!(crypt(alice, "al:ic"), alice);
    // carol has only SCRAM: written in Dovecot's SCRAM notation.
    assert!(
        lines[2].starts_with("carol@example.org:{SCRAM-SHA-1}4096,"),
        "{lines:?}"
    );
    o.err_has("dave@example.org: no userPassword or SCRAM authPassword");
    let o = s.on(
        &db,
        &[
            "export",
            "--dovecot",
            "--with-secrets",
            "--scheme",
            "argon2id",
        ],
    );
    assert!(
        o.stdout
            .starts_with("alice@example.org:{ARGON2ID}$argon2id$v=19$")
    );
    let o = s.on(
        &db,
        &[
            "export",
            "--dovecot",
            "--with-secrets",
            "--scheme",
            "sha256-crypt",
        ],
    );
    let sha256 = o.stdout.lines().next().unwrap();
    let sha256 = sha256
        .strip_prefix("alice@example.org:{SHA256-CRYPT}")
        .unwrap();
    assert_eq!(crypt(sha256, "al:ice"), sha256);
    let o = s.on(
        &db,
        &["export", "--dovecot", "--with-secrets", "--scheme", "plain"],
    );
    assert!(o.stdout.starts_with("alice@example.org:{PLAIN}al:ice\n"));
    s.on(&db, &["export", "--scheme", "plain"]).code(64);

    // -o: a private file, also when it existed with a wider mode.
    let dump = s.path("dump.json");
    fs::write(&dump, "old").unwrap();
    fs::set_permissions(&dump, fs::Permissions::from_mode(0o644)).unwrap();
    s.on(
        &db,
        &["export", "--with-secrets", "-o", dump.to_str().unwrap()],
    )
    .ok();
    assert_eq!(mode(&dump), 0o600);
    assert!(fs::read_to_string(&dump).unwrap().contains("al:ice"));
}

#[test]
fn round_trip_import_export_import_is_identical() {
    let s = Scratch::with_postfix();
    let db = s.db();
    rich_db(&s, &db);
    let original = file_records(&db);

    // JSON with secrets: every property, OTP and SCRAM included, byte for byte.
    let dump = s.path("dump.json");
    s.on(
        &db,
        &["export", "--with-secrets", "-o", dump.to_str().unwrap()],
    )
    .ok();
    for target in [
        "bdb:copy.db",
        "lmdb:copy.lmdb",
        "gdbm:copy.gdbm",
        "sqlite:copy.sqlite",
    ] {
        let path = s.path(target.split_once(':').unwrap().1);
        s.run(&["-f", target, "import", dump.to_str().unwrap()])
            .ok()
            .out_has("4 added, 0 updated, 0 unchanged, 0 rejected");
        assert_eq!(file_records(&path), original, "{target}");
        // And out again: the same text.
        let again = s.on(&path, &["export", "--with-secrets"]);
        assert_eq!(again.stdout, fs::read_to_string(&dump).unwrap(), "{target}");
        // Importing the export into the database it came from changes nothing.
        s.on(&path, &["import", dump.to_str().unwrap()])
            .ok()
            .out_has("0 added, 0 updated, 4 unchanged");
        assert_eq!(file_records(&path), original, "{target}");
    }

    // CSV with secrets: user, realm and password survive (the plaintext users).
    let csv = s.on(&db, &["export", "--csv", "--with-secrets"]).stdout;
    let copy = s.path("csv.db");
    s.on_in(&copy, &["import", "--csv"], csv.as_bytes())
        .ok()
        .out_has("2 added");
    for (u, r) in [("alice", "example.org"), ("bob", "example.net")] {
        assert_eq!(
            value(&copy, u, r, USER_PASSWORD),
            value(&db, u, r, USER_PASSWORD)
        );
    }
}

#[test]
fn export_leaves_out_names_json_cannot_carry() {
    let s = Scratch::with_postfix();
    let db = s.db();
    let mut txn = Transaction::begin(&Location::path_only(&db), &WriteOptions::default()).unwrap();
    txn.put_raw(
        key("ok", "example.org", USER_PASSWORD),
        b"1".to_vec().into(),
    );
    txn.put_raw(
        [&b"l\xe9on\0example.org\0"[..], USER_PASSWORD.as_bytes()].concat(),
        b"2".to_vec().into(),
    );
    txn.commit().unwrap();
    let o = s.on(&db, &["export", "--with-secrets"]);
    o.ok().err_has("is not UTF-8");
    assert_eq!(o.json().as_array().unwrap().len(), 1);
}

#[test]
fn list_grouped_sorted_and_filtered() {
    let s = Scratch::with_postfix();
    let db = s.db();
    rich_db(&s, &db);
    let o = s.on(&db, &["list"]);
    o.ok();
    assert_eq!(
        o.stdout,
        "alice@example.org: authPassword cmusaslsecretOTP userPassword\n\
         bob@example.net: authPassword cmusaslsecretOTP userPassword\n\
         carol@example.org: authPassword\n\
         dave@example.org: cmusaslsecretOTP x\n"
    );
    let o = s.on(&db, &["list", "--only-realm", "example.net"]);
    assert_eq!(
        o.stdout,
        "bob@example.net: authPassword cmusaslsecretOTP userPassword\n"
    );
    let v = s
        .on(&db, &["list", "--json", "--only-realm", "example.org"])
        .json();
    let users: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "carol", "dave"]);
    assert!(!s.on(&db, &["list", "--json"]).stdout.contains("al:ice"));
    s.on(&s.path("missing"), &["list"])
        .code(1)
        .err_has("no such database");
}

// ---------------------------------------------------------------------------------
// verify, realms, rename-realm, delete-realm, convert, init, realm

#[test]
fn verify_exit_codes() {
    let s = Scratch::with_postfix();
    let db = s.db();
    rich_db(&s, &db);
    s.on_in(&db, &["import"], b"erin:bare\n").ok();
    s.on_in(&db, &["verify", "alice@example.org"], b"al:ice\n")
        .ok();
    s.on_in(&db, &["verify", "alice@example.org"], b"al:ic\n")
        .code(1)
        .err_has("wrong password for alice@example.org");
    s.on_in(&db, &["verify", "nobody@example.org"], b"x\n")
        .code(2)
        .err_has("no such user");
    // Only an OTP secret: nothing to check a password against.
    s.on_in(&db, &["verify", "dave@example.org"], b"x\n")
        .code(2)
        .err_has("no userPassword or SCRAM authPassword");
    // The default realm; and -u.
    s.on_in(&db, &["verify", "erin"], b"bare\n").ok();
    s.on_in(
        &db,
        &["-u", "example.net", "verify", "bob"],
        "bøb\n".as_bytes(),
    )
    .ok();
    s.on_in(&db, &["-u", "example.org", "verify", "erin"], b"bare\n")
        .code(2);
    // An empty password is refused before any lookup.
    s.on_in(&db, &["verify", "alice@example.org"], b"\n")
        .code(1);
    s.on(&db, &["verify"]).code(64);
}

#[test]
fn realms_rename_and_delete_are_atomic() {
    let s = Scratch::with_postfix();
    let db = s.db();
    s.on_in(
        &db,
        &["import"],
        b"a@old.example:1\nb@old.example:2\nc@new.example:3\nb@new.example:x\n",
    )
    .ok();
    let o = s.on(&db, &["realms"]);
    assert_eq!(o.stdout, "new.example\t2 users\nold.example\t2 users\n");
    let v = s.on(&db, &["realms", "--json"]).json();
    assert_eq!(
        v[1],
        serde_json::json!({"realm": "old.example", "users": 2, "records": 2})
    );

    // A conflict (b exists in both) refuses the whole rename.
    let before = fs::read(&db).unwrap();
    s.on(&db, &["rename-realm", "old.example", "new.example"])
        .code(1)
        .err_has("1 user(s) already exist in realm new.example: b@new.example; nothing written");
    assert_eq!(fs::read(&db).unwrap(), before);
    s.on(&db, &["rename-realm", "old.example", "old.example"])
        .code(1);
    s.on(&db, &["rename-realm", "old.example", "third.example"])
        .ok()
        .out_has("moved 2 user(s) (2 records) from old.example to third.example");
    assert_eq!(
        s.on(&db, &["realms"]).stdout,
        "new.example\t2 users\nthird.example\t2 users\n"
    );
    assert_eq!(
        value(&db, "a", "third.example", USER_PASSWORD).unwrap(),
        b"1"
    );
    s.on(&db, &["rename-realm", "none.example", "x.example"])
        .ok()
        .err_has("no users in realm none.example");

    // delete-realm wants --yes when standard input is not a terminal.
    let before = fs::read(&db).unwrap();
    s.on(&db, &["delete-realm", "new.example"])
        .code(1)
        .err_has("without --yes");
    assert_eq!(fs::read(&db).unwrap(), before);
    s.on(&db, &["delete-realm", "--yes", "new.example"])
        .ok()
        .out_has("deleted 2 user(s) (2 records) of realm new.example");
    assert_eq!(s.on(&db, &["realms"]).stdout, "third.example\t2 users\n");
    s.on(&s.path("missing"), &["delete-realm", "--yes", "x"])
        .code(1)
        .err_has("no such database");
    assert!(!s.path("missing").exists());
}

#[test]
fn convert_init_and_realm() {
    let s = Scratch::with_postfix();
    let db = s.db();
    rich_db(&s, &db);
    let original = file_records(&db);
    for (i, fmt) in ["lmdb", "gdbm", "sqlite", "bdb"].iter().enumerate() {
        let dst = format!("{fmt}:conv{i}");
        s.run(&["convert", db.to_str().unwrap(), &dst])
            .ok()
            .out_has("converted 9 records (4 users)");
        assert_eq!(
            file_records(&s.path(&format!("conv{i}"))),
            original,
            "{fmt}"
        );
        s.run(&["convert", db.to_str().unwrap(), &dst])
            .code(1)
            .err_has("--force");
        s.run(&["convert", "--force", db.to_str().unwrap(), &dst])
            .ok();
    }
    s.run(&["convert", db.to_str().unwrap(), db.to_str().unwrap()])
        .code(1)
        .err_has("same database");

    // init: an empty database, once.
    let fresh = s.path("fresh.lmdb");
    s.run(&["-f", &format!("lmdb:{}", fresh.display()), "init"])
        .ok()
        .out_has("created an empty LMDB database");
    assert!(file_records(&fresh).is_empty());
    s.on(&fresh, &["init"]).ok().err_has("already holds");

    // realm: Postfix's, explained; -u wins.
    s.run(&["realm"])
        .ok()
        .out_has(&format!("{HOST_REALM}\n"))
        .err_has("myhostname");
    s.run(&["-u", "other.example", "realm"])
        .ok()
        .out_has("other.example\n");
}

#[test]
fn usage_errors_exit_64() {
    let s = Scratch::with_postfix();
    s.run(&["frobnicate"]).code(64);
    s.run(&[]).code(64);
    s.run(&["check", "--bogus"]).code(64);
    s.run(&["sync-chroot", "--to", "x", "--queue-directory", "y"])
        .code(64);
    s.run(&["--help"]).ok().out_has("sync-chroot");
    s.run(&["check", "--help"]).ok().out_has("--fix");
}

// ---------------------------------------------------------------------------------
// check and sync-chroot

/// The issue's acceptance test: a seeded realm mismatch, a world-readable chroot copy
/// and a malformed key are reported; --fix repairs the permissions (and only what is
/// safe: the realm and the key stay as they are).
#[test]
fn check_reports_realm_mismatch_world_readable_copy_and_malformed_key() {
    let s = Scratch::with_postfix();
    let db = s.db();
    // Users in example.org, while Postfix looks bare logins up in mail.example.com.
    s.on_in(
        &db,
        &["import"],
        b"alice@example.org:a\nbob@example.org:b\n",
    )
    .ok();
    let mut txn = Transaction::begin(&Location::path_only(&db), &WriteOptions::default()).unwrap();
    txn.put_raw(b"broken\0key-with-one-nul".to_vec(), b"v".to_vec().into());
    txn.commit().unwrap();
    s.sync(&db, &[]).ok().out_has("created");
    let copy = s.copy();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o644)).unwrap();

    let o = s.check(&db, &[]);
    o.code(1);
    let r = o.json();
    assert_eq!(r["users"], 2);
    assert_eq!(r["records"], 3);
    let mut codes = problems(&r);
    codes.sort();
    assert_eq!(
        codes,
        ["chroot-mode", "malformed-keys", "realm-mismatch"],
        "{r:#}"
    );
    let m = finding(&r, "realm-mismatch");
    assert_eq!(m["severity"], "warning");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("no user is in realm `mail.example.com`"),
        "{m}"
    );
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("example.org (2 users)")
    );
    assert_eq!(m["fixable"], false);
    let c = finding(&r, "chroot-mode");
    assert_eq!(c["severity"], "error");
    assert!(
        c["message"].as_str().unwrap().contains("world-readable"),
        "{c}"
    );
    assert_eq!(c["fixable"], true);
    let k = finding(&r, "malformed-keys");
    assert!(
        k["message"]
            .as_str()
            .unwrap()
            .starts_with("1 malformed key(s)"),
        "{k}"
    );
    assert!(
        k["message"]
            .as_str()
            .unwrap()
            .contains("broken\\0key-with-one-nul")
    );

    // The text report says the same.
    let text = s.on(
        &db,
        &[
            "check",
            "--queue-directory",
            s.path("queue").to_str().unwrap(),
        ],
    );
    text.code(1)
        .out_has("error: [chroot-mode]")
        .out_has("warning: [realm-mismatch]")
        .out_has("3 problems (1 fixable with --fix)");

    // --fix: the copy is 0640 (root:postfix as root); the rest is reported, untouched.
    let db_before = fs::read(&db).unwrap();
    let o = s.check(&db, &["--fix"]);
    o.code(1);
    let r = o.json();
    let mut codes = problems(&r);
    codes.sort();
    assert_eq!(codes, ["malformed-keys", "realm-mismatch"], "{r:#}");
    assert!(
        r["fixed"][0].as_str().unwrap().contains("mode 0640"),
        "{r:#}"
    );
    assert_eq!(mode(&copy), 0o640);
    if is_root() {
        assert_eq!(fs::metadata(&copy).unwrap().gid(), postfix_gid().as_raw());
    }
    assert_eq!(
        fs::read(&db).unwrap(),
        db_before,
        "--fix must not touch the data"
    );
}

#[test]
fn check_clean_setup_and_each_fixable_problem() {
    let s = Scratch::with_postfix();
    let db = s.db();
    s.on_in(&db, &["import"], b"alice:a\nbob@example.org:b\n")
        .ok();

    // The copy is missing: an error that --fix repairs.
    let r = s.check(&db, &[]).json();
    assert_eq!(problems(&r), ["chroot-missing"], "{r:#}");
    s.check(&db, &["--fix"]).ok();
    let copy = s.copy();
    assert_eq!(file_records(&copy), file_records(&db));
    let o = s.on(
        &db,
        &[
            "check",
            "--queue-directory",
            s.path("queue").to_str().unwrap(),
        ],
    );
    o.ok()
        .out_has("1 user in realm `mail.example.com`")
        .out_has("is up to date")
        .out_has("no problems found");
    // The policy's group comes from --group (or SASLDB_GROUP).
    if is_root() {
        let q = s.path("queue");
        let o = s.on(
            &db,
            &[
                "--group",
                "root",
                "check",
                "--json",
                "--queue-directory",
                q.to_str().unwrap(),
            ],
        );
        let mut codes = problems(&o.code(1).json());
        codes.sort();
        assert_eq!(codes, ["chroot-group", "db-group", "lock-group"]);
    }

    // Stale after a change.
    s.on_in(&db, &["import"], b"carol:c\n").ok();
    let r = s.check(&db, &[]).json();
    assert_eq!(problems(&r), ["chroot-stale"], "{r:#}");
    assert!(
        finding(&r, "chroot-stale")["message"]
            .as_str()
            .unwrap()
            .contains("1 missing")
    );
    s.check(&db, &["--fix"]).ok();
    assert_eq!(file_records(&copy), file_records(&db));

    // Records only the copy has: reported, not fixed; sync-chroot refuses, --force
    // drops them.
    s.on_in(&copy, &["import"], b"mallory@example.org:m\n").ok();
    let r = s.check(&db, &["--fix"]).json();
    assert_eq!(problems(&r), ["chroot-extra"], "{r:#}");
    assert!(
        finding(&r, "chroot-extra")["message"]
            .as_str()
            .unwrap()
            .contains("mallory@example.org: userPassword")
    );
    s.sync(&db, &[])
        .code(1)
        .err_has("holds 1 record(s) that")
        .err_has("--force");
    s.sync(&db, &["--force"]).ok().out_has("updated");
    assert_eq!(file_records(&copy), file_records(&db));

    // Database mode and group.
    fs::set_permissions(&db, fs::Permissions::from_mode(0o660)).unwrap();
    let r = s.check(&db, &[]).json();
    assert_eq!(problems(&r), ["db-mode"], "{r:#}");
    assert!(
        finding(&r, "db-mode")["message"]
            .as_str()
            .unwrap()
            .contains("wider than the policy's 0640")
    );
    if is_root() {
        std::os::unix::fs::chown(&db, Some(0), Some(0)).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        let r = s.check(&db, &[]).json();
        let mut codes = problems(&r);
        codes.sort();
        assert_eq!(codes, ["db-group", "db-mode"], "{r:#}");
        assert_eq!(finding(&r, "db-mode")["severity"], "error");
    }
    s.check(&db, &["--fix"]).ok();
    assert_eq!(mode(&db), 0o640);

    // A hard link as the copy: replaced by a copy of its own.
    fs::remove_file(&copy).unwrap();
    fs::hard_link(&db, &copy).unwrap();
    let r = s.check(&db, &[]).json();
    assert_eq!(problems(&r), ["chroot-hard-linked"], "{r:#}");
    s.check(&db, &["--fix"]).ok();
    assert_eq!(fs::metadata(&db).unwrap().nlink(), 1);
    assert_eq!(file_records(&copy), file_records(&db));

    // A symlink to the database: inside the chroot it names itself.
    fs::remove_file(&copy).unwrap();
    std::os::unix::fs::symlink(&db, &copy).unwrap();
    let r = s.check(&db, &[]).json();
    assert_eq!(problems(&r), ["chroot-symlink"], "{r:#}");
    s.check(&db, &["--fix"]).ok();
    assert!(fs::symlink_metadata(&copy).unwrap().is_file());

    // A leftover temporary file of an interrupted write.
    let tmp = s.path(".sasldb2.sasldb-tmp-0123456789abcdef");
    fs::write(&tmp, b"half a database").unwrap();
    let r = s.check(&db, &[]).json();
    assert_eq!(problems(&r), ["stale-temp-files"], "{r:#}");
    s.check(&db, &["--fix"]).ok();
    assert!(!tmp.exists());

    // A user without a usable secret (only OTP): reported, not fixable.
    s.on_in(
        &db,
        &["import", "--json"],
        br#"[{"user": "otp@example.org", "properties": {"cmusaslsecretOTP": "md5\t0499\tvm01\t00\t0"}}]"#,
    )
    .ok();
    s.sync(&db, &[]).ok();
    let r = s.check(&db, &["--fix"]).json();
    assert_eq!(problems(&r), ["no-usable-secret"], "{r:#}");
    assert!(
        finding(&r, "no-usable-secret")["message"]
            .as_str()
            .unwrap()
            .contains("otp@example.org (only an OTP secret)")
    );

    // smtpd reading another file is flagged.
    s.postfix("sasldb_path: /nonexistent/sasldb2\n", true);
    let r = s.check(&db, &[]).json();
    assert!(problems(&r).contains(&"smtpd-database".to_owned()), "{r:#}");
    // No Postfix at all: the Postfix checks are skipped.
    let mut c = s.cmd(&["-f", db.to_str().unwrap(), "check"]);
    let out = c.env("MAIL_CONFIG", s.path("conf")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[no-postfix]"), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}"); // still no-usable-secret
}

#[test]
fn check_lmdb_lock_files_and_unchrooted_smtpd() {
    let s = Scratch::with_postfix();
    let db = s.path("sasldb2");
    s.run_in(
        &["-f", &format!("lmdb:{}", db.display()), "import"],
        Some(b"alice:a\n"),
    )
    .ok();
    s.sync(&db, &[])
        .ok()
        .out_has("created (LMDB database, 1 records)");
    let copy_lock = sasldb::internals::lmdb::lock_path(&s.copy());
    assert_eq!(mode(&copy_lock), 0o660);
    s.check(&db, &[]).ok();

    // The chroot copy's lock file is missing: smtpd (user postfix) could not create it.
    fs::remove_file(&copy_lock).unwrap();
    let r = s.check(&db, &[]).json();
    assert_eq!(problems(&r), ["chroot-lock-missing"], "{r:#}");
    s.check(&db, &["--fix"]).ok();
    assert_eq!(mode(&copy_lock), 0o660);
    // A world-readable lock file next to the database.
    let lock = sasldb::internals::lmdb::lock_path(&db);
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o666)).unwrap();
    let r = s.check(&db, &[]).json();
    assert_eq!(problems(&r), ["lmdb-lock-mode"], "{r:#}");
    s.check(&db, &["--fix"]).ok();
    assert_eq!(mode(&lock), 0o660);

    // smtpd not chrooted: no copy needed; the stale one is mentioned.
    s.postfix(&format!("sasldb_path: {}\n", db.display()), false);
    let o = s.check(&db, &[]);
    o.ok();
    assert!(o.stdout.contains("chroot-unused"), "{}", o.stdout);
}

#[test]
fn sync_chroot_every_format() {
    let s = Scratch::with_postfix();
    for (i, fmt) in ["bdb", "lmdb", "gdbm", "sqlite"].iter().enumerate() {
        let db = s.path(&format!("db{i}"));
        let loc = format!("{fmt}:{}", db.display());
        let copy = s.path(&format!("copies/etc/db{i}"));
        let to = copy.to_str().unwrap();
        s.run_in(
            &["-f", &loc, "import", "--scram"],
            Some(b"alice@example.org:a\nbob@example.org:b\n"),
        )
        .ok();
        fs::create_dir_all(copy.parent().unwrap()).unwrap();
        s.run(&["-f", &loc, "sync-chroot", "--to", to])
            .ok()
            .out_has("created");
        assert_eq!(file_records(&copy), file_records(&db), "{fmt}");
        assert_eq!(mode(&copy), 0o640, "{fmt}");
        if is_root() {
            let m = fs::metadata(&copy).unwrap();
            assert_eq!((m.uid(), m.gid()), (0, postfix_gid().as_raw()), "{fmt}");
        }
        s.run(&["-f", &loc, "sync-chroot", "--to", to])
            .ok()
            .out_has("already up to date");
        s.run_in(&["-f", &loc, "import"], Some(b"carol@example.org:c\n"))
            .ok();
        s.run(&["-f", &loc, "sync-chroot", "--to", to])
            .ok()
            .out_has("updated");
        assert_eq!(file_records(&copy), file_records(&db), "{fmt}");
        // Cyrus's Berkeley DB reader lists the copy.
        if *fmt == "bdb" {
            let out =
                crate::support::run_ok(Command::new(peer("sasldblistusers2")).arg("-f").arg(&copy));
            assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
        }
        // A copy in another format is replaced.
        if *fmt == "gdbm" {
            fs::copy(s.path("db0"), &copy).unwrap();
            s.run(&["-f", &loc, "sync-chroot", "--to", to])
                .ok()
                .out_has("replaced a Berkeley DB database");
            assert_eq!(file_records(&copy), file_records(&db));
        }
    }
    // Default target: <queue_directory>/<sasldb_path of smtpd.conf>; the database is
    // the copy itself when it lives inside the chroot.
    let db = s.db();
    s.on_in(&db, &["import"], b"x@example.org:x\n").ok();
    s.sync(&db, &[]).ok().out_has(s.copy().to_str().unwrap());
    s.on(
        &s.copy(),
        &["sync-chroot", "--to", s.copy().to_str().unwrap()],
    )
    .ok()
    .out_has("is the database itself");
    s.on(&s.path("nope"), &["sync-chroot", "--to", "x"])
        .code(1)
        .err_has("no such database");
}

/// 200,000 users through the binary in one transaction, listed by Cyrus's own
/// sasldblistusers2 (libdb 5.3).
#[test]
fn import_200k_users_read_by_cyrus() {
    const N: usize = 200_000;
    let s = Scratch::with_postfix();
    let db = s.db();
    let mut input = String::with_capacity(N * 40);
    for i in 0..N {
        input.push_str(&format!("user{i:06}@example.org:pw-{i}:secret\n"));
    }
    let list = s.path("users.txt");
    fs::write(&list, &input).unwrap();
    let start = Instant::now();
    s.on(&db, &["import", list.to_str().unwrap()])
        .ok()
        .out_has("200000 added, 0 updated, 0 unchanged, 0 rejected");
    let import = start.elapsed();
    let start = Instant::now();
    let out = crate::support::run_ok(Command::new(peer("sasldblistusers2")).arg("-f").arg(&db));
    let listing = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), N);
    assert!(text.contains("user199999@example.org: userPassword\n"));
    eprintln!("import of {N} users: {import:?}; Cyrus sasldblistusers2: {listing:?}");
}

/// A chrooted Postfix smtpd authenticates against the copy `check --fix` and
/// `sync-chroot` write from main.cf's own queue_directory, and not before; a changed
/// password reaches smtpd only with the next sync; SCRAM-SHA-1 works with a
/// hashed-only user.
#[test]
fn chrooted_postfix_logs_in_against_the_synced_copy() {
    use crate::support::postfix::{Mech, Options, PostfixInstance};
    let inst = PostfixInstance::start(Options {
        chroot: true,
        ..Options::default()
    });
    let db = inst.sasldb();
    let sasldb = |args: &[&str], stdin: &[u8]| -> Out {
        let mut c = inst.ours("sasldb");
        c.arg("-f").arg(&db).args(args);
        Out::run(&mut c, stdin)
    };
    sasldb(&["import"], b"alice@example.org:first\n").ok();
    sasldb(
        &["import", "--hashed-only"],
        b"bob@example.org:scram only\n",
    )
    .ok();
    // smtpd looks in the chroot, where nothing is yet.
    inst.expect_auth("alice@example.org", "first", Mech::Plain, 535);
    let r = sasldb(&["check", "--json"], b"").code(1).json();
    assert!(problems(&r).contains(&"chroot-missing".to_owned()), "{r:#}");
    sasldb(&["check", "--fix"], b"").out_has("fixed: refreshed");
    let copy = sasldb::postfix::chroot::in_root(&inst.dir().join("queue"), &db);
    assert_eq!(mode(&copy), 0o640);
    // What remains: the users are not in the realm of logins without @.
    let r = sasldb(&["check", "--json"], b"").json();
    assert_eq!(problems(&r), ["realm-mismatch"], "{r:#}");
    inst.expect_auth("alice@example.org", "first", Mech::Plain, 235);
    inst.expect_auth("bob@example.org", "scram only", Mech::ScramSha1, 235);
    inst.expect_auth("bob@example.org", "wrong", Mech::ScramSha1, 535);

    // A new password: smtpd keeps the old one until the copy is refreshed.
    sasldb(&["import"], b"alice@example.org:second\n").ok();
    inst.expect_auth("alice@example.org", "second", Mech::Plain, 535);
    sasldb(&["sync-chroot"], b"").ok().out_has("updated");
    inst.expect_auth("alice@example.org", "second", Mech::Plain, 235);
    inst.expect_auth("alice@example.org", "first", Mech::Plain, 535);
}
