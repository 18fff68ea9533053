//! The one door from the authentication daemons to the user database: the
//! [`Authority`] trait, the [`Credentials`] it answers with, and [`LibraryAuthority`],
//! its implementation over [`Database`].
//!
//! The daemons (`sasldb serve`, `sasldb checkpassword`) never touch [`Database`]
//! themselves: everything they read goes through [`Authority::credentials`], so the
//! database's handling (reopening, reconnecting, the same lookups for every user)
//! lives in one place.
//!
//! Rules every implementation keeps:
//! - **Nothing is cached across calls that could change a verdict.** Each call reads
//!   the secrets as they are now: a password change or a deleted user takes effect
//!   at the next call. (Open handles may be kept; their contents may not.)
//! - **Unknown users cost what known users cost.** A call looks up the same
//!   properties whether or not the user exists, and never scans.
//! - Errors name the database, never a secret.
//!
//! [`LibraryAuthority`] keeps one [`Database`] per thread, in a thread-local slot (a
//! `Database` is `Send + Sync`, but its SQLite and PostgreSQL stores serialise their
//! lookups on one connection; one per thread keeps lookups parallel):
//! - Berkeley DB and GDBM files stay open while the file's identity and state
//!   (device, inode, size, mtime, ctime; one `stat` per call) are unchanged: our
//!   writers replace the file by rename, which changes the inode; Cyrus's writers
//!   change it in place, which changes mtime, and the open handle caches the file's
//!   layout. A file modified less than [`RACY`] before it was opened is opened again
//!   at every call (a change within the same timestamp tick would otherwise go
//!   unseen), until it has been quiet that long.
//! - LMDB and SQLite run every lookup in a short read transaction of its own, so
//!   their handles see every commit: they are opened again only when the file is
//!   replaced (another inode).
//! - PostgreSQL keeps one connection per thread. The store itself makes a dropped
//!   connection again: a call whose connection was lost is retried once on a new one
//!   (to whichever host the URL's `target_session_attrs` now picks), and a call after
//!   a failed one connects afresh (`src/storage/sql/pgsql.rs`, "Connections that
//!   drop"). That is the only retry: a failed call drops the handle here, so the next
//!   call opens the database again, but is not retried here too (each try may wait
//!   up to `connect_timeout` per host on a server that is down).
//! - [`Authority::reopen`] (SIGHUP) drops every thread's handle at its next call.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::Database;
use crate::account::LEGACY_PROPERTIES;
use crate::account::secrets::{ScramHash, ScramSecret};
use crate::record::{AUTH_PASSWORD, KeyRef, Secret, USER_PASSWORD};
use crate::storage;
use crate::{Format, Location};

/// Why the database could not answer. The text names the database and the failure,
/// never a secret; the daemons answer it with a temporary failure, never a verdict.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthorityError(#[from] pub crate::Error);

/// The secrets stored for one user: what a mechanism can check a client against.
///
/// Every field is wiped from memory when dropped.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `userPassword`, as stored (Cyrus compares it up to its first NUL).
    pub user_password: Option<Secret>,
    /// The SASLv1 `cmusaslsecretPLAIN` (salted MD5; PLAIN and LOGIN only).
    pub legacy_plain: Option<Secret>,
    /// The SCRAM `authPassword`, parsed (a malformed value is left out).
    pub scram: Option<ScramSecret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "user_password",
                &self.user_password.as_ref().map(|_| "<hidden>"),
            )
            .field(
                "legacy_plain",
                &self.legacy_plain.as_ref().map(|_| "<hidden>"),
            )
            .field("scram", &self.scram.as_ref().map(ScramSecret::hash))
            .finish()
    }
}

impl Credentials {
    /// The plaintext password, as Cyrus's mechanisms use it: `userPassword` up to its
    /// first NUL, if that is not empty.
    pub fn plaintext(&self) -> Option<&[u8]> {
        let v = self.user_password.as_deref()?;
        let v = v.split(|&b| b == 0).next().unwrap_or_default();
        (!v.is_empty()).then_some(v)
    }

    /// The SCRAM secret for `hash`, if the stored one is of that hash.
    pub fn scram_for(&self, hash: ScramHash) -> Option<&ScramSecret> {
        self.scram.as_ref().filter(|s| s.hash() == hash)
    }

