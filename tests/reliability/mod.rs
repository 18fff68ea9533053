//! Reliability and security proofs (see each submodule): crashes, concurrency, bad
//! input, permissions and secrets, all through the real binaries.
//!
//! Every run gets `-f` naming a database in a scratch directory, `SASL_CONF_PATH` and
//! `MAIL_CONFIG` pointing into that directory, and a cleared environment: nothing here
//! touches /etc.

use std::path::{Path, PathBuf};
use std::process::Command;

use sasldb::{Database, Location};

use crate::support::{Scratch, peer};

/// Kills writers at random moments; every acknowledged update survives.
mod crash;

/// 8 writer processes on one database, readers looping meanwhile.
mod concurrency;

/// Bad names, passwords and database paths: a clear error, the database unchanged.
mod bad_input;

/// No database, temporary or lock file is ever readable by others; ownership after
/// every write path.
mod permissions;

/// No password in argv of spawned processes, in messages, or left in freed memory.
mod secrets_leak;

/// A local user attacks root's writes: directories, links, lock files, files kept
/// open, hostile files, postconf and endless inputs (issue 14).
mod hostile;

/// Bulk work with a tiny sort budget gives the same results; a killed import leaves no
/// spill file.
mod spill;

/// The formats, with the `-f` prefix our tools take.
pub const FORMATS: [(&str, sasldb::Format); 4] = [
    ("bdb", sasldb::Format::Bdb),
    ("gdbm", sasldb::Format::Gdbm),
    ("lmdb", sasldb::Format::Lmdb),
    ("sqlite", sasldb::Format::Sqlite),
];

/// A scratch directory with `conf/` (SASL_CONF_PATH), `mail/` (MAIL_CONFIG) and `db/`.
/// Our binaries run there with a cleared environment ([`Scratch::ours_clean`]).
pub fn scratch() -> Scratch {
    let s = Scratch::new();
    s.mkdir("db");
    s
}

/// Every record of a database, read through the library, as sorted pairs.
pub fn read_all(path: &Path, format: sasldb::Format) -> sasldb::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let db = Database::open(&Location::with_format(format, path))?;
    let mut v = db
        .records()?
        .map(|r| r.map(|r| (r.key, r.value.to_vec())))
        .collect::<sasldb::Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

/// Temporary files a writer left next to `db` (`.<name>.sasldb-tmp-*`).
pub fn temp_files(db: &Path) -> Vec<PathBuf> {
    let prefix = format!(".{}.sasldb-tmp-", db.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// The format's own checker, run on the file: `db_verify` (BDB), `gdbmtool` (GDBM),
/// `mdb_stat` (LMDB), `PRAGMA integrity_check` (SQLite). Returns an error text.
pub fn format_check(path: &Path, format: sasldb::Format) -> Result<(), String> {
    let mut cmd = match format {
        sasldb::Format::Bdb => {
            let mut c = Command::new(peer("db_verify"));
            c.arg("-q").arg(path);
            c
        }
        sasldb::Format::Gdbm => {
            // Reads the header, the directory and every bucket, and counts.
            let mut c = Command::new(peer("gdbmtool"));
            c.arg("-r").arg("-q").arg(path).arg("count");
            c
        }
        sasldb::Format::Lmdb => {
            let mut c = Command::new(peer("mdb_stat"));
            c.arg("-n").arg("-e").arg(path);
            c
        }
        sasldb::Format::Sqlite => {
            let mut c = Command::new(peer("sqlite3"));
            c.arg("-readonly").arg(path).arg("PRAGMA integrity_check;");
            c
        }
        _ => unreachable!(),
    };
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.success() && (format != sasldb::Format::Sqlite || stdout.trim() == "ok");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {} stdout {stdout:?} stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
