//! User-level operations on a write transaction: setting a password with every
//! secret derived from it kept in step, deleting a user, and checking names.
//!
//! Cyrus's `saslpasswd2` writes `userPassword` and then lets each mechanism plugin
//! write its own secret, and it never removes a secret a mechanism did not rewrite: a
//! password change could leave a SCRAM `authPassword` or an OTP secret that still
//! accepts the old password. Here a password change:
//! - stores `userPassword` (unless the policy is hashed-only, which deletes it);
//! - recomputes `cmusaslsecretOTP` and the SCRAM `authPassword` in Cyrus's exact
//!   format when the user already has them or the policy asks for them; deletes an
//!   existing one the policy excludes (the config's `mech_list` leaves its mechanism
//!   out); a secret that already matches the new password is kept as it is (so
//!   re-importing the same password changes nothing), except an OTP secret of another
//!   algorithm than the policy's (`otp_mda`, as Cyrus writes it) or, with
//!   [`SecretPolicy::renew_otp`] (`saslpasswd2`, as Cyrus's), any OTP secret: setting a
//!   password starts a new OTP sequence;
//! - deletes the SASLv1 leftovers `cmusaslsecretCRAM-MD5`, `-DIGEST-MD5` and `-PLAIN`,
//!   as Cyrus 2.1.28 does.

pub mod secrets;

use crate::account::secrets::scram::SCRAM_DEFAULT_ITERATIONS;
use crate::account::secrets::{OtpAlgorithm, OtpSecret, ScramHash, ScramSecret, plain};
use crate::database::{Database, Transaction};
use crate::error::{Error, Result};
use crate::record::{AUTH_PASSWORD, Key, MAX_NAME_LEN, MAX_SECRET_LEN, OTP_SECRET, USER_PASSWORD};

/// SASLv1 properties Cyrus 2.1.28's `saslpasswd2` deletes on every change.
pub const LEGACY_PROPERTIES: [&str; 3] = [
    "cmusaslsecretCRAM-MD5",
    "cmusaslsecretDIGEST-MD5",
    "cmusaslsecretPLAIN",
];

/// What is wrong with a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    /// Empty.
    #[error("the password is empty")]
    Empty,
    /// Contains a NUL byte (Cyrus stored only the part before it).
    #[error("the password contains a NUL byte (Cyrus would store only the part before it)")]
    Nul,
    /// Ends with a carriage return: almost always a CRLF line ending.
    #[error("the password ends with a carriage return (a CRLF line ending?); refusing to store it")]
    TrailingCr,
    /// Longer than [`MAX_SECRET_LEN`].
    #[error("the password is too long: {0} bytes (the maximum is {MAX_SECRET_LEN})")]
    TooLong(usize),
}

/// Checks a new password: not empty, no NUL, no trailing CR, not too long.
pub fn check_password(pw: &[u8]) -> Result<(), PasswordProblem> {
    if pw.is_empty() {
        Err(PasswordProblem::Empty)
    } else if pw.contains(&0) {
        Err(PasswordProblem::Nul)
    } else if pw.ends_with(b"\r") {
        Err(PasswordProblem::TrailingCr)
    } else if pw.len() > MAX_SECRET_LEN {
        Err(PasswordProblem::TooLong(pw.len()))
    } else {
        Ok(())
    }
}

/// Which secrets a password change writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPolicy {
    /// Store the plaintext `userPassword` (false: hashed-only, SCRAM is then always
    /// written and `userPassword` deleted).
    pub plaintext: bool,
    /// Write a SCRAM `authPassword` even when the user has none yet.
    pub scram: bool,
    /// SCRAM hash for a new `authPassword` (an existing one keeps its own).
    pub scram_hash: ScramHash,
    /// PBKDF2 iterations for SCRAM.
    pub scram_iterations: u32,
    /// Delete an existing SCRAM `authPassword` instead of recomputing it (the config's
    /// `mech_list` names no SCRAM mechanism). `scram` and hashed-only win over it.
    pub scram_excluded: bool,
    /// Write an OTP secret even when the user has none yet.
    pub otp: bool,
    /// Delete an existing OTP secret instead of recomputing it (the config's
    /// `mech_list` does not name OTP). `otp` wins over it.
    pub otp_excluded: bool,
    /// OTP algorithm of every OTP secret written, new or recomputed (Cyrus's `otp_mda`,
    /// default md5); an existing secret of another algorithm is recomputed even when
    /// it matches the password.
    pub otp_algorithm: OtpAlgorithm,
    /// Write a fresh OTP secret (new seed, sequence 499) even when the existing one
    /// already matches the password, as Cyrus's `saslpasswd2` does on every change.
    pub renew_otp: bool,
    /// Host name the OTP seed starts with (Cyrus uses the lowercased hostname).
    pub hostname: Vec<u8>,
}

