//! Cyrus SASL `<appname>.conf` handling, checked against Debian's real `saslpasswd2`
//! (run with `SASL_CONF_PATH` pointing into scratch directories and, except where
//! the test is about `sasldb_path`, with `-f` so that /etc/sasldb2 is never touched).
//! The peer is required: without `saslpasswd2` these tests fail.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use sasldb::cyrus_conf::{self, SaslConf, debian_multiarch, default_conf_path};
use sasldb::internals::bdb::BdbFile;

use crate::support::{in_parallel, peer};

/// `echo pw | SASL_CONF_PATH=search saslpasswd2 -p -a app [-f db] user`.
fn run(search: &OsStr, app: &str, db: Option<&Path>, user: &str) -> (ExitStatus, String) {
    let mut cmd = Command::new(peer("saslpasswd2"));
    cmd.env("SASL_CONF_PATH", search).args(["-p", "-a", app]);
    if let Some(db) = db {
        cmd.arg("-f").arg(db);
    }
    let mut child = cmd
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run saslpasswd2");
    // saslpasswd2 exits before reading the password when the config is bad.
    if let Err(e) = child.stdin.take().expect("stdin").write_all(b"pw\n") {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write password: {e}"
        );
    }
    let out = child.wait_with_output().expect("wait for saslpasswd2");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn search(dirs: &[&Path]) -> OsString {
    std::env::join_paths(dirs).expect("join paths")
}

#[test]
fn syntax_verdicts_match_saslpasswd2() {
    let long = |len: usize| format!("foo_long: {}\n", "v".repeat(len - 10));
    let cases: Vec<Vec<u8>> = [
        "foo_bar: baz\n",
        "# comment\n\n   \t\nfoo_bar: baz\n",
        "FOO-Bar_9: x\n",
        ": empty key\n",
        "k:v:w\r\n\r\n",
        "\x0bfoo: v\x0c\n",
        "foo: x\0y\n",
        "foo: 1\n\0garbage\n",
        "key value\n",
        "key : value\n",
        "key:\n",
        "key:  \t \n",
        "k.e: v\n",
        "cl\u{e9}: v\n",
        "key = value\n",
        "foo: 1\n  bar: 2\nbaz",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        long(4094).into_bytes(),
        long(4095).into_bytes(),
        long(4096).into_bytes(),
        format!("#{}\n", "c".repeat(5000)).into_bytes(),
    ])
    .collect();
    in_parallel(&cases, |text| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("app.conf"), text).map_err(|e| e.to_string())?;
        let ours = cyrus_conf::find(dir.path().as_os_str(), "app");
        let (status, stderr) = run(
            dir.path().as_os_str(),
            "app",
            Some(&dir.path().join("db")),
            "u",
        );
        let shown = String::from_utf8_lossy(&text[..text.len().min(40)]).into_owned();
        match (status.code(), &ours) {
            (Some(0), Ok(Some(_))) => Ok(()),
            (Some(100), Err(cyrus_conf::ConfError::Syntax { .. }))
                if stderr.contains("error when parsing configuration file") =>
            {
                Ok(())
            }
            _ => Err(format!(
                "{shown:?}: saslpasswd2 {status} {stderr:?}, we {ours:?}"
            )),
        }
    });
}

