//! Whole realms: counting their users, moving every user of a realm to another realm
//! (after a host name change), deleting a realm.
//!
//! Each reads the database in key order (a Berkeley DB or GDBM file is sorted through
//! temporary files first), so memory stays bounded whatever the number of users.
//! Renames and deletes are staged in a [`Transaction`] (see `storage::stage`), so
//! they apply atomically when it commits, or not at all.

use std::collections::BTreeSet;

use crate::database::{Database, Transaction};
use crate::error::{Error, Result};
use crate::record::KeyRef;
use crate::storage::sort::ExternalSort;

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
/// The keys are sorted by realm, then user, in bounded memory (through temporary
/// files for a large database); only the realms are held.
pub fn count(db: &Database) -> Result<Vec<RealmCount>> {
    let mut sort = ExternalSort::new(&db.spill_to().keys_only());
    for rec in db.records()? {
        let rec = rec?;
        if let Ok(k) = KeyRef::parse(&rec.key) {
            sort.push_parts(&[k.realm, b"\0", k.user, b"\0", k.property], &[])?;
        }
    }
    let mut sorted = sort.finish()?;
    let mut out: Vec<RealmCount> = Vec::new();
    let mut last_user: Vec<u8> = Vec::new();
    while let Some((k, _)) = sorted.next()? {
        // realm NUL user NUL property; names hold no NUL.
        let mut nuls = memchr::memchr_iter(0, k);
        let (a, b) = (nuls.next().unwrap_or(0), nuls.next().unwrap_or(k.len()));
        let (realm, realm_user) = (&k[..a], &k[..b]);
        match out.last_mut() {
            Some(c) if c.realm == realm => {
                c.records += 1;
                if last_user != realm_user {
                    c.users += 1;
                }
            }
            _ => out.push(RealmCount {
                realm: realm.to_vec(),
                users: 1,
                records: 1,
            }),
        }
        if last_user != realm_user {
            last_user.clear();
            last_user.extend_from_slice(realm_user);
        }
    }
    Ok(out)
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
/// `user NUL old NUL property` becomes `user NUL new NUL property`. A record whose new
/// key already exists in `new` is a conflict: the error names the first few users and
/// nothing is staged.
///
/// The database is read in key order, where all of a user name's realms come
/// together: only that name's records in `old` and property names in `new` are held.
pub fn rename(txn: &mut Transaction, old: &[u8], new: &[u8]) -> Result<Staged> {
    if old == new {
        return Err(Error::Invalid("the old and new realm are the same".into()));
    }
    let mut stage = txn.new_stage(false, false)?;
    let mut staged = Staged::default();
    let mut conflicts = 0usize;
    let mut shown: BTreeSet<String> = BTreeSet::new();
    {
        let mut base = txn.base_sorted(true)?;
        // The current user name's records in `old`, and property names in `new`.
        let mut user: Vec<u8> = Vec::new();
        let mut moving: Vec<(Vec<u8>, crate::record::Secret)> = Vec::new();
        let mut taken: Vec<Vec<u8>> = Vec::new();
        let mut key = Vec::new();
        let mut flush = |user: &[u8],
                         moving: &mut Vec<(Vec<u8>, crate::record::Secret)>,
                         taken: &mut Vec<Vec<u8>>,
                         stage: &mut crate::storage::Stage|
         -> Result<()> {
            if !moving.is_empty() {
                staged.users += 1;
                staged.records += moving.len();
                if moving.iter().any(|(p, _)| taken.contains(p)) {
                    conflicts += 1;
                    shown.insert(format!(
                        "{}@{}",
                        String::from_utf8_lossy(user),
                        String::from_utf8_lossy(new)
                    ));
                    if shown.len() > SHOWN {
                        shown.pop_last();
                    }
                } else if conflicts == 0 {
                    for (p, v) in moving.iter() {
                        key.clear();
                        crate::record::encode_into(&mut key, user, old, p);
                        stage.delete(&key)?;
                        key.clear();
                        crate::record::encode_into(&mut key, user, new, p);
                        stage.put(&key, v)?;
                    }
                }
            }
            moving.clear();
            taken.clear();
            Ok(())
        };
        while let Some((k, v)) = base.next()? {
            let Ok(kr) = KeyRef::parse(k) else { continue };
            if kr.user != &user[..] {
                flush(&user, &mut moving, &mut taken, &mut stage)?;
                user.clear();
                user.extend_from_slice(kr.user);
            }
            if kr.realm == old {
                moving.push((kr.property.to_vec(), crate::record::Secret::new(v.to_vec())));
            } else if kr.realm == new {
                taken.push(kr.property.to_vec());
            }
        }
        flush(&user, &mut moving, &mut taken, &mut stage)?;
    }
    if conflicts > 0 {
        let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        return Err(Error::Invalid(format!(
            "{} user(s) already exist in realm {}: {}{}; nothing written",
            conflicts,
            String::from_utf8_lossy(new),
            shown.join(", "),
            if conflicts > SHOWN { ", ..." } else { "" }
        )));
    }
    txn.set_stage(stage)?;
    Ok(staged)
}

/// Stages deleting every record of realm `realm` in `txn`.
pub fn delete(txn: &mut Transaction, realm: &[u8]) -> Result<Staged> {
    let mut stage = txn.new_stage(false, false)?;
    let mut staged = Staged::default();
    {
        let mut base = txn.base_sorted(false)?;
        let mut last_user: Option<Vec<u8>> = None;
        while let Some((k, _)) = base.next()? {
            let Ok(kr) = KeyRef::parse(k) else { continue };
            if kr.realm != realm {
                continue;
            }
            if last_user.as_deref() != Some(kr.user) {
                staged.users += 1;
                last_user = Some(kr.user.to_vec());
            }
            staged.records += 1;
            stage.delete(k)?;
        }
    }
    txn.set_stage(stage)?;
    Ok(staged)
}
