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
