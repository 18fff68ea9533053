//! Bulk work in bounded memory, through the real binary with a tiny sort budget
//! (`--sort-memory`, hidden, 64 KiB: the smallest a sort takes), so that every sort
//! spills many runs:
//! - import (new users, then updates and new users, then replace-all), list, export,
//!   realms and rename-realm give exactly what they give with the default budget, in
//!   every file format;
//! - an import killed with SIGKILL while it holds spill files leaves none behind: each
//!   one, while it exists, is readable by its owner only, has no name in the
//!   directory, and the directory holds no new entry after the kill nor after the next
//!   writer.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{FORMATS, format_check, scratch};
use crate::support::Scratch;

const REALMS: [&str; 3] = ["a.test", "b.test", "c.test"];
/// The smallest sort budget: 64 KiB.
const TINY: &str = "65536";

/// `count` lines `userNNNNNN@realm:pw-<tag>-NNNNNN`, starting at user `from`.
fn users(from: usize, count: usize, tag: &str) -> String {
    let mut s = String::new();
    for i in from..from + count {
        s.push_str(&format!(
            "user{i:06}@{}:pw-{tag}-{i:06}\n",
            REALMS[i % REALMS.len()]
        ));
    }
    s
}

/// Runs `sasldb -f DB [--sort-memory TINY] ARGS`; returns stdout, panicking on failure.
fn sasldb(s: &Scratch, db: &str, tiny: bool, args: &[&str]) -> String {
    let mut c = s.ours_clean("sasldb");
    c.args(["--group", "root", "-f", db]);
    if tiny {
        c.args(["--sort-memory", TINY]);
    }
    c.args(args);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Names in a directory.
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// What the read commands print.
fn views(s: &Scratch, db: &str, tiny: bool) -> Vec<String> {
    [
        &["list"][..],
        &["export", "--json", "--with-secrets"],
        &["export", "--csv", "--with-secrets"],
        &["realms", "--json"],
    ]
    .iter()
    .map(|a| sasldb(s, db, tiny, a))
    .collect()
}

#[test]
fn bulk_paths_with_a_tiny_sort_budget_give_the_same_results() {
    let s = scratch();
    let first = users(0, 8_000, "one");
    // Half of them with a new password, and as many new users.
    let second = users(4_000, 8_000, "two");
    std::fs::write(s.path("first.txt"), &first).unwrap();
    std::fs::write(s.path("second.txt"), &second).unwrap();
    std::fs::write(s.path("third.txt"), users(2_000, 2_000, "three")).unwrap();
    for (prefix, format) in FORMATS {
        let mut outcome: Vec<Vec<String>> = Vec::new();
        for tiny in [false, true] {
            let path = s.path(&format!("db/{prefix}-{tiny}.db"));
            let db = format!("{prefix}:{}", path.display());
            let mut seen = Vec::new();
            for (input, mode) in [
                ("first.txt", "upsert"),
                ("second.txt", "upsert"),
                ("first.txt", "create-only"),
            ] {
                let out = sasldb(&s, &db, tiny, &["import", "--mode", mode, input]);
                seen.push(out);
                seen.extend(views(&s, &db, tiny));
            }
            seen.push(sasldb(&s, &db, tiny, &["rename-realm", "b.test", "r.test"]));
            seen.extend(views(&s, &db, tiny));
            seen.push(sasldb(&s, &db, tiny, &["delete-realm", "--yes", "c.test"]));
            seen.extend(views(&s, &db, tiny));
            let dry = ["import", "--dry-run", "--mode", "replace-all", "third.txt"];
            seen.push(sasldb(&s, &db, tiny, &dry));
            seen.push(sasldb(
                &s,
                &db,
                tiny,
                &["import", "--mode", "replace-all", "third.txt"],
            ));
            seen.extend(views(&s, &db, tiny));
            format_check(&path, format).unwrap();
            outcome.push(seen);
        }
        let (default, tiny) = (&outcome[0], &outcome[1]);
        assert_eq!(default.len(), tiny.len());
        for (i, (a, b)) in default.iter().zip(tiny).enumerate() {
            assert!(a == b, "{prefix}: output {i} differs with a tiny budget");
        }
        // The content is what the inputs say: 12,000 users listed after the second
        // import (output 6), the third input's 2,000 after replace-all (output 29, CSV).
        assert_eq!(default[6].lines().count(), 12_000, "{prefix}");
        assert!(
            default[6].contains("user004000@b.test: userPassword"),
            "{prefix}"
        );
        assert_eq!(default[29].lines().count(), 1 + 2_000, "{prefix}");
        assert!(
            default[29].contains("user002001,a.test,pw-three-002001\n"),
            "{prefix}"
        );
        // Renamed (output 18, realms) and deleted (output 23).
        assert!(
            default[18].contains("r.test") && !default[18].contains("b.test"),
            "{prefix}"
        );
        assert!(!default[23].contains("c.test"), "{prefix}");
    }
}

/// Spill files the process holds open: `(descriptor path, its target)` of every
/// descriptor on an unnamed or deleted file in `dir`.
fn held_spills(pid: u32, dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let dir = format!("{}/", dir.display());
    fds.filter_map(|e| {
        let p = e.ok()?.path();
        let target = std::fs::read_link(&p).ok()?.to_string_lossy().into_owned();
        (target.starts_with(&dir) && target.ends_with(" (deleted)")).then_some((p, target))
    })
    .collect()
}

#[test]
fn an_import_killed_while_spilling_leaves_no_spill_file() {
    let s = scratch();
    let input = s.path("users.txt");
    std::fs::write(&input, users(0, 150_000, "kill")).unwrap();
    let spill_dir = s.mkdir("spill");
    for (prefix, _) in FORMATS {
        for temp_dir in [false, true] {
            let path = s.path(&format!("db/kill-{temp_dir}.{prefix}"));
            let db = format!("{prefix}:{}", path.display());
            std::fs::write(s.path("seed.txt"), users(0, 10, "seed")).unwrap();
            sasldb(&s, &db, false, &["import", "seed.txt"]);
            let before = sasldb(&s, &db, false, &["export", "--csv", "--with-secrets"]);
            let where_ = if temp_dir {
                spill_dir.clone()
            } else {
                s.path("db")
            };
            let names_before = entries(&where_);

            let mut c = s.ours_clean("sasldb");
            c.args(["--group", "root", "-f", &db, "--sort-memory", TINY]);
            if temp_dir {
                c.arg("--temp-dir").arg(&spill_dir);
            }
            c.args(["import", "-q"]).arg(&input);
            let mut child = c
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id();
            let start = Instant::now();
            let held = loop {
                let held = held_spills(pid, &where_);
                if held.len() >= 2 {
                    break held;
                }
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{prefix}: the import ended before it was seen spilling"
                );
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{prefix}: no spill file seen"
                );
                std::thread::sleep(Duration::from_millis(1));
            };
            // Each spill file: ours, mode 0600, and no name in the directory.
            for (fd, target) in &held {
                let Ok(m) = std::fs::metadata(fd) else {
                    continue; // closed meanwhile
                };
                assert_eq!(
                    m.mode() & 0o077,
                    0,
                    "{prefix}: {target} mode {:o}",
                    m.mode()
                );
                assert_eq!(
                    m.uid(),
                    nix::unistd::geteuid().as_raw(),
                    "{prefix}: {target}"
                );
                assert_eq!(m.nlink(), 0, "{prefix}: {target} has a name");
            }
            // Nothing in the directory but what was there (the lock file may be new).
            for name in entries(&where_).difference(&names_before) {
                let m = std::fs::symlink_metadata(where_.join(name)).unwrap();
                assert!(
                    name.ends_with(".lock") || name.ends_with("-lock"),
                    "{prefix}: {name} appeared while spilling"
                );
                assert_eq!(m.mode() & 0o077 & !0o040, 0, "{prefix}: {name}");
            }
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
            child.wait().unwrap();
            let leftover = |when: &str| {
                for name in entries(&where_).difference(&names_before) {
                    let m = std::fs::symlink_metadata(where_.join(name)).unwrap();
                    assert!(
                        name.ends_with(".lock") || name.ends_with("-lock"),
                        "{prefix}: {name} left {when}"
                    );
                    assert_eq!(m.mode() & 0o037, 0, "{prefix}: {name} readable by others");
                }
            };
            leftover("after the kill");
            // The next writer: the database as it was, and nothing left.
            std::fs::write(s.path("one.txt"), "late@a.test:pw-late\n").unwrap();
            sasldb(&s, &db, false, &["import", "one.txt"]);
            leftover("after the next writer");
            assert!(
                super::temp_files(&path).is_empty(),
                "{prefix}: temporary files left"
            );
            let after = sasldb(&s, &db, false, &["export", "--csv", "--with-secrets"]);
            let want: BTreeSet<&str> = before.lines().chain(["late,a.test,pw-late"]).collect();
            assert_eq!(after.lines().collect::<BTreeSet<_>>(), want, "{prefix}");
            format_check(&path, FORMATS.iter().find(|f| f.0 == prefix).unwrap().1).unwrap();
        }
    }
}
