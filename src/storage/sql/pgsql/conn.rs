//! One connection ([`Conn`]: a `tokio-postgres` client on its own one-thread runtime,
//! driven only while a call runs), and making one ([`ConnParams::connect`]): the hosts
//! in order, each within `connect_timeout` for the whole start-up (TCP, TLS,
//! authentication, the session check), TLS as [`super::tls`] says, until one accepts
//! and has the wanted [`Target`] (`target_session_attrs`).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, RowStream, Socket};
use zeroize::Zeroizing;

use super::tls::{SslMode, TlsSettings, explain_handshake};
use super::{backend_error, error_text};
use crate::error::Result;

/// libpq's `target_session_attrs`: which server a connection must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Any server that accepts the connection.
    Any,
    /// One that accepts writes (`transaction_read_only` off): what writers need.
    ReadWrite,
    /// One in read-only mode.
    ReadOnly,
    /// A primary (not in recovery).
    Primary,
    /// A standby (in recovery).
    Standby,
    /// A standby if any host is one, else any server.
    PreferStandby,
}

impl Target {
    /// Parses libpq's spelling.
    pub fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "any" => Target::Any,
            "read-write" => Target::ReadWrite,
            "read-only" => Target::ReadOnly,
            "primary" => Target::Primary,
            "standby" => Target::Standby,
            "prefer-standby" => Target::PreferStandby,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Target::Any => "any",
            Target::ReadWrite => "read-write",
            Target::ReadOnly => "read-only",
            Target::Primary => "primary",
            Target::Standby => "standby",
            Target::PreferStandby => "prefer-standby",
        }
    }
}

/// One host to try: a name, an address or a socket directory, an optional numeric
/// address to connect to instead (`hostaddr`; the name still checks the certificate),
/// the port, and this host's password.
pub struct HostParams {
    /// Host name, address, or socket directory.
    pub host: String,
    /// `hostaddr`.
    pub hostaddr: Option<IpAddr>,
    /// Port.
    pub port: u16,
    pub(super) password: Option<Zeroizing<String>>,
}

impl HostParams {
    /// Whether this host is a Unix-socket directory.
    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/') && self.hostaddr.is_none()
    }

    /// `HOST:PORT` (or `socket DIR:PORT`), for messages.
    pub fn label(&self) -> String {
        if self.is_socket() {
            format!("socket {}:{}", self.host, self.port)
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A connection. Dropping it ends the session properly (a Terminate message), waiting
/// at most a moment for the server.
pub struct Conn {
    rt: Runtime,
    client: Option<Client>,
    task: Option<JoinHandle<()>>,
    /// A scan's statement whose rows are still coming ([`Conn::run_open`]).
    open: Option<OpenRows>,
    /// The host it reached, as [`HostParams::label`] says it.
    pub host: String,
}

/// The rows of a statement left open between calls: the server keeps sending them
/// (into the socket buffers) while the caller works on the ones it has.
pub struct OpenRows {
    /// Who opened it (a scan's number).
    pub owner: u64,
    /// The rows still to come.
    pub rows: Pin<Box<RowStream>>,
    /// How many were taken so far.
    pub taken: i64,
}

impl Conn {
    /// Runs `f` (a future using the client) to completion, driving the connection
    /// meanwhile. A statement left open ([`Conn::run_open`]) is abandoned first: its
    /// remaining rows are skipped.
    pub fn run<'a, F, T>(&'a mut self, f: impl FnOnce(&'a mut Client) -> F) -> T
    where
        F: Future<Output = T> + 'a,
    {
        self.open = None;
        let client = self.client.as_mut().expect("client present until drop");
        self.rt.block_on(f(client))
    }

    /// [`Conn::run`] that keeps the open statement: `f` gets it to take rows from, to
    /// replace or to end.
    pub fn run_open<'a, F, T>(
        &'a mut self,
        f: impl FnOnce(&'a mut Client, &'a mut Option<OpenRows>) -> F,
    ) -> T
    where
        F: Future<Output = T> + 'a,
    {
        let client = self.client.as_mut().expect("client present until drop");
        self.rt.block_on(f(client, &mut self.open))
    }

    /// Whether the server side is gone (the connection failed or was closed).
    pub fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the client sends Terminate; let the connection task flush it.
        drop(self.open.take());
        drop(self.client.take());
        if let Some(task) = self.task.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_millis(500), task).await });
        }
    }
}

/// Whether an error means the connection is gone (the client must reconnect), as
/// opposed to a statement's own failure.
pub fn is_connection_loss(e: &tokio_postgres::Error, conn: &Conn) -> bool {
    if conn.is_closed() || e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception), 57P01-57P03 (administrator command,
        // crash shutdown, cannot connect now).
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
        None => e.as_db_error().is_none(),
    }
}

