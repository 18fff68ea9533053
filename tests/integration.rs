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

/// Generated man pages match the checked-in ones and render cleanly.
mod man;

/// The Postfix realm resolver, compared with the real `postconf`.
mod realm;

/// Cyrus SASL <appname>.conf handling, compared with the real `saslpasswd2`.
mod cyrus_conf;

/// Our saslpasswd2 and sasldblistusers2 against Debian's Cyrus binaries, same inputs.
mod compat;
