//! sasldb in an SQLite file that Cyrus SASL's own `sql` auxprop plugin reads and
//! writes (`sql_engine: sqlite3`).
//!
//! # Schema
//!
//! One row per record, exactly the sasldb model (`user NUL realm NUL property` →
//! value):
//!
//! ```sql
#![doc = include_str!("sqlite_schema.sql")]
//! ```
//!
//! The file is stamped `PRAGMA application_id = 0x5341534C` ("SASL") and
//! `PRAGMA user_version = 1`, and stays in rollback-journal mode (`DELETE`).
//!
//! The plugin configuration that goes with it (`smtpd.conf`, `<app>.conf`; the
//! three statements are single lines in the real file):
//!
//! ```text
//! auxprop_plugin: sql
//! sql_engine: sqlite3
//! sql_database: /etc/sasl2/sasldb2.sqlite
//! sql_select: SELECT value FROM sasldb WHERE username = '%u' AND realm = '%r' AND property = '%p'
//! sql_insert: INSERT INTO sasldb (username, realm, property, value) VALUES ('%u', '%r', '%p',
//!     replace('%v', '\\', '\')) ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value
//! sql_update: (the same statement as sql_insert)
//! ```
//!
//! # Why this layout
//!
//! `sql_select` is free SQL with the property name substituted for `%p`, so the
//! property can be *data* (`property = '%p'`) instead of a column name
//! (`SELECT %p FROM ...`). A row per property:
//! - keeps every property, known or not (`cmusaslsecretOTP`, `authPassword`, legacy
//!   `cmusaslsecretPLAIN`, anything a future mechanism stores) without a schema change:
//!   a column-per-property table needs an `ALTER TABLE` before a new property can be
//!   stored, and the plugin's `store` of an unknown property fails with "no such
//!   column";
//! - keeps the plugin's existence probe (`%p` = `*` in the store path) valid SQL;
//! - makes the primary key the sasldb key, so a scan in key order is an index walk
//!   and matches the other backends' bytewise order.
//!
//! # What the real plugin does (Cyrus 2.1.28, `plugins/sql.c`, checked on Debian's
//! `libsasl2-modules-sql`)
//!
//! - **Store always takes the `sql_update` path** with the sqlite3 engine: the probe
//!   `SELECT ... '*'` "succeeds" with zero rows. `sql_update` is therefore an UPSERT,
//!   and `sql_insert` is the same statement in case a fixed plugin ever takes it.
//! - **Deleting writes the string `'NULL'`**: `%v` becomes the bare word `NULL`, which
//!   sits inside the quotes. The two triggers turn a TEXT `'NULL'` into a delete of the
//!   row, so `saslpasswd2 -d` really removes the user's rows and a disabled user can
//!   never log in with the password "NULL". (A value that *is* the four bytes `NULL`
//!   is written by this module as a BLOB, which the triggers leave alone.)
//! - **Escaping is MySQL's, not SQLite's**: `'` becomes `\'` and `\` becomes `\\`.
//!   SQLite has no backslash escapes, so `replace('%v', '\\', '\')` in the statement
//!   undoes the doubling and a password with a backslash is stored as typed. A value
//!   with a `'` cannot be stored by the plugin at all (the statement is malformed and
//!   `saslpasswd2` fails), and a user name with a `'` can inject SQL into the lookup:
//!   see the security note in the README section.
//! - **Values are C strings**: the plugin copies at most 8190 bytes and stops at the
//!   first NUL byte. Cyrus's own secrets never contain NUL; this module stores any
//!   bytes exactly, but the plugin only sees the part before a NUL.
//! - The plugin opens the file per lookup with `sqlite3_open` and sets no busy
//!   timeout: during the short exclusive phase of a commit a concurrent lookup fails
//!   once instead of waiting.
//!
//! # Storage classes
//!
//! User, realm and property are always stored as TEXT, whatever their bytes (SQLite
//! stores and compares TEXT bytewise; it does not validate UTF-8): the plugin's
//! lookups compare against TEXT literals, and a BLOB would never match. Values are
//! TEXT when they are UTF-8 without NUL (what the plugin itself writes, readable in
//! the `sqlite3` shell), and BLOB otherwise (and for the literal `NULL`). Either way
//! `sqlite3_column_text`, which the plugin uses, returns the stored bytes unchanged.
//!
//! # Writing
//!
//! [`commit`] applies a [`Changes`] in place, in one `BEGIN IMMEDIATE` transaction:
//! SQLite is transactional, so there is no temporary file and no rename, and a
//! crash leaves the old or the new content. Before that:
//! - a missing database is created by us (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600),
//!   given its owner, group and mode from [`Ownership`] with `fchown`/`fchmod`, and
//!   closed again before SQLite opens it (closing a second descriptor later would drop
//!   SQLite's POSIX locks); an existing file gets the same treatment, so the ownership
//!   policy holds after every write;
//! - the journal mode is set to `DELETE` explicitly, which also converts a WAL file
//!   (reported as a note): readers inside a chroot usually cannot create the `-wal`
//!   and `-shm` files WAL needs, while rollback mode lets read-only readers work;
//! - a busy timeout (the lock timeout) makes us wait for a concurrent writer such as
//!   `saslpasswd2` through the plugin, rather than fail; our own writers are already
//!   serialised by the `<db>.lock` file of [`crate::storage::persist`].
//!
//! The rollback journal `<db>-journal` exists only while a transaction commits. SQLite
//! creates it with the database file's mode and, when running as root, its owner and
//! group, so it is never more readable than the database. It holds the pages being
//! replaced (old secrets) and is unlinked after the commit; `secure_delete` is on, so
//! freed pages inside the database are zeroed. A journal left by a crash is "hot":
//! the next connection that can write rolls it back (Cyrus's plugin opens read-write,
//! so its next lookup does). [`SqliteFile::open`] does it too when it can write the
//! file and directory (it briefly opens the file read-write, as the plugin would);
//! a reader without write access fails until a writer has opened the file.
//!
//! # Reading
//!
//! [`SqliteFile`] opens the file read-only. A file is accepted when it has a table
//! named `sasldb` with the columns `username`, `realm`, `property` and `value` (so a
//! hand-made table with that shape works too); any other SQLite file is "not a sasldb
//! database (no sasldb table)". Rows whose value or a name is SQL NULL are skipped.
//! [`Backend::scan`] walks the primary key in batches, each its own short read
//! transaction, so a long listing never holds a lock that would make the plugin's
//! writes (OTP sequence updates, `saslpasswd2`) fail; a concurrent commit between two
//! batches can therefore be partly visible in one scan.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use std::time::Duration;

