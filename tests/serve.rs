//! `sasldb serve` and `sasldb checkpassword` against their real peers.
//!
//! Every test starts its own server (the `sasldb` binary, in a scratch directory,
//! on private sockets) and, where it needs them, its own Postfix instance
//! ([`crate::support::postfix`]), Dovecot instance (below: `dovecot -c` with a private
//! `base_dir`) or PostgreSQL database ([`crate::support::pg`]). Nothing under /etc is read
//! or written except Postfix's `postfix-files` and Dovecot's built-in defaults.
//!
//! What the tests prove:
//! - Postfix (`smtpd_sasl_type = dovecot`) accepts PLAIN, LOGIN, CRAM-MD5 (swaks)
//!   and SCRAM-SHA-1/256 (gsasl, which checks the server signature) from our socket,
//!   and refuses wrong passwords and unknown users with 535, for every store;
//! - `doveadm auth test -a` accepts and refuses;
//! - Postfix with Cyrus libsasl `pwcheck_method: saslauthd` on our mux socket
//!   authenticates PLAIN and LOGIN; `testsaslauthd` prints what it prints for
//!   Cyrus's saslauthd;
//! - Dovecot's `passdb checkpassword` running `sasldb checkpassword` accepts PLAIN,
//!   and does CRAM-MD5 itself from the lookup mode's `{PLAIN}` answer;
//! - a running server sees password changes (ours: replaced file; Cyrus's: in-place
//!   libdb write), deletions and format conversions at the next request;
//! - hostile clients get the protocol's error and the server keeps serving, 1,000
//!   idle connections do not delay a login, failures wait without blocking others,
//!   penalties hit only the address or user that failed;
//! - stale sockets are replaced, live ones refused, socket activation, privilege
//!   drop, SIGHUP and SIGTERM work, and no password reaches the log.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Group, Pid, Uid, chown};
use sasldb::account::secrets::ScramHash;
use sasldb::serve::mech::scram;
use sasldb::serve::saslauthd::encode_request;

use crate::support::peers::peer;
use crate::support::pg::server as pg_server;
use crate::support::postfix::{Mech, Options, PostfixInstance};
use crate::support::run::{run_ok_with_stdin, run_with_stdin};

/// The realm of bare logins in these tests.
const REALM: &str = "example.org";

fn sasldb_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sasldb")
}

/// `sasldb -f DB ARGS` with `stdin`, as root with the database group root.
fn sasldb(db: &str, args: &[&str], stdin: &[u8], env: &[(&str, OsString)]) -> Output {
    let mut cmd = Command::new(sasldb_bin());
    cmd.arg("-f").arg(db).args(args).env("SASLDB_GROUP", "root");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_stdin(&mut cmd, stdin)
}

fn sasldb_ok(db: &str, args: &[&str], stdin: &[u8], env: &[(&str, OsString)]) {
    let out = sasldb(db, args, stdin, env);
    assert!(
        out.status.success(),
        "sasldb {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Imports `user@realm:password` lines; `hashed`: with `--hashed-only` (SCRAM-SHA-1
/// authPassword, no plaintext).
fn import(db: &str, lines: &str, hashed: bool, env: &[(&str, OsString)]) {
    let mut args = vec!["import", "-q"];
    if hashed {
        args.push("--hashed-only");
    }
    args.push("-");
    sasldb_ok(db, &args, lines.as_bytes(), env);
}

// ---------------------------------------------------------------------------------
// The server under test

/// How to start a server.
#[derive(Default)]
struct Opts {
    /// The database (`-f`).
    db: String,
    /// `-u`; `None`: none given.
    realm: Option<String>,
    dovecot: Option<PathBuf>,
    mux: Option<PathBuf>,
    /// More `serve` arguments.
    args: Vec<String>,
    env: Vec<(String, OsString)>,
}

/// A running `sasldb serve`; stopped on drop.
struct Server {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn command(o: &Opts) -> (Command, tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("sasldb-serve-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("log");
        let mut cmd = Command::new(sasldb_bin());
        cmd.arg("-f").arg(&o.db);
        if let Some(r) = &o.realm {
            cmd.args(["-u", r]);
        }
        cmd.arg("serve");
        if let Some(p) = &o.dovecot {
            cmd.arg("--dovecot").arg(p);
        }
        if let Some(p) = &o.mux {
            cmd.arg("--saslauthd").arg(p);
        }
        cmd.args(&o.args)
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("MAIL_CONFIG")
            .stdin(Stdio::null());
        // Both handles append to one file.
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f);
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        (cmd, dir, log)
    }

    /// Starts a server and waits until every socket accepts connections.
    fn start(o: &Opts) -> Server {
        let (mut cmd, dir, log) = Self::command(o);
        let child = cmd.spawn().unwrap();
        let mut s = Server {
            child: Some(child),
            log,
            _dir: dir,
        };
        let sockets: Vec<&PathBuf> = o.dovecot.iter().chain(o.mux.iter()).collect();
        s.wait_ready(&sockets);
        s
    }

    fn wait_ready(&mut self, sockets: &[&PathBuf]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if sockets.iter().all(|p| UnixStream::connect(p).is_ok())
                && self.log().contains("serving ")
            {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sasldb serve exited ({st}) at start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "sasldb serve did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.pid()), s).unwrap();
    }

    /// SIGTERM, then waits (at most 10 s) for the exit status.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sasldb serve ignored SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scratch directory for sockets that smtpd (user postfix) can reach: the
/// directory is root:postfix 0750 inside a 0711 temporary directory.
struct SocketDir {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl SocketDir {
    fn new() -> SocketDir {
        let tmp = tempfile::Builder::new()
            .prefix("sasldb-sock-")
            .tempdir()
            .unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o711)).unwrap();
        let dir = tmp.path().join("s");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let gid = Group::from_name("postfix")
            .unwrap()
            .expect("group postfix")
            .gid;
        chown(&dir, Some(Uid::from_raw(0)), Some(gid)).unwrap();
        SocketDir { _tmp: tmp, dir }
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

// ---------------------------------------------------------------------------------
// Clients

/// A Dovecot auth-client protocol client.
struct Dovecot {
    r: BufReader<UnixStream>,
    w: UnixStream,
    /// The MECH lines' names and flags.
    mechs: Vec<String>,
}

impl Dovecot {
    /// Connects, reads the handshake and answers it (`VERSION 1 minor`, `CPID`).
    fn connect(path: &Path, minor: u32) -> Dovecot {
        let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut d = Dovecot {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            mechs: Vec::new(),
        };
        let first = d.line().expect("handshake");
        assert_eq!(first, "VERSION\t1\t2");
        loop {
            let l = d.line().expect("handshake");
            if l == "DONE" {
                break;
            }
            if let Some(m) = l.strip_prefix("MECH\t") {
                d.mechs.push(m.to_string());
            }
        }
        d.send(&format!(
            "VERSION\t1\t{minor}\nCPID\t{}",
            std::process::id()
        ));
        d
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
    }

    /// The next line, `None` at end of file.
    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end_matches('\n').to_string()),
        }
    }

    /// `AUTH id PLAIN ... resp=`; returns the reply line.
    fn plain(&mut self, id: u32, user: &str, pw: &str, extra: &str) -> String {
        let resp = B64.encode(format!("\0{user}\0{pw}"));
        self.send(&format!(
            "AUTH\t{id}\tPLAIN\tservice=smtp\t{extra}resp={resp}"
        ));
        self.line().expect("reply")
    }

    fn closed(&mut self) -> bool {
        self.line().is_none()
    }
}

/// A CRAM-MD5 exchange over a Dovecot protocol connection: the reply line.
fn dovecot_cram(d: &mut Dovecot, id: u32, user: &str, pw: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    d.send(&format!("AUTH\t{id}\tCRAM-MD5\tservice=smtp"));
    let l = d.line().unwrap();
    let ch = l
        .strip_prefix(&format!("CONT\t{id}\t"))
        .unwrap_or_else(|| panic!("{l}"));
    let ch = B64.decode(ch).unwrap();
    let mut mac = <Hmac<md5::Md5> as KeyInit>::new_from_slice(pw.as_bytes()).unwrap();
    mac.update(&ch);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    d.send(&format!(
        "CONT\t{id}\t{}",
        B64.encode(format!("{user} {hex}"))
    ));
    d.line().unwrap()
}

/// A SCRAM exchange over a Dovecot protocol connection (checks the server
/// signature): the final reply line.
fn dovecot_scram(d: &mut Dovecot, id: u32, hash: ScramHash, user: &str, pw: &str) -> String {
    let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
    d.send(&format!(
        "AUTH\t{id}\t{}\tservice=smtp\tresp={}",
        hash.mechanism(),
        B64.encode(format!("n,,{bare}"))
    ));
    let l = d.line().unwrap();
    let Some(sf) = l.strip_prefix(&format!("CONT\t{id}\t")) else {
        return l;
    };
    let sf = B64.decode(sf).unwrap();
    let (msg, want) =
        scram::client_final(hash, pw.as_bytes(), b"n,,", bare.as_bytes(), &sf).unwrap();
    d.send(&format!("CONT\t{id}\t{}", B64.encode(msg)));
    let l = d.line().unwrap();
    let Some(v) = l.strip_prefix(&format!("CONT\t{id}\t")) else {
        return l;
    };
    assert_eq!(B64.decode(v).unwrap(), want, "server signature");
    d.send(&format!("CONT\t{id}\t"));
    d.line().unwrap()
}

/// One saslauthd mux request; the answer, `None` if the server closed without one.
fn mux(path: &Path, login: &str, pw: &str, service: &str, realm: &str) -> Option<String> {
    mux_raw(
        path,
        &encode_request(
            login.as_bytes(),
            pw.as_bytes(),
            service.as_bytes(),
            realm.as_bytes(),
        ),
    )
}

fn mux_raw(path: &Path, req: &[u8]) -> Option<String> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(req);
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut v = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut v).ok()?;
    Some(String::from_utf8_lossy(&v).into_owned())
}

