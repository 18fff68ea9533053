//! `saslpasswd2`: see `sasldb::cli::saslpasswd2`.

/// Runs before the Rust runtime, which reopens a closed stdin on /dev/null: records
/// whether it was closed, so that reads fail with `EBADF` as Cyrus's do.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_STDIN_STATE: extern "C" fn() = sasldb::cli::password::record_stdin_state;

/// Every freed heap block is wiped first (see `sasldb::cli::alloc`).
#[global_allocator]
static ALLOC: sasldb::cli::alloc::WipeOnFree = sasldb::cli::alloc::WipeOnFree;

fn main() -> std::process::ExitCode {
    sasldb::cli::saslpasswd2::main(std::env::args_os().collect())
}
