//! Every escaper of `iac::escape` against the real consumer of its output: for
//! arbitrary strings rich in the characters each language treats specially (`''`, `'${`, `${`,
//! `\`, `"`, `$`, line breaks, NUL, non-ASCII), either what the target reads back equals the
//! input, or the escaper refuses the value. Each property batches its cases into one run of
//! the real tool (one `nix-instantiate --eval` of a list, one `nft -f` of a table), so it
//! stays fast.

use std::process::Command;

use iac::escape::{nft, nix, unit};
use proptest::prelude::*;

use crate::support::{self, text};

/// Strings made of the pieces that break naive escaping, plus arbitrary characters.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => prop::sample::select(vec![
            "''", "'''", "'${", "${", "$${", "''${", "''\\", "'", "$", "\\", "\"", "\n", "\r", "\r\n", "\0", " ", "  ", "\t", "}",
            "{", "#", ";", "é", "日本", "\u{202e}", "\u{2028}", "🦀", "x'", "'x",
        ])
        .prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
        2 => "[a-z ]{1,6}",
    ];
    prop::collection::vec(piece, 0..14).prop_map(|v| v.concat())
}

/// Evaluate `expr` (a list of strings) with the real Nix evaluator.
fn nix_strings(expr: &str) -> Vec<String> {
    let nix = support::tool("nix-instantiate").expect("nix-instantiate");
    let out =
        Command::new(nix).args(["--eval", "--strict", "--json", "--store", "dummy://", "-E", expr]).output().expect("nix-instantiate runs");
    assert!(out.status.success(), "{}\n{expr}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON list of strings")
}

fn have_nix() -> bool {
    support::tool("nix-instantiate").is_some()
}

/// Run `script` (sh) in a private network namespace with nft on PATH; its stdout.
fn in_netns(script: &str, args: &[&std::path::Path]) -> std::process::Output {
    Command::new("unshare").args(["-rn", "sh", "-c", script, "sh"]).args(args).output().expect("unshare runs")
}

