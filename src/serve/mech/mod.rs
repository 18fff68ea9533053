//! The server side of the SASL mechanisms `sasldb serve` offers over the Dovecot
//! protocol, as sans-I/O state machines: bytes from the client in, a [`Progress`]
//! out. No mechanism reads the database itself: it asks for a [`Progress::Lookup`]
//! of its authentication id, and the caller answers with
//! [`Exchange::credentials`].
//!
//! | mechanism | needs | Dovecot flags |
//! |---|---|---|
//! | PLAIN (RFC 4616) | any password secret | `plaintext` |
//! | LOGIN | any password secret | `plaintext` |
//! | CRAM-MD5 (RFC 2195) | the plaintext `userPassword` | `dictionary active` |
//! | SCRAM-SHA-1, SCRAM-SHA-256 (RFC 5802, 7677) | the plaintext, or an `authPassword` of that hash | `mutual-auth` |
//!
//! An unknown user goes through the same steps as a known one with a wrong
//! password, against the [`Decoy`]: CRAM-MD5 computes an HMAC with the decoy
//! password, SCRAM hands out a salt derived from the name exactly as for a user with
//! a plaintext password, and every SCRAM exchange costs one PBKDF2.

pub mod cram_md5;
pub mod login;
pub mod plain;
pub mod scram;

use super::authority::Credentials;
use super::verify::Decoy;
use crate::account::secrets::ScramHash;
use crate::record::{MAX_NAME_LEN, MAX_SECRET_LEN};

/// Longest authentication id a mechanism accepts: `user@realm` with both at their
/// longest.
pub const MAX_AUTHCID: usize = 2 * MAX_NAME_LEN + 1;
/// Longest password a mechanism accepts (one byte more than any stored secret, so
/// Cyrus's C-string truncation cannot be abused with a longer one).
pub const MAX_PASSWORD: usize = MAX_SECRET_LEN + 1;

/// A mechanism `sasldb serve` implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN.
    Plain,
    /// LOGIN.
    Login,
    /// CRAM-MD5.
    CramMd5,
    /// SCRAM-SHA-1.
    ScramSha1,
    /// SCRAM-SHA-256.
    ScramSha256,
}

impl Mechanism {
    /// Every mechanism, in the order they are announced.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::CramMd5,
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
    ];

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// Looks a SASL name up (case-insensitive, as SASL names are).
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The flags Dovecot announces for it (`MECH` lines), tab-separated.
    pub fn dovecot_flags(self) -> &'static str {
        match self {
            Mechanism::Plain | Mechanism::Login => "plaintext",
            Mechanism::CramMd5 => "dictionary\tactive",
            Mechanism::ScramSha1 | Mechanism::ScramSha256 => "mutual-auth",
        }
    }

    /// The SCRAM hash, for the SCRAM mechanisms.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            _ => None,
        }
    }

    /// Whether a database with these secrets can serve it: PLAIN and LOGIN always
    /// (they check any secret), CRAM-MD5 with plaintext, SCRAM with plaintext or an
    /// `authPassword` of its hash.
    pub fn servable(self, inv: &super::authority::Inventory) -> bool {
        match self {
            Mechanism::Plain | Mechanism::Login => true,
            Mechanism::CramMd5 => inv.plaintext > 0,
            Mechanism::ScramSha1 | Mechanism::ScramSha256 => {
                inv.plaintext > 0 || self.scram_hash().is_some_and(|h| inv.scram_of(h) > 0)
            }
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the mechanisms need besides the client's bytes.
#[derive(Debug)]
pub struct MechEnv<'a> {
    /// The host name in CRAM-MD5 challenges.
    pub hostname: &'a str,
    /// Stand-in secrets for users without them.
    pub decoy: &'a Decoy,
}

/// Why an exchange failed. The client is only ever told "authentication failed";
/// the log gets [`Failure::describe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The password (or proof) is wrong.
    Mismatch,
    /// The user has no credentials (unknown, or none this mechanism can use).
    UnknownUser,
    /// The client asked to act as another user (authorization id), which is not
    /// supported.
    Authzid,
    /// The client's message is malformed.
    Malformed(&'static str),
}

impl Failure {
    /// For the log.
    pub fn describe(self) -> &'static str {
        match self {
            Failure::Mismatch => "wrong password",
            Failure::UnknownUser => "unknown user or no usable secret",
            Failure::Authzid => "authorization id differs from the user",
            Failure::Malformed(what) => what,
        }
    }
}

/// What happens next in an exchange.
#[derive(Debug)]
pub enum Progress {
    /// Send this challenge to the client and pass its answer to [`Exchange::input`].
    Challenge(Vec<u8>),
    /// Look [`Exchange::authcid`] up and pass the result to
    /// [`Exchange::credentials`].
    Lookup,
    /// The client is authenticated; `final_data` (the SCRAM server signature) goes
    /// with the success.
    Success {
        /// Data for the client with the success, if any.
        final_data: Option<Vec<u8>>,
    },
    /// Authentication failed.
    Failure(Failure),
}

/// One authentication exchange, server side.
#[derive(Debug)]
pub struct Exchange {
    mech: Mechanism,
    state: State,
    /// The authentication id, kept once the mechanism is done.
    done_authcid: Option<Vec<u8>>,
}

