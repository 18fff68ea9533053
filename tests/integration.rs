//! One integration test binary (see Cargo.toml `autotests = false`). Each module says
//! what belongs in it.

/// Shared helpers: scratch directories, fixtures, running our binaries and peer tools.
mod util;

/// Reading the reference BDB files written by real libdb/Cyrus tools.
mod bdb_fixtures;

/// Our BDB writer against the real libdb tools: db_verify, db_dump, keyed lookups.
mod bdb_roundtrip;

/// Damaged and hostile BDB files: clear errors, no panic, no hang.
mod bdb_corrupt;

/// OTP and SCRAM secrets against saslpasswd2, libsasl's server and gsasl.
mod secrets;

/// The SQLite store against Cyrus's sql auxprop plugin, saslpasswd2 and the sqlite3 shell.
mod sqlite;
