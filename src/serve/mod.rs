//! `sasldb serve`: one long-running process answering authentication requests from
//! any database this crate reads, over the Dovecot auth-client protocol (Postfix's
//! `smtpd_sasl_type = dovecot`, Exim, `doveadm auth test`) and the saslauthd mux
//! protocol (Cyrus libsasl's `pwcheck_method: saslauthd`, `testsaslauthd`); and
//! `sasldb checkpassword`, the DJB checkpassword program Dovecot's
//! `passdb checkpassword` runs.
//!
//! Module map:
//! - [`authority`]: the one interface to the database ([`Authority`]), and its
//!   implementation over today's [`crate::Database`];
//! - [`verify`]: plaintext password checks and the decoy that makes an unknown user
//!   cost what a known one costs;
//! - [`mech`]: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1/256, server side, sans I/O;
//! - [`dovecot`], [`saslauthd`], [`checkpassword`]: the three protocols, sans I/O
//!   (bytes in, replies out; fuzzed by `scripts/fuzz`);
//! - [`limits`]: failure penalties per remote address and per user, rate-limited
//!   failure logging;
//! - [`listen`]: sockets, systemd socket activation, dropping privileges;
//! - `server` (private): the event loops that tie them together.
//!
//! # Threads and I/O
//!
//! A tokio multi-threaded runtime, one event-loop thread per CPU by default
//! (`--threads`). Why an event loop and not a thread per connection: Postfix keeps
//! one Dovecot connection open per smtpd process for its whole life, so a server has
//! many mostly idle connections (the target is 1,000 idle connections without any
//! effect on the others), and the failure delay and penalties are waits that must
//! not hold a thread. tokio is already in the dependency tree (PostgreSQL's client),
//! so only the `net`, `time`, `io-util`, `sync` and `macros` features are added.
//!
//! Where the work runs, to keep the CPU per request low and the tail short:
//! - a request's lookup runs on the event-loop thread that read it when the
//!   database is a local file (three keyed lookups, a few page reads from the page
//!   cache: microseconds), with the thread's own open handle (see
//!   [`authority::LibraryAuthority`]);
//! - anything that can take milliseconds runs on tokio's blocking threads: PBKDF2
//!   (SCRAM, PLAIN against a hashed-only user), every PostgreSQL call, and the
//!   inventory scans;
//! - the failure delay, penalties and time-outs are timers.
//!
//! # What the server guarantees
//!
//! - The database is opened once per thread and reopened when its file is replaced
//!   or changed; no verdict is ever cached, so a changed password or a deleted user
//!   counts from the next request. SIGHUP reopens it (and recounts what it holds).
//! - A database error is a temporary failure (`FAIL ... code=temp_fail`, `NO` on the
//!   mux socket), never a success.
//! - Constant-time comparisons; an unknown user costs the same as a wrong password;
//!   each failure waits `--failure-delay` (a timer); repeated failures from one
//!   remote address or for one user are penalised ([`limits`]).
//! - Bounded memory per connection: lines of at most [`dovecot::MAX_LINE`] bytes, at
//!   most [`dovecot::MAX_REQUESTS`] open requests, mux requests of at most
//!   [`saslauthd::MAX_REQUEST`] bytes; read and write time-outs; at most
//!   `--max-connections` connections.
//! - Buffers that hold passwords are wiped; no password is logged.

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod args;
pub mod authority;
pub mod checkpassword;
pub mod dovecot;
pub mod limits;
pub mod listen;
pub mod mech;
pub mod saslauthd;
mod server;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

pub use authority::{Authority, AuthorityError, Credentials, Inventory, LibraryAuthority};
pub use limits::{LimitConfig, LogConfig};
pub use mech::Mechanism;

/// Everything `sasldb serve` is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Dovecot auth-client socket to bind (or to take from socket activation).
    pub dovecot: Option<PathBuf>,
    /// The saslauthd mux socket to bind (or to take from socket activation).
    pub saslauthd: Option<PathBuf>,
    /// Socket file owner (default: root when run as root).
    pub socket_owner: Option<String>,
    /// Socket file group (default: `postfix` when run as root).
    pub socket_group: Option<String>,
    /// Socket file mode (default 0660).
    pub socket_mode: u32,
    /// User to run as after binding (as root).
    pub user: Option<String>,
    /// Group to run as after binding (default: the user's).
    pub group: Option<String>,
    /// How long a failure waits before it is answered.
    pub failure_delay: Duration,
    /// Penalties.
    pub limits: LimitConfig,
    /// Failure logging.
    pub log: LogConfig,
    /// Connections served at once.
    pub max_connections: usize,
    /// Longest wait for a handshake, the rest of a started line or mux request, and
    /// for a write.
    pub timeout: Duration,
    /// Longest silence on a Dovecot connection with nothing open.
    pub idle_timeout: Duration,
    /// Longest wait for a client's answer to a challenge.
    pub request_timeout: Duration,
    /// Event-loop threads (0: one per CPU).
    pub threads: usize,
    /// The mechanisms to offer (`None`: every one the database can serve).
    pub mechanisms: Option<Vec<Mechanism>>,
    /// The realm of names without `@` (`None`: the realm Postfix uses, read at start
    /// and on SIGHUP).
    pub realm: Option<Vec<u8>>,
    /// The host name in CRAM-MD5 challenges (`None`: the system's).
    pub hostname: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dovecot: None,
            saslauthd: None,
            socket_owner: None,
            socket_group: None,
            socket_mode: 0o660,
            user: None,
            group: None,
            failure_delay: Duration::from_secs(2),
            limits: LimitConfig::default(),
            log: LogConfig::default(),
            max_connections: 4096,
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(150),
            threads: 0,
            mechanisms: None,
            realm: None,
            hostname: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Nothing to listen on.
    #[error(
        "nothing to serve: give --dovecot PATH and/or --saslauthd PATH (or pass sockets by systemd socket activation)"
    )]
    NoSockets,
    /// A socket could not be set up.
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    /// The database could not be read.
    #[error("{0}")]
    Database(#[from] AuthorityError),
    /// The default realm could not be determined.
    #[error("cannot determine the default realm (use -u REALM): {0}")]
    Realm(String),
    /// Something else at start.
    #[error("{0}")]
    Start(String),
}

/// Writes one line to standard error (the journal, under systemd).
pub(crate) fn log(line: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "sasldb serve: {line}");
}

/// Runs the server until SIGTERM or SIGINT. Must be called before the process has
/// any other thread (it reads the socket-activation environment, sets the umask
/// while binding, blocks signals for every thread it starts, and may change user).
pub fn run(cfg: Config, authority: std::sync::Arc<dyn Authority>) -> Result<(), ServeError> {
    server::run(cfg, authority)
}

/// The man page sections for `serve` and `checkpassword` (appended to `sasldb(8)`).
pub const MAN_SECTIONS: &[(&str, &str)] = &[("AUTHENTICATION DAEMONS", include_str!("man.roff"))];
