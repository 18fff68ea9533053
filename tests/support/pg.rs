//! A private, throw-away PostgreSQL server for the PostgreSQL store's tests.
//!
//! [`server`] starts one server per test binary on first use (initdb takes ~3 s, so
//! the tests share it and each gets its own database from [`PgServer::database`]):
//!
//! ```text
//! /tmp/sasldb-pg-XXXXXX/       mode 0700, owned by the postgres system user
//!   data/                      initdb -A scram-sha-256 -E UTF8 --locale=C.UTF-8
//!   .s.PGSQL.PORT              the Unix socket (unix_socket_directories)
//!   log                        the server's log
//!   superuser.pw               the superuser's password (for initdb --pwfile)
//! /tmp/sasldb-pgpass-XXXXXX    the test role's pgpass file, mode 0600
//! ```
//!
//! Debian's server binaries (`/usr/lib/postgresql/VERSION/bin`) refuse to run as root,
//! so `initdb` and `pg_ctl start` run as the `postgres` system user through `runuser`.
//! The server listens on 127.0.0.1 only, on a free port picked at run time (a lost race
//! is retried with another one), with `fsync` off (the data is thrown away). Every
//! connection needs a password (scram-sha-256): the superuser's is used by the
//! harness only, and the test role `sasl` (which owns every test database) gets its
//! password from the pgpass file, either through `PGPASSFILE` (child processes) or the
//! URL parameter `passfile=` (the library in this process), so the pgpass path is what
//! every test exercises.
//!
//! The server is stopped when the test binary exits: an `atexit` handler sends the
//! postmaster SIGQUIT (immediate shutdown), waits for it to go, and removes both
//! directories. A watchdog shell started with the server does the same if the test
//! binary dies without running `atexit` (killed by a signal).
//!
//! A test may also start servers of its own ([`PgServer::start_with`]: a TLS-only
//! server with its certificates and `pg_hba.conf`; [`PgServer::standby`]: a hot
//! standby made with `pg_basebackup -R`), stopped the same way when dropped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown};

use super::{Rng, alive, free_port, hex, run_ok};

/// The role every test database belongs to.
pub const ROLE: &str = "sasl";
/// How often `pg_ctl start` is retried when another process took the port.
const PORT_ATTEMPTS: usize = 5;

/// What a server is started with, beyond the shared server's settings.
#[derive(Debug, Default, Clone)]
pub struct PgOptions {
    /// More `-c name=value` settings.
    pub settings: Vec<String>,
    /// A `pg_hba.conf` replacing initdb's (which allows scram-sha-256 from 127.0.0.1,
    /// replication included).
    pub hba: Option<String>,
    /// Files put into the data directory before the server starts (name, content,
    /// mode), owned by the postgres user: a TLS certificate and key.
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// The server accepts TLS connections only: the harness's own connections use TLS
    /// (without checking the certificate: the harness is not what is tested).
    pub harness_tls: bool,
}

/// A running server: the shared one ([`server`]), or one a test owns
/// ([`PgServer::start_with`], [`PgServer::standby`]), stopped when it is dropped.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    pgpass_dir: PathBuf,
    port: u16,
    role_password: String,
    superuser_password: String,
    postmaster: i32,
    harness_tls: bool,
    shared: bool,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();

/// The shared server, started on first use.
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(|| PgServer::start(&PgOptions::default(), true, None))
}

/// The directory of Debian's server binaries (the newest installed version). A missing
/// server FAILS the test, like [`super::peer`].
pub fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let p = e.path().join("bin").join(name);
            p.exists().then_some((v, p))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, p)) => p,
        None => panic!(
            "\n\n*** PEER TOOL MISSING: PostgreSQL's `{name}` (Debian package postgresql) is \
             not installed. ***\nRun the README's test command (scripts/test), which \
             installs every peer with apt-get.\n\n"
        ),
    }
}

/// Runs a PostgreSQL server binary as the postgres system user.
fn as_postgres(bin: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(pg_bin(bin));
    c.stdin(Stdio::null());
    c
}

impl PgServer {
    /// A new private server of this test's own (not the shared one), with `opts`.
    pub fn start_with(opts: &PgOptions) -> PgServer {
        PgServer::start(opts, false, None)
    }

    /// A hot standby of this server: `pg_basebackup -R` from it, started on a port of
    /// its own (same role, same passwords).
    pub fn standby(&self) -> PgServer {
        PgServer::start(
            &PgOptions {
                harness_tls: self.harness_tls,
                ..PgOptions::default()
            },
            false,
            Some(self),
        )
    }