impl Default for SecretPolicy {
    fn default() -> Self {
        SecretPolicy {
            plaintext: true,
            scram: false,
            scram_hash: ScramHash::Sha1,
            scram_iterations: SCRAM_DEFAULT_ITERATIONS,
            scram_excluded: false,
            otp: false,
            otp_excluded: false,
            otp_algorithm: OtpAlgorithm::Md5,
            renew_otp: false,
            hostname: b"localhost".to_vec(),
        }
    }
}

/// What a command line asks of a password change, before the Cyrus config is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyRequest {
    /// Store no plaintext (SCRAM only).
    pub hashed_only: bool,
    /// Write a SCRAM secret even for users without one.
    pub scram: bool,
    /// Write an OTP secret even for users without one.
    pub otp: bool,
    /// PBKDF2 iterations, overriding the config.
    pub scram_iterations: Option<u32>,
}

/// Why a secret policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The Cyrus config holds a bad value.
    #[error("error when parsing configuration file: {0}")]
    Config(#[from] crate::cyrus_conf::ConfError),
    /// The host name (the OTP seed's start) is unavailable.
    #[error("gethostname: {0}")]
    Hostname(#[from] crate::account::secrets::SecretError),
}

impl SecretPolicy {
    /// The policy for a password change: the request's flags, then what a Cyrus
    /// `<appname>.conf` says (`scram_secret_generate`, `scram_iteration_counter`,
    /// `otp_mda`, and `mech_list`, whose word also decides which existing secrets are
    /// dropped: a mechanism it leaves out keeps no secret unless a flag asks for one),
    /// and the host name for OTP seeds.
    pub fn from_config(
        req: &PolicyRequest,
        conf: Option<&crate::cyrus_conf::SaslConf>,
    ) -> std::result::Result<SecretPolicy, PolicyError> {
        let mut p = SecretPolicy {
            plaintext: !req.hashed_only,
            scram: req.scram,
            otp: req.otp,
            ..SecretPolicy::default()
        };
        if let Some(c) = conf {
            p.scram |= c.scram_secret_generate();
            p.scram_iterations = c.scram_iteration_counter();
            p.otp_algorithm =
                OtpAlgorithm::from_name(c.otp_mda()?.name()).unwrap_or(OtpAlgorithm::Md5);
            if let Some(mechs) = c.mech_list() {
                let otp_named = mechs.iter().any(|m| m.eq_ignore_ascii_case("otp"));
                p.otp |= otp_named;
                p.otp_excluded = !otp_named;
                p.scram_excluded = !mechs
                    .iter()
                    .any(|m| m.to_ascii_uppercase().starts_with("SCRAM-SHA-"));
                // With SCRAM mechanisms named, Cyrus writes the last of them in its order
                // (SHA-512, -384, -256, -224, -1).
                let order = [
                    ScramHash::Sha1,
                    ScramHash::Sha224,
                    ScramHash::Sha256,
                    ScramHash::Sha384,
                    ScramHash::Sha512,
                ];
                if let Some(h) = order
                    .into_iter()
                    .find(|h| mechs.iter().any(|m| m.eq_ignore_ascii_case(h.mechanism())))
                {
                    p.scram_hash = h;
                }
            }
        }
        if let Some(n) = req.scram_iterations {
            p.scram_iterations = n;
        }
        p.hostname = crate::account::secrets::otp::local_hostname()?;
        Ok(p)
    }
}

/// What a password change did to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The user had none of the secrets a password governs before (`userPassword`,
    /// `authPassword`, `cmusaslsecretOTP`, the SASLv1 secrets); other properties of
    /// theirs, if any, are not looked for.
    Added,
    /// Something was written or deleted.
    Updated,
    /// Every secret already matched; nothing changed.
    Unchanged,
}

