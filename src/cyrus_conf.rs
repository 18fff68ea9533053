//! Cyrus SASL application configuration files (`<appname>.conf`).
//!
//! `sasl_server_init(..., appname)` reads options such as `sasldb_path`,
//! `mech_list` and `scram_secret_generate` from `<appname>.conf`, found along a
//! colon-separated search path. This module owns finding that file and reading it
//! with Cyrus's exact rules (`lib/server.c` `load_config()`, `lib/config.c`), plus
//! typed accessors for the options our tools act on. It does no sasldb I/O.
//!
//! Search path ([`conf_search_path`]):
//! - `SASL_CONF_PATH`, honoured only when the real and effective user and group ids
//!   are equal (so never in a set-id program). Set but empty counts: it is one empty
//!   directory, which names `/<appname>.conf`;
//! - else Debian's compiled-in path, `/etc/sasl2:/etc/sasl:/usr/lib/<multiarch>/sasl2:
//!   /usr/lib/sasl2` ([`default_conf_path`]).
//!
//! For each directory in order, `<dir>/<appname>.conf` is opened; the first file that
//! opens is used and the search stops, whatever it contains. A file that exists but
//! cannot be opened (no permission, dangling symlink) is skipped like a missing one.
//! A *directory* named `<appname>.conf` opens, reads as empty and wins.
//!
//! File syntax ([`SaslConf::parse`]): lines are read as by `fgets` with a 4096-byte
//! buffer (a longer line is cut into several); leading whitespace is skipped; blank
//! lines and lines starting with `#` are ignored; otherwise a line is a key of
//! `[A-Za-z0-9_-]*` (lowercased, possibly empty), `:`, and a value with surrounding
//! whitespace removed, which must not be empty. Any other line makes Cyrus fail with
//! "error when parsing configuration file" (`saslpasswd2` exits 100). When a key
//! appears twice the first occurrence wins.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The environment variable that overrides the search path.
pub const CONF_PATH_ENV: &str = "SASL_CONF_PATH";

/// Cyrus's line buffer: `fgets(buf, 4096, ...)` returns at most this many bytes.
const LINE_CHUNK: usize = 4095;

/// Cyrus refuses a candidate file name of `PATH_MAX` bytes or more (with its NUL).
const PATH_MAX: usize = 4096;

/// Cyrus's default SCRAM iteration count (`DEFAULT_ITERATION_COUNTER`).
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;

/// Everything that can go wrong with a Cyrus SASL configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// A line is not `key: value`. Cyrus refuses the whole file (`SASL_CONFIGERR`).
    #[error("{}, line {line}: {reason} (Cyrus SASL rejects the file: \"error when parsing configuration file\")", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The physical line (1-based).
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// An option has a value Cyrus cannot use.
    #[error("{}, line {line}: {key}: {reason}: `{value}`", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The line of the (first, effective) occurrence.
        line: usize,
        /// The option.
        key: &'static str,
        /// Its value, lossily decoded.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A candidate file name is too long; Cyrus gives up the search with
    /// `SASL_FAIL` ("generic failure").
    #[error("{}/{appname}.conf: file name too long (Cyrus SASL fails with \"generic failure\")", dir.display())]
    PathTooLong {
        /// The directory from the search path.
        dir: PathBuf,
        /// The application name.
        appname: String,
    },

    /// The application name contains `/`.
    #[error("appname must not contain /: `{0}`")]
    BadAppname(String),
}

/// C `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Checks an application name the way `saslpasswd2 -a` does: it must not contain
/// `/`. (Cyrus accepts the empty name, which reads `<dir>/.conf`.)
///
/// ```
/// use sasldb::cyrus_conf::validate_appname;
/// assert!(validate_appname("smtpd").is_ok());
/// assert!(validate_appname("../etc/x").is_err());
/// ```
pub fn validate_appname(appname: &str) -> Result<(), ConfError> {
    if appname.contains('/') {
        Err(ConfError::BadAppname(appname.to_owned()))
    } else {
        Ok(())
    }
}

