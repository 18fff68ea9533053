//! One integration test binary (see Cargo.toml `autotests = false`). Each module says
//! what belongs in it.

/// Shared helpers: scratch directories, fixtures, running our binaries and peer tools.
mod util;

/// Reading the reference BDB files written by real libdb/Cyrus tools.
mod bdb_fixtures;

/// Our BDB writer against the real libdb tools: db_verify, db_dump, keyed lookups.
mod bdb_roundtrip;

/// GDBM: Cyrus/gdbmtool files read by us, ours read and updated by libgdbm, damage, flock.
mod gdbm;
