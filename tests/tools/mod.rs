//! Our binaries' command lines and the configuration they read: the drop-in
//! `saslpasswd2` and `sasldblistusers2` against Debian's Cyrus binaries, the `sasldb`
//! admin tool, Cyrus's `<appname>.conf`, the Postfix realm, the man pages. A test of
//! what a tool prints, exits with or reads from its configuration belongs here.

/// Our saslpasswd2 and sasldblistusers2 against Debian's Cyrus binaries, same inputs.
mod compat;

/// The sasldb admin tool through its binary: every subcommand, bad inputs, round trips, check/sync-chroot.
mod sasldb_cli;

/// Cyrus SASL <appname>.conf handling, compared with the real `saslpasswd2`.
mod cyrus_conf;

/// The Postfix realm resolver, compared with the real `postconf`.
mod realm;

/// Generated man pages match the checked-in ones and render cleanly.
mod man;
