//! Manage Cyrus SASL password databases (sasldb2) without libdb.
//!
//! A sasldb holds one record per user property: the key is
//! `user NUL realm NUL property` (for example `alice\0example.com\0userPassword`), the
//! value the raw secret. This crate reads and writes such databases in every format
//! Cyrus SASL uses, and applies every change under a lock with an atomic replace.

pub mod account;
pub mod bulk;
#[doc(hidden)]
pub mod cli;
pub mod cyrus_conf;
pub mod database;
pub mod doctor;
pub mod error;
pub mod location;
pub mod postfix;
pub mod record;
pub mod storage;

pub use database::{CommitReport, Database, KeyList, Transaction, WriteOptions};
pub use error::{Error, Result};
pub use location::{Detected, Format, Location};
pub use record::{Key, KeyError, KeyRef, Record, Secret};
pub use storage::{Backend, Changes, LayoutHint, Records};
