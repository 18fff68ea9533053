//! LOGIN (draft-murchison-sasl-login): `Username:`, then `Password:`, one message
//! each. An initial response is the user name (as Dovecot takes it).

use zeroize::Zeroizing;

use super::{Failure, MAX_PASSWORD, MechEnv, Progress, check_authcid, check_password};
use crate::serve::authority::Credentials;

/// The first challenge.
pub const USERNAME: &[u8] = b"Username:";
/// The second challenge.
pub const PASSWORD: &[u8] = b"Password:";

/// The LOGIN exchange.
#[derive(Debug, Default)]
pub struct Login {
    authcid: Option<Vec<u8>>,
    password: Option<Zeroizing<Vec<u8>>>,
}

impl Login {
    /// Starts: asks for the user name, or with an initial response, the password.
    pub fn start(initial: Option<&[u8]>) -> (Login, Progress) {
        let mut s = Login::default();
        let p = match initial {
            Some(name) if !name.is_empty() => s.input(name),
            _ => Progress::Challenge(USERNAME.to_vec()),
        };
        (s, p)
    }

    /// The authentication id, once received.
    pub fn authcid(&self) -> Option<&[u8]> {
        self.authcid.as_deref()
    }

    /// The user name, then the password.
    pub fn input(&mut self, data: &[u8]) -> Progress {
        if self.authcid.is_none() {
            if let Err(f) = check_authcid(data) {
                return Progress::Failure(f);
            }
            self.authcid = Some(data.to_vec());
            return Progress::Challenge(PASSWORD.to_vec());
        }
        if self.password.is_some() {
            return Progress::Failure(Failure::Malformed("a third LOGIN message"));
        }
        if data.is_empty() {
            return Progress::Failure(Failure::Malformed("empty password"));
        }
        if data.len() > MAX_PASSWORD {
            return Progress::Failure(Failure::Malformed("password too long"));
        }
        if data.contains(&0) {
            return Progress::Failure(Failure::Malformed("NUL in the password"));
        }
        self.password = Some(Zeroizing::new(data.to_vec()));
        Progress::Lookup
    }

    /// Checks the password against the user's credentials.
    pub fn credentials(&mut self, creds: Option<&Credentials>, env: &MechEnv) -> Progress {
        match self.password.take() {
            Some(pw) => check_password(creds, &pw, env),
            None => Progress::Failure(Failure::Malformed("lookup before the password")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_env::{env, plain_creds};
    use super::super::{Exchange, Mechanism};
    use super::*;

    #[test]
    fn login() {
        let env = env();
        let (mut x, p) = Exchange::start(Mechanism::Login, None, &env);
        assert!(matches!(p, Progress::Challenge(ref c) if c == USERNAME));
        assert!(matches!(x.input(b"alice", &env), Progress::Challenge(ref c) if c == PASSWORD));
        assert!(matches!(x.input(b"pw", &env), Progress::Lookup));
        assert_eq!(x.authcid(), Some(&b"alice"[..]));
        assert!(matches!(
            x.credentials(Some(plain_creds(b"pw")), &env),
            Progress::Success { .. }
        ));

        let (mut x, p) = Exchange::start(Mechanism::Login, Some(b"alice"), &env);
        assert!(matches!(p, Progress::Challenge(ref c) if c == PASSWORD));
        assert!(matches!(x.input(b"bad", &env), Progress::Lookup));
        assert!(matches!(
            x.credentials(Some(plain_creds(b"pw")), &env),
            Progress::Failure(Failure::Mismatch)
        ));
        assert!(matches!(x.input(b"again", &env), Progress::Failure(_)));

        let (mut x, _) = Exchange::start(Mechanism::Login, None, &env);
        assert!(matches!(
            x.input(b"", &env),
            Progress::Failure(Failure::Malformed(_))
        ));
    }
}
