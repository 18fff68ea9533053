//! TLS as libpq does it, through OpenSSL (the library libpq itself uses, so certificate
//! checks, host name matching and key formats behave the same): `sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey`, their `PGSSL*` variables and their default files
//! under `~/.postgresql/`.
//!
//! | sslmode | TLS | server certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow` | only when the server refuses a plain connection | against the root file if it exists |
//! | `prefer` (default) | when the server offers it; a failed TLS attempt is retried in plain text | against the root file if it exists |
//! | `require` | always | against the root file if it exists (then as `verify-ca`) |
//! | `verify-ca` | always | chain to a CA in the root file, which must exist |
//! | `verify-full` | always | chain, and the certificate names the host |
//!
//! The root file is `sslrootcert`, else `PGSSLROOTCERT`, else `~/.postgresql/root.crt`;
//! `sslrootcert=system` uses OpenSSL's default trust store and requires `verify-full`.
//! A client certificate (`sslcert`, else `PGSSLCERT`, else `~/.postgresql/postgresql.crt`)
//! is sent when its file exists; its key (`sslkey`, else `PGSSLKEY`, else
//! `~/.postgresql/postgresql.key`) must then exist, be a plain file and have no group
//! or world access (0640 is allowed when root owns it), as libpq requires. Unix sockets
//! never use TLS.

use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use postgres_openssl::MakeTlsConnector;
use zeroize::Zeroizing;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// Plain text, TLS if the server refuses it.
    Allow,
    /// TLS if the server offers it, else plain text.
    Prefer,
    /// TLS, no check of the server's identity unless a root file exists.
    Require,
    /// TLS, the server's certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, the certificate signed by a trusted CA and naming the host.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling.
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of CA certificates (named, or the default `~/.postgresql/root.crt`).
    File(PathBuf),
    /// OpenSSL's default trust store (`sslrootcert=system`).
    System,
}

/// The TLS settings of a connection, resolved from the URL, the environment and the
/// default files. Nothing is read until [`TlsSettings::connector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// Whether `sslmode` was given (URL or `PGSSLMODE`) rather than the default.
    pub mode_given: bool,
    /// The trusted CAs (None: no home directory to find the default file in).
    pub rootcert: Option<RootCert>,
    /// The client certificate file.
    pub cert: Option<PathBuf>,
    /// The client key file.
    pub key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            mode_given: false,
            rootcert: None,
            cert: None,
            key: None,
        }
    }
}

/// The `~/.postgresql` directory libpq's default files live in.
fn default_file(home: Option<&Path>, name: &str) -> Option<PathBuf> {
    home.map(|h| h.join(".postgresql").join(name))
}

