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

/// Harness: libsasl's sample server driven line by line, gsasl as the client.
mod sample_server;

/// OTP and SCRAM secrets against saslpasswd2, libsasl's server and gsasl.
mod secrets;

/// Generated man pages match the checked-in ones and render cleanly.
mod man;

/// The Postfix realm resolver, compared with the real `postconf`.
mod realm;

/// Cyrus SASL <appname>.conf handling, compared with the real `saslpasswd2`.
mod cyrus_conf;

/// LMDB files against Debian's liblmdb 0.9.24 tools: reads, in-place writes, lock file, bulk load.
mod lmdb;

/// GDBM: Cyrus/gdbmtool files read by us, ours read and updated by libgdbm, damage, flock.
mod gdbm;

/// Harness: a private, throw-away Postfix instance (smtpd + Cyrus SASL) and SMTP AUTH clients.
mod postfix;

/// Real Postfix SMTP AUTH against sasldb files written by saslpasswd2 and by this crate.
mod postfix_e2e;

/// The SQLite store against Cyrus's sql auxprop plugin, saslpasswd2 and the sqlite3 shell.
mod sqlite;

/// Our saslpasswd2 and sasldblistusers2 against Debian's Cyrus binaries, same inputs.
mod compat;

/// Real Postfix SMTP AUTH against files written by our saslpasswd2 and sasldb import.
mod postfix_tools;

/// sasldb convert: a round trip through every format, refusals.
mod convert;

/// Harness: a private, throw-away PostgreSQL server (shared by the tests, stopped at exit).
mod pg;

/// The PostgreSQL store: sasldb import/convert, pgpass, concurrency, Cyrus's pgsql plugin in Postfix.
mod postgresql;

/// The sasldb admin tool through its binary: every subcommand, bad inputs, round trips, check/sync-chroot.
mod sasldb_cli;

/// Reliability and security: kills, concurrency, bad input, permissions, secrets.
mod reliability;

/// Fuzz findings and seed corpora replayed through the fuzz targets' code (scripts/fuzz).
mod fuzz_regressions;

/// sasldb serve (Dovecot and saslauthd protocols) and sasldb checkpassword against
/// Postfix, Dovecot, doveadm and testsaslauthd.
#[cfg(feature = "serve")]
mod serve;