use std::sync::{Mutex, MutexGuard};

use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};

use crate::error::{Error, IoContext, Result};
use crate::location::Format;
use crate::record::{KeyRef, Record, Secret, encode_into};
use crate::storage::options::DEFAULT_LOCK_TIMEOUT;
use crate::storage::persist::{self, Ownership, Target};
use crate::storage::{Backend, Changes, MapOps, OpSource, Records};

/// The table holding the records.
pub const TABLE: &str = "sasldb";
/// `PRAGMA application_id` of files this module creates ("SASL").
pub const APPLICATION_ID: i32 = 0x5341_534C;
/// `PRAGMA user_version` of the schema this module creates.
pub const SCHEMA_VERSION: i32 = 1;
/// The statements creating the table and its triggers.
pub const SCHEMA: &str = include_str!("sqlite_schema.sql");

/// The plugin configuration lines that go with [`SCHEMA`], for `smtpd.conf` or
/// `<app>.conf`, with `DATABASE` standing for the file's path as the plugin sees it.
pub const PLUGIN_CONFIG: &str = "\
auxprop_plugin: sql
sql_engine: sqlite3
sql_database: DATABASE
sql_select: SELECT value FROM sasldb WHERE username = '%u' AND realm = '%r' AND property = '%p'
sql_insert: INSERT INTO sasldb (username, realm, property, value) VALUES ('%u', '%r', '%p', replace('%v', '\\\\', '\\')) ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value
sql_update: INSERT INTO sasldb (username, realm, property, value) VALUES ('%u', '%r', '%p', replace('%v', '\\\\', '\\')) ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value
";

/// The columns a `sasldb` table must have.
const COLUMNS: [&str; 4] = ["username", "realm", "property", "value"];
/// Rows fetched per read transaction during a scan.
const BATCH: i64 = 1024;
/// Largest string or BLOB we let SQLite hand us (a hostile file cannot make us
/// allocate more per value).
const MAX_LENGTH: i32 = 16 << 20;

