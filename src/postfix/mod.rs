//! The realm Postfix hands to libsasl for a login without `@`.
//!
//! Postfix's `smtpd` calls `sasl_server_new(service, $myhostname,
//! $smtpd_sasl_local_domain or NULL, ...)`. For a bare login libsasl then looks the
//! user up in realm `smtpd_sasl_local_domain` when that is non-empty (verbatim), else
//! in `myhostname` lowercased (libsasl lowercases `serverFQDN`). A sasldb written with
//! any other realm makes every login fail with "authentication failure".
//!
//! This module owns everything needed to answer "which realm would Postfix use":
//! - [`MainCf`]: a parser for `main.cf` with Postfix's own rules (continuation
//!   lines, comments, later definitions override earlier ones, fatal syntax errors);
//! - [`Params`]: `$name` expansion exactly as `postconf -x` does it (`$name`,
//!   `${name}`, `$(name)`, `${name?text}`, `${name:text}`, `{text}` operands, the
//!   ternary `?:` and relational `{a} == {b}` forms, `$$`, loop detection), with the
//!   built-in defaults of `myhostname` and `mydomain` computed like Postfix;
//! - [`default_realm`]: the resolver the tools use. It asks the real `postconf` when
//!   one is installed and falls back to the parser otherwise, and says where the realm
//!   came from so a tool can explain it.
//!
//! It does no sasldb I/O. The machine's hostname is always a parameter of the pure
//! functions; [`system_hostname`] is the thin wrapper around `gethostname(2)`.

pub mod chroot;

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

/// Postfix's compiled-in configuration directory.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/postfix";

/// The environment variable Postfix programs read to find another configuration
/// directory.
pub const CONFIG_DIR_ENV: &str = "MAIL_CONFIG";

/// The largest main.cf or master.cf we read: Postfix sets no limit, but real files
/// are a few kilobytes, and a file that never ends must not fill our memory.
pub const MAX_CONFIG_FILE: u64 = 4 << 20;

/// The longest logical line of main.cf we accept (a syntax error beyond).
pub const MAX_LOGICAL_LINE: usize = 1 << 20;

/// Reads a Postfix configuration file of at most [`MAX_CONFIG_FILE`] bytes.
pub(crate) fn read_config(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut text = Vec::new();
    f.take(MAX_CONFIG_FILE + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_FILE {
        return Err(io::Error::other(format!(
            "larger than {} MiB; not read",
            MAX_CONFIG_FILE >> 20
        )));
    }
    Ok(text)
}

/// Postfix's fallback domain (`DEF_MYDOMAIN`) for a hostname without a dot.
pub const DEF_MYDOMAIN: &str = "localdomain";

/// Where `postconf` is looked for when it is not on `PATH`.
pub const POSTCONF_FALLBACK: &str = "/usr/sbin/postconf";

/// The parameter that, when non-empty, is the realm of bare logins.
pub const LOCAL_DOMAIN_PARAM: &str = "smtpd_sasl_local_domain";

/// Postfix's limit on nested macro calls in one expansion (`mac_expand.c`): a call at
/// a nesting level above this is "unreasonable macro call nesting".
const MAX_NESTING: u32 = 100;

/// Our own limit on the total recursion depth, across the fresh expansion contexts
/// that relational operands start. Postfix has no such limit and crashes (SIGSEGV)
/// on `a = ${{$a} == {x}}`; we report a loop instead.
const MAX_TOTAL_DEPTH: usize = 200;

/// Our limit on the work of one expansion (macro calls, counted across the nested
/// expansions it starts), and on the bytes it produces. Depth limits alone do not
/// bound the work: `a = $b$b`, `b = $c$c`, ... doubles it with every parameter, and
/// forty such lines would expand for days. Postfix has no such limit; real values
/// take a few dozen steps.
const MAX_EXPANSION_STEPS: u32 = 100_000;
const MAX_EXPANDED_LEN: usize = 1 << 20;

/// The steps left to one top-level expansion, shared with the nested ones.
type Budget = Rc<Cell<u32>>;

fn new_budget() -> Budget {
    Rc::new(Cell::new(MAX_EXPANSION_STEPS))
}

/// Postfix's whitespace set for expressions (`CHARS_SPACE`).
const EXPR_SPACE: &[u8] = b" \t\r\n";

/// Characters Postfix collects as a relational operator (for diagnostics).
const OPERATOR_CHARS: &[u8] = b"<>!=?+-*/~&|%";

/// Everything that can go wrong while working out Postfix's realm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostfixError {
    /// main.cf (or its directory) could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A logical line of main.cf is not `name = value`. Postfix programs stop with a
    /// fatal error on such a file.
    #[error("{}, line {line}: {what}: \"{text}\"", path.display())]
    Syntax {
        /// main.cf.
        path: PathBuf,
        /// The first physical line of the offending logical line (1-based).
        line: usize,
        /// Postfix's diagnosis.
        what: &'static str,
        /// The logical line, lossily decoded.
        text: String,
    },

    /// `$name` expansion failed: bad syntax, or a parameter that refers to itself.
    /// Postfix programs stop with "macro processing error" on such a file.
    #[error("{}: {what}", place(path, param, *line))]
    Expand {
        /// main.cf.
        path: PathBuf,
        /// The parameter whose value was being expanded when the error happened
        /// (empty for text given to [`Params::expand`]).
        param: String,
        /// Where that parameter is set, or `None` for a built-in default.
        line: Option<usize>,
        /// What went wrong, in Postfix's words.
        what: String,
    },

    /// The realm is not valid UTF-8.
    #[error("the realm taken from {from} is not valid UTF-8: {lossy}")]
    NotUtf8 {
        /// Where the realm came from.
        from: RealmSource,
        /// The realm, lossily decoded.
        lossy: String,
    },

    /// gethostname(2) failed or returned something that is not UTF-8.
    #[error("cannot determine the machine's hostname: {0}")]
    Hostname(#[source] io::Error),
}

fn place(path: &Path, param: &str, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}, line {line}: {param}", path.display()),
        None if param.is_empty() => path.display().to_string(),
        None => format!("{}: {param} (built-in default)", path.display()),
    }
}

/// Postfix's `ISSPACE`: ASCII `isspace` in the C locale (includes `\v` and `\f`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// At most `n` bytes of `b`, for Postfix's `%.20s` in diagnostics.
fn head(b: &[u8], n: usize) -> Cow<'_, str> {
    lossy(&b[..b.len().min(n)])
}

/// The configuration directory Postfix programs use: `$MAIL_CONFIG` when it is set
/// and non-empty, else `/etc/postfix`.
pub fn config_dir() -> PathBuf {
    config_dir_from(std::env::var_os(CONFIG_DIR_ENV).as_deref())
}

/// [`config_dir`] with the value of `MAIL_CONFIG` passed in.
///
/// ```
/// use std::ffi::OsStr;
/// use sasldb::postfix::config_dir_from;
/// assert_eq!(config_dir_from(None), std::path::Path::new("/etc/postfix"));
/// assert_eq!(config_dir_from(Some(OsStr::new(""))), std::path::Path::new("/etc/postfix"));
/// assert_eq!(config_dir_from(Some(OsStr::new("/etc/postfix-out"))), std::path::Path::new("/etc/postfix-out"));
/// ```
pub fn config_dir_from(mail_config: Option<&OsStr>) -> PathBuf {
    match mail_config {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_CONFIG_DIR),
    }
}

/// The machine's hostname as `gethostname(2)` returns it (not lowercased, no DNS).
pub fn system_hostname() -> Result<String, PostfixError> {
    let name = nix::unistd::gethostname().map_err(|e| PostfixError::Hostname(e.into()))?;
    name.into_string().map_err(|raw| {
        PostfixError::Hostname(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8: {}", raw.to_string_lossy()),
        ))
    })
}

/// Whether Postfix accepts `name` as a hostname (`valid_hostname()` in Postfix's
/// `util/valid_hostname.c`): ASCII letters, digits, `_`, `-` and `.`; no empty label,
/// no label over 63 bytes, no hyphen at either end of a label, not all-numeric, at
/// most 255 bytes. Postfix refuses to start when `myhostname` fails this check.
///
/// Returns Postfix's reason on failure.
///
/// ```
/// use sasldb::postfix::valid_hostname;
/// assert!(valid_hostname("mail.example.com").is_ok());
/// assert_eq!(valid_hostname("mail."), Err("misplaced delimiter"));
/// assert_eq!(valid_hostname("10.0.0.1"), Err("numeric hostname"));
/// ```
pub fn valid_hostname(name: &str) -> Result<(), &'static str> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err("empty hostname");
    }
    let mut label_len = 0usize;
    let mut non_numeric = false;
    for (i, &ch) in b.iter().enumerate() {
        let next = b.get(i + 1).copied();
        if ch.is_ascii_alphanumeric() || ch == b'_' {
            label_len += 1;
            if label_len > 63 {
                return Err("hostname label too long");
            }
            if !ch.is_ascii_digit() {
                non_numeric = true;
            }
        } else if ch == b'.' {
            if label_len == 0 || next.is_none() {
                return Err("misplaced delimiter");
            }
            label_len = 0;
        } else if ch == b'-' {
            non_numeric = true;
            label_len += 1;
            if label_len == 1 || next.is_none() || next == Some(b'.') {
                return Err("misplaced hyphen");
            }
        } else {
            return Err("invalid character");
        }
    }
    if !non_numeric {
        return Err("numeric hostname");
    }
    if b.len() > 255 {
        return Err("bad length");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// main.cf parsing
// ---------------------------------------------------------------------------------

/// One `name = value` entry of main.cf.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: Vec<u8>,
    line: usize,
}

