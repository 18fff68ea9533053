//! The command line of the `sasldb` admin tool: clap definitions only.
//!
//! The binary (`src/bin/sasldb/`) parses with [`Cli`] and runs each command through
//! library calls; the definitions live here so the man page (`man/sasldb.8`,
//! [`super::man`]) is rendered from the same source as `--help`.
//!
//! A note on realms: `-u/--realm` is the global default realm for names given
//! without `@` (as in saslpasswd2). Filtering a listing or an export by realm is
//! therefore `--only-realm R`: reusing `--realm` would make `sasldb -u example.com list`
//! silently filter instead of setting a default.

// The doc comments below are clap's help texts (`--help`, man page), written for a
// terminal: `[USER@]`, `<appname>` are not links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum, ValueHint};

/// Manage Cyrus SASL password databases (sasldb2).
///
/// Berkeley DB hash (read and written without libdb), LMDB, GDBM, SQLite and
/// PostgreSQL. Every change is made under a lock, atomically (a replaced file, or one
/// LMDB, SQLite or PostgreSQL transaction); as root a file is owned root:postfix, mode
/// 0640. Names without
/// @ get the realm Postfix uses for logins without @, so the users created here can
/// log in through Postfix. `sasldb check` finds what stands in the way of that
/// (permissions, realm, the copy a chrooted smtpd reads) and `--fix` repairs what is
/// safe to repair.
#[derive(Debug, Parser)]
#[command(name = "sasldb", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or
    /// postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never
    /// in the URL); default: sasldb_path from the -a application's config file, else
    /// /etc/sasldb2.
    #[arg(short = 'f', long = "file", value_name = "DB", value_hint = ValueHint::FilePath, global = true)]
    pub db: Option<OsString>,
    /// Realm for user names without @ (default: the realm Postfix looks up for a bare
    /// login: smtpd_sasl_local_domain, else myhostname).
    #[arg(short = 'u', long = "realm", value_name = "REALM", global = true)]
    pub realm: Option<String>,
    /// Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the
    /// SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a).
    #[arg(short = 'a', long = "appname", value_name = "APP", global = true)]
    pub appname: Option<String>,
    /// Group owning the database when run as root (default: $SASLDB_GROUP, else postfix).
    #[arg(long, value_name = "GROUP", global = true)]
    pub group: Option<String>,
    /// Directory for the temporary files large imports, listings, exports and realm
    /// changes sort through (default: the database's directory). They hold secrets:
    /// they have no name (or lose it at once), mode 0600, and vanish when the command
    /// ends, even if it is killed.
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath, global = true)]
    pub temp_dir: Option<PathBuf>,
    /// Bytes one sort holds in memory before it spills (for tests).
    #[arg(long, value_name = "BYTES", global = true, hide = true)]
    pub sort_memory: Option<usize>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Import users from a file or standard input, in one transaction.
    Import(ImportArgs),
    /// Export users (names only, or with --with-secrets their secrets) as JSON, CSV,
    /// or a Dovecot passwd-file.
    Export(ExportArgs),
    /// List users, one per line with their properties, sorted.
    List(ListArgs),
    /// Check a password; exit 0 if it matches, 1 if not, 2 if there is no such user.
    Verify(VerifyArgs),
    /// List the realms with their user counts.
    Realms(RealmsArgs),
    /// Move every user of a realm to another realm, atomically.
    RenameRealm(RenameRealmArgs),
    /// Delete every user of a realm, atomically.
    DeleteRealm(DeleteRealmArgs),
    /// Convert a database to another format (or file), in one transaction.
    Convert(ConvertArgs),
    /// Show the default realm and where it comes from.
    Realm,
    /// Create an empty database if there is none (with the ownership policy applied;
    /// for PostgreSQL, the sasldb table and its trigger).
    Init(InitArgs),
    /// Check the database, its permissions and Postfix's view of it (realm, smtpd's
    /// file, the chroot copy); exit 0 when clean, 1 when problems remain.
    Check(CheckArgs),
    /// Refresh the copy of the database inside Postfix's chroot, atomically
    /// (root:postfix 0640).
    SyncChroot(SyncChrootArgs),
    /// Serve authentication from the database in the foreground: the Dovecot
    /// auth-client protocol (Postfix smtpd_sasl_type = dovecot, Exim) and the
    /// saslauthd mux protocol (Cyrus libsasl pwcheck_method: saslauthd); --group names
    /// the group to run as with --user.
    #[cfg(feature = "serve")]
    Serve(crate::serve::args::ServeArgs),
    /// The DJB checkpassword interface (Dovecot passdb checkpassword): read
    /// login NUL password NUL from descriptor 3, run PROG if it is right; exit 1 if
    /// not, 111 on an internal error.
    #[cfg(feature = "serve")]
    Checkpassword(crate::serve::args::CheckpasswordArgs),
}

/// Import modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Add new users and update existing ones; other users stay.
    Upsert,
    /// Add new users; existing users are left exactly as they are.
    CreateOnly,
    /// Make the database hold exactly the input (other users are removed).
    ReplaceAll,
}

