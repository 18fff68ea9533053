//! PLAIN (RFC 4616): `authzid NUL authcid NUL password` in one message.
//!
//! An authorization id other than empty or the authentication id itself is refused
//! (no proxy authorization), before any lookup.

use zeroize::Zeroizing;

use super::{Failure, MAX_PASSWORD, MechEnv, Progress, check_authcid, check_password};
use crate::serve::authority::Credentials;

/// The PLAIN exchange.
#[derive(Debug, Default)]
pub struct Plain {
    authcid: Option<Vec<u8>>,
    password: Zeroizing<Vec<u8>>,
}

/// Splits and checks a PLAIN message: `(authcid, password)`.
pub fn parse(msg: &[u8]) -> Result<(&[u8], &[u8]), Failure> {
    let mut parts = msg.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Malformed("PLAIN message without two NULs"));
    };
    check_authcid(authcid)?;
    if password.is_empty() {
        return Err(Failure::Malformed("empty password"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(Failure::Malformed("password too long"));
    }
    if password.contains(&0) {
        return Err(Failure::Malformed("NUL in the password"));
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(Failure::Authzid);
    }
    Ok((authcid, password))
}

impl Plain {
    /// Starts; without an initial response the client is sent an empty challenge.
    pub fn start(initial: Option<&[u8]>) -> (Plain, Progress) {
        let mut s = Plain::default();
        let p = match initial {
            Some(msg) => s.input(msg),
            None => Progress::Challenge(Vec::new()),
        };
        (s, p)
    }

    /// The authentication id, once received.
    pub fn authcid(&self) -> Option<&[u8]> {
        self.authcid.as_deref()
    }

    /// The PLAIN message.
    pub fn input(&mut self, msg: &[u8]) -> Progress {
        if self.authcid.is_some() {
            return Progress::Failure(Failure::Malformed("a second PLAIN message"));
        }
        match parse(msg) {
            Ok((authcid, password)) => {
                self.authcid = Some(authcid.to_vec());
                self.password = Zeroizing::new(password.to_vec());
                Progress::Lookup
            }
            Err(f) => Progress::Failure(f),
        }
    }

    /// Checks the password against the user's credentials.
    pub fn credentials(&mut self, creds: Option<&Credentials>, env: &MechEnv) -> Progress {
        if self.authcid.is_none() {
            return Progress::Failure(Failure::Malformed("lookup before the PLAIN message"));
        }
        let p = check_password(creds, &self.password, env);
        self.password = Zeroizing::new(Vec::new());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_env::{env, plain_creds};
    use super::super::{Exchange, Mechanism};
    use super::*;

    fn run(initial: Option<&[u8]>, later: Option<&[u8]>, creds: Option<Credentials>) -> Progress {
        let env = env();
        let (mut x, mut p) = Exchange::start(Mechanism::Plain, initial, &env);
        if let (Progress::Challenge(c), Some(m)) = (&p, later) {
            assert!(c.is_empty());
            p = x.input(m, &env);
        }
        if matches!(p, Progress::Lookup) {
            assert_eq!(x.authcid(), Some(&b"alice"[..]));
            p = x.credentials(creds, &env);
            // Still known once the exchange is over.
            assert_eq!(x.authcid(), Some(&b"alice"[..]));
        }
        p
    }

    #[test]
    fn plain() {
        let ok = |p: Progress| matches!(p, Progress::Success { final_data: None });
        let c = || Some(plain_creds(b"pw"));
        assert!(ok(run(Some(b"\0alice\0pw"), None, c())));
        assert!(ok(run(Some(b"alice\0alice\0pw"), None, c())));
        assert!(ok(run(None, Some(b"\0alice\0pw"), c())));
        assert!(matches!(
            run(Some(b"\0alice\0px"), None, c()),
            Progress::Failure(Failure::Mismatch)
        ));
        assert!(matches!(
            run(Some(b"\0alice\0pw"), None, None),
            Progress::Failure(Failure::UnknownUser)
        ));
        for bad in [
            &b"alice\0pw"[..],
            b"\0\0pw",
            b"\0alice\0",
            b"\0alice\0p\0w",
            b"",
        ] {
            assert!(
                matches!(
                    run(Some(bad), None, c()),
                    Progress::Failure(Failure::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            run(Some(b"bob\0alice\0pw"), None, c()),
            Progress::Failure(Failure::Authzid)
        ));
        let long = [&b"\0alice\0"[..], &[b'x'; MAX_PASSWORD + 1]].concat();
        assert!(matches!(
            run(Some(&long), None, c()),
            Progress::Failure(Failure::Malformed(_))
        ));
    }
}
