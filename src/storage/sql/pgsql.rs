//! sasldb in a PostgreSQL table that Cyrus SASL's own `sql` auxprop plugin reads and
//! writes (`sql_engine: pgsql`), so several mail servers authenticate against one
//! database.
//!
//! # Naming the database
//!
//! A database is named by a libpq-style URL,
//! `postgresql://[USER@]HOST[:PORT][,HOST[:PORT]...][/DATABASE]` (or `postgres://`), with
//! the query parameters `host`, `hostaddr`, `port`, `user`, `dbname`, `sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey`, `target_session_attrs`, `connect_timeout`,
//! `application_name` and `passfile`. A host starting with `/` (written `%2F...` in the
//! host part, or `?host=/var/run/postgresql`) is a Unix-socket directory. What the URL
//! leaves out comes from `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGDATABASE`,
//! `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, `PGTARGETSESSIONATTRS`,
//! `PGCONNECT_TIMEOUT`, `PGAPPNAME`, then libpq's defaults (the socket directory
//! `/var/run/postgresql`, port 5432, the login name, a database named after the user,
//! `sslmode=prefer`), except `connect_timeout`: 10 seconds per host unless set (0: no
//! limit).
//!
//! **Credentials never go on the command line**: a URL holding a password
//! (`user:password@` or `?password=`) is refused. The password comes from
//! `PGPASSWORD`, else from the password file (`passfile=`, else `PGPASSFILE`, else
//! `~/.pgpass`), matched exactly as libpq does ([`pgpass_lookup`], for each host):
//! lines `host:port:database:user:password`, `*` matching anything, `\:` and `\\`
//! escapes, first match wins, `localhost` standing for the default socket directory,
//! and a file with any group or world permission ignored (libpq requires 0600 or less).
//!
//! # Hosts, TLS, timeouts
//!
//! Several hosts (`h1:5432,h2:5432`, or lists in `host=`/`port=`/`PGHOST`/`PGPORT`)
//! are tried in order, as libpq does, each within `connect_timeout` for the whole
//! start-up (TCP, TLS, authentication); `target_session_attrs` (`any`, `read-write`,
//! `read-only`, `primary`, `standby`, `prefer-standby`) skips the hosts that are not
//! what it asks for. Writers ([`Session`]) always need `read-write`: they reach the
//! primary wherever it is in the list. Readers ([`PgStore::open`]) take the URL's
//! choice (default `any`: the first host that answers). TLS follows `sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey` and their `PGSSL*` variables exactly as libpq does,
//! through OpenSSL (see the `tls` submodule's table).
//!
//! # Schema
//!
//! The table's layout, one row per record:
//!
//! ```sql
#![doc = include_str!("pgsql_schema.sql")]
//! ```
//!
//! Names are `text COLLATE "C"`, so the primary key orders them bytewise (the sasldb key
//! order) and the plugin's `username = '%u'` comparisons are exact; they must be UTF-8
//! (the client always talks UTF-8). Values are `bytea` and keep any bytes. The plugin
//! reads results as text, so [`PLUGIN_CONFIG`]'s `sql_select` returns
//! `convert_from(value, getdatabaseencoding())`: a plain `bytea` would reach it in hex
//! (`\x733363...`). In a `UTF8` database the plugin sees every UTF-8 value exactly (a
//! non-UTF-8 value makes its lookup fail); in a `SQL_ASCII` (or single-byte) database
//! it sees any value without NUL exactly.
//!
//! # What the real plugin does (Cyrus 2.1.28, `plugins/sql.c`, checked on Debian's
//! `libsasl2-modules-sql` against PostgreSQL 15; `tests/postgres/postgresql.rs`)
//!
//! - **Results are read as text** (`PQexec`, `PQgetvalue`): a `bytea` column reaches
//!   the plugin in hex, so the hex string would be the password. `sql_select` returns
//!   `convert_from(value, getdatabaseencoding())`; `sql_insert` stores
//!   `convert_to('%v', getdatabaseencoding())`.
//! - **Store always takes the `sql_insert` path**: the existence probe selects
//!   `property = '*'`, which never matches. `sql_insert` is therefore an upsert, and
//!   `sql_update` the same statement.
//! - **Deleting writes the string `'NULL'`** (`saslpasswd2 -d`, and the
//!   `cmusaslsecret*` properties Cyrus clears on every password change). The triggers
//!   delete a row whose value becomes `NULL`, unless the writing transaction set
//!   `sasldb.keep_null = 'on'`, as [`Session::commit`] does: a value that really is the
//!   four bytes `NULL` is kept.
//! - **Escaping is libpq's `PQescapeString`**, after connecting, with
//!   `standard_conforming_strings` on: `'` becomes `''` and backslashes stay. Quotes and
//!   backslashes in passwords and names work, and a user name cannot inject SQL (the
//!   sqlite3 engine's problem): the login `x' UNION SELECT '4242' --` is refused.
//! - **`sql_passwd` and the other connection settings are pasted into a conninfo
//!   string inside `'...'` without escaping**: a `'` or `\` in them breaks the
//!   connection. The plugin connects anew for every lookup and every store, and
//!   `sql_hostnames` may list several `host:port` entries, tried in order.
//! - **Values are C strings**, at most 8190 bytes, cut at the first NUL.
//! - **The text conversion follows the database encoding**: in a `UTF8` database a
//!   non-UTF-8 value makes the lookup fail (the login is refused); in a `SQL_ASCII`
//!   database (or a single-byte one) the plugin sees any value without NUL exactly.
//!
//! # Writing and concurrency
//!
//! A [`Session`] (what [`crate::Transaction`] uses) connects to a host that accepts
//! writes, sets `lock_timeout` to the lock timeout, and takes the session-level
//! advisory lock `pg_advisory_lock(0x5341534C, 1)` ("SASL"), the PostgreSQL counterpart
//! of the `<db>.lock` file: writers on any host serialise on it, so what a writer read
//! at the start still holds when it writes (an import's "exists?" checks, a realm
//! rename), and the lock dies with the connection. [`Session::commit`] applies a change
//! set in ONE PostgreSQL transaction (READ COMMITTED) of a constant number of
//! statements: deletes (the keys passed as arrays), then the rows to store: a small set
//! with one `INSERT ... ON CONFLICT DO UPDATE` of arrays; from 1,000 rows on, one binary
//! `COPY` straight into an empty table, or else one `COPY` into a temporary table, one
//! `UPDATE ... FROM` it of the rows that exist and one plain `INSERT` of the others
//! (cheaper than the upsert: no speculative insertion per row; without the `TEMPORARY`
//! right, the same two statements from arrays), with `work_mem` raised for the
//! transaction so that the joins hash in memory. A concurrent writer that does not take
//! the lock (the plugin: `saslpasswd2`, OTP sequence updates) never makes a change set
//! fail: the upsert updates its row, and a unique violation of the `COPY` or plain
//! `INSERT` runs the transaction again as an upsert. A serialization failure or deadlock (SQLSTATE
//! 40001, 40P01) rolls back and is retried, up to [`RETRIES`] times. A missing table is
//! created in the same transaction as the first write ([`init`] does only that), at
//! `fillfactor = 50`, so that a password change is a HOT update (no new index entry).
//! An import reads the table once, in key order, beside its sorted input (see
//! `bulk::import`), except an import of plain passwords into our table when it holds
//! nothing but `userPassword` records ([`Session::compares_passwords`]: one probe of
//! the schema's partial index `sasldb_secrets`) and nearly every password is written
//! (a sample: [`Session::puts_that_write`]): then every password goes into the
//! temporary table (property left out, the join on user and realm), one `UPDATE` changes
//! the rows whose value differs (`value <> t.v`) and one `INSERT ... WHERE NOT EXISTS`
//! adds the new users, unless the `UPDATE` changed them all; their row counts are what
//! the commit reports ([`crate::Compared`]), and such a commit does not count the
//! table's records afterwards. A unique violation then runs the transaction again as
//! it is (the upsert could not count), within [`RETRIES`].
//!
//! # Connections that drop
//!
//! A writer's connection that drops (a server restart, `pg_terminate_backend`, a
//! failover) loses the advisory lock with it, so the writer reconnects (to whichever
//! host now accepts writes), takes the lock again, and then:
//! - if the connection dropped while the commit was under way, it first looks whether
//!   the change set is in the table (every row it puts there with its value, every row
//!   it deletes gone): then the commit happened, and nothing more is done;
//! - otherwise it runs again every read it made under the old connection (each is
//!   logged with a SHA-256 digest of its result) and compares: if all match, nothing it
//!   decided on changed, and the read or the whole change set is retried on the new
//!   connection; if any differs (another writer got in), it fails with an error saying
//!   so, having written nothing.
//!
//! Either way a change set is applied once and whole, or not at all. A writer gives up
//! after [`RECONNECTS`] lost connections.
//!
//! Reading ([`PgStore`]) takes no lock; a scan reads the table in key order in
//! statements of up to 65,536 records, taken 4,096 at a time (a writer logs each such
//! batch as the query for the 4,096 records after the last key it had): the server
//! keeps sending the rows while the caller works on a batch. Any other use of the
//! connection meanwhile abandons the open statement (its remaining rows are skipped)
//! and the scan goes on with one statement per batch. A commit between two statements
//! can be partly visible in one scan, as with SQLite. A reader whose connection
//! dropped reconnects on its next call (a call that fails on a connection that had
//! worked is retried once on a new one), so a long-running reader survives server
//! restarts and failovers.

