//! sasldb in a PostgreSQL table that Cyrus SASL's own `sql` auxprop plugin reads and
//! writes (`sql_engine: pgsql`), so several mail servers authenticate against one
//! database.
//!
//! # Naming the database
//!
//! A database is named by a libpq-style URL, `postgresql://[USER@]HOST[:PORT][/DATABASE]`
//! (or `postgres://`), with the query parameters `host`, `port`, `user`, `dbname`,
//! `sslmode`, `connect_timeout`, `application_name` and `passfile`. A host starting
//! with `/` (written `%2F...` in the host part, or `?host=/var/run/postgresql`) is a
//! Unix-socket directory. What the URL leaves out comes from `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGDATABASE`, `PGSSLMODE`, `PGCONNECT_TIMEOUT`, then libpq's defaults (the
//! socket directory `/var/run/postgresql`, port 5432, the login name, a database named
//! after the user).
//!
//! **Credentials never go on the command line**: a URL holding a password
//! (`user:password@` or `?password=`) is refused. The password comes from
//! `PGPASSWORD`, else from the password file (`passfile=`, else `PGPASSFILE`, else
//! `~/.pgpass`), matched exactly as libpq does ([`pgpass_lookup`]): lines
//! `host:port:database:user:password`, `*` matching anything, `\:` and `\\` escapes,
//! first match wins, `localhost` standing for the default socket directory, and a file
//! with any group or world permission ignored (libpq requires 0600 or less).
//!
//! TLS is not built in: `sslmode` `disable`, `allow` and `prefer` connect in clear
//! text; `require` and stronger are refused. Reach a remote server over a trusted
//! network, a Unix socket, or a tunnel.
//!
//! # Schema
//!
//! The SQLite store's layout, one row per record:
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
//! A [`Session`] (what [`crate::Transaction`] uses) connects, sets `lock_timeout` to the
//! lock timeout, and takes the session-level advisory lock
//! `pg_advisory_lock(0x5341534C, 1)` ("SASL"), the PostgreSQL counterpart of the
//! `<db>.lock` file: writers on any host serialise on it, so what a writer read at the
//! start still holds when it writes (an import's "exists?" checks, a realm rename), and
//! the lock dies with the connection. [`Session::commit`] applies a change set in ONE
//! PostgreSQL transaction (READ COMMITTED): deletes, then `INSERT ... ON CONFLICT DO
//! UPDATE` row upserts from arrays, so a concurrent writer that does not take the lock
//! (the plugin: `saslpasswd2`, OTP sequence updates) never makes it fail with a
//! duplicate key. A serialization failure or deadlock (SQLSTATE 40001, 40P01) rolls back
//! and is retried, up to [`RETRIES`] times. A missing table is created in the same
//! transaction as the first write ([`init`] does only that).
//!
//! Reading ([`PgStore`]) takes no lock; a scan fetches the table in key order in
//! batches (one statement each), so a commit between two batches can be partly visible
//! in one scan, as with SQLite.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::config::SslMode;
use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::location::Format;
use crate::location::{PostgresUrl as Url, check_sslmode, parse_port};
use crate::record::{KeyRef, Record, Secret, encode_into};
use crate::storage::{Backend, Changes, Records};

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
/// libpq's default socket directory on Debian.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// The default port.
pub const DEFAULT_PORT: u16 = 5432;
/// How long a connection attempt may take unless `connect_timeout` says otherwise.
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

