//! TLS against a private PostgreSQL server that accepts nothing else: `ssl = on`, only
//! `hostssl` lines in `pg_hba.conf`, certificates made here by the openssl tool (a CA
//! of the test's own, another CA, a server certificate naming `db.example.test` and
//! 127.0.0.1, a client certificate for the role `certuser`).
//!
//! - `tls_only_server_*`: `verify-full` with the CA works (by address and by name,
//!   from URL parameters and from `PGSSLMODE`/`PGSSLROOTCERT`); a wrong CA and a wrong
//!   host name each fail naming the reason; `sslmode=disable` is refused by the
//!   server's `pg_hba.conf` and the error says so; a client certificate login works
//!   and a 0644 key is refused.
//! - `postfix_smtpd_*`: Cyrus's pgsql plugin (libpq) in a Postfix smtpd, with
//!   `PGSSLMODE=verify-full` and `PGSSLROOTCERT` in its environment
//!   (`import_environment`), authenticates users our tools wrote over TLS.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sasldb::{Database, Location};

use crate::support::ours;
use crate::support::pg::{PgOptions, PgServer, ROLE};
use crate::support::postfix::{Mech, Options, PostfixInstance};
use crate::support::{peer, run_ok, run_with_stdin};

/// The server's name in its certificate.
const SERVER_NAME: &str = "db.example.test";
/// The role that logs in with a client certificate (its certificate's CN).
const CERT_ROLE: &str = "certuser";

/// Certificates made for one test run.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap()
    }

    /// A CA (`ca.crt`), another CA (`other-ca.crt`), the server's certificate and key
    /// (`server.crt`, `server.key`: CN db.example.test, IP 127.0.0.1)
    /// and a client certificate and key for certuser (`client.crt`, `client.key`,
    /// mode 0600), all ECDSA P-256.
    fn make() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("sasldb-pki-")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let pki = Pki { dir };
        let openssl = |args: &[&str]| {
            run_ok(
                Command::new(peer("openssl"))
                    .args(args)
                    .current_dir(pki.dir.path())
                    .stdin(Stdio::null()),
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "sasldb test CA"), ("other-ca", "another CA")] {
            let mut a = vec!["req", "-x509"];
            a.extend(ec);
            let key = format!("{name}.key");
            let crt = format!("{name}.crt");
            let subj = format!("/CN={cn}");
            a.extend([
                "-keyout",
                key.as_str(),
                "-out",
                crt.as_str(),
                "-days",
                "3",
                "-subj",
                subj.as_str(),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&a);
        }
        for (name, cn, ext) in [
            (
                "server",
                SERVER_NAME,
                // The name only in the CN (as PostgreSQL's own recipe makes it), the
                // address in a subjectAltName: libpq, and OpenSSL here, match the name
                // against the CN when no DNS entry exists.
                "subjectAltName=IP:127.0.0.1\n\
                 extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
                    .to_string(),
            ),
            (
                "client",
                CERT_ROLE,
                "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n".to_string(),
            ),
        ] {
            fs::write(pki.path(&format!("{name}.ext")), ext).unwrap();
            let (key, csr, crt, extf) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            let subj = format!("/CN={cn}");
            let mut a = vec!["req"];
            a.extend(ec);
            a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(&a);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "3",
                "-extfile",
                &extf,
            ]);
            fs::set_permissions(pki.path(&key), fs::Permissions::from_mode(0o600)).unwrap();
        }
        for crt in ["ca.crt", "other-ca.crt", "server.crt", "client.crt"] {
            fs::set_permissions(pki.path(crt), fs::Permissions::from_mode(0o644)).unwrap();
        }
        pki
    }
}