mod conn;
pub mod tls;
mod write;

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use zeroize::Zeroizing;

use conn::{Conn, Connector, OpenRows, is_connection_loss};
pub use conn::{HostParams, Target};
use tls::TlsSettings;
pub use write::{Session, init};

use crate::error::{Error, Result};
use crate::location::Format;
use crate::location::{
    PostgresUrl as Url, check_session_attrs, check_sslmode, parse_port, parse_timeout, split_list,
};
use crate::record::{KeyRef, Record, Secret, USER_PASSWORD, encode_into};
use crate::storage::{Backend, Records};

/// The table holding the records.
pub const TABLE: &str = "sasldb";
/// The statements creating the table and its trigger.
pub const SCHEMA: &str = include_str!("pgsql_schema.sql");
/// How the table comment of a table this module created starts.
pub const SCHEMA_MARK: &str = "sasldb 1:";
/// The advisory lock writers hold: `pg_advisory_lock(LOCK_KEY.0, LOCK_KEY.1)`.
pub const LOCK_KEY: (i32, i32) = (0x5341_534C, 1);
/// How often a commit is retried after a serialization failure or deadlock.
pub const RETRIES: u32 = 8;
/// How many lost connections a writer recovers from before it gives up.
pub const RECONNECTS: u32 = 3;
/// libpq's default socket directory on Debian.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// The default port.
pub const DEFAULT_PORT: u16 = 5432;
/// How long a connection attempt to one host may take unless `connect_timeout` says
/// otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The plugin configuration lines for `smtpd.conf` or `<app>.conf`, with `HOST:PORT`,
/// `USER`, `PASSWORD` and `DATABASE` to fill in. `sql_insert` and `sql_update` are the
/// same upsert: the pgsql engine's existence probe (`property = '*'`) never finds a
/// row, so the plugin always takes `sql_insert`, also for existing rows.
pub const PLUGIN_CONFIG: &str = "\
auxprop_plugin: sql
sql_engine: pgsql
sql_hostnames: HOST:PORT
sql_user: USER
sql_passwd: PASSWORD
sql_database: DATABASE
sql_select: SELECT convert_from(value, getdatabaseencoding()) FROM sasldb WHERE username = '%u' AND realm = '%r' AND property = '%p'
sql_insert: INSERT INTO sasldb (username, realm, property, value) VALUES ('%u', '%r', '%p', convert_to('%v', getdatabaseencoding())) ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value
sql_update: INSERT INTO sasldb (username, realm, property, value) VALUES ('%u', '%r', '%p', convert_to('%v', getdatabaseencoding())) ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value
";

/// Records per batch of a scan (what a writer logs one read of).
const BATCH: i64 = 4096;
/// Records one statement of a scan returns at most (a multiple of [`BATCH`]): what an
/// abandoned statement may still send.
const STREAM_ROWS: i64 = 16 * BATCH;

