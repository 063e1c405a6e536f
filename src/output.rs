//! Write a rendered tree, or compare it with what is on disk.
//!
//! A render is all-or-nothing: the tree is written into a fresh sibling directory and swapped
//! with the old one in one `renameat2(RENAME_EXCHANGE)`, so a reader (or a crash) sees either
//! the complete old tree or the complete new one, never a mix.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use similar::TextDiff;

use crate::error::Error;
use crate::render::{MARKER, Tree};

/// Replace `dir` with exactly the files of `tree`.
pub fn write_tree(dir: &Path, tree: &Tree) -> Result<(), Error> {
    let exists = dir.exists();
    if exists && !is_ours(dir)? {
        return Err(Error::ForeignOutput { path: dir.to_path_buf(), marker: MARKER });
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|source| Error::Write { path: parent.clone(), source })?;
    let name = dir.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.iac-"))
        .tempdir_in(&parent)
        .map_err(|source| Error::Write { path: parent.clone(), source })?;
    let dirs: BTreeSet<PathBuf> = tree.keys().filter_map(|rel| rel.parent()).map(|p| staging.path().join(p)).collect();
    for dir in &dirs {
        fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
    }
    tree.par_iter().try_for_each(|(rel, text)| write_file(&staging.path().join(rel), text))?;
    // One syncfs for the whole tree instead of an fsync per file: thousands of fsyncs made a
    // 1,000-host render take seconds. The swap below happens only once the data is durable.
    let dir_fd = fs::File::open(staging.path()).map_err(|source| Error::Write { path: staging.path().to_path_buf(), source })?;
    rustix::fs::syncfs(&dir_fd).map_err(|e| Error::Write { path: staging.path().to_path_buf(), source: e.into() })?;
    if exists {
        rustix::fs::renameat_with(rustix::fs::CWD, staging.path(), rustix::fs::CWD, dir, rustix::fs::RenameFlags::EXCHANGE)
            .map_err(|e| Error::Write { path: dir.to_path_buf(), source: e.into() })?;
        // `staging` now holds the previous tree and is removed when dropped.
    } else {
        let staged = staging.keep();
        fs::rename(&staged, dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    let mut f = fs::File::create(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// An existing output directory is ours to replace when it is empty or carries the marker.
fn is_ours(dir: &Path) -> Result<bool, Error> {
    let mut entries = fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    Ok(dir.join(MARKER).is_file() || entries.next().is_none())
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