/// Debian's multiarch triplet for the target this crate is built for, or `None` on
/// targets without one.
pub const fn debian_multiarch() -> Option<&'static str> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    if cfg!(target_arch = "x86_64") {
        if cfg!(target_pointer_width = "32") {
            Some("x86_64-linux-gnux32")
        } else {
            Some("x86_64-linux-gnu")
        }
    } else if cfg!(target_arch = "x86") {
        Some("i386-linux-gnu")
    } else if cfg!(target_arch = "aarch64") {
        Some("aarch64-linux-gnu")
    } else if cfg!(target_arch = "arm") {
        if cfg!(target_abi = "eabihf") {
            Some("arm-linux-gnueabihf")
        } else {
            Some("arm-linux-gnueabi")
        }
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        Some("powerpc64le-linux-gnu")
    } else if cfg!(target_arch = "powerpc64") {
        Some("powerpc64-linux-gnu")
    } else if cfg!(target_arch = "powerpc") {
        Some("powerpc-linux-gnu")
    } else if cfg!(target_arch = "s390x") {
        Some("s390x-linux-gnu")
    } else if cfg!(target_arch = "riscv64") {
        Some("riscv64-linux-gnu")
    } else if cfg!(target_arch = "loongarch64") {
        Some("loongarch64-linux-gnu")
    } else if cfg!(all(target_arch = "mips64", target_endian = "little")) {
        Some("mips64el-linux-gnuabi64")
    } else if cfg!(all(target_arch = "mips", target_endian = "little")) {
        Some("mipsel-linux-gnu")
    } else if cfg!(target_arch = "sparc64") {
        Some("sparc64-linux-gnu")
    } else {
        None
    }
}

/// Debian's compiled-in configuration search path:
/// `/etc/sasl2:/etc/sasl:/usr/lib/<multiarch>/sasl2:/usr/lib/sasl2` (without the
/// multiarch entry on targets that have no triplet).
pub fn default_conf_path() -> String {
    match debian_multiarch() {
        Some(triplet) => format!("/etc/sasl2:/etc/sasl:/usr/lib/{triplet}/sasl2:/usr/lib/sasl2"),
        None => "/etc/sasl2:/etc/sasl:/usr/lib/sasl2".to_owned(),
    }
}

/// The search path for this process: `SASL_CONF_PATH` when set and the process is
/// not running with different real and effective ids, else [`default_conf_path`].
pub fn conf_search_path() -> OsString {
    let ids_match = nix::unistd::getuid() == nix::unistd::geteuid()
        && nix::unistd::getgid() == nix::unistd::getegid();
    conf_search_path_from(std::env::var_os(CONF_PATH_ENV).as_deref(), ids_match)
}

/// [`conf_search_path`] with the environment value and the id check passed in.
///
/// ```
/// use std::ffi::OsStr;
/// use sasldb::cyrus_conf::{conf_search_path_from, default_conf_path};
/// assert_eq!(conf_search_path_from(Some(OsStr::new("/a:/b")), true), "/a:/b");
/// assert_eq!(conf_search_path_from(Some(OsStr::new("/a:/b")), false), default_conf_path().as_str());
/// assert_eq!(conf_search_path_from(Some(OsStr::new("")), true), "");
/// ```
pub fn conf_search_path_from(env: Option<&OsStr>, ids_match: bool) -> OsString {
    match env {
        Some(v) if ids_match => v.to_os_string(),
        _ => OsString::from(default_conf_path()),
    }
}

/// The candidate files for `appname` along `search_path`, in search order: each
/// directory (split at `:`; an empty element is the empty string) followed by
/// `/<appname>.conf`, as Cyrus builds them with `"%s/%s.conf"`.
///
/// ```
/// use std::ffi::OsStr;
/// use sasldb::cyrus_conf::candidates;
/// let c = candidates(OsStr::new("/etc/sasl2::rel"), "smtpd");
/// assert_eq!(c, ["/etc/sasl2/smtpd.conf", "/smtpd.conf", "rel/smtpd.conf"].map(std::path::PathBuf::from));
/// ```
pub fn candidates(search_path: &OsStr, appname: &str) -> Vec<PathBuf> {
    search_path
        .as_bytes()
        .split(|&b| b == b':')
        .map(|dir| candidate(dir, appname))
        .collect()
}

fn candidate(dir: &[u8], appname: &str) -> PathBuf {
    let mut name = dir.to_vec();
    name.push(b'/');
    name.extend_from_slice(appname.as_bytes());
    name.extend_from_slice(b".conf");
    PathBuf::from(OsString::from_vec(name))
}

/// Finds and reads `<appname>.conf` for this process ([`conf_search_path`]).
/// `Ok(None)` when no directory has one: every option then has its default.
pub fn load(appname: &str) -> Result<Option<SaslConf>, ConfError> {
    find(&conf_search_path(), appname)
}

