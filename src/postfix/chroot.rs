//! The Postfix side of a sasldb: which `smtpd` services authenticate with Cyrus SASL
//! and run chrooted, which file they open, and refreshing the chroot copy ([`sync`]).
//!
//! Facts this module relies on (Postfix 3.7, Debian's packaging, Cyrus SASL 2.1.28):
//! - `master.cf` column 5 says whether a service runs chrooted to `queue_directory`:
//!   `y` or `n`; `-` is the built-in default, `n` since Postfix 3.0 (`y` before).
//!   Debian's master.cf writes `y` for `smtp`, so on Debian smtpd is chrooted to
//!   `/var/spool/postfix`.
//! - smtpd reads its SASL configuration (`<smtpd_sasl_path>.conf`, `smtpd.conf` by
//!   default, in `cyrus_sasl_config_path`; when that is empty, Debian's Postfix
//!   (`07_sasl_config.diff`, "SASL configuration goes in /etc/postfix/sasl") looks in
//!   `<config_directory>/sasl`, which is searched here before libsasl's built-in path)
//!   before
//!   it enters the chroot, but libsasl's sasldb plugin opens `sasldb_path` (default
//!   `/etc/sasldb2`) on every lookup, after: a chrooted smtpd opens
//!   `<queue_directory>/etc/sasldb2`. (smtpd's environment is cleaned, so
//!   `SASL_CONF_PATH` does not reach it.)
//! - SASL is on for a service when `smtpd_sasl_auth_enable = yes` in main.cf or as a
//!   `-o` override in its master.cf entry, with `smtpd_sasl_type = cyrus` (the default).
//!
//! [`PostfixSetup::discover`] puts this together from a configuration directory;
//! [`SmtpdDatabase`] says which file smtpd opens and where that is outside the chroot.
//!
//! # Refreshing the copy
//!
//! [`sync`] writes a consistent snapshot of the database (read under our writer lock,
//! so none of our writers runs meanwhile; LMDB reads one read transaction) into the
//! copy, in the same format:
//! - Berkeley DB, GDBM and SQLite: a new file built next to the copy (temporary name,
//!   owner, group and mode set before any byte is written), fsynced, renamed over the
//!   copy, directory fsynced. Cyrus opens these per lookup, so the next lookup sees the
//!   new file.
//! - LMDB: an existing, healthy copy is updated in place in one write transaction.
//!   smtpd keeps its environment open, and LMDB readers pick the meta page through the
//!   transaction id kept in the shared `-lock` file: a data file renamed under a lock
//!   file that running readers hold could be read through the wrong meta page. A
//!   missing copy is bulk-loaded into a temporary file and linked into place; a copy
//!   that must be replaced (symlink, hard link, other format) is replaced by a new file
//!   and its `-lock` file by a new one, so old readers keep the old pair. The `-lock`
//!   file gets mode 0660 with the copy's owner and group (readers open it read-write).
//! - The copy's owner, group and mode follow [`Ownership`] (root:postfix 0640 as root);
//!   a copy is never made readable by others.
//! - A symlink or hard link at the copy's path is replaced by a regular file, never
//!   followed or written through: a symlink inside the chroot resolves against the
//!   chroot (an absolute `/etc/sasldb2` names the link itself), and a hard link to the
//!   database is split by the next atomic write of either name.
//! - Records the copy has and the database lacks (someone ran `saslpasswd2 -f` on the
//!   copy) make [`sync`] refuse unless forced: they would be lost.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::cyrus_conf::{self, ConfError, SaslConf};
use crate::database::{Database, OwnershipPolicy, WriteOptions};
use crate::error::{Error, IoContext, Result};
use crate::location::{Detected, Format, Location, detect};
use crate::postfix::{MainCf, PostfixError};
use crate::record::{KeyRef, Record};
use crate::storage::persist::{self, DB_MODE, Ownership, Target, WriteLock};
use crate::storage::{self, Changes};

/// Postfix's default `queue_directory` (Debian's too).
pub const DEFAULT_QUEUE_DIRECTORY: &str = "/var/spool/postfix";
/// The sasldb Cyrus opens when `sasldb_path` is not set (Debian's build).
pub const DEFAULT_SASLDB_PATH: &str = "/etc/sasldb2";
/// The SASL application name smtpd uses unless `smtpd_sasl_path` says otherwise.
pub const DEFAULT_SMTPD_SASL_PATH: &str = "smtpd";

// ---------------------------------------------------------------------------------
// master.cf

