//! Man pages (section 8), rendered from each tool's clap description plus the
//! sections clap cannot know (exit status, environment, files, compatibility).
//!
//! `man/*.8` in the repository are these renderings; a test fails when they drift,
//! and `UPDATE_MAN=1 cargo test man_pages` rewrites them.

use std::io::Write;

/// A man page: file name and roff text.
pub struct Page {
    /// File name under `man/`.
    pub file: &'static str,
    /// The roff source.
    pub text: Vec<u8>,
}

/// Renders a page from a clap command and extra `(TITLE, roff body)` sections.
pub fn render(cmd: clap::Command, extra: &[(&str, &str)]) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("System Manager's Manual")
        .source(format!("sasldb {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    man.render_title(&mut out).expect("render");
    man.render_name_section(&mut out).expect("render");
    man.render_synopsis_section(&mut out).expect("render");
    man.render_description_section(&mut out).expect("render");
    man.render_options_section(&mut out).expect("render");
    man.render_subcommands_section(&mut out).expect("render");
    for (title, body) in extra {
        let _ = writeln!(out, ".SH {title}");
        out.extend_from_slice(body.trim_start().as_bytes());
        if !body.ends_with('\n') {
            out.push(b'\n');
        }
    }
    out
}

/// Renders a page for a command with subcommands: the global options, then a
/// COMMANDS section with each subcommand's synopsis, description and options, then
/// the extra sections.
pub fn render_with_commands(cmd: clap::Command, extra: &[(&str, &str)]) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Manager's Manual")
        .source(format!("sasldb {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    man.render_title(&mut out).expect("render");
    man.render_name_section(&mut out).expect("render");
    man.render_synopsis_section(&mut out).expect("render");
    man.render_description_section(&mut out).expect("render");
    man.render_options_section(&mut out).expect("render");
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let full = format!("{name} {}", sub.get_name());
        let _ = writeln!(out, ".SS {}", roff_text(&full));
        let mut synopsis = format!("\\fB{}\\fR", roff_text(&full));
        let has_options = sub
            .get_arguments()
            .any(|a| !a.is_positional() && !a.is_hide_set());
        if has_options {
            synopsis.push_str(" [\\fIoptions\\fR]");
        }
        for a in sub.get_positionals() {
            let v = a
                .get_value_names()
                .and_then(|v| v.first().map(|s| s.to_string()))
                .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
            let v = format!("\\fI{}\\fR", roff_text(&v));
            if a.is_required_set() {
                synopsis.push_str(&format!(" {v}"));
            } else {
                synopsis.push_str(&format!(" [{v}]"));
            }
        }
        let _ = writeln!(out, "{synopsis}");
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = writeln!(out, ".br\n{}", roff_text(&about));
        if has_options || sub.get_positionals().next().is_some() {
            let sub_man = clap_mangen::Man::new(sub.clone().disable_help_flag(true));
            let mut opts = Vec::new();
            sub_man.render_options_section(&mut opts).expect("render");
            // Keep the option list, without its .SH heading.
            let text = String::from_utf8(opts).expect("roff is UTF-8");
            let body = text
                .split_once(".SH OPTIONS\n")
                .map(|(_, b)| b)
                .unwrap_or(&text);
            out.extend_from_slice(body.as_bytes());
        }
    }
    for (title, body) in extra {
        let _ = writeln!(out, ".SH {title}");
        out.extend_from_slice(body.trim_start().as_bytes());
        if !body.ends_with('\n') {
            out.push(b'\n');
        }
    }
    out
}

/// Escapes text for roff: backslashes, hyphens, and a leading dot or quote.
fn roff_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '.' | '\'' if i == 0 => {
                out.push_str("\\&");
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The codes of `sasldb check`'s findings, each with its meaning.
fn check_findings() -> String {
    let mut out = String::from(
        "Each finding of \\fBsasldb check\\fR carries one of these codes (\\fB\\-\\-json\\fR: \\fBcode\\fR, with its \\fBmeaning\\fR):\n",
    );
    for c in crate::doctor::Code::all() {
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            roff_text(c.id()),
            roff_text(c.meaning())
        ));
    }
    out
}