/// Finds and reads `<appname>.conf` along `search_path`, with Cyrus's rules: the
/// first candidate that can be opened is parsed and ends the search; candidates that
/// cannot be opened, for whatever reason, are skipped.
pub fn find(search_path: &OsStr, appname: &str) -> Result<Option<SaslConf>, ConfError> {
    for dir in search_path.as_bytes().split(|&b| b == b':') {
        // load_config(): path_len + '/' + appname + ".conf" + NUL, plus one.
        if dir.len() + 2 + appname.len() + 5 + 1 > PATH_MAX {
            return Err(ConfError::PathTooLong {
                dir: PathBuf::from(OsStr::from_bytes(dir)),
                appname: appname.to_owned(),
            });
        }
        let path = candidate(dir, appname);
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        let mut text = Vec::new();
        let read_error = file.read_to_end(&mut text).err();
        let mut conf = SaslConf::parse(&path, &text)?;
        if let Some(e) = read_error {
            conf.warnings.push(format!(
                "{}: read error ({e}); Cyrus SASL ignores the rest of the file",
                path.display()
            ));
        }
        return Ok(Some(conf));
    }
    Ok(None)
}

/// One `key: value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    value: OsString,
    line: usize,
}

/// A parsed `<appname>.conf`: an ordered option map where the first occurrence of a
/// key wins, as in Cyrus.
///
/// `SaslConf::default()` is the "no file" configuration: every option at its default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaslConf {
    path: Option<PathBuf>,
    entries: Vec<Entry>,
    warnings: Vec<String>,
}

/// The OTP message digest (`otp_mda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtpMda {
    /// MD4.
    Md4,
    /// MD5, Cyrus's default.
    #[default]
    Md5,
    /// SHA-1.
    Sha1,
}

impl OtpMda {
    /// The name Cyrus writes into `cmusaslsecretOTP` (`md4`, `md5`, `sha1`).
    pub fn name(self) -> &'static str {
        match self {
            OtpMda::Md4 => "md4",
            OtpMda::Md5 => "md5",
            OtpMda::Sha1 => "sha1",
        }
    }
}

impl fmt::Display for OtpMda {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl SaslConf {
    /// Parses the contents of a configuration file (`path` is for messages).
    ///
    /// ```
    /// use sasldb::cyrus_conf::SaslConf;
    /// let c = SaslConf::parse("app.conf".as_ref(),
    ///     b"# comment\n  SASLDB_Path:  /var/lib/sasldb2 \nsasldb_path: /ignored\n").unwrap();
    /// assert_eq!(c.get("sasldb_path"), Some("/var/lib/sasldb2"));
    /// assert!(SaslConf::parse("app.conf".as_ref(), b"key value\n").is_err());
    /// ```
    pub fn parse(path: &Path, text: &[u8]) -> Result<SaslConf, ConfError> {
        let mut conf = SaslConf {
            path: Some(path.to_path_buf()),
            entries: Vec::new(),
            warnings: Vec::new(),
        };
        let mut line = 0usize;
        let mut pos = 0usize;
        // Whether the previous fgets() chunk ended without a newline (a long line).
        let mut continued = false;
        while pos < text.len() {
            // fgets(): up to and including '\n', at most 4095 bytes.
            let rest = &text[pos..text.len().min(pos + LINE_CHUNK)];
            let chunk = match memchr::memchr(b'\n', rest) {
                Some(i) => &rest[..=i],
                None => rest,
            };
            pos += chunk.len();
            let is_continuation = continued;
            continued = chunk.last() != Some(&b'\n') && pos < text.len();
            if !is_continuation {
                line += 1;
            }
            // C string semantics: the line ends at the first NUL.
            let mut s = match chunk.iter().position(|&b| b == 0) {
                Some(nul) => &chunk[..nul],
                None => chunk,
            };
            if let Some(stripped) = s.strip_suffix(b"\n") {
                s = stripped;
            }
            let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
            let s = &s[start..];
            if s.is_empty() || s[0] == b'#' {
                continue;
            }
            let key_len = s
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
                .unwrap_or(s.len());
            let syntax = |reason: String| {
                let reason = if is_continuation {
                    format!(
                        "{reason} (the line is longer than {LINE_CHUNK} bytes, and Cyrus reads \
                         the excess as a line of its own)"
                    )
                } else {
                    reason
                };
                ConfError::Syntax {
                    path: path.to_path_buf(),
                    line,
                    reason,
                }
            };
            if s.get(key_len) != Some(&b':') {
                return Err(syntax(format!(
                    "expected `key: value` (a key of letters, digits, `-` and `_`, then `:`), \
                     found \"{}\"",
                    String::from_utf8_lossy(&s[..s.len().min(60)]).escape_debug()
                )));
            }
            let key = String::from_utf8_lossy(&s[..key_len]).to_ascii_lowercase();
            let mut value = &s[key_len + 1..];
            while let [first, rest @ ..] = value
                && is_space(*first)
            {
                value = rest;
            }
            if value.is_empty() {
                return Err(syntax(format!("option `{key}` has an empty value")));
            }
            while let [rest @ .., last] = value
                && is_space(*last)
            {
                value = rest;
            }
            conf.entries.push(Entry {
                key,
                value: OsString::from_vec(value.to_vec()),
                line,
            });
        }
        Ok(conf)
    }

