//! [`Users`]: a database's records grouped by user, what listings, exports, realm
//! counts and checks iterate.

use crate::database::KeyList;
use crate::record::KeyRef;

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
/// ([`Users::malformed`]).
#[derive(Debug)]
pub struct Users {
    keys: KeyList,
    pos: usize,
    malformed: usize,
    examples: Vec<Vec<u8>>,
}

/// How many malformed keys [`Users::malformed_keys`] keeps.
const MALFORMED_EXAMPLES: usize = 10;

impl Users {
    pub(crate) fn new(keys: KeyList) -> Users {
        Users {
            keys,
            pos: 0,
            malformed: 0,
            examples: Vec::new(),
        }
    }

    /// How many malformed keys were skipped so far (all of them once the iterator is
    /// exhausted).
    pub fn malformed(&self) -> usize {
        self.malformed
    }

    /// The first malformed keys skipped (at most ten), for messages.
    pub fn malformed_keys(&self) -> &[Vec<u8>] {
        &self.examples
    }
}

impl Iterator for Users {
    type Item = User;

    fn next(&mut self) -> Option<User> {
        let mut current: Option<User> = None;
        while let Some(k) = self.keys.get(self.pos) {
            let Ok(kr) = KeyRef::parse(k) else {
                self.malformed += 1;
                if self.examples.len() < MALFORMED_EXAMPLES {
                    self.examples.push(k.to_vec());
                }
                self.pos += 1;
                continue;
            };
            match &mut current {
                Some(u) if u.user == kr.user && u.realm == kr.realm => {
                    u.properties.push(kr.property.to_vec());
                }
                Some(_) => break,
                None => {
                    current = Some(User {
                        user: kr.user.to_vec(),
                        realm: kr.realm.to_vec(),
                        properties: vec![kr.property.to_vec()],
                    });
                }
            }
            self.pos += 1;
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_into;

    fn keys(list: &[(&str, &str, &str)]) -> KeyList {
        let mut k = KeyList::default();
        for (u, r, p) in list {
            let mut key = Vec::new();
            encode_into(&mut key, u.as_bytes(), r.as_bytes(), p.as_bytes());
            k.push(&key).unwrap();
        }
        k.push(b"garbage").unwrap();
        k.sort();
        k
    }

    #[test]
    fn groups_by_user_and_realm_and_counts_malformed_keys() {
        let mut users = Users::new(keys(&[
            ("bob", "b.example", "userPassword"),
            ("alice", "a.example", "userPassword"),
            ("alice", "a.example", "authPassword"),
            ("alice", "b.example", "userPassword"),
        ]));
        let got: Vec<(String, String, usize)> = users
            .by_ref()
            .map(|u| {
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
