//! Running commands: checked, with stdin fed from a thread; running cases in parallel.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs a command, panicking with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command with `input` on its stdin (fed from a thread, so a child that
/// writes a lot before reading cannot deadlock) and collects its output. A child
/// that exits without reading everything is fine.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// [`run_with_stdin`], panicking with the status and stderr if the command fails.
pub fn run_ok_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let out = run_with_stdin(cmd, input);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `case` on every input in parallel (each one a thread: the cases mostly wait
/// for peer tools) and panics with all failures at once.
pub fn in_parallel<T: Sync>(inputs: &[T], case: impl Fn(&T) -> Result<(), String> + Sync) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = inputs.iter().map(|i| s.spawn(|| case(i))).collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(r) => r.err(),
                Err(_) => Some("a case panicked (see above)".to_owned()),
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