    /// The file this configuration was read from; `None` for the default
    /// configuration.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Remarks about the file (read errors), one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The value of `key` (a lowercase option name), from its first occurrence.
    /// `None` when unset, and also when the value is not UTF-8 (see
    /// [`SaslConf::get_os`]).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_os(key).and_then(OsStr::to_str)
    }

    /// The exact bytes of `key`'s value, from its first occurrence.
    pub fn get_os(&self, key: &str) -> Option<&OsStr> {
        self.entry(key).map(|e| e.value.as_os_str())
    }

    /// The line where `key`'s effective (first) occurrence is.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.entry(key).map(|e| e.line)
    }

    /// The effective options in file order: the first occurrence of each key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OsStr)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, e)| !self.entries[..*i].iter().any(|p| p.key == e.key))
            .map(|(_, e)| (e.key.as_str(), e.value.as_os_str()))
    }

    /// Later occurrences of keys that were already set, which Cyrus ignores:
    /// `(key, line)` in file order.
    pub fn ignored_duplicates(&self) -> impl Iterator<Item = (&str, usize)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, e)| self.entries[..*i].iter().any(|p| p.key == e.key))
            .map(|(_, e)| (e.key.as_str(), e.line))
    }

    fn bad_value(&self, key: &'static str, reason: &'static str) -> ConfError {
        let (value, line) = match self.entry(key) {
            Some(e) => (e.value.to_string_lossy().into_owned(), e.line),
            None => (String::new(), 0),
        };
        ConfError::BadValue {
            path: self.path.clone().unwrap_or_default(),
            line,
            key,
            value,
            reason,
        }
    }

    /// `sasldb_path`: where the sasldb plugins open the database, when set.
    /// (Without it Cyrus uses its compiled default, `/etc/sasldb2` on Debian.)
    pub fn sasldb_path(&self) -> Option<PathBuf> {
        self.get_os("sasldb_path").map(PathBuf::from)
    }

    /// `scram_secret_generate`: whether password changes also write the SCRAM
    /// `authPassword`. True when the value starts with `1`, `y`, `t` or `on`
    /// (case-sensitive, as in Cyrus's SCRAM plugin): `yes`, `true`, `on` and `1` are
    /// true; `Yes`, `off`, `0` and `no` are false. Default false.
    pub fn scram_secret_generate(&self) -> bool {
        self.get_os("scram_secret_generate")
            .is_some_and(|v| is_switch_on(v.as_bytes()))
    }

    /// `scram_iteration_counter`: the SCRAM PBKDF2 iteration count, default 4096.
    ///
    /// Parsed like Cyrus (`strtoul`, base 10, whole value): a value that is not a
    /// number, has trailing text or overflows 64 bits falls back to 4096; a leading
    /// `-` wraps as in C; the result is truncated to 32 bits (Cyrus stores it in an
    /// `unsigned int`).
    pub fn scram_iteration_counter(&self) -> u32 {
        self.get_os("scram_iteration_counter")
            .and_then(|v| c_strtoul(v.as_bytes()))
            .map_or(DEFAULT_SCRAM_ITERATIONS, |n| n as u32)
    }

    /// `otp_mda`: the OTP digest, `md4`, `md5` or `sha1` in any case; default md5.
    /// Any other value makes Cyrus's OTP password change fail ("unknown OTP
    /// algorithm"; Debian 12's `saslpasswd2` even aborts with a double free). Note
    /// that Debian 12's `saslpasswd2` also crashes (SIGSEGV) with `md4`, which its
    /// OpenSSL 3 does not provide by default.
    pub fn otp_mda(&self) -> Result<OtpMda, ConfError> {
        let Some(v) = self.get_os("otp_mda") else {
            return Ok(OtpMda::Md5);
        };
        let v = v.as_bytes();
        if v.eq_ignore_ascii_case(b"md4") {
            Ok(OtpMda::Md4)
        } else if v.eq_ignore_ascii_case(b"md5") {
            Ok(OtpMda::Md5)
        } else if v.eq_ignore_ascii_case(b"sha1") {
            Ok(OtpMda::Sha1)
        } else {
            Err(self.bad_value("otp_mda", "unknown OTP algorithm (use md4, md5 or sha1)"))
        }
    }

    /// `mech_list`: the mechanisms to load, in order (whitespace-separated), when set.
    pub fn mech_list(&self) -> Option<Vec<&str>> {
        self.get("mech_list").map(split_c_space)
    }

    /// `auxprop_plugin`: the auxprop plugins to use, in order (whitespace-separated),
    /// when set.
    pub fn auxprop_plugin(&self) -> Option<Vec<&str>> {
        self.get("auxprop_plugin").map(split_c_space)
    }

    /// `sasldb_mapsize`, converted to **bytes**: Cyrus's LMDB backend reads the value
    /// in KiB (`atoi(value) * 1024`; the documentation's "bytes" is wrong). `None`
    /// when unset or 0 (LMDB's default map size applies). Parsed like `atoi`: leading
    /// digits count, trailing text is ignored (`2048k` is 2048). A negative value is
    /// an error (Cyrus would ask LMDB for an absurd size).
    pub fn sasldb_mapsize(&self) -> Result<Option<u64>, ConfError> {
        match self.get_os("sasldb_mapsize").map(|v| c_atoi(v.as_bytes())) {
            None | Some(0) => Ok(None),
            Some(n) if n < 0 => Err(self.bad_value("sasldb_mapsize", "negative map size")),
            Some(n) => Ok(Some(n as u64 * 1024)),
        }
    }

    /// `sasldb_maxreaders`: LMDB's reader slot count. `None` when unset or 0 (LMDB's
    /// default, 126). Parsed like `atoi`; a negative value is an error.
    pub fn sasldb_maxreaders(&self) -> Result<Option<u32>, ConfError> {
        match self
            .get_os("sasldb_maxreaders")
            .map(|v| c_atoi(v.as_bytes()))
        {
            None | Some(0) => Ok(None),
            Some(n) if n < 0 => Err(self.bad_value("sasldb_maxreaders", "negative reader count")),
            Some(n) => Ok(Some(n as u32)),
        }
    }
}

