//! Command-line front ends shared by the binaries (which only call `main` here).
//!
//! Owns: argument parsing ([`getopt`] for the Cyrus-compatible tools), the exit-code
//! table ([`exit`]), password input ([`password`]), each tool's logic, and the man
//! pages and shell completions ([`completions`]), which are generated from the same
//! option tables that drive parsing.
//! Not part of the stable library API.

pub mod alloc;
pub mod completions;
pub mod exit;
pub mod getopt;
pub mod listusers;
pub mod man;
pub mod password;
pub mod sasldb;
pub mod saslpasswd2;

use std::ffi::OsString;
use std::io::Write;

pub use exit::Exit;

/// Default database path of Debian's Cyrus build.
pub const DEFAULT_SASLDB_PATH: &str = "/etc/sasldb2";

/// A database named on the command line: `PATH`, `FORMAT:PATH` or a `postgresql://`
/// URL. A path that is not UTF-8 is taken as it is (it can carry no prefix).
pub fn parse_location(raw: &std::ffi::OsStr) -> crate::Result<crate::Location> {
    use std::os::unix::ffi::OsStrExt;
    match std::str::from_utf8(raw.as_bytes()) {
        Ok(s) => s.parse(),
        Err(_) => Ok(crate::Location::path_only(std::path::PathBuf::from(raw))),
    }
}

/// Environment variable naming the group a database gets as root (`--group` wins).
pub const GROUP_ENV: &str = "SASLDB_GROUP";
/// Environment variable with the writer lock timeout, in seconds.
pub const LOCK_TIMEOUT_ENV: &str = "SASLDB_LOCK_TIMEOUT";
/// Environment variable that lets root write a database whose path goes through a
/// directory someone else can write (`1`).
pub const ALLOW_UNSAFE_DIR_ENV: &str = "SASLDB_ALLOW_UNSAFE_DIR";

/// Whether `SASLDB_ALLOW_UNSAFE_DIR` is `1` (or `yes`, `true`).
pub fn allow_unsafe_dir() -> bool {
    std::env::var(ALLOW_UNSAFE_DIR_ENV)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "yes" | "true"))
}

/// The group the tools give a database as root: `flag` (`--group`), else
/// `SASLDB_GROUP` when set and non-empty, else `postfix`.
pub fn policy_group(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var(GROUP_ENV).ok().filter(|g| !g.is_empty()))
        .unwrap_or_else(|| crate::storage::options::POSTFIX_GROUP.to_owned())
}

/// How long a writer waits for another: `SASLDB_LOCK_TIMEOUT` seconds, else 30.
pub fn lock_timeout() -> std::time::Duration {
    std::env::var(LOCK_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(crate::storage::DEFAULT_LOCK_TIMEOUT)
}

/// The ownership policy of the tools: as root, `root:<group>` mode 0640 with the group
/// of [`policy_group`] (a group that does not exist is an error when writing);
/// otherwise the existing ownership is kept (and the tools warn that it was not
/// enforced).
pub fn ownership_policy(group_flag: Option<&str>) -> crate::OwnershipPolicy {
    crate::OwnershipPolicy::RootGroup(policy_group(group_flag))
}

/// The write options every tool starts from: [`ownership_policy`], [`lock_timeout`]
/// and [`allow_unsafe_dir`].
pub fn write_options(group_flag: Option<&str>) -> crate::WriteOptions {
    crate::WriteOptions {
        ownership: ownership_policy(group_flag),
        lock_timeout: lock_timeout(),
        allow_unsafe_dir: allow_unsafe_dir(),
        ..crate::WriteOptions::default()
    }
}

/// One option of a drop-in tool: the single source for parsing, `--help` and the
/// man page.
#[derive(Debug, Clone, Copy)]
pub struct OptDoc {
    /// Short name, if any.
    pub short: Option<char>,
    /// Long name (our extensions), if any.
    pub long: Option<&'static str>,
    /// Name of the argument, if the option takes one.
    pub value: Option<&'static str>,
    /// What the argument is, for shell completion (`FilePath` for a database; ignored
    /// without an argument).
    pub hint: clap::ValueHint,
    /// One-line help.
    pub help: &'static str,
}

impl OptDoc {
    /// The getopt option string for short options (`"f:u:"`...).
    pub fn optstring(opts: &[OptDoc]) -> String {
        let mut s = String::new();
        for o in opts {
            if let Some(c) = o.short {
                s.push(c);
                if o.value.is_some() {
                    s.push(':');
                }
            }
        }
        s
    }

    /// The long options for [`getopt::Getopt`].
    pub fn longs(opts: &[OptDoc]) -> Vec<getopt::LongOpt> {
        opts.iter()
            .filter_map(|o| {
                o.long.map(|name| getopt::LongOpt {
                    name,
                    has_arg: o.value.is_some(),
                })
            })
            .collect()
    }

    /// A clap argument describing this option (for help text, man pages and shell
    /// completions).
    pub fn to_arg(&self) -> clap::Arg {
        let id = self
            .long
            .map(str::to_owned)
            .unwrap_or_else(|| self.short.unwrap_or('?').to_string());
        let mut a = clap::Arg::new(id).help(self.help);
        if let Some(c) = self.short {
            a = a.short(c);
        }
        if let Some(l) = self.long {
            a = a.long(l);
        }
        match self.value {
            Some(v) => a.value_name(v).num_args(1).value_hint(self.hint),
            None => a.action(clap::ArgAction::SetTrue),
        }
    }
}

/// The program name Cyrus prints: the basename of `argv[0]`, or a fallback.
pub fn progname(args: &[OsString], fallback: &str) -> String {
    args.first()
        .map(|a| {
            let s = a.to_string_lossy();
            s.rsplit('/').next().unwrap_or(&s).to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}

/// `argv[0]` as given (glibc's getopt messages use it unmodified).
pub fn argv0(args: &[OsString], fallback: &str) -> String {
    args.first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.to_owned())
}

/// Writes one line to stderr, ignoring failures (there is nowhere else to report).
pub fn eprint_line(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(line.as_bytes());
    let _ = e.write_all(b"\n");
}

/// Whether an I/O error chain is a broken pipe (a reader such as `head` went away),
/// which is not worth reporting.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}
