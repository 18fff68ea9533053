//! Crash consistency: writers (`saslpasswd2 -p`, and `sasldb import` of a batch) are
//! killed with SIGKILL at random moments, for every format. After every command:
//! - the file passes its format's own check (`db_verify`, `gdbmtool`, `mdb_stat`,
//!   `PRAGMA integrity_check`) and reads through our library;
//! - every update whose command exited 0 is there;
//! - a killed update is entirely old or entirely new (a killed import batch is all
//!   old or all new);
//! - after a command that succeeded, no temporary file is left.
//!
//! The short form (the test command) runs [`SHORT_KILLS`] kills per format; the long
//! form is `scripts/crash-test KILLS`, which sets `SASLDB_CRASH_KILLS` and prints the
//! figures. `SASLDB_CRASH_SEED` replays a run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sasldb::Format;

use super::{FORMATS, format_check, read_all, scratch, temp_files};
use crate::support::Rng;
use crate::support::Scratch;
use crate::support::key;

/// Kills per format in the test command.
const SHORT_KILLS: usize = 25;
const REALM: &str = "crash.test";
/// Users the database starts with.
const SEED_USERS: usize = 400;
/// Users the updates pick from (some are new).
const USERS: u64 = 500;
/// Users per import batch.
const BATCH: usize = 20;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    commands: usize,
    acked: usize,
    kills: usize,
    killed_landed_new: usize,
    temps_left_by_kills: usize,
    lost: usize,
}

enum Op {
    /// saslpasswd2 -p for one user.
    Passwd(String, Vec<u8>),
    /// sasldb import of a batch.
    Import(Vec<(String, Vec<u8>)>),
}

impl Op {
    fn updates(&self) -> Vec<(String, Vec<u8>)> {
        match self {
            Op::Passwd(u, p) => vec![(u.clone(), p.clone())],
            Op::Import(v) => v.clone(),
        }
    }
}

fn spawn(s: &Scratch, db: &str, op: &Op) -> Child {
    let (mut cmd, input) = match op {
        Op::Passwd(user, pw) => {
            let mut c = s.ours_clean("saslpasswd2");
            c.args(["-p", "-c", "-f", db, "-u", REALM, user]);
            let mut input = pw.clone();
            input.push(b'\n');
            (c, input)
        }
        Op::Import(batch) => {
            let mut c = s.ours_clean("sasldb");
            c.args(["-f", db, "-u", REALM, "import", "-q", "-"]);
            let mut input = Vec::new();
            for (u, p) in batch {
                input.extend_from_slice(format!("{u}@{REALM}:").as_bytes());
                input.extend_from_slice(p);
                input.push(b'\n');
            }
            (c, input)
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The writer may already be dead: a broken pipe is part of the game.
    let _ = stdin.write_all(&input);
    drop(stdin);
    child
}

/// Checks the file and returns every user's userPassword.
fn verify(path: &Path, format: Format, what: &str) -> BTreeMap<String, Option<Vec<u8>>> {
    // Our reader first: for SQLite it is the first to meet a hot journal.
    let records: BTreeMap<Vec<u8>, Vec<u8>> = read_all(path, format)
        .unwrap_or_else(|e| panic!("{what}: our reader: {e}"))
        .into_iter()
        .collect();
    if let Err(e) = format_check(path, format) {
        panic!("{what}: format check failed: {e}");
    }
    let mut found = BTreeMap::new();
    for u in 0..USERS {
        let user = format!("u{u:04}");
        found.insert(
            user.clone(),
            records.get(&key(&user, REALM, "userPassword")).cloned(),
        );
    }
    found
}

fn run_format(prefix: &str, format: Format, kills_wanted: usize, seed: u64) -> Figures {
    let s = scratch();
    let path = s.path("db").join("sasldb2");
    let db = format!("{prefix}:{}", path.display());
    let mut rng = Rng::new(seed);
    let mut fig = Figures::default();

    // The seed database.
    let seed_batch: Vec<(String, Vec<u8>)> = (0..SEED_USERS)
        .map(|u| (format!("u{u:04}"), format!("seed-{u}").into_bytes()))
        .collect();
    let out = spawn(&s, &db, &Op::Import(seed_batch.clone()))
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "seed import: {out:?}");
    let mut model: BTreeMap<String, Vec<u8>> = seed_batch.into_iter().collect();

    // How long a command takes when left alone, to aim the kills inside it.
    let mut typical = Duration::from_millis(20);
    let mut generation = 0u64;
    let max_commands = kills_wanted * 6 + 20;
    while fig.kills < kills_wanted {
        assert!(
            fig.commands < max_commands,
            "{prefix}: {} commands for {} kills: the kills never land",
            fig.commands,
            fig.kills
        );
        generation += 1;
        let op = if rng.below(10) < 7 {
            let u = rng.below(USERS);
            Op::Passwd(
                format!("u{u:04}"),
                format!("g{generation}-{u}").into_bytes(),
            )
        } else {
            let start = rng.below(USERS - BATCH as u64);
            Op::Import(
                (start..start + BATCH as u64)
                    .map(|u| {
                        (
                            format!("u{u:04}"),
                            format!("g{generation}-{u}").into_bytes(),
                        )
                    })
                    .collect(),
            )
        };
        let updates = op.updates();
        let what = format!("{prefix} command {} (seed {seed})", fig.commands);
        fig.commands += 1;

        // A delay from nothing to a bit past a typical run.
        let limit = typical.as_micros() as u64 * 3 / 2 + 1;
        let delay = Duration::from_micros(rng.below(limit));
        let started = Instant::now();
        let mut child = spawn(&s, &db, &op);
        let pid = Pid::from_raw(child.id() as i32);
        let mut exited = None;
        while started.elapsed() < delay {
            if let Some(st) = child.try_wait().unwrap() {
                exited = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let status = match exited {
            Some(st) => st,
            None => {
                // The child is not reaped yet, so the pid is still ours.
                kill(pid, Signal::SIGKILL).unwrap();
                child.wait().unwrap()
            }
        };
        let stderr = {
            let mut e = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut e);
            }
            e
        };
        let found = verify(&path, format, &what);
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGKILL) {
            fig.kills += 1;
            // All old or all new.
            let new = updates
                .iter()
                .filter(|(u, p)| found[u].as_deref() == Some(&p[..]))
                .count();
            let old = updates
                .iter()
                .filter(|(u, _)| found[u].as_deref() == model.get(u).map(|v| &v[..]))
                .count();
            // A user given the value it already had counts as both.
            assert!(
                new == updates.len() || old == updates.len(),
                "{what}: killed update is torn: {new} new, {old} old of {}",
                updates.len()
            );
            if new == updates.len() && old != updates.len() {
                fig.killed_landed_new += 1;
            }
            for (u, _) in &updates {
                match &found[u] {
                    Some(v) => {
                        model.insert(u.clone(), v.clone());
                    }
                    None => {
                        model.remove(u);
                    }
                }
            }
            if !temp_files(&path).is_empty() {
                fig.temps_left_by_kills += 1;
            }
        } else {
            assert!(status.success(), "{what}: {status}: {stderr}");
            fig.acked += 1;
            let took = started.elapsed();
            typical = (typical * 3 + took) / 4;
            for (u, p) in &updates {
                model.insert(u.clone(), p.clone());
            }
            assert_eq!(
                temp_files(&path),
                Vec::<std::path::PathBuf>::new(),
                "{what}"
            );
        }
        // Every acknowledged update (and the outcome of every killed one) is there.
        let lost = model
            .iter()
            .filter(|(u, v)| found.get(*u).cloned().flatten().as_ref() != Some(*v))
            .count();
        fig.lost += lost;
        assert_eq!(lost, 0, "{what}: {lost} acknowledged updates lost");
    }
    // A last clean write cleans up whatever the kills left.
    let out = spawn(&s, &db, &Op::Passwd("u0000".into(), b"final".to_vec()))
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "{prefix}: final write: {out:?}");
    assert_eq!(temp_files(&path), Vec::<std::path::PathBuf>::new());
    eprintln!("crash {prefix}: {fig:?}");
    fig
}