/// An SQLite sasldb opened for reading.
pub struct SqliteFile {
    path: PathBuf,
    // One connection, used by one thread at a time (SQLITE_OPEN_NO_MUTEX).
    conn: Mutex<Connection>,
    ours: bool,
    // Opened through a descriptor of ours (see [`SqliteFile::open_target`]): the link
    // SQLite opened it by, and the descriptor, kept until the connection is closed
    // (declared after it, so dropped after it: closing the descriptor earlier would
    // drop SQLite's `fcntl` locks on the file).
    _via: Option<(persist::ProcLinks, File)>,
}

impl std::fmt::Debug for SqliteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteFile")
            .field("path", &self.path)
            .field("ours", &self.ours)
            .finish()
    }
}

impl SqliteFile {
    /// Opens an existing file read-only and checks that it holds a `sasldb` table.
    /// Waits up to the lock timeout for a writer's commit to finish.
    pub fn open(path: &Path) -> Result<SqliteFile> {
        Self::open_with_timeout(path, DEFAULT_LOCK_TIMEOUT)
    }

    /// [`SqliteFile::open`] with an explicit busy timeout.
    pub fn open_with_timeout(path: &Path, busy: Duration) -> Result<SqliteFile> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(path, e))?;
        harden(&conn, path, busy)?;
        // Rolling back opens the file read-write by name: only where nobody else can
        // swap a name on the way.
        if hot_journal(&conn)
            && persist::Target::entry(path, true).is_ok_and(|t| t.path_is_stable())
            && roll_back_hot_journal(path, busy).is_ok()
        {
            conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(path, e))?;
            harden(&conn, path, busy)?;
        }
        let ours = check_schema(&conn, path)?;
        Ok(SqliteFile {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            ours,
            _via: None,
        })
    }

    /// Opens the file a writer resolved. Where nobody else can change the names on the
    /// way, by its path; else (root writing in a directory others can write, as
    /// `SASLDB_ALLOW_UNSAFE_DIR` allows) through a descriptor opened in the directory
    /// without following links, which SQLite gets as a `/proc/self/fd` link: the name
    /// cannot be swapped under it. A journal left there (a crashed or running writer)
    /// is refused first in that case: SQLite would not see it through the link.
    pub(crate) fn open_target(target: &Target, busy: Duration) -> Result<SqliteFile> {
        if target.path_is_stable() {
            return Self::open_with_timeout(&target.path, busy);
        }
        refuse_journal(target)?;
        let path = &target.path;
        let file = target
            .handle
            .open_at(&target.name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .at(path)?;
        persist::check_regular(path, &file.metadata().at(path)?)?;
        let links = proc_links(&file)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let conn =
            Connection::open_with_flags(links.path("db"), flags).map_err(|e| sql_error(path, e))?;
        harden(&conn, path, busy)?;
        let ours = check_schema(&conn, path)?;
        Ok(SqliteFile {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            ours,
            _via: Some((links, file)),
        })
    }

    /// The connection (a panic in another thread while it held it leaves it usable:
    /// SQLite rolls back an unfinished statement).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the file carries this module's `application_id` (and so its schema).
    pub fn is_ours(&self) -> bool {
        self.ours
    }

    /// The file's journal mode as SQLite reports it (`delete`, `wal`, ...).
    pub fn journal_mode(&self) -> Result<String> {
        self.conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| sql_error(&self.path, e))
    }

    fn fetch_batch(&self, after: Option<&[Raw; 3]>, out: &mut VecDeque<Row>) -> Result<()> {
        let sql_first = "SELECT username, realm, property, value FROM sasldb \
                         ORDER BY username, realm, property LIMIT ?1";
        let sql_next = "SELECT username, realm, property, value FROM sasldb \
                        WHERE (username, realm, property) > (?2, ?3, ?4) \
                        ORDER BY username, realm, property LIMIT ?1";
        let e = |e| sql_error(&self.path, e);
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(if after.is_some() { sql_next } else { sql_first })
            .map_err(e)?;
        let mut rows = match after {
            Some([u, r, p]) => stmt.query(params![BATCH, u, r, p]),
            None => stmt.query(params![BATCH]),
        }
        .map_err(e)?;
        while let Some(row) = rows.next().map_err(e)? {
            let names = [0, 1, 2].map(|i| row.get_ref(i).map(Raw::of));
            let [Ok(u), Ok(r), Ok(p)] = names else {
                return Err(Error::Backend {
                    path: self.path.clone(),
                    format: Format::Sqlite,
                    message: "cannot read a row".into(),
                });
            };
            let value = row.get_ref(3).map_err(e)?;
            out.push_back(Row {
                record: row_record(&u, &r, &p, value),
                last: [u, r, p],
            });
        }
        Ok(())
    }
}