/// Column 5 of a master.cf entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChrootColumn {
    /// `y`.
    Yes,
    /// `n`.
    No,
    /// `-`: the built-in default, `n` since Postfix 3.0.
    Default,
}

/// One service entry of master.cf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterService {
    /// Column 1 (`smtp`, `submission`, `127.0.0.1:2525`...).
    pub service: String,
    /// Column 2 (`inet`, `unix`, `pass`...).
    pub kind: String,
    /// Column 5.
    pub chroot: ChrootColumn,
    /// The command name (column 8).
    pub command: String,
    /// `-o name=value` overrides, in order (a later one wins).
    pub overrides: Vec<(String, String)>,
    /// The line the entry starts on (1-based).
    pub line: usize,
}

impl MasterService {
    /// Whether the service runs chrooted (`-` counts as `n`, Postfix 3.0 and later).
    pub fn chrooted(&self) -> bool {
        self.chroot == ChrootColumn::Yes
    }

    /// The value of a `-o` override, the last one winning.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.overrides
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed master.cf.
///
/// Postfix's rules: a line whose first non-blank character is `#` is a comment, blank
/// lines are skipped, a line starting with whitespace continues the previous entry.
/// An entry has at least eight whitespace-separated fields; the eighth is the command,
/// and `-o name=value` (also `-o { name = value }`) among its arguments overrides a
/// main.cf parameter for that service. Entries with fewer fields are reported in
/// [`MasterCf::warnings`] (Postfix refuses to start with them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterCf {
    path: PathBuf,
    services: Vec<MasterService>,
    warnings: Vec<String>,
}

