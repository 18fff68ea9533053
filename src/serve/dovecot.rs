//! The Dovecot auth-client protocol, version 1.2 (what Postfix's
//! `smtpd_sasl_type = dovecot`, Exim's `driver = dovecot` and `doveadm auth test`
//! speak), server side, sans I/O: bytes in, [`Event`]s out, reply lines built by
//! the [`Session`].
//!
//! The wire (Dovecot 2.3, `src/auth/auth-client-connection.c`,
//! `auth-request-handler.c`): LF-terminated lines of TAB-separated fields, values
//! escaped with `\x01` (`\x011` for `\x01`, `\x01t` TAB, `\x01r` CR, `\x01n` LF,
//! `\x010` NUL). On connect the server sends `VERSION 1 2`, a `MECH` line per
//! mechanism with its flags, `SPID`, `CUID`, `COOKIE` and `DONE`; the client answers
//! `VERSION 1 <minor>` and `CPID <pid>`. Then:
//!
//! ```text
//! C: AUTH <id> <MECH> service=smtp [k=v | flag]... [resp=<base64>]
//! S: CONT <id> <base64>            C: CONT <id> <base64>
//! S: OK <id> user=<name> [resp=<base64>]
//! S: FAIL <id> [user=<name>] [code=temp_fail|invalid_base64] reason=<text>
//! ```
//!
//! Errors are Dovecot's: a line over [`MAX_LINE`] bytes, a bad handshake, an unknown
//! command, a broken `AUTH` (no id, id 0, unknown or unoffered mechanism, no
//! `service=`, parameters after `resp=`, a duplicate id) close the connection;
//! invalid base64 is `FAIL ... code=invalid_base64`; a `CONT` for an unknown id is
//! `FAIL <id> reason=Authentication request timed out`, and one the server did not
//! ask for is `FAIL ... reason=Unexpected continuation`. For clients below minor
//! version 2 (Postfix, Exim) an empty `resp=` means no initial response. A SCRAM
//! success carries the server's final message in `OK ... resp=` only when the client
//! sent `final-resp-ok`; otherwise it goes in a `CONT`, and the `OK` follows the
//! client's (empty) `CONT`. Requests waiting for the client expire after the
//! request timeout (`FAIL ... reason=Authentication request timed out`).

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::{Zeroize, Zeroizing};

use super::mech::{Exchange, Mechanism};
use crate::record::Secret;

/// Longest line either side may send (Dovecot's `AUTH_CLIENT_MAX_LINE_LENGTH`).
pub const MAX_LINE: usize = 16384;
/// Requests one connection may have open at once (Postfix and Exim use one).
pub const MAX_REQUESTS: usize = 64;
/// The reason in a FAIL for a wrong password or an unknown user.
pub const FAIL_REASON: &str = "Authentication failed";

/// Escapes a value for a field.
pub fn escape(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        match b {
            0 => out.extend_from_slice(b"\x010"),
            1 => out.extend_from_slice(b"\x011"),
            b'\t' => out.extend_from_slice(b"\x01t"),
            b'\r' => out.extend_from_slice(b"\x01r"),
            b'\n' => out.extend_from_slice(b"\x01n"),
            b => out.push(b),
        }
    }
}

