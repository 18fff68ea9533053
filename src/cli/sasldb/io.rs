//! Helpers every command shares: where the database is, which realm and config apply,
//! reading input and passwords, and printing a commit's notes.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::account::{PolicyRequest, SecretPolicy};
use crate::cli::password::{check_password, read_password};
use crate::cyrus_conf::{self, SaslConf};
use crate::{CommitReport, Database, Location, Secret, SpillOptions, WriteOptions};
use anyhow::{Context, Result, bail};

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
    WriteOptions {
        spill: spill_options(g),
        ..crate::cli::write_options(g.group.as_deref())
    }
}

/// Where bulk work spills, from the global flags.
pub fn spill_options(g: &Global) -> SpillOptions {
    let mut s = SpillOptions {
        dir: g.temp_dir.clone(),
        ..SpillOptions::default()
    };
    if let Some(m) = g.sort_memory {
        s.memory = m;
    }
    s
}

/// Opens the database for reading, its bulk reads spilling as the flags say.
pub fn open_db(g: &Global, loc: &Location) -> Result<Database> {
    Ok(Database::open(loc)?.with_spill(spill_options(g)))
}

/// Opens an import's input: a file, or standard input for `-` or none.
pub fn open_input(path: Option<&OsString>) -> Result<Box<dyn Read>> {
    match path.filter(|p| p.as_bytes() != b"-") {
        Some(p) => {
            let f = std::fs::File::open(p)
                .with_context(|| format!("{}", PathBuf::from(p).display()))?;
            Ok(Box::new(f))
        }
        None => {
            // Descriptor 0 itself (a duplicate): std's standard input would keep the
            // last bytes it buffered, passwords among them, until the process exits.
            use std::os::fd::AsFd;
            let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
            Ok(Box::new(std::fs::File::from(fd)))
        }
    }
}

/// The secret policy from the flags and the config file.
pub fn secret_policy(conf: Option<&SaslConf>, req: &PolicyRequest) -> Result<SecretPolicy> {
    Ok(SecretPolicy::from_config(req, conf)?)
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
