//! Writing: a [`Session`] holds the writers' advisory lock on a connection to a host
//! that accepts writes, and applies a change set in one transaction, recovering from a
//! lost connection as the parent module's docs say.

use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use zeroize::Zeroizing;

use super::{
    Hold, Inner, InspectError, LockError, PgStore, RECONNECTS, RETRIES, SCHEMA, Table,
    backend_error, error_text, inspect, is_connection_loss, lock_session, pg_error, validate_log,
};
use crate::error::{Error, Result};
use crate::location::{Format, PostgresUrl as Url};
use crate::record::KeyRef;
use crate::storage::stage::ChangeList;
use crate::storage::{Changes, Compare, Compared};

/// Bytes of names and values per write statement: a change set of any usual size is
/// one statement per kind of change; a huge one is cut into pieces of this size.
const STATEMENT_BYTES: usize = 64 << 20;

/// From this many rows to store on, the rows go through a `COPY` ([`Writes::store_bulk`]):
/// existing rows are changed by one `UPDATE ... FROM` and the others added by a plain
/// `INSERT` (cheaper than `INSERT ... ON CONFLICT`, which pays for a speculative
/// insertion per row); a row a foreign writer added meanwhile (a unique violation)
/// makes the transaction run again with the upsert.
const BULK_ROWS: usize = 1000;

/// The longest field PostgreSQL stores (1 GiB): what [`Writes::of`] accepts, so that
/// every length fits a `COPY` field's 32 bits.
const MAX_FIELD: usize = 1 << 30;

/// The `COPY` of every row straight into the table (when it has none).
const COPY_INTO_TABLE: &str =
    "COPY sasldb (username, realm, property, value) FROM STDIN (FORMAT binary)";

/// Bytes of `COPY` data handed to the connection at a time.
const COPY_CHUNK: usize = 256 << 10;

/// A writer's connection: holds the advisory lock from [`Session::begin`] until it is
/// dropped, and reads the table as of each statement.
pub struct Session {
    url: String,
    store: Arc<PgStore>,
    exists: bool,
    /// What the server found of the last commit's compared puts.
    compared: Option<Compared>,
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
    /// Connects to a host that accepts writes and takes the writers' advisory lock,
    /// waiting up to `timeout` (then [`Error::Locked`]). The same timeout bounds every
    /// later lock wait of this connection (row locks a foreign writer holds).
    pub fn begin(url: &Url, timeout: Duration) -> Result<Session> {
        let params = Arc::new(url.resolve()?);
        let url_s = url.to_string();
        // A connection lost before anything was read is simply made again.
        let mut lost = 0;
        let (conn, table) = loop {
            let mut conn = match lock_session(&params, &url_s, timeout) {
                Err(LockError::Lost(_)) if lost < RECONNECTS => {
                    lost += 1;
                    continue;
                }
                Err(LockError::Lost(e)) => return Err(pg_error(&url_s, &e)),
                Err(LockError::Other(e)) => return Err(e),
                Ok(c) => c,
            };
            match conn.run(|c| async { inspect(&*c, &url_s).await }) {
                Ok(t) => break (conn, t),
                Err(InspectError::Pg(e)) if is_connection_loss(&e, &conn) && lost < RECONNECTS => {
                    lost += 1;
                }
                Err(InspectError::Pg(e)) => return Err(pg_error(&url_s, &e)),
                Err(InspectError::Other(e)) => return Err(e),
            }
        };
        let exists = table.is_some();
        Ok(Session {
            store: Arc::new(PgStore {
                url: url_s.clone(),
                params,
                table: table.unwrap_or(Table::OURS),
                inner: Mutex::new(Inner {
                    conn: Some(conn),
                    hold: Some(Hold {
                        lock_timeout: timeout,
                        log: Vec::new(),
                    }),
                }),
            }),
            url: url_s,
            exists,
            compared: None,
        })
    }

    /// Whether the server can compare plain passwords with the stored ones itself
    /// (see [`PgStore::only_passwords`]); false while there is no table.
    pub fn compares_passwords(&self) -> Result<bool> {
        if !self.exists {
            return Ok(false);
        }
        self.store.only_passwords()
    }

    /// How many of `puts` would change the table (see [`PgStore::puts_that_write`]).
    pub fn puts_that_write(&self, puts: &[(&[u8], &[u8])]) -> Result<usize> {
        if !self.exists {
            return Ok(puts.len());
        }
        self.store.puts_that_write(puts)
    }

