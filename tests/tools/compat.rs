//! Our `saslpasswd2` and `sasldblistusers2` against Debian's Cyrus SASL 2.1.28 binaries.
//!
//! Every comparison runs the same argv (with `argv[0]` forced to the bare tool name,
//! so glibc's getopt messages match), stdin and environment against both programs,
//! each in its own scratch directory, and compares stdout, stderr, the exit status
//! and, where something is written, the database contents. Where the two differ on
//! purpose the difference is listed in [`DIFFERENCES`] and the test asserts both
//! sides as specified there (via [`declared`]); nothing is skipped.
//!
//! Safety: nothing here touches /etc. Every run gets `-f` or a config file naming a
//! database in its scratch directory, `SASL_CONF_PATH` and `MAIL_CONFIG` pointing into
//! that directory, and a cleared environment (so no `POSIXLY_CORRECT`,
//! `SASLDB_GROUP`). Peers are required: a missing one fails the test.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sasldb::account::secrets::{OtpSecret, ScramHash, ScramSecret};
use sasldb::record::{AUTH_PASSWORD, OTP_SECRET, USER_PASSWORD};
use sasldb::{Key, Location};
use sasldb::{Transaction, WriteOptions};

use crate::support::sample_server::{REALM, otp_login, scram_login};
use crate::support::{
    Scratch, db_dump, file_records, fixture, key, ours, peer, postfix_gid, run_ok, write_bdb,
};

// ---------------------------------------------------------------------------------
// The deliberate differences

/// One deliberate difference: what each side does, and why ours differs.
struct Difference {
    id: &'static str,
    cyrus: &'static str,
    ours: &'static str,
    why: &'static str,
}

/// EVERY deliberate difference between our tools and Cyrus's. Each is asserted by at
/// least one test through [`declared`] (checked by `every_difference_is_asserted`).
const DIFFERENCES: &[Difference] = &[
    Difference {
        id: "cmu-notice",
        cyrus: "usage text starts with CMU's attribution notice (3 lines + blank)",
        ours: "the same usage lines without the notice",
        why: "none of CMU's code is in this program",
    },
    Difference {
        id: "version-banner",
        cyrus: "-v: notice, `Built against SASL API version 2.1.28`, `LibSasl version …`",
        ours: "-v: `<prog> (sasldb X.Y.Z), compatible with Cyrus SASL 2.1.28`",
        why: "names what is actually running; same stream (stderr), same exit 0",
    },
    Difference {
        id: "long-options",
        cyrus: "`--help` is a cluster of bad short options: glibc messages, usage, exit 1",
        ours: "`--help` prints help on stdout, exit 0 (also --group, --scram, --otp, …, and \
               unambiguous abbreviations); any other `--word` is read as Cyrus reads it",
        why: "additions; no Cyrus invocation that worked changes meaning",
    },
    Difference {
        id: "format-prefix",
        cyrus: "`-f bdb:db` is the file named `bdb:db`",
        ours: "`-f bdb:db` is the Berkeley DB file `db` (FORMAT:PATH)",
        why: "selects LMDB/GDBM/SQLite; a path containing `:` needs `./`",
    },
    Difference {
        id: "default-realm",
        cyrus: "a bare userid gets the lowercased gethostname() (`vm`)",
        ours: "smtpd_sasl_local_domain, else myhostname lowercased, as postconf expands them",
        why: "the realm Postfix looks a bare login up in; same as Cyrus without main.cf",
    },
    Difference {
        id: "write-path",
        cyrus: "no lock; file root:root with umask mode; nothing printed",
        ours: "takes `<db>.lock` (left in place), replaces atomically; as root: \
               root:postfix 0640 and a note on stderr when an existing file's group \
               changes; not as root: a warning that ownership is not enforced",
        why: "concurrent writers are safe and Postfix can read the file",
    },
    Difference {
        id: "otp-not-by-default",
        cyrus: "every set writes cmusaslsecretOTP (the OTP plugin is installed)",
        ours: "OTP only if the user has one, with --otp, or when mech_list names OTP",
        why: "an unasked-for OTP secret is a second password nobody manages",
    },
    Difference {
        id: "noplain-scram",
        cyrus: "-n writes only the OTP secret and keeps an existing userPassword",
        ours: "-n deletes userPassword and writes a SCRAM authPassword",
        why: "-n means no plaintext on disk, and the user can still log in",
    },
    Difference {
        id: "secrets-never-stale",
        cyrus: "a change leaves an existing authPassword as it was (scram off)",
        ours: "an existing authPassword/OTP is recomputed for the new password; one whose \
               mechanism the config's mech_list leaves out is deleted",
        why: "SCRAM must not keep accepting the old password",
    },
    Difference {
        id: "delete-everything",
        cyrus: "-d leaves authPassword (scram off) and unknown properties",
        ours: "-d deletes every property of user@realm",
        why: "a deleted user must not be able to log in",
    },
    Difference {
        id: "delete-missing-db",
        cyrus: "-d on a missing file creates an empty database, exit 0",
        ours: "`generic failure: <path>: no such database`, exit 1, nothing created",
        why: "a typo in -f must not pass silently",
    },
    Difference {
        id: "password-one-line",
        cyrus: "one read(2048): `pw\\n\\n` stores `pw\\n`",
        ours: "one line: `pw\\n\\n` stores `pw`",
        why: "a password is a line; Cyrus's result depends on how the data arrives",
    },
    Difference {
        id: "password-crlf",
        cyrus: "`pw\\r\\n` stores `pw\\r`, exit 0",
        ours: "refused: `the password ends with a carriage return …`, exit 7",
        why: "nobody can type the CR at a login prompt",
    },
    Difference {
        id: "password-nul",
        cyrus: "`a\\0b` stores `a`, exit 0",
        ours: "refused: `the password contains a NUL byte …`, exit 7",
        why: "Cyrus silently stores another password than the one given",
    },
    Difference {
        id: "password-too-long",
        cyrus: "a 1 MB password stores its first 2048 bytes, exit 0",
        ours: "over 1023 bytes refused: `the password is too long: N bytes …`, exit 7",
        why: "saslauthd reads at most 1023 bytes; truncation is silent in Cyrus",
    },
    Difference {
        id: "empty-names",
        cyrus: "'' and `@realm` store an empty user, `trail@` an empty realm, exit 0",
        ours: "refused: `the user name is empty` / `the realm after @ is empty`, exit 7",
        why: "such entries can never log in",
    },
    Difference {
        id: "check-before-read",
        cyrus: "reads the password first: a bad database with an empty password gives \
                `invalid parameter supplied`, 7",
        ours: "checks the database before reading: `generic failure: …`, 1",
        why: "nobody types a password twice only to learn the file is unusable",
    },
    Difference {
        id: "nothing-to-write-unreadable",
        cyrus: "-n with a mech_list naming no mechanism that keeps a secret, on a file libdb \
                cannot read: libdb's BDBxxxx lines, nothing written, exit 0",
        ours: "`generic failure: <path>: not a sasldb database (…)`, exit 1",
        why: "an unreadable database is an error whatever the change; a script must not \
              believe the password set (and -n writes a SCRAM secret here)",
    },
    Difference {
        id: "zero-byte-file",
        cyrus: "a zero-byte file: `BDB0004 fop_read_meta: <db>: unexpected file type or \
                format` on stderr, then written, exit 0",
        ours: "taken as an empty database and written without that line, exit 0",
        why: "an empty file is an empty database; libdb's line is not an error",
    },
    Difference {
        id: "listing-order",
        cyrus: "a Berkeley DB file Cyrus's saslpasswd2 changed keeps libdb's split history, \
                which decides the order both listers list it in",
        ours: "a file our saslpasswd2 rebuilt may have another bucket count: the same \
               records, listed by both listers in another order than Cyrus's file",
        why: "a rebuild sizes the hash table for its records; hash order carries no meaning",
    },
    Difference {
        id: "generic-failure-reason",
        cyrus: "`saslpasswd2: generic failure`, plus libdb's BDBxxxx lines for some files",
        ours: "one line: `saslpasswd2: generic failure: <reason>`",
        why: "the reason is what the admin needs; same exit status 1",
    },
    Difference {
        id: "config-error-detail",
        cyrus: "`saslpasswd2: error when parsing configuration file`, 100",
        ours: "the same text followed by `: <file>, line N: …`, 100",
        why: "says which line to fix",
    },
    Difference {
        id: "tty-signal",
        cyrus: "Ctrl-C at the prompt leaves the terminal with echo off",
        ours: "the terminal is restored (echo on) before the signal kills the process",
        why: "a shell with echo off looks broken",
    },
    Difference {
        id: "list-config-error-detail",
        cyrus: "a sasldblistusers.conf that cannot be parsed: `Couldn't initialize server \
                API`, exit 1",
        ours: "the same text followed by `: <file>, line N: …`, exit 1",
        why: "says which line to fix",
    },
    Difference {
        id: "list-exit-status",
        cyrus: "an unreadable database: `listusers failed` (+ libdb lines), exit 0",
        ours: "`listusers failed: <reason>`, exit 1",
        why: "scripts must be able to tell an error from an empty database",
    },
    Difference {
        id: "list-malformed-key",
        cyrus: "a key without exactly two NULs: loops forever (100% CPU, syslog flood)",
        ours: "reports it on stderr, skips it, lists the rest, exit 0",
        why: "a listing must terminate",
    },
];

/// The declared difference `id`; fails the test if the table lacks it.
fn declared(id: &str) -> &'static Difference {
    DIFFERENCES
        .iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("difference `{id}` is not in DIFFERENCES"))
}

#[test]
fn every_difference_is_asserted() {
    let src = include_str!("compat.rs");
    let table_end = src.find("fn declared(").unwrap();
    let body = &src[table_end..];
    let mut ids = std::collections::HashSet::new();
    for d in DIFFERENCES {
        assert!(ids.insert(d.id), "duplicate id {}", d.id);
        assert!(!d.cyrus.is_empty() && !d.ours.is_empty() && !d.why.is_empty());
        // Either `declared("id")` or the id in a table a test passes to `declared`.
        assert!(
            body.contains(&format!("\"{}\"", d.id)),
            "difference `{}` is asserted by no test",
            d.id
        );
    }
}

// ---------------------------------------------------------------------------------
// Running both implementations

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Ours,
    Cyrus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Passwd,
    List,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Passwd => "saslpasswd2",
            Tool::List => "sasldblistusers2",
        }
    }

    fn program(self, who: Impl) -> PathBuf {
        match (who, self) {
            (Impl::Ours, t) => PathBuf::from(ours::exe(t.name())),
            (Impl::Cyrus, t) => {
                let p = peer(t.name());
                assert!(
                    p.starts_with("/usr/sbin"),
                    "expected Debian's {} in /usr/sbin, found {}",
                    t.name(),
                    p.display()
                );
                p
            }
        }
    }
}

/// A scratch directory: `conf/` (SASL_CONF_PATH), `mail/` (MAIL_CONFIG), and one work
/// directory per implementation (`ours/`, `cyrus/`), the current directory of its
/// runs, so relative database paths never collide.
fn scratch() -> Scratch {
    let s = Scratch::new();
    s.mkdir("ours");
    s.mkdir("cyrus");
    // World-searchable, for the runs as nobody.
    for sub in ["", "conf", "mail", "ours", "cyrus"] {
        fs::set_permissions(s.path(sub), fs::Permissions::from_mode(0o755)).unwrap();
    }
    s
}

/// The two sides of a [`scratch`] directory.
trait Sides {
    /// The work directory of `who`.
    fn work(&self, who: Impl) -> PathBuf;
    /// A file in `who`'s work directory.
    fn at(&self, who: Impl, rel: &str) -> PathBuf;
    /// Copies `src` to the same relative path in both work directories, mode 0640
    /// (owned by root:root: ours will note that it hands the file to postfix).
    fn copy_to_both(&self, src: &Path, rel: &str);
}

