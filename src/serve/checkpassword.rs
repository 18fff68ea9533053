//! `sasldb checkpassword PROG [ARGS...]`: the DJB checkpassword interface
//! (cr.yp.to/checkpwd/interface.html), as Dovecot 2.3's `passdb checkpassword` runs
//! it.
//!
//! The program reads descriptor 3 to its end (at most [`MAX_INPUT`] bytes):
//! `login NUL password NUL timestamp NUL`. A right password: `USER` is set to the
//! login and `PROG ARGS...` is executed (Dovecot's `checkpassword-reply`, which
//! writes the user's fields to descriptor 4 and exits 0). Exit status otherwise:
//! - 1: wrong password or unknown user (nothing else exits 1);
//! - 2: misuse (descriptor 3 missing, input malformed or too long);
//! - 111: any internal failure (the database cannot be read, `PROG` cannot run).
//!
//! **Lookup mode** (Dovecot sets `AUTHORIZED=1` and sends no password, for
//! mechanisms it computes itself, CRAM-MD5 and SCRAM among them): the user is only
//! looked up. With `CREDENTIALS_LOOKUP=1` the stored secret is written to descriptor
//! 4 first, as `password={PLAIN}<password>` (or, for a user with only a SCRAM
//! `authPassword`, `password={SCRAM-SHA-1}iter,salt,StoredKey,ServerKey` in
//! Dovecot's format), TAB-terminated and TAB-escaped; then `AUTHORIZED=2` is set and
//! `PROG` runs, whose `checkpassword-reply` appends its own fields and exits 2, the
//! lookup's success. An unknown user exits 3, Dovecot's "user unknown". The secret
//! goes through the pipe only: never in an argument or the environment.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use super::authority::{Authority, Credentials};
use super::verify::{Decoy, verify_plain};
use crate::account::{Verdict, split_userid};
use crate::record::Secret;

/// Longest input on descriptor 3.
pub const MAX_INPUT: usize = 512;

/// Exit status: wrong password or unknown user.
pub const EXIT_REJECT: i32 = 1;
/// Exit status: misuse.
pub const EXIT_MISUSE: i32 = 2;
/// Exit status: lookup mode, no such user.
pub const EXIT_UNKNOWN: i32 = 3;
/// Exit status: temporary failure.
pub const EXIT_TEMP: i32 = 111;

/// What descriptor 3 said.
#[derive(PartialEq, Eq)]
pub struct Input {
    /// The login.
    pub login: Vec<u8>,
    /// The password (empty in lookup mode).
    pub password: Secret,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("login", &String::from_utf8_lossy(&self.login))
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Parses descriptor 3's bytes.
pub fn parse_input(buf: &[u8]) -> Result<Input, &'static str> {
    if buf.len() > MAX_INPUT {
        return Err("input longer than 512 bytes");
    }
    let mut parts = buf.split(|&b| b == 0);
    let login = parts.next().unwrap_or_default();
    let Some(password) = parts.next() else {
        return Err("input without NUL after the login");
    };
    if parts.next().is_none() {
        return Err("input without NUL after the password");
    }
    if login.is_empty() {
        return Err("empty login");
    }
    Ok(Input {
        login: login.to_vec(),
        password: Zeroizing::new(password.to_vec()),
    })
}

/// Lookup mode, from the environment Dovecot sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Check the password.
    Authenticate,
    /// Only look the user up (`AUTHORIZED=1`); `credentials`: Dovecot wants the
    /// stored secret (`CREDENTIALS_LOOKUP=1`).
    Lookup {
        /// Whether to write the secret to descriptor 4.
        credentials: bool,
    },
}

impl Mode {
    /// From `AUTHORIZED` and `CREDENTIALS_LOOKUP`, given the password read.
    pub fn from_env(
        authorized: Option<&[u8]>,
        credentials_lookup: Option<&[u8]>,
        password: &[u8],
    ) -> Mode {
        if authorized == Some(b"1") && password.is_empty() {
            Mode::Lookup {
                credentials: credentials_lookup == Some(b"1"),
            }
        } else {
            Mode::Authenticate
        }
    }
}

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run `PROG`, after writing `fd4` (if any) to descriptor 4; `lookup`: set
    /// `AUTHORIZED=2`.
    Run {
        /// Fields for descriptor 4.
        fd4: Option<Secret>,
        /// Lookup mode.
        lookup: bool,
    },
    /// Exit with this status.
    Exit(i32),
}