/// One fetched row: the record (None when a name or the value is NULL) and the raw
/// primary key to continue after.
struct Row {
    record: Option<Record>,
    last: [Raw; 3],
}

impl Backend for SqliteFile {
    fn format(&self) -> Format {
        Format::Sqlite
    }

    fn get(&self, key: &[u8]) -> Result<Option<Secret>> {
        let Ok(k) = KeyRef::parse(key) else {
            return Ok(None);
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT value FROM sasldb WHERE username = ?1 AND realm = ?2 \
                 AND property = ?3 AND value IS NOT NULL LIMIT 1",
            )
            .map_err(|e| sql_error(&self.path, e))?;
        let mut rows = stmt
            .query(params![text(k.user), text(k.realm), text(k.property)])
            .map_err(|e| sql_error(&self.path, e))?;
        match rows.next().map_err(|e| sql_error(&self.path, e))? {
            Some(row) => {
                let v = row.get_ref(0).map_err(|e| sql_error(&self.path, e))?;
                Ok(value_bytes(v).map(Secret::new))
            }
            None => Ok(None),
        }
    }

    fn scan(&self) -> Result<Records<'_>> {
        Ok(Box::new(Scan {
            file: self,
            buf: VecDeque::new(),
            last: None,
            done: false,
        }))
    }

    /// Keys come out in primary-key order, which is bytewise key order when every
    /// name is TEXT without NUL: guaranteed by our schema's CHECK constraints.
    fn sorted(&self) -> bool {
        self.ours
    }
}

/// A scan in primary-key order, one short read transaction per batch.
struct Scan<'a> {
    file: &'a SqliteFile,
    buf: VecDeque<Row>,
    last: Option<[Raw; 3]>,
    done: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(row) = self.buf.pop_front() {
                self.last = Some(row.last);
                match row.record {
                    Some(rec) => return Some(Ok(rec)),
                    None => continue,
                }
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.file.fetch_batch(self.last.as_ref(), &mut self.buf) {
                self.done = true;
                return Some(Err(e));
            }
            if (self.buf.len() as i64) < BATCH {
                self.done = true;
            }
            if self.buf.is_empty() {
                return None;
            }
        }
    }
}

/// The bytes SQLite's text conversion gives (what the plugin's `sqlite3_exec` sees),
/// or None for NULL.
fn value_bytes(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
        ValueRef::Real(f) => Some(f.to_string().into_bytes()),
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(b.to_vec()),
    }
}

fn row_record(u: &Raw, r: &Raw, p: &Raw, value: ValueRef<'_>) -> Option<Record> {
    let name = |v: &Raw| value_bytes(v.as_ref());
    let (user, realm, prop, value) = (name(u)?, name(r)?, name(p)?, value_bytes(value)?);
    let mut key = Vec::with_capacity(user.len() + realm.len() + prop.len() + 2);
    encode_into(&mut key, &user, &realm, &prop);
    Some(Record::new(key, value))
}

/// An owned SQLite value that keeps TEXT as bytes (rusqlite's `Value` insists on
/// UTF-8), to continue a scan after a row whatever its names hold.
#[derive(Debug, Clone)]
enum Raw {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Raw {
    fn of(v: ValueRef<'_>) -> Raw {
        match v {
            ValueRef::Null => Raw::Null,
            ValueRef::Integer(i) => Raw::Integer(i),
            ValueRef::Real(f) => Raw::Real(f),
            ValueRef::Text(b) => Raw::Text(b.to_vec()),
            ValueRef::Blob(b) => Raw::Blob(b.to_vec()),
        }
    }

    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Raw::Null => ValueRef::Null,
            Raw::Integer(i) => ValueRef::Integer(*i),
            Raw::Real(f) => ValueRef::Real(*f),
            Raw::Text(b) => ValueRef::Text(b),
            Raw::Blob(b) => ValueRef::Blob(b),
        }
    }
}

impl ToSql for Raw {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(self.as_ref()))
    }
}

/// Binds bytes as TEXT, without a UTF-8 check (SQLite stores them as they are).
fn text(b: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(b))
}

/// How a value is bound: TEXT when it is UTF-8 without NUL (and not the word the
/// plugin uses for "deleted"), BLOB otherwise.
fn value_ref(v: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(
        if v != b"NULL" && memchr::memchr(0, v).is_none() && std::str::from_utf8(v).is_ok() {
            ValueRef::Text(v)
        } else {
            ValueRef::Blob(v)
        },
    )
}

