//! Helpers every command shares: where the database is, which realm and config apply,
//! reading input and passwords, and printing a commit's notes.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::account::{PolicyRequest, SecretPolicy};
use crate::cli::password::{check_password, read_password};
use crate::cyrus_conf::{self, SaslConf};
use crate::{CommitReport, Location, Secret, WriteOptions};
use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use super::args::Global;

/// The application's Cyrus config, when `-a` names one that exists.
pub fn config(g: &Global) -> Result<Option<SaslConf>> {
    match &g.appname {
        Some(app) => {
            if app.contains('/') {
                bail!("appname must not contain /");
            }
            Ok(cyrus_conf::load(app).context("error when parsing configuration file")?)
        }
        None => Ok(None),
    }
}

/// The database: `-f`, else the config's `sasldb_path`, else /etc/sasldb2.
pub fn location(g: &Global, conf: Option<&SaslConf>) -> Result<Location> {
    let raw: OsString = match (&g.db, conf.and_then(|c| c.sasldb_path())) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => p.into_os_string(),
        (None, None) => OsString::from(crate::cli::DEFAULT_SASLDB_PATH),
    };
    parse_location(&raw)
}

/// Parses `PATH`, `FORMAT:PATH` or a URL.
pub fn parse_location(raw: &OsString) -> Result<Location> {
    Ok(crate::cli::parse_location(raw)?)
}

/// The realm for names without @: `-u`, else the realm Postfix uses.
pub fn default_realm(g: &Global) -> Result<Vec<u8>> {
    if let Some(r) = g.realm.as_ref().filter(|r| !r.is_empty()) {
        return Ok(r.as_bytes().to_vec());
    }
    let r = crate::postfix::default_realm_here()
        .context("cannot determine the default realm (use -u REALM)")?;
    Ok(r.realm.into_bytes())
}

/// Write options from the global flags.
pub fn write_options(g: &Global) -> WriteOptions {
    crate::cli::write_options(g.group.as_deref())
}

/// The secret policy from the flags and the config file.
pub fn secret_policy(conf: Option<&SaslConf>, req: &PolicyRequest) -> Result<SecretPolicy> {
    Ok(SecretPolicy::from_config(req, conf)?)
}

/// The longest line an import reads (a good `user:password` line is at most ~1.5 KiB,
/// a JSON entry as `sasldb export --json` writes it a few tens of KiB; longer ones up
/// to this size are read, and refused one by one with their reasons): a longer one
/// stops the read, so input that never ends a line (`/dev/zero`) cannot take all the
/// memory. The same bound as a password read.
pub const MAX_INPUT_LINE: usize = 4 << 20;

/// Reads a whole input (a file, or standard input for `-` or none) into a buffer
/// that is wiped when dropped. A line longer than [`MAX_INPUT_LINE`] is an error.
pub fn read_input(path: Option<&OsString>) -> Result<Zeroizing<Vec<u8>>> {
    match path.filter(|p| p.as_bytes() != b"-") {
        Some(p) => {
            let shown = PathBuf::from(p);
            let f = std::fs::File::open(p).with_context(|| format!("{}", shown.display()))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            read_lines_bounded(f, len, MAX_INPUT_LINE)
                .with_context(|| format!("{}", shown.display()))
        }
        None => {
            read_lines_bounded(std::io::stdin().lock(), 0, MAX_INPUT_LINE).context("standard input")
        }
    }
}

/// Reads `r` to its end, refusing a line longer than `max_line` bytes as soon as it
/// gets there. The buffer starts at `hint` bytes (a file's size; at most 4 MiB, since
/// a file may be mostly a hole, and the whole buffer is wiped when dropped) and grows
/// by copying into one twice as large, the old one wiped: no copy of a password is
/// left in freed memory.
fn read_lines_bounded(
    mut r: impl Read,
    hint: u64,
    max_line: usize,
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(
        usize::try_from(hint).unwrap_or(0).min(4 << 20) + 1,
    ));
    let mut chunk = Zeroizing::new([0u8; 64 << 10]);
    let (mut line, mut lineno) = (0usize, 1usize);
    loop {
        let n = match r.read(&mut chunk[..]) {
            Ok(0) => return Ok(buf),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &chunk[..n] {
            if b == b'\n' {
                line = 0;
                lineno += 1;
            } else {
                line += 1;
                if line > max_line {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "line {lineno} is longer than {} KiB: not an import file",
                            max_line >> 10
                        ),
                    ));
                }
            }
        }
        if buf.capacity() - buf.len() < n {
            let mut bigger = Zeroizing::new(Vec::with_capacity((buf.len() + n).max(64 << 10) * 2));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a password for checking: a prompt without echo on a terminal, else one line
/// of standard input.
pub fn read_check_password() -> Result<Secret> {
    let pw = read_password("Password: ", false).context("reading the password")?;
    if let Err(p) = check_password(&pw) {
        bail!("{p}");
    }
    Ok(pw)
}

/// Prints a commit's notes and warnings on stderr.
pub fn print_commit(report: &CommitReport) {
    for line in report.notes.iter().chain(&report.warnings) {
        eprintln!("sasldb: {line}");
    }
}

/// Renders `user@realm` (lossy UTF-8).
pub fn who(user: &[u8], realm: &[u8]) -> String {
    format!(
        "{}@{}",
        String::from_utf8_lossy(user),
        String::from_utf8_lossy(realm)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_lines_are_bounded() {
        let ok = b"a:b\nc:d\n".repeat(10_000);
        let got = read_lines_bounded(&ok[..], 0, 2048).unwrap();
        assert_eq!(&got[..], &ok[..]);
        let long = [b"a:b\n".as_slice(), &[b'x'; 2049]].concat();
        let e = read_lines_bounded(&long[..], 0, 2048).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2 is longer than 2 KiB: not an import file"
        );
        // Endless input stops at the limit.
        let e = read_lines_bounded(std::io::repeat(0), 0, MAX_INPUT_LINE).unwrap_err();
        assert!(
            e.to_string().starts_with("line 1 is longer than 4096 KiB"),
            "{e}"
        );
    }
}
