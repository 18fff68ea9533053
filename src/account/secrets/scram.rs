//! The SCRAM plugins' per-user verifier, `authPassword` (RFC 5802 / RFC 7677).
//!
//! Cyrus 2.1.28 (`plugins/scram.c`) stores
//!
//! ```text
//! SCRAM-SHA-1$4096:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//! ```
//!
//! with `SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations)`,
//! `StoredKey = H(HMAC-H(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC-H(SaltedPassword, "Server Key")`. The salt is 16 random bytes,
//! the iteration count `scram_iteration_counter` (default 4096), base64 is standard
//! and padded.
//!
//! Which mechanism reads what:
//! - One plugin serves SCRAM-SHA-1, -224, -256, -384 and -512. Each mechanism's
//!   `setpass` writes the same property `authPassword` with its own name as prefix,
//!   and only when `scram_secret_generate` is on. `saslpasswd2` runs them in mech-list
//!   order (512 … 1), so with the default list the stored value is the SCRAM-SHA-1 one:
//!   that is [`ScramHash::default`].
//! - At login a mechanism first looks for `userPassword`; only when there is none does
//!   it read `authPassword`, and it accepts only a value whose prefix is its own
//!   mechanism name (case-sensitive). sasldb holds one value per property, so an
//!   `authPassword` serves exactly one SCRAM mechanism.
//!
//! Cyrus's reader skips spaces before the name and around each `$`, ends the salt at
//! `$` or a space and the ServerKey at a space (ignoring the rest), and requires both
//! keys to decode to exactly the hash length. [`ScramSecret::parse`] follows it, except
//! that the iteration count must be plain decimal digits (Cyrus's `strtoul` also takes
//! a sign and leading white space).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::digest::Digest;
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{SecretError, SecretKind, check_no_nul, random_bytes};
use crate::record::Secret;

/// The iteration count Cyrus uses when `scram_iteration_counter` is not set.
pub const SCRAM_DEFAULT_ITERATIONS: u32 = 4096;
/// The salt length Cyrus generates, in bytes.
pub const SCRAM_SALT_LEN: usize = 16;

/// Cyrus's `sasl_decode64`: padding required, non-zero trailing bits tolerated.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScramHash {
    /// SCRAM-SHA-1: what `saslpasswd2` stores with the default mech list.
    #[default]
    Sha1,
    /// SCRAM-SHA-224.
    Sha224,
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-384.
    Sha384,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    /// Every mechanism Cyrus 2.1.28 implements.
    pub const ALL: [ScramHash; 5] = [
        ScramHash::Sha1,
        ScramHash::Sha224,
        ScramHash::Sha256,
        ScramHash::Sha384,
        ScramHash::Sha512,
    ];

    /// The mechanism name, which is also the stored prefix: `SCRAM-SHA-1`, ...
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha224 => "SCRAM-SHA-224",
            ScramHash::Sha256 => "SCRAM-SHA-256",
            ScramHash::Sha384 => "SCRAM-SHA-384",
            ScramHash::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Looks a mechanism name up, ignoring ASCII case (SASL mechanism names are
    /// case-insensitive; the stored prefix is not, see [`ScramSecret::parse`]).
    pub fn from_mechanism(name: &str) -> Result<Self, SecretError> {
        Self::ALL
            .into_iter()
            .find(|h| h.mechanism().eq_ignore_ascii_case(name))
            .ok_or_else(|| SecretError::UnknownScramMechanism(name.to_owned()))
    }

    /// The digest length in bytes, which is also the length of both keys.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha224 => 28,
            ScramHash::Sha256 => 32,
            ScramHash::Sha384 => 48,
            ScramHash::Sha512 => 64,
        }
    }

    fn derive(self, password: &[u8], salt: &[u8], iterations: u32) -> (Secret, Secret) {
        match self {
            ScramHash::Sha1 => derive::<sha1::Sha1>(password, salt, iterations),
            ScramHash::Sha224 => derive::<sha2::Sha224>(password, salt, iterations),
            ScramHash::Sha256 => derive::<sha2::Sha256>(password, salt, iterations),
            ScramHash::Sha384 => derive::<sha2::Sha384>(password, salt, iterations),
            ScramHash::Sha512 => derive::<sha2::Sha512>(password, salt, iterations),
        }
    }
}

impl fmt::Display for ScramHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mechanism())
    }
}

impl FromStr for ScramHash {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_mechanism(s)
    }
}

