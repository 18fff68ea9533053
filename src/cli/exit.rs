//! The one exit-code table for every binary.
//!
//! `saslpasswd2` exits with Cyrus's codes, which are negated libsasl results
//! (`SASL_FAIL` = -1 → 1, `SASL_NOMECH` = -4 → 4, `SASL_BADPARAM` = -7 → 7,
//! `SASL_CONFIGERR` = -100 → 100). The `sasldb` tool uses the same meanings where they
//! apply and adds its own for answers (`verify`: 1 mismatch, 2 no such user; `check`:
//! 0 clean, 1 problems remain) and for usage errors (64, `EX_USAGE`).
//!
//! | status | `saslpasswd2` | `sasldblistusers2` | `sasldb` |
//! |---|---|---|---|
//! | 0 | success | listed | success; `verify`: match; `check`: only information |
//! | 1 | failure, usage | usage, unreadable database | failure; `verify`: mismatch; `check`: warnings or errors remain (after `--fix`: what it could not repair) |
//! | 2 | | | `verify`: no such user / no usable secret |
//! | 4 | no mechanism stored a secret | | |
//! | 7 | bad password | | |
//! | 64 | | | usage error |
//! | 100 | config file unparsable | | |

use std::process::ExitCode;

/// Exit statuses, with the tools that use each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success (every tool).
    Success = 0,
    /// Generic failure: the database cannot be read or written, usage error of the
    /// drop-in tools (Cyrus `SASL_FAIL`), `sasldb verify`: wrong password, `sasldb
    /// check`: problems (warnings or errors) remain.
    Failure = 1,
    /// `sasldb verify`: no such user (or no usable secret).
    NoSuchUser = 2,
    /// Cyrus `SASL_NOMECH`: no mechanism could store a secret.
    NoMechanism = 4,
    /// Cyrus `SASL_BADPARAM`: bad password (empty, NUL, CR, too long) or the two
    /// passwords typed differ.
    BadParameter = 7,
    /// `sasldb`: command-line usage error (`EX_USAGE`).
    Usage = 64,
    /// Cyrus `SASL_CONFIGERR`: the SASL configuration file cannot be parsed.
    ConfigError = 100,
}

impl Exit {
    /// The numeric status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn cyrus_codes() {
        // saslpasswd2's statuses are -SASL_x (sasl.h).
        assert_eq!(Exit::Failure.code(), 1);
        assert_eq!(Exit::NoMechanism.code(), 4);
        assert_eq!(Exit::BadParameter.code(), 7);
        assert_eq!(Exit::ConfigError.code(), 100);
        assert_eq!(Exit::Usage.code(), 64);
    }
}
