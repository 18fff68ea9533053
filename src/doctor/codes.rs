//! The stable codes of `sasldb check`'s findings and what each means: one table,
//! from which the findings, `--json` and the man page take them.

use std::fmt;

/// What a finding is about. Its [`Code::id`] is stable: scripts match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// `group`: The group the ownership policy names (--group, SASLDB_GROUP, postfix) does not exist.
    Group,
    /// `not-root`: Not running as root: owners and groups are not checked, only modes.
    NotRoot,
    /// `db-missing`: The database does not exist.
    DbMissing,
    /// `db-unreadable`: The database (or its directory) cannot be read, or its content is damaged.
    DbUnreadable,
    /// `db-not-file`: The database path is not a regular file.
    DbNotFile,
    /// `db-symlink`: The database path is a symbolic link; the real file is checked and written.
    DbSymlink,
    /// `db-hard-linked`: The database has several hard links, which an atomic write would split.
    DbHardLinked,
    /// `db-owner`: The database is not owned by root.
    DbOwner,
    /// `db-group`: The database's group is not the policy's group.
    DbGroup,
    /// `db-mode`: The database's mode is not 0640 (readable or writable by others is an error).
    DbMode,
    /// `dir-unsafe`: A directory on the database's path can be written by someone other than root (another owner, a group other than root's, everyone): root's writes refuse it.
    DirUnsafe,
    /// `lock-not-file`: The writer lock file is a symbolic link, has other hard links, or is not a regular file: writers refuse it.
    LockNotFile,
    /// `lock-owner`: The writer lock file is not owned by root.
    LockOwner,
    /// `lock-group`: The writer lock file's group is not the policy's group.
    LockGroup,
    /// `lock-mode`: The writer lock file's mode is not 0640.
    LockMode,
    /// `lmdb-lock-missing`: LMDB's -lock file is missing: readers such as smtpd need it read-write and cannot create it.
    LmdbLockMissing,
    /// `lmdb-lock-not-file`: LMDB's -lock file is a symbolic link, has other hard links, or is not a regular file: readers and writers refuse it.
    LmdbLockNotFile,
    /// `lmdb-lock-owner`: LMDB's -lock file is not owned by root.
    LmdbLockOwner,
    /// `lmdb-lock-group`: LMDB's -lock file's group is not the policy's group.
    LmdbLockGroup,
    /// `lmdb-lock-mode`: LMDB's -lock file's mode is not 0660 (readers open it read-write).
    LmdbLockMode,
    /// `stale-temp-files`: Temporary files an interrupted write left next to the database.
    StaleTempFiles,
    /// `sqlite-journal`: SQLite's -journal file is not a regular file (a symbolic link...): SQLite never uses it, and every read and write fails while it is there.
    SqliteJournal,
    /// `malformed-keys`: Keys that are not user NUL realm NUL property (or have no user).
    MalformedKeys,
    /// `no-usable-secret`: Users without userPassword or authPassword: no password login can succeed.
    NoUsableSecret,
    /// `empty`: The database holds no users.
    Empty,
    /// `no-postfix`: No Postfix configuration: the Postfix checks are skipped.
    NoPostfix,
    /// `postfix-config`: main.cf or master.cf cannot be read, or Postfix would refuse it.
    PostfixConfig,
    /// `realm`: How many users are in the realm Postfix looks up for logins without @.
    Realm,
    /// `realm-mismatch`: No user is in the realm Postfix looks up for logins without @: such logins fail.
    RealmMismatch,
    /// `postfix-realm`: The realm Postfix uses cannot be determined.
    PostfixRealm,
    /// `no-sasl-smtpd`: No smtpd in master.cf enables SASL authentication.
    NoSaslSmtpd,
    /// `sasl-config`: smtpd's SASL configuration file cannot be read.
    SaslConfig,
    /// `smtpd-no-sasldb`: smtpd's SASL configuration does not look users up in a sasldb (saslauthd, another plugin...).
    SmtpdNoSasldb,
    /// `smtpd-database`: smtpd opens another database than the one checked.
    SmtpdDatabase,
    /// `not-a-file`: The database is on a server (PostgreSQL): file ownership and the chroot copy do not apply.
    NotAFile,
    /// `chroot-unused`: smtpd is not chrooted: no copy of the database is needed.
    ChrootUnused,
    /// `chroot-queue-directory`: Postfix's queue directory (the chroot) cannot be determined or does not exist.
    ChrootQueueDirectory,
    /// `chroot-dir-unsafe`: A directory on the chroot copy's path can be written by someone other than root: root's writes refuse it.
    ChrootDirUnsafe,
    /// `chroot-missing`: The copy a chrooted smtpd reads is missing.
    ChrootMissing,
    /// `chroot-unreadable`: The chroot copy cannot be read, or its content is damaged.
    ChrootUnreadable,
    /// `chroot-symlink`: The chroot copy is a symbolic link (a link smtpd cannot follow inside the chroot is an error).
    ChrootSymlink,
    /// `chroot-not-file`: The chroot copy is not a regular file.
    ChrootNotFile,
    /// `chroot-is-database`: The chroot copy is the database itself (the database lives inside the chroot).
    ChrootIsDatabase,
    /// `chroot-hard-linked`: The chroot copy is a hard link (to the database, or with other names).
    ChrootHardLinked,
    /// `chroot-format`: The chroot copy is in another format than the database.
    ChrootFormat,
    /// `chroot-copy`: The chroot copy is up to date.
    ChrootCopy,
    /// `chroot-extra`: The chroot copy holds records the database lacks (a sync would drop them).
    ChrootExtra,
    /// `chroot-stale`: The chroot copy differs from the database.
    ChrootStale,
    /// `chroot-owner`: The chroot copy is not owned by root.
    ChrootOwner,
    /// `chroot-group`: The chroot copy's group is not the policy's group.
    ChrootGroup,
    /// `chroot-mode`: The chroot copy's mode is not 0640.
    ChrootMode,
    /// `chroot-lock-missing`: The chroot copy's LMDB -lock file is missing.
    ChrootLockMissing,
    /// `chroot-lock-not-file`: The chroot copy's LMDB -lock file is a symbolic link, has other hard links, or is not a regular file.
    ChrootLockNotFile,
    /// `chroot-lock-owner`: The chroot copy's LMDB -lock file is not owned by root.
    ChrootLockOwner,
    /// `chroot-lock-group`: The chroot copy's LMDB -lock file's group is not the policy's group.
    ChrootLockGroup,
    /// `chroot-lock-mode`: The chroot copy's LMDB -lock file's mode is not 0660.
    ChrootLockMode,
}

