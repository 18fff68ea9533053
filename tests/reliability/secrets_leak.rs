//! Secrets never leave through argv, the environment of spawned processes, or
//! messages.
//!
//! - Every process our binaries spawn (`postconf`, for the default realm) is traced
//!   with `strace -f -v -e trace=execve`: the password is in no argv and no
//!   environment, and the trace does show the spawn (so the check means something).
//! - Distinctive passwords go into every failure path we can reach from the command
//!   line (bad passwords, bad import entries of every input format, a held lock, an
//!   unwritable directory, a FIFO, wrong passwords to `verify`...): no 8-byte piece of
//!   them appears in stdout or stderr.
//!
//! Zeroization of freed memory is checked by the `zeroize` test binary
//! (tests/zeroize.rs), which needs its own global allocator.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use super::scratch;
use crate::support::{Scratch, ours, peer, run_with_stdin};

/// Distinctive passwords: none of their 8-byte windows occurs by chance.
const PW: &str = "Zq7pL9mW2xR5vK3nTb8c";
const PW2: &str = "Hj4sNf6dQy1gUe0aPw9r";

/// Whether `text` holds any 8-byte window of `secret`, in any letter case.
fn leaks(text: &[u8], secret: &str) -> Option<String> {
    secret
        .as_bytes()
        .windows(8)
        .find(|w| text.windows(8).any(|t| t.eq_ignore_ascii_case(w)))
        .map(|w| String::from_utf8_lossy(w).into_owned())
}

fn write_main_cf(s: &Scratch) {
    fs::write(
        s.path("mail/main.cf"),
        "myhostname = host.leak.test\nmydomain = leak.test\n",
    )
    .unwrap();
}

fn run(mut cmd: Command, input: &[u8]) -> Output {
    run_with_stdin(&mut cmd, input)
}

#[test]
fn spawned_processes_never_get_the_password() {
    let s = scratch();
    write_main_cf(&s);
    let db = s.path("db").join("sasldb2");
    let db = db.to_str().unwrap();
    let cases: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
        (
            "saslpasswd2",
            vec!["-p", "-f", db, "alice"],
            format!("{PW}\n").into(),
        ),
        (
            "saslpasswd2",
            vec!["-p", "-n", "-f", db, "bob"],
            format!("{PW}\n").into(),
        ),
        (
            "sasldb",
            vec!["-f", db, "import", "-"],
            format!("carol:{PW}\ndave:{PW2}\n").into(),
        ),
        (
            "sasldb",
            vec!["-f", db, "verify", "alice"],
            format!("{PW}\n").into(),
        ),
        (
            "sasldb",
            vec!["-f", db, "verify", "alice"],
            format!("{PW2}\n").into(),
        ),
    ];
    for (tool, args, input) in cases {
        let trace = s.path("trace");
        let _ = fs::remove_file(&trace);
        let mut cmd = Command::new(peer("strace"));
        s.clean_env(&mut cmd);
        cmd.args(["-f", "-qq", "-v", "-s", "65536", "-e", "trace=execve", "-o"])
            .arg(&trace)
            .arg(ours::exe(tool))
            .args(&args);
        let out = run(cmd, &input);
        let what = format!("{tool} {args:?}");
        // verify with the wrong password exits 1; everything else succeeds.
        assert!(
            out.status.success() || input.starts_with(PW2.as_bytes()),
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = fs::read(&trace).unwrap();
        let execs = String::from_utf8_lossy(&text);
        assert!(
            execs.contains("postconf"),
            "{what}: the trace shows no postconf spawn, so it proves nothing:\n{execs}"
        );
        for pw in [PW, PW2] {
            assert_eq!(
                leaks(&text, pw),
                None,
                "{what}: a spawned process got the password"
            );
        }
        for stream in [&out.stdout, &out.stderr] {
            assert_eq!(leaks(stream, PW), None, "{what}");
            assert_eq!(leaks(stream, PW2), None, "{what}");
        }
    }
}