    fn start(opts: &PgOptions, shared: bool, primary: Option<&PgServer>) -> PgServer {
        let pg_user = User::from_name("postgres")
            .unwrap()
            .expect("the postgres system user (Debian package postgresql)");
        let dir = tempfile::Builder::new()
            .prefix("sasldb-pg-")
            .tempdir()
            .unwrap()
            .keep();
        chown(&dir, Some(pg_user.uid), Some(pg_user.gid)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let pgpass_dir = tempfile::Builder::new()
            .prefix("sasldb-pgpass-")
            .tempdir()
            .unwrap()
            .keep();
        let salt = dir
            .to_string_lossy()
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let mut rng = Rng::new(std::process::id() as u64 ^ 0x9e37 ^ salt);
        let token = |rng: &mut Rng| hex(&rng.bytes(12));
        let (superuser_password, role_password) = match primary {
            Some(p) => (p.superuser_password.clone(), p.role_password.clone()),
            // A colon exercises pgpass escaping. (No `\` or `'`: the plugin pastes
            // sql_passwd into a libpq conninfo string unescaped.)
            None => (token(&mut rng), format!("pw:{}", token(&mut rng))),
        };
        let pwfile = dir.join("superuser.pw");
        fs::write(&pwfile, &superuser_password).unwrap();
        chown(&pwfile, Some(pg_user.uid), None).unwrap();
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).unwrap();
        let data = dir.join("data");
        match primary {
            None => {
                run_ok(
                    as_postgres("initdb")
                        .arg("-D")
                        .arg(&data)
                        .args(["-A", "scram-sha-256", "-U", "postgres", "-E", "UTF8"])
                        .args(["--locale=C.UTF-8", "--no-sync", "--no-instructions"])
                        .arg(format!("--pwfile={}", pwfile.display()))
                        .current_dir(&dir),
                );
            }
            Some(p) => {
                // The superuser's password for pg_basebackup, from a file only it reads.
                let pass = dir.join("superuser.pgpass");
                fs::write(
                    &pass,
                    format!("127.0.0.1:{}:*:postgres:{}\n", p.port, p.superuser_password),
                )
                .unwrap();
                chown(&pass, Some(pg_user.uid), None).unwrap();
                fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
                run_ok(
                    as_postgres("pg_basebackup")
                        .arg("-D")
                        .arg(&data)
                        .args(["-R", "-X", "stream", "-c", "fast", "-h", "127.0.0.1"])
                        .arg(format!("--port={}", p.port))
                        .args(["-U", "postgres", "--no-sync"])
                        .env("PGPASSFILE", &pass)
                        .env_remove("PGPASSWORD")
                        .current_dir(&dir),
                );
            }
        }
        if let Some(hba) = &opts.hba {
            fs::write(data.join("pg_hba.conf"), hba).unwrap();
        }
        for (name, content, mode) in &opts.files {
            let f = data.join(name);
            fs::write(&f, content).unwrap();
            chown(&f, Some(pg_user.uid), Some(pg_user.gid)).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(*mode)).unwrap();
        }
        let settings: String = opts.settings.iter().map(|s| format!(" -c {s}")).collect();

        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let out = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                     -c synchronous_commit=off -c full_page_writes=off -c max_connections=60{settings}",
                    dir.display()
                ))
                .arg("start")
                .current_dir(&dir)
                .output()
                .unwrap();
            if out.status.success() {
                let pid = fs::read_to_string(data.join("postmaster.pid"))
                    .ok()
                    .and_then(|s| s.lines().next()?.trim().parse().ok())
                    .expect("postmaster.pid");
                let s = PgServer {
                    dir,
                    pgpass_dir,
                    port,
                    role_password,
                    superuser_password,
                    postmaster: pid,
                    harness_tls: opts.harness_tls,
                    shared,
                };
                s.write_pgpass();
                s.watchdog();
                if shared {
                    // SAFETY: registers a plain extern "C" function.
                    unsafe {
                        libc::atexit(stop_at_exit);
                    }
                }
                if primary.is_none() {
                    s.superuser(&format!(
                        "CREATE ROLE {ROLE} LOGIN PASSWORD '{}'",
                        s.role_password.replace('\'', "''")
                    ));
                }
                return s;
            }
            last = format!(
                "pg_ctl start: {}\n{}{}\nlog:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
            if !last.contains("already in use") {
                break;
            }
        }
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&pgpass_dir);
        panic!("private PostgreSQL server did not start\n{last}");
    }

    /// Promotes this standby to a primary (`pg_ctl promote`, waiting for it).
    pub fn promote(&self) {
        run_ok(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-w", "-t", "60", "promote"]),
        );
    }

    /// Stops the server now (`pg_ctl stop -m fast`); it stays stopped.
    pub fn stop_now(&self) {
        run_ok(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-w", "-t", "60", "-m", "fast", "stop"]),
        );
    }

    fn write_pgpass(&self) {
        let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
        // A test's own servers (a TLS server reached by name, a primary and its
        // standby) share the role's password: any host, any port.
        let text = if self.shared {
            format!(
                "# test role\n127.0.0.1:{}:*:{ROLE}:{}\n",
                self.port,
                esc(&self.role_password)
            )
        } else {
            format!("# test role\n*:*:*:{ROLE}:{}\n", esc(&self.role_password))
        };
        let f = self.pgpass();
        fs::write(&f, text).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// A shell that stops the server and removes its directories once this process is
    /// gone (in case it dies without running its `atexit` handlers). Never waited for:
    /// it outlives this process by design.
    #[allow(clippy::zombie_processes)]
    fn watchdog(&self) {
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT {pm} 2>/dev/null; sleep 2; rm -rf '{dir}' '{pp}'",
            me = std::process::id(),
            pm = self.postmaster,
            dir = self.dir.display(),
            pp = self.pgpass_dir.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog shell");
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The test role's password (for the plugin's `sql_passwd`).
    pub fn role_password(&self) -> &str {
        &self.role_password
    }

    /// The pgpass file holding the test role's password (mode 0600).
    pub fn pgpass(&self) -> PathBuf {
        self.pgpass_dir.join("pgpass")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Runs SQL as the superuser (through this crate's client library).
    pub fn superuser(&self, sql: &str) {
        let mut c = self.connect("postgres", "postgres", &self.superuser_password);
        c.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}\nlog:\n{}", self.log()));
    }

    fn connect(&self, user: &str, db: &str, password: &str) -> postgres::Client {
        let mut cfg = postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(db)
            .password(password);
        let c = if self.harness_tls {
            let mut b =
                openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
            b.set_verify(openssl::ssl::SslVerifyMode::NONE);
            cfg.ssl_mode(postgres::config::SslMode::Require)
                .connect(postgres_openssl::MakeTlsConnector::new(b.build()))
        } else {
            cfg.connect(postgres::NoTls)
        };
        c.unwrap_or_else(|e| panic!("connect as {user} to {db}: {e}"))
    }

    /// A client connected as the test role to `db` (for checks in SQL).
    pub fn client(&self, db: &str) -> postgres::Client {
        self.connect(ROLE, db, &self.role_password)
    }

    /// Creates a fresh database owned by the test role (`extra`: more CREATE DATABASE
    /// options) and returns its name.
    pub fn database(&self, name: &str, extra: &str) -> String {
        self.superuser(&format!("DROP DATABASE IF EXISTS {name}"));
        self.superuser(&format!("CREATE DATABASE {name} OWNER {ROLE} {extra}"));
        name.to_string()
    }

    /// The URL of `db` as a command line names it (the password comes from
    /// `PGPASSFILE`: see [`PgServer::env`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://{ROLE}@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of `db` for this process's library calls: the pgpass file is named by
    /// the `passfile` parameter (this process's environment is not changed).
    pub fn lib_url(&self, db: &str) -> String {
        format!("{}?passfile={}", self.url(db), self.pgpass().display())
    }

    /// The environment a child needs to reach the server: `PGPASSFILE`, and no
    /// inherited PG* variable that could point elsewhere.
    pub fn env(&self, cmd: &mut Command) {
        for v in [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "PGSSLMODE",
            "PGSSLROOTCERT",
            "PGSSLCERT",
            "PGSSLKEY",
            "PGTARGETSESSIONATTRS",
            "PGCONNECT_TIMEOUT",
            "PGAPPNAME",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("PGPASSFILE", self.pgpass());
    }

    fn stop(&self) {
        let pid = Pid::from_raw(self.postmaster);
        if kill(pid, Signal::SIGQUIT).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(self.postmaster) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(self.postmaster) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_dir_all(&self.pgpass_dir);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.shared {
            self.stop();
        }
    }
}

extern "C" fn stop_at_exit() {
    if let Some(s) = SERVER.get() {
        s.stop();
    }
}
