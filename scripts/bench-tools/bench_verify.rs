//! Times in-process password checks against one opened database: a right password, a
//! wrong one, and an unknown user, each over many users picked at random from the input.
//! Prints `right_ns wrong_ns unknown_ns`: the mean time of one check of each kind, in
//! nanoseconds. Used by `scripts/bench` (the unknown user must cost what a wrong
//! password costs, and every check must stay far below what a network round trip costs).
//!
//! Usage: bench_verify DATABASE USERS_FILE [CHECKS]
//!   USERS_FILE: lines `user@realm:password` (what `sasldb import` read)
//!   CHECKS: checks of each kind (default 200000)

use std::hint::black_box;
use std::time::Instant;

use sasldb::{Database, Location, Verdict, account};

struct Entry {
    user: Vec<u8>,
    realm: Vec<u8>,
    password: Vec<u8>,
}

/// A small deterministic generator (xorshift), so both runs pick the same users.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(db), Some(users)) = (args.next(), args.next()) else {
        return Err("usage: bench_verify DATABASE USERS_FILE [CHECKS]".into());
    };
    let checks: usize = args.next().map_or(Ok(200_000), |s| s.parse())?;
    let entries: Vec<Entry> = std::fs::read_to_string(&users)?
        .lines()
        .filter_map(|l| {
            let (who, pw) = l.split_once(':')?;
            let (u, r) = who.split_once('@')?;
            Some(Entry {
                user: u.as_bytes().to_vec(),
                realm: r.as_bytes().to_vec(),
                password: pw.as_bytes().to_vec(),
            })
        })
        .collect();
    if entries.is_empty() {
        return Err(format!("{users}: no user@realm:password lines").into());
    }
    let db = Database::open(&db.parse::<Location>()?)?;
    let time = |kind: u8| -> Result<f64, Box<dyn std::error::Error>> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut wrong = Vec::new();
        let mut unknown = Vec::new();
        let start = Instant::now();
        for _ in 0..checks {
            let e = &entries[rng.below(entries.len())];
            let (user, pw, want) = match kind {
                0 => (&e.user, &e.password, Verdict::Match),
                1 => {
                    wrong.clear();
                    wrong.extend_from_slice(&e.password);
                    wrong.push(b'x');
                    (&e.user, &wrong, Verdict::Mismatch)
                }
                _ => {
                    // A name next to a real one (`user0000042-gone`): it falls on the
                    // same pages of a sorted file, as random guesses spread over all of
                    // them would; a common prefix would keep a few pages hot instead.
                    unknown.clear();
                    unknown.extend_from_slice(&e.user);
                    unknown.extend_from_slice(b"-gone");
                    (&unknown, &e.password, Verdict::NoSuchUser)
                }
            };
            let got = account::verify_password(&db, user, &e.realm, black_box(pw))?;
            if got != want {
                return Err(format!("unexpected verdict {got:?} (wanted {want:?})").into());
            }
        }
        Ok(start.elapsed().as_nanos() as f64 / checks as f64)
    };
    // One untimed pass warms the page cache for every kind alike.
    time(0)?;
    let (right, wrong, unknown) = (time(0)?, time(1)?, time(2)?);
    println!("{right:.0} {wrong:.0} {unknown:.0}");
    Ok(())
}
