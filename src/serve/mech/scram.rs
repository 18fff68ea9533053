//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, without channel
//! binding.
//!
//! Where the keys come from, as Cyrus's SCRAM plugin decides:
//! - a stored plaintext `userPassword`: `SaltedPassword = PBKDF2(password, salt,
//!   4096)` at the client's proof, with a salt derived from a per-process key and the
//!   user name (HMAC-SHA-256), so repeated logins see the same salt;
//! - else a stored `authPassword` of this hash: its salt, iteration count and keys;
//! - else (unknown user, or nothing usable): the decoy password, with a salt derived
//!   exactly as for a plaintext user. The client cannot tell it from a real user until
//!   its proof fails.
//!
//! Every exchange costs exactly one PBKDF2 of 4096 rounds on the server (a user with
//! a stored `authPassword` gets a decoy one), so the answer time says nothing about
//! which case applies.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::digest::Digest;
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Failure, MAX_AUTHCID, MechEnv, Progress};
use crate::account::secrets::scram::SCRAM_DEFAULT_ITERATIONS;
use crate::account::secrets::{ScramHash, ScramSecret};
use crate::record::Secret;
use crate::serve::authority::Credentials;

/// Longest client nonce accepted.
const MAX_NONCE: usize = 256;
/// Salt length for derived salts.
const SALT_LEN: usize = 16;

/// Where the keys come from.
#[derive(Default)]
enum Source {
    #[default]
    None,
    Stored {
        stored_key: Secret,
        server_key: Secret,
    },
    Plain(Secret),
    Decoy,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::None => "None",
            Source::Stored { .. } => "Stored",
            Source::Plain(_) => "Plain",
            Source::Decoy => "Decoy",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    ClientFirst,
    Lookup,
    ClientFinal,
    Done,
}

/// The SCRAM exchange.
#[derive(Debug)]
pub struct Scram {
    hash: ScramHash,
    stage: Stage,
    gs2_header: Vec<u8>,
    client_first_bare: Vec<u8>,
    authcid: Option<Vec<u8>>,
    nonce: Vec<u8>,
    server_first: Vec<u8>,
    salt: Vec<u8>,
    iterations: u32,
    source: Source,
}

/// The parts of a client-first message.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    /// `n,,`, `y,,` or `n,a=NAME,`: echoed in the final message's `c=`.
    pub gs2_header: &'a [u8],
    /// The rest, part of the AuthMessage.
    pub bare: &'a [u8],
    /// The user name, unescaped.
    pub user: Vec<u8>,
    /// The client nonce.
    pub nonce: &'a [u8],
}

/// Undoes saslname escaping (`=2C` is `,`, `=3D` is `=`; anything else after `=` is
/// an error, as is a NUL).
fn unescape(name: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'=' => {
                match name.get(i + 1..i + 3) {
                    Some(b"2C") | Some(b"2c") => out.push(b','),
                    Some(b"3D") | Some(b"3d") => out.push(b'='),
                    _ => return Err(Failure::Malformed("bad escape in the SCRAM user name")),
                }
                i += 3;
            }
            0 => return Err(Failure::Malformed("NUL in the SCRAM user name")),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn printable_nonce(n: &[u8]) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NONCE
        && n.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Parses a client-first message.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst<'_>, Failure> {
    let bad = |what| Failure::Malformed(what);
    let c1 = msg
        .iter()
        .position(|&b| b == b',')
        .ok_or(bad("SCRAM message without a GS2 header"))?;
    match &msg[..c1] {
        b"n" | b"y" => {}
        f if f.starts_with(b"p=") => return Err(bad("SCRAM channel binding is not supported")),
        _ => return Err(bad("bad SCRAM GS2 flag")),
    }
    let c2 = c1
        + 1
        + msg[c1 + 1..]
            .iter()
            .position(|&b| b == b',')
            .ok_or(bad("SCRAM message without a GS2 header"))?;
    let authzid = &msg[c1 + 1..c2];
    let gs2_header = &msg[..=c2];
    let bare = &msg[c2 + 1..];
    let mut fields = bare.split(|&b| b == b',');
    let user = match fields.next() {
        Some(f) if f.starts_with(b"m=") => return Err(bad("SCRAM mandatory extension")),
        Some(f) => f
            .strip_prefix(b"n=")
            .ok_or(bad("SCRAM message without n="))?,
        None => return Err(bad("SCRAM message without n=")),
    };
    let user = unescape(user)?;
    if user.is_empty() || user.len() > MAX_AUTHCID {
        return Err(bad("bad SCRAM user name length"));
    }
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix(b"r="))
        .ok_or(bad("SCRAM message without r="))?;
    if !printable_nonce(nonce) {
        return Err(bad("bad SCRAM client nonce"));
    }
    if !authzid.is_empty() {
        let a = authzid
            .strip_prefix(b"a=")
            .ok_or(bad("bad SCRAM authorization id"))?;
        if unescape(a)? != user {
            return Err(Failure::Authzid);
        }
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        user,
        nonce,
    })
}

