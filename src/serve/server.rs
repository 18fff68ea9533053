//! The event loops of `sasldb serve`: start-up (sockets, privileges, database,
//! runtime, signals), the accept loops, one task per connection, one task per
//! Dovecot request step. The protocols themselves are sans I/O (see the parent
//! module); this file only moves bytes, waits and hands work to threads.

use std::os::unix::net::UnixListener as StdListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc, watch};
use zeroize::{Zeroize, Zeroizing};

use super::authority::{Authority, AuthorityError, Credentials, FileVersion, Inventory};
use super::dovecot::{self, Event, Handshake, Session};
use super::limits::{Admission, Kind, Limits, RateLimit, loggable};
use super::mech::{Exchange, Failure, MechEnv, Mechanism, Progress};
use super::verify::{Decoy, plain_is_costly, verify_plain};
use super::{Config, ServeError, listen, log, saslauthd};
use crate::account::{Verdict, split_userid};

/// Which protocol a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Dovecot,
    Mux,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Dovecot => "dovecot",
            Proto::Mux => "saslauthd",
        }
    }
}

/// State every task shares.
struct Shared {
    cfg: Config,
    authority: Arc<dyn Authority>,
    decoy: Decoy,
    limits: Limits,
    log_rate: RateLimit,
    realm: RwLock<Arc<Vec<u8>>>,
    mechs: RwLock<Arc<Vec<Mechanism>>>,
    scanned: Mutex<Option<FileVersion>>,
    hostname: String,
    spid: u32,
    cuid: AtomicU32,
}

impl Shared {
    fn realm(&self) -> Arc<Vec<u8>> {
        self.realm.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn mechs(&self) -> Arc<Vec<Mechanism>> {
        self.mechs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn env(&self) -> MechEnv<'_> {
        MechEnv {
            hostname: &self.hostname,
            decoy: &self.decoy,
        }
    }

    /// A rate-limited log line.
    fn log_limited(&self, line: &str) {
        if let Some(n) = self.log_rate.allow(Instant::now()) {
            if n > 0 {
                log(&format!("({n} similar lines suppressed)"));
            }
            log(line);
        }
    }

    /// Applies an inventory: the mechanisms to offer and what decoys cost.
    fn apply_inventory(&self, inv: &Inventory, version: Option<FileVersion>) {
        self.decoy.set_hashed_only(inv.hashed_only());
        let mechs: Vec<Mechanism> = match &self.cfg.mechanisms {
            Some(m) => m.clone(),
            None => Mechanism::ALL
                .into_iter()
                .filter(|m| m.servable(inv))
                .collect(),
        };
        *self.mechs.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(mechs);
        *self.scanned.lock().unwrap_or_else(|p| p.into_inner()) = version;
    }
}

/// The realm Postfix uses, or the configured one.
fn resolve_realm(cfg: &Config) -> Result<Vec<u8>, ServeError> {
    match &cfg.realm {
        Some(r) => Ok(r.clone()),
        None => crate::postfix::default_realm_here()
            .map(|r| r.realm.into_bytes())
            .map_err(|e| ServeError::Realm(e.to_string())),
    }
}

/// A bound or activated socket.
struct Socket {
    proto: Proto,
    listener: StdListener,
    /// The path and identity of a socket file we created (removed at exit).
    created: Option<(PathBuf, (u64, u64))>,
}

/// Binds the configured sockets, taking activated ones where they match.
fn sockets(cfg: &Config) -> Result<Vec<Socket>, ServeError> {
    let mut activated = listen::activated()?;
    let mut out = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    let owner = match &cfg.socket_owner {
        Some(u) => Some(listen::user(u)?.uid),
        None => None,
    };
    let group = match (&cfg.socket_group, root) {
        (Some(g), _) => Some(listen::group(g)?),
        (None, true) => Some(listen::group("postfix").map_err(|_| {
            ServeError::Start(
                "group `postfix` does not exist: name the socket group with --socket-group".into(),
            )
        })?),
        (None, false) => None,
    };
    let perms = listen::SocketPerms {
        owner,
        group,
        mode: cfg.socket_mode,
    };
    for (proto, path) in [(Proto::Dovecot, &cfg.dovecot), (Proto::Mux, &cfg.saslauthd)] {
        let by_name = activated
            .iter()
            .position(|a| a.name.as_deref() == Some(proto.name()));
        let by_path = path.as_ref().and_then(|p| {
            activated
                .iter()
                .position(|a| a.path.as_deref() == Some(p.as_path()))
        });
        if let Some(i) = by_name.or(by_path) {
            let a = activated.swap_remove(i);
            out.push(Socket {
                proto,
                listener: a.listener,
                created: None,
            });
        } else if let Some(p) = path {
            let (listener, id) = listen::bind(p, &perms)?;
            out.push(Socket {
                proto,
                listener,
                created: Some((p.clone(), id)),
            });
        }
    }
    if let Some(a) = activated.first() {
        return Err(listen::ListenError::Activation(format!(
            "a passed socket ({}) matches neither --dovecot nor --saslauthd (name it `dovecot` or `saslauthd` with FileDescriptorName=)",
            a.path
                .as_ref()
                .map(|p| p.display().to_string())
                .or_else(|| a.name.clone())
                .unwrap_or_else(|| "unnamed".into())
        ))
        .into());
    }
    if out.is_empty() {
        return Err(ServeError::NoSockets);
    }
    Ok(out)
}

pub(super) fn run(cfg: Config, authority: Arc<dyn Authority>) -> Result<(), ServeError> {
    use nix::sys::signal::{SigSet, Signal};

    let socks = sockets(&cfg)?;
    let cleanup = |socks: &[Socket]| {
        for s in socks {
            if let Some((p, id)) = &s.created {
                listen::unlink_if_ours(p, *id);
            }
        }
    };
    let started = (|| {
        listen::raise_nofile(cfg.max_connections as u64 + 64);
        if let Some(u) = &cfg.user {
            let user = listen::user(u)?;
            let group = cfg.group.as_deref().map(listen::group).transpose()?;
            listen::drop_privileges(&user, group)?;
        } else if cfg.group.is_some() {
            return Err(ServeError::Start("--group needs --user".into()));
        }
        let realm = resolve_realm(&cfg)?;
        let version = authority.version();
        let inv = authority.inventory()?;
        let hostname = match &cfg.hostname {
            Some(h) => h.clone(),
            None => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into()),
        };
        let decoy = Decoy::new().map_err(|e| ServeError::Start(format!("random numbers: {e}")))?;
        let shared = Arc::new(Shared {
            limits: Limits::new(cfg.limits),
            log_rate: RateLimit::new(cfg.log),
            realm: RwLock::new(Arc::new(realm)),
            mechs: RwLock::new(Arc::new(Vec::new())),
            scanned: Mutex::new(None),
            hostname,
            spid: std::process::id(),
            cuid: AtomicU32::new(0),
            decoy,
            authority: authority.clone(),
            cfg: cfg.clone(),
        });
        shared.apply_inventory(&inv, version);
        Ok::<_, ServeError>(shared)
    })();
    let shared = match started {
        Ok(s) => s,
        Err(e) => {
            cleanup(&socks);
            return Err(e);
        }
    };