impl TlsSettings {
    /// The settings from the URL's values (`None`: not given), the environment, and the
    /// home directory's default files.
    pub fn resolve(
        mode: Option<&str>,
        rootcert: Option<&str>,
        cert: Option<&Path>,
        key: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> std::result::Result<TlsSettings, String> {
        let mode_s = mode.map(str::to_string).or_else(|| env("PGSSLMODE"));
        let (mode, mode_given) = match &mode_s {
            Some(m) => (
                SslMode::parse(m).ok_or_else(|| format!("unknown sslmode `{m}`"))?,
                true,
            ),
            None => (SslMode::Prefer, false),
        };
        let rootcert = match rootcert
            .map(str::to_string)
            .or_else(|| env("PGSSLROOTCERT"))
        {
            Some(s) if s == "system" => Some(RootCert::System),
            Some(s) => Some(RootCert::File(PathBuf::from(s))),
            None => default_file(home, "root.crt").map(RootCert::File),
        };
        if rootcert == Some(RootCert::System) && mode != SslMode::VerifyFull && mode_given {
            return Err(format!(
                "sslmode={mode} may not be used with sslrootcert=system (use verify-full)"
            ));
        }
        let mode = if rootcert == Some(RootCert::System) {
            SslMode::VerifyFull
        } else {
            mode
        };
        let cert = cert
            .map(Path::to_path_buf)
            .or_else(|| env("PGSSLCERT").map(PathBuf::from))
            .or_else(|| default_file(home, "postgresql.crt"));
        let key = key
            .map(Path::to_path_buf)
            .or_else(|| env("PGSSLKEY").map(PathBuf::from))
            .or_else(|| default_file(home, "postgresql.key"));
        Ok(TlsSettings {
            mode,
            mode_given,
            rootcert,
            cert,
            key,
        })
    }

    /// The root file to check server certificates against, if there is one: the
    /// system store, or an existing file. A verify mode without one is an error.
    fn roots(&self) -> std::result::Result<Option<&RootCert>, String> {
        match &self.rootcert {
            Some(RootCert::System) => Ok(self.rootcert.as_ref()),
            Some(RootCert::File(f)) if f.exists() => Ok(self.rootcert.as_ref()),
            other => {
                if self.mode >= SslMode::VerifyCa {
                    let name = match other {
                        Some(RootCert::File(f)) => format!("root certificate file {}", f.display()),
                        _ => "root certificate file (no home directory for ~/.postgresql/root.crt)"
                            .to_string(),
                    };
                    Err(format!(
                        "{name} does not exist, and sslmode={} needs it to check the server's \
                         certificate: name the CA file with sslrootcert= or PGSSLROOTCERT, use \
                         the system's trusted roots with sslrootcert=system, or choose a \
                         weaker sslmode",
                        self.mode
                    ))
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Whether TLS connections check the server's certificate chain.
    pub fn checks_chain(&self) -> bool {
        matches!(self.roots(), Ok(Some(_)))
    }

    /// The OpenSSL connector for these settings: the trusted roots (only those of the
    /// root file, never OpenSSL's defaults unless `system`), the client certificate and
    /// key, host name checking for `verify-full`.
    pub fn connector(&self) -> std::result::Result<MakeTlsConnector, String> {
        let ossl = |what: &str, e: openssl::error::ErrorStack| format!("{what}: {e}");
        let mut b = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| ossl("cannot set up TLS", e))?;
        let roots = self.roots()?;
        match roots {
            Some(RootCert::System) => {} // SslConnector's default: OpenSSL's trust store
            Some(RootCert::File(f)) => {
                let pem = fs::read(f)
                    .map_err(|e| format!("root certificate file {}: {e}", f.display()))?;
                let certs = X509::stack_from_pem(&pem).map_err(|e| {
                    ossl(
                        &format!(
                            "root certificate file {}: not PEM certificates",
                            f.display()
                        ),
                        e,
                    )
                })?;
                if certs.is_empty() {
                    return Err(format!(
                        "root certificate file {} holds no certificate",
                        f.display()
                    ));
                }
                let mut store = X509StoreBuilder::new().map_err(|e| ossl("TLS", e))?;
                for c in certs {
                    store.add_cert(c).map_err(|e| ossl("TLS", e))?;
                }
                b.set_cert_store(store.build());
            }
            None => b.set_verify(SslVerifyMode::NONE),
        }
        if let Some(cert) = &self.cert
            && let Some(pem) = read_cert(cert)?
        {
            let mut chain = X509::stack_from_pem(&pem).map_err(|e| {
                ossl(
                    &format!(
                        "client certificate file {}: not a PEM certificate",
                        cert.display()
                    ),
                    e,
                )
            })?;
            if chain.is_empty() {
                return Err(format!(
                    "client certificate file {} holds no certificate",
                    cert.display()
                ));
            }
            let leaf = chain.remove(0);
            b.set_certificate(&leaf)
                .map_err(|e| ossl("client certificate", e))?;
            for c in chain {
                b.add_extra_chain_cert(c)
                    .map_err(|e| ossl("client certificate chain", e))?;
            }
            let key_file = self.key.as_deref().ok_or_else(|| {
                format!(
                    "certificate {} present, but no private key file (sslkey=, PGSSLKEY)",
                    cert.display()
                )
            })?;
            let key_pem = read_key(key_file, cert)?;
            // A key needing a passphrase fails here instead of prompting on the terminal.
            let pkey = PKey::private_key_from_pem_callback(&key_pem, |_| Ok(0)).map_err(|_| {
                format!(
                    "private key file {}: not an unencrypted PEM private key (an encrypted \
                     key is not supported: decrypt it with `openssl pkey`)",
                    key_file.display()
                )
            })?;
            b.set_private_key(&pkey)
                .map_err(|e| ossl("private key", e))?;
            b.check_private_key().map_err(|_| {
                format!(
                    "certificate {} does not match private key file {}",
                    cert.display(),
                    key_file.display()
                )
            })?;
        }
        let mut connector = MakeTlsConnector::new(b.build());
        let full = self.mode == SslMode::VerifyFull;
        connector.set_callback(move |config, _domain| {
            config.set_verify_hostname(full);
            Ok(())
        });
        Ok(connector)
    }
}

/// The client certificate's bytes; None when the file does not exist (libpq then sends
/// no certificate, whether or not the file was named).
fn read_cert(path: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!(
            "could not open certificate file {}: {e}",
            path.display()
        )),
    }
}

/// The private key's bytes, after libpq's checks: it exists, is a plain file, and has
/// no group or world access (u=rw or less; u=rw,g=r or less when owned by root).
pub(crate) fn read_key(
    path: &Path,
    cert: &Path,
) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let mut f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "certificate present ({}), but not private key file {}",
                cert.display(),
                path.display()
            ));
        }
        Err(e) => return Err(format!("private key file {}: {e}", path.display())),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("private key file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "private key file {} is not a regular file",
            path.display()
        ));
    }
    // libpq's rule exactly: a root-owned key may be group-readable (a system-wide key
    // read through a supplementary group), any other must be u=rw or less.
    let mode = meta.mode();
    let too_open = if meta.uid() == 0 {
        mode & 0o037 != 0
    } else {
        mode & 0o077 != 0
    };
    if too_open {
        return Err(format!(
            "private key file {} has group or world access (mode {:04o}): refused; it must \
             have permissions u=rw (0600) or less if owned by the current user, or u=rw,g=r \
             (0640) or less if owned by root, as libpq requires",
            path.display(),
            mode & 0o7777
        ));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    f.read_to_end(&mut buf)
        .map_err(|e| format!("private key file {}: {e}", path.display()))?;
    Ok(buf)
}

