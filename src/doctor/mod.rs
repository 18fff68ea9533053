//! `sasldb check`: what stands between a sasldb and working Postfix SMTP AUTH, and
//! repairing what is safe to repair.
//!
//! [`check`] reads; it never writes (one exception: opening an LMDB file read-only
//! creates its missing `-lock` file, as every LMDB reader does, so the lock file is
//! checked before the data file is opened). It looks at:
//! - the database file: owner, group and mode against the ownership policy
//!   (root:postfix 0640, the group from `--group` / `SASLDB_GROUP`; not running as
//!   root only modes wider than 0640 are reported), hard links, the writers' lock file
//!   `<db>.lock`, LMDB's `<db>-lock` (0660: readers open it read-write), temporary
//!   files an interrupted write left behind;
//! - its content: malformed keys (not `user NUL realm NUL property`, or an empty user:
//!   Cyrus skips them, its `sasldblistusers2` loops forever on some), users without any
//!   secret a password can be checked against (no `userPassword`, no SCRAM
//!   `authPassword`: only an OTP secret, or nothing usable);
//! - Postfix (main.cf and master.cf in the configuration directory, [`crate::postfix::chroot`]):
//!   whether the realm Postfix uses for logins without `@` has users, which file the
//!   SASL-enabled smtpd services open (`sasldb_path` of their `smtpd.conf`), and for
//!   chrooted ones the copy under `queue_directory`: missing, a symlink smtpd cannot
//!   follow, hard-linked, another format, stale (content differs), holding records
//!   the database lacks, owner, group and mode (never wider than 0640, never
//!   world-readable), and its LMDB `-lock` file.
//!
//! Each problem is a [`Finding`] with a stable code. [`fix`] repairs what is safe:
//! owner, group and mode (to the policy, never wider), a missing LMDB lock file,
//! leftover temporary files (removed under the writer lock), and the chroot copy
//! (refreshed by [`crate::postfix::chroot::sync`], which refuses to drop records only the copy
//! has). It never deletes user data, never renames realms, never touches malformed
//! keys.

mod codes;

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use codes::Code;
use codes::Subject;

use crate::database::{Database, OwnershipPolicy};
use crate::error::Error;
use crate::location::{Detected, Format, Location, detect};
use crate::postfix::chroot::{self, PostfixSetup, SyncOptions};
use crate::postfix::{self, RealmQuery, UsePostconf};
use crate::record::{AUTH_PASSWORD, KeyRef, OTP_SECRET, USER_PASSWORD};
use crate::storage;
use crate::storage::DEFAULT_LOCK_TIMEOUT;
use crate::storage::options::POSTFIX_GROUP as DEFAULT_GROUP;
use crate::storage::persist::{self, DB_MODE, Ownership, Target, WriteLock};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// For information; not a problem.
    Info,
    /// Something that is likely to cause trouble.
    Warning,
    /// Something that breaks logins or exposes secrets.
    Error,
}

impl Severity {
    /// `info`, `warning`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A repair [`fix`] can make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Give a file this owner, group and mode (by path; symlinks are not followed).
    Ownership {
        /// The file.
        path: PathBuf,
        /// What it should be.
        own: Ownership,
    },
    /// Create a database's companion lock file (LMDB's `-lock`), or give it its
    /// owner, group and mode.
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// Owner and group; the mode is the lock mode of `own.mode`.
        own: Ownership,
    },
    /// Remove the temporary files interrupted writes left next to the database.
    StaleTemps,
    /// Remove a writers' lock file that is not a regular file of its own (a symbolic
    /// link, a file with other hard links): under its lock when it is a file, so no
    /// writer holding it is cut short. The next write creates a new one.
    RemoveLock {
        /// The lock file.
        path: PathBuf,
    },
    /// Remove an SQLite journal that is not a regular file (SQLite never uses one).
    RemoveJournal {
        /// The journal.
        path: PathBuf,
    },
    /// Refresh the Postfix chroot copy with [`chroot::sync`].
    SyncChroot {
        /// The copy.
        copy: PathBuf,
        /// The queue directory (missing directories below it are created).
        queue_directory: PathBuf,
    },
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// A stable identifier (`db-mode`, `chroot-stale`, `realm-mismatch`...).
    pub code: Code,
    /// What is wrong, in one or two sentences.
    pub message: String,
    /// Whether [`fix`] repairs it.
    pub fixable: bool,
    /// The repair, when there is one.
    pub repair: Option<Repair>,
}

/// The result of [`check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The database checked (as given).
    pub database: PathBuf,
    /// Its format, when it could be read.
    pub format: Option<Format>,
    /// Users (distinct user@realm).
    pub users: u64,
    /// Records.
    pub records: u64,
    /// Everything found, in the order checked.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Findings that are problems (warnings and errors).
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
    }

    /// Whether nothing but information was found.
    pub fn is_clean(&self) -> bool {
        self.problems().next().is_none()
    }

    fn push(&mut self, severity: Severity, code: Code, message: String) {
        self.findings.push(Finding {
            severity,
            code,
            message,
            fixable: false,
            repair: None,
        });
    }

    fn push_fix(&mut self, severity: Severity, code: Code, message: String, repair: Repair) {
        self.findings.push(Finding {
            severity,
            code,
            message,
            fixable: true,
            repair: Some(repair),
        });
    }
}

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// The database.
    pub database: Location,
    /// The group the database should belong to when running as root (the tools:
    /// `--group`, else `SASLDB_GROUP`, else `postfix`).
    pub group: String,
    /// Postfix's configuration directory (see [`postfix::config_dir`]).
    pub postfix_config_dir: PathBuf,
    /// Overrides main.cf's `queue_directory`.
    pub queue_directory: Option<PathBuf>,
    /// The machine's hostname (for Postfix's `myhostname` default).
    pub hostname: String,
    /// Whether the realm resolver may run `postconf`.
    pub postconf: UsePostconf,
    /// Whether `--fix` may write, as root, where a directory on the way can be written
    /// by someone else (see [`crate::WriteOptions::allow_unsafe_dir`]).
    pub allow_unsafe_dir: bool,
}

