//! The PostgreSQL URL (`postgresql://[USER@]HOST[:PORT][,HOST[:PORT]...][/DATABASE][?PARAMS]`):
//! parsing and validation only. Connecting (the environment, the password file, TLS,
//! choosing a host) is the PostgreSQL store's business (`storage::sql::pgsql`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The query parameters a URL may carry.
const PARAMS: [&str; 13] = [
    "host",
    "hostaddr",
    "port",
    "user",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "target_session_attrs",
    "connect_timeout",
    "application_name",
    "passfile",
];

/// libpq's `sslmode` values, weakest first.
pub(crate) const SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// libpq's `target_session_attrs` values.
pub(crate) const SESSION_ATTRS: [&str; 6] = [
    "any",
    "read-write",
    "read-only",
    "primary",
    "standby",
    "prefer-standby",
];

/// A `postgresql://` URL, parsed (never holding a password).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Url {
    pub(crate) text: String,
    /// Host names, addresses or socket directories, in the order to try them (empty:
    /// the URL names none).
    pub(crate) hosts: Vec<String>,
    /// `hostaddr`: numeric addresses to connect to, one per host (empty: none given).
    pub(crate) hostaddrs: Vec<std::net::IpAddr>,
    /// Ports: none, one for every host, or one per host (None: the default port).
    pub(crate) ports: Vec<Option<u16>>,
    pub(crate) user: Option<String>,
    pub(crate) dbname: Option<String>,
    pub(crate) sslmode: Option<String>,
    pub(crate) sslrootcert: Option<String>,
    pub(crate) sslcert: Option<PathBuf>,
    pub(crate) sslkey: Option<PathBuf>,
    pub(crate) target_session_attrs: Option<String>,
    /// Seconds; 0 means no limit (as libpq).
    pub(crate) connect_timeout: Option<u64>,
    pub(crate) application_name: Option<String>,
    pub(crate) passfile: Option<PathBuf>,
}

impl Url {
    /// Whether `s` starts with `postgresql://` or `postgres://` (any case).
    pub fn is_url(s: &str) -> bool {
        scheme_len(s).is_some()
    }

    /// The (first) host (a name, an address, or a socket directory), if the URL names
    /// one.
    pub fn host(&self) -> Option<&str> {
        self.hosts.first().map(String::as_str)
    }

    /// Every host the URL names, in the order they are tried.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The (first) port, if the URL names one.
    pub fn port(&self) -> Option<u16> {
        self.ports.iter().flatten().next().copied()
    }

    /// The user, if the URL names one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The database, if the URL names one.
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// The `sslmode` the URL asks for, if any.
    pub fn sslmode(&self) -> Option<&str> {
        self.sslmode.as_deref()
    }

    /// The `target_session_attrs` the URL asks for, if any.
    pub fn target_session_attrs(&self) -> Option<&str> {
        self.target_session_attrs.as_deref()
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Url {
    type Err = Error;

    /// Parses a libpq connection URI. A password (`user:password@`, `?password=`) is
    /// refused, and the error never repeats the URL.
    fn from_str(s: &str) -> Result<Url> {
        let bad = |what: &str| Error::Invalid(format!("PostgreSQL URL: {what}"));
        let Some(skip) = scheme_len(s) else {
            return Err(bad("it must start with postgresql:// or postgres://"));
        };
        let refuse_password = || {
            bad(
                "a password in the URL is refused (credentials never go on the command \
                 line): leave it out and set PGPASSWORD or add a line to ~/.pgpass (or the \
                 file PGPASSFILE names), mode 0600",
            )
        };
        let rest = &s[skip..];
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let mut url = Url::default();
        let hostlist = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                if userinfo.contains(':') {
                    return Err(refuse_password());
                }
                url.user = Some(decode(userinfo).map_err(|e| bad(&e))?).filter(|u| !u.is_empty());
                hp
            }
            None => authority,
        };
        if !hostlist.is_empty() {
            let mut any_port = false;
            for hostport in hostlist.split(',') {
                let (host, port) = split_host_port(hostport).map_err(|e| bad(&e))?;
                if host.is_empty() && hostlist.contains(',') {
                    return Err(bad("an empty host in the host list"));
                }
                url.hosts.push(host);
                any_port |= port.is_some();
                url.ports.push(port);
            }
            if !any_port {
                url.ports.clear();
            }
            if url.hosts.len() == 1 && url.hosts[0].is_empty() {
                url.hosts.clear();
            }
        }
        if let Some(p) = path {
            url.dbname = Some(decode(p).map_err(|e| bad(&e))?).filter(|d| !d.is_empty());
        }
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k).map_err(|e| bad(&e))?;
            if k == "password" {
                return Err(refuse_password());
            }
            let v = decode(v).map_err(|e| bad(&e))?;
            match k.as_str() {
                "host" => {
                    url.hosts = split_list(&v);
                }
                "hostaddr" => {
                    url.hostaddrs = split_list(&v)
                        .iter()
                        .map(|a| {
                            a.parse().map_err(|_| {
                                bad(&format!("hostaddr `{a}` is not a numeric IP address"))
                            })
                        })
                        .collect::<Result<_>>()?;
                }
                "port" => {
                    url.ports = split_list(&v)
                        .iter()
                        .map(|p| match p.as_str() {
                            "" => Ok(None),
                            p => parse_port(p).map(Some).map_err(|e| bad(&e)),
                        })
                        .collect::<Result<_>>()?;
                }
                "user" => url.user = Some(v).filter(|u| !u.is_empty()),
                "dbname" => url.dbname = Some(v).filter(|d| !d.is_empty()),
                "sslmode" => {
                    check_sslmode(&v).map_err(|e| bad(&e))?;
                    url.sslmode = Some(v);
                }
                "sslrootcert" => url.sslrootcert = Some(v).filter(|p| !p.is_empty()),
                "sslcert" => {
                    url.sslcert = Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty())
                }
                "sslkey" => {
                    url.sslkey = Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty())
                }
                "target_session_attrs" => {
                    check_session_attrs(&v).map_err(|e| bad(&e))?;
                    url.target_session_attrs = Some(v);
                }
                "connect_timeout" => {
                    url.connect_timeout = Some(parse_timeout(&v).map_err(|e| bad(&e))?);
                }
                "application_name" => url.application_name = Some(v),
                "passfile" => url.passfile = Some(PathBuf::from(v)),
                other => {
                    return Err(bad(&format!(
                        "unsupported parameter `{other}` (supported: {})",
                        PARAMS.join(", ")
                    )));
                }
            }
        }
        if !url.hostaddrs.is_empty()
            && !url.hosts.is_empty()
            && url.hostaddrs.len() != url.hosts.len()
        {
            return Err(bad(&format!(
                "{} host names but {} hostaddr values: give one address per host",
                url.hosts.len(),
                url.hostaddrs.len()
            )));
        }
        url.text = s.to_string();
        Ok(url)
    }
}