/// A server with ssl = on whose pg_hba.conf has hostssl lines only: passwords for the
/// superuser and the test role, a client certificate for certuser.
fn tls_server(pki: &Pki) -> PgServer {
    let srv = PgServer::start_with(&PgOptions {
        settings: vec![
            "ssl=on".into(),
            "ssl_cert_file=server.crt".into(),
            "ssl_key_file=server.key".into(),
            "ssl_ca_file=root.crt".into(),
            "log_connections=on".into(),
        ],
        hba: Some(format!(
            "# TLS only: no host or hostnossl line.\n\
             hostssl all postgres 127.0.0.1/32 scram-sha-256\n\
             hostssl all {ROLE} 127.0.0.1/32 scram-sha-256\n\
             hostssl all {CERT_ROLE} 127.0.0.1/32 cert\n"
        )),
        files: vec![
            ("server.crt".into(), pki.read("server.crt"), 0o644),
            ("server.key".into(), pki.read("server.key"), 0o600),
            ("root.crt".into(), pki.read("ca.crt"), 0o644),
        ],
        harness_tls: true,
    });
    srv.superuser(&format!("CREATE ROLE {CERT_ROLE} LOGIN"));
    srv
}

/// Our `sasldb` with the server's environment, a HOME without ~/.postgresql, and
/// `envs` on top.
fn sasldb(
    srv: &PgServer,
    home: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: &[u8],
) -> Output {
    let mut cmd = ours::sasldb();
    cmd.args(args);
    srv.env(&mut cmd);
    cmd.env("HOME", home);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_with_stdin(&mut cmd, stdin)
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
    assert!(
        !out.status.success(),
        "{what}: succeeded\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err}"
    );
    eprintln!("{what}: {}", err.trim_end());
    err
}

