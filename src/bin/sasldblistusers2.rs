//! `sasldblistusers2`: see `sasldb::cli::listusers`.
/// Every freed heap block is wiped first (see `sasldb::cli::alloc`).
#[global_allocator]
static ALLOC: sasldb::cli::alloc::WipeOnFree = sasldb::cli::alloc::WipeOnFree;

fn main() -> std::process::ExitCode {
    sasldb::cli::listusers::main(std::env::args_os().collect())
}
