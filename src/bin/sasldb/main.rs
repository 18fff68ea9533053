//! `sasldb`: the admin tool for Cyrus SASL password databases.
//!
//! Argument parsing (clap), output and messages live here; every operation is a
//! library call. Errors print as one line, `sasldb: <what went wrong>`, and the exit
//! status comes from the library's single table (`sasldb::cli::Exit`).

mod admin;
mod io;
mod users;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sasldb::cli::Exit;

/// Manage Cyrus SASL password databases (sasldb2): Berkeley DB hash (without libdb),
/// LMDB, GDBM, SQLite and PostgreSQL. Every change is made under a lock and replaces the
/// database atomically (PostgreSQL: one transaction); as root a file is owned
/// root:postfix, mode 0640.
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
    #[arg(short = 'f', long = "file", value_name = "DB", global = true)]
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
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Import users from a file or standard input, in one transaction.
    Import(users::ImportArgs),
    /// Export users (names only, or with --with-secrets their secrets) as JSON, CSV,
    /// or a Dovecot passwd-file.
    Export(users::ExportArgs),
    /// List users, one per line with their properties, sorted.
    List(users::ListArgs),
    /// Check a password; exit 0 if it matches, 1 if not, 2 if there is no such user.
    Verify(users::VerifyArgs),
    /// List the realms with their user counts.
    Realms(users::RealmsArgs),
    /// Move every user of a realm to another realm, atomically.
    RenameRealm(admin::RenameRealmArgs),
    /// Delete every user of a realm, atomically.
    DeleteRealm(admin::DeleteRealmArgs),
    /// Convert a database to another format (or file), in one transaction.
    Convert(admin::ConvertArgs),
    /// Show the default realm and where it comes from.
    Realm,
    /// Create an empty database if there is none (with the ownership policy applied;
    /// for PostgreSQL, the sasldb table and its trigger).
    Init(admin::InitArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Success.into()
                }
                _ => Exit::Usage.into(),
            };
        }
    };
    let result = match &cli.cmd {
        Cmd::Import(a) => users::import(&cli.global, a),
        Cmd::Export(a) => users::export(&cli.global, a),
        Cmd::List(a) => users::list(&cli.global, a),
        Cmd::Verify(a) => users::verify(&cli.global, a),
        Cmd::Realms(a) => users::realms(&cli.global, a),
        Cmd::RenameRealm(a) => admin::rename_realm(&cli.global, a),
        Cmd::DeleteRealm(a) => admin::delete_realm(&cli.global, a),
        Cmd::Convert(a) => admin::convert(&cli.global, a),
        Cmd::Realm => admin::realm(&cli.global),
        Cmd::Init(a) => admin::init(&cli.global, a),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return Exit::Success.into();
            }
            eprintln!("sasldb: {e:#}");
            Exit::Failure.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
