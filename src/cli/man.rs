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
as Cyrus prints it; for LMDB sorted by key). Values are never printed.
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
Usage error, or the database could not be opened or read (the message follows
\fBlistusers failed:\fR on standard error).
"#,
    ),
    (
        "FILES",
        r#"
.TP
/etc/sasldb2
The database listed when no path is given.
"#,
    ),
    (
        "COMPATIBILITY",
        r#"
Arguments, output lines and their order match Cyrus SASL 2.1.28's
\fBsasldblistusers2\fR. Deliberate differences:
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