impl CheckOptions {
    /// The options for this machine: `MAIL_CONFIG` or /etc/postfix, the hostname,
    /// `postconf` when installed.
    pub fn for_database(database: Location) -> crate::Result<CheckOptions> {
        Ok(CheckOptions {
            database,
            group: DEFAULT_GROUP.into(),
            postfix_config_dir: postfix::config_dir(),
            queue_directory: None,
            hostname: postfix::system_hostname().map_err(|e| Error::Invalid(e.to_string()))?,
            postconf: UsePostconf::Auto,
            allow_unsafe_dir: false,
        })
    }
}

/// How many names a finding lists before "...".
const EXAMPLES: usize = 3;

/// Checks the database and its Postfix setup; see the module docs.
pub fn check(opts: &CheckOptions) -> Report {
    let mut r = Report {
        database: opts.database.path().to_path_buf(),
        ..Report::default()
    };
    let root = nix::unistd::geteuid().is_root();
    let policy = if root {
        match Ownership::of_policy(&write_policy(opts)) {
            Ok(o) => o,
            Err(e) => {
                r.push(Severity::Error, Code::Group, e.to_string());
                None
            }
        }
    } else {
        r.push(
            Severity::Info,
            Code::NotRoot,
            "not running as root: owner and group are not checked, only modes".into(),
        );
        None
    };

    if !opts.database.is_file() {
        check_server_database(&mut r, opts);
        return r;
    }

    // The database file.
    let given = opts.database.path();
    let real = match fs::canonicalize(given) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.push(
                Severity::Error,
                Code::DbMissing,
                format!(
                    "{}: no such database (create one with sasldb init or saslpasswd2)",
                    given.display()
                ),
            );
            return r;
        }
        Err(e) => {
            r.push(
                Severity::Error,
                Code::DbUnreadable,
                Error::io(given, e).to_string(),
            );
            return r;
        }
    };
    let meta = match fs::metadata(&real) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            r.push(
                Severity::Error,
                Code::DbNotFile,
                format!("{}: not a regular file", real.display()),
            );
            return r;
        }
        Err(e) => {
            r.push(
                Severity::Error,
                Code::DbUnreadable,
                Error::io(&real, e).to_string(),
            );
            return r;
        }
    };
    if fs::symlink_metadata(given).is_ok_and(|m| m.file_type().is_symlink()) {
        r.push(
            Severity::Info,
            Code::DbSymlink,
            format!(
                "{} is a symbolic link to {}",
                given.display(),
                real.display()
            ),
        );
    }
    check_ownership(
        &mut r,
        Subject::Db,
        "the database",
        &real,
        &meta,
        policy.as_ref(),
        DB_MODE,
    );
    check_directories(&mut r, Code::DirUnsafe, "the database", given, root);
    let lock = lock_path(&real);
    match fs::symlink_metadata(&lock) {
        Ok(m) if m.is_file() && m.nlink() == 1 => check_ownership(
            &mut r,
            Subject::Lock,
            "the lock file",
            &lock,
            &m,
            policy.as_ref(),
            DB_MODE,
        ),
        Ok(m) => r.push_fix(
            Severity::Error,
            Code::LockNotFile,
            format!(
                "the lock file {} is {}: writers refuse it; --fix removes it (the next write \
                 creates a new one)",
                lock.display(),
                not_file_kind(&lock, &m)
            ),
            Repair::RemoveLock { path: lock },
        ),
        Err(_) => {}
    }
    if meta.nlink() == 1
        && let Ok(t) = Target::resolve(&real)
        && let Ok(temps) = t.stale_temps()
        && !temps.is_empty()
    {
        r.push_fix(
            Severity::Warning,
            Code::StaleTempFiles,
            format!(
                "{} temporary file(s) left by an interrupted write (they may hold secrets): {}",
                temps.len(),
                list(temps.iter().map(|p| p.display().to_string()), temps.len())
            ),
            Repair::StaleTemps,
        );
    }

    let format = match detect(&real) {
        Ok(Detected::Format(f)) => Some(f),
        _ => None,
    };
    if let Some(lock) = format.and_then(|f| storage::companion_lock(f, &real)) {
        check_lock_file(&mut r, Subject::LmdbLock, &lock, &meta, policy.as_ref());
    }
    if format.is_some_and(storage::has_journal) {
        check_journal(&mut r, &real);
    }

    // The content.
    let db = match Database::open(&opts.database) {
        Ok(db) => db,
        Err(e) => {
            r.push(Severity::Error, Code::DbUnreadable, e.to_string());
            return r;
        }
    };
    r.format = Some(db.format());
    let realms = match check_content(&mut r, &db) {
        Ok(realms) => realms,
        Err(e) => {
            r.push(Severity::Error, Code::DbUnreadable, e.to_string());
            return r;
        }
    };

    // Postfix.
    let setup = match PostfixSetup::discover(
        &opts.postfix_config_dir,
        &opts.hostname,
        opts.queue_directory.as_deref(),
    ) {
        Ok(Some(s)) => s,
        Ok(None) => {
            r.push(
                Severity::Info,
                Code::NoPostfix,
                format!(
                    "no {}: Postfix checks skipped (MAIL_CONFIG names another configuration \
                     directory)",
                    opts.postfix_config_dir.join("main.cf").display()
                ),
            );
            check_hard_links(&mut r, &real, &meta, None);
            return r;
        }
        Err(e) => {
            r.push(Severity::Warning, Code::PostfixConfig, e.to_string());
            check_hard_links(&mut r, &real, &meta, None);
            return r;
        }
    };
    for w in &setup.warnings {
        r.push(Severity::Warning, Code::PostfixConfig, w.clone());
    }
    check_realm(&mut r, opts, &realms);
    let copy = check_smtpd(&mut r, &setup, &db, &real, &meta, policy.as_ref());
    check_hard_links(&mut r, &real, &meta, copy.as_deref());
    r
}

