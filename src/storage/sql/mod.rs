//! The two SQL stores Cyrus's `sql` auxprop plugin reads: an SQLite file and a
//! PostgreSQL database, both holding the table `sasldb(username, realm, property,
//! value)`.

pub mod pgsql;
pub mod sqlite;
