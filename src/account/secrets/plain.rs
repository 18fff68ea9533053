//! Checking a plaintext password against `userPassword` and the legacy
//! `cmusaslsecretPLAIN`, as Cyrus's `sasl_checkpass` does with the auxprop method
//! (`lib/checkpw.c`, `auxprop_verify_password`).
//!
//! Cyrus compares C strings: the stored `userPassword` and the candidate both end at
//! their first NUL (so the value `pw2\0a` that old `saslpasswd2` wrote for `pw2\n\n`
//! accepts `pw2`). When that does not match, and a `cmusaslsecretPLAIN` exists, it
//! checks that instead: the SASLv1 value `salt[16] NUL MD5(salt ‖ "sasldb" ‖ pw)`,
//! 33 bytes. Cyrus 2.1.28 never writes it and deletes it on every password change;
//! this module only reads it.
//!
//! Comparisons are constant-time in the bytes compared; lengths may leak.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::{SecretError, SecretKind};

/// Salt length of a legacy `cmusaslsecretPLAIN` value.
pub const LEGACY_SALT_LEN: usize = 16;
/// Length of a legacy `cmusaslsecretPLAIN` value: salt, NUL, MD5 digest.
pub const LEGACY_PLAIN_LEN: usize = LEGACY_SALT_LEN + 1 + 16;

/// The bytes up to the first NUL.
fn c_str(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// Whether `candidate` matches the stored `userPassword`, with Cyrus's C-string
/// semantics (both end at their first NUL). Unlike Cyrus, an empty candidate never
/// matches, even an empty stored value.
///
/// ```
/// use sasldb::account::secrets::plain::verify_user_password;
/// assert!(verify_user_password(b"secret", b"secret"));
/// assert!(!verify_user_password(b"secret", b"Secret"));
/// assert!(verify_user_password(b"pw2\0a", b"pw2"));
/// ```
pub fn verify_user_password(stored: &[u8], candidate: &[u8]) -> bool {
    let candidate = c_str(candidate);
    !candidate.is_empty() && bool::from(c_str(stored).ct_eq(candidate))
}

/// Whether `candidate` matches a legacy `cmusaslsecretPLAIN` value. Cyrus compares
/// the first 33 bytes and ignores the rest; the candidate ends at its first NUL.
/// A value shorter than 33 bytes, or without the NUL after the salt, is refused as
/// malformed (Cyrus would read past it, or never match).
pub fn verify_legacy_plain(stored: &[u8], candidate: &[u8]) -> Result<bool, SecretError> {
    let bad = |reason| SecretError::malformed(SecretKind::LegacyPlain, reason);
    let stored = stored
        .get(..LEGACY_PLAIN_LEN)
        .ok_or(bad("shorter than 33 bytes"))?;
    if stored[LEGACY_SALT_LEN] != 0 {
        return Err(bad("no NUL after the 16-byte salt"));
    }
    let salt = &stored[..LEGACY_SALT_LEN];
    let mut h = Md5::new();
    h.update(salt);
    h.update(b"sasldb");
    h.update(c_str(candidate));
    let mut digest = h.finalize();
    let ok = bool::from(digest[..].ct_eq(&stored[LEGACY_SALT_LEN + 1..]));
    digest[..].zeroize();
    Ok(ok)
}

/// Cyrus's whole auxprop check: `userPassword` first, then the legacy value when
/// the first is missing or does not match. A malformed legacy value does not match.
pub fn verify_checkpass(
    user_password: Option<&[u8]>,
    legacy_plain: Option<&[u8]>,
    candidate: &[u8],
) -> bool {
    if user_password.is_some_and(|stored| verify_user_password(stored, candidate)) {
        return true;
    }
    legacy_plain.is_some_and(|stored| verify_legacy_plain(stored, candidate).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// salt ‖ NUL ‖ MD5(salt ‖ "sasldb" ‖ pw), built independently of the verifier.
    fn legacy(salt: &[u8; 16], pw: &[u8]) -> Vec<u8> {
        let mut input = salt.to_vec();
        input.extend_from_slice(b"sasldb");
        input.extend_from_slice(pw);
        let mut v = salt.to_vec();
        v.push(0);
        v.extend_from_slice(&Md5::digest(&input));
        v
    }

    #[test]
    fn user_password_c_string_semantics() {
        assert!(verify_user_password(b"secret", b"secret"));
        assert!(!verify_user_password(b"secret", b"secre"));
        assert!(!verify_user_password(b"secret", b"secrets"));
        assert!(verify_user_password(b"pw3\0d", b"pw3"));
        assert!(verify_user_password(b"pw3", b"pw3\0ignored"));
        assert!(!verify_user_password(b"", b""));
        assert!(!verify_user_password(b"\0x", b"\0x"));
        assert!(verify_user_password(
            "pässwörd".as_bytes(),
            "pässwörd".as_bytes()
        ));
    }

    /// A known vector: MD5("0123456789abcdef" "sasldb" "secret") per Python hashlib.
    #[test]
    fn legacy_known_vector() {
        let salt = b"0123456789abcdef";
        let v = legacy(salt, b"secret");
        assert_eq!(v.len(), LEGACY_PLAIN_LEN);
        assert_eq!(
            super::super::to_hex(&v[17..]),
            "82824244df8e67781eb82af845197102"
        );
        assert_eq!(verify_legacy_plain(&v, b"secret"), Ok(true));
        assert_eq!(verify_legacy_plain(&v, b"secret\0junk"), Ok(true));
        assert_eq!(verify_legacy_plain(&v, b"Secret"), Ok(false));
        let mut longer = v.clone();
        longer.extend_from_slice(b"ignored");
        assert_eq!(verify_legacy_plain(&longer, b"secret"), Ok(true));
    }

    #[test]
    fn legacy_malformed() {
        let v = legacy(&[7; 16], b"pw");
        assert!(verify_legacy_plain(&v[..32], b"pw").is_err());
        let mut no_nul = v.clone();
        no_nul[16] = b'x';
        assert!(matches!(
            verify_legacy_plain(&no_nul, b"pw"),
            Err(SecretError::Malformed {
                kind: SecretKind::LegacyPlain,
                ..
            })
        ));
    }

    #[test]
    fn checkpass_order() {
        let leg = legacy(&[1; 16], b"old");
        assert!(verify_checkpass(Some(b"new"), Some(&leg), b"new"));
        // Cyrus falls through to the legacy value when userPassword does not match.
        assert!(verify_checkpass(Some(b"new"), Some(&leg), b"old"));
        assert!(verify_checkpass(None, Some(&leg), b"old"));
        assert!(!verify_checkpass(None, Some(&leg[..20]), b"old"));
        assert!(!verify_checkpass(Some(b"new"), None, b"old"));
        assert!(!verify_checkpass(None, None, b"x"));
    }
}
