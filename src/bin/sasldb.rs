//! `sasldb`: the admin tool; see `sasldb::cli::sasldb`.

/// Every freed heap block is wiped first (see `sasldb::cli::alloc`).
#[global_allocator]
static ALLOC: sasldb::cli::alloc::WipeOnFree = sasldb::cli::alloc::WipeOnFree;

fn main() -> std::process::ExitCode {
    sasldb::cli::sasldb::main()
}