/// The parts of a client-final message.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    /// The decoded `c=`.
    pub channel_binding: Vec<u8>,
    /// `r=`.
    pub nonce: &'a [u8],
    /// Everything before `,p=`: part of the AuthMessage.
    pub without_proof: &'a [u8],
    /// The decoded proof.
    pub proof: Vec<u8>,
}

/// Parses a client-final message.
pub fn parse_client_final(msg: &[u8]) -> Result<ClientFinal<'_>, Failure> {
    let bad = |what| Failure::Malformed(what);
    let p = msg
        .windows(3)
        .rposition(|w| w == b",p=")
        .ok_or(bad("SCRAM final message without a proof"))?;
    let without_proof = &msg[..p];
    let proof = B64
        .decode(&msg[p + 3..])
        .map_err(|_| bad("SCRAM proof is not base64"))?;
    let mut fields = without_proof.split(|&b| b == b',');
    let cb = fields
        .next()
        .and_then(|f| f.strip_prefix(b"c="))
        .ok_or(bad("SCRAM final message without c="))?;
    let channel_binding = B64
        .decode(cb)
        .map_err(|_| bad("SCRAM channel binding is not base64"))?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix(b"r="))
        .ok_or(bad("SCRAM final message without r="))?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

fn hmac_of<D: EagerHash>(key: &[u8], msg: &[u8]) -> Secret {
    let mut mac = <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(msg);
    let mut tag = mac.finalize().into_bytes();
    let out = Zeroizing::new(tag.to_vec());
    zeroize::Zeroize::zeroize(&mut tag[..]);
    out
}

fn digest_of<D: Digest>(data: &[u8]) -> Secret {
    let mut d = D::digest(data);
    let out = Zeroizing::new(d.to_vec());
    zeroize::Zeroize::zeroize(&mut d[..]);
    out
}

/// `HMAC-H(key, msg)`.
pub fn hmac(hash: ScramHash, key: &[u8], msg: &[u8]) -> Secret {
    match hash {
        ScramHash::Sha1 => hmac_of::<sha1::Sha1>(key, msg),
        ScramHash::Sha224 => hmac_of::<sha2::Sha224>(key, msg),
        ScramHash::Sha256 => hmac_of::<sha2::Sha256>(key, msg),
        ScramHash::Sha384 => hmac_of::<sha2::Sha384>(key, msg),
        ScramHash::Sha512 => hmac_of::<sha2::Sha512>(key, msg),
    }
}

/// `H(data)`.
pub fn digest(hash: ScramHash, data: &[u8]) -> Secret {
    match hash {
        ScramHash::Sha1 => digest_of::<sha1::Sha1>(data),
        ScramHash::Sha224 => digest_of::<sha2::Sha224>(data),
        ScramHash::Sha256 => digest_of::<sha2::Sha256>(data),
        ScramHash::Sha384 => digest_of::<sha2::Sha384>(data),
        ScramHash::Sha512 => digest_of::<sha2::Sha512>(data),
    }
}

