//! The storage abstraction shared by every backend.
//!
//! This module owns three things:
//! - [`Format`] and [`Location`]: naming a database (`/etc/sasldb2`, `bdb:/etc/sasldb2`,
//!   `lmdb:/etc/sasl2/sasldb2`, `postgresql://db.example.org/mail`, ...) and detecting a
//!   file's format from its magic bytes;
//! - [`Backend`]: the read interface every format implements (keyed get, full scan);
//! - [`Changes`] and [`merge`]: a write set (puts and deletes, optionally replacing
//!   everything) and the merge of a write set over an existing scan, which the
//!   rebuilding backends use to produce their new file.
//!
//! It does no locking and no file replacement: see [`crate::database`] and
//! [`crate::persist`].

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, IoContext, Result};
use crate::record::{Record, Secret};

/// The storage formats sasldb files come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

impl Format {
    /// Every file format, in the order detection tries them ([`Format::Postgres`] is
    /// not a file: it is named by a URL).
    pub const ALL: [Format; 4] = [Format::Bdb, Format::Lmdb, Format::Gdbm, Format::Sqlite];

    /// The prefix used in `FORMAT:PATH` locations.
    pub fn prefix(self) -> &'static str {
        match self {
            Format::Bdb => "bdb",
            Format::Lmdb => "lmdb",
            Format::Gdbm => "gdbm",
            Format::Sqlite => "sqlite",
            Format::Postgres => "postgresql",
        }
    }

    /// Whether databases of this format are files (everything but PostgreSQL).
    pub fn is_file(self) -> bool {
        self != Format::Postgres
    }

    /// Looks a `FORMAT:` prefix up (case-insensitive; `berkeley` is an alias of `bdb`).
    /// PostgreSQL has no prefix: it is named by a `postgresql://` URL.
    pub fn from_prefix(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "bdb" | "berkeley" | "berkeleydb" => Some(Format::Bdb),
            "lmdb" => Some(Format::Lmdb),
            "gdbm" => Some(Format::Gdbm),
            "sqlite" | "sqlite3" => Some(Format::Sqlite),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Bdb => "Berkeley DB",
            Format::Lmdb => "LMDB",
            Format::Gdbm => "GDBM",
            Format::Sqlite => "SQLite",
            Format::Postgres => "PostgreSQL",
        })
    }
}

/// Where a database lives: a path, with the format optionally forced by a
/// `FORMAT:` prefix, or a `postgresql://` (or `postgres://`) URL naming a PostgreSQL
/// database (see [`crate::pgsql::Url`]: a URL with a password is refused).
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
    url: Option<Box<crate::pgsql::Url>>,
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
    pub fn postgres_url(url: crate::pgsql::Url) -> Self {
        Location {
            format: Some(Format::Postgres),
            path: PathBuf::from(url.to_string()),
            url: Some(Box::new(url)),
        }
    }

    /// The PostgreSQL database this location names, if it is a URL.
    pub fn postgres(&self) -> Option<&crate::pgsql::Url> {
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
        if crate::pgsql::Url::is_url(s) {
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

/// A stream of records in a backend's storage order.
pub type Records<'a> = Box<dyn Iterator<Item = Result<Record>> + 'a>;

/// Hints a backend gives about its on-disk layout, kept when the file is rewritten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayoutHint {
    /// Page or block size.
    pub page_size: Option<u32>,
    /// Whether the file is big-endian.
    pub big_endian: Option<bool>,
    /// Whether pages carry checksums.
    pub checksums: bool,
    /// Whether a GDBM file uses the numsync (extended header) format.
    pub numsync: bool,
}

/// Read access to one open database, as of the moment it was opened.
pub trait Backend {
    /// The format of this database.
    fn format(&self) -> Format;

    /// Looks one encoded key up.
    fn get(&self, key: &[u8]) -> Result<Option<Secret>>;

    /// Every record, in storage order (see [`Backend::sorted`]).
    fn scan(&self) -> Result<Records<'_>>;

    /// Whether [`Backend::scan`] yields keys in bytewise order.
    fn sorted(&self) -> bool {
        false
    }

    /// Layout details to keep when the database is rewritten.
    fn layout_hint(&self) -> LayoutHint {
        LayoutHint::default()
    }

    /// The keys that start with `prefix` (by default, from a full scan).
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for rec in self.scan()? {
            let rec = rec?;
            if rec.key.starts_with(prefix) {
                out.push(rec.key);
            }
        }
        Ok(out)
    }

    /// This database as a Berkeley DB file, for the write path's shortcuts.
    #[doc(hidden)]
    fn as_bdb(&self) -> Option<&crate::bdb::BdbFile> {
        None
    }
}