/// The `password=` field Dovecot reads for a user (TAB-terminated, TAB-escaped).
pub fn password_field(creds: &Credentials) -> Option<Secret> {
    let mut out = Zeroizing::new(Vec::with_capacity(128));
    out.extend_from_slice(b"password=");
    if let Some(pw) = creds.plaintext() {
        out.extend_from_slice(b"{PLAIN}");
        super::dovecot::escape(pw, &mut out);
    } else if let Some(s) = &creds.scram {
        out.extend_from_slice(
            format!("{{{}}}{},", s.hash().mechanism(), s.iterations()).as_bytes(),
        );
        out.extend_from_slice(B64.encode(s.salt()).as_bytes());
        out.push(b',');
        out.extend_from_slice(B64.encode(s.stored_key()).as_bytes());
        out.push(b',');
        out.extend_from_slice(B64.encode(s.server_key()).as_bytes());
    } else {
        return None;
    }
    out.push(b'\t');
    Some(out)
}

/// Decides, given the user's credentials (as read for `input.login`).
pub fn decide(creds: Option<&Credentials>, input: &Input, mode: &Mode, decoy: &Decoy) -> Decision {
    match mode {
        Mode::Authenticate => match verify_plain(creds, &input.password, decoy) {
            Verdict::Match => Decision::Run {
                fd4: None,
                lookup: false,
            },
            _ => Decision::Exit(EXIT_REJECT),
        },
        Mode::Lookup { credentials } => match creds {
            None => Decision::Exit(EXIT_UNKNOWN),
            Some(c) if *credentials => match password_field(c) {
                Some(f) => Decision::Run {
                    fd4: Some(f),
                    lookup: true,
                },
                None => Decision::Exit(EXIT_UNKNOWN),
            },
            Some(_) => Decision::Run {
                fd4: None,
                lookup: true,
            },
        },
    }
}

