//! The realm resolver against the real Postfix `postconf`.
//!
//! Every main.cf variant is written into a scratch directory, the real
//! `postconf -c DIR -xh smtpd_sasl_local_domain myhostname` is run on it, and both of
//! our paths (the main.cf parser and the postconf runner) must agree with what it
//! printed. The peer is required: without `postconf` these tests fail.

use std::path::Path;
use std::process::Command;

use sasldb::postfix::{
    LOCAL_DOMAIN_PARAM, MainCf, Method, RealmQuery, RealmSource, UsePostconf, default_realm,
    system_hostname,
};

use crate::support::{in_parallel, peer, write_aged};

/// Writes `main.cf` (and an empty `master.cf`, which postconf otherwise warns about)
/// into a new scratch directory. main.cf is dated an hour back ([`write_aged`]).
fn config(main_cf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_aged(&dir.path().join("main.cf"), main_cf);
    std::fs::write(dir.path().join("master.cf"), "").expect("write master.cf");
    dir
}

/// What the real postconf prints: `Ok((smtpd_sasl_local_domain, myhostname))`, or
/// `Err(stderr)` when it fails.
fn real(dir: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let out = Command::new(peer("postconf"))
        .arg("-c")
        .arg(dir)
        .args(["-xh", LOCAL_DOMAIN_PARAM, "myhostname"])
        .output()
        .expect("run postconf");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = out.stdout;
    let body = text
        .strip_suffix(b"\n")
        .expect("postconf output ends in newline");
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    assert_eq!(
        lines.len(),
        2,
        "postconf printed {:?}",
        String::from_utf8_lossy(&text)
    );
    Ok((lines[0].to_vec(), lines[1].to_vec()))
}