impl Url {
    /// The connection parameters: the URL, then the environment (`PGHOST`...), then
    /// libpq's defaults; the password from `PGPASSWORD` or the password file.
    pub fn resolve(&self) -> Result<ConnParams> {
        self.resolve_with(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`Url::resolve`] with the environment given as a function.
    pub fn resolve_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnParams> {
        let bad = |what: String| Error::Invalid(format!("{self}: {what}"));
        let hosts = if self.hosts.is_empty() {
            env("PGHOST").map(|h| split_list(&h)).unwrap_or_default()
        } else {
            self.hosts.clone()
        };
        let hostaddrs: Vec<std::net::IpAddr> = if self.hostaddrs.is_empty() {
            match env("PGHOSTADDR") {
                Some(a) => split_list(&a)
                    .iter()
                    .map(|a| {
                        a.parse()
                            .map_err(|_| bad(format!("PGHOSTADDR: `{a}` is not a numeric address")))
                    })
                    .collect::<Result<_>>()?,
                None => Vec::new(),
            }
        } else {
            self.hostaddrs.clone()
        };
        // libpq: hostaddr alone names the hosts; otherwise one per host.
        let hosts: Vec<String> = match (hosts.is_empty(), hostaddrs.is_empty()) {
            (true, true) => vec![DEFAULT_SOCKET_DIR.to_string()],
            (true, false) => hostaddrs.iter().map(|a| a.to_string()).collect(),
            _ => hosts,
        };
        if !hostaddrs.is_empty() && hostaddrs.len() != hosts.len() {
            return Err(bad(format!(
                "{} hosts but {} hostaddr values: give one address per host",
                hosts.len(),
                hostaddrs.len()
            )));
        }
        if hosts.iter().any(String::is_empty) {
            return Err(bad("an empty host in the host list".into()));
        }
        let ports: Vec<Option<u16>> = if self.ports.is_empty() {
            match env("PGPORT") {
                Some(p) => split_list(&p)
                    .iter()
                    .map(|p| match p.as_str() {
                        "" => Ok(None),
                        p => parse_port(p)
                            .map(Some)
                            .map_err(|e| bad(format!("PGPORT: {e}"))),
                    })
                    .collect::<Result<_>>()?,
                None => Vec::new(),
            }
        } else {
            self.ports.clone()
        };
        if ports.len() > 1 && ports.len() != hosts.len() {
            return Err(bad(format!(
                "could not match {} port numbers to {} hosts",
                ports.len(),
                hosts.len()
            )));
        }
        let user = match self.user.clone().or_else(|| env("PGUSER")) {
            Some(u) => u,
            None => login_name().ok_or_else(|| {
                bad("no user: name one in the URL (USER@HOST) or in PGUSER".into())
            })?,
        };
        let dbname = self
            .dbname
            .clone()
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        if let Some(m) = &self.sslmode {
            check_sslmode(m).map_err(bad)?;
        } else if let Some(m) = env("PGSSLMODE") {
            check_sslmode(&m).map_err(|e| bad(format!("PGSSLMODE: {e}")))?;
        }
        let home = home_dir(env);
        let tls = TlsSettings::resolve(
            self.sslmode.as_deref(),
            self.sslrootcert.as_deref(),
            self.sslcert.as_deref(),
            self.sslkey.as_deref(),
            env,
            home.as_deref(),
        )
        .map_err(bad)?;
        let target = match self
            .target_session_attrs
            .clone()
            .or_else(|| env("PGTARGETSESSIONATTRS"))
        {
            Some(t) => {
                check_session_attrs(&t).map_err(|e| bad(format!("target_session_attrs: {e}")))?;
                Target::parse(&t).expect("checked")
            }
            None => Target::Any,
        };
        let secs = match (self.connect_timeout, env("PGCONNECT_TIMEOUT")) {
            (Some(s), _) => Some(s),
            (None, Some(s)) => {
                Some(parse_timeout(&s).map_err(|e| bad(format!("PGCONNECT_TIMEOUT: {e}")))?)
            }
            (None, None) => None,
        };
        let connect_timeout = match secs {
            None => Some(DEFAULT_CONNECT_TIMEOUT),
            Some(0) => None,
            // libpq: at least 2 seconds.
            Some(s) => Some(Duration::from_secs(s.max(2))),
        };
        let mut p = ConnParams {
            url: self.to_string(),
            hosts: Vec::with_capacity(hosts.len()),
            user,
            dbname,
            application_name: self
                .application_name
                .clone()
                .or_else(|| env("PGAPPNAME"))
                .unwrap_or_else(|| "sasldb".into()),
            connect_timeout,
            target,
            tls,
            password_from: None,
            passfile_note: None,
        };
        let env_password = env("PGPASSWORD").map(Zeroizing::new);
        if env_password.is_some() {
            p.password_from = Some("PGPASSWORD".into());
        }
        let passfile = self
            .passfile
            .clone()
            .or_else(|| env("PGPASSFILE").map(PathBuf::from))
            .or_else(|| home.map(|h| h.join(".pgpass")));
        for (i, host) in hosts.into_iter().enumerate() {
            let port = ports
                .get(i)
                .or(ports.first())
                .copied()
                .flatten()
                .unwrap_or(DEFAULT_PORT);
            let mut h = HostParams {
                host,
                hostaddr: hostaddrs.get(i).copied(),
                port,
                password: env_password.clone(),
            };
            if h.password.is_none()
                && let Some(file) = &passfile
            {
                match pgpass_lookup(file, &h.host, h.port, &p.dbname, &p.user) {
                    Ok(Some(pw)) => {
                        h.password = Some(pw);
                        p.password_from = Some(file.display().to_string());
                    }
                    Ok(None) => {}
                    Err(note) => p.passfile_note = Some(note),
                }
            }
            p.hosts.push(h);
        }
        Ok(p)
    }
}

fn login_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn home_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("HOME").map(PathBuf::from).or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    })
}

/// Looks a password up in a libpq password file. `Ok(None)`: no such file, or no line
/// matches. `Err(note)`: the file exists but libpq would ignore it (not a regular file,
/// or group/world permissions), with the reason.
///
/// The host is matched as libpq does: the default socket directory (and an empty host)
/// as `localhost`, any other socket directory literally.
pub fn pgpass_lookup(
    file: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> std::result::Result<Option<Zeroizing<String>>, String> {
    let meta = match fs::metadata(file) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    if !meta.is_file() {
        return Err(format!(
            "password file {} is not a plain file: ignored",
            file.display()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "password file {} has group or world access: ignored (chmod 0600 it, as libpq requires)",
            file.display()
        ));
    }
    let Ok(f) = fs::File::open(file) else {
        return Ok(None);
    };
    let host = if host.is_empty() || host == DEFAULT_SOCKET_DIR {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    Ok(pgpass_scan(f, [host, &port, dbname, user]))
}

/// The longest password file line considered; longer ones are skipped.
const MAX_PASSFILE_LINE: usize = 64 << 10;

/// [`pgpass_match`] over a password file read line by line, in wiped buffers: lines
/// longer than [`MAX_PASSFILE_LINE`] are skipped, so memory stays bounded whatever the
/// file holds (a read error ends the search).
fn pgpass_scan(mut r: impl std::io::Read, want: [&str; 4]) -> Option<Zeroizing<String>> {
    let mut chunk = Zeroizing::new(vec![0u8; 64 << 10]);
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PASSFILE_LINE));
    let mut skipping = false;
    loop {
        let n = match r.read(&mut chunk[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        let mut data = &chunk[..n];
        while !data.is_empty() {
            let (part, ended) = match memchr::memchr(b'\n', data) {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            if !skipping && line.len() + part.len() <= MAX_PASSFILE_LINE {
                line.extend_from_slice(part);
            } else {
                skipping = true;
                line.clear();
            }
            if ended {
                if !skipping && let Some(pw) = pgpass_match(&line, want) {
                    return Some(pw);
                }
                line.clear();
                skipping = false;
                data = &data[part.len() + 1..];
            } else {
                data = &[];
            }
        }
    }
    if skipping {
        return None;
    }
    pgpass_match(&line, want)
}

/// The password of the first line of `text` whose four fields match `want`.
pub fn pgpass_match(text: &[u8], want: [&str; 4]) -> Option<Zeroizing<String>> {
    'line: for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let mut rest = line;
        for token in want {
            match field_matches(rest, token.as_bytes()) {
                Some(after) => rest = after,
                None => continue 'line,
            }
        }
        // The password: up to an unescaped ':', with backslash escapes removed.
        let mut pw = Zeroizing::new(Vec::with_capacity(rest.len()));
        let mut i = 0;
        while i < rest.len() && rest[i] != b':' {
            if rest[i] == b'\\' && i + 1 < rest.len() {
                i += 1;
            }
            pw.push(rest[i]);
            i += 1;
        }
        return match std::str::from_utf8(&pw) {
            Ok(s) => Some(Zeroizing::new(s.to_string())),
            Err(_) => None,
        };
    }
    None
}

/// libpq's `pwdfMatchesString`: the rest of the line after a field equal to `token`
/// (or `*`), or None.
fn field_matches<'a>(buf: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if buf.starts_with(b"*:") {
        return Some(&buf[2..]);
    }
    let mut i = 0;
    let mut t = 0;
    while i < buf.len() {
        let mut escaped = false;
        if buf[i] == b'\\' {
            i += 1;
            escaped = true;
            if i >= buf.len() {
                return None;
            }
        }
        if buf[i] == b':' && t == token.len() && !escaped {
            return Some(&buf[i + 1..]);
        }
        if t == token.len() || buf[i] != token[t] {
            return None;
        }
        i += 1;
        t += 1;
    }
    None
}