#[test]
fn first_directory_and_first_key_win_for_sasldb_path() {
    // The only test that runs saslpasswd2 without -f: guard the system database.
    let system_db = Path::new("/etc/sasldb2");
    let before = std::fs::metadata(system_db)
        .ok()
        .map(|m| (m.len(), m.modified().ok()));

    let t = tempfile::tempdir().unwrap();
    let (d1, d2, d3) = (
        t.path().join("d1"),
        t.path().join("d2"),
        t.path().join("d3"),
    );
    for d in [&d1, &d2, &d3] {
        std::fs::create_dir(d).unwrap();
    }
    let db = |n: &str| t.path().join(n);
    std::fs::write(
        d2.join("app.conf"),
        format!(
            "sasldb_path: {}\nSASLDB_PATH: {}\n",
            db("first").display(),
            db("second").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d3.join("app.conf"),
        format!("sasldb_path: {}\n", db("third").display()),
    )
    .unwrap();
    let path = search(&[&d1, &d2, &d3]);

    let ours = cyrus_conf::find(&path, "app")
        .unwrap()
        .expect("a conf file");
    assert_eq!(ours.path(), Some(d2.join("app.conf").as_path()));
    assert_eq!(ours.sasldb_path(), Some(db("first")));

    let (status, stderr) = run(&path, "app", None, "u");
    let after = std::fs::metadata(system_db)
        .ok()
        .map(|m| (m.len(), m.modified().ok()));
    assert_eq!(before, after, "/etc/sasldb2 changed: the test wrote to it");
    assert!(status.success(), "{status} {stderr}");
    assert!(
        db("first").is_file(),
        "saslpasswd2 did not write the conf's path"
    );
    assert!(!db("second").exists() && !db("third").exists());
    let written = BdbFile::open(&db("first")).unwrap();
    let host = nix::unistd::gethostname().unwrap();
    let key = format!(
        "u\0{}\0userPassword",
        host.to_string_lossy().to_ascii_lowercase()
    );
    assert_eq!(
        written
            .get(key.as_bytes())
            .unwrap()
            .as_deref()
            .map(|v| &v[..]),
        Some(&b"pw"[..])
    );
}

#[test]
fn unopenable_files_are_skipped_and_directories_win() {
    let t = tempfile::tempdir().unwrap();
    let (d1, d2) = (t.path().join("d1"), t.path().join("d2"));
    std::fs::create_dir(&d1).unwrap();
    std::fs::create_dir(&d2).unwrap();
    std::fs::write(d2.join("app.conf"), "this line is not key: value\n").unwrap();
    let path = search(&[&d1, &d2]);
    let dbfile = t.path().join("db");

    // Dangling symlink in d1: skipped, so d2's bad file is read.
    std::os::unix::fs::symlink(t.path().join("nowhere"), d1.join("app.conf")).unwrap();
    let (status, _) = run(&path, "app", Some(&dbfile), "u");
    assert_eq!(status.code(), Some(100));
    assert!(cyrus_conf::find(&path, "app").is_err());

    // A directory named app.conf in d1: it "opens", reads as empty and wins.
    std::fs::remove_file(d1.join("app.conf")).unwrap();
    std::fs::create_dir(d1.join("app.conf")).unwrap();
    let (status, stderr) = run(&path, "app", Some(&dbfile), "u");
    assert!(status.success(), "{status} {stderr}");
    let found = cyrus_conf::find(&path, "app").unwrap().unwrap();
    assert_eq!(found.iter().count(), 0);
}

#[test]
fn scram_secret_generate_matches_saslpasswd2() {
    // Does saslpasswd2 write authPassword?
    let switches = [
        "yes", "Yes", "y", "on", "ON", "only", "1", "10", "0", "t", "true", "TRUE", "off", "no",
    ];
    in_parallel(&switches, |value| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let text = format!("scram_secret_generate: {value}\nscram_iteration_counter: 1\n");
        std::fs::write(dir.path().join("app.conf"), &text).map_err(|e| e.to_string())?;
        let db = dir.path().join("db");
        let (status, stderr) = run(dir.path().as_os_str(), "app", Some(&db), "u@r");
        if !status.success() {
            return Err(format!("{value:?}: saslpasswd2 {status} {stderr}"));
        }
        let theirs = BdbFile::open(&db)
            .and_then(|f| f.get(b"u\0r\0authPassword"))
            .map_err(|e| e.to_string())?
            .is_some();
        let ours = SaslConf::parse(Path::new("app.conf"), text.as_bytes())
            .map_err(|e| e.to_string())?
            .scram_secret_generate();
        if theirs == ours {
            Ok(())
        } else {
            Err(format!(
                "{value:?}: saslpasswd2 wrote authPassword: {theirs}, we say {ours}"
            ))
        }
    });
}