/// The salt handed out for a user without a stored SCRAM secret.
pub fn derived_salt(key: &[u8; 32], hash: ScramHash, authcid: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(authcid.len() + 16);
    msg.extend_from_slice(hash.mechanism().as_bytes());
    msg.push(0);
    msg.extend_from_slice(authcid);
    hmac(ScramHash::Sha256, key, &msg)[..SALT_LEN].to_vec()
}

impl Scram {
    /// Starts; without an initial response the client is sent an empty challenge.
    pub fn start(hash: ScramHash, initial: Option<&[u8]>) -> (Scram, Progress) {
        let mut s = Scram {
            hash,
            stage: Stage::ClientFirst,
            gs2_header: Vec::new(),
            client_first_bare: Vec::new(),
            authcid: None,
            nonce: Vec::new(),
            server_first: Vec::new(),
            salt: Vec::new(),
            iterations: 0,
            source: Source::None,
        };
        let p = match initial {
            Some(m) => s.client_first(m),
            None => Progress::Challenge(Vec::new()),
        };
        (s, p)
    }

    /// The authentication id, once received.
    pub fn authcid(&self) -> Option<&[u8]> {
        self.authcid.as_deref()
    }

    /// Whether the next input is the client proof (a PBKDF2 follows).
    pub fn awaits_proof(&self) -> bool {
        self.stage == Stage::ClientFinal
    }

    fn fail(&mut self, f: Failure) -> Progress {
        self.stage = Stage::Done;
        self.source = Source::None;
        Progress::Failure(f)
    }

    fn client_first(&mut self, msg: &[u8]) -> Progress {
        match parse_client_first(msg) {
            Ok(cf) => {
                self.gs2_header = cf.gs2_header.to_vec();
                self.client_first_bare = cf.bare.to_vec();
                self.nonce = cf.nonce.to_vec();
                self.authcid = Some(cf.user);
                self.stage = Stage::Lookup;
                Progress::Lookup
            }
            Err(f) => self.fail(f),
        }
    }

    /// The client's message: client-first (after an empty challenge), then the final
    /// message with the proof.
    pub fn input(&mut self, msg: &[u8], env: &MechEnv) -> Progress {
        match self.stage {
            Stage::ClientFirst => self.client_first(msg),
            Stage::ClientFinal => self.client_final(msg, env),
            Stage::Lookup | Stage::Done => {
                self.fail(Failure::Malformed("unexpected SCRAM message"))
            }
        }
    }

    /// Chooses salt, iteration count and key source; answers with server-first.
    pub fn credentials(&mut self, creds: Option<Credentials>, env: &MechEnv) -> Progress {
        if self.stage != Stage::Lookup {
            return self.fail(Failure::Malformed("unexpected SCRAM lookup"));
        }
        let authcid = self.authcid.clone().unwrap_or_default();
        let derived = || derived_salt(env.decoy.salt_key(), self.hash, &authcid);
        let plain = creds
            .as_ref()
            .and_then(Credentials::plaintext)
            .map(|p| Zeroizing::new(p.to_vec()));
        let stored = creds.as_ref().and_then(|c| c.scram_for(self.hash));
        (self.salt, self.iterations, self.source) = match (plain, stored) {
            (Some(pw), _) => (derived(), SCRAM_DEFAULT_ITERATIONS, Source::Plain(pw)),
            (None, Some(s)) => (
                s.salt().to_vec(),
                s.iterations(),
                Source::Stored {
                    stored_key: Zeroizing::new(s.stored_key().to_vec()),
                    server_key: Zeroizing::new(s.server_key().to_vec()),
                },
            ),
            (None, None) => (derived(), SCRAM_DEFAULT_ITERATIONS, Source::Decoy),
        };
        let snonce = match super::super::verify::random::<18>() {
            Ok(b) => B64.encode(&b[..]),
            Err(_) => return self.fail(Failure::Malformed("no random numbers")),
        };
        self.nonce.extend_from_slice(snonce.as_bytes());
        let mut sf = Vec::with_capacity(self.nonce.len() + 64);
        sf.extend_from_slice(b"r=");
        sf.extend_from_slice(&self.nonce);
        sf.extend_from_slice(b",s=");
        sf.extend_from_slice(B64.encode(&self.salt).as_bytes());
        sf.extend_from_slice(format!(",i={}", self.iterations).as_bytes());
        self.server_first = sf.clone();
        self.stage = Stage::ClientFinal;
        Progress::Challenge(sf)
    }