/// Resolved connection parameters. Passwords are never shown ([`fmt::Debug`] hides
/// them).
pub struct ConnParams {
    url: String,
    /// The hosts to try, in order, each with its port and password.
    pub hosts: Vec<HostParams>,
    /// User.
    pub user: String,
    /// Database.
    pub dbname: String,
    /// `application_name`.
    pub application_name: String,
    /// How long connecting to one host may take (None: no limit).
    pub connect_timeout: Option<Duration>,
    /// `target_session_attrs` (what readers ask for; writers need `read-write`).
    pub target: Target,
    /// TLS.
    pub tls: TlsSettings,
    /// Where the password came from (`PGPASSWORD` or the password file's path).
    pub password_from: Option<String>,
    /// Why a password file was ignored, if it was.
    pub passfile_note: Option<String>,
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field(
                "hosts",
                &self.hosts.iter().map(HostParams::label).collect::<Vec<_>>(),
            )
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("target", &self.target)
            .field("sslmode", &self.tls.mode)
            .field(
                "passwords",
                &self
                    .hosts
                    .iter()
                    .map(|h| h.password.as_ref().map(|_| "<hidden>"))
                    .collect::<Vec<_>>(),
            )
            .field("password_from", &self.password_from)
            .finish()
    }
}

impl ConnParams {
    /// Whether a password was found (for any host).
    pub fn has_password(&self) -> bool {
        self.hosts.iter().any(|h| h.password.is_some())
    }

    /// Connects to the first host that accepts and is what `target` asks for.
    pub(crate) fn connect(&self, target: Target) -> Result<Conn> {
        Connector {
            url: &self.url,
            hosts: &self.hosts,
            user: &self.user,
            dbname: &self.dbname,
            application_name: &self.application_name,
            connect_timeout: self.connect_timeout,
            tls: &self.tls,
            passfile_note: self.passfile_note.as_deref(),
            password_from: self.password_from.as_deref(),
        }
        .connect(target)
    }
}

/// One line from a PostgreSQL error (severity, message, detail and hint).
fn error_text(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; hint: {h}"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                let t = s.to_string();
                if !m.contains(&t) {
                    m.push_str(&format!(": {t}"));
                }
                src = s.source();
            }
            m
        }
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn backend_error(url: &str, message: String) -> Error {
    Error::Backend {
        path: PathBuf::from(url),
        format: Format::Postgres,
        message,
    }
}

fn pg_error(url: &str, e: &tokio_postgres::Error) -> Error {
    backend_error(url, error_text(e))
}

/// What the `sasldb` table looks like.
#[derive(Debug, Clone)]
struct Table {
    /// The SQL expression giving a value's bytes.
    value_expr: &'static str,
    /// Whether `value` is `bytea` (else text of some kind).
    bytea: bool,
    /// Whether this module created it.
    ours: bool,
}

impl Table {
    /// What a table this module creates looks like.
    const OURS: Table = Table {
        value_expr: "value",
        bytea: true,
        ours: true,
    };
}

/// What went wrong inspecting the table.
enum InspectError {
    Pg(tokio_postgres::Error),
    Other(Error),
}

/// Inspects the `sasldb` table the search path finds; None when there is none.
async fn inspect(
    c: &impl tokio_postgres::GenericClient,
    url: &str,
) -> std::result::Result<Option<Table>, InspectError> {
    let row = c
        .query_opt(
            "SELECT c.relkind::text, coalesce(obj_description(c.oid, 'pg_class'), ''), \
                    array(SELECT a.attname::text FROM pg_attribute a \
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
                    (SELECT a.atttypid = 'bytea'::regtype FROM pg_attribute a \
                     WHERE a.attrelid = c.oid AND a.attname = 'value' AND NOT a.attisdropped) \
             FROM pg_class c WHERE c.oid = to_regclass('sasldb')",
            &[],
        )
        .await
        .map_err(InspectError::Pg)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let kind: String = row.get(0);
    let comment: String = row.get(1);
    let cols: Vec<String> = row.get(2);
    let bytea: Option<bool> = row.get(3);
    if !matches!(kind.as_str(), "r" | "p" | "v" | "m" | "f") {
        return Err(InspectError::Other(Error::UnknownFormat {
            path: PathBuf::from(url),
            reason: "sasldb is not a table".into(),
        }));
    }
    let missing: Vec<&str> = ["username", "realm", "property", "value"]
        .into_iter()
        .filter(|c| !cols.iter().any(|have| have == c))
        .collect();
    if !missing.is_empty() {
        return Err(InspectError::Other(Error::Unsupported {
            path: PathBuf::from(url),
            format: Format::Postgres,
            what: format!(
                "table sasldb has columns ({}) but lacks {}",
                cols.join(", "),
                missing.join(", ")
            ),
        }));
    }
    let bytea = bytea.unwrap_or(false);
    Ok(Some(Table {
        value_expr: if bytea {
            "value"
        } else {
            "convert_to(value::text, getdatabaseencoding())"
        },
        bytea,
        ours: comment.starts_with(SCHEMA_MARK),
    }))
}

