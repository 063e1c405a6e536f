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

/// The table NixOS loads is, after Nix strips the indentation, the same table as the standalone
/// script (modulo tabs → spaces): one source, two carriers.
#[test]
fn module_carries_the_same_table_as_the_standalone_script() {
    let site = iac::load_site(&repo().join("hosts/inventory.toml")).unwrap();
    let flows = iac::render::flows(&site);
    for host in &site.hosts {
        let Some(content) = eval(&format!("(module ./generated/{}/default.nix).networking.nftables.tables.iac.content", host.name)) else {
            return;
        };
        let body = iac::render::nft::table_body(&flows, host).unwrap();
        let normalise = |s: &str| s.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect::<Vec<_>>();
        assert_eq!(normalise(&content), normalise(&body), "{}", host.name);
        assert!(content.starts_with("set admin {\n"), "indentation stripped: {content:?}");
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