#[test]
fn scram_iteration_counter_matches_saslpasswd2() {
    // The count written into authPassword. (Huge counts are left out: "-1" means
    // 4294967295 iterations.)
    let counts = [
        "7",
        "+3",
        "0",
        "abc",
        "12x",
        "4294967298",
        "99999999999999999999",
    ];
    in_parallel(&counts, |value| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let text = format!("scram_secret_generate: yes\nscram_iteration_counter: {value}\n");
        std::fs::write(dir.path().join("app.conf"), &text).map_err(|e| e.to_string())?;
        let db = dir.path().join("db");
        let (status, stderr) = run(dir.path().as_os_str(), "app", Some(&db), "u@r");
        if !status.success() {
            return Err(format!("{value:?}: saslpasswd2 {status} {stderr}"));
        }
        let value_written = BdbFile::open(&db)
            .and_then(|f| f.get(b"u\0r\0authPassword"))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{value:?}: no authPassword"))?;
        // SCRAM-SHA-1$<count>:<salt>$<stored>:<server>
        let text_written = String::from_utf8_lossy(&value_written).into_owned();
        let theirs: u32 = text_written
            .split_once('$')
            .and_then(|(_, rest)| rest.split_once(':'))
            .and_then(|(n, _)| n.parse().ok())
            .ok_or_else(|| format!("{value:?}: cannot parse {text_written:?}"))?;
        let ours = SaslConf::parse(Path::new("app.conf"), text.as_bytes())
            .map_err(|e| e.to_string())?
            .scram_iteration_counter();
        if theirs == ours {
            Ok(())
        } else {
            Err(format!(
                "{value:?}: saslpasswd2 used {theirs}, we say {ours}"
            ))
        }
    });
}

#[test]
fn otp_mda_matches_saslpasswd2() {
    let t = tempfile::tempdir().unwrap();
    for (value, prefix) in [("SHA1", "sha1\t"), ("md5", "md5\t")] {
        let text = format!("otp_mda: {value}\n");
        std::fs::write(t.path().join("app.conf"), &text).unwrap();
        let db = t.path().join(format!("db-{value}"));
        let (status, stderr) = run(t.path().as_os_str(), "app", Some(&db), "u@r");
        assert!(status.success(), "{value}: {status} {stderr}");
        let otp = BdbFile::open(&db)
            .unwrap()
            .get(b"u\0r\0cmusaslsecretOTP")
            .unwrap()
            .expect("an OTP secret");
        assert!(
            otp.starts_with(prefix.as_bytes()),
            "{value}: {:?}",
            String::from_utf8_lossy(&otp)
        );
        let ours = SaslConf::parse(Path::new("app.conf"), text.as_bytes()).unwrap();
        assert_eq!(format!("{}\t", ours.otp_mda().unwrap()), prefix);
    }
    // An unknown digest: saslpasswd2 fails (on Debian 12 it even dies of a double
    // free); we refuse the value.
    std::fs::write(t.path().join("app.conf"), "otp_mda: sha256\n").unwrap();
    let (status, _) = run(
        t.path().as_os_str(),
        "app",
        Some(&t.path().join("db-bad")),
        "u@r",
    );
    assert!(!status.success());
    let ours = SaslConf::parse(Path::new("app.conf"), b"otp_mda: sha256\n").unwrap();
    assert!(ours.otp_mda().is_err());
}

#[test]
fn default_path_is_the_one_compiled_into_libsasl2() {
    let triplet = debian_multiarch().expect("this test needs a Debian multiarch target");
    let lib = PathBuf::from(format!("/usr/lib/{triplet}/libsasl2.so.2"));
    let bytes = std::fs::read(&lib).unwrap_or_else(|e| {
        panic!(
            "PEER MISSING: {}: {e} (apt-get install libsasl2-2)",
            lib.display()
        )
    });
    let want = default_conf_path();
    let needle = format!("{want}\0");
    assert!(
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "{} does not contain the search path {want:?}",
        lib.display()
    );
}