/// A database on a server (PostgreSQL): its content and the realm; file ownership and
/// the chroot copy do not apply.
fn check_server_database(r: &mut Report, opts: &CheckOptions) {
    r.push(
        Severity::Info,
        Code::NotAFile,
        format!(
            "{} is not a file: ownership, lock files and the Postfix chroot copy do not apply \
             (smtpd reaches it through Cyrus's sql plugin)",
            opts.database
        ),
    );
    let db = match Database::open(&opts.database) {
        Ok(db) => db,
        Err(e) => {
            r.push(Severity::Error, Code::DbUnreadable, e.to_string());
            return;
        }
    };
    r.format = Some(db.format());
    match check_content(r, &db) {
        Ok(realms) => {
            if opts.postfix_config_dir.join("main.cf").exists() {
                check_realm(r, opts, &realms);
            }
        }
        Err(e) => r.push(Severity::Error, Code::DbUnreadable, e.to_string()),
    }
}

/// The writers' lock file of a real database path.
fn lock_path(real: &Path) -> PathBuf {
    let mut s = real.as_os_str().to_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

/// Users per realm.
type Realms = BTreeMap<Vec<u8>, u64>;

/// Malformed keys, users without a usable secret; returns the users per realm.
fn check_content(r: &mut Report, db: &Database) -> crate::Result<Realms> {
    let mut realms: Realms = BTreeMap::new();
    let mut malformed = Vec::new();
    let mut malformed_count = 0usize;
    let mut unusable = Vec::new();
    let mut unusable_count = 0usize;
    let mut users = db.users()?;
    for u in users.by_ref() {
        let u = u?;
        r.records += u.properties.len() as u64;
        if u.user.is_empty() {
            // No user: as malformed as a key without its NULs.
            for p in &u.properties {
                malformed_count += 1;
                if malformed.len() < EXAMPLES {
                    let mut key = Vec::new();
                    crate::record::encode_into(&mut key, &u.user, &u.realm, p);
                    malformed.push(crate::record::escape(&key));
                }
            }
            continue;
        }
        *realms.entry(u.realm.clone()).or_default() += 1;
        r.users += 1;
        let has = |p: &str| u.properties.iter().any(|x| x == p.as_bytes());
        let usable = has(USER_PASSWORD) || has(AUTH_PASSWORD) || has("cmusaslsecretPLAIN");
        if !usable {
            unusable_count += 1;
            if unusable.len() < EXAMPLES {
                let who = KeyRef {
                    user: &u.user,
                    realm: &u.realm,
                    property: b"x",
                }
                .user_at_realm();
                unusable.push(if has(OTP_SECRET) {
                    format!("{who} (only an OTP secret)")
                } else {
                    format!("{who} (nothing usable)")
                });
            }
        }
    }
    r.records += users.malformed() as u64;
    malformed_count += users.malformed();
    for k in users
        .malformed_keys()
        .iter()
        .take(EXAMPLES - malformed.len().min(EXAMPLES))
    {
        malformed.push(crate::record::escape(k));
    }
    if malformed_count > 0 {
        r.push(
            Severity::Warning,
            Code::MalformedKeys,
            format!(
                "{malformed_count} malformed key(s) (not user NUL realm NUL property, or no \
                 user): {}; Cyrus ignores them and its sasldblistusers2 can loop forever on \
                 them; sasldb convert --skip-malformed writes a database without them",
                list(malformed.into_iter(), malformed_count)
            ),
        );
    }
    if unusable_count > 0 {
        r.push(
            Severity::Warning,
            Code::NoUsableSecret,
            format!(
                "{unusable_count} user(s) without userPassword or authPassword, so no password \
                 login can succeed: {}",
                list(unusable.into_iter(), unusable_count)
            ),
        );
    }
    if r.users == 0 {
        r.push(
            Severity::Info,
            Code::Empty,
            format!("{}: no users", r.database.display()),
        );
    }
    Ok(realms)
}

/// Whether the realm Postfix uses for logins without `@` has users.
fn check_realm(r: &mut Report, opts: &CheckOptions, realms: &Realms) {
    if r.users == 0 {
        return;
    }
    let q = RealmQuery {
        config_dir: opts.postfix_config_dir.clone(),
        hostname: opts.hostname.clone(),
        postconf: opts.postconf.clone(),
    };
    match postfix::default_realm(&q) {
        Ok(dr) => {
            let n = realms.get(dr.realm.as_bytes()).copied().unwrap_or(0);
            if n == 0 {
                let have: Vec<String> = realms
                    .iter()
                    .map(|(k, v)| format!("{} ({v} user{})", lossy(k), plural(*v)))
                    .collect();
                r.push(
                    Severity::Warning,
                    Code::RealmMismatch,
                    format!(
                        "no user is in realm `{}`, where Postfix looks up logins without @ ({}); \
                         such logins fail with \"authentication failure\". The database's \
                         realms: {}. Log in as user@realm, or move the users with \
                         sasldb rename-realm",
                        dr.realm,
                        dr.explain(),
                        list(have.into_iter(), realms.len())
                    ),
                );
            } else {
                r.push(
                    Severity::Info,
                    Code::Realm,
                    format!(
                        "{n} user{} in realm `{}`, where Postfix looks up logins without @",
                        plural(n),
                        dr.realm
                    ),
                );
            }
        }
        Err(e) => r.push(
            Severity::Warning,
            Code::PostfixRealm,
            format!("cannot work out Postfix's realm: {e}"),
        ),
    }
}

/// Which file the SASL-enabled smtpd services open, and their chroot copy. Returns
/// the copy's path when there is one to check.
fn check_smtpd(
    r: &mut Report,
    setup: &PostfixSetup,
    db: &Database,
    real: &Path,
    meta: &Metadata,
    policy: Option<&Ownership>,
) -> Option<PathBuf> {
    let services: Vec<_> = setup.sasl_services().collect();
    if services.is_empty() {
        r.push(
            Severity::Info,
            Code::NoSaslSmtpd,
            format!(
                "no smtpd service in {} authenticates with Cyrus SASL \
                 (smtpd_sasl_auth_enable = yes, smtpd_sasl_type = cyrus)",
                setup
                    .master_cf
                    .as_deref()
                    .unwrap_or(&setup.config_dir.join("master.cf"))
                    .display()
            ),
        );
        return None;
    }
    let mut apps: Vec<&str> = services.iter().map(|s| s.sasl_app.as_str()).collect();
    apps.sort_unstable();
    apps.dedup();
    let mut copy_checked = None;
    for app in apps {
        let conf = match setup.sasl_conf(app) {
            Ok(c) => c,
            Err(e) => {
                r.push(Severity::Warning, Code::SaslConfig, e.to_string());
                continue;
            }
        };
        let smtpd = chroot::SmtpdDatabase::from_conf(conf.as_ref(), db.format());
        let conf_name = match &smtpd.conf {
            Some(p) => p.display().to_string(),
            None => format!(
                "no {app}.conf in {} (Cyrus's defaults apply)",
                chroot_display(&setup.sasl_conf_path)
            ),
        };
        if let Some(why) = &smtpd.unused_because {
            r.push(
                Severity::Info,
                Code::SmtpdNoSasldb,
                format!("smtpd does not read this database ({conf_name}: {why})"),
            );
            continue;
        }
        let names = |chrooted: bool| -> Vec<String> {
            services
                .iter()
                .filter(|s| s.sasl_app == app && s.chrooted == chrooted)
                .map(|s| format!("{} (line {})", s.service, s.line))
                .collect()
        };
        let (jailed, free) = (names(true), names(false));
        if !same_file(&smtpd.path, meta) {
            r.push(
                Severity::Warning,
                Code::SmtpdDatabase,
                format!(
                    "Postfix's smtpd opens {} ({conf_name}), not {}",
                    smtpd.path.display(),
                    real.display()
                ),
            );
        }
        let copy = setup.in_chroot(&smtpd.path);
        if jailed.is_empty() {
            if fs::symlink_metadata(&copy).is_ok() {
                r.push(
                    Severity::Info,
                    Code::ChrootUnused,
                    format!(
                        "{} exists, but no smtpd with SASL runs chrooted (services: {})",
                        copy.display(),
                        free.join(", ")
                    ),
                );
            }
            continue;
        }
        if copy_checked.is_none() {
            check_copy(r, setup, db, real, meta, policy, &smtpd.path, &jailed);
            copy_checked = Some(copy);
        }
    }
    copy_checked
}

/// The chroot copy of a chrooted smtpd.
#[allow(clippy::too_many_arguments)]
fn check_copy(
    r: &mut Report,
    setup: &PostfixSetup,
    db: &Database,
    real: &Path,
    meta: &Metadata,
    policy: Option<&Ownership>,
    inside: &Path,
    services: &[String],
) {
    let q = &setup.queue_directory;
    let copy = setup.in_chroot(inside);
    let sync = Repair::SyncChroot {
        copy: copy.clone(),
        queue_directory: q.clone(),
    };
    if !q.is_dir() {
        r.push(
            Severity::Error,
            Code::ChrootQueueDirectory,
            format!(
                "queue_directory {} does not exist, yet smtpd runs chrooted there ({})",
                q.display(),
                services.join(", ")
            ),
        );
        return;
    }
    check_directories(
        r,
        Code::ChrootDirUnsafe,
        "the chroot copy",
        &copy,
        nix::unistd::geteuid().is_root(),
    );
    let who = format!(
        "the chrooted smtpd ({}) opens {} inside {}",
        services.join(", "),
        inside.display(),
        q.display()
    );
    let lm = match fs::symlink_metadata(&copy) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.push_fix(
                Severity::Error,
                Code::ChrootMissing,
                format!(
                    "{who}, i.e. {}, which does not exist: every login fails with \
                     \"authentication failure\"",
                    copy.display()
                ),
                sync,
            );
            return;
        }
        Err(e) => {
            r.push(
                Severity::Error,
                Code::ChrootUnreadable,
                Error::io(&copy, e).to_string(),
            );
            return;
        }
    };
    // Where smtpd really ends up, following symlinks inside the chroot.
    let file = if lm.file_type().is_symlink() {
        match chroot::resolve_in_root(q, inside) {
            Ok(p) => {
                r.push(
                    Severity::Info,
                    Code::ChrootSymlink,
                    format!(
                        "{} is a symbolic link; inside the chroot it leads to {}",
                        copy.display(),
                        p.display()
                    ),
                );
                p
            }
            Err(why) => {
                r.push_fix(
                    Severity::Error,
                    Code::ChrootSymlink,
                    format!(
                        "{who}, i.e. {}, a symbolic link smtpd cannot follow inside the chroot \
                         ({why}); sync-chroot replaces it with a copy",
                        copy.display()
                    ),
                    sync,
                );
                return;
            }
        }
    } else {
        copy.clone()
    };
    let m = match fs::metadata(&file) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            r.push(
                Severity::Error,
                Code::ChrootNotFile,
                format!("{}: not a regular file", file.display()),
            );
            return;
        }
        Err(e) => {
            r.push(
                Severity::Error,
                Code::ChrootUnreadable,
                Error::io(&file, e).to_string(),
            );
            return;
        }
    };
    if m.dev() == meta.dev() && m.ino() == meta.ino() {
        if m.nlink() == 1 {
            r.push(
                Severity::Info,
                Code::ChrootIsDatabase,
                format!(
                    "{} is the database itself (it lives inside the chroot)",
                    file.display()
                ),
            );
        } else {
            let lmdb_note = if storage::companion_lock(db.format(), real).is_some() {
                "; with LMDB, readers inside the chroot also use another lock file than \
                 writers outside, so a writer can reuse pages they are reading"
            } else {
                ""
            };
            r.push_fix(
                Severity::Warning,
                Code::ChrootHardLinked,
                format!(
                    "{} is a hard link to {}: sasldb and this package's saslpasswd2 refuse to \
                     write a hard-linked database (an atomic replace would split the link \
                     and leave the copy stale){lmdb_note}",
                    file.display(),
                    real.display()
                ),
                sync,
            );
        }
        return;
    }
    if m.nlink() > 1 {
        r.push_fix(
            Severity::Warning,
            Code::ChrootHardLinked,
            format!(
                "{} has {} hard links; sync-chroot replaces it with a copy of its own",
                file.display(),
                m.nlink()
            ),
            sync.clone(),
        );
    }
    check_ownership(
        r,
        Subject::Chroot,
        "the chroot copy",
        &file,
        &m,
        policy,
        DB_MODE,
    );
    let copy_format = match detect(&file) {
        Ok(Detected::Format(f)) => Some(f),
        _ => None,
    };
    if copy_format == Some(db.format())
        && let Some(lock) = storage::companion_lock(db.format(), &file)
    {
        check_lock_file(r, Subject::ChrootLock, &lock, &m, policy);
    }
    match copy_format {
        Some(f) if f == db.format() => {}
        other => {
            r.push_fix(
                Severity::Error,
                Code::ChrootFormat,
                format!(
                    "{} is {}, but the database is {}: smtpd's libsasl cannot read it",
                    file.display(),
                    other.map_or("not a sasldb database".into(), |f| format!(
                        "a {f} database"
                    )),
                    db.format()
                ),
                sync,
            );
            return;
        }
    }
    let copy_db = match Database::open(&Location::path_only(&file)) {
        Ok(c) => c,
        Err(e) => {
            r.push(
                Severity::Error,
                Code::ChrootUnreadable,
                format!("{e}; sasldb sync-chroot --force replaces it"),
            );
            return;
        }
    };
    let cmp = match chroot::compare(db, &copy_db) {
        Ok(c) => c,
        Err(e) => {
            r.push(Severity::Error, Code::ChrootUnreadable, e.to_string());
            return;
        }
    };
    drop(copy_db);
    if cmp.identical() {
        r.push(
            Severity::Info,
            Code::ChrootCopy,
            format!("{} is up to date", file.display()),
        );
        return;
    }
    let age = match (m.modified(), meta.modified()) {
        (Ok(c), Ok(d)) if c < d => "; it is older than the database",
        _ => "",
    };
    let what = format!(
        "{} differs from the database: {} record(s) with another value, {} missing{}{age}",
        file.display(),
        cmp.differing,
        cmp.missing,
        if cmp.extra > 0 {
            format!(", {} the database lacks", cmp.extra)
        } else {
            String::new()
        }
    );
    if cmp.extra > 0 {
        r.push(
            Severity::Error,
            Code::ChrootExtra,
            format!(
                "{what} (first: {}). Were users added to the copy directly? Add them to the \
                 database, then run sasldb sync-chroot (--force drops them)",
                cmp.extra_examples.join(", ")
            ),
        );
    } else {
        r.push_fix(
            Severity::Error,
            Code::ChrootStale,
            format!("{what}: smtpd authenticates against old data"),
            sync,
        );
    }
}

