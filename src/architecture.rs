//! The layout's rules, checked on the source text (docs/ARCHITECTURE.md):
//!
//! - the import graph between top-level modules (`use crate::X`, `crate::X::…`, `super::`
//!   chains that climb to the crate root, and the command layer's `iac::X`) has no cycle;
//! - nothing below the command layer (`src/command`, `src/main.rs`) names clap;
//! - nothing below it prints (`print!`, `println!`, `eprint!`, `eprintln!`): it reports
//!   through `reporter::Reporter`;
//! - a file longer than 400 lines says why in its header comment (`Why this file is long:`).
//!
//! `cargo test --lib architecture -- --nocapture` prints the edges. Comment lines are skipped,
//! so prose that names a module is not an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where the command layer lives (the `iac` binary's modules).
const COMMAND: &str = "command";
/// The longest a file may be without saying why.
const MAX_LINES: usize = 400;
const LONG_FILE_REASON: &str = "Why this file is long:";

/// Every `.rs` file under `src/`, with its module path (`src/a/b/mod.rs` → `[a, b]`).
fn sources() -> Vec<(PathBuf, Vec<String>, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    // This test names modules and macros in its strings; it is no part of the layout.
    files.retain(|f| !f.ends_with("architecture.rs"));
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["main"] {
                parts = vec![COMMAND.to_string()];
            }
            if parts == ["lib"] {
                parts.clear();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            (path, parts, text)
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's lines that are code, not comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// The identifiers that follow `prefix` in `line` (`crate::a::b` → `a`; `crate::{a, b::c}` →
/// `a`, `b`).
fn names_after<'a>(line: &'a str, prefix: &str) -> Vec<&'a str> {
    let ident = |s: &'a str| {
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        &s[..end]
    };
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        let before_ok = rest[..i].chars().next_back().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let after = &rest[i + prefix.len()..];
        if before_ok {
            match after.strip_prefix('{') {
                Some(group) => {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    out.extend(group.split(',').map(|s| ident(s.trim())).filter(|s| !s.is_empty()));
                }
                None => out.push(ident(after)),
            }
        }
        rest = after;
    }
    out
}

/// Whether `word` occurs in `line` with no identifier character on either side.
fn contains_word(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    line.match_indices(word).any(|(i, _)| {
        line[..i].chars().next_back().is_none_or(|c| !is_ident(c)) && line[i + word.len()..].chars().next().is_none_or(|c| !is_ident(c))
    })
}

/// `super::super::x` from a file `depth` modules deep: `x` when the chain climbs to the crate
/// root.
fn root_names_via_super(line: &str, depth: usize) -> Vec<&str> {
    let chain = "super::".repeat(depth);
    names_after(line, &chain).into_iter().filter(|n| *n != "super").collect()
}

/// Top-level module → the top-level modules it uses.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files.iter().filter_map(|(_, p, _)| p.first().cloned()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (_, path, text) in &files {
        let Some(from) = path.first() else { continue };
        for line in code_lines(text) {
            let mut named = if from == COMMAND { names_after(line, "iac::") } else { names_after(line, "crate::") };
            if from != COMMAND {
                named.extend(root_names_via_super(line, path.len()));
            }
            for to in named {
                if to != from
                    && modules.contains(to)
                    && let Some(set) = graph.get_mut(from)
                {
                    set.insert(to.to_string());
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut path = stack[i..].to_vec();
            path.push(node.to_string());
            return Some(path);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_import_graph_has_no_cycle() {
    let graph = edges();
    for (from, to) in &graph {
        println!("{from} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert_eq!(cycle(&graph), None, "a cycle between top-level modules");
    // The command layer sits on top: nothing imports it.
    assert!(graph.iter().all(|(from, to)| from == COMMAND || !to.contains(COMMAND)), "{graph:?}");
    // And it is really seen: it uses the library.
    assert!(graph[COMMAND].contains("deploy") && graph[COMMAND].contains("query"), "{graph:?}");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            graph.entry(a.to_string()).or_default().insert(b.to_string());
            graph.entry(b.to_string()).or_default();
        }
        graph
    };
    assert_eq!(cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    assert_eq!(names_after("use crate::{output, render::Tree};", "crate::"), ["output", "render"]);
    assert_eq!(names_after("x: crate::model::Site, y: iac::query::Format", "crate::"), ["model"]);
    assert_eq!(root_names_via_super("use super::super::policy::Flow;", 2), ["policy"]);
    assert!(contains_word("use clap::Parser;", "clap") && !contains_word("clapping", "clap"));
    assert!(contains_word("    eprintln!(\"x\");", "eprintln!") && !contains_word("eprintln!(", "println!"));
}

#[test]
fn only_the_command_layer_knows_clap_or_prints() {
    let mut clap = Vec::new();
    let mut prints = Vec::new();
    for (path, module, text) in sources() {
        if module.first().is_some_and(|m| m == COMMAND) {
            continue;
        }
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
            if contains_word(line, "clap") {
                clap.push(format!("{}:{}", path.display(), i + 1));
            }
            if ["print!", "println!", "eprint!", "eprintln!"].iter().any(|m| contains_word(line, m)) {
                prints.push(format!("{}:{}", path.display(), i + 1));
            }
        }
    }
    assert!(clap.is_empty(), "clap below the command layer: {clap:?}");
    assert!(prints.is_empty(), "printing below the command layer: {prints:?}");
}

#[test]
fn long_files_say_why() {
    let mut long = Vec::new();
    for (path, _, text) in sources() {
        let lines = text.lines().count();
        if lines > MAX_LINES {
            let header: String = text.lines().take_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
            println!("{lines:5} {}{}", path.display(), if header.contains(LONG_FILE_REASON) { "" } else { "  (no reason)" });
            if !header.contains(LONG_FILE_REASON) {
                long.push(format!("{} ({lines} lines)", path.display()));
            }
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines without `{LONG_FILE_REASON}` in their header: {long:?}");
}