/// `[v6]:port`, `host:port`, `host` (percent-decoded); an empty port is no port.
fn split_host_port(hostport: &str) -> std::result::Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 address lacks its closing `]`".to_string())?;
        match after {
            "" => (h.to_string(), None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h.to_string(), Some(p)),
                None => return Err("garbage after the IPv6 address".into()),
            },
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (decode(h)?, Some(p)),
            None => (decode(hostport)?, None),
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    Ok((host, port))
}

/// A comma-separated list (libpq's `host=a,b`); an empty value is an empty list.
pub(crate) fn split_list(v: &str) -> Vec<String> {
    if v.is_empty() {
        return Vec::new();
    }
    v.split(',').map(|s| s.trim().to_string()).collect()
}

fn scheme_len(s: &str) -> Option<usize> {
    ["postgresql://", "postgres://"].into_iter().find_map(|p| {
        s.get(..p.len())
            .filter(|h| h.eq_ignore_ascii_case(p))
            .map(|_| p.len())
    })
}

pub(crate) fn parse_port(p: &str) -> std::result::Result<u16, String> {
    match p.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid port `{p}`")),
    }
}

/// `connect_timeout`: whole seconds; 0 or less means no limit, as with libpq.
pub(crate) fn parse_timeout(v: &str) -> std::result::Result<u64, String> {
    match v.trim().parse::<i64>() {
        Ok(n) => Ok(n.max(0) as u64),
        Err(_) => Err(format!("connect_timeout `{v}` is not a number of seconds")),
    }
}

pub(crate) fn check_sslmode(mode: &str) -> std::result::Result<(), String> {
    if SSLMODES.contains(&mode) {
        Ok(())
    } else {
        Err(format!(
            "unknown sslmode `{mode}` (one of {})",
            SSLMODES.join(", ")
        ))
    }
}

pub(crate) fn check_session_attrs(v: &str) -> std::result::Result<(), String> {
    if SESSION_ATTRS.contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "unknown target_session_attrs `{v}` (one of {})",
            SESSION_ATTRS.join(", ")
        ))
    }
}

/// Percent-decodes a URL component; the result must be UTF-8.
fn decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "invalid percent-encoding".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a decoded part is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn host_lists() {
        let u = url("postgresql://h1:5432,h2:5433/mail?target_session_attrs=read-write");
        assert_eq!(u.hosts(), ["h1", "h2"]);
        assert_eq!(u.ports, [Some(5432), Some(5433)]);
        assert_eq!(u.target_session_attrs(), Some("read-write"));
        let u = url("postgresql://a,[::1]:7,%2Ftmp%2Fs/x");
        assert_eq!(u.hosts(), ["a", "::1", "/tmp/s"]);
        assert_eq!(u.ports, [None, Some(7), None]);
        let u = url("postgresql://a,b/x");
        assert!(u.ports.is_empty());
        let u = url("postgresql:///x?host=a,b&port=1,2&hostaddr=127.0.0.1,127.0.0.2");
        assert_eq!(u.hosts(), ["a", "b"]);
        assert_eq!(u.ports, [Some(1), Some(2)]);
        assert_eq!(u.hostaddrs.len(), 2);
        for (bad, want) in [
            ("postgresql://a,,b/x", "empty host"),
            (
                "postgresql:///x?host=a,b&hostaddr=127.0.0.1",
                "one address per host",
            ),
            (
                "postgresql:///x?hostaddr=db.example.org",
                "not a numeric IP",
            ),
            ("postgresql://a/x?sslmode=sometimes", "unknown sslmode"),
            (
                "postgresql://a/x?target_session_attrs=rw",
                "unknown target_session_attrs",
            ),
            ("postgresql://a/x?connect_timeout=soon", "not a number"),
        ] {
            let e = bad.parse::<Url>().unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn tls_parameters() {
        let u = url(
            "postgresql://db/x?sslmode=verify-full&sslrootcert=/etc/ca.pem\
             &sslcert=/c.pem&sslkey=/k.pem&connect_timeout=0",
        );
        assert_eq!(u.sslmode(), Some("verify-full"));
        assert_eq!(u.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(u.sslcert, Some(PathBuf::from("/c.pem")));
        assert_eq!(u.sslkey, Some(PathBuf::from("/k.pem")));
        assert_eq!(u.connect_timeout, Some(0));
        for mode in SSLMODES {
            url(&format!("postgresql://db/x?sslmode={mode}"));
        }
    }
}
