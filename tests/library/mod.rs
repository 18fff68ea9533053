//! The library as an embedder uses it: only its public API, no binary.

/// One opened database shared by many threads, in every file format: password checks
/// with the right verdicts for right, wrong and unknown users.
mod threads;