/// The three names of a key as text; None when the key is malformed or a name is not
/// UTF-8 (such a key cannot be in the table).
fn key_names(key: &[u8]) -> Option<[String; 3]> {
    let k = KeyRef::parse(key).ok()?;
    let s = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
    Some([s(k.user)?, s(k.realm)?, s(k.property)?])
}

/// One read of the table, as a value: what a writer logs so that it can run it again
/// after a reconnection and see whether the answer changed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadQuery {
    /// One key.
    Get([String; 3]),
    /// Every property of one user.
    User(String, String),
    /// A scan batch: up to [`BATCH`] records after this key (None: from the start).
    Batch(Option<[String; 3]>),
    /// One record that is not a `userPassword`, if there is any: in the order of the
    /// partial index our schema has for them (`sasldb_secrets`), so that the planner
    /// probes it rather than scan the table for a first row it may not find.
    NotPassword,
}

const COLS: &str = "username::text, realm::text, property::text";
const NOT_NULL: &str = "username IS NOT NULL AND realm IS NOT NULL AND property IS NOT NULL \
                        AND value IS NOT NULL";

/// The statement reading the table in key order, after a key (`$2`, `$3`, `$4`) or from
/// the start, up to `$1` records.
fn scan_sql(table: &Table, after: bool) -> String {
    let v = table.value_expr;
    let order = "ORDER BY username::text COLLATE \"C\", realm::text COLLATE \"C\", \
                 property::text COLLATE \"C\"";
    if after {
        format!(
            "SELECT {COLS}, {v} FROM sasldb WHERE {NOT_NULL} AND \
             (username::text COLLATE \"C\", realm::text COLLATE \"C\", \
              property::text COLLATE \"C\") > ($2, $3, $4) {order} LIMIT $1"
        )
    } else {
        format!("SELECT {COLS}, {v} FROM sasldb WHERE {NOT_NULL} {order} LIMIT $1")
    }
}

/// A `text` column's bytes as the server sent them, taken without the UTF-8 check
/// `&str` makes (the server sends text in the client encoding, UTF-8) and without its
/// type-name comparisons: a key's names are bytes here.
struct RawText<'a>(&'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for RawText<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawText(raw))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::TEXT
    }
}

/// A record of a result row (`username`, `realm`, `property`, value).
fn record_of(row: &tokio_postgres::Row) -> Record {
    let (RawText(u), RawText(r), RawText(p)) = (row.get(0), row.get(1), row.get(2));
    let value: &[u8] = row.get(3);
    let mut key = Vec::with_capacity(u.len() + r.len() + p.len() + 2);
    encode_into(&mut key, u, r, p);
    Record::new(key, value.to_vec())
}

/// The next [`BATCH`] records of scan `id` after `after`, taken from the scan's open
/// statement on `conn` (a new one is started when `may_open` and there is none; else,
/// one batch query). Also returns whether the next batch may start a statement (this
/// one ended after its [`STREAM_ROWS`] rows).
async fn take_batch(
    c: &Client,
    open: &mut Option<OpenRows>,
    id: u64,
    after: &Option<[String; 3]>,
    may_open: bool,
    table: &Table,
) -> std::result::Result<(Vec<Record>, bool), tokio_postgres::Error> {
    use futures_core::Stream;
    use tokio_postgres::types::ToSql;
    if open.as_ref().is_some_and(|o| o.owner != id) {
        // Another scan's statement: abandoned (its remaining rows are skipped).
        *open = None;
    }
    if open.is_none() {
        if !may_open {
            let q = ReadQuery::Batch(after.clone());
            return Ok((q.run(c, table).await?, false));
        }
        let sql = scan_sql(table, after.is_some());
        let params: Vec<&(dyn ToSql + Sync)> = match after {
            Some([u, r, p]) => vec![&STREAM_ROWS, u, r, p],
            None => vec![&STREAM_ROWS],
        };
        let rows = c.query_raw(sql.as_str(), params).await?;
        *open = Some(OpenRows {
            owner: id,
            rows: Box::pin(rows),
            taken: 0,
        });
    }
    let o = open.as_mut().expect("opened above");
    let mut out = Vec::with_capacity(BATCH as usize);
    let mut ended = false;
    while (out.len() as i64) < BATCH {
        match std::future::poll_fn(|cx| o.rows.as_mut().poll_next(cx)).await {
            Some(Ok(row)) => out.push(record_of(&row)),
            Some(Err(e)) => {
                *open = None;
                return Err(e);
            }
            None => {
                ended = true;
                break;
            }
        }
    }
    o.taken += out.len() as i64;
    let at_limit = o.taken >= STREAM_ROWS;
    if ended || at_limit {
        *open = None;
    }
    Ok((out, !ended && at_limit))
}

impl ReadQuery {
    /// Runs the query: the records it finds, in key order.
    async fn run(
        &self,
        c: &Client,
        table: &Table,
    ) -> std::result::Result<Vec<Record>, tokio_postgres::Error> {
        let v = table.value_expr;
        let order = "ORDER BY username::text COLLATE \"C\", realm::text COLLATE \"C\", \
                     property::text COLLATE \"C\"";
        let rows = match self {
            ReadQuery::Get([u, r, p]) => {
                c.query(
                    &format!(
                        "SELECT {COLS}, {v} FROM sasldb WHERE username = $1 AND realm = $2 \
                         AND property = $3 AND value IS NOT NULL LIMIT 1"
                    ),
                    &[u, r, p],
                )
                .await?
            }
            ReadQuery::User(u, r) => {
                c.query(
                    &format!(
                        "SELECT {COLS}, {v} FROM sasldb WHERE username = $1 AND realm = $2 \
                         AND {NOT_NULL} {order}"
                    ),
                    &[u, r],
                )
                .await?
            }
            ReadQuery::NotPassword => {
                c.query(
                    &format!(
                        "SELECT {COLS}, {v} FROM sasldb WHERE property <> '{USER_PASSWORD}' \
                         AND {NOT_NULL} ORDER BY username, realm LIMIT 1"
                    ),
                    &[],
                )
                .await?
            }
            ReadQuery::Batch(None) => c.query(&scan_sql(table, false), &[&BATCH]).await?,
            ReadQuery::Batch(Some([u, r, p])) => {
                c.query(&scan_sql(table, true), &[&BATCH, u, r, p]).await?
            }
        };
        Ok(rows.iter().map(record_of).collect())
    }
}

/// A digest of a read's answer (keys and values, in order).
fn digest(records: &[Record]) -> [u8; 32] {
    let mut h = Sha256::new();
    for r in records {
        h.update((r.key.len() as u64).to_le_bytes());
        h.update(&r.key);
        h.update((r.value.len() as u64).to_le_bytes());
        h.update(&r.value[..]);
    }
    h.finalize().into()
}

/// A writer's hold on the database: the advisory lock (on the current connection), and
/// every read made under it with the digest of its answer.
struct Hold {
    lock_timeout: Duration,
    log: Vec<(ReadQuery, [u8; 32])>,
}