/// A database hard-linked elsewhere than to its chroot copy.
fn check_hard_links(r: &mut Report, real: &Path, meta: &Metadata, copy: Option<&Path>) {
    if meta.nlink() <= 1 {
        return;
    }
    let copy_is_link = copy
        .and_then(|c| fs::symlink_metadata(c).ok())
        .is_some_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
    if copy_is_link && meta.nlink() == 2 {
        return; // reported as chroot-hard-linked
    }
    r.push(
        Severity::Warning,
        Code::DbHardLinked,
        format!(
            "{} has {} hard links: writers refuse to replace it (keep one name; for the \
             Postfix chroot use sasldb sync-chroot)",
            real.display(),
            meta.nlink()
        ),
    );
}

/// Owner, group and mode of a file against the policy (`want_mode`).
fn check_ownership(
    r: &mut Report,
    subject: Subject,
    what: &str,
    path: &Path,
    m: &Metadata,
    policy: Option<&Ownership>,
    want_mode: u32,
) {
    let mode = m.mode() & 0o7777;
    let (code_owner, code_group, code_mode) = subject.codes();
    match policy {
        Some(p) => {
            let own = Ownership {
                mode: want_mode,
                ..p.clone()
            };
            let repair = Repair::Ownership {
                path: path.to_path_buf(),
                own: own.clone(),
            };
            if m.uid() != p.uid {
                r.push_fix(
                    Severity::Warning,
                    code_owner,
                    format!(
                        "{what} {} is owned by {}, not root",
                        path.display(),
                        persist::user_name(m.uid())
                    ),
                    repair.clone(),
                );
            }
            if m.gid() != p.gid {
                r.push_fix(
                    Severity::Warning,
                    code_group,
                    format!(
                        "{what} {} has group {}, not {} (the group Postfix reads it with; \
                         --group or SASLDB_GROUP chooses another)",
                        path.display(),
                        persist::group_name(m.gid()),
                        persist::group_name(p.gid)
                    ),
                    repair.clone(),
                );
            }
            if mode != want_mode {
                let (sev, why) = mode_problem(mode, want_mode);
                r.push_fix(
                    sev,
                    code_mode,
                    format!("{what} {} has mode {mode:04o}{why}", path.display()),
                    repair,
                );
            }
        }
        None => {
            if mode & !want_mode != 0 {
                let (sev, why) = mode_problem(mode, want_mode);
                let ours = m.uid() == nix::unistd::geteuid().as_raw();
                let msg = format!("{what} {} has mode {mode:04o}{why}", path.display());
                if ours {
                    r.push_fix(
                        sev,
                        code_mode,
                        msg,
                        Repair::Ownership {
                            path: path.to_path_buf(),
                            own: Ownership {
                                uid: m.uid(),
                                gid: m.gid(),
                                mode: mode & want_mode,
                                enforced: false,
                                note: None,
                                warning: None,
                            },
                        },
                    );
                } else {
                    r.push(sev, code_mode, msg);
                }
            }
        }
    }
}