// ---------------------------------------------------------------------------------
// Postfix with smtpd_sasl_type = dovecot, every store

/// The logins every store must get right through Postfix: alice has a plaintext
/// password, bob only a SCRAM-SHA-1 authPassword (hashed-only).
fn dovecot_cases() -> Vec<(&'static str, &'static str, Mech, u16)> {
    let mut cases = Vec::new();
    for mech in [
        Mech::Plain,
        Mech::Login,
        Mech::CramMd5,
        Mech::ScramSha1,
        Mech::ScramSha256,
    ] {
        cases.extend([
            ("alice", "Alice pw 1", mech, 235),
            ("alice@example.org", "Alice pw 1", mech, 235),
            ("alice", "Alice pw 2", mech, 535),
            ("nobody", "Alice pw 1", mech, 535),
        ]);
    }
    cases.extend([
        ("bob", "Bob pw", Mech::ScramSha1, 235),
        ("bob", "Bob pw", Mech::Plain, 235),
        ("bob", "Bob pw", Mech::Login, 235),
        ("bob", "Bob pw", Mech::CramMd5, 535),
        ("bob", "Bob pw", Mech::ScramSha256, 535),
        ("bob", "Bob px", Mech::ScramSha1, 535),
    ]);
    cases
}

/// Fills `db` with alice and bob, serves it, and runs [`dovecot_cases`] through a
/// private Postfix.
fn postfix_dovecot(db: &str, env: &[(&str, OsString)]) {
    import(db, "alice@example.org:Alice pw 1\n", false, env);
    import(db, "bob@example.org:Bob pw\n", true, env);
    let sockets = SocketDir::new();
    let sock = sockets.path().join("dovecot");
    let server = Server::start(&Opts {
        db: db.into(),
        realm: Some(REALM.into()),
        dovecot: Some(sock.clone()),
        args: vec!["--failure-delay=0".into(), "--max-failures=0".into()],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Opts::default()
    });
    // The last setting of a main.cf parameter wins: Dovecot SASL on our socket.
    let inst = PostfixInstance::start(Options {
        main_cf_extra: vec![
            "smtpd_sasl_type = dovecot".into(),
            format!("smtpd_sasl_path = {}", sock.display()),
        ],
        ..Options::default()
    });
    inst.check_logins(&dovecot_cases());
    let log = server.log();
    for pw in ["Alice pw 1", "Alice pw 2", "Bob pw"] {
        assert!(!log.contains(pw), "a password in the log:\n{log}");
    }
    assert!(log.contains("mech=CRAM-MD5 user=\"bob\""), "{log}");
}

#[test]
fn postfix_dovecot_bdb() {
    let dir = tempfile::tempdir().unwrap();
    postfix_dovecot(
        &format!("bdb:{}", dir.path().join("sasldb2").display()),
        &[],
    );
}

#[test]
fn postfix_dovecot_gdbm() {
    let dir = tempfile::tempdir().unwrap();
    postfix_dovecot(
        &format!("gdbm:{}", dir.path().join("sasldb2").display()),
        &[],
    );
}

