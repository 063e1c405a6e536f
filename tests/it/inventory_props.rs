//! Property tests for the inventory parser and validator: arbitrary or mangled input never
//! panics and every error points inside the file; generated valid estates always render.

use iac::inventory::{Source, parse};
use proptest::prelude::*;

use crate::support;

fn check(text: &str) -> Result<(), iac::inventory::InventoryErrors> {
    let source = Source::new("inv.toml", text);
    let file = parse(&source)?;
    let site = iac::model::validate(&source, file)?;
    iac::render::render(&site).expect("a valid site always renders");
    Ok(())
}

fn assert_located(text: &str, errors: &iac::inventory::InventoryErrors) {
    let lines = text.lines().count().max(1) + 1;
    assert!(!errors.0.is_empty());
    for e in &errors.0 {
        assert_eq!(e.file.to_str(), Some("inv.toml"));
        assert!(e.line >= 1 && e.line <= lines, "line {} outside 1..={lines}: {e}", e.line);
        assert!(!e.key.is_empty() && !e.message.is_empty(), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        if let Err(e) = check(&text) {
            assert_located(&text, &e);
        }
    }

    /// Delete one line of the bundled inventory, or overwrite one byte with a TOML-ish char.
    #[test]
    fn mangled_inventory_errors_are_located(line in 0usize..80, pos in 0usize..3000, c in prop::sample::select(vec!['"', '=', '[', ']', '9', '.', '/', 'x', ' ', '\n'])) {
        let good = support::bundled_inventory();
        let without_line: String = good.lines().enumerate().filter(|(i, _)| *i != line % good.lines().count()).map(|(_, l)| format!("{l}\n")).collect();
        let mut chars: Vec<char> = good.chars().collect();
        let at = pos % chars.len();
        chars[at] = c;
        let overwritten: String = chars.into_iter().collect();
        for text in [without_line, overwritten] {
            if let Err(e) = check(&text) {
                assert_located(&text, &e);
            }
        }
    }

    /// Any number of hosts with any mix of roles in the LAN validates and renders, and each
    /// host's SSH rule is present.
    #[test]
    fn generated_estates_render(roles in prop::collection::vec(0u8..4, 1..40), admin_prefix in 8u8..=30) {
        let mut inv = format!(
            "[site]\nname = \"prop\"\n[networks.lan]\ncidr = \"10.0.0.0/16\"\n[access]\nadmin = [\"10.0.0.0/{admin_prefix}\"]\n\
             [dns]\nupstream = [\"10.0.255.53\"]\n[cluster]\npod_cidr = \"10.42.0.0/16\"\nservice_cidr = \"10.43.0.0/16\"\ntoken_file = \"/t\"\n"
        );
        for (i, r) in roles.iter().enumerate() {
            let role = match (i, r) { (0, _) | (_, 0) => "k3s-server", (_, 1) => "k3s-agent", (_, 2) => "postgresql", _ => "k3s-agent" };
            inv.push_str(&format!("[hosts.h{i}]\naddress = \"10.0.{}.{}\"\nroles = [\"{role}\"]\n", i / 200, 1 + i % 200));
        }
        let source = Source::new("inv.toml", inv.as_str());
        let site = iac::model::validate(&source, parse(&source).unwrap()).unwrap();
        let tree = iac::render::render(&site).unwrap();
        for h in &site.hosts {
            let nft = &tree[std::path::Path::new(&h.name).join("nftables.nft").as_path()];
            prop_assert!(nft.contains("ip saddr @admin tcp dport 22 accept"));
        }
    }
}
