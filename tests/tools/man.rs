//! The checked-in man pages and shell completions are exactly what the option tables
//! render, and they work: groff renders the pages, bash completes from the completions.

use std::path::Path;

use sasldb::cli::man::Page;

/// Compares generated files with the checked-in ones under `man/`, or rewrites them
/// with `UPDATE_MAN=1` (scripts/gen-man). Returns the stale file names.
fn check_or_update(pages: Vec<Page>) -> Vec<&'static str> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for page in pages {
        let path = dir.join(page.file);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &page.text).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&page.text[..]) {
            stale.push(page.file);
        }
    }
    stale
}

#[test]
fn man_pages_are_current() {
    let stale = check_or_update(sasldb::cli::man::pages());
    assert!(
        stale.is_empty(),
        "man pages out of date: {stale:?}; run scripts/gen-man (UPDATE_MAN=1 cargo test man_pages)"
    );
}

#[test]
fn completions_are_current() {
    let stale = check_or_update(sasldb::cli::completions::files());
    assert!(
        stale.is_empty(),
        "shell completions out of date: {stale:?}; run scripts/gen-man"
    );
}

#[test]
fn man_pages_render_with_man() {
    // groff must accept the generated roff without warnings.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for page in sasldb::cli::man::pages() {
        let out = std::process::Command::new(crate::support::peer("man"))
            .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
            .arg(dir.join(page.file))
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            page.file,
            String::from_utf8_lossy(&out.stderr)
        );
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.trim().is_empty(), "{}: {warnings}", page.file);
    }
}

/// Runs bash-completion's machinery on the checked-in bash completion of `tool`, as
/// bash does on <TAB>: `words` typed so far (the last one being completed). Returns
/// COMPREPLY.
fn bash_complete(tool: &str, words: &[&str]) -> Vec<String> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("man/completions/bash")
        .join(tool);
    let framework = Path::new("/usr/share/bash-completion/bash_completion");
    assert!(
        framework.exists(),
        "\n\n*** PEER TOOL MISSING: {} (package bash-completion) is not installed. ***\n\
         Run the README's test command (scripts/test), which installs every peer.\n\n",
        framework.display()
    );
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    // The function bash calls is whatever `complete -p TOOL` names, with the
    // arguments bash passes: command, word being completed, previous word.
    let script = format!(
        r#"
set -e
source {framework}
source {file}
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
spec=$(complete -p {tool})
func=$(printf '%s\n' "$spec" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
prev=""
if [ "$COMP_CWORD" -gt 0 ]; then prev=${{COMP_WORDS[COMP_CWORD-1]}}; fi
"$func" {tool} "${{COMP_WORDS[COMP_CWORD]}}" "$prev"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        framework = framework.display(),
        file = file.display(),
        words = quoted.join(" "),
    );
    let out = std::process::Command::new(crate::support::peer("bash"))
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash completion of {words:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completions_complete() {
    assert_eq!(bash_complete("sasldb", &["sasldb", "con"]), ["convert"]);
    assert_eq!(
        bash_complete("sasldb", &["sasldb", "sync-chroot", "--q"]),
        ["--queue-directory"]
    );
    let opts = bash_complete("saslpasswd2", &["saslpasswd2", "-"]);
    for o in [
        "-p",
        "-c",
        "-d",
        "-n",
        "-f",
        "-a",
        "-u",
        "--scram-iterations",
    ] {
        assert!(
            opts.iter().any(|x| x == o),
            "saslpasswd2 -<TAB>: {o} missing in {opts:?}"
        );
    }
    let opts = bash_complete("sasldblistusers2", &["sasldblistusers2", "-"]);
    for o in ["-v", "-f", "-h"] {
        assert!(
            opts.iter().any(|x| x == o),
            "sasldblistusers2 -<TAB>: {o} missing in {opts:?}"
        );
    }
}
