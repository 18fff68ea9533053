//! [`Format`]: the storage formats a sasldb comes in, and their names.

use std::fmt;

/// The storage formats sasldb files come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum Format {
    /// Berkeley DB hash (libdb 5.3, hash version 9): Debian and Ubuntu.
    Bdb,
    /// LMDB 0.9 (`MDB_NOSUBDIR`): upstream Cyrus since BDB was dropped.
    Lmdb,
    /// GNU dbm 1.x: Fedora and RHEL 9.
    Gdbm,
    /// An SQLite table read by Cyrus's `sql` auxprop plugin.
    Sqlite,
    /// A table in a PostgreSQL database read by Cyrus's `sql` auxprop plugin
    /// (`sql_engine: pgsql`); named by a `postgresql://` URL, never a path.
    Postgres,
}

/// What names a format: its `FORMAT:` prefix and aliases, its display name, and the
/// cargo feature that builds it in. One row per [`Format`], in declaration order.
struct Names {
    prefix: &'static str,
    aliases: &'static [&'static str],
    display: &'static str,
    feature: &'static str,
    /// The Cyrus auxprop plugin that reads this format.
    plugin: &'static str,
}

const NAMES: [Names; 5] = [
    Names {
        prefix: "bdb",
        aliases: &["berkeley", "berkeleydb"],
        display: "Berkeley DB",
        feature: "",
        plugin: "sasldb",
    },
    Names {
        prefix: "lmdb",
        aliases: &[],
        display: "LMDB",
        feature: "lmdb",
        plugin: "sasldb",
    },
    Names {
        prefix: "gdbm",
        aliases: &[],
        display: "GDBM",
        feature: "",
        plugin: "sasldb",
    },
    Names {
        prefix: "sqlite",
        aliases: &["sqlite3"],
        display: "SQLite",
        feature: "sqlite",
        plugin: "sql",
    },
    Names {
        prefix: "postgresql",
        aliases: &[],
        display: "PostgreSQL",
        feature: "postgres",
        plugin: "sql",
    },
];

impl Format {
    /// Every file format, in the order detection tries them ([`Format::Postgres`] is
    /// not a file: it is named by a URL).
    pub const ALL: [Format; 4] = [Format::Bdb, Format::Lmdb, Format::Gdbm, Format::Sqlite];

    fn names(self) -> &'static Names {
        &NAMES[self as usize]
    }

    /// The prefix used in `FORMAT:PATH` locations.
    pub fn prefix(self) -> &'static str {
        self.names().prefix
    }

    /// Whether databases of this format are files (everything but PostgreSQL).
    pub fn is_file(self) -> bool {
        self != Format::Postgres
    }

    /// The cargo feature that builds this format in (empty: always built).
    pub fn feature(self) -> &'static str {
        self.names().feature
    }

    /// The Cyrus SASL auxprop plugin that reads databases of this format: `sasldb`
    /// (Berkeley DB, LMDB, GDBM) or `sql` (SQLite, PostgreSQL).
    pub fn cyrus_plugin(self) -> &'static str {
        self.names().plugin
    }

    /// Looks a `FORMAT:` prefix up (case-insensitive; `berkeley` is an alias of `bdb`).
    /// PostgreSQL has no prefix: it is named by a `postgresql://` URL.
    pub fn from_prefix(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| {
            let n = f.names();
            n.prefix.eq_ignore_ascii_case(s) || n.aliases.iter().any(|a| a.eq_ignore_ascii_case(s))
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.names().display)
    }
}
