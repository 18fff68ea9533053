//! The PostgreSQL URL (`postgresql://[USER@]HOST[:PORT][/DATABASE][?PARAMS]`): parsing
//! and validation only. Connecting (the environment, the password file) is the
//! PostgreSQL store's business (`storage::sql::pgsql`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The query parameters a URL may carry.
const PARAMS: [&str; 8] = [
    "host",
    "port",
    "user",
    "dbname",
    "sslmode",
    "connect_timeout",
    "application_name",
    "passfile",
];

/// A `postgresql://` URL, parsed (never holding a password).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Url {
    pub(crate) text: String,
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) user: Option<String>,
    pub(crate) dbname: Option<String>,
    pub(crate) sslmode: Option<String>,
    pub(crate) connect_timeout: Option<u64>,
    pub(crate) application_name: Option<String>,
    pub(crate) passfile: Option<PathBuf>,
}

impl Url {
    /// Whether `s` starts with `postgresql://` or `postgres://` (any case).
    pub fn is_url(s: &str) -> bool {
        scheme_len(s).is_some()
    }

    /// The host (a name, an address, or a socket directory), if the URL names one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port, if the URL names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The user, if the URL names one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The database, if the URL names one.
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
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
        let hostport = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                if userinfo.contains(':') {
                    return Err(refuse_password());
                }
                url.user = Some(decode(userinfo).map_err(|e| bad(&e))?).filter(|u| !u.is_empty());
                hp
            }
            None => authority,
        };
        if hostport.contains(',') {
            return Err(bad("several hosts are not supported; name one host"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address lacks its closing `]`"))?;
            match after {
                "" => (h.to_string(), None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (h.to_string(), Some(p)),
                    None => return Err(bad("garbage after the IPv6 address")),
                },
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (decode(h).map_err(|e| bad(&e))?, Some(p)),
                None => (decode(hostport).map_err(|e| bad(&e))?, None),
            }
        };
        url.host = Some(host).filter(|h| !h.is_empty());
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            url.port = Some(parse_port(p).map_err(|e| bad(&e))?);
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
                "host" | "hostaddr" => {
                    if v.contains(',') {
                        return Err(bad("several hosts are not supported; name one host"));
                    }
                    url.host = Some(v).filter(|h| !h.is_empty());
                }
                "port" => url.port = Some(parse_port(&v).map_err(|e| bad(&e))?),
                "user" => url.user = Some(v).filter(|u| !u.is_empty()),
                "dbname" => url.dbname = Some(v).filter(|d| !d.is_empty()),
                "sslmode" => {
                    check_sslmode(&v).map_err(|e| bad(&e))?;
                    url.sslmode = Some(v);
                }
                "connect_timeout" => {
                    url.connect_timeout = Some(v.parse().map_err(|_| {
                        bad(&format!("connect_timeout `{v}` is not a number of seconds"))
                    })?)
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
        url.text = s.to_string();
        Ok(url)
    }
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

pub(crate) fn check_sslmode(mode: &str) -> std::result::Result<(), String> {
    match mode {
        "disable" | "allow" | "prefer" => Ok(()),
        "require" | "verify-ca" | "verify-full" => Err(format!(
            "sslmode={mode}: this build has no TLS support; use a trusted network, a Unix \
             socket or a tunnel (sslmode=disable, allow or prefer)"
        )),
        other => Err(format!("unknown sslmode `{other}`")),
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