#[test]
fn tls_only_server_verify_full_wrong_ca_wrong_name_disable_and_client_certificates() {
    let pki = Pki::make();
    let srv = tls_server(&pki);
    let db = srv.database("tlsdb", "");
    let home = tempfile::tempdir().unwrap();
    let ca = pki.path("ca.crt");
    let ca_s = ca.to_str().unwrap();
    let port = srv.port();
    let by_addr = |params: &str| format!("postgresql://{ROLE}@127.0.0.1:{port}/{db}?{params}");
    let by_name = |name: &str, params: &str| {
        format!("postgresql://{ROLE}@{name}:{port}/{db}?hostaddr=127.0.0.1&{params}")
    };

    // verify-full with the CA: by address (the certificate's IP entry), and by name
    // (its CN: it has no DNS entry; hostaddr says where to connect).
    let url = by_addr(&format!("sslmode=verify-full&sslrootcert={ca_s}"));
    ok(
        "init",
        &sasldb(&srv, home.path(), &["-f", &url, "init"], &[], b""),
    );
    ok(
        "import",
        &sasldb(
            &srv,
            home.path(),
            &["-f", &url, "import", "-"],
            &[],
            b"alice@example.org:a pw\nbob@example.org:b pw\n",
        ),
    );
    let url = by_name(
        SERVER_NAME,
        &format!("sslmode=verify-full&sslrootcert={ca_s}"),
    );
    let out = ok(
        "list by name",
        &sasldb(&srv, home.path(), &["-f", &url, "list"], &[], b""),
    );
    assert!(
        out.contains("alice@example.org") && out.contains("bob@example.org"),
        "{out}"
    );
    // The same from the environment, as libpq reads it.
    let out = ok(
        "PGSSLMODE, PGSSLROOTCERT",
        &sasldb(
            &srv,
            home.path(),
            &["-f", &by_addr(""), "list"],
            &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca_s)],
            b"",
        ),
    );
    assert!(out.contains("alice@example.org"), "{out}");
    // Every one of those sessions was encrypted (the server accepts nothing else, and
    // says so in its log).
    let log = srv.log();
    let ours: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("connection authorized: user=sasl") && l.contains("application_name=sasldb")
        })
        .collect();
    assert!(ours.len() >= 4, "{log}");
    assert!(ours.iter().all(|l| l.contains("SSL enabled")), "{ours:#?}");
    // The library, in this process.
    let lib = format!(
        "{}&passfile={}",
        by_name(
            SERVER_NAME,
            &format!("sslmode=verify-full&sslrootcert={ca_s}")
        ),
        srv.pgpass().display()
    );
    let d = Database::open(&lib.parse::<Location>().unwrap()).unwrap();
    assert_eq!(d.users().unwrap().count(), 2);
    drop(d);

    // A wrong CA: the error names the reason and the file.
    let other = pki.path("other-ca.crt");
    let other_s = other.to_str().unwrap();
    for url in [
        by_addr(&format!("sslmode=verify-full&sslrootcert={other_s}")),
        by_addr(&format!("sslmode=verify-ca&sslrootcert={other_s}")),
        // require with a root file checks the chain too, as libpq does.
        by_addr(&format!("sslmode=require&sslrootcert={other_s}")),
    ] {
        let err = failed(
            "wrong CA",
            &sasldb(&srv, home.path(), &["-f", &url, "list"], &[], b""),
        );
        assert!(
            err.contains(&format!(
                "is not signed by the CA certificates in {other_s}"
            )),
            "{err}"
        );
    }
    // A wrong host name: verify-full refuses, naming the host; verify-ca (chain only)
    // accepts.
    let err = failed(
        "wrong host name",
        &sasldb(
            &srv,
            home.path(),
            &[
                "-f",
                &by_name(
                    "other.example.test",
                    &format!("sslmode=verify-full&sslrootcert={ca_s}"),
                ),
                "list",
            ],
            &[],
            b"",
        ),
    );
    assert!(
        err.contains("the server's certificate does not name the host `other.example.test`"),
        "{err}"
    );
    ok(
        "verify-ca, other name",
        &sasldb(
            &srv,
            home.path(),
            &[
                "-f",
                &by_name(
                    "other.example.test",
                    &format!("sslmode=verify-ca&sslrootcert={ca_s}"),
                ),
                "list",
            ],
            &[],
            b"",
        ),
    );
    // verify-full without any root file: refused before connecting, naming the file.
    let err = failed(
        "no root file",
        &sasldb(
            &srv,
            home.path(),
            &["-f", &by_addr("sslmode=verify-full"), "list"],
            &[],
            b"",
        ),
    );
    assert!(
        err.contains(".postgresql/root.crt does not exist") && err.contains("sslrootcert"),
        "{err}"
    );
    // require and the default (prefer) without a root file: encrypted, unchecked.
    for params in ["sslmode=require", ""] {
        ok(
            params,
            &sasldb(
                &srv,
                home.path(),
                &["-f", &by_addr(params), "list"],
                &[],
                b"",
            ),
        );
    }

    // sslmode=disable: the server's pg_hba.conf has no line for a plain connection.
    let err = failed(
        "sslmode=disable",
        &sasldb(
            &srv,
            home.path(),
            &["-f", &by_addr("sslmode=disable"), "list"],
            &[],
            b"",
        ),
    );
    assert!(
        err.contains("no pg_hba.conf entry")
            && err.contains("no encryption")
            && err.contains("refuses this connection without TLS"),
        "{err}"
    );

    // A client certificate: certuser logs in with it, no password anywhere.
    srv.superuser(&format!("CREATE DATABASE certdb OWNER {CERT_ROLE}"));
    let key = pki.path("client.key");
    let cert_url = |extra: &str| {
        format!(
            "postgresql://{CERT_ROLE}@{SERVER_NAME}:{port}/certdb?hostaddr=127.0.0.1\
             &sslmode=verify-full&sslrootcert={ca_s}{extra}"
        )
    };
    let with_cert = cert_url(&format!(
        "&sslcert={}&sslkey={}",
        pki.path("client.crt").display(),
        key.display()
    ));
    let no_pw = |args: &[&str], envs: &[(&str, &str)], stdin: &[u8]| {
        let mut cmd = ours::sasldb();
        cmd.args(args);
        srv.env(&mut cmd);
        cmd.env_remove("PGPASSFILE").env("HOME", home.path());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run_with_stdin(&mut cmd, stdin)
    };
    ok("cert init", &no_pw(&["-f", &with_cert, "init"], &[], b""));
    ok(
        "cert import",
        &no_pw(
            &["-f", &with_cert, "import", "-"],
            &[],
            b"carol@example.org:c pw\n",
        ),
    );
    let out = ok(
        "cert list, PGSSLCERT/PGSSLKEY",
        &no_pw(
            &["-f", &cert_url(""), "list"],
            &[
                ("PGSSLCERT", pki.path("client.crt").to_str().unwrap()),
                ("PGSSLKEY", key.to_str().unwrap()),
            ],
            b"",
        ),
    );
    assert!(out.contains("carol@example.org"), "{out}");
    // Without a certificate the server refuses (its pg_hba.conf line says `cert`).
    let err = failed(
        "no client certificate",
        &no_pw(&["-f", &cert_url(""), "list"], &[], b""),
    );
    assert!(err.contains("certificate"), "{err}");
    // A key readable by others is refused, as libpq refuses it, before connecting.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = failed("0644 key", &no_pw(&["-f", &with_cert, "list"], &[], b""));
    assert!(
        err.contains(&format!(
            "private key file {} has group or world access",
            key.display()
        )),
        "{err}"
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    ok(
        "0600 key again",
        &no_pw(&["-f", &with_cert, "list"], &[], b""),
    );
}