#[derive(Debug)]
enum State {
    Plain(plain::Plain),
    Login(login::Login),
    CramMd5(cram_md5::CramMd5),
    Scram(Box<scram::Scram>),
    Done,
}

impl Exchange {
    /// Starts an exchange; `initial` is the client's initial response, if it sent one.
    pub fn start(mech: Mechanism, initial: Option<&[u8]>, env: &MechEnv) -> (Exchange, Progress) {
        let (state, progress) = match mech {
            Mechanism::Plain => {
                let (s, p) = plain::Plain::start(initial);
                (State::Plain(s), p)
            }
            Mechanism::Login => {
                let (s, p) = login::Login::start(initial);
                (State::Login(s), p)
            }
            Mechanism::CramMd5 => {
                let (s, p) = cram_md5::CramMd5::start(initial, env);
                (State::CramMd5(s), p)
            }
            Mechanism::ScramSha1 | Mechanism::ScramSha256 => {
                let hash = mech.scram_hash().unwrap_or(ScramHash::Sha1);
                let (s, p) = scram::Scram::start(hash, initial);
                (State::Scram(Box::new(s)), p)
            }
        };
        let mut x = Exchange {
            mech,
            state,
            done_authcid: None,
        };
        x.settle(&progress);
        (x, progress)
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// The authentication id the client gave, once it has given one.
    pub fn authcid(&self) -> Option<&[u8]> {
        match &self.state {
            State::Plain(s) => s.authcid(),
            State::Login(s) => s.authcid(),
            State::CramMd5(s) => s.authcid(),
            State::Scram(s) => s.authcid(),
            State::Done => self.done_authcid.as_deref(),
        }
    }

    /// The client's answer to the last challenge.
    pub fn input(&mut self, data: &[u8], env: &MechEnv) -> Progress {
        let p = match &mut self.state {
            State::Plain(s) => s.input(data),
            State::Login(s) => s.input(data),
            State::CramMd5(s) => s.input(data),
            State::Scram(s) => s.input(data, env),
            State::Done => Progress::Failure(Failure::Malformed("input after the end")),
        };
        self.settle(&p);
        p
    }

    /// The answer to [`Progress::Lookup`]: the user's credentials (`None`: unknown).
    pub fn credentials(&mut self, creds: Option<Credentials>, env: &MechEnv) -> Progress {
        let p = match &mut self.state {
            State::Plain(s) => s.credentials(creds.as_ref(), env),
            State::Login(s) => s.credentials(creds.as_ref(), env),
            State::CramMd5(s) => s.credentials(creds.as_ref(), env),
            State::Scram(s) => s.credentials(creds, env),
            State::Done => Progress::Failure(Failure::Malformed("lookup after the end")),
        };
        self.settle(&p);
        p
    }

    /// Whether the next [`Exchange::credentials`] call with `creds` costs a key
    /// derivation (run it off the event loop).
    pub fn credentials_costly(&self, creds: Option<&Credentials>, env: &MechEnv) -> bool {
        match &self.state {
            State::Plain(_) | State::Login(_) => super::verify::plain_is_costly(creds, env.decoy),
            _ => false,
        }
    }

    /// Whether the next [`Exchange::input`] call costs a key derivation (the SCRAM
    /// client proof).
    pub fn input_costly(&self) -> bool {
        matches!(&self.state, State::Scram(s) if s.awaits_proof())
    }

    fn settle(&mut self, p: &Progress) {
        if matches!(p, Progress::Success { .. } | Progress::Failure(_)) {
            self.done_authcid = self.authcid().map(<[u8]>::to_vec);
            self.state = State::Done;
        }
    }
}

/// Checks an authentication id's length.
fn check_authcid(authcid: &[u8]) -> Result<(), Failure> {
    if authcid.is_empty() {
        Err(Failure::Malformed("empty user name"))
    } else if authcid.len() > MAX_AUTHCID {
        Err(Failure::Malformed("user name too long"))
    } else if authcid.contains(&0) {
        Err(Failure::Malformed("NUL in the user name"))
    } else {
        Ok(())
    }
}

/// A plaintext password check shared by PLAIN and LOGIN.
fn check_password(creds: Option<&Credentials>, password: &[u8], env: &MechEnv) -> Progress {
    use crate::account::Verdict;
    match super::verify::verify_plain(creds, password, env.decoy) {
        Verdict::Match => Progress::Success { final_data: None },
        Verdict::Mismatch => Progress::Failure(Failure::Mismatch),
        Verdict::NoSuchUser | Verdict::NoUsableSecret => Progress::Failure(Failure::UnknownUser),
    }
}

#[cfg(test)]
pub(crate) mod test_env {
    use super::*;
    use std::sync::OnceLock;

    pub fn decoy() -> &'static Decoy {
        static D: OnceLock<Decoy> = OnceLock::new();
        D.get_or_init(|| Decoy::new().unwrap())
    }

    pub fn env() -> MechEnv<'static> {
        MechEnv {
            hostname: "mail.example.test",
            decoy: decoy(),
        }
    }

    pub fn plain_creds(pw: &[u8]) -> Credentials {
        Credentials {
            user_password: Some(zeroize::Zeroizing::new(pw.to_vec())),
            ..Credentials::default()
        }
    }
}