    // Every thread from here on inherits the blocked signals; they are read from a
    // signalfd by the main task.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    let blocked = mask.thread_block();
    let sfd = blocked.and_then(|_| {
        nix::sys::signalfd::SignalFd::with_flags(
            &mask,
            nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
        )
    });
    let sfd = match sfd {
        Ok(s) => s,
        Err(e) => {
            cleanup(&socks);
            return Err(ServeError::Start(format!("signals: {e}")));
        }
    };

    let threads = if cfg.threads > 0 {
        cfg.threads
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(16)
        // Blocking threads keep their database handle (a PostgreSQL connection):
        // let them live.
        .thread_keep_alive(Duration::from_secs(3600))
        .thread_name("sasldb-serve")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| ServeError::Start(format!("runtime: {e}")));
    let rt = match rt {
        Ok(r) => r,
        Err(e) => {
            cleanup(&socks);
            return Err(e);
        }
    };
    let created: Vec<_> = socks.iter().filter_map(|s| s.created.clone()).collect();
    let result = rt.block_on(serve(shared, socks, sfd));
    rt.shutdown_timeout(Duration::from_secs(1));
    for (p, id) in &created {
        listen::unlink_if_ours(p, *id);
    }
    result
}

async fn serve(
    shared: Arc<Shared>,
    socks: Vec<Socket>,
    sfd: nix::sys::signalfd::SignalFd,
) -> Result<(), ServeError> {
    use nix::sys::signal::Signal;
    let (stop_tx, stop_rx) = watch::channel(false);
    let conns = Arc::new(Semaphore::new(shared.cfg.max_connections));
    let mut names = Vec::new();
    for s in socks {
        s.listener
            .set_nonblocking(true)
            .map_err(|e| ServeError::Start(format!("socket: {e}")))?;
        let l = tokio::net::UnixListener::from_std(s.listener)
            .map_err(|e| ServeError::Start(format!("socket: {e}")))?;
        names.push(format!(
            "{} on {}",
            s.proto.name(),
            l.local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "a passed socket".into())
        ));
        tokio::spawn(accept_loop(
            l,
            s.proto,
            shared.clone(),
            conns.clone(),
            stop_rx.clone(),
        ));
    }
    log(&format!(
        "serving {} from {} ({})",
        names.join(", "),
        shared.authority.name(),
        shared
            .mechs()
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    tokio::spawn(housekeeping(shared.clone(), stop_rx.clone()));

    // SAFETY: the SignalFd owns its descriptor for as long as the AsyncFd holds it.
    let afd = unsafe { tokio::io::unix::AsyncFd::register(sfd) }
        .map_err(|e| ServeError::Start(format!("signals: {e}")))?;
    loop {
        let mut guard = afd
            .readable()
            .await
            .map_err(|e| ServeError::Start(format!("signals: {e}")))?;
        let sig = guard.try_io(|fd| {
            fd.get_ref()
                .read_signal()
                .map_err(std::io::Error::from)
                .and_then(|s| s.ok_or_else(|| std::io::ErrorKind::WouldBlock.into()))
        });
        let Ok(Ok(info)) = sig else { continue };
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGHUP) => {
                log("SIGHUP: reopening the database");
                shared.authority.reopen();
                if shared.cfg.realm.is_none() {
                    let cfg = shared.cfg.clone();
                    match tokio::task::spawn_blocking(move || resolve_realm(&cfg)).await {
                        Ok(Ok(r)) => {
                            *shared.realm.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r)
                        }
                        Ok(Err(e)) => log(&format!("keeping the old realm: {e}")),
                        Err(_) => {}
                    }
                }
                rescan(&shared).await;
            }
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                log("stopping");
                let _ = stop_tx.send(true);
                return Ok(());
            }
            _ => {}
        }
    }
}

