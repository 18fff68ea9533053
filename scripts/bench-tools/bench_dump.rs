//! Reads a sasldb and writes every record to standard output in `db_dump -p` notation
//! (one line per key and per value, each starting with a space; printable bytes as
//! they are, `\\` for a backslash, `\xx` for any other byte), without the header.
//! Used by `scripts/bench` to time reading and iterating a file against `db_dump -p`,
//! and to check that both see the same records in the same order.
//!
//! Usage: bench_dump DATABASE (built by `cargo build --release --example bench_dump`)

use std::io::{BufWriter, Write};

use sasldb::{Database, Location};

fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b' ');
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                out.extend_from_slice(&[b'\\', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
            }
        }
    }
    out.push(b'\n');
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or("usage: bench_dump DATABASE")?;
    let db = Database::open(&Location::path_only(path))?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = Vec::with_capacity(512);
    for rec in db.records()? {
        let rec = rec?;
        line.clear();
        escape(&mut line, &rec.key);
        escape(&mut line, &rec.value);
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(())
}
