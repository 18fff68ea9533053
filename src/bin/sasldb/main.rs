//! `sasldb`: the admin tool for Cyrus SASL password databases.
//!
//! Dispatch, output and messages live here (the clap definitions are in
//! `sasldb::cli::sasldb`, shared with the man page); every operation is a library
//! call. Errors print as one line, `sasldb: <what went wrong>`, and the exit
//! status comes from the library's single table (`sasldb::cli::Exit`).

mod admin;
mod doctor;
mod io;
mod users;

use std::process::ExitCode;

use clap::Parser;
use sasldb::cli::Exit;
use sasldb::cli::sasldb::{Cli, Cmd};

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
        Cmd::Check(a) => doctor::check(&cli.global, a),
        Cmd::SyncChroot(a) => doctor::sync_chroot(&cli.global, a),
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
        sasldb::cli::sasldb::Cli::command().debug_assert();
    }
}
