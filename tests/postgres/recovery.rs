//! Connections that drop, and hosts that do not answer.
//!
//! - `writer_killed_*`: `pg_terminate_backend` on the writer's connection (the one
//!   holding the advisory lock) at random moments of 20 imports of 10,000 users: each
//!   import completes (retried on a new connection) or fails with a one-line error,
//!   and the table holds all of it or none of it.
//! - `reader_*`: a `Database` whose connection was terminated answers its next call
//!   on a new connection.
//! - `commit_cut_*`: a proxy cuts the connection while the COMMIT is under way,
//!   after the server committed or before: the change set is applied exactly once.
//! - `connect_timeout_*`: a host that accepts TCP connections and never answers costs
//!   `connect_timeout`, then the next host in the URL is used.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sasldb::record::USER_PASSWORD;
use sasldb::{Database, Key, Location};

use crate::support::ours;
use crate::support::pg::{PgServer, server};
use crate::support::{Rng, run_with_stdin};

fn sasldb_cmd(srv: &PgServer, args: &[&str]) -> Command {
    let mut cmd = ours::sasldb();
    cmd.args(args);
    srv.env(&mut cmd);
    cmd
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of `realm` by value prefix (`pw-K-` of run K).
fn runs_in_realm(srv: &PgServer, db: &str, realm: &str) -> BTreeMap<String, i64> {
    let mut c = srv.client(db);
    c.query(
        "SELECT split_part(convert_from(value, 'UTF8'), '-', 2), count(*) FROM sasldb \
         WHERE realm = $1 GROUP BY 1",
        &[&realm],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
    .collect()
}

/// The writer: the session holding the writers' advisory lock in `db`.
fn writer_backend(c: &mut postgres::Client, db: &str) -> Option<(i32, String, String)> {
    c.query_opt(
        "SELECT a.pid, coalesce(a.state, ''), left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 50) \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.classid = 1396790092 AND l.objid = 1 \
         AND l.granted AND a.datname = $1",
        &[&db],
    )
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// 20 imports of 10,000 users (new users, then the same users with new passwords),
/// each with the writer's connection terminated at a random moment: every import
/// either succeeds (its change set retried whole on a new connection) or fails with a
/// one-line error, and the table holds all of its rows or none.
#[test]
fn writer_killed_20_times_during_10000_user_imports_applies_all_or_nothing() {
    const USERS: usize = 10_000;
    const RUNS: usize = 20;
    let srv = server();
    let db = srv.database("killed", "");
    let url = srv.url(&db);
    ok(
        "init",
        &run_with_stdin(&mut sasldb_cmd(srv, &["-f", &url, "init"]), b""),
    );
    let dir = tempfile::tempdir().unwrap();
    let input = |run: usize, realm_run: usize| {
        let mut text = String::with_capacity(USERS * 40);
        for i in 0..USERS {
            text.push_str(&format!("u{i:05}@run{realm_run}:pw-{run}-{i}\n"));
        }
        let f = dir.path().join(format!("run{run}.txt"));
        fs::write(&f, text).unwrap();
        f
    };

    // An import nobody disturbs: how long one takes.
    let warm = input(99, 99);
    let start = Instant::now();
    ok(
        "undisturbed import",
        &run_with_stdin(
            &mut sasldb_cmd(srv, &["-f", &url, "import", "-q", warm.to_str().unwrap()]),
            b"",
        ),
    );
    let took = start.elapsed();
    eprintln!("undisturbed import of {USERS} users: {took:?}");

    let mut rng = Rng::new(0x6b11);
    let mut killer = srv.client("postgres");
    let mut report = Vec::new();
    let (mut hits, mut completed) = (0, 0);
    for run in 0..RUNS {
        // Even runs add the users of realm runK; odd runs give the previous run's
        // users new passwords.
        let realm_run = run - run % 2;
        let realm = format!("run{realm_run}");
        let before = runs_in_realm(srv, &db, &realm);
        let file = input(run, realm_run);
        let mut child = sasldb_cmd(srv, &["-f", &url, "import", "-q", file.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let delay = took.mul_f64(rng.below(1000) as f64 / 1000.0);
        let spawned = Instant::now();
        let mut killed = None;
        while child.try_wait().unwrap().is_none() {
            if spawned.elapsed() >= delay
                && let Some((pid, state, query)) = writer_backend(&mut killer, &db)
            {
                let done: bool = killer
                    .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                    .unwrap()
                    .get(0);
                if done {
                    killed = Some(format!("{state}: {query}"));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        let after = runs_in_realm(srv, &db, &realm);
        let this = after.get(&run.to_string()).copied().unwrap_or(0);
        assert!(
            this == 0 || this == USERS as i64,
            "run {run}: {this} of {USERS} rows applied (killed: {killed:?}; {err})"
        );
        if status.success() {
            assert_eq!(this, USERS as i64, "run {run}: succeeded but rows missing");
            completed += 1;
        } else {
            assert_eq!(err.trim_end().lines().count(), 1, "run {run}: {err}");
            assert!(!err.contains("panicked"), "run {run}: {err}");
            assert_eq!(
                after, before,
                "run {run} failed but changed the table: {err}"
            );
        }
        // The users of the realm: all from this run, or all as before.
        let total: i64 = after.values().sum();
        let total_before: i64 = before.values().sum();
        assert!(
            total == USERS as i64 || total == total_before,
            "run {run}: realm {realm} has {total} rows ({after:?})"
        );
        if killed.is_some() {
            hits += 1;
        }
        report.push(format!(
            "run {run:2}: killed {:<60} -> {}",
            killed
                .as_deref()
                .unwrap_or("(the import ended before the kill)"),
            if status.success() {
                "completed".to_string()
            } else {
                format!("failed: {}", err.trim_end())
            }
        ));
    }
    eprintln!("{}", report.join("\n"));
    eprintln!("{hits} of {RUNS} kills hit the writer; {completed} imports completed");
    assert!(
        hits >= RUNS * 3 / 4,
        "too few kills hit the writer:\n{}",
        report.join("\n")
    );
}

/// A reader's connection terminated by the server: its next call reconnects.
#[test]
fn reader_reconnects_after_its_connection_is_terminated() {
    let srv = server();
    let db = srv.database("reader_reconnect", "");
    let url = srv.url(&db);
    ok(
        "import",
        &run_with_stdin(
            &mut sasldb_cmd(srv, &["-f", &url, "import", "-"]),
            b"alice@example.org:one\nbob@example.org:two\n",
        ),
    );
    let lib = format!("{}&application_name=reader-test", srv.lib_url(&db));
    let d = Database::open(&lib.parse::<Location>().unwrap()).unwrap();
    let alice = Key::new("alice", "example.org", USER_PASSWORD).unwrap();
    let mut c = srv.client(&db);
    for round in 0..3 {
        let n: i64 = c
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = 'reader-test'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "round {round}: the reader's connection");
        let got = d.get(&alice).unwrap();
        assert_eq!(got.as_deref().map(|v| &v[..]), Some(&b"one"[..]));
        assert_eq!(d.users().unwrap().count(), 2);
    }
}

/// A host that accepts TCP connections and never says anything: each attempt on it
/// costs connect_timeout (the whole start-up, not only the TCP connect), then the next
/// host is used; alone, it fails after that time saying so.
#[test]
fn connect_timeout_bounds_a_silent_host_and_the_next_host_is_used() {
    let srv = server();
    let db = srv.database("silent_host", "");
    let url = srv.url(&db);
    ok(
        "init",
        &run_with_stdin(&mut sasldb_cmd(srv, &["-f", &url, "init"]), b""),
    );
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    // Accepts and holds every connection until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    let both = format!(
        "postgresql://sasl@127.0.0.1:{silent_port},127.0.0.1:{}/{db}?connect_timeout=2",
        srv.port()
    );
    let start = Instant::now();
    ok(
        "silent host first",
        &run_with_stdin(&mut sasldb_cmd(srv, &["-f", &both, "list"]), b""),
    );
    let t = start.elapsed();
    assert!(
        t >= Duration::from_millis(1900) && t < Duration::from_secs(8),
        "{t:?}"
    );

    let alone = format!("postgresql://sasl@127.0.0.1:{silent_port}/{db}?connect_timeout=2");
    let start = Instant::now();
    let out = run_with_stdin(&mut sasldb_cmd(srv, &["-f", &alone, "list"]), b"");
    let t = start.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timeout") && err.contains("connect_timeout (2 s)"),
        "{err}"
    );
    assert!(
        t >= Duration::from_millis(1900) && t < Duration::from_secs(8),
        "{t:?}"
    );
}

/// A TCP proxy to a server that, when armed, cuts the next connection that sends a
/// `COMMIT`: after the server got it and answered (`deliver`: the commit happened, the
/// client never hears so), or without delivering it (the commit never happened).
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl CommitCutter {
    fn start(upstream: u16, deliver: bool) -> CommitCutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, n) = (armed.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let cut = Arc::new(AtomicBool::new(false));
                // Server to client, until the connection is cut.
                let (mut from, mut to, c) = (
                    server.try_clone().unwrap(),
                    client.try_clone().unwrap(),
                    cut.clone(),
                );
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(k) = from.read(&mut buf) {
                        if k == 0 || c.load(Ordering::SeqCst) || to.write_all(&buf[..k]).is_err() {
                            break;
                        }
                    }
                });
                // Client to server, watching for the COMMIT.
                let (armed, cuts) = (a.clone(), n.clone());
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, server);
                    let mut buf = [0u8; 16384];
                    while let Ok(k) = from.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        let chunk = &buf[..k];
                        let commit = chunk.windows(7).any(|w| w == b"COMMIT\0");
                        if commit && armed.swap(false, Ordering::SeqCst) {
                            cut.store(true, Ordering::SeqCst);
                            if deliver {
                                let _ = to.write_all(chunk);
                                // The server commits and answers; the answer is dropped.
                                std::thread::sleep(Duration::from_millis(300));
                            }
                            cuts.fetch_add(1, Ordering::SeqCst);
                            let _ = from.shutdown(Shutdown::Both);
                            let _ = to.shutdown(Shutdown::Both);
                            break;
                        }
                        if to.write_all(chunk).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        CommitCutter { port, armed, cuts }
    }
}

/// The connection drops while the COMMIT is under way, once after the server
/// committed and once before: the writer reconnects, sees whether its change set is in
/// the table, and either stops there (applied once, not twice) or applies it again;
/// both imports succeed and the table holds each exactly once.
#[test]
fn commit_cut_after_or_before_it_happened_is_applied_exactly_once() {
    let srv = server();
    for deliver in [true, false] {
        let db = srv.database(if deliver { "cut_after" } else { "cut_before" }, "");
        ok(
            "init",
            &run_with_stdin(&mut sasldb_cmd(srv, &["-f", &srv.url(&db), "init"]), b""),
        );
        // A row the import changes, and a trigger counting every commit that changes it:
        // applying the change set twice would count 2.
        let mut c = srv.client(&db);
        c.batch_execute(
            "INSERT INTO sasldb VALUES ('alice', 'example.org', 'userPassword', 'old'::bytea);
             CREATE TABLE applied (n int);
             CREATE FUNCTION count_applied() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO applied VALUES (1); RETURN NULL; END $$;
             CREATE TRIGGER count_applied AFTER UPDATE ON sasldb FOR EACH STATEMENT
               EXECUTE FUNCTION count_applied();",
        )
        .unwrap();
        let cutter = CommitCutter::start(srv.port(), deliver);
        let url = format!("postgresql://sasl@127.0.0.1:{}/{db}", cutter.port);
        cutter.armed.store(true, Ordering::SeqCst);
        let mut input = String::from("alice@example.org:new\n");
        for i in 0..500 {
            input.push_str(&format!("u{i:03}@example.org:pw {i}\n"));
        }
        // The role's password for the proxy's port, from a pgpass file of its own.
        let pass_dir = tempfile::tempdir().unwrap();
        let pass = pass_dir.path().join("pgpass");
        fs::write(
            &pass,
            format!(
                "127.0.0.1:{}:*:sasl:{}\n",
                cutter.port,
                srv.role_password()
                    .replace('\\', "\\\\")
                    .replace(':', "\\:")
            ),
        )
        .unwrap();
        fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
        let mut cmd = sasldb_cmd(srv, &["-f", &url, "import", "-"]);
        cmd.env("PGPASSFILE", &pass);
        let out = run_with_stdin(&mut cmd, input.as_bytes());
        let out = ok(&format!("import, commit cut (delivered: {deliver})"), &out);
        // The server compared the passwords: its counts went with a connection cut
        // after the commit happened, and come from the run again otherwise.
        let want = if deliver {
            "501 imported (how many were new, changed or unchanged was lost with the \
             connection as the commit went), 0 rejected"
        } else {
            "500 added, 1 updated, 0 unchanged, 0 rejected"
        };
        assert_eq!(out.trim_end().lines().last(), Some(want), "{out}");
        assert_eq!(
            cutter.cuts.load(Ordering::SeqCst),
            1,
            "the COMMIT was not cut"
        );
        let n: i64 = c
            .query_one("SELECT count(*) FROM applied", &[])
            .unwrap()
            .get(0);
        assert_eq!(
            n, 1,
            "delivered: {deliver}: the change set was applied {n} times"
        );
        let rows: i64 = c
            .query_one("SELECT count(*) FROM sasldb", &[])
            .unwrap()
            .get(0);
        assert_eq!(rows, 501);
        let v: Vec<u8> = c
            .query_one(
                "SELECT value FROM sasldb WHERE username = 'alice' AND property = 'userPassword'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(v, b"new");
    }
}
