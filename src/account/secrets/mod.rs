//! Derived secrets: the values Cyrus SASL mechanisms store next to `userPassword`.
//!
//! When Cyrus's `saslpasswd2` sets a password, the OTP and SCRAM plugins each derive
//! their own secret from it and store that under their own property. This module
//! computes those values in Cyrus 2.1.28's exact byte format, parses existing ones, and
//! verifies candidate passwords against every stored form. It does no I/O on
//! databases and knows no backend; callers store the returned bytes under the
//! property named here.
//!
//! - [`otp`]: `cmusaslsecretOTP` (`md5\t0499\tvm4355\ta60b12d2be16af7f\t0000…`), the
//!   RFC 2289 one-time-password chain the OTP plugin keeps per user.
//! - [`scram`]: `authPassword` (`SCRAM-SHA-1$4096:salt$StoredKey:ServerKey`), the
//!   RFC 5802 verifier the SCRAM plugins read when no `userPassword` exists.
//! - [`plain`]: checking a candidate against `userPassword` and against the legacy
//!   SASLv1 `cmusaslsecretPLAIN` value (read-only), the way Cyrus's `checkpw.c` does.
//!
//! Every comparison against stored material is constant-time in the bytes compared
//! (lengths may leak). Intermediate key material lives in [`Secret`] buffers that are
//! wiped on drop, and the hash states wipe themselves (RustCrypto `zeroize` feature).
//! Errors never contain secret bytes.
//!
//! [`Secret`]: crate::Secret

pub mod otp;
pub mod plain;
pub mod scram;

pub use otp::{OtpAlgorithm, OtpSecret};
pub use scram::{ScramHash, ScramSecret};

pub use crate::error::{SecretError, SecretKind};

impl SecretError {
    pub(crate) fn malformed(kind: SecretKind, reason: &'static str) -> Self {
        SecretError::Malformed { kind, reason }
    }
}

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), SecretError> {
    getrandom::fill(buf).map_err(|e| SecretError::Random(e.to_string()))
}

/// Refuses passwords that Cyrus would truncate at a NUL byte.
pub(crate) fn check_no_nul(password: &[u8]) -> Result<(), SecretError> {
    if memchr::memchr(0, password).is_some() {
        Err(SecretError::NulInPassword)
    } else {
        Ok(())
    }
}

/// Lowercase hex, as Cyrus's `bin2hex`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}