/// The connection and, for a writer, its hold.
struct Inner {
    conn: Option<Conn>,
    hold: Option<Hold>,
}

/// A PostgreSQL sasldb opened for reading (or, inside a [`Session`], for a writer).
pub struct PgStore {
    url: String,
    params: Arc<ConnParams>,
    table: Table,
    inner: Mutex<Inner>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.url)
            .field("ours", &self.table.ours)
            .finish()
    }
}

impl PgStore {
    /// Connects (to a host `target_session_attrs` accepts) and checks that the database
    /// has a `sasldb` table; a missing table is [`Error::NotFound`] (create it with
    /// [`init`] or `sasldb init`).
    pub fn open(url: &Url) -> Result<PgStore> {
        let params = Arc::new(url.resolve()?);
        let mut conn = params.connect(params.target)?;
        let url = url.to_string();
        let table = conn
            .run(|c| async { inspect(&*c, &url).await })
            .map_err(|e| match e {
                InspectError::Pg(e) => pg_error(&url, &e),
                InspectError::Other(e) => e,
            })?;
        match table {
            Some(table) => Ok(PgStore {
                url,
                params,
                table,
                inner: Mutex::new(Inner {
                    conn: Some(conn),
                    hold: None,
                }),
            }),
            None => Err(Error::NotFound {
                path: PathBuf::from(url),
            }),
        }
    }

    /// Whether the table was created by this module.
    pub fn is_ours(&self) -> bool {
        self.table.ours
    }

    /// How many of `puts` (keys and values) would change the table: keys it does not
    /// hold, or holds with another value. A heuristic's question (a sample, to choose
    /// how to write): a connection lost meanwhile answers "all of them", and the
    /// commit reconnects as usual.
    pub fn puts_that_write(&self, puts: &[(&[u8], &[u8])]) -> Result<usize> {
        let (mut u, mut r, mut p, mut vals) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (key, value) in puts {
            // A key that cannot be in the table is written (or refused) by the commit.
            if let Some([a, b, c]) = key_names(key) {
                u.push(a);
                r.push(b);
                p.push(c);
                vals.push(*value);
            }
        }
        let unnamed = puts.len() - vals.len();
        let mut inner = self.lock();
        let Some(conn) = inner.conn.as_mut() else {
            return Ok(puts.len());
        };
        let sql = format!(
            "SELECT count(*) FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) \
             AS t(u, r, p, v) LEFT JOIN sasldb s ON s.username = t.u AND s.realm = t.r \
             AND s.property = t.p WHERE {} IS DISTINCT FROM t.v",
            self.table.value_expr
        );
        let res = conn.run(|c| async move {
            let row = c.query_one(&sql, &[&u, &r, &p, &vals]).await?;
            Ok::<i64, tokio_postgres::Error>(row.get(0))
        });
        match res {
            Ok(n) => Ok(unnamed + usize::try_from(n).unwrap_or(0)),
            Err(e) if is_connection_loss(&e, conn) => {
                inner.conn = None;
                Ok(puts.len())
            }
            Err(e) => Err(pg_error(&self.url, &e)),
        }
    }

    /// Whether the table is ours (names `NOT NULL`, values `bytea`) and holds no record
    /// but `userPassword` ones: then the server can compare plain passwords with the
    /// stored ones itself. A writer's answer is logged like any of its reads, so a
    /// reconnection finds out if it changed.
    pub fn only_passwords(&self) -> Result<bool> {
        if !(self.table.ours && self.table.bytea) {
            return Ok(false);
        }
        Ok(self.read(ReadQuery::NotPassword)?.is_empty())
    }

    /// The host the current connection reached (None: not connected now).
    pub fn connected_host(&self) -> Option<String> {
        self.lock().conn.as_ref().map(|c| c.host.clone())
    }

    /// The state (a panic in another thread while it held the connection leaves it
    /// usable: every statement is complete or rolled back by the server).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one read. A reader whose connection is gone reconnects; a read that fails
    /// because a connection that had worked dropped is retried once on a new one. A
    /// writer's reads are logged, and its reconnection takes the lock again and checks
    /// the log first (see the module docs).
    fn read(&self, q: ReadQuery) -> Result<Vec<Record>> {
        let table = &self.table;
        let (records, ()) = self.logged_read(
            || q.clone(),
            |conn, _| conn.run(|c| async { Ok((q.run(&*c, table).await?, ())) }),
        )?;
        Ok(records)
    }

    /// The next batch of scan `id` (see [`take_batch`]): logged, and retried after a
    /// lost connection, as [`PgStore::read`] does with a batch query (which is what it
    /// answers).
    fn read_batch(
        &self,
        id: u64,
        after: &Option<[String; 3]>,
        may_open: bool,
    ) -> Result<(Vec<Record>, bool)> {
        let table = &self.table;
        self.logged_read(
            || ReadQuery::Batch(after.clone()),
            |conn, new_conn| {
                // On a new connection the statement went with the old one: start another.
                let may_open = may_open || new_conn;
                conn.run_open(|c, open| async move {
                    take_batch(c, open, id, after, may_open, table).await
                })
            },
        )
    }

    /// The retry and log of [`PgStore::read`] around `attempt` (told whether the
    /// connection is new), which returns records and anything else; a writer logs the
    /// records under the query `logged_as` gives.
    fn logged_read<T>(
        &self,
        logged_as: impl FnOnce() -> ReadQuery,
        mut attempt: impl FnMut(
            &mut Conn,
            bool,
        ) -> std::result::Result<(Vec<Record>, T), tokio_postgres::Error>,
    ) -> Result<(Vec<Record>, T)> {
        let mut inner = self.lock();
        let mut fresh = false;
        loop {
            if inner.conn.is_none() {
                self.reconnect(&mut inner, true)?;
                fresh = true;
            }
            let conn = inner.conn.as_mut().expect("connected");
            match attempt(conn, fresh) {
                Ok((records, rest)) => {
                    if let Some(hold) = &mut inner.hold {
                        hold.log.push((logged_as(), digest(&records)));
                    }
                    return Ok((records, rest));
                }
                Err(e) => {
                    let lost = is_connection_loss(&e, conn);
                    if lost {
                        inner.conn = None;
                    }
                    if !lost || fresh {
                        return Err(pg_error(&self.url, &e));
                    }
                }
            }
        }
    }