impl MasterCf {
    /// Reads `<config_dir>/master.cf`; `Ok(None)` when it does not exist.
    pub fn load(config_dir: &Path) -> Result<Option<MasterCf>> {
        let path = config_dir.join("master.cf");
        match super::read_config(&path) {
            Ok(text) => Ok(Some(MasterCf::parse(&path, &text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Parses master.cf text.
    ///
    /// ```
    /// use sasldb::postfix::chroot::{ChrootColumn, MasterCf};
    /// let m = MasterCf::parse("master.cf".as_ref(), b"\
    /// ## comment
    /// smtp      inet  n       -       y       -       -       smtpd
    /// submission inet n       -       -       -       -       smtpd
    ///   -o smtpd_sasl_auth_enable=yes
    /// ");
    /// let s = m.services();
    /// assert_eq!(s[0].chroot, ChrootColumn::Yes);
    /// assert_eq!(s[1].chroot, ChrootColumn::Default);
    /// assert_eq!(s[1].option("smtpd_sasl_auth_enable"), Some("yes"));
    /// ```
    pub fn parse(path: &Path, text: &[u8]) -> MasterCf {
        let mut out = MasterCf {
            path: path.to_path_buf(),
            ..Default::default()
        };
        // Logical lines: (first line number, text).
        let mut entries: Vec<(usize, String)> = Vec::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = String::from_utf8_lossy(raw);
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match entries.last_mut() {
                    Some((_, e)) => {
                        e.push(' ');
                        e.push_str(trimmed);
                    }
                    None => out.warnings.push(format!(
                        "{}, line {}: continuation line without an entry",
                        path.display(),
                        i + 1
                    )),
                }
                continue;
            }
            entries.push((i + 1, trimmed.to_owned()));
        }
        for (line, entry) in entries {
            let fields: Vec<&str> = entry.split_whitespace().collect();
            if fields.len() < 8 {
                out.warnings.push(format!(
                    "{}, line {line}: entry has {} fields, Postfix needs at least 8: \"{entry}\"",
                    path.display(),
                    fields.len()
                ));
                continue;
            }
            let chroot = match fields[4] {
                "y" => ChrootColumn::Yes,
                "n" => ChrootColumn::No,
                "-" => ChrootColumn::Default,
                other => {
                    out.warnings.push(format!(
                        "{}, line {line}: chroot field `{other}` is not y, n or -",
                        path.display()
                    ));
                    ChrootColumn::Default
                }
            };
            let mut overrides = Vec::new();
            let mut args = fields[8..].iter();
            while let Some(&a) = args.next() {
                let value = if a == "-o" {
                    match args.next() {
                        Some(&"{") => {
                            let mut parts = Vec::new();
                            for &p in args.by_ref() {
                                if p == "}" {
                                    break;
                                }
                                parts.push(p);
                            }
                            parts.join(" ")
                        }
                        Some(&v) => v.to_owned(),
                        None => break,
                    }
                } else if let Some(v) = a.strip_prefix("-o") {
                    v.to_owned()
                } else {
                    continue;
                };
                if let Some((n, v)) = value.split_once('=') {
                    overrides.push((n.trim().to_owned(), v.trim().to_owned()));
                }
            }
            out.services.push(MasterService {
                service: fields[0].to_owned(),
                kind: fields[1].to_owned(),
                chroot,
                command: fields[7].to_owned(),
                overrides,
                line,
            });
        }
        out
    }

    /// The file parsed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, in file order.
    pub fn services(&self) -> &[MasterService] {
        &self.services
    }

    /// Problems found while parsing.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

// ---------------------------------------------------------------------------------
// The Postfix setup

/// An smtpd service of master.cf, with its SASL settings resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpdService {
    /// The master.cf service name.
    pub service: String,
    /// Its line in master.cf.
    pub line: usize,
    /// Whether it runs chrooted.
    pub chrooted: bool,
    /// Whether it authenticates clients with Cyrus SASL (`smtpd_sasl_auth_enable`
    /// and `smtpd_sasl_type = cyrus`).
    pub cyrus_sasl: bool,
    /// Its SASL application name (`smtpd_sasl_path`).
    pub sasl_app: String,
}

/// What Postfix's configuration says about smtpd and SASL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostfixSetup {
    /// The configuration directory.
    pub config_dir: PathBuf,
    /// `queue_directory` (the chroot), expanded, or the override.
    pub queue_directory: PathBuf,
    /// The smtpd services of master.cf (empty without master.cf).
    pub smtpd: Vec<SmtpdService>,
    /// master.cf, when it exists.
    pub master_cf: Option<PathBuf>,
    /// The search path for `<app>.conf`: `cyrus_sasl_config_path`, else
    /// `<config_dir>/sasl` (Debian) followed by libsasl's built-in path.
    pub sasl_conf_path: OsString,
    /// Parser warnings (main.cf, master.cf).
    pub warnings: Vec<String>,
}

impl PostfixSetup {
    /// Reads main.cf and master.cf in `config_dir`. `Ok(None)` when there is no
    /// main.cf (no Postfix). `queue_directory` overrides main.cf's value.
    pub fn discover(
        config_dir: &Path,
        hostname: &str,
        queue_directory: Option<&Path>,
    ) -> std::result::Result<Option<PostfixSetup>, SetupError> {
        if !config_dir.join("main.cf").exists() {
            return Ok(None);
        }
        let cf = MainCf::load(config_dir)?;
        let params = cf.params(hostname);
        let mut warnings: Vec<String> = cf.warnings().to_vec();
        let value = |name: &str, default: &str| -> std::result::Result<String, SetupError> {
            Ok(match params.eval(name)? {
                Some(x) => String::from_utf8_lossy(&x.value).trim().to_owned(),
                None => default.to_owned(),
            })
        };
        let queue = match queue_directory {
            Some(q) => q.to_path_buf(),
            None => PathBuf::from(value("queue_directory", DEFAULT_QUEUE_DIRECTORY)?),
        };
        let sasl_conf_path = match value("cyrus_sasl_config_path", "")? {
            p if p.is_empty() => {
                let mut p = config_dir.join("sasl").into_os_string();
                p.push(":");
                p.push(cyrus_conf::default_conf_path());
                p
            }
            p => OsString::from(p),
        };
        let auth = value("smtpd_sasl_auth_enable", "no")?;
        let kind = value("smtpd_sasl_type", "cyrus")?;
        let app = value("smtpd_sasl_path", DEFAULT_SMTPD_SASL_PATH)?;
        let master = MasterCf::load(config_dir)?;
        let mut smtpd = Vec::new();
        if let Some(m) = &master {
            warnings.extend(m.warnings().iter().cloned());
            for s in m.services().iter().filter(|s| s.command == "smtpd") {
                let ov = |name: &str, main: &str| -> std::result::Result<String, SetupError> {
                    Ok(match s.option(name) {
                        Some(v) => String::from_utf8_lossy(&params.expand(v.as_bytes())?.value)
                            .trim()
                            .to_owned(),
                        None => main.to_owned(),
                    })
                };
                smtpd.push(SmtpdService {
                    service: s.service.clone(),
                    line: s.line,
                    chrooted: s.chrooted(),
                    cyrus_sasl: yes(&ov("smtpd_sasl_auth_enable", &auth)?)
                        && ov("smtpd_sasl_type", &kind)?.eq_ignore_ascii_case("cyrus"),
                    sasl_app: ov("smtpd_sasl_path", &app)?,
                });
            }
        }
        Ok(Some(PostfixSetup {
            config_dir: config_dir.to_path_buf(),
            queue_directory: queue,
            smtpd,
            master_cf: master.map(|m| m.path().to_path_buf()),
            sasl_conf_path,
            warnings,
        }))
    }

    /// The smtpd services that authenticate with Cyrus SASL.
    pub fn sasl_services(&self) -> impl Iterator<Item = &SmtpdService> {
        self.smtpd.iter().filter(|s| s.cyrus_sasl)
    }

    /// Reads the SASL configuration of application `app` (`smtpd.conf`).
    pub fn sasl_conf(&self, app: &str) -> std::result::Result<Option<SaslConf>, ConfError> {
        cyrus_conf::find(&self.sasl_conf_path, app)
    }

    /// The file an smtpd of application `app` opens for a database of `format`.
    pub fn smtpd_database(&self, app: &str, format: Format) -> Result<SmtpdDatabase> {
        let conf = self
            .sasl_conf(app)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(SmtpdDatabase::from_conf(conf.as_ref(), format))
    }

    /// Where a path smtpd opens inside the chroot is outside it.
    pub fn in_chroot(&self, inside: &Path) -> PathBuf {
        in_root(&self.queue_directory, inside)
    }
}

/// Where the chroot copy of a database of `format` belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyLocation {
    /// The copy, outside the chroot (`/var/spool/postfix/etc/sasldb2`).
    pub copy: PathBuf,
    /// The chroot (queue directory).
    pub queue_directory: PathBuf,
    /// Remarks for the user (no chrooted smtpd, no smtpd.conf...).
    pub notes: Vec<String>,
}

/// Works out where the chroot copy belongs: `<queue_directory>/<file smtpd opens>`,
/// for the SASL application of the chrooted SASL-enabled smtpd services (else of any
/// smtpd service, else `smtpd`). Without main.cf, `queue_directory` must be given.
pub fn locate_copy(
    config_dir: &Path,
    hostname: &str,
    queue_directory: Option<&Path>,
    format: Format,
) -> Result<CopyLocation> {
    let setup = PostfixSetup::discover(config_dir, hostname, queue_directory)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let mut notes = Vec::new();
    let (queue, app, sasl_path) = match &setup {
        Some(s) => {
            let jailed = s.sasl_services().find(|x| x.chrooted);
            let app = match jailed.or_else(|| s.sasl_services().next()) {
                Some(x) => x.sasl_app.clone(),
                None => DEFAULT_SMTPD_SASL_PATH.to_owned(),
            };
            if jailed.is_none() {
                notes.push(format!(
                    "no smtpd service with Cyrus SASL runs chrooted in {}",
                    s.master_cf
                        .as_deref()
                        .unwrap_or(&config_dir.join("master.cf"))
                        .display()
                ));
            }
            (s.queue_directory.clone(), app, s.sasl_conf_path.clone())
        }
        None => match queue_directory {
            Some(q) => (
                q.to_path_buf(),
                DEFAULT_SMTPD_SASL_PATH.to_owned(),
                OsString::from(cyrus_conf::default_conf_path()),
            ),
            None => {
                return Err(Error::Invalid(format!(
                    "no Postfix configuration ({} does not exist): give --queue-directory \
                     or --to",
                    config_dir.join("main.cf").display()
                )));
            }
        },
    };
    let conf = cyrus_conf::find(&sasl_path, &app).map_err(|e| Error::Invalid(e.to_string()))?;
    let db = SmtpdDatabase::from_conf(conf.as_ref(), format);
    if let Some(why) = &db.unused_because {
        notes.push(format!("smtpd does not read a {format} sasldb ({why})"));
    }
    Ok(CopyLocation {
        copy: in_root(&queue, &db.path),
        queue_directory: queue,
        notes,
    })
}

/// `root` joined with `inside` taken as relative to `/`.
pub fn in_root(root: &Path, inside: &Path) -> PathBuf {
    let abs = normalize(inside);
    root.join(abs.strip_prefix("/").unwrap_or(&abs))
}

fn yes(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "on")
}

