//! Whose directory it is: only a tree iac wrote (its marker exactly iac's, nothing the marker
//! does not list) is replaced without `--force`; staging directories of killed renders go.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Error, lock};
use crate::render::{MARKER, marker};

/// Remove `PARENT/PREFIX*` directories no live render holds locked: staging trees of renders
/// that were killed (or old trees a killed render had already swapped out).
pub(super) fn remove_stale_staging(parent: &Path, prefix: &str) -> Result<usize, Error> {
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
        match fs::remove_dir_all(&path) {
            Ok(()) => removed += 1,
            // Removed by another render's clean-up at the same time.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Write { path: path.clone(), source }),
        }
    }
    Ok(removed)
}

/// Whether an existing directory is iac's to replace.
pub(super) enum Inspection {
    /// Why it is not.
    Foreign(String),
    /// It is: empty, or its marker is exactly iac's and it holds only the files the marker
    /// lists (and their directories).
    Ours(Listing),
}

/// What an existing directory of iac's holds.
#[derive(Default)]
pub(super) struct Listing {
    /// Files, and whether each is a regular file (a symbolic link named like a listed file is
    /// not, and is never followed).
    pub(super) files: Vec<(PathBuf, bool)>,
    pub(super) dirs: BTreeSet<PathBuf>,
}

pub(super) fn inspect(dir: &Path) -> Result<Inspection, Error> {
    let mut entries = fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    if entries.next().is_none() {
        return Ok(Inspection::Ours(Listing::default()));
    }
    let marker_path = dir.join(MARKER);
    let text = fs::read_to_string(&marker_path).ok();
    let Some(listed) = text.as_deref().and_then(marker::parse) else {
        if text.as_deref().is_some_and(marker::is_unlisted_marker) {
            return Ok(Inspection::Foreign(format!(
                "its {MARKER} is an earlier iac's marker, which does not list the files it wrote, so iac cannot \
                 tell them from files added by hand (after one render with --force, the new marker lists them)"
            )));
        }
        return Ok(Inspection::Foreign(format!("it has no {MARKER} written by iac, so iac did not write it")));
    };
    let mut allowed: BTreeSet<PathBuf> = listed.into_iter().collect();
    allowed.insert(PathBuf::from(MARKER));
    let dirs: BTreeSet<PathBuf> = allowed.iter().flat_map(|p| p.ancestors().skip(1)).map(Path::to_path_buf).collect();
    let mut found = Vec::new();
    list_entries(dir, Path::new(""), &mut found)?;
    let mut listing = Listing::default();
    for (rel, kind) in found {
        let ok = if kind.is_dir() { dirs.contains(&rel) } else { allowed.contains(&rel) };
        if !ok {
            return Ok(Inspection::Foreign(format!("it holds {} that iac did not write", rel.display())));
        }
        if kind.is_dir() {
            listing.dirs.insert(rel);
        } else {
            listing.files.push((rel, kind.is_file()));
        }
    }
    Ok(Inspection::Ours(listing))
}

/// Every entry under `root/rel` (relative path, its type, not following symbolic links), so a
/// link iac did not write is foreign and is never followed.
fn list_entries(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, fs::FileType)>) -> Result<(), Error> {
    let here = root.join(rel);
    let err = |source| Error::Read { path: here.clone(), source };
    for entry in fs::read_dir(&here).map_err(err)? {
        let entry = entry.map_err(err)?;
        let rel = rel.join(entry.file_name());
        let kind = entry.file_type().map_err(|source| Error::Read { path: root.join(&rel), source })?;
        out.push((rel.clone(), kind));
        if kind.is_dir() {
            list_entries(root, &rel, out)?;
        }
    }
    Ok(())
}