#[test]
fn postfix_dovecot_lmdb() {
    let dir = tempfile::tempdir().unwrap();
    postfix_dovecot(
        &format!("lmdb:{}", dir.path().join("sasldb2").display()),
        &[],
    );
}

#[test]
fn postfix_dovecot_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    postfix_dovecot(
        &format!("sqlite:{}", dir.path().join("sasldb2").display()),
        &[],
    );
}

/// A PostgreSQL connection killed under the server: the next request reconnects.
#[test]
fn postgresql_connection_reestablished() {
    let srv = pg_server();
    let db = srv.database("serve_reconnect", "");
    let url = srv.url(&db);
    let env = [("PGPASSFILE", OsString::from(srv.pgpass()))];
    sasldb_ok(&url, &["init"], b"", &env);
    import(&url, "alice@example.org:Alice pw 1\n", false, &env);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("mux");
    let server = Server::start(&Opts {
        db: url.clone(),
        realm: Some(REALM.into()),
        mux: Some(sock.clone()),
        args: vec!["--failure-delay=0".into(), "--threads=1".into()],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Opts::default()
    });
    assert!(mux_ok(&sock, "alice", "Alice pw 1"));
    for round in 0..3 {
        srv.superuser(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        ));
        assert!(
            mux_ok(&sock, "alice", "Alice pw 1"),
            "round {round}: no reconnection\n{}",
            server.log()
        );
        assert!(!mux_ok(&sock, "alice", "Alice pw 2"));
    }
    // The server's own connection went down with the database: a temporary failure,
    // never a success; back when it is back.
    srv.superuser(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"));
    srv.superuser(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ));
    assert_eq!(
        mux(&sock, "alice", "Alice pw 1", "smtp", "").as_deref(),
        Some("NO temporary failure")
    );
    srv.superuser(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    assert!(mux_ok(&sock, "alice", "Alice pw 1"), "{}", server.log());
}

#[test]
fn postfix_dovecot_postgresql() {
    let srv = pg_server();
    let db = srv.database("serve", "");
    let url = srv.url(&db);
    let env = [("PGPASSFILE", OsString::from(srv.pgpass()))];
    sasldb_ok(&url, &["init"], b"", &env);
    postfix_dovecot(&url, &env);
}

// ---------------------------------------------------------------------------------
// doveadm, testsaslauthd, Postfix with Cyrus's saslauthd client

/// A private Dovecot configuration directory for doveadm and dovecot.
struct DovecotConf {
    dir: tempfile::TempDir,
}

