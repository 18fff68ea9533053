//! Whole realms: counting their users, moving every user of a realm to another realm
//! (after a host name change), deleting a realm.
//!
//! Each reads the database in key order (a Berkeley DB or GDBM file is sorted through
//! temporary files first), so memory stays bounded whatever the number of users.
//! Renames and deletes are staged in a [`Transaction`] (see `storage::stage`), so
//! they apply atomically when it commits, or not at all.

use std::collections::{BTreeMap, BTreeSet};

use crate::database::{Database, Transaction};
use crate::error::{Error, Result};
use crate::record::KeyRef;
use crate::storage::sort::{ExternalSort, group_hash};

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
/// The keys are sorted by a hash of their user (`realm NUL user NUL`, which leads the
/// sort key) in bounded memory, through temporary files for a large database: a
/// user's records come together, which is all counting needs; only the realms are
/// held.
pub fn count(db: &Database) -> Result<Vec<RealmCount>> {
    let mut sort = ExternalSort::new(&db.spill_to().keys_only());
    db.each_record(&mut |key, _| {
        if let Ok(k) = KeyRef::parse(key) {
            let user = [k.realm, b"\0", k.user, b"\0"];
            let h = group_hash(&user);
            sort.push_parts(&[&h, k.realm, b"\0", k.user, b"\0"], &[])?;
        }
        Ok(())
    })?;
    let mut sorted = sort.finish()?;
    let mut realms: BTreeMap<Vec<u8>, RealmCount> = BTreeMap::new();
    // The realm of the last user, counted here until another realm's user comes.
    let mut cur = RealmCount {
        realm: Vec::new(),
        users: 0,
        records: 0,
    };
    let mut last_user: Vec<u8> = Vec::new();
    let flush = |realms: &mut BTreeMap<Vec<u8>, RealmCount>, c: &RealmCount| {
        if c.records == 0 {
            return;
        }
        match realms.get_mut(&c.realm[..]) {
            Some(r) => {
                r.users += c.users;
                r.records += c.records;
            }
            None => {
                realms.insert(c.realm.clone(), c.clone());
            }
        }
    };
    while let Some((k, _)) = sorted.next()? {
        // hash, realm NUL user NUL; names hold no NUL.
        if k == &last_user[..] {
            cur.records += 1;
            continue;
        }
        last_user.clear();
        last_user.extend_from_slice(k);
        let realm = &k[8..8 + memchr::memchr(0, &k[8..]).unwrap_or(k.len() - 8)];
        if cur.realm != realm {
            flush(&mut realms, &cur);
            cur.realm.clear();
            cur.realm.extend_from_slice(realm);
            cur.users = 0;
            cur.records = 0;
        }
        cur.users += 1;
        cur.records += 1;
    }
    flush(&mut realms, &cur);
    Ok(realms.into_values().collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::{SpillOptions, WriteOptions};
    use crate::location::Location;
    use crate::record::Key;

    /// Users with several records each, in realms whose users interleave in the hash
    /// order, counted with a sort that fits in memory and with one that spills.
    #[test]
    fn counts_users_and_records_per_realm() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::path_only(dir.path().join("db"));
        let opts = WriteOptions {
            ownership: crate::OwnershipPolicy::RootGroup(
                nix::unistd::getegid().as_raw().to_string(),
            ),
            ..WriteOptions::default()
        };
        let mut txn = Transaction::begin(&loc, &opts).unwrap();
        let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for i in 0..3000u32 {
            let realm = format!("r{}.example", i % 7);
            let props = 1 + i % 3;
            for p in 0..props {
                let key = Key::new(
                    format!("u{i}").as_bytes(),
                    realm.as_bytes(),
                    format!("p{p}").as_bytes(),
                )
                .unwrap();
                txn.put(&key, b"v".to_vec());
            }
            let w = want.entry(realm).or_default();
            w.0 += 1;
            w.1 += u64::from(props);
        }
        txn.commit().unwrap();
        let want: Vec<RealmCount> = want
            .into_iter()
            .map(|(realm, (users, records))| RealmCount {
                realm: realm.into_bytes(),
                users,
                records,
            })
            .collect();
        for memory in [SpillOptions::default().memory, 0] {
            let db = Database::open(&loc)
                .unwrap()
                .with_spill(SpillOptions { dir: None, memory });
            assert_eq!(count(&db).unwrap(), want, "sort memory {memory}");
        }
    }
}
