//! A primary and a hot standby (`pg_basebackup -R`), both private servers of this
//! test, named by one URL that lists the standby first: writers find the primary,
//! readers use the first host that answers, and after the standby is promoted and the
//! old primary stopped, the same URL reaches the new primary.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::ours;
use crate::support::pg::{PgOptions, PgServer};
use crate::support::run_with_stdin;

fn run(srv: &PgServer, mut cmd: Command, stdin: &[u8]) -> Output {
    srv.env(&mut cmd);
    run_with_stdin(&mut cmd, stdin)
}

fn sasldb(args: &[&str]) -> Command {
    let mut c = ours::sasldb();
    c.args(args);
    c
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

fn count(srv: &PgServer, db: &str) -> i64 {
    srv.client(db)
        .query_one("SELECT count(*) FROM sasldb", &[])
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// Waits until `srv` (a standby) has `n` rows.
fn wait_for_rows(srv: &PgServer, db: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(srv, db) != n {
        assert!(
            Instant::now() < deadline,
            "the standby never caught up: {}",
            count(srv, db)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn primary_and_standby_writers_find_the_primary_and_follow_a_promotion() {
    let primary = PgServer::start_with(&PgOptions::default());
    let db = primary.database("failover", "");
    let standby = primary.standby();
    let hosts = format!("127.0.0.1:{},127.0.0.1:{}", standby.port(), primary.port());
    // The standby first; no target_session_attrs: readers may use either.
    let url = format!("postgresql://sasl@{hosts}/{db}");
    let rw = format!("{url}?target_session_attrs=read-write");

    ok("init", &run(&primary, sasldb(&["-f", &url, "init"]), b""));
    let mut input = String::new();
    for i in 0..1000 {
        input.push_str(&format!("user{i:04}@example.org:pw {i}\n"));
    }
    let out = ok(
        "import",
        &run(
            &primary,
            sasldb(&["-f", &url, "import", "-"]),
            input.as_bytes(),
        ),
    );
    assert!(out.contains("1000 added"), "{out}");
    // It landed on the primary; the standby replays it.
    assert_eq!(count(&primary, &db), 1000);
    wait_for_rows(&standby, &db, 1000);

    // list: from the first host that answers (the standby), from the primary, and
    // from the standby by request.
    for (what, u) in [
        ("list", url.clone()),
        ("list read-write", rw.clone()),
        (
            "list standby",
            format!("{url}?target_session_attrs=standby"),
        ),
    ] {
        let out = ok(what, &run(&primary, sasldb(&["-f", &u, "list"]), b""));
        assert_eq!(
            out.lines().filter(|l| l.contains("@example.org")).count(),
            1000,
            "{what}"
        );
    }
    // A writer with only the standby to go to says why it cannot write.
    let only_standby = format!("postgresql://sasl@127.0.0.1:{}/{db}", standby.port());
    let out = run(
        &primary,
        sasldb(&["-f", &only_standby, "import", "-"]),
        b"x@example.org:x\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the server is a standby") && err.contains("target_session_attrs=read-write"),
        "{err}"
    );

    // Failover: the standby becomes the primary, the old primary goes away.
    standby.promote();
    primary.stop_now();
    let mut cmd = ours::saslpasswd2();
    cmd.args([
        "-p",
        "-c",
        "-f",
        &url,
        "-u",
        "example.org",
        "after-failover",
    ]);
    ok(
        "saslpasswd2 after failover",
        &run(&standby, cmd, b"new pw\n"),
    );
    let mut c = standby.client(&db);
    let v: Vec<u8> = c
        .query_one(
            "SELECT value FROM sasldb WHERE username = 'after-failover' \
             AND realm = 'example.org' AND property = 'userPassword'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(v, b"new pw");
    let mut cmd = ours::command("sasldblistusers2");
    cmd.args(["-f", &rw]);
    let out = ok("sasldblistusers2 after failover", &run(&standby, cmd, b""));
    assert_eq!(out.lines().count(), 1001, "{out}");
}