/// Per-connection settings: busy timeout, no schema-defined side effects, a cap on
/// value sizes.
fn harden(conn: &Connection, path: &Path, busy: Duration) -> Result<()> {
    let e = |e| sql_error(path, e);
    conn.busy_timeout(busy).map_err(e)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(e)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
        .map_err(e)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_LENGTH)
        .map_err(e)?;
    Ok(())
}

/// Whether a read-only connection's first read fails on a hot journal (a writer that
/// crashed mid-commit).
fn hot_journal(conn: &Connection) -> bool {
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())) {
        Err(rusqlite::Error::SqliteFailure(f, _)) => {
            f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK
        }
        _ => false,
    }
}

/// Rolls a hot journal back by opening the file read-write (no create, no symlink)
/// and reading it, as any SQLite connection that can write does; the database is left
/// as the crashed transaction found it.
fn roll_back_hot_journal(path: &Path, busy: Duration) -> Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_EXRESCODE;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(path, e))?;
    harden(&conn, path, busy)?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(|e| sql_error(path, e))?;
    conn.close().map_err(|(_, e)| sql_error(path, e))
}

/// What a database holds, as far as we are concerned.
enum Schema {
    /// No table at all: a new or empty database.
    Empty,
    /// A usable `sasldb` table; `true` when the file carries our application id.
    Sasldb(bool),
}

fn inspect(conn: &Connection, path: &Path) -> Result<Schema> {
    let e = |e| sql_error(path, e);
    let encoding: String = conn
        .query_row("PRAGMA encoding", [], |r| r.get(0))
        .map_err(e)?;
    let kind: Option<String> = conn
        .query_row(
            "SELECT type FROM sqlite_schema WHERE name = 'sasldb' COLLATE NOCASE",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|err| match err {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })
        .map_err(e)?;
    if kind.is_none() {
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(e)?;
        if objects == 0 {
            return Ok(Schema::Empty);
        }
    }
    if kind.as_deref() != Some("table") {
        return Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            reason: match kind {
                None => "an SQLite database with no sasldb table".into(),
                Some(k) => format!("an SQLite database where sasldb is a {k}, not a table"),
            },
        });
    }
    if !encoding.eq_ignore_ascii_case("UTF-8") {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            format: Format::Sqlite,
            what: format!("text encoding {encoding} (only UTF-8 keeps names byte for byte)"),
        });
    }
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info('sasldb')")
        .map_err(e)?;
    let cols: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(e)?
        .collect::<rusqlite::Result<_>>()
        .map_err(e)?;
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !cols.iter().any(|have| have.eq_ignore_ascii_case(c)))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            format: Format::Sqlite,
            what: format!(
                "table sasldb has columns ({}) but lacks {} (expected {})",
                cols.join(", "),
                missing.join(", "),
                COLUMNS.join(", ")
            ),
        });
    }
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(e)?;
    Ok(Schema::Sasldb(app_id == APPLICATION_ID))
}

fn check_schema(conn: &Connection, path: &Path) -> Result<bool> {
    match inspect(conn, path)? {
        Schema::Sasldb(ours) => Ok(ours),
        Schema::Empty => Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            reason: "an SQLite database with no sasldb table".into(),
        }),
    }
}

/// Applies `changes` to the SQLite sasldb at `path` (the real file, symlinks already
/// resolved) in one transaction, creating the file with our schema when it does not
/// exist or is empty. Returns the number of records afterwards. Waits up to the lock
/// timeout for another writer.
pub fn commit(path: &Path, own: &Ownership, changes: &Changes) -> Result<u64> {
    commit_with(path, own, changes, DEFAULT_LOCK_TIMEOUT, &mut Vec::new())
}

/// [`commit`] with an explicit busy timeout; notes for the user (a WAL file
/// converted) are appended to `notes`.
pub fn commit_with(
    path: &Path,
    own: &Ownership,
    changes: &Changes,
    busy: Duration,
    notes: &mut Vec<String>,
) -> Result<u64> {
    commit_at(
        &Target::resolve(path)?,
        own,
        &mut MapOps::new(changes),
        busy,
        notes,
    )
}