/// Why the Postfix configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// main.cf is unreadable or Postfix would refuse it.
    #[error(transparent)]
    MainCf(#[from] PostfixError),
    /// master.cf is unreadable.
    #[error(transparent)]
    Io(#[from] Error),
}

/// The database an smtpd opens, according to its SASL configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpdDatabase {
    /// The SASL configuration file read, if any.
    pub conf: Option<PathBuf>,
    /// The path smtpd opens (inside its chroot when it is chrooted).
    pub path: PathBuf,
    /// Whether smtpd looks users up in a database of this format at all, and if not,
    /// why (`pwcheck_method: saslauthd`, `auxprop_plugin: sql`...).
    pub unused_because: Option<String>,
}

impl SmtpdDatabase {
    /// Works the file out from `<app>.conf` (or its absence): `sasldb_path` (default
    /// `/etc/sasldb2`), or for SQLite the `sql` plugin's `sql_database`.
    pub fn from_conf(conf: Option<&SaslConf>, format: Format) -> SmtpdDatabase {
        let path_of = |c: &SaslConf| c.path().map(Path::to_path_buf);
        let get = |k: &str| conf.and_then(|c| c.get(k)).map(str::to_owned);
        let mut unused = None;
        let methods = get("pwcheck_method").unwrap_or_else(|| "auxprop".into());
        if !methods
            .split_whitespace()
            .any(|m| m.eq_ignore_ascii_case("auxprop") || m.eq_ignore_ascii_case("auxprop-hashed"))
        {
            unused = Some(format!("pwcheck_method: {methods}"));
        }
        let plugins = conf.and_then(|c| c.auxprop_plugin());
        let wanted = format.cyrus_plugin();
        if unused.is_none()
            && let Some(p) = &plugins
            && !p.iter().any(|x| x.eq_ignore_ascii_case(wanted))
        {
            unused = Some(format!("auxprop_plugin: {}", p.join(" ")));
        }
        // The sql plugin names its file in sql_database; the sasldb plugin in sasldb_path.
        let path = if wanted == "sql" && format.is_file() {
            match get("sql_database") {
                Some(p) => PathBuf::from(p),
                None => {
                    if unused.is_none() {
                        unused = Some("no sql_database for the sql plugin".into());
                    }
                    PathBuf::from(DEFAULT_SASLDB_PATH)
                }
            }
        } else {
            conf.and_then(|c| c.sasldb_path())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SASLDB_PATH))
        };
        SmtpdDatabase {
            conf: conf.and_then(path_of),
            path,
            unused_because: unused,
        }
    }
}