/// Counts the database's secrets again (on a blocking thread) and applies the result.
async fn rescan(shared: &Arc<Shared>) {
    let sh = shared.clone();
    let res = tokio::task::spawn_blocking(move || {
        let v = sh.authority.version();
        sh.authority.inventory().map(|inv| (inv, v))
    })
    .await;
    match res {
        Ok(Ok((inv, v))) => {
            let before = shared.mechs();
            shared.apply_inventory(&inv, v);
            let after = shared.mechs();
            if before != after {
                log(&format!(
                    "mechanisms now offered: {}",
                    after.iter().map(|m| m.name()).collect::<Vec<_>>().join(" ")
                ));
            }
        }
        Ok(Err(e)) => shared.log_limited(&format!("database error while counting secrets: {e}")),
        Err(_) => {}
    }
}

/// Every 30 s: recount when the database file changed; report suppressed log lines.
async fn housekeeping(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let n = shared.log_rate.take_suppressed();
        if n > 0 {
            log(&format!("({n} failure lines suppressed)"));
        }
        if shared.cfg.mechanisms.is_none() {
            let now = shared.authority.version();
            let last = *shared.scanned.lock().unwrap_or_else(|p| p.into_inner());
            if now.is_some() && now != last {
                rescan(&shared).await;
            }
        }
    }
}

async fn accept_loop(
    listener: tokio::net::UnixListener,
    proto: Proto,
    shared: Arc<Shared>,
    conns: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    shared.log_limited(&format!("accept: {}", crate::error::io_text(&e)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let sh = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match proto {
                Proto::Dovecot => dovecot_conn(stream, sh).await,
                Proto::Mux => mux_conn(stream, sh).await,
            }
        });
    }
}

/// Looks a user up, on a blocking thread for a remote database.
async fn lookup(
    shared: &Arc<Shared>,
    user: &[u8],
    realm: &[u8],
) -> Result<Option<Credentials>, AuthorityError> {
    if shared.authority.is_remote() {
        let sh = shared.clone();
        let (u, r) = (user.to_vec(), realm.to_vec());
        match tokio::task::spawn_blocking(move || sh.authority.credentials(&u, &r)).await {
            Ok(res) => res,
            Err(_) => Err(AuthorityError(crate::Error::Invalid(
                "the database lookup did not finish".into(),
            ))),
        }
    } else {
        shared.authority.credentials(user, realm)
    }
}

