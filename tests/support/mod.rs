//! The harness every test module shares; nothing in here is a test.
//!
//! - [`data`]: fixtures, generated records, key encoding, reading records back.
//! - [`peers`]: the real tools the tests compare against; a missing one fails loudly.
//! - [`run`]: running commands: checked, with stdin, with a time limit, in parallel.
//! - [`system`]: the host: the `postfix` group, free ports, file modes, processes.
//! - [`sample_server`]: libsasl's sample server driven line by line, gsasl as the client.
//! - [`postfix`]: a private, throw-away Postfix instance (smtpd + Cyrus SASL) and SMTP
//!   AUTH clients.
//! - [`pg`]: a private, throw-away PostgreSQL server (shared by the tests, stopped at
//!   exit).

pub mod data;
pub mod peers;
pub mod pg;
pub mod postfix;
pub mod run;
pub mod sample_server;
pub mod system;

pub use data::{Rng, expected_records, fixture, hex, key, records_of, unhex};
pub use peers::{db_dump, libdb_lookup_misses, peer};
pub use run::{in_parallel, run_ok, run_ok_with_stdin, run_with_stdin};
pub use system::{alive, free_port, is_root, mode, postfix_gid, set_mode};
