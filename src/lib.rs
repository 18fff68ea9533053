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
//! - [`endian`]: byte order as a runtime value;
//! - [`secrets`]: the OTP and SCRAM secrets derived from a password, and checking
//!   passwords against stored values;
//! - `cli`: the binaries' front ends (not a stable API).

pub mod bdb;
#[doc(hidden)]
pub mod cli;
pub mod database;
pub mod endian;
pub mod error;
pub mod persist;
pub mod record;
pub mod secrets;
pub mod sqlite;
pub mod store;

pub use database::{CommitReport, Database, Transaction, WriteOptions};
pub use error::{Error, Result};
pub use record::{Key, KeyError, KeyRef, Record, Secret};
pub use store::{Backend, Changes, Detected, Format, LayoutHint, Location, Records};
