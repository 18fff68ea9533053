//! Failure limits and failure logging for `sasldb serve`.
//!
//! - **Penalties.** Failures are counted per remote address (the Dovecot protocol's
//!   `rip=`) and per user (`user@realm`). Once a key has [`LimitConfig::threshold`]
//!   failures, each further request for it waits before it is even looked at: 1 s,
//!   then 2, 4, ... up to [`LimitConfig::max_penalty`]. The wait is a timer, never a
//!   blocked thread, so other clients are not slowed. At most
//!   [`LimitConfig::max_waiting`] requests per key wait at once; the rest are refused
//!   after the same wait without checking anything, so a flood from one address
//!   costs almost nothing. A failure count expires [`LimitConfig::window`] after its
//!   last failure; a success clears the user's count (not the address's).
//! - **Who a user's penalty holds back.** A request from a remote address with no
//!   failure on record is not held back by the user's penalty: a flood of wrong
//!   passwords for alice from one address slows that address (and every other address
//!   that has failed), never alice logging in from a clean one. Requests without an
//!   address (the saslauthd protocol) always are.
//! - **Bounded memory.** Each table has a fixed number of slots (two-way
//!   set-associative, keyed by a keyed hash of the name), so random names cannot
//!   grow it; a collision at worst shares a count.
//! - **Logging.** One line per failure (mechanism, user, remote address, why), at
//!   most [`LogConfig::per_second`] a second with a burst of [`LogConfig::burst`];
//!   suppressed lines are counted and reported. Names are escaped (no control
//!   characters reach the log) and cut at 128 bytes. Passwords are never passed here.

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Penalty settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    /// Failures after which requests wait (0: no penalties).
    pub threshold: u32,
    /// The longest wait.
    pub max_penalty: Duration,
    /// How long a failure count lasts after the last failure.
    pub window: Duration,
    /// Requests of one key that may wait at once; more are refused unchecked.
    pub max_waiting: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            threshold: 3,
            max_penalty: Duration::from_secs(8),
            window: Duration::from_secs(15 * 60),
            max_waiting: 4,
        }
    }
}

/// Slots per table (each slot is 32 bytes).
const SLOTS: usize = 1 << 14;
/// Lock stripes per table.
const STRIPES: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: u64,
    failures: u32,
    waiting: u32,
    last: Option<Instant>,
}

const EMPTY: Entry = Entry {
    tag: 0,
    failures: 0,
    waiting: 0,
    last: None,
};

/// One table of counts.
struct Table {
    stripes: Vec<Mutex<Vec<Entry>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Table {
    fn new() -> Table {
        Table {
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(vec![EMPTY; SLOTS / STRIPES]))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Runs `f` on the key's entry (found, or a slot taken over for it).
    fn with<T>(
        &self,
        key: &[u8],
        now: Instant,
        cfg: &LimitConfig,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> T {
        let h = self.hasher.hash_one(key) | 1;
        let stripe = (h as usize) % STRIPES;
        let per = SLOTS / STRIPES;
        let i = ((h >> 8) as usize % per) & !1;
        let mut slots = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let j = if slots[i].tag == h {
            i
        } else if slots[i + 1].tag == h {
            i + 1
        } else {
            // Take over the emptier or older slot (never one with waiting requests if
            // the other has none).
            let older = |e: &Entry| (e.waiting > 0, e.last);
            let j = if older(&slots[i]) <= older(&slots[i + 1]) {
                i
            } else {
                i + 1
            };
            slots[j] = Entry { tag: h, ..EMPTY };
            j
        };
        let e = &mut slots[j];
        if e.last
            .is_some_and(|l| now.saturating_duration_since(l) > cfg.window)
        {
            e.failures = 0;
            e.last = None;
        }
        f(e)
    }
}

impl Table {
    /// The key's failure count, without taking a slot for it.
    fn peek(&self, key: &[u8], now: Instant, cfg: &LimitConfig) -> u32 {
        let h = self.hasher.hash_one(key) | 1;
        let stripe = (h as usize) % STRIPES;
        let per = SLOTS / STRIPES;
        let i = ((h >> 8) as usize % per) & !1;
        let slots = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        slots[i..i + 2]
            .iter()
            .find(|e| e.tag == h)
            .filter(|e| {
                e.last
                    .is_some_and(|l| now.saturating_duration_since(l) <= cfg.window)
            })
            .map_or(0, |e| e.failures)
    }
}

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A remote address.
    Address,
    /// A user (`user NUL realm`).
    User,
}

/// What a request must do before it is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead now.
    Go,
    /// Wait this long, then go ahead; call [`Limits::done_waiting`] afterwards.
    Wait(Duration),
    /// Wait this long, then refuse without checking anything.
    Refuse(Duration),
}

/// The penalty tables.
pub struct Limits {
    cfg: LimitConfig,
    addresses: Table,
    users: Table,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Empty tables.
    pub fn new(cfg: LimitConfig) -> Limits {
        Limits {
            cfg,
            addresses: Table::new(),
            users: Table::new(),
        }
    }

