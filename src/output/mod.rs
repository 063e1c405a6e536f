//! Write a rendered tree, or compare it with what is on disk.
//!
//! A render is all-or-nothing: the new content is built in a fresh sibling directory and
//! swapped in with one `renameat2(RENAME_EXCHANGE)`, so a reader (or a crash) sees either the
//! complete old tree or the complete new one, never a mix.
//!
//! A render does not churn the filesystem (issue 16):
//!
//! - a tree equal to the directory is not written at all;
//! - the swap replaces the smallest directory that holds every change: when only files of
//!   `h7/` changed, the staging directory is a new `h7/` and the exchange swaps that one
//!   directory (still one rename, so still all-or-nothing for the whole tree); when files are
//!   added or removed (the marker lists them) or changes span directories, it is the whole tree;
//! - in the staging directory every file whose content is unchanged is a hard link to the
//!   current file, so only changed files get new inodes. The old tree's files are never
//!   opened for writing: a reader holding one keeps reading the old content.
//!
//! Why: recreating every file (2,051 for 1,000 hosts) and deleting the old ones made each
//! render allocate and free thousands of inodes, and ext4 without a journal skips inodes freed
//! in the last minute when it allocates (`find_inode_bit`/`recently_deleted` in
//! fs/ext4/ialloc.c), so back-to-back renders grew from 0.2 s to over 1 s. Directories cannot
//! be hard links, so a whole-tree swap still creates and frees one directory per host; the
//! one-directory swap is what keeps a one-host change cheap.
//!
//! Renders of the same directory take turns (an exclusive `flock` on it): a swap of one
//! subdirectory is only right if the tree it was computed against is still the one in place.
//! Only iac's own output is ever replaced: a directory whose marker (`render::marker`) is not
//! exactly iac's, or that holds files the marker does not list, is refused unless `force`; a
//! directory holding `.git`, a symbolic link or a file is refused always. A staging directory
//! is locked (`flock`) while its render runs; a later render removes every unlocked one, left
//! by a render that was killed.

mod current;
mod diff;
mod ownership;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::render::Tree;

use current::{Current, Identity};
pub use diff::{diff_tree, read_tree};
use ownership::{Inspection, inspect, remove_stale_staging};

/// Why the tree was not written (the directory is then as it was) or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("refusing to replace {}: {reason}; pass --force if iac may replace it", path.display())]
    ForeignOutput { path: PathBuf, reason: String },
    #[error("refusing to write {}: {reason}", path.display())]
    OutputRefused { path: PathBuf, reason: String },
}

/// What `write_tree` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// False when the directory already held exactly the tree: nothing was written.
    pub written: bool,
    /// Files in the tree.
    pub files: usize,
    /// Files written anew (new inodes); every other file of the tree is the file that was
    /// there before (linked into the staging directory, or outside the swapped directory).
    pub new_files: usize,
    /// The directory that was swapped, relative to the output directory: empty for the whole
    /// tree. `None` when nothing was written.
    pub swapped: Option<PathBuf>,
    /// Staging directories of killed renders that were removed.
    pub stale_removed: usize,
}

/// Up to this many newly written files are made durable one `fsync` each; more, with one
/// `syncfs`. On a disk whose cache flush is real every fsync waits for one (an fsync per file
/// once made a fresh 1,000-host render take 18 s); syncfs waits once, but also for every other
/// process's dirty data on the filesystem (30 to 650 ms on the shared development VM, where
/// 32 fsyncs take 5 ms). A re-render that changes a few hosts writes a few files; a fresh
/// render writes them all.
const FSYNC_AT_MOST: usize = 32;

