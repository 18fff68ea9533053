//! Real Postfix SMTP AUTH against databases written by our binaries: `saslpasswd2`
//! with the realm it derives from the instance's own main.cf, `sasldb import` (into a
//! Berkeley DB file and into an SQLite file read through Cyrus's `sql` plugin), and
//! logins that keep working while `sasldb import --mode replace-all` rewrites 50,000
//! users underneath a running smtpd.

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::postfix::{Mech, Options, PostfixInstance};
use crate::support::{postfix_gid, run_ok_with_stdin};

/// Runs one of our binaries for this instance: its Postfix config decides the
/// default realm; no Cyrus config, no group override.
fn ours(inst: &PostfixInstance, bin: &str, args: &[&str], stdin: &[u8]) -> Output {
    run_ok_with_stdin(inst.ours(bin).args(args), stdin)
}

fn db_arg(inst: &PostfixInstance) -> String {
    inst.sasldb().display().to_string()
}

/// Every login must get `want` with PLAIN, LOGIN and CRAM-MD5; all are tried, then
/// every failure is reported ([`PostfixInstance::check_logins`]).
fn expect_all(inst: &PostfixInstance, cases: &[(&str, &str, u16)]) {
    let logins: Vec<(&str, &str, Mech, u16)> = cases
        .iter()
        .flat_map(|&(login, pw, want)| Mech::SWAKS.map(|mech| (login, pw, mech, want)))
        .collect();
    inst.check_logins(&logins);
}

#[test]
fn postfix_auth_with_our_saslpasswd2() {
    let inst = PostfixInstance::start(Options::default());
    let db = db_arg(&inst);
    // No -u: the realm comes from the instance's main.cf (myhostname Mail.Example.TEST,
    // lowercased as libsasl does), so a bare login finds the user.
    ours(
        &inst,
        "saslpasswd2",
        &["-p", "-c", "-f", &db, "alice"],
        b"Al1ce-pw\n",
    );
    ours(
        &inst,
        "saslpasswd2",
        &["-p", "-f", &db, "bob@other.example"],
        b"b0b-pw\n",
    );
    ours(
        &inst,
        "saslpasswd2",
        &["-p", "-f", &db, "-u", "third.example", "carol"],
        b"c4rol\n",
    );
    let meta = std::fs::metadata(inst.sasldb()).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o640));
    expect_all(
        &inst,
        &[
            ("alice", "Al1ce-pw", 235),
            ("alice@mail.example.test", "Al1ce-pw", 235),
            ("alice", "wrong", 535),
            ("bob@other.example", "b0b-pw", 235),
            ("bob@other.example", "b0b-pwX", 535),
            ("bob", "b0b-pw", 535),
            ("carol@third.example", "c4rol", 235),
        ],
    );
    // A changed password works at once (no restart), the old one no longer does.
    ours(
        &inst,
        "saslpasswd2",
        &["-p", "-f", &db, "alice"],
        b"n3w-pw\n",
    );
    expect_all(
        &inst,
        &[("alice", "n3w-pw", 235), ("alice", "Al1ce-pw", 535)],
    );
    // A deleted user can no longer log in.
    ours(
        &inst,
        "saslpasswd2",
        &["-d", "-f", &db, "bob@other.example"],
        b"",
    );
    expect_all(
        &inst,
        &[
            ("bob@other.example", "b0b-pw", 535),
            ("carol@third.example", "c4rol", 235),
        ],
    );
}