    fn table(&self, kind: Kind) -> &Table {
        match kind {
            Kind::Address => &self.addresses,
            Kind::User => &self.users,
        }
    }

    /// The wait after `failures` failures.
    pub fn penalty_for(&self, failures: u32) -> Duration {
        if self.cfg.threshold == 0 || failures < self.cfg.threshold {
            return Duration::ZERO;
        }
        let exp = (failures - self.cfg.threshold).min(16);
        Duration::from_secs(1u64 << exp).min(self.cfg.max_penalty)
    }

    /// Whether a request for `key` may go ahead now.
    pub fn admit(&self, kind: Kind, key: &[u8], now: Instant) -> Admission {
        if self.cfg.threshold == 0 {
            return Admission::Go;
        }
        let cfg = self.cfg;
        let wait = |f| self.penalty_for(f);
        self.table(kind).with(key, now, &cfg, |e| {
            let d = wait(e.failures);
            if d.is_zero() {
                Admission::Go
            } else if e.waiting >= cfg.max_waiting {
                Admission::Refuse(d)
            } else {
                e.waiting += 1;
                Admission::Wait(d)
            }
        })
    }

    /// Whether `key` has no failure on record (an address that never failed is not
    /// held back by a user's penalty: see the module docs).
    pub fn clean(&self, kind: Kind, key: &[u8], now: Instant) -> bool {
        self.cfg.threshold == 0 || self.table(kind).peek(key, now, &self.cfg) == 0
    }

    /// A request admitted with [`Admission::Wait`] has finished waiting.
    pub fn done_waiting(&self, kind: Kind, key: &[u8], now: Instant) {
        let cfg = self.cfg;
        self.table(kind)
            .with(key, now, &cfg, |e| e.waiting = e.waiting.saturating_sub(1));
    }

    /// Counts a failure.
    pub fn failure(&self, kind: Kind, key: &[u8], now: Instant) {
        if self.cfg.threshold == 0 {
            return;
        }
        let cfg = self.cfg;
        self.table(kind).with(key, now, &cfg, |e| {
            e.failures = e.failures.saturating_add(1);
            e.last = Some(now);
        });
    }

    /// A success: clears a user's count (an address keeps its own).
    pub fn success(&self, kind: Kind, key: &[u8], now: Instant) {
        if self.cfg.threshold == 0 || kind == Kind::Address {
            return;
        }
        let cfg = self.cfg;
        self.table(kind).with(key, now, &cfg, |e| {
            e.failures = 0;
            e.last = None;
        });
    }
}

/// Failure log settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Lines per second on average.
    pub per_second: u32,
    /// Lines that may be written at once.
    pub burst: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            per_second: 10,
            burst: 50,
        }
    }
}

/// A token bucket for log lines, counting what it suppresses.
#[derive(Debug)]
pub struct RateLimit {
    cfg: LogConfig,
    state: Mutex<(f64, Instant, u64)>,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(cfg: LogConfig) -> RateLimit {
        RateLimit {
            cfg,
            state: Mutex::new((f64::from(cfg.burst), Instant::now(), 0)),
        }
    }

    /// Whether a line may be written now; `Some(n)` with the number of lines
    /// suppressed since the last one written, `None` to suppress this one.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last, suppressed) = &mut *s;
        let refill =
            now.saturating_duration_since(*last).as_secs_f64() * f64::from(self.cfg.per_second);
        *tokens = (*tokens + refill).min(f64::from(self.cfg.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }

    /// Lines suppressed and not yet reported (reported and reset).
    pub fn take_suppressed(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut s.2)
    }
}