fn have_nft() -> bool {
    support::tool("nft").is_some() && support::tool("unshare").is_some()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// `"…"`: Nix reads back the input; only NUL is refused.
    #[test]
    fn nix_double_quoted_reads_back(values in prop::collection::vec(hostile(), 150)) {
        if !have_nix() { return Ok(()) }
        let mut expr = String::from("[\n");
        let mut kept = Vec::new();
        for v in &values {
            match nix::string(v) {
                Ok(lit) => { expr.push_str(&lit); expr.push('\n'); kept.push(v.clone()); }
                Err(_) => prop_assert!(v.contains('\0'), "refused {v:?}"),
            }
        }
        expr.push(']');
        prop_assert_eq!(nix_strings(&expr), kept);
    }

    /// `'' … ''` at any indentation: Nix (lexer escapes and indentation stripping) reads back
    /// the input; only NUL is refused.
    #[test]
    fn nix_indented_reads_back(values in prop::collection::vec((hostile(), 0usize..10), 150)) {
        if !have_nix() { return Ok(()) }
        let mut expr = String::from("[\n");
        let mut kept = Vec::new();
        for (v, indent) in &values {
            match nix::indented(v, *indent) {
                Ok(lit) => { expr.push_str(&lit); expr.push('\n'); kept.push(v.clone()); }
                Err(_) => prop_assert!(v.contains('\0'), "refused {v:?}"),
            }
        }
        expr.push(']');
        prop_assert_eq!(nix_strings(&expr), kept);
    }

    /// `comment "…"`: nft stores and lists exactly the input, or the escaper refused it.
    #[test]
    fn nft_comment_reads_back(values in prop::collection::vec(hostile(), 100)) {
        if !have_nft() { return Ok(()) }
        let mut file = String::from("table inet t {\n\tchain c {\n");
        let mut kept = Vec::new();
        for v in &values {
            match nft::comment(v) {
                Ok(q) => { file.push_str(&format!("\t\tcounter comment {q}\n")); kept.push(v.clone()); }
                Err(_) => prop_assert!(v.contains('"') || v.chars().any(char::is_control) || v.len() > nft::COMMENT_MAX, "refused {v:?}"),
            }
        }
        file.push_str("\t}\n}\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.nft");
        std::fs::write(&path, &file).unwrap();
        let out = in_netns("nft -f \"$1\" && nft -j list table inet t", &[&path]);
        prop_assert!(out.status.success(), "{}\n{file}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed: Vec<String> = json["nftables"].as_array().unwrap().iter()
            .filter_map(|o| o.get("rule"))
            .map(|r| r.get("comment").and_then(|c| c.as_str()).unwrap_or("").to_string())
            .collect();
        prop_assert_eq!(listed, kept);
    }

    /// `# …` lines: whatever they hold, nft loads the same ruleset as without them.
    #[test]
    fn nft_comment_lines_are_inert(values in prop::collection::vec(hostile(), 100)) {
        if !have_nft() { return Ok(()) }
        let rules = ["counter accept", "ip saddr 10.0.0.0/8 drop", "tcp dport 22 accept"];
        let mut with = String::from("table inet t {\n\tchain c {\n");
        let mut without = with.clone();
        for (i, v) in values.iter().enumerate() {
            match nft::comment_line(v) {
                Ok(line) => with.push_str(&format!("\t\t{line}\n")),
                Err(_) => prop_assert!(v.contains(['\n', '\r', '\0']), "refused {v:?}"),
            }
            let rule = format!("\t\t{}\n", rules[i % rules.len()]);
            with.push_str(&rule);
            without.push_str(&rule);
        }
        for f in [&mut with, &mut without] { f.push_str("\t}\n}\n"); }
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("with.nft"), dir.path().join("without.nft"));
        std::fs::write(&a, &with).unwrap();
        std::fs::write(&b, &without).unwrap();
        // Each file in a fresh namespace, so the handles nft assigns are comparable.
        let list = |f: &std::path::Path| in_netns("nft -f \"$1\" && nft -j list ruleset", &[f]);
        let (first, second) = (list(&a), list(&b));
        prop_assert!(first.status.success(), "{}\n{with}", text(&first.stderr));
        prop_assert!(second.status.success(), "{}", text(&second.stderr));
        let (first, second) = (text(&first.stdout), text(&second.stdout));
        prop_assert_eq!(first.trim(), second.trim(), "a comment line changed the ruleset:\n{}", with);
    }

    /// Unit-bound words and paths: refused unless systemd passes every character through, and
    /// an accepted value is one word, itself, when a unit line is split like a shell would.
    #[test]
    fn unit_values_are_one_plain_word(values in prop::collection::vec(hostile(), 200)) {
        for v in &values {
            for accepted in [unit::word(v).ok(), unit::path(v).ok()].into_iter().flatten() {
                prop_assert!(accepted.chars().all(|c| c.is_ascii_alphanumeric() || "._/+@:,=-".contains(c)), "{accepted:?}");
                let line = format!("/bin/k3s server --token-file {accepted} --disable={accepted}");
                let words = shlex::split(&line).unwrap();
                prop_assert_eq!(&words[3], accepted);
                prop_assert_eq!(words[4].strip_prefix("--disable="), Some(accepted));
            }
        }
    }
}

/// The property tests above only pass if the tools ran: a sanity check that they are there
/// when `IAC_REQUIRE_TOOLS` is set (support::tool panics otherwise) and that a known-bad
/// literal is caught by them.
#[test]
fn the_real_evaluator_catches_the_old_escaping() {
    if !have_nix() {
        return;
    }
    // The escaping of issue 13: `'${` became `'''${`, which Nix reads as `''` and a live
    // interpolation.
    let old = "''\n  x'''${\"INJECTED\"}\n''";
    assert_eq!(nix_strings(&format!("[ {old} ]")), vec!["x''INJECTED\n".to_string()]);
    let new = nix::indented("x'${\"INJECTED\"}\n", 2).unwrap();
    assert_eq!(nix_strings(&format!("[ {new} ]")), vec!["x'${\"INJECTED\"}\n".to_string()]);
}
