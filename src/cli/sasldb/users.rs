//! `import`, `export`, `list`, `verify`, `realms`.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::args::{ExportArgs, ImportArgs, ListArgs, ModeArg, RealmsArgs, SchemeArg, VerifyArgs};
use crate::account::{self, PolicyRequest, Verdict, check_names};
use crate::bulk::export::{ExportFormat, ExportOptions, Scheme};
use crate::bulk::import::{self, InputFormat, Mode, Rejected};
use crate::cli::Exit;
use crate::{Database, Transaction};
use anyhow::{Context, Result, bail};

use super::args::Global;

use super::io::{
    config, default_realm, location, open_db, open_input, print_commit, read_check_password,
    secret_policy, spill_options, who, write_options,
};

pub fn import(g: &Global, a: &ImportArgs) -> Result<Exit> {
    crate::cli::alloc::keep_freed_memory();
    let conf = config(g)?;
    let loc = location(g, conf.as_ref())?;
    let format = if a.csv {
        InputFormat::Csv
    } else if a.json {
        InputFormat::Json
    } else {
        match a
            .file
            .as_ref()
            .and_then(|f| PathBuf::from(f).extension().map(|e| e.to_ascii_lowercase()))
        {
            Some(e) if e == "csv" => InputFormat::Csv,
            Some(e) if e == "json" => InputFormat::Json,
            _ => InputFormat::Lines,
        }
    };
    // The input is parsed and sorted by user before the writer lock is taken, spilling
    // next to the database (or to --temp-dir).
    let to = crate::database::spill_to_for(&loc, &spill_options(g));
    let mut reader = open_input(a.file.as_ref())?;
    let mut realm_error = None;
    let mut realm = || {
        default_realm(g).map_err(|e| {
            let msg = format!("{e:#}");
            realm_error = Some(e);
            crate::Error::Invalid(msg)
        })
    };
    let order = import::Order::for_location(&loc);
    let input = match import::read_input(&mut reader, format, &mut realm, order, &to) {
        Ok(i) => i,
        Err(e) => return Err(realm_error.unwrap_or_else(|| e.into())),
    };
    drop(reader);
    if let Some(f) = input.fatal() {
        return refuse(1, std::iter::once(Ok(f.clone())));
    }
    if !input.rejected().is_empty() && !a.skip_bad {
        let n = input.rejected().len();
        let mut input = input;
        return refuse(n, input.take_rejected().into_sorted()?);
    }
    let req = PolicyRequest {
        hashed_only: a.hashed_only,
        scram: a.scram,
        otp: a.otp,
        scram_iterations: a.scram_iterations,
    };
    let policy = secret_policy(conf.as_ref(), &req)?;
    let mode = match a.mode {
        ModeArg::Upsert => Mode::Upsert,
        ModeArg::CreateOnly => Mode::CreateOnly,
        ModeArg::ReplaceAll => Mode::ReplaceAll,
    };
    let total = input.entries();
    let bar = (!a.quiet && total >= 5_000 && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
                .expect("template")
                .progress_chars("=> "),
        );
        b.set_message("importing");
        b
    });
    let mut txn = Transaction::begin(&loc, &write_options(g))?;
    let opts = import::ApplyOptions {
        mode,
        policy: &policy,
        dry_run: a.dry_run,
    };
    let (mut summary, rejected) = import::apply_input(&mut txn, input, &opts, &mut |n| {
        if let Some(b) = &bar {
            b.set_position(n as u64);
        }
    })?;
    let n_rejected = rejected.len();
    if n_rejected > 0 && !a.skip_bad {
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        return refuse(n_rejected, rejected.into_sorted()?);
    }
    for r in rejected.into_sorted()? {
        eprintln!("sasldb: skipped {}", r?);
    }
    if let Some(b) = &bar {
        b.set_message("writing");
        b.set_position(total);
    }
    let written = if a.dry_run {
        drop(txn);
        None
    } else {
        Some(txn.commit()?)
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(report) = &written {
        print_commit(report);
        summary.settle(report, mode);
    }
    if !a.quiet {
        let mut line = if summary.pending > 0 {
            // The commit's connection dropped as it went, with the server's counts.
            format!(
                "{} imported (how many were new, changed or unchanged was lost with the \
                 connection as the commit went), {} rejected",
                summary.pending, n_rejected
            )
        } else {
            format!(
                "{} added, {} updated, {} unchanged, {} rejected",
                summary.added, summary.updated, summary.unchanged, n_rejected
            )
        };
        if summary.kept > 0 {
            line.push_str(&format!(", {} existing kept", summary.kept));
        }
        if mode == Mode::ReplaceAll {
            line.push_str(&format!(", {} removed", summary.removed));
        }
        if a.dry_run {
            line.push_str(" (dry run: nothing written)");
        }
        println!("{line}");
    }
    Ok(Exit::Success)
}

/// Reports rejected entries (`n` of them, in line order) and fails with nothing
/// written.
fn refuse(n: u64, rejected: impl Iterator<Item = crate::Result<Rejected>>) -> Result<Exit> {
    for r in rejected.take(100) {
        eprintln!("sasldb: {}", r?);
    }
    if n > 100 {
        eprintln!("sasldb: ... and {} more", n - 100);
    }
    bail!(
        "{} bad entr{}: nothing written (--skip-bad imports the rest)",
        n,
        if n == 1 { "y" } else { "ies" }
    )
}

