//! The tree in place compared with the one to write: which files are already right (and
//! their inodes, for the hard links), and the smallest directory that holds every difference.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Error;
use super::ownership::Listing;
use crate::render::Tree;

/// A file's identity: the inode a hard link shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub(super) fn of(m: &fs::Metadata) -> Self {
        Self { dev: m.dev(), ino: m.ino() }
    }
}

/// The current tree compared with the one to write.
#[derive(Default)]
pub(super) struct Current {
    /// Files whose content is already exactly the tree's, with their inodes.
    pub(super) same: HashMap<PathBuf, Identity>,
    /// Every file (and symbolic link) in place, and every directory.
    files: Vec<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Current {
    /// Read the current tree's files (in parallel) and compare each with `tree`. Only the
    /// outcome is kept, never the old content: a 10,000-host tree is 117 MiB.
    pub(super) fn compare(dir: &Path, listing: Listing, tree: &Tree) -> Result<Current, Error> {
        let same = listing
            .files
            .par_iter()
            .map(|(rel, regular)| -> Result<Option<(PathBuf, Identity)>, Error> {
                let Some(want) = tree.get(rel).filter(|_| *regular) else { return Ok(None) };
                let path = dir.join(rel);
                let err = |source| Error::Read { path: path.clone(), source };
                let mut f = fs::File::open(&path).map_err(err)?;
                let meta = f.metadata().map_err(err)?;
                // A file swapped for another kind since the listing is simply not reused.
                if !meta.is_file() || meta.len() != want.len() as u64 {
                    return Ok(None);
                }
                let mut have = vec![0; want.len()];
                f.read_exact(&mut have).map_err(err)?;
                let at_end = f.read(&mut [0u8]).map_err(err)? == 0;
                Ok((at_end && have == want.as_bytes()).then(|| (rel.clone(), Identity::of(&meta))))
            })
            .collect::<Result<Vec<_>, Error>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(Current { same, files: listing.files.into_iter().map(|(rel, _)| rel).collect(), dirs: listing.dirs })
    }

    /// The directory to swap, relative to the tree's root (empty: the whole tree), or `None`
    /// when the directory holds exactly `tree` already. It is the deepest directory, present
    /// in both trees, that holds every difference: a changed file changes its directory; a
    /// file added or removed changes the nearest directory that both trees have.
    pub(super) fn scope(&self, tree: &Tree) -> Option<PathBuf> {
        let new_dirs: BTreeSet<&Path> = tree.keys().flat_map(|rel| rel.ancestors().skip(1)).collect();
        let shared = |d: &Path| d.as_os_str().is_empty() || (self.dirs.contains(d) && new_dirs.contains(d));
        let changed =
            tree.keys().filter(|rel| !self.same.contains_key(*rel)).chain(self.files.iter().filter(|rel| !tree.contains_key(*rel)));
        let mut scope: Option<PathBuf> = None;
        for rel in changed {
            let home = rel.ancestors().skip(1).find(|d| shared(d)).unwrap_or(Path::new(""));
            scope = Some(match scope {
                None => home.to_path_buf(),
                Some(s) => s.components().zip(home.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
            });
        }
        scope
    }
}