#[test]
fn postfix_auth_with_sasldb_import() {
    let inst = PostfixInstance::start(Options::default());
    let db = db_arg(&inst);
    let input = "dave:d@ve:pw\nerin@other.example:3rin\n";
    let out = ours(
        &inst,
        "sasldb",
        &["-f", &db, "import", "-"],
        input.as_bytes(),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 added"));
    expect_all(
        &inst,
        &[
            ("dave", "d@ve:pw", 235),
            ("dave", "d@ve", 535),
            ("erin@other.example", "3rin", 235),
            ("erin", "3rin", 535),
        ],
    );
    // replace-all: erin is gone, dave's password changed.
    ours(
        &inst,
        "sasldb",
        &["-f", &db, "import", "--mode", "replace-all", "-"],
        b"dave:s3cond\n",
    );
    expect_all(
        &inst,
        &[
            ("dave", "s3cond", 235),
            ("dave", "d@ve:pw", 535),
            ("erin@other.example", "3rin", 535),
        ],
    );
}

#[test]
fn postfix_auth_with_sqlite_through_the_sql_plugin() {
    // smtpd (as the postfix user) opens the SQLite file through Cyrus's sql plugin,
    // so its directory must be reachable by the postfix group; the path goes into
    // smtpd.conf before Postfix starts (smtpd reads it once per process).
    let dir = tempfile::Builder::new()
        .prefix("sasldb-sqlite-")
        .tempdir()
        .unwrap();
    nix::unistd::chown(dir.path(), None, Some(postfix_gid())).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    let path = dir.path().join("sasldb2.sqlite");
    let sasl_conf = format!(
        "pwcheck_method: auxprop\nmech_list: PLAIN LOGIN CRAM-MD5\n{}",
        sasldb::internals::sql::sqlite::PLUGIN_CONFIG
            .replace("DATABASE", &path.display().to_string())
    );
    let inst = PostfixInstance::start(Options {
        sasl_conf: Some(sasl_conf),
        ..Options::default()
    });
    let loc = format!("sqlite:{}", path.display());
    ours(
        &inst,
        "sasldb",
        &["-f", &loc, "import", "-"],
        b"frank:fr4nk\ngina@other.example:g1na\n",
    );
    expect_all(
        &inst,
        &[
            ("frank", "fr4nk", 235),
            ("frank", "wrong", 535),
            ("gina@other.example", "g1na", 235),
            ("gina@other.example", "g1nA", 535),
        ],
    );
    ours(&inst, "saslpasswd2", &["-d", "-f", &loc, "frank"], b"");
    expect_all(
        &inst,
        &[("frank", "fr4nk", 535), ("gina@other.example", "g1na", 235)],
    );
}

#[test]
fn postfix_logins_never_fail_while_import_replaces_50000_users() {
    let inst = PostfixInstance::start(Options::default());
    let db = db_arg(&inst);
    let mut input = String::from("keeper:k33p-me\n");
    for i in 0..50_000 {
        input.push_str(&format!("user{i:05}:old-{i}\n"));
    }
    ours(
        &inst,
        "sasldb",
        &["-f", &db, "import", "-q", "-"],
        input.as_bytes(),
    );
    let mut replacement = String::from("keeper:k33p-me\n");
    for i in 0..50_000 {
        replacement.push_str(&format!("user{i:05}:new-{i}\n"));
    }
    let done = AtomicBool::new(false);
    let (logins, failures) = std::thread::scope(|s| {
        let login_loop = s.spawn(|| {
            let (mut n, mut failures) = (0usize, Vec::new());
            let start = Instant::now();
            // Keep logging in until the import is over (and at least a few times).
            while !done.load(Ordering::SeqCst) || n < 5 {
                let mut session = inst.session();
                let code = session.auth_plain("keeper", "k33p-me");
                n += 1;
                if code != 235 {
                    failures.push(format!("login {n} got {code}:\n{}", session.transcript));
                }
                assert!(
                    start.elapsed() < Duration::from_secs(300),
                    "login loop ran too long"
                );
            }
            (n, failures)
        });
        for round in 0..2 {
            let data = if round == 0 { &replacement } else { &input };
            ours(
                &inst,
                "sasldb",
                &["-f", &db, "import", "-q", "--mode", "replace-all", "-"],
                data.as_bytes(),
            );
        }
        done.store(true, Ordering::SeqCst);
        login_loop.join().unwrap()
    });
    assert!(
        failures.is_empty(),
        "{} of {logins} logins failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(logins >= 5);
    expect_all(
        &inst,
        &[("user00042", "old-42", 235), ("user00042", "new-42", 535)],
    );
}