    fn client_final(&mut self, msg: &[u8], env: &MechEnv) -> Progress {
        let cf = match parse_client_final(msg) {
            Ok(cf) => cf,
            Err(f) => return self.fail(f),
        };
        if cf.channel_binding != self.gs2_header {
            return self.fail(Failure::Malformed("SCRAM channel binding does not match"));
        }
        if cf.nonce != &self.nonce[..] {
            return self.fail(Failure::Malformed("SCRAM nonce does not match"));
        }
        // The one key derivation of the exchange.
        let decoy = || {
            ScramSecret::compute(
                self.hash,
                env.decoy.plaintext(),
                &self.salt,
                SCRAM_DEFAULT_ITERATIONS,
            )
            .ok()
        };
        let (keys, real) = match std::mem::take(&mut self.source) {
            Source::Plain(pw) => (
                ScramSecret::compute(self.hash, &pw, &self.salt, self.iterations)
                    .ok()
                    .map(|s| {
                        (
                            Zeroizing::new(s.stored_key().to_vec()),
                            Zeroizing::new(s.server_key().to_vec()),
                        )
                    }),
                true,
            ),
            Source::Stored {
                stored_key,
                server_key,
            } => {
                let _ = decoy();
                (Some((stored_key, server_key)), true)
            }
            Source::Decoy | Source::None => (
                decoy().map(|s| {
                    (
                        Zeroizing::new(s.stored_key().to_vec()),
                        Zeroizing::new(s.server_key().to_vec()),
                    )
                }),
                false,
            ),
        };
        let Some((stored_key, server_key)) = keys else {
            return self.fail(Failure::UnknownUser);
        };
        let mut auth_message = Zeroizing::new(Vec::with_capacity(
            self.client_first_bare.len() + self.server_first.len() + cf.without_proof.len() + 2,
        ));
        auth_message.extend_from_slice(&self.client_first_bare);
        auth_message.push(b',');
        auth_message.extend_from_slice(&self.server_first);
        auth_message.push(b',');
        auth_message.extend_from_slice(cf.without_proof);
        let client_signature = hmac(self.hash, &stored_key, &auth_message);
        let ok = if cf.proof.len() == client_signature.len() {
            let client_key: Secret = Zeroizing::new(
                cf.proof
                    .iter()
                    .zip(client_signature.iter())
                    .map(|(a, b)| a ^ b)
                    .collect(),
            );
            bool::from(digest(self.hash, &client_key).ct_eq(&stored_key[..]))
        } else {
            false
        };
        self.stage = Stage::Done;
        match (real, ok) {
            (true, true) => {
                let sig = hmac(self.hash, &server_key, &auth_message);
                let mut v = b"v=".to_vec();
                v.extend_from_slice(B64.encode(&sig[..]).as_bytes());
                Progress::Success {
                    final_data: Some(v),
                }
            }
            (true, false) => Progress::Failure(Failure::Mismatch),
            (false, _) => Progress::Failure(Failure::UnknownUser),
        }
    }
}

