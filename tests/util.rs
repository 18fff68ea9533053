#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sasldb::{Record, Result};

/// Absolute path of a file under fixtures/.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Parses a fixture's `.expected` file: `user TAB realm TAB property TAB hex(value)`.
/// Returns (encoded key, value) pairs, sorted.
pub fn expected_records(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let parts: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
            assert_eq!(
                parts.len(),
                4,
                "bad expected line {:?}",
                String::from_utf8_lossy(line)
            );
            let mut key = parts[0].to_vec();
            key.push(0);
            key.extend_from_slice(parts[1]);
            key.push(0);
            key.extend_from_slice(parts[2]);
            (key, unhex(parts[3]))
        })
        .collect();
    out.sort();
    out
}

pub fn unhex(h: &[u8]) -> Vec<u8> {
    assert!(h.len().is_multiple_of(2));
    h.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}

/// Collects a record stream into sorted (key, value) pairs, panicking on error.
pub fn records_of(it: impl Iterator<Item = Result<Record>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = it
        .map(|r| r.map(|r| (r.key, r.value.to_vec())).unwrap())
        .collect();
    v.sort();
    v
}

/// Path of a required peer tool. A missing peer FAILS the test loudly: the README's
/// test command installs every peer, so a missing one means the environment is wrong,
/// and a silently skipped interop test would prove nothing.
pub fn peer(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "\n\n*** PEER TOOL MISSING: `{name}` is not installed. ***\n\
         This interop test needs the real tool; run the README's test command \
         (scripts/test), which installs every peer with apt-get.\n\n"
    );
}

/// A tiny deterministic PRNG (xorshift64*) so generated test data is reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
    /// A printable-ish name with occasional UTF-8 characters.
    pub fn name(&mut self, max: usize) -> String {
        const ALPHA: &[&str] = &[
            "a", "b", "c", "x", "y", "z", "0", "9", ".", "-", "_", "é", "ü", "名", "ß",
        ];
        let len = 1 + self.below(max as u64) as usize;
        (0..len)
            .map(|_| ALPHA[self.below(ALPHA.len() as u64) as usize])
            .collect()
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses `db_dump -p` output into sorted (key, value) pairs.
pub fn parse_db_dump_p(out: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = out;
    let mut lines = text.split(|&b| b == b'\n');
    for l in lines.by_ref() {
        if l == b"HEADER=END" {
            break;
        }
    }
    let mut items = Vec::new();
    for l in lines {
        if l == b"DATA=END" {
            break;
        }
        assert!(
            l.first() == Some(&b' '),
            "unexpected db_dump line {:?}",
            String::from_utf8_lossy(l)
        );
        items.push(unescape_dump(&l[1..]));
    }
    assert!(items.len() % 2 == 0);
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = items
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    pairs.sort();
    pairs
}

fn unescape_dump(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            if s.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else {
                let h = std::str::from_utf8(&s[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Runs a command, panicking with its output if it fails.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command with `input` on its stdin (fed from a thread, so a child that
/// writes a lot before reading cannot deadlock) and collects its output. A child
/// that exits without reading everything is fine.
pub fn run_with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// [`run_with_stdin`], panicking with the status and stderr if the command fails.
pub fn run_ok_with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    let out = run_with_stdin(cmd, input);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Looks every key up through libdb itself (Perl's DB_File is linked to libdb 5.3 on
/// Debian) and returns the number of keys that were missing or had another value.
pub fn libdb_lookup_misses(db: &Path, pairs: &[(Vec<u8>, Vec<u8>)]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("keys");
    let mut text = String::new();
    for (k, v) in pairs {
        text.push_str(&format!("{} {}\n", hex(k), hex(v)));
    }
    std::fs::write(&list, text).unwrap();
    let script = r#"
use strict; use DB_File; use Fcntl;
my ($db, $list) = @ARGV;
my %h; tie(%h, 'DB_File', $db, O_RDONLY, 0644, $DB_HASH) or die "tie $db: $!";
open(my $f, '<', $list) or die; my $miss = 0;
while (<$f>) { chomp; my ($k, $v) = split / /; $k = pack('H*', $k); $v = pack('H*', defined $v ? $v : '');
  my $got = $h{$k}; $miss++ unless defined $got && $got eq $v; }
print "$miss\n";
"#;
    let out = run_ok(
        std::process::Command::new(peer("perl"))
            .arg("-e")
            .arg(script)
            .arg(db)
            .arg(&list),
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