/// A parsed main.cf.
///
/// The rules are Postfix's (`readllines()` and `split_nameval()`):
/// - a line whose first non-space character is `#` is a comment, and a line of only
///   whitespace is blank; both are skipped, even between a line and its
///   continuation (there are no trailing comments: `a = b # c` has the value `b # c`);
/// - a line that starts with whitespace continues the previous logical line; the
///   pieces are joined without the newline, so the continuation's leading whitespace
///   stays in the value;
/// - a logical line that starts with whitespace (continuation text with nothing
///   before it) is skipped with a warning;
/// - every other logical line must be `name = value`, with whitespace around the name
///   and value trimmed; anything else is fatal for Postfix and an error here;
/// - a later definition of a name overrides an earlier one (Postfix warns when the
///   values differ).
///
/// Values are kept as bytes: Postfix does not require main.cf to be UTF-8.
#[derive(Debug, Clone)]
pub struct MainCf {
    config_dir: PathBuf,
    path: PathBuf,
    entries: HashMap<Vec<u8>, Entry>,
    warnings: Vec<String>,
}

impl MainCf {
    /// Reads and parses `<config_dir>/main.cf` (at most [`MAX_CONFIG_FILE`] bytes).
    pub fn load(config_dir: &Path) -> Result<MainCf, PostfixError> {
        let path = config_dir.join("main.cf");
        let text = read_config(&path).map_err(|source| PostfixError::Io {
            path: path.clone(),
            source,
        })?;
        MainCf::parse(config_dir, &text)
    }

    /// Parses the text of `<config_dir>/main.cf` (the directory is used in messages
    /// and as the value of `$config_directory`).
    ///
    /// ```
    /// use sasldb::postfix::MainCf;
    /// let cf = MainCf::parse("/etc/postfix".as_ref(),
    ///     b"# comment\nmyhostname = mail\n  .example.com\nmydomain = a\nmydomain = b\n").unwrap();
    /// assert_eq!(cf.get("myhostname"), Some(&b"mail  .example.com"[..]));
    /// assert_eq!(cf.get("mydomain"), Some(&b"b"[..]));
    /// assert_eq!(cf.line("mydomain"), Some(5));
    /// ```
    pub fn parse(config_dir: &Path, text: &[u8]) -> Result<MainCf, PostfixError> {
        let path = config_dir.join("main.cf");
        let mut cf = MainCf {
            config_dir: config_dir.to_path_buf(),
            path,
            entries: HashMap::new(),
            warnings: Vec::new(),
        };
        let mut reader = LineReader {
            text,
            pos: 0,
            lineno: 0,
        };
        while let Some((line, mut logical)) = reader.next_logical(&cf.path, &mut cf.warnings) {
            if logical.len() > MAX_LOGICAL_LINE {
                return Err(PostfixError::Syntax {
                    path: cf.path.clone(),
                    line,
                    what: "logical line longer than 1 MiB",
                    text: format!("{}...", head(&logical, 40)),
                });
            }
            // Postfix hands the logical line to split_nameval() as a C string.
            if let Some(nul) = logical.iter().position(|&b| b == 0) {
                logical.truncate(nul);
            }
            let (name, value) = split_nameval(&logical).map_err(|what| PostfixError::Syntax {
                path: cf.path.clone(),
                line,
                what,
                text: lossy(&logical).into_owned(),
            })?;
            if let Some(old) = cf.entries.get(name)
                && old.value != value
            {
                cf.warnings.push(format!(
                    "{}, line {line}: overriding earlier entry: {}={}",
                    cf.path.display(),
                    lossy(name),
                    lossy(&old.value)
                ));
            }
            cf.entries.insert(
                name.to_vec(),
                Entry {
                    value: value.to_vec(),
                    line,
                },
            );
        }
        Ok(cf)
    }

    /// The path of the file (`<config_dir>/main.cf`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration directory.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The raw (unexpanded) value of `name`, if main.cf sets it.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .get(name.as_bytes())
            .map(|e| e.value.as_slice())
    }

    /// The line where the effective definition of `name` starts.
    pub fn line(&self, name: &str) -> Option<usize> {
        self.entries.get(name.as_bytes()).map(|e| e.line)
    }

    /// The warnings Postfix would print while reading the file (skipped lines,
    /// overridden entries), one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Parameter lookup and expansion over this file, for a machine whose
    /// `gethostname()` is `hostname`.
    pub fn params<'a>(&'a self, hostname: &'a str) -> Params<'a> {
        Params { cf: self, hostname }
    }
}

/// Postfix's `readllines()` over an in-memory file.
struct LineReader<'t> {
    text: &'t [u8],
    pos: usize,
    lineno: usize,
}

impl LineReader<'_> {
    /// The next logical line and the number of its first physical line, or `None`
    /// at the end of the file.
    fn next_logical(
        &mut self,
        path: &Path,
        warnings: &mut Vec<String>,
    ) -> Option<(usize, Vec<u8>)> {
        loop {
            let mut buf: Vec<u8> = Vec::new();
            let mut first = 0;
            loop {
                let start = buf.len();
                let rest = &self.text[self.pos..];
                let (line, newline) = match memchr::memchr(b'\n', rest) {
                    Some(i) => (&rest[..i], true),
                    None => (rest, false),
                };
                self.pos += line.len() + usize::from(newline);
                buf.extend_from_slice(line);
                if newline || buf.len() > start {
                    self.lineno += 1;
                }
                match buf[start..].iter().position(|&b| !is_space(b)) {
                    None => buf.truncate(start),
                    Some(i) if buf[start + i] == b'#' => buf.truncate(start),
                    Some(_) => {
                        if start == 0 {
                            first = self.lineno;
                        }
                    }
                }
                if !newline {
                    break; // end of file
                }
                if !buf.is_empty() {
                    match self.text.get(self.pos) {
                        Some(&next) if next == b'#' || is_space(next) => {}
                        _ => break,
                    }
                }
            }
            if buf.is_empty() {
                return None;
            }
            if is_space(buf[0]) {
                let shown = head(&buf, 30);
                let more = if buf.len() > 30 { "..." } else { "" };
                warnings.push(format!(
                    "{}: logical line must not start with whitespace: \"{shown}{more}\"",
                    path.display()
                ));
                continue;
            }
            return Some((first, buf));
        }
    }
}

/// Postfix's `split_nameval()`: `name = value` with whitespace trimmed.
fn split_nameval(line: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let np = line
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(line.len());
    if np == line.len() || line[np] == b'=' {
        return Err("missing attribute name");
    }
    let ep = np
        + line[np..]
            .iter()
            .position(|&b| is_space(b) || b == b'=')
            .unwrap_or(line.len() - np);
    let eq = ep
        + line[ep..]
            .iter()
            .position(|&b| !is_space(b))
            .unwrap_or(line.len() - ep);
    if line.get(eq) != Some(&b'=') {
        return Err("missing '=' after attribute name");
    }
    let mut value = &line[eq + 1..];
    while let [first, rest @ ..] = value
        && is_space(*first)
    {
        value = rest;
    }
    while let [rest @ .., last] = value
        && is_space(*last)
    {
        value = rest;
    }
    Ok((&line[np..ep], value))
}

// ---------------------------------------------------------------------------------
// Expansion
// ---------------------------------------------------------------------------------

/// The result of expanding a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expanded {
    /// The expanded bytes.
    pub value: Vec<u8>,
    /// Names that were referenced but had no value (expanded as empty), in the order
    /// first met. `postconf` warns "undefined parameter" about these.
    pub undefined: Vec<String>,
}

/// Parameter lookup and `$name` expansion over a [`MainCf`], with the built-in
/// defaults Postfix's `postconf` uses.
///
/// Built-in defaults known here: `myhostname`, `mydomain` (both computed like
/// Postfix, see [`Params::default_value`]), `myorigin` (`$myhostname`),
/// `mydestination`, `smtpd_sasl_local_domain` (empty), `mail_name` (`Postfix`) and
/// `config_directory`. Any other name not set in main.cf expands to the empty string
/// and is listed in [`Expanded::undefined`].
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    cf: &'a MainCf,
    hostname: &'a str,
}

/// Which names a lookup can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// main.cf only: Postfix's `mail_conf_lookup_eval()` / `dict_eval()`, used when
    /// computing the defaults of `myhostname` and `mydomain`.
    MainCf,
    /// main.cf, then built-in defaults: `postconf -x`.
    Postconf,
}

impl<'a> Params<'a> {
    /// The value `postconf -xh name` prints: main.cf's value or the built-in default,
    /// fully expanded. `None` when main.cf does not set `name` and it is not one of
    /// the built-in defaults known here.
    ///
    /// ```
    /// use sasldb::postfix::MainCf;
    /// let cf = MainCf::parse("/etc/postfix".as_ref(),
    ///     b"mydomain = example.com\nmyhostname = mail.$mydomain\n").unwrap();
    /// let p = cf.params("vm");
    /// assert_eq!(p.eval("myhostname").unwrap().unwrap().value, b"mail.example.com");
    /// assert_eq!(p.eval("myorigin").unwrap().unwrap().value, b"mail.example.com");
    /// ```
    pub fn eval(&self, name: &str) -> Result<Option<Expanded>, PostfixError> {
        let budget = new_budget();
        let (raw, line) = match self.cf.entries.get(name.as_bytes()) {
            Some(e) => (Cow::Borrowed(e.value.as_slice()), Some(e.line)),
            None => match self.builtin(name, 0, &budget)? {
                Some((v, _)) => (Cow::Owned(v), None),
                None => return Ok(None),
            },
        };
        let mut ex = Expander::new(*self, Scope::Postconf, name, line, 0, budget);
        let mut out = Vec::new();
        ex.mac_expand(&raw, &mut out).map_err(|e| *e)?;
        Ok(Some(Expanded {
            value: out,
            undefined: ex.undefined,
        }))
    }

    /// Expands arbitrary text as `postconf -x` would expand a parameter value.
    ///
    /// ```
    /// use sasldb::postfix::MainCf;
    /// let cf = MainCf::parse("/etc/postfix".as_ref(), b"a = A\nempty =\n").unwrap();
    /// let x = cf.params("vm").expand(b"${a?yes}|${empty:no}|$(a)|$$a|${nope}").unwrap();
    /// assert_eq!(x.value, b"yes|no|A|$a|");
    /// assert_eq!(x.undefined, ["nope"]);
    /// ```
    pub fn expand(&self, text: &[u8]) -> Result<Expanded, PostfixError> {
        let mut ex = Expander::new(*self, Scope::Postconf, "", None, 0, new_budget());
        let mut out = Vec::new();
        ex.mac_expand(text, &mut out).map_err(|e| *e)?;
        Ok(Expanded {
            value: out,
            undefined: ex.undefined,
        })
    }

