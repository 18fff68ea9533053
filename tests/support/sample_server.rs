//! Logins through libsasl's own server: `sasl-sample-server` (Debian's sasl2-bin)
//! driven line by line, with gsasl as the client or raw client messages. Used by the
//! secrets, SQLite and tool tests to prove a secret we wrote is one libsasl accepts;
//! [`scram_login`] and [`otp_login`] log in against a sasldb file.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sasldb::account::secrets::OtpAlgorithm;
use sasldb::account::secrets::otp::otp_chain;

use super::peer;

/// The realm the server runs in (`-u`).
pub const REALM: &str = "example.org";

/// The longest one negotiation step may take.
pub const STEP: Duration = Duration::from_secs(8);

/// A child process with line-by-line stdout (read by a thread, so every wait has a
/// timeout), collected stderr, and a kill on drop.
pub struct Peer {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Peer {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Peer {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    pub fn send(&mut self, line: &str, log: &mut String) -> Result<(), String> {
        log.push_str(&format!("-> {}: {line}\n", self.name));
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{} stdin: {e}", self.name))
    }

    pub fn line(&mut self, deadline: Instant, log: &mut String) -> Result<String, String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(l) => {
                log.push_str(&format!("<- {}: {l}\n", self.name));
                Ok(l)
            }
            Err(RecvTimeoutError::Timeout) => Err(format!("{} timed out", self.name)),
            Err(RecvTimeoutError::Disconnected) => Err(format!("{} exited", self.name)),
        }
    }

    /// Waits until the process closes its stdout, or the deadline.
    pub fn wait_exit(&mut self, deadline: Instant, log: &mut String) {
        while self.line(deadline, log).is_ok() {}
    }

