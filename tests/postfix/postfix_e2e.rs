//! Real Postfix SMTP AUTH against sasldb files, end to end.
//!
//! Every test starts its own private Postfix instance ([`crate::support::postfix`]): smtpd on
//! 127.0.0.1 with Cyrus SASL (`smtpd_sasl_path = smtpd`, auxprop sasldb), myhostname
//! `Mail.Example.TEST` (so a bare login's realm is `mail.example.test`). Logins are
//! made with swaks (PLAIN, LOGIN, CRAM-MD5) and `gsasl --smtp` (SCRAM), or with a raw
//! SMTP session when several AUTH commands must reach one smtpd process. The
//! databases are written by Debian's `saslpasswd2` and by this crate's
//! [`sasldb::Transaction`].

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Instant;

use sasldb::account::secrets::{ScramHash, ScramSecret};
use sasldb::record::AUTH_PASSWORD;

use crate::support::postfix::{Mech, Options, PostfixInstance};
use crate::support::{alive, postfix_gid};

fn case(login: &str, pw: &str, mech: Mech, want: u16) -> (String, String, Mech, u16) {
    (login.to_owned(), pw.to_owned(), mech, want)
}

const ALICE_PW: &str = "Alice's pässword ✓";

/// The users of the realm matrix, as (user, realm, password).
fn matrix_users(inst: &PostfixInstance) -> Vec<(&'static str, String, &'static str)> {
    vec![
        // realm = lowercase(myhostname): what a bare login looks up
        ("alice", inst.default_realm(), ALICE_PW),
        // another realm: only reachable as carol@other.test
        ("carol", "other.test".into(), "carol pw"),
        // myhostname's own spelling: libsasl lowercases it, so a bare login misses
        ("upper", "Mail.Example.TEST".into(), "upper pw"),
    ]
}

/// PLAIN, LOGIN and CRAM-MD5: right and wrong passwords, bare logins and
/// `user@realm`, case sensitivity of user and realm.
fn realm_matrix(inst: &PostfixInstance) {
    let mut cases = Vec::new();
    for mech in Mech::SWAKS {
        cases.extend([
            case("alice", ALICE_PW, mech, 235),
            case("alice", "Alice's password ✓", mech, 535),
            case("alice", "", mech, 535),
            case("alice@mail.example.test", ALICE_PW, mech, 235),
            case("alice@MAIL.EXAMPLE.TEST", ALICE_PW, mech, 535),
            case("Alice", ALICE_PW, mech, 535),
            case("carol@other.test", "carol pw", mech, 235),
            case("carol@other.test", "carol pW", mech, 535),
            case("carol", "carol pw", mech, 535),
            case("upper", "upper pw", mech, 535),
            case("upper@Mail.Example.TEST", "upper pw", mech, 235),
            case("nobody", "x", mech, 535),
        ]);
    }
    inst.check_logins(&cases);
}

/// A database written by Debian's saslpasswd2 (with SCRAM secrets) serves PLAIN,
/// LOGIN, CRAM-MD5 and SCRAM-SHA-1 logins through Postfix.
#[test]
fn postfix_auth_with_saslpasswd2_database() {
    let inst = PostfixInstance::start(Options {
        saslpasswd_conf: "scram_secret_generate: yes\n".into(),
        ..Options::default()
    });
    for (user, realm, pw) in matrix_users(&inst) {
        inst.saslpasswd2(user, &realm, pw);
    }
    realm_matrix(&inst);
    inst.check_logins(&[
        case("alice", ALICE_PW, Mech::ScramSha1, 235),
        case("alice", "wrong", Mech::ScramSha1, 535),
        case("carol@other.test", "carol pw", Mech::ScramSha1, 235),
    ]);
}

/// The same matrix with a database written by this crate's Transaction.
#[test]
fn postfix_auth_with_our_database() {
    let inst = PostfixInstance::start(Options::default());
    for (user, realm, pw) in matrix_users(&inst) {
        inst.put_password(user, &realm, pw);
    }
    // Our writer's ownership policy is what lets smtpd (user postfix) read it.
    let meta = std::fs::metadata(inst.sasldb()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.gid(), postfix_gid().as_raw());
    realm_matrix(&inst);
}

