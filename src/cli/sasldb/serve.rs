//! `serve` and `checkpassword`: the global flags turned into the library's
//! configuration, then [`crate::serve`].

use std::sync::Arc;

use anyhow::Result;

use super::args::Global;
use super::io::{config, default_realm, location};
use crate::cli::Exit;
use crate::serve::LibraryAuthority;
use crate::serve::args::{CheckpasswordArgs, ServeArgs};
use crate::serve::checkpassword;

pub fn serve(g: &Global, a: &ServeArgs) -> Result<Exit> {
    let conf = config(g)?;
    let loc = location(g, conf.as_ref())?;
    let realm = g
        .realm
        .as_ref()
        .filter(|r| !r.is_empty())
        .map(|r| r.as_bytes().to_vec());
    let cfg = a.to_config(g.group.clone(), realm);
    crate::serve::run(cfg, Arc::new(LibraryAuthority::new(loc)))?;
    Ok(Exit::Success)
}

/// Never returns on success (the program is executed); every other outcome exits
/// with the checkpassword status (1 rejected, 2 misuse, 3 unknown in lookup mode,
/// 111 internal failure), never through the usual error path.
pub fn checkpassword(g: &Global, a: &CheckpasswordArgs) -> Result<Exit> {
    let mut log = |line: &str| crate::cli::eprint_line(&format!("sasldb checkpassword: {line}"));
    let setup = (|| -> Result<_> {
        let conf = config(g)?;
        let loc = location(g, conf.as_ref())?;
        Ok((loc, default_realm(g)?))
    })();
    let code = match setup {
        Ok((loc, realm)) => {
            let authority = LibraryAuthority::new(loc);
            checkpassword::run(&authority, &realm, &a.prog, &mut log)
        }
        Err(e) => {
            log(&format!("{e:#}"));
            checkpassword::EXIT_TEMP
        }
    };
    std::process::exit(code)
}
