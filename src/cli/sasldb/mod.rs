//! `sasldb`: the admin tool for Cyrus SASL password databases.
//!
//! Dispatch, output and messages live here (the clap definitions are in [`args`],
//! shared with the man page); every operation is a library call. Errors print as one line, `sasldb: <what went wrong>`, and the exit
//! status comes from the library's single table (`sasldb::cli::Exit`).

mod admin;
pub mod args;
mod doctor;
mod io;
#[cfg(feature = "serve")]
mod serve;
mod users;

use std::process::ExitCode;

use crate::cli::Exit;
use args::{Cli, Cmd};
use clap::Parser;

/// Runs the `sasldb` command with the process's arguments.
pub fn main() -> ExitCode {
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
        #[cfg(feature = "serve")]
        Cmd::Serve(a) => serve::serve(&cli.global, a),
        #[cfg(feature = "serve")]
        Cmd::Checkpassword(a) => serve::checkpassword(&cli.global, a),
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
            eprintln!("sasldb: {}", one_line(&e));
            Exit::Failure.into()
        }
    }
}

/// An error and its causes on one line, each cause once: the library's errors already
/// include their I/O cause (`/etc/sasldb2: Permission denied`), so a cause whose text
/// is already there is not repeated, and I/O errors read like `strerror`, without
/// `(os error N)`.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => crate::error::io_text(io),
            None => cause.to_string(),
        };
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn errors_print_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let e = anyhow::Error::new(crate::Error::io("/x/db.lock", io));
        assert_eq!(super::one_line(&e), "/x/db.lock: Permission denied");
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES))
            .context("/x/input.txt");
        assert_eq!(super::one_line(&e), "/x/input.txt: Permission denied");
        let e = anyhow::anyhow!("two\nlines");
        assert_eq!(super::one_line(&e), "two lines");
    }

    #[test]
    fn clap_definition_is_consistent() {
        super::args::Cli::command().debug_assert();
    }
}