/// `user NUL realm`: the per-user penalty key.
fn user_key(user: &[u8], realm: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + realm.len() + 1);
    k.extend_from_slice(user);
    k.push(0);
    k.extend_from_slice(realm);
    k
}

/// Waits out a penalty; `false`: refuse without checking.
async fn admit(shared: &Shared, kind: Kind, key: &[u8]) -> bool {
    match shared.limits.admit(kind, key, Instant::now()) {
        Admission::Go => true,
        Admission::Wait(d) => {
            tokio::time::sleep(d).await;
            shared.limits.done_waiting(kind, key, Instant::now());
            true
        }
        Admission::Refuse(d) => {
            tokio::time::sleep(d).await;
            false
        }
    }
}

// -------------------------------------------------------------------------------
// saslauthd mux

async fn mux_conn(mut stream: UnixStream, shared: Arc<Shared>) {
    let deadline = tokio::time::Instant::now() + shared.cfg.timeout;
    let mut buf = Zeroizing::new([0u8; saslauthd::MAX_REQUEST]);
    let mut n = 0;
    let req = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(k)) => n += k,
        }
        match saslauthd::parse(&buf[..n]) {
            saslauthd::Parsed::Incomplete if n < buf.len() => {}
            saslauthd::Parsed::Incomplete => return,
            saslauthd::Parsed::Refused(text) => {
                shared.log_limited(&format!(
                    "saslauthd request refused: {}",
                    String::from_utf8_lossy(text)
                ));
                let _ = reply_mux(&mut stream, text, deadline).await;
                return;
            }
            saslauthd::Parsed::Request(r, _) => break r,
        }
    };
    buf.zeroize();
    let realm = shared.realm();
    let (user, realm) = saslauthd::user_and_realm(&req, &realm);
    let ukey = user_key(user, realm);
    let answer: &[u8] = if !admit(&shared, Kind::User, &ukey).await {
        fail_log(
            &shared,
            "saslauthd",
            &req.login,
            None,
            &req.service,
            "too many failures",
        );
        saslauthd::answer(false)
    } else {
        match lookup(&shared, user, realm).await {
            Err(e) => {
                shared.log_limited(&format!("database error: {e}"));
                b"NO temporary failure"
            }
            Ok(creds) => {
                let verdict = if plain_is_costly(creds.as_ref(), &shared.decoy) {
                    let sh = shared.clone();
                    let pw = req.password.clone();
                    tokio::task::spawn_blocking(move || {
                        verify_plain(creds.as_ref(), &pw, &sh.decoy)
                    })
                    .await
                    .unwrap_or(Verdict::Mismatch)
                } else {
                    verify_plain(creds.as_ref(), &req.password, &shared.decoy)
                };
                let now = Instant::now();
                if verdict == Verdict::Match {
                    shared.limits.success(Kind::User, &ukey, now);
                    saslauthd::answer(true)
                } else {
                    shared.limits.failure(Kind::User, &ukey, now);
                    let why = if verdict == Verdict::Mismatch {
                        "wrong password"
                    } else {
                        "unknown user or no usable secret"
                    };
                    fail_log(&shared, "saslauthd", &req.login, None, &req.service, why);
                    if !shared.cfg.failure_delay.is_zero() {
                        tokio::time::sleep(shared.cfg.failure_delay).await;
                    }
                    saslauthd::answer(false)
                }
            }
        }
    };
    drop(req);
    let deadline = tokio::time::Instant::now() + shared.cfg.timeout;
    let _ = reply_mux(&mut stream, answer, deadline).await;
}

async fn reply_mux(
    stream: &mut UnixStream,
    text: &[u8],
    deadline: tokio::time::Instant,
) -> std::io::Result<()> {
    let framed = saslauthd::frame(text);
    tokio::time::timeout_at(deadline, stream.write_all(&framed))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    let _ = stream.shutdown().await;
    Ok(())
}

/// One log line for a failed authentication.
fn fail_log(
    shared: &Shared,
    mech: &str,
    user: &[u8],
    rip: Option<&[u8]>,
    service: &[u8],
    why: &str,
) {
    shared.log_limited(&format!(
        "authentication failed: mech={mech} user=\"{}\" rip={} service={}: {why}",
        loggable(user),
        rip.map(loggable).unwrap_or_else(|| "-".into()),
        loggable(service),
    ));
}

