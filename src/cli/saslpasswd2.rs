//! `saslpasswd2`: set or delete a user's password in a sasldb, as a drop-in for
//! Cyrus SASL's tool of the same name.
//!
//! Same flags, prompts (on the same streams), messages and exit codes as Cyrus
//! 2.1.28 for the same situations. The default realm is the one Postfix looks up for
//! a bare login ([`crate::postfix`]), not the short hostname. Every write goes through
//! the shared write path (lock, atomic replace, root:postfix 0640). Deliberate
//! differences are listed in [`COMPATIBILITY`] (also the man page's section).

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use clap::ValueHint;

use super::getopt::{Event, Getopt, error_message};
use super::password::{PasswordProblem, ReadError, check_password, read_password};
use super::{DEFAULT_SASLDB_PATH, Exit, OptDoc, argv0, eprint_line, progname};
use crate::account::{self, PolicyError, PolicyRequest, SecretPolicy, check_names, split_userid};
use crate::cyrus_conf::{self, SaslConf};
use crate::database::{Database, Transaction, WriteOptions};
use crate::error::Error;
use crate::location::Location;
use crate::postfix;
use crate::storage::persist::{Ownership, Target};

/// The options: Cyrus's, in Cyrus's order, then our long-only extensions.
pub const OPTIONS: &[OptDoc] = &[
    OptDoc {
        short: Some('v'),
        long: None,
        value: None,
        hint: ValueHint::Unknown,
        help: "Print the version and exit",
    },
    OptDoc {
        short: Some('p'),
        long: None,
        value: None,
        hint: ValueHint::Unknown,
        help: "Pipe mode: no prompt, the password is one line read from standard input \
               (also the mode whenever standard input is not a terminal)",
    },
    OptDoc {
        short: Some('c'),
        long: None,
        value: None,
        hint: ValueHint::Unknown,
        help: "Create the account (accepted for compatibility: an existing user is updated \
               either way); cannot be combined with -d",
    },
    OptDoc {
        short: Some('d'),
        long: None,
        value: None,
        hint: ValueHint::Unknown,
        help: "Delete the user: every property of user@realm is removed; nothing is read \
               from standard input",
    },
    OptDoc {
        short: Some('n'),
        long: None,
        value: None,
        hint: ValueHint::Unknown,
        help: "No plaintext: store no userPassword (an existing one is removed) but a SCRAM \
               authPassword, so the password itself never reaches the disk",
    },
    OptDoc {
        short: Some('f'),
        long: None,
        value: Some("sasldb"),
        hint: ValueHint::FilePath,
        help: "Database to use, as PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite) or a \
               postgresql://USER@HOST/DB URL (password from PGPASSWORD or ~/.pgpass); \
               default: sasldb_path from the application's config file, else /etc/sasldb2",
    },
    OptDoc {
        short: Some('a'),
        long: None,
        value: Some("appname"),
        hint: ValueHint::Unknown,
        help: "Application name (default saslpasswd): read <appname>.conf from the Cyrus SASL \
               config path (SASL_CONF_PATH, else /etc/sasl2:/etc/sasl:...)",
    },
    OptDoc {
        short: Some('u'),
        long: None,
        value: Some("DOM"),
        hint: ValueHint::Unknown,
        help: "Realm for a userid without @ (default: the realm Postfix looks up for a bare \
               login: smtpd_sasl_local_domain, else myhostname)",
    },
    OptDoc {
        short: Some('h'),
        long: None,
        value: None,
        hint: ValueHint::Unknown,
        help: "Print the usage text and exit with status 1",
    },
    OptDoc {
        short: None,
        long: Some("group"),
        value: Some("GROUP"),
        hint: ValueHint::Unknown,
        help: "Group that owns the database when run as root (default: $SASLDB_GROUP, else \
               postfix); the file is always root:GROUP mode 0640",
    },
    OptDoc {
        short: None,
        long: Some("scram"),
        value: None,
        hint: ValueHint::Unknown,
        help: "Also store a SCRAM authPassword, as Cyrus's scram_secret_generate does",
    },
    OptDoc {
        short: None,
        long: Some("otp"),
        value: None,
        hint: ValueHint::Unknown,
        help: "Also store an OTP secret (cmusaslsecretOTP)",
    },
    OptDoc {
        short: None,
        long: Some("scram-iterations"),
        value: Some("N"),
        hint: ValueHint::Unknown,
        help: "PBKDF2 iterations for SCRAM secrets (default: scram_iteration_counter from the \
               config file, else 4096)",
    },
    OptDoc {
        short: None,
        long: Some("help"),
        value: None,
        hint: ValueHint::Unknown,
        help: "Print help and exit",
    },
];