/// A name from a client, fit for a log line: printable ASCII kept (`"` and `\`
/// escaped), every other byte as `\xNN`, cut at 128 bytes.
pub fn loggable(name: &[u8]) -> String {
    let mut s = String::with_capacity(name.len().min(128) + 2);
    for &b in name.iter().take(128) {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if name.len() > 128 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_grow_cap_and_expire() {
        let l = Limits::new(LimitConfig::default());
        let t0 = Instant::now();
        for _ in 0..2 {
            l.failure(Kind::Address, b"10.0.0.1", t0);
        }
        assert_eq!(l.admit(Kind::Address, b"10.0.0.1", t0), Admission::Go);
        l.failure(Kind::Address, b"10.0.0.1", t0);
        assert_eq!(
            l.admit(Kind::Address, b"10.0.0.1", t0),
            Admission::Wait(Duration::from_secs(1))
        );
        for _ in 0..10 {
            l.failure(Kind::Address, b"10.0.0.1", t0);
        }
        // Three more may wait, then the rest are refused unchecked.
        for _ in 0..3 {
            assert_eq!(
                l.admit(Kind::Address, b"10.0.0.1", t0),
                Admission::Wait(Duration::from_secs(8))
            );
        }
        assert_eq!(
            l.admit(Kind::Address, b"10.0.0.1", t0),
            Admission::Refuse(Duration::from_secs(8))
        );
        l.done_waiting(Kind::Address, b"10.0.0.1", t0);
        assert_eq!(
            l.admit(Kind::Address, b"10.0.0.1", t0),
            Admission::Wait(Duration::from_secs(8))
        );
        // Other keys and the other table are unaffected.
        assert_eq!(l.admit(Kind::Address, b"10.0.0.2", t0), Admission::Go);
        assert_eq!(l.admit(Kind::User, b"10.0.0.1", t0), Admission::Go);
        // The window passes.
        let later = t0 + Duration::from_secs(16 * 60);
        assert_eq!(l.admit(Kind::Address, b"10.0.0.1", later), Admission::Go);
    }

    #[test]
    fn clean_addresses() {
        let l = Limits::new(LimitConfig::default());
        let t = Instant::now();
        assert!(l.clean(Kind::Address, b"a", t));
        l.failure(Kind::Address, b"a", t);
        assert!(!l.clean(Kind::Address, b"a", t));
        assert!(l.clean(Kind::Address, b"b", t));
        assert!(l.clean(Kind::Address, b"a", t + Duration::from_secs(16 * 60)));
    }

    #[test]
    fn success_clears_users_only() {
        let l = Limits::new(LimitConfig::default());
        let t = Instant::now();
        for _ in 0..3 {
            l.failure(Kind::User, b"u\0r", t);
            l.failure(Kind::Address, b"a", t);
        }
        l.success(Kind::User, b"u\0r", t);
        l.success(Kind::Address, b"a", t);
        assert_eq!(l.admit(Kind::User, b"u\0r", t), Admission::Go);
        assert_ne!(l.admit(Kind::Address, b"a", t), Admission::Go);
        let off = Limits::new(LimitConfig {
            threshold: 0,
            ..LimitConfig::default()
        });
        for _ in 0..100 {
            off.failure(Kind::User, b"u", t);
        }
        assert_eq!(off.admit(Kind::User, b"u", t), Admission::Go);
    }

    #[test]
    fn many_names_stay_bounded() {
        let l = Limits::new(LimitConfig::default());
        let t = Instant::now();
        for i in 0..100_000u32 {
            l.failure(Kind::User, &i.to_be_bytes(), t);
        }
        assert_eq!(
            l.users
                .stripes
                .iter()
                .map(|s| s.lock().unwrap().len())
                .sum::<usize>(),
            SLOTS
        );
    }

    #[test]
    fn log_rate_and_escaping() {
        let r = RateLimit::new(LogConfig {
            per_second: 1,
            burst: 2,
        });
        let t = Instant::now();
        assert_eq!(r.allow(t), Some(0));
        assert_eq!(r.allow(t), Some(0));
        assert_eq!(r.allow(t), None);
        assert_eq!(r.allow(t), None);
        assert_eq!(r.allow(t + Duration::from_secs(1)), Some(2));
        assert_eq!(loggable(b"a\"b\n\xff"), "a\\\"b\\x0a\\xff");
        assert!(loggable(&[b'x'; 200]).ends_with("..."));
    }
}
