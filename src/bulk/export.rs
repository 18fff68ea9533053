//! Export: a database's users as JSON, CSV, or a Dovecot passwd-file.
//!
//! Without `with_secrets` only user names, realms and property names are written.
//! With it:
//! - JSON: `{"user", "realm", "password", "properties": {name: value}}` per user, the
//!   shape `sasldb import --json` reads back (values that are not UTF-8 are written as
//!   `{"base64": "..."}`);
//! - CSV: `user,realm,password` (the shape `sasldb import --csv` reads);
//! - Dovecot: `user@realm:{SCHEME}hash` lines for a passwd-file passdb, hashed here with
//!   SHA512-CRYPT (default), SHA256-CRYPT or ARGON2ID, or `{PLAIN}` only when asked.
//!   A user stored without plaintext but with a SCRAM `authPassword` is written with
//!   Dovecot's matching `{SCRAM-SHA-1}`/`{SCRAM-SHA-256}` scheme (`iter,salt,stored,
//!   server`), which is the same secret in Dovecot's notation.
//!
//! Users are written sorted by user, then realm. Only the keys are held in memory (in
//! one arena); values are looked up one user at a time.

use std::io::{self, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use zeroize::Zeroizing;

use crate::account::secrets::{ScramHash, ScramSecret};
use crate::database::Database;
use crate::error::{Error, Result};
use crate::record::{AUTH_PASSWORD, SecretBuf, USER_PASSWORD, user_prefix};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A JSON array, one object per user.
    Json,
    /// CSV with a header.
    Csv,
    /// Dovecot passwd-file lines.
    Dovecot(Scheme),
}

/// Dovecot password schemes we can produce from a plaintext password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `{SHA512-CRYPT}$6$...`
    Sha512Crypt,
    /// `{SHA256-CRYPT}$5$...`
    Sha256Crypt,
    /// `{ARGON2ID}$argon2id$...`
    Argon2id,
    /// `{PLAIN}password`: only when explicitly asked for.
    Plain,
}

impl Scheme {
    /// Parses a Dovecot scheme name (case-insensitive).
    pub fn from_name(s: &str) -> Option<Scheme> {
        match s.to_ascii_uppercase().as_str() {
            "SHA512-CRYPT" => Some(Scheme::Sha512Crypt),
            "SHA256-CRYPT" => Some(Scheme::Sha256Crypt),
            "ARGON2ID" => Some(Scheme::Argon2id),
            "PLAIN" => Some(Scheme::Plain),
            _ => None,
        }
    }

    /// The Dovecot name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Plain => "PLAIN",
        }
    }

    /// Hashes a password into `{SCHEME}...` (wiped on drop: `{PLAIN}` is the password).
    pub fn hash(self, password: &[u8]) -> Result<Zeroizing<String>> {
        use sha_crypt::PasswordHasher;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
        let hashed = match self {
            Scheme::Plain => {
                let s = std::str::from_utf8(password)
                    .map_err(|_| Error::Invalid("{PLAIN} needs a UTF-8 password".into()))?;
                let mut out = Zeroizing::new(String::with_capacity(7 + s.len()));
                out.push_str("{PLAIN}");
                out.push_str(s);
                return Ok(out);
            }
            Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
                // sha-crypt writes the salt bytes in crypt's base64, and crypt(3) uses
                // at most 16 salt characters: 12 bytes make exactly 16. (16 bytes made
                // 22 characters, which glibc's crypt, and so Dovecot, truncated: the
                // hash never matched.)
                let salt = &salt[..12];
                let hasher = if self == Scheme::Sha512Crypt {
                    sha_crypt::ShaCrypt::SHA512
                } else {
                    sha_crypt::ShaCrypt::SHA256
                };
                hasher
                    .hash_password_with_salt(password, salt)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", self.name())))?
                    .to_string()
            }
            Scheme::Argon2id => argon2::Argon2::default()
                .hash_password_with_salt(password, &salt)
                .map_err(|e| Error::Invalid(format!("ARGON2ID: {e}")))?
                .to_string(),
        };
        Ok(Zeroizing::new(format!("{{{}}}{hashed}", self.name())))
    }
}

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// The format.
    pub format: ExportFormat,
    /// Include secret values (required for Dovecot output).
    pub with_secrets: bool,
    /// Only this realm.
    pub realm: Option<Vec<u8>>,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Users written.
    pub users: usize,
    /// Users left out, with the reason (Dovecot output: no usable secret).
    pub skipped: Vec<String>,
    /// Malformed keys ignored.
    pub malformed: usize,
}

/// One user's group of keys.
struct UserKeys<'a> {
    user: &'a [u8],
    realm: &'a [u8],
    props: Vec<&'a [u8]>,
}

