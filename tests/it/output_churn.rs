//! Re-rendering without churn (issue 16): a changed tree is still swapped in atomically, but
//! its unchanged files are hard links to the current tree's files, so only changed files get
//! new inodes; the old tree's files are never written, and a render killed half-way leaves the
//! old tree exactly as it was.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{bundled_inventory, bundled_inventory_path, iac, project_with, run_iac, snapshot_dir, text};

fn render_bundled() -> iac::render::Tree {
    let site = iac::load_site(&bundled_inventory_path()).expect("bundled inventory is valid");
    iac::render::render(&site).expect("renders")
}

/// Relative path → inode of every regular file under `dir`.
fn inodes(dir: &Path) -> BTreeMap<PathBuf, u64> {
    snapshot_dir(dir).into_iter().map(|(rel, _)| (rel.clone(), std::fs::metadata(dir.join(&rel)).expect("stat").ino())).collect()
}

fn staging_dirs(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".generated.iac-")))
        .collect()
}

fn dir_inode(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat").ino()
}

/// (a) and (b), changes in one directory: only that directory is swapped; its unchanged file
/// keeps its inode (a hard link), the changed one gets a new inode, every other file and the
/// tree's root stay as they are, and a reader that had the old file open still reads the old
/// content.
#[test]
fn a_change_in_one_directory_swaps_only_that_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generated");
    let tree = render_bundled();
    let first = iac::output::write_tree(&out, &tree, false).unwrap();
    assert_eq!((first.written, first.new_files, first.swapped.as_deref()), (true, tree.len(), Some(Path::new(""))));
    let before = inodes(&out);
    let (root, hamal) = (dir_inode(&out), dir_inode(&out.join("hamal")));

    let changed = PathBuf::from("hamal/nftables.nft");
    let mut reader = std::fs::File::open(out.join(&changed)).unwrap();
    let mut next = tree.clone();
    next.get_mut(&changed).unwrap().push_str("# one more line\n");
    let outcome = iac::output::write_tree(&out, &next, false).unwrap();
    assert_eq!((outcome.written, outcome.new_files, outcome.swapped.as_deref()), (true, 1, Some(Path::new("hamal"))));
    assert_eq!(dir_inode(&out), root, "the root stays");
    assert_ne!(dir_inode(&out.join("hamal")), hamal, "hamal/ was swapped");

    let after = inodes(&out);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    for (rel, ino) in &before {
        if *rel == changed {
            assert_ne!(after[rel], *ino, "{}: a changed file gets a new inode", rel.display());
        } else {
            assert_eq!(after[rel], *ino, "{}: an unchanged file keeps its inode", rel.display());
            assert_eq!(std::fs::metadata(out.join(rel)).unwrap().nlink(), 1, "{}: no link left behind", rel.display());
        }
    }
    let mut held = String::new();
    reader.read_to_string(&mut held).unwrap();
    assert_eq!(held, tree[&changed], "the old file was never written: its reader sees the old content");
    assert_eq!(iac::output::read_tree(&out).unwrap(), next);
    assert!(staging_dirs(dir.path()).is_empty(), "no staging directory left behind");
}

/// (a) and (b), changes in two directories: the whole tree is swapped, and every unchanged
/// file in it is the current file, hard-linked: same inode. The changed files get new inodes
/// and the old files are untouched; going back swaps again and keeps the rest.
#[test]
fn a_change_across_directories_swaps_the_tree_and_links_every_unchanged_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generated");
    let tree = render_bundled();
    iac::output::write_tree(&out, &tree, false).unwrap();
    let before = inodes(&out);
    let root = dir_inode(&out);

    let changed = [PathBuf::from("hamal/nftables.nft"), PathBuf::from("alphard/nftables.nft")];
    let mut readers: Vec<std::fs::File> = changed.iter().map(|c| std::fs::File::open(out.join(c)).unwrap()).collect();
    let mut next = tree.clone();
    for c in &changed {
        next.get_mut(c).unwrap().push_str("# one more line\n");
    }
    let outcome = iac::output::write_tree(&out, &next, false).unwrap();
    assert_eq!((outcome.new_files, outcome.swapped.as_deref()), (2, Some(Path::new(""))));
    assert_ne!(dir_inode(&out), root, "the whole tree was swapped");
    let after = inodes(&out);
    for (rel, ino) in &before {
        if changed.contains(rel) {
            assert_ne!(after[rel], *ino, "{}: a changed file gets a new inode", rel.display());
        } else {
            assert_eq!(after[rel], *ino, "{}: an unchanged file keeps its inode", rel.display());
            assert_eq!(std::fs::metadata(out.join(rel)).unwrap().nlink(), 1, "{}: the old tree's link is gone", rel.display());
        }
    }
    for (c, reader) in changed.iter().zip(&mut readers) {
        let mut held = String::new();
        reader.read_to_string(&mut held).unwrap();
        assert_eq!(held, tree[c], "{}: the old file was never written", c.display());
    }
    assert_eq!(iac::output::read_tree(&out).unwrap(), next);
    assert!(staging_dirs(dir.path()).is_empty(), "no staging directory left behind");

    // Back again: the files that changed twice get yet other inodes, the rest stay.
    iac::output::write_tree(&out, &tree, false).unwrap();
    let back = inodes(&out);
    for (rel, ino) in &before {
        if changed.contains(rel) {
            assert_ne!(back[rel], after[rel]);
        } else {
            assert_eq!(back[rel], *ino, "{}", rel.display());
        }
    }
    assert_eq!(iac::output::read_tree(&out).unwrap(), tree);
}