    /// The built-in default of `name`, unexpanded (for `myhostname` and `mydomain`,
    /// what `postconf -h` prints when main.cf does not set them). `None` for names
    /// this module does not know.
    ///
    /// `myhostname` and `mydomain` are computed like Postfix's `postconf`
    /// (`pcf_check_myhostname()` / `pcf_check_mydomainname()`):
    /// - `myhostname` is the machine's hostname; if it has no dot, `.` and main.cf's
    ///   `mydomain` are appended, that value being expanded against main.cf only
    ///   (built-in defaults are not visible there, undefined names become empty), or
    ///   `localdomain` when main.cf does not set `mydomain`;
    /// - `mydomain` is what follows the first dot of main.cf's `myhostname` (expanded
    ///   against main.cf only) or of the default above, or `localdomain` when there
    ///   is no dot.
    ///
    /// Both results are expanded again when used, as Postfix does.
    ///
    /// ```
    /// use sasldb::postfix::MainCf;
    /// let none = MainCf::parse("/etc/postfix".as_ref(), b"").unwrap();
    /// assert_eq!(none.params("vm").default_value("myhostname").unwrap().unwrap(), b"vm.localdomain");
    /// assert_eq!(none.params("vm").default_value("mydomain").unwrap().unwrap(), b"localdomain");
    /// let cf = MainCf::parse("/etc/postfix".as_ref(), b"myhostname = Mail.Example.COM").unwrap();
    /// assert_eq!(cf.params("vm").default_value("mydomain").unwrap().unwrap(), b"Example.COM");
    /// ```
    pub fn default_value(&self, name: &str) -> Result<Option<Vec<u8>>, PostfixError> {
        Ok(self.builtin(name, 0, &new_budget())?.map(|(v, _)| v))
    }

    /// [`Params::default_value`] plus the names found undefined while computing it.
    /// `depth` is the recursion depth of the caller, so that nested expansions share
    /// one limit.
    #[allow(clippy::type_complexity)]
    fn builtin(
        &self,
        name: &str,
        depth: usize,
        budget: &Budget,
    ) -> Result<Option<(Vec<u8>, Vec<String>)>, PostfixError> {
        let fixed: &[u8] = match name {
            "myhostname" => return self.default_myhostname(depth, budget).map(Some),
            "mydomain" => return self.default_mydomain(depth, budget).map(Some),
            "myorigin" => b"$myhostname",
            "mydestination" => b"$myhostname, localhost.$mydomain, localhost",
            LOCAL_DOMAIN_PARAM => b"",
            "mail_name" => b"Postfix",
            "config_directory" => self.cf.config_dir.as_os_str().as_bytes(),
            _ => return Ok(None),
        };
        Ok(Some((fixed.to_vec(), Vec::new())))
    }

    /// main.cf's value of `name` expanded against main.cf only (Postfix's
    /// `mail_conf_lookup_eval()`), or `None` when main.cf does not set it.
    fn main_cf_eval(
        &self,
        name: &str,
        depth: usize,
        budget: &Budget,
    ) -> Result<Option<Expanded>, PostfixError> {
        let Some(e) = self.cf.entries.get(name.as_bytes()) else {
            return Ok(None);
        };
        let mut ex = Expander::new(
            *self,
            Scope::MainCf,
            name,
            Some(e.line),
            depth,
            budget.clone(),
        );
        let mut out = Vec::new();
        ex.mac_expand(&e.value, &mut out).map_err(|e| *e)?;
        Ok(Some(Expanded {
            value: out,
            undefined: ex.undefined,
        }))
    }

    fn default_myhostname(
        &self,
        depth: usize,
        budget: &Budget,
    ) -> Result<(Vec<u8>, Vec<String>), PostfixError> {
        let host = self.hostname.as_bytes();
        if host.contains(&b'.') {
            return Ok((host.to_vec(), Vec::new()));
        }
        let (domain, undefined) = match self.main_cf_eval("mydomain", depth, budget)? {
            Some(x) => (x.value, x.undefined),
            None => (DEF_MYDOMAIN.as_bytes().to_vec(), Vec::new()),
        };
        let mut name = host.to_vec();
        name.push(b'.');
        name.extend_from_slice(&domain);
        Ok((name, undefined))
    }

    fn default_mydomain(
        &self,
        depth: usize,
        budget: &Budget,
    ) -> Result<(Vec<u8>, Vec<String>), PostfixError> {
        let (host, undefined) = match self.main_cf_eval("myhostname", depth, budget)? {
            Some(x) => (x.value, x.undefined),
            None => self.default_myhostname(depth, budget)?,
        };
        let domain = match memchr::memchr(b'.', &host) {
            Some(dot) => host[dot + 1..].to_vec(),
            None => DEF_MYDOMAIN.as_bytes().to_vec(),
        };
        Ok((domain, undefined))
    }
}

/// Where the text being expanded comes from, for error messages.
#[derive(Debug, Clone)]
struct Origin {
    param: String,
    line: Option<usize>,
}

/// One `mac_expand()` call's state: Postfix counts nesting per call.
struct Ctx {
    level: u32,
}

/// A port of Postfix's `mac_parse()` + `mac_expand()` with `MAC_EXP_FLAG_RECURSE`.
///
/// Postfix stops with a fatal error on the first syntax error, so every error here
/// aborts the whole expansion. Only the branch of a conditional that is taken is
/// parsed, like Postfix (errors in the other branch go unnoticed).
struct Expander<'a> {
    params: Params<'a>,
    scope: Scope,
    depth: usize,
    budget: Budget,
    origin: Vec<Origin>,
    undefined: Vec<String>,
}

