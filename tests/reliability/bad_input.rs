//! Bad input, one table through the real binaries: user and realm names with NUL,
//! `@` edge cases, an empty user, a 64 KiB user name, a 1 MiB password, invalid UTF-8,
//! CR/LF and NUL in passwords; database paths that are a directory, a FIFO, a symlink
//! to /dev/zero, a file in a directory we cannot write, a file on a read-only file
//! system, a database owned by another user. Every row must give a non-zero exit, a
//! short message naming the problem (the offending name or password is never echoed),
//! and leave the database and its directory exactly as they were (bytes, mtime,
//! owner, mode, entries).

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::scratch;
use crate::support::{Scratch, run_with_stdin};

const REALM: &str = "bad.test";
const NOBODY: u32 = 65534;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tool {
    /// `saslpasswd2 -p -f DB -u REALM <userid>`, password on stdin.
    Passwd,
    /// `sasldb -f DB -u REALM import -`, lines on stdin.
    Import,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Db {
    /// A Berkeley DB file holding one user (or the format given).
    File(&'static str),
    /// The path is a directory.
    Directory,
    /// The path is a FIFO (opening it would block).
    Fifo,
    /// The path is a symlink to /dev/zero.
    DevZero,
    /// A file we own in a directory we cannot write (run as nobody).
    UnwritableDir,
    /// A file on a read-only file system.
    ReadOnlyFs(&'static str),
    /// A file owned by another user (run as nobody).
    ForeignOwner,
}

struct Row {
    name: &'static str,
    tool: Tool,
    db: Db,
    userid: OsString,
    stdin: Vec<u8>,
    exit: i32,
    message: &'static str,
}

fn row(
    name: &'static str,
    tool: Tool,
    userid: &[u8],
    pw: &[u8],
    exit: i32,
    message: &'static str,
) -> Row {
    Row {
        name,
        tool,
        db: Db::File("bdb"),
        userid: OsString::from_vec(userid.to_vec()),
        stdin: pw.to_vec(),
        exit,
        message,
    }
}

fn path_row(name: &'static str, tool: Tool, db: Db, message: &'static str) -> Row {
    Row {
        name,
        tool,
        db,
        userid: OsString::from("alice"),
        stdin: match tool {
            Tool::Passwd => b"secret-pw\n".to_vec(),
            Tool::Import => b"alice@bad.test:secret-pw\n".to_vec(),
        },
        exit: 1,
        message,
    }
}

fn table() -> Vec<Row> {
    use Tool::*;
    let long_user = vec![b'u'; 64 * 1024];
    let mut big_pw = vec![b'p'; 1024 * 1024];
    big_pw.push(b'\n');
    let mut rows = vec![
        // Names, through saslpasswd2 (argv cannot carry NUL: see the import rows).
        row(
            "empty user",
            Passwd,
            b"",
            b"pw\n",
            7,
            "the user name is empty",
        ),
        row(
            "@realm: empty user",
            Passwd,
            b"@bad.test",
            b"pw\n",
            7,
            "the user name is empty",
        ),
        row(
            "user@: empty realm",
            Passwd,
            b"alice@",
            b"pw\n",
            7,
            "the realm after @ is empty",
        ),
        row(
            "lone @",
            Passwd,
            b"@",
            b"pw\n",
            7,
            "the realm after @ is empty",
        ),
        row(
            "64 KiB user",
            Passwd,
            &long_user,
            b"pw\n",
            7,
            "the user name is too long: 65536 bytes",
        ),
        row(
            "invalid UTF-8 user",
            Passwd,
            b"al\xffice",
            b"pw\n",
            7,
            "the user name is not valid UTF-8",
        ),
        row(
            "invalid UTF-8 realm",
            Passwd,
            b"alice@r\xc3",
            b"pw\n",
            7,
            "the realm is not valid UTF-8",
        ),
        row(
            "control char in user",
            Passwd,
            b"al\x1bice",
            b"pw\n",
            7,
            "the user name contains a control character",
        ),
        // Passwords, through saslpasswd2.
        row(
            "empty password",
            Passwd,
            b"alice",
            b"\n",
            7,
            "invalid parameter supplied",
        ),
        row(
            "1 MiB password",
            Passwd,
            b"alice",
            &big_pw,
            7,
            "the password is too long: 1048576 bytes",
        ),
        row(
            "CRLF password",
            Passwd,
            b"alice",
            b"secret-pw\r\n",
            7,
            "carriage return",
        ),
        row(
            "NUL in password",
            Passwd,
            b"alice",
            b"secret\0pw\n",
            7,
            "NUL byte",
        ),
        // The same through sasldb import (lines `user@realm:password`).
        row(
            "NUL in user",
            Import,
            b"",
            b"al\0ice@bad.test:secret-pw\n",
            1,
            "line 1: the user name contains a control character",
        ),
        row(
            "NUL in realm",
            Import,
            b"",
            b"alice@ba\0d:secret-pw\n",
            1,
            "line 1: the realm contains a control character",
        ),
        row(
            "import empty user",
            Import,
            b"",
            b"@bad.test:secret-pw\n",
            1,
            "line 1: the user name is empty",
        ),
        row(
            "import empty realm",
            Import,
            b"",
            b"alice@:secret-pw\n",
            1,
            "line 1: the realm after @ is empty",
        ),
        row(
            "import 64 KiB user",
            Import,
            b"",
            &[&long_user[..], b":secret-pw\n"].concat(),
            1,
            "line 1: the user name is too long: 65536 bytes",
        ),
        row(
            "import 1 MiB password",
            Import,
            b"",
            &[b"alice:", &big_pw[..]].concat(),
            1,
            "line 1: the password is too long: 1048576 bytes",
        ),
        row(
            "import invalid UTF-8",
            Import,
            b"",
            b"\xff\xfe@bad.test:secret-pw\n",
            1,
            "line 1: the user name is not valid UTF-8",
        ),
        row(
            "import CR CRLF password",
            Import,
            b"",
            b"alice:secret-pw\r\r\n",
            1,
            "line 1: the password ends with a carriage return",
        ),
        row(
            "import NUL password",
            Import,
            b"",
            b"alice:secret\0pw\n",
            1,
            "line 1: the password contains a NUL byte",
        ),
        row(
            "import one bad line of two",
            Import,
            b"",
            b"bob:secret-pw\nalice:\n",
            1,
            "line 2: the password is empty",
        ),
    ];
    for tool in [Passwd, Import] {
        rows.push(path_row(
            "a directory",
            tool,
            Db::Directory,
            "not a regular file (a directory)",
        ));
        rows.push(path_row(
            "a FIFO",
            tool,
            Db::Fifo,
            "not a regular file (a FIFO)",
        ));
        rows.push(path_row(
            "symlink to /dev/zero",
            tool,
            Db::DevZero,
            "not a regular file (a character device)",
        ));
        rows.push(path_row(
            "unwritable directory",
            tool,
            Db::UnwritableDir,
            "Permission denied",
        ));
        rows.push(path_row(
            "another user's database",
            tool,
            Db::ForeignOwner,
            "owned by uid 1234 gid 1234; cannot keep that ownership when running as uid 65534",
        ));
    }
    for format in ["bdb", "gdbm", "lmdb", "sqlite"] {
        rows.push(path_row(
            "read-only file system",
            Tool::Passwd,
            Db::ReadOnlyFs(format),
            "Read-only file system",
        ));
    }
    rows.push(path_row(
        "read-only file system",
        Tool::Import,
        Db::ReadOnlyFs("bdb"),
        "Read-only file system",
    ));
    rows
}

/// Everything about a path and its directory that a failed command must not change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    kind: String,
    bytes: Option<Vec<u8>>,
    mtime: Option<(i64, i64)>,
    owner: Option<(u32, u32, u32)>,
    entries: Vec<String>,
}

fn snapshot(path: &Path) -> Snapshot {
    let m = fs::symlink_metadata(path).unwrap();
    let regular = m.file_type().is_file();
    let mut entries: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    Snapshot {
        kind: format!("{:?}", m.file_type()),
        bytes: regular.then(|| fs::read(path).unwrap()),
        mtime: regular.then(|| (m.mtime(), m.mtime_nsec())),
        owner: Some((m.uid(), m.gid(), m.mode())),
        entries,
    }
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn sh(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?}: {st}");
}

/// Creates a database at `path` with one user, in `format`, owned by root.
fn make_db(s: &Scratch, format: &str, path: &Path) {
    let mut c = s.ours_clean("saslpasswd2");
    c.args(["-p", "-f"])
        .arg(format!("{format}:{}", path.display()))
        .args(["-u", REALM, "existing"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"old-pw\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Sets the row's database up; returns its path, who runs the tool, and a mount guard.
fn setup(s: &Scratch, db: Db) -> (PathBuf, Option<u32>, Option<Mount>) {
    let dir = s.path("db");
    let path = dir.join("sasldb2");
    match db {
        Db::File(format) => {
            make_db(s, format, &path);
            (path, None, None)
        }
        Db::Directory => {
            fs::create_dir(&path).unwrap();
            (path, None, None)
        }
        Db::Fifo => {
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            (path, None, None)
        }
        Db::DevZero => {
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
            (path, None, None)
        }
        Db::UnwritableDir => {
            // The scratch root must be reachable for nobody; db/ stays root's 0755.
            fs::set_permissions(s.root(), fs::Permissions::from_mode(0o755)).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
            make_db(s, "bdb", &path);
            std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
            fs::remove_file(dir.join("sasldb2.lock")).unwrap();
            (path, Some(NOBODY), None)
        }
        Db::ForeignOwner => {
            fs::set_permissions(s.root(), fs::Permissions::from_mode(0o755)).unwrap();
            // Made first: root does not write into a directory nobody owns.
            make_db(s, "bdb", &path);
            std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
            std::os::unix::fs::chown(&path, Some(1234), Some(1234)).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            (path, Some(NOBODY), None)
        }
        Db::ReadOnlyFs(format) => {
            sh(Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs"])
                .arg(&dir));
            let guard = Mount(dir.clone());
            make_db(s, format, &path);
            sh(Command::new("mount").args(["-o", "remount,ro"]).arg(&dir));
            (path, None, Some(guard))
        }
    }
}

fn run_row(r: &Row) -> Result<(), String> {
    let s = scratch();
    let (path, uid, _mount) = setup(&s, r.db);
    let format = match r.db {
        Db::File(f) | Db::ReadOnlyFs(f) => f,
        _ => "bdb",
    };
    let db = format!("{format}:{}", path.display());
    let before = snapshot(&path);
    let mut cmd = match r.tool {
        Tool::Passwd => {
            let mut c = s.ours_clean("saslpasswd2");
            c.args(["-p", "-f", &db, "-u", REALM]).arg(&r.userid);
            c
        }
        Tool::Import => {
            let mut c = s.ours_clean("sasldb");
            c.args(["-f", &db, "-u", REALM, "import", "-"]);
            c
        }
    };
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    // The tool may stop reading early: a broken pipe is fine.
    let out = run_with_stdin(&mut cmd, &r.stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut problems = Vec::new();
    if out.status.code() != Some(r.exit) {
        problems.push(format!("exit {:?}, expected {}", out.status.code(), r.exit));
    }
    if !stderr.contains(r.message) {
        problems.push(format!("message lacks `{}`", r.message));
    }
    let prog = match r.tool {
        Tool::Passwd => "saslpasswd2: ",
        Tool::Import => "sasldb: ",
    };
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.is_empty()
        || lines.len() > 2
        || lines.iter().any(|l| !l.starts_with(prog) || l.len() > 400)
    {
        problems.push("stderr is not one or two short `prog: ...` lines".into());
    }
    if stderr.contains("(os error")
        || lines.iter().any(|l| {
            let parts: Vec<&str> = l.split(": ").collect();
            parts.windows(2).any(|w| w[0] == w[1])
        })
    {
        problems.push("the message repeats itself".into());
    }
    if stderr.contains("secret") || stderr.contains("pppppppp") || stderr.contains("uuuuuuuu") {
        problems.push("the message echoes the input".into());
    }
    if !out.stdout.is_empty() {
        problems.push(format!(
            "stdout: {:?}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let after = snapshot(&path);
    if after != before {
        problems.push(format!(
            "database or directory changed: {before:?} -> {after:?}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} ({:?}, {:?}): {}\n    stderr: {}",
            r.name,
            r.tool,
            r.db,
            problems.join("; "),
            stderr.chars().take(600).collect::<String>().trim_end()
        ))
    }
}

#[test]
fn bad_input_table() {
    let rows = table();
    let failures: Vec<String> = rows.iter().filter_map(|r| run_row(r).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n  {}",
        failures.len(),
        rows.len(),
        failures.join("\n  ")
    );
}
