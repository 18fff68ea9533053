//! The peer tools: the real Cyrus, libdb, LMDB, GDBM, SQLite, Postfix and GNU SASL
//! programs the tests compare against. A missing one fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::data::hex;
use super::run::{run_ok, run_with_stdin};

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

/// Runs Cyrus's `saslpasswd2 -a sqltest -u REALM ARGS` with `SASL_CONF_PATH=confdir`
/// (where `sqltest.conf` configures the `sql` auxprop plugin); `password` goes to
/// stdin (pipe mode). No password: stdin is closed at once (an empty input).
pub fn sql_saslpasswd2(
    confdir: &Path,
    realm: &str,
    args: &[&str],
    password: Option<&str>,
) -> Output {
    run_with_stdin(
        Command::new(peer("saslpasswd2"))
            .args(["-a", "sqltest", "-u", realm])
            .args(args)
            .env("SASL_CONF_PATH", confdir),
        password.unwrap_or("").as_bytes(),
    )
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
        Command::new(peer("perl"))
            .arg("-e")
            .arg(script)
            .arg(db)
            .arg(&list),
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Every record of a Berkeley DB file as libdb's `db_dump -p` prints it, as sorted
/// (key, value) pairs.
pub fn db_dump(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let out = run_ok(Command::new(peer("db_dump")).arg("-p").arg(path));
    parse_db_dump_p(&out.stdout)
}

/// Parses `db_dump -p` output into sorted (key, value) pairs.
fn parse_db_dump_p(out: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
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
