//! `saslpasswd2`: see `sasldb::cli::saslpasswd2`.
fn main() -> std::process::ExitCode {
    sasldb::cli::saslpasswd2::main(std::env::args_os().collect())
}