/// How bad a mode is compared with the wanted one, and a few words why.
fn mode_problem(mode: u32, want: u32) -> (Severity, String) {
    if mode & 0o006 != 0 {
        let what = match (mode & 0o004 != 0, mode & 0o002 != 0) {
            (true, true) => "readable and writable by everyone",
            (true, false) => "world-readable",
            _ => "world-writable",
        };
        (
            Severity::Error,
            format!(": {what} (the policy is {want:04o})"),
        )
    } else if mode & !want != 0 {
        (
            Severity::Warning,
            format!(", wider than the policy's {want:04o}"),
        )
    } else {
        (
            Severity::Warning,
            format!(", narrower than the policy's {want:04o}: the group cannot use it"),
        )
    }
}

/// A data file's companion lock file (LMDB's `-lock`).
fn check_lock_file(
    r: &mut Report,
    subject: Subject,
    lock: &Path,
    data_meta: &Metadata,
    policy: Option<&Ownership>,
) {
    let lock = lock.to_path_buf();
    let own = match policy {
        Some(p) => p.clone(),
        None => Ownership {
            uid: data_meta.uid(),
            gid: data_meta.gid(),
            mode: data_meta.mode() & DB_MODE,
            enforced: false,
            note: None,
            warning: None,
        },
    };
    match fs::symlink_metadata(&lock) {
        Ok(m) if m.is_file() && m.nlink() == 1 => {
            let want = storage::companion_lock_mode(own.mode);
            check_ownership(r, subject, "the LMDB lock file", &lock, &m, policy, want);
        }
        Ok(m) => r.push_fix(
            Severity::Error,
            subject.not_file(),
            format!(
                "the LMDB lock file {} is {}: LMDB readers and writers refuse it (LMDB writes \
                 its reader table into the lock file); --fix replaces it with a new lock file",
                lock.display(),
                not_file_kind(&lock, &m)
            ),
            Repair::LockFile { path: lock, own },
        ),
        Err(_) => r.push_fix(
            Severity::Error,
            subject.missing(),
            format!(
                "{} does not exist: LMDB readers need it read-write, and smtpd (running as \
                 postfix) cannot create it in a root-owned directory",
                lock.display()
            ),
            Repair::LockFile { path: lock, own },
        ),
    }
}