pub fn export(g: &Global, a: &ExportArgs) -> Result<Exit> {
    let conf = config(g)?;
    let db = open_db(g, &location(g, conf.as_ref())?)?;
    let format = if a.csv {
        ExportFormat::Csv
    } else if a.dovecot {
        ExportFormat::Dovecot(match a.scheme {
            SchemeArg::Sha512Crypt => Scheme::Sha512Crypt,
            SchemeArg::Sha256Crypt => Scheme::Sha256Crypt,
            SchemeArg::Argon2id => Scheme::Argon2id,
            SchemeArg::Plain => Scheme::Plain,
        })
    } else {
        ExportFormat::Json
    };
    let opts = ExportOptions {
        format,
        with_secrets: a.with_secrets,
        realm: a.only_realm.as_ref().map(|r| r.as_bytes().to_vec()),
    };
    let stats = match &a.output {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc_nofollow())
                .open(path)
                .with_context(|| path.display().to_string())?;
            // An existing file keeps its mode on open: narrow it before writing.
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            let mut w = std::io::BufWriter::new(f);
            let s = crate::bulk::export::export(&db, &opts, &mut w)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            s
        }
        None => {
            // Straight to descriptor 1 (a duplicate), through a buffer the allocator
            // wipes when it is freed: std's stdout would keep the last secrets in its
            // own buffer until the process exits.
            use std::os::fd::AsFd;
            let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
            let mut w = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::from(fd));
            let s = crate::bulk::export::export(&db, &opts, &mut w)?;
            w.flush()?;
            s
        }
    };
    for s in &stats.skipped {
        eprintln!("sasldb: skipped {s}");
    }
    if stats.malformed > 0 {
        eprintln!("sasldb: ignored {} malformed key(s)", stats.malformed);
    }
    Ok(Exit::Success)
}

fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

pub fn list(g: &Global, a: &ListArgs) -> Result<Exit> {
    let conf = config(g)?;
    let db = open_db(g, &location(g, conf.as_ref())?)?;
    let realm = a.only_realm.as_ref().map(|r| r.as_bytes().to_vec());
    let out = std::io::stdout();
    let mut w = std::io::BufWriter::new(out.lock());
    if a.json {
        let opts = ExportOptions {
            format: ExportFormat::Json,
            with_secrets: false,
            realm,
        };
        crate::bulk::export::export(&db, &opts, &mut w)?;
        return Ok(Exit::Success);
    }
    let mut users = db.users()?;
    for u in users.by_ref() {
        let u = u?;
        if realm.as_deref().is_some_and(|r| r != u.realm) {
            continue;
        }
        w.write_all(&u.user)?;
        w.write_all(b"@")?;
        w.write_all(&u.realm)?;
        w.write_all(b":")?;
        for p in &u.properties {
            w.write_all(b" ")?;
            w.write_all(p)?;
        }
        w.write_all(b"\n")?;
    }
    w.flush()?;
    let malformed = users.malformed();
    if malformed > 0 {
        eprintln!("sasldb: ignored {malformed} malformed key(s) (see sasldb check)");
    }
    Ok(Exit::Success)
}

pub fn verify(g: &Global, a: &VerifyArgs) -> Result<Exit> {
    let conf = config(g)?;
    let db = Database::open(&location(g, conf.as_ref())?)?;
    let (user, realm) = match a.user.split_once('@') {
        Some((u, r)) => (u.as_bytes().to_vec(), r.as_bytes().to_vec()),
        None => (a.user.as_bytes().to_vec(), default_realm(g)?),
    };
    check_names(&user, &realm).map_err(|p| anyhow::anyhow!("{p}"))?;
    let pw = read_check_password()?;
    Ok(match account::verify_password(&db, &user, &realm, &pw)? {
        Verdict::Match => Exit::Success,
        Verdict::Mismatch => {
            eprintln!("sasldb: wrong password for {}", who(&user, &realm));
            Exit::Failure
        }
        Verdict::NoSuchUser => {
            eprintln!("sasldb: no such user: {}", who(&user, &realm));
            Exit::NoSuchUser
        }
        Verdict::NoUsableSecret => {
            eprintln!(
                "sasldb: {} has no userPassword or SCRAM authPassword to check against",
                who(&user, &realm)
            );
            Exit::NoSuchUser
        }
    })
}

pub fn realms(g: &Global, a: &RealmsArgs) -> Result<Exit> {
    let conf = config(g)?;
    let db = open_db(g, &location(g, conf.as_ref())?)?;
    let realms = crate::bulk::realms::count(&db)?;
    let out = std::io::stdout();
    let mut w = std::io::BufWriter::new(out.lock());
    if a.json {
        let items: Vec<serde_json::Value> = realms
            .iter()
            .map(|r| {
                serde_json::json!({"realm": String::from_utf8_lossy(&r.realm), "users": r.users, "records": r.records})
            })
            .collect();
        writeln!(w, "{}", serde_json::to_string_pretty(&items)?)?;
    } else {
        for r in &realms {
            w.write_all(&r.realm)?;
            writeln!(
                w,
                "\t{} user{}",
                r.users,
                if r.users == 1 { "" } else { "s" }
            )?;
        }
    }
    w.flush()?;
    Ok(Exit::Success)
}
