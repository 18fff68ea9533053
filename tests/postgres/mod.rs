//! The PostgreSQL store against a private PostgreSQL server
//! ([`crate::support::pg`]): everything that needs the server, from the `sasldb`
//! binary with a `postgresql://` URL (including `check` and `sync-chroot`) to Cyrus's
//! pgsql plugin in Postfix.

/// The PostgreSQL store: sasldb import/convert/check, pgpass, concurrency, Cyrus's pgsql plugin in Postfix.
mod postgresql;

/// TLS: a TLS-only server with certificates of the test's own; Cyrus's pgsql plugin over TLS.
mod tls;