/// What is wrong with a user or realm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// Empty user name.
    #[error("the user name is empty")]
    EmptyUser,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("the {what} is too long: {len} bytes (the maximum is {MAX_NAME_LEN})")]
    TooLong {
        /// "user name" or "realm".
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Holds a NUL or another control character.
    #[error("the {0} contains a control character")]
    Control(&'static str),
    /// Not valid UTF-8.
    #[error("the {0} is not valid UTF-8")]
    NotUtf8(&'static str),
}

/// Checks a user name and a realm before they are written: the user must not be
/// empty, neither may exceed [`MAX_NAME_LEN`] bytes, hold control characters (a NUL
/// would split the key; a newline would break every listing), or be invalid UTF-8.
pub fn check_names(user: &[u8], realm: &[u8]) -> std::result::Result<(), NameProblem> {
    if user.is_empty() {
        return Err(NameProblem::EmptyUser);
    }
    for (what, s) in [("user name", user), ("realm", realm)] {
        if s.len() > MAX_NAME_LEN {
            return Err(NameProblem::TooLong { what, len: s.len() });
        }
        if s.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(NameProblem::Control(what));
        }
        if std::str::from_utf8(s).is_err() {
            return Err(NameProblem::NotUtf8(what));
        }
    }
    Ok(())
}

/// Splits a userid the way Cyrus's plugins do: at the first `@`, the realm after it
/// winning over any default. Without `@`, `default_realm` applies.
pub fn split_userid<'a>(userid: &'a [u8], default_realm: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    match userid.iter().position(|&b| b == b'@') {
        Some(at) => (&userid[..at], &userid[at + 1..]),
        None => (userid, default_realm),
    }
}

fn key(user: &[u8], realm: &[u8], prop: &str) -> Result<Key> {
    Ok(Key::new(user, realm, prop)?)
}

/// Sets `user@realm`'s password in `txn` according to `policy`. The password must
/// already have passed [`check_password`]; this
/// only refuses an empty one.
pub fn set_password(
    txn: &mut Transaction,
    user: &[u8],
    realm: &[u8],
    password: &[u8],
    policy: &SecretPolicy,
) -> Result<Outcome> {
    // Keyed lookups of the properties a password governs, not a scan for the user's
    // prefix: on a 200,000-user Berkeley DB file that is a few pages instead of all.
    let mut props = Vec::new();
    for p in PASSWORD_PROPERTIES {
        if txn.get(&key(user, realm, p)?)?.is_some() {
            props.push(p.as_bytes().to_vec());
        }
    }
    set_password_with_props(txn, user, realm, password, policy, &props)
}

/// Every property a password change writes, recomputes or deletes.
const PASSWORD_PROPERTIES: [&str; 6] = [
    USER_PASSWORD,
    AUTH_PASSWORD,
    OTP_SECRET,
    LEGACY_PROPERTIES[0],
    LEGACY_PROPERTIES[1],
    LEGACY_PROPERTIES[2],
];

