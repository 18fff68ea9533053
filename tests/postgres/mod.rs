//! The PostgreSQL store against a private PostgreSQL server
//! ([`crate::support::pg`]): everything that needs the server, from the `sasldb`
//! binary with a `postgresql://` URL (including `check` and `sync-chroot`) to Cyrus's
//! pgsql plugin in Postfix.

/// The PostgreSQL store: sasldb import/convert/check, pgpass, concurrency, Cyrus's pgsql plugin in Postfix.
mod postgresql;

/// TLS: a TLS-only server with certificates of the test's own; Cyrus's pgsql plugin over TLS.
mod tls;

/// Connections that drop (the writer killed during imports, a reader's connection
/// terminated) and hosts that never answer (connect_timeout).
mod recovery;

/// A primary and a hot standby named by one URL: writers find the primary, and follow
/// a promotion.
mod failover;