/// A piece of an error message: text, bytes, or the first 20 bytes (`%.20s`).
enum P<'x> {
    S(&'x str),
    B(&'x [u8]),
    H(&'x [u8]),
}

/// The value an expression stands for, and what follows it.
struct Head<'a> {
    /// The parameter value (`None`: undefined) or the comparison result.
    value: Option<Cow<'a, [u8]>>,
    /// Where the value is defined, for error messages.
    origin: Option<Origin>,
    /// `?`, `:` or 0 (no operator).
    op: u8,
    /// Where the operand text after the operator starts.
    rest: usize,
}

/// A failed expansion, boxed so that the recursive functions' `Result`s stay small.
type Stop = Box<PostfixError>;

enum Token<'b> {
    Literal(&'b [u8]),
    Expr(&'b [u8]),
}

#[derive(Debug, Clone, Copy)]
enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
}

impl<'a> Expander<'a> {
    fn new(
        params: Params<'a>,
        scope: Scope,
        param: &str,
        line: Option<usize>,
        depth: usize,
        budget: Budget,
    ) -> Self {
        Expander {
            params,
            scope,
            depth,
            budget,
            origin: vec![Origin {
                param: param.to_owned(),
                line,
            }],
            undefined: Vec::new(),
        }
    }

    /// Builds the error for a failed expansion. Kept out of line so that the
    /// recursive functions keep small stack frames.
    #[cold]
    #[inline(never)]
    fn fail(&self, parts: &[P<'_>]) -> Stop {
        let mut what = String::new();
        for part in parts {
            match part {
                P::S(s) => what.push_str(s),
                P::B(b) => what.push_str(&lossy(b)),
                P::H(b) => what.push_str(&head(b, 20)),
            }
        }
        let origin = self.origin.last().cloned().unwrap_or(Origin {
            param: String::new(),
            line: None,
        });
        Box::new(PostfixError::Expand {
            path: self.params.cf.path.clone(),
            param: origin.param,
            line: origin.line,
            what,
        })
    }

    /// A fresh `mac_expand()` call (nesting level 0).
    fn mac_expand(&mut self, pattern: &[u8], out: &mut Vec<u8>) -> Result<(), Stop> {
        let mut ctx = Ctx { level: 0 };
        self.mac_parse(pattern, &mut ctx, out)
    }

    /// Splits `value` into literal text and macro expressions (`mac_parse()`).
    fn mac_parse(&mut self, value: &[u8], ctx: &mut Ctx, out: &mut Vec<u8>) -> Result<(), Stop> {
        let mut lit: Vec<u8> = Vec::new();
        let mut vp = 0;
        while vp < value.len() {
            if value[vp] != b'$' {
                lit.push(value[vp]);
                vp += 1;
            } else if value.get(vp + 1) == Some(&b'$') {
                lit.push(b'$');
                vp += 2;
            } else {
                if !lit.is_empty() {
                    self.callback(Token::Literal(&lit), ctx, out)?;
                    lit.clear();
                }
                vp += 1;
                let (open, close) = match value.get(vp) {
                    Some(b'(') => (b'(', b')'),
                    Some(b'{') => (b'{', b'}'),
                    _ => (0, 0),
                };
                let expr: &[u8];
                if open != 0 {
                    vp += 1;
                    let mut level = 1;
                    let mut ep = vp;
                    while level > 0 {
                        let Some(&c) = value.get(ep) else {
                            return Err(self.fail(&[
                                P::S("truncated macro reference: \""),
                                P::B(value),
                                P::S("\""),
                            ]));
                        };
                        if c == open {
                            level += 1;
                        }
                        if c == close {
                            level -= 1;
                        }
                        ep += 1;
                    }
                    expr = &value[vp..ep - 1];
                    vp = ep;
                } else {
                    let ep = vp
                        + value[vp..]
                            .iter()
                            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                            .unwrap_or(value.len() - vp);
                    expr = &value[vp..ep];
                    vp = ep;
                }
                if expr.is_empty() {
                    return Err(self.fail(&[
                        P::S("empty macro name: \""),
                        P::B(value),
                        P::S("\""),
                    ]));
                }
                self.callback(Token::Expr(expr), ctx, out)?;
            }
        }
        if !lit.is_empty() {
            self.callback(Token::Literal(&lit), ctx, out)?;
        }
        Ok(())
    }

    /// `mac_expand_callback()`.
    fn callback(&mut self, token: Token<'_>, ctx: &mut Ctx, out: &mut Vec<u8>) -> Result<(), Stop> {
        let text = match token {
            Token::Literal(t) | Token::Expr(t) => t,
        };
        if ctx.level > MAX_NESTING || self.depth >= MAX_TOTAL_DEPTH {
            return Err(self.fail(&[
                P::S(
                    "unreasonable macro call nesting (a parameter refers to itself, \
                     directly or through others): \"",
                ),
                P::B(text),
                P::S("\""),
            ]));
        }
        let left = self.budget.get();
        if left == 0 {
            return Err(self.fail(&[P::S(
                "the expansion takes too many steps (parameters that refer to each other \
                 several times grow exponentially)",
            )]));
        }
        self.budget.set(left - 1);
        ctx.level += 1;
        self.depth += 1;
        match token {
            Token::Literal(t) => {
                if out.len() + t.len() > MAX_EXPANDED_LEN {
                    return Err(self.fail(&[P::S(
                        "the expansion is longer than 1 MiB (parameters that refer to each \
                         other several times grow exponentially)",
                    )]));
                }
                out.extend_from_slice(t)
            }
            Token::Expr(e) => self.expression(e, ctx, out)?,
        }
        ctx.level -= 1;
        self.depth -= 1;
        Ok(())
    }

    /// One macro expression (the text inside `${...}`, or a bare name).
    fn expression(&mut self, buf: &[u8], ctx: &mut Ctx, out: &mut Vec<u8>) -> Result<(), Stop> {
        let ws = span(buf, 0, EXPR_SPACE);
        let head = if buf.get(ws) == Some(&b'{') {
            self.relational(buf, ws)?
        } else {
            self.named(buf, ws)?
        };
        let nonempty = head.value.as_ref().is_some_and(|v| !v.is_empty());
        match head.op {
            b'?' => self.question_branch(buf, head.rest, nonempty, ctx, out),
            b':' => self.colon_branch(buf, head.rest, nonempty, ctx, out),
            _ => match head.value {
                Some(v) if !v.is_empty() => {
                    let pushed = head.origin.is_some();
                    if let Some(o) = head.origin {
                        self.origin.push(o);
                    }
                    self.mac_parse(&v, ctx, out)?;
                    if pushed {
                        self.origin.pop();
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
        }
    }

    /// `{left} op {right}`, optionally followed by `?` or `:`: the comparison's
    /// result stands in for a parameter value (`true` or empty).
    fn relational(&mut self, buf: &[u8], at: usize) -> Result<Head<'a>, Stop> {
        let (left, mut cp) = self.curly(buf, at)?;
        let op_len = span(buf, cp, OPERATOR_CHARS) - cp;
        let relop = match &buf[cp..cp + op_len] {
            b"==" => RelOp::Eq,
            b"!=" => RelOp::Ne,
            b"<" => RelOp::Lt,
            b"<=" => RelOp::Le,
            b">=" => RelOp::Ge,
            b">" => RelOp::Gt,
            _ => {
                return Err(self.fail(&[
                    P::S(
                        "\"==\" or \"!=\" or \"<\" or \"<=\" or \">=\" or \">\" \
                         expected at: \"...",
                    ),
                    P::B(left),
                    P::S("}>>>"),
                    P::H(&buf[cp..]),
                    P::S("\""),
                ]));
            }
        };
        let op_at = cp;
        cp += op_len;
        let ws = span(buf, cp, EXPR_SPACE);
        if buf.get(ws) != Some(&b'{') {
            return Err(self.fail(&[
                P::S("\"{expression}\" expected at: \"...{"),
                P::B(left),
                P::S("} "),
                P::B(&buf[op_at..op_at + op_len]),
                P::S(">>>"),
                P::H(&buf[cp..]),
                P::S("\""),
            ]));
        }
        let (right, mut cp) = self.curly(buf, ws)?;
        let mut l = Vec::new();
        self.mac_expand(left, &mut l)?;
        let mut r = Vec::new();
        self.mac_expand(right, &mut r)?;
        let truth = self.relop(&l, relop, &r)?;
        let value: &'static [u8] = if truth { b"true" } else { b"" };
        let op = match buf.get(cp) {
            None => 0,
            Some(&c @ (b'?' | b':')) => {
                cp += 1;
                c
            }
            Some(_) => {
                return Err(self.fail(&[
                    P::S("\"?\" or \":\" expected at: \"...}>>>"),
                    P::H(&buf[cp..]),
                    P::S("\""),
                ]));
            }
        };
        Ok(Head {
            value: Some(Cow::Borrowed(value)),
            origin: None,
            op,
            rest: cp,
        })
    }

    /// `name`, `name?...` or `name:...`, with whitespace allowed around the name.
    fn named(&mut self, buf: &[u8], start: usize) -> Result<Head<'a>, Stop> {
        let mut cp = start;
        let (name_end, op, rest) = loop {
            let w = span(buf, cp, EXPR_SPACE);
            match buf.get(w) {
                None => break (cp, 0, buf.len()),
                Some(&c @ (b'?' | b':')) => break (cp, c, w + 1),
                Some(_) => {}
            }
            let c = buf[cp];
            if !(c.is_ascii_alphanumeric() || c == b'_') {
                return Err(self.fail(&[
                    P::S("attribute name syntax error at: \"..."),
                    P::B(&buf[..cp]),
                    P::S(">>>"),
                    P::H(&buf[cp..]),
                    P::S("\""),
                ]));
            }
            cp += 1;
        };
        let name = &buf[start..name_end];
        let (value, origin) = match self.lookup(name)? {
            Some((v, o)) => (Some(v), Some(o)),
            None => {
                if op == 0 {
                    let name = lossy(name).into_owned();
                    if !self.undefined.contains(&name) {
                        self.undefined.push(name);
                    }
                }
                (None, None)
            }
        };
        Ok(Head {
            value,
            origin,
            op,
            rest,
        })
    }

    /// The `?` operand (expanded when the value is non-empty), then an optional `:`
    /// operand.
    fn question_branch(
        &mut self,
        buf: &[u8],
        cp: usize,
        nonempty: bool,
        ctx: &mut Ctx,
        out: &mut Vec<u8>,
    ) -> Result<(), Stop> {
        let (iftrue, cp) = self.operand(buf, cp)?;
        if nonempty {
            self.mac_parse(iftrue, ctx, out)?;
        }
        if cp == buf.len() {
            return Ok(());
        }
        if buf[cp] != b':' {
            return Err(self.fail(&[
                P::S("\":\" expected at: \"..."),
                P::B(iftrue),
                P::S("}>>>"),
                P::H(&buf[cp..]),
                P::S("\""),
            ]));
        }
        self.colon_branch(buf, cp + 1, nonempty, ctx, out)
    }

    /// The `:` operand: expanded when the lookup result is undefined or empty.
    fn colon_branch(
        &mut self,
        buf: &[u8],
        cp: usize,
        nonempty: bool,
        ctx: &mut Ctx,
        out: &mut Vec<u8>,
    ) -> Result<(), Stop> {
        let (iffalse, after) = self.operand(buf, cp)?;
        if !nonempty {
            self.mac_parse(iffalse, ctx, out)?;
        }
        if after != buf.len() {
            return Err(self.fail(&[
                P::S("unexpected input at: \"..."),
                P::B(iffalse),
                P::S("}>>>"),
                P::H(&buf[after..]),
                P::S("\""),
            ]));
        }
        Ok(())
    }

    /// A result operand: `{text}` (whitespace around it ignored) or the rest of the
    /// expression verbatim.
    fn operand<'b>(&self, buf: &'b [u8], cp: usize) -> Result<(&'b [u8], usize), Stop> {
        let ws = span(buf, cp, EXPR_SPACE);
        if buf.get(ws) == Some(&b'{') {
            self.curly(buf, ws)
        } else {
            Ok((&buf[cp..], buf.len()))
        }
    }

    /// `mac_exp_extract_curly_payload()`: `buf[at]` is `{`; returns the balanced
    /// payload and the position after the `}` and any whitespace.
    fn curly<'b>(&self, buf: &'b [u8], at: usize) -> Result<(&'b [u8], usize), Stop> {
        let mut level = 1;
        let mut i = at + 1;
        loop {
            match buf.get(i) {
                None => {
                    return Err(self.fail(&[
                        P::S("unbalanced {} in attribute expression: \""),
                        P::B(&buf[at..]),
                        P::S("\""),
                    ]));
                }
                Some(b'{') => level += 1,
                Some(b'}') => {
                    level -= 1;
                    if level == 0 {
                        break;
                    }
                }
                Some(_) => {}
            }
            i += 1;
        }
        Ok((&buf[at + 1..i], span(buf, i + 1, EXPR_SPACE)))
    }

    /// `mac_exp_eval()`: numeric when both sides are all digits, else bytewise.
    fn relop(&self, l: &[u8], op: RelOp, r: &[u8]) -> Result<bool, Stop> {
        let all_digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
        let ord = if all_digits(l) && all_digits(r) {
            let num = |s: &[u8]| {
                std::str::from_utf8(s)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| self.fail(&[P::S("mac_exp_eval: bad conversion: "), P::B(s)]))
            };
            num(l)?.cmp(&num(r)?)
        } else {
            l.cmp(r)
        };
        Ok(match op {
            RelOp::Eq => ord.is_eq(),
            RelOp::Ne => ord.is_ne(),
            RelOp::Lt => ord.is_lt(),
            RelOp::Le => ord.is_le(),
            RelOp::Ge => ord.is_ge(),
            RelOp::Gt => ord.is_gt(),
        })
    }

    /// Looks a name up in the scope; the value comes with where it is defined.
    #[allow(clippy::type_complexity)]
    fn lookup(&mut self, name: &[u8]) -> Result<Option<(Cow<'a, [u8]>, Origin)>, Stop> {
        let cf = self.params.cf;
        if let Some(e) = cf.entries.get(name) {
            let origin = Origin {
                param: lossy(name).into_owned(),
                line: Some(e.line),
            };
            return Ok(Some((Cow::Borrowed(e.value.as_slice()), origin)));
        }
        if self.scope == Scope::MainCf {
            return Ok(None);
        }
        let Ok(name) = std::str::from_utf8(name) else {
            return Ok(None);
        };
        match self
            .params
            .builtin(name, self.depth, &self.budget)
            .map_err(Box::new)?
        {
            Some((v, undefined)) => {
                for u in undefined {
                    if !self.undefined.contains(&u) {
                        self.undefined.push(u);
                    }
                }
                let origin = Origin {
                    param: name.to_owned(),
                    line: None,
                };
                Ok(Some((Cow::Owned(v), origin)))
            }
            None => Ok(None),
        }
    }
}

