//! The code paths the fuzz targets drive. `harness.rs` is also compiled into the main
//! package's test suite (`tests/fuzz_regressions.rs`), which replays the seed corpora
//! and every saved crash through exactly the same functions.

#[path = "harness.rs"]
pub mod harness;