/// `PBKDF2-HMAC-H(password, salt, iterations)`.
fn salted_password(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Secret {
    let mut out = Zeroizing::new(vec![0u8; hash.output_len()]);
    match hash {
        ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out),
        ScramHash::Sha224 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha224>(password, salt, iterations, &mut out)
        }
        ScramHash::Sha256 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out)
        }
        ScramHash::Sha384 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha384>(password, salt, iterations, &mut out)
        }
        ScramHash::Sha512 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out)
        }
    }
    out
}

/// The client side, for tests and the load generator: given the client-first-bare
/// message it sent (after the GS2 header) and the server-first message, the
/// client-final message for `password`, and the server-final message it must get.
/// `None` when the server-first message is malformed.
pub fn client_final(
    hash: ScramHash,
    password: &[u8],
    gs2_header: &[u8],
    client_first_bare: &[u8],
    server_first: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    let text = std::str::from_utf8(server_first).ok()?;
    let field = |k: &str| text.split(',').find_map(|f| f.strip_prefix(k));
    let nonce = field("r=")?;
    let salt = B64.decode(field("s=")?).ok()?;
    let iterations: u32 = field("i=")?.parse().ok()?;
    let salted = salted_password(hash, password, &salt, iterations);
    let client_key = hmac(hash, &salted, b"Client Key");
    let stored_key = digest(hash, &client_key);
    let server_key = hmac(hash, &salted, b"Server Key");
    let without_proof = format!("c={},r={nonce}", B64.encode(gs2_header));
    let mut am = client_first_bare.to_vec();
    am.push(b',');
    am.extend_from_slice(server_first);
    am.push(b',');
    am.extend_from_slice(without_proof.as_bytes());
    let sig = hmac(hash, &stored_key, &am);
    let proof: Vec<u8> = client_key
        .iter()
        .zip(sig.iter())
        .map(|(a, b)| a ^ b)
        .collect();
    let server_sig = hmac(hash, &server_key, &am);
    let msg = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
    let mut v = b"v=".to_vec();
    v.extend_from_slice(B64.encode(&server_sig[..]).as_bytes());
    Some((msg, v))
}

#[cfg(test)]
mod tests {
    use super::super::test_env::{env, plain_creds};
    use super::*;

    /// RFC 5802 section 5 and RFC 7677 section 3: the client's proof and the server
    /// signature for user "user", password "pencil", with the RFC's nonces and salt.
    #[test]
    fn rfc_vectors() {
        for (hash, cfirst, sfirst, cfinal, sfinal, salt) in [
            (
                ScramHash::Sha1,
                "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
                "QSXCR+Q6sek8bf92",
            ),
            (
                ScramHash::Sha256,
                "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
                "W22ZaJ0SNY7soEsUEjb6gQ==",
            ),
        ] {
            let env = env();
            let stored =
                ScramSecret::compute(hash, b"pencil", &B64.decode(salt).unwrap(), 4096).unwrap();
            let (mut s, p) = Scram::start(hash, Some(cfirst.as_bytes()));
            assert!(matches!(p, Progress::Lookup));
            assert_eq!(s.authcid(), Some(&b"user"[..]));
            let creds = Credentials {
                scram: Some(stored),
                ..Credentials::default()
            };
            let Progress::Challenge(_) = s.credentials(Some(creds), &env) else {
                panic!()
            };
            // Replace our random server nonce with the RFC's.
            s.nonce = sfirst.split(',').next().unwrap().as_bytes()[2..].to_vec();
            s.server_first = sfirst.as_bytes().to_vec();
            assert!(s.awaits_proof());
            match s.input(cfinal.as_bytes(), &env) {
                Progress::Success { final_data } => {
                    assert_eq!(final_data.as_deref(), Some(sfinal.as_bytes()))
                }
                p => panic!("{hash}: {p:?}"),
            }
            // The test client computes the same messages.
            let (m, v) = client_final(
                hash,
                b"pencil",
                b"n,,",
                &cfirst.as_bytes()[3..],
                sfirst.as_bytes(),
            )
            .unwrap();
            assert_eq!(m, cfinal.as_bytes());
            assert_eq!(v, sfinal.as_bytes());
        }
    }