// -------------------------------------------------------------------------------
// Dovecot

/// A request step's result, sent back to the connection task.
enum Reply {
    Challenge(Exchange, Vec<u8>),
    Success {
        user: Vec<u8>,
        final_data: Option<Vec<u8>>,
    },
    Failure {
        user: Option<Vec<u8>>,
        temp: bool,
    },
}

/// What a request task starts from.
enum Step {
    Started(Progress),
    Input(crate::Secret),
}

async fn dovecot_conn(stream: UnixStream, shared: Arc<Shared>) {
    let timeout = shared.cfg.timeout;
    let mechs = shared.mechs();
    let cookie = super::verify::random::<16>().map(|c| *c).unwrap_or([0; 16]);
    let hello = Handshake {
        mechanisms: mechs.to_vec(),
        spid: shared.spid,
        cuid: shared.cuid.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
        cookie,
    }
    .render();
    let mut session = Session::new(mechs.to_vec());
    let (mut rd, mut wr) = stream.into_split();
    if tokio::time::timeout(timeout, wr.write_all(&hello))
        .await
        .is_err()
    {
        return;
    }
    let (tx, mut rx) = mpsc::channel::<(u32, Reply)>(dovecot::MAX_REQUESTS + 8);
    let mut in_flight = 0usize;
    let mut buf = Zeroizing::new(vec![0u8; 4096]);
    let mut events = Vec::new();
    let mut last = Instant::now();
    loop {
        let quiet = !session.has_requests() && in_flight == 0;
        let limit = if !session.ready() || session.mid_line() {
            Some(last + timeout)
        } else if quiet {
            Some(last + shared.cfg.idle_timeout)
        } else {
            None
        };
        let expiry = session.next_expiry(shared.cfg.request_timeout);
        let wake = match (limit, expiry) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a
                .or(b)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        };
        let mut out: Vec<u8> = Vec::new();
        tokio::select! {
            r = rd.read(&mut buf[..]), if in_flight < dovecot::MAX_REQUESTS => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let now = Instant::now();
                last = now;
                session.feed(&buf[..n], now, &mut events);
                buf[..n].zeroize();
                for ev in events.drain(..) {
                    match ev {
                        Event::Send(line) => out.extend_from_slice(&line),
                        Event::Close(why) => {
                            shared.log_limited(&format!("closing a Dovecot client connection: {why}"));
                            let _ = tokio::time::timeout(timeout, wr.write_all(&out)).await;
                            return;
                        }
                        Event::Auth { id, mech, params, initial } => {
                            let (x, p) = Exchange::start(mech, initial.as_deref().map(|v| &v[..]), &shared.env());
                            in_flight += 1;
                            tokio::spawn(request(shared.clone(), tx.clone(), id, x, Step::Started(p), params, true));
                        }
                        Event::Cont { id, exchange, data, params } => {
                            in_flight += 1;
                            tokio::spawn(request(shared.clone(), tx.clone(), id, exchange, Step::Input(data), params, false));
                        }
                    }
                }
            }
            Some((id, reply)) = rx.recv() => {
                in_flight = in_flight.saturating_sub(1);
                let now = Instant::now();
                let line = match reply {
                    Reply::Challenge(x, data) => session.challenge(id, &data, x, now),
                    Reply::Success { user, final_data } => session.success(id, &user, final_data.as_deref(), now),
                    Reply::Failure { user, temp: true } => session.failure(id, user.as_deref(), Some("temp_fail"), "Temporary authentication failure"),
                    Reply::Failure { user, temp: false } => session.failure(id, user.as_deref(), None, dovecot::FAIL_REASON),
                };
                if let Some(l) = line {
                    out.extend_from_slice(&l);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if limit.is_some_and(|l| now >= l) {
                    return;
                }
                session.expire(now, shared.cfg.request_timeout, &mut events);
                for ev in events.drain(..) {
                    if let Event::Send(line) = ev {
                        out.extend_from_slice(&line);
                    }
                }
            }
        }
        if !out.is_empty()
            && !matches!(
                tokio::time::timeout(timeout, wr.write_all(&out)).await,
                Ok(Ok(()))
            )
        {
            return;
        }
    }
}