/// postconf prints values with whitespace runs collapsed to one space and trimmed
/// (`pcf_print_line()`); our expansion returns the exact value Postfix daemons use.
fn postconf_print(value: &str) -> String {
    value
        .split([' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn query(dir: &Path, postconf: UsePostconf) -> RealmQuery {
    RealmQuery {
        config_dir: dir.to_path_buf(),
        hostname: system_hostname().expect("gethostname"),
        postconf,
    }
}

/// Checks one main.cf: both of our paths must give what postconf gives.
/// Returns the realm for further assertions.
fn check(name: &str, main_cf: &str) -> String {
    let dir = config(main_cf);
    let (local, myhostname) = real(dir.path())
        .unwrap_or_else(|e| panic!("{name}: postconf failed on a variant meant to work: {e}"));
    let local = String::from_utf8(local).unwrap();
    let myhostname = String::from_utf8(myhostname).unwrap();
    let (realm, source) = if local.is_empty() {
        (myhostname.to_ascii_lowercase(), RealmSource::Myhostname)
    } else {
        (local.clone(), RealmSource::SmtpdSaslLocalDomain)
    };

    let parsed = default_realm(&query(dir.path(), UsePostconf::Never))
        .unwrap_or_else(|e| panic!("{name}: parser path failed: {e}"));
    assert_eq!(parsed.method, Method::Parser, "{name}");
    assert_eq!(
        (&parsed.realm, parsed.source),
        (&realm, source),
        "{name}: parser path"
    );
    assert_eq!(
        parsed.myhostname.as_deref(),
        Some(myhostname.as_str()),
        "{name}"
    );
    assert_eq!(
        parsed.local_domain.as_deref(),
        Some(local.as_str()),
        "{name}"
    );

    let program = peer("postconf");
    let ran = default_realm(&query(dir.path(), UsePostconf::Program(program.clone())))
        .unwrap_or_else(|e| panic!("{name}: postconf path failed: {e}"));
    assert_eq!(
        ran.method,
        Method::Postconf(program),
        "{name}: {:?}",
        ran.notes
    );
    assert_eq!(
        (&ran.realm, ran.source),
        (&realm, source),
        "{name}: postconf path"
    );
    assert_eq!(ran.myhostname, parsed.myhostname, "{name}");
    realm
}

#[test]
fn realm_variants_match_postconf() {
    let host = system_hostname().unwrap();
    let lower = host.to_ascii_lowercase();
    let short = !host.contains('.');
    let default_host = |domain: &str| {
        if short {
            format!("{lower}.{}", domain.to_ascii_lowercase())
        } else {
            lower.clone()
        }
    };

    // Each entry: (name, main.cf, the realm we expect; defaults follow the machine's
    // hostname as computed above).
    let variants: Vec<(&str, &str, String)> = vec![
        ("empty main.cf", "", default_host("localdomain")),
        (
            "comments and blank lines only",
            "# myhostname = commented.example\n\n   # indented\n",
            default_host("localdomain"),
        ),
        (
            "mydomain only",
            "mydomain = example.com\n",
            default_host("example.com"),
        ),
        (
            "myhostname = mail.$mydomain",
            "mydomain = example.com\nmyhostname = mail.$mydomain\n",
            "mail.example.com".into(),
        ),
        (
            "smtpd_sasl_local_domain = $mydomain",
            "mydomain = example.com\nsmtpd_sasl_local_domain = $mydomain\n",
            "example.com".into(),
        ),
        (
            "${name} and $(name)",
            "dom = example.net\nmydomain = $(dom)\nmyhostname = smtp.${mydomain}\n",
            "smtp.example.net".into(),
        ),
        (
            "conditional, set",
            "alt = yes\nmyhostname = ${alt?{alt.example.org}:{main.example.org}}\n",
            "alt.example.org".into(),
        ),
        (
            "conditional, empty",
            "alt =\nmyhostname = ${alt?{alt.example.org}:{main.example.org}}\n",
            "main.example.org".into(),
        ),
        (
            "conditional on an undefined name",
            "smtpd_sasl_local_domain = ${no_such_param:fallback.example}\n",
            "fallback.example".into(),
        ),
        (
            "relational expression",
            "mydomain = example.com\n\
             myhostname = ${{$mydomain} == {example.com}?{mx.example.com}:{other.example}}\n",
            "mx.example.com".into(),
        ),
        (
            "uppercase myhostname is lowercased",
            "myhostname = Mail.Example.COM\n",
            "mail.example.com".into(),
        ),
        (
            "uppercase local domain is verbatim",
            "myhostname = mail.example.com\nsmtpd_sasl_local_domain = EXAMPLE.Org\n",
            "EXAMPLE.Org".into(),
        ),
        (
            "uppercase mydomain in the default myhostname",
            "mydomain = Example.COM\n",
            default_host("Example.COM"),
        ),
        (
            "continuation line",
            "smtpd_sasl_local_domain =\n    example.com\n",
            "example.com".into(),
        ),
        (
            "comment inside a continuation",
            "myhostname = mail.example.com\nsmtpd_sasl_local_domain =\n# note\n\n   cont.example\n",
            "cont.example".into(),
        ),
        (
            "defined twice: the last wins",
            "myhostname = first.example\nmydomain = x\nmyhostname = second.example\n",
            "second.example".into(),
        ),
        (
            "mydomain unset, myhostname = mail.$mydomain",
            "myhostname = mail.$mydomain\n",
            "mail.".into(),
        ),
        (
            "myhostname without a dot",
            "myhostname = mailhost\n",
            "mailhost".into(),
        ),
        (
            "mydomain refers to an undefined name",
            "mydomain = $foo\n",
            default_host(""),
        ),
        (
            "mydomain refers to a built-in default",
            "mydomain = $myorigin\n",
            if short {
                format!("{lower}.")
            } else {
                lower.clone()
            },
        ),
        (
            "$$ is a literal dollar",
            "smtpd_sasl_local_domain = weird$$realm\n",
            "weird$realm".into(),
        ),
        (
            "local domain from $myorigin",
            "mydomain = example.com\nsmtpd_sasl_local_domain = $myorigin\n",
            default_host("example.com"),
        ),
        (
            "orphan continuation at the top is skipped",
            "   myhostname = skipped.example\nmyhostname = kept.example\n",
            "kept.example".into(),
        ),
        (
            "CRLF line endings",
            "myhostname = crlf.example\r\nmydomain = example\r\n",
            "crlf.example".into(),
        ),
        (
            "whitespace-only local domain",
            "myhostname = mail.example.com\nsmtpd_sasl_local_domain =   \t\n",
            "mail.example.com".into(),
        ),
        (
            "text after # is not a comment",
            "myhostname = mail.example.com # the mail host\n",
            "mail.example.com # the mail host".into(),
        ),
        (
            "mydomain with $$ is expanded twice in the default",
            "mydomain = ex$$ample\n",
            default_host("ex"),
        ),
    ];
    assert!(variants.len() >= 15);
    in_parallel(&variants, |(name, main_cf, expect)| {
        let realm = check(name, main_cf);
        if &realm == expect {
            Ok(())
        } else {
            Err(format!(
                "{name}: postconf and we agree on {realm:?}, but the test expects {expect:?}"
            ))
        }
    });
}

#[test]
fn broken_main_cf_fails_like_postconf() {
    let cases = [
        (
            "loop",
            "a = $b\nb = $a\nmyhostname = $a\n",
            "unreasonable macro call nesting",
        ),
        (
            "self loop",
            "myhostname = $myhostname\n",
            "unreasonable macro call nesting",
        ),
        (
            "missing =",
            "mydomain = x\nbogus line\n",
            "line 2: missing '=' after attribute name",
        ),
        (
            "truncated",
            "myhostname = ${mydomain\n",
            "truncated macro reference",
        ),
        (
            "relational loop (postconf crashes)",
            "smtpd_sasl_local_domain = ${{$smtpd_sasl_local_domain} == {x}}\n",
            "unreasonable macro call nesting",
        ),
    ];
    let program = peer("postconf");
    in_parallel(&cases, |&(name, main_cf, needle)| {
        let dir = config(main_cf);
        // Both postconf runs fail, and each failure costs a second: run them together.
        let (theirs, ran) = std::thread::scope(|s| {
            let theirs = s.spawn(|| real(dir.path()));
            let ran = default_realm(&query(dir.path(), UsePostconf::Program(program.clone())));
            (theirs.join().expect("postconf thread"), ran)
        });
        if let Ok(v) = theirs {
            return Err(format!("{name}: postconf succeeded: {v:?}"));
        }
        let parsed = match default_realm(&query(dir.path(), UsePostconf::Never)) {
            Ok(r) => return Err(format!("{name}: parser path succeeded: {r:?}")),
            Err(e) => e.to_string(),
        };
        if !parsed.contains(needle) {
            return Err(format!("{name}: {parsed}"));
        }
        // The postconf path notices postconf failed and reports the parser's error.
        match ran {
            Ok(r) => Err(format!("{name}: postconf path succeeded: {r:?}")),
            Err(e) if e.to_string() == parsed => Ok(()),
            Err(e) => Err(format!(
                "{name}: postconf path said {e}, parser said {parsed}"
            )),
        }
    });
}

/// Expressions in `smtpd_sasl_local_domain`, expanded by us and by postconf. Errors
/// must coincide, and so must values.
#[test]
fn expansion_matches_postconf() {
    let support = "a = A\ne =\nn = 10\nb = $a$a\nmydomain = example.com\n";
    let exprs = [
        "$a",
        "${a}",
        "$(a)",
        "x$a.y",
        "$$a|$$$a|$$",
        "${ a }",
        "$(a)b)",
        "${a?yes}|${e?yes}|${u?yes}",
        "${a:no}|${e:no}|${u:no}",
        "${a?{ t }}x|${a? t}|${ a ? b }",
        "${e?{t}:{f}}|${a?{t}:f g}|${a?{t} : {f}}",
        "${a?$a$a}|${e:$a}|${a?{${e:n}}}",
        "${a?x:y}",
        "${e?$(b}",
        "[${{10} < {9}}][${{b} > {a}}][${{ 010 } == {10}}][${{010} == {10}}]",
        "${{$a} == {A}?eq:ne}",
        "${{$a} != {A}?{eq}:{ne}}",
        "${{$n} >= {9}?{big}:{small}}",
        "${{1}<={1}}${{2}>={3}}",
        "[${ }][${?x}][${ :x}]",
        "$b$b",
        "$mydomain|$myorigin|$mail_name",
        "${a",
        "$",
        "x$",
        "a$-b",
        "${}",
        "$()",
        "${a-b}",
        "${a b}",
        "${a{b}}",
        "${a?{t}junk}",
        "${a?{x}:{y}z}",
        "${a:{x}",
        "$(a?{x)",
        "${{a} = {b}}",
        "${{a}==}",
        "${{a}=={b}x}",
        "${{1}<{99999999999999999999}}",
    ];
    let host = system_hostname().unwrap();
    in_parallel(&exprs, |expr| {
        let text = format!("{support}{LOCAL_DOMAIN_PARAM} = {expr}\n");
        let dir = config(&text);
        let theirs =
            real(dir.path()).map(|(local, _)| String::from_utf8_lossy(&local).into_owned());
        let cf = MainCf::load(dir.path()).map_err(|e| format!("{expr:?}: {e}"))?;
        let ours = cf
            .params(&host)
            .eval(LOCAL_DOMAIN_PARAM)
            .map(|x| postconf_print(&String::from_utf8_lossy(&x.expect("defined").value)));
        match (&theirs, &ours) {
            (Ok(t), Ok(o)) if t == o => Ok(()),
            (Err(_), Err(_)) => Ok(()),
            _ => Err(format!("{expr:?}: postconf {theirs:?}, we {ours:?}")),
        }
    });
}

#[test]
fn postconf_warnings_become_notes() {
    // No master.cf: postconf warns on stderr; the warning must end up in the notes.
    let dir = tempfile::tempdir().unwrap();
    write_aged(
        &dir.path().join("main.cf"),
        "myhostname = a.example\nmyhostname = b.example\n",
    );
    let r = default_realm(&query(dir.path(), UsePostconf::Program(peer("postconf")))).unwrap();
    assert!(matches!(r.method, Method::Postconf(_)));
    assert_eq!(r.realm, "b.example");
    assert!(
        r.notes.iter().any(|n| n.contains("master.cf")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("overriding earlier entry")),
        "{:?}",
        r.notes
    );
    // Our parser reports the same override.
    let p = default_realm(&query(dir.path(), UsePostconf::Never)).unwrap();
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("line 2: overriding earlier entry: myhostname=a.example")),
        "{:?}",
        p.notes
    );
}

#[test]
fn no_main_cf_means_no_postfix() {
    let dir = tempfile::tempdir().unwrap();
    let r = default_realm(&query(dir.path(), UsePostconf::Program(peer("postconf")))).unwrap();
    assert_eq!(r.method, Method::NoPostfix);
    assert_eq!(r.source, RealmSource::Hostname);
    assert_eq!(r.realm, system_hostname().unwrap().to_ascii_lowercase());
}
