//! Load generator for `sasldb serve` (and Cyrus's saslauthd): N client threads send
//! authentication requests for generated users (`user<i>@REALM`, password
//! `pw<i>`, as `scripts/bench-serve` creates them) and report requests per second,
//! latency percentiles and, given the server's pid(s), the server CPU time per
//! request (from /proc/PID/stat, children included for saslauthd's pre-forked
//! workers).
//!
//! ```text
//! bench_serve mux SOCKET [options]       one connection per request (libsasl's way)
//! bench_serve dovecot SOCKET [options]   one persistent connection per client (Postfix's way)
//! options: --clients N (1) --seconds S (5) --users N (1000) --realm R (example.org)
//!          --wrong PERCENT (0) --rip ADDR (192.0.2.1)
//!          --flood N   N more Dovecot clients sending wrong passwords from one
//!                      address (198.51.100.66) as fast as they can, not measured
//!          --pid PID   the server's pid (repeatable) for CPU per request
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

#[derive(Debug, Clone)]
struct Opts {
    proto: String,
    socket: PathBuf,
    clients: usize,
    seconds: f64,
    users: u64,
    realm: String,
    wrong: u64,
    rip: String,
    flood: usize,
    pids: Vec<i32>,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_serve mux|dovecot SOCKET [--clients N] [--seconds S] [--users N] \
         [--realm R] [--wrong PERCENT] [--rip ADDR] [--flood N] [--pid PID]..."
    );
    std::process::exit(2)
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let proto = args.next().unwrap_or_else(|| usage());
    let socket = PathBuf::from(args.next().unwrap_or_else(|| usage()));
    if proto != "mux" && proto != "dovecot" {
        usage();
    }
    let mut o = Opts {
        proto,
        socket,
        clients: 1,
        seconds: 5.0,
        users: 1000,
        realm: "example.org".into(),
        wrong: 0,
        rip: "192.0.2.1".into(),
        flood: 0,
        pids: Vec::new(),
    };
    while let Some(a) = args.next() {
        let mut v = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--clients" => o.clients = v().parse().unwrap_or_else(|_| usage()),
            "--seconds" => o.seconds = v().parse().unwrap_or_else(|_| usage()),
            "--users" => o.users = v().parse().unwrap_or_else(|_| usage()),
            "--realm" => o.realm = v(),
            "--wrong" => o.wrong = v().parse().unwrap_or_else(|_| usage()),
            "--rip" => o.rip = v(),
            "--flood" => o.flood = v().parse().unwrap_or_else(|_| usage()),
            "--pid" => o.pids.push(v().parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    o
}

/// utime + stime of a process and its waited-for children, in clock ticks, plus
/// those of its live children (saslauthd's workers).
fn cpu_ticks(pid: i32) -> u64 {
    let mut total = 0;
    let stat = |p: i32| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
    let fields = |s: &str| -> Vec<u64> {
        let after = s.rfind(')').map(|i| &s[i + 2..]).unwrap_or("");
        after
            .split_whitespace()
            .map(|f| f.parse::<i64>().unwrap_or(0).max(0) as u64)
            .collect()
    };
    let f = fields(&stat(pid));
    // Fields after ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    if f.len() > 14 {
        total += f[11] + f[12] + f[13] + f[14];
    }
    // Live children.
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let f = fields(&stat(p));
            if f.len() > 14 && f[1] == pid as u64 {
                total += f[11] + f[12];
            }
        }
    }
    total
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

fn credentials(o: &Opts, n: u64) -> (String, String, bool) {
    let i = n.wrapping_mul(2_654_435_761) % o.users.max(1);
    let wrong = o.wrong > 0 && n % 100 < o.wrong;
    let pw = if wrong {
        format!("bad{i}")
    } else {
        format!("pw{i}")
    };
    (format!("user{i}"), pw, wrong)
}

fn mux_once(socket: &Path, o: &Opts, n: u64) -> Result<bool, String> {
    let (user, pw, _) = credentials(o, n);
    let req = sasldb::serve::saslauthd::encode_request(
        user.as_bytes(),
        pw.as_bytes(),
        b"smtp",
        o.realm.as_bytes(),
    );
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.write_all(&req).map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut v = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut v).map_err(|e| e.to_string())?;
    Ok(v.starts_with(b"OK"))
}

struct DovecotConn {
    r: BufReader<UnixStream>,
    w: UnixStream,
    id: u32,
}

