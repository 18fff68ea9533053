//! Derived secrets against the real Cyrus SASL 2.1.28 code on this machine.
//!
//! - `fresh_*`: Debian's `saslpasswd2` writes OTP and SCRAM secrets into a scratch
//!   database, `db_dump -p` reads them back, and our code recomputes them from the
//!   stored seed or salt byte for byte.
//! - `login_*`: a database written by this crate's own BDB writer, holding only a
//!   secret computed here (no `userPassword`), is served by libsasl's server
//!   (`sasl-sample-server`, sasldb auxprop). SCRAM logins use GNU SASL's `gsasl` as
//!   the client, which also checks the server signature (so the ServerKey is proven
//!   too). OTP logins send the RFC 2289 response for the server's challenge.
//!
//! Peer tools are required: a missing one fails the test with its name. Every child
//! runs in a scratch directory with `SASL_CONF_PATH` pointing there, is given at most
//! [`STEP`](crate::support::sample_server::STEP) per protocol step, and is killed when
//! its guard drops.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sasldb::account::secrets::otp::{local_hostname, otp_chain, seed_for_host};
use sasldb::account::secrets::scram::{self, SCRAM_DEFAULT_ITERATIONS};
use sasldb::account::secrets::{OtpAlgorithm, OtpSecret, ScramHash, ScramSecret};
use sasldb::record::{AUTH_PASSWORD, OTP_SECRET};

use crate::support::sample_server::{REALM, otp_login, scram_login};
use crate::support::{db_dump, key, peer, run_ok_with_stdin, write_bdb};

/// An OpenSSL configuration that loads the legacy provider, without which Debian's
/// libsasl OTP plugin crashes on md4.
fn openssl_legacy_conf(dir: &Path) -> PathBuf {
    let p = dir.join("openssl-legacy.cnf");
    fs::write(
        &p,
        "openssl_conf = init\n[init]\nproviders = prov\n[prov]\ndefault = d\nlegacy = l\n\
         [d]\nactivate = 1\n[l]\nactivate = 1\n",
    )
    .unwrap();
    p
}

// ---------------------------------------------------------------------------------
// db_dump and saslpasswd2

fn value_of(records: &[(Vec<u8>, Vec<u8>)], user: &str, prop: &str) -> Vec<u8> {
    let want = key(user, REALM, prop);
    records
        .iter()
        .find(|(k, _)| *k == want)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {user}@{REALM} {prop} in the database"))
}

/// Runs Debian's `saslpasswd2 -p -c -f DB -u REALM user` with `conf` as
/// `saslpasswd.conf` and the password on stdin (no newline); returns the records.
fn saslpasswd2(
    dir: &Path,
    conf: &str,
    env: &[(&str, &Path)],
    user: &str,
    password: &str,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let confdir = dir.join("conf");
    fs::create_dir_all(&confdir).unwrap();
    fs::write(confdir.join("saslpasswd.conf"), conf).unwrap();
    let db = dir.join("sasldb2");
    run_ok_with_stdin(
        Command::new(peer("saslpasswd2"))
            .args(["-p", "-c", "-u", REALM, "-f"])
            .arg(&db)
            .arg(user)
            .env("SASL_CONF_PATH", &confdir)
            .envs(env.iter().map(|&(k, v)| (k, v))),
        password.as_bytes(),
    );
    db_dump(&db)
}

/// Recomputes the OTP secret saslpasswd2 stored, from its own seed.
fn check_otp(stored: &[u8], want: OtpAlgorithm, password: &str) {
    let parsed = OtpSecret::parse(stored).unwrap();
    assert_eq!(parsed.algorithm(), want);
    let ours = OtpSecret::compute(want, parsed.seed(), password.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ours.encode()),
        String::from_utf8_lossy(stored),
        "OTP secret differs from saslpasswd2's"
    );
    assert!(parsed.verify_password(password.as_bytes()).unwrap());
    assert!(!parsed.verify_password(b"not the password").unwrap());
    // The seed is the host name's first two bytes, lowercased, and 4 digits.
    let host = local_hostname().unwrap();
    let prefix_len = seed_for_host(&host, 0).len() - 4;
    assert_eq!(
        &parsed.seed()[..prefix_len],
        &seed_for_host(&host, 0)[..prefix_len]
    );
    assert_eq!(parsed.seed().len(), prefix_len + 4);
}

