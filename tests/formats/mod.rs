//! The on-disk formats, one module each, against the real C libraries and their tools
//! (libdb, libgdbm, liblmdb, SQLite and Cyrus's `sql` plugin): reading their files,
//! writing files they read, damaged and hostile files, and `sasldb convert` between
//! formats. A test of how one format stores or reads records belongs here; a test of
//! a tool's command line belongs in `tools`.

/// Reading the reference BDB files written by real libdb/Cyrus tools.
mod bdb_fixtures;

/// Our BDB writer against the real libdb tools: db_verify, db_dump, keyed lookups.
mod bdb_roundtrip;

/// Damaged and hostile BDB files: clear errors, no panic, no hang.
mod bdb_corrupt;

/// GDBM: Cyrus/gdbmtool files read by us, ours read and updated by libgdbm, damage, flock.
mod gdbm;

/// LMDB files against Debian's liblmdb 0.9.24 tools: reads, in-place writes, lock file, bulk load.
mod lmdb;

/// The SQLite store against Cyrus's sql auxprop plugin, saslpasswd2 and the sqlite3 shell.
mod sqlite;

/// sasldb convert: a round trip through every format, refusals.
mod convert;