/// A set of changes to apply in one transaction.
#[derive(Default)]
pub struct Changes {
    /// Start from an empty database instead of the existing records.
    pub replace_all: bool,
    /// Per key: `Some(value)` to store, `None` to delete.
    pub ops: BTreeMap<Vec<u8>, Option<Secret>>,
}

impl Changes {
    /// Whether applying these changes would leave the database untouched.
    pub fn is_empty(&self) -> bool {
        !self.replace_all && self.ops.is_empty()
    }
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("replace_all", &self.replace_all)
            .field("puts", &self.ops.values().filter(|v| v.is_some()).count())
            .field(
                "deletes",
                &self.ops.values().filter(|v| v.is_none()).count(),
            )
            .finish()
    }
}

/// The records of `base` with `changes` applied: existing records not touched by the
/// changes (unless `replace_all`), then every put. Deletes of absent keys are no-ops.
///
/// The output never holds a key twice, provided `base` does not.
pub fn merge<'a>(base: Option<Records<'a>>, changes: &'a Changes) -> Records<'a> {
    let kept = base
        .filter(|_| !changes.replace_all)
        .into_iter()
        .flatten()
        .filter(move |r| match r {
            Ok(rec) => !changes.ops.contains_key(&rec.key),
            Err(_) => true,
        });
    let puts = changes.ops.iter().filter_map(|(k, v)| {
        v.as_ref().map(|v| {
            Ok(Record {
                key: k.clone(),
                value: v.clone(),
            })
        })
    });
    Box::new(kept.chain(puts))
}

/// [`merge`], consuming the changes: puts are moved into the output, not copied.
pub fn merge_owned<'a>(base: Option<Records<'a>>, changes: Changes) -> Records<'a> {
    let Changes { replace_all, ops } = changes;
    let ops = std::rc::Rc::new(ops);
    let filter_ops = std::rc::Rc::clone(&ops);
    let kept = base
        .filter(|_| !replace_all)
        .into_iter()
        .flatten()
        .filter(move |r| match r {
            Ok(rec) => !filter_ops.contains_key(&rec.key),
            Err(_) => true,
        });
    // The puts follow once the base is exhausted, when the filter no longer needs
    // the map: take it then.
    let puts = std::iter::once_with(move || {
        let map = std::rc::Rc::try_unwrap(ops).unwrap_or_else(|rc| (*rc).clone());
        map.into_iter()
            .filter_map(|(key, v)| v.map(|value| Ok(Record { key, value })))
    })
    .flatten();
    Box::new(kept.chain(puts))
}

/// Iterates the puts of a change set (helper for backends that apply in place).
pub fn puts(changes: &Changes) -> impl Iterator<Item = (&Vec<u8>, &Secret)> {
    changes
        .ops
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
}

/// Iterates the deletes of a change set.
pub fn deletes(changes: &Changes) -> impl Iterator<Item = &Vec<u8>> {
    changes
        .ops
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
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

    #[test]
    fn merge_applies_puts_and_deletes() {
        let base: Vec<Result<Record>> = vec![
            Ok(Record::new(b"a".to_vec(), b"1".to_vec())),
            Ok(Record::new(b"b".to_vec(), b"2".to_vec())),
            Ok(Record::new(b"c".to_vec(), b"3".to_vec())),
        ];
        let mut ch = Changes::default();
        ch.ops.insert(b"b".to_vec(), None);
        ch.ops
            .insert(b"c".to_vec(), Some(Secret::new(b"33".to_vec())));
        ch.ops
            .insert(b"d".to_vec(), Some(Secret::new(b"4".to_vec())));
        ch.ops.insert(b"zz".to_vec(), None);
        let out: Vec<(Vec<u8>, Vec<u8>)> = merge(Some(Box::new(base.into_iter())), &ch)
            .map(|r| r.map(|r| (r.key, r.value.to_vec())))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            out,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"33".to_vec()),
                (b"d".to_vec(), b"4".to_vec())
            ]
        );
        ch.replace_all = true;
        let n = merge(Some(Box::new(std::iter::empty())), &ch).count();
        assert_eq!(n, 2);
    }
}