/// Cyrus's pgsql plugin (libpq, in smtpd) reaches the TLS-only server with
/// PGSSLMODE=verify-full and PGSSLROOTCERT from smtpd's environment, and authenticates
/// users our tools wrote over TLS; with another CA in PGSSLROOTCERT it cannot.
#[test]
fn postfix_smtpd_pgsql_plugin_over_tls_from_its_environment() {
    let pki = Pki::make();
    let srv = tls_server(&pki);
    let db = srv.database("tlspostfix", "");
    let home = tempfile::tempdir().unwrap();
    let ca_s = pki.path("ca.crt").to_str().unwrap().to_string();
    let url = format!(
        "postgresql://{ROLE}@127.0.0.1:{}/{db}?sslmode=verify-full&sslrootcert={ca_s}",
        srv.port()
    );
    let realm = "mail.example.test";
    let input = format!("alice@{realm}:alice tls pw\nbob@{realm}:bob's pw\n");
    ok(
        "import over TLS",
        &sasldb(
            &srv,
            home.path(),
            &["-f", &url, "import", "-"],
            &[],
            input.as_bytes(),
        ),
    );

    let conf = sasldb::internals::sql::pgsql::PLUGIN_CONFIG
        .replace("HOST:PORT", &format!("127.0.0.1:{}", srv.port()))
        .replace("sql_user: USER", &format!("sql_user: {ROLE}"))
        .replace("PASSWORD", srv.role_password())
        .replace("DATABASE", &db);
    let start = |ca: &Path| {
        // smtpd (as the postfix user) must read the CA file: a copy in a directory of
        // the instance's own is made by the caller; Postfix hands smtpd only the
        // variables import_environment names.
        PostfixInstance::start(Options {
            sasl_conf: Some(format!(
                "pwcheck_method: auxprop\nmech_list: PLAIN LOGIN CRAM-MD5\n{conf}"
            )),
            main_cf_extra: vec![format!(
                "import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C \
                 PGSSLMODE=verify-full PGSSLROOTCERT={}",
                ca.display()
            )],
            ..Options::default()
        })
    };
    let before = srv.log().len();
    let inst = start(&pki.path("ca.crt"));
    assert_eq!(inst.default_realm(), realm);
    inst.check_logins(&[
        ("alice", "alice tls pw", Mech::Plain, 235),
        ("alice", "alice tls pw", Mech::CramMd5, 235),
        ("bob", "bob's pw", Mech::Login, 235),
        ("alice", "wrong", Mech::Plain, 535),
        ("nobody", "x", Mech::Plain, 535),
    ]);
    // The plugin's sessions (libpq sets no application_name) were TLS ones.
    let log = srv.log()[before..].to_string();
    let plugin: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("connection authorized: user={ROLE} database={db}"))
                && !l.contains("application_name=sasldb")
        })
        .collect();
    assert!(
        !plugin.is_empty(),
        "no plugin session in the server log:\n{log}"
    );
    assert!(
        plugin.iter().all(|l| l.contains("SSL enabled")),
        "{plugin:#?}"
    );
    drop(inst);

    // Another CA in smtpd's PGSSLROOTCERT: libpq refuses the server, no login works.
    let inst = start(&pki.path("other-ca.crt"));
    let r = inst.auth("alice", "alice tls pw", Mech::Plain);
    assert_ne!(r.code, Some(235), "{}", r.transcript);
}