#[test]
fn failure_messages_never_contain_the_password() {
    let s = scratch();
    write_main_cf(&s);
    let dir = s.path("db");
    let path = dir.join("sasldb2");
    let db = path.to_str().unwrap().to_string();
    // An existing database with alice.
    let mut c = s.ours_clean("saslpasswd2");
    c.args(["-p", "-f", &db, "-u", "leak.test", "alice"]);
    assert!(run(c, format!("{PW2}\n").as_bytes()).status.success());

    let long = PW.repeat(60);
    let mut cases: Vec<(String, Command, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, tool: &str, args: &[&str], input: Vec<u8>| {
        let mut c = s.ours_clean(tool);
        c.args(args);
        cases.push((name.to_string(), c, input));
    };
    let passwd = ["-p", "-f", &db, "-u", "leak.test", "alice"];
    add(
        "trailing CR",
        "saslpasswd2",
        &passwd,
        format!("{PW}\r\n").into(),
    );
    add(
        "too long",
        "saslpasswd2",
        &passwd,
        format!("{long}\n").into(),
    );
    add(
        "NUL",
        "saslpasswd2",
        &passwd,
        format!("{PW}\0{PW}\n").into(),
    );
    add(
        "bad user",
        "saslpasswd2",
        &["-p", "-f", &db, "-u", "leak.test", "al\x07ice"],
        format!("{PW}\n").into(),
    );
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    add(
        "FIFO",
        "saslpasswd2",
        &["-p", "-f", fifo.to_str().unwrap(), "-u", "r", "alice"],
        format!("{PW}\n").into(),
    );
    let import = ["-f", &db, "-u", "leak.test", "import", "-"];
    add(
        "import: bad user",
        "sasldb",
        &import,
        format!("al\x07ice:{PW}\n").into(),
    );
    add(
        "import: CR",
        "sasldb",
        &import,
        format!("alice:{PW}\r\r\n").into(),
    );
    add(
        "import: too long",
        "sasldb",
        &import,
        format!("alice:{long}\n").into(),
    );
    add(
        "import: NUL",
        "sasldb",
        &import,
        format!("alice:{PW}\0x\n").into(),
    );
    add(
        "import: duplicate",
        "sasldb",
        &import,
        format!("bob:{PW}\nbob:{PW2}\n").into(),
    );
    add(
        "import: no colon",
        "sasldb",
        &import,
        format!("{PW}\n").into(),
    );
    let csv = ["-f", &db, "-u", "leak.test", "import", "--csv", "-"];
    add(
        "CSV without header",
        "sasldb",
        &csv,
        format!("{PW},alice\n").into(),
    );
    add(
        "CSV bad quoting",
        "sasldb",
        &csv,
        format!("user,password\nalice,\"{PW}\"x\n").into(),
    );
    add(
        "CSV unterminated",
        "sasldb",
        &csv,
        format!("user,password\nalice,\"{PW}\n").into(),
    );
    add(
        "CSV field count",
        "sasldb",
        &csv,
        format!("user,password\nalice,{PW},extra\n").into(),
    );
    let json = ["-f", &db, "-u", "leak.test", "import", "--json", "-"];
    add(
        "JSON syntax",
        "sasldb",
        &json,
        format!("[{{\"user\":\"a\",\"password\":\"{PW}\" x}}]").into(),
    );
    add(
        "JSON bad base64",
        "sasldb",
        &json,
        format!(
            "[{{\"user\":\"a\",\"properties\":{{\"authPassword\":{{\"base64\":\"{PW}!!\"}}}}}}]"
        )
        .into(),
    );
    add(
        "JSON bad escape",
        "sasldb",
        &json,
        format!("[{{\"user\":\"a\",\"password\":\"{PW}\\q\"}}]").into(),
    );
    add(
        "JSON password not a string",
        "sasldb",
        &json,
        format!("[{{\"user\":\"a\",\"password\":[\"{PW}\"]}}]").into(),
    );
    add(
        "JSON unknown key",
        "sasldb",
        &json,
        format!("[{{\"user\":\"a\",\"password\":\"{PW}\",\"pw\":\"{PW2}\"}}]").into(),
    );
    let verify = ["-f", &db, "-u", "leak.test", "verify", "alice"];
    add(
        "verify: wrong password",
        "sasldb",
        &verify,
        format!("{PW}\n").into(),
    );
    add(
        "verify: too long",
        "sasldb",
        &verify,
        format!("{long}\n").into(),
    );
    add(
        "verify: no such user",
        "sasldb",
        &["-f", &db, "-u", "leak.test", "verify", "nobody"],
        format!("{PW}\n").into(),
    );
    // A lock held by someone else.
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("sasldb2.lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    for (name, tool, args, input) in [
        (
            "locked: saslpasswd2",
            "saslpasswd2",
            &passwd[..],
            format!("{PW}\n"),
        ),
        (
            "locked: import",
            "sasldb",
            &import[..],
            format!("carol:{PW}\n"),
        ),
    ] {
        let mut c = s.ours_clean(tool);
        c.env("SASLDB_LOCK_TIMEOUT", "1").args(args);
        let out = run(c, input.as_bytes());
        assert!(!out.status.success(), "{name}: succeeded");
        check(name, &out);
    }
    drop(held);
    // A directory we cannot write, as nobody.
    fs::set_permissions(s.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    fs::remove_file(dir.join("sasldb2.lock")).unwrap();
    for (name, tool, args, input) in [
        (
            "unwritable: saslpasswd2",
            "saslpasswd2",
            &passwd[..],
            format!("{PW}\n"),
        ),
        (
            "unwritable: import",
            "sasldb",
            &import[..],
            format!("carol:{PW}\n"),
        ),
    ] {
        let mut c = s.ours_clean(tool);
        c.args(args).uid(65534).gid(65534);
        let out = run(c, input.as_bytes());
        assert!(!out.status.success(), "{name}: succeeded");
        check(name, &out);
    }

    for (name, cmd, input) in cases {
        let out = run(cmd, &input);
        assert!(!out.status.success(), "{name}: succeeded");
        check(&name, &out);
    }
}

fn check(name: &str, out: &Output) {
    if std::env::var_os("SASLDB_SHOW_MESSAGES").is_some() {
        eprintln!(
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    assert!(!out.stderr.is_empty(), "{name}: no message");
    for stream in [&out.stdout, &out.stderr] {
        for pw in [PW, PW2] {
            if let Some(piece) = leaks(stream, pw) {
                panic!(
                    "{name}: the output contains `{piece}` of the password:\n{}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
    }
}

/// Compiles tests/reliability/memscan.c into a preloadable library.
fn memscan_library(s: &Scratch) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reliability/memscan.c");
    let lib = s.path("memscan.so");
    let out = Command::new(peer("gcc"))
        // Bound at load time: a lazy symbol resolution during the scan would save the
        // vector registers (which may still hold the last bytes the program copied)
        // onto the stack, a copy the scan would then find.
        .args(["-shared", "-fPIC", "-O2", "-Wl,-z,now", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

/// The passwords as memscan.c wants them: hex of each byte XOR 0x5a, comma-separated.
fn memscan_secrets(pws: &[&str]) -> String {
    pws.iter()
        .map(|p| {
            p.bytes()
                .map(|b| format!("{:02x}", b ^ 0x5a))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// End to end: every binary, run on Berkeley DB and GDBM files holding the passwords,
/// leaves no 8-byte piece of any of them in its writable memory when it exits (heap,
/// freed or not, anonymous mappings, stack, statics), as scanned from inside the process
/// by a preloaded library. (LMDB and SQLite are left out: their C libraries free their
/// own buffers without wiping them.)
#[test]
fn binaries_leave_no_password_in_memory_at_exit() {
    let s = scratch();
    let lib = memscan_library(&s);
    let secrets = memscan_secrets(&[PW, PW2]);
    let mut problems = Vec::new();
    let mut runs = 0;
    for format in ["bdb", "gdbm"] {
        let path = s.path("db").join(format!("db-{format}"));
        let db = format!("{format}:{}", path.display());
        let conv = format!(
            "{format}:{}",
            s.path("db").join(format!("conv-{format}")).display()
        );
        // A JSON password with escapes goes through serde_json's scratch buffer.
        let json = format!(
            "[{{\"user\": \"erin\", \"realm\": \"m.test\", \"password\": \"{}\\\"{}\"}}]",
            &PW[..10],
            &PW[10..]
        );
        let steps: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
            (
                "saslpasswd2",
                vec!["-p", "--scram", "--otp", "-f", &db, "-u", "m.test", "alice"],
                format!("{PW}\n").into(),
            ),
            (
                "sasldb",
                vec!["-f", &db, "-u", "m.test", "import", "-q", "--scram", "-"],
                format!("bob:{PW2}\ncarol:{PW}\n").into(),
            ),
            (
                "sasldb",
                vec!["-f", &db, "-u", "m.test", "import", "-q", "--csv", "-"],
                format!("user,password\ndave,\"{PW2}\"\n").into(),
            ),
            (
                "sasldb",
                vec!["-f", &db, "import", "-q", "--json", "-"],
                json.into(),
            ),
            (
                "sasldb",
                vec!["-f", &db, "-u", "m.test", "verify", "alice"],
                format!("{PW}\n").into(),
            ),
            (
                "sasldb",
                vec!["-f", &db, "export", "--with-secrets"],
                vec![],
            ),
            (
                "sasldb",
                vec!["-f", &db, "export", "--with-secrets", "--csv"],
                vec![],
            ),
            ("sasldb", vec!["-f", &db, "list"], vec![]),
            ("sasldb", vec!["convert", &db, &conv], vec![]),
            (
                "sasldb",
                vec!["-f", &db, "rename-realm", "m.test", "n.test"],
                vec![],
            ),
            ("sasldblistusers2", vec!["-f", &db], vec![]),
            (
                "saslpasswd2",
                vec!["-p", "-f", &db, "-u", "n.test", "alice"],
                format!("{PW2}\n").into(),
            ),
            (
                "saslpasswd2",
                vec!["-d", "-f", &db, "-u", "n.test", "bob"],
                vec![],
            ),
        ];
        for (tool, args, input) in steps {
            let report = s.path("memscan.out");
            let _ = fs::remove_file(&report);
            let mut cmd = s.ours_clean(tool);
            cmd.args(&args)
                .env("LD_PRELOAD", &lib)
                .env("SASLDB_MEMSCAN_SECRETS", &secrets)
                .env("SASLDB_MEMSCAN_OUT", &report);
            let out = run(cmd, &input);
            let what = format!("{tool} {args:?}");
            assert!(
                out.status.success(),
                "{what}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let text = fs::read_to_string(&report).unwrap_or_default();
            assert!(
                text.contains("scanned "),
                "{what}: the scan did not run: {text:?}"
            );
            let hits: Vec<&str> = text.lines().filter(|l| l.starts_with("hit")).collect();
            if !hits.is_empty() {
                problems.push(format!(
                    "{what}: {} hits, e.g. {:?}",
                    hits.len(),
                    &hits[..hits.len().min(3)]
                ));
            }
            runs += 1;
        }
    }
    assert!(runs >= 26);
    assert!(
        problems.is_empty(),
        "passwords left in memory:\n  {}",
        problems.join("\n  ")
    );
}