    /// What the server found of the last commit's compared puts, taken.
    pub fn take_compared(&mut self) -> Option<Compared> {
        self.compared.take()
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
    /// there is none; retries after a serialization failure or deadlock, and after a
    /// lost connection as the module docs say. Returns the number of records
    /// afterwards.
    pub fn commit(&mut self, changes: &Changes) -> Result<u64> {
        let ops = changes
            .ops
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_ref().map(|v| v.as_slice())));
        let writes = Writes::of(changes.replace_all, None, ops, &self.url)?;
        self.apply(&writes)?.ok_or_else(|| {
            Error::Invalid("internal: a commit of ordinary changes left no count".into())
        })
    }

    /// [`Session::commit`] of a bulk change set (a PostgreSQL stage's list). The
    /// records afterwards are not counted when the server compared the puts (that
    /// count would be a scan of the table, which nothing of an import needs).
    pub(crate) fn commit_list(&mut self, list: &ChangeList) -> Result<Option<u64>> {
        let writes = Writes::of(list.replace_all, list.compare, list.iter(), &self.url)?;
        self.apply(&writes)
    }

    /// Applies the writes of a change set, as [`Session::commit`] says.
    fn apply(&mut self, writes: &Writes<'_>) -> Result<Option<u64>> {
        let store = &*self.store;
        let url = self.url.as_str();
        let mut inner = store.lock();
        let mut attempt = 0;
        let mut lost = 0;
        let mut upsert = false;
        loop {
            if inner.conn.is_none() {
                store.reconnect(&mut inner, true)?;
            }
            let sent = Cell::new(false);
            let conn = inner.conn.as_mut().expect("connected");
            let res = conn.run(|c| writes.apply(c, url, &sent, upsert));
            let e = match res {
                Ok((n, compared)) => {
                    self.exists = true;
                    self.compared = compared;
                    return Ok(n);
                }
                Err(ApplyError::Other(e)) => return Err(e),
                Err(ApplyError::Pg(e)) => e,
            };
            let unique = e.code() == Some(&SqlState::UNIQUE_VIOLATION);
            if unique && !upsert && writes.compare.is_none() {
                // A foreign writer added a row between the UPDATE and the INSERT.
                upsert = true;
                continue;
            }
            // Compared puts are counted, which the upsert cannot do: run them again.
            if is_serialization_failure(&e) || unique {
                if attempt >= RETRIES {
                    return Err(backend_error(
                        url,
                        format!("gave up after {attempt} retries: {}", error_text(&e)),
                    ));
                }
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 << attempt.min(5)));
                continue;
            }
            if !is_connection_loss(&e, conn) {
                return Err(pg_error(url, &e));
            }
            // The connection is gone, and the lock with it.
            inner.conn = None;
            lost += 1;
            let why = error_text(&e);
            let outcome = if sent.get() {
                "the commit had been sent: whether it happened could not be checked"
            } else {
                "nothing of this change set was written"
            };
            if lost > RECONNECTS {
                return Err(backend_error(
                    url,
                    format!(
                        "the connection to the server was lost {lost} times ({why}); giving \
                         up: {outcome}"
                    ),
                ));
            }
            if let Err(e) = store.reconnect(&mut inner, false) {
                return Err(backend_error(
                    url,
                    format!(
                        "the connection to the server was lost ({why}) and could not be made \
                         again ({}): {outcome}",
                        strip_url(&e.to_string(), url)
                    ),
                ));
            }
            let Inner { conn, hold } = &mut *inner;
            let conn = conn.as_mut().expect("reconnected");
            if sent.get() {
                // Did the commit happen before the connection dropped?
                match conn.run(|c| writes.applied(c, &store.table)) {
                    Ok(Some(n)) => {
                        self.exists = true;
                        self.compared = writes.compare.map(|_| Compared::Uncounted);
                        return Ok(Some(n));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        inner.conn = None;
                        return Err(backend_error(
                            url,
                            format!(
                                "the connection to the server was lost ({why}), and checking \
                                 whether the commit happened failed: {}",
                                error_text(&e)
                            ),
                        ));
                    }
                }
            }
            let log = &hold.as_ref().expect("a writer's store").log;
            if let Err(e) = validate_log(conn, log, &store.table, url) {
                inner.conn = None;
                return Err(e);
            }
            // Nothing this change set was based on changed: run it again, whole.
        }
    }
}