fn hmac<D: EagerHash>(key: &[u8], message: &[u8]) -> Secret {
    let mut mac =
        <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of every length");
    mac.update(message);
    let mut tag = mac.finalize().into_bytes();
    let out = Zeroizing::new(tag.to_vec());
    zeroize::Zeroize::zeroize(&mut tag[..]);
    out
}

/// (StoredKey, ServerKey) for one hash.
fn derive<D: EagerHash>(password: &[u8], salt: &[u8], iterations: u32) -> (Secret, Secret) {
    let mut salted = Zeroizing::new(vec![0u8; <D as Digest>::output_size()]);
    // Zero rounds compute one, as Cyrus's Hi() does.
    pbkdf2::pbkdf2_hmac::<D>(password, salt, iterations, &mut salted);
    let client_key = hmac::<D>(&salted, b"Client Key");
    let mut stored = <D as Digest>::digest(&client_key[..]);
    let stored_key = Zeroizing::new(stored.to_vec());
    zeroize::Zeroize::zeroize(&mut stored[..]);
    let server_key = hmac::<D>(&salted, b"Server Key");
    (stored_key, server_key)
}

/// A parsed or computed `authPassword` SCRAM value.
///
/// `Debug` hides the keys; they are wiped from memory on drop. `==` is not
/// constant-time: check passwords with [`ScramSecret::verify_password`].
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    hash: ScramHash,
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Secret,
    server_key: Secret,
}

