//! Fuzz-style: random estates whose free text is hostile (quotes, `${`, `''`, `'${`, `\`, `$`,
//! `#`, `;`, line breaks, NUL, non-ASCII). Each one either fails validation with errors that
//! point inside the file, or renders to files every real consumer accepts: `nft -c` (in a
//! private network namespace) for every ruleset, `nix-instantiate --parse` for every `.nix`
//! file, serde-saphyr for every YAML document, and the Nix-evaluated table of every host module
//! equals its standalone script byte for byte (`nix_eval`).

use std::process::Command;

use iac::inventory::{Source, parse};
use proptest::prelude::*;

use crate::support::{self, text};

fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            "''", "'''", "'${", "${", "$${", "''${x}", "''\\", "'", "$", "\\", "\"", "#", ";", "}", "{", " accept", "é", "日本",
            "🦀", "x'", "'x", "\\n", "\\\\",
        ])
        .prop_map(String::from),
        1 => prop::sample::select(vec!["\n", "\r", "\0", "\t", "\u{202e}", "\u{7f}"]).prop_map(String::from),
        3 => "[a-z]{1,6}",
        1 => " ".prop_map(String::from),
    ];
    prop::collection::vec(piece, 1..10).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
struct Estate {
    agents: usize,
    databases: bool,
    allows: Vec<(usize, String)>,
    egress_why: Option<String>,
}

fn estate() -> impl Strategy<Value = Estate> {
    (0usize..4, any::<bool>(), prop::collection::vec((0usize..6, hostile_text()), 0..4), prop::option::of(hostile_text()))
        .prop_map(|(agents, databases, allows, egress_why)| Estate { agents, databases, allows, egress_why })
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("json")
}

fn inventory(e: &Estate) -> String {
    let mut inv = String::from(
        "[site]\nname = \"fuzz\"\n[networks.lan]\ncidr = \"10.0.0.0/24\"\n[access]\nadmin = [\"10.0.0.0/28\"]\n[dns]\nupstream = [\"10.0.0.53\"]\n\
         [cluster]\npod_cidr = \"10.42.0.0/16\"\nservice_cidr = \"10.43.0.0/16\"\ntoken_file = \"/var/lib/k3s/token\"\n",
    );
    if let Some(why) = &e.egress_why {
        inv.push_str(&format!("[[cluster.egress]]\nto = [\"192.0.2.0/24\"]\nproto = \"tcp\"\nports = [443]\nwhy = {}\n", toml_string(why)));
    }
    let mut hosts = vec![("server".to_string(), "k3s-server")];
    hosts.extend((0..e.agents).map(|i| (format!("agent{i}"), "k3s-agent")));
    if e.databases {
        hosts.push(("db".to_string(), "postgresql"));
    }
    for (i, (name, role)) in hosts.iter().enumerate() {
        inv.push_str(&format!("[hosts.{name}]\naddress = \"10.0.0.{}\"\nroles = [\"{role}\"]\n", 20 + i));
        let allows: Vec<String> = e
            .allows
            .iter()
            .filter(|(h, _)| h % hosts.len() == i)
            .map(|(_, why)| format!("{{ from = [\"admin\"], proto = \"tcp\", ports = [8080], why = {} }}", toml_string(why)))
            .collect();
        if !allows.is_empty() {
            inv.push_str(&format!("firewall.allow = [{}]\n", allows.join(", ")));
        }
    }
    if e.databases {
        inv.push_str(
            "[databases.kafka]\nhost = \"db\"\nowner = \"kafka\"\npassword_file = \"/var/lib/secrets/pg\"\nclients = [\"cluster\", \"admin\"]\n\
             [pipeline]\ndatabase = \"kafka\"\ntopic = \"t\"\ntable = \"rows\"\n",
        );
    }
    inv
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn hostile_estates_are_refused_or_render_to_files_every_consumer_accepts(e in estate()) {
        let (Some(nft), Some(nix)) = (support::tool("nft"), support::tool("nix-instantiate")) else { return Ok(()) };
        let text_in = inventory(&e);
        let source = Source::new("inv.toml", text_in.as_str());
        let site = match parse(&source).and_then(|f| iac::model::validate(&source, f)) {
            Ok(site) => site,
            Err(errors) => {
                eprintln!("fuzz: refused with {} errors", errors.0.len());
                let lines = text_in.lines().count() + 1;
                for err in &errors.0 {
                    prop_assert!(err.line >= 1 && err.line <= lines && !err.key.is_empty(), "{err}");
                    prop_assert!(!err.to_string().chars().any(|c| c.is_control() && c != '\n'), "control character in {err:?}");
                }
                return Ok(());
            }
        };
        eprintln!("fuzz: rendering {} hosts, {} allow rules", site.hosts.len(), site.hosts.iter().map(|h| h.allow.len()).sum::<usize>());
        let tree = iac::render::render(&site).expect("a valid site renders");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("generated");
        iac::output::write_tree(&out, &tree, false).unwrap();

        let rulesets: Vec<_> = site.hosts.iter().map(|h| out.join(&h.name).join("nftables.nft")).collect();
        let check = Command::new("unshare")
            .args(["-rn", "sh", "-c", "nft=$1; shift; for f; do \"$nft\" -c -f \"$f\" || exit 1; done", "sh"])
            .arg(&nft)
            .args(&rulesets)
            .output()
            .unwrap();
        prop_assert!(check.status.success(), "nft -c: {}\n{text_in}", text(&check.stderr));

        let nix_files: Vec<_> = tree.keys().filter(|p| p.extension().is_some_and(|x| x == "nix")).map(|p| out.join(p)).collect();
        let parsed = Command::new(&nix).arg("--parse").args(&nix_files).output().unwrap();
        prop_assert!(parsed.status.success(), "nix-instantiate --parse: {}\n{text_in}", text(&parsed.stderr));

        for (path, content) in tree.iter().filter(|(p, _)| p.extension().is_some_and(|x| x == "yaml")) {
            let docs: Result<Vec<serde_json::Value>, _> = serde_saphyr::from_multiple(content);
            prop_assert!(docs.is_ok(), "{}: {:?}", path.display(), docs.err());
        }

        let hosts: Vec<&str> = site.hosts.iter().map(|h| h.name.as_str()).collect();
        let compared = iac::nix_eval::check_tables(&nix, &out, &hosts);
        prop_assert!(compared.is_ok(), "{}\n{text_in}", compared.err().map(|e| e.to_string()).unwrap_or_default());

        // Every accepted `why` is in the table NixOS loads as one comment line, nothing more.
        let loaded = iac::nix_eval::loaded_tables(&nix, &out, &hosts).unwrap();
        for h in &site.hosts {
            for a in &h.allow {
                prop_assert!(loaded[&h.name].contains(&format!("\t\t# {}\n", a.why)), "{:?} not a comment line of {}", a.why, h.name);
            }
        }
    }
}