/// `smtpd_sasl_local_domain` is the realm of a bare login, used verbatim (not
/// lowercased), and myhostname no longer is.
#[test]
fn postfix_auth_local_domain_is_the_bare_login_realm() {
    let inst = PostfixInstance::start(Options {
        local_domain: Some("Example.ORG".into()),
        ..Options::default()
    });
    assert_eq!(inst.default_realm(), "Example.ORG");
    inst.put_password("dave", "Example.ORG", "dave pw");
    inst.put_password("erin", "example.org", "erin pw");
    inst.put_password("frank", "mail.example.test", "frank pw");
    let mut cases = Vec::new();
    for mech in [Mech::Plain, Mech::CramMd5] {
        cases.extend([
            case("dave", "dave pw", mech, 235),
            case("dave", "dave PW", mech, 535),
            case("dave@Example.ORG", "dave pw", mech, 235),
            case("erin", "erin pw", mech, 535),
            case("erin@example.org", "erin pw", mech, 235),
            case("frank", "frank pw", mech, 535),
            case("frank@mail.example.test", "frank pw", mech, 235),
        ]);
    }
    inst.check_logins(&cases);
}

/// A running smtpd process sees every rewrite at once: libsasl opens the Berkeley
/// DB file for each lookup and closes it, so our atomic replace (a new inode under
/// the same name) is read by the very next AUTH in an already open session. The
/// database starts as Debian's saslpasswd2 wrote it and is rewritten by our
/// Transaction; Postfix is never restarted or reloaded.
#[test]
fn postfix_running_smtpd_sees_rewrites_at_once() {
    let inst = PostfixInstance::start(Options::default());
    let realm = inst.default_realm();
    inst.saslpasswd2("bob", &realm, "old pw");
    inst.saslpasswd2("gina", &realm, "gina pw");
    let db = inst.sasldb();

    // One session = one smtpd process, open across the rewrite.
    let mut s = inst.session();
    assert_eq!(s.auth_plain("bob", "new pw"), 535, "{}", s.transcript);
    let holders = inst.holders_of(&db);
    assert!(
        holders.is_empty(),
        "smtpd keeps the sasldb open: {holders:?}"
    );
    // The scan does see open files: postlogd keeps the maillog open.
    assert!(!inst.holders_of(&inst.dir().join("maillog")).is_empty());
    let smtpd_before: Vec<i32> = smtpd_pids(&inst);

    let inode = std::fs::metadata(&db).unwrap().ino();
    inst.put_password("bob", &realm, "new pw");
    assert_ne!(std::fs::metadata(&db).unwrap().ino(), inode, "not replaced");
    assert_eq!(s.auth_plain("bob", "new pw"), 235, "{}", s.transcript);
    drop(s);
    inst.check_logins(&[
        case("bob", "new pw", Mech::CramMd5, 235),
        case("bob", "old pw", Mech::Plain, 535),
        case("gina", "gina pw", Mech::Login, 235),
    ]);

    // Deleting a user: refused in an open session and on new connections.
    let mut s = inst.session();
    assert_eq!(s.auth_plain("gina", "wrong"), 535, "{}", s.transcript);
    let removed = inst.delete_user("gina", &realm);
    assert!(removed >= 1, "gina had no properties");
    assert_eq!(s.auth_plain("gina", "gina pw"), 535, "{}", s.transcript);
    assert_eq!(s.auth_plain("bob", "new pw"), 235, "{}", s.transcript);
    inst.check_logins(&[
        case("gina", "gina pw", Mech::Plain, 535),
        case("gina", "gina pw", Mech::CramMd5, 535),
        case("bob", "new pw", Mech::Login, 235),
    ]);
    // Nothing was restarted: the smtpd processes from before still serve.
    let smtpd_after = smtpd_pids(&inst);
    assert!(
        smtpd_before.iter().all(|p| smtpd_after.contains(p)),
        "smtpd processes changed: {smtpd_before:?} -> {smtpd_after:?}"
    );
    assert!(inst.holders_of(&db).is_empty());
}