    /// Whether anything here can check a password.
    pub fn is_usable(&self) -> bool {
        self.user_password.is_some() || self.legacy_plain.is_some() || self.scram.is_some()
    }
}

/// What kinds of secrets a database holds: which mechanisms it can serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Records holding a non-empty `userPassword`.
    pub plaintext: u64,
    /// `authPassword` records, by SCRAM hash (in [`ScramHash::ALL`] order).
    pub scram: [u64; 5],
}

impl Inventory {
    /// `authPassword` records of `hash`.
    pub fn scram_of(&self, hash: ScramHash) -> u64 {
        let i = ScramHash::ALL
            .iter()
            .position(|&h| h == hash)
            .unwrap_or_default();
        self.scram[i]
    }

    /// Counts one record.
    pub fn add(&mut self, property: &[u8], value: &[u8]) {
        if property == USER_PASSWORD.as_bytes() && value.first().is_some_and(|&b| b != 0) {
            self.plaintext += 1;
        } else if property == AUTH_PASSWORD.as_bytes() {
            let name = value
                .iter()
                .position(|&b| b == b'$')
                .map(|n| &value[..n])
                .unwrap_or_default();
            let name = name.strip_prefix(b" ").unwrap_or(name);
            if let Some(i) = ScramHash::ALL
                .iter()
                .position(|h| h.mechanism().as_bytes() == name)
            {
                self.scram[i] += 1;
            }
        }
    }

    /// Whether the database stores SCRAM secrets and no plaintext at all (a
    /// hashed-only database: checking a password there costs a key derivation).
    pub fn hashed_only(&self) -> bool {
        self.plaintext == 0 && self.scram.iter().any(|&n| n > 0)
    }
}

/// The user database as the authentication daemons see it. See the module docs for
/// the rules every implementation keeps.
pub trait Authority: Send + Sync {
    /// The secrets stored for `user@realm`, read now. `Ok(None)`: the user has none
    /// (no such user, or no password property). Costs the same whether or not the
    /// user exists.
    fn credentials(&self, user: &[u8], realm: &[u8])
    -> Result<Option<Credentials>, AuthorityError>;

    /// Whether a call may wait on the network (PostgreSQL). Such calls are made on
    /// blocking threads; the others are quick enough for an event loop (a few page
    /// reads from the page cache).
    fn is_remote(&self) -> bool;

    /// Counts the secrets of every kind (a full scan: at start, on SIGHUP and after
    /// the database file changed, never per request).
    fn inventory(&self) -> Result<Inventory, AuthorityError>;

    /// Drops every open handle: the next call opens the database again (SIGHUP).
    fn reopen(&self);

    /// Something that changes whenever the database file changes (`None` for a
    /// database server): when it differs from the last inventory's, the server counts
    /// again.
    fn version(&self) -> Option<FileVersion>;

    /// The database's name, for messages (no secret: PostgreSQL URLs hold none).
    fn name(&self) -> String;
}

