//! Writing a database's copy as a whole file, at a path the caller has resolved and
//! locked: the Postfix chroot copy (`sasldb sync-chroot`). A copy is rebuilt and renamed
//! over whatever is there, or, for a format whose readers keep the file open (LMDB),
//! changed in place.

use std::path::Path;

use crate::error::{Error, Result};
use crate::location::Format;
#[cfg(any(feature = "lmdb", feature = "sqlite"))]
use crate::storage::MapOps;
#[cfg(feature = "lmdb")]
use crate::storage::lmdb;
use crate::storage::options::WriteOptions;
use crate::storage::persist::{self, Ownership, Target, companion_lock};
#[cfg(feature = "lmdb")]
use crate::storage::sort::sort_records;
#[cfg(feature = "sqlite")]
use crate::storage::sql::sqlite;
use crate::storage::store::not_built;
#[cfg(feature = "lmdb")]
use crate::storage::writer::rebuild_lmdb;
#[cfg(feature = "sqlite")]
use crate::storage::writer::rebuild_sqlite;
use crate::storage::writer::{bdb_options, gdbm_options};
use crate::storage::{Changes, Store, bdb, gdbm};

/// Whether readers keep a database file of `format` open for their whole life
/// (Postfix's smtpd keeps its LMDB environment), so that a file renamed over it would
/// never be seen: such a file must be changed in place.
pub(crate) fn readers_keep_open(format: Format) -> bool {
    format == Format::Lmdb
}

/// Whether a database file of `format` may have a rollback journal beside it that its
/// library opens by name (SQLite's `-journal`).
pub(crate) fn has_journal(format: Format) -> bool {
    format == Format::Sqlite
}

/// Makes sure the companion lock file `lock` exists with `own`'s owner and group and
/// the lock mode of `own.mode`.
pub(crate) fn prepare_companion_lock(lock: &Path, own: &Ownership) -> Result<()> {
    #[cfg(feature = "lmdb")]
    return lmdb::prepare_lock_file(lock, own);
    #[cfg(not(feature = "lmdb"))]
    return {
        let _ = own;
        Err(not_built(Format::Lmdb, lock))
    };
}

/// Gives a database file's companion lock file (if its format has one) its ownership,
/// creating it when missing.
pub(crate) fn prepare_companions(format: Format, path: &Path, own: &Ownership) -> Result<()> {
    match companion_lock(format, path) {
        Some(lock) => prepare_companion_lock(&lock, own),
        None => Ok(()),
    }
}

/// Applies `changes` in place to the existing file `target` (LMDB or SQLite); the
/// caller holds the writer lock, and has checked the file's ownership
/// ([`Ownership::mismatch`]: a file someone else may hold open is rebuilt instead).
pub(crate) fn update_in_place(
    format: Format,
    target: &Target,
    own: &Ownership,
    changes: &Changes,
    opts: &WriteOptions,
    notes: &mut Vec<String>,
) -> Result<u64> {
    #[cfg(not(all(feature = "lmdb", feature = "sqlite")))]
    let _ = (own, changes, &notes, opts);
    match format {
        #[cfg(feature = "lmdb")]
        Format::Lmdb => lmdb::commit_at(target, own, &mut MapOps::new(changes), &opts.lmdb),
        #[cfg(feature = "sqlite")]
        Format::Sqlite => sqlite::commit_at(
            target,
            own,
            &mut MapOps::new(changes),
            opts.lock_timeout,
            notes,
        ),
        other => Err(Error::Invalid(format!(
            "{}: a {other} database is not changed in place",
            target.path.display()
        ))),
    }
}

/// Builds a complete new database of `format` from `source`'s records next to
/// `target` and renames it over whatever directory entry is there (a file, a symlink,
/// a hard link). `replacing` says an entry of another kind or format is being
/// replaced, so companion files of the old one are dropped too. The caller holds the
/// writer lock of `target`.
pub(crate) fn rebuild_file(
    source: &Store,
    format: Format,
    target: &Target,
    own: &Ownership,
    opts: &WriteOptions,
    replacing: bool,
    notes: &mut Vec<String>,
) -> Result<u64> {
    let hint = source.layout_hint();
    let to = opts.spill.to_for(&target.dir, Some(&target.name));
    match format {
        Format::Bdb => {
            let o = bdb_options(&hint, opts)?;
            Ok(persist::replace_file(target, own, |f| {
                bdb::write_records_spilling(source.scan()?, &o, f, &to)
            })?
            .records)
        }
        Format::Gdbm => {
            let o = gdbm_options(&hint, &target.dir);
            Ok(persist::replace_file(target, own, |f| {
                gdbm::write_records_spilling(source.scan()?, &o, f, &to)
            })?
            .records)
        }
        #[cfg(feature = "sqlite")]
        Format::Sqlite => {
            let records = source.scan()?;
            rebuild_sqlite(target, own, records, None, opts, notes)
        }
        #[cfg(feature = "lmdb")]
        Format::Lmdb => {
            let records = sort_records(source.scan()?, source.sorted(), &to)?;
            rebuild_lmdb(target, own, records, opts, replacing)
        }
        other => {
            let _ = (notes, replacing);
            Err(match other {
                Format::Postgres => Error::Invalid(format!(
                    "{}: a {other} database is not a file",
                    target.path.display()
                )),
                _ => not_built(other, &target.path),
            })
        }
    }
}
