//! Every Nix file we generate or ship parses with real Nix parsers (rnix in-process and, where
//! installed, `nix-instantiate --parse`), and the generated modules evaluate to exactly the
//! text they are meant to carry.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{nix_eval as eval, repo, text};

fn nix_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("flake.nix")];
    for dir in ["generated", "hosts"] {
        collect(&repo().join(dir), &mut files);
    }
    files
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "nix") {
            out.push(p);
        }
    }
}

#[test]
fn every_nix_file_parses_with_rnix() {
    let files = nix_files();
    assert!(files.len() >= 9, "{files:?}");
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let parsed = rnix::Root::parse(&src);
        assert!(parsed.errors().is_empty(), "{}: {:?}", f.display(), parsed.errors());
    }
}

#[test]
fn every_nix_file_parses_with_nix_instantiate() {
    let Some(nix) = support::tool("nix-instantiate") else { return };
    for f in nix_files() {
        let out = Command::new(&nix).arg("--parse").arg(&f).output().unwrap();
        assert!(out.status.success(), "{}: {}", f.display(), text(&out.stderr));
    }
}

/// The text NixOS loads is the text we proved: Nix evaluates every committed host module,
/// wraps its table as nixpkgs' nftables module does, and must get exactly the table part of
/// the standalone `nftables.nft` that `nft -c`, simulate and the tests check. The library
/// function is the one `iac simulate` and the deploy preflight use.
#[test]
fn nixos_loads_exactly_the_committed_standalone_table() {
    let Some(nix) = support::tool("nix-instantiate") else { return };
    let site = iac::load_site(&repo().join("hosts/inventory.toml")).unwrap();
    let hosts: Vec<&str> = site.hosts.iter().map(|h| h.name.as_str()).collect();
    let n = iac::nix_eval::check_tables(&nix, &repo().join("generated"), &hosts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 3);
    // The comparison is not vacuous: the evaluated text is a whole table with its rules.
    let loaded = iac::nix_eval::loaded_tables(&nix, &repo().join("generated"), &["hamal"]).unwrap();
    assert!(loaded["hamal"].starts_with("table inet iac {\n  # iac table of hamal"), "{:?}", loaded["hamal"]);
    assert!(loaded["hamal"].contains("\t\tip saddr @admin tcp dport 22 accept comment \"ssh\"\n"));
}

/// Issue 13, defect 1: a `why` crafted to close the Nix escaping (`'${…}`) made NixOS load a
/// bare `accept` that no check saw. Rendered now, the module evaluates to exactly the checked
/// table, the payload stays inside one comment line, and no rule line was added.
#[test]
fn a_hostile_why_cannot_change_what_nixos_loads() {
    let Some(nix) = support::tool("nix-instantiate") else { return };
    let payloads = [
        "admin web UI '${builtins.substring 38 1 (builtins.toXML 1)}accept",
        "say \"${builtins.readFile /etc/hostname}",
        r#"x '''${x} ''\n ''$ $${y} '' \ " done'"#,
    ];
    for why in payloads {
        let allow = format!(
            "roles = [\"k3s-agent\"]\nfirewall.allow = [{{ from = [\"admin\"], proto = \"tcp\", ports = [8080], why = {} }}]",
            serde_json::to_string(why).unwrap()
        );
        let inv = support::replace_once(&support::bundled_inventory(), "roles = [\"k3s-agent\"]", &allow);
        let dir = support::project_with(&inv);
        let out = support::run_iac(dir.path(), &["render"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let generated = dir.path().join("generated");
        iac::nix_eval::check_tables(&nix, &generated, &["hamal"]).unwrap_or_else(|e| panic!("{why}: {e}"));
        let loaded = iac::nix_eval::loaded_tables(&nix, &generated, &["hamal"]).unwrap();
        let hamal = &loaded["hamal"];
        assert!(hamal.contains(&format!("\t\t# {why}\n")), "{why}: {hamal}");
        let bare: Vec<&str> = hamal.lines().filter(|l| l.trim_start().starts_with("accept")).collect();
        assert!(bare.is_empty(), "{why}: {bare:?}");
        let out = Command::new(&nix).arg("--parse").arg(generated.join("hamal/default.nix")).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

#[test]
fn module_settings_evaluate() {
    let Some(flush) = eval("builtins.toJSON (module ./generated/alphard/default.nix).networking.nftables.flushRuleset") else {
        return;
    };
    assert_eq!(flush, "false");
    let fw = eval("builtins.toJSON (module ./generated/hamal/default.nix).networking.firewall.enable").unwrap();
    assert_eq!(fw, "false");
    let flags = eval("builtins.toJSON (module ./generated/hamal/default.nix).services.k3s.extraFlags").unwrap();
    assert!(flags.contains("--resolv-conf=/etc/k3s/resolv.conf"), "{flags}");
    let resolv = eval(r#"(module ./generated/hamal/default.nix).environment.etc."k3s/resolv.conf".text"#).unwrap();
    assert_eq!(resolv, "nameserver 172.22.100.104\n");
}

/// The PostgreSQL setup script, as the unit would run it: the heredoc terminator must land in
/// column 0 once Nix strips the indentation, or psql would swallow the rest of the script.
#[test]
fn postgres_setup_script_is_well_formed() {
    let Some(script) = eval("(module ./generated/alkaid/postgresql.nix).systemd.services.postgresql-setup.script") else {
        return;
    };
    let lines: Vec<&str> = script.lines().collect();
    assert!(lines.contains(&"psql -d postgres -v ON_ERROR_STOP=1 <<'SQL'"), "{script}");
    assert!(lines.contains(&"SQL"), "{script}");
    assert!(lines.contains(&r#"\set password `cat "$CREDENTIALS_DIRECTORY/kafka-password"`"#), "{script}");
    let hba = eval("(module ./generated/alkaid/postgresql.nix).services.postgresql.authentication").unwrap();
    assert!(hba.lines().any(|l| l == "host kafka kafka 172.22.0.0/24 scram-sha-256"), "{hba}");
}

/// The flake reads the inventory with builtins.fromTOML: Nix's TOML parser must accept it and
/// see the same hosts as iac.
#[test]
fn flake_sees_the_same_hosts() {
    let Some(names) = eval("builtins.toJSON (builtins.attrNames (builtins.fromTOML (builtins.readFile ./hosts/inventory.toml)).hosts)")
    else {
        return;
    };
    let site = iac::load_site(&repo().join("hosts/inventory.toml")).unwrap();
    let ours: Vec<&str> = site.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, serde_json::to_string(&ours).unwrap());
}