impl Sides for Scratch {
    fn work(&self, who: Impl) -> PathBuf {
        self.path(match who {
            Impl::Ours => "ours",
            Impl::Cyrus => "cyrus",
        })
    }

    fn at(&self, who: Impl, rel: &str) -> PathBuf {
        self.work(who).join(rel)
    }

    fn copy_to_both(&self, src: &Path, rel: &str) {
        for who in [Impl::Ours, Impl::Cyrus] {
            let to = self.at(who, rel);
            fs::copy(src, &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o640)).unwrap();
        }
    }
}

/// What a run gets on stdin.
#[derive(Debug, Clone)]
enum Input {
    Bytes(Vec<u8>),
    /// /dev/null.
    Null,
    /// fd 0 closed.
    Closed,
}

/// One invocation, runnable against either implementation.
#[derive(Clone)]
struct Call<'a> {
    s: &'a Scratch,
    tool: Tool,
    args: Vec<OsString>,
    input: Input,
    env: Vec<(String, OsString)>,
    timeout: Duration,
    nobody: bool,
    overlay_etc: bool,
}

/// How a run ended and what it printed.
#[derive(Clone, PartialEq, Eq)]
struct Out {
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "code={:?} signal={:?} timed_out={}\n  stdout={:?}\n  stderr={:?}",
            self.code,
            self.signal,
            self.timed_out,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

impl Out {
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Exited (not killed, not timed out) with `code`.
    fn exited(&self, code: i32) -> &Self {
        assert_eq!(
            (self.code, self.timed_out),
            (Some(code), false),
            "expected exit {code}: {self:?}"
        );
        self
    }

    fn stderr_is(&self, text: &str) -> &Self {
        assert_eq!(self.err(), text, "{self:?}");
        self
    }

