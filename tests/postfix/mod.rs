//! End to end with a real Postfix: a private smtpd ([`crate::support::postfix`]) with
//! Cyrus SASL authenticates SMTP AUTH logins against databases written by Debian's
//! tools, by this crate and by our binaries. A test that needs a running smtpd to prove
//! a file format or a tool belongs here (except the PostgreSQL store's, in `postgres`,
//! and sync-chroot's, in `tools::sasldb_cli`).

/// Real Postfix SMTP AUTH against sasldb files written by saslpasswd2 and by this crate.
mod postfix_e2e;

/// Real Postfix SMTP AUTH against files written by our saslpasswd2 and sasldb import.
mod postfix_tools;