/// Writes the export of `db` to `out`.
pub fn export(db: &Database, opts: &ExportOptions, out: &mut dyn Write) -> Result<ExportStats> {
    if matches!(opts.format, ExportFormat::Dovecot(_)) && !opts.with_secrets {
        return Err(Error::Invalid(
            "a Dovecot passwd-file holds password hashes: add --with-secrets".into(),
        ));
    }
    let mut stats = ExportStats::default();
    let io_err = |e: io::Error| Error::io("<output>", e);
    match opts.format {
        ExportFormat::Json => out.write_all(b"[").map_err(io_err)?,
        ExportFormat::Csv => out
            .write_all(if opts.with_secrets {
                b"user,realm,password\n"
            } else {
                b"user,realm,properties\n"
            })
            .map_err(io_err)?,
        ExportFormat::Dovecot(_) => {}
    }
    let mut first = true;
    let mut users = db.users()?;
    for u in users.by_ref() {
        if opts.realm.as_deref().is_some_and(|r| u.realm != r) {
            continue;
        }
        let keys = UserKeys {
            user: &u.user,
            realm: &u.realm,
            props: u.properties.iter().map(|p| &p[..]).collect(),
        };
        write_user(db, opts, &keys, out, &mut stats, &mut first)?;
    }
    stats.malformed += users.malformed();
    if opts.format == ExportFormat::Json {
        out.write_all(if first { b"]\n" } else { b"\n]\n" })
            .map_err(io_err)?;
    }
    out.flush().map_err(io_err)?;
    Ok(stats)
}

fn write_user(
    db: &Database,
    opts: &ExportOptions,
    g: &UserKeys,
    out: &mut dyn Write,
    stats: &mut ExportStats,
    first: &mut bool,
) -> Result<()> {
    let io_err = |e: io::Error| Error::io("<output>", e);
    let value = |prop: &[u8]| -> Result<Option<crate::record::Secret>> {
        let mut key = user_prefix(g.user, g.realm);
        key.extend_from_slice(prop);
        db.get_raw(&key)
    };
    let who = || {
        format!(
            "{}@{}",
            String::from_utf8_lossy(g.user),
            String::from_utf8_lossy(g.realm)
        )
    };
    // Every line is built in a buffer that is wiped, also when it grows.
    let mut line = SecretBuf::with_capacity(256);
    match opts.format {
        ExportFormat::Json => {
            // JSON strings are Unicode: a name that is not UTF-8 would come out
            // altered (and import as another user), so it is left out and reported.
            if let Some(bad) = [g.user, g.realm]
                .into_iter()
                .chain(g.props.iter().copied())
                .find(|n| std::str::from_utf8(n).is_err())
            {
                stats.skipped.push(format!(
                    "{}: `{}` is not UTF-8, which JSON cannot carry unchanged",
                    who(),
                    String::from_utf8_lossy(bad)
                ));
                return Ok(());
            }
            line.push(if *first { b"\n  {" } else { b",\n  {" });
            line.push(b"\"user\": ");
            json_str_into(&mut line, g.user);
            line.push(b", \"realm\": ");
            json_str_into(&mut line, g.realm);
            if opts.with_secrets {
                let mut props = SecretBuf::with_capacity(256);
                let mut password = None;
                for (i, p) in g.props.iter().enumerate() {
                    let v = value(p)?.unwrap_or_default();
                    if *p == USER_PASSWORD.as_bytes() && std::str::from_utf8(&v).is_ok() {
                        password = Some(v.clone());
                    }
                    if i > 0 {
                        props.push(b", ");
                    }
                    json_str_into(&mut props, p);
                    props.push(b": ");
                    json_bytes_into(&mut props, &v);
                }
                if let Some(pw) = password {
                    line.push(b", \"password\": ");
                    json_str_into(&mut line, &pw);
                }
                line.push(b", \"properties\": {");
                line.push(props.as_bytes());
                line.push(b"}}");
            } else {
                line.push(b", \"properties\": [");
                for (i, p) in g.props.iter().enumerate() {
                    if i > 0 {
                        line.push(b", ");
                    }
                    json_str_into(&mut line, p);
                }
                line.push(b"]}");
            }
            out.write_all(line.as_bytes()).map_err(io_err)?;
            *first = false;
        }
        ExportFormat::Csv => {
            let third: crate::record::Secret = if opts.with_secrets {
                match value(USER_PASSWORD.as_bytes())? {
                    Some(v) => v,
                    None => {
                        stats
                            .skipped
                            .push(format!("{}: no userPassword to export", who()));
                        return Ok(());
                    }
                }
            } else {
                Zeroizing::new(g.props.join(&b';'))
            };
            csv_field_into(&mut line, g.user);
            line.push(b",");
            csv_field_into(&mut line, g.realm);
            line.push(b",");
            csv_field_into(&mut line, &third);
            line.push(b"\n");
            out.write_all(line.as_bytes()).map_err(io_err)?;
        }
        ExportFormat::Dovecot(scheme) => {
            let name = if g.realm.is_empty() {
                g.user.to_vec()
            } else {
                [g.user, b"@", g.realm].concat()
            };
            if name.contains(&b':') {
                stats.skipped.push(format!(
                    "{}: a `:` in the name cannot be written to a passwd-file",
                    who()
                ));
                return Ok(());
            }
            let cred = if let Some(pw) = value(USER_PASSWORD.as_bytes())? {
                scheme.hash(&pw)?
            } else if let Some(ap) = value(AUTH_PASSWORD.as_bytes())? {
                match ScramSecret::parse(&ap) {
                    Ok(s) if matches!(s.hash(), ScramHash::Sha1 | ScramHash::Sha256) => {
                        Zeroizing::new(format!(
                            "{{{}}}{},{},{},{}",
                            s.hash().mechanism(),
                            s.iterations(),
                            B64.encode(s.salt()),
                            B64.encode(s.stored_key()),
                            B64.encode(s.server_key())
                        ))
                    }
                    _ => {
                        stats
                            .skipped
                            .push(format!("{}: its authPassword has no Dovecot scheme", who()));
                        return Ok(());
                    }
                }
            } else {
                stats
                    .skipped
                    .push(format!("{}: no userPassword or SCRAM authPassword", who()));
                return Ok(());
            };
            line.push(&name);
            line.push(b":");
            line.push(cred.as_bytes());
            line.push(b"\n");
            out.write_all(line.as_bytes()).map_err(io_err)?;
        }
    }
    stats.users += 1;
    Ok(())
}