    /// Kills the process if it still runs and returns its stderr.
    pub fn finish(&mut self) -> String {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What a server turn produced.
pub enum Turn {
    Challenge(Vec<u8>),
    Complete,
}

/// `sasl-sample-server` for one mechanism, service `sample`, realm [`REALM`],
/// line-buffered through `stdbuf`, reading its configuration from `confdir`.
pub struct Server {
    pub peer: Peer,
    pub log: String,
}

impl Server {
    /// Starts the server with `SASL_CONF_PATH=confdir` (which holds `sample.conf`) and
    /// the extra environment `env`; consumes its mechanism list.
    pub fn start(dir: &Path, confdir: &Path, mech: &str, env: &[(&str, &Path)]) -> Server {
        let peer = Peer::spawn(
            "server",
            Command::new(peer("stdbuf"))
                .arg("-oL")
                .arg(peer("sasl-sample-server"))
                .args(["-m", mech, "-s", "sample", "-u", REALM])
                .env("SASL_CONF_PATH", confdir)
                .envs(env.iter().map(|&(k, v)| (k, v)))
                .current_dir(dir),
        );
        let mut s = Server {
            peer,
            log: String::new(),
        };
        let started = s.turn(Instant::now() + STEP);
        assert!(
            matches!(started, Ok(Turn::Challenge(_))),
            "server did not start: {}",
            s.fail("")
        );
        s
    }

    pub fn send(&mut self, data: &[u8]) -> Result<(), String> {
        self.peer
            .send(&format!("C: {}", B64.encode(data)), &mut self.log)
    }

    /// Reads until the next `S:` line or the end of the negotiation.
    pub fn turn(&mut self, deadline: Instant) -> Result<Turn, String> {
        loop {
            let l = self.peer.line(deadline, &mut self.log)?;
            if let Some(b64) = l.strip_prefix("S: ") {
                return B64
                    .decode(b64)
                    .map(Turn::Challenge)
                    .map_err(|e| format!("bad base64 from server: {e}"));
            }
            if l == "Negotiation complete" {
                // The next line names the authenticated user.
                let who = self.peer.line(deadline, &mut self.log)?;
                self.log.push_str(&format!("   authenticated {who}\n"));
                return Ok(Turn::Complete);
            }
        }
    }

    /// Stops the server; returns the transcript with `why` and its stderr.
    pub fn fail(&mut self, why: &str) -> String {
        let err = self.peer.finish();
        format!("{why}\n{}server stderr: {err}", self.log)
    }
}

/// A login to `srv` with gsasl as the client. Ok(transcript) when libsasl completes
/// the negotiation, Err(transcript and stderr) otherwise.
pub fn gsasl_login(
    mut srv: Server,
    dir: &Path,
    mech: &str,
    user: &str,
    pw: &str,
) -> Result<String, String> {
    let mut cli = Peer::spawn(
        "gsasl",
        Command::new(peer("gsasl"))
            .args(["--client", "--quiet", "--no-starttls", "--mechanism", mech])
            .args(["--service", "sample", "--hostname", "localhost"])
            .args(["--authentication-id", user, "--password", pw])
            .current_dir(dir),
    );
    let deadline = Instant::now() + STEP;
    let result = (|| {
        let log = &mut srv.log;
        let chosen = cli.line(deadline, log)?;
        if chosen != mech {
            return Err(format!("gsasl chose {chosen}"));
        }
        // The initial response: an empty line when the server speaks first.
        let first = cli.line(deadline, log)?;
        let mut initial = mech.as_bytes().to_vec();
        if !first.is_empty() {
            initial.push(0);
            initial.extend(B64.decode(first).map_err(|e| e.to_string())?);
        }
        srv.send(&initial)?;
        loop {
            match srv.turn(deadline)? {
                Turn::Complete => return Ok(()),
                Turn::Challenge(c) => {
                    srv.log
                        .push_str(&format!("   = {}\n", String::from_utf8_lossy(&c)));
                    cli.send(&B64.encode(c), &mut srv.log)?;
                    let reply = cli.line(deadline, &mut srv.log)?;
                    srv.peer.send(&format!("C: {reply}"), &mut srv.log)?;
                }
            }
        }
    })();
    let cli_err = cli.finish();
    match result {
        Ok(()) => {
            srv.peer.finish();
            Ok(srv.log)
        }
        Err(why) => Err(format!("{}\ngsasl stderr: {cli_err}", srv.fail(&why))),
    }
}

// ---------------------------------------------------------------------------------
// Logins against a sasldb file

/// Writes `sample.conf` (sasldb auxprop on `db`) under `dir/conf` and starts
/// libsasl's sample server for `mech`.
fn sasldb_server(dir: &Path, db: &Path, mech: &str, env: &[(&str, &Path)]) -> Server {
    let confdir = dir.join("conf");
    fs::create_dir_all(&confdir).unwrap();
    fs::write(
        confdir.join("sample.conf"),
        format!(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {}\n\
             mech_list: SCRAM-SHA-1 SCRAM-SHA-256 OTP\n",
            db.display()
        ),
    )
    .unwrap();
    Server::start(dir, &confdir, mech, env)
}

/// A SCRAM login with gsasl as the client against the sasldb `db`. Ok(transcript)
/// when libsasl completes the negotiation, Err(transcript and stderr) otherwise.
pub fn scram_login(
    dir: &Path,
    db: &Path,
    mech: &str,
    user: &str,
    pw: &str,
) -> Result<String, String> {
    gsasl_login(sasldb_server(dir, db, mech, &[]), dir, mech, user, pw)
}

/// An OTP login answering the server's challenge with `hex:` of the chain value
/// computed from `pw`. Returns the challenge too.
pub fn otp_login(
    dir: &Path,
    db: &Path,
    user: &str,
    pw: &str,
    env: &[(&str, &Path)],
) -> (String, Result<String, String>) {
    let mut srv = sasldb_server(dir, db, "OTP", env);
    let deadline = Instant::now() + STEP;
    let mut challenge = String::new();
    let result = (|| {
        // mech NUL authzid(empty) NUL authid
        srv.send(format!("OTP\0\0{user}").as_bytes())?;
        let Turn::Challenge(c) = srv.turn(deadline)? else {
            return Err("no challenge".to_owned());
        };
        challenge = String::from_utf8(c).map_err(|e| e.to_string())?;
        // "otp-md5 498 vm1234 ext"
        let f: Vec<&str> = challenge.split_whitespace().collect();
        let alg = OtpAlgorithm::from_name(f[0].trim_start_matches("otp-")).unwrap();
        let seq: u32 = f[1].parse().unwrap();
        let value = otp_chain(alg, f[2].as_bytes(), pw.as_bytes(), seq).unwrap();
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        srv.send(format!("hex:{hex}").as_bytes())?;
        match srv.turn(deadline)? {
            Turn::Complete => Ok(()),
            Turn::Challenge(_) => Err("unexpected second challenge".to_owned()),
        }
    })();
    let result = match result {
        Ok(()) => {
            // Let the server finish its own exit path before we read the database.
            let log = srv.log.clone();
            srv.peer.finish();
            Ok(log)
        }
        Err(why) => {
            // Let the server exit by itself: on the way out it unlocks the secret.
            srv.peer.wait_exit(Instant::now() + STEP, &mut srv.log);
            Err(srv.fail(&why))
        }
    };
    (challenge, result)
}