/// [`set_password`] for a caller that has just asked [`Transaction::properties`] for
/// this user (and changed nothing of theirs since): `props` is its answer. A secret
/// the list does not name is absent, so it is not looked up.
pub(crate) fn set_password_with_props(
    txn: &mut Transaction,
    user: &[u8],
    realm: &[u8],
    password: &[u8],
    policy: &SecretPolicy,
    props: &[Vec<u8>],
) -> Result<Outcome> {
    if password.is_empty() {
        return Err(Error::Invalid("the password is empty".into()));
    }
    let has = |p: &str| props.iter().any(|x| x == p.as_bytes());
    let lookup = |txn: &Transaction, k: &Key, p: &str| -> Result<Option<crate::record::Secret>> {
        if has(p) { txn.get(k) } else { Ok(None) }
    };
    let had_user = !props.is_empty();
    let mut changed = false;

    // userPassword.
    let up = key(user, realm, USER_PASSWORD)?;
    if policy.plaintext {
        let same = match lookup(txn, &up, USER_PASSWORD)? {
            Some(old) => bool::from(subtle::ConstantTimeEq::ct_eq(&old[..], password)),
            None => false,
        };
        if !same {
            txn.put(&up, password.to_vec());
            changed = true;
        }
    } else if has(USER_PASSWORD) {
        txn.delete(&up);
        changed = true;
    }

    // SCRAM authPassword.
    let ap = key(user, realm, AUTH_PASSWORD)?;
    let existing_scram = match lookup(txn, &ap, AUTH_PASSWORD)? {
        Some(v) => ScramSecret::parse(&v).ok(),
        None => None,
    };
    let want_scram =
        policy.scram || !policy.plaintext || (has(AUTH_PASSWORD) && !policy.scram_excluded);
    if !want_scram && has(AUTH_PASSWORD) {
        txn.delete(&ap);
        changed = true;
    } else if want_scram {
        let keep = match &existing_scram {
            Some(s) => s.verify_password(password).unwrap_or(false),
            None => false,
        };
        if !keep {
            let hash = existing_scram
                .as_ref()
                .map(|s| s.hash())
                .unwrap_or(policy.scram_hash);
            let s = ScramSecret::generate(hash, password, policy.scram_iterations)?;
            txn.put(&ap, s.encode());
            changed = true;
        }
    }

    // OTP.
    let op = key(user, realm, OTP_SECRET)?;
    let existing_otp = match lookup(txn, &op, OTP_SECRET)? {
        Some(v) => OtpSecret::parse(&v).ok(),
        None => None,
    };
    let want_otp = policy.otp || (has(OTP_SECRET) && !policy.otp_excluded);
    if !want_otp && has(OTP_SECRET) {
        txn.delete(&op);
        changed = true;
    } else if want_otp {
        let keep = match &existing_otp {
            Some(s) if !policy.renew_otp && s.algorithm() == policy.otp_algorithm => {
                s.verify_password(password).unwrap_or(false)
            }
            _ => false,
        };
        if !keep {
            let s = OtpSecret::generate(policy.otp_algorithm, &policy.hostname, password)?;
            txn.put(&op, s.encode());
            changed = true;
        }
    }

    for p in LEGACY_PROPERTIES {
        if has(p) {
            txn.delete(&key(user, realm, p)?);
            changed = true;
        }
    }

    Ok(match (had_user, changed) {
        (false, _) => Outcome::Added,
        (true, true) => Outcome::Updated,
        (true, false) => Outcome::Unchanged,
    })
}

/// Deletes every property of `user@realm` (`userPassword`, `authPassword`, OTP and
/// legacy secrets, and any other property); returns how many there were.
pub fn delete_user(txn: &mut Transaction, user: &[u8], realm: &[u8]) -> Result<usize> {
    txn.delete_user(user, realm)
}

/// Whether `user@realm` has any property in `txn`.
pub fn user_exists(txn: &Transaction, user: &[u8], realm: &[u8]) -> Result<bool> {
    Ok(!txn.properties(user, realm)?.is_empty())
}

/// The answer of [`verify_password`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right.
    Match,
    /// The password is wrong.
    Mismatch,
    /// The user has none of the properties a password governs.
    NoSuchUser,
    /// The user exists but has no secret a password can be checked against (only an
    /// OTP secret, say).
    NoUsableSecret,
}

impl Verdict {
    /// Whether the password is accepted.
    pub fn is_match(self) -> bool {
        self == Verdict::Match
    }
}

/// A stand-in `userPassword` an unknown user's password is compared with, so that
/// the answer costs what a wrong password costs.
const DUMMY_PASSWORD: &[u8] = b"\x01sasldb-no-such-user\x01";