/// Cyrus's switch test for `scram_secret_generate` (and `auto_transition`).
fn is_switch_on(v: &[u8]) -> bool {
    matches!(v.first(), Some(b'1' | b'y' | b't')) || v.starts_with(b"on")
}

/// Splits at C `isspace`, as Cyrus does for `mech_list` and `auxprop_plugin`.
fn split_c_space(v: &str) -> Vec<&str> {
    v.split(|c: char| c.is_ascii() && is_space(c as u8))
        .filter(|s| !s.is_empty())
        .collect()
}

/// C `strtoul(s, &end, 10)` that must consume the whole string; `None` for no
/// digits, trailing text or overflow (`ERANGE`).
fn c_strtoul(s: &[u8]) -> Option<u64> {
    let mut i = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = &s[i..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { n.wrapping_neg() } else { n })
}

/// glibc `atoi`: `(int) strtol(s, NULL, 10)`, which clamps to the `long` range and
/// then truncates to `int`.
fn c_atoi(s: &[u8]) -> i32 {
    let mut i = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut n: i64 = 0;
    let mut overflow = false;
    for &d in s[i..].iter().take_while(|b| b.is_ascii_digit()) {
        let digit = i64::from(d - b'0');
        match n.checked_mul(10).and_then(|n| {
            if negative {
                n.checked_sub(digit)
            } else {
                n.checked_add(digit)
            }
        }) {
            Some(v) => n = v,
            None => {
                overflow = true;
                break;
            }
        }
    }
    if overflow {
        n = if negative { i64::MIN } else { i64::MAX };
    }
    n as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<SaslConf, ConfError> {
        SaslConf::parse(Path::new("/c/app.conf"), text)
    }

    fn conf(text: &str) -> SaslConf {
        parse(text.as_bytes()).unwrap()
    }

    fn syntax_line(text: &[u8]) -> usize {
        match parse(text) {
            Err(ConfError::Syntax { line, .. }) => line,
            other => panic!(
                "{:?}: expected a syntax error, got {other:?}",
                String::from_utf8_lossy(text)
            ),
        }
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let c =
            conf("# comment\n\n   \t\n  # indented comment\n\t key_1:\tvalue with  spaces \t\n");
        assert_eq!(c.get("key_1"), Some("value with  spaces"));
        assert_eq!(c.line("key_1"), Some(5));
        assert_eq!(c.iter().count(), 1);
    }

    #[test]
    fn keys_are_lowercased_and_first_occurrence_wins() {
        let c = conf(
            "SASLDB_Path: /first\nsasldb_path: /second\nmech_list: plain\nsasldb_path: /third\n",
        );
        assert_eq!(c.get("sasldb_path"), Some("/first"));
        assert_eq!(
            c.get("SASLDB_Path"),
            None,
            "lookups are exact, keys are stored lowercase"
        );
        assert_eq!(c.sasldb_path(), Some(PathBuf::from("/first")));
        let effective: Vec<_> = c.iter().map(|(k, v)| (k, v.to_str().unwrap())).collect();
        assert_eq!(
            effective,
            [("sasldb_path", "/first"), ("mech_list", "plain")]
        );
        let ignored: Vec<_> = c.ignored_duplicates().collect();
        assert_eq!(ignored, [("sasldb_path", 2), ("sasldb_path", 4)]);
    }

    #[test]
    fn odd_but_valid_lines() {
        // Cyrus accepts an empty key, no space after the colon, colons in the value,
        // CRLF endings and a vertical tab as whitespace.
        let c = conf(": empty key\nk:v:w\r\n\r\n\x0bvt-key: x\x0c\n");
        assert_eq!(c.get(""), Some("empty key"));
        assert_eq!(c.get("k"), Some("v:w"));
        assert_eq!(c.get("vt-key"), Some("x"));
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(syntax_line(b"a: 1\nkey value\n"), 2);
        assert_eq!(syntax_line(b"key : value\n"), 1);
        assert_eq!(syntax_line(b"key:\n"), 1);
        assert_eq!(syntax_line(b"key:   \t\r\n"), 1);
        assert_eq!(syntax_line(b"\n\nk.e: v\n"), 3);
        assert_eq!(syntax_line("cl\u{e9}: v\n".as_bytes()), 1);
        assert_eq!(syntax_line(b"key = value\n"), 1);
        let e = parse(b"key\n").unwrap_err().to_string();
        assert!(
            e.starts_with("/c/app.conf, line 1: expected `key: value`"),
            "{e}"
        );
        assert!(e.contains("error when parsing configuration file"), "{e}");
        let e = parse(b"key:\n").unwrap_err().to_string();
        assert!(e.contains("option `key` has an empty value"), "{e}");
    }

    #[test]
    fn nul_ends_the_line() {
        let c = conf("a: x\0y\n\0garbage without colon\n");
        assert_eq!(c.get("a"), Some("x"));
        assert!(parse(b"a\0: x\n").is_err());
    }

    #[test]
    fn long_lines_are_cut_like_fgets() {
        // 4094 bytes + newline: one fgets() chunk.
        let line = |len: usize| format!("k: {}\n", "v".repeat(len - 3));
        let c = conf(&line(4094));
        assert_eq!(c.get("k").map(str::len), Some(4091));
        // 4095 bytes: the newline comes as an empty second chunk; still fine.
        let c = conf(&format!("{}next: 1\n", line(4095)));
        assert_eq!(c.get("k").map(str::len), Some(4092));
        assert_eq!(c.line("next"), Some(2));
        // 4096 bytes: the last byte is a line of its own, which is not `key: value`.
        let e = parse(line(4096).as_bytes()).unwrap_err();
        match &e {
            ConfError::Syntax {
                line: 1, reason, ..
            } => {
                assert!(reason.contains("longer than 4095 bytes"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // A long comment line is no exception: its tail is not a comment.
        assert!(parse(format!("#{}\n", "c".repeat(5000)).as_bytes()).is_err());
        // A long line without a final newline at the end of the file.
        assert!(parse(format!("k: {}", "v".repeat(5000)).as_bytes()).is_err());
        assert!(parse(format!("k: {}", "v".repeat(4092)).as_bytes()).is_ok());
    }

    #[test]
    fn non_utf8_values_are_kept_exactly() {
        let c = parse(b"sasldb_path: /var/lib/\xff\xfe\n").unwrap();
        assert_eq!(c.get("sasldb_path"), None);
        assert_eq!(
            c.get_os("sasldb_path").unwrap().as_bytes(),
            b"/var/lib/\xff\xfe"
        );
        assert_eq!(
            c.sasldb_path().unwrap().as_os_str().as_bytes(),
            b"/var/lib/\xff\xfe"
        );
    }

    #[test]
    fn switch_values() {
        for (value, on) in [
            ("1", true),
            ("10", true),
            ("y", true),
            ("yes", true),
            ("t", true),
            ("true", true),
            ("on", true),
            ("only", true),
            ("Yes", false),
            ("TRUE", false),
            ("ON", false),
            ("o", false),
            ("off", false),
            ("0", false),
            ("no", false),
            ("false", false),
            ("enable", false),
        ] {
            let c = conf(&format!("scram_secret_generate: {value}\n"));
            assert_eq!(c.scram_secret_generate(), on, "{value:?}");
        }
        assert!(!SaslConf::default().scram_secret_generate());
    }

    #[test]
    fn iteration_counter() {
        for (value, n) in [
            ("10000", 10000),
            ("+77", 77),
            ("0", 0),
            ("4096x", 4096),
            ("abc", 4096),
            ("0x10", 4096),
            ("99999999999999999999", 4096),
            ("4294967297", 1),
            ("-1", u32::MAX),
        ] {
            let c = conf(&format!("scram_iteration_counter: {value}\n"));
            assert_eq!(c.scram_iteration_counter(), n, "{value:?}");
        }
        assert_eq!(SaslConf::default().scram_iteration_counter(), 4096);
    }

    #[test]
    fn otp_mda_values() {
        assert_eq!(SaslConf::default().otp_mda().unwrap(), OtpMda::Md5);
        assert_eq!(conf("otp_mda: MD4\n").otp_mda().unwrap(), OtpMda::Md4);
        assert_eq!(conf("otp_mda: sha1\n").otp_mda().unwrap(), OtpMda::Sha1);
        assert_eq!(conf("otp_mda: Sha1\n").otp_mda().unwrap().name(), "sha1");
        let e = conf("x: 1\notp_mda: sha256\n")
            .otp_mda()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/c/app.conf, line 2: otp_mda: unknown OTP algorithm (use md4, md5 or sha1): `sha256`"
        );
    }

    #[test]
    fn lists() {
        let c = conf("mech_list:  PLAIN\tlogin  scram-sha-256 \nauxprop_plugin: sasldb sql\n");
        assert_eq!(c.mech_list().unwrap(), ["PLAIN", "login", "scram-sha-256"]);
        assert_eq!(c.auxprop_plugin().unwrap(), ["sasldb", "sql"]);
        assert_eq!(SaslConf::default().mech_list(), None);
    }

    #[test]
    fn lmdb_sizes() {
        let c = conf("sasldb_mapsize: 2048\nsasldb_maxreaders: 200\n");
        assert_eq!(c.sasldb_mapsize().unwrap(), Some(2048 * 1024));
        assert_eq!(c.sasldb_maxreaders().unwrap(), Some(200));
        let c = conf("sasldb_mapsize: 2048k\nsasldb_maxreaders: junk\n");
        assert_eq!(c.sasldb_mapsize().unwrap(), Some(2048 * 1024));
        assert_eq!(c.sasldb_maxreaders().unwrap(), None);
        let c = conf("sasldb_mapsize: 0\n");
        assert_eq!(c.sasldb_mapsize().unwrap(), None);
        assert!(conf("sasldb_mapsize: -5\n").sasldb_mapsize().is_err());
        assert!(conf("sasldb_maxreaders: -5\n").sasldb_maxreaders().is_err());
        // atoi() of a value beyond `long` clamps, then truncates to int: -1.
        assert!(
            conf("sasldb_mapsize: 99999999999999999999\n")
                .sasldb_mapsize()
                .is_err()
        );
        assert_eq!(SaslConf::default().sasldb_mapsize().unwrap(), None);
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(c_atoi(b"  42abc"), 42);
        assert_eq!(c_atoi(b"-7"), -7);
        assert_eq!(c_atoi(b""), 0);
        assert_eq!(c_atoi(b"x1"), 0);
        assert_eq!(c_atoi(b"4294967296"), 0);
        assert_eq!(c_atoi(b"99999999999999999999"), -1);
        assert_eq!(c_atoi(b"-99999999999999999999"), 0);
        assert_eq!(c_strtoul(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(c_strtoul(b"18446744073709551616"), None);
        assert_eq!(c_strtoul(b"-"), None);
    }

    #[test]
    fn search_path_and_candidates() {
        assert_eq!(
            conf_search_path_from(None, true),
            OsString::from(default_conf_path())
        );
        assert_eq!(conf_search_path_from(Some(OsStr::new("/x")), true), "/x");
        assert_eq!(
            conf_search_path_from(Some(OsStr::new("/x")), false),
            OsString::from(default_conf_path())
        );
        assert_eq!(
            candidates(OsStr::new(""), "app"),
            [PathBuf::from("/app.conf")]
        );
        assert_eq!(
            candidates(OsStr::new("/a:/b/"), "app"),
            [PathBuf::from("/a/app.conf"), PathBuf::from("/b//app.conf")]
        );
    }

    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    #[test]
    fn debian_default_path() {
        assert_eq!(
            default_conf_path(),
            "/etc/sasl2:/etc/sasl:/usr/lib/x86_64-linux-gnu/sasl2:/usr/lib/sasl2"
        );
    }

    fn search(dirs: &[&Path]) -> OsString {
        std::env::join_paths(dirs).unwrap()
    }

    #[test]
    fn first_directory_with_a_file_wins() {
        let t = tempfile::tempdir().unwrap();
        let (d1, d2, d3) = (
            t.path().join("d1"),
            t.path().join("d2"),
            t.path().join("d3"),
        );
        for d in [&d1, &d2, &d3] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(d2.join("app.conf"), "sasldb_path: /from/d2\n").unwrap();
        std::fs::write(
            d3.join("app.conf"),
            "sasldb_path: /from/d3\nmech_list: plain\n",
        )
        .unwrap();
        let found = find(&search(&[&d1, &d2, &d3]), "app").unwrap().unwrap();
        assert_eq!(found.path(), Some(d2.join("app.conf").as_path()));
        assert_eq!(found.get("sasldb_path"), Some("/from/d2"));
        assert_eq!(found.get("mech_list"), None, "files are not merged");
        // Other application names are separate files.
        assert!(find(&search(&[&d1, &d2, &d3]), "other").unwrap().is_none());
        // A syntax error in the first file is final, even if a later file is fine.
        std::fs::write(d1.join("app.conf"), "oops\n").unwrap();
        assert!(matches!(
            find(&search(&[&d1, &d2, &d3]), "app"),
            Err(ConfError::Syntax { .. })
        ));
    }

    #[test]
    fn unopenable_files_are_skipped_and_directories_win() {
        let t = tempfile::tempdir().unwrap();
        let (d1, d2) = (t.path().join("d1"), t.path().join("d2"));
        std::fs::create_dir(&d1).unwrap();
        std::fs::create_dir(&d2).unwrap();
        std::fs::write(d2.join("app.conf"), "sasldb_path: /from/d2\n").unwrap();
        // A dangling symlink cannot be opened: skipped.
        std::os::unix::fs::symlink(t.path().join("nowhere"), d1.join("app.conf")).unwrap();
        let found = find(&search(&[&d1, &d2]), "app").unwrap().unwrap();
        assert_eq!(found.get("sasldb_path"), Some("/from/d2"));
        // A directory opens, reads as empty, and ends the search.
        std::fs::remove_file(d1.join("app.conf")).unwrap();
        std::fs::create_dir(d1.join("app.conf")).unwrap();
        let found = find(&search(&[&d1, &d2]), "app").unwrap().unwrap();
        assert_eq!(found.path(), Some(d1.join("app.conf").as_path()));
        assert_eq!(found.iter().count(), 0);
        assert_eq!(found.warnings().len(), 1, "{:?}", found.warnings());
    }

    #[test]
    fn overlong_file_names_stop_the_search() {
        let long = format!("/{}", "d".repeat(4090));
        let e = find(OsStr::new(&format!("/nonexistent:{long}:/etc")), "app").unwrap_err();
        assert!(matches!(e, ConfError::PathTooLong { .. }), "{e:?}");
        // Cyrus allows dir + 2 + appname + 5 + 1 <= 4096: 4085 is searched (and not found).
        assert!(
            find(OsStr::new(&"x".repeat(4085)), "app")
                .unwrap()
                .is_none()
        );
        assert!(find(OsStr::new(&"x".repeat(4086)), "app").is_err());
    }

    #[test]
    fn appname_validation() {
        assert!(validate_appname("saslpasswd").is_ok());
        assert!(validate_appname("").is_ok());
        assert_eq!(
            validate_appname("a/b").unwrap_err().to_string(),
            "appname must not contain /: `a/b`"
        );
    }
}