fn smtpd_pids(inst: &PostfixInstance) -> Vec<i32> {
    inst.processes()
        .into_iter()
        .filter(|p| p.comm == "smtpd")
        .map(|p| p.pid)
        .collect()
}

/// Users with nothing but an `authPassword` computed by this crate log in with
/// SCRAM through Postfix (gsasl checks the server signature too), and only with
/// their own SCRAM variant: PLAIN finds no userPassword.
#[test]
fn postfix_auth_scram_only_users_via_gsasl() {
    let inst = PostfixInstance::start(Options::default());
    let realm = inst.default_realm();
    let sha1 = ScramSecret::generate(ScramHash::Sha1, "scram one ✓".as_bytes(), 4096).unwrap();
    let sha256 = ScramSecret::generate(ScramHash::Sha256, b"scram two", 4096).unwrap();
    inst.put("sam", &realm, &[(AUTH_PASSWORD, &sha1.encode())]);
    inst.put("tess", &realm, &[(AUTH_PASSWORD, &sha256.encode())]);
    inst.check_logins(&[
        case("sam", "scram one ✓", Mech::ScramSha1, 235),
        case("sam@mail.example.test", "scram one ✓", Mech::ScramSha1, 235),
        case("sam", "scram one", Mech::ScramSha1, 535),
        // Cyrus: "No valid SCRAM-SHA-256 secret found", reported as SASL_NOMEM,
        // which Postfix turns into a temporary failure.
        case("sam", "scram one ✓", Mech::ScramSha256, 454),
        case("sam", "scram one ✓", Mech::Plain, 535),
        case("tess", "scram two", Mech::ScramSha256, 235),
        case("tess", "scram two!", Mech::ScramSha256, 535),
        case("tess", "scram two", Mech::ScramSha1, 454),
    ]);
    let log = inst.log();
    assert!(log.contains("No valid SCRAM-SHA-1 secret found"), "{log}");
}

/// smtpd runs as user postfix: a root-only database (as saslpasswd2 leaves a new
/// file, here forced to 0640 root:root) fails every login with a temporary error
/// (454, "generic failure"), and any rewrite by our Transaction (root:postfix 0640)
/// fixes it.
#[test]
fn postfix_auth_needs_a_database_readable_by_postfix() {
    let inst = PostfixInstance::start(Options::default());
    let realm = inst.default_realm();
    let db = inst.sasldb();
    inst.saslpasswd2_raw("alice", &realm, "pw");
    nix::unistd::chown(
        &db,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(0)),
    )
    .unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    inst.check_logins(&[case("alice", "pw", Mech::Plain, 454)]);
    let log = inst.log();
    let want = format!(
        "unable to open Berkeley db {}: Permission denied",
        db.display()
    );
    assert!(log.contains(&want), "{log}");

    inst.put_password("other", &realm, "x");
    inst.check_logins(&[
        case("alice", "pw", Mech::Plain, 235),
        case("other", "x", Mech::Login, 235),
    ]);
}

/// Dropping an instance stops every process it started and removes its files.
#[test]
fn postfix_harness_leaves_nothing_behind() {
    let t = Instant::now();
    let inst = PostfixInstance::start(Options::default());
    inst.put_password("alice", &inst.default_realm(), "pw");
    inst.check_logins(&[case("alice", "pw", Mech::Plain, 235)]);
    let procs = inst.processes();
    let comms: Vec<&str> = procs.iter().map(|p| p.comm.as_str()).collect();
    assert!(
        ["master", "postlogd", "smtpd"]
            .iter()
            .all(|c| comms.contains(c)),
        "{procs:?}"
    );
    let dir = inst.dir().to_path_buf();
    let port = inst.port();
    drop(inst);
    for p in &procs {
        assert!(!alive(p.pid), "{p:?} still runs");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
    eprintln!("instance life cycle: {:?}", t.elapsed());
}