/// Checks a password as Cyrus's libsasl would accept it for `user@realm`: against
/// `userPassword` (and the SASLv1 `cmusaslsecretPLAIN`, as `checkpw.c` does), or, when
/// no plaintext is stored, against the SCRAM `authPassword`. Comparisons take constant
/// time.
///
/// The database is never scanned: every call makes the same keyed lookups (each
/// property a password governs), whether the user exists or not, and an unknown user's
/// password is compared with a stand-in, so a guessed name costs what a wrong password
/// costs and the time taken does not tell which users exist.
pub fn verify_password(
    db: &Database,
    user: &[u8],
    realm: &[u8],
    password: &[u8],
) -> Result<Verdict> {
    let mut found = [const { None }; PASSWORD_PROPERTIES.len()];
    for (slot, prop) in found.iter_mut().zip(PASSWORD_PROPERTIES) {
        *slot = db.get(&key(user, realm, prop)?)?;
    }
    let [up, ap, otp, legacy_cram, legacy_digest, legacy_plain] = found;
    if up.is_some() || legacy_plain.is_some() {
        let ok = plain::verify_checkpass(
            up.as_deref().map(|v| &v[..]),
            legacy_plain.as_deref().map(|v| &v[..]),
            password,
        );
        return Ok(if ok {
            Verdict::Match
        } else {
            Verdict::Mismatch
        });
    }
    if let Some(ap) = &ap
        && let Ok(s) = ScramSecret::parse(ap)
    {
        let ok = s.verify_password(password)?;
        return Ok(if ok {
            Verdict::Match
        } else {
            Verdict::Mismatch
        });
    }
    // The work of a wrong plaintext password, whose answer is thrown away.
    std::hint::black_box(plain::verify_checkpass(
        Some(DUMMY_PASSWORD),
        None,
        password,
    ));
    Ok(
        if ap.is_some() || otp.is_some() || legacy_cram.is_some() || legacy_digest.is_some() {
            Verdict::NoUsableSecret
        } else {
            Verdict::NoSuchUser
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_names(b"", b"r"), Err(NameProblem::EmptyUser));
        assert!(check_names(b"alice", b"").is_ok());
        assert_eq!(
            check_names(&[b'a'; 256], b"r"),
            Err(NameProblem::TooLong {
                what: "user name",
                len: 256
            })
        );
        assert_eq!(
            check_names(b"a\nb", b"r"),
            Err(NameProblem::Control("user name"))
        );
        assert_eq!(
            check_names(b"a", b"r\0"),
            Err(NameProblem::Control("realm"))
        );
        assert_eq!(
            check_names(b"\xff", b"r"),
            Err(NameProblem::NotUtf8("user name"))
        );
        assert!(check_names("josé".as_bytes(), "bücher.example".as_bytes()).is_ok());
    }

    #[test]
    fn userid_split_at_first_at() {
        assert_eq!(
            split_userid(b"vic@other.realm", b"dflt"),
            (&b"vic"[..], &b"other.realm"[..])
        );
        assert_eq!(split_userid(b"a@b@c", b"d"), (&b"a"[..], &b"b@c"[..]));
        assert_eq!(split_userid(b"trail@", b"d"), (&b"trail"[..], &b""[..]));
        assert_eq!(split_userid(b"@only", b"d"), (&b""[..], &b"only"[..]));
        assert_eq!(split_userid(b"bob", b"d"), (&b"bob"[..], &b"d"[..]));
    }

    #[test]
    fn excluded_secrets_are_deleted_not_recomputed() {
        use crate::database::WriteOptions;
        use crate::location::Location;
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::path_only(dir.path().join("db"));
        let opts = WriteOptions {
            ownership: crate::OwnershipPolicy::RootGroup("root".into()),
            ..WriteOptions::default()
        };
        let mut txn = Transaction::begin(&loc, &opts).unwrap();
        let both = SecretPolicy {
            scram: true,
            otp: true,
            scram_iterations: 16,
            ..SecretPolicy::default()
        };
        set_password(&mut txn, b"u", b"r", b"old", &both).unwrap();
        let props = |t: &Transaction| t.properties(b"u", b"r").unwrap();
        assert_eq!(props(&txn).len(), 3);

        // Nothing asked for: existing secrets follow the password.
        let plain = SecretPolicy {
            scram_iterations: 16,
            ..SecretPolicy::default()
        };
        set_password(&mut txn, b"u", b"r", b"new", &plain).unwrap();
        let scram = ScramSecret::parse(
            &txn.get(&key(b"u", b"r", AUTH_PASSWORD).unwrap())
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert!(scram.verify_password(b"new").unwrap());
        let otp = OtpSecret::parse(
            &txn.get(&key(b"u", b"r", OTP_SECRET).unwrap())
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert!(otp.verify_password(b"new").unwrap());

        // Excluded: deleted.
        let excluded = SecretPolicy {
            scram_excluded: true,
            otp_excluded: true,
            ..plain.clone()
        };
        assert_eq!(
            set_password(&mut txn, b"u", b"r", b"newer", &excluded).unwrap(),
            Outcome::Updated
        );
        assert_eq!(props(&txn), [USER_PASSWORD.as_bytes().to_vec()]);

        // A flag wins over the exclusion.
        let forced = SecretPolicy {
            scram: true,
            otp: true,
            ..excluded
        };
        set_password(&mut txn, b"u", b"r", b"newer", &forced).unwrap();
        assert_eq!(props(&txn).len(), 3);
    }

    /// An OTP secret is written with the policy's algorithm whatever the existing one
    /// used; one that matches the password and the algorithm is kept unless the
    /// policy renews it (saslpasswd2, as Cyrus: a new seed and sequence 499).
    #[test]
    fn otp_algorithm_follows_the_policy() {
        use crate::database::WriteOptions;
        use crate::location::Location;
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::path_only(dir.path().join("db"));
        let opts = WriteOptions {
            ownership: crate::OwnershipPolicy::RootGroup("root".into()),
            ..WriteOptions::default()
        };
        let mut txn = Transaction::begin(&loc, &opts).unwrap();
        let otp = |txn: &Transaction| {
            OtpSecret::parse(
                &txn.get(&key(b"u", b"r", OTP_SECRET).unwrap())
                    .unwrap()
                    .unwrap(),
            )
            .unwrap()
        };
        let md5 = SecretPolicy {
            otp: true,
            ..SecretPolicy::default()
        };
        let sha1 = SecretPolicy {
            otp_algorithm: OtpAlgorithm::Sha1,
            ..md5.clone()
        };
        set_password(&mut txn, b"u", b"r", b"pw", &md5).unwrap();
        assert_eq!(otp(&txn).algorithm(), OtpAlgorithm::Md5);
        // Same password, other algorithm: recomputed.
        assert_eq!(
            set_password(&mut txn, b"u", b"r", b"pw", &sha1).unwrap(),
            Outcome::Updated
        );
        assert_eq!(otp(&txn).algorithm(), OtpAlgorithm::Sha1);
        assert!(otp(&txn).verify_password(b"pw").unwrap());
        // Same password and algorithm: kept, unless renewed.
        let before = otp(&txn);
        assert_eq!(
            set_password(&mut txn, b"u", b"r", b"pw", &sha1).unwrap(),
            Outcome::Unchanged
        );
        assert!(otp(&txn) == before);
        let renew = SecretPolicy {
            renew_otp: true,
            ..sha1.clone()
        };
        assert_eq!(
            set_password(&mut txn, b"u", b"r", b"pw", &renew).unwrap(),
            Outcome::Updated
        );
        let after = otp(&txn);
        assert_eq!(
            (after.algorithm(), after.sequence()),
            (OtpAlgorithm::Sha1, 499)
        );
        assert!(after.verify_password(b"pw").unwrap());
        // An existing sha1 secret under the default (md5) policy: md5 again.
        let plain = SecretPolicy::default();
        set_password(&mut txn, b"u", b"r", b"new", &plain).unwrap();
        assert_eq!(otp(&txn).algorithm(), OtpAlgorithm::Md5);
    }
}