/// `sasldb import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Input file (`-` or nothing: standard input). Lines `user[@realm]:password` unless
    /// --csv or --json (or a .csv/.json file name) says otherwise.
    #[arg(value_hint = ValueHint::FilePath)]
    pub file: Option<OsString>,
    /// CSV input with a header naming the columns user, realm, password.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// JSON input: an array of {"user", "realm", "password"} objects (the shape
    /// `sasldb export --json --with-secrets` writes).
    #[arg(long)]
    pub json: bool,
    /// What happens to users already in the database.
    #[arg(long, value_enum, default_value_t = ModeArg::Upsert)]
    pub mode: ModeArg,
    /// Check everything and print the summary, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import the good entries even when some are rejected (by default nothing is
    /// written if any entry is bad).
    #[arg(long)]
    pub skip_bad: bool,
    /// Store no plaintext: a SCRAM authPassword instead of userPassword (hashed-only;
    /// the plaintext never reaches the disk).
    #[arg(short = 'n', long = "hashed-only")]
    pub hashed_only: bool,
    /// Also store a SCRAM authPassword next to userPassword.
    #[arg(long)]
    pub scram: bool,
    /// Also store an OTP secret (cmusaslsecretOTP).
    #[arg(long)]
    pub otp: bool,
    /// PBKDF2 iterations for SCRAM secrets (default: the config's
    /// scram_iteration_counter, else 4096).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub scram_iterations: Option<u32>,
    /// No progress bar, no summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeArg {
    /// {SHA512-CRYPT}
    Sha512Crypt,
    /// {SHA256-CRYPT}
    Sha256Crypt,
    /// {ARGON2ID}
    Argon2id,
    /// {PLAIN}: the password itself.
    Plain,
}

/// `sasldb export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// JSON (the default): one object per user.
    #[arg(long, group = "fmt")]
    pub json: bool,
    /// CSV: user,realm,password (with secrets) or user,realm,properties.
    #[arg(long, group = "fmt")]
    pub csv: bool,
    /// Dovecot passwd-file lines `user@realm:{SCHEME}hash` (needs --with-secrets).
    #[arg(long, group = "fmt")]
    pub dovecot: bool,
    /// Password scheme for --dovecot.
    #[arg(long, value_enum, default_value_t = SchemeArg::Sha512Crypt, requires = "dovecot")]
    pub scheme: SchemeArg,
    /// Include secrets (passwords, hashes). Without it only names and properties.
    #[arg(long)]
    pub with_secrets: bool,
    /// Only this realm.
    #[arg(long = "only-realm", value_name = "REALM")]
    pub only_realm: Option<String>,
    /// Write to this file (created mode 0600) instead of standard output.
    #[arg(short, long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
}

/// `sasldb list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only users of this realm.
    #[arg(long = "only-realm", value_name = "REALM")]
    pub only_realm: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `sasldb verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The user: `user` or `user@realm` (the first @ splits).
    pub user: String,
}

/// `sasldb realms`.
#[derive(Debug, Args)]
pub struct RealmsArgs {
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `sasldb rename-realm`.
#[derive(Debug, Args)]
pub struct RenameRealmArgs {
    /// The realm to rename.
    pub old: String,
    /// Its new name.
    pub new: String,
}

/// `sasldb delete-realm`.
#[derive(Debug, Args)]
pub struct DeleteRealmArgs {
    /// The realm whose users are deleted.
    pub realm: String,
    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(long)]
    pub yes: bool,
}

/// `sasldb convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Source database: PATH, FORMAT:PATH or postgresql://... URL.
    #[arg(value_hint = ValueHint::FilePath)]
    pub src: OsString,
    /// Destination: PATH or FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or a postgresql://
    /// URL. A new file without a prefix is Berkeley DB.
    #[arg(value_hint = ValueHint::FilePath)]
    pub dst: OsString,
    /// Replace a destination that already holds a database.
    #[arg(long)]
    pub force: bool,
    /// Skip (and report) malformed keys of the source instead of failing.
    #[arg(long)]
    pub skip_malformed: bool,
}

/// `sasldb init`.
#[derive(Debug, Args)]
pub struct InitArgs {}

/// `sasldb check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Repair what is safe to repair: owner, group and mode (root:postfix 0640, never
    /// wider), a missing LMDB lock file, a lock file or SQLite journal that is a
    /// symbolic or hard link (removed; a lock file made again), leftover temporary files,
    /// and the Postfix chroot copy (refreshed as by sync-chroot). User data is never
    /// deleted; directories are not changed (the finding says how).
    #[arg(long)]
    pub fix: bool,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Postfix's queue directory (the smtpd chroot), instead of main.cf's
    /// queue_directory.
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub queue_directory: Option<PathBuf>,
}

/// `sasldb sync-chroot`.
#[derive(Debug, Args)]
pub struct SyncChrootArgs {
    /// Postfix's queue directory (the smtpd chroot), instead of main.cf's
    /// queue_directory.
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath, conflicts_with = "to")]
    pub queue_directory: Option<PathBuf>,
    /// Write the copy to this path instead of <queue_directory>/<sasldb_path of
    /// smtpd.conf>.
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub to: Option<PathBuf>,
    /// Replace a copy that holds records the database lacks, or that cannot be read.
    #[arg(long)]
    pub force: bool,
}

/// The `sasldb` command as clap sees it (for help and man pages).
pub fn command() -> clap::Command {
    Cli::command()
}