/// A file's identity and last change, from `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileVersion {
    /// The version of the file at `path` (symbolic links followed).
    pub fn of(path: &std::path::Path) -> std::io::Result<FileVersion> {
        let m = std::fs::metadata(path)?;
        Ok(FileVersion {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    fn modified(&self) -> SystemTime {
        let (s, ns) = self.mtime;
        if s >= 0 {
            SystemTime::UNIX_EPOCH + Duration::new(s as u64, ns.clamp(0, 999_999_999) as u32)
        } else {
            SystemTime::UNIX_EPOCH
        }
    }
}

/// How long a file must have been left alone before an open handle on it is trusted
/// across calls: longer than any file system's timestamp granularity (ext3, HFS+ and
/// some network file systems have one-second timestamps).
pub const RACY: Duration = Duration::from_secs(2);

/// Distinguishes instances in the thread-local slots.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// [`Authority`] over today's [`Database`], one handle per thread (see the module
/// docs).
#[derive(Debug)]
pub struct LibraryAuthority {
    location: Location,
    id: u64,
    generation: AtomicU64,
}

/// One thread's open database.
struct Slot {
    id: u64,
    generation: u64,
    version: Option<FileVersion>,
    opened: SystemTime,
    db: Database,
}

impl Slot {
    /// Whether this handle still shows the database as it is now.
    fn fresh(&self, generation: u64, version: Option<FileVersion>) -> bool {
        if self.generation != generation {
            return false;
        }
        match (self.version, version) {
            // A database server: always current.
            (None, None) => true,
            // Every lookup is a transaction of its own: only a replaced file
            // (another inode) needs a new handle.
            (Some(old), Some(now)) if storage::changed_in_place(self.db.format()) => {
                (old.dev, old.ino) == (now.dev, now.ino)
            }
            // The handle caches the file's layout (metadata page, directory).
            (Some(old), Some(now)) => {
                old == now
                    && self
                        .opened
                        .duration_since(now.modified())
                        .is_ok_and(|quiet| quiet >= RACY)
            }
            _ => false,
        }
    }
}

thread_local! {
    static SLOTS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

impl LibraryAuthority {
    /// An authority over the database at `location`. Nothing is opened yet: call
    /// [`LibraryAuthority::check`] to fail early.
    pub fn new(location: Location) -> LibraryAuthority {
        LibraryAuthority {
            location,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
        }
    }

    /// Opens the database once on this thread and reports its format: an error here
    /// (missing file, unreadable, wrong format, server down) stops the daemon before
    /// it serves anything.
    pub fn check(&self) -> Result<Format, AuthorityError> {
        self.with_db(|db| Ok(db.format()))
    }

    /// The database.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs `f` on this thread's handle, opening or reopening it as needed; a
    /// failure drops the handle and, for a file, is retried once on a fresh one (a
    /// PostgreSQL store retries a lost connection itself: see the module docs).
    fn with_db<T>(
        &self,
        mut f: impl FnMut(&Database) -> crate::Result<T>,
    ) -> Result<T, AuthorityError> {
        let mut last = None;
        let tries = if self.location.is_file() { 2 } else { 1 };
        for _ in 0..tries {
            match self.try_with_db(&mut f) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.drop_slot();
                    last = Some(e);
                }
            }
        }
        Err(AuthorityError(last.unwrap_or_else(|| {
            crate::Error::Invalid("the database could not be read".into())
        })))
    }

    fn try_with_db<T>(
        &self,
        f: &mut impl FnMut(&Database) -> crate::Result<T>,
    ) -> crate::Result<T> {
        let version = if self.location.is_file() {
            Some(
                FileVersion::of(self.location.path()).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => crate::Error::NotFound {
                        path: self.location.path().to_path_buf(),
                    },
                    _ => crate::Error::io(self.location.path(), e),
                })?,
            )
        } else {
            None
        };
        let generation = self.generation.load(Ordering::Acquire);
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            let at = slots.iter().position(|s| s.id == self.id);
            let fresh = at.is_some_and(|i| slots[i].fresh(generation, version));
            if fresh {
                let i = at.unwrap_or_default();
                return f(&slots[i].db);
            }
            if let Some(i) = at {
                slots.swap_remove(i);
            }
            let opened = SystemTime::now();
            let db = Database::open(&self.location)?;
            let out = f(&db);
            if out.is_ok() {
                slots.push(Slot {
                    id: self.id,
                    generation,
                    version,
                    opened,
                    db,
                });
            }
            out
        })
    }

    fn drop_slot(&self) {
        // A thread that is exiting has no slots left to drop.
        let _ = SLOTS.try_with(|slots| {
            if let Ok(mut slots) = slots.try_borrow_mut() {
                slots.retain(|s| s.id != self.id);
            }
        });
    }
}

/// Builds `user NUL realm NUL property` into `buf`.
fn key_into(buf: &mut Vec<u8>, user: &[u8], realm: &[u8], property: &str) {
    buf.clear();
    buf.extend_from_slice(user);
    buf.push(0);
    buf.extend_from_slice(realm);
    buf.push(0);
    buf.extend_from_slice(property.as_bytes());
}