/// Everything a connection needs, resolved once (see `Url::resolve`).
pub struct Connector<'a> {
    pub(super) url: &'a str,
    pub(super) hosts: &'a [HostParams],
    pub(super) user: &'a str,
    pub(super) dbname: &'a str,
    pub(super) application_name: &'a str,
    /// None: no limit.
    pub(super) connect_timeout: Option<Duration>,
    pub(super) tls: &'a TlsSettings,
    pub(super) passfile_note: Option<&'a str>,
    pub(super) password_from: Option<&'a str>,
}

/// Why one attempt failed.
struct Failure {
    text: String,
    /// The server refused the client (pg_hba.conf, SQLSTATE 28000): in `allow` and
    /// `prefer` mode the other kind of connection is tried.
    refused: bool,
    /// The TLS handshake failed: in `prefer` mode a plain connection is tried.
    tls: bool,
    /// A password was missing.
    no_password: bool,
}

impl Connector<'_> {
    /// Connects to the first host that accepts and matches `target`, trying them in
    /// order (for `prefer-standby`: standbys first, then any).
    pub fn connect(&self, target: Target) -> Result<Conn> {
        let tls = match self.tls.mode {
            SslMode::Disable => None,
            _ => Some(
                self.tls
                    .connector()
                    .map_err(|e| backend_error(self.url, format!("TLS: {e}")))?,
            ),
        };
        let mut failures: Vec<String> = Vec::new();
        let mut no_password = false;
        let passes: &[Target] = match target {
            Target::PreferStandby => &[Target::Standby, Target::Any],
            _ => std::slice::from_ref(&target),
        };
        for (pass, &want) in passes.iter().enumerate() {
            for h in self.hosts {
                match self.connect_host(h, tls.as_ref(), want) {
                    Ok(c) => return Ok(c),
                    Err(f) => {
                        no_password |= f.no_password;
                        // The second pass of prefer-standby retries the same hosts.
                        if pass == 0 || !failures.iter().any(|x| x.ends_with(&f.text)) {
                            failures.push(if self.hosts.len() > 1 {
                                format!("{}: {}", h.label(), f.text)
                            } else {
                                f.text
                            });
                        }
                    }
                }
            }
        }
        let mut msg = if self.hosts.len() == 1 {
            format!(
                "cannot connect to {} as {} (database {}): {}",
                self.hosts[0].label(),
                self.user,
                self.dbname,
                failures.join("; ")
            )
        } else {
            format!(
                "cannot connect to any of {} hosts as {} (database {}, \
                 target_session_attrs={}): {}",
                self.hosts.len(),
                self.user,
                self.dbname,
                target.as_str(),
                failures.join("; ")
            )
        };
        if no_password && self.password_from.is_none() {
            msg.push_str(
                "; the server asks for a password: set PGPASSWORD or add \
                 `host:port:database:user:password` to ~/.pgpass (or PGPASSFILE), mode 0600",
            );
        }
        if let Some(note) = self.passfile_note {
            msg.push_str(&format!("; {note}"));
        }
        Err(backend_error(self.url, msg))
    }

    /// One host: the TLS attempts `sslmode` calls for, then the session check.
    fn connect_host(
        &self,
        h: &HostParams,
        tls: Option<&postgres_openssl::MakeTlsConnector>,
        want: Target,
    ) -> std::result::Result<Conn, Failure> {
        use tokio_postgres::config::SslMode as Wire;
        // libpq never uses TLS over a Unix socket.
        let plan: &[Wire] = match (self.tls.mode, h.is_socket(), tls.is_some()) {
            (_, true, _) | (SslMode::Disable, _, _) | (_, _, false) => &[Wire::Disable],
            (SslMode::Allow, ..) => &[Wire::Disable, Wire::Require],
            (SslMode::Prefer, ..) => &[Wire::Prefer, Wire::Disable],
            _ => &[Wire::Require],
        };
        let mut last = None;
        for (i, &mode) in plan.iter().enumerate() {
            match self.attempt(h, tls, mode, want) {
                Ok(c) => return Ok(c),
                Err(f) => {
                    let retry = i + 1 < plan.len()
                        && match self.tls.mode {
                            SslMode::Allow => f.refused,
                            SslMode::Prefer => f.refused || f.tls,
                            _ => false,
                        };
                    last = Some(f);
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last.expect("one attempt at least"))
    }

    fn attempt(
        &self,
        h: &HostParams,
        tls: Option<&postgres_openssl::MakeTlsConnector>,
        mode: tokio_postgres::config::SslMode,
        want: Target,
    ) -> std::result::Result<Conn, Failure> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.user(self.user)
            .dbname(self.dbname)
            .port(h.port)
            .application_name(self.application_name)
            .ssl_mode(mode);
        if let Some(t) = self.connect_timeout {
            cfg.connect_timeout(t);
        }
        if h.is_socket() {
            cfg.host_path(&h.host);
        } else {
            cfg.host(&h.host);
        }
        if let Some(a) = h.hostaddr {
            cfg.hostaddr(a);
        }
        if let Some(pw) = &h.password {
            cfg.password(pw.as_bytes());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure {
                text: format!("cannot start the client runtime: {e}"),
                refused: false,
                tls: false,
                no_password: false,
            })?;
        let limit = self.connect_timeout;
        let started = rt.block_on(async {
            let go = async {
                let (client, task) = match tls {
                    Some(t) => start(&cfg, t.clone()).await?,
                    None => start(&cfg, tokio_postgres::NoTls).await?,
                };
                let ok = check_target(&client, want).await?;
                Ok::<_, tokio_postgres::Error>((client, task, ok))
            };
            match limit {
                Some(t) => tokio::time::timeout(t, go).await.ok(),
                None => Some(go.await),
            }
        });
        let fail = |text: String| Failure {
            text,
            refused: false,
            tls: false,
            no_password: false,
        };
        match started {
            None => Err(fail(format!(
                "timeout: no session within connect_timeout ({} s)",
                limit.map_or(0, |t| t.as_secs())
            ))),
            Some(Err(e)) => Err(self.failure(&e, h)),
            Some(Ok((client, task, ok))) => {
                let conn = Conn {
                    rt,
                    client: Some(client),
                    task: Some(task),
                    open: None,
                    host: h.label(),
                };
                match ok {
                    Ok(()) => Ok(conn),
                    Err(why) => Err(fail(format!(
                        "{why} (target_session_attrs={})",
                        want.as_str()
                    ))),
                }
            }
        }
    }

    fn failure(&self, e: &tokio_postgres::Error, h: &HostParams) -> Failure {
        let text = error_text(e);
        let refused = e.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
        let tls_failed = e.as_db_error().is_none() && text.contains("TLS");
        let mut out = text.clone();
        if tls_failed && let Some(why) = explain_handshake(&text, self.tls, &h.host) {
            out = format!("TLS: {why} ({text})");
        } else if refused && text.contains("no pg_hba.conf entry") {
            if text.contains("no encryption") {
                out = format!(
                    "{text}; the server's pg_hba.conf refuses this connection without TLS \
                     (sslmode={}): use sslmode=require or stronger",
                    self.tls.mode
                );
            } else if text.contains("SSL encryption") {
                out = format!("{text}; the server's pg_hba.conf refuses this connection over TLS");
            }
        } else if text.contains("server does not support TLS") {
            out = format!(
                "{text}: the server has ssl = off, and sslmode={} requires TLS",
                self.tls.mode
            );
        }
        Failure {
            no_password: h.password.is_none() && text.contains("password missing"),
            text: out,
            refused,
            tls: tls_failed,
        }
    }
}

