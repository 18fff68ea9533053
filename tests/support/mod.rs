//! The harness every test module shares; nothing in here is a test.
//!
//! - [`data`]: fixtures, generated records, key encoding, reading records back.
//! - [`peers`]: the real tools the tests compare against (a missing one fails loudly),
//!   and what they say about a database.
//! - [`run`]: running commands: checked, with stdin, in parallel.
//! - [`ours`]: our three binaries as hermetic commands, and what a run produced.
//! - [`scratch`]: scratch directories with their own Cyrus and Postfix configuration.
//! - [`system`]: the host: the `postfix` group, free ports, file modes, processes.
//! - [`sample_server`]: libsasl's sample server driven line by line, gsasl as the client.
//! - [`postfix`]: a private, throw-away Postfix instance (smtpd + Cyrus SASL) and SMTP
//!   AUTH clients.
//! - [`pg`]: a private, throw-away PostgreSQL server (shared by the tests, stopped at
//!   exit).

pub mod data;
pub mod ours;
pub mod peers;
pub mod pg;
pub mod postfix;
pub mod run;
pub mod sample_server;
pub mod scratch;
pub mod system;

pub use data::{
    Rng, expected_records, file_records, fixture, hex, key, random_records, records_of, unhex,
    write_bdb,
};
pub use ours::Out;
pub use peers::{db_dump, libdb_lookup_misses, peer, sql_saslpasswd2};
pub use run::{in_parallel, run_ok, run_ok_with_stdin, run_with_stdin};
pub use scratch::{HOST_REALM, Scratch, write_aged};
pub use system::{alive, free_port, is_root, mode, postfix_gid, set_mode};
