//! [`Users`]: a database's records grouped by user, what listings, exports and checks
//! iterate. The grouping reads a stream in key order (a sorted backend's scan, or an
//! external sort of a Berkeley DB or GDBM file), so memory holds one user at a time.

use crate::error::Result;
use crate::record::{KeyRef, Secret};
use crate::storage::sort::SortedStream;

/// One user (`user@realm`) and the names of their properties, sorted bytewise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (before the first NUL of the key).
    pub user: Vec<u8>,
    /// The realm.
    pub realm: Vec<u8>,
    /// Property names (`userPassword`, `authPassword`, ...), sorted bytewise.
    pub properties: Vec<Vec<u8>>,
}

/// Every user of a database, in bytewise order of user, then realm (see
/// [`crate::Database::users`]). Keys that are not `user NUL realm NUL property`
/// (a malformed key) belong to no user: they are skipped and counted
/// ([`Users::malformed`]). A read error ends the iteration with that error.
pub struct Users<'a> {
    grouped: Grouped<'a>,
    failed: bool,
}

impl std::fmt::Debug for Users<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("malformed", &self.grouped.malformed)
            .finish()
    }
}

/// How many malformed keys [`Users::malformed_keys`] keeps.
const MALFORMED_EXAMPLES: usize = 10;

impl<'a> Users<'a> {
    pub(crate) fn new(grouped: Grouped<'a>) -> Users<'a> {
        Users {
            grouped,
            failed: false,
        }
    }

    /// How many malformed keys were skipped so far (all of them once the iterator is
    /// exhausted).
    pub fn malformed(&self) -> usize {
        self.grouped.malformed
    }

    /// The first malformed keys skipped (at most ten), for messages.
    pub fn malformed_keys(&self) -> &[Vec<u8>] {
        &self.grouped.examples
    }
}

impl Iterator for Users<'_> {
    type Item = Result<User>;

    fn next(&mut self) -> Option<Result<User>> {
        if self.failed {
            return None;
        }
        match self.grouped.next_group() {
            Ok(Some(g)) => Some(Ok(User {
                user: g.user,
                realm: g.realm,
                properties: g.props.into_iter().map(|(p, _)| p).collect(),
            })),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One user's records: property names with their values (empty when the stream
/// carries keys only).
pub(crate) struct UserGroup {
    pub user: Vec<u8>,
    pub realm: Vec<u8>,
    pub props: Vec<(Vec<u8>, Secret)>,
}

/// Groups a stream in key order by `user NUL realm`, counting malformed keys.
pub(crate) struct Grouped<'a> {
    stream: SortedStream<'a>,
    /// A record read ahead: the first of the next group.
    pending: Option<(Vec<u8>, Secret)>,
    done: bool,
    malformed: usize,
    examples: Vec<Vec<u8>>,
}

impl<'a> Grouped<'a> {
    pub(crate) fn new(stream: SortedStream<'a>) -> Grouped<'a> {
        Grouped {
            stream,
            pending: None,
            done: false,
            malformed: 0,
            examples: Vec::new(),
        }
    }

    /// Malformed keys skipped so far.
    pub(crate) fn malformed(&self) -> usize {
        self.malformed
    }

    /// The next record, read ahead or from the stream.
    fn take(&mut self) -> Result<Option<(Vec<u8>, Secret)>> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        if self.done {
            return Ok(None);
        }
        match self.stream.next()? {
            Some((k, v)) => Ok(Some((k.to_vec(), Secret::new(v.to_vec())))),
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }

    /// The next user and their records.
    pub(crate) fn next_group(&mut self) -> Result<Option<UserGroup>> {
        let mut current: Option<UserGroup> = None;
        while let Some((key, value)) = self.take()? {
            let Ok(kr) = KeyRef::parse(&key) else {
                self.malformed += 1;
                if self.examples.len() < MALFORMED_EXAMPLES {
                    self.examples.push(key);
                }
                continue;
            };
            match &mut current {
                Some(u) if u.user == kr.user && u.realm == kr.realm => {
                    u.props.push((kr.property.to_vec(), value));
                }
                Some(_) => {
                    self.pending = Some((key, value));
                    break;
                }
                None => {
                    current = Some(UserGroup {
                        user: kr.user.to_vec(),
                        realm: kr.realm.to_vec(),
                        props: vec![(kr.property.to_vec(), value)],
                    });
                }
            }
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_into;
    use crate::storage::sort::{ExternalSort, SpillTo};

    fn keys(list: &[(&str, &str, &str)]) -> SortedStream<'static> {
        let mut s = ExternalSort::new(&SpillTo::memory_only());
        for (u, r, p) in list {
            let mut key = Vec::new();
            encode_into(&mut key, u.as_bytes(), r.as_bytes(), p.as_bytes());
            s.push(&key, b"").unwrap();
        }
        s.push(b"garbage", b"").unwrap();
        SortedStream::Sorted(s.finish().unwrap())
    }

    #[test]
    fn groups_by_user_and_realm_and_counts_malformed_keys() {
        let mut users = Users::new(Grouped::new(keys(&[
            ("bob", "b.example", "userPassword"),
            ("alice", "a.example", "userPassword"),
            ("alice", "a.example", "authPassword"),
            ("alice", "b.example", "userPassword"),
        ])));
        let got: Vec<(String, String, usize)> = users
            .by_ref()
            .map(|u| {
                let u = u.unwrap();
                (
                    String::from_utf8(u.user).unwrap(),
                    String::from_utf8(u.realm).unwrap(),
                    u.properties.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("alice".into(), "a.example".into(), 2),
                ("alice".into(), "b.example".into(), 1),
                ("bob".into(), "b.example".into(), 1),
            ]
        );
        assert_eq!(users.malformed(), 1);
        assert_eq!(users.malformed_keys(), [b"garbage".to_vec()]);
    }
}