impl ScramSecret {
    /// The verifier for `password` with this salt and iteration count.
    /// Deterministic; see [`ScramSecret::generate`] for a random salt.
    ///
    /// Refuses an empty password (Cyrus: "empty secret") and one containing NUL (Cyrus
    /// keeps its length but zeroes everything after the NUL). An iteration count of 0
    /// is computed as 1, as Cyrus does when it reads one.
    pub fn compute(
        hash: ScramHash,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, SecretError> {
        if password.is_empty() {
            return Err(SecretError::EmptyPassword);
        }
        check_no_nul(password)?;
        let (stored_key, server_key) = hash.derive(password, salt, iterations);
        Ok(ScramSecret {
            hash,
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        })
    }

    /// The verifier for `password` with a fresh random 16-byte salt, as Cyrus's
    /// `setpass` makes it. Pass [`SCRAM_DEFAULT_ITERATIONS`] unless configured.
    pub fn generate(
        hash: ScramHash,
        password: &[u8],
        iterations: u32,
    ) -> Result<Self, SecretError> {
        if iterations == 0 {
            return Err(SecretError::ZeroIterations);
        }
        let mut salt = [0u8; SCRAM_SALT_LEN];
        random_bytes(&mut salt)?;
        Self::compute(hash, password, &salt, iterations)
    }

    /// Parses a stored value the way Cyrus's server reads it (see the module notes).
    /// The value ends at its first NUL, as a C string does.
    pub fn parse(value: &[u8]) -> Result<Self, SecretError> {
        let bad = |reason| SecretError::malformed(SecretKind::Scram, reason);
        let v = value.split(|&b| b == 0).next().unwrap_or_default();

        let v = skip_spaces(v);
        let end = find(v, b"$ ").ok_or(bad("no `$` after the mechanism name"))?;
        let hash = ScramHash::ALL
            .into_iter()
            .find(|h| h.mechanism().as_bytes() == &v[..end])
            .ok_or(bad("unknown mechanism prefix"))?;
        let v = after_dollar(&v[end..]).ok_or(bad("no `$` after the mechanism name"))?;

        let colon = find(v, b":").ok_or(bad("no `:` after the iteration count"))?;
        let count = &v[..colon];
        if count.is_empty() || count.len() > 20 || !count.iter().all(u8::is_ascii_digit) {
            return Err(bad("the iteration count is not a number"));
        }
        let iterations: u32 = std::str::from_utf8(count)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(bad("the iteration count is too large"))?;
        let v = &v[colon + 1..];

        let end = find(v, b"$ ").ok_or(bad("no `$` after the salt"))?;
        if end == 0 {
            return Err(bad("the salt is empty"));
        }
        let salt = BASE64
            .decode(&v[..end])
            .map_err(|_| bad("the salt is not valid base64"))?;
        let v = after_dollar(&v[end..]).ok_or(bad("no `$` after the salt"))?;

        let colon = find(v, b":").ok_or(bad("no `:` after the StoredKey"))?;
        let stored_key = decode_key(&v[..colon], hash)
            .ok_or(bad("the StoredKey is not base64 of the hash length"))?;
        let v = &v[colon + 1..];
        let end = find(v, b" ").unwrap_or(v.len());
        let server_key = decode_key(&v[..end], hash)
            .ok_or(bad("the ServerKey is not base64 of the hash length"))?;

        Ok(ScramSecret {
            hash,
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// The stored form, `SCRAM-SHA-n$ITER:salt$StoredKey:ServerKey`.
    pub fn encode(&self) -> Secret {
        Zeroizing::new(
            format!(
                "{}${}:{}${}:{}",
                self.hash.mechanism(),
                self.iterations,
                BASE64.encode(&self.salt),
                BASE64.encode(&self.stored_key[..]),
                BASE64.encode(&self.server_key[..]),
            )
            .into_bytes(),
        )
    }

    /// Whether `password` yields both stored keys, compared in constant time.
    /// An empty password never matches; one containing NUL is an error.
    ///
    /// This costs the stored iteration count in HMAC computations; a value read from
    /// an untrusted file may ask for up to 2^32 - 1 of them.
    pub fn verify_password(&self, password: &[u8]) -> Result<bool, SecretError> {
        check_no_nul(password)?;
        if password.is_empty() {
            return Ok(false);
        }
        let (stored, server) = self.hash.derive(password, &self.salt, self.iterations);
        let ok = stored[..].ct_eq(&self.stored_key[..]) & server[..].ct_eq(&self.server_key[..]);
        Ok(bool::from(ok))
    }

    /// The mechanism this value serves.
    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// The PBKDF2 iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The raw salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// `H(ClientKey)`.
    pub fn stored_key(&self) -> &[u8] {
        &self.stored_key
    }

    /// `HMAC(SaltedPassword, "Server Key")`.
    pub fn server_key(&self) -> &[u8] {
        &self.server_key
    }
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .field("salt", &BASE64.encode(&self.salt))
            .field("keys", &format_args!("<hidden>"))
            .finish()
    }
}

/// Parses a stored `authPassword` value and checks `password` against it.
///
/// ```
/// use sasldb::account::secrets::scram::verify_password;
/// let stored = b"SCRAM-SHA-1$4096:HZ+t6CojMV0tgwDiOM1M2w==$1ZFL+gCrlkg3X6Vpgx1hEhPZlTI=:FIL5/bE/FDAMFfJPDnF+zNfJ9T8=";
/// assert!(verify_password(stored, b"secret-md5").unwrap());
/// assert!(!verify_password(stored, b"secret-md4").unwrap());
/// assert!(verify_password(b"SCRAM-SHA-1$4096:junk", b"x").is_err());
/// ```
pub fn verify_password(stored: &[u8], password: &[u8]) -> Result<bool, SecretError> {
    ScramSecret::parse(stored)?.verify_password(password)
}

fn skip_spaces(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|&&b| b == b' ').count();
    &v[n..]
}

fn find(v: &[u8], any_of: &[u8]) -> Option<usize> {
    v.iter().position(|b| any_of.contains(b))
}

/// Skips spaces, one `$`, spaces.
fn after_dollar(v: &[u8]) -> Option<&[u8]> {
    skip_spaces(v).strip_prefix(b"$").map(skip_spaces)
}

fn decode_key(b64: &[u8], hash: ScramHash) -> Option<Secret> {
    let key = Zeroizing::new(BASE64.decode(b64).ok()?);
    (key.len() == hash.output_len()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (password, stored value). SHA-1 rows: Debian's saslpasswd2 2.1.28 with
    /// `scram_secret_generate: yes` (and `scram_iteration_counter: 10000` for one);
    /// SHA-224..512 rows: the same with `mech_list: SCRAM-SHA-n`; the last two:
    /// `gsasl --mkpasswd` (GNU SASL 2.2.0), which has the same derivation.
    const VECTORS: &[(&str, &str)] = &[
        (
            "secret-md5",
            "SCRAM-SHA-1$4096:HZ+t6CojMV0tgwDiOM1M2w==$1ZFL+gCrlkg3X6Vpgx1hEhPZlTI=:FIL5/bE/FDAMFfJPDnF+zNfJ9T8=",
        ),
        (
            "secret-md4",
            "SCRAM-SHA-1$4096:tAufpuVxainfSRspr2z79w==$2XAiEzS0OIizt/0NKx1BBOPnuwM=:UD0F7dO3hyZMzm7O88J7aLHx9fM=",
        ),
        (
            "secret-sha1",
            "SCRAM-SHA-1$10000:7FyvspkaZ8qv5DbWy3RH3Q==$C0pOyC7v/CVmpHnQfoFMWLjElxo=:HizSbcEe+ZRS0WTpe5xzXqac7IQ=",
        ),
        (
            "pässwörd✓",
            "SCRAM-SHA-1$4096:8ZDT57u9fsLh48ncwOhCNg==$nGXwgVvYWHayj62NZwSiEKmByO4=:qhaQzO+Htgzs30OPxFjQJ0sCsZY=",
        ),
        (
            "pencil",
            "SCRAM-SHA-224$4096:M0LMo/WnLO3JJUX8FlVx+Q==$wa5uDyWNFGZ+xjhPxWlVGRCEe9/ciFrgQyuOiA==:cHfLPPaOwIUV5qV3tFv5v2k5NE8DzPwNGL9bDA==",
        ),
        (
            "pencil",
            "SCRAM-SHA-256$4096:ZuGaYKYPRs/lD7AGJxKXCA==$ggUQJLZ10t5/7CJlOCvAWQYdfCamzpN+lZ06Y7D6VKk=:t2EJexr0WReXcOXzQeMHqxjgiLd3otKR0ii5+cPMz7s=",
        ),
        (
            "pencil",
            "SCRAM-SHA-384$4096:f1NI0m+3jeWkvelnHEisKQ==$VefvSY4I7mSsJZlYYhk1xmfOve42M8gXbK82bVR5/BJhGZF9Cij+J/zxQNS3FRYZ:MQVP/3zdTJG2vhSfeJJrdvzi1diSILBcFVOjCe+w3XOSn+HUUAd9A/yt9MDyTua1",
        ),
        (
            "pencil",
            "SCRAM-SHA-512$4096:+9JRq+xuYF/CbpXFYbYVjg==$ioDPS8ClhjAemxvtFKu5qvw+sQirhX2FEzzo2dgLwwV+0vEfP8jv2EkVAJ6ji31kCBYaBHpLJ/girt44cPseLg==:l2P56UVmzNyOAOmtYWy409+4KzgZYarH/lsancjiCS0dFDhCuAQaOyWw3PddBUIVCVYqOfZ8qBMKH0IiP5Zn7Q==",
        ),
        (
            "pencil",
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
        ),
        (
            "pässwörd✓",
            "SCRAM-SHA-256$10000:8ZDT57u9fsLh48ncwOhCNg==$cXHzjEjGP1zXUmJoYsNA8JNUARMEHw/xj08/1BImGtA=:Fa7FL9JJeLt0h1IesoYn89JzfA5KQB7slNMo7JUlWAI=",
        ),
    ];

    #[test]
    fn reference_vectors_byte_for_byte() {
        for &(pw, stored) in VECTORS {
            let parsed = ScramSecret::parse(stored.as_bytes()).unwrap();
            let again = ScramSecret::compute(
                parsed.hash(),
                pw.as_bytes(),
                parsed.salt(),
                parsed.iterations(),
            )
            .unwrap();
            assert_eq!(String::from_utf8_lossy(&again.encode()), stored);
            assert_eq!(again, parsed);
            assert!(verify_password(stored.as_bytes(), pw.as_bytes()).unwrap());
            assert!(!verify_password(stored.as_bytes(), b"pencil2").unwrap());
        }
    }

    #[test]
    fn generate_defaults() {
        let s =
            ScramSecret::generate(ScramHash::default(), b"pw", SCRAM_DEFAULT_ITERATIONS).unwrap();
        assert_eq!(s.salt().len(), SCRAM_SALT_LEN);
        let text = String::from_utf8(s.encode().to_vec()).unwrap();
        assert!(text.starts_with("SCRAM-SHA-1$4096:"), "{text}");
        // 11 + 1 + 4 + 1 + 24 + 1 + 28 + 1 + 28
        assert_eq!(text.len(), 99);
        assert!(verify_password(text.as_bytes(), b"pw").unwrap());
        assert!(!verify_password(text.as_bytes(), b"pW").unwrap());
        assert!(!verify_password(text.as_bytes(), b"").unwrap());
        let t = ScramSecret::generate(ScramHash::Sha1, b"pw", SCRAM_DEFAULT_ITERATIONS).unwrap();
        assert_ne!(s.salt(), t.salt());
        assert_eq!(
            ScramSecret::generate(ScramHash::Sha1, b"pw", 0).unwrap_err(),
            SecretError::ZeroIterations
        );
    }

    #[test]
    fn cyrus_reader_leniency() {
        let (pw, stored) = VECTORS[0];
        let spaced = stored.replacen("$", " $ ", 1).replacen("==$", "== $ ", 1);
        let lenient = [
            format!("  {spaced}"),
            format!("{stored} trailing words"),
            format!("{stored}\0garbage"),
        ];
        for v in &lenient {
            assert!(
                verify_password(v.as_bytes(), pw.as_bytes()).unwrap(),
                "{v:?}"
            );
        }
        // Zero iterations are read and computed as one.
        let one = ScramSecret::compute(ScramHash::Sha1, b"pw", b"salt", 1).unwrap();
        let zero = ScramSecret::compute(ScramHash::Sha1, b"pw", b"salt", 0).unwrap();
        assert_eq!(one.stored_key(), zero.stored_key());
        let z = String::from_utf8(zero.encode().to_vec()).unwrap();
        assert!(z.starts_with("SCRAM-SHA-1$0:"), "{z}");
        assert!(verify_password(z.as_bytes(), b"pw").unwrap());
    }

    #[test]
    fn parse_refusals() {
        let (_, good) = VECTORS[0];
        let sha256 = VECTORS[5].1;
        let cases: Vec<String> = vec![
            String::new(),
            good.replace("SCRAM-SHA-1", "scram-sha-1"),
            good.replace("SCRAM-SHA-1", "SCRAM-SHA-2"),
            good.replace("SCRAM-SHA-1$", "SCRAM-SHA-1"),
            good.replace("$4096:", "$:"),
            good.replace("$4096:", "$-4096:"),
            good.replace("$4096:", "$4294967296:"),
            good.replace("$4096:", "$4096"),
            good.replace("HZ+t6CojMV0tgwDiOM1M2w==", ""),
            good.replace("HZ+t6CojMV0tgwDiOM1M2w==", "HZ+t6CojMV0tgwDiOM1M2w"),
            good.replace("==$1ZFL", "==1ZFL"),
            good.replace("=:FIL5", "=FIL5"),
            good.replace(
                "FIL5/bE/FDAMFfJPDnF+zNfJ9T8=",
                "FIL5/bE/FDAMFfJPDnF+zNfJ9T8",
            ),
            good.replace(
                "FIL5/bE/FDAMFfJPDnF+zNfJ9T8=",
                "FIL5/bE/FDAMFfJPDnF+zNfJ9T8=\n",
            ),
            good.replace("FIL5/bE/FDAMFfJPDnF+zNfJ9T8=", ""),
            // SHA-1-sized keys under a SHA-256 prefix, and the reverse.
            good.replace("SCRAM-SHA-1", "SCRAM-SHA-256"),
            sha256.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
        ];
        for c in &cases {
            let e = ScramSecret::parse(c.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    e,
                    SecretError::Malformed {
                        kind: SecretKind::Scram,
                        ..
                    }
                ),
                "{c:?}: {e}"
            );
            assert!(!e.to_string().contains("HZ+t"), "{e}");
        }
    }

    #[test]
    fn password_refusals() {
        let h = ScramHash::Sha256;
        assert_eq!(
            ScramSecret::compute(h, b"", b"salt", 1).unwrap_err(),
            SecretError::EmptyPassword
        );
        assert_eq!(
            ScramSecret::compute(h, b"a\0b", b"salt", 1).unwrap_err(),
            SecretError::NulInPassword
        );
        let s = ScramSecret::compute(h, b"a", b"salt", 1).unwrap();
        assert_eq!(
            s.verify_password(b"a\0").unwrap_err(),
            SecretError::NulInPassword
        );
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(
            ScramHash::from_mechanism("scram-sha-256"),
            Ok(ScramHash::Sha256)
        );
        assert_eq!("SCRAM-SHA-512".parse(), Ok(ScramHash::Sha512));
        assert!(ScramHash::from_mechanism("SCRAM-SHA-3").is_err());
        for h in ScramHash::ALL {
            assert_eq!(h.mechanism().parse(), Ok(h));
        }
    }

    #[test]
    fn debug_hides_keys() {
        let s = ScramSecret::parse(VECTORS[0].1.as_bytes()).unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("1ZFL") && !shown.contains("FIL5"),
            "{shown}"
        );
    }
}