/// [`commit_with`] on a resolved target, its changes read one at a time (in key
/// order: rows are then inserted at the right edge of the table's tree, and SQLite's
/// page cache stays small whatever their number). SQLite opens the database and its
/// journal by name, so as root the path must be one nobody else can change
/// ([`Target::path_is_stable`]); the file itself is created, checked and given its
/// ownership through the directory's descriptor first.
pub(crate) fn commit_at(
    target: &Target,
    own: &Ownership,
    changes: &mut dyn OpSource,
    busy: Duration,
    notes: &mut Vec<String>,
) -> Result<u64> {
    if !target.path_is_stable() {
        return Err(unstable_path(target));
    }
    commit_via(target, own, changes, busy, notes, None)
}

/// [`commit_at`], SQLite opening the file by `via` (a `/proc/self/fd` link to a
/// descriptor of the file, see [`persist::ProcLinks`]) instead of its path when given.
/// The journal then lives next to the link: only for a new file nobody else has seen
/// yet (a rebuild's temporary file), whose crashed transaction nobody needs to roll
/// back.
pub(crate) fn commit_via(
    target: &Target,
    own: &Ownership,
    changes: &mut dyn OpSource,
    busy: Duration,
    notes: &mut Vec<String>,
    via: Option<&Path>,
) -> Result<u64> {
    let path = &target.path;
    prepare_file(target, own)?;
    check_journal(target)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_EXRESCODE;
    // The link is ours, in a directory of ours: followed on purpose.
    let (open, flags) = match via {
        Some(v) => (v, flags),
        None => (path.as_path(), flags | OpenFlags::SQLITE_OPEN_NOFOLLOW),
    };
    let mut conn = Connection::open_with_flags(open, flags).map_err(|e| sql_error(path, e))?;
    harden(&conn, path, busy)?;
    let e = |e| sql_error(path, e);

    let before: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(e)?;
    let after: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(e)?;
    if !after.eq_ignore_ascii_case("delete") {
        return Err(Error::Backend {
            path: path.to_path_buf(),
            format: Format::Sqlite,
            message: format!(
                "cannot switch the journal mode from {before} to DELETE \
                 (is another process using the database?)"
            ),
        });
    }
    if before.eq_ignore_ascii_case("wal") {
        notes.push(format!(
            "{}: converted from WAL to rollback-journal mode (readers in a chroot need it)",
            path.display()
        ));
    }
    // A 16 MiB page cache: changes come in key order, so a larger one would only
    // grow our memory with the size of the change set (SQLite spills dirty pages to
    // the file as the cache fills).
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA cache_size = -16384;",
    )
    .map_err(e)?;

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(e)?;
    let ours = match inspect(&tx, path)? {
        Schema::Sasldb(ours) => ours,
        Schema::Empty => {
            let enc: String = tx
                .query_row("PRAGMA encoding", [], |r| r.get(0))
                .map_err(e)?;
            if !enc.eq_ignore_ascii_case("UTF-8") {
                return Err(Error::Unsupported {
                    path: path.to_path_buf(),
                    format: Format::Sqlite,
                    what: format!("text encoding {enc} (only UTF-8 keeps names byte for byte)"),
                });
            }
            tx.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; \
                 PRAGMA user_version = {SCHEMA_VERSION};\n{SCHEMA}"
            ))
            .map_err(e)?;
            true
        }
    };
    let replace_all = changes.replace_all();
    if replace_all {
        tx.execute("DELETE FROM sasldb", []).map_err(e)?;
    }
    {
        let mut del = tx
            .prepare_cached(
                "DELETE FROM sasldb WHERE username = ?1 AND realm = ?2 AND property = ?3",
            )
            .map_err(e)?;
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO sasldb (username, realm, property, value) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(e)?;
        // Our table's primary key makes a put one statement; a hand-made table may
        // have none, so there a put deletes first.
        let mut upsert = tx
            .prepare_cached(if ours {
                "INSERT INTO sasldb (username, realm, property, value) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value"
            } else {
                "INSERT INTO sasldb (username, realm, property, value) VALUES (?1, ?2, ?3, ?4)"
            })
            .map_err(e)?;
        changes.rewind()?;
        while let Some((key, value)) = changes.next_op()? {
            match value {
                None if replace_all => {}
                None => {
                    if let Ok(k) = KeyRef::parse(key) {
                        del.execute(params![text(k.user), text(k.realm), text(k.property)])
                            .map_err(e)?;
                    }
                }
                Some(value) => {
                    let k = KeyRef::parse(key)?;
                    let row = params![
                        text(k.user),
                        text(k.realm),
                        text(k.property),
                        value_ref(value)
                    ];
                    if replace_all {
                        ins.execute(row).map_err(e)?;
                    } else {
                        if !ours {
                            del.execute(params![text(k.user), text(k.realm), text(k.property)])
                                .map_err(e)?;
                        }
                        upsert.execute(row).map_err(e)?;
                    }
                }
            }
        }
    }
    let records: i64 = tx
        .query_row(
            "SELECT count(*) FROM sasldb WHERE value IS NOT NULL AND username IS NOT NULL \
             AND realm IS NOT NULL AND property IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .map_err(e)?;
    tx.commit().map_err(e)?;
    conn.close().map_err(|(_, err)| sql_error(path, err))?;
    Ok(records.max(0) as u64)
}

