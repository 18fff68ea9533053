//! The sasldb record model: the key codec and the secret value type.
//!
//! Every sasldb backend stores the same records. A key is the three components
//! `user NUL realm NUL property`, with no trailing NUL, exactly as Cyrus SASL's
//! `_sasldb_alloc_key` builds it (`alice\0example.com\0userPassword`). A value is the
//! raw secret bytes with no terminator.
//!
//! This module owns the byte layout of keys and nothing else: it does no I/O and
//! knows no backend. Components may hold any byte except NUL; user and realm are
//! usually UTF-8 but files in the wild are not required to be, so they are kept as
//! bytes and only rendered lossily for display.

use std::borrow::Cow;
use std::fmt;

use zeroize::Zeroizing;

/// The property Cyrus uses for the plaintext password.
pub const USER_PASSWORD: &str = "userPassword";
/// The property the OTP plugin writes (`alg\tseq\tseed\thex\ttimeout`).
pub const OTP_SECRET: &str = "cmusaslsecretOTP";
/// The property the SCRAM plugin writes (`SCRAM-SHA-1$iter:salt$stored:server`).
pub const AUTH_PASSWORD: &str = "authPassword";

/// Longest user or realm component our tools write, in bytes.
///
/// Cyrus's `sasldblistusers2` refuses components of 16384 bytes or more (and loops
/// forever on them); LMDB refuses keys over 511 bytes. 255 bytes per name keeps every
/// key we write (`user NUL realm NUL property`) within what every backend and every
/// Cyrus reader accepts.
pub const MAX_NAME_LEN: usize = 255;

/// Longest secret value our tools write, in bytes.
///
/// saslauthd fetches `userPassword` into a 1024-byte buffer and its size check is off
/// by two (Cyrus `_sasldb_getdata`), so 1023 bytes is the longest value that every
/// Cyrus reader handles safely. Cyrus's own `saslpasswd2` silently truncated at 2048.
pub const MAX_SECRET_LEN: usize = 1023;

/// A secret value: raw bytes, wiped from memory when dropped.
pub type Secret = Zeroizing<Vec<u8>>;

/// A large buffer that may hold secrets (a file page, a sort block): wiped when
/// dropped, like a [`Secret`], but with one fill of its content rather than
/// [`zeroize`]'s volatile store per byte, which costs microseconds on a 4 KiB page
/// (and a page is read for every lookup). The zeroed bytes are then handed to
/// [`std::hint::black_box`], an opaque read, so the fill is not a dead store the
/// optimizer may drop. The buffer must not grow (a reallocation would leave a copy
/// behind): it is made at its full size.
pub(crate) struct WipeBuf(Vec<u8>);

impl WipeBuf {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> WipeBuf {
        WipeBuf(vec![0u8; len])
    }

    /// An empty buffer with room for `cap` bytes, to be filled without growing.
    pub(crate) fn with_capacity(cap: usize) -> WipeBuf {
        WipeBuf(Vec::with_capacity(cap))
    }

    /// Room for bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Appends bytes that fit in the room left (checked).
    pub(crate) fn extend_from_slice(&mut self, b: &[u8]) {
        assert!(
            self.0.len() + b.len() <= self.0.capacity(),
            "a wiped buffer must not grow"
        );
        self.0.extend_from_slice(b);
    }

    /// Wipes the first `n` bytes (all of them if fewer), keeping the length: for a
    /// buffer reused at its length, whose use wrote only a part of it.
    pub(crate) fn wipe(&mut self, n: usize) {
        let n = n.min(self.0.len());
        self.0[..n].fill(0);
        std::hint::black_box(&self.0[..n]);
    }

    /// Wipes the content and empties the buffer, keeping its room.
    pub(crate) fn clear(&mut self) {
        self.wipe(self.0.len());
        self.0.clear();
    }
}

impl std::ops::Deref for WipeBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for WipeBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for WipeBuf {
    fn drop(&mut self) {
        // Bytes past the length were never written (the buffer does not grow, and
        // `clear` wipes what it drops), so wiping the content wipes everything.
        self.clear();
    }
}

/// A byte buffer for text that holds secrets (export lines): wiped on drop, and when
/// it must grow its content moves to a new buffer and the old one is wiped (a `Vec`
/// growing in place would leave copies in freed memory).
pub(crate) struct SecretBuf(Secret);

