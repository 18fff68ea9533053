//! Permissions while writing, and ownership after every write path.
//!
//! Every writer runs with umask 000 while a watcher thread stats every entry of the
//! database's directory in a tight loop. At no moment may any entry (database,
//! temporary file, `<db>.lock`, LMDB's `-lock`, SQLite's `-journal`) be accessible to
//! others (`mode & 0o007`), and our own files (database, temporary files, lock files)
//! may carry group bits only once they belong to the `postfix` group (a temporary
//! file is chowned before it gets its mode). After each command: the database is
//! root:postfix 0640, `<db>.lock` root:postfix 0640, LMDB's `-lock` root:postfix 0660.
//!
//! Covered: `saslpasswd2`, `sasldb import`, `convert` (to every format), `rename-realm`,
//! `delete-realm`, `init`, and `sync-chroot` (the copy in its own watched directory).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{FORMATS, scratch};
use crate::support::{Scratch, postfix_gid, run_with_stdin};

const REALM: &str = "perm.test";

/// Whether a directory entry is one of our files (as opposed to SQLite's journal).
fn ours(name: &str) -> bool {
    !name.ends_with("-journal")
}

/// Watches a directory until stopped; collects violations and the names seen.
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    violations: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    scans: Arc<AtomicUsize>,
}

impl Watcher {
    fn start(dir: &Path) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let scans = Arc::new(AtomicUsize::new(0));
        let gid = postfix_gid().as_raw();
        let handle = {
            let (stop, violations, seen, scans) = (
                stop.clone(),
                violations.clone(),
                seen.clone(),
                scans.clone(),
            );
            let dir = dir.to_path_buf();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(rd) = fs::read_dir(&dir) else { continue };
                    for e in rd.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        // Gone already: fine.
                        let Ok(m) = fs::symlink_metadata(e.path()) else {
                            continue;
                        };
                        let mode = m.mode() & 0o7777;
                        let mut bad = None;
                        if mode & 0o007 != 0 {
                            bad = Some("accessible to others");
                        } else if ours(&name) && mode & 0o070 != 0 && m.gid() != gid {
                            bad = Some("group bits for a group other than postfix");
                        }
                        if let Some(why) = bad {
                            violations.lock().unwrap().push(format!(
                                "{name}: mode {mode:o} uid {} gid {}: {why}",
                                m.uid(),
                                m.gid()
                            ));
                        }
                        let kind = if name.contains(".sasldb-tmp-") {
                            "<temp>".to_string()
                        } else {
                            name
                        };
                        seen.lock().unwrap().insert(kind);
                    }
                    scans.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Watcher {
            stop,
            handle: Some(handle),
            violations,
            seen,
            scans,
        }
    }

    /// Waits until the watcher has scanned the directory twice more, so the state a
    /// command left is checked at least once.
    fn settle(&self) {
        let start = self.scans.load(Ordering::Relaxed);
        while self.scans.load(Ordering::Relaxed) < start + 2 {
            std::thread::yield_now();
        }
    }

    /// Stops; returns the violations and the names seen.
    fn finish(mut self) -> (Vec<String>, BTreeSet<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        let v = std::mem::take(&mut *self.violations.lock().unwrap());
        let s = std::mem::take(&mut *self.seen.lock().unwrap());
        (v, s, self.scans.load(Ordering::Relaxed))
    }
}

/// Runs one of our tools with umask 000 and `input` on stdin; it must succeed.
fn run_umask0(s: &Scratch, tool: &str, args: &[&str], input: &[u8]) {
    let mut c = s.ours_clean(tool);
    c.args(args);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = run_with_stdin(&mut c, input);
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks the final ownership of a database and its lock files.
fn check_ownership(w: &Watcher, path: &Path, format: sasldb::Format, what: &str) {
    w.settle();
    let gid = postfix_gid().as_raw();
    let expect = |p: PathBuf, mode: u32| {
        let m = fs::metadata(&p).unwrap_or_else(|e| panic!("{what}: {}: {e}", p.display()));
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (0, gid, mode),
            "{what}: {} is not root:postfix {mode:o}",
            p.display()
        );
    };
    expect(path.to_path_buf(), 0o640);
    let mut lock = path.as_os_str().to_os_string();
    lock.push(".lock");
    expect(PathBuf::from(&lock), 0o640);
    if format == sasldb::Format::Lmdb {
        let mut l = path.as_os_str().to_os_string();
        l.push("-lock");
        expect(PathBuf::from(l), 0o660);
    }
}

