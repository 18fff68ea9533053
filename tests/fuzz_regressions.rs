//! Replays fuzz inputs through the fuzz targets' own code (`scripts/fuzz/src/harness.rs`,
//! compiled in here): every input under `fixtures/fuzz-regressions/<target>/` (crashes
//! and hangs the fuzzer found, fixed since) and the seed corpus
//! `scripts/fuzz/corpus/<target>/`. Each input runs on its own thread under a watchdog:
//! a panic, a broken invariant or a hang fails the test with the input's path.
//!
//! To add a regression: copy the minimised artifact into
//! `fixtures/fuzz-regressions/<target>/` under a name that says what it was.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

#[path = "../scripts/fuzz/src/harness.rs"]
mod harness;

/// Far above what any input takes (milliseconds), far below a hang.
const WATCHDOG: Duration = Duration::from_secs(30);

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        root.join("fixtures/fuzz-regressions").join(target),
        root.join("scripts/fuzz/corpus").join(target),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries {
                files.push(e.unwrap().path());
            }
        }
    }
    files.sort();
    files
}

/// Runs `f` on `data` on a thread with the fuzzer's main-thread stack (8 MiB).
fn run_guarded(name: &str, data: Vec<u8>, f: fn(&[u8])) {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(8 << 20)
        .spawn(move || {
            f(&data);
            let _ = tx.send(());
        })
        .unwrap();
    match rx.recv_timeout(WATCHDOG) {
        Ok(()) => {}
        Err(RecvTimeoutError::Timeout) => panic!("{name}: hung (over {WATCHDOG:?})"),
        Err(RecvTimeoutError::Disconnected) => panic!("{name}: panicked (see above)"),
    }
}

fn replay(target: &str, f: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for the fuzz target {target}");
    for p in files {
        let data = std::fs::read(&p).unwrap();
        run_guarded(&p.display().to_string(), data, f);
    }
}

/// The saved crash of `target` called `name`, checked to exist.
fn regression(target: &str, name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fuzz-regressions")
        .join(target)
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), harness::$target);
            }
        )*
    };
}

replay_tests!(
    bdb_file,
    bdb_mutate,
    gdbm_file,
    lmdb_check,
    sqlite_file,
    key_codec,
    import_lines,
    import_csv,
    import_json,
    postfix_main_cf,
    cyrus_conf,
    secrets_parse,
    getopt,
);

#[cfg(feature = "serve")]
replay_tests!(
    serve_dovecot,
    serve_sasl,
    serve_saslauthd,
    serve_checkpassword
);

// ------------------------------------------------------------------ fixed findings

/// import: a CSV header or JSON key holding a newline made a rejection reason span
/// two lines (the reason is printed as one line per rejected entry).
#[test]
fn import_reasons_escape_names() {
    use sasldb::bulk::import::{InputFormat, parse};
    let csv = regression("import_csv", "unknown-column-newline.csv");
    let p = parse(&csv, InputFormat::Csv);
    assert_eq!(p.rejected.len(), 1);
    // The column is named by its number: a header cell may be a misplaced secret.
    assert_eq!(
        p.rejected[0].reason,
        "unknown CSV column 1 in the header (expected user, realm, password; \
         is the header line missing?)"
    );
    let json = regression("import_json", "unknown-key-newline.json");
    let p = parse(&json, InputFormat::Json);
    assert_eq!(p.rejected.len(), 2);
    assert_eq!(
        p.rejected[0].reason,
        "unknown key `\\nx` (expected user, realm, password, properties)"
    );
    assert!(p.rejected[1].reason.starts_with("property `a\\rb`: "));
}