/// Every man page this package ships.
pub fn pages() -> Vec<Page> {
    let mut saslpasswd2 = SASLPASSWD2_SECTIONS.to_vec();
    saslpasswd2.insert(3, ("COMPATIBILITY", super::saslpasswd2::COMPATIBILITY));
    vec![
        Page {
            file: "saslpasswd2.8",
            text: render(super::saslpasswd2::command(), &saslpasswd2),
        },
        Page {
            file: "sasldblistusers2.8",
            text: render(super::listusers::command(), LISTUSERS_SECTIONS),
        },
        Page {
            file: "sasldb.8",
            text: {
                let findings = check_findings();
                let mut sections = sasldb_sections();
                sections.push(("CHECK FINDINGS", &findings));
                render_with_commands(super::sasldb::args::command(), &sections)
            },
        },
    ]
}

const SASLPASSWD2_SECTIONS: &[(&str, &str)] = &[
    (
        "EXIT STATUS",
        r#"
.TP
0
Success, including \fB\-d\fR of a user that does not exist (as Cyrus).
.TP
1
Usage error, \fB\-a\fR containing \fB/\fR, standard input unreadable, or the database
cannot be opened, read or written (\fBgeneric failure:\fR and the reason).
.TP
7
Bad password: empty, containing NUL, ending in CR, longer than 1023 bytes; the two
passwords typed differ; or a bad user name or realm.
.TP
100
The application's SASL configuration file cannot be parsed.
"#,
    ),
    (
        "ENVIRONMENT",
        r#"
.TP
SASL_CONF_PATH
Colon-separated directories searched for \fIappname\fR.conf (honoured like Cyrus: only
when the real and effective user and group ids match).
.TP
MAIL_CONFIG
Postfix configuration directory consulted for the default realm (default /etc/postfix).
.TP
SASLDB_GROUP
Group owning the database when run as root (\fB\-\-group\fR wins; default postfix).
.TP
SASLDB_LOCK_TIMEOUT
Seconds to wait for another writer's lock (default 30).
.TP
SASLDB_ALLOW_UNSAFE_DIR
\fB1\fR lets root write a database whose directory (or a directory on its path) someone
else can write; by default that is refused (a symbolic link there is never followed).
"#,
    ),
    (
        "FILES",
        r#"
.TP
/etc/sasldb2
The default database.
.TP
\fIdatabase\fR.lock
The writers' lock file, next to the database (after following symlinks).
.TP
/etc/sasl2/\fIappname\fR.conf
The application's SASL configuration (\fBsasldb_path\fR, \fBscram_secret_generate\fR,
\fBscram_iteration_counter\fR, \fBotp_mda\fR, \fBmech_list\fR).
.TP
/etc/postfix/main.cf
Where the default realm comes from (through \fBpostconf\fR when installed).
"#,
    ),
    (
        "SEE ALSO",
        r#"
\fBsasldblistusers2\fR(8), \fBsasldb\fR(8), \fBpostconf\fR(1)
"#,
    ),
];

