//! Shell completions (bash, zsh, fish) for the three tools, rendered by
//! `clap_complete` from the same clap descriptions as the man pages ([`super::man`]):
//! for `saslpasswd2` and `sasldblistusers2` those are built from their option tables
//! ([`super::OptDoc`]), so parsing, `--help`, man page and completion share one source.
//!
//! `man/completions/` in the repository holds these renderings, one directory per
//! shell, each file named as the shell looks it up; a test fails when they drift, and
//! `scripts/gen-man` rewrites them with the man pages.

use clap_complete::Shell;

use super::man::Page;

/// Every completion file: `(tool, shell, file under man/)`. The file names are the
/// ones each shell loads on demand for the tool (bash-completion:
/// `completions/<tool>`; zsh: `_<tool>` in `$fpath`; fish: `<tool>.fish`).
pub const FILES: &[(&str, Shell, &str)] = &[
    ("sasldb", Shell::Bash, "completions/bash/sasldb"),
    ("saslpasswd2", Shell::Bash, "completions/bash/saslpasswd2"),
    (
        "sasldblistusers2",
        Shell::Bash,
        "completions/bash/sasldblistusers2",
    ),
    ("sasldb", Shell::Zsh, "completions/zsh/_sasldb"),
    ("saslpasswd2", Shell::Zsh, "completions/zsh/_saslpasswd2"),
    (
        "sasldblistusers2",
        Shell::Zsh,
        "completions/zsh/_sasldblistusers2",
    ),
    ("sasldb", Shell::Fish, "completions/fish/sasldb.fish"),
    (
        "saslpasswd2",
        Shell::Fish,
        "completions/fish/saslpasswd2.fish",
    ),
    (
        "sasldblistusers2",
        Shell::Fish,
        "completions/fish/sasldblistusers2.fish",
    ),
];

/// The clap description of a tool.
fn command(tool: &str) -> clap::Command {
    match tool {
        "sasldb" => super::sasldb::args::command(),
        "saslpasswd2" => super::saslpasswd2::command(),
        "sasldblistusers2" => super::listusers::command(),
        _ => unreachable!("no tool {tool}"),
    }
}

/// Renders every completion file (paths relative to `man/`).
pub fn files() -> Vec<Page> {
    FILES
        .iter()
        .map(|&(tool, shell, file)| {
            let mut cmd = command(tool);
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd, tool, &mut text);
            Page { file, text }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_file_per_shell() {
        for tool in ["sasldb", "saslpasswd2", "sasldblistusers2"] {
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let n = FILES
                    .iter()
                    .filter(|(t, s, _)| *t == tool && *s == shell)
                    .count();
                assert_eq!(n, 1, "{tool} {shell}");
            }
        }
    }

    #[test]
    fn bash_completion_offers_the_cyrus_options() {
        let page = files()
            .into_iter()
            .find(|p| p.file == "completions/bash/saslpasswd2")
            .unwrap();
        let text = String::from_utf8(page.text).unwrap();
        for opt in ["-p", "-c", "-d", "-n", "-f", "-a", "-u", "--scram"] {
            assert!(text.contains(&format!(" {opt} ")), "{opt} missing");
        }
    }
}