/// Undoes [`escape`] (an unknown escape stands for the byte after `\x01`; a lone
/// `\x01` at the end is dropped, as Dovecot's `str_tabunescape` does).
pub fn unescape(v: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(v.len()));
    let mut it = v.iter();
    while let Some(&b) = it.next() {
        if b == 1 {
            match it.next() {
                Some(b'0') => out.push(0),
                Some(b'1') => out.push(1),
                Some(b't') => out.push(b'\t'),
                Some(b'r') => out.push(b'\r'),
                Some(b'n') => out.push(b'\n'),
                Some(&c) => out.push(c),
                None => {}
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// What the server announces on connect.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The mechanisms offered, in order.
    pub mechanisms: Vec<Mechanism>,
    /// The server's process id (`SPID`).
    pub spid: u32,
    /// This connection's number (`CUID`).
    pub cuid: u32,
    /// 16 random bytes (`COOKIE`, hex).
    pub cookie: [u8; 16],
}

impl Handshake {
    /// The lines sent on connect.
    pub fn render(&self) -> Vec<u8> {
        let mut s = String::from("VERSION\t1\t2\n");
        for m in &self.mechanisms {
            s.push_str("MECH\t");
            s.push_str(m.name());
            s.push('\t');
            s.push_str(m.dovecot_flags());
            s.push('\n');
        }
        s.push_str(&format!(
            "SPID\t{}\nCUID\t{}\nCOOKIE\t",
            self.spid, self.cuid
        ));
        for b in self.cookie {
            s.push_str(&format!("{b:02x}"));
        }
        s.push_str("\nDONE\n");
        s.into_bytes()
    }
}

/// The parameters of an `AUTH` request the server uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthParams {
    /// `service=` (required).
    pub service: Vec<u8>,
    /// `rip=`: the remote client's address, if given.
    pub rip: Option<Vec<u8>>,
    /// `final-resp-ok`: a SCRAM server-final may go in the `OK`.
    pub final_resp_ok: bool,
}

/// What the client's bytes ask for.
#[derive(Debug)]
pub enum Event {
    /// A new request: start an [`Exchange`] and answer with
    /// [`Session::challenge`], [`Session::success`] or [`Session::failure`].
    Auth {
        /// Request id.
        id: u32,
        /// The mechanism.
        mech: Mechanism,
        /// Its parameters.
        params: AuthParams,
        /// The initial response, decoded.
        initial: Option<Secret>,
    },
    /// The client's answer to a challenge: continue `exchange` with `data`.
    Cont {
        /// Request id.
        id: u32,
        /// The exchange the challenge came from.
        exchange: Exchange,
        /// The answer, decoded.
        data: Secret,
        /// The request's parameters.
        params: AuthParams,
    },
    /// Send this line as it is (a reply the protocol itself determines).
    Send(Vec<u8>),
    /// Close the connection; the text says why (for the log).
    Close(String),
}

#[derive(Debug)]
enum Pending {
    /// The server is working on it.
    Working,
    /// A challenge was sent; the client's answer continues `exchange`.
    WantCont(Exchange),
    /// SCRAM's server-final was sent in a CONT; the next CONT gets `OK user=`.
    WantFinal(Vec<u8>),
}

#[derive(Debug)]
struct Request {
    id: u32,
    state: Pending,
    params: AuthParams,
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Version,
    Cpid,
    Ready,
    Closed,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    minor: u32,
    offered: Vec<Mechanism>,
    buf: Zeroizing<Vec<u8>>,
    requests: Vec<Request>,
}

impl Session {
    /// A new connection offering `offered`.
    pub fn new(offered: Vec<Mechanism>) -> Session {
        Session {
            phase: Phase::Version,
            minor: 0,
            offered,
            buf: Zeroizing::new(Vec::new()),
            requests: Vec::new(),
        }
    }

    /// Whether the handshake is complete.
    pub fn ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Whether any request is open.
    pub fn has_requests(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Whether a partial line is buffered.
    pub fn mid_line(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The earliest moment an open request waiting for the client expires.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.requests
            .iter()
            .filter(|r| !matches!(r.state, Pending::Working))
            .map(|r| r.since + timeout)
            .min()
    }

    /// Takes bytes from the client; events go to `out`. After an [`Event::Close`],
    /// nothing more is read.
    pub fn feed(&mut self, data: &[u8], now: Instant, out: &mut Vec<Event>) {
        if self.phase == Phase::Closed {
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let nl = memchr::memchr(b'\n', rest);
            let take = nl.map_or(rest.len(), |i| i + 1);
            if self.buf.len() + take > MAX_LINE + 1 {
                self.close(out, format!("client sent a line over {MAX_LINE} bytes"));
                return;
            }
            self.push(&rest[..take]);
            rest = &rest[take..];
            if nl.is_some() {
                let mut line = std::mem::take(&mut *self.buf);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line(&line, now, out);
                line.zeroize();
                if self.phase == Phase::Closed {
                    return;
                }
            }
        }
    }

    /// Appends to the line buffer; growing moves the bytes to a new buffer and wipes
    /// the old one.
    fn push(&mut self, b: &[u8]) {
        let need = self.buf.len() + b.len();
        if need > self.buf.capacity() {
            let cap = need.max(2 * self.buf.capacity()).clamp(256, MAX_LINE + 1);
            let mut bigger = Zeroizing::new(Vec::with_capacity(cap.max(need)));
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
        }
        self.buf.extend_from_slice(b);
    }

    fn close(&mut self, out: &mut Vec<Event>, why: String) {
        self.phase = Phase::Closed;
        self.requests.clear();
        out.push(Event::Close(why));
    }

    fn line(&mut self, line: &[u8], now: Instant, out: &mut Vec<Event>) {
        let mut fields = line.split(|&b| b == b'\t');
        let cmd = fields.next().unwrap_or_default();
        match self.phase {
            Phase::Version => {
                let major = fields.next().and_then(parse_u32);
                let minor = fields.next().and_then(parse_u32);
                match (cmd, major, minor, fields.next()) {
                    (b"VERSION", Some(1), Some(minor), None) => {
                        self.minor = minor;
                        self.phase = Phase::Cpid;
                    }
                    (b"VERSION", Some(_), Some(_), None) => {
                        self.close(out, "client speaks another major version".into())
                    }
                    _ => self.close(out, "client sent an invalid VERSION line".into()),
                }
            }
            Phase::Cpid => match (cmd, fields.next().and_then(parse_u32)) {
                (b"CPID", Some(pid)) if pid != 0 => self.phase = Phase::Ready,
                (b"CPID", _) => self.close(out, "client sent an invalid CPID".into()),
                _ => self.close(out, "client sent an unknown handshake command".into()),
            },
            Phase::Ready => match cmd {
                b"AUTH" => self.auth(fields, now, out),
                b"CONT" => self.cont(line, now, out),
                b"CANCEL" => {
                    if let Some(id) = fields.next().and_then(parse_u32) {
                        self.requests.retain(|r| r.id != id);
                    } else {
                        self.close(out, "client sent a broken CANCEL".into());
                    }
                }
                _ => self.close(out, "client sent an unknown command".into()),
            },
            Phase::Closed => {}
        }
    }

    fn auth<'a>(
        &mut self,
        mut fields: impl Iterator<Item = &'a [u8]>,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        let Some(id) = fields.next().and_then(parse_u32).filter(|&id| id != 0) else {
            return self.close(out, "client sent a broken AUTH request".into());
        };
        let Some(name) = fields.next() else {
            return self.close(out, "client sent a broken AUTH request".into());
        };
        let Some(mech) = Mechanism::from_name(name).filter(|m| self.offered.contains(m)) else {
            return self.close(
                out,
                format!(
                    "client requested an unsupported mechanism {}",
                    super::limits::loggable(name)
                ),
            );
        };
        let mut params = AuthParams::default();
        let mut service = false;
        let mut resp: Option<&[u8]> = None;
        for f in fields.by_ref() {
            let (k, v) = match memchr::memchr(b'=', f) {
                Some(i) => (&f[..i], &f[i + 1..]),
                None => (f, &b""[..]),
            };
            match k {
                b"service" => {
                    params.service = unescape(v).to_vec();
                    service = true;
                }
                b"rip" => params.rip = Some(unescape(v).to_vec()),
                b"final-resp-ok" => params.final_resp_ok = true,
                b"resp" => {
                    resp = Some(v);
                    break;
                }
                _ => {}
            }
        }
        if fields.next().is_some() {
            return self.close(out, "client sent AUTH parameters after resp".into());
        }
        if !service {
            return self.close(out, "client sent AUTH without service".into());
        }
        if self.requests.iter().any(|r| r.id == id) {
            return self.close(out, format!("client sent a duplicate request id {id}"));
        }
        if self.requests.len() >= MAX_REQUESTS {
            out.push(Event::Send(fail_line(
                id,
                None,
                Some("temp_fail"),
                "Too many requests",
            )));
            return;
        }
        let initial = match resp {
            None => None,
            Some(b"") if self.minor < 2 => None,
            Some(b"") | Some(b"=") => Some(Zeroizing::new(Vec::new())),
            Some(v) => match decode(v) {
                Some(d) => Some(d),
                None => {
                    out.push(Event::Send(fail_line(
                        id,
                        None,
                        Some("invalid_base64"),
                        "Invalid base64 data in initial response",
                    )));
                    return;
                }
            },
        };
        self.requests.push(Request {
            id,
            state: Pending::Working,
            params: params.clone(),
            since: now,
        });
        out.push(Event::Auth {
            id,
            mech,
            params,
            initial,
        });
    }

    fn cont(&mut self, line: &[u8], now: Instant, out: &mut Vec<Event>) {
        let rest = &line[5.min(line.len())..];
        let Some(tab) = memchr::memchr(b'\t', rest) else {
            return self.close(out, "client sent a broken CONT request".into());
        };
        let Some(id) = parse_u32(&rest[..tab]) else {
            return self.close(out, "client sent a broken CONT request".into());
        };
        let data = &rest[tab + 1..];
        let Some(at) = self.requests.iter().position(|r| r.id == id) else {
            out.push(Event::Send(fail_line(
                id,
                None,
                None,
                "Authentication request timed out",
            )));
            return;
        };
        let req = self.requests.swap_remove(at);
        match req.state {
            Pending::Working => out.push(Event::Send(fail_line(
                id,
                None,
                None,
                "Unexpected continuation",
            ))),
            Pending::WantFinal(user) => out.push(Event::Send(ok_line(id, &user, None))),
            Pending::WantCont(exchange) => match decode(data) {
                Some(data) => {
                    self.requests.push(Request {
                        id,
                        state: Pending::Working,
                        params: req.params.clone(),
                        since: now,
                    });
                    out.push(Event::Cont {
                        id,
                        exchange,
                        data,
                        params: req.params,
                    });
                }
                None => out.push(Event::Send(fail_line(
                    id,
                    None,
                    Some("invalid_base64"),
                    "Invalid base64 data in continued response",
                ))),
            },
        }
    }

    fn working(&mut self, id: u32) -> Option<usize> {
        self.requests
            .iter()
            .position(|r| r.id == id && matches!(r.state, Pending::Working))
    }

    /// Sends a challenge for request `id` (`None`: the request is gone, cancelled or
    /// answered by the protocol meanwhile; drop the exchange).
    pub fn challenge(
        &mut self,
        id: u32,
        data: &[u8],
        exchange: Exchange,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let at = self.working(id)?;
        let r = &mut self.requests[at];
        r.state = Pending::WantCont(exchange);
        r.since = now;
        let mut line = format!("CONT\t{id}\t").into_bytes();
        line.extend_from_slice(B64.encode(data).as_bytes());
        line.push(b'\n');
        Some(line)
    }

    /// Answers a success for `user` (with SCRAM's `final_data`: in the `OK` if the
    /// client sent `final-resp-ok`, else in a `CONT` first).
    pub fn success(
        &mut self,
        id: u32,
        user: &[u8],
        final_data: Option<&[u8]>,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let at = self.working(id)?;
        match final_data {
            Some(d) if !self.requests[at].params.final_resp_ok => {
                let r = &mut self.requests[at];
                r.state = Pending::WantFinal(user.to_vec());
                r.since = now;
                let mut line = format!("CONT\t{id}\t").into_bytes();
                line.extend_from_slice(B64.encode(d).as_bytes());
                line.push(b'\n');
                Some(line)
            }
            _ => {
                self.requests.swap_remove(at);
                Some(ok_line(id, user, final_data))
            }
        }
    }

    /// Answers a failure.
    pub fn failure(
        &mut self,
        id: u32,
        user: Option<&[u8]>,
        code: Option<&str>,
        reason: &str,
    ) -> Option<Vec<u8>> {
        let at = self.working(id)?;
        self.requests.swap_remove(at);
        Some(fail_line(id, user, code, reason))
    }

    /// Fails every request that has waited for the client longer than `timeout`.
    pub fn expire(&mut self, now: Instant, timeout: Duration, out: &mut Vec<Event>) {
        let mut i = 0;
        while i < self.requests.len() {
            let r = &self.requests[i];
            if !matches!(r.state, Pending::Working)
                && now.saturating_duration_since(r.since) >= timeout
            {
                let r = self.requests.swap_remove(i);
                out.push(Event::Send(fail_line(
                    r.id,
                    None,
                    None,
                    "Authentication request timed out",
                )));
            } else {
                i += 1;
            }
        }
    }
}

fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Decodes base64 (standard alphabet, padding as sent), into a wiped buffer.
fn decode(v: &[u8]) -> Option<Secret> {
    let mut out = Zeroizing::new(vec![0u8; v.len() / 4 * 3 + 3]);
    let n = B64.decode_slice(v, &mut out[..]).ok()?;
    out.truncate(n);
    Some(out)
}

/// `OK <id> user=<user> [resp=<b64>]`.
pub fn ok_line(id: u32, user: &[u8], resp: Option<&[u8]>) -> Vec<u8> {
    let mut line = format!("OK\t{id}\tuser=").into_bytes();
    escape(user, &mut line);
    if let Some(r) = resp {
        line.extend_from_slice(b"\tresp=");
        line.extend_from_slice(B64.encode(r).as_bytes());
    }
    line.push(b'\n');
    line
}

/// `FAIL <id> [user=] [code=] reason=`.
pub fn fail_line(id: u32, user: Option<&[u8]>, code: Option<&str>, reason: &str) -> Vec<u8> {
    let mut line = format!("FAIL\t{id}").into_bytes();
    if let Some(u) = user {
        line.extend_from_slice(b"\tuser=");
        escape(u, &mut line);
    }
    if let Some(c) = code {
        line.extend_from_slice(b"\tcode=");
        line.extend_from_slice(c.as_bytes());
    }
    line.extend_from_slice(b"\treason=");
    escape(reason.as_bytes(), &mut line);
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::super::mech::test_env::env;
    use super::*;

    fn session() -> (Session, Instant) {
        let mut s = Session::new(Mechanism::ALL.to_vec());
        let now = Instant::now();
        let mut out = Vec::new();
        s.feed(b"VERSION\t1\t0\nCPID\t42\n", now, &mut out);
        assert!(out.is_empty() && s.ready());
        (s, now)
    }

    fn feed(s: &mut Session, now: Instant, line: &str) -> Vec<Event> {
        let mut out = Vec::new();
        s.feed(line.as_bytes(), now, &mut out);
        out
    }

    fn sent(e: &Event) -> String {
        match e {
            Event::Send(l) => String::from_utf8(l.clone()).unwrap(),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn handshake_lines() {
        let h = Handshake {
            mechanisms: vec![Mechanism::Plain, Mechanism::CramMd5, Mechanism::ScramSha256],
            spid: 7,
            cuid: 3,
            cookie: [0xab; 16],
        };
        assert_eq!(
            String::from_utf8(h.render()).unwrap(),
            "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tCRAM-MD5\tdictionary\tactive\n\
             MECH\tSCRAM-SHA-256\tmutual-auth\nSPID\t7\nCUID\t3\n\
             COOKIE\tabababababababababababababababab\nDONE\n"
        );
    }

    #[test]
    fn handshake_errors_close() {
        for bad in [
            "VERSION\t2\t0\n",
            "HELLO\n",
            "VERSION\t1\n",
            "VERSION\t1\t0\nAUTH\t1\tPLAIN\n",
            "VERSION\t1\t0\nCPID\t0\n",
        ] {
            let mut s = Session::new(Mechanism::ALL.to_vec());
            let mut out = Vec::new();
            s.feed(bad.as_bytes(), Instant::now(), &mut out);
            assert!(
                matches!(out.last(), Some(Event::Close(_))),
                "{bad:?}: {out:?}"
            );
        }
    }

    #[test]
    fn auth_in_pieces_with_initial_response() {
        let (mut s, now) = session();
        let line = "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=10.1.2.3\tsecured\tresp=AGFsaWNlAHB3\n";
        let mut out = Vec::new();
        for b in line.as_bytes() {
            s.feed(std::slice::from_ref(b), now, &mut out);
        }
        let [
            Event::Auth {
                id: 1,
                mech: Mechanism::Plain,
                params,
                initial: Some(i),
            },
        ] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(&i[..], b"\0alice\0pw");
        assert_eq!(params.rip.as_deref(), Some(&b"10.1.2.3"[..]));
        assert_eq!(params.service, b"smtp");
        let ok = s.success(1, b"alice", None, now).unwrap();
        assert_eq!(ok, b"OK\t1\tuser=alice\n");
        assert!(!s.has_requests());
        // The id is free again.
        assert!(matches!(
            feed(&mut s, now, "AUTH\t1\tPLAIN\tservice=smtp\n")[..],
            [Event::Auth { initial: None, .. }]
        ));
    }

    #[test]
    fn empty_resp_by_minor_version() {
        let (mut s, now) = session();
        let out = feed(
            &mut s,
            now,
            "AUTH\t1\tPLAIN\tservice=smtp\tresp=\nAUTH\t2\tPLAIN\tservice=smtp\tresp==\n",
        );
        assert!(
            matches!(&out[..], [Event::Auth { initial: None, .. }, Event::Auth { initial: Some(i), .. }] if i.is_empty())
        );
        let mut s = Session::new(Mechanism::ALL.to_vec());
        let out = feed(
            &mut s,
            now,
            "VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\tresp=\n",
        );
        assert!(matches!(&out[..], [Event::Auth { initial: Some(i), .. }] if i.is_empty()));
    }

    #[test]
    fn protocol_errors() {
        let (mut s, now) = session();
        let out = feed(&mut s, now, "AUTH\t1\tPLAIN\tservice=smtp\tresp=!!!\n");
        assert_eq!(
            sent(&out[0]),
            "FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"
        );
        let out = feed(&mut s, now, "CONT\t9\tAAAA\n");
        assert_eq!(
            sent(&out[0]),
            "FAIL\t9\treason=Authentication request timed out\n"
        );
        let out = feed(&mut s, now, "AUTH\t2\tLOGIN\tservice=smtp\n");
        assert!(matches!(out[..], [Event::Auth { id: 2, .. }]));
        let out = feed(&mut s, now, "CONT\t2\tAAAA\n");
        assert_eq!(sent(&out[0]), "FAIL\t2\treason=Unexpected continuation\n");
        assert!(s.ready());
        for bad in [
            "AUTH\t0\tPLAIN\tservice=smtp\n",
            "AUTH\tx\tPLAIN\tservice=smtp\n",
            "AUTH\t1\tNTLM\tservice=smtp\n",
            "AUTH\t1\tPLAIN\n",
            "AUTH\t1\tPLAIN\tservice=smtp\tresp=AA==\trip=1\n",
            "CONT\t1\n",
            "BOGUS\n",
            "\n",
        ] {
            let (mut s, now) = session();
            let out = feed(&mut s, now, bad);
            assert!(
                matches!(out.last(), Some(Event::Close(_))),
                "{bad:?}: {out:?}"
            );
        }
        let (mut s, now) = session();
        feed(&mut s, now, "AUTH\t5\tPLAIN\tservice=smtp\n");
        let out = feed(&mut s, now, "AUTH\t5\tPLAIN\tservice=smtp\n");
        assert!(matches!(out[..], [Event::Close(_)]));
        // A mechanism not offered is unknown.
        let mut s = Session::new(vec![Mechanism::Plain]);
        let out = feed(
            &mut s,
            now,
            "VERSION\t1\t0\nCPID\t1\nAUTH\t1\tCRAM-MD5\tservice=smtp\n",
        );
        assert!(matches!(out[..], [Event::Close(_)]));
    }

    #[test]
    fn long_lines_close() {
        let (mut s, now) = session();
        let mut out = Vec::new();
        let chunk = vec![b'A'; 4096];
        for _ in 0..4 {
            s.feed(&chunk, now, &mut out);
        }
        assert!(out.is_empty());
        s.feed(b"AA", now, &mut out);
        assert!(matches!(out[..], [Event::Close(_)]));
        // A line of exactly MAX_LINE bytes is fine.
        let (mut s, now) = session();
        let mut line = b"CANCEL\t1\t".to_vec();
        line.resize(MAX_LINE, b'x');
        line.push(b'\n');
        let mut out = Vec::new();
        s.feed(&line, now, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn scram_final_in_cont_unless_final_resp_ok() {
        let env = env();
        let (mut s, now) = session();
        let out = feed(&mut s, now, "AUTH\t3\tSCRAM-SHA-1\tservice=smtp\n");
        assert!(matches!(out[..], [Event::Auth { id: 3, .. }]));
        let (x, _) = Exchange::start(Mechanism::ScramSha1, None, &env);
        assert_eq!(s.challenge(3, b"", x, now).unwrap(), b"CONT\t3\t\n");
        let out = feed(&mut s, now, "CONT\t3\tbiwsbj1hLHI9Yg==\n");
        let [Event::Cont { id: 3, data, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(&data[..], b"n,,n=a,r=b");
        assert_eq!(
            s.success(3, b"a", Some(b"v=xyz"), now).unwrap(),
            b"CONT\t3\tdj14eXo=\n"
        );
        let out = feed(&mut s, now, "CONT\t3\t\n");
        assert_eq!(sent(&out[0]), "OK\t3\tuser=a\n");
        // With final-resp-ok, the OK carries it.
        feed(
            &mut s,
            now,
            "AUTH\t4\tSCRAM-SHA-1\tservice=smtp\tfinal-resp-ok\n",
        );
        assert_eq!(
            s.success(4, b"a", Some(b"v=xyz"), now).unwrap(),
            b"OK\t4\tuser=a\tresp=dj14eXo=\n"
        );
    }

    #[test]
    fn expiry_and_cancel() {
        let env = env();
        let (mut s, now) = session();
        feed(
            &mut s,
            now,
            "AUTH\t1\tLOGIN\tservice=smtp\nAUTH\t2\tLOGIN\tservice=smtp\n",
        );
        let (x, _) = Exchange::start(Mechanism::Login, None, &env);
        s.challenge(1, b"Username:", x, now).unwrap();
        let t = Duration::from_secs(60);
        assert_eq!(s.next_expiry(t), Some(now + t));
        let mut out = Vec::new();
        s.expire(now + t, t, &mut out);
        assert_eq!(
            sent(&out[0]),
            "FAIL\t1\treason=Authentication request timed out\n"
        );
        // Request 2 is being worked on: it does not expire, and can be cancelled.
        assert!(s.has_requests());
        feed(&mut s, now, "CANCEL\t2\n");
        assert!(!s.has_requests());
        assert!(s.failure(2, None, None, "x").is_none());
    }

    #[test]
    fn escaping_round_trips() {
        let mut e = Vec::new();
        escape(b"a\tb\nc\rd\x01e\0", &mut e);
        assert_eq!(e, b"a\x01tb\x01nc\x01rd\x011e\x010");
        assert_eq!(&unescape(&e)[..], b"a\tb\nc\rd\x01e\0");
        assert_eq!(
            fail_line(1, Some(b"a\tb"), Some("temp_fail"), "x"),
            b"FAIL\t1\tuser=a\x01tb\tcode=temp_fail\treason=x\n"
        );
    }
}
