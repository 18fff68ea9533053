//! The command line of `sasldb serve` and `sasldb checkpassword` (clap definitions,
//! shared with the man page), and their translation into a [`Config`].

// The doc comments below are clap's help texts, written for a terminal.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Config, LimitConfig, LogConfig, Mechanism};

/// `sasldb serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve the Dovecot auth-client protocol on this Unix socket (Postfix:
    /// smtpd_sasl_type = dovecot, smtpd_sasl_path = private/auth for
    /// /var/spool/postfix/private/auth).
    #[arg(long, value_name = "PATH")]
    pub dovecot: Option<PathBuf>,
    /// Serve the saslauthd mux protocol on this Unix socket: the full path, as
    /// saslauthd_path names it, /mux included (Cyrus: pwcheck_method: saslauthd).
    #[arg(long, value_name = "PATH")]
    pub saslauthd: Option<PathBuf>,
    /// Owner of the socket files (default: the user running the server).
    #[arg(long, value_name = "USER")]
    pub socket_owner: Option<String>,
    /// Group of the socket files (default as root: postfix).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Mode of the socket files, in octal.
    #[arg(long, value_name = "MODE", default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Started as root: run as this user once the sockets are bound (the database
    /// must be readable by it). --group then names the group to run as (default: the
    /// user's).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Seconds a failed authentication waits before it is answered (a timer: other
    /// clients are not delayed); 0 for none.
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub failure_delay: Duration,
    /// Failures from one remote address (rip=) or for one user after which further
    /// requests wait 1 s, 2 s, 4 s... before they are looked at (0: no penalties).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_failures: u32,
    /// The longest penalty wait, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "8", value_parser = parse_seconds)]
    pub max_penalty: Duration,
    /// Connections served at once; more wait in the socket's backlog.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Seconds allowed for a handshake, the rest of a started request, and a write.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Seconds a Dovecot client connection may stay idle.
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_seconds)]
    pub idle_timeout: Duration,
    /// Event-loop threads (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Mechanisms to offer on the Dovecot socket, comma-separated (default: every one
    /// of PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256 the stored secrets can
    /// serve).
    #[arg(long, value_name = "LIST", value_parser = parse_mechanisms)]
    pub mechanisms: Option<Mechanisms>,
    /// Host name in CRAM-MD5 challenges (default: the system's).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Failure log lines per second (bursts of five times as many are let through).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub log_rate: u32,
}

/// A list of mechanisms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mechanisms(pub Vec<Mechanism>);

fn parse_mechanisms(s: &str) -> Result<Mechanisms, String> {
    let mut v = Vec::new();
    for name in s.split([',', ' ']).filter(|n| !n.is_empty()) {
        let m = Mechanism::from_name(name.as_bytes()).ok_or_else(|| {
            format!(
                "unknown mechanism `{name}` (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256)"
            )
        })?;
        if !v.contains(&m) {
            v.push(m);
        }
    }
    if v.is_empty() {
        return Err("no mechanism named".into());
    }
    Ok(Mechanisms(v))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("`{s}` is not an octal mode (such as 0660)")),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=86_400.0).contains(&x) => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!("`{s}` is not a number of seconds (0 to 86400)")),
    }
}

impl ServeArgs {
    /// The configuration; `group` is the global `--group`, `realm` the global `-u`.
    pub fn to_config(&self, group: Option<String>, realm: Option<Vec<u8>>) -> Config {
        Config {
            dovecot: self.dovecot.clone(),
            saslauthd: self.saslauthd.clone(),
            socket_owner: self.socket_owner.clone(),
            socket_group: self.socket_group.clone(),
            socket_mode: self.socket_mode,
            user: self.user.clone(),
            group,
            failure_delay: self.failure_delay,
            limits: LimitConfig {
                threshold: self.max_failures,
                max_penalty: self.max_penalty.max(Duration::from_secs(1)),
                ..LimitConfig::default()
            },
            log: LogConfig {
                per_second: self.log_rate,
                burst: self.log_rate.saturating_mul(5),
            },
            max_connections: self.max_connections as usize,
            timeout: self.timeout.max(Duration::from_millis(100)),
            idle_timeout: self.idle_timeout.max(Duration::from_secs(1)),
            request_timeout: Config::default().request_timeout,
            threads: self.threads,
            mechanisms: self.mechanisms.as_ref().map(|m| m.0.clone()),
            realm,
            hostname: self.hostname.clone(),
        }
    }
}

/// `sasldb checkpassword`.
#[derive(Debug, Args)]
pub struct CheckpasswordArgs {
    /// The program to run after a successful check (for Dovecot, the
    /// checkpassword-reply it appends), and its arguments.
    #[arg(value_name = "PROG", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub prog: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_parsers() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert!(parse_mode("0999").is_err());
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("nan").is_err());
        assert_eq!(
            parse_mechanisms("plain,CRAM-MD5 plain").unwrap().0,
            vec![Mechanism::Plain, Mechanism::CramMd5]
        );
        assert!(parse_mechanisms("NTLM").is_err());
    }
}
