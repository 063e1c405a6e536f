//! The rendered tree: snapshots of every file, `render --check`, and the atomic-write guarantee.

use std::path::Path;

use crate::support::{bundled_inventory, bundled_inventory_path, project_with, repo, run_iac, snapshot_dir, text};

fn render_bundled() -> iac::render::Tree {
    let site = iac::load_site(&bundled_inventory_path()).expect("bundled inventory is valid");
    iac::render::render(&site).expect("renders")
}

/// Review these like code: every change to a generated file shows up here as a diff.
/// (The Kubernetes manifests have their own snapshots in tests/it/k8s_snapshots.rs.)
#[test]
fn snapshots_of_every_rendered_host_file() {
    let tree = render_bundled();
    for (path, content) in tree.iter().filter(|(p, _)| !p.starts_with("k8s")) {
        let name = path.display().to_string().replace(['/', '.'], "_");
        insta::assert_snapshot!(name, content);
    }
}

/// A host with a host key gets the decryption unit and its script (docs/secrets.md): the files
/// that change, as snapshots. The key is a real ed25519 public key (ssh-keygen), fixed here.
#[test]
fn snapshots_of_a_host_that_decrypts_its_secrets() {
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAxYi4/ixzarFJurKXmlxDN3S1UraGjud6fToV9NVB9A";
    let text = crate::support::replace_once(
        &bundled_inventory(),
        "roles = [\"k3s-agent\"]",
        &format!("roles = [\"k3s-agent\"]\nhost_key = \"{key}\""),
    );
    let source = iac::inventory::Source::new("inventory.toml", text.as_str());
    let site = iac::model::validate(&source, iac::inventory::parse(&source).unwrap()).unwrap();
    let tree = iac::render::render(&site).unwrap();
    for file in ["hamal/secrets.nix", "hamal/default.nix"] {
        let name = format!("host_key_{}", file.replace(['/', '.'], "_"));
        insta::assert_snapshot!(name, tree[Path::new(file)]);
    }
    assert_eq!(tree[Path::new("hamal/iac-secrets.sh")], iac::render::secrets::SCRIPT);
    assert!(!tree.contains_key(Path::new("alphard/secrets.nix")), "a host without a host key gets its secrets pushed");
}