fn users(n: usize, generation: usize, realm: &str) -> Vec<u8> {
    (0..n)
        .map(|i| format!("user{i:05}@{realm}:pw-{generation}-{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// All write paths on one format; returns the names the watcher saw.
fn run_format(prefix: &str, format: sasldb::Format) -> BTreeSet<String> {
    let s = scratch();
    let dir = s.path("db");
    let path = dir.join("sasldb2");
    let db = format!("{prefix}:{}", path.display());
    let watcher = Watcher::start(&dir);
    {
        let (s, db) = (&s, db.clone());
        // Creation by import, then updates through every command.
        run_umask0(
            s,
            "sasldb",
            &["-f", &db, "import", "-q", "-"],
            &users(2000, 0, REALM),
        );
        check_ownership(&watcher, &path, format, &format!("{prefix} import (new)"));
        for g in 1..=3 {
            run_umask0(
                s,
                "saslpasswd2",
                &["-p", "-f", &db, "-u", REALM, &format!("user{g:05}")],
                format!("new-pw-{g}\n").as_bytes(),
            );
            check_ownership(&watcher, &path, format, &format!("{prefix} saslpasswd2"));
            run_umask0(
                s,
                "sasldb",
                &["-f", &db, "import", "-q", "-"],
                &users(300, g, REALM),
            );
            check_ownership(&watcher, &path, format, &format!("{prefix} import"));
        }
        run_umask0(
            s,
            "sasldb",
            &["-f", &db, "rename-realm", REALM, "other.test"],
            b"",
        );
        check_ownership(&watcher, &path, format, &format!("{prefix} rename-realm"));
        run_umask0(
            s,
            "sasldb",
            &["-f", &db, "rename-realm", "other.test", REALM],
            b"",
        );
        run_umask0(
            s,
            "sasldb",
            &["-f", &db, "import", "-q", "-"],
            &users(5, 9, "gone.test"),
        );
        run_umask0(
            s,
            "sasldb",
            &["-f", &db, "delete-realm", "--yes", "gone.test"],
            b"",
        );
        check_ownership(&watcher, &path, format, &format!("{prefix} delete-realm"));
        // Convert into every format (new files next to the database).
        for (to, to_format) in FORMATS {
            let dst = dir.join(format!("conv-{to}"));
            let dst_loc = format!("{to}:{}", dst.display());
            run_umask0(s, "sasldb", &["convert", &db, &dst_loc], b"");
            check_ownership(
                &watcher,
                &dst,
                to_format,
                &format!("{prefix} convert to {to}"),
            );
            run_umask0(s, "sasldb", &["convert", "--force", &db, &dst_loc], b"");
            check_ownership(
                &watcher,
                &dst,
                to_format,
                &format!("{prefix} convert --force to {to}"),
            );
        }
        let fresh = dir.join("fresh");
        run_umask0(
            s,
            "sasldb",
            &["-f", &format!("{prefix}:{}", fresh.display()), "init"],
            b"",
        );
        check_ownership(&watcher, &fresh, format, &format!("{prefix} init"));
    }
    let (violations, seen, scans) = watcher.finish();
    assert!(
        scans > 100,
        "{prefix}: the watcher scanned only {scans} times"
    );
    assert!(
        violations.is_empty(),
        "{prefix}: {} violations, first ones:\n  {}",
        violations.len(),
        violations
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    eprintln!("permissions {prefix}: {scans} scans, saw {seen:?}");
    seen
}

#[test]
fn bdb_never_readable_by_others_and_owned_root_postfix() {
    let seen = run_format("bdb", sasldb::Format::Bdb);
    // The watcher is fast enough to catch the temporary files at least once.
    assert!(
        seen.contains("<temp>"),
        "the watcher never saw a temporary file: {seen:?}"
    );
}

#[test]
fn gdbm_never_readable_by_others_and_owned_root_postfix() {
    run_format("gdbm", sasldb::Format::Gdbm);
}

#[test]
fn lmdb_never_readable_by_others_and_owned_root_postfix() {
    run_format("lmdb", sasldb::Format::Lmdb);
}

#[test]
fn sqlite_never_readable_by_others_and_owned_root_postfix() {
    run_format("sqlite", sasldb::Format::Sqlite);
}

/// `sasldb sync-chroot` (the Postfix chroot copy), for every format: with umask 000
/// the copy's directory never holds a file readable by others, and the copy ends up
/// root:postfix 0640 (an LMDB copy's `-lock` 0660), when it is created and when it is
/// refreshed.
#[test]
fn sync_chroot_keeps_permissions() {
    for (prefix, format) in FORMATS {
        let s = scratch();
        let dir = s.path("db");
        let db = format!("{prefix}:{}", dir.join("sasldb2").display());
        run_umask0(
            &s,
            "sasldb",
            &["-f", &db, "import", "-q", "-"],
            &users(50, 1, REALM),
        );
        let chroot_etc = dir.join("chroot-etc");
        fs::create_dir(&chroot_etc).unwrap();
        let copy = chroot_etc.join("sasldb2");
        let watcher = Watcher::start(&chroot_etc);
        for round in 0..2 {
            if round == 1 {
                run_umask0(
                    &s,
                    "sasldb",
                    &["-f", &db, "import", "-q", "-"],
                    &users(50, 2, REALM),
                );
            }
            let to = copy.display().to_string();
            run_umask0(&s, "sasldb", &["-f", &db, "sync-chroot", "--to", &to], b"");
            watcher.settle();
            let gid = postfix_gid().as_raw();
            let m = fs::metadata(&copy).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o7777),
                (0, gid, 0o640),
                "{prefix} sync-chroot round {round}: the copy is not root:postfix 0640"
            );
            if format == sasldb::Format::Lmdb {
                let l = fs::metadata(chroot_etc.join("sasldb2-lock")).unwrap();
                assert_eq!(
                    (l.uid(), l.gid(), l.mode() & 0o7777),
                    (0, gid, 0o660),
                    "{prefix} -lock"
                );
            }
        }
        let (violations, _, scans) = watcher.finish();
        assert!(
            scans > 10,
            "{prefix}: the watcher scanned only {scans} times"
        );
        assert!(violations.is_empty(), "{prefix}: {violations:?}");
    }
}