/// The end of the run of bytes from `set` that starts at `from`.
fn span(buf: &[u8], from: usize, set: &[u8]) -> usize {
    let from = from.min(buf.len());
    from + buf[from..]
        .iter()
        .position(|b| !set.contains(b))
        .unwrap_or(buf.len() - from)
}

// ---------------------------------------------------------------------------------
// The realm resolver
// ---------------------------------------------------------------------------------

/// Where the default realm comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmSource {
    /// Postfix's `smtpd_sasl_local_domain` (non-empty), used verbatim.
    SmtpdSaslLocalDomain,
    /// Postfix's `myhostname`, lowercased like libsasl does.
    Myhostname,
    /// No Postfix: the machine's hostname, lowercased, as Cyrus's `saslpasswd2` does.
    Hostname,
}

impl fmt::Display for RealmSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RealmSource::SmtpdSaslLocalDomain => "Postfix's smtpd_sasl_local_domain",
            RealmSource::Myhostname => "Postfix's myhostname",
            RealmSource::Hostname => "the machine's hostname",
        })
    }
}

/// How the Postfix parameters were obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `<config_dir>/main.cf` does not exist: no Postfix was consulted.
    NoPostfix,
    /// The real `postconf` at this path printed them.
    Postconf(PathBuf),
    /// Our own main.cf parser computed them (postconf absent, disabled or failed; the
    /// notes say which).
    Parser,
}

/// Whether to ask the real `postconf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UsePostconf {
    /// Use the `postconf` of main.cf's `command_directory`, else
    /// [`POSTCONF_FALLBACK`], when it exists and only root (or we) can change it (see
    /// [`find_postconf`]); never one from `PATH`.
    #[default]
    Auto,
    /// Never run `postconf`; always parse main.cf ourselves.
    Never,
    /// Run this program as `postconf` (an absolute path; a relative one is not run).
    Program(PathBuf),
}

/// What [`default_realm`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmQuery {
    /// Postfix's configuration directory (see [`config_dir`]).
    pub config_dir: PathBuf,
    /// The machine's hostname as `gethostname()` returns it (see [`system_hostname`]).
    /// `postconf` uses the real one; this value serves the parser and the no-Postfix
    /// case.
    pub hostname: String,
    /// Whether to ask `postconf`.
    pub postconf: UsePostconf,
}

impl RealmQuery {
    /// The query for this machine: [`config_dir`], [`system_hostname`] and
    /// [`UsePostconf::Auto`].
    pub fn from_environment() -> Result<RealmQuery, PostfixError> {
        Ok(RealmQuery {
            config_dir: config_dir(),
            hostname: system_hostname()?,
            postconf: UsePostconf::Auto,
        })
    }
}

/// The realm Postfix uses for logins without `@`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRealm {
    /// The realm.
    pub realm: String,
    /// Where it came from.
    pub source: RealmSource,
    /// How the Postfix parameters were obtained.
    pub method: Method,
    /// The Postfix configuration directory consulted.
    pub config_dir: PathBuf,
    /// `myhostname` as Postfix has it (expanded, not lowercased), lossily decoded;
    /// `None` without Postfix.
    pub myhostname: Option<String>,
    /// `smtpd_sasl_local_domain` as Postfix has it (expanded), lossily decoded;
    /// `None` without Postfix.
    pub local_domain: Option<String>,
    /// Remarks worth showing to an administrator: warnings `postconf` printed (or our
    /// parser's equivalents), undefined `$names`, why the parser was used, and a
    /// `myhostname` that Postfix would refuse.
    pub notes: Vec<String>,
}

impl DefaultRealm {
    /// One sentence saying where the realm comes from, for `--verbose` output.
    pub fn explain(&self) -> String {
        let how = match &self.method {
            Method::NoPostfix => {
                return format!(
                    "realm `{}` is the machine's hostname, lowercased (no {} found)",
                    self.realm,
                    self.config_dir.join("main.cf").display()
                );
            }
            Method::Postconf(p) => format!("as printed by {}", p.display()),
            Method::Parser => format!("parsed from {}", self.config_dir.join("main.cf").display()),
        };
        match self.source {
            RealmSource::Myhostname => {
                let raw = self.myhostname.as_deref().unwrap_or("");
                if raw == self.realm {
                    format!("realm `{}` is Postfix's myhostname ({how})", self.realm)
                } else {
                    format!(
                        "realm `{}` is Postfix's myhostname `{raw}` lowercased, as libsasl does ({how})",
                        self.realm
                    )
                }
            }
            RealmSource::SmtpdSaslLocalDomain => format!(
                "realm `{}` is Postfix's smtpd_sasl_local_domain ({how})",
                self.realm
            ),
            RealmSource::Hostname => format!("realm `{}` is the machine's hostname", self.realm),
        }
    }
}

/// Finds `postconf`, never through `PATH`: `<command_directory>/postconf` when main.cf
/// in `config_dir` sets an absolute `command_directory`, else [`POSTCONF_FALLBACK`];
/// `None` when that is not an executable file. See [`trusted_program`] for the checks
/// [`default_realm`] adds before running it.
pub fn find_postconf(config_dir: &Path, hostname: &str) -> Option<PathBuf> {
    let from_main_cf = MainCf::load(config_dir).ok().and_then(|cf| {
        let raw = cf.get("command_directory")?.to_vec();
        let dir = if raw.contains(&b'$') {
            cf.params(hostname).expand(&raw).ok()?.value
        } else {
            raw
        };
        let dir = PathBuf::from(std::ffi::OsStr::from_bytes(dir.trim_ascii()));
        dir.is_absolute().then(|| dir.join("postconf"))
    });
    let program = from_main_cf.unwrap_or_else(|| PathBuf::from(POSTCONF_FALLBACK));
    std::fs::metadata(&program)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .then_some(program)
}

/// Why `program` must not be run as `postconf`, if so: as root, it (or a directory on
/// its path) can be changed by someone other than root; not as root, by someone other
/// than root or us. A program anyone can replace would run with our privileges and
/// choose the realm.
pub fn trusted_program(program: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let t = crate::storage::persist::Target::entry(program, true)
        .map_err(|e| format!("cannot look at {}: {e}", program.display()))?;
    if let Some(u) = &t.unsafe_dir {
        return Err(format!("{u}"));
    }
    let m = t
        .existing
        .ok_or_else(|| format!("{} does not exist", program.display()))?;
    let euid = nix::unistd::geteuid().as_raw();
    if m.uid() != 0 && m.uid() != euid {
        return Err(format!(
            "{} is owned by {}",
            t.path.display(),
            crate::storage::persist::user_name(m.uid())
        ));
    }
    if m.mode() & 0o002 != 0 || (m.mode() & 0o020 != 0 && m.gid() != 0) {
        return Err(format!("{} can be written by others", t.path.display()));
    }
    Ok(())
}

/// How long `postconf` may take before it is killed and main.cf is parsed instead.
pub const POSTCONF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The most `postconf` may print on stdout (two parameter values).
const POSTCONF_MAX_STDOUT: usize = 64 << 10;
/// The most of its stderr kept (warnings become notes), in bytes, lines, and bytes
/// per line.
const POSTCONF_MAX_STDERR: usize = 16 << 10;
const POSTCONF_MAX_NOTES: usize = 20;
const NOTE_MAX_CHARS: usize = 300;

/// The two values `postconf -c DIR -xh smtpd_sasl_local_domain myhostname` printed,
/// plus its stderr lines.
struct PostconfAnswer {
    local_domain: Vec<u8>,
    myhostname: Vec<u8>,
    stderr: Vec<String>,
}

/// Reads a pipe to its end, keeping at most `max` bytes; returns them and the total.
fn read_bounded(mut r: impl io::Read, max: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (kept, total)
}

/// Shortens a line for a note.
fn clip(line: &str) -> String {
    match line.char_indices().nth(NOTE_MAX_CHARS) {
        Some((i, _)) => format!("{}... ({} bytes)", &line[..i], line.len()),
        None => line.to_owned(),
    }
}

/// Runs the real postconf; on failure returns a one-line reason.
///
/// It runs with an empty environment (only a fixed `PATH`: nothing of ours, such as
/// `PGPASSWORD`, reaches it), stdin from /dev/null, in a process group of its own,
/// for at most [`POSTCONF_TIMEOUT`] (then the group is killed); at most 64 KiB of its
/// output and 16 KiB of its warnings are read into memory.
fn run_postconf(program: &Path, config_dir: &Path) -> Result<PostconfAnswer, String> {
    use std::os::unix::process::CommandExt;
    use std::time::Instant;
    let mut child = Command::new(program)
        .arg("-c")
        .arg(config_dir)
        .arg("-xh")
        .arg(LOCAL_DOMAIN_PARAM)
        .arg("myhostname")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let out = child
        .stdout
        .take()
        .map(|o| std::thread::spawn(move || read_bounded(o, POSTCONF_MAX_STDOUT)));
    let err = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || read_bounded(e, POSTCONF_MAX_STDERR)));
    let deadline = Instant::now() + POSTCONF_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    if status.is_none() {
        // The whole group: postconf and anything it started.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.kill();
        let _ = child.wait();
    }
    let join = |h: Option<std::thread::JoinHandle<(Vec<u8>, u64)>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (stdout, stdout_len) = join(out);
    let (stderr_bytes, stderr_len) = join(err);
    let Some(status) = status else {
        return Err(format!(
            "{} did not answer within {} s (killed)",
            program.display(),
            POSTCONF_TIMEOUT.as_secs()
        ));
    };
    let text = lossy(&stderr_bytes);
    let all = text.lines().filter(|l| !l.trim().is_empty());
    let mut stderr: Vec<String> = all.clone().take(POSTCONF_MAX_NOTES).map(clip).collect();
    if stderr_len > stderr_bytes.len() as u64 || all.count() > POSTCONF_MAX_NOTES {
        stderr.push(format!(
            "({} printed {stderr_len} bytes of warnings; the rest is not shown)",
            program.display()
        ));
    }
    if !status.success() {
        let why = stderr.first().map(|l| format!(": {l}")).unwrap_or_default();
        return Err(format!("{} failed ({status}){why}", program.display()));
    }
    if stdout_len > POSTCONF_MAX_STDOUT as u64 {
        return Err(format!(
            "{} printed {stdout_len} bytes, more than the {POSTCONF_MAX_STDOUT} two \
             parameter values may take",
            program.display()
        ));
    }
    let lines: Vec<&[u8]> = match stdout.strip_suffix(b"\n") {
        Some(body) => body.split(|&b| b == b'\n').collect(),
        None => Vec::new(),
    };
    match lines.as_slice() {
        [local_domain, myhostname] => Ok(PostconfAnswer {
            local_domain: local_domain.to_vec(),
            myhostname: myhostname.to_vec(),
            stderr,
        }),
        _ => Err(format!(
            "{} printed {} lines where 2 were expected: \"{}\"",
            program.display(),
            lines.len(),
            head(&stdout, 200).escape_debug()
        )),
    }
}

