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

/// Which stored secret format a [`SecretError::Malformed`] concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A `cmusaslsecretOTP` value.
    Otp,
    /// An `authPassword` SCRAM value.
    Scram,
    /// A legacy `cmusaslsecretPLAIN` value.
    LegacyPlain,
}

impl std::fmt::Display for SecretKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretKind::Otp => "OTP secret (cmusaslsecretOTP)",
            SecretKind::Scram => "SCRAM secret (authPassword)",
            SecretKind::LegacyPlain => "legacy PLAIN secret (cmusaslsecretPLAIN)",
        })
    }
}

/// Why a secret could not be computed, parsed or checked.
///
/// Messages name the field at fault, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A stored value does not have the expected layout.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// Which format.
        kind: SecretKind,
        /// What is wrong (a field name and the rule it breaks).
        reason: &'static str,
    },
    /// An OTP algorithm name (`otp_mda`) other than md4, md5 or sha1.
    #[error("unknown OTP algorithm `{0}` (expected md4, md5 or sha1)")]
    UnknownOtpAlgorithm(String),
    /// A SCRAM mechanism name other than SCRAM-SHA-1/224/256/384/512.
    #[error("unknown SCRAM mechanism `{0}` (expected SCRAM-SHA-1, -224, -256, -384 or -512)")]
    UnknownScramMechanism(String),
    /// The password is empty where the mechanism refuses empty passwords (SCRAM).
    #[error("the password is empty")]
    EmptyPassword,
    /// The password contains a NUL byte: Cyrus truncates or mangles such passwords,
    /// so no secret derived from one would match what a Cyrus peer computes.
    #[error("the password contains a NUL byte")]
    NulInPassword,
    /// An OTP seed that Cyrus could not store or read back.
    #[error("invalid OTP seed: {0}")]
    BadSeed(&'static str),
    /// A SCRAM iteration count of zero was asked for.
    #[error("the SCRAM iteration count must be at least 1")]
    ZeroIterations,
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
    /// The host name (the OTP seed prefix) could not be read.
    #[error("cannot read the host name: {0}")]
    Hostname(String),
}

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
