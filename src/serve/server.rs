//! The event loops of `sasldb serve`: start-up (sockets, privileges, database,
//! runtime, signals), the accept loops, one task per connection, one task per
//! Dovecot request step. The protocols themselves are sans I/O (see the parent
//! module); this file only moves bytes, waits and hands work to threads.

use std::os::unix::net::UnixListener as StdListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use super::authority::{Authority, AuthorityError, Credentials, FileVersion, Inventory};
use super::dovecot::{self, Event, Handshake, Session};
use super::limits::{Admission, Kind, Limits, RateLimit, loggable};
use super::mech::{Exchange, MechEnv, Mechanism, Progress};
use super::verify::{Decoy, verify_plain};
use super::{Config, ServeError, listen, log, saslauthd};
use crate::account::{Verdict, split_userid};
use crate::record::WipeBuf;

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
    /// Connections open now (both protocols), against `cfg.max_connections`.
    live: AtomicUsize,
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
            live: AtomicUsize::new(0),
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
    let mut names = Vec::new();
    let acceptors = acceptor_threads(&shared.cfg);
    for s in socks {
        names.push(format!(
            "{} on {}",
            s.proto.name(),
            s.listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "a passed socket".into())
        ));
        match s.proto {
            Proto::Dovecot => {
                s.listener
                    .set_nonblocking(true)
                    .map_err(|e| ServeError::Start(format!("socket: {e}")))?;
                let l = tokio::net::UnixListener::from_std(s.listener)
                    .map_err(|e| ServeError::Start(format!("socket: {e}")))?;
                tokio::spawn(accept_loop(l, shared.clone(), stop_rx.clone()));
            }
            Proto::Mux => {
                let l = Arc::new(s.listener);
                let rt = tokio::runtime::Handle::current();
                for i in 0..acceptors {
                    let (l, sh, rt) = (l.clone(), shared.clone(), rt.clone());
                    std::thread::Builder::new()
                        .name(format!("sasldb-mux-{i}"))
                        .spawn(move || mux_acceptor(&l, &sh, &rt))
                        .map_err(|e| ServeError::Start(format!("threads: {e}")))?;
                }
            }
        }
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