/// Resolves `inside` the way a process chrooted to `root` does: symlinks are followed
/// with absolute targets taken relative to `root` and `..` stopping at it. Returns the
/// real file outside the chroot, or why there is none (a missing target, a loop).
pub fn resolve_in_root(root: &Path, inside: &Path) -> std::result::Result<PathBuf, String> {
    let mut path = normalize(inside);
    for _ in 0..40 {
        let outside = in_root(root, &path);
        match fs::symlink_metadata(&outside) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&outside).map_err(|e| e.to_string())?;
                path = if target.is_absolute() {
                    normalize(&target)
                } else {
                    normalize(&path.parent().unwrap_or(Path::new("/")).join(target))
                };
            }
            Ok(_) => return Ok(outside),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!("{} does not exist in the chroot", path.display()));
            }
            Err(e) => return Err(format!("{}: {e}", outside.display())),
        }
    }
    Err("too many levels of symbolic links".into())
}

/// An absolute path with `.` and `..` resolved lexically (`..` stops at `/`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Comparing a copy with the database

/// How a copy's content compares with the database's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Records in the database.
    pub records: u64,
    /// Keys with another value in the copy.
    pub differing: u64,
    /// Keys only in the database.
    pub missing: u64,
    /// Keys only in the copy (data that a sync would drop).
    pub extra: u64,
    /// The first few keys only in the copy, rendered `user@realm: property`.
    pub extra_examples: Vec<String>,
}

impl Comparison {
    /// Whether the two hold exactly the same records.
    pub fn identical(&self) -> bool {
        self.differing == 0 && self.missing == 0 && self.extra == 0
    }
}

/// Compares two databases record by record (values compared as bytes).
pub fn compare(db: &Database, copy: &Database) -> Result<Comparison> {
    let mut a = sorted_stream(db)?;
    let mut b = sorted_stream(copy)?;
    let mut c = Comparison::default();
    let mut x = a.next().transpose()?;
    let mut y = b.next().transpose()?;
    loop {
        match (&x, &y) {
            (None, None) => break,
            (Some(_), None) => {
                c.records += 1;
                c.missing += 1;
                x = a.next().transpose()?;
            }
            (None, Some(r)) => {
                note_extra(&mut c, &r.key);
                y = b.next().transpose()?;
            }
            (Some(p), Some(q)) => match p.key.cmp(&q.key) {
                std::cmp::Ordering::Less => {
                    c.records += 1;
                    c.missing += 1;
                    x = a.next().transpose()?;
                }
                std::cmp::Ordering::Greater => {
                    note_extra(&mut c, &q.key);
                    y = b.next().transpose()?;
                }
                std::cmp::Ordering::Equal => {
                    c.records += 1;
                    if p.value[..] != q.value[..] {
                        c.differing += 1;
                    }
                    x = a.next().transpose()?;
                    y = b.next().transpose()?;
                }
            },
        }
    }
    Ok(c)
}