/// The same through `iac render` with a real inventory change (a new host): the files whose
/// content the change leaves alone keep their inodes, and the command's output is the
/// whole new tree.
#[test]
fn a_grown_inventory_rewrites_only_what_changed() {
    let dir = project_with(&bundled_inventory());
    assert!(run_iac(dir.path(), &["render"]).status.success());
    let out = dir.path().join("generated");
    let old: BTreeMap<PathBuf, Vec<u8>> = snapshot_dir(&out).into_iter().collect();
    let old_inodes = inodes(&out);
    std::fs::write(
        dir.path().join("hosts/inventory.toml"),
        bundled_inventory() + "\n[hosts.mizar]\naddress = \"172.22.0.140\"\nroles = []\n",
    )
    .unwrap();
    let rendered = run_iac(dir.path(), &["render"]);
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let new: BTreeMap<PathBuf, Vec<u8>> = snapshot_dir(&out).into_iter().collect();
    let new_inodes = inodes(&out);
    let (mut kept, mut rewritten) = (0, 0);
    for (rel, content) in &new {
        match old.get(rel) {
            Some(was) if was == content => {
                assert_eq!(new_inodes[rel], old_inodes[rel], "{} is unchanged and keeps its inode", rel.display());
                kept += 1;
            }
            Some(_) => {
                assert_ne!(new_inodes[rel], old_inodes[rel], "{} changed and gets a new inode", rel.display());
                rewritten += 1;
            }
            None => {}
        }
    }
    assert!(new.contains_key(Path::new("mizar/default.nix")));
    assert!(kept >= 10 && rewritten >= 1, "kept {kept}, rewritten {rewritten}");
    assert!(run_iac(dir.path(), &["render", "--check"]).status.success());
}

/// An inventory of `hosts` plain hosts beside a three-node cluster: large enough that a
/// render's staging phase lasts long enough to be interrupted. Every host's ruleset admits
/// SSH from `admin`, so two inventories that differ in it differ in every host.
fn big_inventory(hosts: usize, admin: &str) -> String {
    let mut s = format!(
        "[site]\nname = \"churn\"\n[networks.lan]\ncidr = \"172.16.0.0/12\"\n[access]\nadmin = [\"{admin}\"]\n\
         [dns]\nupstream = [\"192.168.53.53\"]\n[cluster]\npod_cidr = \"10.42.0.0/16\"\nservice_cidr = \"10.43.0.0/16\"\n\
         token = \"k3s-token\"\n[admins.a]\nkey = \"age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6\"\n\
         [secrets.k3s-token]\nkind = \"k3s-token\"\n",
    );
    for i in 0..hosts {
        let role = match i {
            0 => "\"k3s-server\"",
            1 | 2 => "\"k3s-agent\"",
            _ => "",
        };
        s.push_str(&format!("[hosts.h{i}]\naddress = \"172.16.{}.{}\"\nroles = [{role}]\n", 1 + i / 250, 1 + i % 250));
    }
    s
}

