//! The harness every test module shares; nothing in here is a test.
//!
//! - [`data`]: fixtures, generated records, key encoding, reading records back.
//! - [`peers`]: the real tools the tests compare against; a missing one fails loudly.
//! - [`run`]: running commands: checked, with stdin, with a time limit, in parallel.

pub mod data;
pub mod peers;
pub mod run;

pub use data::{Rng, expected_records, fixture, hex, parse_db_dump_p, records_of, unhex};
pub use peers::{libdb_lookup_misses, peer};
pub use run::{run_ok, run_ok_with_stdin, run_with_stdin};