fn note_extra(c: &mut Comparison, key: &[u8]) {
    c.extra += 1;
    if c.extra_examples.len() < 3 {
        c.extra_examples.push(render_key(key));
    }
}

/// `user@realm: property`, or the escaped bytes of a malformed key.
pub fn render_key(key: &[u8]) -> String {
    match KeyRef::parse(key) {
        Ok(k) => format!("{}: {}", k.user_at_realm(), k.property_str()),
        Err(_) => crate::record::escape(key),
    }
}

fn sorted_stream(db: &Database) -> Result<Box<dyn Iterator<Item = Result<Record>> + '_>> {
    if db.records_are_sorted() {
        db.records()
    } else {
        Ok(Box::new(db.sorted_records()?.into_iter().map(Ok)))
    }
}

// ---------------------------------------------------------------------------------
// sync

/// How to refresh a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Who owns the copy (and, for the command-line tools as root, `root:postfix`).
    pub ownership: OwnershipPolicy,
    /// Overwrite a copy that holds records the database lacks, or that cannot be read.
    pub force: bool,
    /// Missing directories between this one and the copy are created (mode 0755):
    /// the chroot's `etc`, say. `None`: the copy's directory must exist.
    pub create_dirs_below: Option<PathBuf>,
    /// How long to wait for the database's writer lock (`None`: the default).
    pub lock_timeout: Option<Duration>,
    /// As root, write even where a directory on the way can be written by someone
    /// else (see [`crate::WriteOptions::allow_unsafe_dir`]).
    pub allow_unsafe_dir: bool,
}

/// What [`sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAction {
    /// There was no copy; one was created.
    Created,
    /// The copy was brought up to date.
    Updated,
    /// The copy was already identical; only its owner, group and mode were checked.
    Unchanged,
    /// What was at the copy's path (the reason says what) was replaced by a copy.
    Replaced(String),
    /// The copy's path is the database itself: nothing to do.
    SameFile,
}

/// The result of [`sync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The copy.
    pub path: PathBuf,
    /// Its format (the database's).
    pub format: Format,
    /// Records in the copy.
    pub records: u64,
    /// What happened.
    pub action: SyncAction,
    /// Notes for the user.
    pub notes: Vec<String>,
    /// Warnings for the user (ownership not enforced...).
    pub warnings: Vec<String>,
}

/// What sits at the copy's path.
enum Existing {
    Missing,
    /// A regular file with one link, in the database's format.
    Healthy(fs::Metadata),
    /// Something that is replaced as a whole, and why.
    Replace(String),
}

