//! Temporary files next to the database and the atomic replace, all through the
//! directory's descriptor.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::dir::Dir;
use super::{BEING_WRITTEN, Ownership, Target, fault};
use crate::error::{Error, IoContext, Result};

/// A temporary file in a database's directory, removed on drop unless it was moved
/// into place.
#[derive(Debug)]
pub struct TempFile {
    dir: Dir,
    name: OsString,
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Its path (for messages, and for libraries that open by name in a directory
    /// nobody else can write).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its name in its directory.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// Its directory.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Gives the temporary file the name `dest` in its directory without replacing
    /// anything there (`link` then `unlink`: fails with `AlreadyExists` if `dest`
    /// appeared), fsyncs it and the directory.
    pub fn link_into_place(mut self, dest: &OsStr) -> Result<()> {
        let dest_path = self.dir.join(dest);
        self.dir
            .open_at(&self.name, nix::fcntl::OFlag::O_RDONLY)
            .and_then(|f| {
                fault::inject(fault::Step::Fsync)?;
                f.sync_all()
            })
            .at(&self.path)?;
        fault::inject(fault::Step::Link)
            .and_then(|()| self.dir.link(&self.name, dest))
            .at(&dest_path)?;
        // From here the database exists under its name. If removing the temporary
        // name fails, drop retries; a crash here leaves a second link that
        // `Target::resolve` tolerates and the next writer removes.
        fault::inject(fault::Step::Unlink)
            .and_then(|()| self.dir.unlink(&self.name))
            .at(&self.path)?;
        self.armed = false;
        sync_dir(&self.dir)
    }

    /// Renames the temporary file over `dest` in its directory (replacing whatever
    /// directory entry is there: a file, a hard link or a symlink, which is not
    /// followed), after fsyncing it, and fsyncs the directory.
    pub fn rename_into_place(mut self, dest: &OsStr) -> Result<()> {
        self.dir
            .open_at(&self.name, nix::fcntl::OFlag::O_RDONLY)
            .and_then(|f| f.sync_all())
            .at(&self.path)?;
        self.dir.rename(&self.name, dest).at(&self.dir.join(dest))?;
        self.armed = false;
        sync_dir(&self.dir)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.dir.unlink(&self.name);
        }
    }
}

/// Creates a temporary file next to the database: a random name with the prefix that
/// [`Target::remove_stale_temps`] cleans up, `O_EXCL | O_NOFOLLOW` (a planted symlink is
/// never followed), mode 0600, then given `own` before anything is written to it.
pub fn create_temp(target: &Target, own: &Ownership) -> Result<(File, TempFile)> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
    let mut name = target.temp_prefix();
    name.push(OsStr::new(
        &rnd.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ));
    create_temp_named(target, own, &name)
}

/// [`create_temp`] with a given name (tests plant files at it).
pub(crate) fn create_temp_named(
    target: &Target,
    own: &Ownership,
    name: &OsStr,
) -> Result<(File, TempFile)> {
    let tmp_path = target.handle.join(name);
    let file = fault::inject(fault::Step::Create)
        .and_then(|()| target.handle.create_new(name))
        .at(&tmp_path)?;
    let guard = TempFile {
        dir: target.handle.clone(),
        name: name.to_os_string(),
        path: tmp_path.clone(),
        armed: true,
    };
    fault::inject(fault::Step::Own).at(&tmp_path)?;
    own.apply(&file, &tmp_path)?;
    Ok((file, guard))
}

/// Replaces the database atomically with what `write` puts into a new file.
///
/// The temporary file comes from [`create_temp`] (owned and moded per `own` before
/// `write` runs); it is fsynced, renamed over the database, and the directory fsynced.
/// On any error the temporary file is removed and the database is untouched.
pub fn replace_file<T>(
    target: &Target,
    own: &Ownership,
    write: impl FnOnce(&mut File) -> Result<T>,
) -> Result<T> {
    let (mut file, mut guard) = create_temp(target, own)?;
    let out = write(&mut file).map_err(|e| match e {
        Error::Io { path, source } if path.as_os_str() == BEING_WRITTEN => Error::Io {
            path: target.path.clone(),
            source,
        },
        e => e,
    })?;
    fault::inject(fault::Step::Fsync)
        .and_then(|()| file.sync_all())
        .at(&guard.path)?;
    drop(file);
    fault::inject(fault::Step::Rename)
        .and_then(|()| target.handle.rename(&guard.name, &target.name))
        .at(&target.path)?;
    guard.armed = false;
    sync_dir(&target.handle)?;
    Ok(out)
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Dir) -> Result<()> {
    fault::inject(fault::Step::SyncDir)
        .and_then(|()| dir.sync())
        .at(dir.path())
}