const LISTUSERS_SECTIONS: &[(&str, &str)] = &[
    (
        "OUTPUT",
        r#"
One line per stored property, \fIuser\fR@\fIrealm\fR: \fIproperty\fR, on standard
output, in the database's storage order (for Berkeley DB the order of libdb's cursor,
as Cyrus prints it; for LMDB sorted by key). Values are never printed. The order is the
file's, not the history's: a Berkeley DB file \fBsaslpasswd2\fR rebuilt may have another
number of hash buckets than the file Cyrus's \fBsaslpasswd2\fR would have left after the
same changes, and so another order (the same records); use \fBsasldb list\fR for a sorted
listing.
"#,
    ),
    (
        "EXIT STATUS",
        r#"
.TP
0
The database was listed (or \-v was given).
.TP
1
Usage error, sasldblistusers.conf cannot be parsed (\fBCouldn't initialize server
API:\fR and the reason), or the database could not be opened or read (the message follows
\fBlistusers failed:\fR on standard error).
"#,
    ),
    (
        "ENVIRONMENT",
        r#"
.TP
SASL_CONF_PATH
Colon-separated directories searched for sasldblistusers.conf (honoured like Cyrus: only
when the real and effective user and group ids match).
"#,
    ),
    (
        "FILES",
        r#"
.TP
/etc/sasldb2
The database listed when no path is given.
.TP
/etc/sasl2/sasldblistusers.conf
Cyrus SASL's configuration for this tool, read as Cyrus's tool reads it: a file that cannot
be parsed stops it (exit 1); its \fBsasldb_path\fR is ignored, as by Cyrus (the path
given, else /etc/sasldb2, is listed).
"#,
    ),
    (
        "COMPATIBILITY",
        r#"
Arguments, output lines and their order (for one and the same file) match Cyrus SASL
2.1.28's \fBsasldblistusers2\fR. Deliberate differences:
.IP \(bu 2
A sasldblistusers.conf that cannot be parsed stops the listing with exit status 1, as with
Cyrus, but \fBCouldn't initialize server API\fR is followed by the file, the line and what
is wrong with it.
.IP \(bu 2
A database that cannot be opened or read (missing, empty, truncated, corrupt, a
directory, unreadable) exits with status 1 and says why; Cyrus printed
\fBlistusers failed\fR and exited 0.
.IP \(bu 2
A malformed key (not exactly two NUL separators) is reported on standard error and
skipped; Cyrus looped forever on such a key. Keys over 32 KiB are listed instead of
silently ending the listing.
.IP \(bu 2
\fB\-f\fR also accepts \fIFORMAT\fR:\fIPATH\fR (bdb, lmdb, gdbm, sqlite) and
\fBpostgresql://\fR\fIUSER\fR\fB@\fR\fIHOST\fR\fB/\fR\fIDB\fR URLs (the password comes from
\fBPGPASSWORD\fR or \fB~/.pgpass\fR, never from the URL), and Berkeley DB
files are read without libdb.
.IP \(bu 2
The usage text and \fB\-v\fR do not print Carnegie Mellon University's attribution
notice, since this program contains none of its code; \fB\-v\fR names this package.
"#,
    ),
    (
        "SEE ALSO",
        r#"
\fBsaslpasswd2\fR(8), \fBsasldb\fR(8)
"#,
    ),
];

/// `sasldb(8)`'s sections, with `serve`'s before SEE ALSO.
fn sasldb_sections<'a>() -> Vec<(&'a str, &'a str)> {
    let v = SASLDB_SECTIONS.to_vec();
    #[cfg(feature = "serve")]
    let v = {
        let mut v = v;
        let at = v.len().saturating_sub(1);
        for (i, s) in crate::serve::MAN_SECTIONS.iter().enumerate() {
            v.insert(at + i, *s);
        }
        v
    };
    v
}

const SASLDB_SECTIONS: &[(&str, &str)] = &[
    (
        "REALMS",
        r#"
A user is \fIuser\fR@\fIrealm\fR. Names given without @ get the realm of \fB\-u\fR, else
the realm Postfix looks up for a login without @: \fBsmtpd_sasl_local_domain\fR when set,
else \fBmyhostname\fR lowercased (\fBsasldb realm\fR shows it and why). Listings and
exports filter with \fB\-\-only\-realm\fR \fIREALM\fR: \fB\-u\fR/\fB\-\-realm\fR is the
global default realm every command accepts, so it is not reused as a filter.
"#,
    ),
    (
        "EXIT STATUS",
        r#"
.TP
0
Success; \fBverify\fR: the password matches; \fBcheck\fR: no problems (information only).
.TP
1
Failure: the database cannot be read or written, bad input (nothing is written), a
refused operation; \fBverify\fR: wrong password; \fBcheck\fR: problems remain (after
\fB\-\-fix\fR: problems it could not repair).
.TP
2
\fBverify\fR: no such user, or the user has no secret a password can be checked against.
.TP
64
Command\-line usage error.
"#,
    ),
    (
        "ENVIRONMENT",
        r#"
.TP
MAIL_CONFIG
Postfix configuration directory (default /etc/postfix): main.cf for the default realm,
queue_directory, cyrus_sasl_config_path and smtpd_sasl_*; master.cf for the smtpd services
and their chroot column.
.TP
SASL_CONF_PATH
Colon\-separated directories searched for the \fB\-a\fR application's \fIappname\fR.conf
(Postfix's smtpd.conf is found through cyrus_sasl_config_path instead).
.TP
SASLDB_GROUP
Group owning the database (and the chroot copy) when run as root (\fB\-\-group\fR wins;
default postfix).
.TP
SASLDB_LOCK_TIMEOUT
Seconds to wait for another writer's lock (default 30).
.TP
SASLDB_ALLOW_UNSAFE_DIR
\fB1\fR lets root write a database whose directory (or a directory on its path) someone
else can write; by default that is refused (a symbolic link there is never followed).
"#,
    ),
    (
        "FILES",
        r#"
.TP
/etc/sasldb2
The default database.
.TP
\fIdatabase\fR.lock
The writers' lock file, next to the database (after following symlinks).
.TP
\fIdatabase\fR\-lock
LMDB's lock file; readers open it read\-write, so it is mode 0660 with the database's owner
and group.
.TP
/etc/postfix/main.cf, /etc/postfix/master.cf
Postfix's configuration (see MAIL_CONFIG).
.TP
\fIcyrus_sasl_config_path\fR/smtpd.conf
smtpd's SASL configuration: \fBsasldb_path\fR (default /etc/sasldb2) is the file smtpd opens.
.TP
/var/spool/postfix/etc/sasldb2
The copy a chrooted smtpd opens: \fIqueue_directory\fR followed by \fBsasldb_path\fR.
Postfix 3.0 and later run a service chrooted only when its master.cf chroot column is
\fBy\fR (Debian's master.cf says \fBy\fR for smtp). \fBsync\-chroot\fR writes it
atomically, root:postfix 0640, never readable by others.
"#,
    ),
    (
        "EXAMPLES",
        r#"
Import users (one \fIuser\fR@\fIrealm\fR:\fIpassword\fR per line), storing SCRAM secrets
only:
.PP
.nf
.RS
sasldb \-f /etc/sasldb2 import \-\-hashed\-only users.txt
.RE
.fi
.PP
Export everything, secrets included, and load it into another database:
.PP
.nf
.RS
sasldb export \-\-json \-\-with\-secrets \-o dump.json
sasldb \-f lmdb:/etc/sasl2/sasldb2 import \-\-json \-\-mode replace\-all dump.json
.RE
.fi
.PP
Check a password from a script (exit 0, 1 or 2):
.PP
.nf
.RS
printf '%s\en' "$pw" | sasldb verify alice@example.com
.RE
.fi
.PP
Move the users created with the container's hostname to the real domain:
.PP
.nf
.RS
sasldb rename\-realm 51686ed8d2b4 example.com
.RE
.fi
.PP
Find and repair permission problems and a stale chroot copy:
.PP
.nf
.RS
sasldb check \-\-fix
sasldb sync\-chroot
.RE
.fi
"#,
    ),
    (
        "SEE ALSO",
        r#"
\fBsaslpasswd2\fR(8), \fBsasldblistusers2\fR(8), \fBpostconf\fR(1), \fBmaster\fR(5)
"#,
    ),
];