impl DovecotConf {
    /// `dovecot.conf` with a private base_dir, state_dir and log, plus `body`.
    fn new(body: &str) -> DovecotConf {
        let dir = tempfile::Builder::new()
            .prefix("sasldb-dovecot-")
            .tempdir()
            .unwrap();
        for d in ["run", "state"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let d = dir.path().display();
        fs::write(
            dir.path().join("dovecot.conf"),
            format!(
                "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
                 protocols =\nssl = no\n{body}"
            ),
        )
        .unwrap();
        DovecotConf { dir }
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// `doveadm -c CONF auth test [-a SOCKET] -x service=smtp USER PASSWORD`: the
    /// exit status and output.
    fn auth_test(&self, socket: Option<&Path>, user: &str, pw: &str) -> Output {
        let mut cmd = Command::new(peer("doveadm"));
        cmd.arg("-c").arg(self.conf()).args(["auth", "test"]);
        if let Some(s) = socket {
            cmd.arg("-a").arg(s);
        }
        cmd.args(["-x", "service=smtp", user, pw])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

#[test]
fn doveadm_auth_test() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2").display().to_string();
    import(&db, "alice@example.org:Alice pw 1\n", false, &[]);
    let sock = dir.path().join("auth");
    let _server = Server::start(&Opts {
        db: db.clone(),
        realm: Some(REALM.into()),
        dovecot: Some(sock.clone()),
        args: vec!["--failure-delay=0".into()],
        ..Opts::default()
    });
    let conf = DovecotConf::new("");
    for (user, pw, code) in [
        ("alice@example.org", "Alice pw 1", 0),
        ("alice", "Alice pw 1", 0),
        ("alice", "Alice pw 2", 77),
        ("nobody", "Alice pw 1", 77),
    ] {
        let out = conf.auth_test(Some(&sock), user, pw);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{user}/{pw}:\n{text}");
        if code == 0 {
            assert!(text.contains(&format!("user={user}")), "{text}");
        }
    }
}

#[test]
fn testsaslauthd_and_postfix_with_the_saslauthd_client() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2").display().to_string();
    import(
        &db,
        "alice@mail.example.test:Alice pw 1\ncarol@other.test:Carol pw\n",
        false,
        &[],
    );
    let sockets = SocketDir::new();
    let mux_path = sockets.path().join("mux");
    let inst = PostfixInstance::start(Options {
        sasl_conf: Some(format!(
            "pwcheck_method: saslauthd\nsaslauthd_path: {}\nmech_list: PLAIN LOGIN\n",
            mux_path.display()
        )),
        ..Options::default()
    });
    // No -u: the realm of a bare login is Postfix's (this instance's myhostname,
    // lowercased), read through MAIL_CONFIG as every sasldb command reads it.
    let server = Server::start(&Opts {
        db,
        mux: Some(mux_path.clone()),
        args: vec!["--failure-delay=0".into(), "--max-failures=0".into()],
        env: vec![("MAIL_CONFIG".into(), inst.conf_dir().into())],
        ..Opts::default()
    });

    let testsaslauthd = |args: &[&str]| {
        let out = Command::new(peer("testsaslauthd"))
            .arg("-f")
            .arg(&mux_path)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let ok = (Some(0), "0: OK \"Success.\"\n".to_string());
    let no = (Some(255), "0: NO \"authentication failed\"\n".to_string());
    assert_eq!(
        testsaslauthd(&["-u", "alice", "-p", "Alice pw 1", "-s", "smtp"]),
        ok
    );
    assert_eq!(
        testsaslauthd(&["-u", "alice", "-r", "mail.example.test", "-p", "Alice pw 1"]),
        ok
    );
    assert_eq!(testsaslauthd(&["-u", "alice", "-p", "Alice pw 2"]), no);
    assert_eq!(testsaslauthd(&["-u", "carol", "-p", "Carol pw"]), no);
    assert_eq!(
        testsaslauthd(&["-u", "carol", "-r", "other.test", "-p", "Carol pw"]),
        ok
    );
    assert_eq!(testsaslauthd(&["-u", "nobody", "-p", "x"]), no);

    let mut cases = Vec::new();
    for mech in [Mech::Plain, Mech::Login] {
        cases.extend([
            ("alice", "Alice pw 1", mech, 235),
            ("alice@mail.example.test", "Alice pw 1", mech, 235),
            ("alice", "Alice pw 2", mech, 535),
            ("carol@other.test", "Carol pw", mech, 235),
            ("carol", "Carol pw", mech, 535),
            ("nobody", "x", mech, 535),
        ]);
    }
    inst.check_logins(&cases);
    assert!(!server.log().contains("Alice pw"), "{}", server.log());
}

// ---------------------------------------------------------------------------------
// checkpassword

/// `sasldb -f DB -u REALM checkpassword PROG...` with `input` on descriptor 3.
fn checkpassword(db: &str, input: &[u8], prog: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(sasldb_bin());
    cmd.args(["-f", db, "-u", REALM, "checkpassword"])
        .args(prog);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Descriptor 3 is the child's stdin, duplicated.
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::dup2(0, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run_with_stdin(&mut cmd, input)
}

#[test]
fn checkpassword_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2").display().to_string();
    import(&db, "alice@example.org:Alice pw 1\n", false, &[]);
    let code = |input: &[u8], prog: &[&str]| checkpassword(&db, input, prog, &[]).status.code();
    assert_eq!(
        code(b"alice@example.org\0Alice pw 1\0\0", &["/bin/true"]),
        Some(0)
    );
    assert_eq!(code(b"alice\0Alice pw 1\0\0", &["/bin/true"]), Some(0));
    // PROG runs with USER set to the login, and its status is ours.
    let out = checkpassword(
        &db,
        b"alice\0Alice pw 1\0\0",
        &["/bin/sh", "-c", "test \"$USER\" = alice && exit 7"],
        &[],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(code(b"alice\0Alice pw 2\0\0", &["/bin/true"]), Some(1));
    assert_eq!(code(b"nobody\0Alice pw 1\0\0", &["/bin/true"]), Some(1));
    assert_eq!(code(b"alice\0\0\0", &["/bin/true"]), Some(1));
    assert_eq!(code(b"alice", &["/bin/true"]), Some(2));
    assert_eq!(code(&[b'a'; 600], &["/bin/true"]), Some(2));
    // Internal failures are 111, never 1.
    let missing = dir.path().join("missing").display().to_string();
    assert_eq!(
        checkpassword(&missing, b"alice\0Alice pw 1\0\0", &["/bin/true"], &[])
            .status
            .code(),
        Some(111)
    );
    assert_eq!(
        code(b"alice\0Alice pw 1\0\0", &["/nonexistent/program"]),
        Some(111)
    );
    // Lookup mode without Dovecot's reply pipe cannot answer: 111; an unknown user: 3.
    let look = [("AUTHORIZED", "1"), ("CREDENTIALS_LOOKUP", "1")];
    assert_eq!(
        checkpassword(&db, b"alice\0\0\0", &["/bin/true"], &look)
            .status
            .code(),
        Some(111)
    );
    assert_eq!(
        checkpassword(&db, b"nobody\0\0\0", &["/bin/true"], &look)
            .status
            .code(),
        Some(3)
    );
}

#[test]
fn dovecot_passdb_checkpassword() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2").display().to_string();
    // carol's password holds a TAB, which Dovecot refuses in a PLAIN login ("password
    // having illegal chars") but takes from the lookup's escaped {PLAIN} answer.
    import(
        &db,
        "alice@example.org:Alice pw 1\ncarol@example.org:Carol\tpw\n",
        false,
        &[],
    );
    import(&db, "bob@example.org:Bob pw\n", true, &[]);
    let conf = DovecotConf::new(&format!(
        "disable_plaintext_auth = no\n\
         auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256\n\
         auth_failure_delay = 0\n\
         passdb {{\n  driver = checkpassword\n  args = {} -f {db} -u {REALM} checkpassword\n}}\n\
         userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}}\n\
         # The test database is root's: run the auth process (and so checkpassword) as root.\n\
         service auth {{\n  user = root\n}}\n",
        sasldb_bin()
    ));
    // Output to a file, not a pipe: the daemon it leaves behind would hold a pipe open.
    let out = tempfile::tempfile().unwrap();
    let st = Command::new(peer("dovecot"))
        .arg("-c")
        .arg(conf.conf())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    assert!(st.success(), "dovecot: {st}\n{}", conf.log());
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Ok(pid) = fs::read_to_string(&self.0)
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(10);
                while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    let _stop = Stop(conf.dir.path().join("run/master.pid"));
    let client_socket = conf.dir.path().join("run/auth-client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&client_socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "dovecot did not start:\n{}",
            conf.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    for (user, pw, code) in [
        ("alice@example.org", "Alice pw 1", 0),
        ("alice", "Alice pw 1", 0),
        ("alice", "Alice pw 2", 77),
        ("nobody", "x", 77),
        ("bob", "Bob pw", 0),
    ] {
        let out = conf.auth_test(None, user, pw);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{user}/{pw:?}: {out:?}\n{}",
            conf.log()
        );
    }
    // Mechanisms Dovecot computes itself, from the lookup mode's {PLAIN} answer.
    let mut d = Dovecot::connect(&client_socket, 2);
    assert!(
        dovecot_cram(&mut d, 1, "alice@example.org", "Alice pw 1")
            .starts_with("OK\t1\tuser=alice@example.org"),
        "{}",
        conf.log()
    );
    assert!(dovecot_cram(&mut d, 2, "alice@example.org", "wrong").starts_with("FAIL\t2"));
    assert!(
        dovecot_scram(
            &mut d,
            3,
            ScramHash::Sha256,
            "alice@example.org",
            "Alice pw 1"
        )
        .starts_with("OK\t3"),
        "{}",
        conf.log()
    );
    assert!(
        dovecot_cram(&mut d, 5, "carol@example.org", "Carol\tpw").starts_with("OK\t5"),
        "{}",
        conf.log()
    );
    // bob's SCRAM-SHA-1 secret, handed over in Dovecot's {SCRAM-SHA-1} format.
    assert!(
        dovecot_scram(&mut d, 4, ScramHash::Sha1, "bob@example.org", "Bob pw").starts_with("OK\t4"),
        "{}",
        conf.log()
    );
}

// ---------------------------------------------------------------------------------
// A running server and a changing database

/// `user@example.org`'s password through the mux socket.
fn mux_ok(path: &Path, user: &str, pw: &str) -> bool {
    mux(path, user, pw, "smtp", "").as_deref() == Some("OK")
}

#[test]
fn changes_take_effect_at_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sasldb2");
    let db = db_path.display().to_string();
    import(
        &db,
        "alice@example.org:pw 0\nbob@example.org:Bob pw\n",
        false,
        &[],
    );
    let sock = dir.path().join("mux");
    let dsock = dir.path().join("auth");
    let server = Server::start(&Opts {
        db: db.clone(),
        realm: Some(REALM.into()),
        mux: Some(sock.clone()),
        dovecot: Some(dsock.clone()),
        args: vec!["--failure-delay=0".into(), "--max-failures=0".into()],
        ..Opts::default()
    });
    // A persistent Dovecot connection (as Postfix keeps one) across every change.
    let mut d = Dovecot::connect(&dsock, 0);
    let mut id = 0;
    let mut dovecot_ok = |user: &str, pw: &str| {
        id += 1;
        d.plain(id, user, pw, "").starts_with("OK")
    };
    assert!(mux_ok(&sock, "alice", "pw 0"));

    // Our saslpasswd2 replaces the file; Cyrus's (libdb) writes into it in place, in
    // the same second as the previous change: both are seen at once.
    let cyrus_conf = tempfile::tempdir().unwrap();
    fs::write(cyrus_conf.path().join("saslpasswd.conf"), "").unwrap();
    for i in 1..=6 {
        let pw = format!("pw {i}");
        let mut cmd = if i % 2 == 1 {
            let mut c = Command::new(env!("CARGO_BIN_EXE_saslpasswd2"));
            c.env("SASLDB_GROUP", "root");
            c
        } else {
            let mut c = Command::new(peer("saslpasswd2"));
            c.env("SASL_CONF_PATH", cyrus_conf.path());
            c
        };
        cmd.args(["-p", "-f", &db, "-u", REALM, "alice"]);
        run_ok_with_stdin(&mut cmd, pw.as_bytes());
        assert!(
            mux_ok(&sock, "alice", &pw),
            "change {i} not seen\n{}",
            server.log()
        );
        assert!(
            !mux_ok(&sock, "alice", &format!("pw {}", i - 1)),
            "old password {i} still works"
        );
        assert!(dovecot_ok("alice", &pw), "change {i} not seen over Dovecot");
    }

    // Deleted: refused at once.
    let mut del = Command::new(env!("CARGO_BIN_EXE_saslpasswd2"));
    del.env("SASLDB_GROUP", "root")
        .args(["-d", "-f", &db, "-u", REALM, "alice"]);
    run_ok_with_stdin(&mut del, b"");
    assert!(!mux_ok(&sock, "alice", "pw 6"));
    assert!(!dovecot_ok("alice", "pw 6"));
    assert!(mux_ok(&sock, "bob", "Bob pw"));

    // Converted to another format and renamed over the database (an atomic
    // replace, as our writers make), then back: still served, and still seeing
    // changes.
    for (i, to) in ["lmdb", "gdbm", "sqlite", "bdb"].into_iter().enumerate() {
        let tmp = dir.path().join(format!("new-{i}"));
        sasldb_ok(
            &db,
            &["convert", &db, &format!("{to}:{}", tmp.display())],
            b"",
            &[],
        );
        fs::rename(&tmp, &db_path).unwrap();
        assert!(
            mux_ok(&sock, "bob", "Bob pw"),
            "after conversion to {to}\n{}",
            server.log()
        );
        assert!(dovecot_ok("bob", "Bob pw"), "after conversion to {to}");
        import(&db, &format!("bob@example.org:Bob {to}\n"), false, &[]);
        assert!(
            mux_ok(&sock, "bob", &format!("Bob {to}")),
            "{to}\n{}",
            server.log()
        );
        assert!(!mux_ok(&sock, "bob", "Bob pw"), "{to}");
        assert!(dovecot_ok("bob", &format!("Bob {to}")), "{to}");
        import(&db, "bob@example.org:Bob pw\n", false, &[]);
    }
    let mut server = server;
    assert!(server.stop().success(), "{}", server.log());
}

/// Times this thread has given up the processor waiting (its voluntary context
/// switches).
fn waits_of_this_thread() -> u64 {
    fs::read_to_string("/proc/thread-self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in /proc/thread-self/status")
}

/// A client that waits for its answer in a blocking `read` (as libsasl's saslauthd
/// client does) is woken once per answer: the server takes the request off the
/// socket only after answering. Taking it first wakes the sleeping client for the
/// freed buffer space, to find nothing and sleep again: two waits per request.
#[test]
fn a_blocking_client_is_woken_once_per_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2").display().to_string();
    import(&db, "alice@example.org:pw 0\n", false, &[]);
    let sock = dir.path().join("mux");
    let _server = Server::start(&Opts {
        db,
        realm: Some(REALM.into()),
        mux: Some(sock.clone()),
        args: vec!["--failure-delay=0".into()],
        ..Opts::default()
    });
    // Warm up (the database opened, the page cache filled).
    for _ in 0..50 {
        assert!(mux_ok(&sock, "alice", "pw 0"));
    }
    let n = 2000;
    let before = waits_of_this_thread();
    for _ in 0..n {
        assert!(mux_ok(&sock, "alice", "pw 0"));
    }
    let per = (waits_of_this_thread() - before) as f64 / f64::from(n);
    assert!(
        per < 1.4,
        "{per:.2} waits per request: the client is woken before its answer"
    );
}

// ---------------------------------------------------------------------------------
// Hostile clients

/// Raises this process's open-file limit (for a thousand client sockets).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(8192);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn hostile_clients_get_errors_and_others_are_served() {
    raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2").display().to_string();
    import(&db, "alice@example.org:Alice pw 1\n", false, &[]);
    let dsock = dir.path().join("auth");
    let msock = dir.path().join("mux");
    let server = Server::start(&Opts {
        db,
        realm: Some(REALM.into()),
        dovecot: Some(dsock.clone()),
        mux: Some(msock.clone()),
        args: vec!["--failure-delay=0".into(), "--max-failures=0".into()],
        ..Opts::default()
    });
    let login = |what: &str| {
        let t = Instant::now();
        let mut d = Dovecot::connect(&dsock, 0);
        let r = d.plain(1, "alice", "Alice pw 1", "");
        assert!(r.starts_with("OK\t1\tuser=alice"), "{what}: {r}");
        assert_eq!(
            mux(&msock, "alice", "Alice pw 1", "smtp", "").as_deref(),
            Some("OK")
        );
        t.elapsed()
    };
    let quiet = (0..5).map(|_| login("baseline")).min().unwrap();