/// Appends `b` (lossily as UTF-8) as a JSON string, escaped as serde_json does.
fn json_str_into(out: &mut SecretBuf, b: &[u8]) {
    let s = String::from_utf8_lossy(b);
    json_escape_into(out, &s);
    if let std::borrow::Cow::Owned(owned) = s {
        drop(Zeroizing::new(owned));
    }
}

fn json_escape_into(out: &mut SecretBuf, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 0xf) as usize],
            ],
            _ => continue,
        };
        out.push(&bytes[start..i]);
        out.push(esc);
        start = i + 1;
    }
    out.push(&bytes[start..]);
    out.push(b"\"");
}

/// Appends a value as a JSON string when it is UTF-8, else `{"base64": "..."}`.
fn json_bytes_into(out: &mut SecretBuf, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => json_escape_into(out, s),
        Err(_) => {
            let encoded = Zeroizing::new(B64.encode(b));
            out.push(b"{\"base64\": \"");
            out.push(encoded.as_bytes());
            out.push(b"\"}");
        }
    }
}

/// Appends a CSV field, quoted when it holds a comma, quote, CR or LF.
fn csv_field_into(out: &mut SecretBuf, b: &[u8]) {
    if b.iter().any(|&c| matches!(c, b',' | b'"' | b'\r' | b'\n')) {
        out.push(b"\"");
        for part in b.split_inclusive(|&c| c == b'"') {
            out.push(part);
            if part.last() == Some(&b'"') {
                out.push(b"\"");
            }
        }
        out.push(b"\"");
    } else {
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_hash_in_dovecot_notation() {
        let h = Scheme::Sha512Crypt.hash(b"s3cret").unwrap();
        assert!(h.starts_with("{SHA512-CRYPT}$6$"), "{}", *h);
        // crypt(3) reads at most 16 salt characters: a longer salt field would not
        // survive glibc's crypt, and the hash would never verify.
        let f: Vec<&str> = h.split('$').collect();
        let salt = if f[2].starts_with("rounds=") {
            f[3]
        } else {
            f[2]
        };
        assert_eq!(salt.len(), 16, "{}", *h);
        let h = Scheme::Sha256Crypt.hash(b"s3cret").unwrap();
        assert!(h.starts_with("{SHA256-CRYPT}$5$"), "{}", *h);
        let h = Scheme::Argon2id.hash(b"s3cret").unwrap();
        assert!(h.starts_with("{ARGON2ID}$argon2id$v=19$"), "{}", *h);
        assert_eq!(*Scheme::Plain.hash(b"pw").unwrap(), "{PLAIN}pw");
        assert_eq!(Scheme::from_name("argon2id"), Some(Scheme::Argon2id));
    }

    #[test]
    fn csv_quoting() {
        let csv = |b: &[u8]| {
            let mut out = SecretBuf::with_capacity(1);
            csv_field_into(&mut out, b);
            out.as_bytes().to_vec()
        };
        assert_eq!(csv(b"plain"), b"plain");
        assert_eq!(csv(b"a,\"b\""), b"\"a,\"\"b\"\"\"");
        let mut out = SecretBuf::with_capacity(1);
        json_bytes_into(&mut out, &[0xff, 0]);
        assert_eq!(out.as_bytes(), b"{\"base64\": \"/wA=\"}");
    }

    #[test]
    fn json_escapes_like_serde_json() {
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain("é名\u{2028}".chars())
            .collect();
        for s in [all.as_str(), "", "plain", "q\"b\\s/"] {
            let mut out = SecretBuf::with_capacity(1);
            json_escape_into(&mut out, s);
            assert_eq!(out.as_bytes(), serde_json::to_string(s).unwrap().as_bytes());
        }
    }
}