/// Refreshes `copy` from the database at `source`; see the module docs.
pub fn sync(source: &Location, copy: &Path, opts: &SyncOptions) -> Result<SyncReport> {
    if !source.is_file() {
        return Err(Error::Invalid(format!(
            "{source} is not a file: smtpd reaches a {} database through the sql plugin, \
             so there is nothing to copy into the chroot",
            Format::Postgres
        )));
    }
    // Resolved like a writer would, except that a hard-linked database is fine here:
    // it is only read (and its link to the copy is what a sync may have to split).
    let not_found = |e: Error| match e.io_kind() {
        Some(io::ErrorKind::NotFound) => Error::NotFound {
            path: source.path().to_path_buf(),
        },
        _ => e,
    };
    let src_target = Target::entry(source.path(), true).map_err(not_found)?;
    let src_meta = src_target.existing.clone().ok_or_else(|| Error::NotFound {
        path: source.path().to_path_buf(),
    })?;
    persist::check_regular(&src_target.path, &src_meta)?;
    // Its writer lock file is created and given its owner here.
    src_target.check_safe(opts.allow_unsafe_dir)?;
    // Our writers wait while we read, so the snapshot is one state of the database.
    let lock_own = Ownership::plan(&src_target, &opts.ownership).unwrap_or(Ownership {
        uid: 0,
        gid: 0,
        mode: DB_MODE,
        enforced: false,
        note: None,
        warning: None,
    });
    let write_opts = WriteOptions {
        ownership: opts.ownership.clone(),
        lock_timeout: opts.lock_timeout.unwrap_or(storage::DEFAULT_LOCK_TIMEOUT),
        allow_unsafe_dir: opts.allow_unsafe_dir,
        ..WriteOptions::default()
    };
    let timeout = write_opts.lock_timeout;
    let _lock = WriteLock::acquire(&src_target, &lock_own, timeout)?;
    let db = Database::open(source)?;
    let format = db.format();

    let mut notes = Vec::new();
    let copy_target = match Target::entry(copy, false) {
        Ok(t) => t,
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => {
            let dir = match copy.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            make_dirs(&dir, opts.create_dirs_below.as_deref(), &mut notes)?;
            Target::entry(copy, false)?
        }
        Err(e) => return Err(e),
    };
    copy_target.check_safe(opts.allow_unsafe_dir)?;
    let existing = match &copy_target.existing {
        None => Existing::Missing,
        Some(m) if m.file_type().is_symlink() => Existing::Replace("a symbolic link".into()),
        Some(m) if m.is_file() => {
            let m = m.clone();
            if m.dev() == src_meta.dev() && m.ino() == src_meta.ino() {
                if m.nlink() == 1 {
                    return Ok(SyncReport {
                        path: copy.to_path_buf(),
                        format,
                        records: db.records()?.count() as u64,
                        action: SyncAction::SameFile,
                        notes,
                        warnings: Vec::new(),
                    });
                }
                Existing::Replace("a hard link to the database".into())
            } else if m.nlink() > 1 {
                Existing::Replace(format!("a file with {} hard links", m.nlink()))
            } else {
                match detect(copy) {
                    Ok(Detected::Format(f)) if f == format => Existing::Healthy(m),
                    Ok(Detected::Format(f)) => Existing::Replace(format!("a {f} database")),
                    Ok(Detected::Empty) => Existing::Replace("an empty file".into()),
                    Err(e) if opts.force => Existing::Replace(e.to_string()),
                    Err(e) => {
                        return Err(Error::Invalid(format!(
                            "{e}; refusing to replace it without --force"
                        )));
                    }
                }
            }
        }
        Some(m) => {
            persist::check_regular(copy, m)?;
            unreachable!("check_regular refuses everything but files")
        }
    };

    // Records only the copy has would be lost: refuse unless forced. An identical
    // healthy copy needs no rewrite.
    let mut identical = false;
    if !matches!(existing, Existing::Missing) && !opts.force {
        let cmp = {
            match Database::open(&Location::path_only(copy)) {
                Ok(c) => Some(compare(&db, &c)?),
                Err(_) if !matches!(existing, Existing::Healthy(_)) => None,
                Err(e) => {
                    return Err(Error::Invalid(format!(
                        "{e}; refusing to replace it without --force"
                    )));
                }
            }
        };
        if let Some(c) = cmp {
            if c.extra > 0 {
                return Err(Error::Invalid(format!(
                    "{} holds {} record(s) that {} lacks (first: {}); they would be lost. \
                     Add them to the database first, or replace the copy with --force",
                    copy.display(),
                    c.extra,
                    source.path().display(),
                    c.extra_examples.join(", ")
                )));
            }
            identical = c.identical();
        }
    }

    let target = Target {
        existing: match &existing {
            Existing::Healthy(m) => Some(m.clone()),
            _ => None,
        },
        ..copy_target
    };
    let own = Ownership::plan(&target, &opts.ownership)?;
    let rebuild = |replacing: bool, notes: &mut Vec<String>| {
        storage::rebuild_file(
            db.store(),
            format,
            &target,
            &own,
            &write_opts,
            replacing,
            notes,
        )
    };

    let (action, records) = match existing {
        Existing::Healthy(_) if identical => {
            persist::apply_at(&target.handle, &target.name, &own, own.mode)?;
            storage::prepare_companions(format, copy, &own)?;
            (SyncAction::Unchanged, db.records()?.count() as u64)
        }
        // Whoever could open a copy of another owner or a wider mode may hold it open:
        // new content goes into a new file, never through that descriptor.
        Existing::Healthy(ref m)
            if storage::readers_keep_open(format) && own.mismatch(m).is_some() =>
        {
            notes.push(format!(
                "{}: {}: rebuilt as a new file (whoever had the old one open keeps it); \
                 running readers see the change once they reopen it",
                copy.display(),
                own.mismatch(m).unwrap_or_default()
            ));
            (SyncAction::Updated, rebuild(true, &mut notes)?)
        }
        // A running smtpd keeps such a copy open: change it in place.
        Existing::Healthy(_) if storage::readers_keep_open(format) => {
            let changes = all_records(&db)?;
            let n =
                storage::update_in_place(format, &target, &own, &changes, &write_opts, &mut notes)?;
            (SyncAction::Updated, n)
        }
        Existing::Healthy(_) => (SyncAction::Updated, rebuild(false, &mut notes)?),
        Existing::Missing => (SyncAction::Created, rebuild(false, &mut notes)?),
        Existing::Replace(why) => {
            let n = rebuild(true, &mut notes)?;
            (SyncAction::Replaced(why), n)
        }
    };
    Ok(SyncReport {
        path: copy.to_path_buf(),
        format,
        records,
        action,
        notes,
        warnings: own.warning.iter().cloned().collect(),
    })
}