/// Runs one request step to its next reply (a challenge, a success or a failure)
/// and sends it to the connection task.
async fn request(
    shared: Arc<Shared>,
    tx: mpsc::Sender<(u32, Reply)>,
    id: u32,
    exchange: Exchange,
    step: Step,
    params: super::dovecot::AuthParams,
    first: bool,
) {
    let reply = request_step(&shared, exchange, step, &params, first).await;
    let _ = tx.send((id, reply)).await;
}

async fn request_step(
    shared: &Arc<Shared>,
    mut exchange: Exchange,
    step: Step,
    params: &super::dovecot::AuthParams,
    first: bool,
) -> Reply {
    let mech = exchange.mechanism();
    if first
        && let Some(rip) = &params.rip
        && !admit(shared, Kind::Address, rip).await
    {
        fail_log(
            shared,
            mech.name(),
            b"",
            Some(rip),
            &params.service,
            "too many failures from this address",
        );
        return Reply::Failure {
            user: None,
            temp: false,
        };
    }
    let mut progress = match step {
        Step::Started(p) => p,
        Step::Input(data) => {
            if exchange.input_costly() {
                let sh = shared.clone();
                match tokio::task::spawn_blocking(move || {
                    let p = exchange.input(&data, &sh.env());
                    (exchange, p)
                })
                .await
                {
                    Ok((x, p)) => {
                        exchange = x;
                        p
                    }
                    Err(_) => {
                        return Reply::Failure {
                            user: None,
                            temp: true,
                        };
                    }
                }
            } else {
                exchange.input(&data, &shared.env())
            }
        }
    };
    let mut ukey: Option<Vec<u8>> = None;
    loop {
        match progress {
            Progress::Challenge(c) => return Reply::Challenge(exchange, c),
            Progress::Lookup => {
                let authcid = exchange.authcid().unwrap_or_default().to_vec();
                let realm = shared.realm();
                let (user, realm) = split_userid(&authcid, &realm);
                let key = user_key(user, realm);
                if !admit(shared, Kind::User, &key).await {
                    fail_log(
                        shared,
                        mech.name(),
                        &authcid,
                        params.rip.as_deref(),
                        &params.service,
                        "too many failures for this user",
                    );
                    return Reply::Failure {
                        user: Some(authcid),
                        temp: false,
                    };
                }
                let creds = match lookup(shared, user, realm).await {
                    Ok(c) => c,
                    Err(e) => {
                        shared.log_limited(&format!("database error: {e}"));
                        return Reply::Failure {
                            user: Some(authcid),
                            temp: true,
                        };
                    }
                };
                ukey = Some(key);
                progress = if exchange.credentials_costly(creds.as_ref(), &shared.env()) {
                    let sh = shared.clone();
                    match tokio::task::spawn_blocking(move || {
                        let p = exchange.credentials(creds, &sh.env());
                        (exchange, p)
                    })
                    .await
                    {
                        Ok((x, p)) => {
                            exchange = x;
                            p
                        }
                        Err(_) => {
                            return Reply::Failure {
                                user: Some(authcid),
                                temp: true,
                            };
                        }
                    }
                } else {
                    exchange.credentials(creds, &shared.env())
                };
            }
            Progress::Success { final_data } => {
                let user = exchange.authcid().unwrap_or_default().to_vec();
                if let Some(k) = &ukey {
                    shared.limits.success(Kind::User, k, Instant::now());
                }
                return Reply::Success { user, final_data };
            }
            Progress::Failure(f) => {
                let user = exchange.authcid().map(<[u8]>::to_vec);
                let now = Instant::now();
                if f.counts() {
                    if let Some(rip) = &params.rip {
                        shared.limits.failure(Kind::Address, rip, now);
                    }
                    let key = match (&ukey, &user) {
                        (Some(k), _) => Some(k.clone()),
                        (None, Some(u)) => {
                            let realm = shared.realm();
                            let (a, b) = split_userid(u, &realm);
                            Some(user_key(a, b))
                        }
                        _ => None,
                    };
                    if let Some(k) = key {
                        shared.limits.failure(Kind::User, &k, now);
                    }
                }
                fail_log(
                    shared,
                    mech.name(),
                    user.as_deref().unwrap_or_default(),
                    params.rip.as_deref(),
                    &params.service,
                    f.describe(),
                );
                if !shared.cfg.failure_delay.is_zero() {
                    tokio::time::sleep(shared.cfg.failure_delay).await;
                }
                let _ = Failure::Mismatch;
                return Reply::Failure { user, temp: false };
            }
        }
    }
}
