//! Write a rendered tree, or compare it with what is on disk.
//!
//! A render is all-or-nothing: the tree is written into a fresh sibling directory and swapped
//! with the old one in one `renameat2(RENAME_EXCHANGE)`, so a reader (or a crash) sees either
//! the complete old tree or the complete new one, never a mix.
//!
//! Only iac's own output is ever replaced: a directory whose marker (`render::marker`) is not
//! exactly iac's, or that holds files the marker does not list, is refused unless `force`; a
//! directory holding `.git`, a symbolic link or a file is refused always. A staging directory
//! is locked (`flock`) while its render runs; a later render removes every unlocked one, left
//! by a render that was killed. A tree equal to the directory is not written at all.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use similar::TextDiff;

use crate::render::{MARKER, Tree, marker};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// False when the directory already held exactly the tree: nothing was written.
    pub written: bool,
    pub files: usize,
    /// Staging directories of killed renders that were removed.
    pub stale_removed: usize,
}

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
    let stale_removed = if parent.is_dir() { remove_stale_staging(&parent, &prefix)? } else { 0 };
    if exists {
        if fs::symlink_metadata(dir.join(".git")).is_ok() {
            return Err(refuse("it holds .git (a repository); iac never replaces one, even with --force".into()));
        }
        match foreign(dir)? {
            Some(reason) if !force => {
                return Err(Error::ForeignOutput { path: dir.to_path_buf(), reason });
            }
            Some(_) => {}
            None if read_tree(dir)? == *tree => return Ok(Outcome { written: false, files: tree.len(), stale_removed }),
            None => {}
        }
    }
    fs::create_dir_all(&parent).map_err(|source| Error::Write { path: parent.clone(), source })?;
    let staging =
        tempfile::Builder::new().prefix(&prefix).tempdir_in(&parent).map_err(|source| Error::Write { path: parent.clone(), source })?;
    // Held until this function returns (or the process dies): marks the staging directory as
    // a live render's, so a concurrent render's clean-up leaves it alone.
    let lock = lock(staging.path(), rustix::fs::FlockOperation::LockExclusive)?;
    let dirs: BTreeSet<PathBuf> = tree.keys().filter_map(|rel| rel.parent()).map(|p| staging.path().join(p)).collect();
    for dir in &dirs {
        fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
    }
    tree.par_iter().try_for_each(|(rel, text)| write_file(&staging.path().join(rel), text))?;
    // One syncfs for the whole tree instead of an fsync per file: thousands of fsyncs made a
    // 1,000-host render take seconds. The swap below happens only once the data is durable.
    rustix::fs::syncfs(&lock).map_err(|e| Error::Write { path: staging.path().to_path_buf(), source: e.into() })?;
    if exists {
        rustix::fs::renameat_with(rustix::fs::CWD, staging.path(), rustix::fs::CWD, dir, rustix::fs::RenameFlags::EXCHANGE)
            .map_err(|e| Error::Write { path: dir.to_path_buf(), source: e.into() })?;
        // `staging` now holds the previous tree and is removed when dropped.
    } else {
        fs::rename(staging.path(), dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
        // Renamed away: nothing is left for the guard to remove (on failure it removes it all).
        let _ = staging.keep();
    }
    drop(lock);
    Ok(Outcome { written: true, files: tree.len(), stale_removed })
}