impl DovecotConn {
    fn connect(socket: &Path) -> Result<DovecotConn, String> {
        let s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
        let mut c = DovecotConn {
            r: BufReader::new(s.try_clone().map_err(|e| e.to_string())?),
            w: s,
            id: 0,
        };
        let mut line = String::new();
        loop {
            line.clear();
            if c.r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("closed during the handshake".into());
            }
            if line == "DONE\n" {
                break;
            }
        }
        c.w.write_all(format!("VERSION\t1\t0\nCPID\t{}\n", std::process::id()).as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(c)
    }

    fn plain(&mut self, user: &str, pw: &str, realm: &str, rip: &str) -> Result<bool, String> {
        self.id = self.id.wrapping_add(1).max(1);
        let resp = B64.encode(format!("\0{user}@{realm}\0{pw}"));
        let line = format!(
            "AUTH\t{}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip={rip}\tresp={resp}\n",
            self.id
        );
        self.w
            .write_all(line.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        if self.r.read_line(&mut reply).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        Ok(reply.starts_with("OK"))
    }
}

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    ok: u64,
    fail: u64,
    unexpected: u64,
    errors: u64,
}

fn client(o: &Opts, k: usize, stop: &AtomicBool, start: Instant) -> Stats {
    let mut st = Stats::default();
    let mut n = k as u64 * 1_000_003;
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (user, pw, wrong) = credentials(o, n);
        let t = Instant::now();
        let r = if o.proto == "mux" {
            mux_once(&o.socket, o, n)
        } else {
            if conn.is_none() {
                conn = DovecotConn::connect(&o.socket).ok();
            }
            match conn.as_mut() {
                Some(c) => c.plain(&user, &pw, &o.realm, &o.rip),
                None => Err("connect".into()),
            }
        };
        let d = t.elapsed();
        match r {
            Ok(ok) => {
                st.latencies.push(d);
                if ok {
                    st.ok += 1;
                } else {
                    st.fail += 1;
                }
                if ok == wrong {
                    st.unexpected += 1;
                }
            }
            Err(_) => {
                st.errors += 1;
                conn = None;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if start.elapsed().as_secs_f64() > o.seconds {
            break;
        }
    }
    st
}

fn flooder(o: &Opts, stop: &AtomicBool, sent: &AtomicU64) {
    let mut conn: Option<DovecotConn> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if conn.is_none() {
            conn = DovecotConn::connect(&o.socket).ok();
        }
        let r = match conn.as_mut() {
            Some(c) => c.plain(
                &format!("user{}", n % o.users.max(1)),
                "flood",
                &o.realm,
                "198.51.100.66",
            ),
            None => Err(String::new()),
        };
        if r.is_err() {
            conn = None;
            std::thread::sleep(Duration::from_millis(1));
        } else {
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    let o = parse();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for _ in 0..o.flood {
        let (o, stop, sent) = (o.clone(), stop.clone(), sent.clone());
        flood.push(std::thread::spawn(move || flooder(&o, &stop, &sent)));
    }
    if o.flood > 0 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu0: u64 = o.pids.iter().map(|&p| cpu_ticks(p)).sum();
    let start = Instant::now();
    let handles: Vec<_> = (0..o.clients)
        .map(|k| {
            let (o, stop) = (o.clone(), stop.clone());
            std::thread::spawn(move || client(&o, k, &stop, start))
        })
        .collect();
    let mut all = Stats::default();
    for h in handles {
        let s = h.join().unwrap();
        all.latencies.extend(s.latencies);
        all.ok += s.ok;
        all.fail += s.fail;
        all.unexpected += s.unexpected;
        all.errors += s.errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1: u64 = o.pids.iter().map(|&p| cpu_ticks(p)).sum();
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.join();
    }
    all.latencies.sort();
    let n = all.latencies.len();
    let pct = |p: f64| {
        if n == 0 {
            Duration::ZERO
        } else {
            all.latencies[((n as f64 * p) as usize).min(n - 1)]
        }
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "proto={} clients={} requests={} ok={} fail={} unexpected={} errors={} seconds={:.2} \
         rps={:.0} p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0}{}{}",
        o.proto,
        o.clients,
        n,
        all.ok,
        all.fail,
        all.unexpected,
        all.errors,
        elapsed,
        n as f64 / elapsed,
        us(pct(0.50)),
        us(pct(0.90)),
        us(pct(0.99)),
        us(pct(1.0)),
        if o.pids.is_empty() {
            String::new()
        } else {
            format!(
                " server_cpu_us_per_req={:.1}",
                (cpu1 - cpu0) as f64 / ticks_per_second() as f64 * 1e6 / n.max(1) as f64
            )
        },
        if o.flood > 0 {
            format!(" flood_requests={}", sent.load(Ordering::Relaxed))
        } else {
            String::new()
        }
    );
}