/// The message of an error about `url`, without the leading `url: `.
fn strip_url(text: &str, url: &str) -> String {
    text.strip_prefix(url)
        .and_then(|t| t.strip_prefix(": "))
        .unwrap_or(text)
        .to_string()
}

fn is_serialization_failure(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
        || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// What went wrong applying a change set.
enum ApplyError {
    Pg(tokio_postgres::Error),
    Other(Error),
}

impl From<tokio_postgres::Error> for ApplyError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApplyError::Pg(e)
    }
}

impl From<InspectError> for ApplyError {
    fn from(e: InspectError) -> Self {
        match e {
            InspectError::Pg(e) => ApplyError::Pg(e),
            InspectError::Other(e) => ApplyError::Other(e),
        }
    }
}

/// A change set as the columns the write statements take.
struct Writes<'a> {
    replace_all: bool,
    /// Puts the server compares with the stored values (then there are no deletes).
    compare: Option<Compare>,
    del: [Vec<&'a str>; 3],
    put: [Vec<&'a str>; 3],
    values: Vec<&'a [u8]>,
}

/// Index ranges of `n` rows cut so that each piece holds at most [`STATEMENT_BYTES`]
/// (at least one row each).
fn pieces(n: usize, size: impl Fn(usize) -> usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for i in 0..n {
        let s = size(i) + 16;
        if i > start && bytes + s > STATEMENT_BYTES {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += s;
    }
    if start < n {
        out.push(start..n);
    }
    out
}

impl<'a> Writes<'a> {
    /// The writes of a change set: `ops` gives each key in key order with `Some(value)`
    /// to store or `None` to delete.
    fn of(
        replace_all: bool,
        compare: Option<Compare>,
        ops: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + Clone,
        url: &str,
    ) -> Result<Writes<'a>> {
        // Sized once: growing them would move each (the binaries' allocator wipes the
        // old block on every realloc).
        let n = ops.size_hint().0;
        let mut w = Writes {
            replace_all,
            compare,
            del: Default::default(),
            put: std::array::from_fn(|_| Vec::with_capacity(n)),
            values: Vec::with_capacity(n),
        };
        if !replace_all {
            for key in ops.clone().filter(|(_, v)| v.is_none()).map(|(k, _)| k) {
                if compare.is_some() {
                    return Err(Error::Invalid(
                        "internal: a change set the server compares holds a delete".into(),
                    ));
                }
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
        for (key, value) in ops.filter_map(|(k, v)| v.map(|v| (k, v))) {
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
            if value.len().max(key.len()) > MAX_FIELD {
                return Err(Error::Invalid(format!(
                    "{url}: a record of {} bytes is longer than PostgreSQL keeps (1 GiB)",
                    key.len() + value.len()
                )));
            }
            w.put[0].push(name("user name", k.user)?);
            w.put[1].push(name("realm", k.realm)?);
            w.put[2].push(name("property name", k.property)?);
            w.values.push(value);
        }
        Ok(w)
    }

    fn del_pieces(&self) -> Vec<std::ops::Range<usize>> {
        let [u, r, p] = &self.del;
        pieces(u.len(), |i| u[i].len() + r[i].len() + p[i].len())
    }

    fn put_pieces(&self) -> Vec<std::ops::Range<usize>> {
        let [u, r, p] = &self.put;
        pieces(u.len(), |i| {
            u[i].len() + r[i].len() + p[i].len() + self.values[i].len()
        })
    }

    /// The whole change set in one transaction; `sent` is set just before COMMIT goes
    /// to the server. `upsert`: store rows with `INSERT ... ON CONFLICT` only. Returns
    /// the number of records afterwards (not counted for compared puts) and, for
    /// compared puts, what the server found.
    async fn apply(
        &self,
        client: &mut Client,
        url: &str,
        sent: &Cell<bool>,
        upsert: bool,
    ) -> std::result::Result<(Option<u64>, Option<Compared>), ApplyError> {
        let tx = client.transaction().await?;
        // Our own value NULL is a value, not the plugin's "delete" (see the trigger).
        tx.batch_execute("SET LOCAL sasldb.keep_null = 'on'")
            .await?;
        let table = match inspect(&tx, url).await? {
            Some(t) => t,
            None => {
                tx.batch_execute(SCHEMA).await?;
                inspect(&tx, url).await?.ok_or_else(|| {
                    ApplyError::Other(backend_error(url, "table not created".into()))
                })?
            }
        };
        if self.replace_all {
            tx.execute("DELETE FROM sasldb", &[]).await?;
        }
        for range in self.del_pieces() {
            let [u, r, p] = &self.del;
            tx.execute(
                "DELETE FROM sasldb s USING unnest($1::text[], $2::text[], $3::text[]) AS d(u, r, p) \
                 WHERE s.username = d.u AND s.realm = d.r AND s.property = d.p",
                &[&&u[range.clone()], &&r[range.clone()], &&p[range]],
            )
            .await?;
        }
        let value = if table.bytea {
            "v"
        } else {
            "convert_from(v, getdatabaseencoding())"
        };
        let upsert_sql = format!(
            "INSERT INTO sasldb (username, realm, property, value) SELECT u, r, p, {value} \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS t(u, r, p, v) \
             ON CONFLICT (username, realm, property) DO UPDATE SET value = excluded.value"
        );
        let mut compared = None;
        if let Some(how) = self.compare {
            compared = Some(self.store_compared(&tx, &table, how).await?);
        } else if !upsert && self.values.len() >= BULK_ROWS {
            self.store_bulk(&tx, &table, value).await?;
        } else {
            for range in self.put_pieces() {
                let [u, r, p] = &self.put;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
                    &&u[range.clone()],
                    &&r[range.clone()],
                    &&p[range.clone()],
                    &&self.values[range.clone()],
                ];
                tx.execute(&upsert_sql, &params).await?;
            }
        }
        let n = match compared {
            Some(_) => None,
            None => Some(count(&tx).await?),
        };
        sent.set(true);
        tx.commit().await?;
        Ok((n, compared))
    }

    /// Stores puts the server compares with the stored values (`how`), in a constant
    /// number of statements: into a table with no rows, one binary `COPY` straight
    /// into it; otherwise the rows go into a temporary table by one `COPY` (or, for a
    /// few rows or without the right to make temporary tables, as arrays), then one
    /// `UPDATE ... FROM` changes the rows whose value differs and one `INSERT` adds the
    /// keys that are new. The statements' row counts are what the server found.
    async fn store_compared(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        table: &Table,
        how: Compare,
    ) -> std::result::Result<Compared, ApplyError> {
        use tokio_postgres::types::ToSql;
        if !(table.ours && table.bytea) {
            return Err(ApplyError::Other(Error::Invalid(
                "internal: only our own table compares puts on the server".into(),
            )));
        }
        let (any_row, temp) = bulk_start(tx).await?;
        let n = self.values.len() as u64;
        if !any_row {
            self.copy_rows(tx, COPY_INTO_TABLE).await?;
            return Ok(Compared::Counted {
                added: n,
                updated: 0,
                same: 0,
            });
        }
        let (mut added, mut updated) = (0, 0);
        // One piece: the temporary table; or pieces of rows passed as arrays.
        let in_temp = temp && self.values.len() >= BULK_ROWS;
        // Puts of one property (an import's passwords): the temporary table leaves it
        // out, and the join is on the user and realm alone.
        let [_, _, props] = &self.put;
        let one_property = props.first().filter(|p| props.iter().all(|q| q == *p));
        let (from, prop) = match one_property {
            _ if !in_temp => (
                "unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS t(u, r, p, v)",
                "t.p",
            ),
            Some(_) => ("sasldb_put t", "$1::text"),
            None => ("sasldb_put t", "t.p"),
        };
        if in_temp {
            let (p_column, columns) = match one_property {
                Some(_) => ("", "u, r, v"),
                None => ("p text COLLATE \"C\", ", "u, r, p, v"),
            };
            tx.batch_execute(&format!(
                "CREATE TEMPORARY TABLE sasldb_put (u text COLLATE \"C\", r text COLLATE \"C\", \
                 {p_column}v bytea) ON COMMIT DROP"
            ))
            .await?;
            self.copy_into(
                tx,
                &format!("COPY sasldb_put ({columns}) FROM STDIN (FORMAT binary)"),
                one_property.is_none(),
            )
            .await?;
        }
        let same = format!("s.username = t.u AND s.realm = t.r AND s.property = {prop}");
        let pieces = if in_temp {
            std::iter::once(0..self.values.len()).collect()
        } else {
            self.put_pieces()
        };
        for range in pieces {
            let [u, r, p] = &self.put;
            let (u, r, p, v) = (
                &u[range.clone()],
                &r[range.clone()],
                &p[range.clone()],
                &self.values[range.clone()],
            );
            let arrays: [&(dyn ToSql + Sync); 4] = [&u, &r, &p, &v];
            let property: [&(dyn ToSql + Sync); 1] = [&p[0]];
            let params: &[&(dyn ToSql + Sync)] = match one_property {
                _ if !in_temp => &arrays,
                Some(_) => &property,
                None => &[],
            };
            let mut piece_updated = 0;
            if how == Compare::Upsert {
                piece_updated = tx
                    .execute(
                        &format!(
                            "UPDATE sasldb s SET value = t.v FROM {from} \
                             WHERE {same} AND s.value <> t.v"
                        ),
                        params,
                    )
                    .await?;
            }
            // When every put changed an existing key, none is new.
            if piece_updated < range.len() as u64 {
                added += tx
                    .execute(
                        &format!(
                            "INSERT INTO sasldb (username, realm, property, value) \
                             SELECT u, r, {prop}, v FROM {from} \
                             WHERE NOT EXISTS (SELECT 1 FROM sasldb s WHERE {same})"
                        ),
                        params,
                    )
                    .await?;
            }
            updated += piece_updated;
        }
        Ok(Compared::Counted {
            added,
            updated,
            same: n.saturating_sub(added + updated),
        })
    }

    /// Stores the rows of a big change set in a constant number of statements: into a
    /// table with no rows, one binary `COPY` straight into it; otherwise one `COPY` into
    /// a temporary table, one `UPDATE ... FROM` it for the rows that exist and one plain
    /// `INSERT` of the others. (Without the right to make temporary tables, the same two
    /// statements with the rows passed as arrays.) A row a foreign writer adds meanwhile
    /// makes the `COPY` or `INSERT` fail with a unique violation: the caller runs the
    /// transaction again with the upsert.
    async fn store_bulk(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        table: &Table,
        value: &str,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let (any_row, temp) = bulk_start(tx).await?;
        let n = self.values.len() as u64;
        if !any_row && table.ours && table.bytea {
            self.copy_rows(tx, COPY_INTO_TABLE).await?;
            return Ok(());
        }
        let same = "s.username = t.u AND s.realm = t.r AND s.property = t.p";
        if temp {
            tx.batch_execute(
                "CREATE TEMPORARY TABLE sasldb_put (u text COLLATE \"C\", r text COLLATE \"C\", \
                 p text COLLATE \"C\", v bytea) ON COMMIT DROP",
            )
            .await?;
            self.copy_rows(
                tx,
                "COPY sasldb_put (u, r, p, v) FROM STDIN (FORMAT binary)",
            )
            .await?;
            let updated = tx
                .execute(
                    &format!("UPDATE sasldb s SET value = {value} FROM sasldb_put t WHERE {same}"),
                    &[],
                )
                .await?;
            if updated < n {
                let only_new = if updated == 0 {
                    String::new()
                } else {
                    format!("WHERE NOT EXISTS (SELECT 1 FROM sasldb s WHERE {same})")
                };
                tx.execute(
                    &format!(
                        "INSERT INTO sasldb (username, realm, property, value) \
                         SELECT u, r, p, {value} FROM sasldb_put t {only_new}"
                    ),
                    &[],
                )
                .await?;
            }
            return Ok(());
        }
        let rows = "unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS t(u, r, p, v)";
        let insert_sql = format!(
            "INSERT INTO sasldb (username, realm, property, value) SELECT u, r, p, {value} FROM {rows}"
        );
        for range in self.put_pieces() {
            let [u, r, p] = &self.put;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
                &&u[range.clone()],
                &&r[range.clone()],
                &&p[range.clone()],
                &&self.values[range.clone()],
            ];
            let updated = tx
                .execute(
                    &format!("UPDATE sasldb s SET value = {value} FROM {rows} WHERE {same}"),
                    &params,
                )
                .await?;
            if updated == 0 {
                tx.execute(&insert_sql, &params).await?;
            } else if updated < range.len() as u64 {
                tx.execute(
                    &format!("{insert_sql} WHERE NOT EXISTS (SELECT 1 FROM sasldb s WHERE {same})"),
                    &params,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Every row to store, through one binary `COPY ... FROM STDIN` (`sql`), encoded
    /// here in pieces of [`COPY_CHUNK`] bytes (each a wiped buffer): a row costs a few
    /// copies into the piece, where tokio-postgres's `BinaryCopyInWriter` type-checks
    /// each field through `ToSql` and hands the connection a message per 4 KiB.
    async fn copy_rows(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        sql: &str,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        self.copy_into(tx, sql, true).await
    }

    /// [`Writes::copy_rows`], leaving the property out unless `property`.
    async fn copy_into(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        sql: &str,
        property: bool,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        use futures_sink::Sink;
        let sink = tx
            .copy_in::<_, std::io::Cursor<Zeroizing<Vec<u8>>>>(sql)
            .await?;
        let mut sink = std::pin::pin!(sink);
        let new_chunk = || Zeroizing::new(Vec::with_capacity(COPY_CHUNK + 4096));
        let mut chunk = new_chunk();
        // The binary COPY header: signature, flags, no extension.
        chunk.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        chunk.extend_from_slice(&0i32.to_be_bytes());
        chunk.extend_from_slice(&0i32.to_be_bytes());
        let [u, r, p] = &self.put;
        let fields: i16 = if property { 4 } else { 3 };
        for i in 0..self.values.len() {
            chunk.extend_from_slice(&fields.to_be_bytes());
            let p = if property {
                Some(p[i].as_bytes())
            } else {
                None
            };
            for field in [
                Some(u[i].as_bytes()),
                Some(r[i].as_bytes()),
                p,
                Some(self.values[i]),
            ]
            .into_iter()
            .flatten()
            {
                // `Writes::of` keeps keys and values under 1 GiB.
                let len = i32::try_from(field.len()).expect("a field under 2 GiB");
                chunk.extend_from_slice(&len.to_be_bytes());
                chunk.extend_from_slice(field);
            }
            if chunk.len() >= COPY_CHUNK {
                let full = std::mem::replace(&mut chunk, new_chunk());
                std::future::poll_fn(|cx| sink.as_mut().poll_ready(cx)).await?;
                sink.as_mut().start_send(std::io::Cursor::new(full))?;
            }
        }
        // The trailer.
        chunk.extend_from_slice(&(-1i16).to_be_bytes());
        std::future::poll_fn(|cx| sink.as_mut().poll_ready(cx)).await?;
        sink.as_mut().start_send(std::io::Cursor::new(chunk))?;
        sink.as_mut().finish().await
    }

    /// Whether the table holds this change set (every put with its value, no deleted
    /// row; for a replacement, nothing else): the record count if so.
    async fn applied(
        &self,
        c: &mut Client,
        table: &Table,
    ) -> std::result::Result<Option<u64>, tokio_postgres::Error> {
        let exists: bool = c
            .query_one("SELECT to_regclass('sasldb') IS NOT NULL", &[])
            .await?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let val = table.value_expr;
        for range in self.put_pieces() {
            let [u, r, p] = &self.put;
            let n: i64 = c
                .query_one(
                    &format!(
                        "SELECT count(*) FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) \
                         AS t(u, r, p, v) JOIN sasldb s ON s.username = t.u AND s.realm = t.r \
                         AND s.property = t.p AND {val} = t.v"
                    ),
                    &[
                        &&u[range.clone()],
                        &&r[range.clone()],
                        &&p[range.clone()],
                        &&self.values[range.clone()],
                    ],
                )
                .await?
                .get(0);
            if n != range.len() as i64 {
                return Ok(None);
            }
        }
        for range in self.del_pieces() {
            let [u, r, p] = &self.del;
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM unnest($1::text[], $2::text[], $3::text[]) AS d(u, r, p) \
                     JOIN sasldb s ON s.username = d.u AND s.realm = d.r AND s.property = d.p",
                    &[&&u[range.clone()], &&r[range.clone()], &&p[range]],
                )
                .await?
                .get(0);
            if n != 0 {
                return Ok(None);
            }
        }
        let n = count(&*c).await?;
        if self.replace_all && n != self.values.len() as u64 {
            return Ok(None);
        }
        Ok(Some(n))
    }
}

/// The start of a bulk store: raises `work_mem` for the transaction (so that its joins
/// hash every row at once, in memory), and says whether the table has any row and
/// whether the role may make temporary tables.
async fn bulk_start(
    tx: &tokio_postgres::Transaction<'_>,
) -> std::result::Result<(bool, bool), tokio_postgres::Error> {
    tx.batch_execute("SET LOCAL work_mem = '64MB'").await?;
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM sasldb), \
             has_database_privilege(current_database(), 'TEMPORARY')",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// The number of records.
async fn count(
    c: &impl tokio_postgres::GenericClient,
) -> std::result::Result<u64, tokio_postgres::Error> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM sasldb WHERE username IS NOT NULL AND realm IS NOT NULL \
             AND property IS NOT NULL AND value IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    Ok(n.max(0) as u64)
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
