//! Bulk-loads N sasldb-shaped records into a new LMDB file with `lmdb::build_new` and
//! reports wall time and peak RSS. Used by `scripts/bench-lmdb-load`.
//!
//! Usage: bench_lmdb_load OUTPUT_PATH [RECORDS]   (default 1,000,000)
//! Records are generated in key order while loading (never held in memory): keys of
//! 36 bytes (`user0000042\0example.org\0userPassword`), values of 20 to 60 bytes.

use std::path::PathBuf;
use std::time::Instant;

use sasldb::Record;
use sasldb::internals::lmdb;
use sasldb::internals::persist::Ownership;

fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage fills a plain-old-data struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().expect("usage: bench_lmdb_load PATH [N]"));
    let n: u64 = args
        .next()
        .map(|s| s.parse().expect("N"))
        .unwrap_or(1_000_000);
    let own = Ownership {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        mode: 0o640,
        enforced: false,
        note: None,
        warning: None,
    };
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let records = (0..n).map(move |i| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let vlen = 20 + (x % 41) as usize;
        let value: Vec<u8> = (0..vlen)
            .map(|j| b'!' + ((x >> (j % 8)) % 90) as u8)
            .collect();
        Ok(Record::new(
            format!("user{i:07}\0example.org\0userPassword").into_bytes(),
            value,
        ))
    });
    let start = Instant::now();
    let written = lmdb::build_new(&path, records, &own).expect("bulk load");
    let secs = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "records={written} seconds={secs:.3} file_bytes={size} peak_rss_kib={}",
        peak_rss_kib()
    );
}
