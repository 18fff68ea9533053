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
//! - [`bdb`]: the pure-Rust Berkeley DB hash reader and writer;
//! - [`postfix`]: main.cf parsing and `$name` expansion, and the realm Postfix uses;
//! - [`cyrus_conf`]: finding and reading Cyrus SASL's `<appname>.conf`.

pub mod bdb;
pub mod cyrus_conf;
pub mod endian;
pub mod error;
pub mod postfix;
pub mod record;
pub mod store;

pub use error::{Error, Result};
pub use record::{Key, KeyError, KeyRef, Record, Secret};
pub use store::{Backend, Changes, Detected, Format, LayoutHint, Location, Records};