/// Every record of `db` as one replace-all change set.
fn all_records(db: &Database) -> Result<Changes> {
    let mut changes = Changes {
        replace_all: true,
        ..Changes::default()
    };
    for r in db.records()? {
        let r = r?;
        changes.ops.insert(r.key, Some(r.value));
    }
    Ok(changes)
}

/// Gives an existing file its owner, group and mode, through a descriptor of the file
/// found without following a final symlink (see [`persist::apply_at`]: a symlink, a
/// file with other hard links or anything but a regular file is refused).
pub fn apply_ownership(path: &Path, own: &Ownership) -> Result<()> {
    let t = Target::entry(path, false)?;
    persist::apply_at(&t.handle, &t.name, own, own.mode)
}

/// Creates the missing directories of `dir` below `base` (mode 0755).
fn make_dirs(dir: &Path, base: Option<&Path>, notes: &mut Vec<String>) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    match base {
        Some(b) if dir.starts_with(b) && b.is_dir() => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .at(dir)?;
            notes.push(format!("created {}", dir.display()));
            Ok(())
        }
        _ => Err(Error::io(dir, io::Error::from(io::ErrorKind::NotFound))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_cf_parsing() {
        let m = MasterCf::parse(
            Path::new("master.cf"),
            b"# c\nsmtp inet n - y - - smtpd\n  -o smtpd_sasl_auth_enable=yes -o { smtpd_sasl_path = other }\n\
              submission inet n - n - - smtpd\nshort inet n\n127.0.0.1:2525 inet n - - - - smtpd -o x=1\n",
        );
        let s = m.services();
        assert_eq!(s.len(), 3);
        assert!(s[0].chrooted());
        assert_eq!(s[0].option("smtpd_sasl_path"), Some("other"));
        assert_eq!(s[0].option("smtpd_sasl_auth_enable"), Some("yes"));
        assert!(!s[1].chrooted());
        assert_eq!(s[2].chroot, ChrootColumn::Default);
        assert!(!s[2].chrooted());
        assert_eq!(s[2].option("x"), Some("1"));
        assert_eq!(m.warnings().len(), 1);
    }

    #[test]
    fn resolving_inside_a_root() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        fs::create_dir(&etc).unwrap();
        fs::write(etc.join("real"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/sasldb2", etc.join("sasldb2")).unwrap();
        std::os::unix::fs::symlink("../etc/./real", etc.join("rel")).unwrap();
        std::os::unix::fs::symlink("/etc/real", etc.join("abs")).unwrap();
        assert!(resolve_in_root(root.path(), Path::new("/etc/sasldb2")).is_err());
        assert_eq!(
            resolve_in_root(root.path(), Path::new("/etc/rel")).unwrap(),
            etc.join("real")
        );
        assert_eq!(
            resolve_in_root(root.path(), Path::new("/etc/abs")).unwrap(),
            etc.join("real")
        );
        assert_eq!(
            in_root(Path::new("/q"), Path::new("/etc/../etc/sasldb2")),
            Path::new("/q/etc/sasldb2")
        );
    }

    #[test]
    fn smtpd_database_from_conf() {
        let none = SmtpdDatabase::from_conf(None, Format::Bdb);
        assert_eq!(none.path, Path::new("/etc/sasldb2"));
        assert!(none.unused_because.is_none());
        let c = SaslConf::parse(
            Path::new("smtpd.conf"),
            b"pwcheck_method: saslauthd\nsasldb_path: /etc/sasl2/db\n",
        )
        .unwrap();
        let d = SmtpdDatabase::from_conf(Some(&c), Format::Lmdb);
        assert_eq!(d.path, Path::new("/etc/sasl2/db"));
        assert!(d.unused_because.unwrap().contains("saslauthd"));
        let c = SaslConf::parse(Path::new("smtpd.conf"), b"auxprop_plugin: sql\n").unwrap();
        assert!(
            SmtpdDatabase::from_conf(Some(&c), Format::Bdb)
                .unused_because
                .is_some()
        );
    }
}