/// Replace `dir` with exactly the files of `tree`. `force` replaces a directory that holds
/// files iac did not write (never one holding `.git`).
pub fn write_tree(dir: &Path, tree: &Tree, force: bool) -> Result<Outcome, Error> {
    let refuse = |reason: String| Error::OutputRefused { path: dir.to_path_buf(), reason };
    let exists = match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(refuse("it is a symbolic link; pass the directory it points to".into()));
        }
        Ok(m) if !m.is_dir() => return Err(refuse("it is not a directory".into())),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => return Err(Error::Read { path: dir.to_path_buf(), source }),
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dir.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let prefix = format!(".{name}.iac-");
    // Held until this function returns: the tree compared below stays the one in place.
    let _turn = if exists { Some(take_turn(dir)?) } else { None };
    let stale_removed = if parent.is_dir() { remove_stale_staging(&parent, &prefix)? } else { 0 };
    let mut current = Current::default();
    let mut scope = PathBuf::new();
    if exists {
        if fs::symlink_metadata(dir.join(".git")).is_ok() {
            return Err(refuse("it holds .git (a repository); iac never replaces one, even with --force".into()));
        }
        match inspect(dir)? {
            Inspection::Foreign(reason) if !force => {
                return Err(Error::ForeignOutput { path: dir.to_path_buf(), reason });
            }
            // Forced over a foreign tree: nothing of it is reused (its files' owners and modes
            // are not ours to carry over), the whole tree is replaced.
            Inspection::Foreign(_) => {}
            Inspection::Ours(listing) => {
                current = Current::compare(dir, listing, tree)?;
                match current.scope(tree) {
                    None => return Ok(Outcome { written: false, files: tree.len(), new_files: 0, swapped: None, stale_removed }),
                    Some(s) => scope = s,
                }
            }
        }
    }
    fs::create_dir_all(&parent).map_err(|source| Error::Write { path: parent.clone(), source })?;
    let staging =
        tempfile::Builder::new().prefix(&prefix).tempdir_in(&parent).map_err(|source| Error::Write { path: parent.clone(), source })?;
    // Held until this function returns (or the process dies): marks the staging directory as
    // a live render's, so a concurrent render's clean-up leaves it alone.
    let lock = lock(staging.path(), rustix::fs::FlockOperation::LockExclusive)?;
    // The files under `scope`, grouped by directory: each group is one parallel task that
    // creates its directory (create_dir_all tolerates a sibling task creating a shared parent
    // at the same time) and places its files.
    let mut groups: BTreeMap<PathBuf, Vec<(&PathBuf, &String)>> = BTreeMap::new();
    for (rel, text) in tree.iter().filter(|(rel, _)| rel.starts_with(&scope)) {
        let inner = rel.strip_prefix(&scope).unwrap_or(rel);
        groups.entry(inner.parent().unwrap_or(Path::new("")).to_path_buf()).or_default().push((rel, text));
    }
    // The paths of the files written anew (the others are links).
    let written: Vec<PathBuf> = groups
        .par_iter()
        .map(|(sub, files)| -> Result<Vec<PathBuf>, Error> {
            let here = staging.path().join(sub);
            fs::create_dir_all(&here).map_err(|source| Error::Write { path: here.clone(), source })?;
            let mut written = Vec::new();
            for (rel, text) in files {
                let target = staging.path().join(rel.strip_prefix(&scope).unwrap_or(rel));
                if place(&dir.join(rel), &target, text, current.same.get(*rel))? {
                    written.push(target);
                }
            }
            Ok(written)
        })
        .collect::<Result<Vec<_>, Error>>()?
        .into_iter()
        .flatten()
        .collect();
    let new_files = written.len();
    // The swap below happens only once the new files' data is durable. Linked files were made
    // durable by the render that wrote them; the staging directory's entries are ordered
    // before the rename by the filesystem's journal.
    if new_files <= FSYNC_AT_MOST {
        written.par_iter().try_for_each(|path| {
            fs::File::open(path).and_then(|f| f.sync_all()).map_err(|source| Error::Write { path: path.clone(), source })
        })?;
    } else {
        rustix::fs::syncfs(&lock).map_err(|e| Error::Write { path: staging.path().to_path_buf(), source: e.into() })?;
    }
    if exists {
        let target = if scope.as_os_str().is_empty() { dir.to_path_buf() } else { dir.join(&scope) };
        rustix::fs::renameat_with(rustix::fs::CWD, staging.path(), rustix::fs::CWD, &target, rustix::fs::RenameFlags::EXCHANGE)
            .map_err(|e| Error::Write { path: target.clone(), source: e.into() })?;
        // `staging` now holds what was replaced. Removed in parallel, one task per entry;
        // whatever is left (on an error) the guard removes when dropped.
        if let Ok(entries) = fs::read_dir(staging.path()) {
            let entries: Vec<(PathBuf, bool)> = entries.flatten().map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir()))).collect();
            entries.par_iter().for_each(|(path, is_dir)| {
                let _ = if *is_dir { fs::remove_dir_all(path) } else { fs::remove_file(path) };
            });
        }
    } else {
        fs::rename(staging.path(), dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
        // Renamed away: nothing is left for the guard to remove (on failure it removes it all).
        let _ = staging.keep();
    }
    drop(lock);
    Ok(Outcome { written: true, files: tree.len(), new_files, swapped: Some(scope), stale_removed })
}

/// Wait for this directory's turn: an exclusive `flock` on the directory that is in place
/// when the lock is granted (a render that held it may have swapped the whole tree meanwhile;
/// then the lock is on the old tree, and the new one is locked instead).
fn take_turn(dir: &Path) -> Result<fs::File, Error> {
    loop {
        let held = lock(dir, rustix::fs::FlockOperation::LockExclusive)?;
        let now = fs::symlink_metadata(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
        let locked = held.metadata().map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
        if Identity::of(&now) == Identity::of(&locked) {
            return Ok(held);
        }
    }
}

/// Put a file into the staging directory at `target`: a hard link to `source` (the current
/// file at the same place) when `same` says it holds exactly `text`, else a new file (then
/// true). The link is checked to be the very inode that was compared: a file replaced in the
/// meantime (by hand) is written instead.
fn place(source: &Path, target: &Path, text: &str, same: Option<&Identity>) -> Result<bool, Error> {
    // No link (a filesystem without hard links, a file gone meanwhile): the file is written.
    if let Some(id) = same
        && fs::hard_link(source, target).is_ok()
    {
        if fs::symlink_metadata(target).is_ok_and(|m| Identity::of(&m) == *id) {
            return Ok(false);
        }
        fs::remove_file(target).map_err(|e| Error::Write { path: target.to_path_buf(), source: e })?;
    }
    let err = |source| Error::Write { path: target.to_path_buf(), source };
    let mut f = fs::File::create(target).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    Ok(true)
}

pub(super) fn lock(dir: &Path, op: rustix::fs::FlockOperation) -> Result<fs::File, Error> {
    let f = fs::File::open(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    rustix::fs::flock(&f, op).map_err(|e| Error::Write { path: dir.to_path_buf(), source: e.into() })?;
    Ok(f)
}
