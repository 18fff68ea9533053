//! A private, throw-away Postfix instance for end-to-end SMTP AUTH tests.
//!
//! [`PostfixInstance::start`] builds a whole Postfix installation under one scratch
//! directory (`/tmp/sasldb-postfix-XXXXXX`, mode 0750 `root:postfix`):
//!
//! ```text
//! conf/main.cf          config_directory (postfix -c conf/)
//! conf/master.cf        127.0.0.1:PORT smtpd, anvil, postlog: nothing else
//! conf/sasl/smtpd.conf  cyrus_sasl_config_path; smtpd_sasl_path = smtpd
//! queue/                queue_directory (Postfix creates its subdirectories)
//! data/                 data_directory (master.lock)
//! db/sasldb2            the sasldb the instance authenticates against
//! tools/                SASL_CONF_PATH for Debian's saslpasswd2
//! maillog               every log line (maillog_file, written by postlogd)
//! ```
//!
//! It is started with `postfix -c <dir>/conf start`, the supported way to run a
//! second instance (its integrity checks create the queue subdirectories). Root needs
//! no `alternate_config_directories` entry for that (only the set-gid commands
//! `postdrop`/`postqueue` check the list), so nothing under `/etc/postfix` is written
//! (the scripts only read `postfix-files` there): this machine need not even have a
//! main.cf. main.cf and master.cf are dated an hour back, else every Postfix command
//! re-reads a just-written main.cf for up to 2 s. Logging goes to `maillog_file`
//! through `postlogd` (Postfix 3.4+), so no syslog daemon and no `/dev/log` are
//! needed. No service is chrooted (column 5 = `n`) unless [`Options::chroot`] asks for
//! smtpd to be: otherwise the sasldb path is the same for smtpd as for the test. The SMTP port is picked at run time (a free ephemeral port;
//! a lost race is retried with another one), so any number of instances run side by
//! side; nothing is shared between them.
//!
//! Dropping the instance runs `postfix -c <dir>/conf stop`, kills whatever is left
//! of the master's process group (the master is a session leader; every daemon it
//! starts stays in its group), waits until no process of the group is alive, and
//! removes the directory. (The daemons outlive the master by a moment, so they are
//! reparented to PID 1, which reaps their zombies.)
//!
//! Client side: [`PostfixInstance::auth`] logs in with swaks (PLAIN, LOGIN,
//! CRAM-MD5) or `gsasl --smtp` (SCRAM-SHA-1, SCRAM-SHA-256) and returns the SMTP code
//! of the AUTH reply. [`PostfixInstance::session`] opens a raw SMTP session, to try
//! several AUTH commands against one smtpd process.
//!
//! Database side: [`PostfixInstance::put`], [`PostfixInstance::delete_user`] write
//! `db/sasldb2` through this crate's [`Transaction`] (root:postfix 0640, atomic
//! replace); [`PostfixInstance::saslpasswd2`] writes it with Debian's tool. [`PostfixInstance::ours`] is one of
//! our binaries set up for the instance.

use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, chown};
use sasldb::record::USER_PASSWORD;
use sasldb::{Key, Location, Transaction, WriteOptions};

use super::{free_port, ours, peer, postfix_gid, run_ok_with_stdin, set_mode, write_aged};

/// The longest any one client or `postfix` command may take.
const CMD_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest wait for one SMTP reply in a raw session.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `postfix start` is retried when another process took the port.
const PORT_ATTEMPTS: usize = 5;