/// A clearer account of a failed TLS handshake, from OpenSSL's verify result in `text`
/// (the error's whole chain, one line).
pub fn explain_handshake(text: &str, settings: &TlsSettings, host: &str) -> Option<String> {
    let roots = match &settings.rootcert {
        Some(RootCert::File(f)) => format!("the CA certificates in {}", f.display()),
        Some(RootCert::System) => "the system's trusted CAs".to_string(),
        None => "the trusted CAs".to_string(),
    };
    let t = text.to_ascii_lowercase();
    if t.contains("hostname mismatch") || t.contains("ip address mismatch") {
        Some(format!(
            "the server's certificate does not name the host `{host}` (sslmode=verify-full \
             checks the name)"
        ))
    } else if t.contains("unable to get local issuer certificate")
        || t.contains("unable to get issuer certificate")
        || t.contains("self-signed certificate")
        || t.contains("self signed certificate")
        || t.contains("certificate signature failure")
        || t.contains("unable to verify the first certificate")
    {
        Some(format!(
            "the server's certificate is not signed by {roots} (sslmode={})",
            settings.mode
        ))
    } else if t.contains("certificate has expired") {
        Some("the server's certificate has expired".to_string())
    } else if t.contains("certificate is not yet valid") {
        Some("the server's certificate is not yet valid".to_string())
    } else if t.contains("certificate verify failed") {
        Some(format!(
            "the server's certificate could not be verified against {roots}"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn resolution_and_defaults() {
        let none = |_: &str| None;
        let home = Path::new("/home/u");
        let t = TlsSettings::resolve(None, None, None, None, &none, Some(home)).unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
        assert!(!t.mode_given);
        assert_eq!(
            t.rootcert,
            Some(RootCert::File("/home/u/.postgresql/root.crt".into()))
        );
        assert_eq!(
            t.key.as_deref(),
            Some(Path::new("/home/u/.postgresql/postgresql.key"))
        );
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-ca".to_string()),
            "PGSSLROOTCERT" => Some("/etc/ca.pem".to_string()),
            "PGSSLCERT" => Some("/c".to_string()),
            _ => None,
        };
        let t = TlsSettings::resolve(None, None, None, None, &env, None).unwrap();
        assert_eq!(t.mode, SslMode::VerifyCa);
        assert_eq!(t.rootcert, Some(RootCert::File("/etc/ca.pem".into())));
        assert_eq!(t.cert.as_deref(), Some(Path::new("/c")));
        assert_eq!(t.key, None);
        // The URL wins over the environment.
        let t = TlsSettings::resolve(Some("disable"), Some("/x"), None, None, &env, None).unwrap();
        assert_eq!(t.mode, SslMode::Disable);
        assert_eq!(t.rootcert, Some(RootCert::File("/x".into())));
        // system: verify-full only.
        let t = TlsSettings::resolve(None, Some("system"), None, None, &none, None).unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        let e = TlsSettings::resolve(Some("require"), Some("system"), None, None, &none, None)
            .unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
        // verify-ca without the root file: an error naming it.
        let t = TlsSettings::resolve(
            Some("verify-ca"),
            Some("/nonexistent/ca"),
            None,
            None,
            &none,
            None,
        )
        .unwrap();
        let e = t.connector().err().unwrap();
        assert!(
            e.contains("/nonexistent/ca") && e.contains("does not exist"),
            "{e}"
        );
        // require without one: no check, no error.
        let t = TlsSettings::resolve(
            Some("require"),
            Some("/nonexistent/ca"),
            None,
            None,
            &none,
            None,
        )
        .unwrap();
        assert!(!t.checks_chain());
        assert!(t.connector().is_ok());
    }

    #[test]
    fn key_file_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let cert = dir.path().join("c");
        // Files created here are owned by the test's user: root may have 0640.
        let root = nix::unistd::geteuid().is_root();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, root),
            (0o644, false),
            (0o604, false),
        ] {
            fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
            let r = read_key(&key, &cert);
            assert_eq!(r.is_ok(), ok, "{mode:o}: {:?}", r.err());
            if !ok {
                assert!(r.unwrap_err().contains("group or world access"));
            }
        }
        let e = read_key(&dir.path().join("missing"), &cert).unwrap_err();
        assert!(e.contains("not private key file"), "{e}");
        let e = read_key(dir.path(), &cert).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
