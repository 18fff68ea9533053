//! Concurrency: 8 writer processes each apply 500 distinct updates to one database
//! (25 through `saslpasswd2`, one process per update, and the other 475 through
//! `sasldb import` batches of 50), for every format. Meanwhile readers loop: our
//! `sasldblistusers2` on every format, and Cyrus's `sasldblistusers2` (libdb) on the
//! Berkeley DB file. No writer and no reader may fail, and at the end all 4,000
//! updates are there and the file passes its format's check.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use sasldb::Format;

use super::{FORMATS, format_check, read_all, scratch};
use crate::support::{key, peer, run_with_stdin};

const WRITERS: usize = 8;
const PER_WRITER: usize = 500;
const BY_PASSWD: usize = 25;
const IMPORT_BATCH: usize = 50;
const REALM: &str = "conc.test";

fn password(w: usize, i: usize) -> String {
    format!("pw-{w}-{i}-{}", "x".repeat(i % 13))
}

fn run_ok(mut cmd: Command, input: &[u8], what: &str) {
    let out = run_with_stdin(&mut cmd, input);
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_format(prefix: &str, format: Format) {
    let s = Arc::new(scratch());
    let path = s.path("db").join("sasldb2");
    let db = format!("{prefix}:{}", path.display());
    let mut init = s.ours_clean("sasldb");
    init.args(["-f", &db, "init"]);
    run_ok(init, b"", "init");

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let reads = Arc::new(AtomicUsize::new(0));
    let mut reader_cmds: Vec<(String, Box<dyn Fn() -> Command + Send>)> = Vec::new();
    {
        let (s, db) = (s.clone(), db.clone());
        reader_cmds.push((
            "our sasldblistusers2".into(),
            Box::new(move || {
                let mut c = s.ours_clean("sasldblistusers2");
                c.args(["-f", &db]);
                c
            }),
        ));
    }
    if format == Format::Bdb {
        let (s, path) = (s.clone(), path.clone());
        reader_cmds.push((
            "Cyrus sasldblistusers2".into(),
            Box::new(move || {
                let mut c = Command::new(peer("sasldblistusers2"));
                s.clean_env(&mut c);
                c.arg("-f").arg(&path);
                c
            }),
        ));
    }
    for (name, make) in reader_cmds {
        let (stop, reads) = (stop.clone(), reads.clone());
        readers.push(std::thread::spawn(move || {
            let mut n = 0usize;
            let mut last_count = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let out = make().stdin(Stdio::null()).output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                // Cyrus's tool exits 0 even when it fails: it says so on stdout/stderr.
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && err.is_empty() && !text.contains("failed"),
                    "{name} failed during writes (read {n}): {}: {err}{text}",
                    out.status
                );
                // Writers only add users: a listing never shows fewer lines than
                // the one before it (no update ever disappears, even for a while).
                let count = text.lines().count();
                assert!(
                    count >= last_count,
                    "{name}: {count} lines after {last_count} (read {n})"
                );
                last_count = count;
                n += 1;
                reads.fetch_add(1, Ordering::Relaxed);
            }
            n
        }));
    }

    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (s, db) = (s.clone(), db.clone());
            std::thread::spawn(move || {
                // Every 20th update through saslpasswd2, the rest imported in order,
                // interleaved chunk by chunk.
                let mut by_passwd = 0;
                for chunk in (0..PER_WRITER).step_by(IMPORT_BATCH) {
                    let mut input = String::new();
                    for i in chunk..chunk + IMPORT_BATCH {
                        let user = format!("w{w}-{i:03}");
                        if i % (PER_WRITER / BY_PASSWD) == 0 {
                            let mut c = s.ours_clean("saslpasswd2");
                            c.env("SASLDB_LOCK_TIMEOUT", "120")
                                .args(["-p", "-f", &db, "-u", REALM, &user]);
                            let pw = format!("{}\n", password(w, i));
                            run_ok(c, pw.as_bytes(), &format!("writer {w} saslpasswd2 {i}"));
                            by_passwd += 1;
                        } else {
                            input.push_str(&format!("{user}@{REALM}:{}\n", password(w, i)));
                        }
                    }
                    let mut c = s.ours_clean("sasldb");
                    c.env("SASLDB_LOCK_TIMEOUT", "120")
                        .args(["-f", &db, "import", "-q", "-"]);
                    run_ok(c, input.as_bytes(), &format!("writer {w} import {chunk}"));
                }
                assert_eq!(by_passwd, BY_PASSWD, "writer {w}");
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer failed");
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut per_reader = Vec::new();
    for r in readers {
        per_reader.push(r.join().expect("a reader failed"));
    }
    assert!(
        per_reader.iter().all(|&n| n >= 3),
        "{prefix}: readers ran too rarely to prove anything: {per_reader:?}"
    );

    format_check(&path, format).unwrap();
    let records: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        read_all(&path, format).unwrap().into_iter().collect();
    let mut missing = 0;
    for w in 0..WRITERS {
        for i in 0..PER_WRITER {
            let k = key(format!("w{w}-{i:03}"), REALM, "userPassword");
            if records.get(&k).map(|v| &v[..]) != Some(password(w, i).as_bytes()) {
                missing += 1;
            }
        }
    }
    assert_eq!(missing, 0, "{prefix}: updates lost");
    assert_eq!(records.len(), WRITERS * PER_WRITER);
    eprintln!(
        "concurrency {prefix}: {} updates by {WRITERS} processes in {took:?}, {} reads {per_reader:?}",
        WRITERS * PER_WRITER,
        reads.load(Ordering::Relaxed)
    );
}

fn run(prefix: &str) {
    let (prefix, format) = FORMATS.iter().find(|(p, _)| *p == prefix).copied().unwrap();
    run_format(prefix, format);
}

#[test]
fn bdb_eight_writers_with_readers() {
    run("bdb");
}

#[test]
fn gdbm_eight_writers_with_readers() {
    run("gdbm");
}

#[test]
fn lmdb_eight_writers_with_readers() {
    run("lmdb");
}

#[test]
fn sqlite_eight_writers_with_readers() {
    run("sqlite");
}
