//! CRAM-MD5 (RFC 2195): the server sends `<random.time@host>`, the client answers
//! `user SP hex(HMAC-MD5(password, challenge))`. It needs the plaintext password.
//!
//! A user without one (unknown, or hashed-only) is answered after the same HMAC over
//! the decoy password, so the reply takes the same time.

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use subtle::ConstantTimeEq;

use super::{Failure, MechEnv, Progress, check_authcid};
use crate::serve::authority::Credentials;

/// The CRAM-MD5 exchange.
#[derive(Debug, Default)]
pub struct CramMd5 {
    challenge: Vec<u8>,
    authcid: Option<Vec<u8>>,
    digest: [u8; 16],
}

/// `HMAC-MD5(key, msg)`.
pub fn hmac_md5(key: &[u8], msg: &[u8]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Parses `user SP 32 hex digits` (the user ends at the last space).
pub fn parse(resp: &[u8]) -> Result<(&[u8], [u8; 16]), Failure> {
    let sp = resp
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(Failure::Malformed("CRAM-MD5 response without a space"))?;
    let (user, hex) = (&resp[..sp], &resp[sp + 1..]);
    check_authcid(user)?;
    if hex.len() != 32 {
        return Err(Failure::Malformed("CRAM-MD5 digest is not 32 hex digits"));
    }
    let mut digest = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16);
        match (d(pair[0]), d(pair[1])) {
            (Some(h), Some(l)) => digest[i] = (h * 16 + l) as u8,
            _ => return Err(Failure::Malformed("CRAM-MD5 digest is not 32 hex digits")),
        }
    }
    Ok((user, digest))
}

impl CramMd5 {
    /// Sends the challenge (an initial response is refused: the server speaks first).
    pub fn start(initial: Option<&[u8]>, env: &MechEnv) -> (CramMd5, Progress) {
        if initial.is_some_and(|i| !i.is_empty()) {
            return (
                CramMd5::default(),
                Progress::Failure(Failure::Malformed("CRAM-MD5 initial response")),
            );
        }
        let rnd = super::super::verify::random::<8>()
            .map(|b| u64::from_be_bytes(*b))
            .unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let challenge = format!("<{rnd}.{now}@{}>", env.hostname).into_bytes();
        let s = CramMd5 {
            challenge: challenge.clone(),
            ..CramMd5::default()
        };
        (s, Progress::Challenge(challenge))
    }

    /// A server with a fixed challenge (tests).
    #[cfg(test)]
    pub fn with_challenge(challenge: &[u8]) -> CramMd5 {
        CramMd5 {
            challenge: challenge.to_vec(),
            ..CramMd5::default()
        }
    }

    /// The authentication id, once received.
    pub fn authcid(&self) -> Option<&[u8]> {
        self.authcid.as_deref()
    }

    /// The client's response.
    pub fn input(&mut self, resp: &[u8]) -> Progress {
        if self.authcid.is_some() || self.challenge.is_empty() {
            return Progress::Failure(Failure::Malformed("unexpected CRAM-MD5 message"));
        }
        match parse(resp) {
            Ok((user, digest)) => {
                self.authcid = Some(user.to_vec());
                self.digest = digest;
                Progress::Lookup
            }
            Err(f) => Progress::Failure(f),
        }
    }

    /// Checks the digest with the user's plaintext password.
    pub fn credentials(&mut self, creds: Option<&Credentials>, env: &MechEnv) -> Progress {
        if self.authcid.is_none() {
            return Progress::Failure(Failure::Malformed("lookup before the response"));
        }
        let pw = creds.and_then(Credentials::plaintext);
        let key = pw.unwrap_or(env.decoy.plaintext());
        let mut want = hmac_md5(key, &self.challenge);
        let same = bool::from(want.ct_eq(&self.digest));
        zeroize::Zeroize::zeroize(&mut want);
        match (pw, same) {
            (Some(_), true) => Progress::Success { final_data: None },
            (Some(_), false) => Progress::Failure(Failure::Mismatch),
            (None, _) => Progress::Failure(Failure::UnknownUser),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_env::{env, plain_creds};
    use super::*;

    /// RFC 2195's example.
    #[test]
    fn rfc2195() {
        let env = env();
        let mut s = CramMd5::with_challenge(b"<1896.697170952@postoffice.reston.mci.net>");
        assert!(matches!(
            s.input(b"tim b913a602c7eda7a495b4e6e7334d3890"),
            Progress::Lookup
        ));
        assert_eq!(s.authcid(), Some(&b"tim"[..]));
        assert!(matches!(
            s.credentials(Some(&plain_creds(b"tanstaaftanstaaf")), &env),
            Progress::Success { .. }
        ));
        let mut s = CramMd5::with_challenge(b"<1896.697170952@postoffice.reston.mci.net>");
        s.input(b"tim B913A602C7EDA7A495B4E6E7334D3890");
        assert!(matches!(
            s.credentials(Some(&plain_creds(b"tanstaaftanstaaX")), &env),
            Progress::Failure(Failure::Mismatch)
        ));
        let mut s = CramMd5::with_challenge(b"<1.2@h>");
        s.input(b"tim b913a602c7eda7a495b4e6e7334d3890");
        assert!(matches!(
            s.credentials(None, &env),
            Progress::Failure(Failure::UnknownUser)
        ));
        for bad in [
            &b"tim"[..],
            b" b913a602c7eda7a495b4e6e7334d3890",
            b"tim b913",
            b"tim zz13a602c7eda7a495b4e6e7334d3890",
        ] {
            let mut s = CramMd5::with_challenge(b"<1.2@h>");
            assert!(matches!(s.input(bad), Progress::Failure(_)), "{bad:?}");
        }
    }

    #[test]
    fn challenge_shape() {
        let env = env();
        let (_, p) = CramMd5::start(None, &env);
        let Progress::Challenge(c) = p else { panic!() };
        let c = String::from_utf8(c).unwrap();
        assert!(
            c.starts_with('<') && c.ends_with("@mail.example.test>"),
            "{c}"
        );
        assert!(matches!(
            CramMd5::start(Some(b"x"), &env).1,
            Progress::Failure(_)
        ));
    }
}