/// Every code with its id and meaning, in the order the man page lists them.
const TABLE: [(Code, &str, &str); 56] = [
    (
        Code::Group,
        "group",
        "The group the ownership policy names (--group, SASLDB_GROUP, postfix) does not exist.",
    ),
    (
        Code::NotRoot,
        "not-root",
        "Not running as root: owners and groups are not checked, only modes.",
    ),
    (
        Code::DbMissing,
        "db-missing",
        "The database does not exist.",
    ),
    (
        Code::DbUnreadable,
        "db-unreadable",
        "The database (or its directory) cannot be read, or its content is damaged.",
    ),
    (
        Code::DbNotFile,
        "db-not-file",
        "The database path is not a regular file.",
    ),
    (
        Code::DbSymlink,
        "db-symlink",
        "The database path is a symbolic link; the real file is checked and written.",
    ),
    (
        Code::DbHardLinked,
        "db-hard-linked",
        "The database has several hard links, which an atomic write would split.",
    ),
    (
        Code::DbOwner,
        "db-owner",
        "The database is not owned by root.",
    ),
    (
        Code::DbGroup,
        "db-group",
        "The database's group is not the policy's group.",
    ),
    (
        Code::DbMode,
        "db-mode",
        "The database's mode is not 0640 (readable or writable by others is an error).",
    ),
    (
        Code::DirUnsafe,
        "dir-unsafe",
        "A directory on the database's path can be written by someone other than root (another owner, a group other than root's, everyone): root's writes refuse it.",
    ),
    (
        Code::LockNotFile,
        "lock-not-file",
        "The writer lock file is a symbolic link, has other hard links, or is not a regular file: writers refuse it.",
    ),
    (
        Code::LockOwner,
        "lock-owner",
        "The writer lock file is not owned by root.",
    ),
    (
        Code::LockGroup,
        "lock-group",
        "The writer lock file's group is not the policy's group.",
    ),
    (
        Code::LockMode,
        "lock-mode",
        "The writer lock file's mode is not 0640.",
    ),
    (
        Code::LmdbLockMissing,
        "lmdb-lock-missing",
        "LMDB's -lock file is missing: readers such as smtpd need it read-write and cannot create it.",
    ),
    (
        Code::LmdbLockNotFile,
        "lmdb-lock-not-file",
        "LMDB's -lock file is a symbolic link, has other hard links, or is not a regular file: readers and writers refuse it.",
    ),
    (
        Code::LmdbLockOwner,
        "lmdb-lock-owner",
        "LMDB's -lock file is not owned by root.",
    ),
    (
        Code::LmdbLockGroup,
        "lmdb-lock-group",
        "LMDB's -lock file's group is not the policy's group.",
    ),
    (
        Code::LmdbLockMode,
        "lmdb-lock-mode",
        "LMDB's -lock file's mode is not 0660 (readers open it read-write).",
    ),
    (
        Code::StaleTempFiles,
        "stale-temp-files",
        "Temporary files an interrupted write left next to the database.",
    ),
    (
        Code::SqliteJournal,
        "sqlite-journal",
        "SQLite's -journal file is not a regular file (a symbolic link...): SQLite never uses it, and every read and write fails while it is there.",
    ),
    (
        Code::MalformedKeys,
        "malformed-keys",
        "Keys that are not user NUL realm NUL property (or have no user).",
    ),
    (
        Code::NoUsableSecret,
        "no-usable-secret",
        "Users without userPassword or authPassword: no password login can succeed.",
    ),
    (Code::Empty, "empty", "The database holds no users."),
    (
        Code::NoPostfix,
        "no-postfix",
        "No Postfix configuration: the Postfix checks are skipped.",
    ),
    (
        Code::PostfixConfig,
        "postfix-config",
        "main.cf or master.cf cannot be read, or Postfix would refuse it.",
    ),
    (
        Code::Realm,
        "realm",
        "How many users are in the realm Postfix looks up for logins without @.",
    ),
    (
        Code::RealmMismatch,
        "realm-mismatch",
        "No user is in the realm Postfix looks up for logins without @: such logins fail.",
    ),
    (
        Code::PostfixRealm,
        "postfix-realm",
        "The realm Postfix uses cannot be determined.",
    ),
    (
        Code::NoSaslSmtpd,
        "no-sasl-smtpd",
        "No smtpd in master.cf enables SASL authentication.",
    ),
    (
        Code::SaslConfig,
        "sasl-config",
        "smtpd's SASL configuration file cannot be read.",
    ),
    (
        Code::SmtpdNoSasldb,
        "smtpd-no-sasldb",
        "smtpd's SASL configuration does not look users up in a sasldb (saslauthd, another plugin...).",
    ),
    (
        Code::SmtpdDatabase,
        "smtpd-database",
        "smtpd opens another database than the one checked.",
    ),
    (
        Code::NotAFile,
        "not-a-file",
        "The database is on a server (PostgreSQL): file ownership and the chroot copy do not apply.",
    ),
    (
        Code::ChrootUnused,
        "chroot-unused",
        "smtpd is not chrooted: no copy of the database is needed.",
    ),
    (
        Code::ChrootQueueDirectory,
        "chroot-queue-directory",
        "Postfix's queue directory (the chroot) cannot be determined or does not exist.",
    ),
    (
        Code::ChrootDirUnsafe,
        "chroot-dir-unsafe",
        "A directory on the chroot copy's path can be written by someone other than root: root's writes refuse it.",
    ),
    (
        Code::ChrootMissing,
        "chroot-missing",
        "The copy a chrooted smtpd reads is missing.",
    ),
    (
        Code::ChrootUnreadable,
        "chroot-unreadable",
        "The chroot copy cannot be read, or its content is damaged.",
    ),
    (
        Code::ChrootSymlink,
        "chroot-symlink",
        "The chroot copy is a symbolic link (a link smtpd cannot follow inside the chroot is an error).",
    ),
    (
        Code::ChrootNotFile,
        "chroot-not-file",
        "The chroot copy is not a regular file.",
    ),
    (
        Code::ChrootIsDatabase,
        "chroot-is-database",
        "The chroot copy is the database itself (the database lives inside the chroot).",
    ),
    (
        Code::ChrootHardLinked,
        "chroot-hard-linked",
        "The chroot copy is a hard link (to the database, or with other names).",
    ),
    (
        Code::ChrootFormat,
        "chroot-format",
        "The chroot copy is in another format than the database.",
    ),
    (
        Code::ChrootCopy,
        "chroot-copy",
        "The chroot copy is up to date.",
    ),
    (
        Code::ChrootExtra,
        "chroot-extra",
        "The chroot copy holds records the database lacks (a sync would drop them).",
    ),
    (
        Code::ChrootStale,
        "chroot-stale",
        "The chroot copy differs from the database.",
    ),
    (
        Code::ChrootOwner,
        "chroot-owner",
        "The chroot copy is not owned by root.",
    ),
    (
        Code::ChrootGroup,
        "chroot-group",
        "The chroot copy's group is not the policy's group.",
    ),
    (
        Code::ChrootMode,
        "chroot-mode",
        "The chroot copy's mode is not 0640.",
    ),
    (
        Code::ChrootLockMissing,
        "chroot-lock-missing",
        "The chroot copy's LMDB -lock file is missing.",
    ),
    (
        Code::ChrootLockNotFile,
        "chroot-lock-not-file",
        "The chroot copy's LMDB -lock file is a symbolic link, has other hard links, or is not a regular file.",
    ),
    (
        Code::ChrootLockOwner,
        "chroot-lock-owner",
        "The chroot copy's LMDB -lock file is not owned by root.",
    ),
    (
        Code::ChrootLockGroup,
        "chroot-lock-group",
        "The chroot copy's LMDB -lock file's group is not the policy's group.",
    ),
    (
        Code::ChrootLockMode,
        "chroot-lock-mode",
        "The chroot copy's LMDB -lock file's mode is not 0660.",
    ),
];