/// Recomputes the SCRAM secret saslpasswd2 stored, from its own salt.
fn check_scram(stored: &[u8], hash: ScramHash, iterations: u32, password: &str) {
    let parsed = ScramSecret::parse(stored).unwrap();
    assert_eq!((parsed.hash(), parsed.iterations()), (hash, iterations));
    assert_eq!(parsed.salt().len(), 16);
    let ours = ScramSecret::compute(hash, password.as_bytes(), parsed.salt(), iterations).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ours.encode()),
        String::from_utf8_lossy(stored),
        "SCRAM secret differs from saslpasswd2's"
    );
    assert!(scram::verify_password(stored, password.as_bytes()).unwrap());
    assert!(!scram::verify_password(stored, b"not the password").unwrap());
}

#[test]
fn fresh_default_config_md5_and_scram_sha1() {
    let dir = tempfile::tempdir().unwrap();
    let recs = saslpasswd2(
        dir.path(),
        "scram_secret_generate: yes\n",
        &[],
        "alice",
        "secret",
    );
    check_otp(
        &value_of(&recs, "alice", OTP_SECRET),
        OtpAlgorithm::Md5,
        "secret",
    );
    check_scram(
        &value_of(&recs, "alice", AUTH_PASSWORD),
        ScramHash::Sha1,
        SCRAM_DEFAULT_ITERATIONS,
        "secret",
    );
    assert_eq!(value_of(&recs, "alice", "userPassword"), b"secret");
}

#[test]
fn fresh_sha1_otp_10000_iterations_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let pw = "pässwörd ✓ 密码";
    let recs = saslpasswd2(
        dir.path(),
        "scram_secret_generate: yes\nscram_iteration_counter: 10000\notp_mda: sha1\n",
        &[],
        "jösé",
        pw,
    );
    check_otp(&value_of(&recs, "jösé", OTP_SECRET), OtpAlgorithm::Sha1, pw);
    check_scram(
        &value_of(&recs, "jösé", AUTH_PASSWORD),
        ScramHash::Sha1,
        10000,
        pw,
    );
}

#[test]
fn fresh_md4_otp() {
    let dir = tempfile::tempdir().unwrap();
    let ossl = openssl_legacy_conf(dir.path());
    let recs = saslpasswd2(
        dir.path(),
        "otp_mda: md4\n",
        &[("OPENSSL_CONF", &ossl)],
        "bob",
        "md4 pass phrase",
    );
    check_otp(
        &value_of(&recs, "bob", OTP_SECRET),
        OtpAlgorithm::Md4,
        "md4 pass phrase",
    );
}

#[test]
fn fresh_scram_sha256_and_sha512_via_mech_list() {
    for (mech, hash) in [
        ("SCRAM-SHA-256", ScramHash::Sha256),
        ("SCRAM-SHA-512", ScramHash::Sha512),
        ("SCRAM-SHA-224", ScramHash::Sha224),
        ("SCRAM-SHA-384", ScramHash::Sha384),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let recs = saslpasswd2(
            dir.path(),
            &format!("scram_secret_generate: yes\nmech_list: {mech}\n"),
            &[],
            "carol",
            "pencil",
        );
        check_scram(
            &value_of(&recs, "carol", AUTH_PASSWORD),
            hash,
            SCRAM_DEFAULT_ITERATIONS,
            "pencil",
        );
    }
}

// ---------------------------------------------------------------------------------
// Logins through libsasl's server

/// Writes a sasldb with this crate's BDB writer: `(user, property, value)` rows.
fn write_db(path: &Path, rows: &[(&str, &str, Vec<u8>)]) {
    let pairs: Vec<_> = rows
        .iter()
        .map(|(u, p, v)| (key(u, REALM, p), v.clone()))
        .collect();
    write_bdb(path, &pairs);
}

#[test]
fn login_scram_sha1_and_sha256_with_our_authpassword() {
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sasldb2");
        let secret = ScramSecret::generate(hash, "correct horse ✓".as_bytes(), 4096).unwrap();
        write_db(&db, &[("alice", AUTH_PASSWORD, secret.encode().to_vec())]);
        let mech = hash.mechanism();

        let log = scram_login(dir.path(), &db, mech, "alice", "correct horse ✓")
            .unwrap_or_else(|e| panic!("{mech} with the right password: {e}"));
        // The server-first message carries our salt and count: it read our value.
        let salt_and_count = format!(",s={},i=4096", B64.encode(secret.salt()));
        assert!(log.contains(&salt_and_count), "{mech}: {log}");

        let err = scram_login(dir.path(), &db, mech, "alice", "correct horse")
            .expect_err("a wrong password must be refused");
        assert!(err.contains("authentication failure"), "{mech}: {err}");
    }
}