    /// A new connection: for a reader, to a host its URL accepts; for a writer, to one
    /// that accepts writes, with the lock taken again and (when `validate`) every
    /// logged read found unchanged.
    fn reconnect(&self, inner: &mut Inner, validate: bool) -> Result<()> {
        inner.conn = None;
        let Some(hold) = &inner.hold else {
            inner.conn = Some(self.params.connect(self.params.target)?);
            return Ok(());
        };
        let mut lost = 0;
        let mut conn = loop {
            match lock_session(&self.params, &self.url, hold.lock_timeout) {
                Ok(c) => break c,
                Err(LockError::Lost(_)) if lost < RECONNECTS => lost += 1,
                Err(LockError::Lost(e)) => return Err(pg_error(&self.url, &e)),
                Err(LockError::Other(e)) => return Err(e),
            }
        };
        if validate {
            validate_log(&mut conn, &hold.log, &self.table, &self.url)?;
        }
        inner.conn = Some(conn);
        Ok(())
    }
}

/// Why a writer could not take the lock.
enum LockError {
    /// The connection dropped while taking it (it can be tried again).
    Lost(tokio_postgres::Error),
    Other(Error),
}

/// Connects to a host that accepts writes, sets `lock_timeout`, and takes the writers'
/// advisory lock, waiting up to `timeout` (then [`Error::Locked`]).
fn lock_session(
    params: &ConnParams,
    url: &str,
    timeout: Duration,
) -> std::result::Result<Conn, LockError> {
    let mut conn = params
        .connect(Target::ReadWrite)
        .map_err(LockError::Other)?;
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
    let start = std::time::Instant::now();
    let res = conn.run(|c| async move {
        c.batch_execute(&format!("SET lock_timeout = {ms}")).await?;
        c.execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&LOCK_KEY.0, &LOCK_KEY.1],
        )
        .await
    });
    match res {
        Ok(_) => Ok(conn),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Err(LockError::Other(Error::Locked {
                path: PathBuf::from(url),
                waited_secs: start.elapsed().as_secs(),
            }))
        }
        Err(e) if is_connection_loss(&e, &conn) => Err(LockError::Lost(e)),
        Err(e) => Err(LockError::Other(pg_error(url, &e))),
    }
}

/// Runs every logged read again on `conn` and compares the answers; an error saying
/// what changed when one differs.
fn validate_log(
    conn: &mut Conn,
    log: &[(ReadQuery, [u8; 32])],
    table: &Table,
    url: &str,
) -> Result<()> {
    let res = conn.run(|c| async move {
        for (i, (q, want)) in log.iter().enumerate() {
            let now = q.run(&*c, table).await?;
            if digest(&now) != *want {
                return Ok(Some(i));
            }
        }
        Ok::<_, tokio_postgres::Error>(None)
    });
    match res {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(backend_error(
            url,
            "the connection to the server was lost, and before a new one took the writers' \
             lock again the sasldb table changed where this change set had read it (another \
             writer got in): nothing of this change set was written; run it again"
                .into(),
        )),
        Err(e) => Err(pg_error(url, &e)),
    }
}

impl Backend for PgStore {
    fn format(&self) -> Format {
        Format::Postgres
    }

    fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        let Some(names) = key_names(key) else {
            return Ok(None);
        };
        Ok(self.read(ReadQuery::Get(names))?.pop().map(|r| r.value))
    }

    fn scan(&self) -> Result<Records<'_>> {
        Ok(Box::new(Scan {
            store: self,
            id: NEXT_SCAN.fetch_add(1, Ordering::Relaxed),
            may_open: true,
            buf: VecDeque::new(),
            last: None,
            done: false,
        }))
    }

    /// Keys come out in bytewise order: the scan orders by the names in the "C"
    /// collation, and UTF-8 code point order is byte order.
    fn sorted(&self) -> bool {
        true
    }

    /// A user's keys (`user NUL realm NUL`) in one statement; other prefixes scan.
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut parts = prefix.split(|&b| b == 0);
        if let (Some(u), Some(r), Some([]), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            let (Ok(u), Ok(r)) = (std::str::from_utf8(u), std::str::from_utf8(r)) else {
                return Ok(Vec::new());
            };
            return Ok(self
                .read(ReadQuery::User(u.to_string(), r.to_string()))?
                .into_iter()
                .map(|r| r.key)
                .collect());
        }
        let mut out = Vec::new();
        for rec in self.scan()? {
            let rec = rec?;
            if rec.key.starts_with(prefix) {
                out.push(rec.key);
            }
        }
        Ok(out)
    }
}

/// Scans' numbers (which scan an open statement belongs to).
static NEXT_SCAN: AtomicU64 = AtomicU64::new(0);