    // 1,000 idle connections: silent, mid-handshake, mid-line, and idle after the
    // handshake; half on each socket.
    let mut idle = Vec::new();
    for i in 0..1000 {
        let path = if i % 2 == 0 { &dsock } else { &msock };
        let mut s = UnixStream::connect(path).unwrap();
        match i % 8 {
            0 => s.write_all(b"VERSION\t1\t0\n").unwrap(),
            2 => s
                .write_all(b"VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLA")
                .unwrap(),
            4 => s.write_all(b"VERSION\t1\t0\nCPID\t1\n").unwrap(),
            1 => s.write_all(b"\x00\x05ali").unwrap(),
            _ => {}
        }
        idle.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let busy = (0..5)
        .map(|_| login("with 1,000 idle connections"))
        .max()
        .unwrap();
    assert!(
        busy < quiet + Duration::from_millis(500),
        "a login took {busy:?} with 1,000 idle connections (alone: {quiet:?})"
    );

    // Dovecot protocol errors.
    let mut d = Dovecot::connect(&dsock, 0);
    d.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=not*base64");
    assert_eq!(
        d.line().unwrap(),
        "FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response"
    );
    d.send("CONT\t9\tAAAA");
    assert_eq!(
        d.line().unwrap(),
        "FAIL\t9\treason=Authentication request timed out"
    );
    d.send("AUTH\t2\tLOGIN\tservice=smtp");
    assert_eq!(
        d.line().unwrap(),
        format!("CONT\t2\t{}", B64.encode("Username:"))
    );
    d.send(&format!("CONT\t2\t{}", B64.encode("x".repeat(600))));
    assert_eq!(d.line().unwrap(), "FAIL\t2\treason=Authentication failed");
    let long_user = "u".repeat(600);
    assert!(d.plain(3, &long_user, "pw", "").starts_with("FAIL\t3\t"));
    d.send("AUTH\t4\tLOGIN\tservice=smtp\tresp=");
    assert!(d.line().unwrap().starts_with("CONT\t4\t"));
    d.send("AUTH\t4\tLOGIN\tservice=smtp");
    assert!(d.closed(), "a duplicate id must close the connection");
    for (bad, what) in [
        ("AUTH\t1\tNTLM\tservice=smtp", "unknown mechanism"),
        ("AUTH\t1\tPLAIN", "no service"),
        ("AUTH\t0\tPLAIN\tservice=smtp", "id 0"),
        ("BOGUS", "unknown command"),
    ] {
        let mut d = Dovecot::connect(&dsock, 0);
        d.send(bad);
        assert!(d.closed(), "{what}: not closed");
    }
    let mut d = Dovecot::connect(&dsock, 0);
    let _ = d.w.write_all(&vec![b'A'; 20_000]);
    assert!(d.closed(), "an over-long line: not closed");
    let mut s = UnixStream::connect(&dsock).unwrap();
    s.write_all(b"HELLO\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    assert!(
        all.ends_with(b"DONE\n"),
        "a bad handshake: not closed after the server's"
    );

    // Mux protocol errors.
    let long = "x".repeat(300);
    assert_eq!(mux(&msock, &long, "pw", "smtp", "").as_deref(), Some("NO"));
    assert_eq!(
        mux(&msock, "alice", &long, "smtp", "").as_deref(),
        Some("NO")
    );
    assert_eq!(
        mux(&msock, "", "pw", "smtp", "").as_deref(),
        Some("NO NULL login received")
    );
    assert_eq!(
        mux(&msock, "alice", "", "smtp", "").as_deref(),
        Some("NO NULL password received")
    );
    assert_eq!(mux_raw(&msock, b"\x00\x05al"), None);

    // Still serving, and still quickly.
    drop(idle);
    login("after the hostile clients");
    let log = server.log();
    assert!(log.contains("unsupported mechanism NTLM"), "{log}");
    assert!(!log.contains("Alice pw 1"), "{log}");
}

// ---------------------------------------------------------------------------------
// Failure delay, penalties, logging

#[test]
fn failure_delays_and_penalties_hold_back_only_the_failing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2").display().to_string();
    import(
        &db,
        "alice@example.org:Alice pw 1\ncarol@example.org:Carol pw\n",
        false,
        &[],
    );
    let dsock = dir.path().join("auth");
    let msock = dir.path().join("mux");
    let server = Server::start(&Opts {
        db,
        realm: Some(REALM.into()),
        dovecot: Some(dsock.clone()),
        mux: Some(msock.clone()),
        args: vec![
            "--failure-delay=1".into(),
            "--max-failures=2".into(),
            "--max-penalty=2".into(),
        ],
        ..Opts::default()
    });
    let timed = |user: &str, pw: &str, rip: &str| {
        let mut d = Dovecot::connect(&dsock, 0);
        let t = Instant::now();
        let r = d.plain(1, user, pw, &format!("rip={rip}\t"));
        (r, t.elapsed())
    };
    let second = Duration::from_secs(1);

