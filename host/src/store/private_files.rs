//! The data directory is private to the account tally runs as: the directory
//! and its subdirectories 0700, every file in it 0600 (the database with its
//! WAL and shared-memory files, compiled adapters, anything else). What an
//! older install left readable is tightened each time a command opens the
//! directory.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Mode of the data directory and its subdirectories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in the data directory.
pub const FILE_MODE: u32 = 0o600;
/// SQLite's companions of a database file: they hold its latest pages.
const DATABASE_COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Creates `dir` (and missing parents) as 0700, or tightens it and what it
/// holds when it exists.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    tighten(dir).with_context(|| format!("making {} private", dir.display()))
}

/// Creates the database file `path` as 0600 if it is missing, and tightens
/// it and its companions (`-wal`, `-shm`, `-journal`) when they exist.
/// SQLite creates the companions with the database file's mode.
pub fn prepare_database_file(path: &Path) -> anyhow::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    for suffix in std::iter::once("").chain(DATABASE_COMPANIONS) {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        if let Ok(meta) = fs::symlink_metadata(file)
            && meta.is_file()
        {
            restrict(file, meta.permissions(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// New files and directories of this process are private (umask 077):
/// `tally serve` writes only into the data directory.
pub fn private_umask() {
    // SAFETY: umask only sets the process's file-mode creation mask; it
    // cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// `dir` 0700, and recursively its directories 0700 and files 0600. Symbolic
/// links are left alone (their targets may be anyone's).
fn tighten(dir: &Path) -> anyhow::Result<()> {
    restrict(dir, fs::metadata(dir)?.permissions(), DIR_MODE)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?; // does not follow links
        if meta.is_dir() {
            tighten(&entry.path())?;
        } else if meta.is_file() {
            restrict(&entry.path(), meta.permissions(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// Removes the group and other bits beyond `mode` (owner bits stay).
fn restrict(path: &Path, permissions: Permissions, mode: u32) -> anyhow::Result<()> {
    let current = permissions.mode() & 0o7777;
    let wanted = current & mode;
    if wanted != current {
        fs::set_permissions(path, Permissions::from_mode(wanted))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}