/// Rows fetched per statement during a scan.
const BATCH: i64 = 4096;
/// Rows per array in one write statement.
const CHUNK: usize = 5000;
impl Url {
    /// The connection parameters: the URL, then the environment (`PGHOST`...), then
    /// libpq's defaults; the password from `PGPASSWORD` or the password file.
    pub fn resolve(&self) -> Result<ConnParams> {
        self.resolve_with(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`Url::resolve`] with the environment given as a function.
    pub fn resolve_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnParams> {
        let bad = |what: String| Error::Invalid(format!("{self}: {what}"));
        let host = self
            .host
            .clone()
            .or_else(|| env("PGHOST"))
            .unwrap_or_else(|| DEFAULT_SOCKET_DIR.to_string());
        if host.contains(',') {
            return Err(bad("several hosts are not supported; name one host".into()));
        }
        let port = match (self.port, env("PGPORT")) {
            (Some(p), _) => p,
            (None, Some(p)) => parse_port(&p).map_err(|e| bad(format!("PGPORT: {e}")))?,
            (None, None) => DEFAULT_PORT,
        };
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
        let sslmode = self
            .sslmode
            .clone()
            .or_else(|| env("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".into());
        check_sslmode(&sslmode).map_err(bad)?;
        let connect_timeout = match (self.connect_timeout, env("PGCONNECT_TIMEOUT")) {
            (Some(s), _) => Duration::from_secs(s.max(2)),
            (None, Some(s)) => Duration::from_secs(
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| bad(format!("PGCONNECT_TIMEOUT `{s}` is not a number")))?
                    .max(2),
            ),
            (None, None) => DEFAULT_CONNECT_TIMEOUT,
        };
        let mut p = ConnParams {
            url: self.to_string(),
            host,
            port,
            user,
            dbname,
            application_name: self
                .application_name
                .clone()
                .unwrap_or_else(|| "sasldb".into()),
            connect_timeout,
            password: None,
            password_from: None,
            passfile_note: None,
        };
        if let Some(pw) = env("PGPASSWORD") {
            p.password = Some(Zeroizing::new(pw));
            p.password_from = Some("PGPASSWORD".into());
            return Ok(p);
        }
        let passfile = self
            .passfile
            .clone()
            .or_else(|| env("PGPASSFILE").map(PathBuf::from))
            .or_else(|| home_dir(env).map(|h| h.join(".pgpass")));
        if let Some(file) = passfile {
            match pgpass_lookup(&file, &p.host, p.port, &p.dbname, &p.user) {
                Ok(Some(pw)) => {
                    p.password = Some(pw);
                    p.password_from = Some(file.display().to_string());
                }
                Ok(None) => {}
                Err(note) => p.passfile_note = Some(note),
            }
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

/// Resolved connection parameters. The password is never shown ([`fmt::Debug`] hides
/// it).
pub struct ConnParams {
    url: String,
    /// Host name, address, or socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Database.
    pub dbname: String,
    /// `application_name`.
    pub application_name: String,
    /// Connection timeout.
    pub connect_timeout: Duration,
    password: Option<Zeroizing<String>>,
    /// Where the password came from (`PGPASSWORD` or the password file's path).
    pub password_from: Option<String>,
    /// Why a password file was ignored, if it was.
    pub passfile_note: Option<String>,
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("password_from", &self.password_from)
            .finish()
    }
}

impl ConnParams {
    /// Whether a password was found.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Connects (plain text; see the module docs on TLS).
    pub fn connect(&self) -> Result<Client> {
        let mut cfg = postgres::Config::new();
        cfg.user(&self.user)
            .dbname(&self.dbname)
            .port(self.port)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .ssl_mode(SslMode::Disable);
        if self.host.starts_with('/') {
            cfg.host_path(&self.host);
        } else {
            cfg.host(&self.host);
        }
        if let Some(pw) = &self.password {
            cfg.password(pw.as_bytes());
        }
        cfg.connect(NoTls).map_err(|e| {
            let mut msg = format!(
                "cannot connect to {}{}:{} as {} (database {}): {}",
                if self.host.starts_with('/') {
                    "socket "
                } else {
                    ""
                },
                self.host,
                self.port,
                self.user,
                self.dbname,
                error_text(&e)
            );
            if self.password.is_none() && msg.contains("password missing") {
                msg.push_str(
                    "; the server asks for a password: set PGPASSWORD or add \
                     `host:port:database:user:password` to ~/.pgpass (or PGPASSFILE), mode 0600",
                );
            }
            if let Some(note) = &self.passfile_note {
                msg.push_str(&format!("; {note}"));
            }
            backend_error(&self.url, msg)
        })
    }
}

/// One line from a PostgreSQL error (severity, message, detail and hint).
fn error_text(e: &postgres::Error) -> String {
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

fn pg_error(url: &str, e: &postgres::Error) -> Error {
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

/// Inspects the `sasldb` table the search path finds; None when there is none.
fn inspect(c: &mut impl GenericClient, url: &str) -> Result<Option<Table>> {
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
        .map_err(|e| pg_error(url, &e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let kind: String = row.get(0);
    let comment: String = row.get(1);
    let cols: Vec<String> = row.get(2);
    let bytea: Option<bool> = row.get(3);
    if !matches!(kind.as_str(), "r" | "p" | "v" | "m" | "f") {
        return Err(Error::UnknownFormat {
            path: PathBuf::from(url),
            reason: "sasldb is not a table".into(),
        });
    }
    let missing: Vec<&str> = ["username", "realm", "property", "value"]
        .into_iter()
        .filter(|c| !cols.iter().any(|have| have == c))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Unsupported {
            path: PathBuf::from(url),
            format: Format::Postgres,
            what: format!(
                "table sasldb has columns ({}) but lacks {}",
                cols.join(", "),
                missing.join(", ")
            ),
        });
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

/// A PostgreSQL sasldb opened for reading (or, inside a [`Session`], for a writer).
pub struct PgStore {
    url: String,
    client: Mutex<Client>,
    table: Table,
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
    /// Connects and checks that the database has a `sasldb` table; a missing table is
    /// [`Error::NotFound`] (create it with [`init`] or `sasldb init`).
    pub fn open(url: &Url) -> Result<PgStore> {
        let params = url.resolve()?;
        let mut client = params.connect()?;
        let url = url.to_string();
        match inspect(&mut client, &url)? {
            Some(table) => Ok(PgStore {
                url,
                client: Mutex::new(client),
                table,
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

    /// The connection (a panic in another thread while it held the connection leaves
    /// it usable: every statement is complete or rolled back by the server).
    fn client(&self) -> MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fetch_batch(&self, after: Option<&[String; 3]>, out: &mut VecDeque<Record>) -> Result<()> {
        let v = self.table.value_expr;
        let cols = "username::text, realm::text, property::text";
        let order = "ORDER BY username::text COLLATE \"C\", realm::text COLLATE \"C\", \
                     property::text COLLATE \"C\" LIMIT $1";
        let not_null = "username IS NOT NULL AND realm IS NOT NULL AND property IS NOT NULL \
                        AND value IS NOT NULL";
        let mut c = self.client();
        let rows = match after {
            None => c.query(
                &format!("SELECT {cols}, {v} FROM sasldb WHERE {not_null} {order}"),
                &[&BATCH],
            ),
            Some([u, r, p]) => c.query(
                &format!(
                    "SELECT {cols}, {v} FROM sasldb WHERE {not_null} AND \
                     (username::text COLLATE \"C\", realm::text COLLATE \"C\", \
                      property::text COLLATE \"C\") > ($2, $3, $4) {order}"
                ),
                &[&BATCH, u, r, p],
            ),
        }
        .map_err(|e| pg_error(&self.url, &e))?;
        for row in rows {
            let (u, r, p): (&str, &str, &str) = (row.get(0), row.get(1), row.get(2));
            let value: Vec<u8> = row.get(3);
            let mut key = Vec::with_capacity(u.len() + r.len() + p.len() + 2);
            encode_into(&mut key, u.as_bytes(), r.as_bytes(), p.as_bytes());
            out.push_back(Record::new(key, value));
        }
        Ok(())
    }
}

impl Backend for PgStore {
    fn format(&self) -> Format {
        Format::Postgres
    }

    fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        let Ok(k) = KeyRef::parse(key) else {
            return Ok(None);
        };
        let (Ok(u), Ok(r), Ok(p)) = (
            std::str::from_utf8(k.user),
            std::str::from_utf8(k.realm),
            std::str::from_utf8(k.property),
        ) else {
            return Ok(None);
        };
        let row = self
            .client()
            .query_opt(
                &format!(
                    "SELECT {} FROM sasldb WHERE username = $1 AND realm = $2 \
                     AND property = $3 AND value IS NOT NULL LIMIT 1",
                    self.table.value_expr
                ),
                &[&u, &r, &p],
            )
            .map_err(|e| pg_error(&self.url, &e))?;
        Ok(row.map(|row| Secret::new(row.get::<_, Vec<u8>>(0))))
    }

    fn scan(&self) -> Result<Records<'_>> {
        Ok(Box::new(Scan {
            store: self,
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
}

/// A scan in key order, one statement per batch.
struct Scan<'a> {
    store: &'a PgStore,
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
        if let Err(e) = self.store.fetch_batch(self.last.as_ref(), &mut self.buf) {
            self.done = true;
            return Some(Err(e));
        }
        if (self.buf.len() as i64) < BATCH {
            self.done = true;
        }
        if let Some(last) = self.buf.back() {
            let k = KeyRef::parse(&last.key).expect("keys built from three names");
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            self.last = Some([s(k.user), s(k.realm), s(k.property)]);
        }
        self.buf.pop_front().map(Ok)
    }
}

/// A writer's connection: holds the advisory lock from [`Session::begin`] until it is
/// dropped, and reads the table as of each statement.
pub struct Session {
    url: String,
    store: Arc<PgStore>,
    exists: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.url)
            .field("exists", &self.exists)
            .finish()
    }
}

impl Session {
    /// Connects and takes the writers' advisory lock, waiting up to `timeout` (then
    /// [`Error::Locked`]). The same timeout bounds every later lock wait of this
    /// connection (row locks a foreign writer holds).
    pub fn begin(url: &Url, timeout: Duration) -> Result<Session> {
        let params = url.resolve()?;
        let mut client = params.connect()?;
        let url_s = url.to_string();
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        client
            .batch_execute(&format!("SET lock_timeout = {ms}"))
            .map_err(|e| pg_error(&url_s, &e))?;
        let start = Instant::now();
        if let Err(e) = client.execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&LOCK_KEY.0, &LOCK_KEY.1],
        ) {
            if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(Error::Locked {
                    path: PathBuf::from(url_s),
                    waited_secs: start.elapsed().as_secs(),
                });
            }
            return Err(pg_error(&url_s, &e));
        }
        let table = inspect(&mut client, &url_s)?;
        let exists = table.is_some();
        Ok(Session {
            store: Arc::new(PgStore {
                url: url_s.clone(),
                client: Mutex::new(client),
                table: table.unwrap_or(Table {
                    value_expr: "value",
                    bytea: true,
                    ours: true,
                }),
            }),
            url: url_s,
            exists,
        })
    }

    /// Whether the `sasldb` table existed when the session began.
    pub fn existed(&self) -> bool {
        self.exists
    }

    /// The table for reading, sharing this session's connection (and lock); None when
    /// there is no table yet.
    pub fn reader(&self) -> Option<Arc<PgStore>> {
        self.exists.then(|| self.store.clone())
    }

    /// Applies `changes` in one PostgreSQL transaction, creating the table first when
    /// there is none; retries after a serialization failure or deadlock. Returns the
    /// number of records afterwards.
    pub fn commit(&mut self, changes: &Changes) -> Result<u64> {
        let writes = Writes::of(changes, &self.url)?;
        let mut attempt = 0;
        loop {
            let mut client = self.store.client();
            match writes.apply(&mut client, &self.url) {
                Ok(n) => {
                    self.exists = true;
                    return Ok(n);
                }
                Err(Failure::Retry(_)) if attempt < RETRIES => {
                    attempt += 1;
                    drop(client);
                    std::thread::sleep(Duration::from_millis(20 << attempt.min(5)));
                }
                Err(Failure::Retry(e)) => {
                    return Err(backend_error(
                        &self.url,
                        format!("gave up after {attempt} retries: {}", error_text(&e)),
                    ));
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }
}

/// A change set as the columns the write statements take.
struct Writes<'a> {
    replace_all: bool,
    del: [Vec<&'a str>; 3],
    put: [Vec<&'a str>; 3],
    values: Vec<&'a [u8]>,
}

enum Failure {
    /// A serialization failure or deadlock: the transaction can run again.
    Retry(postgres::Error),
    Fatal(Error),
}

impl<'a> Writes<'a> {
    fn of(changes: &'a Changes, url: &str) -> Result<Writes<'a>> {
        let mut w = Writes {
            replace_all: changes.replace_all,
            del: Default::default(),
            put: Default::default(),
            values: Vec::new(),
        };
        if !changes.replace_all {
            for key in changes.deletes() {
                let Ok(k) = KeyRef::parse(key) else { continue };
                // A name that is not UTF-8 cannot be in the table.
                if let (Ok(u), Ok(r), Ok(p)) = (
                    std::str::from_utf8(k.user),
                    std::str::from_utf8(k.realm),
                    std::str::from_utf8(k.property),
                ) {
                    w.del[0].push(u);
                    w.del[1].push(r);
                    w.del[2].push(p);
                }
            }
        }
        for (key, value) in changes.puts() {
            let k = KeyRef::parse(key)?;
            let name = |what: &str, b: &'a [u8]| {
                std::str::from_utf8(b).map_err(|_| Error::Unsupported {
                    path: PathBuf::from(url),
                    format: Format::Postgres,
                    what: format!(
                        "the {what} {:?} is not UTF-8 (the PostgreSQL store keeps names as text)",
                        String::from_utf8_lossy(b)
                    ),
                })
            };
            if k.property.is_empty() {
                return Err(Error::Invalid(format!(
                    "{url}: an empty property name cannot be stored"
                )));
            }
            w.put[0].push(name("user name", k.user)?);
            w.put[1].push(name("realm", k.realm)?);
            w.put[2].push(name("property name", k.property)?);
            w.values.push(value.as_slice());
        }
        Ok(w)
    }

    fn apply(&self, client: &mut Client, url: &str) -> std::result::Result<u64, Failure> {
        let fail = |e: postgres::Error| match e.code() {
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                Failure::Retry(e)
            }
            _ => Failure::Fatal(pg_error(url, &e)),
        };
        let mut tx = client.transaction().map_err(fail)?;
        // Our own value NULL is a value, not the plugin's "delete" (see the trigger).
        tx.batch_execute("SET LOCAL sasldb.keep_null = 'on'")
            .map_err(fail)?;
        let table = match inspect(&mut tx, url).map_err(Failure::Fatal)? {
            Some(t) => t,
            None => {
                tx.batch_execute(SCHEMA).map_err(fail)?;
                inspect(&mut tx, url)
                    .map_err(Failure::Fatal)?
                    .ok_or_else(|| Failure::Fatal(backend_error(url, "table not created".into())))?
            }
        };
        if self.replace_all {
            tx.execute("DELETE FROM sasldb", &[]).map_err(fail)?;
        }
        for start in (0..self.del[0].len()).step_by(CHUNK) {
            let end = (start + CHUNK).min(self.del[0].len());
            let [u, r, p] = &self.del;
            tx.execute(
                "DELETE FROM sasldb s USING unnest($1::text[], $2::text[], $3::text[]) AS d(u, r, p) \
                 WHERE s.username = d.u AND s.realm = d.r AND s.property = d.p",
                &[&&u[start..end], &&r[start..end], &&p[start..end]],
            )
            .map_err(fail)?;
        }
        let value = if table.bytea {
            "v"
        } else {
            "convert_from(v, getdatabaseencoding())"
        };
        let insert = format!(
            "INSERT INTO sasldb (username, realm, property, value) \
             SELECT u, r, p, {value} FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) \
             AS t(u, r, p, v) \
             ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value"
        );
        for start in (0..self.values.len()).step_by(CHUNK) {
            let end = (start + CHUNK).min(self.values.len());
            let [u, r, p] = &self.put;
            tx.execute(
                &insert,
                &[
                    &&u[start..end],
                    &&r[start..end],
                    &&p[start..end],
                    &&self.values[start..end],
                ],
            )
            .map_err(fail)?;
        }
        let n: i64 = tx
            .query_one(
                "SELECT count(*) FROM sasldb WHERE username IS NOT NULL AND realm IS NOT NULL \
                 AND property IS NOT NULL AND value IS NOT NULL",
                &[],
            )
            .map_err(fail)?
            .get(0);
        tx.commit().map_err(fail)?;
        Ok(n.max(0) as u64)
    }
}

/// Creates the `sasldb` table (and its trigger) if the database has none, under the
/// writers' lock. Returns whether it was created.
pub fn init(url: &Url, timeout: Duration) -> Result<bool> {
    let mut s = Session::begin(url, timeout)?;
    if s.existed() {
        return Ok(false);
    }
    s.commit(&Changes::default())?;
    Ok(true)
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
            ("postgresql://a,b/mail", "several hosts"),
            ("postgresql://db:99999/mail", "invalid port"),
            ("postgresql://db/mail?sslmode=require", "no TLS support"),
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
        assert_eq!(
            (p.host.as_str(), p.port, p.user.as_str(), p.dbname.as_str()),
            ("pg.example.org", 5444, "envuser", "mail")
        );
        assert_eq!(p.password.as_deref().map(String::as_str), Some("from env"));
        assert!(!format!("{p:?}").contains("from env"));
        // The URL wins over the environment; the database defaults to the user.
        let p = url("postgresql://u@h:1").resolve_with(&env).unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.user.as_str(), p.dbname.as_str()),
            ("h", 1, "u", "u")
        );
        let none = |_: &str| None;
        let p = url("postgresql://u@/d").resolve_with(&none).unwrap();
        assert_eq!(
            (p.host.as_str(), p.port),
            (DEFAULT_SOCKET_DIR, DEFAULT_PORT)
        );
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