    // A failure waits a second; a login on another connection meanwhile does not.
    std::thread::scope(|s| {
        let slow = s.spawn(|| timed("alice", "wrong 1", "10.0.0.1"));
        std::thread::sleep(Duration::from_millis(100));
        let (r, t) = timed("carol", "Carol pw", "10.0.0.2");
        assert!(r.starts_with("OK"), "{r}");
        assert!(
            t < Duration::from_millis(700),
            "a login waited {t:?} behind a failure"
        );
        let (r, t) = slow.join().unwrap();
        assert_eq!(r, "FAIL\t1\tuser=alice\treason=Authentication failed");
        assert!(t >= second, "the failure was answered after {t:?}");
    });
    // The mux socket too.
    let t = Instant::now();
    assert_eq!(
        mux(&msock, "nobody", "x", "smtp", "").as_deref(),
        Some("NO")
    );
    assert!(t.elapsed() >= second);

    // A second failure from 10.0.0.1 (for another user): that address now waits 1 s
    // before anything is checked, even with a right password; 10.0.0.2 does not.
    let (r, _) = timed("nobody", "x", "10.0.0.1");
    assert!(r.starts_with("FAIL"), "{r}");
    let (r, t) = timed("carol", "Carol pw", "10.0.0.1");
    assert!(r.starts_with("OK") && t >= second, "{r} after {t:?}");
    let (r, t) = timed("carol", "Carol pw", "10.0.0.2");
    assert!(r.starts_with("OK") && t < second, "{r} after {t:?}");

