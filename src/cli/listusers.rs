//! `sasldblistusers2`: list every `user@realm: property` of a sasldb, like Cyrus's
//! tool of the same name.
//!
//! Same arguments (`[-v] [[-f] sasldb]`, a lone non-option argument is the path, `-f`
//! may repeat and the last wins), same output lines in the same order for one and the
//! same file (for Berkeley DB, libdb's cursor order), values never shown. Like Cyrus's
//! `sasl_server_init(..., "sasldblistusers")`, it reads `sasldblistusers.conf` (and
//! ignores its `sasldb_path`: the path given or /etc/sasldb2 wins): one that cannot be
//! parsed stops it with `Couldn't initialize server API`, exit 1. Deliberate
//! differences: that message carries the file and line; a database that cannot be read
//! exits 1 (Cyrus printed `listusers failed` and exited 0); a malformed key is reported
//! on stderr and skipped (Cyrus looped forever on it); `-f` accepts `FORMAT:PATH`; the
//! usage text omits CMU's attribution notice.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use clap::ValueHint;

use super::getopt::{Event, Getopt, error_message};
use super::{DEFAULT_SASLDB_PATH, Exit, OptDoc, argv0, eprint_line, is_broken_pipe, progname};
use crate::cyrus_conf;
use crate::database::Database;
use crate::error::Error;
use crate::location::Location;
use crate::record::KeyRef;

/// The options, in Cyrus's order.
pub const OPTIONS: &[OptDoc] = &[
    OptDoc {
        short: Some('v'),
        long: None,
        value: None,
        hint: ValueHint::Unknown,
        help: "Print the version and exit",
    },
    OptDoc {
        short: Some('f'),
        long: None,
        value: Some("sasldb"),
        hint: ValueHint::FilePath,
        help: "Use the given file as sasldb (FORMAT:PATH forces a format: bdb, lmdb, gdbm, \
               sqlite; a postgresql://USER@HOST/DB URL names a PostgreSQL database)",
    },
    OptDoc {
        short: Some('h'),
        long: None,
        value: None,
        hint: ValueHint::Unknown,
        help: "Print the usage text and exit with status 1",
    },
];

/// The clap description of the tool (for the man page).
pub fn command() -> clap::Command {
    let mut cmd = clap::Command::new("sasldblistusers2")
        .about("List the users and properties stored in a Cyrus SASL sasldb")
        .long_about(
            "Lists every property stored in a Cyrus SASL password database, one \
             `user@realm: property` line each, in storage order. Secrets are never shown. \
             A drop-in replacement for Cyrus SASL's sasldblistusers2 that reads Berkeley DB \
             hash (without libdb), LMDB, GDBM and SQLite databases.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_flag(true)
        .disable_version_flag(true);
    for o in OPTIONS {
        cmd = cmd.arg(o.to_arg());
    }
    cmd.arg(
        clap::Arg::new("sasldb_path")
            .value_name("sasldb")
            .value_hint(ValueHint::FilePath)
            .help(
                "The database to list (default /etc/sasldb2). A single argument that does not \
         start with `-` is taken as the path.",
            ),
    )
}

fn usage(prog: &str, bad_option: bool) -> ExitCode {
    let mut text = format!(
        "\n{prog}: usage: {prog} [-v] [[-f] sasldb]\n\t-f sasldb\tuse given file as sasldb\n\
         \t-v\tprint version numbers and exit\n"
    );
    if bad_option {
        text.push_str("Unrecognized command line option\n");
    }
    let _ = io::stderr().write_all(text.as_bytes());
    Exit::Failure.into()
}

/// The application name Cyrus's lister initialises libsasl with: its config file is
/// `sasldblistusers.conf`.
pub const APPNAME: &str = "sasldblistusers";

/// Prints the version line (`-v`).
pub fn version_banner(prog: &str) -> String {
    format!(
        "\n{prog} (sasldb {}), compatible with Cyrus SASL 2.1.28\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Runs the tool with `args` (`argv[0]` included).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let prog = progname(&args, "sasldblistusers2");
    let a0 = argv0(&args, "sasldblistusers2");
    let rest: Vec<OsString> = args.iter().skip(1).cloned().collect();
    let mut path = OsString::from(DEFAULT_SASLDB_PATH);
    if rest.len() == 1 && rest[0].as_bytes().first() != Some(&b'-') {
        path = rest[0].clone();
    } else {
        let optstring = OptDoc::optstring(OPTIONS) + "?";
        let mut g = Getopt::new(rest, &optstring, &[]);
        let (mut bad, mut show_usage) = (false, false);
        for ev in g.by_ref() {
            if let Some(msg) = error_message(&a0, &ev) {
                eprint_line(&msg);
            }
            match ev {
                Event::Short('f', Some(p)) => path = p,
                Event::Short('h', _) => {
                    bad = false;
                    show_usage = true;
                }
                Event::Short('v', _) => {
                    let _ = io::stderr().write_all(version_banner(&prog).as_bytes());
                    return Exit::Success.into();
                }
                _ => {
                    bad = true;
                    show_usage = true;
                }
            }
        }
        if !g.operands().is_empty() || show_usage {
            return usage(&prog, bad);
        }
    }
    // Cyrus's sasl_server_init reads the config; its getopt callback answers
    // sasldb_path with the path chosen above, so only a broken file matters.
    if let Err(e) = cyrus_conf::load(APPNAME) {
        eprint_line(&format!("Couldn't initialize server API: {e}"));
        return Exit::Failure.into();
    }
    list(&path)
}

fn list(path: &OsString) -> ExitCode {
    let location: Location = match super::parse_location(path) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let db = match Database::open(&location) {
        Ok(db) => db,
        Err(e) => return fail(&e),
    };
    let records = match db.records() {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut line = Vec::with_capacity(256);
    for rec in records {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let _ = out.flush();
                return fail(&e);
            }
        };
        match KeyRef::parse(&rec.key) {
            Ok(k) => {
                line.clear();
                line.extend_from_slice(k.user);
                line.push(b'@');
                line.extend_from_slice(k.realm);
                line.extend_from_slice(b": ");
                line.extend_from_slice(k.property);
                line.push(b'\n');
                if let Err(e) = out.write_all(&line) {
                    return write_failed(&e);
                }
            }
            Err(e) => {
                let _ = out.flush();
                eprint_line(&format!(
                    "sasldblistusers2: skipping a malformed key ({e}): {}",
                    crate::record::escape(&rec.key)
                ));
            }
        }
    }
    if let Err(e) = out.flush() {
        return write_failed(&e);
    }
    Exit::Success.into()
}

fn fail(e: &Error) -> ExitCode {
    eprint_line(&format!("listusers failed: {e}"));
    Exit::Failure.into()
}

fn write_failed(e: &io::Error) -> ExitCode {
    if is_broken_pipe(e) {
        return Exit::Success.into();
    }
    eprint_line(&format!("sasldblistusers2: cannot write the listing: {e}"));
    Exit::Failure.into()
}