/// Works out the realm Postfix's `smtpd` uses for a login without `@`.
///
/// 1. If `<config_dir>/main.cf` does not exist there is no Postfix: the realm is the
///    lowercased hostname, as Cyrus's `saslpasswd2` computes it.
/// 2. Otherwise, unless [`UsePostconf::Never`], the real `postconf -c DIR -xh
///    smtpd_sasl_local_domain myhostname` is asked. Its warnings become notes; if it
///    fails, a note says so and step 3 runs instead.
/// 3. Otherwise main.cf is parsed and expanded by [`MainCf`] and [`Params`].
///
/// The realm is `smtpd_sasl_local_domain` when non-empty (verbatim), else
/// `myhostname` lowercased (ASCII), exactly as libsasl receives them.
///
/// Latency: `postconf` sleeps 1 s before exiting on a fatal error, and re-reads a
/// main.cf modified within the last second (pausing 300 ms per round, about 2 s in
/// all).
///
/// Limits: `postconf` prints values with runs of whitespace collapsed to one space
/// (the parser keeps them exactly; a note flags a realm with whitespace in it), and
/// per-service overrides in master.cf (`-o smtpd_sasl_local_domain=...`) are not
/// considered.
pub fn default_realm(query: &RealmQuery) -> Result<DefaultRealm, PostfixError> {
    let main_cf = query.config_dir.join("main.cf");
    match std::fs::metadata(&main_cf) {
        // Neither postconf nor our parser gets a file that large.
        Ok(m) if m.len() > MAX_CONFIG_FILE => {
            return Err(PostfixError::Io {
                path: main_cf,
                source: io::Error::other(format!(
                    "larger than {} MiB; not read",
                    MAX_CONFIG_FILE >> 20
                )),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(DefaultRealm {
                realm: query.hostname.to_ascii_lowercase(),
                source: RealmSource::Hostname,
                method: Method::NoPostfix,
                config_dir: query.config_dir.clone(),
                myhostname: None,
                local_domain: None,
                notes: vec![format!(
                    "{} does not exist, so Postfix is not consulted; saslpasswd2 uses the \
                     lowercased hostname in the same way",
                    main_cf.display()
                )],
            });
        }
        Err(source) => {
            return Err(PostfixError::Io {
                path: main_cf,
                source,
            });
        }
    }

    let mut notes = Vec::new();
    let program = match &query.postconf {
        UsePostconf::Auto => {
            find_postconf(&query.config_dir, &query.hostname).filter(|p| match trusted_program(p) {
                Ok(()) => true,
                Err(why) => {
                    notes.push(format!(
                        "not running {}: {why}; parsed main.cf without postconf instead",
                        p.display()
                    ));
                    false
                }
            })
        }
        UsePostconf::Never => None,
        UsePostconf::Program(p) if !p.is_absolute() => {
            notes.push(format!(
                "not running {}: postconf is only run by an absolute path; parsed main.cf \
                 without postconf instead",
                p.display()
            ));
            None
        }
        UsePostconf::Program(p) => Some(p.clone()),
    };

    let mut answer = None;
    if let Some(program) = program {
        match run_postconf(&program, &query.config_dir) {
            Ok(a) => answer = Some((program, a)),
            Err(why) => notes.push(format!("{why}; parsed main.cf without postconf instead")),
        }
    }

    let (method, local_domain, myhostname) = match answer {
        Some((program, a)) => {
            notes.extend(a.stderr);
            (Method::Postconf(program), a.local_domain, a.myhostname)
        }
        None => {
            let cf = MainCf::load(&query.config_dir)?;
            notes.extend(cf.warnings().iter().cloned());
            let params = cf.params(&query.hostname);
            // postconf computes the mydomain default eagerly (and fails on errors in
            // it) even when nothing refers to it.
            let mut undefined = Vec::new();
            if cf.get("mydomain").is_none()
                && let Some((_, u)) = params.builtin("mydomain", 0, &new_budget())?
            {
                undefined.extend(u);
            }
            let mut value = |name: &str| -> Result<Vec<u8>, PostfixError> {
                let x = params.eval(name)?.unwrap_or_default();
                undefined.extend(x.undefined);
                Ok(x.value)
            };
            let local_domain = value(LOCAL_DOMAIN_PARAM)?;
            let myhostname = value("myhostname")?;
            let mut seen = Vec::new();
            for name in undefined {
                if !seen.contains(&name) {
                    notes.push(format!(
                        "{}: `${name}` is not set in main.cf (and is not a built-in default \
                         known to this parser); it expands to an empty string",
                        cf.path().display()
                    ));
                    seen.push(name);
                }
            }
            (Method::Parser, local_domain, myhostname)
        }
    };

    let (source, realm_bytes) = if local_domain.is_empty() {
        (RealmSource::Myhostname, myhostname.to_ascii_lowercase())
    } else {
        (RealmSource::SmtpdSaslLocalDomain, local_domain.clone())
    };
    let realm = String::from_utf8(realm_bytes).map_err(|e| PostfixError::NotUtf8 {
        from: source,
        lossy: lossy(e.as_bytes()).into_owned(),
    })?;
    if realm.bytes().any(is_space) {
        notes.push(format!(
            "the realm `{realm}` contains whitespace; no login can be expected to match it"
        ));
    }
    let myhostname = lossy(&myhostname).into_owned();
    if let Err(why) = valid_hostname(&myhostname) {
        notes.push(format!(
            "myhostname `{}` is not a valid hostname for Postfix ({why}); \
             Postfix daemons refuse to start with it",
            clip(&myhostname)
        ));
    }
    Ok(DefaultRealm {
        realm,
        source,
        method,
        config_dir: query.config_dir.clone(),
        myhostname: Some(myhostname),
        local_domain: Some(lossy(&local_domain).into_owned()),
        notes,
    })
}

/// Convenience: [`default_realm`] for this machine ([`RealmQuery::from_environment`]).
pub fn default_realm_here() -> Result<DefaultRealm, PostfixError> {
    default_realm(&RealmQuery::from_environment()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(text: &str) -> MainCf {
        MainCf::parse(Path::new("/cfg"), text.as_bytes()).unwrap()
    }

    fn eval(text: &str, host: &str, name: &str) -> String {
        let cf = cf(text);
        let x = cf.params(host).eval(name).unwrap().unwrap();
        String::from_utf8(x.value).unwrap()
    }

    fn expand(text: &str, value: &str) -> Result<String, PostfixError> {
        let cf = cf(text);
        let x = cf.params("vm").expand(value.as_bytes())?;
        Ok(String::from_utf8(x.value).unwrap())
    }

    fn expand_err(text: &str, value: &str) -> String {
        match expand(text, value) {
            Ok(v) => panic!("{value:?} expanded to {v:?}, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn continuation_comments_and_blank_lines() {
        let c = cf("a = 1\n# comment between\n\n  2\n\t3\nb=x\n   # indented comment\nc = y\n");
        assert_eq!(c.get("a"), Some(&b"1  2\t3"[..]));
        assert_eq!(c.get("b"), Some(&b"x"[..]));
        assert_eq!(c.get("c"), Some(&b"y"[..]));
        assert_eq!(c.line("a"), Some(1));
        assert_eq!(c.line("b"), Some(6));
        assert_eq!(c.line("c"), Some(8));
    }

    #[test]
    fn no_trailing_comments_and_trimming() {
        let c = cf("  \nname\t=\t value # not a comment \r\nempty =\n");
        assert_eq!(c.get("name"), Some(&b"value # not a comment"[..]));
        assert_eq!(c.get("empty"), Some(&b""[..]));
        assert_eq!(c.line("name"), Some(2));
    }

    #[test]
    fn leading_whitespace_line_is_skipped_with_warning() {
        let c = cf("  orphan = 1\n  more\nreal = 2\n");
        assert_eq!(c.get("orphan"), None);
        assert_eq!(c.get("real"), Some(&b"2"[..]));
        assert_eq!(c.warnings().len(), 1);
        assert!(
            c.warnings()[0]
                .contains("logical line must not start with whitespace: \"  orphan = 1  more\""),
            "{:?}",
            c.warnings()
        );
    }

    #[test]
    fn later_definition_overrides_with_warning_only_when_different() {
        let c = cf("d = a\nd = b\nd = b\n");
        assert_eq!(c.get("d"), Some(&b"b"[..]));
        assert_eq!(c.line("d"), Some(3));
        assert_eq!(
            c.warnings(),
            ["/cfg/main.cf, line 2: overriding earlier entry: d=a"]
        );
    }

    #[test]
    fn no_final_newline_and_line_numbers() {
        let c = cf("\n\na = 1\n  cont\nb = 2");
        assert_eq!(c.get("b"), Some(&b"2"[..]));
        assert_eq!(c.line("a"), Some(3));
        assert_eq!(c.line("b"), Some(5));
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        for (text, line, what) in [
            ("a = 1\nbogus line\n", 2, "missing '=' after attribute name"),
            ("a = 1\n\n= value\n", 3, "missing attribute name"),
            ("a = 1\n\0b = 2\n", 2, "missing attribute name"),
        ] {
            let e = MainCf::parse(Path::new("/cfg"), text.as_bytes()).unwrap_err();
            match &e {
                PostfixError::Syntax {
                    line: l, what: w, ..
                } => {
                    assert_eq!((*l, *w), (line, what), "{text:?}")
                }
                other => panic!("{other:?}"),
            }
            assert!(
                e.to_string()
                    .starts_with(&format!("/cfg/main.cf, line {line}: ")),
                "{e}"
            );
        }
        // "x\n  = y" is one logical line "x  = y": valid.
        assert_eq!(cf("x\n  = y\n").get("x"), Some(&b"y"[..]));
    }

    #[test]
    fn nul_truncates_the_logical_line() {
        assert_eq!(cf("a = 1\0junk\n").get("a"), Some(&b"1"[..]));
    }

    #[test]
    fn simple_forms() {
        let t = "a = A\ne =\nr = $a$a\n";
        assert_eq!(expand(t, "$a ${a} $(a) x$a.y").unwrap(), "A A A xA.y");
        assert_eq!(expand(t, "$$a $$$a $$").unwrap(), "$a $A $");
        assert_eq!(expand(t, "[$e][$r]").unwrap(), "[][AA]");
        assert_eq!(expand(t, "${ a }").unwrap(), "A");
        // $(...) balances parentheses only; ${...} braces only.
        assert_eq!(expand(t, "$(a)b)").unwrap(), "Ab)");
    }

    #[test]
    fn conditionals() {
        let t = "a = A\ne =\n";
        assert_eq!(expand(t, "${a?yes}|${e?yes}|${u?yes}").unwrap(), "yes||");
        assert_eq!(expand(t, "${a:no}|${e:no}|${u:no}").unwrap(), "|no|no");
        assert_eq!(
            expand(t, "${a?{ t }}x|${a? t}|${ a ? b }").unwrap(),
            " t x| t| b "
        );
        assert_eq!(
            expand(t, "${e?{t}:{f}}|${a?{t}:f g}|${a?{t} : {f}}").unwrap(),
            "f|t|t"
        );
        assert_eq!(
            expand(t, "${a?$a$a}|${e:$a}|${a?{${e:n}}}").unwrap(),
            "AA|A|n"
        );
        // Without {}, ? text runs to the end, ':' included.
        assert_eq!(expand(t, "${a?x:y}").unwrap(), "x:y");
        // Only the branch taken is parsed.
        assert_eq!(expand(t, "${e?$(b}").unwrap(), "");
    }

    #[test]
    fn relational_expressions() {
        let t = "a = A\n";
        assert_eq!(
            expand(
                t,
                "[${{10} < {9}}][${{b} > {a}}][${{ 010 } == {10}}][${{010} == {10}}]"
            )
            .unwrap(),
            "[][true][][true]"
        );
        assert_eq!(expand(t, "${{$a} == {A}?eq:ne}").unwrap(), "eq:ne");
        assert_eq!(expand(t, "${{$a} != {A}?{eq}:{ne}}").unwrap(), "ne");
        assert_eq!(expand(t, "${{1}<={1}}${{2}>={3}}").unwrap(), "true");
        assert!(expand_err(t, "${{1}<{99999999999999999999}}").contains("bad conversion"));
        assert!(expand_err(t, "${{a} = {b}}").contains("expected at"));
        assert!(expand_err(t, "${{a}==}").contains("\"{expression}\" expected"));
        assert!(expand_err(t, "${{a}=={b}x}").contains("\"?\" or \":\" expected"));
    }

    #[test]
    fn syntax_errors_in_expansion() {
        let t = "a = 1\n";
        for (value, what) in [
            ("${a", "truncated macro reference"),
            ("$", "empty macro name"),
            ("x$", "empty macro name"),
            ("a$-b", "empty macro name"),
            ("${}", "empty macro name"),
            ("$()", "empty macro name"),
            ("${a-b}", "attribute name syntax error at: \"...a>>>-b\""),
            ("${a b}", "attribute name syntax error"),
            ("${a{b}}", "attribute name syntax error"),
            ("${a?{t}junk}", "\":\" expected at: \"...t}>>>junk\""),
            ("${a?{x}:{y}z}", "unexpected input at: \"...y}>>>z\""),
            ("${a:{x}", "truncated macro reference"),
            ("${a?{x}", "truncated macro reference"),
            ("${a?{{x}}", "truncated macro reference"),
            ("$(a?{x)", "unbalanced {} in attribute expression"),
        ] {
            let e = expand_err(t, value);
            assert!(e.contains(what), "{value:?}: {e}");
        }
    }

    #[test]
    fn empty_names_are_undefined() {
        let cf = cf("");
        let x = cf.params("vm").expand(b"[${ }][${?x}][${ :x}]").unwrap();
        assert_eq!(x.value, b"[][][x]");
        assert_eq!(x.undefined, [""]);
    }

    #[test]
    fn undefined_names_expand_empty_and_are_reported_once() {
        let cf = cf("a = $nope.$nope.$b\nb = ${also_nope}\n");
        let x = cf.params("vm").eval("a").unwrap().unwrap();
        assert_eq!(x.value, b"..");
        assert_eq!(x.undefined, ["nope", "also_nope"]);
    }

    #[test]
    fn loops_are_errors_naming_the_parameter() {
        for (text, name) in [
            ("a = $b\nb = $a\n", "a"),
            ("myhostname = $myhostname\n", "myhostname"),
            ("a = x${b}\nb = ${c?{$a}}\nc = 1\n", "a"),
            // Postfix itself crashes on this one (fresh contexts for operands).
            ("a = ${{$a} == {x}}\n", "a"),
            ("a = ${{x} == {$b}}\nb = ${{$a} == {y}?{1}:{2}}\n", "a"),
        ] {
            let c = cf(text);
            let e = c.params("vm").eval(name).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("unreasonable macro call nesting"),
                "{text:?}: {msg}"
            );
            assert!(msg.starts_with("/cfg/main.cf, line "), "{msg}");
        }
    }

    #[test]
    fn exponential_expansion_is_an_error_not_a_hang() {
        // a0 = $a1$a1, a1 = $a2$a2, ...: 2^40 leaves (found by fuzzing: it hung).
        let chain = |leaf: &str| {
            let mut text: String = (0..40)
                .map(|i| format!("a{i} = $a{n}$a{n}\n", n = i + 1))
                .collect();
            text.push_str(&format!("a40 = {leaf}\n"));
            text
        };
        let c = cf(&chain(""));
        let msg = c.params("vm").eval("a0").unwrap_err().to_string();
        assert!(msg.contains("too many steps"), "{msg}");
        assert!(!msg.contains('\n'));
        let c = cf(&chain(&"x".repeat(200)));
        let msg = c.params("vm").eval("a0").unwrap_err().to_string();
        assert!(msg.contains("longer than 1 MiB"), "{msg}");
        // Through a built-in default: $mydomain evaluates main.cf's myhostname anew
        // each time; the budget is shared, so this ends too.
        let mut text = chain("");
        text.push_str("myhostname = $a0\nb0 = $mydomain$mydomain\n");
        let c = cf(&text);
        assert!(c.params("vm").eval("b0").is_err());
        // Ordinary values stay far below the limits.
        assert_eq!(eval("a = $b$b\nb = $c$c\nc = x\n", "vm", "a"), "xxxx");
    }

    #[test]
    fn long_chains_within_postfix_limit_work() {
        // 100 links: a0 -> a1 -> ... -> a99 -> "end", within Postfix's nesting limit.
        let mut text = String::new();
        for i in 0..99 {
            text.push_str(&format!("a{i} = $a{}\n", i + 1));
        }
        text.push_str("a99 = end\n");
        assert_eq!(eval(&text, "vm", "a0"), "end");
        // Postfix gives up a little deeper.
        let mut text = String::new();
        for i in 0..150 {
            text.push_str(&format!("a{i} = $a{}\n", i + 1));
        }
        text.push_str("a150 = end\n");
        assert!(cf(&text).params("vm").eval("a0").is_err());
    }

    #[test]
    fn error_points_at_the_parameter_with_bad_syntax() {
        let c = cf("x = 1\nmyhostname = mail.$bad\nbad = ${oops\n");
        let e = c.params("vm").eval("myhostname").unwrap_err().to_string();
        assert!(
            e.starts_with("/cfg/main.cf, line 3: bad: truncated macro reference"),
            "{e}"
        );
    }

    #[test]
    fn myhostname_and_mydomain_defaults() {
        // No settings: hostname + .localdomain.
        assert_eq!(eval("", "vm", "myhostname"), "vm.localdomain");
        assert_eq!(eval("", "vm", "mydomain"), "localdomain");
        assert_eq!(eval("", "vm", "myorigin"), "vm.localdomain");
        assert_eq!(
            eval("", "host.example.org", "myhostname"),
            "host.example.org"
        );
        assert_eq!(eval("", "host.example.org", "mydomain"), "example.org");
        // mydomain from main.cf, expanded against main.cf only.
        assert_eq!(
            eval("mydomain = example.com\n", "vm", "myhostname"),
            "vm.example.com"
        );
        assert_eq!(eval("mydomain = $foo\n", "vm", "myhostname"), "vm.");
        assert_eq!(eval("mydomain = $myorigin\n", "vm", "myhostname"), "vm.");
        assert_eq!(eval("mydomain = $myorigin\n", "vm", "mydomain"), "vm.");
        // A hostname with a dot ignores mydomain.
        assert_eq!(eval("mydomain = example.com\n", "h.x", "myhostname"), "h.x");
        // myhostname referring to an unset mydomain: mydomain's default sees "mail.".
        assert_eq!(
            eval("myhostname = mail.$mydomain\n", "vm", "myhostname"),
            "mail."
        );
        assert_eq!(eval("myhostname = mail.$mydomain\n", "vm", "mydomain"), "");
        assert_eq!(
            eval(
                "mydomain = example.com\nmyhostname = mail.$mydomain\n",
                "vm",
                "myhostname"
            ),
            "mail.example.com"
        );
        assert_eq!(
            eval("myhostname = Mail.Example.COM\n", "vm", "mydomain"),
            "Example.COM"
        );
        assert_eq!(eval("myhostname =\n", "vm", "mydomain"), "localdomain");
        // The computed default is expanded once more, as postconf does.
        assert_eq!(eval("mydomain = ex$$ample\n", "vm", "myhostname"), "vm.ex");
        assert_eq!(eval("mydomain = ex$$ample\n", "vm", "mydomain"), "ex$ample");
        assert_eq!(eval("myhostname = h.ex$$ample\n", "vm", "mydomain"), "ex");
    }

    #[test]
    fn other_builtins() {
        assert_eq!(eval("", "vm", "smtpd_sasl_local_domain"), "");
        assert_eq!(eval("", "vm", "mail_name"), "Postfix");
        assert_eq!(eval("", "vm", "config_directory"), "/cfg");
        assert_eq!(
            eval("", "vm", "mydestination"),
            "vm.localdomain, localhost.localdomain, localhost"
        );
        assert!(
            cf("")
                .params("vm")
                .eval("no_such_parameter")
                .unwrap()
                .is_none()
        );
        assert_eq!(eval("mine = 1\n", "vm", "mine"), "1");
    }

    #[test]
    fn valid_hostname_rules() {
        for ok in ["vm", "a.b", "a-b.c_d", "1a", "x.123"] {
            assert_eq!(valid_hostname(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty hostname"),
            ("a..b", "misplaced delimiter"),
            (".a", "misplaced delimiter"),
            ("a.", "misplaced delimiter"),
            ("-a", "misplaced hyphen"),
            ("a-", "misplaced hyphen"),
            ("a-.b", "misplaced hyphen"),
            ("a b", "invalid character"),
            ("123", "numeric hostname"),
            ("1.2.3.4", "numeric hostname"),
        ] {
            assert_eq!(valid_hostname(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            valid_hostname(&"a".repeat(64)),
            Err("hostname label too long")
        );
        let long = vec!["abc"; 65].join(".");
        assert_eq!(valid_hostname(&vec!["abc"; 64].join(".")), Ok(()));
        assert_eq!(valid_hostname(&long), Err("bad length"));
    }

    fn query(dir: &Path, host: &str) -> RealmQuery {
        RealmQuery {
            config_dir: dir.to_path_buf(),
            hostname: host.to_owned(),
            postconf: UsePostconf::Never,
        }
    }

    #[test]
    fn realm_without_postfix_is_the_lowercased_hostname() {
        let dir = tempfile::tempdir().unwrap();
        let r = default_realm(&query(dir.path(), "Vm.Example")).unwrap();
        assert_eq!(r.realm, "vm.example");
        assert_eq!(r.source, RealmSource::Hostname);
        assert_eq!(r.method, Method::NoPostfix);
        assert_eq!(r.myhostname, None);
    }

    #[test]
    fn realm_from_parser() {
        let dir = tempfile::tempdir().unwrap();
        let write = |t: &str| std::fs::write(dir.path().join("main.cf"), t).unwrap();

        write("myhostname = Mail.Example.COM\n");
        let r = default_realm(&query(dir.path(), "vm")).unwrap();
        assert_eq!(
            (r.realm.as_str(), r.source),
            ("mail.example.com", RealmSource::Myhostname)
        );
        assert_eq!(r.method, Method::Parser);
        assert_eq!(r.myhostname.as_deref(), Some("Mail.Example.COM"));
        assert!(r.explain().contains("lowercased"), "{}", r.explain());

        write("mydomain = example.com\nsmtpd_sasl_local_domain = EXAMPLE.$mydomain\n");
        let r = default_realm(&query(dir.path(), "vm")).unwrap();
        assert_eq!(r.realm, "EXAMPLE.example.com");
        assert_eq!(r.source, RealmSource::SmtpdSaslLocalDomain);
        assert_eq!(r.myhostname.as_deref(), Some("vm.example.com"));

        write("myhostname = mail.$mydomain\n");
        let r = default_realm(&query(dir.path(), "vm")).unwrap();
        assert_eq!(r.realm, "mail.");
        assert!(
            r.notes.iter().any(|n| n.contains("refuse")),
            "{:?}",
            r.notes
        );

        write("myhostname = $foo.example\n");
        let r = default_realm(&query(dir.path(), "vm")).unwrap();
        assert_eq!(r.realm, ".example");
        assert!(
            r.notes.iter().any(|n| n.contains("`$foo`")),
            "{:?}",
            r.notes
        );

        write("myhostname = a\nmyhostname = b\n");
        let r = default_realm(&query(dir.path(), "vm")).unwrap();
        assert_eq!(r.realm, "b");
        assert!(
            r.notes.iter().any(|n| n.contains("overriding")),
            "{:?}",
            r.notes
        );

        write("a = $b\nb = $a\nmyhostname = $a\n");
        let e = default_realm(&query(dir.path(), "vm")).unwrap_err();
        assert!(
            e.to_string().contains("unreasonable macro call nesting"),
            "{e}"
        );

        write("bogus\n");
        let e = default_realm(&query(dir.path(), "vm")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("main.cf, line 1: missing '=' after attribute name: \"bogus\""),
            "{e}"
        );
    }

    #[test]
    fn eager_mydomain_default_errors_like_postconf() {
        // postconf computes mydomain's default from main.cf's myhostname even when
        // nothing asks for it; a bad myhostname is fatal either way.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.cf"), "myhostname = ${x\n").unwrap();
        assert!(default_realm(&query(dir.path(), "vm")).is_err());
    }

    #[test]
    fn failing_postconf_falls_back_to_the_parser_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.cf"), "myhostname = x.example\n").unwrap();
        let mut q = query(dir.path(), "vm");
        q.postconf = UsePostconf::Program(PathBuf::from("/bin/false"));
        let r = default_realm(&q).unwrap();
        assert_eq!(r.realm, "x.example");
        assert_eq!(r.method, Method::Parser);
        assert!(r.notes[0].contains("/bin/false failed"), "{:?}", r.notes);
        q.postconf = UsePostconf::Program(dir.path().join("no-such-postconf"));
        let r = default_realm(&q).unwrap();
        assert_eq!(r.method, Method::Parser);
        assert!(r.notes[0].contains("cannot run"), "{:?}", r.notes);
        // A program that prints the wrong number of lines is not trusted either.
        q.postconf = UsePostconf::Program(PathBuf::from("/bin/true"));
        let r = default_realm(&q).unwrap();
        assert_eq!(r.method, Method::Parser);
        assert!(r.notes[0].contains("printed 0 lines"), "{:?}", r.notes);
    }

    #[test]
    fn config_dir_selection() {
        assert_eq!(config_dir_from(None), Path::new("/etc/postfix"));
        assert_eq!(
            config_dir_from(Some(OsStr::new(""))),
            Path::new("/etc/postfix")
        );
        assert_eq!(config_dir_from(Some(OsStr::new("/x"))), Path::new("/x"));
    }

    #[test]
    fn find_postconf_takes_command_directory_never_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let fake = bin.join("postconf");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o644)).unwrap();
        let fallback = Path::new(POSTCONF_FALLBACK);
        let expect = fallback.exists().then(|| fallback.to_path_buf());
        // No main.cf: the fallback (PATH is never searched).
        assert_eq!(find_postconf(dir.path(), "h"), expect);
        std::fs::write(
            dir.path().join("main.cf"),
            format!(
                "base = {}\ncommand_directory = $base/bin\n",
                dir.path().display()
            ),
        )
        .unwrap();
        // Not executable: none.
        assert_eq!(find_postconf(dir.path(), "h"), None);
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_postconf(dir.path(), "h").as_deref(),
            Some(fake.as_path())
        );
        assert_eq!(trusted_program(&fake), Ok(()));
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o757)).unwrap();
        assert!(
            trusted_program(&fake)
                .unwrap_err()
                .contains("written by others")
        );
        // A relative command_directory is not taken.
        std::fs::write(dir.path().join("main.cf"), "command_directory = bin\n").unwrap();
        assert_eq!(find_postconf(dir.path(), "h"), expect);
    }

    #[test]
    fn postconf_runs_bounded_in_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.cf"), "myhostname = x.example\n").unwrap();
        let prog = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        // The environment it sees: nothing but PATH.
        let env = prog(
            "env",
            "test \"$(env | grep -v '^PATH=' | grep -v '^PWD=' | grep -v '^SHLVL=' | grep -v '^_=')\" = '' && printf 'a\\nb\\n'",
        );
        let a = run_postconf(&env, dir.path()).unwrap();
        assert_eq!(
            (a.local_domain, a.myhostname),
            (b"a".to_vec(), b"b".to_vec())
        );
        // Endless output: bounded, then refused.
        let yes = prog("yes", "exec yes");
        let t = std::time::Instant::now();
        let e = run_postconf(&yes, dir.path()).err().unwrap();
        assert!(
            e.contains("more than") || e.contains("did not answer"),
            "{e}"
        );
        assert!(t.elapsed() < POSTCONF_TIMEOUT + std::time::Duration::from_secs(3));
        // A hang: killed after the timeout.
        let hang = prog("hang", "sleep 600");
        let t = std::time::Instant::now();
        let e = run_postconf(&hang, dir.path()).err().unwrap();
        assert!(e.contains("did not answer within 5 s"), "{e}");
        assert!(t.elapsed() < POSTCONF_TIMEOUT + std::time::Duration::from_secs(3));
        // Endless warnings: a few lines kept.
        let noisy = prog(
            "noisy",
            "yes warning | head -c 10000000 >&2; printf 'a\\nb\\n'",
        );
        let a = run_postconf(&noisy, dir.path()).unwrap();
        assert!(
            a.stderr.len() <= POSTCONF_MAX_NOTES + 1,
            "{}",
            a.stderr.len()
        );
        assert!(
            a.stderr
                .last()
                .unwrap()
                .contains("10000000 bytes of warnings"),
            "{:?}",
            a.stderr.last()
        );
    }
}