/// The clap description of the tool (for `--help` and the man page).
pub fn command() -> clap::Command {
    let mut cmd = clap::Command::new("saslpasswd2")
        .about("Set or delete a user's password in a Cyrus SASL sasldb")
        .long_about(
            "Sets the password of userid (user or user@realm) in a Cyrus SASL password \
             database, or deletes the user with -d. A drop-in replacement for Cyrus SASL's \
             saslpasswd2: the same flags, prompts, messages and exit codes, for Berkeley DB \
             hash (written without libdb), LMDB, GDBM and SQLite databases. Every change is \
             made under a lock and replaces the database atomically, which ends up owned by \
             root:postfix with mode 0640 when run as root.\n\n\
             On a terminal the password is asked twice without echo; otherwise one line is \
             read from standard input. The realm of a userid without @ is the one Postfix \
             looks up for a bare login, so users created here can log in through Postfix.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_flag(true)
        .disable_version_flag(true);
    for o in OPTIONS {
        cmd = cmd.arg(o.to_arg());
    }
    cmd.arg(
        clap::Arg::new("userid")
            .value_name("userid")
            .required(true)
            .help("user, or user@realm (split at the first @; its realm wins over -u)"),
    )
}

/// Deliberate differences from Cyrus 2.1.28 (rendered into the man page).
pub const COMPATIBILITY: &str = r#"
Flags, prompts, messages and exit codes follow Cyrus SASL 2.1.28's \fBsaslpasswd2\fR.
Deliberate differences, each with its reason:
.IP \(bu 2
The default realm is the one Postfix looks up for a bare login
(\fBsmtpd_sasl_local_domain\fR, else \fBmyhostname\fR lowercased, expanded as Postfix does;
\fBpostconf\fR is asked when installed), not the machine's short hostname. Without a
Postfix configuration the lowercased hostname is used, as Cyrus does.
.IP \(bu 2
Every write takes an exclusive lock and replaces the database atomically (Cyrus's
Berkeley DB backend had neither), and when run as root leaves it owned by root:postfix,
mode 0640. A GDBM file is also locked as libgdbm's writers lock it (\fBflock\fR on the
file, waited for), from before it is read until it has been replaced.
.IP \(bu 2
\fB\-d\fR removes every property of the user, including \fBauthPassword\fR, OTP secrets
and unknown properties (Cyrus left some behind). \fB\-d\fR on a database that does not exist
is an error (Cyrus created an empty database).
.IP \(bu 2
A password change never leaves a secret that accepts the old password: an existing SCRAM
\fBauthPassword\fR or OTP secret is recomputed in Cyrus's format, or removed when the
config's \fBmech_list\fR leaves its mechanism out (and no flag asks for it). As with Cyrus,
an OTP secret is written afresh on every change, even to the same password (a new seed,
sequence 499), with the algorithm \fBotp_mda\fR names (default md5), whatever the old
secret used.
\fB\-n\fR removes an existing \fBuserPassword\fR and stores a SCRAM
\fBauthPassword\fR instead (Cyrus kept the old plaintext). An OTP secret is written only
when the user already has one, with \fB\-\-otp\fR, or when the config's \fBmech_list\fR names
OTP (Cyrus wrote one whenever its OTP plugin was installed).
.IP \(bu 2
The password is one line of at most 1023 bytes (the longest value saslauthd reads safely);
a longer one is an error (Cyrus silently kept the first 2048 bytes, or the first chunk that
arrived). A password containing a NUL byte, or ending in a carriage return (a CRLF line
ending), is refused (Cyrus stored it cut or with the CR).
.IP \(bu 2
An empty user name (\fB''\fR, \fB@realm\fR), an empty realm after \fB@\fR, names over 255 bytes,
names with control characters or invalid UTF-8 are refused (Cyrus stored them).
.IP \(bu 2
A database that cannot be opened gives \fBgeneric failure:\fR followed by the reason; a config
file that cannot be parsed gives \fBerror when parsing configuration file:\fR followed by the
file and line.
.IP \(bu 2
A database that cannot be read is an error even when Cyrus would have had nothing to
write to it (\fB\-n\fR with a \fBmech_list\fR naming no mechanism that keeps a secret:
Cyrus printed libdb's complaints, wrote nothing and exited 0, so the change seemed made).
Here \fB\-n\fR always writes a SCRAM \fBauthPassword\fR.
.IP \(bu 2
A zero-byte file is taken as an empty database and written without a word (Cyrus's libdb
printed \fBBDB0004 fop_read_meta: \fR\fIfile\fR\fB: unexpected file type or format\fR and
wrote it too).
.IP \(bu 2
A change to a Berkeley DB file rewrites only the buckets it touches when it can; otherwise
(changes spread over more than an eighth of the buckets, as in most small files, a bucket
chain grown too long, large items) the file is rebuilt with a hash table sized for its
records. The records are the same, but where libdb's in-place updates follow the file's
history of bucket splits, the rebuilt file may have another number of buckets, so \fBsasldblistusers2\fR (ours or Cyrus's) lists it in
another order than the file Cyrus's \fBsaslpasswd2\fR would have left. Both listers list
one and the same file in the same order.
.IP \(bu 2
The terminal's echo is restored when a signal interrupts the prompt.
.IP \(bu 2
\fB\-f\fR accepts \fIFORMAT\fR:\fIPATH\fR; long options (\fB\-\-group\fR, \fB\-\-scram\fR,
\fB\-\-otp\fR, \fB\-\-scram\-iterations\fR, \fB\-\-help\fR, and their unambiguous
abbreviations) are additions. Any other argument starting with \fB\-\-\fR is read as
Cyrus's getopt reads it, as short options: \fB\-\-foo\fR is \fB\-\fR (\fBinvalid option
\-\- '\-'\fR) then \fB\-f oo\fR.
.IP \(bu 2
The usage text and \fB\-v\fR omit Carnegie Mellon University's attribution notice, since
this program contains none of its code; \fB\-v\fR names this package.
"#;

/// What the command line asked for.
#[derive(Debug, Default)]
struct Args {
    pipe: bool,
    create: bool,
    disable: bool,
    noplain: bool,
    path: Option<OsString>,
    appname: Option<String>,
    domain: Option<OsString>,
    group: Option<String>,
    scram: bool,
    otp: bool,
    scram_iterations: Option<u32>,
    userid: OsString,
}

enum Parsed {
    Run(Args),
    Exit(ExitCode),
}

fn usage(prog: &str) -> ExitCode {
    let text = format!(
        "\n{prog}: usage: {prog} [-v] [-c [-p] [-n]] [-d] [-a appname] [-f sasldb] [-u DOM] userid\n\
         \t-p\tpipe mode -- no prompt, password read on stdin\n\
         \t-c\tcreate -- ask mechs to create the account\n\
         \t-d\tdisable -- ask mechs to disable/delete the account\n\
         \t-n\tno userPassword -- don't set plaintext userPassword property\n\
         \t  \t                   (only set mechanism-specific secrets)\n\
         \t-f sasldb\tuse given file as sasldb\n\
         \t-a appname\tuse appname as application name\n\
         \t-u DOM\tuse DOM for user domain\n\
         \t-v\tprint version numbers and exit\n"
    );
    let _ = io::stderr().write_all(text.as_bytes());
    Exit::Failure.into()
}

/// Parses like Cyrus's getopt loop: `-v` and a `/` in `-a` act at once; every other
/// problem makes the usage text appear after the loop.
fn parse(args: &[OsString], prog: &str) -> Parsed {
    let a0 = argv0(args, "saslpasswd2");
    let optstring = OptDoc::optstring(OPTIONS) + "?";
    let longs = OptDoc::longs(OPTIONS);
    let mut g = Getopt::new(args.iter().skip(1).cloned().collect(), &optstring, &longs);
    let mut a = Args::default();
    let mut error = false;
    for ev in g.by_ref() {
        if let Some(msg) = error_message(&a0, &ev) {
            eprint_line(&msg);
        }
        match ev {
            Event::Short('p', _) => a.pipe = true,
            Event::Short('c', _) => {
                if a.disable {
                    error = true;
                } else {
                    a.create = true;
                }
            }
            Event::Short('d', _) => {
                if a.create {
                    error = true;
                } else {
                    a.disable = true;
                }
            }
            Event::Short('n', _) => a.noplain = true,
            Event::Short('u', v) => a.domain = v,
            Event::Short('f', v) => a.path = v,
            Event::Short('a', Some(v)) => {
                let s = v.to_string_lossy().into_owned();
                if s.contains('/') {
                    eprint_line("appname must not contain /");
                    return Parsed::Exit(Exit::Failure.into());
                }
                a.appname = Some(s);
            }
            Event::Short('v', _) => {
                let _ = io::stderr().write_all(super::listusers::version_banner(prog).as_bytes());
                return Parsed::Exit(Exit::Success.into());
            }
            Event::Long("group", v) => a.group = v.map(|v| v.to_string_lossy().into_owned()),
            Event::Long("scram", _) => a.scram = true,
            Event::Long("otp", _) => a.otp = true,
            Event::Long("scram-iterations", Some(v)) => {
                match v
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|&n| n > 0)
                {
                    Some(n) => a.scram_iterations = Some(n),
                    None => {
                        eprint_line(&format!(
                            "{prog}: --scram-iterations needs a positive number, not `{}`",
                            v.to_string_lossy()
                        ));
                        error = true;
                    }
                }
            }
            Event::Long("help", _) => {
                let _ = command().print_long_help();
                return Parsed::Exit(Exit::Success.into());
            }
            _ => error = true,
        }
    }
    match g.operands() {
        [userid] if !error => {
            a.userid = userid.clone();
            Parsed::Run(a)
        }
        _ => Parsed::Exit(usage(prog)),
    }
}

/// Runs the tool with `args` (`argv[0]` included).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let prog = progname(&args, "saslpasswd");
    let a = match parse(&args, &prog) {
        Parsed::Run(a) => a,
        Parsed::Exit(code) => return code,
    };
    match run(&prog, a) {
        Ok(code) => code,
        Err(f) => {
            eprint_line(&format!("{prog}: {}", f.message));
            f.exit.into()
        }
    }
}

/// A failure: the line to print (after `prog: `) and the status.
struct Failure {
    message: String,
    exit: Exit,
}

fn fail(exit: Exit, message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        exit,
    }
}

/// Database errors print as Cyrus's `generic failure`, followed by the reason.
fn generic(e: Error) -> Failure {
    fail(Exit::Failure, format!("generic failure: {e}"))
}

fn bad_password(p: PasswordProblem) -> Failure {
    match p {
        // Cyrus's exact text for an empty password.
        PasswordProblem::Empty => fail(Exit::BadParameter, "invalid parameter supplied"),
        other => fail(Exit::BadParameter, other.to_string()),
    }
}

fn run(prog: &str, a: Args) -> Result<ExitCode, Failure> {
    // Cyrus loads the application's config first (sasl_server_init).
    let appname = a.appname.as_deref().unwrap_or("saslpasswd");
    let conf: Option<SaslConf> = cyrus_conf::load(appname).map_err(|e| {
        fail(
            Exit::ConfigError,
            format!("error when parsing configuration file: {e}"),
        )
    })?;
    let location = database_location(&a, conf.as_ref())?;

    // user@realm: first @ wins over -u; else -u when non-empty; else Postfix's realm.
    let userid = a.userid.as_bytes();
    let default_realm: Vec<u8> = if userid.contains(&b'@') {
        Vec::new()
    } else {
        match a.domain.as_ref().filter(|d| !d.is_empty()) {
            Some(d) => d.as_bytes().to_vec(),
            None => postfix::default_realm_here()
                .map_err(|e| {
                    fail(
                        Exit::Failure,
                        format!("cannot determine the default realm: {e} (use -u)"),
                    )
                })?
                .realm
                .into_bytes(),
        }
    };
    let (user, realm) = split_userid(userid, &default_realm);
    if userid.contains(&b'@') && realm.is_empty() {
        return Err(fail(Exit::BadParameter, "the realm after @ is empty"));
    }
    check_names(user, realm).map_err(|p| fail(Exit::BadParameter, p.to_string()))?;

    let opts = super::write_options(a.group.as_deref());
    preflight(&location, &opts, a.disable)?;

    if a.disable {
        return delete(prog, &location, &opts, user, realm);
    }

    let pipe = a.pipe || !super::password::stdin_is_tty();
    let password = read_password("Password: ", pipe).map_err(read_failure)?;
    if !pipe {
        let again = read_password("Again (for verification): ", pipe).map_err(read_failure)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&password[..], &again[..])) {
            return Err(fail(Exit::BadParameter, "passwords don't match; aborting"));
        }
    }
    check_password(&password).map_err(bad_password)?;

    let policy = secret_policy(&a, conf.as_ref())?;
    let mut txn = Transaction::begin(&location, &opts).map_err(generic)?;
    account::set_password(&mut txn, user, realm, &password, &policy).map_err(generic)?;
    drop(password);
    let report = txn.commit().map_err(generic)?;
    for line in report.notes.iter().chain(&report.warnings) {
        eprint_line(&format!("{prog}: {line}"));
    }
    Ok(Exit::Success.into())
}

fn read_failure(e: ReadError) -> Failure {
    match e {
        // Cyrus: perror(progname), exit 1.
        ReadError::Io(e) => fail(Exit::Failure, crate::error::io_text(&e)),
        ReadError::TooLong(n) => bad_password(PasswordProblem::TooLong(n)),
    }
}

/// `-f` (FORMAT:PATH allowed), else the config's `sasldb_path`, else /etc/sasldb2;
/// an empty `-f` means /etc/sasldb2, as for Cyrus.
fn database_location(a: &Args, conf: Option<&SaslConf>) -> Result<Location, Failure> {
    let path: OsString = match (&a.path, conf.and_then(|c| c.sasldb_path())) {
        // Cyrus's callback answers sasldb_path with the empty -f value, so the config
        // is not consulted, and its backends take "" as unset: the compiled default.
        (Some(p), _) if p.is_empty() => OsString::from(DEFAULT_SASLDB_PATH),
        (Some(p), _) => p.clone(),
        (None, Some(p)) => p.into_os_string(),
        (None, None) => OsString::from(DEFAULT_SASLDB_PATH),
    };
    super::parse_location(&path).map_err(generic)
}

/// Checks, before the password is asked for, everything that would make the write
/// fail: the directory, the file type, hard links, the ownership policy (a missing
/// group), and that an existing database reads. Takes no lock, so no writer waits
/// while someone types.
fn preflight(location: &Location, opts: &WriteOptions, disable: bool) -> Result<(), Failure> {
    if !location.is_file() {
        // A database server: connect and check the table (a missing one is created by
        // the write, except for -d).
        return match Database::open(location) {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) if !disable => Ok(()),
            Err(e) => Err(generic(e)),
        };
    }
    let target = Target::resolve(location.path()).map_err(generic)?;
    Ownership::plan(&target, &opts.ownership).map_err(generic)?;
    match &target.existing {
        Some(m) if m.len() > 0 => {
            Database::open(location).map_err(generic)?;
        }
        _ if disable => {
            return Err(generic(Error::NotFound {
                path: location.path().to_path_buf(),
            }));
        }
        _ => {}
    }
    Ok(())
}

fn delete(
    prog: &str,
    location: &Location,
    opts: &WriteOptions,
    user: &[u8],
    realm: &[u8],
) -> Result<ExitCode, Failure> {
    let mut txn = Transaction::begin(location, opts).map_err(generic)?;
    if !txn.existed() {
        return Err(generic(Error::NotFound {
            path: location.path().to_path_buf(),
        }));
    }
    account::delete_user(&mut txn, user, realm).map_err(generic)?;
    let report = txn.commit().map_err(generic)?;
    for line in report.notes.iter().chain(&report.warnings) {
        eprint_line(&format!("{prog}: {line}"));
    }
    Ok(Exit::Success.into())
}

/// Which secrets to write: the flags, then the config file.
fn secret_policy(a: &Args, conf: Option<&SaslConf>) -> Result<SecretPolicy, Failure> {
    let req = PolicyRequest {
        hashed_only: a.noplain,
        scram: a.scram,
        otp: a.otp,
        scram_iterations: a.scram_iterations,
    };
    let mut policy = SecretPolicy::from_config(&req, conf).map_err(|e| match e {
        PolicyError::Config(_) => fail(Exit::ConfigError, e.to_string()),
        PolicyError::Hostname(_) => fail(Exit::Failure, e.to_string()),
    })?;
    // As Cyrus's: every change starts a new OTP sequence (new seed, sequence 499).
    policy.renew_otp = true;
    Ok(policy)
}