    // alice has 1 failure; one more (from a fresh address) penalises her name, but
    // only for addresses that have failed: from a clean address she gets in at once,
    // from 10.0.0.3 after a second (which clears her count).
    let (r, _) = timed("alice", "wrong 2", "10.0.0.3");
    assert!(r.starts_with("FAIL"), "{r}");
    let (r, t) = timed("alice", "Alice pw 1", "10.0.0.3");
    assert!(r.starts_with("OK") && t >= second, "{r} after {t:?}");
    let (r, t) = timed("alice", "Alice pw 1", "10.0.0.3");
    assert!(r.starts_with("OK") && t < second, "{r} after {t:?}");
    for (pw, rip) in [("wrong 3", "10.0.0.5"), ("wrong 4", "10.0.0.6")] {
        assert!(timed("alice", pw, rip).0.starts_with("FAIL"));
    }
    let (r, t) = timed("alice", "Alice pw 1", "10.0.0.4");
    assert!(r.starts_with("OK") && t < second, "{r} after {t:?}");
    // Over the mux socket (no address), a penalised user always waits.
    for pw in ["wrong 3", "wrong 4"] {
        assert_eq!(mux(&msock, "carol", pw, "smtp", "").as_deref(), Some("NO"));
    }
    let t = Instant::now();
    assert_eq!(
        mux(&msock, "carol", "Carol pw", "smtp", "").as_deref(),
        Some("OK")
    );
    assert!(t.elapsed() >= second, "{:?}", t.elapsed());

    let log = server.log();
    assert!(
        log.contains("authentication failed: mech=PLAIN user=\"alice\" rip=10.0.0.1 service=smtp: wrong password"),
        "{log}"
    );
    assert!(
        log.contains("mech=PLAIN user=\"nobody\" rip=10.0.0.1"),
        "{log}"
    );
    for pw in ["wrong 1", "wrong 2", "wrong 3", "Alice pw 1", "Carol pw"] {
        assert!(!log.contains(pw), "{pw:?} in the log:\n{log}");
    }
}

// ---------------------------------------------------------------------------------
// Sockets, activation, privileges, signals

#[test]
fn sockets_activation_privileges_and_signals() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let db_path = dir.path().join("sasldb2");
    let db = db_path.display().to_string();
    import(&db, "alice@example.org:Alice pw 1\n", false, &[]);
    let opts = |dovecot: &Path, extra: &[&str]| Opts {
        db: db.clone(),
        realm: Some(REALM.into()),
        dovecot: Some(dovecot.to_path_buf()),
        args: extra.iter().map(|s| s.to_string()).collect(),
        ..Opts::default()
    };

    // A socket file left behind by a killed server is replaced.
    let sock = dir.path().join("auth");
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut a = Server::start(&opts(&sock, &[]));
    let m = fs::metadata(&sock).unwrap();
    assert_eq!(m.mode() & 0o777, 0o660);
    assert_eq!(m.uid(), 0);
    assert_eq!(
        Gid::from_raw(m.gid()),
        Group::from_name("postfix").unwrap().unwrap().gid
    );
    assert!(
        Dovecot::connect(&sock, 0)
            .plain(1, "alice", "Alice pw 1", "")
            .starts_with("OK")
    );

    // One in use is refused, and left alone.
    let (mut cmd, _d, log) = Server::command(&opts(&sock, &[]));
    let st = cmd.status().unwrap();
    assert_eq!(st.code(), Some(1));
    assert!(
        fs::read_to_string(&log).unwrap().contains("in use"),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    assert!(
        Dovecot::connect(&sock, 0)
            .plain(1, "alice", "Alice pw 1", "")
            .starts_with("OK")
    );

    // SIGHUP reopens; SIGTERM stops cleanly and removes the socket.
    a.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.log().contains("SIGHUP") {
        assert!(Instant::now() < deadline, "{}", a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        Dovecot::connect(&sock, 0)
            .plain(1, "alice", "Alice pw 1", "")
            .starts_with("OK")
    );
    assert!(a.stop().success(), "{}", a.log());
    assert!(!sock.exists(), "the socket outlived the server");

    // Mode and group as asked; as root, dropping to nobody after binding.
    let sock2 = dir.path().join("auth2");
    fs::set_permissions(&db_path, fs::Permissions::from_mode(0o644)).unwrap();
    let b = Server::start(&opts(
        &sock2,
        &["--socket-mode=0666", "--socket-group=root", "--user=nobody"],
    ));
    let m = fs::metadata(&sock2).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o666, 0, 0));
    let status = fs::read_to_string(format!("/proc/{}/status", b.pid())).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == nobody.uid.to_string()),
        "{uid_line}"
    );
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert!(!groups.split_whitespace().any(|g| g == "0"), "{groups}");
    assert!(
        Dovecot::connect(&sock2, 0)
            .plain(1, "alice", "Alice pw 1", "")
            .starts_with("OK")
    );
    drop(b);

    // systemd socket activation: descriptor 3, named by LISTEN_FDNAMES; the server
    // does not remove a socket it did not create.
    let act = dir.path().join("activated");
    let listener = UnixListener::bind(&act).unwrap();
    let (cmd, _d2, log) = Server::command(&Opts {
        db: db.clone(),
        realm: Some(REALM.into()),
        ..Opts::default()
    });
    let program = cmd.get_program().to_owned();
    let args: Vec<OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=dovecot exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::OpenOptions::new().append(true).open(&log).unwrap())
        .stderr(fs::OpenOptions::new().append(true).open(&log).unwrap());
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        sh.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut c = Server {
        child: Some(sh.spawn().unwrap()),
        log,
        _dir: tempfile::tempdir().unwrap(),
    };
    drop(listener);
    c.wait_ready(&[&act]);
    assert!(
        Dovecot::connect(&act, 0)
            .plain(1, "alice", "Alice pw 1", "")
            .starts_with("OK")
    );
    assert!(c.stop().success(), "{}", c.log());
    assert!(
        act.exists(),
        "an activated socket must be left to the service manager"
    );
}

// ---------------------------------------------------------------------------------
// Secrets in memory

