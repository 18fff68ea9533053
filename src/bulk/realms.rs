//! Whole realms: counting their users, moving every user of a realm to another realm
//! (after a host name change), deleting a realm.
//!
//! Renames and deletes are staged in a [`Transaction`], so they apply atomically when
//! it commits, or not at all.

use std::collections::BTreeSet;

use crate::database::{Database, Transaction};
use crate::error::{Error, Result};
use crate::record::{KeyRef, user_prefix};

/// A realm and how many users and records it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmCount {
    /// The realm.
    pub realm: Vec<u8>,
    /// Users (`user@realm` with at least one property).
    pub users: u64,
    /// Records (properties).
    pub records: u64,
}

/// Every realm of `db` with its users and records, in bytewise order of the realm.
pub fn count(db: &Database) -> Result<Vec<RealmCount>> {
    let mut realms: std::collections::BTreeMap<Vec<u8>, (u64, u64)> = Default::default();
    for user in db.users()? {
        let e = realms.entry(user.realm).or_default();
        e.0 += 1;
        e.1 += user.properties.len() as u64;
    }
    Ok(realms
        .into_iter()
        .map(|(realm, (users, records))| RealmCount {
            realm,
            users,
            records,
        })
        .collect())
}

/// What a staged rename or delete touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Staged {
    /// Users of the realm.
    pub users: usize,
    /// Their records.
    pub records: usize,
}

/// How many conflicting users an error names before "...".
const SHOWN: usize = 10;

/// Stages moving every user of realm `old` to realm `new` in `txn`: each record
/// `user NUL old NUL property` becomes `user NUL new NUL property`. A user that
/// already exists in `new` is a conflict: the error names the first few and nothing
/// is staged.
pub fn rename(txn: &mut Transaction, old: &[u8], new: &[u8]) -> Result<Staged> {
    if old == new {
        return Err(Error::Invalid("the old and new realm are the same".into()));
    }
    let mut moves = Vec::new();
    let mut users = BTreeSet::new();
    for k in txn.base_keys_sorted()? {
        if let Ok(kr) = KeyRef::parse(k)
            && kr.realm == old
        {
            let mut to = user_prefix(kr.user, new);
            to.extend_from_slice(kr.property);
            users.insert(kr.user.to_vec());
            moves.push((k.clone(), to));
        }
    }
    let mut conflicts = BTreeSet::new();
    for (_, to) in &moves {
        if txn.get_raw(to)?.is_some() {
            let kr = KeyRef::parse(to).expect("built from parts");
            conflicts.insert(format!(
                "{}@{}",
                String::from_utf8_lossy(kr.user),
                String::from_utf8_lossy(new)
            ));
        }
    }
    if !conflicts.is_empty() {
        let shown: Vec<&str> = conflicts.iter().take(SHOWN).map(String::as_str).collect();
        return Err(Error::Invalid(format!(
            "{} user(s) already exist in realm {}: {}{}; nothing written",
            conflicts.len(),
            String::from_utf8_lossy(new),
            shown.join(", "),
            if conflicts.len() > SHOWN { ", ..." } else { "" }
        )));
    }
    for (from, to) in &moves {
        let value = txn.get_raw(from)?.expect("listed key exists");
        txn.put_raw(to.clone(), value);
        txn.delete_raw(from.clone());
    }
    Ok(Staged {
        users: users.len(),
        records: moves.len(),
    })
}

/// Stages deleting every record of realm `realm` in `txn`.
pub fn delete(txn: &mut Transaction, realm: &[u8]) -> Result<Staged> {
    let mut keys = Vec::new();
    let mut users = BTreeSet::new();
    for k in txn.base_keys_sorted()? {
        if let Ok(kr) = KeyRef::parse(k)
            && kr.realm == realm
        {
            users.insert(kr.user.to_vec());
            keys.push(k.clone());
        }
    }
    let staged = Staged {
        users: users.len(),
        records: keys.len(),
    };
    for k in keys {
        txn.delete_raw(k);
    }
    Ok(staged)
}