/// gsasl checks the server signature, which only the right ServerKey produces: with
/// a good StoredKey but a foreign ServerKey the server accepts the client and the
/// client rejects the server.
#[test]
fn login_scram_server_key_is_checked_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2");
    let good = ScramSecret::generate(ScramHash::Sha1, b"pw", 4096).unwrap();
    let other = ScramSecret::compute(ScramHash::Sha1, b"other", good.salt(), 4096).unwrap();
    let forged = format!(
        "SCRAM-SHA-1$4096:{}${}:{}",
        B64.encode(good.salt()),
        B64.encode(good.stored_key()),
        B64.encode(other.server_key())
    );
    write_db(&db, &[("alice", AUTH_PASSWORD, forged.into_bytes())]);
    let err = scram_login(dir.path(), &db, "SCRAM-SHA-1", "alice", "pw")
        .expect_err("gsasl must refuse a wrong server signature");
    // The server accepted the proof and sent its signature; gsasl then quit.
    assert!(err.contains("   = v="), "{err}");
    assert!(err.contains("gsasl exited"), "{err}");
    assert!(!err.contains("authentication failure"), "{err}");

    write_db(&db, &[("alice", AUTH_PASSWORD, good.encode().to_vec())]);
    scram_login(dir.path(), &db, "SCRAM-SHA-1", "alice", "pw").unwrap();
}

/// Cyrus's SCRAM-SHA-1 reads only an authPassword with its own prefix.
#[test]
fn login_scram_sha1_ignores_a_sha256_authpassword() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2");
    let secret = ScramSecret::generate(ScramHash::Sha256, b"pw", 4096).unwrap();
    write_db(&db, &[("alice", AUTH_PASSWORD, secret.encode().to_vec())]);
    let err = scram_login(dir.path(), &db, "SCRAM-SHA-1", "alice", "pw")
        .expect_err("a SCRAM-SHA-256 value must not serve SCRAM-SHA-1");
    assert!(err.contains("No valid SCRAM-SHA-1 secret found"), "{err}");
    scram_login(dir.path(), &db, "SCRAM-SHA-256", "alice", "pw").unwrap();
}

#[test]
fn login_otp_with_our_secret() {
    for alg in OtpAlgorithm::ALL {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sasldb2");
        let ossl = openssl_legacy_conf(dir.path());
        let env: &[(&str, &Path)] = if alg == OtpAlgorithm::Md4 {
            &[("OPENSSL_CONF", &ossl)]
        } else {
            &[]
        };
        let pw = "a pass phrase ✓";
        let secret = OtpSecret::generate(alg, b"Host", pw.as_bytes()).unwrap();
        let stored = secret.encode().to_vec();
        write_db(&db, &[("alice", OTP_SECRET, stored.clone())]);
        let seed = String::from_utf8(secret.seed().to_vec()).unwrap();

        // Wrong pass phrase: refused, and the server puts the secret back unchanged
        // (it re-encodes what it parsed, so Cyrus read every field as we wrote it).
        let (challenge, res) = otp_login(dir.path(), &db, "alice", "a pass phrase", env);
        assert_eq!(challenge, format!("otp-{alg} 498 {seed} ext"));
        let err = res.expect_err("a wrong pass phrase must be refused");
        assert!(err.contains("authentication failure"), "{alg}: {err}");
        let after = value_of(&db_dump(&db), "alice", OTP_SECRET);
        assert_eq!(
            String::from_utf8_lossy(&after),
            String::from_utf8_lossy(&stored),
            "{alg}"
        );

        // Right pass phrase: accepted, and the server steps the chain down to 498.
        let (_, res) = otp_login(dir.path(), &db, "alice", pw, env);
        res.unwrap_or_else(|e| panic!("{alg} with the right pass phrase: {e}"));
        let after = value_of(&db_dump(&db), "alice", OTP_SECRET);
        let next = OtpSecret::parse(&after).unwrap();
        assert_eq!(
            (next.sequence(), next.seed()),
            (498, secret.seed()),
            "{alg}"
        );
        assert_eq!(next.timeout(), 0);
        assert_eq!(
            next.otp(),
            &otp_chain(alg, secret.seed(), pw.as_bytes(), 498).unwrap()
        );
        assert!(next.verify_password(pw.as_bytes()).unwrap());
    }
}