/// How the instance is configured.
#[derive(Debug, Clone)]
pub struct Options {
    /// `myhostname`: the realm of a bare login (lowercased by libsasl) when
    /// `local_domain` is unset.
    pub myhostname: String,
    /// `smtpd_sasl_local_domain` (used verbatim as the realm of a bare login).
    pub local_domain: Option<String>,
    /// `mech_list` of smtpd.conf.
    pub mech_list: String,
    /// Replaces the whole generated `smtpd.conf` (e.g. for `auxprop_plugin: sql`).
    pub sasl_conf: Option<String>,
    /// Lines appended to main.cf.
    pub main_cf_extra: Vec<String>,
    /// `saslpasswd.conf` for [`PostfixInstance::saslpasswd2`] (empty: none).
    pub saslpasswd_conf: String,
    /// Run smtpd chrooted to the queue directory (master.cf column 5 = `y`): it then
    /// opens `queue/<sasldb path>`, the copy `sasldb sync-chroot` writes.
    pub chroot: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            myhostname: "Mail.Example.TEST".into(),
            local_domain: None,
            mech_list: "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256".into(),
            sasl_conf: None,
            main_cf_extra: Vec::new(),
            saslpasswd_conf: String::new(),
            chroot: false,
        }
    }
}

/// SASL mechanisms the clients can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    Plain,
    Login,
    CramMd5,
    ScramSha1,
    ScramSha256,
}

impl Mech {
    /// The mechanisms swaks speaks.
    pub const SWAKS: [Mech; 3] = [Mech::Plain, Mech::Login, Mech::CramMd5];

    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Login => "LOGIN",
            Mech::CramMd5 => "CRAM-MD5",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::ScramSha256 => "SCRAM-SHA-256",
        }
    }
}

/// What one login attempt got.
#[derive(Debug, Clone)]
pub struct AuthResult {
    /// The SMTP code answering the AUTH exchange (235 success, 535 failure), or None
    /// when the client never got that far.
    pub code: Option<u16>,
    /// The client's whole output.
    pub transcript: String,
}

/// A running private Postfix instance; stopped and removed on drop.
pub struct PostfixInstance {
    dir: tempfile::TempDir,
    port: u16,
    opts: Options,
    /// The master's pid, which is also its process group.
    master: Option<i32>,
    /// The `postfix` command.
    postfix: PathBuf,
}