impl SecretBuf {
    /// An empty buffer with room for `cap` bytes.
    pub(crate) fn with_capacity(cap: usize) -> SecretBuf {
        SecretBuf(Zeroizing::new(Vec::with_capacity(cap)))
    }

    /// Appends bytes.
    pub(crate) fn push(&mut self, b: &[u8]) {
        let need = self.0.len() + b.len();
        if need > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(2 * self.0.capacity())));
            bigger.extend_from_slice(&self.0);
            // The old buffer is wiped as it drops.
            self.0 = bigger;
        }
        self.0.extend_from_slice(b);
    }

    /// The content.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Wipes the content and empties the buffer, keeping its room.
    pub(crate) fn clear(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        self.0.clear();
    }
}

/// Why a key or one of its components was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A component passed to [`Key::new`] contains a NUL byte.
    #[error("the {0} contains a NUL byte")]
    NulInComponent(Component),
    /// A stored key does not have exactly two NUL separators.
    #[error("malformed key: expected 2 NUL separators, found {nuls}")]
    WrongSeparatorCount {
        /// How many NUL bytes the key holds.
        nuls: usize,
    },
    /// The property component is empty.
    #[error("the property name is empty")]
    EmptyProperty,
}

/// Names the three parts of a key, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The user (authentication id) part.
    User,
    /// The realm part.
    Realm,
    /// The property name part.
    Property,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::User => "user name",
            Component::Realm => "realm",
            Component::Property => "property name",
        })
    }
}

/// A key split into its components, borrowing the encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyRef<'a> {
    /// The user part (may be empty).
    pub user: &'a [u8],
    /// The realm part (may be empty).
    pub realm: &'a [u8],
    /// The property name (never empty).
    pub property: &'a [u8],
}

impl<'a> KeyRef<'a> {
    /// Splits an encoded key. Refuses keys without exactly two NULs (Cyrus's
    /// `_sasldb_parse_key` rule) and keys with an empty property.
    ///
    /// ```
    /// use sasldb::KeyRef;
    /// let k = KeyRef::parse(b"alice\0example.com\0userPassword").unwrap();
    /// assert_eq!(k.user, b"alice");
    /// assert_eq!(k.realm, b"example.com");
    /// assert!(KeyRef::parse(b"no-separators").is_err());
    /// ```
    pub fn parse(encoded: &'a [u8]) -> Result<Self, KeyError> {
        let mut it = memchr::memchr_iter(0, encoded);
        let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
            return Err(KeyError::WrongSeparatorCount {
                nuls: memchr::memchr_iter(0, encoded).count(),
            });
        };
        let property = &encoded[b + 1..];
        if property.is_empty() {
            return Err(KeyError::EmptyProperty);
        }
        Ok(KeyRef {
            user: &encoded[..a],
            realm: &encoded[a + 1..b],
            property,
        })
    }

    /// Copies the components into an owned [`Key`].
    pub fn to_owned(&self) -> Key {
        Key {
            user: self.user.to_vec(),
            realm: self.realm.to_vec(),
            property: self.property.to_vec(),
        }
    }

    /// The `user@realm` form Cyrus prints, rendered lossily as UTF-8.
    pub fn user_at_realm(&self) -> String {
        format!(
            "{}@{}",
            String::from_utf8_lossy(self.user),
            String::from_utf8_lossy(self.realm)
        )
    }

    /// The property name, rendered lossily as UTF-8.
    pub fn property_str(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.property)
    }
}

/// An owned sasldb key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    user: Vec<u8>,
    realm: Vec<u8>,
    property: Vec<u8>,
}

impl Key {
    /// Builds a key, refusing components that contain NUL (they could not be split
    /// back apart) and an empty property.
    ///
    /// ```
    /// use sasldb::Key;
    /// let k = Key::new("alice", "example.com", "userPassword").unwrap();
    /// assert_eq!(k.encode(), b"alice\0example.com\0userPassword");
    /// assert!(Key::new("al\0ice", "example.com", "userPassword").is_err());
    /// ```
    pub fn new(
        user: impl AsRef<[u8]>,
        realm: impl AsRef<[u8]>,
        property: impl AsRef<[u8]>,
    ) -> Result<Self, KeyError> {
        let (user, realm, property) = (user.as_ref(), realm.as_ref(), property.as_ref());
        for (part, which) in [
            (user, Component::User),
            (realm, Component::Realm),
            (property, Component::Property),
        ] {
            if memchr::memchr(0, part).is_some() {
                return Err(KeyError::NulInComponent(which));
            }
        }
        if property.is_empty() {
            return Err(KeyError::EmptyProperty);
        }
        Ok(Key {
            user: user.to_vec(),
            realm: realm.to_vec(),
            property: property.to_vec(),
        })
    }