    fn exchange(hash: ScramHash, creds: Option<Credentials>, pw: &[u8]) -> Progress {
        let env = env();
        let cfirst = b"n,,n=alice,r=abcdef";
        let (mut s, p) = Scram::start(hash, None);
        assert!(matches!(p, Progress::Challenge(ref c) if c.is_empty()));
        assert!(matches!(s.input(cfirst, &env), Progress::Lookup));
        let Progress::Challenge(sfirst) = s.credentials(creds, &env) else {
            panic!()
        };
        let (m, v) = client_final(hash, pw, b"n,,", &cfirst[3..], &sfirst).unwrap();
        let p = s.input(&m, &env);
        if let Progress::Success { final_data } = &p {
            assert_eq!(final_data.as_deref(), Some(&v[..]));
        }
        p
    }

    #[test]
    fn plaintext_stored_and_unknown() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let ok = |p: Progress| matches!(p, Progress::Success { .. });
            assert!(ok(exchange(hash, Some(plain_creds(b"pw")), b"pw")));
            assert!(matches!(
                exchange(hash, Some(plain_creds(b"pw")), b"px"),
                Progress::Failure(Failure::Mismatch)
            ));
            let stored = Credentials {
                scram: Some(ScramSecret::compute(hash, b"pw", b"salt", 64).unwrap()),
                ..Credentials::default()
            };
            assert!(ok(exchange(hash, Some(stored.clone()), b"pw")));
            assert!(matches!(
                exchange(hash, Some(stored), b"px"),
                Progress::Failure(Failure::Mismatch)
            ));
            assert!(matches!(
                exchange(hash, None, b"pw"),
                Progress::Failure(Failure::UnknownUser)
            ));
        }
        // A stored secret of the other hash does not serve.
        let other = Credentials {
            scram: Some(ScramSecret::compute(ScramHash::Sha256, b"pw", b"salt", 64).unwrap()),
            ..Credentials::default()
        };
        assert!(matches!(
            exchange(ScramHash::Sha1, Some(other), b"pw"),
            Progress::Failure(Failure::UnknownUser)
        ));
    }

    #[test]
    fn salts_are_stable_and_alike() {
        let env = env();
        let salt_of = |creds: Option<Credentials>| {
            let (mut s, _) = Scram::start(ScramHash::Sha1, Some(b"n,,n=alice,r=x"));
            let Progress::Challenge(sf) = s.credentials(creds, &env) else {
                panic!()
            };
            String::from_utf8(sf)
                .unwrap()
                .split(',')
                .nth(1)
                .unwrap()
                .to_string()
        };
        let known = salt_of(Some(plain_creds(b"pw")));
        assert_eq!(known, salt_of(None));
        assert_eq!(known, salt_of(Some(plain_creds(b"other"))));
    }

    #[test]
    fn malformed_messages() {
        for bad in [
            &b""[..],
            b"n",
            b"x,,n=a,r=b",
            b"p=tls-unique,,n=a,r=b",
            b"n,,m=ext,n=a,r=b",
            b"n,,n=,r=b",
            b"n,,n=a=2,r=b",
            b"n,,n=a",
            b"n,,n=a,r=",
            b"n,x,n=a,r=b",
        ] {
            assert!(
                parse_client_first(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_client_first(b"n,a=bob,n=alice,r=x"),
            Err(Failure::Authzid)
        );
        let cf = parse_client_first(b"y,a=a=2Cb,n=a=2Cb,r=x,ext=1").unwrap();
        assert_eq!(cf.user, b"a,b");
        assert_eq!(cf.gs2_header, b"y,a=a=2Cb,");
        for bad in [
            &b""[..],
            b"c=biws,r=x",
            b"c=biws,r=x,p=!!",
            b"c=!,r=x,p=AA==",
            b"r=x,c=biws,p=AA==",
        ] {
            assert!(
                parse_client_final(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