/// (c) A render killed (SIGKILL) after it began its staging tree and before the swap leaves
/// the old tree exactly as it was: same content, same inodes; the next render removes the
/// staging it left and writes the new tree. The two inventories differ in every host, so each
/// render builds and swaps a whole tree of 800 files.
#[test]
fn a_render_killed_mid_way_leaves_the_old_tree_intact() {
    const HOSTS: usize = 400;
    let inventories = [big_inventory(HOSTS, "172.16.0.0/24"), big_inventory(HOSTS, "172.16.0.0/25")];
    let expected: Vec<_> = inventories
        .iter()
        .map(|inv| {
            let p = project_with(inv);
            assert!(run_iac(p.path(), &["render"]).status.success());
            snapshot_dir(&p.path().join("generated"))
        })
        .collect();
    let dir = project_with(&inventories[0]);
    let out = dir.path().join("generated");
    assert!(run_iac(dir.path(), &["render"]).status.success());
    let mut interrupted = 0;
    for attempt in 1..=12 {
        let (old, new) = (&expected[(attempt + 1) % 2], &expected[attempt % 2]);
        std::fs::write(dir.path().join("hosts/inventory.toml"), &inventories[attempt % 2]).unwrap();
        assert_eq!(snapshot_dir(&out), *old);
        let old_inodes = inodes(&out);
        let mut child = iac().current_dir(dir.path()).arg("render").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Kill as soon as a staging directory with content appears.
        let start = Instant::now();
        loop {
            let staged = staging_dirs(dir.path()).iter().any(|s| std::fs::read_dir(s).is_ok_and(|mut e| e.next().is_some()));
            if staged || child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "render neither staged nor finished");
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let now = snapshot_dir(&out);
        if now == *old {
            assert_eq!(inodes(&out), old_inodes, "attempt {attempt}: the old tree's files are the very same files");
            assert!(!staging_dirs(dir.path()).is_empty(), "attempt {attempt}: killed while staging");
            interrupted += 1;
        } else {
            // Killed after the swap (or it had finished): the new tree is complete.
            assert_eq!(now, *new, "attempt {attempt}: the tree is exactly the old or the new one");
        }
        // Whatever happened, the next render cleans up and writes the inventory's tree.
        let next = run_iac(dir.path(), &["render"]);
        assert!(next.status.success(), "{}", text(&next.stderr));
        assert!(staging_dirs(dir.path()).is_empty(), "stale staging removed");
        assert_eq!(snapshot_dir(&out), *new, "attempt {attempt}");
        if interrupted >= 3 {
            break;
        }
    }
    eprintln!("{interrupted} render(s) killed before their swap");
    assert!(interrupted >= 1, "no attempt was killed before its swap: the test did not test anything");
}

/// Renders of three different trees racing on one directory all succeed, and the directory
/// ends up exactly one of them, with nothing left beside it. Two of the trees differ in one
/// directory only (a one-directory swap), the third in many (a whole-tree swap): a swap of one
/// directory computed against a tree that another render has just replaced would leave a mix.
#[test]
fn concurrent_renders_leave_exactly_one_tree() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generated");
    let a = render_bundled();
    let mut b = a.clone();
    // Every third file but the marker (which must stay exactly iac's) changes.
    for (_, text) in b.iter_mut().filter(|(rel, _)| *rel != Path::new(iac::render::MARKER)).step_by(3) {
        text.push('\n');
    }
    let mut c = a.clone();
    c.get_mut(Path::new("hamal/nftables.nft")).unwrap().push('\n');
    let trees = [&a, &b, &c];
    iac::output::write_tree(&out, &a, false).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let out = &out;
            s.spawn(move || {
                for i in 0..15 {
                    iac::output::write_tree(out, trees[(t + i) % 3], false).expect("a concurrent render succeeds");
                }
            });
        }
    });
    let on_disk = iac::output::read_tree(&out).unwrap();
    assert!(trees.iter().any(|t| on_disk == **t), "the directory is exactly one of the trees");
    assert!(staging_dirs(dir.path()).is_empty(), "nothing left beside it");
}

/// A render keeps no file of the tree open: 800 files render under a limit of 64 open
/// descriptors (a first version held every new file open for its fsync and failed at 10,000
/// hosts with "Too many open files").
#[test]
fn a_render_of_many_files_holds_few_descriptors() {
    let dir = project_with(&big_inventory(400, "172.16.0.0/24"));
    let iac_bin = env!("CARGO_BIN_EXE_iac");
    for inventory in [big_inventory(400, "172.16.0.0/24"), big_inventory(400, "172.16.0.0/25")] {
        std::fs::write(dir.path().join("hosts/inventory.toml"), inventory).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", "ulimit -n 64 && exec \"$0\" render", iac_bin])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(run_iac(dir.path(), &["render", "--check"]).status.success());
    }
}
