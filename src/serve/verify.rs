//! Checking a plaintext password (PLAIN, LOGIN, saslauthd, checkpassword) against
//! stored [`Credentials`], and the [`Decoy`] that makes an unknown user cost what a
//! known one costs.
//!
//! The order is Cyrus's (`lib/checkpw.c`): `userPassword`, then the SASLv1
//! `cmusaslsecretPLAIN`, and only when no plaintext is stored, the SCRAM
//! `authPassword` (a PBKDF2 of the candidate). Every comparison is constant-time.
//!
//! A user without credentials is checked against the decoy instead: a random
//! plaintext in a database that stores plaintext, a SCRAM secret (same PBKDF2 cost as
//! a real one) in a hashed-only database. The decoy never matches: its secrets are
//! random and never leave the process.

use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroizing;

use super::authority::Credentials;
use crate::account::Verdict;
use crate::account::secrets::scram::SCRAM_DEFAULT_ITERATIONS;
use crate::account::secrets::{ScramHash, ScramSecret, plain};
use crate::record::Secret;

/// Random stand-ins for secrets a user does not have, and the key SCRAM salts are
/// derived from (see [`super::mech::scram`]). One per process.
pub struct Decoy {
    plaintext: Secret,
    scram: ScramSecret,
    salt_key: Zeroizing<[u8; 32]>,
    hashed_only: AtomicBool,
}

impl std::fmt::Debug for Decoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoy")
            .field("hashed_only", &self.hashed_only())
            .finish_non_exhaustive()
    }
}

/// Random bytes from the operating system (a failure there is fatal at start).
pub(crate) fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, getrandom::Error> {
    let mut b = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut b[..])?;
    Ok(b)
}

impl Decoy {
    /// Fresh random decoys.
    pub fn new() -> Result<Decoy, getrandom::Error> {
        let pw = random::<24>()?;
        // Printable, NUL-free: a password SCRAM accepts.
        let plaintext: Secret =
            Zeroizing::new(pw.iter().map(|b| b'a' + (b % 26)).collect::<Vec<u8>>());
        let salt = random::<16>()?;
        let scram = ScramSecret::compute(
            ScramHash::Sha1,
            &plaintext,
            &salt[..],
            SCRAM_DEFAULT_ITERATIONS,
        )
        .map_err(|_| getrandom::Error::UNSUPPORTED)?;
        Ok(Decoy {
            plaintext,
            scram,
            salt_key: random::<32>()?,
            hashed_only: AtomicBool::new(false),
        })
    }

    /// A decoy plaintext password (random, never stored anywhere).
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext
    }

    /// The key SCRAM salts for plaintext and unknown users are derived from.
    pub fn salt_key(&self) -> &[u8; 32] {
        &self.salt_key
    }

    /// Whether the database is hashed-only (decoy checks then cost a PBKDF2).
    pub fn hashed_only(&self) -> bool {
        self.hashed_only.load(Ordering::Relaxed)
    }

    /// Sets what decoy checks cost, from the database's [`super::Inventory`].
    pub fn set_hashed_only(&self, yes: bool) {
        self.hashed_only.store(yes, Ordering::Relaxed);
    }
}

/// Whether [`verify_plain`] will run a key derivation (milliseconds of CPU): the
/// caller then runs it off the event loop.
pub fn plain_is_costly(creds: Option<&Credentials>, decoy: &Decoy) -> bool {
    match creds {
        Some(c) if c.user_password.is_some() || c.legacy_plain.is_some() => false,
        Some(c) if c.scram.is_some() => true,
        _ => decoy.hashed_only(),
    }
}

/// Checks `password` against `creds` (see the module docs). Never
/// [`Verdict::NoUsableSecret`]: a user without credentials is [`Verdict::NoSuchUser`]
/// (the authority does not tell them apart).
pub fn verify_plain(creds: Option<&Credentials>, password: &[u8], decoy: &Decoy) -> Verdict {
    let matched = |ok: bool| {
        if ok {
            Verdict::Match
        } else {
            Verdict::Mismatch
        }
    };
    match creds {
        Some(c) if c.user_password.is_some() || c.legacy_plain.is_some() => {
            matched(plain::verify_checkpass(
                c.user_password.as_deref().map(|v| &v[..]),
                c.legacy_plain.as_deref().map(|v| &v[..]),
                password,
            ))
        }
        Some(Credentials { scram: Some(s), .. }) => {
            matched(s.verify_password(password).unwrap_or(false))
        }
        _ => {
            // Same work as a real check, result thrown away.
            let _ = if decoy.hashed_only() {
                decoy.scram.verify_password(password).unwrap_or(false)
            } else {
                plain::verify_user_password(&decoy.plaintext, password)
            };
            Verdict::NoSuchUser
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_decoys() {
        let d = Decoy::new().unwrap();
        let plain = Credentials {
            user_password: Some(Zeroizing::new(b"pw".to_vec())),
            ..Credentials::default()
        };
        assert_eq!(verify_plain(Some(&plain), b"pw", &d), Verdict::Match);
        assert_eq!(verify_plain(Some(&plain), b"pW", &d), Verdict::Mismatch);
        assert_eq!(verify_plain(Some(&plain), b"", &d), Verdict::Mismatch);
        assert!(!plain_is_costly(Some(&plain), &d));
        let hashed = Credentials {
            scram: Some(ScramSecret::compute(ScramHash::Sha256, b"pw", b"s", 2).unwrap()),
            ..Credentials::default()
        };
        assert_eq!(verify_plain(Some(&hashed), b"pw", &d), Verdict::Match);
        assert_eq!(verify_plain(Some(&hashed), b"p\0w", &d), Verdict::Mismatch);
        assert!(plain_is_costly(Some(&hashed), &d));
        assert_eq!(
            verify_plain(None, d.plaintext().to_vec().as_slice(), &d),
            Verdict::NoSuchUser
        );
        assert!(!plain_is_costly(None, &d));
        d.set_hashed_only(true);
        assert!(plain_is_costly(None, &d));
        assert_eq!(verify_plain(None, b"x", &d), Verdict::NoSuchUser);
    }
}
