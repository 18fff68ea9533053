//! Manage Cyrus SASL password databases (sasldb2) without libdb.
//!
//! A sasldb holds one record per user property: the key is
//! `user NUL realm NUL property` (for example `alice\0example.com\0userPassword`), the
//! value the raw secret. This crate reads and writes such databases in every format
//! Cyrus SASL uses, and applies every change under a lock with an atomic replace.
//!
//! Module map:
//! - [`record`]: the key codec and secret type;
//! - [`store`]: formats, locations, format detection and the backend interface;
//! - [`database`]: [`Database`] (read) and [`Transaction`] (write), the entry points;
//! - [`persist`]: the write path (lock, ownership policy, atomic replace);
//! - [`bdb`]: the pure-Rust Berkeley DB hash reader and writer;
//! - [`sqlite`]: the SQLite table Cyrus's `sql` auxprop plugin reads and writes;
//! - [`pgsql`]: the same table in PostgreSQL (`postgresql://` URLs), for many mail servers;
//! - [`endian`]: byte order as a runtime value;
//! - [`secrets`]: the OTP and SCRAM secrets derived from a password, and checking
//!   passwords against stored values;
//! - [`account`]: user-level operations (set a password with its derived secrets,
//!   delete a user, name checks);
//! - [`convert`]: any format to any format, in one transaction;
//! - [`export`]: JSON, CSV and Dovecot passwd-file output;
//! - [`import`]: bulk import parsers (lines, CSV, JSON) and import modes;
//! - [`postfix`]: main.cf parsing and `$name` expansion, and the realm Postfix uses;
//! - [`chroot`]: master.cf, which file Postfix's smtpd opens, and refreshing its
//!   chroot copy (`sasldb sync-chroot`);
//! - [`doctor`]: `sasldb check`: ownership, content and Postfix setup findings, and
//!   the safe repairs;
//! - [`cyrus_conf`]: finding and reading Cyrus SASL's `<appname>.conf`;
//! - [`sort`]: bounded-memory external sort (for bulk loads that need key order);
//! - [`lmdb`]: LMDB 0.9 files (in-place transactional writes, bulk load);
//! - [`gdbm`]: the pure-Rust GNU dbm reader and writer;
//! - [`serve`]: `sasldb serve` (the Dovecot auth and saslauthd protocols) and
//!   `sasldb checkpassword` (feature `serve`, on by default);
//! - `cli`: the binaries' front ends (not a stable API).

pub mod account;
pub mod bdb;
pub mod chroot;
#[doc(hidden)]
pub mod cli;
pub mod convert;
pub mod cyrus_conf;
pub mod database;
pub mod doctor;
pub mod endian;
pub mod error;
pub mod export;
pub mod gdbm;
pub mod import;
pub mod lmdb;
pub mod persist;
pub mod pgsql;
pub mod postfix;
pub mod record;
pub mod secrets;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sort;
pub mod sqlite;
pub mod store;

#[cfg(test)]
mod fault_tests;

pub use database::{CommitReport, Database, KeyList, Transaction, WriteOptions};
pub use error::{Error, Result};
pub use record::{Key, KeyError, KeyRef, Record, Secret};
pub use store::{Backend, Changes, Detected, Format, LayoutHint, Location, Records};
