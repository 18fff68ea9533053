//! Converting a sasldb from any format to any other, in one transaction.
//!
//! The source is read once, as a stream; the destination is written through the
//! normal write path (lock, ownership policy, atomic replace or one transaction), so an
//! interrupted or failed conversion leaves the destination as it was. A destination
//! that already holds a database is refused unless overwriting is asked for. A
//! malformed key in the source (not exactly two NUL separators) makes the conversion
//! fail with nothing written, unless skipping malformed keys is asked for; then each
//! is reported.

use crate::database::{CommitReport, Database, Transaction, WriteOptions};
use crate::error::{Error, Result};
use crate::location::{Format, Location};
use crate::record::KeyRef;
use crate::storage::Records;
use crate::storage::sort::{DEFAULT_BUDGET, ExternalSort};

/// How to convert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Replace a destination that already holds a database.
    pub overwrite: bool,
    /// Skip (and report) malformed source keys instead of failing.
    pub skip_malformed: bool,
    /// Write options for the destination (its format when new, group, timeouts).
    pub write: WriteOptions,
}

/// What a conversion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    /// The source's format.
    pub from: Option<Format>,
    /// The destination's format.
    pub to: Option<Format>,
    /// Records written.
    pub records: u64,
    /// Distinct users written.
    pub users: u64,
    /// Malformed source keys skipped (lossy rendering, first ones only).
    pub skipped: Vec<String>,
    /// How many malformed keys were skipped in all.
    pub skipped_count: u64,
    /// The destination's commit report (notes and warnings).
    pub commit: CommitReport,
}

/// How many skipped keys a report names.
const SKIPPED_SHOWN: usize = 20;

/// Copies every record of `src` into `dst`. The destination's format is its
/// `FORMAT:` prefix, else the format of the database already there (with
/// `overwrite`), else `opts.write.new_format`.
pub fn convert(src: &Location, dst: &Location, opts: &ConvertOptions) -> Result<ConvertReport> {
    if same_file(src, dst)? {
        return Err(Error::Invalid(format!(
            "{src} and {dst} are the same database; convert into a new file"
        )));
    }
    let source = Database::open(src)?;
    let txn = Transaction::begin(dst, &opts.write)?;
    if txn.existed() && !opts.overwrite {
        return Err(Error::Invalid(format!(
            "{dst} already holds a {} database; add --force to replace it",
            txn.format()
        )));
    }
    let mut report = ConvertReport {
        from: Some(source.format()),
        to: Some(txn.format()),
        ..Default::default()
    };
    let tally = std::cell::RefCell::new(Tally::default());
    let skip = opts.skip_malformed;
    let checked = source.records()?.filter_map(|r| {
        let rec = match r {
            Ok(rec) => rec,
            Err(e) => return Some(Err(e)),
        };
        match KeyRef::parse(&rec.key) {
            Ok(_) => Some(Ok(rec)),
            Err(e) if skip => {
                let mut t = tally.borrow_mut();
                t.skipped_count += 1;
                if t.skipped.len() < SKIPPED_SHOWN {
                    t.skipped.push(format!("{}: {e}", escape(&rec.key)));
                }
                None
            }
            // The error ends the stream, and so aborts the write.
            Err(e) => Some(Err(Error::Invalid(format!(
                "malformed key in the source ({e}): {}; nothing written \
                 (--skip-malformed skips such keys)",
                escape(&rec.key)
            )))),
        }
    });
    // A destination that loads in key order gets the records sorted here (bounded
    // memory), and users are then counted on the sorted stream without a set.
    let mut sorted = source.records_are_sorted();
    let stream: Records<'_> = if !sorted && txn.wants_sorted_input() {
        let mut sorter = ExternalSort::new(txn.dir(), DEFAULT_BUDGET);
        for r in checked {
            sorter.push(r?)?;
        }
        sorted = true;
        sorter.finish()?
    } else {
        Box::new(checked)
    };
    let counted: Records<'_> = Box::new(stream.inspect(|r| {
        if let Ok(rec) = r
            && let Ok(k) = KeyRef::parse(&rec.key)
        {
            tally
                .borrow_mut()
                .count_user(&rec.key[..k.user.len() + k.realm.len() + 2], sorted);
        }
    }));
    report.commit = txn.replace_with(counted, sorted)?;
    let t = tally.into_inner();
    report.records = report.commit.records.unwrap_or(0);
    report.users = t.users();
    report.skipped = t.skipped;
    report.skipped_count = t.skipped_count;
    Ok(report)
}

/// Counts kept while the records stream past.
#[derive(Default)]
struct Tally {
    last_prefix: Vec<u8>,
    grouped_users: u64,
    user_set: std::collections::HashSet<Vec<u8>>,
    skipped: Vec<String>,
    skipped_count: u64,
}

impl Tally {
    /// Sorted sources give each user's keys together; others need a set.
    fn count_user(&mut self, prefix: &[u8], sorted: bool) {
        if sorted {
            if prefix != &self.last_prefix[..] {
                self.last_prefix = prefix.to_vec();
                self.grouped_users += 1;
            }
        } else if !self.user_set.contains(prefix) {
            self.user_set.insert(prefix.to_vec());
        }
    }

    fn users(&self) -> u64 {
        self.grouped_users + self.user_set.len() as u64
    }
}

fn escape(key: &[u8]) -> String {
    crate::record::escape(key)
}

/// Whether two locations name the same file (after symlinks), or the same
/// PostgreSQL URL.
fn same_file(a: &Location, b: &Location) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    if !a.is_file() || !b.is_file() {
        return Ok(a.postgres().is_some() && a.postgres() == b.postgres());
    }
    match (std::fs::metadata(a.path()), std::fs::metadata(b.path())) {
        (Ok(x), Ok(y)) => Ok(x.dev() == y.dev() && x.ino() == y.ino()),
        _ => Ok(false),
    }
}