#[test]
fn committed_tree_is_up_to_date() {
    let out = run_iac(&repo(), &["render", "--check"]);
    assert!(out.status.success(), "generated/ is stale:\n{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn check_reports_drift_with_a_diff_and_exit_1() {
    let dir = project_with(&bundled_inventory());
    assert!(run_iac(dir.path(), &["render"]).status.success());
    let nft = dir.path().join("generated/hamal/nftables.nft");
    let edited = std::fs::read_to_string(&nft).unwrap().replace("policy drop", "policy accept");
    std::fs::write(&nft, edited).unwrap();
    std::fs::write(dir.path().join("generated/stray.txt"), "x\n").unwrap();

    let out = run_iac(dir.path(), &["render", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let diff = text(&out.stdout);
    assert!(diff.contains("--- generated/hamal/nftables.nft"), "{diff}");
    assert!(diff.contains("-\t\ttype filter hook input priority filter; policy accept;"), "{diff}");
    assert!(diff.contains("+\t\ttype filter hook input priority filter; policy drop;"), "{diff}");
    assert!(diff.contains("+++ /dev/null"), "extra files are reported: {diff}");
}

#[test]
fn check_on_a_missing_tree_fails() {
    let dir = project_with(&bundled_inventory());
    let out = run_iac(dir.path(), &["render", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("generated").exists(), "--check never writes");
}

#[test]
fn render_replaces_the_whole_tree() {
    let grown = bundled_inventory() + "\n[hosts.mizar]\naddress = \"172.22.0.140\"\nroles = []\n";
    let dir = project_with(&grown);
    assert!(run_iac(dir.path(), &["render"]).status.success());
    assert!(dir.path().join("generated/mizar/default.nix").exists());
    // mizar leaves the inventory: its files, listed in the marker of the older render, go.
    std::fs::write(dir.path().join("hosts/inventory.toml"), bundled_inventory()).unwrap();
    let out = run_iac(dir.path(), &["render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.path().join("generated/mizar").exists(), "files from an older render are removed");
    assert!(run_iac(dir.path(), &["render", "--check"]).status.success());
    assert_no_staging(dir.path());
}

#[test]
fn render_refuses_to_replace_a_foreign_directory() {
    let dir = project_with(&bundled_inventory());
    let out_dir = dir.path().join("precious");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("thesis.tex"), "years of work").unwrap();
    let out = run_iac(dir.path(), &["render", "--out", "precious"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("iac did not write it"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(out_dir.join("thesis.tex")).unwrap(), "years of work");
}

/// A tree written by an iac from before the marker listed its files: refused with a reason
/// that says so (not "iac did not write it"), replaced with --force once, and from then on
/// rendered without it.
#[test]
fn a_tree_of_an_earlier_iac_needs_force_once() {
    let dir = project_with(&bundled_inventory());
    let out_dir = dir.path().join("generated");
    std::fs::create_dir_all(out_dir.join("alphard")).unwrap();
    std::fs::write(
        out_dir.join("README.md"),
        "# generated/ — written by `iac render` for site `loe-homelab`\n\nEvery file here is derived from `hosts/inventory.toml`. Do not edit: change the inventory\n",
    )
    .unwrap();
    std::fs::write(out_dir.join("alphard/nftables.nft"), "table inet iac {}\n").unwrap();
    let out = run_iac(dir.path(), &["render"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("an earlier iac's marker") && err.contains("pass --force"), "{err}");
    assert_eq!(std::fs::read_to_string(out_dir.join("alphard/nftables.nft")).unwrap(), "table inet iac {}\n");
    assert!(run_iac(dir.path(), &["render", "--force"]).status.success());
    let again = run_iac(dir.path(), &["render"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(run_iac(dir.path(), &["render", "--check"]).status.success());
}

/// A write that fails half-way (here: a file where a directory must go) leaves the previous
/// tree exactly as it was and no staging directory behind.
#[test]
fn failed_write_leaves_previous_tree_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generated");
    let tree = render_bundled();
    iac::output::write_tree(&out, &tree, false).unwrap();
    let before = snapshot_dir(&out);

    let mut broken = tree.clone();
    broken.insert("alphard".into(), "a file where a directory must be".into());
    assert!(iac::output::write_tree(&out, &broken, false).is_err());
    assert_eq!(before, snapshot_dir(&out));
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("generated")], "staging directory left behind");
}

#[test]
fn every_host_gets_its_files() {
    let tree = render_bundled();
    for host in ["alphard", "hamal", "alkaid"] {
        for file in ["nftables.nft", "default.nix"] {
            assert!(tree.contains_key(Path::new(host).join(file).as_path()), "{host}/{file}");
        }
    }
    assert!(tree.contains_key(Path::new("alkaid/postgresql.nix")));
    assert!(!tree.contains_key(Path::new("alphard/postgresql.nix")));
}

/// Adding a host, a second server and another database takes only inventory edits.
#[test]
fn inventory_growth_needs_no_code() {
    let grown = bundled_inventory()
        + r#"
[hosts.mizar]
address = "172.22.0.136"
roles = ["k3s-server"]

[hosts.polaris]
address = "172.22.0.140"
roles = ["postgresql"]
ssh_port = 2222

[databases.metrics]
host = "polaris"
owner = "grafana"
password = "metrics-db"
clients = ["cluster"]

[secrets.metrics-db]
kind = "password"
"#;
    let dir = project_with(&grown);
    let out = run_iac(dir.path(), &["render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g = dir.path().join("generated");
    let alphard = std::fs::read_to_string(g.join("alphard/nftables.nft")).unwrap();
    assert!(alphard.contains("elements = { 172.22.0.134, 172.22.0.136 }"), "two servers in k3s_servers:\n{alphard}");
    assert!(alphard.contains("ip saddr @k3s_servers tcp dport 2379-2380 accept"), "etcd between servers:\n{alphard}");
    let alphard_nix = std::fs::read_to_string(g.join("alphard/default.nix")).unwrap();
    assert!(alphard_nix.contains("clusterInit = true;"), "{alphard_nix}");
    let mizar_nix = std::fs::read_to_string(g.join("mizar/default.nix")).unwrap();
    assert!(mizar_nix.contains(r#"serverAddr = "https://172.22.0.134:6443";"#), "{mizar_nix}");
    let polaris = std::fs::read_to_string(g.join("polaris/nftables.nft")).unwrap();
    assert!(polaris.contains("ip saddr @admin tcp dport 2222 accept"), "{polaris}");
    let pg = std::fs::read_to_string(g.join("polaris/postgresql.nix")).unwrap();
    // The node addresses .134 and .135 aggregate into one /31, as in the firewall set.
    assert!(pg.contains("host metrics grafana 172.22.0.134/31 scram-sha-256"), "{pg}");
    assert!(pg.contains("host metrics grafana 172.22.0.136/32 scram-sha-256"), "{pg}");
    assert!(pg.contains(r#"ALTER DATABASE "metrics" OWNER TO "grafana";"#), "owner differs from db name:\n{pg}");
    let hamal = std::fs::read_to_string(g.join("hamal/nftables.nft")).unwrap();
    assert!(hamal.contains("elements = { 172.22.0.133, 172.22.0.140 }"), "pods may reach the new database server:\n{hamal}");
}

/// No secret value is ever rendered: the inventory only names where the password lives.
#[test]
fn no_secret_in_the_rendered_tree() {
    let dir = project_with(&bundled_inventory());
    let secret = "s3cr3t-kafka-password-4f1d";
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, secret).unwrap();
    let inv = bundled_inventory().replace("/var/lib/secrets/postgresql-kafka", &secret_file.display().to_string());
    std::fs::write(dir.path().join("hosts/inventory.toml"), inv).unwrap();
    assert!(run_iac(dir.path(), &["render"]).status.success());
    for (path, bytes) in snapshot_dir(&dir.path().join("generated")) {
        assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{} holds the secret", path.display());
    }
}

/// Issue 13, defect 2: `--out` replaced any directory that had a README.md (the marker was
/// checked for existence, not content), `.git` and `src/` included.
#[test]
fn render_refuses_a_project_that_merely_has_a_readme() {
    let dir = project_with(&bundled_inventory());
    let project = dir.path().join("some-project");
    for (rel, text) in [("README.md", "# my project\n"), ("src/main.rs", "fn main() {}\n"), ("notes.txt", "keep me\n")] {
        std::fs::create_dir_all(project.join(rel).parent().unwrap()).unwrap();
        std::fs::write(project.join(rel), text).unwrap();
    }
    let before = snapshot_dir(&project);
    let out = run_iac(dir.path(), &["render", "--out", "some-project"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("has no README.md written by iac"), "{}", text(&out.stderr));
    assert_eq!(before, snapshot_dir(&project));

    // A repository is never replaced, not even with --force.
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::write(project.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let before = snapshot_dir(&project);
    let out = run_iac(dir.path(), &["render", "--out", "some-project", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("holds .git"), "{}", text(&out.stderr));
    assert_eq!(before, snapshot_dir(&project));
    assert_no_staging(dir.path());
}

/// A tree iac wrote, with one file added by someone else: refused, unless --force.
#[test]
fn render_refuses_a_tree_with_files_iac_did_not_write_unless_forced() {
    let dir = project_with(&bundled_inventory());
    assert!(run_iac(dir.path(), &["render"]).status.success());
    std::fs::write(dir.path().join("generated/alphard/extra.nix"), "{ }\n").unwrap();
    let out = run_iac(dir.path(), &["render"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("holds alphard/extra.nix that iac did not write") && stderr.contains("--force"), "{stderr}");
    assert!(dir.path().join("generated/alphard/extra.nix").exists());
    let out = run_iac(dir.path(), &["render", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.path().join("generated/alphard/extra.nix").exists());
    assert!(run_iac(dir.path(), &["render", "--check"]).status.success());
    // A marker whose text someone changed is not iac's any more.
    let readme = dir.path().join("generated/README.md");
    let edited = std::fs::read_to_string(&readme).unwrap().replace("Do not edit", "Edit freely");
    std::fs::write(&readme, edited).unwrap();
    assert_eq!(run_iac(dir.path(), &["render"]).status.code(), Some(1));
}

/// A render into a dangling symbolic link left a complete `.NAME.iac-*` tree behind.
#[test]
fn render_into_a_dangling_symlink_fails_and_leaves_nothing() {
    let dir = project_with(&bundled_inventory());
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("link")).unwrap();
    let out = run_iac(dir.path(), &["render", "--out", "link"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("symbolic link"), "{}", text(&out.stderr));
    assert!(!dir.path().join("nowhere").exists());
    assert_no_staging(dir.path());
}

/// A render killed between staging and swap leaves `.generated.iac-*`; the next render removes
/// it, but never the staging directory of a render still running (it holds a lock).
#[test]
fn the_next_render_removes_staging_left_by_a_killed_one() {
    let dir = project_with(&bundled_inventory());
    let stale = dir.path().join(".generated.iac-killed");
    std::fs::create_dir_all(stale.join("alphard")).unwrap();
    std::fs::write(stale.join("alphard/default.nix"), "{ }\n").unwrap();
    let live = dir.path().join(".generated.iac-live");
    std::fs::create_dir(&live).unwrap();
    let held = std::fs::File::open(&live).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let out = run_iac(dir.path(), &["render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("removed 1 staging directories"), "{}", text(&out.stderr));
    assert!(!stale.exists(), "stale staging directory removed");
    assert!(live.exists(), "a locked (live) staging directory is left alone");
}

/// When the directory already holds exactly the rendered tree, nothing is written and the
/// command says so.
#[test]
fn an_unchanged_render_writes_nothing() {
    let dir = project_with(&bundled_inventory());
    assert!(run_iac(dir.path(), &["render"]).status.success());
    let probe = dir.path().join("generated/hamal/nftables.nft");
    let before = std::fs::metadata(&probe).unwrap().modified().unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.path().join("generated")).unwrap());
    let out = run_iac(dir.path(), &["render"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("generated is up to date (16 files), nothing written"), "{}", text(&out.stdout));
    assert_eq!(before, std::fs::metadata(&probe).unwrap().modified().unwrap());
    assert_eq!(ino, std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.path().join("generated")).unwrap()), "not swapped");
}

fn assert_no_staging(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".iac-"))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "staging directories left behind: {leftovers:?}");
}

/// `iac flows --host NOSUCH` printed an empty table and exited 0.
#[test]
fn flows_for_an_unknown_host_exits_2_naming_the_hosts() {
    let out = run_iac(&repo(), &["flows", "--host", "NOSUCH"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown host `NOSUCH` (the inventory has: alkaid, alphard, hamal)"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty());
    let out = run_iac(&repo(), &["flows", "--host", "hamal"]);
    assert!(out.status.success() && text(&out.stdout).contains("hamal"));
}
