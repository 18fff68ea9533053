//! The saslauthd "mux" protocol (what Cyrus libsasl's `pwcheck_method: saslauthd`
//! and `testsaslauthd` speak), sans I/O.
//!
//! One request per connection: four counted strings (a big-endian `u16` length,
//! then the bytes), **login, password, service, realm**; one counted string back,
//! `OK` or `NO` (a success is any answer starting with `OK`). As in Cyrus's
//! saslauthd (`ipc_unix.c`):
//! - a field longer than [`MAX_FIELD`] bytes is answered `NO` at once, the rest
//!   unread;
//! - each field is a C string: it ends at its first NUL;
//! - an empty login or password is answered `NO NULL login received` /
//!   `NO NULL password received`.
//!
//! Unlike `saslauthd -a sasldb`, an empty realm means the default realm (the one
//! Postfix uses, or `-u`), not the raw host name, and a login with `@` and no realm
//! is split at its first `@` as Cyrus's plugins split user ids.

use zeroize::Zeroizing;

use crate::record::Secret;

/// Longest field (Cyrus's `MAX_REQ_LEN`).
pub const MAX_FIELD: usize = 256;
/// Longest request.
pub const MAX_REQUEST: usize = 4 * (2 + MAX_FIELD);

/// A complete request.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The login (user name, possibly `user@realm`).
    pub login: Vec<u8>,
    /// The password, wiped on drop.
    pub password: Secret,
    /// The service (`smtp`, `imap`...), ignored as saslauthd's sasldb module does.
    pub service: Vec<u8>,
    /// The realm; empty for the default realm.
    pub realm: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("login", &String::from_utf8_lossy(&self.login))
            .field("password", &"<hidden>")
            .field("service", &String::from_utf8_lossy(&self.service))
            .field("realm", &String::from_utf8_lossy(&self.realm))
            .finish()
    }
}

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A whole request; `len` bytes were used.
    Request(Request, usize),
    /// Refused before the end: send this answer (`NO ...`) and close.
    Refused(&'static [u8]),
}

fn c_str(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or_default()
}

/// Parses the bytes received so far.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut fields: [&[u8]; 4] = [&[]; 4];
    let mut at = 0;
    for f in &mut fields {
        let Some(len) = buf.get(at..at + 2) else {
            return Parsed::Incomplete;
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len > MAX_FIELD {
            return Parsed::Refused(b"NO");
        }
        at += 2;
        let Some(v) = buf.get(at..at + len) else {
            return Parsed::Incomplete;
        };
        *f = v;
        at += len;
    }
    let [login, password, service, realm] = fields.map(c_str);
    if login.is_empty() {
        return Parsed::Refused(b"NO NULL login received");
    }
    if password.is_empty() {
        return Parsed::Refused(b"NO NULL password received");
    }
    Parsed::Request(
        Request {
            login: login.to_vec(),
            password: Zeroizing::new(password.to_vec()),
            service: service.to_vec(),
            realm: realm.to_vec(),
        },
        at,
    )
}

/// The answer to a request: `OK` or `NO` (what `saslauthd -a sasldb` sends).
pub fn answer(ok: bool) -> &'static [u8] {
    if ok { b"OK" } else { b"NO" }
}

/// Frames an answer as one counted string.
pub fn frame(text: &[u8]) -> Vec<u8> {
    let n = text.len().min(usize::from(u16::MAX));
    let mut v = Vec::with_capacity(n + 2);
    v.extend_from_slice(&(n as u16).to_be_bytes());
    v.extend_from_slice(&text[..n]);
    v
}

/// A request as a client sends it (tests and the load generator). Fields longer
/// than `u16::MAX` are cut.
pub fn encode_request(login: &[u8], password: &[u8], service: &[u8], realm: &[u8]) -> Secret {
    let mut v = Zeroizing::new(Vec::with_capacity(
        8 + login.len() + password.len() + service.len() + realm.len(),
    ));
    for f in [login, password, service, realm] {
        let n = f.len().min(usize::from(u16::MAX));
        v.extend_from_slice(&(n as u16).to_be_bytes());
        v.extend_from_slice(&f[..n]);
    }
    v
}

/// The user and realm to look up: the realm as sent, or for an empty one the login
/// split at its first `@`, else `default_realm`.
pub fn user_and_realm<'a>(req: &'a Request, default_realm: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    if req.realm.is_empty() {
        crate::account::split_userid(&req.login, default_realm)
    } else {
        (&req.login, &req.realm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_incrementally() {
        let req = encode_request(b"alice", b"pw", b"smtp", b"example.org");
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Parsed::Incomplete, "{cut}");
        }
        let Parsed::Request(r, n) = parse(&req) else {
            panic!()
        };
        assert_eq!(n, req.len());
        assert_eq!(r.login, b"alice");
        assert_eq!(&r.password[..], b"pw");
        assert_eq!(r.service, b"smtp");
        assert_eq!(r.realm, b"example.org");
        assert_eq!(
            user_and_realm(&r, b"d"),
            (&b"alice"[..], &b"example.org"[..])
        );
    }

    #[test]
    fn refusals_and_c_strings() {
        assert_eq!(
            parse(&encode_request(b"", b"pw", b"s", b"")),
            Parsed::Refused(b"NO NULL login received")
        );
        assert_eq!(
            parse(&encode_request(b"a", b"\0pw", b"s", b"")),
            Parsed::Refused(b"NO NULL password received")
        );
        let long = [0u8; MAX_FIELD + 1];
        assert_eq!(
            parse(&encode_request(b"a", &long, b"s", b"")[..5]),
            Parsed::Refused(b"NO")
        );
        let Parsed::Request(r, _) = parse(&encode_request(b"bob@x.org\0junk", b"pw\0x", b"s", b""))
        else {
            panic!()
        };
        assert_eq!(&r.password[..], b"pw");
        assert_eq!(user_and_realm(&r, b"d"), (&b"bob"[..], &b"x.org"[..]));
        assert_eq!(frame(b"OK"), b"\0\x02OK");
    }
}
