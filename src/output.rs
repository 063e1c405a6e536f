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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use similar::TextDiff;

use crate::error::Error;
use crate::render::{MARKER, Tree, marker};

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

/// A file's identity: the inode a hard link shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    fn of(m: &fs::Metadata) -> Self {
        Self { dev: m.dev(), ino: m.ino() }
    }
}

/// The current tree compared with the one to write.
#[derive(Default)]
struct Current {
    /// Files whose content is already exactly the tree's, with their inodes.
    same: HashMap<PathBuf, Identity>,
    /// Every file (and symbolic link) in place, and every directory.
    files: Vec<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Current {
    /// Read the current tree's files (in parallel) and compare each with `tree`. Only the
    /// outcome is kept, never the old content: a 10,000-host tree is 117 MiB.
    fn compare(dir: &Path, listing: Listing, tree: &Tree) -> Result<Current, Error> {
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
    fn scope(&self, tree: &Tree) -> Option<PathBuf> {
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
enum Inspection {
    /// Why it is not.
    Foreign(String),
    /// It is: empty, or its marker is exactly iac's and it holds only the files the marker
    /// lists (and their directories).
    Ours(Listing),
}

/// What an existing directory of iac's holds.
#[derive(Default)]
struct Listing {
    /// Files, and whether each is a regular file (a symbolic link named like a listed file is
    /// not, and is never followed).
    files: Vec<(PathBuf, bool)>,
    dirs: BTreeSet<PathBuf>,
}

fn inspect(dir: &Path) -> Result<Inspection, Error> {
    let mut entries = fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    if entries.next().is_none() {
        return Ok(Inspection::Ours(Listing::default()));
    }
    let marker_path = dir.join(MARKER);
    let listed = match fs::read_to_string(&marker_path) {
        Ok(text) => marker::parse(&text),
        Err(_) => None,
    };
    let Some(listed) = listed else {
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
