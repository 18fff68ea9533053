//! Our three binaries, `saslpasswd2`, `sasldblistusers2` and `sasldb`, as commands, and
//! what a run of one produced.
//!
//! Every builder here is hermetic: it removes each variable that could point a run
//! at another Cyrus or Postfix configuration, group, lock timeout, option parsing or
//! PostgreSQL server ([`REDIRECTING_ENV`]). A test sets what it needs afterwards (a
//! later `env` wins), usually through [`Scratch::ours`](super::Scratch::ours),
//! [`PostfixInstance::ours`](super::postfix::PostfixInstance::ours) or
//! [`PgServer::env`](super::pg::PgServer::env).

use std::process::{Command, Output};

use super::run::run_with_stdin;

/// The variables every run of our binaries starts without.
pub const REDIRECTING_ENV: [&str; 14] = [
    // Where Cyrus's <appname>.conf files are looked for.
    "SASL_CONF_PATH",
    // The Postfix configuration directory (the default realm, check, sync-chroot).
    "MAIL_CONFIG",
    // The group a written database is handed to, and the writers' lock timeout.
    "SASLDB_GROUP",
    "SASLDB_LOCK_TIMEOUT",
    // Lets root write through a directory others can write.
    "SASLDB_ALLOW_UNSAFE_DIR",
    // Stops getopt's argument permutation.
    "POSIXLY_CORRECT",
    // libpq's defaults for a postgresql:// URL.
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSSLMODE",
    "PGCONNECT_TIMEOUT",
];

/// The path of one of our binaries, by name.
pub fn exe(name: &str) -> &'static str {
    match name {
        "saslpasswd2" => env!("CARGO_BIN_EXE_saslpasswd2"),
        "sasldblistusers2" => env!("CARGO_BIN_EXE_sasldblistusers2"),
        "sasldb" => env!("CARGO_BIN_EXE_sasldb"),
        other => panic!("no binary {other}"),
    }
}

/// One of our binaries, by name, without any of [`REDIRECTING_ENV`].
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(exe(name));
    for var in REDIRECTING_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Our `saslpasswd2`.
pub fn saslpasswd2() -> Command {
    command("saslpasswd2")
}

/// Our `sasldb`.
pub fn sasldb() -> Command {
    command("sasldb")
}

/// What a run produced: the exit code (-1 when killed) and the output as text.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Runs `cmd` with `stdin` (see [`run_with_stdin`]).
    pub fn run(cmd: &mut Command, stdin: &[u8]) -> Out {
        Out::from(run_with_stdin(cmd, stdin))
    }

    #[track_caller]
    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(self.code, want, "exit status; {self:#?}");
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.code(0)
    }

    #[track_caller]
    pub fn err_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }

    #[track_caller]
    pub fn out_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}: {self:#?}"
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}

impl From<Output> for Out {
    fn from(out: Output) -> Out {
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The codes of a `sasldb check --json` report's findings with severity warning or
/// error.
pub fn problems(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The finding `code` of a `sasldb check --json` report.
pub fn finding<'a>(report: &'a serde_json::Value, code: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no finding {code}: {report:#}"))
}
