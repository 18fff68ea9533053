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

/// Reads a whole input (a file, or standard input for `-` or none) into a buffer
/// that is wiped when dropped.
pub fn read_input(path: Option<&OsString>) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    match path.filter(|p| p.as_bytes() != b"-") {
        Some(p) => {
            let mut f = std::fs::File::open(p)
                .with_context(|| format!("{}", PathBuf::from(p).display()))?;
            let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
            // Reserve first so the secret-holding buffer does not reallocate.
            buf.reserve_exact(len + 1);
            f.read_to_end(&mut buf)
                .with_context(|| format!("{}", PathBuf::from(p).display()))?;
        }
        None => {
            let mut tmp = Zeroizing::new(Vec::new());
            std::io::stdin()
                .lock()
                .read_to_end(&mut tmp)
                .context("standard input")?;
            buf = tmp;
        }
    }
    Ok(buf)
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