impl PostfixInstance {
    /// Builds the instance's files and starts it; panics (with the log) if Postfix
    /// does not come up. Every peer it needs is checked first.
    pub fn start(opts: Options) -> PostfixInstance {
        for tool in ["postfix", "postconf", "swaks", "gsasl", "saslpasswd2"] {
            peer(tool);
        }
        let postfix_gid = postfix_gid();
        let dir = tempfile::Builder::new()
            .prefix("sasldb-postfix-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        // The postfix user must reach db/ (smtpd reads the sasldb after dropping
        // privileges); nobody else needs to.
        set_mode(root, 0o750);
        chown(root, Some(Uid::from_raw(0)), Some(postfix_gid)).unwrap();
        for sub in ["conf/sasl", "queue", "data", "db", "tools"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        for sub in ["conf", "conf/sasl", "queue", "tools"] {
            set_mode(&root.join(sub), 0o755);
        }
        set_mode(&root.join("db"), 0o750);
        chown(&root.join("db"), None, Some(postfix_gid)).unwrap();
        set_mode(&root.join("data"), 0o700);
        let postfix_uid = nix::unistd::User::from_name("postfix")
            .unwrap()
            .expect("user postfix")
            .uid;
        chown(&root.join("data"), Some(postfix_uid), None).unwrap();
        fs::write(root.join("tools/saslpasswd.conf"), &opts.saslpasswd_conf).unwrap();

        let mut inst = PostfixInstance {
            dir,
            port: 0,
            opts,
            master: None,
            postfix: peer("postfix"),
        };
        inst.write_sasl_conf();
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            inst.port = free_port();
            inst.write_main_cf();
            inst.write_master_cf();
            let out = run_timeout(
                Command::new(&inst.postfix)
                    .arg("-c")
                    .arg(inst.conf_dir())
                    .arg("start")
                    .stdin(Stdio::null()),
                CMD_TIMEOUT,
            );
            if out.status.success() {
                inst.master = inst.read_master_pid();
                inst.wait_for_port();
                return inst;
            }
            let log = inst.log();
            last_failure = format!(
                "postfix start: {}\nstdout: {}\nstderr: {}\nmaillog:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            inst.master = inst.read_master_pid();
            inst.stop();
            if !log.contains("Address already in use") {
                break;
            }
        }
        panic!("private Postfix instance did not start\n{last_failure}");
    }

    /// The instance's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `config_directory`, as given to `postfix -c`.
    pub fn conf_dir(&self) -> PathBuf {
        self.dir().join("conf")
    }

    /// The SMTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The sasldb file smtpd reads (`sasldb_path`).
    pub fn sasldb(&self) -> PathBuf {
        self.dir().join("db/sasldb2")
    }

    /// The realm libsasl gives a login without `@`: `smtpd_sasl_local_domain`
    /// verbatim, else `myhostname` lowercased.
    pub fn default_realm(&self) -> String {
        match &self.opts.local_domain {
            Some(d) => d.clone(),
            None => self.opts.myhostname.to_lowercase(),
        }
    }

    /// Everything Postfix logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("maillog")).unwrap_or_default()
    }

    // -----------------------------------------------------------------------------
    // Writing the database

    fn write_options() -> WriteOptions {
        WriteOptions {
            ownership: sasldb::OwnershipPolicy::RootGroup("postfix".into()),
            lock_timeout: Duration::from_secs(10),
            ..WriteOptions::default()
        }
    }

    /// Stores `user@realm`'s properties with this crate's [`Transaction`].
    pub fn put(&self, user: &str, realm: &str, props: &[(&str, &[u8])]) {
        let loc = Location::path_only(self.sasldb());
        let mut txn = Transaction::begin(&loc, &Self::write_options()).unwrap();
        for (prop, value) in props {
            txn.put(&Key::new(user, realm, prop).unwrap(), value.to_vec());
        }
        txn.commit().unwrap();
    }

    /// Sets `user@realm`'s `userPassword` with this crate's [`Transaction`].
    pub fn put_password(&self, user: &str, realm: &str, password: &str) {
        self.put(user, realm, &[(USER_PASSWORD, password.as_bytes())]);
    }

    /// Deletes every property of `user@realm` with this crate's [`Transaction`];
    /// returns how many there were.
    pub fn delete_user(&self, user: &str, realm: &str) -> usize {
        let loc = Location::path_only(self.sasldb());
        let mut txn = Transaction::begin(&loc, &Self::write_options()).unwrap();
        let n = txn.delete_user(user.as_bytes(), realm.as_bytes()).unwrap();
        txn.commit().unwrap();
        n
    }

    /// Runs Debian's `saslpasswd2 -p -c -f db/sasldb2 -u REALM USER` (password on
    /// stdin, `saslpasswd.conf` from [`Options::saslpasswd_conf`]) and leaves the
    /// file as the tool made it (root:root, mode from the umask).
    pub fn saslpasswd2_raw(&self, user: &str, realm: &str, password: &str) {
        run_ok_with_stdin(
            Command::new(peer("saslpasswd2"))
                .args(["-p", "-c", "-u", realm, "-f"])
                .arg(self.sasldb())
                .arg(user)
                .env("SASL_CONF_PATH", self.dir().join("tools")),
            password.as_bytes(),
        );
    }

    /// [`Self::saslpasswd2_raw`], then `chgrp postfix` and `chmod 0640`, the way an
    /// administrator shares the file with smtpd.
    pub fn saslpasswd2(&self, user: &str, realm: &str, password: &str) {
        self.saslpasswd2_raw(user, realm, password);
        chown(&self.sasldb(), None, Some(postfix_gid())).unwrap();
        set_mode(&self.sasldb(), 0o640);
    }

    /// One of our binaries ([`ours::command`]) set up for this instance: its Postfix
    /// configuration (`MAIL_CONFIG`) decides the default realm, and `SASL_CONF_PATH`
    /// is an empty directory.
    pub fn ours(&self, name: &str) -> Command {
        let empty_conf = self.dir().join("tools/empty-sasl-conf");
        fs::create_dir_all(&empty_conf).unwrap();
        let mut cmd = ours::command(name);
        cmd.env("MAIL_CONFIG", self.conf_dir())
            .env("SASL_CONF_PATH", &empty_conf);
        cmd
    }

    // -----------------------------------------------------------------------------
    // Logging in

    /// Runs every `(login, password, mech, expected code)` login at once (one SMTP
    /// connection each) and fails with every mismatch, the client transcripts and the
    /// Postfix log.
    pub fn check_logins<L, P>(&self, cases: &[(L, P, Mech, u16)])
    where
        L: AsRef<str> + Sync,
        P: AsRef<str> + Sync,
    {
        let failures: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = cases
                .iter()
                .map(|(login, pw, mech, want)| {
                    s.spawn(move || {
                        let (login, pw) = (login.as_ref(), pw.as_ref());
                        let r = self.auth(login, pw, *mech);
                        (r.code != Some(*want)).then(|| {
                            format!(
                                "{} {login:?}/{pw:?}: expected {want}, got {:?}\n{}",
                                mech.name(),
                                r.code,
                                r.transcript
                            )
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert!(
            failures.is_empty(),
            "{} of {} logins went wrong:\n{}\n--- maillog ---\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n"),
            self.log()
        );
    }

    /// One login over a fresh SMTP connection: swaks for PLAIN, LOGIN and CRAM-MD5,
    /// `gsasl --smtp` for SCRAM (gsasl also checks the server signature).
    pub fn auth(&self, login: &str, password: &str, mech: Mech) -> AuthResult {
        match mech {
            Mech::Plain | Mech::Login | Mech::CramMd5 => self.swaks(login, password, mech),
            Mech::ScramSha1 | Mech::ScramSha256 => self.gsasl(login, password, mech),
        }
    }

    /// Asserts that a login gets `want` (235 or 535); the panic shows the client's
    /// transcript and the instance's log.
    pub fn expect_auth(&self, login: &str, password: &str, mech: Mech, want: u16) {
        let r = self.auth(login, password, mech);
        assert!(
            r.code == Some(want),
            "{} login as {login:?} with password {password:?}: expected {want}, got {:?}\n\
             --- client ---\n{}\n--- maillog ---\n{}",
            mech.name(),
            r.code,
            r.transcript,
            self.log()
        );
    }

    fn swaks(&self, login: &str, password: &str, mech: Mech) -> AuthResult {
        let out = run_timeout(
            Command::new(peer("swaks"))
                .arg("--server")
                .arg(format!("127.0.0.1:{}", self.port))
                .args(["--auth", mech.name(), "--auth-user", login])
                .args(["--auth-password", password])
                .args(["--quit-after", "AUTH", "--timeout", "10"])
                .stdin(Stdio::null()),
            CMD_TIMEOUT,
        );
        let transcript = transcript(&out);
        // swaks marks server lines with "<-" (or "<**" for errors); the first one
        // after "-> AUTH" that is not a 334 continuation answers the exchange.
        let mut after_auth = false;
        let mut code = None;
        for line in transcript.lines() {
            if line.starts_with(" -> AUTH") {
                after_auth = true;
            } else if after_auth && line.starts_with('<') {
                let c = reply_code(line.trim_start_matches(['<', '-', '~', '*', ' ']));
                if c.is_some() && c != Some(334) {
                    code = c;
                    break;
                }
            }
        }
        AuthResult { code, transcript }
    }

    fn gsasl(&self, login: &str, password: &str, mech: Mech) -> AuthResult {
        let out = run_timeout(
            Command::new(peer("gsasl"))
                .args(["--smtp", "--no-starttls", "--quiet"])
                .arg(format!("--connect=127.0.0.1:{}", self.port))
                .args(["--mechanism", mech.name()])
                .args(["--authentication-id", login, "--password", password])
                .stdin(Stdio::null()),
            CMD_TIMEOUT,
        );
        let transcript = transcript(&out);
        let mut after_auth = false;
        let mut code = None;
        for line in transcript.lines() {
            if line.starts_with("AUTH ") {
                after_auth = true;
            } else if after_auth {
                let c = reply_code(line);
                if c.is_some() && c != Some(334) {
                    code = c;
                    break;
                }
            }
        }
        AuthResult { code, transcript }
    }

    /// A raw SMTP session (greeting read, EHLO sent), served by one smtpd process.
    pub fn session(&self) -> SmtpSession {
        SmtpSession::connect(self.port)
    }

    // -----------------------------------------------------------------------------
    // Processes

    /// Live processes of the instance (the master's process group), without zombies.
    pub fn processes(&self) -> Vec<ProcInfo> {
        match self.master {
            Some(pg) => group_members(pg),
            None => Vec::new(),
        }
    }

    /// Pids of the instance's processes that hold `path` open.
    pub fn holders_of(&self, path: &Path) -> Vec<i32> {
        let want = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let deleted = PathBuf::from(format!("{} (deleted)", want.display()));
        self.processes()
            .into_iter()
            .filter(|p| {
                fs::read_dir(format!("/proc/{}/fd", p.pid))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|fd| {
                        // A replaced file shows as "PATH (deleted)".
                        fs::read_link(fd.path())
                            .is_ok_and(|t| t == want || t.as_os_str() == deleted.as_os_str())
                    })
            })
            .map(|p| p.pid)
            .collect()
    }

    // -----------------------------------------------------------------------------
    // Setup and teardown

    fn write_main_cf(&self) {
        let d = self.dir().display();
        let o = &self.opts;
        let mut cf = format!(
            "# Private test instance: see tests/support/postfix.rs.\n\
             compatibility_level = 3.6\n\
             queue_directory = {d}/queue\n\
             data_directory = {d}/data\n\
             maillog_file = {d}/maillog\n\
             maillog_file_prefixes = {d}\n\
             myhostname = {host}\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             # smtpd would otherwise ask proxymap (not running) for local users.\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             biff = no\n\
             smtpd_tls_security_level = none\n\
             smtpd_tls_auth_only = no\n\
             smtpd_sasl_auth_enable = yes\n\
             smtpd_sasl_type = cyrus\n\
             smtpd_sasl_path = smtpd\n\
             smtpd_sasl_service = smtp\n\
             cyrus_sasl_config_path = {d}/conf/sasl\n\
             smtpd_sasl_local_domain = {local}\n",
            host = o.myhostname,
            local = o.local_domain.as_deref().unwrap_or(""),
        );
        for l in &o.main_cf_extra {
            cf.push_str(l);
            cf.push('\n');
        }
        write_aged(&self.conf_dir().join("main.cf"), &cf);
    }

    fn write_master_cf(&self) {
        // service type private unpriv chroot wakeup maxproc command
        let cf = format!(
            "127.0.0.1:{port} inet n - {chroot} - - smtpd\n\
             anvil unix - - n - 1 anvil\n\
             postlog unix-dgram n - n - 1 postlogd\n",
            port = self.port,
            chroot = if self.opts.chroot { "y" } else { "n" },
        );
        write_aged(&self.conf_dir().join("master.cf"), &cf);
    }

    fn write_sasl_conf(&self) {
        let conf = self.opts.sasl_conf.clone().unwrap_or_else(|| {
            format!(
                "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {}\n\
                 mech_list: {}\n",
                self.sasldb().display(),
                self.opts.mech_list
            )
        });
        fs::write(self.conf_dir().join("sasl/smtpd.conf"), conf).unwrap();
    }

    fn read_master_pid(&self) -> Option<i32> {
        fs::read_to_string(self.dir().join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Waits until the SMTP port answers with a greeting.
    fn wait_for_port(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("220") {
                    let _ = (&s).write_all(b"QUIT\r\n");
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Postfix on port {} does not answer\nmaillog:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postfix stop`, then kills whatever of the master's process group is left
    /// and waits until none of it is alive. Never panics.
    fn stop(&mut self) {
        // Runs from Drop: must not panic. `postfix stop` waits at most 5 s for the
        // master, then kills its process group itself.
        let _ = Command::new(&self.postfix)
            .arg("-c")
            .arg(self.conf_dir())
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pg) = self.master.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let left = group_members(pg);
                if left.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!("postfix harness: processes left behind: {left:?}");
                    break;
                }
                for p in &left {
                    let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PostfixInstance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process of an instance.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub comm: String,
}

/// Live (non-zombie) processes whose process group is `pg`.
fn group_members(pg: i32) -> Vec<ProcInfo> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() < 3 || fields[0] == "Z" || fields[0] == "X" {
            continue;
        }
        if fields[2].parse::<i32>() == Ok(pg) {
            out.push(ProcInfo { pid, comm });
        }
    }
    out
}

/// An SMTP session with a line-level client (PLAIN only, enough to try logins in
/// one smtpd process).
pub struct SmtpSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    pub transcript: String,
}

impl SmtpSession {
    fn connect(port: u16) -> SmtpSession {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let mut s = SmtpSession {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            transcript: String::new(),
        };
        let (code, _) = s.reply();
        assert_eq!(code, 220, "no greeting:\n{}", s.transcript);
        let (code, _) = s.command("EHLO client.test");
        assert_eq!(code, 250, "EHLO refused:\n{}", s.transcript);
        s
    }

    /// Reads one (possibly multi-line) reply: its code and text lines.
    fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading SMTP reply: {e}\n{}", self.transcript));
            assert!(n > 0, "connection closed:\n{}", self.transcript);
            let line = line.trim_end().to_string();
            self.transcript.push_str(&format!("S: {line}\n"));
            let code = reply_code(&line)
                .unwrap_or_else(|| panic!("bad SMTP reply line {line:?}\n{}", self.transcript));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return (code, lines);
            }
        }
    }

    /// Sends one command line and reads its reply.
    pub fn command(&mut self, line: &str) -> (u16, Vec<String>) {
        self.transcript.push_str(&format!("C: {line}\n"));
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// `AUTH PLAIN` with an initial response; returns the reply code.
    pub fn auth_plain(&mut self, login: &str, password: &str) -> u16 {
        let ir = B64.encode(format!("\0{login}\0{password}"));
        self.command(&format!("AUTH PLAIN {ir}")).0
    }
}

impl Drop for SmtpSession {
    fn drop(&mut self) {
        let _ = self.writer.write_all(b"QUIT\r\n");
    }
}

// ---------------------------------------------------------------------------------
// Helpers

/// The three-digit code at the start of an SMTP reply line.
fn reply_code(line: &str) -> Option<u16> {
    let b = line.as_bytes();
    if b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && matches!(b.get(3), None | Some(b' ') | Some(b'-'))
    {
        line[..3].parse().ok()
    } else {
        None
    }
}

fn transcript(out: &Output) -> String {
    format!(
        "{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        if out.status.success() {
            String::new()
        } else {
            format!("[exit: {}]\n", out.status)
        }
    )
}

/// Runs a command with its output collected in anonymous files (not pipes: the
/// Postfix master daemon `postfix start` leaves behind must not hold our reader
/// open), killing it after `limit`.
fn run_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut so = tempfile::tempfile().unwrap();
    let mut se = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdout(so.try_clone().unwrap())
        .stderr(se.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let st = child.wait().unwrap();
            eprintln!("{cmd:?}: killed after {limit:?}");
            break st;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |f: &mut fs::File| {
        let mut v = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(&mut so),
        stderr: read(&mut se),
    }
}