/// Reads the three password properties of `user@realm`: always the same three
/// lookups, whether or not the user exists.
pub fn read_credentials(
    db: &Database,
    user: &[u8],
    realm: &[u8],
) -> crate::Result<Option<Credentials>> {
    let mut key = Zeroizing::new(Vec::with_capacity(user.len() + realm.len() + 24));
    key_into(&mut key, user, realm, USER_PASSWORD);
    let user_password = db.get_raw(&key)?;
    key_into(&mut key, user, realm, LEGACY_PROPERTIES[2]);
    let legacy_plain = db.get_raw(&key)?;
    key_into(&mut key, user, realm, AUTH_PASSWORD);
    let scram = db.get_raw(&key)?.and_then(|v| ScramSecret::parse(&v).ok());
    let c = Credentials {
        user_password,
        legacy_plain,
        scram,
    };
    Ok(c.is_usable().then_some(c))
}

impl Authority for LibraryAuthority {
    fn credentials(
        &self,
        user: &[u8],
        realm: &[u8],
    ) -> Result<Option<Credentials>, AuthorityError> {
        if user.contains(&0) || realm.contains(&0) {
            // No key can hold it; still one call's worth of work for the caller.
            return Ok(None);
        }
        self.with_db(|db| read_credentials(db, user, realm))
    }

    fn is_remote(&self) -> bool {
        !self.location.is_file()
    }

    fn inventory(&self) -> Result<Inventory, AuthorityError> {
        self.with_db(|db| {
            let mut inv = Inventory::default();
            for rec in db.records()? {
                let rec = rec?;
                if let Ok(k) = KeyRef::parse(&rec.key) {
                    inv.add(k.property, &rec.value);
                }
            }
            Ok(inv)
        })
    }

    fn reopen(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn name(&self) -> String {
        self.location.to_string()
    }

    fn version(&self) -> Option<FileVersion> {
        if self.location.is_file() {
            FileVersion::of(self.location.path()).ok()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, Transaction, WriteOptions};

    fn write(loc: &Location, user: &str, props: &[(&str, &[u8])]) {
        let opts = WriteOptions {
            ownership: crate::OwnershipPolicy::RootGroup("root".into()),
            ..WriteOptions::default()
        };
        let mut txn = Transaction::begin(loc, &opts).unwrap();
        txn.delete_user(user.as_bytes(), b"r").unwrap();
        for (p, v) in props {
            txn.put(&Key::new(user, "r", p).unwrap(), v.to_vec());
        }
        txn.commit().unwrap();
    }

    #[test]
    fn reads_now_not_then() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::path_only(dir.path().join("db"));
        write(&loc, "alice", &[(USER_PASSWORD, b"one")]);
        let a = LibraryAuthority::new(loc.clone());
        assert_eq!(a.check().unwrap(), Format::Bdb);
        let c = a.credentials(b"alice", b"r").unwrap().unwrap();
        assert_eq!(c.plaintext(), Some(&b"one"[..]));
        write(&loc, "alice", &[(USER_PASSWORD, b"two")]);
        let c = a.credentials(b"alice", b"r").unwrap().unwrap();
        assert_eq!(c.plaintext(), Some(&b"two"[..]));
        write(&loc, "alice", &[]);
        assert!(a.credentials(b"alice", b"r").unwrap().is_none());
        assert!(a.credentials(b"nobody", b"r").unwrap().is_none());
        assert!(a.credentials(b"a\0b", b"r").unwrap().is_none());
    }

    #[test]
    fn inventory_counts_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::path_only(dir.path().join("db"));
        let scram = ScramSecret::compute(ScramHash::Sha256, b"pw", b"salt", 16).unwrap();
        write(&loc, "a", &[(USER_PASSWORD, b"x")]);
        write(&loc, "b", &[(AUTH_PASSWORD, &scram.encode())]);
        write(&loc, "c", &[("cmusaslsecretOTP", b"md5\t0499\tx\t00\t0")]);
        let a = LibraryAuthority::new(loc);
        let inv = a.inventory().unwrap();
        assert_eq!(inv.plaintext, 1);
        assert_eq!(inv.scram_of(ScramHash::Sha256), 1);
        assert_eq!(inv.scram_of(ScramHash::Sha1), 0);
        assert!(!inv.hashed_only());
        let b = a.credentials(b"b", b"r").unwrap().unwrap();
        assert!(b.plaintext().is_none());
        assert!(b.scram_for(ScramHash::Sha256).is_some());
        // An OTP secret alone checks no password.
        assert!(a.credentials(b"c", b"r").unwrap().is_none());
    }
}