    fn stdout_is(&self, text: &str) -> &Self {
        assert_eq!(self.out(), text, "{self:?}");
        self
    }
}

impl<'a> Call<'a> {
    fn new(s: &'a Scratch, tool: Tool, args: &[&str]) -> Call<'a> {
        Call {
            s,
            tool,
            args: args.iter().map(OsString::from).collect(),
            input: Input::Null,
            env: Vec::new(),
            timeout: Duration::from_secs(20),
            nobody: false,
            overlay_etc: false,
        }
    }

    fn passwd(s: &'a Scratch, args: &[&str]) -> Call<'a> {
        Call::new(s, Tool::Passwd, args)
    }

    fn list(s: &'a Scratch, args: &[&str]) -> Call<'a> {
        Call::new(s, Tool::List, args)
    }

    fn stdin(mut self, b: impl AsRef<[u8]>) -> Self {
        self.input = Input::Bytes(b.as_ref().to_vec());
        self
    }

    fn input(mut self, i: Input) -> Self {
        self.input = i;
        self
    }

    fn env(mut self, k: &str, v: impl Into<OsString>) -> Self {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    fn run_as_nobody(mut self) -> Self {
        self.nobody = true;
        self
    }

    /// Runs in a private mount namespace where /etc is an overlay whose upper layer
    /// is `etc-<impl>/u` in the scratch directory: the default /etc/sasldb2 can be
    /// written without touching the real /etc.
    fn overlay_etc(mut self) -> Self {
        self.overlay_etc = true;
        self
    }

    /// Refuses a saslpasswd2 run that could fall back on the real /etc/sasldb2 (the
    /// compiled default): outside the /etc overlay every run needs a non-empty `-f`
    /// (an empty one means the default), or `-a` with a config naming `sasldb_path`.
    fn guard(&self) {
        if self.tool != Tool::Passwd || self.overlay_etc {
            return;
        }
        let (mut named, mut empty) = (false, false);
        for (i, a) in self.args.iter().enumerate() {
            let next = self.args.get(i + 1);
            match a.as_bytes() {
                b"-f" => match next {
                    Some(v) if v.is_empty() => empty = true,
                    Some(_) => named = true,
                    None => {} // a usage error
                },
                [b'-', b'f', ..] => named = true,
                b"-a" => {
                    let conf = self.s.path("conf").join(format!(
                        "{}.conf",
                        next.map(|n| n.to_string_lossy()).unwrap_or_default()
                    ));
                    let text = fs::read_to_string(conf).unwrap_or_default();
                    named |= text.contains("sasldb_path:");
                }
                _ => {}
            }
        }
        assert!(
            named && !empty,
            "refusing to run saslpasswd2 without a database in the scratch directory: {:?}",
            self.args
        );
    }

    /// The command for `who`, with stdio left to the caller.
    fn command(&self, who: Impl) -> Command {
        let mut cmd;
        if self.overlay_etc {
            let base = self.s.path(&format!("etc-{who:?}"));
            for d in ["u", "w"] {
                fs::create_dir_all(base.join(d)).unwrap();
            }
            // The program runs only once /etc is verifiably the overlay.
            let script = r#"mount -t overlay overlay -o "lowerdir=/etc,upperdir=$0/u,workdir=$0/w" /etc && [ "$(stat -f -c %T /etc)" = overlayfs ] || { echo "no overlay on /etc" >&2; exit 99; }; exec -a "$1" "${@:2}""#;
            cmd = Command::new(peer("unshare"));
            cmd.args(["-m", "--propagation", "private", "/bin/bash", "-c", script])
                .arg(base)
                .arg(self.tool.name())
                .arg(self.tool.program(who));
        } else {
            cmd = Command::new(self.tool.program(who));
            cmd.arg0(self.tool.name());
        }
        cmd.args(&self.args);
        self.s
            .clean_env(&mut cmd)
            .current_dir(self.s.work(who))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if self.nobody {
            // std drops the supplementary groups when root changes uid.
            cmd.uid(65534).gid(65534);
        }
        cmd
    }

    fn run(&self, who: Impl) -> Out {
        self.guard();
        let mut cmd = self.command(who);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        match &self.input {
            Input::Bytes(_) => cmd.stdin(Stdio::piped()),
            Input::Null | Input::Closed => cmd.stdin(Stdio::null()),
        };
        if matches!(self.input, Input::Closed) {
            // SAFETY: close(2) is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::close(0);
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.tool));
        let writer = match (&self.input, child.stdin.take()) {
            (Input::Bytes(b), Some(mut w)) => {
                let b = b.clone();
                // The child may stop reading early (Cyrus reads 2048 bytes): ignore EPIPE.
                Some(std::thread::spawn(move || {
                    let _ = w.write_all(&b);
                }))
            }
            _ => None,
        };
        let stdout = reader(child.stdout.take().unwrap());
        let stderr = reader(child.stderr.take().unwrap());
        let (status, timed_out) = wait_for(&mut child, self.timeout);
        if let Some(w) = writer {
            let _ = w.join();
        }
        Out {
            code: status.code(),
            signal: status.signal(),
            timed_out,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }

    /// Runs both; returns (ours, cyrus).
    fn both(&self) -> (Out, Out) {
        (self.run(Impl::Ours), self.run(Impl::Cyrus))
    }

    /// Runs both and asserts identical output and status; returns it.
    fn same(&self) -> Out {
        let (o, c) = self.both();
        assert_eq!(
            o,
            c,
            "{} {:?}: ours (left) and Cyrus (right) differ",
            self.tool.name(),
            self.args
        );
        o
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Waits for `child` at most `limit`; kills it when the time is up.
fn wait_for(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, bool) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return (child.wait().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------
// Expected texts

/// The default realm of both tools without a Postfix config: the lowercased hostname.
fn host() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .to_lowercase()
}

const CMU_NOTICE: &str = "This product includes software developed by Computing Services\n\
                          at Carnegie Mellon University (http://www.cmu.edu/computing/).\n\n";

const CYRUS_VERSION: &str = "Built against SASL API version 2.1.28\n\
                             LibSasl version 2.1.28 by \"Cyrus SASL\"\n";

fn our_version(prog: &str) -> String {
    format!(
        "{prog} (sasldb {}), compatible with Cyrus SASL 2.1.28\n",
        env!("CARGO_PKG_VERSION")
    )
}

const PASSWD_USAGE: &str = "saslpasswd2: usage: saslpasswd2 [-v] [-c [-p] [-n]] [-d] [-a appname] \
     [-f sasldb] [-u DOM] userid\n\
     \t-p\tpipe mode -- no prompt, password read on stdin\n\
     \t-c\tcreate -- ask mechs to create the account\n\
     \t-d\tdisable -- ask mechs to disable/delete the account\n\
     \t-n\tno userPassword -- don't set plaintext userPassword property\n\
     \t  \t                   (only set mechanism-specific secrets)\n\
     \t-f sasldb\tuse given file as sasldb\n\
     \t-a appname\tuse appname as application name\n\
     \t-u DOM\tuse DOM for user domain\n\
     \t-v\tprint version numbers and exit\n";

const LIST_USAGE: &str = "sasldblistusers2: usage: sasldblistusers2 [-v] [[-f] sasldb]\n\
     \t-f sasldb\tuse given file as sasldb\n\
     \t-v\tprint version numbers and exit\n";

/// Replaces the first occurrence of `from` in `text` (which must contain it).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in {text:?}");
    text.replacen(from, to, 1)
}

/// Asserts that ours and Cyrus agree except that Cyrus's stderr carries the CMU
/// notice where ours has none; returns ours.
fn same_but_notice(call: &Call) -> Out {
    let d = declared("cmu-notice");
    let (o, c) = call.both();
    assert_eq!((o.code, &o.stdout), (c.code, &c.stdout), "{}: {o:?}", d.id);
    assert_eq!(
        o.err(),
        replace_once(&c.err(), CMU_NOTICE, ""),
        "{}: {:?}",
        d.ours,
        call.args
    );
    assert!(!o.err().contains("Carnegie"));
    o
}

/// Asserts that ours and Cyrus agree except for our note that `db` (which was
/// root:root 0640) now belongs to the postfix group; returns ours.
fn same_but_group_note(call: &Call, db: &str) -> Out {
    let d = declared("write-path");
    let (o, c) = call.both();
    assert_eq!((o.code, &o.stdout), (c.code, &c.stdout), "{c:?}");
    assert_eq!(
        o.err(),
        format!(
            "{}saslpasswd2: {db}: group changed from root to postfix (mode 640)\n",
            c.err()
        ),
        "{}",
        d.ours
    );
    o
}

// ---------------------------------------------------------------------------------
// Database contents

type Db = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every record of a BDB file, read by libdb's `db_dump -p`.
fn dump(path: &Path) -> Db {
    db_dump(path).into_iter().collect()
}

/// Every record, read by our library.
fn ours_read(path: &Path) -> Db {
    file_records(path).into_iter().collect()
}

/// Keys rendered as `user@realm: prop` for messages and property-set comparisons.
fn props(db: &Db) -> Vec<String> {
    db.keys()
        .map(|k| {
            let p: Vec<String> = k
                .split(|&b| b == 0)
                .map(|x| String::from_utf8_lossy(x).into_owned())
                .collect();
            format!("{}@{}: {}", p[0], p[1], p[2])
        })
        .collect()
}

/// Takes `user@realm`'s OTP secret out of `db` and checks it accepts `pw`.
fn take_otp(db: &mut Db, user: &str, realm: &str, pw: &[u8]) {
    let v = db
        .remove(&key(user, realm, OTP_SECRET))
        .unwrap_or_else(|| panic!("no OTP secret for {user}@{realm} in {:?}", props(db)));
    let s = OtpSecret::parse(&v).unwrap();
    assert!(
        s.verify_password(pw).unwrap(),
        "OTP secret of {user}@{realm}"
    );
    assert!(!s.verify_password(b"not the password").unwrap());
}

/// Takes `user@realm`'s SCRAM authPassword out of `db` and checks it accepts `pw`.
fn take_scram(db: &mut Db, user: &str, realm: &str, pw: &[u8]) -> ScramSecret {
    let v = db
        .remove(&key(user, realm, AUTH_PASSWORD))
        .unwrap_or_else(|| panic!("no authPassword for {user}@{realm} in {:?}", props(db)));
    let s = ScramSecret::parse(&v).unwrap();
    assert!(
        s.verify_password(pw).unwrap(),
        "authPassword of {user}@{realm}"
    );
    assert!(!s.verify_password(b"not the password").unwrap());
    s
}

fn user_password(db: &Db, user: &str, realm: &str) -> Option<Vec<u8>> {
    db.get(&key(user, realm, USER_PASSWORD)).cloned()
}

/// After one and the same successful set of `user@realm` to `pw`: the two databases
/// agree except for Cyrus's OTP secret (declared), which must verify.
fn same_db_but_cyrus_otp(s: &Scratch, db: &str, users: &[(&str, &str, &[u8])]) {
    let d = declared("otp-not-by-default");
    let ours = dump(&s.at(Impl::Ours, db));
    let mut cyrus = dump(&s.at(Impl::Cyrus, db));
    for &(u, r, pw) in users {
        take_otp(&mut cyrus, u, r, pw);
        assert!(!ours.contains_key(&key(u, r, OTP_SECRET)), "{}", d.ours);
    }
    assert_eq!(props(&ours), props(&cyrus));
    assert_eq!(ours, cyrus);
}

// ---------------------------------------------------------------------------------
// saslpasswd2: command line

#[test]
fn passwd_usage_errors() {
    let s = scratch();
    for args in [
        &[][..],
        &["alice", "bob"],
        &["-x", "alice"],
        &["alice", "-x"],
        &["-f"],
        &["alice", "-u"],
        &["-c", "-d", "alice"],
        &["-d", "-c", "alice"],
        &["-cd", "alice"],
        &["-h"],
        &["-h", "alice"],
        &["-?"],
        &["-?", "alice"],
        &["-p", "-x", "-Y", "alice", "bob"],
        &["--", "-c", "alice"],
    ] {
        // -f first, so it cannot become the argument of another option.
        let mut a = vec!["-fdb"];
        a.extend_from_slice(args);
        if args.contains(&"-f") {
            a.remove(0);
            a.insert(0, "-fdb2");
        }
        let o = same_but_notice(&Call::passwd(&s, &a).stdin("pw\n"));
        o.exited(1);
        assert!(o.err().ends_with(&format!("\n{PASSWD_USAGE}")), "{o:?}");
    }
    // Nothing was written anywhere.
    for who in [Impl::Ours, Impl::Cyrus] {
        assert_eq!(fs::read_dir(s.work(who)).unwrap().count(), 0, "{who:?}");
    }
    // glibc's messages come first, with argv[0] as given.
    let o = Call::passwd(&s, &["-fdb", "-x", "-f"]).run(Impl::Ours);
    assert!(o.err().starts_with(
        "saslpasswd2: invalid option -- 'x'\nsaslpasswd2: option requires an argument -- 'f'\n\n"
    ));
}

/// With POSIXLY_CORRECT, options after the userid are operands: a usage error for
/// both.
#[test]
fn passwd_posixly_correct() {
    let s = scratch();
    let o = same_but_notice(
        &Call::passwd(&s, &["-fdb", "alice", "-p"])
            .stdin("pw\n")
            .env("POSIXLY_CORRECT", "1"),
    );
    o.exited(1);
    assert!(o.err().ends_with(PASSWD_USAGE));
    Call::passwd(&s, &["-fdb", "alice", "-p"])
        .stdin("pw\n")
        .same()
        .exited(0);
}

#[test]
fn passwd_version_acts_at_once() {
    let d = declared("version-banner");
    let s = scratch();
    for args in [
        &["-v"][..],
        &["-v", "alice"],
        &["alice", "-v"],
        &["-x", "-v"],
        &["-c", "-d", "-v", "-x"],
        &["-pv", "alice", "bob"],
    ] {
        let c = Call::passwd(&s, &[&["-fdb"][..], args].concat());
        let (o, cy) = c.both();
        o.exited(0).stdout_is("");
        cy.exited(0).stdout_is("");
        let cyrus_banner = format!("\n{CMU_NOTICE}{CYRUS_VERSION}");
        assert!(cy.err().ends_with(&cyrus_banner), "{cy:?}");
        assert_eq!(
            o.err(),
            replace_once(
                &cy.err(),
                &cyrus_banner,
                &format!("\n{}", our_version("saslpasswd2"))
            ),
            "{}",
            d.ours
        );
    }
}

#[test]
fn passwd_appname_with_slash_exits_at_once() {
    let s = scratch();
    for args in [
        &["-a", "x/y", "-Z", "alice"][..],
        &["-a", "x/y"],
        &["-Z", "-ax/y", "alice", "bob"],
        &["-a", "/"],
    ] {
        let o = Call::passwd(&s, &[&["-fdb"][..], args].concat())
            .stdin("pw\n")
            .same();
        o.exited(1);
        assert!(o.err().ends_with("appname must not contain /\n"), "{o:?}");
    }
}

#[test]
fn passwd_long_options_are_ours() {
    let d = declared("long-options");
    let s = scratch();
    let (o, c) = Call::passwd(&s, &["-fdb", "--help"]).both();
    o.exited(0).stderr_is("");
    assert!(o.out().contains("Usage: saslpasswd2"), "{}: {o:?}", d.ours);
    c.exited(1).stdout_is("");
    assert!(
        c.err().starts_with(
            "saslpasswd2: invalid option -- '-'\nsaslpasswd2: invalid option -- 'e'\n"
        ),
        "{}: {c:?}",
        d.cyrus
    );
    assert!(c.err().ends_with(PASSWD_USAGE));
}

/// An argument starting with `--` that names none of our long options is read as
/// Cyrus's glibc `getopt` reads it: a cluster of short options, `--foo` being `-`
/// (`invalid option -- '-'`) then `-f oo`. Same messages, usage and exit status.
#[test]
fn passwd_unknown_long_options_as_cyrus() {
    let s = scratch();
    for args in [
        &["--foo", "-f", "db", "u"][..],
        &["-f", "db", "u", "--foo"],
        &["-f", "db", "--nope", "u"],
        // An ambiguous abbreviation (--scram, --scram-iterations) is not ours either.
        &["-f", "db", "--s", "u"],
        &["-f", "db", "--=x", "u"],
    ] {
        let o = same_but_notice(&Call::passwd(&s, args).stdin("pw"));
        o.exited(1).stdout_is("");
        assert!(
            o.err().starts_with("saslpasswd2: invalid option -- '-'\n"),
            "{args:?}: {o:?}"
        );
        assert!(o.err().ends_with(&format!("\n{PASSWD_USAGE}")), "{o:?}");
    }
    // `--version` is `-`, then `-v`: the version, exit 0, for both.
    let d = declared("version-banner");
    let (o, c) = Call::passwd(&s, &["-f", "db", "--version", "u"]).both();
    o.exited(0).stdout_is("");
    c.exited(0).stdout_is("");
    assert_eq!(
        o.err(),
        replace_once(
            &c.err(),
            &format!("\n{CMU_NOTICE}{CYRUS_VERSION}"),
            &format!("\n{}", our_version("saslpasswd2"))
        ),
        "{}",
        d.ours
    );
    assert!(o.err().starts_with("saslpasswd2: invalid option -- '-'\n"));
    // Nothing was written (not even `oo`, the file `--foo` named).
    for who in [Impl::Ours, Impl::Cyrus] {
        assert_eq!(fs::read_dir(s.work(who)).unwrap().count(), 0, "{who:?}");
    }
}

#[test]
fn passwd_format_prefix() {
    let d = declared("format-prefix");
    let s = scratch();
    let (o, c) = Call::passwd(&s, &["-f", "bdb:db", "-u", "r", "alice"])
        .stdin("pw\n")
        .both();
    o.exited(0);
    c.exited(0);
    assert!(s.at(Impl::Ours, "db").exists() && !s.at(Impl::Ours, "bdb:db").exists());
    assert!(s.at(Impl::Cyrus, "bdb:db").exists(), "{}", d.cyrus);
    assert!(!s.at(Impl::Cyrus, "db").exists());
    // `./bdb:db` is a plain path for both.
    let (o, c) = Call::passwd(&s, &["-f", "./bdb:x", "-u", "r", "alice"])
        .stdin("pw\n")
        .both();
    o.exited(0);
    c.exited(0);
    assert!(s.at(Impl::Ours, "bdb:x").exists());
}

// ---------------------------------------------------------------------------------
// saslpasswd2: reading the password

#[test]
fn passwd_pipe_mode_reads_one_line() {
    let s = scratch();
    // -p or not, on a non-tty stdin; with and without the trailing newline.
    for (i, (flags, input)) in [
        (&["-p"][..], &b"secret\n"[..]),
        (&[], b"secret\n"),
        (&["-p", "-c"], b"secret"),
        (&["-c"], b"secret"),
    ]
    .into_iter()
    .enumerate()
    {
        let db = format!("db{i}");
        let mut args = vec!["-f", &db, "-u", "example.org"];
        args.extend_from_slice(flags);
        args.push("alice");
        let o = Call::passwd(&s, &args).stdin(input).both();
        o.0.exited(0).stdout_is("");
        o.1.exited(0).stdout_is("");
        // Ours notes nothing for a new file; Cyrus prints nothing.
        assert_eq!((o.0.err(), o.1.err()), (String::new(), String::new()));
        same_db_but_cyrus_otp(&s, &db, &[("alice", "example.org", b"secret")]);
        let ours = dump(&s.at(Impl::Ours, &db));
        assert_eq!(
            user_password(&ours, "alice", "example.org").unwrap(),
            b"secret"
        );
    }
}

#[test]
fn passwd_more_than_one_line() {
    let d = declared("password-one-line");
    let s = scratch();
    for (input, cyrus_stores) in [(&b"pw\n\n"[..], &b"pw\n"[..]), (b"pw1\npw2\n", b"pw1\npw2")] {
        let (o, c) = Call::passwd(&s, &["-f", "db", "-u", "r", "alice"])
            .stdin(input)
            .both();
        o.exited(0).stderr_is("");
        c.exited(0).stderr_is("");
        let ours = dump(&s.at(Impl::Ours, "db"));
        let cyrus = dump(&s.at(Impl::Cyrus, "db"));
        assert_eq!(
            user_password(&ours, "alice", "r").unwrap(),
            input.split(|&b| b == b'\n').next().unwrap(),
            "{}",
            d.ours
        );
        assert_eq!(
            user_password(&cyrus, "alice", "r").unwrap(),
            cyrus_stores,
            "{}",
            d.cyrus
        );
    }
}

#[test]
fn passwd_crlf_nul_and_too_long() {
    let s = scratch();
    let big = vec![b'a'; 1_000_000];
    let cases: [(&str, Vec<u8>, &str, Vec<u8>); 3] = [
        (
            "password-crlf",
            b"pw\r\n".to_vec(),
            "saslpasswd2: the password ends with a carriage return (a CRLF line ending?); \
             refusing to store it\n",
            b"pw\r".to_vec(),
        ),
        (
            "password-nul",
            b"a\0b\n".to_vec(),
            "saslpasswd2: the password contains a NUL byte (Cyrus would store only the part \
             before it)\n",
            b"a".to_vec(),
        ),
        (
            "password-too-long",
            big.clone(),
            "saslpasswd2: the password is too long: 1000000 bytes (the maximum is 1023)\n",
            big[..2048].to_vec(),
        ),
    ];
    for (i, (id, input, ours_err, cyrus_stores)) in cases.into_iter().enumerate() {
        let d = declared(id);
        let db = format!("db{i}");
        let (o, c) = Call::passwd(&s, &["-p", "-f", &db, "-u", "r", "alice"])
            .stdin(&input)
            .both();
        o.exited(7).stdout_is("").stderr_is(ours_err);
        assert!(
            !s.at(Impl::Ours, &db).exists(),
            "{}: nothing written",
            d.ours
        );
        c.exited(0).stdout_is("").stderr_is("");
        let cyrus = dump(&s.at(Impl::Cyrus, &db));
        assert_eq!(
            user_password(&cyrus, "alice", "r").unwrap(),
            cyrus_stores,
            "{}",
            d.cyrus
        );
    }
    // The longest accepted password is stored whole by both.
    let pw = vec![b'x'; 1023];
    let mut line = pw.clone();
    line.push(b'\n');
    let o = Call::passwd(&s, &["-p", "-f", "long", "-u", "r", "alice"])
        .stdin(&line)
        .same();
    o.exited(0);
    same_db_but_cyrus_otp(&s, "long", &[("alice", "r", &pw)]);
}

#[test]
fn passwd_empty_null_and_closed_stdin() {
    let s = scratch();
    for input in [
        Input::Bytes(Vec::new()),
        Input::Bytes(b"\n".to_vec()),
        Input::Null,
    ] {
        Call::passwd(&s, &["-p", "-f", "db", "-u", "r", "alice"])
            .input(input)
            .same()
            .exited(7)
            .stdout_is("")
            .stderr_is("saslpasswd2: invalid parameter supplied\n");
    }
    for flags in [&["-p"][..], &[]] {
        let mut args = flags.to_vec();
        args.extend(["-f", "db", "-u", "r", "alice"]);
        Call::passwd(&s, &args)
            .input(Input::Closed)
            .same()
            .exited(1)
            .stdout_is("")
            .stderr_is("saslpasswd2: Bad file descriptor\n");
    }
    for who in [Impl::Ours, Impl::Cyrus] {
        assert!(!s.at(who, "db").exists(), "{who:?} wrote a database");
    }
    // -d reads nothing, so a closed stdin does not matter.
    Call::passwd(&s, &["-p", "-c", "-f", "db", "-u", "r", "bob"])
        .stdin("pw")
        .same()
        .exited(0);
    Call::passwd(&s, &["-d", "-f", "db", "-u", "r", "bob"])
        .input(Input::Closed)
        .same()
        .exited(0)
        .stderr_is("");
}

// ---------------------------------------------------------------------------------
// saslpasswd2: what -c, -d and -n write

#[test]
fn passwd_create_flag_changes_nothing() {
    let s = scratch();
    for (flags, pw) in [(&["-c"][..], "one"), (&[], "two"), (&["-c"], "three")] {
        let mut args = flags.to_vec();
        args.extend(["-f", "db", "-u", "r", "alice"]);
        Call::passwd(&s, &args)
            .stdin(format!("{pw}\n"))
            .same()
            .exited(0);
        same_db_but_cyrus_otp(&s, "db", &[("alice", "r", pw.as_bytes())]);
    }
}

#[test]
fn passwd_noplain() {
    let d = declared("noplain-scram");
    let s = scratch();
    // A new user.
    Call::passwd(&s, &["-c", "-n", "-f", "db", "-u", "r", "alice"])
        .stdin("pw\n")
        .same()
        .exited(0)
        .stderr_is("");
    let mut ours = dump(&s.at(Impl::Ours, "db"));
    let mut cyrus = dump(&s.at(Impl::Cyrus, "db"));
    let scram = take_scram(&mut ours, "alice", "r", b"pw");
    assert_eq!((scram.hash(), scram.iterations()), (ScramHash::Sha1, 4096));
    assert!(ours.is_empty(), "{}: {:?}", d.ours, props(&ours));
    take_otp(&mut cyrus, "alice", "r", b"pw");
    assert!(cyrus.is_empty(), "{}: {:?}", d.cyrus, props(&cyrus));

    // An existing user with a plaintext password: ours removes it, Cyrus keeps it.
    Call::passwd(&s, &["-f", "db2", "-u", "r", "bob"])
        .stdin("old\n")
        .same()
        .exited(0);
    Call::passwd(&s, &["-n", "-f", "db2", "-u", "r", "bob"])
        .stdin("new\n")
        .same()
        .exited(0)
        .stderr_is("");
    let mut ours = dump(&s.at(Impl::Ours, "db2"));
    let mut cyrus = dump(&s.at(Impl::Cyrus, "db2"));
    take_scram(&mut ours, "bob", "r", b"new");
    assert!(ours.is_empty(), "{}: {:?}", d.ours, props(&ours));
    take_otp(&mut cyrus, "bob", "r", b"new");
    assert_eq!(props(&cyrus), ["bob@r: userPassword"], "{}", d.cyrus);
    assert_eq!(user_password(&cyrus, "bob", "r").unwrap(), b"old");

    // -d -n is -d.
    for db in ["db", "db2"] {
        Call::passwd(&s, &["-d", "-n", "-f", db, "-u", "r", "alice"])
            .same()
            .exited(0);
    }
    assert!(dump(&s.at(Impl::Ours, "db")).is_empty());
    assert!(dump(&s.at(Impl::Cyrus, "db")).is_empty());
}

/// `u@r`'s OTP secret in `db`.
fn otp_of(db: &Db) -> OtpSecret {
    OtpSecret::parse(&db[&key("u", "r", OTP_SECRET)]).unwrap()
}

/// As Cyrus's, our saslpasswd2 writes an OTP secret afresh on every change: with the
/// algorithm `otp_mda` names (default md5) whatever the old one used, and a new
/// sequence (499) even when the password is the same.
#[test]
fn passwd_otp_secret_as_cyrus() {
    use sasldb::account::secrets::OtpAlgorithm;
    use sasldb::account::secrets::otp::otp_chain;
    let s = scratch();
    s.conf("sha1", "mech_list: otp\notp_mda: sha1\n");
    // u@r: password "pw", an md5 OTP secret already used down to sequence 10.
    let seed_db = s.path("seed");
    let chain = otp_chain(OtpAlgorithm::Md5, b"seed42", b"pw", 10).unwrap();
    let otp = format!(
        "md5\t0010\tseed42\t{}\t00000000000000000000",
        crate::support::hex(&chain)
    );
    write_bdb(
        &seed_db,
        &[
            (key("u", "r", USER_PASSWORD), b"pw".to_vec()),
            (key("u", "r", OTP_SECRET), otp.into_bytes()),
        ],
    );
    let before = OtpSecret::parse(&dump(&seed_db)[&key("u", "r", OTP_SECRET)]).unwrap();
    assert_eq!(
        (before.sequence(), before.verify_password(b"pw").unwrap()),
        (10, true)
    );
    s.copy_to_both(&seed_db, "db");

    // (args, password, the algorithm both must write)
    let steps: [(&[&str], &str, OtpAlgorithm); 4] = [
        // The same password: a new sequence.
        (&[], "pw", OtpAlgorithm::Md5),
        // otp_mda: sha1 over an md5 secret.
        (&["-a", "sha1"], "new", OtpAlgorithm::Sha1),
        // The same password again, otp_mda still sha1.
        (&["-a", "sha1"], "new", OtpAlgorithm::Sha1),
        // The default (md5) over a sha1 secret.
        (&[], "newer", OtpAlgorithm::Md5),
    ];
    for (i, (flags, pw, alg)) in steps.into_iter().enumerate() {
        let mut args = vec!["-p"];
        args.extend_from_slice(flags);
        args.extend(["-f", "db", "-u", "r", "u"]);
        let call = Call::passwd(&s, &args).stdin(pw);
        let o = if i == 0 {
            same_but_group_note(&call, "db")
        } else {
            call.same()
        };
        o.exited(0).stdout_is("");
        let mut sides = Vec::new();
        for who in [Impl::Ours, Impl::Cyrus] {
            let db = dump(&s.at(who, "db"));
            let otp = otp_of(&db);
            assert_eq!(
                (otp.algorithm(), otp.sequence()),
                (alg, 499),
                "step {i}, {who:?}"
            );
            assert!(
                otp.verify_password(pw.as_bytes()).unwrap(),
                "step {i} {who:?}"
            );
            assert_eq!(user_password(&db, "u", "r").unwrap(), pw.as_bytes());
            sides.push(props(&db));
        }
        assert_eq!(sides[0], sides[1], "step {i}");
    }
}

/// Two users added by Cyrus, copied to both sides; then `-d` of each.
#[test]
fn passwd_delete() {
    let s = scratch();
    let seed = s.path("seed");
    for (u, pw) in [("alice", "a-pw"), ("bob", "b-pw")] {
        let o = Call::passwd(&s, &["-f", seed.to_str().unwrap(), "-u", "r", u])
            .stdin(pw)
            .run(Impl::Cyrus);
        o.exited(0);
    }
    s.copy_to_both(&seed, "db");

    // A missing user: both exit 0 silently and change nothing.
    for who in ["nobody", "alice@other", "ALICE"] {
        Call::passwd(&s, &["-d", "-f", "db", "-u", "r", who])
            .same()
            .exited(0)
            .stdout_is("")
            .stderr_is("");
    }
    let before = dump(&seed);
    assert_eq!(dump(&s.at(Impl::Cyrus, "db")), before);
    assert_eq!(dump(&s.at(Impl::Ours, "db")), before);

    // userPassword and OTP only: both delete everything of alice.
    same_but_group_note(
        &Call::passwd(&s, &["-d", "-f", "db", "-u", "r", "alice"]),
        "db",
    )
    .exited(0);
    let ours = dump(&s.at(Impl::Ours, "db"));
    assert_eq!(ours, dump(&s.at(Impl::Cyrus, "db")));
    assert_eq!(
        props(&ours),
        ["bob@r: cmusaslsecretOTP", "bob@r: userPassword"]
    );
}

#[test]
fn passwd_delete_removes_every_property() {
    let d = declared("delete-everything");
    let s = scratch();
    let seed = s.path("seed");
    let scram = ScramSecret::generate(ScramHash::Sha1, b"pw", 4096).unwrap();
    write_bdb(
        &seed,
        &[
            (key("carol", "r", USER_PASSWORD), b"pw".to_vec()),
            (key("carol", "r", AUTH_PASSWORD), scram.encode().to_vec()),
            (key("carol", "r", "customProp"), b"x".to_vec()),
            (key("dave", "r", USER_PASSWORD), b"d".to_vec()),
        ],
    );
    s.copy_to_both(&seed, "db");
    same_but_group_note(
        &Call::passwd(&s, &["-d", "-f", "db", "-u", "r", "carol"]),
        "db",
    )
    .exited(0);
    let ours = dump(&s.at(Impl::Ours, "db"));
    assert_eq!(props(&ours), ["dave@r: userPassword"], "{}", d.ours);
    let cyrus = dump(&s.at(Impl::Cyrus, "db"));
    assert_eq!(
        props(&cyrus),
        [
            "carol@r: authPassword",
            "carol@r: customProp",
            "dave@r: userPassword"
        ],
        "{}",
        d.cyrus
    );
}

#[test]
fn passwd_delete_missing_database() {
    let d = declared("delete-missing-db");
    let s = scratch();
    let (o, c) = Call::passwd(&s, &["-d", "-f", "db", "-u", "r", "alice"]).both();
    o.exited(1)
        .stdout_is("")
        .stderr_is("saslpasswd2: generic failure: db: no such database\n");
    assert!(!s.at(Impl::Ours, "db").exists(), "{}", d.ours);
    c.exited(0).stdout_is("").stderr_is("");
    assert!(dump(&s.at(Impl::Cyrus, "db")).is_empty(), "{}", d.cyrus);
}

// ---------------------------------------------------------------------------------
// saslpasswd2: user and realm

#[test]
fn passwd_userid_splitting() {
    let s = scratch();
    let h = host();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["a@b@c"], "a", "b@c"),
        (
            &["-u", "EXPLICIT.realm", "vic@other.realm"],
            "vic",
            "other.realm",
        ),
        (&["-u", "EXPLICIT.realm", "bob"], "bob", "EXPLICIT.realm"),
        (&["-u", "", "bob"], "bob", &h),
        (&["bob"], "bob", &h),
        (&["-u", "r", "ünï@çødé"], "ünï", "çødé"),
    ];
    for (i, (args, user, realm)) in cases.iter().enumerate() {
        let db = format!("db{i}");
        let mut a = vec!["-f", &db];
        a.extend_from_slice(args);
        Call::passwd(&s, &a)
            .stdin("pw\n")
            .same()
            .exited(0)
            .stderr_is("");
        same_db_but_cyrus_otp(&s, &db, &[(user, realm, b"pw")]);
        assert_eq!(
            props(&dump(&s.at(Impl::Ours, &db))),
            [format!("{user}@{realm}: userPassword")]
        );
    }
}

#[test]
fn passwd_empty_user_or_realm() {
    let d = declared("empty-names");
    let s = scratch();
    let at_host = format!("@{}: userPassword", host());
    let cases: &[(&str, &str, &str)] = &[
        ("", "the user name is empty", &at_host),
        (
            "@onlyrealm",
            "the user name is empty",
            "@onlyrealm: userPassword",
        ),
        (
            "trail@",
            "the realm after @ is empty",
            "trail@: userPassword",
        ),
    ];
    for (i, (userid, ours_err, cyrus_stored)) in cases.iter().enumerate() {
        let db = format!("db{i}");
        let (o, c) = Call::passwd(&s, &["-f", &db, userid]).stdin("pw\n").both();
        o.exited(7)
            .stdout_is("")
            .stderr_is(&format!("saslpasswd2: {ours_err}\n"));
        assert!(!s.at(Impl::Ours, &db).exists(), "{}", d.ours);
        c.exited(0).stderr_is("");
        let mut cyrus = dump(&s.at(Impl::Cyrus, &db));
        cyrus.retain(|k, _| !k.ends_with(OTP_SECRET.as_bytes()));
        assert_eq!(props(&cyrus), [*cyrus_stored], "{}", d.cyrus);
    }
}

// ---------------------------------------------------------------------------------
// saslpasswd2: config files and databases

#[test]
fn passwd_config_errors() {
    let d = declared("config-error-detail");
    let s = scratch();
    s.conf("bad", "# fine\nsasldb_path: x\nno colon here\n");
    for args in [
        &["-a", "bad", "-f", "db", "alice"][..],
        &["-a", "bad", "-d", "-f", "db", "alice"],
    ] {
        let (o, c) = Call::passwd(&s, args).stdin("pw\n").both();
        c.exited(100)
            .stdout_is("")
            .stderr_is("saslpasswd2: error when parsing configuration file\n");
        o.exited(100).stdout_is("");
        let conf = s.path("conf/bad.conf");
        assert!(
            o.err().starts_with(&format!(
                "saslpasswd2: error when parsing configuration file: {}, line 3: ",
                conf.display()
            )),
            "{}: {o:?}",
            d.ours
        );
        assert_eq!(o.err().lines().count(), 1);
    }
    // A missing <appname>.conf is no error for either.
    Call::passwd(&s, &["-a", "nonesuch", "-f", "db", "-u", "r", "alice"])
        .stdin("pw\n")
        .same()
        .exited(0);
}

#[test]
fn passwd_sasldb_path_from_config() {
    let s = scratch();
    // Relative: each side writes in its own work directory.
    s.conf("app", "sasldb_path: appdb\n");
    Call::passwd(&s, &["-a", "app", "-u", "r", "alice"])
        .stdin("pw\n")
        .same()
        .exited(0)
        .stderr_is("");
    same_db_but_cyrus_otp(&s, "appdb", &[("alice", "r", b"pw")]);
    // -f wins over the config.
    Call::passwd(&s, &["-a", "app", "-f", "other", "-u", "r", "bob"])
        .stdin("pw\n")
        .same()
        .exited(0);
    same_db_but_cyrus_otp(&s, "other", &[("bob", "r", b"pw")]);
    same_db_but_cyrus_otp(&s, "appdb", &[("alice", "r", b"pw")]);
}

/// Without -f, and with an empty -f (Cyrus's callback then answers "" and the config
/// is not consulted), both write the compiled default /etc/sasldb2: here an overlay
/// in a private mount namespace, so the real file is never touched.
#[test]
fn passwd_default_path_is_etc_sasldb2() {
    let d = declared("write-path");
    let real = Path::new("/etc/sasldb2");
    let before = fs::read(real).ok();
    let mtime = fs::metadata(real).and_then(|m| m.modified()).ok();
    let s = scratch();
    s.conf("app", "sasldb_path: appdb\n");
    for (args, user) in [
        (&["-u", "r", "alice"][..], "alice"),
        (&["-a", "app", "-f", "", "-u", "r", "bob"], "bob"),
    ] {
        let (o, c) = Call::passwd(&s, args).stdin("pw\n").overlay_etc().both();
        o.exited(0).stdout_is("");
        c.exited(0).stdout_is("").stderr_is("");
        // Debian's /etc/sasldb2 is root:sasl 0660; ours hands it to postfix.
        assert!(
            o.err().is_empty() || o.err().starts_with("saslpasswd2: /etc/sasldb2: "),
            "{}: {o:?}",
            d.ours
        );
        for who in [Impl::Ours, Impl::Cyrus] {
            let upper = s.path(&format!("etc-{who:?}/u/sasldb2"));
            let db = dump(&upper);
            assert_eq!(
                user_password(&db, user, "r").as_deref(),
                Some(&b"pw"[..]),
                "{who:?}: {:?}",
                props(&db)
            );
            assert!(
                !s.at(who, "appdb").exists(),
                "{who:?} used the config's path"
            );
        }
    }
    assert_eq!(fs::read(real).ok(), before, "the real /etc/sasldb2 changed");
    assert_eq!(fs::metadata(real).and_then(|m| m.modified()).ok(), mtime);
}

/// Files neither tool can use: both exit 1 with `generic failure`; ours says why.
#[test]
fn passwd_unusable_databases() {
    let d = declared("generic-failure-reason");
    let before = declared("check-before-read");
    let s = scratch();
    let good = fixture("bdb/cyrus-2.1.28-debian.db");
    let bytes = fs::read(&good).unwrap();
    let mut rng = crate::support::Rng::new(7);
    let files: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        (
            "truncated",
            Some(bytes[..5000].to_vec()),
            "is not a multiple of the page size",
        ),
        ("random", Some(rng.bytes(8192)), "not a sasldb database"),
        ("text", Some(b"hello\n".to_vec()), "not a sasldb database"),
        ("dir", None, "not a regular file"),
        ("nodir/db", None, "No such file or directory"),
    ];
    for (name, content, reason) in &files {
        for who in [Impl::Ours, Impl::Cyrus] {
            match (content, *name) {
                (Some(b), _) => fs::write(s.at(who, name), b).unwrap(),
                (None, "dir") => fs::create_dir(s.at(who, name)).unwrap(),
                _ => {}
            }
        }
        let call = Call::passwd(&s, &["-f", name, "-u", "r", "alice"]).stdin("pw\n");
        let (o, c) = call.both();
        o.exited(1).stdout_is("");
        assert!(
            o.err().starts_with("saslpasswd2: generic failure: "),
            "{}: {o:?}",
            d.ours
        );
        assert!(o.err().contains(reason), "{name}: {o:?}");
        assert_eq!(o.err().lines().count(), 1);
        c.exited(1).stdout_is("");
        assert!(
            c.err().ends_with("saslpasswd2: generic failure\n"),
            "{}: {c:?}",
            d.cyrus
        );

        // With an empty password Cyrus never gets to the database.
        let (o, c) = call.clone().input(Input::Null).both();
        o.exited(1);
        assert!(
            o.err().starts_with("saslpasswd2: generic failure: "),
            "{}",
            before.ours
        );
        c.exited(7)
            .stderr_is("saslpasswd2: invalid parameter supplied\n");

        // Nothing was changed.
        for who in [Impl::Ours, Impl::Cyrus] {
            if let Some(b) = content {
                assert_eq!(&fs::read(s.at(who, name)).unwrap(), b, "{who:?} {name}");
            }
        }
    }
}

/// With nothing to write (`-n`, and a `mech_list` naming no mechanism that keeps a
/// secret), Cyrus never notices that libdb cannot read the file: it exits 0 having
/// written nothing. Ours refuses the file, as it does whatever the change.
#[test]
fn passwd_nothing_to_write_unreadable_database() {
    let d = declared("nothing-to-write-unreadable");
    let s = scratch();
    s.conf("saslpasswd", "mech_list: plain login\n");
    let garbage = crate::support::Rng::new(18).bytes(5000);
    for who in [Impl::Ours, Impl::Cyrus] {
        fs::write(s.at(who, "db"), &garbage).unwrap();
    }
    let (o, c) = Call::passwd(&s, &["-p", "-n", "-f", "db", "-u", "r", "u"])
        .stdin("pw")
        .both();
    c.exited(0).stdout_is("");
    assert!(
        !c.err().is_empty() && c.err().lines().all(|l| l.starts_with("BDB")),
        "{}: {c:?}",
        d.cyrus
    );
    o.exited(1).stdout_is("").stderr_is(
        "saslpasswd2: generic failure: db: not a sasldb database (unrecognised magic bytes)\n",
    );
    // Something to write (no -n): Cyrus fails too.
    let (o2, c2) = Call::passwd(&s, &["-p", "-f", "db", "-u", "r", "u"])
        .stdin("pw")
        .both();
    c2.exited(1);
    assert!(
        c2.err().ends_with("saslpasswd2: generic failure\n"),
        "{c2:?}"
    );
    assert_eq!(o2, o);
    for who in [Impl::Ours, Impl::Cyrus] {
        assert_eq!(fs::read(s.at(who, "db")).unwrap(), garbage, "{who:?}");
    }
}

#[test]
fn passwd_unreadable_database_as_nobody() {
    let d = declared("generic-failure-reason");
    let s = scratch();
    Call::passwd(&s, &["-f", "db", "-u", "r", "alice"])
        .stdin("pw\n")
        .same()
        .exited(0);
    for who in [Impl::Ours, Impl::Cyrus] {
        fs::set_permissions(s.at(who, "db"), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (o, c) = Call::passwd(&s, &["-f", "db", "-u", "r", "bob"])
        .stdin("pw\n")
        .run_as_nobody()
        .both();
    c.exited(1)
        .stdout_is("")
        .stderr_is("saslpasswd2: generic failure\n");
    o.exited(1).stdout_is("");
    // Ours refuses before reading: it could not keep the file's owner either.
    assert!(
        o.err().starts_with("saslpasswd2: generic failure: db: "),
        "{}: {o:?}",
        d.ours
    );
    assert_eq!(o.err().lines().count(), 1);
    let (o, c) = Call::list(&s, &["db"]).run_as_nobody().both();
    c.exited(0).stdout_is("").stderr_is("listusers failed\n");
    o.exited(1).stdout_is("");
    assert!(o.err().starts_with("listusers failed: "), "{o:?}");
}

/// A zero-byte file is an empty database for both; libdb complains on Cyrus's
/// stderr, ours says nothing about it.
#[test]
fn passwd_zero_byte_database() {
    declared("write-path");
    let d = declared("zero-byte-file");
    let s = scratch();
    for who in [Impl::Ours, Impl::Cyrus] {
        fs::write(s.at(who, "db"), b"").unwrap();
    }
    let (o, c) = Call::passwd(&s, &["-f", "db", "-u", "r", "alice"])
        .stdin("pw\n")
        .both();
    c.exited(0)
        .stdout_is("")
        .stderr_is("BDB0004 fop_read_meta: db: unexpected file type or format\n");
    // The file was root:root (our umask); ours hands it to the postfix group.
    o.exited(0)
        .stdout_is("")
        .stderr_is("saslpasswd2: db: group changed from root to postfix (mode 640)\n");
    assert!(!o.err().contains("BDB"), "{}", d.ours);
    same_db_but_cyrus_otp(&s, "db", &[("alice", "r", b"pw")]);
    // Both files are whole databases now, listed alike.
    for who in [Impl::Ours, Impl::Cyrus] {
        let p = s.at(who, "db");
        Call::list(&s, &[p.to_str().unwrap()])
            .same()
            .exited(0)
            .stderr_is("");
    }
}

/// Ownership and the lock file, the one place where they are the point.
#[test]
fn passwd_write_path() {
    use std::os::unix::fs::MetadataExt;
    let d = declared("write-path");
    let s = scratch();
    Call::passwd(&s, &["-f", "db", "-u", "r", "alice"])
        .stdin("pw\n")
        .same()
        .exited(0)
        .stderr_is("");
    let m = fs::metadata(s.at(Impl::Ours, "db")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (0, postfix_gid().as_raw(), 0o640),
        "{}",
        d.ours
    );
    assert!(s.at(Impl::Ours, "db.lock").exists(), "{}", d.ours);
    let m = fs::metadata(s.at(Impl::Cyrus, "db")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "{}", d.cyrus);
    assert!(!s.at(Impl::Cyrus, "db.lock").exists());
    let mut names: Vec<_> = fs::read_dir(s.work(Impl::Cyrus))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["db"]);
}

/// Not root: both write a file owned by the caller; ours warns on stderr that it
/// could not enforce root:postfix.
#[test]
fn passwd_as_nobody() {
    use std::os::unix::fs::MetadataExt;
    declared("write-path");
    let s = scratch();
    for who in [Impl::Ours, Impl::Cyrus] {
        let dir = s.at(who, "nb");
        fs::create_dir(&dir).unwrap();
        nix::unistd::chown(&dir, Some(65534.into()), Some(65534.into())).unwrap();
    }
    let (o, c) = Call::passwd(&s, &["-f", "nb/db", "-u", "r", "alice"])
        .stdin("pw\n")
        .run_as_nobody()
        .both();
    c.exited(0).stdout_is("").stderr_is("");
    o.exited(0).stdout_is("").stderr_is(
        "saslpasswd2: not running as root: ownership not enforced (nb/db kept as \
         nobody:nogroup, mode 640)\n",
    );
    for who in [Impl::Ours, Impl::Cyrus] {
        let m = fs::metadata(s.at(who, "nb/db")).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{who:?}");
    }
    same_db_but_cyrus_otp(&s, "nb/db", &[("alice", "r", b"pw")]);
    for who in [Impl::Ours, Impl::Cyrus] {
        let p = s.at(who, "nb/db");
        Call::list(&s, &[p.to_str().unwrap()])
            .run_as_nobody()
            .same()
            .exited(0);
    }
}

// ---------------------------------------------------------------------------------
// sasldblistusers2

#[test]
fn list_command_line() {
    let s = scratch();
    let fx = fixture("bdb/cyrus-2.1.28-debian.db");
    let fx = fx.to_str().unwrap();
    // The listing itself.
    let listing = Call::list(&s, &[fx]).same();
    listing.exited(0).stderr_is("");
    assert!(!listing.stdout.is_empty());
    for args in [
        &["-f", fx][..],
        &["-f", "/nonexistent", "-f", fx],
        &["-f", "/nonexistent", &format!("-f{fx}")],
    ] {
        let o = Call::list(&s, args).same();
        assert_eq!(o, listing, "{args:?}");
    }
    // Usage errors: same texts but for the notice.
    for (args, bad) in [
        (&["-h"][..], false),
        (&["-h", fx], false),
        (&["-x"], true),
        (&["-x", "-h"], false),
        (&["-h", "-x"], true),
        (&["-f"], true),
        (&["-f", fx, "extra"], false),
        (&[fx, "extra"], false),
        (&["-"], false),
        (&["-?"], true),
        (&["--help"], true),
    ] {
        let o = same_but_notice(&Call::list(&s, args));
        o.exited(1).stdout_is("");
        let tail = if bad {
            format!("\n{LIST_USAGE}Unrecognized command line option\n")
        } else {
            format!("\n{LIST_USAGE}")
        };
        assert!(o.err().ends_with(&tail), "{args:?}: {o:?}");
    }
    // -v, also after a bad option.
    let d = declared("version-banner");
    for args in [&["-v"][..], &["-x", "-v", "-y"], &["-f", fx, "-v"]] {
        let (o, c) = Call::list(&s, args).both();
        o.exited(0).stdout_is("");
        c.exited(0).stdout_is("");
        assert_eq!(
            o.err(),
            replace_once(
                &c.err(),
                &format!("\n{CMU_NOTICE}{CYRUS_VERSION}"),
                &format!("\n{}", our_version("sasldblistusers2"))
            ),
            "{}",
            d.ours
        );
    }
}

/// Like Cyrus's, our lister reads sasldblistusers.conf: a file that cannot be parsed
/// stops it (exit 1; ours names the file and line); a valid one changes nothing, its
/// sasldb_path included (the path given, or /etc/sasldb2, wins).
#[test]
fn list_reads_its_config() {
    let d = declared("list-config-error-detail");
    let s = scratch();
    let fx = fixture("bdb/cyrus-2.1.28-debian.db");
    let fx = fx.to_str().unwrap();
    let listing = Call::list(&s, &[fx]).same();
    listing.exited(0).stderr_is("");
    let conf = s.path("conf/sasldblistusers.conf");

    s.conf("sasldblistusers", "bad line\n");
    for args in [&[fx][..], &["-f", fx]] {
        let (o, c) = Call::list(&s, args).both();
        c.exited(1)
            .stdout_is("")
            .stderr_is("Couldn't initialize server API\n");
        o.exited(1).stdout_is("");
        assert!(
            o.err().starts_with(&format!(
                "Couldn't initialize server API: {}, line 1: ",
                conf.display()
            )),
            "{}: {o:?}",
            d.ours
        );
        assert_eq!(o.err().lines().count(), 1, "{o:?}");
    }
    // Usage errors and -v come first, as for Cyrus.
    let o = same_but_notice(&Call::list(&s, &["-x", fx]));
    o.exited(1);
    let (o, c) = Call::list(&s, &["-v"]).both();
    o.exited(0);
    c.exited(0);

    // Valid files change nothing: not even their sasldb_path.
    for text in [
        "sasldb_path: /nonexistent/sasldb2\n",
        "mech_list: nonexistent\nauxprop_plugin: nonexistent\n",
        "# only a comment\n",
    ] {
        s.conf("sasldblistusers", text);
        let o = Call::list(&s, &[fx]).same();
        assert_eq!(o, listing, "{text:?}");
    }
    // A directory in its place reads as empty, for both.
    fs::remove_file(&conf).unwrap();
    fs::create_dir(&conf).unwrap();
    assert_eq!(Call::list(&s, &[fx]).same(), listing);
}

#[test]
fn list_fixtures_identically() {
    let s = scratch();
    let mut n = 0;
    for e in fs::read_dir(fixture("bdb")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "db") {
            let o = Call::list(&s, &["-f", p.to_str().unwrap()]).same();
            o.exited(0).stderr_is("");
            assert!(o.stdout.len() > 10, "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 6);
}

#[test]
fn list_unreadable_databases() {
    let d = declared("list-exit-status");
    let s = scratch();
    let good = fs::read(fixture("bdb/bulk300-p65536.db")).unwrap();
    fs::write(s.path("empty"), b"").unwrap();
    fs::write(s.path("trunc"), &good[..good.len() - 1000]).unwrap();
    fs::write(s.path("random"), crate::support::Rng::new(3).bytes(65536)).unwrap();
    fs::write(s.path("text"), "user: pw\n").unwrap();
    fs::create_dir(s.path("dir")).unwrap();
    for name in ["missing", "empty", "trunc", "random", "text", "dir"] {
        let p = s.path(name);
        let (o, c) = Call::list(&s, &[p.to_str().unwrap()]).both();
        c.exited(0).stdout_is("");
        assert!(
            c.err().ends_with("listusers failed\n"),
            "{}: {c:?}",
            d.cyrus
        );
        o.exited(1).stdout_is("");
        assert!(
            o.err()
                .starts_with(&format!("listusers failed: {}", p.display())),
            "{}: {o:?}",
            d.ours
        );
        assert_eq!(o.err().lines().count(), 1, "{o:?}");
    }
    // An empty but valid database (Cyrus's -d creates one): nothing, exit 0.
    Call::passwd(&s, &["-d", "-f", "empty-db", "alice"])
        .run(Impl::Cyrus)
        .exited(0);
    let p = s.at(Impl::Cyrus, "empty-db");
    Call::list(&s, &[p.to_str().unwrap()])
        .same()
        .exited(0)
        .stdout_is("")
        .stderr_is("");
}

#[test]
fn list_malformed_key() {
    let d = declared("list-malformed-key");
    let s = scratch();
    let db = s.path("db");
    write_bdb(
        &db,
        &[
            (key("good", "realm", USER_PASSWORD), b"pw".to_vec()),
            (b"badkey\0onlyonenul".to_vec(), b"x".to_vec()),
        ],
    );
    let call = Call::list(&s, &[db.to_str().unwrap()]).timeout(Duration::from_millis(1500));
    let o = call.run(Impl::Ours);
    o.exited(0).stdout_is("good@realm: userPassword\n");
    assert_eq!(
        o.err(),
        "sasldblistusers2: skipping a malformed key (malformed key: expected 2 NUL \
         separators, found 1): badkey\\0onlyonenul\n",
        "{}",
        d.ours
    );
    let c = call.run(Impl::Cyrus);
    assert!(c.timed_out, "{}: {c:?}", d.cyrus);
}

// ---------------------------------------------------------------------------------
// Cross-reading

#[test]
fn cross_listing_and_updates() {
    let s = scratch();
    // The same users, written by each tool.
    let users = [
        ("alice", "pw-a"),
        ("bob@example.com", "pw-b"),
        ("carol@b@c", "pw-c"),
        ("dave", "pw-d"),
        ("ünï@çødé", "pw-u"),
    ];
    for (u, pw) in users {
        Call::passwd(&s, &["-f", "db", "-u", "r", u])
            .stdin(pw)
            .same()
            .exited(0);
    }
    for who in [Impl::Ours, Impl::Cyrus] {
        let p = s.at(who, "db");
        // Each file is listed identically by both listers.
        let o = Call::list(&s, &[p.to_str().unwrap()]).same();
        o.exited(0).stderr_is("");
        assert_eq!(
            o.out().lines().count(),
            if who == Impl::Ours { 5 } else { 10 }
        );
        // And both libraries read the same records.
        assert_eq!(dump(&p), ours_read(&p), "{who:?}");
    }

    // Cyrus adds and deletes users in the file we wrote.
    let ours_db = s.at(Impl::Ours, "db");
    let ours_db = ours_db.to_str().unwrap();
    for (args, pw) in [
        (&["-f", ours_db, "-u", "r", "erin"][..], "pw-e"),
        (&["-f", ours_db, "-u", "r", "-d", "bob@example.com"], ""),
        (&["-f", ours_db, "-u", "r", "alice"], "new-a"),
    ] {
        Call::passwd(&s, args).stdin(pw).run(Impl::Cyrus).exited(0);
    }
    run_ok(Command::new(peer("db_verify")).arg("-q").arg(ours_db));
    let mut after = ours_read(Path::new(ours_db));
    assert_eq!(after, dump(Path::new(ours_db)));
    take_otp(&mut after, "erin", "r", b"pw-e");
    take_otp(&mut after, "alice", "r", b"new-a");
    assert_eq!(
        props(&after),
        [
            "alice@r: userPassword",
            "carol@b@c: userPassword",
            "dave@r: userPassword",
            "erin@r: userPassword",
            "ünï@çødé: userPassword",
        ]
    );
    assert_eq!(user_password(&after, "alice", "r").unwrap(), b"new-a");
    let o = Call::list(&s, &[ours_db]).same();
    o.exited(0).stderr_is("");

    // We update the file Cyrus wrote; Cyrus still lists it like we do.
    let cy_db = s.at(Impl::Cyrus, "db");
    let cy_db = cy_db.to_str().unwrap();
    Call::passwd(&s, &["-f", cy_db, "-u", "r", "dave"])
        .stdin("new-d")
        .run(Impl::Ours)
        .exited(0);
    run_ok(Command::new(peer("db_verify")).arg("-q").arg(cy_db));
    let o = Call::list(&s, &[cy_db]).same();
    o.exited(0);
    let mut db = dump(Path::new(cy_db));
    // dave's existing OTP secret was recomputed for the new password.
    take_otp(&mut db, "dave", "r", b"new-d");
    assert_eq!(user_password(&db, "dave", "r").unwrap(), b"new-d");
}

/// A 120-user file Cyrus made (libdb's split history: 6 buckets and a chain), changed
/// the same way by each saslpasswd2: the same records, each file listed identically by
/// both listers, but our rebuilt file (a table sized for its records) lists in
/// another order than Cyrus's own file. The order is the file's, not the history's.
#[test]
fn listing_order_of_a_rebuilt_file() {
    let d = declared("listing-order");
    let s = scratch();
    let seed = s.path("seed");
    let seed_s = seed.to_str().unwrap();
    for i in 0..120 {
        Call::passwd(
            &s,
            &["-p", "-u", "example.net", "-f", seed_s, &format!("user{i}")],
        )
        .stdin(format!("pw{i}"))
        .run(Impl::Cyrus)
        .exited(0);
    }
    assert_eq!(dump(&seed).len(), 240);
    s.copy_to_both(&seed, "db");
    same_but_group_note(
        &Call::passwd(&s, &["-p", "-u", "example.net", "-f", "db", "user109"]).stdin("x"),
        "db",
    )
    .exited(0);
    // The same records (the OTP secrets of user109 are fresh on both sides).
    let mut ours = dump(&s.at(Impl::Ours, "db"));
    let mut cyrus = dump(&s.at(Impl::Cyrus, "db"));
    take_otp(&mut ours, "user109", "example.net", b"x");
    take_otp(&mut cyrus, "user109", "example.net", b"x");
    assert_eq!(ours, cyrus);
    // Each file: both listers agree.
    let mut listings = Vec::new();
    for who in [Impl::Ours, Impl::Cyrus] {
        let p = s.at(who, "db");
        let o = Call::list(&s, &[p.to_str().unwrap()]).same();
        o.exited(0).stderr_is("");
        listings.push(o.out());
    }
    let sorted = |l: &str| {
        let mut v: Vec<&str> = l.lines().collect();
        v.sort_unstable();
        v.join("\n")
    };
    assert_eq!(sorted(&listings[0]), sorted(&listings[1]));
    assert_eq!(listings[0].lines().count(), 240);
    // The two files: another order.
    assert_ne!(listings[0], listings[1], "{} / {}", d.ours, d.cyrus);
    let ours_len = fs::metadata(s.at(Impl::Ours, "db")).unwrap().len();
    let cyrus_len = fs::metadata(s.at(Impl::Cyrus, "db")).unwrap().len();
    assert_ne!(ours_len, cyrus_len, "{}", d.ours);
}

// ---------------------------------------------------------------------------------
// Realms from Postfix's main.cf

fn postconf_values(dir: &Path) -> (String, String) {
    let out = run_ok(Command::new(peer("postconf")).arg("-c").arg(dir).args([
        "-xh",
        "smtpd_sasl_local_domain",
        "myhostname",
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut l = text.lines();
    (l.next().unwrap().to_owned(), l.next().unwrap().to_owned())
}

#[test]
fn realm_from_main_cf() {
    let d = declared("default-realm");
    for (main_cf, want) in [
        (
            "mydomain = example.com\nmyhostname = mail.$mydomain\n",
            "mail.example.com",
        ),
        (
            "mydomain = example.com\nmyhostname = Mail.$mydomain\n\
             smtpd_sasl_local_domain = $mydomain\n",
            "example.com",
        ),
        ("myhostname = MX.Example.NET\n", "mx.example.net"),
    ] {
        let s = scratch();
        s.main_cf(main_cf);
        let (local, myhostname) = postconf_values(&s.path("mail"));
        let expected = if local.is_empty() {
            myhostname.to_ascii_lowercase()
        } else {
            local
        };
        assert_eq!(expected, want, "postconf on {main_cf:?}");
        let (o, c) = Call::passwd(&s, &["-f", "db", "alice"])
            .stdin("pw\n")
            .both();
        o.exited(0).stderr_is("");
        c.exited(0).stderr_is("");
        assert_eq!(
            props(&dump(&s.at(Impl::Ours, "db"))),
            [format!("alice@{want}: userPassword")],
            "{}",
            d.ours
        );
        let mut cy = dump(&s.at(Impl::Cyrus, "db"));
        take_otp(&mut cy, "alice", &host(), b"pw");
        assert_eq!(
            props(&cy),
            [format!("alice@{}: userPassword", host())],
            "{}",
            d.cyrus
        );
        // -u and user@realm still win.
        Call::passwd(&s, &["-f", "db2", "-u", "given", "alice"])
            .stdin("pw\n")
            .same()
            .exited(0);
        Call::passwd(&s, &["-f", "db2", "bob@x.org"])
            .stdin("pw\n")
            .same()
            .exited(0);
        same_db_but_cyrus_otp(
            &s,
            "db2",
            &[("alice", "given", b"pw"), ("bob", "x.org", b"pw")],
        );
    }
}

// ---------------------------------------------------------------------------------
// The terminal

/// A pseudo-terminal pair; both ends close-on-exec, so no other test's child
/// inherits them.
struct Pty {
    master: nix::pty::PtyMaster,
    slave_name: String,
}

impl Pty {
    fn open() -> Pty {
        use nix::fcntl::OFlag;
        let master =
            nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
        nix::pty::grantpt(&master).unwrap();
        nix::pty::unlockpt(&master).unwrap();
        let slave_name = nix::pty::ptsname_r(&master).unwrap();
        Pty { master, slave_name }
    }

    fn open_slave(&self) -> OwnedFd {
        use nix::fcntl::{OFlag, open};
        open(
            self.slave_name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap()
    }

    fn echo_on(&self) -> bool {
        let t = nix::sys::termios::tcgetattr(self.master.as_fd()).unwrap();
        t.local_flags.contains(nix::sys::termios::LocalFlags::ECHO)
    }

    /// Reads what is available within `wait`; `None` once every slave is closed.
    fn read_some(&self, wait: Duration) -> Option<Vec<u8>> {
        let mut pfd = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        if n <= 0 {
            return Some(Vec::new());
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(&self.master, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => None,
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) => panic!("read pty: {e}"),
        }
    }
}

/// One step of a terminal session.
enum Step<'a> {
    /// Wait until the output so far contains this text, then until echo is off.
    Prompt(&'a str),
    /// Type this.
    Type(&'a [u8]),
}

/// The result of a terminal session.
struct Session {
    transcript: Vec<u8>,
    status: std::process::ExitStatus,
    /// Whether the terminal had echo on after the program ended.
    echo_after: bool,
}

/// Runs `call` on a new terminal (its controlling tty, as stdin, stdout and
/// stderr) and plays `steps`.
fn tty_session(call: &Call, who: Impl, steps: &[Step]) -> Session {
    let pty = Pty::open();
    let slave = pty.open_slave();
    let mut cmd = call.command(who);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // closes our copies of the slave
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut transcript = Vec::new();
    let mut open = true;
    for step in steps {
        match step {
            Step::Prompt(p) => loop {
                let seen = String::from_utf8_lossy(&transcript).contains(p);
                if seen && !pty.echo_on() {
                    break;
                }
                assert!(
                    open && Instant::now() < deadline,
                    "{who:?}: no prompt {p:?}; got {:?}",
                    String::from_utf8_lossy(&transcript)
                );
                match pty.read_some(Duration::from_millis(10)) {
                    Some(b) => transcript.extend(b),
                    None => open = false,
                }
            },
            Step::Type(b) => {
                nix::unistd::write(&pty.master, b).unwrap();
            }
        }
    }
    while open && Instant::now() < deadline {
        match pty.read_some(Duration::from_millis(20)) {
            Some(b) => transcript.extend(b),
            None => open = false,
        }
    }
    let (status, timed_out) = wait_for(&mut child, Duration::from_secs(5));
    assert!(!timed_out, "{who:?} did not finish");
    // The terminal settings outlive the program as long as the master is open.
    let slave = pty.open_slave();
    let t = nix::sys::termios::tcgetattr(slave.as_fd()).unwrap();
    Session {
        transcript,
        status,
        echo_after: t.local_flags.contains(nix::sys::termios::LocalFlags::ECHO),
    }
}

fn tty_both(call: &Call, steps: &[Step]) -> (Session, Session) {
    (
        tty_session(call, Impl::Ours, steps),
        tty_session(call, Impl::Cyrus, steps),
    )
}

const PROMPT1: &str = "Password: ";
const PROMPT2: &str = "Again (for verification): ";

#[test]
fn tty_prompts_match() {
    let s = scratch();
    let call = Call::passwd(&s, &["-f", "db", "-u", "r", "alice"]);
    let (o, c) = tty_both(
        &call,
        &[
            Step::Prompt(PROMPT1),
            Step::Type(b"s3cr3t-typed\n"),
            Step::Prompt(PROMPT2),
            Step::Type(b"s3cr3t-typed\n"),
        ],
    );
    for x in [&o, &c] {
        assert_eq!(x.status.code(), Some(0));
        assert!(x.echo_after);
    }
    assert_eq!(
        String::from_utf8_lossy(&o.transcript),
        "Password: \r\nAgain (for verification): \r\n"
    );
    assert_eq!(o.transcript, c.transcript);
    same_db_but_cyrus_otp(&s, "db", &[("alice", "r", b"s3cr3t-typed")]);

    // A mismatch.
    let (o, c) = tty_both(
        &call,
        &[
            Step::Prompt(PROMPT1),
            Step::Type(b"first-try\n"),
            Step::Prompt(PROMPT2),
            Step::Type(b"second-try\n"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.transcript),
        "Password: \r\nAgain (for verification): \r\n\
         saslpasswd2: passwords don't match; aborting\r\n"
    );
    assert_eq!(o.transcript, c.transcript);
    assert_eq!((o.status.code(), c.status.code()), (Some(7), Some(7)));
    assert!(o.echo_after && c.echo_after);
    // Unchanged.
    same_db_but_cyrus_otp(&s, "db", &[("alice", "r", b"s3cr3t-typed")]);

    // Ctrl-D after typing: a newline is printed for the missing one.
    let (o, c) = tty_both(
        &call,
        &[
            Step::Prompt(PROMPT1),
            Step::Type(b"abc\x04"),
            Step::Prompt(PROMPT2),
            Step::Type(b"abc\n"),
        ],
    );
    assert_eq!(o.transcript, c.transcript);
    assert_eq!(
        String::from_utf8_lossy(&o.transcript),
        "Password: \r\nAgain (for verification): \r\n"
    );
    assert_eq!((o.status.code(), c.status.code()), (Some(0), Some(0)));
    same_db_but_cyrus_otp(&s, "db", &[("alice", "r", b"abc")]);
}

#[test]
fn tty_pipe_flag_and_delete() {
    let s = scratch();
    // -p on a terminal: no prompt, echo stays on (the password is echoed).
    let call = Call::passwd(&s, &["-p", "-f", "db", "-u", "r", "alice"]);
    let (o, c) = tty_both(&call, &[Step::Type(b"pp\n")]);
    assert_eq!(o.transcript, b"pp\r\n");
    assert_eq!(o.transcript, c.transcript);
    assert_eq!((o.status.code(), c.status.code()), (Some(0), Some(0)));
    same_db_but_cyrus_otp(&s, "db", &[("alice", "r", b"pp")]);
    // -d asks nothing.
    let (o, c) = tty_both(
        &Call::passwd(&s, &["-d", "-f", "db", "-u", "r", "alice"]),
        &[],
    );
    assert_eq!((o.transcript.len(), c.transcript.len()), (0, 0));
    assert_eq!((o.status.code(), c.status.code()), (Some(0), Some(0)));
}

#[test]
fn tty_interrupt_restores_echo() {
    let d = declared("tty-signal");
    let s = scratch();
    let call = Call::passwd(&s, &["-f", "db", "-u", "r", "alice"]);
    for prompt in [PROMPT1, PROMPT2] {
        let mut steps = vec![Step::Prompt(PROMPT1)];
        if prompt == PROMPT2 {
            steps.extend([Step::Type(b"s3cr3t-typed\n"), Step::Prompt(PROMPT2)]);
        }
        steps.push(Step::Type(b"xy\x03"));
        let (o, c) = tty_both(&call, &steps);
        assert_eq!(o.transcript, c.transcript);
        assert!(!String::from_utf8_lossy(&o.transcript).contains("abc"));
        assert_eq!(o.status.signal(), Some(libc::SIGINT), "{}", d.ours);
        assert_eq!(c.status.signal(), Some(libc::SIGINT));
        assert!(o.echo_after, "{}", d.ours);
        assert!(!c.echo_after, "{}", d.cyrus);
    }
    for who in [Impl::Ours, Impl::Cyrus] {
        assert!(!s.at(who, "db").exists());
    }
}

// ---------------------------------------------------------------------------------
// Secrets never stale, proven with libsasl's server

/// Sets `user`'s password with our saslpasswd2 (`extra` flags, realm [`REALM`]).
fn ours_set(s: &Scratch, db: &Path, extra: &[&str], user: &str, pw: &str) {
    let mut args = extra.to_vec();
    args.extend(["-f", db.to_str().unwrap(), "-u", REALM, user]);
    let o = Call::passwd(s, &args)
        .stdin(format!("{pw}\n"))
        .run(Impl::Ours);
    o.exited(0);
    // Nothing but the note on a file Cyrus made (root:root).
    assert!(
        o.err().is_empty() || o.err().contains(": group changed from root to postfix"),
        "{o:?}"
    );
}

fn scram_ok(s: &Scratch, db: &Path, user: &str, pw: &str) {
    if let Err(e) = scram_login(s.root(), db, "SCRAM-SHA-1", user, pw) {
        panic!("SCRAM-SHA-1 login of {user} with {pw:?} failed: {e}");
    }
}

fn scram_refused(s: &Scratch, db: &Path, user: &str, pw: &str) -> String {
    scram_login(s.root(), db, "SCRAM-SHA-1", user, pw).expect_err("the login must be refused")
}

fn otp_ok(s: &Scratch, db: &Path, user: &str, pw: &str) {
    let (_, r) = otp_login(s.root(), db, user, pw, &[]);
    if let Err(e) = r {
        panic!("OTP login of {user} with {pw:?} failed: {e}");
    }
}

fn otp_refused(s: &Scratch, db: &Path, user: &str, pw: &str) {
    let (_, r) = otp_login(s.root(), db, user, pw, &[]);
    let e = r.expect_err("the OTP login must be refused");
    assert!(e.contains("authentication failure"), "{e}");
}

#[test]
fn login_scram_after_our_noplain_changes() {
    let d = declared("secrets-never-stale");
    let s = scratch();
    let db = s.path("db");
    ours_set(&s, &db, &["-n"], "alice", "old-pw");
    assert_eq!(props(&dump(&db)), [format!("alice@{REALM}: authPassword")]);
    scram_ok(&s, &db, "alice", "old-pw");
    ours_set(&s, &db, &["-n"], "alice", "new-pw");
    scram_ok(&s, &db, "alice", "new-pw");
    let e = scram_refused(&s, &db, "alice", "old-pw");
    assert!(e.contains("authentication failure"), "{}: {e}", d.ours);
    // Without -n, the existing authPassword is recomputed too.
    ours_set(&s, &db, &[], "alice", "third-pw");
    scram_ok(&s, &db, "alice", "third-pw");
    scram_refused(&s, &db, "alice", "new-pw");
    strip_user_password(&db, "alice");
    scram_ok(&s, &db, "alice", "third-pw");
    scram_refused(&s, &db, "alice", "new-pw");
}

#[test]
fn login_otp_after_our_change() {
    let s = scratch();
    let db = s.path("db");
    ours_set(&s, &db, &["--otp", "--scram"], "bob", "old-pw");
    otp_ok(&s, &db, "bob", "old-pw");
    scram_ok(&s, &db, "bob", "old-pw");
    // No --otp, no --scram: both existing secrets follow the password.
    ours_set(&s, &db, &[], "bob", "new-pw");
    otp_ok(&s, &db, "bob", "new-pw");
    otp_refused(&s, &db, "bob", "old-pw");
    strip_user_password(&db, "bob");
    scram_ok(&s, &db, "bob", "new-pw");
    scram_refused(&s, &db, "bob", "old-pw");
}

/// Deletes `user`'s userPassword with our library, so that libsasl's SCRAM server
/// must use the authPassword (it prefers a userPassword when there is one).
fn strip_user_password(db: &Path, user: &str) {
    let mut txn = Transaction::begin(&Location::path_only(db), &WriteOptions::default()).unwrap();
    txn.delete(&Key::new(user, REALM, USER_PASSWORD).unwrap());
    txn.commit().unwrap();
}

/// Cyrus leaves a stale authPassword behind: a user made with `-n` and SCRAM on,
/// whose password Cyrus then changes with `-n` and SCRAM off, still logs in with the
/// old password (the property the declared difference is about).
#[test]
fn login_cyrus_leaves_a_stale_authpassword() {
    let d = declared("secrets-never-stale");
    let s = scratch();
    s.conf("scramgen", "scram_secret_generate: yes\n");
    let db = s.path("db");
    let dbs = db.to_str().unwrap();
    Call::passwd(
        &s,
        &["-n", "-a", "scramgen", "-f", dbs, "-u", REALM, "carol"],
    )
    .stdin("old-pw\n")
    .run(Impl::Cyrus)
    .exited(0);
    scram_ok(&s, &db, "carol", "old-pw");
    Call::passwd(&s, &["-n", "-f", dbs, "-u", REALM, "carol"])
        .stdin("new-pw\n")
        .run(Impl::Cyrus)
        .exited(0);
    scram_ok(&s, &db, "carol", "old-pw");
    let e = scram_refused(&s, &db, "carol", "new-pw");
    assert!(e.contains("authentication failure"), "{}: {e}", d.cyrus);
    // The OTP secret did follow the password.
    otp_ok(&s, &db, "carol", "new-pw");
}

/// Users Cyrus made with `scram_secret_generate: yes` (with and without `-n`), whose
/// password we change with no SCRAM configured and no --scram: the authPassword is
/// recomputed (proven with the userPassword removed), the OTP secret too.
#[test]
fn login_cyrus_scram_user_changed_by_us() {
    let d = declared("secrets-never-stale");
    let s = scratch();
    s.conf("scramgen", "scram_secret_generate: yes\n");
    for (i, noplain) in [false, true].into_iter().enumerate() {
        let db = s.path(&format!("db{i}"));
        let dbs = db.to_str().unwrap();
        let mut args = vec!["-a", "scramgen", "-f", dbs, "-u", REALM, "carol"];
        if noplain {
            args.insert(0, "-n");
        }
        Call::passwd(&s, &args)
            .stdin("old-pw\n")
            .run(Impl::Cyrus)
            .exited(0);
        scram_ok(&s, &db, "carol", "old-pw");
        otp_ok(&s, &db, "carol", "old-pw");
        ours_set(&s, &db, &[], "carol", "new-pw");

        let mut recs = dump(&db);
        let scram = take_scram(&mut recs, "carol", REALM, b"new-pw");
        assert!(!scram.verify_password(b"old-pw").unwrap(), "{}", d.ours);
        take_otp(&mut recs, "carol", REALM, b"new-pw");
        assert_eq!(user_password(&recs, "carol", REALM).unwrap(), b"new-pw");
        otp_ok(&s, &db, "carol", "new-pw");
        otp_refused(&s, &db, "carol", "old-pw");
        scram_ok(&s, &db, "carol", "new-pw");
        scram_refused(&s, &db, "carol", "old-pw");
        // Only the authPassword left for SCRAM: still the new password only.
        strip_user_password(&db, "carol");
        scram_ok(&s, &db, "carol", "new-pw");
        let e = scram_refused(&s, &db, "carol", "old-pw");
        assert!(e.contains("authentication failure"), "{}: {e}", d.ours);
    }
}

/// With a `mech_list` that names neither SCRAM nor OTP, a password change deletes
/// the user's SCRAM and OTP secrets; Cyrus leaves them, and its OTP secret still
/// accepts the old password.
#[test]
fn login_secrets_removed_when_not_wanted() {
    let d = declared("secrets-never-stale");
    let s = scratch();
    s.conf("plainonly", "mech_list: plain login\n");
    let seed = s.path("seed");
    ours_set(&s, &seed, &["--scram", "--otp"], "dora", "old-pw");
    for who in [Impl::Ours, Impl::Cyrus] {
        let db = s.path(&format!("db-{who:?}"));
        fs::copy(&seed, &db).unwrap();
        scram_ok(&s, &db, "dora", "old-pw");
        Call::passwd(
            &s,
            &[
                "-a",
                "plainonly",
                "-f",
                db.to_str().unwrap(),
                "-u",
                REALM,
                "dora",
            ],
        )
        .stdin("new-pw\n")
        .run(who)
        .exited(0);
        // SCRAM reads the new userPassword either way.
        scram_ok(&s, &db, "dora", "new-pw");
        scram_refused(&s, &db, "dora", "old-pw");
        let props = props(&dump(&db));
        match who {
            Impl::Ours => {
                assert_eq!(props, [format!("dora@{REALM}: userPassword")], "{}", d.ours);
                let (_, r) = otp_login(s.root(), &db, "dora", "old-pw", &[]);
                r.expect_err("no OTP secret is left");
            }
            Impl::Cyrus => {
                assert_eq!(props.len(), 3, "{props:?}");
                otp_ok(&s, &db, "dora", "old-pw");
            }
        }
    }
}
