//! A local user attacks what root writes (issue 14, items 1 to 13).
//!
//! Each test creates an unprivileged user (`sasldb-t-<random>`, removed again when the
//! test ends, failing or not), lets it set up what an attacker with an ordinary account
//! could: a directory of its own next to root's, symbolic and hard links, files it
//! keeps open, a `main.cf` or `postconf` of its own, files that never end. Then our
//! tools run as root, and the test checks that a victim file (root's) is untouched and
//! that the tool said in one line why it refused.
//!
//! Racing attacks swap two names with `renameat2(RENAME_EXCHANGE)` from a process of
//! that user while root writes: `SASLDB_HOSTILE_FLIPS` swaps per format (2,000 by
//! default, half a millisecond apart), root writing and reading as often as it can
//! meanwhile, at most 60 s per race. `scripts/hostile-race` runs longer campaigns.
//!
//! Needs root (to create the user and to be the victim of the attack), perl (the
//! attacker's loops), strace and Postfix's `postconf`.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::scratch;
use crate::support::{Out, Scratch, is_root, ours, peer, postfix_gid, set_mode};

/// The formats our tools write, with their `-f` prefixes.
const FORMATS: [&str; 4] = ["bdb", "gdbm", "lmdb", "sqlite"];

/// What a victim holds.
const VICTIM: &str = "victim: root's file, never to be written by sasldb\n";

/// A password that marks what root wrote (never in an old descriptor's view).
const NEW_SECRET: &str = "Kq3vN8xT2mZr7Lw";

// ---------------------------------------------------------------------------------
// The attacker: an unprivileged user of its own.