/// A private directory with a link `db` to `file`'s descriptor, for SQLite to open.
pub(crate) fn proc_links(file: &File) -> Result<persist::ProcLinks> {
    use std::os::fd::AsFd;
    if !persist::ProcLinks::available() {
        return Err(Error::Refused {
            path: PathBuf::from("/proc/self/fd"),
            why: "without /proc, SQLite would open the database by name in a directory others \
                  can write; refusing"
                .into(),
        });
    }
    persist::ProcLinks::new(&[("db", file.as_fd())]).map_err(|e| Error::io(std::env::temp_dir(), e))
}

/// Refuses a journal `<db>-journal` in a directory others can write (see
/// [`SqliteFile::open_target`]): a writer is running, or one crashed and its journal
/// must be rolled back by a connection that opens the file by name.
pub(crate) fn refuse_journal(target: &Target) -> Result<()> {
    check_journal(target)?;
    let mut name = target.name.clone();
    name.push("-journal");
    let journal = target.handle.join(&name);
    match target.handle.lstat(&name).at(&journal)? {
        Some(m) if m.len() > 0 => Err(Error::Refused {
            path: journal,
            why: format!(
                "SQLite's journal is there (a writer is running, or one crashed), and {}: \
                 root rolls a journal back only where nobody else can write the directory; \
                 wait for the writer, or move the database with its journal to such a \
                 directory and run any write there",
                target
                    .unsafe_dir
                    .as_ref()
                    .map(|u| u.to_string())
                    .unwrap_or_default()
            ),
        }),
        _ => Ok(()),
    }
}

/// The error for an SQLite database, as root, in a directory others can write.
pub(crate) fn unstable_path(target: &Target) -> Error {
    let why = target
        .unsafe_dir
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_default();
    Error::Refused {
        path: target.path.clone(),
        why: format!(
            "SQLite opens the database and its journal by name, and {why}: as root, an \
             SQLite database must be in a directory only root can write"
        ),
    }
}