/// What a lock file (or journal) that is not a regular file of its own is, in words.
fn not_file_kind(path: &Path, m: &Metadata) -> String {
    if m.file_type().is_symlink() {
        match fs::read_link(path) {
            Ok(to) => format!("a symbolic link (to {})", to.display()),
            Err(_) => "a symbolic link".into(),
        }
    } else if m.is_file() {
        format!(
            "a file with {} hard links (changing it would change its other names too)",
            m.nlink()
        )
    } else if m.is_dir() {
        "a directory".into()
    } else {
        "not a regular file".into()
    }
}

/// A directory on the way to `path` (its final symlink followed) that someone else can
/// write, with advice that works.
fn check_directories(r: &mut Report, code: Code, what: &str, path: &Path, root: bool) {
    let Ok(t) = Target::entry(path, true) else {
        return;
    };
    let Some(u) = &t.unsafe_dir else {
        return;
    };
    let dir = u.dir.display();
    let advice = if u.why.ends_with("(sticky)") {
        format!(
            "move {what} to a directory only root can write (in a sticky directory anyone \
             can create the names a write uses next to it)"
        )
    } else if u.why.starts_with("owned by") {
        format!(
            "give {dir} to root and take write access from the others (chown root:root {dir} \
             && chmod go-w {dir}), or move {what} to a directory only root can write"
        )
    } else if u.why.starts_with("writable by group") {
        format!("take the group's write access (chmod g-w {dir}), or move {what}")
    } else {
        format!("take everyone's write access (chmod o-w {dir}), or move {what}")
    };
    let (sev, refuse) = if root {
        (
            Severity::Error,
            "root's writes refuse it (SASLDB_ALLOW_UNSAFE_DIR=1 overrides)",
        )
    } else {
        (
            Severity::Warning,
            "a root write would refuse it (SASLDB_ALLOW_UNSAFE_DIR=1 overrides)",
        )
    };
    r.push(
        sev,
        code,
        format!(
            "{u}: another user could swap a name on the way to {} for a link to any file \
             while root writes it, so {refuse}; {advice}",
            t.path.display()
        ),
    );
}

