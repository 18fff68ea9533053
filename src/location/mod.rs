//! Naming a database: the formats ([`Format`]), where a database lives ([`Location`]:
//! a path, `FORMAT:PATH`, or a `postgresql://` URL), and detecting a file's format from
//! its magic bytes ([`detect`]).
//!
//! Pure naming and parsing: nothing here opens a database (see [`crate::storage`]).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, IoContext, Result};

mod postgres;

pub use crate::format::Format;

pub use postgres::Url as PostgresUrl;
#[cfg(feature = "postgres")]
pub(crate) use postgres::{
    check_session_attrs, check_sslmode, parse_port, parse_timeout, split_list,
};

/// Where a database lives: a path, with the format optionally forced by a
/// `FORMAT:` prefix, or a `postgresql://` (or `postgres://`) URL naming a PostgreSQL
/// database (see [`PostgresUrl`]: a URL with a password is refused).
///
/// ```
/// use sasldb::{Format, Location};
/// let l: Location = "lmdb:/etc/sasl2/sasldb2".parse().unwrap();
/// assert_eq!(l.format(), Some(Format::Lmdb));
/// assert_eq!(l.path(), std::path::Path::new("/etc/sasl2/sasldb2"));
/// let plain: Location = "/etc/sasldb2".parse().unwrap();
/// assert_eq!(plain.format(), None);
/// let pg: Location = "postgresql://sasl@db.example.org/mail".parse().unwrap();
/// assert_eq!(pg.format(), Some(Format::Postgres));
/// assert!(pg.postgres().is_some());
/// assert!("postgresql://sasl:secret@db.example.org/mail".parse::<Location>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    format: Option<Format>,
    path: PathBuf,
    url: Option<Box<PostgresUrl>>,
}

impl Location {
    /// A path whose format is detected from its contents.
    pub fn path_only(path: impl Into<PathBuf>) -> Self {
        Location {
            format: None,
            path: path.into(),
            url: None,
        }
    }

    /// A path with a forced format.
    pub fn with_format(format: Format, path: impl Into<PathBuf>) -> Self {
        Location {
            format: Some(format),
            path: path.into(),
            url: None,
        }
    }

    /// A PostgreSQL database.
    pub fn postgres_url(url: PostgresUrl) -> Self {
        Location {
            format: Some(Format::Postgres),
            path: PathBuf::from(url.to_string()),
            url: Some(Box::new(url)),
        }
    }

    /// The PostgreSQL database this location names, if it is a URL.
    pub fn postgres(&self) -> Option<&PostgresUrl> {
        self.url.as_deref()
    }

    /// Whether this location names a file (not a database server).
    pub fn is_file(&self) -> bool {
        self.url.is_none()
    }

    /// The forced format, if any.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// The file path. For a PostgreSQL URL: the URL (which holds no password), for
    /// messages only; it names no file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl FromStr for Location {
    type Err = Error;

