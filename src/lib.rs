//! Manage Cyrus SASL password databases (sasldb2) without libdb.
//!
//! A sasldb holds one record per user property: the key is
//! `user NUL realm NUL property` (for example `alice\0example.com\0userPassword`), the
//! value the raw secret. This crate reads and writes such databases in every format
//! Cyrus SASL uses (Berkeley DB hash, GDBM, LMDB, and the `sasldb` table of Cyrus's
//! `sql` plugin in SQLite or PostgreSQL), and applies every change under a lock,
//! atomically.
//!
//! ```
//! use sasldb::{Database, Location, Transaction, Verdict, WriteOptions, account};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("sasldb2");
//! let loc: Location = path.to_str().unwrap().parse()?;   // or "lmdb:/etc/sasl2/sasldb2"...
//!
//! // Write: a transaction under the database's writer lock, applied atomically.
//! let mut txn = Transaction::begin(&loc, &WriteOptions::default())?;
//! account::set_password(&mut txn, b"alice", b"example.com", b"s3cret", &Default::default())?;
//! txn.commit()?;
//!
//! // Read: one opened database serves any number of threads.
//! let db = Database::open(&loc)?;
//! assert_eq!(account::verify_password(&db, b"alice", b"example.com", b"s3cret")?, Verdict::Match);
//! assert_eq!(account::verify_password(&db, b"alice", b"example.com", b"nope")?, Verdict::Mismatch);
//! for user in db.users()? {
//!     let user = user?;
//!     println!("{}@{}", String::from_utf8_lossy(&user.user), String::from_utf8_lossy(&user.realm));
//! }
//! # Ok::<(), sasldb::Error>(())
//! ```
//!
//! Module map (the source tree follows it):
//! - the storage core (private): one module per on-disk structure (Berkeley DB hash,
//!   GDBM, LMDB, SQL), the write path (lock, ownership, atomic replace), and the one
//!   dispatch over the formats;
//! - [`Location`] and [`Format`]: naming a database, detecting its format;
//! - [`Database`] (read) and [`Transaction`] (write), with [`WriteOptions`];
//! - [`record`]: the key codec and the secret buffer;
//! - [`account`]: passwords and the secrets derived from them ([`account::secrets`]);
//! - [`bulk`]: import, export, convert;
//! - [`cyrus_conf`]: Cyrus SASL's `<appname>.conf`;
//! - `postfix` (feature `postfix`): the realm Postfix uses, its chroot copy;
//!   `doctor`: `sasldb check`;
//! - `serve` (feature `serve`): `sasldb serve` (the Dovecot auth and saslauthd
//!   protocols) and `sasldb checkpassword`.
//!
//! Cargo features: `lmdb`, `sqlite`, `postgres` (the formats that need C code or an
//! async runtime), `postfix`, `cli` (the three tools), `serve` (the authentication
//! daemons); all on by default. Without
//! them the library reads and writes Berkeley DB and GDBM in pure Rust.

#![warn(missing_docs)]

pub mod account;
pub mod bulk;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod cyrus_conf;
mod database;
#[cfg(feature = "postfix")]
pub mod doctor;
mod error;
mod format;
mod location;
#[cfg(feature = "postfix")]
pub mod postfix;
pub mod record;
#[cfg(feature = "serve")]
pub mod serve;
mod storage;

pub use account::Verdict;
pub use database::{
    CommitReport, Compared, Database, KeyList, LmdbOptions, OwnershipPolicy, SpillOptions,
    Transaction, User, Users, WriteOptions,
};
pub use error::{Error, Result, io_text};
pub use location::{Detected, Format, Location, PostgresUrl, detect};
pub use record::{Key, KeyError, KeyRef, Record, Secret};
pub use storage::Records;
pub use storage::endian::Endian;

/// The project's internals, for its own tests, fuzz targets and benchmarks only: not
/// part of the API, no stability promise.
#[doc(hidden)]
pub mod internals {
    pub use crate::database::{exists, real_path};
    #[cfg(feature = "lmdb")]
    pub use crate::storage::lmdb;
    pub use crate::storage::sql;
    pub use crate::storage::{Backend, Changes, LayoutHint};
    pub use crate::storage::{bdb, endian, gdbm, options, persist, sort};
}