/// The server and checkpassword, run with tests/reliability/memscan.c preloaded, leave no 8-byte
/// piece of the passwords they were sent (right and wrong) in their writable memory
/// when they exit (heap, freed or not, stacks of every thread, statics).
#[test]
fn no_password_left_in_memory() {
    const PW: &str = "Zq7pL9mW2xR5vK3nTb8c";
    const WRONG: &str = "Hj4sNf6dQy1gUe0aPw9r";
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("memscan.so");
    let out = Command::new(peer("gcc"))
        .args(["-shared", "-fPIC", "-O2", "-Wl,-z,now", "-o"])
        .arg(&lib)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reliability/memscan.c"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secrets: Vec<String> = [PW, WRONG]
        .iter()
        .map(|p| p.bytes().map(|b| format!("{:02x}", b ^ 0x5a)).collect())
        .collect();
    let secrets = secrets.join(",");
    let db = dir.path().join("sasldb2").display().to_string();
    import(&db, &format!("alice@example.org:{PW}\n"), false, &[]);
    let report = dir.path().join("report");
    let scan_env = |report: &Path| {
        vec![
            ("LD_PRELOAD".to_string(), OsString::from(&lib)),
            (
                "SASLDB_MEMSCAN_SECRETS".to_string(),
                OsString::from(&secrets),
            ),
            ("SASLDB_MEMSCAN_OUT".to_string(), OsString::from(report)),
        ]
    };
    let check = |what: &str, report: &Path| {
        let text = fs::read_to_string(report).unwrap_or_default();
        assert!(
            text.contains("scanned "),
            "{what}: the scan did not run: {text:?}"
        );
        let hits: Vec<&str> = text.lines().filter(|l| l.starts_with("hit")).collect();
        assert!(
            hits.is_empty(),
            "{what}: password bytes left in memory: {hits:?}"
        );
    };

    let dsock = dir.path().join("auth");
    let msock = dir.path().join("mux");
    let mut server = Server::start(&Opts {
        db: db.clone(),
        realm: Some(REALM.into()),
        dovecot: Some(dsock.clone()),
        mux: Some(msock.clone()),
        args: vec!["--failure-delay=0".into()],
        env: scan_env(&report),
    });
    let mut d = Dovecot::connect(&dsock, 0);
    assert!(d.plain(1, "alice", PW, "").starts_with("OK"));
    assert!(d.plain(2, "alice", WRONG, "").starts_with("FAIL"));
    d.send("AUTH\t3\tLOGIN\tservice=smtp");
    d.line().unwrap();
    d.send(&format!("CONT\t3\t{}", B64.encode("alice")));
    d.line().unwrap();
    d.send(&format!("CONT\t3\t{}", B64.encode(PW)));
    assert!(d.line().unwrap().starts_with("OK"));
    drop(d);
    assert!(mux_ok(&msock, "alice", PW));
    assert!(!mux_ok(&msock, "alice", WRONG));
    assert!(server.stop().success(), "{}", server.log());
    check("sasldb serve", &report);

    for (input, code) in [
        (format!("alice\0{WRONG}\0\0"), 1),
        (format!("nobody\0{PW}\0\0"), 1),
    ] {
        let report = dir.path().join(format!("report-{code}-{}", input.len()));
        let env: Vec<(String, OsString)> = scan_env(&report);
        let mut cmd = Command::new(sasldb_bin());
        cmd.args(["-f", &db, "-u", REALM, "checkpassword", "/bin/true"]);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        // SAFETY: dup2 is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::dup2(0, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = run_with_stdin(&mut cmd, input.as_bytes());
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        check("sasldb checkpassword", &report);
    }
}

// ---------------------------------------------------------------------------------
// Time-outs and the connection cap

/// Whether the server closes `s` within `limit` (reading and discarding what it
/// sends first).
fn closed_within(s: &mut UnixStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) if start.elapsed() < limit => {}
            _ => return false,
        }
    }
}

/// Waits (at most 20 s) until no connection waits in the backlog of a socket the
/// process `pid` listens on (`ss` gives a listener's backlog as its receive queue;
/// the server binds through /proc/self/fd, so its listeners are found by process).
fn wait_accepted(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let owner = format!("pid={pid},");
    loop {
        let out = Command::new(peer("ss"))
            .arg("-xlpH")
            .output()
            .expect("ss (iproute2)");
        let text = String::from_utf8_lossy(&out.stdout);
        let queues: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&owner))
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        assert!(!queues.is_empty(), "ss lists no listener of {pid}:\n{text}");
        if queues.iter().all(|q| *q == "0") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections still not accepted by {pid}: {queues:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn timeouts_and_the_connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sasldb2").display().to_string();
    import(&db, "alice@example.org:Alice pw 1\n", false, &[]);
    let dsock = dir.path().join("auth");
    let msock = dir.path().join("mux");
    let server = Server::start(&Opts {
        db,
        realm: Some(REALM.into()),
        dovecot: Some(dsock.clone()),
        mux: Some(msock.clone()),
        args: vec![
            "--failure-delay=0".into(),
            "--timeout=3".into(),
            "--idle-timeout=8".into(),
            "--max-connections=4".into(),
        ],
        ..Opts::default()
    });
    // --timeout is 3 s so that a loaded machine cannot time the first connections
    // out (freeing a slot) before the fifth has been shown to wait.
    let t = Instant::now();
    // No handshake, half a line, half a mux request: closed after --timeout.
    let mut silent = UnixStream::connect(&dsock).unwrap();
    let mut half = UnixStream::connect(&dsock).unwrap();
    half.write_all(b"VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPL")
        .unwrap();
    let mut mux_half = UnixStream::connect(&msock).unwrap();
    mux_half.write_all(b"\x00\x05ali").unwrap();
    // A finished handshake and nothing open: kept until --idle-timeout.
    let mut idle = Dovecot::connect(&dsock, 0);
    // The cap (4 connections) is reached once the server has taken all four (the mux
    // one on another thread than the Dovecot ones): a fifth waits in the backlog,
    // unanswered.
    wait_accepted(server.pid());
    let mut fifth = UnixStream::connect(&dsock).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(fifth.read(&mut b).is_err(), "a fifth connection was served");
    for (s, what) in [
        (&mut silent, "silent"),
        (&mut half, "half a line"),
        (&mut mux_half, "half a mux request"),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(8)),
            "{what}: not closed"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // Room again: the fifth gets its handshake.
    fifth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"DONE\n") {
        let n = fifth
            .read(&mut b)
            .expect("the fifth connection is served once there is room");
        assert!(n > 0);
        got.extend_from_slice(&b[..n]);
    }
    // The idle connection still works, then goes after --idle-timeout.
    assert!(idle.plain(1, "alice", "Alice pw 1", "").starts_with("OK"));
    let t = Instant::now();
    assert!(idle.closed());
    assert!(t.elapsed() >= Duration::from_secs(7), "{:?}", t.elapsed());
}
