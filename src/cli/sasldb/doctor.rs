//! `check` and `sync-chroot`.

use std::io::Write;

use super::args::{CheckArgs, Global, SyncChrootArgs};
use crate::cli::Exit;
use crate::doctor::{self, CheckOptions, FixOutcome, Report};
use crate::postfix::chroot::{self, SyncAction, SyncOptions};
use anyhow::{Context, Result, bail};

use super::io::{config, location};

pub fn check(g: &Global, a: &CheckArgs) -> Result<Exit> {
    let conf = config(g)?;
    let mut opts = CheckOptions::for_database(location(g, conf.as_ref())?)?;
    opts.group = crate::cli::policy_group(g.group.as_deref());
    opts.queue_directory = a.queue_directory.clone();
    opts.allow_unsafe_dir = crate::cli::allow_unsafe_dir();
    let mut report = doctor::check(&opts);
    let mut fixed = None;
    if a.fix && report.findings.iter().any(|f| f.fixable) {
        fixed = Some(doctor::fix(&report, &opts));
        report = doctor::check(&opts);
    }
    let out = std::io::stdout();
    let mut w = std::io::BufWriter::new(out.lock());
    if a.json {
        writeln!(
            w,
            "{}",
            serde_json::to_string_pretty(&json(&report, fixed.as_ref()))?
        )?;
    } else {
        text(&mut w, &report, fixed.as_ref(), a.fix)?;
    }
    w.flush()?;
    Ok(if report.is_clean() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn text(w: &mut impl Write, report: &Report, fixed: Option<&FixOutcome>, fix: bool) -> Result<()> {
    match report.format {
        Some(f) => writeln!(
            w,
            "{}: {f} database, {} user{}, {} record{}",
            report.database.display(),
            report.users,
            if report.users == 1 { "" } else { "s" },
            report.records,
            if report.records == 1 { "" } else { "s" }
        )?,
        None => writeln!(w, "{}:", report.database.display())?,
    }
    if let Some(f) = fixed {
        for d in &f.done {
            writeln!(w, "fixed: {d}")?;
        }
        for d in &f.failed {
            writeln!(w, "fix failed: {d}")?;
        }
    }
    for f in &report.findings {
        writeln!(
            w,
            "{}: [{}] {}{}",
            f.severity.as_str(),
            f.code,
            f.message,
            if f.fixable { " (fixable: --fix)" } else { "" }
        )?;
    }
    let problems = report.problems().count();
    let fixable = report.problems().filter(|f| f.fixable).count();
    if problems == 0 {
        writeln!(w, "no problems found")?;
    } else {
        write!(
            w,
            "{problems} problem{}",
            if problems == 1 { "" } else { "s" }
        )?;
        if fixable > 0 && !fix {
            write!(w, " ({fixable} fixable with --fix)")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

fn json(report: &Report, fixed: Option<&FixOutcome>) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "severity": f.severity.as_str(),
                "code": f.code.id(),
                "meaning": f.code.meaning(),
                "message": f.message,
                "fixable": f.fixable,
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "database": report.database.to_string_lossy(),
        "format": report.format.map(|f| f.to_string()),
        "users": report.users,
        "records": report.records,
        "clean": report.is_clean(),
        "findings": findings,
    });
    if let Some(f) = fixed {
        v["fixed"] = serde_json::json!(f.done);
        v["fix_failed"] = serde_json::json!(f.failed);
    }
    v
}

pub fn sync_chroot(g: &Global, a: &SyncChrootArgs) -> Result<Exit> {
    let conf = config(g)?;
    let loc = location(g, conf.as_ref())?;
    if !loc.is_file() {
        bail!(
            "{loc} is not a file: smtpd reaches a PostgreSQL database through the sql \
             plugin, so there is nothing to copy into the chroot"
        );
    }
    let (copy, below) = match &a.to {
        Some(p) => (p.clone(), None),
        None => {
            let format = crate::Database::open(&loc)?.format();
            let hostname = crate::postfix::system_hostname()?;
            let l = chroot::locate_copy(
                &crate::postfix::config_dir(),
                &hostname,
                a.queue_directory.as_deref(),
                format,
            )
            .context("cannot tell where the chroot copy belongs")?;
            for n in &l.notes {
                eprintln!("sasldb: note: {n}");
            }
            (l.copy, Some(l.queue_directory))
        }
    };
    let opts = SyncOptions {
        ownership: crate::cli::ownership_policy(g.group.as_deref()),
        force: a.force,
        create_dirs_below: below,
        lock_timeout: Some(crate::cli::lock_timeout()),
        allow_unsafe_dir: crate::cli::allow_unsafe_dir(),
    };
    let r = chroot::sync(&loc, &copy, &opts)?;
    for n in r.notes.iter().chain(&r.warnings) {
        eprintln!("sasldb: {n}");
    }
    let what = match &r.action {
        SyncAction::Created => "created".to_owned(),
        SyncAction::Updated => "updated".to_owned(),
        SyncAction::Unchanged => "already up to date".to_owned(),
        SyncAction::Replaced(why) => format!("replaced {why} with a copy"),
        SyncAction::SameFile => "is the database itself; nothing to do".to_owned(),
    };
    println!(
        "{}: {what} ({} database, {} records)",
        r.path.display(),
        r.format,
        r.records
    );
    Ok(Exit::Success)
}
