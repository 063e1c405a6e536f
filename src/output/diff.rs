//! `--check`: the tree on disk read back and compared with the rendered one.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use similar::TextDiff;

use super::Error;
use crate::render::Tree;

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