fn lock(dir: &Path, op: rustix::fs::FlockOperation) -> Result<fs::File, Error> {
    let f = fs::File::open(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    rustix::fs::flock(&f, op).map_err(|e| Error::Write { path: dir.to_path_buf(), source: e.into() })?;
    Ok(f)
}

/// Remove `PARENT/PREFIX*` directories no live render holds locked: staging trees of renders
/// that were killed (or old trees a killed render had already swapped out).
fn remove_stale_staging(parent: &Path, prefix: &str) -> Result<usize, Error> {
    let entries = fs::read_dir(parent).map_err(|source| Error::Read { path: parent.to_path_buf(), source })?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(prefix));
        if !ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if lock(&path, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue; // a render in progress
        }
        fs::remove_dir_all(&path).map_err(|source| Error::Write { path: path.clone(), source })?;
        removed += 1;
    }
    Ok(removed)
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    let mut f = fs::File::create(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// Why an existing directory is not iac's to replace, or `None` when it is: it is empty, or
/// its marker is exactly iac's and it holds only the files the marker lists (and their
/// directories).
fn foreign(dir: &Path) -> Result<Option<String>, Error> {
    let mut entries = fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    if entries.next().is_none() {
        return Ok(None);
    }
    let marker_path = dir.join(MARKER);
    let listed = match fs::read_to_string(&marker_path) {
        Ok(text) => marker::parse(&text),
        Err(_) => None,
    };
    let Some(listed) = listed else {
        return Ok(Some(format!("it has no {MARKER} written by iac, so iac did not write it")));
    };
    let mut allowed: BTreeSet<PathBuf> = listed.into_iter().collect();
    allowed.insert(PathBuf::from(MARKER));
    let dirs: BTreeSet<PathBuf> = allowed.iter().flat_map(|p| p.ancestors().skip(1)).map(Path::to_path_buf).collect();
    let mut found = Vec::new();
    list_entries(dir, Path::new(""), &mut found)?;
    for (rel, is_dir) in found {
        let ok = if is_dir { dirs.contains(&rel) } else { allowed.contains(&rel) };
        if !ok {
            return Ok(Some(format!("it holds {} that iac did not write", rel.display())));
        }
    }
    Ok(None)
}

/// Every entry under `root/rel` (relative path, is a real directory); symbolic links count as
/// files, so a link iac did not write is foreign and is never followed.
fn list_entries(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) -> Result<(), Error> {
    let here = root.join(rel);
    let err = |source| Error::Read { path: here.clone(), source };
    for entry in fs::read_dir(&here).map_err(err)? {
        let entry = entry.map_err(err)?;
        let rel = rel.join(entry.file_name());
        let is_dir = entry.file_type().map_err(|source| Error::Read { path: root.join(&rel), source })?.is_dir();
        out.push((rel.clone(), is_dir));
        if is_dir {
            list_entries(root, &rel, out)?;
        }
    }
    Ok(())
}

/// Compare `tree` with `dir`. `None` when identical, else a unified diff of every difference
/// (changed, missing and extra files).
pub fn diff_tree(dir: &Path, tree: &Tree) -> Result<Option<String>, Error> {
    let on_disk = read_tree(dir)?;
    let paths: BTreeSet<&PathBuf> = tree.keys().chain(on_disk.keys()).collect();
    let mut out = String::new();
    for path in paths {
        let want = tree.get(path).map_or("", String::as_str);
        let have = on_disk.get(path).map_or("", String::as_str);
        if want == have && tree.contains_key(path) == on_disk.contains_key(path) {
            continue;
        }
        let shown = dir.join(path);
        let old = if on_disk.contains_key(path) { shown.display().to_string() } else { "/dev/null".into() };
        let new = if tree.contains_key(path) { shown.display().to_string() } else { "/dev/null".into() };
        let diff = TextDiff::from_lines(have, want);
        out.push_str(&diff.unified_diff().context_radius(3).header(&old, &new).to_string());
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// Every regular file under `dir`, relative path → content. A missing `dir` is an empty tree.
pub fn read_tree(dir: &Path) -> Result<Tree, Error> {
    let mut tree = Tree::new();
    if dir.exists() {
        walk(dir, Path::new(""), &mut tree)?;
    }
    Ok(tree)
}

fn walk(root: &Path, rel: &Path, tree: &mut Tree) -> Result<(), Error> {
    let here = root.join(rel);
    let err = |source| Error::Read { path: here.clone(), source };
    let mut entries: Vec<_> = fs::read_dir(&here).map_err(err)?.collect::<Result<_, _>>().map_err(err)?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let kind = entry.file_type().map_err(|source| Error::Read { path: root.join(&rel), source })?;
        if kind.is_dir() {
            walk(root, &rel, tree)?;
        } else if kind.is_file() {
            let path = root.join(&rel);
            let text = fs::read_to_string(&path).map_err(|source| Error::Read { path, source })?;
            tree.insert(rel, text);
        }
    }
    Ok(())
}