/// SQLite's journal, when it is not a regular file.
fn check_journal(r: &mut Report, real: &Path) {
    let mut j = real.as_os_str().to_os_string();
    j.push("-journal");
    let j = PathBuf::from(j);
    if let Ok(m) = fs::symlink_metadata(&j)
        && !m.is_file()
    {
        r.push_fix(
            Severity::Error,
            Code::SqliteJournal,
            format!(
                "{} is {}: SQLite never follows or uses it, and every read and write of the \
                 database fails while it is there; --fix removes it (a real journal is a \
                 regular file)",
                j.display(),
                not_file_kind(&j, &m)
            ),
            Repair::RemoveJournal { path: j },
        );
    }
}

/// Whether `path` (followed) is the file `meta` describes.
fn same_file(path: &Path, meta: &Metadata) -> bool {
    fs::metadata(path).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}

fn list(items: impl Iterator<Item = String>, total: usize) -> String {
    let shown: Vec<String> = items.take(EXAMPLES).collect();
    let more = total.saturating_sub(shown.len());
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn chroot_display(p: &std::ffi::OsStr) -> String {
    p.to_string_lossy().into_owned()
}

/// What [`fix`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixOutcome {
    /// Repairs made, one line each.
    pub done: Vec<String>,
    /// Repairs that failed, with the reason.
    pub failed: Vec<String>,
}

/// Makes every repair of `report`'s fixable findings: the chroot copy first (a sync
/// also sets its owner and mode), then owner, group and mode, LMDB lock files, and
/// leftover temporary files. Run [`check`] again afterwards for what remains.
pub fn fix(report: &Report, opts: &CheckOptions) -> FixOutcome {
    let mut out = FixOutcome::default();
    let mut repairs: Vec<&Repair> = Vec::new();
    for f in &report.findings {
        if let Some(rep) = &f.repair
            && !repairs.contains(&rep)
        {
            repairs.push(rep);
        }
    }
    let rank = |r: &Repair| match r {
        // A sync takes the writer lock and reads the database: these first.
        Repair::RemoveLock { .. } | Repair::RemoveJournal { .. } => 0,
        Repair::SyncChroot { .. } => 1,
        Repair::Ownership { .. } => 2,
        Repair::LockFile { .. } => 3,
        Repair::StaleTemps => 4,
    };
    repairs.sort_by_key(|r| rank(r));
    for rep in repairs {
        match rep {
            Repair::SyncChroot {
                copy,
                queue_directory,
            } => {
                let so = SyncOptions {
                    ownership: write_policy(opts),
                    force: false,
                    create_dirs_below: Some(queue_directory.clone()),
                    lock_timeout: None,
                    allow_unsafe_dir: opts.allow_unsafe_dir,
                };
                match chroot::sync(&opts.database, copy, &so) {
                    Ok(s) => out.done.push(format!(
                        "refreshed {} ({} records{})",
                        s.path.display(),
                        s.records,
                        match &s.action {
                            chroot::SyncAction::Replaced(why) => format!(", replaced {why}"),
                            chroot::SyncAction::Created => ", created".into(),
                            _ => String::new(),
                        }
                    )),
                    Err(e) => out.failed.push(format!("sync {}: {e}", copy.display())),
                }
            }
            Repair::Ownership { path, own } => {
                // The sync may have replaced the file meanwhile: only touch it if it
                // still differs.
                match safe_entry(path, false, opts).and_then(|_| chroot::apply_ownership(path, own))
                {
                    Ok(()) => out.done.push(format!(
                        "{}: {}mode {:04o}",
                        path.display(),
                        if own.enforced {
                            format!(
                                "owner {}:{}, ",
                                persist::user_name(own.uid),
                                persist::group_name(own.gid)
                            )
                        } else {
                            String::new()
                        },
                        own.mode
                    )),
                    Err(e) => out.failed.push(e.to_string()),
                }
            }
            Repair::LockFile { path, own } => match safe_entry(path, false, opts)
                .and_then(|_| storage::prepare_companion_lock(path, own))
            {
                Ok(()) => out.done.push(format!(
                    "{}: lock file ready (mode {:04o})",
                    path.display(),
                    storage::companion_lock_mode(own.mode)
                )),
                Err(e) => out.failed.push(e.to_string()),
            },
            Repair::StaleTemps => match remove_temps(&opts.database, opts) {
                Ok(n) => out.done.push(format!("removed {n} temporary file(s)")),
                Err(e) => out.failed.push(e.to_string()),
            },
            Repair::RemoveLock { path } => match remove_lock(path, opts) {
                Ok(()) => out.done.push(format!(
                    "{}: removed (the next write creates a new lock file)",
                    path.display()
                )),
                Err(e) => out.failed.push(e.to_string()),
            },
            Repair::RemoveJournal { path } => match remove_journal(path, opts) {
                Ok(()) => out.done.push(format!("{}: removed", path.display())),
                Err(e) => out.failed.push(e.to_string()),
            },
        }
    }
    out
}

