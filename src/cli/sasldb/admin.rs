//! `rename-realm`, `delete-realm`, `convert`, `realm`, `init`.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};

use super::args::{ConvertArgs, DeleteRealmArgs, Global, InitArgs, RenameRealmArgs};
use crate::account::check_names;
use crate::bulk::convert::{ConvertOptions, convert as run_convert};
use crate::cli::Exit;
use crate::record::user_prefix;
use crate::{KeyRef, Transaction};
use anyhow::{Result, bail};

use super::io::{config, location, parse_location, print_commit, who, write_options};

pub fn rename_realm(g: &Global, a: &RenameRealmArgs) -> Result<Exit> {
    if a.old == a.new {
        bail!("the old and new realm are the same");
    }
    check_names(b"x", a.new.as_bytes()).map_err(|p| anyhow::anyhow!("{p}"))?;
    let conf = config(g)?;
    let loc = location(g, conf.as_ref())?;
    let mut txn = Transaction::begin(&loc, &write_options(g))?;
    if !txn.existed() {
        bail!("{}: no such database", loc.path().display());
    }
    let (old, new) = (a.old.as_bytes(), a.new.as_bytes());
    let mut moves = Vec::new();
    let mut users = BTreeSet::new();
    let mut conflicts = BTreeSet::new();
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
    for (_, to) in &moves {
        if txn.get_raw(to)?.is_some() {
            let kr = KeyRef::parse(to).expect("built from parts");
            conflicts.insert(who(kr.user, new));
        }
    }
    if !conflicts.is_empty() {
        let shown: Vec<&String> = conflicts.iter().take(10).collect();
        bail!(
            "{} user(s) already exist in realm {}: {}{}; nothing written",
            conflicts.len(),
            a.new,
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if conflicts.len() > 10 { ", ..." } else { "" }
        );
    }
    if moves.is_empty() {
        eprintln!("sasldb: no users in realm {}", a.old);
        return Ok(Exit::Success);
    }
    for (from, to) in &moves {
        let value = txn.get_raw(from)?.expect("listed key exists");
        txn.put_raw(to.clone(), value);
        txn.delete_raw(from.clone());
    }
    let report = txn.commit()?;
    print_commit(&report);
    println!(
        "moved {} user(s) ({} records) from {} to {}",
        users.len(),
        moves.len(),
        a.old,
        a.new
    );
    Ok(Exit::Success)
}

pub fn delete_realm(g: &Global, a: &DeleteRealmArgs) -> Result<Exit> {
    let conf = config(g)?;
    let loc = location(g, conf.as_ref())?;
    let mut txn = Transaction::begin(&loc, &write_options(g))?;
    if !txn.existed() {
        bail!("{}: no such database", loc.path().display());
    }
    let mut keys = Vec::new();
    let mut users = BTreeSet::new();
    for k in txn.base_keys_sorted()? {
        if let Ok(kr) = KeyRef::parse(k)
            && kr.realm == a.realm.as_bytes()
        {
            users.insert(kr.user.to_vec());
            keys.push(k.clone());
        }
    }
    if keys.is_empty() {
        eprintln!("sasldb: no users in realm {}", a.realm);
        return Ok(Exit::Success);
    }
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "refusing to delete {} user(s) of realm {} without --yes (standard input is not a terminal)",
                users.len(),
                a.realm
            );
        }
        eprint!(
            "Delete {} user(s) ({} records) of realm {}? [y/N] ",
            users.len(),
            keys.len(),
            a.realm
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("sasldb: nothing deleted");
            return Ok(Exit::Failure);
        }
    }
    let n = keys.len();
    for k in keys {
        txn.delete_raw(k);
    }
    let report = txn.commit()?;
    print_commit(&report);
    println!(
        "deleted {} user(s) ({n} records) of realm {}",
        users.len(),
        a.realm
    );
    Ok(Exit::Success)
}

pub fn convert(g: &Global, a: &ConvertArgs) -> Result<Exit> {
    let src = parse_location(&a.src)?;
    let dst = parse_location(&a.dst)?;
    let opts = ConvertOptions {
        overwrite: a.force,
        skip_malformed: a.skip_malformed,
        write: write_options(g),
    };
    let report = run_convert(&src, &dst, &opts)?;
    for s in &report.skipped {
        eprintln!("sasldb: skipped malformed key {s}");
    }
    if report.skipped_count > report.skipped.len() as u64 {
        eprintln!(
            "sasldb: ... {} malformed keys skipped in all",
            report.skipped_count
        );
    }
    print_commit(&report.commit);
    let fmt = |f: Option<crate::Format>| f.map(|f| f.to_string()).unwrap_or_default();
    println!(
        "converted {} records ({} users) from {} ({}) to {} ({}){}",
        report.records,
        report.users,
        src,
        fmt(report.from),
        dst,
        fmt(report.to),
        if report.skipped_count > 0 {
            format!(", {} malformed skipped", report.skipped_count)
        } else {
            String::new()
        }
    );
    Ok(Exit::Success)
}

pub fn realm(g: &Global) -> Result<Exit> {
    if let Some(r) = g.realm.as_ref().filter(|r| !r.is_empty()) {
        println!("{r}");
        eprintln!("sasldb: realm `{r}` given with -u");
        return Ok(Exit::Success);
    }
    let r = crate::postfix::default_realm_here()?;
    println!("{}", r.realm);
    eprintln!("sasldb: {}", r.explain());
    for n in &r.notes {
        eprintln!("sasldb: note: {n}");
    }
    Ok(Exit::Success)
}

pub fn init(g: &Global, _a: &InitArgs) -> Result<Exit> {
    let conf = config(g)?;
    let loc = location(g, conf.as_ref())?;
    let txn = Transaction::begin(&loc, &write_options(g))?;
    if txn.existed() {
        eprintln!("sasldb: {} already holds a {} database", loc, txn.format());
        return Ok(Exit::Success);
    }
    let format = txn.format();
    let report = txn.commit()?;
    print_commit(&report);
    println!(
        "created an empty {format} database at {}",
        loc.path().display()
    );
    Ok(Exit::Success)
}
