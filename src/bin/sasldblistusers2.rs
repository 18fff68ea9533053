//! `sasldblistusers2`: see `sasldb::cli::listusers`.
fn main() -> std::process::ExitCode {
    sasldb::cli::listusers::main(std::env::args_os().collect())
}