/// Reads descriptor `fd` to its end, keeping at most `MAX_INPUT + 1` bytes.
fn read_input(fd: i32) -> Result<Secret, &'static str> {
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err("descriptor 3 is not open");
    }
    // SAFETY: the descriptor is open and handed to us by our parent for this
    // purpose; it is consumed (and closed) here.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut buf = Zeroizing::new(vec![0u8; MAX_INPUT + 1]);
    let mut n = 0;
    loop {
        if n == buf.len() {
            // Drain the rest so the writer is not blocked, without keeping it.
            let mut sink = Zeroizing::new([0u8; 512]);
            loop {
                match f.read(&mut sink[..]) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            break;
        }
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err("cannot read descriptor 3"),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Runs the program: reads descriptor 3, checks, and executes `prog` or returns the
/// exit status. `log` receives one line for an internal failure (never a secret).
pub fn run(
    authority: &dyn Authority,
    default_realm: &[u8],
    prog: &[OsString],
    log: &mut dyn FnMut(&str),
) -> i32 {
    let Some((cmd, args)) = prog.split_first() else {
        log("no program to run");
        return EXIT_MISUSE;
    };
    let raw = match read_input(3) {
        Ok(r) => r,
        Err(e) => {
            log(e);
            return EXIT_MISUSE;
        }
    };
    let input = match parse_input(&raw) {
        Ok(i) => i,
        Err(e) => {
            log(e);
            return EXIT_MISUSE;
        }
    };
    drop(raw);
    let env = |k: &str| std::env::var_os(k).map(|v| v.into_encoded_bytes());
    let mode = Mode::from_env(
        env("AUTHORIZED").as_deref(),
        env("CREDENTIALS_LOOKUP").as_deref(),
        &input.password,
    );
    let decoy = match Decoy::new() {
        Ok(d) => d,
        Err(_) => {
            log("no random numbers");
            return EXIT_TEMP;
        }
    };
    let (user, realm) = split_userid(&input.login, default_realm);
    let creds = match authority.credentials(user, realm) {
        Ok(c) => c,
        Err(e) => {
            log(&e.to_string());
            return EXIT_TEMP;
        }
    };
    match decide(creds.as_ref(), &input, &mode, &decoy) {
        Decision::Exit(code) => code,
        Decision::Run { fd4, lookup } => {
            drop(creds);
            if let Some(data) = fd4 {
                // SAFETY: F_GETFD only asks whether descriptor 4 is open.
                if unsafe { libc::fcntl(4, libc::F_GETFD) } < 0 {
                    log("descriptor 4 is not open (lookup mode needs Dovecot's reply pipe)");
                    return EXIT_TEMP;
                }
                // SAFETY: descriptor 4 is open (checked); it stays open for PROG, so
                // the File must not close it.
                let mut f = std::mem::ManuallyDrop::new(std::fs::File::from(unsafe {
                    OwnedFd::from_raw_fd(4)
                }));
                if f.write_all(&data).is_err() {
                    log("cannot write to descriptor 4");
                    return EXIT_TEMP;
                }
            }
            let mut c = std::process::Command::new(cmd);
            c.args(args)
                .env("USER", std::ffi::OsStr::from_bytes(&input.login));
            if lookup {
                c.env("AUTHORIZED", "2");
            }
            drop(input);
            use std::os::unix::process::CommandExt;
            let e = c.exec();
            log(&format!(
                "cannot run {}: {}",
                std::path::Path::new(cmd).display(),
                crate::io_text(&e)
            ));
            EXIT_TEMP
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::mech::test_env::{decoy, plain_creds};
    use super::*;
    use crate::account::secrets::{ScramHash, ScramSecret};

    #[test]
    fn input() {
        let i = parse_input(b"alice@example.org\0pw\0\0").unwrap();
        assert_eq!(i.login, b"alice@example.org");
        assert_eq!(&i.password[..], b"pw");
        let i = parse_input(b"alice\0\0\0").unwrap();
        assert!(i.password.is_empty());
        assert!(parse_input(b"alice\0pw").is_err());
        assert!(parse_input(b"alice").is_err());
        assert!(parse_input(b"\0pw\0\0").is_err());
        assert!(parse_input(&[b'a'; 513]).is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(Mode::from_env(None, None, b"pw"), Mode::Authenticate);
        assert_eq!(
            Mode::from_env(Some(b"1"), None, b""),
            Mode::Lookup { credentials: false }
        );
        assert_eq!(
            Mode::from_env(Some(b"1"), Some(b"1"), b""),
            Mode::Lookup { credentials: true }
        );
        assert_eq!(
            Mode::from_env(Some(b"1"), Some(b"1"), b"pw"),
            Mode::Authenticate
        );
    }

    #[test]
    fn decisions() {
        let d = decoy();
        let i = |pw: &[u8]| Input {
            login: b"alice".to_vec(),
            password: Zeroizing::new(pw.to_vec()),
        };
        let c = plain_creds(b"p\tw");
        let auth = Mode::Authenticate;
        assert_eq!(
            decide(Some(&c), &i(b"p\tw"), &auth, d),
            Decision::Run {
                fd4: None,
                lookup: false
            }
        );
        assert_eq!(decide(Some(&c), &i(b"x"), &auth, d), Decision::Exit(1));
        assert_eq!(decide(None, &i(b"x"), &auth, d), Decision::Exit(1));
        let look = Mode::Lookup { credentials: true };
        assert_eq!(
            decide(Some(&c), &i(b""), &look, d),
            Decision::Run {
                fd4: Some(Zeroizing::new(b"password={PLAIN}p\x01tw\t".to_vec())),
                lookup: true
            }
        );
        assert_eq!(decide(None, &i(b""), &look, d), Decision::Exit(3));
        let s = ScramSecret::compute(ScramHash::Sha1, b"pw", b"salt", 4096).unwrap();
        let hashed = Credentials {
            scram: Some(s.clone()),
            ..Credentials::default()
        };
        let Decision::Run { fd4: Some(f), .. } = decide(Some(&hashed), &i(b""), &look, d) else {
            panic!()
        };
        let text = String::from_utf8(f.to_vec()).unwrap();
        assert!(
            text.starts_with("password={SCRAM-SHA-1}4096,c2FsdA==,"),
            "{text}"
        );
        assert_eq!(
            decide(
                Some(&hashed),
                &i(b""),
                &Mode::Lookup { credentials: false },
                d
            ),
            Decision::Run {
                fd4: None,
                lookup: true
            }
        );
    }
}
