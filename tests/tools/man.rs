//! The checked-in man pages are exactly what the option tables render.

use std::path::Path;

#[test]
fn man_pages_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for page in sasldb::cli::man::pages() {
        let path = dir.join(page.file);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &page.text).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&page.text[..]) {
            stale.push(page.file);
        }
    }
    assert!(
        stale.is_empty(),
        "man pages out of date: {stale:?}; run scripts/gen-man (UPDATE_MAN=1 cargo test man_pages)"
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