fn kills() -> usize {
    std::env::var("SASLDB_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SHORT_KILLS)
}

fn seed() -> u64 {
    std::env::var("SASLDB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn run(prefix: &str) {
    let (prefix, format) = FORMATS.iter().find(|(p, _)| *p == prefix).copied().unwrap();
    let seed = seed();
    let fig = run_format(prefix, format, kills(), seed);
    // The figures the long run reports (scripts/crash-test greps this line).
    println!(
        "CRASH-FIGURES format={prefix} seed={seed} commands={} acked={} kills={} \
         killed_landed_new={} temps_left_by_kills={} updates_lost={}",
        fig.commands,
        fig.acked,
        fig.kills,
        fig.killed_landed_new,
        fig.temps_left_by_kills,
        fig.lost
    );
}

#[test]
fn bdb_writers_killed_at_random() {
    run("bdb");
}

#[test]
fn gdbm_writers_killed_at_random() {
    run("gdbm");
}

#[test]
fn lmdb_writers_killed_at_random() {
    run("lmdb");
}

#[test]
fn sqlite_writers_killed_at_random() {
    run("sqlite");
}

/// A writer killed in the middle of an SQLite commit leaves a hot journal (here the
/// `sqlite3` shell, stopped inside a transaction whose pages already spilled into the
/// file). Our reader rolls it back and reads the old content, as Cyrus's plugin would.
#[test]
fn sqlite_reader_rolls_back_a_hot_journal() {
    let s = scratch();
    let path = s.path("db").join("sasldb2");
    let db = format!("sqlite:{}", path.display());
    let batch: Vec<(String, Vec<u8>)> = (0..400)
        .map(|u| (format!("u{u:04}"), format!("old-{u}").into_bytes()))
        .collect();
    let out = spawn(&s, &db, &Op::Import(batch))
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let before = read_all(&path, Format::Sqlite).unwrap();

    let mut shell = std::process::Command::new(crate::support::peer("sqlite3"));
    s.clean_env(&mut shell);
    let mut child = shell
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"PRAGMA cache_size = 1;\nBEGIN;\nUPDATE sasldb SET value = randomblob(2000);\n\
              .system sleep 30\n",
        )
        .unwrap();
    stdin.flush().unwrap();
    let journal = s.path("db").join("sasldb2-journal");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Wait until the update has spilled pages into the file (it grows).
    while !(journal.exists() && std::fs::metadata(&path).unwrap().len() > 400 * 2000) {
        assert!(
            Instant::now() < deadline,
            "the shell never spilled its transaction"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert!(journal.exists(), "no hot journal left");

    assert_eq!(read_all(&path, Format::Sqlite).unwrap(), before);
    assert!(!journal.exists(), "the journal was not rolled back");
    format_check(&path, Format::Sqlite).unwrap();
}