/// A scan in key order, in batches of [`BATCH`] records taken from statements of up to
/// [`STREAM_ROWS`] records each, whose rows keep coming while the caller works on a
/// batch. Any other use of the connection abandons the open statement; the scan then
/// goes on with one statement per batch.
struct Scan<'a> {
    store: &'a PgStore,
    id: u64,
    /// Whether the next batch may start a statement.
    may_open: bool,
    buf: VecDeque<Record>,
    last: Option<[String; 3]>,
    done: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if let Some(rec) = self.buf.pop_front() {
            return Some(Ok(rec));
        }
        if self.done {
            return None;
        }
        match self.store.read_batch(self.id, &self.last, self.may_open) {
            Ok((records, may_open)) => {
                self.may_open = may_open;
                self.buf.extend(records);
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        }
        if (self.buf.len() as i64) < BATCH {
            self.done = true;
        }
        if let Some(last) = self.buf.back() {
            self.last = Some(key_names(&last.key).expect("keys built from three names"));
        }
        self.buf.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn url_parts() {
        let u = url("postgresql://sasl@db.example.org:6543/mail?sslmode=disable");
        assert_eq!(
            (u.host(), u.port(), u.user(), u.dbname()),
            (
                Some("db.example.org"),
                Some(6543),
                Some("sasl"),
                Some("mail")
            )
        );
        assert_eq!(
            u.to_string(),
            "postgresql://sasl@db.example.org:6543/mail?sslmode=disable"
        );
        let u = url("POSTGRES://%2Fvar%2Frun%2Fpostgresql/mail");
        assert_eq!(u.host(), Some("/var/run/postgresql"));
        let u = url("postgresql:///mail?host=/tmp/sock&port=5433&user=a%40b");
        assert_eq!(
            (u.host(), u.port(), u.user(), u.dbname()),
            (Some("/tmp/sock"), Some(5433), Some("a@b"), Some("mail"))
        );
        let u = url("postgresql://[::1]:5433/x");
        assert_eq!((u.host(), u.port()), (Some("::1"), Some(5433)));
        let u = url("postgresql://");
        assert_eq!((u.host(), u.user(), u.dbname()), (None, None, None));
    }

    #[test]
    fn url_refusals_never_echo_the_password() {
        for bad in [
            "postgresql://sasl:hunter2@db/mail",
            "postgresql://sasl:@db/mail",
            "postgresql://db/mail?password=hunter2",
            "postgresql://db/mail?user=x&password=hunter2",
        ] {
            let e = bad.parse::<Url>().unwrap_err().to_string();
            assert!(e.contains("password in the URL is refused"), "{e}");
            assert!(!e.contains("hunter2") && !e.contains("sasl:"), "{e}");
        }
        for (bad, want) in [
            ("postgresql://db:99999/mail", "invalid port"),
            ("postgresql://db/mail?sslmode=required", "unknown sslmode"),
            (
                "postgresql://db/mail?options=-c%20x",
                "unsupported parameter `options`",
            ),
            ("postgresql://db/m%zz", "percent-encoding"),
        ] {
            let e = bad.parse::<Url>().unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn environment_defaults() {
        let env = |k: &str| match k {
            "PGHOST" => Some("pg.example.org".to_string()),
            "PGPORT" => Some("5444".to_string()),
            "PGUSER" => Some("envuser".to_string()),
            "PGPASSWORD" => Some("from env".to_string()),
            _ => None,
        };
        let p = url("postgresql:///mail").resolve_with(&env).unwrap();
        let h = &p.hosts[0];
        assert_eq!(
            (h.host.as_str(), h.port, p.user.as_str(), p.dbname.as_str()),
            ("pg.example.org", 5444, "envuser", "mail")
        );
        assert_eq!(h.password.as_deref().map(String::as_str), Some("from env"));
        assert!(!format!("{p:?}").contains("from env"));
        assert_eq!(p.target, Target::Any);
        assert_eq!(p.tls.mode, tls::SslMode::Prefer);
        assert_eq!(p.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        // The URL wins over the environment; the database defaults to the user.
        let p = url("postgresql://u@h:1").resolve_with(&env).unwrap();
        let h = &p.hosts[0];
        assert_eq!(
            (h.host.as_str(), h.port, p.user.as_str(), p.dbname.as_str()),
            ("h", 1, "u", "u")
        );
        let none = |_: &str| None;
        let p = url("postgresql://u@/d").resolve_with(&none).unwrap();
        assert_eq!(
            (p.hosts[0].host.as_str(), p.hosts[0].port),
            (DEFAULT_SOCKET_DIR, DEFAULT_PORT)
        );
    }

    #[test]
    fn host_lists_and_session_attrs() {
        let none = |_: &str| None;
        let hosts = |p: &ConnParams| {
            p.hosts
                .iter()
                .map(|h| (h.host.clone(), h.port))
                .collect::<Vec<_>>()
        };
        let p = url("postgresql://u@h1:5432,h2:5433/mail?target_session_attrs=read-write")
            .resolve_with(&none)
            .unwrap();
        assert_eq!(hosts(&p), [("h1".into(), 5432), ("h2".into(), 5433)]);
        assert_eq!(p.target, Target::ReadWrite);
        // A port for some hosts only: the others get the default.
        let p = url("postgresql://u@h1,h2:6000/mail")
            .resolve_with(&none)
            .unwrap();
        assert_eq!(hosts(&p), [("h1".into(), 5432), ("h2".into(), 6000)]);
        // PGHOST and PGPORT lists; one port for every host.
        let env = |k: &str| match k {
            "PGHOST" => Some("a,b,c".to_string()),
            "PGPORT" => Some("7000".to_string()),
            "PGTARGETSESSIONATTRS" => Some("prefer-standby".to_string()),
            "PGCONNECT_TIMEOUT" => Some("0".to_string()),
            _ => None,
        };
        let p = url("postgresql://u@/mail").resolve_with(&env).unwrap();
        assert_eq!(
            hosts(&p),
            [("a".into(), 7000), ("b".into(), 7000), ("c".into(), 7000)]
        );
        assert_eq!(p.target, Target::PreferStandby);
        assert_eq!(p.connect_timeout, None);
        let env2 = |k: &str| match k {
            "PGHOST" => Some("a,b,c".to_string()),
            "PGPORT" => Some("1,2".to_string()),
            _ => None,
        };
        let e = url("postgresql://u@/mail").resolve_with(&env2).unwrap_err();
        assert!(e.to_string().contains("2 port numbers to 3 hosts"), "{e}");
        // hostaddr: the address to connect to, the name for the certificate check.
        let p =
            url("postgresql://u@/mail?host=db.example.org&hostaddr=127.0.0.1&connect_timeout=1")
                .resolve_with(&none)
                .unwrap();
        assert_eq!(p.hosts[0].host, "db.example.org");
        assert_eq!(p.hosts[0].hostaddr, Some([127, 0, 0, 1].into()));
        assert_eq!(p.connect_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn pgpass_per_host() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        fs::write(&f, "h1:5432:mail:u:one\nh2:5433:mail:u:two\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let none = |_: &str| None;
        let p = url(&format!(
            "postgresql://u@h1,h2:5433,h3/mail?passfile={}",
            f.display()
        ))
        .resolve_with(&none)
        .unwrap();
        let pw: Vec<Option<&str>> = p
            .hosts
            .iter()
            .map(|h| h.password.as_deref().map(String::as_str))
            .collect();
        assert_eq!(pw, [Some("one"), Some("two"), None]);
    }

    #[test]
    fn pgpass_rules() {
        let text = b"# comment\n\
            other:5432:*:*:wrong host\n\
            db.example.org:5432:mail:sasl:first\\:part\\\\two:ignored\n\
            *:*:*:sasl:fallback\n\
            a\\:b:*:*:*:escaped host\r\n";
        let m = |w: [&str; 4]| pgpass_match(text, w).map(|p| p.to_string());
        assert_eq!(
            m(["db.example.org", "5432", "mail", "sasl"]).as_deref(),
            Some("first:part\\two")
        );
        assert_eq!(
            m(["db.example.org", "5433", "mail", "sasl"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(m(["x", "1", "y", "sasl"]).as_deref(), Some("fallback"));
        assert_eq!(m(["a:b", "1", "y", "z"]).as_deref(), Some("escaped host"));
        assert_eq!(m(["x", "1", "y", "nobody"]), None);
        // A field is not a prefix match.
        assert_eq!(
            pgpass_match(b"db:5432:mail:sas:pw\n", ["db", "5432", "mail", "sasl"]),
            None
        );
    }

    #[test]
    fn pgpass_file_mode_and_localhost() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        fs::write(&f, "localhost:5432:mail:sasl:sockpw\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let err = pgpass_lookup(&f, DEFAULT_SOCKET_DIR, 5432, "mail", "sasl").unwrap_err();
        assert!(err.contains("group or world access"), "{err}");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let pw = pgpass_lookup(&f, DEFAULT_SOCKET_DIR, 5432, "mail", "sasl").unwrap();
        assert_eq!(pw.as_deref().map(String::as_str), Some("sockpw"));
        assert!(
            pgpass_lookup(&f, "/tmp", 5432, "mail", "sasl")
                .unwrap()
                .is_none()
        );
        assert!(
            pgpass_lookup(&dir.path().join("missing"), "h", 1, "d", "u")
                .unwrap()
                .is_none()
        );
    }
}