/// Makes sure the database file exists with its final owner, group and mode before
/// SQLite writes anything into it, then closes our descriptor again.
fn prepare_file(target: &Target, own: &Ownership) -> Result<()> {
    let path = &target.path;
    let dir = &target.handle;
    let file: File = match dir.create_new(&target.name) {
        Ok(f) => f,
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => dir
            .open_at(&target.name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .at(path)?,
        Err(err) => return Err(Error::io(path, err)),
    };
    let meta = file.metadata().at(path)?;
    persist::check_regular(path, &meta)?;
    if meta.nlink() > 1 {
        return Err(Error::HardLinked {
            path: path.clone(),
            links: meta.nlink(),
        });
    }
    own.apply(&file, path)?;
    // Closed here, before SQLite opens the file: closing another descriptor of the
    // file while SQLite holds POSIX locks on it would release them.
    drop(file);
    Ok(())
}

/// The rollback journal `<db>-journal`, if one is there, must be a regular file:
/// SQLite never follows a link to it (`O_NOFOLLOW`), so a link (or anything else)
/// there makes every write fail until it is removed.
pub(crate) fn check_journal(target: &Target) -> Result<()> {
    let mut name = target.name.clone();
    name.push("-journal");
    let journal = target.handle.join(&name);
    match target.handle.lstat(&name).at(&journal)? {
        Some(m) if !m.file_type().is_file() => Err(Error::Refused {
            path: journal,
            why: format!(
                "the SQLite journal is {}: SQLite never uses it, and no write can happen \
                 while it is there; remove it (a real journal is a regular file; sasldb check \
                 --fix removes it)",
                journal_kind(&m)
            ),
        }),
        _ => Ok(()),
    }
}

/// What a journal that is not a regular file is, in a few words.
pub(crate) fn journal_kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Turns an SQLite error into one line of ours.
fn sql_error(path: &Path, err: rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    let one_line = |s: String| s.replace(['\n', '\r'], " ");
    if let rusqlite::Error::SqliteFailure(f, msg) = &err {
        let text = one_line(msg.clone().unwrap_or_else(|| f.to_string()));
        match f.code {
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                return Error::Corrupt {
                    path,
                    format: Format::Sqlite,
                    what: text,
                };
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return Error::Backend {
                    path,
                    format: Format::Sqlite,
                    message: format!("{text} (another process kept it locked)"),
                };
            }
            ErrorCode::ReadOnly if f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK => {
                let mut j = path.as_os_str().to_os_string();
                j.push("-journal");
                let j = PathBuf::from(j);
                let message = match std::fs::symlink_metadata(&j) {
                    Ok(m) if !m.is_file() => format!(
                        "{} is {}: SQLite never uses it, and every read and write fails while \
                         it is there; remove it (sasldb check --fix does)",
                        j.display(),
                        journal_kind(&m)
                    ),
                    _ => "a crashed writer left a hot journal that only a writer can roll back: \
                          any write by a user who can write the file and its directory (root) \
                          rolls it back"
                        .into(),
                };
                return Error::Backend {
                    path,
                    format: Format::Sqlite,
                    message,
                };
            }
            _ => {
                return Error::Backend {
                    path,
                    format: Format::Sqlite,
                    message: text,
                };
            }
        }
    }
    Error::Backend {
        path,
        format: Format::Sqlite,
        message: one_line(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Ownership {
        Ownership {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mode: persist::DB_MODE,
            enforced: false,
            note: None,
            warning: None,
        }
    }

    fn put(ch: &mut Changes, u: &str, r: &str, p: &str, v: &[u8]) {
        let k = crate::Key::new(u, r, p).unwrap().encode();
        ch.ops.insert(k, Some(Secret::new(v.to_vec())));
    }

    #[test]
    fn storage_classes() {
        let class = |v: &[u8]| match value_ref(v) {
            ToSqlOutput::Borrowed(ValueRef::Text(_)) => "text",
            ToSqlOutput::Borrowed(ValueRef::Blob(_)) => "blob",
            _ => "other",
        };
        assert_eq!(class(b"secret"), "text");
        assert_eq!(class("pässword".as_bytes()), "text");
        assert_eq!(class(b""), "text");
        assert_eq!(class(b"NULL"), "blob");
        assert_eq!(class(b"a\0b"), "blob");
        assert_eq!(class(b"\xff\xfe"), "blob");
    }

    #[test]
    fn create_put_get_delete_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let mut ch = Changes::default();
        put(&mut ch, "alice", "example.org", "userPassword", b"pw");
        put(&mut ch, "bob", "example.org", "userPassword", b"NULL");
        put(&mut ch, "bob", "example.org", "x", b"\x00\xff");
        assert_eq!(commit(&db, &own(), &ch).unwrap(), 3);
        let f = SqliteFile::open(&db).unwrap();
        assert!(f.is_ours() && f.sorted());
        assert_eq!(f.journal_mode().unwrap(), "delete");
        let key = crate::Key::new("bob", "example.org", "userPassword").unwrap();
        assert_eq!(f.get(&key.encode()).unwrap().unwrap().as_slice(), b"NULL");
        let keys: Vec<Vec<u8>> = f.scan().unwrap().map(|r| r.unwrap().key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 3);

        let mut ch = Changes::default();
        ch.ops.insert(key.encode(), None);
        put(&mut ch, "alice", "example.org", "userPassword", b"new");
        assert_eq!(commit(&db, &own(), &ch).unwrap(), 2);
        let alice = crate::Key::new("alice", "example.org", "userPassword").unwrap();
        assert_eq!(f.get(&alice.encode()).unwrap().unwrap().as_slice(), b"new");
        assert_eq!(f.get(&key.encode()).unwrap(), None);
        assert_eq!(f.get(b"malformed").unwrap(), None);
    }

    #[test]
    fn scan_crosses_batches() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let mut ch = Changes::default();
        let n = BATCH as usize * 2 + 7;
        for i in 0..n {
            put(&mut ch, &format!("u{i:05}"), "r", "p", b"v");
        }
        commit(&db, &own(), &ch).unwrap();
        let f = SqliteFile::open(&db).unwrap();
        let keys: Vec<Vec<u8>> = f.scan().unwrap().map(|r| r.unwrap().key).collect();
        assert_eq!(keys.len(), n);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }
}
