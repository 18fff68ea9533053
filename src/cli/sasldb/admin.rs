//! `rename-realm`, `delete-realm`, `convert`, `realm`, `init`.

use std::io::{BufRead, IsTerminal, Write};

use super::args::{ConvertArgs, DeleteRealmArgs, Global, InitArgs, RenameRealmArgs};
use crate::Transaction;
use crate::account::check_names;
use crate::bulk::convert::{ConvertOptions, convert as run_convert};
use crate::bulk::realms;
use crate::cli::Exit;
use anyhow::{Result, bail};

use super::io::{config, location, parse_location, print_commit, write_options};

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
    let staged = realms::rename(&mut txn, a.old.as_bytes(), a.new.as_bytes())?;
    if staged.records == 0 {
        eprintln!("sasldb: no users in realm {}", a.old);
        return Ok(Exit::Success);
    }
    let report = txn.commit()?;
    print_commit(&report);
    println!(
        "moved {} user(s) ({} records) from {} to {}",
        staged.users, staged.records, a.old, a.new
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
    let staged = realms::delete(&mut txn, a.realm.as_bytes())?;
    if staged.records == 0 {
        eprintln!("sasldb: no users in realm {}", a.realm);
        return Ok(Exit::Success);
    }
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "refusing to delete {} user(s) of realm {} without --yes (standard input is not a terminal)",
                staged.users,
                a.realm
            );
        }
        eprint!(
            "Delete {} user(s) ({} records) of realm {}? [y/N] ",
            staged.users, staged.records, a.realm
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("sasldb: nothing deleted");
            return Ok(Exit::Failure);
        }
    }
    let report = txn.commit()?;
    print_commit(&report);
    println!(
        "deleted {} user(s) ({} records) of realm {}",
        staged.users, staged.records, a.realm
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
