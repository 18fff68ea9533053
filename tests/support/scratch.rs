//! Scratch directories: each test's own Cyrus configuration directory (`conf/`, given
//! as `SASL_CONF_PATH`) and Postfix configuration directory (`mail/`, given as
//! `MAIL_CONFIG`), so that nothing under /etc is read or written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::ours;

/// `myhostname` of the Postfix configuration [`Scratch::postfix`] writes: the realm of
/// logins without @.
pub const HOST_REALM: &str = "mail.example.com";

/// A scratch directory (mode 0700), removed on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new scratch directory with empty `conf/` and `mail/`.
    pub fn new() -> Scratch {
        Scratch::from(tempfile::tempdir().unwrap())
    }

    /// [`Scratch::new`], named `/tmp/<prefix>XXXXXX`.
    pub fn named(prefix: &str) -> Scratch {
        Scratch::from(tempfile::Builder::new().prefix(prefix).tempdir().unwrap())
    }

    fn from(dir: tempfile::TempDir) -> Scratch {
        let s = Scratch { dir };
        s.mkdir("conf");
        s.mkdir("mail");
        s
    }

    /// A scratch directory set up like a Postfix host, for `sasldb check` and
    /// `sync-chroot`: `mail/` holds main.cf and master.cf (smtpd chrooted), and
    /// `mail/sasl/smtpd.conf` names [`Scratch::db`] as `sasldb_path`; `queue/etc` is
    /// the chroot a test gives with `--queue-directory`.
    pub fn with_postfix() -> Scratch {
        let s = Scratch::named("sasldb-cli-");
        s.mkdir("mail/sasl");
        s.mkdir("queue/etc");
        s.postfix(&format!("sasldb_path: {}\n", s.db().display()), true);
        s
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Creates `rel` (and its parents); returns its path.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// The database most tests use: `sasldb2`.
    pub fn db(&self) -> PathBuf {
        self.path("sasldb2")
    }

    /// Writes `conf/<app>.conf`.
    pub fn conf(&self, app: &str, text: &str) {
        fs::write(self.path("conf").join(format!("{app}.conf")), text).unwrap();
    }

    /// Writes `mail/main.cf` (dated back, see [`write_aged`]) and an empty master.cf.
    pub fn main_cf(&self, text: &str) {
        write_aged(&self.path("mail/main.cf"), text);
        fs::write(self.path("mail/master.cf"), "").unwrap();
    }

    /// Writes `mail/main.cf` (myhostname [`HOST_REALM`], `cyrus_sasl_config_path` =
    /// `mail/sasl`), `mail/master.cf` (an smtp service, chrooted or not, and pickup),
    /// both dated back, and `mail/sasl/smtpd.conf`.
    pub fn postfix(&self, smtpd_conf: &str, chrooted: bool) {
        let main = format!(
            "myhostname = {HOST_REALM}\ncyrus_sasl_config_path = {}\nsmtpd_sasl_auth_enable = yes\n",
            self.path("mail/sasl").display()
        );
        let master = format!(
            "# service type private unpriv chroot wakeup maxproc command\n\
             smtp      inet  n       -       {}       -       -       smtpd\n\
             pickup    unix  n       -       y       60      1       pickup\n",
            if chrooted { "y" } else { "n" }
        );
        write_aged(&self.path("mail/main.cf"), &main);
        write_aged(&self.path("mail/master.cf"), &master);
        fs::write(self.path("mail/sasl/smtpd.conf"), smtpd_conf).unwrap();
    }

    /// Points `cmd` at this directory: its current directory, `SASL_CONF_PATH=conf/`,
    /// `MAIL_CONFIG=mail/`. The rest of the environment is inherited.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.current_dir(self.root())
            .env("SASL_CONF_PATH", self.path("conf"))
            .env("MAIL_CONFIG", self.path("mail"))
    }

    /// [`Scratch::env`] in a cleared environment: only `PATH` (the system directories),
    /// `SASL_CONF_PATH` and `MAIL_CONFIG` are set.
    pub fn clean_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        self.env(cmd)
    }

    /// One of our binaries ([`ours::command`]) run in this directory ([`Scratch::env`]).
    pub fn ours(&self, name: &str) -> Command {
        let mut cmd = ours::command(name);
        self.env(&mut cmd);
        cmd
    }

    /// One of our binaries run in this directory with a cleared environment
    /// ([`Scratch::clean_env`]).
    pub fn ours_clean(&self, name: &str) -> Command {
        let mut cmd = ours::command(name);
        self.clean_env(&mut cmd);
        cmd
    }
}

/// Writes a configuration file for Postfix and dates it an hour back: `postconf` and
/// the Postfix daemons read a file modified within the last second again and again
/// (300 ms apart) until it is older, which would cost every command up to 2 s.
pub fn write_aged(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}
