//! The two SQL stores Cyrus's `sql` auxprop plugin reads: an SQLite file and a
//! PostgreSQL database, both holding the table `sasldb(username, realm, property,
//! value)`.

#[cfg(feature = "postgres")]
pub mod pgsql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