/// The number of threads answering mux requests (and of event-loop threads).
fn acceptor_threads(cfg: &Config) -> usize {
    if cfg.threads > 0 {
        cfg.threads
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// One open connection, counted against `--max-connections` until dropped.
struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    /// Whether a connection may be accepted now.
    fn room(shared: &Shared) -> bool {
        shared.live.load(Ordering::Acquire) < shared.cfg.max_connections
    }

    /// Counts an accepted connection. Acceptors check [`LiveGuard::room`] before
    /// accepting and count after, so an idle acceptor holds no slot (several may
    /// overshoot the cap by one each, briefly).
    fn count(shared: &Arc<Shared>) -> LiveGuard {
        shared.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(shared.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts Dovecot client connections, one task each.
async fn accept_loop(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        while !LiveGuard::room(&shared) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = stop.changed() => return,
            }
        }
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    shared.log_limited(&format!("accept: {}", crate::io_text(&e)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let guard = LiveGuard::count(&shared);
        let sh = shared.clone();
        tokio::spawn(async move {
            let _guard = guard;
            dovecot_conn(stream, sh).await
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
    let a = shared.limits.admit(kind, key, Instant::now());
    wait_admission(shared, kind, key, a).await
}

/// Carries out an admission decision already taken.
async fn wait_admission(shared: &Shared, kind: Kind, key: &[u8], a: Admission) -> bool {
    match a {
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
// Reading a request without waking its client
//
// On a Unix stream socket, taking bytes off the receive queue frees the sender's
// buffer space, and the kernel then wakes every task asleep on the sender's socket
// (`unix_write_space`), including a client blocked in `read` for our answer: it
// finds nothing, and sleeps again. libsasl's saslauthd client sleeps that way, as
// does any client that reads without `poll`. So a request is read with `MSG_PEEK`,
// answered, and only then taken off the socket: by then the answer has woken the
// client, which is no longer asleep there. Measured with `bench_serve` (blocking
// clients): nearly two context switches per request for the client before, one
// after, and the server no longer pays for that wake-up's interrupt.

/// `recv(2)` on a socket we hold, without blocking.
fn recv_now(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8], peek: bool) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    loop {
        // SAFETY: recv writes at most buf.len() bytes into buf, which we own
        // mutably for the call; fd is an open socket for as long as it is borrowed.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Takes the `buf.len()` bytes a peek returned off the socket (they are there: only
/// we read this socket), into `buf`.
fn discard(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match recv_now(fd, &mut buf[done..], false)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            k => done += k,
        }
    }
    Ok(())
}

/// Waits until the client has sent something and copies it into `buf`, leaving it
/// on the socket (0: the client closed). Cancel-safe.
async fn peek_ready(stream: &UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsFd;
    loop {
        stream.readable().await?;
        match stream.try_io(tokio::io::Interest::READABLE, || {
            recv_now(stream.as_fd(), buf, true)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

// -------------------------------------------------------------------------------
// saslauthd mux
//
// A mux connection carries one small request. Dedicated threads accept them (one
// per CPU, like saslauthd's pre-forked workers, but keeping the database open) and
// answer at once when they can: the whole request arrived, no penalty applies, and
// the answer is a success or an undelayed failure. That path costs accept, read,
// the lookup, write and close: no event-loop registration, no task, no wake-up of
// another thread. Everything else (a client whose request is not there after a few
// yields of the processor, a penalty, a failure delay) is handed to the event loop.

/// How often an acceptor yields the processor to a just-connected client whose
/// request has not arrived, before it hands the connection to the event loop (it
/// never sleeps on a client: a thousand silent clients cost it microseconds each).
const MUX_YIELDS: u32 = 4;

fn mux_acceptor(listener: &StdListener, shared: &Arc<Shared>, rt: &tokio::runtime::Handle) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    loop {
        while !LiveGuard::room(shared) {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: accept4 on our listening socket; the result is a new descriptor
        // we own (or -1).
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) | Some(libc::EAGAIN) => {}
                Some(libc::EBADF) | Some(libc::EINVAL) | Some(libc::ENOTSOCK) => return,
                _ => {
                    shared.log_limited(&format!("accept: {}", crate::io_text(&e)));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            continue;
        }
        let guard = LiveGuard::count(shared);
        // SAFETY: accept4 returned a fresh descriptor nobody else owns.
        let stream = std::os::unix::net::UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        mux_fast(stream, guard, shared, rt);
    }
}

/// Serves a just-accepted mux connection on the acceptor thread, or hands it to the
/// event loop (see the section notes).
fn mux_fast(
    mut stream: std::os::unix::net::UnixStream,
    guard: LiveGuard,
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
) {
    use std::io::Write;
    use std::os::fd::AsFd;
    let mut buf = WipeBuf::zeroed(saslauthd::MAX_REQUEST);
    let mut yields = 0;
    // The request is peeked at, and taken off the socket once answered (see
    // "Reading a request without waking its client"); `n` is how much of it the
    // socket holds.
    let (req, n) = loop {
        match recv_now(stream.as_fd(), &mut buf, true) {
            Ok(0) => return,
            Ok(n) => match saslauthd::parse(&buf[..n]) {
                saslauthd::Parsed::Incomplete if n < buf.len() => {}
                saslauthd::Parsed::Incomplete => return,
                saslauthd::Parsed::Refused(text) => {
                    log_refused(shared, text);
                    let _ = stream.write_all(&saslauthd::frame(text));
                    let _ = discard(stream.as_fd(), &mut buf[..n]);
                    return;
                }
                saslauthd::Parsed::Request(r, _) => break (r, n),
            },
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
            Err(_) => {}
        }
        // Not all there yet. The client's write usually follows its connect by
        // microseconds: let it run rather than sleep and be woken.
        if yields < MUX_YIELDS {
            yields += 1;
            std::thread::yield_now();
            continue;
        }
        // Nothing was taken off the socket: the event loop reads it all.
        let sh = shared.clone();
        rt.spawn(async move {
            let _guard = guard;
            if let Ok(s) = UnixStream::from_std(stream) {
                mux_conn(s, sh).await;
            }
        });
        return;
    };
    // Wiped now: the request held the password. The request leaves the socket once
    // answered (below) or handed on, read into `buf` and wiped again.
    buf.wipe(n);
    let mut unread = Some(n);
    let mut take = |stream: &std::os::unix::net::UnixStream| -> bool {
        let ok = match unread.take() {
            Some(n) => discard(stream.as_fd(), &mut buf[..n]).is_ok(),
            None => true,
        };
        buf.clear();
        ok
    };
    let realm = shared.realm();
    let (user, urealm) = saslauthd::user_and_realm(&req, &realm);
    let ukey = user_key(user, urealm);
    match shared.limits.admit(Kind::User, &ukey, Instant::now()) {
        Admission::Go => {}
        adm => {
            if !take(&stream) {
                return;
            }
            let sh = shared.clone();
            rt.spawn(async move {
                let _guard = guard;
                if let Ok(s) = UnixStream::from_std(stream) {
                    mux_rest(s, sh, req, Some(adm)).await;
                }
            });
            return;
        }
    }
    let (answer, failed) = mux_check(shared, &req);
    drop(req);
    let delay = shared.cfg.failure_delay;
    if failed && !delay.is_zero() {
        if !take(&stream) {
            return;
        }
        rt.spawn(async move {
            let _guard = guard;
            if let Ok(mut s) = UnixStream::from_std(stream) {
                tokio::time::sleep(delay).await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                let _ = reply_mux(&mut s, answer, deadline).await;
            }
        });
        return;
    }
    // A reply of a few bytes to a socket that has sent its request: the send buffer
    // is empty, so the non-blocking write completes. Then the request leaves the
    // socket (closing with unread bytes would reset the client's connection).
    let _ = stream.write_all(&saslauthd::frame(answer));
    take(&stream);
}

/// The log line for a mux request refused as malformed (`text`: the refusal sent).
fn log_refused(shared: &Shared, text: &[u8]) {
    shared.log_limited(&format!(
        "saslauthd request refused: {}",
        String::from_utf8_lossy(text)
    ));
}

/// Looks the user up and checks the password (may block: a remote database, a key
/// derivation); counts and logs a failure. Returns the answer and whether it is a
/// failure.
fn mux_check(shared: &Shared, req: &saslauthd::Request) -> (&'static [u8], bool) {
    let realm = shared.realm();
    let (user, urealm) = saslauthd::user_and_realm(req, &realm);
    let creds = match shared.authority.credentials(user, urealm) {
        Ok(c) => c,
        Err(e) => {
            shared.log_limited(&format!("database error: {e}"));
            return (b"NO temporary failure", false);
        }
    };
    let verdict = verify_plain(creds.as_ref(), &req.password, &shared.decoy);
    let ukey = user_key(user, urealm);
    let now = Instant::now();
    if verdict == Verdict::Match {
        shared.limits.success(Kind::User, &ukey, now);
        (saslauthd::answer(true), false)
    } else {
        shared.limits.failure(Kind::User, &ukey, now);
        let why = if verdict == Verdict::Mismatch {
            "wrong password"
        } else {
            "unknown user or no usable secret"
        };
        fail_log(shared, "saslauthd", &req.login, None, &req.service, why);
        (saslauthd::answer(false), true)
    }
}

/// A mux connection on the event loop: reads the request (nothing of it has been
/// taken off the socket yet).
async fn mux_conn(mut stream: UnixStream, shared: Arc<Shared>) {
    let deadline = tokio::time::Instant::now() + shared.cfg.timeout;
    let mut buf = WipeBuf::zeroed(saslauthd::MAX_REQUEST);
    let mut n = 0;
    let req = loop {
        match saslauthd::parse(&buf[..n]) {
            saslauthd::Parsed::Incomplete if n < buf.len() => {}
            saslauthd::Parsed::Incomplete => return,
            saslauthd::Parsed::Refused(text) => {
                log_refused(&shared, text);
                let _ = reply_mux(&mut stream, text, deadline).await;
                return;
            }
            saslauthd::Parsed::Request(r, _) => break r,
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(k)) => n += k,
        }
    };
    // Wiped now: the request held the password.
    buf.clear();
    mux_rest(stream, shared, req, None).await;
}

/// The rest of a mux request on the event loop: the penalty (`admitted`: already
/// decided), the check on a blocking thread, the failure delay, the answer.
async fn mux_rest(
    mut stream: UnixStream,
    shared: Arc<Shared>,
    req: saslauthd::Request,
    admitted: Option<Admission>,
) {
    let realm = shared.realm();
    let (user, urealm) = saslauthd::user_and_realm(&req, &realm);
    let ukey = user_key(user, urealm);
    let go = match admitted {
        Some(a) => wait_admission(&shared, Kind::User, &ukey, a).await,
        None => admit(&shared, Kind::User, &ukey).await,
    };
    let (answer, failed) = if go {
        let sh = shared.clone();
        tokio::task::spawn_blocking(move || mux_check(&sh, &req))
            .await
            .unwrap_or((b"NO temporary failure", false))
    } else {
        fail_log(&shared, "saslauthd", user, None, b"-", "too many failures");
        (saslauthd::answer(false), true)
    };
    if failed && !shared.cfg.failure_delay.is_zero() {
        tokio::time::sleep(shared.cfg.failure_delay).await;
    }
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
    use std::os::fd::AsFd;
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
    let (rd, mut wr) = stream.into_split();
    if tokio::time::timeout(timeout, wr.write_all(&hello))
        .await
        .is_err()
    {
        return;
    }
    let (tx, mut rx) = mpsc::channel::<(u32, Reply)>(dovecot::MAX_REQUESTS + 8);
    let mut in_flight = 0usize;
    let mut buf = WipeBuf::zeroed(4096);
    // Bytes fed to the session but still on the socket (see "Reading a request
    // without waking its client"): taken off once this round's answers are written.
    let mut unread = 0;
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
            r = peek_ready(rd.as_ref(), &mut buf[..]), if in_flight < dovecot::MAX_REQUESTS => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let now = Instant::now();
                last = now;
                session.feed(&buf[..n], now, &mut events);
                buf.wipe(n);
                unread = n;
                for ev in events.drain(..) {
                    match ev {
                        Event::Send(line) => out.extend_from_slice(&line),
                        Event::Close(why) => {
                            shared.log_limited(&format!("closing a Dovecot client connection: {why}"));
                            let _ = tokio::time::timeout(timeout, wr.write_all(&out)).await;
                            let _ = discard(rd.as_ref().as_fd(), &mut buf[..unread]);
                            return;
                        }
                        Event::Auth { id, mech, params, initial } => {
                            let (x, p) = Exchange::start(mech, initial.as_deref().map(|v| &v[..]), &shared.env());
                            drop(initial);
                            let fut = request_step(shared.clone(), x, Step::Started(p), params, true);
                            run_step(id, fut, &mut session, &mut out, &mut in_flight, &tx);
                        }
                        Event::Cont { id, exchange, data, params } => {
                            let fut = request_step(shared.clone(), exchange, Step::Input(data), params, false);
                            run_step(id, fut, &mut session, &mut out, &mut in_flight, &tx);
                        }
                    }
                }
            }
            Some((id, reply)) = rx.recv() => {
                in_flight = in_flight.saturating_sub(1);
                if let Some(l) = answer(&mut session, id, reply, Instant::now()) {
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
        if unread > 0 {
            let taken = discard(rd.as_ref().as_fd(), &mut buf[..unread]);
            buf.wipe(unread);
            unread = 0;
            if taken.is_err() {
                return;
            }
            // The client may have sent its next request already, and the next peek
            // would find it without waiting: let this thread's other connections go
            // first, as a read that had to wait would (one busy client must not hold
            // a thread for its next hundred requests).
            tokio::task::yield_now().await;
        }
    }
}

/// The line answering a request step (`None`: the request is gone).
fn answer(session: &mut Session, id: u32, reply: Reply, now: Instant) -> Option<Vec<u8>> {
    match reply {
        Reply::Challenge(x, data) => session.challenge(id, &data, x, now),
        Reply::Success { user, final_data } => {
            session.success(id, &user, final_data.as_deref(), now)
        }
        Reply::Failure { user, temp: true } => session.failure(
            id,
            user.as_deref(),
            Some("temp_fail"),
            "Temporary authentication failure",
        ),
        Reply::Failure { user, temp: false } => {
            session.failure(id, user.as_deref(), None, dovecot::FAIL_REASON)
        }
    }
}

/// Runs a request step on the connection's own task as far as it goes without
/// waiting: most steps (a local lookup, no penalty, a success or an undelayed
/// failure) finish there, with no task spawned and no other thread woken. A step that
/// must wait (a timer, a blocking thread) continues as a task of its own, which sends
/// its reply back to the connection.
fn run_step(
    id: u32,
    fut: impl std::future::Future<Output = Reply> + Send + 'static,
    session: &mut Session,
    out: &mut Vec<u8>,
    in_flight: &mut usize,
    tx: &mpsc::Sender<(u32, Reply)>,
) {
    use std::task::{Context, Poll, Waker};
    let mut fut = Box::pin(fut);
    // A step that is not ready is polled again right away by its task, with a real
    // waker, so nothing registered with this no-op waker is lost.
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(reply) => {
            if let Some(l) = answer(session, id, reply, Instant::now()) {
                out.extend_from_slice(&l);
            }
        }
        Poll::Pending => {
            *in_flight += 1;
            let tx = tx.clone();
            tokio::spawn(async move {
                let reply = fut.await;
                let _ = tx.send((id, reply)).await;
            });
        }
    }
}

async fn request_step(
    shared: Arc<Shared>,
    mut exchange: Exchange,
    step: Step,
    params: super::dovecot::AuthParams,
    first: bool,
) -> Reply {
    let shared = &shared;
    let params = &params;
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
                let clean = params
                    .rip
                    .as_ref()
                    .is_some_and(|r| shared.limits.clean(Kind::Address, r, Instant::now()));
                if !clean && !admit(shared, Kind::User, &key).await {
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
                // Every failure counts, a malformed message too: a client that
                // cannot speak the mechanism is not a user.
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
                return Reply::Failure { user, temp: false };
            }
        }
    }
}