impl Code {
    /// Every code, in the man page's order.
    pub fn all() -> impl Iterator<Item = Code> {
        TABLE.iter().map(|&(c, _, _)| c)
    }

    fn row(self) -> &'static (Code, &'static str, &'static str) {
        TABLE
            .iter()
            .find(|(c, _, _)| *c == self)
            .expect("every code has a row")
    }

    /// The stable identifier (`db-mode`, `chroot-stale`, `realm-mismatch`...).
    pub fn id(self) -> &'static str {
        self.row().1
    }

    /// What the finding means, in one sentence.
    pub fn meaning(self) -> &'static str {
        self.row().2
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The file an ownership finding is about: its owner, group and mode codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    Db,
    Lock,
    LmdbLock,
    Chroot,
    ChrootLock,
}

impl Subject {
    /// The owner, group and mode codes of this file.
    pub(crate) fn codes(self) -> (Code, Code, Code) {
        match self {
            Subject::Db => (Code::DbOwner, Code::DbGroup, Code::DbMode),
            Subject::Lock => (Code::LockOwner, Code::LockGroup, Code::LockMode),
            Subject::LmdbLock => (Code::LmdbLockOwner, Code::LmdbLockGroup, Code::LmdbLockMode),
            Subject::Chroot => (Code::ChrootOwner, Code::ChrootGroup, Code::ChrootMode),
            Subject::ChrootLock => (
                Code::ChrootLockOwner,
                Code::ChrootLockGroup,
                Code::ChrootLockMode,
            ),
        }
    }

    /// The code of a lock file of this kind that is not a regular file of its own.
    pub(crate) fn not_file(self) -> Code {
        match self {
            Subject::ChrootLock | Subject::Chroot => Code::ChrootLockNotFile,
            Subject::Lock => Code::LockNotFile,
            _ => Code::LmdbLockNotFile,
        }
    }

    /// The code of a missing lock file of this kind.
    pub(crate) fn missing(self) -> Code {
        match self {
            Subject::ChrootLock | Subject::Chroot => Code::ChrootLockMissing,
            _ => Code::LmdbLockMissing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let ids: HashSet<&str> = Code::all().map(Code::id).collect();
        assert_eq!(ids.len(), TABLE.len());
        for c in Code::all() {
            assert!(
                c.id().bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{c}"
            );
            assert!(c.meaning().ends_with('.'), "{c}");
        }
    }
}
