//! One integration test binary (see Cargo.toml `autotests = false`), grouped by area:
//! the test of a feature lives in the group of that feature. Each group's `mod.rs`
//! says what belongs in it; the shared harness is `support`.

/// The shared harness: fixtures, peers, scratch directories, our binaries, and the
/// private Postfix, PostgreSQL and libsasl sample servers.
mod support;

/// The on-disk formats (Berkeley DB, GDBM, LMDB, SQLite) against their C libraries and
/// tools, damaged files, and `sasldb convert`.
mod formats;

/// The command lines of saslpasswd2, sasldblistusers2 and sasldb, the configuration
/// they read (Cyrus <appname>.conf, the Postfix realm), and the man pages.
mod tools;

/// The library through its public API only, as an embedder uses it.
mod library;

/// OTP and SCRAM secrets against saslpasswd2, libsasl's server and gsasl.
mod secrets;

/// Real Postfix SMTP AUTH against databases written by Debian's tools, this crate and
/// our binaries.
mod postfix;

/// The PostgreSQL store against a private PostgreSQL server.
mod postgres;

/// Reliability and security: kills, concurrency, bad input, permissions, secrets.
mod reliability;

/// Fuzz findings and seed corpora replayed through the fuzz targets' code (scripts/fuzz).
mod fuzz_regressions;

/// sasldb serve (Dovecot and saslauthd protocols) and sasldb checkpassword against
/// Postfix, Dovecot, doveadm and testsaslauthd.
#[cfg(feature = "serve")]
mod serve;
