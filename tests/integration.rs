//! One integration test binary (see Cargo.toml `autotests = false`). Each module says
//! what belongs in it.

/// Shared helpers: scratch directories, fixtures, running our binaries and peer tools.
mod util;

/// Reading the reference BDB files written by real libdb/Cyrus tools.
mod bdb_fixtures;

/// The Postfix realm resolver, compared with the real `postconf`.
mod realm;

/// Cyrus SASL <appname>.conf handling, compared with the real `saslpasswd2`.
mod cyrus_conf;