/// The entry `path` names, refused as root in a directory someone else can write
/// unless allowed (as for writes).
fn safe_entry(path: &Path, follow: bool, opts: &CheckOptions) -> crate::Result<Target> {
    let t = Target::entry(path, follow)?;
    t.check_safe(opts.allow_unsafe_dir)?;
    Ok(t)
}

/// Removes a writers' lock file that is not a regular file of its own: a symlink (or
/// other non-file) by its name; a hard-linked file under its own lock (waiting for a
/// writer that holds it), then by its name. Nothing it points to, nor its other names,
/// is touched.
fn remove_lock(path: &Path, opts: &CheckOptions) -> crate::Result<()> {
    use nix::fcntl::{Flock, FlockArg, OFlag};
    let t = safe_entry(path, false, opts)?;
    let Some(m) = &t.existing else {
        return Ok(());
    };
    if !m.is_file() {
        return t.handle.unlink(&t.name).map_err(|e| Error::io(path, e));
    }
    let f = t
        .handle
        .open_at(&t.name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .map_err(|e| Error::io(path, e))?;
    let start = std::time::Instant::now();
    let mut f = f;
    let _held = loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => break l,
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                if start.elapsed() >= DEFAULT_LOCK_TIMEOUT {
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                        waited_secs: DEFAULT_LOCK_TIMEOUT.as_secs(),
                    });
                }
                f = back;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, e)) => return Err(Error::io(path, e.into())),
        }
    };
    match t.handle.lstat(&t.name) {
        Ok(Some(now)) if now.ino() == m.ino() && now.dev() == m.dev() => {
            t.handle.unlink(&t.name).map_err(|e| Error::io(path, e))
        }
        // Replaced meanwhile: whatever is there now is checked again next time.
        _ => Ok(()),
    }
}

/// Removes an SQLite journal that is not a regular file (a real one is left alone).
fn remove_journal(path: &Path, opts: &CheckOptions) -> crate::Result<()> {
    let t = safe_entry(path, false, opts)?;
    match &t.existing {
        Some(m) if !m.is_file() => t.handle.unlink(&t.name).map_err(|e| Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Removes leftover temporary files under the writer lock (so a running write's file
/// is never taken).
fn remove_temps(db: &Location, opts: &CheckOptions) -> crate::Result<usize> {
    let t = Target::resolve(db.path())?;
    t.check_safe(opts.allow_unsafe_dir)?;
    let own = Ownership::plan(&t, &write_policy(opts))?;
    let _lock = WriteLock::acquire(&t, &own, DEFAULT_LOCK_TIMEOUT)?;
    t.remove_stale_temps()
}

/// The ownership repairs and refreshed copies get: `root:<group>` 0640 as root, else
/// what is there is kept.
fn write_policy(opts: &CheckOptions) -> OwnershipPolicy {
    OwnershipPolicy::RootGroup(opts.group.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_problems() {
        assert_eq!(mode_problem(0o644, 0o640).0, Severity::Error);
        assert!(mode_problem(0o644, 0o640).1.contains("world-readable"));
        assert!(mode_problem(0o662, 0o660).1.contains("world-writable"));
        assert_eq!(mode_problem(0o660, 0o640).0, Severity::Warning);
        assert!(mode_problem(0o600, 0o640).1.contains("narrower"));
    }

    #[test]
    fn lists_are_shortened() {
        let v = ["a", "b", "c", "d"].map(String::from);
        assert_eq!(list(v.clone().into_iter(), 4), "a, b, c, and 1 more");
        assert_eq!(list(v.into_iter().take(2), 2), "a, b");
    }
}