/// An unprivileged user created for one test and deleted when dropped.
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl User {
    fn create() -> User {
        assert!(
            is_root(),
            "the hostile tests create a user: run them as root"
        );
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            ^ u64::from(std::process::id()) << 32;
        let name = format!(
            "sasldb-t-{:08x}",
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
        );
        // useradd takes /etc/passwd's lock: other tests may hold it for a moment.
        let mut last = String::new();
        for _ in 0..100 {
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    &name,
                ])
                .output()
                .expect("useradd");
            if out.status.success() {
                let u = nix::unistd::User::from_name(&name)
                    .unwrap()
                    .expect("the user just created");
                return User {
                    name,
                    uid: u.uid.as_raw(),
                    gid: u.gid.as_raw(),
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd {name}: {last}");
    }

    /// `program` run as this user, in a clean environment.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        c
    }

    /// Runs a shell script as this user in `dir`; panics if it fails.
    fn sh(&self, dir: &Path, script: &str) {
        let out = self
            .cmd("/bin/sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "as {}: {script}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A directory of this user's (mode 0755) in the scratch directory.
    fn home(&self, s: &Scratch, rel: &str) -> PathBuf {
        let d = s.mkdir(rel);
        std::os::unix::fs::chown(&d, Some(self.uid), Some(self.gid)).unwrap();
        set_mode(&d, 0o755);
        d
    }

    /// One of our binaries, run as this user (`-u r`, no Postfix).
    fn ours(&self, s: &Scratch, tool: &str) -> Command {
        let mut c = s.ours_clean(tool);
        c.uid(self.uid).gid(self.gid);
        c
    }
}

impl Drop for User {
    fn drop(&mut self) {
        for _ in 0..100 {
            match Command::new("userdel").arg(&self.name).output() {
                Ok(o) if o.status.success() => return,
                // 6: no such user (already gone).
                Ok(o) if o.status.code() == Some(6) => return,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        eprintln!("warning: could not remove the test user {}", self.name);
    }
}

/// A scratch directory others can traverse (the test user must reach its own
/// directory inside), with `vic/` holding root's victims.
fn arena() -> Scratch {
    let s = scratch();
    set_mode(s.root(), 0o755);
    set_mode(&s.path("db"), 0o755);
    s.mkdir("vic");
    s
}

// ---------------------------------------------------------------------------------
// Victims.

/// A file of root's that no attack may change: its content, owner, group, mode,
/// inode and link count are recorded.
struct Victim {
    path: PathBuf,
    meta: (u32, u32, u32, u64, u64),
}

impl Victim {
    fn new(path: PathBuf, gid: u32, mode: u32) -> Victim {
        fs::write(&path, VICTIM).unwrap();
        std::os::unix::fs::chown(&path, Some(0), Some(gid)).unwrap();
        set_mode(&path, mode);
        let m = fs::symlink_metadata(&path).unwrap();
        Victim {
            meta: (m.uid(), m.gid(), m.mode() & 0o7777, m.ino(), m.nlink()),
            path,
        }
    }

    #[track_caller]
    fn untouched(&self, ctx: &str) {
        let m = fs::symlink_metadata(&self.path).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777, m.ino(), m.nlink()),
            self.meta,
            "{ctx}: the victim {} changed owner, mode or links",
            self.path.display()
        );
        assert_eq!(
            fs::read(&self.path).unwrap(),
            VICTIM.as_bytes(),
            "{ctx}: the victim {} was written",
            self.path.display()
        );
    }
}

// ---------------------------------------------------------------------------------
// Running our tools as root.

/// Runs `cmd` with `stdin`.
fn run(mut cmd: Command, stdin: &str) -> Out {
    Out::run(&mut cmd, stdin.as_bytes())
}

/// A root run that failed must say why in one line naming the tool, and never panic.
#[track_caller]
fn clear_failure(o: &Out, ctx: &str) {
    assert_ne!(o.code, 0, "{ctx}: succeeded: {o:?}");
    assert!(
        o.code > 0 && o.code < 100,
        "{ctx}: killed or crashed (exit {}): {o:?}",
        o.code
    );
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(!lines.is_empty(), "{ctx}: no message: {o:?}");
    assert!(
        !o.stderr.contains("panicked"),
        "{ctx}: a panic: {}",
        o.stderr
    );
}

/// `saslpasswd2 -p -c -f DB -u r USER` as root, with the password on stdin.
fn passwd(s: &Scratch, db: &str, user: &str, pw: &str, allow: bool) -> Out {
    let mut c = s.ours_clean("saslpasswd2");
    c.args(["-p", "-c", "-f", db, "-u", "r", user]);
    if allow {
        c.env("SASLDB_ALLOW_UNSAFE_DIR", "1");
    }
    run(c, &format!("{pw}\n"))
}

/// `sasldblistusers2 DB` as root.
fn list(s: &Scratch, db: &str) -> Out {
    let mut c = s.ours_clean("sasldblistusers2");
    c.arg(db);
    run(c, "")
}

/// `sasldb -f DB check --json [--fix]` as root.
fn check(s: &Scratch, db: &str, fix: bool, allow: bool) -> Out {
    let mut c = s.ours_clean("sasldb");
    c.args(["-f", db, "check", "--json"]);
    if fix {
        c.arg("--fix");
    }
    if allow {
        c.env("SASLDB_ALLOW_UNSAFE_DIR", "1");
    }
    run(c, "")
}

/// The codes of a check report's findings.
fn codes(o: &Out) -> Vec<String> {
    o.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

/// A finding's message.
fn finding(o: &Out, code: &str) -> String {
    ours::finding(&o.json(), code)["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates a database as `user` (its own file, in its own directory) with one user.
fn user_db(u: &User, s: &Scratch, format: &str, path: &Path) {
    let mut c = u.ours(s, "saslpasswd2");
    c.args(["-p", "-c", "-f"])
        .arg(format!("{format}:{}", path.display()))
        .args(["-u", "r", "alice"]);
    let o = run(c, "alice-pw\n");
    assert_eq!(o.code, 0, "as {}: {o:?}", u.name);
}

/// Creates a database as root with one user.
fn root_db(s: &Scratch, format: &str, path: &Path) {
    let db = format!("{format}:{}", path.display());
    passwd(s, &db, "alice", "alice-pw", false).ok();
}

// ---------------------------------------------------------------------------------
// Races.

/// How many name swaps a race makes per format.
fn flips() -> u64 {
    std::env::var("SASLDB_HOSTILE_FLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// `renameat2` on this machine.
#[cfg(target_arch = "x86_64")]
const SYS_RENAMEAT2: u32 = 316;
#[cfg(target_arch = "aarch64")]
const SYS_RENAMEAT2: u32 = 276;

/// Starts `user` swapping the names `a` and `b` in `dir` (`RENAME_EXCHANGE`) `n`
/// times, `pause` apart. It prints how many swaps succeeded when done.
fn flipper(user: &User, dir: &Path, a: &str, b: &str, n: u64, pause: Duration) -> Child {
    let script = format!(
        "my ($a, $b, $n, $p) = @ARGV; my $ok = 0; \
         for (1..$n) {{ $ok++ if syscall({SYS_RENAMEAT2}, -100, $a, -100, $b, 2) == 0; \
         select(undef, undef, undef, $p) if $p > 0; }} print \"$ok\\n\";"
    );
    user.cmd(peer("perl"))
        .arg("-e")
        .arg(script)
        .args([a, b, &n.to_string(), &format!("{:.6}", pause.as_secs_f64())])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `attempt` as long as the flipper runs (at most 60 s); returns the attempts
/// made and the swaps done. `attempt` returns an error for an unclear result.
fn race(mut flip: Child, mut attempt: impl FnMut(usize)) -> (usize, u64) {
    let start = Instant::now();
    let mut runs = 0;
    loop {
        if flip.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = flip.kill();
            break;
        }
        attempt(runs);
        runs += 1;
    }
    let out = flip.wait_with_output().unwrap();
    let swaps = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (runs, swaps)
}

/// A root run during a race: success, or a clear refusal.
#[track_caller]
fn ok_or_clear(o: &Out, ctx: &str) {
    if o.code != 0 {
        clear_failure(o, ctx);
    }
}

// ---------------------------------------------------------------------------------
// 1. LMDB's -lock (and data file) symlinks.

#[test]
fn item01_lmdb_lock_symlink_is_never_followed() {
    let u = User::create();
    let s = arena();
    let att = u.home(&s, "att");
    let victim = Victim::new(s.path("vic/victim"), 0, 0o644);
    let data = att.join("db");
    user_db(&u, &s, "lmdb", &data);
    u.sh(
        &att,
        &format!("rm -f db-lock && ln -s {} db-lock", victim.path.display()),
    );
    let db = format!("lmdb:{}", data.display());

    let o = list(&s, &db);
    clear_failure(&o, "sasldblistusers2");
    assert!(o.stderr.contains("symbolic link"), "{o:?}");
    victim.untouched("sasldblistusers2");

    // Refused (saslpasswd2 reads the database before it writes, so the reader's
    // refusal of the link may come first).
    let o = passwd(&s, &db, "bob", NEW_SECRET, false);
    clear_failure(&o, "saslpasswd2");
    assert!(
        o.stderr.contains("symbolic link")
            || o.stderr
                .contains(&format!("{} is owned by {}", att.display(), u.name)),
        "{o:?}"
    );
    let o = passwd(&s, &db, "bob", NEW_SECRET, true);
    clear_failure(&o, "saslpasswd2, unsafe directory allowed");
    assert!(o.stderr.contains("lock file is a symbolic link"), "{o:?}");
    victim.untouched("saslpasswd2");

    let o = check(&s, &db, false, false);
    let found = codes(&o);
    assert!(found.contains(&"lmdb-lock-not-file".into()), "{found:?}");
    assert!(found.contains(&"dir-unsafe".into()), "{found:?}");
    assert!(
        !o.stdout.contains("0777"),
        "a symlink has no mode of its own: {o:?}"
    );
    // --fix refuses to work in the user's directory unless told; then it replaces
    // the link by a lock file of its own.
    let o = check(&s, &db, true, true);
    assert!(!codes(&o).contains(&"lmdb-lock-not-file".into()), "{o:?}");
    victim.untouched("check --fix");
    let lock = fs::symlink_metadata(att.join("db-lock")).unwrap();
    assert!(lock.is_file() && lock.nlink() == 1 && lock.mode() & 0o777 == 0o660);
    list(&s, &db).ok();
}

#[test]
fn item01_race_data_file_swapped_with_a_symlink() {
    let u = User::create();
    let s = arena();
    let victim = Victim::new(s.path("vic/victim"), 0, 0o644);
    for format in FORMATS {
        let att = u.home(&s, &format!("att-{format}"));
        let data = att.join("db");
        user_db(&u, &s, format, &data);
        u.sh(&att, &format!("ln -s {} evil", victim.path.display()));
        let db = format!("{format}:{}", data.display());
        let flip = flipper(&u, &att, "db", "evil", flips(), Duration::from_micros(500));
        let (runs, swaps) = race(flip, |i| {
            let o = passwd(&s, &db, &format!("u{i}"), NEW_SECRET, true);
            ok_or_clear(&o, &format!("{format}: write {i}"));
            if i % 4 == 0 {
                ok_or_clear(&list(&s, &db), &format!("{format}: list {i}"));
            }
        });
        victim.untouched(&format!("{format}: {runs} root runs, {swaps} swaps"));
        assert!(
            runs > 0 && swaps > 0,
            "{format}: {runs} runs, {swaps} swaps"
        );
        eprintln!("item 1, {format}: {runs} root runs during {swaps} swaps; victim untouched");
    }
}

// ---------------------------------------------------------------------------------
// The option for a deployment in a service user's directory.

#[test]
fn unsafe_dir_option_serves_a_service_users_directory() {
    let u = User::create();
    let s = arena();
    for format in FORMATS {
        let dir = u.home(&s, &format!("svc-{format}"));
        let data = dir.join("sasldb2");
        let db = format!("{format}:{}", data.display());
        // Refused without the option, naming the directory and its owner.
        let o = passwd(&s, &db, "alice", "alice-pw", false);
        clear_failure(&o, &format!("{format}: without the option"));
        assert!(
            o.stderr
                .contains(&format!("{} is owned by {}", dir.display(), u.name))
                && o.stderr.contains("SASLDB_ALLOW_UNSAFE_DIR"),
            "{o:?}"
        );
        assert!(!data.exists(), "{format}: written without the option");
        // With it: created, changed again, root:postfix 0640, every user there.
        passwd(&s, &db, "alice", "alice-pw", true).ok();
        passwd(&s, &db, "bob", NEW_SECRET, true).ok();
        passwd(&s, &db, "alice", "alice-pw2", true).ok();
        let m = fs::metadata(&data).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777, m.nlink()),
            (0, postfix_gid().as_raw(), 0o640, 1),
            "{format}"
        );
        list(&s, &db).ok().out_has("alice@r").out_has("bob@r");
        assert!(super::temp_files(&data).is_empty(), "{format}");
        let o = check(&s, &db, false, true);
        assert!(codes(&o).contains(&"dir-unsafe".into()), "{o:?}");
        if format == "sqlite" {
            // A journal the service user leaves there (a crash, or a running writer):
            // refused, untouched, the database unchanged.
            let journal = dir.join("sasldb2-journal");
            u.sh(&dir, "printf 'journal' > sasldb2-journal");
            let before = fs::read(&data).unwrap();
            let o = passwd(&s, &db, "carol", NEW_SECRET, true);
            clear_failure(&o, "sqlite with a journal");
            // (saslpasswd2 reads first: the reader's refusal may come first.)
            assert!(
                o.stderr.contains("SQLite's journal is there") || o.stderr.contains("hot journal"),
                "{o:?}"
            );
            assert_eq!(fs::read(&data).unwrap(), before);
            assert_eq!(fs::read(&journal).unwrap(), b"journal");
            fs::remove_file(&journal).unwrap();
            passwd(&s, &db, "carol", NEW_SECRET, true).ok();
            assert!(!journal.exists());
        }
    }
}

// ---------------------------------------------------------------------------------
// 2. LMDB's lock mode.

#[test]
fn item02_lmdb_lock_is_never_writable_by_others() {
    let u = User::create();
    let s = arena();
    let data = s.path("db/sasldb2");
    root_db(&s, "lmdb", &data);
    let lock = s.path("db/sasldb2-lock");
    // As mdb_load leaves a file under umask 022; the lock file to be made again.
    set_mode(&data, 0o644);
    fs::remove_file(&lock).unwrap();
    let db = format!("lmdb:{}", data.display());
    list(&s, &db).ok();
    assert_eq!(
        fs::metadata(&lock).unwrap().mode() & 0o7777,
        0o660,
        "reader"
    );
    let try_write = || {
        u.cmd(peer("perl"))
            .args(["-e", "open(my $f, '+<', $ARGV[0]) or exit 3; exit 0"])
            .arg(&lock)
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(
        try_write(),
        Some(3),
        "the user opened the lock file for writing"
    );
    passwd(&s, &db, "bob", NEW_SECRET, false).ok();
    assert_eq!(
        fs::metadata(&lock).unwrap().mode() & 0o7777,
        0o660,
        "writer"
    );
    assert_eq!(fs::metadata(&data).unwrap().mode() & 0o7777, 0o640, "data");
    assert_eq!(try_write(), Some(3));
}

// ---------------------------------------------------------------------------------
// 3. A directory component swapped for a symlink.

#[test]
fn item03_swapped_directory_component() {
    let u = User::create();
    let s = arena();
    for format in FORMATS {
        let att = u.home(&s, &format!("att-{format}"));
        let vic = s.mkdir(&format!("vic/{format}"));
        // What the link points to when swapped in: root's own file of that name.
        let victim = Victim::new(vic.join("sasldb2"), 0, 0o644);
        u.sh(&att, "mkdir d");
        user_db(&u, &s, format, &att.join("d/sasldb2"));
        u.sh(
            &att,
            &format!("ln -s d/sasldb2 sasldb2 && ln -s {} dlink", vic.display()),
        );
        // The issue's setup: root names the symlink into d/. Refused, whether
        // unsafe directories are allowed or not (a link there is never followed).
        let db = format!("{format}:{}", att.join("sasldb2").display());
        for allow in [false, true] {
            let o = passwd(&s, &db, "bob", NEW_SECRET, allow);
            clear_failure(&o, &format!("{format}: through the link, allow={allow}"));
            assert!(o.stderr.contains(&att.display().to_string()), "{o:?}");
        }
        // Naming d/ itself, allowed: the swaps race root's walk; root writes in the
        // directory it opened, or refuses the symlink it finds.
        let db = format!("{format}:{}", att.join("d/sasldb2").display());
        let flip = flipper(&u, &att, "d", "dlink", flips(), Duration::from_micros(500));
        let (runs, swaps) = race(flip, |i| {
            let o = passwd(&s, &db, &format!("u{i}"), NEW_SECRET, true);
            ok_or_clear(&o, &format!("{format}: write {i}"));
        });
        victim.untouched(&format!("{format}: {runs} root runs, {swaps} swaps"));
        assert!(runs > 0 && swaps > 0);
        eprintln!("item 3, {format}: {runs} root runs during {swaps} swaps; victim untouched");
    }
}

// ---------------------------------------------------------------------------------
// 4. Lock files swapped with symlinks while root sets their owner and mode.

#[test]
fn item04_lock_files_swapped_with_symlinks() {
    let u = User::create();
    let s = arena();
    // As in the issue: root:postfix 0644.
    let victim = Victim::new(s.path("vic/victim"), postfix_gid().as_raw(), 0o644);
    for format in FORMATS {
        let att = u.home(&s, &format!("att-{format}"));
        let data = att.join("db");
        user_db(&u, &s, format, &data);
        let db = format!("{format}:{}", data.display());
        let mut pairs = vec![("db.lock", "evil.lock")];
        if format == "lmdb" {
            pairs.push(("db-lock", "evil-lock"));
        }
        for (lock, evil) in pairs {
            u.sh(&att, &format!("ln -sf {} {evil}", victim.path.display()));
            let flip = flipper(&u, &att, lock, evil, flips(), Duration::from_micros(500));
            let (runs, swaps) = race(flip, |i| {
                let o = passwd(&s, &db, &format!("u{i}"), NEW_SECRET, true);
                ok_or_clear(&o, &format!("{format} {lock}: write {i}"));
                if i % 3 == 0 {
                    let o = check(&s, &db, true, true);
                    assert!(!o.stderr.contains("panicked"), "{o:?}");
                }
            });
            victim.untouched(&format!("{format} {lock}: {runs} root runs, {swaps} swaps"));
            eprintln!(
                "item 4, {format} {lock}: {runs} root runs during {swaps} swaps; victim untouched"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// 5. Hard-linked lock files.

#[test]
fn item05_hard_linked_lock_files_are_refused() {
    let u = User::create();
    let s = arena();
    let protected = fs::read_to_string("/proc/sys/fs/protected_hardlinks")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    for format in FORMATS {
        let att = u.home(&s, &format!("att-{format}"));
        let victim = Victim::new(s.path(&format!("vic/secret-{format}")), 0, 0o600);
        let data = att.join("db");
        user_db(&u, &s, format, &data);
        let db = format!("{format}:{}", data.display());
        let mut locks = vec!["db.lock"];
        if format == "lmdb" {
            locks.push("db-lock");
        }
        for lock in locks {
            let _ = fs::remove_file(att.join(lock));
            // The user links root's file into its directory: the kernel stops it where
            // protected_hardlinks is 1; where it is 0 the link is made. Either way the
            // link is there for root to meet (made by the test if the user could not).
            let by_user = u
                .cmd("/bin/ln")
                .arg(&victim.path)
                .arg(att.join(lock))
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert_eq!(by_user, !protected, "protected_hardlinks={protected}");
            if !by_user {
                fs::hard_link(&victim.path, att.join(lock)).unwrap();
            }
            let v = Victim {
                meta: (0, 0, 0o600, victim.meta.3, 2),
                path: victim.path.clone(),
            };
            let o = passwd(&s, &db, "bob", NEW_SECRET, true);
            clear_failure(&o, &format!("{format} {lock}"));
            assert!(o.stderr.contains("hard links"), "{o:?}");
            if lock == "db-lock" {
                let o = list(&s, &db);
                clear_failure(&o, &format!("{format} {lock}: list"));
                assert!(o.stderr.contains("hard links"), "{o:?}");
            }
            v.untouched(&format!("{format} {lock}: write refused"));
            let code = if lock == "db.lock" {
                "lock-not-file"
            } else {
                "lmdb-lock-not-file"
            };
            let o = check(&s, &db, false, true);
            assert!(finding(&o, code).contains("2 hard links"), "{o:?}");
            let o = check(&s, &db, true, true);
            assert!(!codes(&o).contains(&code.to_owned()), "{o:?}");
            victim.untouched(&format!("{format} {lock}: after check --fix"));
            passwd(&s, &db, "bob", NEW_SECRET, true).ok();
            victim.untouched(&format!("{format} {lock}: after a write"));
        }
    }
}

// ---------------------------------------------------------------------------------
// 6. Files written in place that someone else holds open.

/// A process of `user` that opened `path` for reading, and reads it to its end (from
/// the start) when told.
struct Holder(Child);

impl Holder {
    fn open(user: &User, path: &Path) -> Holder {
        let mut c = user
            .cmd(peer("perl"))
            .args([
                "-e",
                "open(my $f, '<', $ARGV[0]) or die \"open: $!\"; $| = 1; print \"ready\\n\"; \
                 <STDIN>; binmode $f; local $/; my $c = <$f>; print $c;",
            ])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line,
            "ready\n",
            "the user could not open {}",
            path.display()
        );
        Holder(c)
    }

    /// What the old descriptor reads now.
    fn read(mut self) -> Vec<u8> {
        self.0.stdin.take().unwrap().write_all(b"\n").unwrap();
        let mut out = Vec::new();
        self.0.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        self.0.wait().unwrap();
        out
    }
}

fn holds(bytes: &[u8], secret: &str) -> bool {
    bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
}

#[test]
fn item06_in_place_formats_are_not_written_through_an_old_descriptor() {
    let u = User::create();
    let s = arena();
    for format in ["lmdb", "sqlite"] {
        // The issue's case: the user's own file in its own directory, written by root
        // with unsafe directories allowed.
        let att = u.home(&s, &format!("att-{format}"));
        let data = att.join("db");
        user_db(&u, &s, format, &data);
        let db = format!("{format}:{}", data.display());
        let ino = fs::metadata(&data).unwrap().ino();
        let held = Holder::open(&u, &data);
        let o = passwd(&s, &db, "bob", NEW_SECRET, true);
        o.ok();
        assert!(o.stderr.contains("written as a new file"), "{o:?}");
        let m = fs::metadata(&data).unwrap();
        assert_ne!(m.ino(), ino, "{format}: written in place");
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (0, postfix_gid().as_raw(), 0o640)
        );
        list(&s, &db).ok().out_has("alice@r").out_has("bob@r");
        let seen = held.read();
        assert!(
            !holds(&seen, NEW_SECRET),
            "{format}: the user read the new secret"
        );

        // An empty file the user made and holds open: no different.
        u.sh(&att, "touch empty");
        let empty = att.join("empty");
        let held = Holder::open(&u, &empty);
        let o = passwd(
            &s,
            &format!("{format}:{}", empty.display()),
            "bob",
            NEW_SECRET,
            true,
        );
        o.ok();
        assert!(
            held.read().is_empty(),
            "{format}: the empty file was written"
        );

        // A user's file in root's directory (handed over earlier): rebuilt too.
        let data = s.path(&format!("db/{format}-given"));
        root_db(&s, format, &data);
        std::os::unix::fs::chown(&data, Some(u.uid), Some(u.gid)).unwrap();
        set_mode(&data, 0o600);
        let db = format!("{format}:{}", data.display());
        let held = Holder::open(&u, &data);
        let o = passwd(&s, &db, "carol", NEW_SECRET, false);
        o.ok();
        assert!(o.stderr.contains("written as a new file"), "{o:?}");
        let seen = held.read();
        assert!(
            !holds(&seen, NEW_SECRET),
            "{format}: the user read the new secret"
        );
        // The new file has it, and every user.
        let o = list(&s, &db);
        o.ok().out_has("carol@r").out_has("alice@r");
        assert!(holds(&fs::read(&data).unwrap(), NEW_SECRET) || format == "sqlite");
    }
}

// ---------------------------------------------------------------------------------
// 7. A file the readers refuse is refused by the writer too.

#[test]
fn item07_writer_refuses_what_the_listing_refuses() {
    use sasldb::internals::bdb::{WriteOptions, write_records};
    let u = User::create();
    let s = arena();
    let att = u.home(&s, "att");
    let path = att.join("db");
    // 300 users and one long value (off-page, two overflow pages of 512 bytes).
    let mut recs: Vec<sasldb::Record> = (0..300)
        .map(|i| {
            sasldb::Record::new(
                crate::support::key(format!("u{i:03}"), "r", "userPassword"),
                b"pw".to_vec(),
            )
        })
        .collect();
    recs.push(sasldb::Record::new(
        crate::support::key("big", "r", "note"),
        vec![b'x'; 700],
    ));
    let hostile = s.path("vic/hostile");
    {
        let mut f = fs::File::create(&hostile).unwrap();
        let opts = WriteOptions {
            page_size: 512,
            ..WriteOptions::default()
        };
        write_records(recs.into_iter().map(Ok), &opts, &mut f).unwrap();
    }
    let mut bytes = fs::read(&hostile).unwrap();
    // The off-page item names its first overflow page and its length: shorten the
    // length so the chain is longer than the item allows (the issue's case).
    let first = (0..bytes.len() / 512)
        .find(|&p| bytes[p * 512 + 25] == 7 && bytes[p * 512 + 12..p * 512 + 16] == [0; 4])
        .expect("an overflow chain") as u32;
    let mut item = vec![3u8, 0, 0, 0];
    item.extend_from_slice(&first.to_le_bytes());
    item.extend_from_slice(&700u32.to_le_bytes());
    let at = bytes
        .windows(item.len())
        .position(|w| w == item.as_slice())
        .expect("the off-page item");
    // One full page (512 - 26 bytes of header): the second page is one too many.
    bytes[at + 8..at + 12].copy_from_slice(&486u32.to_le_bytes());
    // The user makes the file; root manages it.
    fs::write(&hostile, &bytes).unwrap();
    set_mode(&hostile, 0o644);
    u.sh(&att, &format!("cp {} db", hostile.display()));
    let db = format!("bdb:{}", path.display());
    let listed = list(&s, &db);
    clear_failure(&listed, "sasldblistusers2");
    let why = listed
        .stderr
        .split_once("overflow chain")
        .map(|(_, rest)| format!("overflow chain{}", rest.trim_end()))
        .unwrap_or_else(|| panic!("the listing's reason: {listed:?}"));
    let before = fs::read(&path).unwrap();
    for user in ["newcomer", "u000", "u150"] {
        let o = passwd(&s, &db, user, NEW_SECRET, true);
        clear_failure(&o, "saslpasswd2");
        assert!(o.stderr.contains(&why), "{why:?} not in {o:?}");
        assert_eq!(fs::read(&path).unwrap(), before, "the file changed");
    }
}

// ---------------------------------------------------------------------------------
// 8. Sparse files: a Berkeley DB or GDBM header declaring far more than the file
// holds, an LMDB or SQLite file with a 4 GiB hole at its end.

#[test]
fn item08_sparse_files_are_never_inflated() {
    let u = User::create();
    let s = arena();
    for format in FORMATS {
        let att = u.home(&s, &format!("att-{format}"));
        // SQLite is never written as root in a directory of the user's: root's file
        // in root's directory, written in place.
        let path = if format == "sqlite" {
            s.path("db/sparse-sqlite")
        } else {
            att.join("db")
        };
        if format == "sqlite" {
            root_db(&s, format, &path);
        } else {
            user_db(&u, &s, format, &path);
        }
        let mut b = fs::read(&path).unwrap();
        match format {
            // A million pages declared (last_pgno at offset 32).
            "bdb" => {
                let ps = u32::from_le_bytes(b[20..24].try_into().unwrap()) as u64;
                b[32..36].copy_from_slice(&(((4u64 << 30) / ps - 1) as u32).to_le_bytes());
            }
            // The next free block at 4 GiB (next_block at offset 32).
            "gdbm" => b[32..40].copy_from_slice(&(4u64 << 30).to_le_bytes()),
            _ => {}
        }
        let head = s.path(&format!("vic/sparse-head-{format}"));
        fs::write(&head, &b).unwrap();
        set_mode(&head, 0o644);
        if format == "sqlite" {
            let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(4 << 30).unwrap();
        } else {
            u.sh(
                &att,
                &format!("cat {} > db && truncate -s 4G db", head.display()),
            );
        }
        let db = format!("{format}:{}", path.display());
        list(&s, &db).ok().out_has("alice@r");
        let t = Instant::now();
        passwd(&s, &db, "bob", NEW_SECRET, true).ok();
        let took = t.elapsed();
        let m = fs::metadata(&path).unwrap();
        let allocated = m.blocks() * 512;
        assert!(allocated < 1 << 20, "{format}: {allocated} bytes allocated");
        if format != "sqlite" {
            // Rewritten (BDB, GDBM) or rebuilt as a new file (LMDB, the user's).
            assert!(m.len() < 1 << 20, "{format}: the file is {} bytes", m.len());
        }
        assert!(took < Duration::from_secs(10), "{format}: took {took:?}");
        assert!(super::temp_files(&path).is_empty());
        list(&s, &db).ok().out_has("alice@r").out_has("bob@r");
        eprintln!(
            "item 8, {format}: a 4 GiB sparse file written in {took:?}: {} bytes, {allocated} allocated",
            m.len()
        );
    }
}

// ---------------------------------------------------------------------------------
// 9 to 11. postconf.

/// The mail configuration directory `mail/` of `user`'s in `s` with `main_cf`.
fn user_mail(u: &User, s: &Scratch, rel: &str, main_cf: &str) -> PathBuf {
    let d = u.home(s, rel);
    fs::write(s.path("vic/main.cf"), main_cf).unwrap();
    set_mode(&s.path("vic/main.cf"), 0o644);
    u.sh(
        &d,
        &format!(
            "cp {} main.cf && : > master.cf && touch -d '1 hour ago' main.cf master.cf",
            s.path("vic/main.cf").display()
        ),
    );
    d
}

/// Our processes and Postfix's `postconf` still running with `needle` in their
/// command line.
fn running(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && cmd.contains("postconf") {
                out.push(cmd);
            }
        }
    }
    out
}

#[test]
fn item09_postconf_that_never_answers_is_killed() {
    let u = User::create();
    let s = arena();
    // 40 levels of $a = $b$b: postconf expands it for days. Our parser refuses it.
    let mut cf = String::from("myhostname = $p0\n");
    for i in 0..40 {
        cf.push_str(&format!("p{i} = $p{}$p{}\n", i + 1, i + 1));
    }
    cf.push_str("p40 = x\n");
    let mail = user_mail(&u, &s, "att-mail", &cf);
    let mut c = s.ours_clean("sasldb");
    c.env("MAIL_CONFIG", &mail).arg("realm");
    let t = Instant::now();
    let o = run(c, "");
    let took = t.elapsed();
    clear_failure(&o, "sasldb realm");
    assert!(took < Duration::from_secs(12), "took {took:?}: {o:?}");
    let mut c = s.ours_clean("saslpasswd2");
    c.env("MAIL_CONFIG", &mail)
        .args(["-p", "-c", "-f"])
        .arg(s.path("db/sasldb2"))
        .arg("alice");
    let t = Instant::now();
    let o = run(c, "pw\n");
    let took2 = t.elapsed();
    clear_failure(&o, "saslpasswd2");
    assert!(took2 < Duration::from_secs(12), "took {took2:?}: {o:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(running(&mail.display().to_string()), Vec::<String>::new());
    eprintln!("item 9: sasldb realm gave up in {took:?}, saslpasswd2 in {took2:?}");
}

#[test]
fn item10_postconf_is_never_taken_from_path() {
    let u = User::create();
    let s = arena();
    let att = u.home(&s, "att");
    let marker = att.join("ran");
    fs::write(
        s.path("vic/postconf"),
        format!(
            "#!/bin/sh\ntouch {}\necho evil.example\necho evil.example\n",
            marker.display()
        ),
    )
    .unwrap();
    set_mode(&s.path("vic/postconf"), 0o755);
    u.sh(
        &att,
        &format!(
            "cp {} postconf && chmod 755 postconf",
            s.path("vic/postconf").display()
        ),
    );
    crate::support::write_aged(&s.path("mail/main.cf"), "myhostname = good.example\n");
    fs::write(s.path("mail/master.cf"), "").unwrap();
    let db = s.path("db/sasldb2");
    let mut c = s.ours_clean("saslpasswd2");
    c.current_dir(&att)
        .env("PATH", ".:/usr/bin:/bin")
        .args(["-p", "-c", "-f"])
        .arg(&db)
        .arg("alice");
    run(c, "pw\n").ok();
    assert!(!marker.exists(), "root ran the user's postconf from PATH");
    list(&s, db.to_str().unwrap())
        .ok()
        .out_has("alice@good.example");
    // Named by main.cf's command_directory, in the user's directory: not run either.
    crate::support::write_aged(
        &s.path("mail/main.cf"),
        &format!(
            "myhostname = good.example\ncommand_directory = {}\n",
            att.display()
        ),
    );
    let mut c = s.ours_clean("sasldb");
    c.arg("realm");
    let o = run(c, "");
    o.ok().out_has("good.example");
    assert!(
        !marker.exists(),
        "root ran the user's postconf from command_directory"
    );
    assert!(o.stderr.contains("not running"), "{o:?}");
}

#[test]
fn item11_postconf_gets_an_empty_environment() {
    let s = scratch();
    crate::support::write_aged(&s.path("mail/main.cf"), "myhostname = env.example\n");
    fs::write(s.path("mail/master.cf"), "").unwrap();
    let trace = s.path("trace");
    let mut c = Command::new(peer("strace"));
    s.clean_env(&mut c);
    c.env("PGPASSWORD", "Pg-Secret-4711")
        .env("PGUSER", "someone")
        .env("HOME", "/root")
        .env("LD_PRELOAD", "")
        .args(["-f", "-qq", "-v", "-s", "4096", "-e", "trace=execve", "-o"])
        .arg(&trace)
        .arg(ours::exe("saslpasswd2"))
        .args(["-p", "-c", "-f"])
        .arg(s.path("db/sasldb2"))
        .arg("alice");
    run(c, "pw\n").ok();
    let text = fs::read_to_string(&trace).unwrap();
    let spawn = text
        .lines()
        .find(|l| l.contains("execve(\"/usr/sbin/postconf\""))
        .unwrap_or_else(|| panic!("no postconf in the trace:\n{text}"));
    let env = spawn
        .split_once("], [")
        .map(|(_, e)| e)
        .expect("the environment in the trace");
    assert!(
        env.starts_with("\"PATH=/usr/sbin:/usr/bin:/sbin:/bin\"]"),
        "postconf got more than PATH: {spawn}"
    );
    assert!(!text.contains("Pg-Secret-4711") || !spawn.contains("Pg-Secret"));
}

// ---------------------------------------------------------------------------------
// 12. Inputs that never end.

/// Runs `cmd` (stdin from `stdin`) under `/usr/bin/time`, and returns its output, its
/// peak RSS in KiB and the time it took. (Our own `wait4` would count the pages of
/// this large test process, which the child shares until it executes.)
fn measured(cmd: Command, stdin: Stdio, s: &Scratch) -> (Out, u64, Duration) {
    let rss = s.path("rss");
    let mut timed = Command::new(peer("time"));
    timed
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    timed.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    if let Some(d) = cmd.get_current_dir() {
        timed.current_dir(d);
    }
    let t = Instant::now();
    let out = timed.stdin(stdin).output().unwrap();
    let took = t.elapsed();
    let kib = fs::read_to_string(&rss)
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("peak RSS from /usr/bin/time");
    (Out::from(out), kib, took)
}

#[test]
fn item12_endless_inputs_are_bounded() {
    let u = User::create();
    let s = arena();
    let att = u.home(&s, "att");

    // The password, from /dev/zero.
    let mut c = s.ours_clean("saslpasswd2");
    c.args(["-p", "-c", "-f"])
        .arg(s.path("db/sasldb2"))
        .args(["-u", "r", "alice"]);
    let (o, rss, took) = measured(c, Stdio::from(fs::File::open("/dev/zero").unwrap()), &s);
    clear_failure(&o, "saslpasswd2 </dev/zero");
    o.err_has("the password is too long");
    assert!(
        took < Duration::from_secs(5) && rss < 64 << 10,
        "{took:?}, {rss} KiB"
    );
    eprintln!("item 12, password from /dev/zero: refused in {took:?}, peak {rss} KiB");

    // An import from /dev/zero (one endless line), and a file of the user's with a
    // 1 GB line (a hole) after a good one: reading stops at 4 MiB, nothing written.
    let db = s.path("db/imported");
    let mut c = s.ours_clean("sasldb");
    c.arg("-f").arg(&db).args(["-u", "r", "import"]);
    let (o, rss, took) = measured(c, Stdio::from(fs::File::open("/dev/zero").unwrap()), &s);
    clear_failure(&o, "sasldb import </dev/zero");
    o.err_has("line 1 is longer than 4 MiB: not an import file");
    assert!(
        took < Duration::from_secs(5) && rss < 64 << 10,
        "{took:?}, {rss} KiB"
    );
    eprintln!("item 12, import from /dev/zero: refused in {took:?}, peak {rss} KiB");
    u.sh(
        &att,
        "printf 'alice:pw\\n' > users && truncate -s 1G users && chmod 644 users",
    );
    let mut c = s.ours_clean("sasldb");
    c.arg("-f")
        .arg(&db)
        .args(["-u", "r", "import"])
        .arg(att.join("users"));
    let (o, rss, took) = measured(c, Stdio::null(), &s);
    clear_failure(&o, "sasldb import of a 1 GB line");
    o.err_has("line 2 is longer than 4 MiB: not an import file");
    assert!(!db.exists(), "the import wrote");
    assert!(
        took < Duration::from_secs(5) && rss < 64 << 10,
        "{took:?}, {rss} KiB"
    );
    eprintln!("item 12, import of a 1 GB line: refused in {took:?}, peak {rss} KiB");

    // A PostgreSQL password file with a 300 MB line (the user's file, a hole).
    u.sh(&att, "truncate -s 300M pgpass && chmod 600 pgpass");
    let mut c = s.ours_clean("sasldb");
    c.env("PGPASSFILE", att.join("pgpass")).args([
        "-f",
        "postgresql://sasl@127.0.0.1:1/mail",
        "list",
    ]);
    let (o, rss, took) = measured(c, Stdio::null(), &s);
    clear_failure(&o, "sasldb list with a huge password file");
    assert!(
        took < Duration::from_secs(30) && rss < 64 << 10,
        "{took:?}, {rss} KiB: {o:?}"
    );
    eprintln!("item 12, 300 MB password file line: {took:?}, peak {rss} KiB");

    // A 50 MB myhostname in the user's main.cf; postconf echoes it back and warns.
    let mail = u.home(&s, "att-mail");
    u.sh(
        &mail,
        "{ printf 'myhostname = '; head -c 50000000 /dev/zero | tr '\\0' a; echo; } > main.cf \
         && : > master.cf && touch -d '1 hour ago' main.cf master.cf",
    );
    let mut c = s.ours_clean("sasldb");
    c.env("MAIL_CONFIG", &mail).arg("realm");
    let (o, rss, took) = measured(c, Stdio::null(), &s);
    clear_failure(&o, "sasldb realm with a 50 MB myhostname");
    assert!(
        o.stderr.len() < 4096,
        "{} bytes of messages",
        o.stderr.len()
    );
    assert!(
        took < Duration::from_secs(15) && rss < 64 << 10,
        "{took:?}, {rss} KiB: {o:?}"
    );
    eprintln!(
        "item 12, 50 MB myhostname: {took:?}, peak {rss} KiB: {}",
        o.stderr.trim()
    );
    // Under the file limit, 3 MB: postconf echoes it (its output is cut short at 64
    // KiB and refused), then our parser refuses the line. The peak counts postconf.
    u.sh(
        &mail,
        "{ printf 'myhostname = '; head -c 3000000 /dev/zero | tr '\\0' a; echo; } > main.cf \
         && touch -d '1 hour ago' main.cf",
    );
    let mut c = s.ours_clean("sasldb");
    c.env("MAIL_CONFIG", &mail).arg("realm");
    let (o, rss, took) = measured(c, Stdio::null(), &s);
    clear_failure(&o, "sasldb realm with a 3 MB myhostname");
    o.err_has("logical line longer than 1 MiB");
    assert!(
        o.stderr.len() < 4096,
        "{} bytes of messages",
        o.stderr.len()
    );
    assert!(
        took < Duration::from_secs(15) && rss < 64 << 10,
        "{took:?}, {rss} KiB: {o:?}"
    );
    eprintln!("item 12, 3 MB myhostname: {took:?}, peak {rss} KiB (postconf included)");
}

// ---------------------------------------------------------------------------------
// 13. What sasldb check says about all this.

#[test]
fn item13_check_reports_what_root_would_refuse() {
    let u = User::create();
    let s = arena();

    // A world-writable sticky directory holding root's database.
    let sticky = s.mkdir("sticky");
    set_mode(&sticky, 0o1777);
    let data = sticky.join("sasldb2");
    passwd(&s, data.to_str().unwrap(), "alice", "pw", true).ok();
    let db = data.to_str().unwrap().to_owned();
    let o = check(&s, &db, false, false);
    let m = finding(&o, "dir-unsafe");
    assert!(
        m.contains("writable by everyone (sticky)") && m.contains("move"),
        "{m}"
    );

    // A directory of the user's: the advice, followed, clears the finding.
    let att = u.home(&s, "att");
    let data = att.join("sasldb2");
    passwd(&s, data.to_str().unwrap(), "alice", "pw", true).ok();
    let db = data.to_str().unwrap().to_owned();
    let m = finding(&check(&s, &db, false, false), "dir-unsafe");
    let advice = format!("chown root:root {0} && chmod go-w {0}", att.display());
    assert!(
        m.contains(&format!("owned by {}", u.name)) && m.contains(&advice),
        "{m}"
    );
    let st = Command::new("/bin/sh")
        .arg("-c")
        .arg(&advice)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!codes(&check(&s, &db, false, false)).contains(&"dir-unsafe".into()));

    // Root's directory from here on: hard-linked .lock, symlinked LMDB lock, SQLite
    // journal symlink.
    let victim = Victim::new(s.path("vic/victim"), 0, 0o600);
    let data = s.path("db/bdb");
    root_db(&s, "bdb", &data);
    let db = data.to_str().unwrap().to_owned();
    let lock = s.path("db/bdb.lock");
    fs::remove_file(&lock).unwrap();
    fs::hard_link(&victim.path, &lock).unwrap();
    let m = finding(&check(&s, &db, false, false), "lock-not-file");
    assert!(m.contains("2 hard links"), "{m}");
    let o = check(&s, &db, true, false);
    assert!(!codes(&o).contains(&"lock-not-file".into()), "{o:?}");
    assert!(!lock.exists());
    passwd(&s, &db, "bob", "pw", false).ok();
    victim.untouched("hard-linked .lock");

    let data = s.path("db/lmdb");
    root_db(&s, "lmdb", &data);
    let db = format!("lmdb:{}", data.display());
    let lock = s.path("db/lmdb-lock");
    fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim.path, &lock).unwrap();
    let o = check(&s, &db, false, false);
    let m = finding(&o, "lmdb-lock-not-file");
    assert!(m.contains("symbolic link"), "{m}");
    assert!(!o.stdout.contains("0777"), "{o:?}");
    let o = check(&s, &db, true, false);
    assert!(!codes(&o).contains(&"lmdb-lock-not-file".into()), "{o:?}");
    assert!(fs::symlink_metadata(&lock).unwrap().is_file());
    list(&s, &db).ok().out_has("alice@r");

    let data = s.path("db/sqlite");
    root_db(&s, "sqlite", &data);
    let db = format!("sqlite:{}", data.display());
    let journal = s.path("db/sqlite-journal");
    std::os::unix::fs::symlink(&victim.path, &journal).unwrap();
    let o = list(&s, &db);
    clear_failure(&o, "listing with a journal symlink");
    assert!(
        o.stderr.contains("sqlite-journal is a symbolic link"),
        "{o:?}"
    );
    assert!(!o.stderr.contains("run any write"), "{o:?}");
    let o = check(&s, &db, false, false);
    assert!(
        finding(&o, "sqlite-journal").contains("symbolic link"),
        "{o:?}"
    );
    let o = check(&s, &db, true, false);
    assert!(!codes(&o).contains(&"sqlite-journal".into()), "{o:?}");
    list(&s, &db).ok().out_has("alice@r");
    passwd(&s, &db, "bob", "pw", false).ok();
    victim.untouched("check --fix");
}