    /// Parses an encoded key into an owned [`Key`].
    pub fn parse(encoded: &[u8]) -> Result<Self, KeyError> {
        KeyRef::parse(encoded).map(|k| k.to_owned())
    }

    /// The encoded form, `user NUL realm NUL property`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.user.len() + self.realm.len() + self.property.len() + 2);
        encode_into(&mut out, &self.user, &self.realm, &self.property);
        out
    }

    /// Borrows the components.
    pub fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            user: &self.user,
            realm: &self.realm,
            property: &self.property,
        }
    }

    /// The user part.
    pub fn user(&self) -> &[u8] {
        &self.user
    }

    /// The realm part.
    pub fn realm(&self) -> &[u8] {
        &self.realm
    }

    /// The property name.
    pub fn property(&self) -> &[u8] {
        &self.property
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.as_ref().user_at_realm(),
            self.as_ref().property_str()
        )
    }
}

/// Appends `user NUL realm NUL property` to `out`. Callers guarantee that no
/// component contains NUL.
pub(crate) fn encode_into(out: &mut Vec<u8>, user: &[u8], realm: &[u8], property: &[u8]) {
    out.extend_from_slice(user);
    out.push(0);
    out.extend_from_slice(realm);
    out.push(0);
    out.extend_from_slice(property);
}

/// The prefix `user NUL realm NUL` shared by every property of one user.
pub fn user_prefix(user: &[u8], realm: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(user.len() + realm.len() + 2);
    out.extend_from_slice(user);
    out.push(0);
    out.extend_from_slice(realm);
    out.push(0);
    out
}

/// One stored record: the encoded key and the secret value.
///
/// The key is kept encoded because a backend may hold keys that do not parse
/// (a malformed key is data to report, not a reason to stop reading).
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The encoded key.
    pub key: Vec<u8>,
    /// The raw value.
    pub value: Secret,
}

impl Record {
    /// Builds a record from an encoded key and a value.
    pub fn new(key: Vec<u8>, value: Vec<u8>) -> Self {
        Record {
            key,
            value: Zeroizing::new(value),
        }
    }

    /// Splits the key; see [`KeyRef::parse`].
    pub fn parse_key(&self) -> Result<KeyRef<'_>, KeyError> {
        KeyRef::parse(&self.key)
    }
}

impl fmt::Debug for Record {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .finish()
    }
}

/// Shows a key with NULs and other control bytes escaped, for messages.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(200) {
        match c {
            0 => s.push_str("\\0"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 200 {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = Key::new("josé", "example.com", "userPassword").unwrap();
        let enc = k.encode();
        assert_eq!(enc, "josé\0example.com\0userPassword".as_bytes());
        assert_eq!(Key::parse(&enc).unwrap(), k);
    }

    #[test]
    fn empty_user_and_realm_are_allowed() {
        let k = KeyRef::parse(b"\0\0userPassword").unwrap();
        assert_eq!((k.user, k.realm), (&b""[..], &b""[..]));
        assert_eq!(k.user_at_realm(), "@");
    }

    #[test]
    fn separator_counts() {
        for (bytes, nuls) in [
            (&b"nonul"[..], 0),
            (b"one\0nul", 1),
            (b"a\0b\0c\0d", 3),
            (b"a\0b\0c\0", 3),
            (b"\0\0\0\0", 4),
        ] {
            assert_eq!(
                KeyRef::parse(bytes),
                Err(KeyError::WrongSeparatorCount { nuls })
            );
        }
        assert_eq!(KeyRef::parse(b"a\0b\0"), Err(KeyError::EmptyProperty));
    }

    #[test]
    fn nul_components_refused() {
        assert_eq!(
            Key::new("a", "r\0x", "p"),
            Err(KeyError::NulInComponent(Component::Realm))
        );
        assert_eq!(
            Key::new("a", "r", "p\0"),
            Err(KeyError::NulInComponent(Component::Property))
        );
        assert_eq!(Key::new("a", "r", ""), Err(KeyError::EmptyProperty));
    }

    #[test]
    fn debug_hides_secret() {
        let r = Record::new(b"a\0b\0userPassword".to_vec(), b"hunter2".to_vec());
        let shown = format!("{r:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<7 bytes>"));
    }
}