    /// Parses `PATH` or `FORMAT:PATH`. Only known format names count as a prefix, so
    /// an ordinary path that happens to contain `:` stays a path (write `./bdb:x` for a
    /// file literally named `bdb:x`).
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::Invalid("empty database path".into()));
        }
        if PostgresUrl::is_url(s) {
            return Ok(Location::postgres_url(s.parse()?));
        }
        if let Some((prefix, rest)) = s.split_once(':')
            && matches!(
                prefix.to_ascii_lowercase().as_str(),
                "postgresql" | "postgres" | "pgsql"
            )
            && !rest.starts_with("//")
        {
            return Err(Error::Invalid(format!(
                "`{prefix}:`: name a PostgreSQL database with a URL, \
                 postgresql://[USER@]HOST[:PORT]/DATABASE"
            )));
        }
        if let Some((prefix, rest)) = s.split_once(':')
            && let Some(format) = Format::from_prefix(prefix)
        {
            if rest.is_empty() {
                return Err(Error::Invalid(format!(
                    "`{s}`: no path after the format prefix"
                )));
            }
            return Ok(Location::with_format(format, rest));
        }
        Ok(Location::path_only(s))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(url) = &self.url {
            return write!(f, "{url}");
        }
        match self.format {
            Some(fm) => write!(f, "{}:{}", fm.prefix(), self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A zero-byte file: no format yet (Cyrus's tools initialise such a file).
    Empty,
    /// A recognised format.
    Format(Format),
}

/// Reads a file's magic bytes and names its format.
pub fn detect(path: &Path) -> Result<Detected> {
    let mut f = File::open(path).at(path)?;
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    detect_bytes(&head[..n]).ok_or_else(|| Error::UnknownFormat {
        path: path.to_path_buf(),
        reason: if n < 16 {
            format!("only {n} bytes long")
        } else {
            "unrecognised magic bytes".to_string()
        },
    })
}

/// Names the format of a file from its first (up to 32) bytes.
pub fn detect_bytes(head: &[u8]) -> Option<Detected> {
    if head.is_empty() {
        return Some(Detected::Empty);
    }
    if head.starts_with(b"SQLite format 3\0") {
        return Some(Detected::Format(Format::Sqlite));
    }
    let u32_at = |off: usize| -> Option<[u8; 4]> { head.get(off..off + 4)?.try_into().ok() };
    // Berkeley DB: magic 0x00061561 at offset 12, in either byte order.
    if let Some(m) = u32_at(12)
        && (u32::from_le_bytes(m) == 0x0006_1561 || u32::from_be_bytes(m) == 0x0006_1561)
    {
        return Some(Detected::Format(Format::Bdb));
    }
    // GDBM: magic at offset 0 (original, 32/64-bit, numsync), in either byte order.
    if let Some(m) = u32_at(0) {
        const GDBM: [u32; 5] = [
            0x1357_9ACE,
            0x1357_9ACD,
            0x1357_9ACF,
            0x1357_9AD0,
            0x1357_9AD1,
        ];
        if GDBM.contains(&u32::from_le_bytes(m)) || GDBM.contains(&u32::from_be_bytes(m)) {
            return Some(Detected::Format(Format::Gdbm));
        }
    }
    // LMDB: meta page 0 holds MDB_MAGIC 0xBEEFC0DE right after the page header
    // (16 bytes on 64-bit builds, 12 on 32-bit ones).
    for off in [16, 12] {
        if let Some(m) = u32_at(off)
            && (u32::from_le_bytes(m) == 0xBEEF_C0DE || u32::from_be_bytes(m) == 0xBEEF_C0DE)
        {
            return Some(Detected::Format(Format::Lmdb));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_prefixes() {
        let l: Location = "BDB:/x/y".parse().unwrap();
        assert_eq!(l, Location::with_format(Format::Bdb, "/x/y"));
        let l: Location = "sqlite3:rel/db".parse().unwrap();
        assert_eq!(l.format(), Some(Format::Sqlite));
        let l: Location = "./bdb:x".parse().unwrap();
        assert_eq!(l, Location::path_only("./bdb:x"));
        let l: Location = "weird:name".parse().unwrap();
        assert_eq!(l.format(), None);
        assert!("lmdb:".parse::<Location>().is_err());
        assert!("".parse::<Location>().is_err());
        assert_eq!(
            Location::with_format(Format::Gdbm, "/a").to_string(),
            "gdbm:/a"
        );
    }

    #[test]
    fn magic_detection() {
        let mut bdb = [0u8; 32];
        bdb[12..16].copy_from_slice(&0x0006_1561u32.to_le_bytes());
        assert_eq!(detect_bytes(&bdb), Some(Detected::Format(Format::Bdb)));
        bdb[12..16].copy_from_slice(&0x0006_1561u32.to_be_bytes());
        assert_eq!(detect_bytes(&bdb), Some(Detected::Format(Format::Bdb)));
        let mut gdbm = [0u8; 32];
        gdbm[..4].copy_from_slice(&[0xcf, 0x9a, 0x57, 0x13]);
        assert_eq!(detect_bytes(&gdbm), Some(Detected::Format(Format::Gdbm)));
        let mut lmdb = [0u8; 32];
        lmdb[16..20].copy_from_slice(&0xBEEF_C0DEu32.to_le_bytes());
        assert_eq!(detect_bytes(&lmdb), Some(Detected::Format(Format::Lmdb)));
        assert_eq!(
            detect_bytes(b"SQLite format 3\0 and more bytes"),
            Some(Detected::Format(Format::Sqlite))
        );
        assert_eq!(detect_bytes(b""), Some(Detected::Empty));
        assert_eq!(detect_bytes(b"hello world, this is not a db!!!"), None);
    }
}