/// Connects with `tls` and spawns the connection task on the current runtime.
async fn start<T>(
    cfg: &tokio_postgres::Config,
    tls: T,
) -> std::result::Result<(Client, JoinHandle<()>), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + 'static + Send,
    T::Stream: Send + 'static,
{
    let (client, connection) = cfg.connect(tls).await?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

/// Whether the server is what `want` asks for; the reason when it is not. One simple
/// query, none for [`Target::Any`].
async fn check_target(
    client: &Client,
    want: Target,
) -> std::result::Result<std::result::Result<(), String>, tokio_postgres::Error> {
    if want == Target::Any {
        return Ok(Ok(()));
    }
    let rows = client
        .simple_query("SELECT pg_is_in_recovery()::text, current_setting('transaction_read_only')")
        .await?;
    let (recovery, read_only) = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0) == Some("true"), r.get(1) == Some("on")))
            }
            _ => None,
        })
        .unwrap_or((false, false));
    let what = if recovery {
        "a standby (in recovery, read-only)"
    } else if read_only {
        "read-only (default_transaction_read_only)"
    } else {
        "a primary accepting writes"
    };
    let ok = match want {
        Target::Any => true,
        Target::ReadWrite => !read_only,
        Target::ReadOnly => read_only,
        Target::Primary => !recovery,
        Target::Standby | Target::PreferStandby => recovery,
    };
    Ok(if ok {
        Ok(())
    } else {
        Err(format!("the server is {what}"))
    })
}
