//! Every Nix file we generate or ship parses with real Nix parsers (rnix in-process and, where
//! installed, `nix-instantiate --parse`), and the generated modules evaluate to exactly the
//! text they are meant to carry.
//!
//! Without nixpkgs (third-party, not fetchable here) two models stand in for it, each with its
//! limits stated in its file: tests/nix/definitions.nix finds option definitions NixOS would
//! refuse as conflicting (host files vs the profiles they import vs the generated modules), and
//! tests/nix/flake-outputs.nix evaluates flake.nix's outputs with a stand-in nixpkgs. The real
//! NixOS modules are only evaluated by /work/shared/nixos-eval and `nix flake check`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, bundled_inventory_path, nix_eval as eval, repo, stdout, text};

fn nix_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("flake.nix")];
    for dir in ["generated", "hosts"] {
        collect(&repo().join(dir), "nix", &mut files);
    }
    files
}

/// Every file under `dir` whose extension is `ext`.
fn collect(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, ext, out);
        } else if p.extension().is_some_and(|e| e == ext) {
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
    let site = iac::load_site(&bundled_inventory_path()).unwrap();
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
    // The major version is pinned, not inherited from system.stateVersion.
    assert_eq!(eval("(module ./generated/alkaid/postgresql.nix).services.postgresql.package").unwrap(), "postgresql_17");
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
    let site = iac::load_site(&bundled_inventory_path()).unwrap();
    let ours: Vec<&str> = site.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, serde_json::to_string(&ours).unwrap());
}

// ---- option definitions that NixOS would refuse -------------------------------------------

/// Run tests/nix/definitions.nix (a model of nixpkgs' merge rules, with our summaries of the
/// nixpkgs profiles the hosts import) over `modules`, as the flake's `lib.nixosSystem` gets them.
/// `Err(stderr)` when the evaluation fails; `None` (skipped) without nix-instantiate.
fn definitions(modules: &[PathBuf]) -> Option<Result<serde_json::Value, String>> {
    let nix = support::tool("nix-instantiate")?;
    let list = modules.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(" ");
    let out = Command::new(nix)
        .args(["--eval", "--strict", "--json"])
        .arg(repo().join("tests/nix/definitions.nix"))
        .args(["--arg", "modules", &format!("[ {list} ]")])
        .env("NIX_STATE_DIR", std::env::temp_dir().join("iac-nix-state"))
        .output()
        .expect("nix-instantiate runs");
    if !out.status.success() {
        return Some(Err(text(&out.stderr)));
    }
    Some(Ok(serde_json::from_slice(&out.stdout).expect("json")))
}

/// What the flake passes to `lib.nixosSystem` for `host`.
fn host_modules(root: &Path, host: &str) -> Vec<PathBuf> {
    vec![root.join("hosts").join(host).join("configuration.nix"), root.join("generated").join(host)]
}

/// No hand-kept host file sets an option that an imported nixpkgs profile or iac's generated
/// module defines with a different value at the same priority (alkaid's `networking.useDHCP =
/// true` against proxmox-lxc.nix's `false` was one): NixOS would stop with "conflicting
/// definition values" before building anything.
#[test]
fn host_files_agree_with_their_profiles_and_the_generated_modules() {
    let site = iac::load_site(&bundled_inventory_path()).unwrap();
    for host in &site.hosts {
        let Some(result) = definitions(&host_modules(&repo(), &host.name)) else { return };
        let report = result.unwrap_or_else(|e| panic!("{}: {e}", host.name));
        assert_eq!(report["conflicts"], serde_json::json!([]), "{}: {report:#}", host.name);
        // The walk saw the definitions (networking, services, the profile's ...), not an empty set.
        assert!(report["defined"].as_u64().unwrap() >= 20, "{}: {report}", host.name);
    }
}

/// A copy of the estate with one file replaced, for the negative cases below.
fn estate_with(file: &str, content: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["hosts/alkaid", "hosts/alphard", "generated/alkaid", "generated/alphard"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(repo().join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.path().join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    for f in ["hosts/common.nix", "hosts/qemu-vm.nix"] {
        std::fs::copy(repo().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join(file), content).unwrap();
    dir
}

#[test]
fn a_host_file_that_contradicts_its_profile_is_caught() {
    // alkaid's file as it was: proxmox-lxc.nix defines `networking.useDHCP = false`.
    let old = "{ modulesPath, ... }:\n{\n  imports = [\n    (modulesPath + \"/virtualisation/proxmox-lxc.nix\")\n    ../common.nix\n  ];\n\n  networking.useDHCP = true;\n}\n";
    let dir = estate_with("hosts/alkaid/configuration.nix", old);
    let Some(result) = definitions(&host_modules(dir.path(), "alkaid")) else { return };
    let report = result.unwrap();
    let conflicts = report["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{report:#}");
    assert_eq!(conflicts[0]["path"], "networking.useDHCP");
    let files: Vec<&str> = conflicts[0]["definitions"].as_array().unwrap().iter().map(|d| d["file"].as_str().unwrap()).collect();
    assert!(files.iter().any(|f| f.ends_with("hosts/alkaid/configuration.nix")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("virtualisation/proxmox-lxc.nix")), "{files:?}");

    // With `proxmoxLXC.manageNetwork = true` the profile's network block is off (mkIf): no conflict.
    let managed = old.replace("networking.useDHCP = true;", "networking.useDHCP = true;\n  proxmoxLXC.manageNetwork = true;");
    let dir = estate_with("hosts/alkaid/configuration.nix", &managed);
    let report = definitions(&host_modules(dir.path(), "alkaid")).unwrap().unwrap();
    assert_eq!(report["conflicts"], serde_json::json!([]), "{report:#}");
}

#[test]
fn a_host_file_that_contradicts_the_generated_module_is_caught() {
    // iac's module turns networking.firewall off (its own nftables table replaces it).
    let file =
        "{ ... }:\n{\n  imports = [ ../qemu-vm.nix ];\n  networking.firewall.enable = true;\n  networking.hostName = \"other\";\n}\n";
    let dir = estate_with("hosts/alphard/configuration.nix", file);
    let Some(result) = definitions(&host_modules(dir.path(), "alphard")) else { return };
    let report = result.unwrap();
    let paths: Vec<&str> = report["conflicts"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    // hostName is only a mkDefault in the generated module: the host file's value wins, no conflict.
    assert_eq!(paths, ["networking.firewall.enable"], "{report:#}");
}

#[test]
fn a_profile_without_a_summary_fails_the_check() {
    let file = "{ modulesPath, ... }:\n{\n  imports = [ (modulesPath + \"/virtualisation/lxc-container.nix\") ../common.nix ];\n}\n";
    let dir = estate_with("hosts/alkaid/configuration.nix", file);
    let Some(result) = definitions(&host_modules(dir.path(), "alkaid")) else { return };
    let err = result.unwrap_err();
    assert!(err.contains("lxc-container.nix does not exist") && err.contains("tests/nix/profiles/"), "{err}");
}

// ---- flake.nix's outputs, with a stand-in nixpkgs ------------------------------------------

/// Evaluate tests/nix/flake-outputs.nix (flake.nix's `outputs` called with our stand-in nixpkgs;
/// see that file for what it proves and what it cannot). `None` without nix-instantiate.
fn flake_outputs(args: &[&str]) -> Option<Result<serde_json::Value, String>> {
    let nix = support::tool("nix-instantiate")?;
    let out = Command::new(nix)
        .args(["--eval", "--strict", "--json"])
        .arg(repo().join("tests/nix/flake-outputs.nix"))
        .args(args)
        .env("NIX_STATE_DIR", std::env::temp_dir().join("iac-nix-state"))
        .output()
        .expect("nix-instantiate runs");
    if !out.status.success() {
        return Some(Err(text(&out.stderr)));
    }
    Some(Ok(serde_json::from_slice(&out.stdout).expect("json")))
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn check_flake_outputs(o: &serde_json::Value) {
    let site = iac::load_site(&bundled_inventory_path()).unwrap();
    let hosts: Vec<&str> = site.hosts.iter().map(|h| h.name.as_str()).collect();
    // Every inventory host: its configuration from exactly the two module files.
    assert_eq!(keys(&o["nixosConfigurations"]).len(), hosts.len(), "{o:#}");
    for h in &hosts {
        let c = &o["nixosConfigurations"][h];
        assert_eq!(c["system"], "x86_64-linux");
        let modules: Vec<&str> = c["modules"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
        assert_eq!(modules.len(), 2, "{modules:?}");
        assert!(modules[0].ends_with(&format!("hosts/{h}/configuration.nix")) && Path::new(modules[0]).is_file(), "{modules:?}");
        assert!(modules[1].ends_with(&format!("generated/{h}")) && Path::new(modules[1]).join("default.nix").is_file(), "{modules:?}");
    }
    // Checks: the host checks only on the hosts' system; the ruleset check is the module's rules
    // file; the evaluation check writes the bare .drv path.
    let mut want: Vec<String> = vec!["package".into(), "render-up-to-date".into()];
    for h in &hosts {
        want.push(format!("nixos-{h}"));
        want.push(format!("ruleset-{h}"));
    }
    want.sort();
    assert_eq!(keys(&o["checks"]["x86_64-linux"]), want);
    assert_eq!(keys(&o["checks"]["aarch64-linux"]), ["package", "render-up-to-date"]);
    for h in &hosts {
        assert_eq!(o["checks"]["x86_64-linux"][format!("ruleset-{h}")], "nftables-rules");
        assert_eq!(o["checkTexts"]["x86_64-linux"][format!("nixos-{h}")], "/nix/store/00000000000000000000000000000000-nixos-system.drv");
        let app = o["apps"]["x86_64-linux"][format!("deploy-{h}")]["program"].as_str().unwrap();
        assert!(app.contains(&format!("/bin/iac deploy --flake /nix/store/11111111111111111111111111111111-source {h} \"$@\"")), "{app}");
        assert!(!app.contains("nixos-rebuild"), "deploy does not need nixos-rebuild: {app}");
    }
    assert_eq!(o["apps"]["x86_64-linux"]["render"]["type"], "app");
}

/// The tests the package build runs: `cargoTestFlags` name the unit tests and the integration
/// binary, and `checkFlags`, which libtest applies to both, keep every unit test and exactly the
/// `render`, `validation` and `nix` modules of tests/it, by libtest's rule (a test runs when its
/// name contains a filter and no `--skip`) over this binary's own test list. The tools those
/// modules look up are exactly what `nativeCheckInputs` provides: nothing the sandbox lacks,
/// nothing unused.
fn check_package_tests(o: &serde_json::Value) {
    let strings = |v: &serde_json::Value| -> Vec<String> { v.as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect() };
    assert_eq!(strings(&o["package"]["cargoTestFlags"]), ["--lib", "--test", "it"]);
    let check_flags = strings(&o["package"]["checkFlags"]);
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut words = check_flags.iter();
    while let Some(w) = words.next() {
        match w.as_str() {
            "--skip" => skips.push(words.next().expect("--skip takes a filter").as_str()),
            flag if flag.starts_with('-') => panic!("checkFlags: {flag} is not a filter (libtest options go elsewhere)"),
            filter => filters.push(filter),
        }
    }
    let runs = |name: &str| filters.iter().any(|f| name.contains(f)) && !skips.iter().any(|s| name.contains(s));

    // The integration tests: whole modules, exactly these three.
    let listed = Command::new(std::env::current_exe().unwrap()).args(["--list", "--format", "terse"]).output().unwrap();
    let names: Vec<String> = stdout(&listed).lines().filter_map(|l| l.strip_suffix(": test")).map(String::from).collect();
    assert!(names.len() > 200, "{names:?}");
    let module = |name: &str| name.split("::").next().unwrap().to_owned();
    let selected: BTreeSet<String> = names.iter().filter(|n| runs(n)).map(|n| module(n)).collect();
    assert_eq!(selected, BTreeSet::from(["nix", "render", "validation"].map(String::from)));
    for name in names.iter().filter(|n| selected.contains(&module(n))) {
        assert!(runs(name), "{name} is in a selected module but not selected");
    }

    // The unit tests: every one sits in a `#[cfg(test)]` module (inline or a file of its own),
    // whose name the filters keep.
    let mut sources = Vec::new();
    collect(&repo().join("src"), "rs", &mut sources);
    let mut test_files = BTreeSet::new();
    let mut test_modules = Vec::new();
    for file in &sources {
        let src = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = src.lines().map(str::trim).collect();
        for (at, _) in lines.iter().enumerate().filter(|(_, l)| **l == "#[cfg(test)]") {
            let next = lines.get(at + 1).copied().unwrap_or_default();
            // A visibility (`pub`, `pub(super)`) may come first: a test module whose helpers
            // a sibling's tests use.
            let item = next.strip_prefix("pub").map_or(next, |rest| rest.split_once(' ').map_or(rest, |(_, after)| after));
            let name = item.strip_prefix("mod ").unwrap_or_else(|| panic!("{}: #[cfg(test)] before {next:?}", file.display()));
            if let Some(name) = name.strip_suffix(';') {
                // A file module: NAME.rs next to lib.rs/main.rs/mod.rs, or under a directory named after its parent.
                let dir = if ["lib.rs", "main.rs", "mod.rs"].iter().any(|f| file.ends_with(f)) {
                    file.parent().unwrap().to_owned()
                } else {
                    file.with_extension("")
                };
                test_files.extend([dir.join(format!("{name}.rs")), dir.join(name).join("mod.rs")]);
                test_modules.push((file.clone(), name.to_owned()));
            } else {
                let name = name.strip_suffix(" {").unwrap_or_else(|| panic!("{}: #[cfg(test)] before {next:?}", file.display()));
                test_modules.push((file.clone(), name.to_owned()));
            }
        }
    }
    for (file, name) in &test_modules {
        assert!(
            runs(&format!("some::path::{name}::some_test")),
            "{}: the unit tests of `mod {name}` do not run in the package build",
            file.display()
        );
    }
    for file in sources.iter().filter(|f| !test_files.contains(*f)) {
        let src = std::fs::read_to_string(file).unwrap();
        let first_test = src.lines().position(|l| l.trim_start().starts_with("#[test]") || l.trim_start().starts_with("#[tokio::test"));
        let first_module = src.lines().position(|l| l.trim() == "#[cfg(test)]");
        if let Some(t) = first_test {
            assert!(first_module.is_some_and(|m| m < t), "{}: a unit test outside a #[cfg(test)] module", file.display());
        }
    }

    let mut used = BTreeSet::new();
    for m in &selected {
        let src = std::fs::read_to_string(repo().join(format!("tests/it/{m}.rs"))).unwrap();
        for (i, _) in src.match_indices("tool(\"") {
            let name = &src[i + 6..];
            used.insert(name[..name.find('"').unwrap()].to_string());
        }
        if src.contains("nix_eval") {
            used.insert("nix-instantiate".to_string());
        }
    }
    // Package (mainProgram in the stand-in) -> the executables the tests use from it.
    let provides = |pkg: &str| -> &[&str] {
        match pkg {
            "nix" => &["nix-instantiate"],
            _ => &[],
        }
    };
    let inputs: Vec<&str> = o["package"]["nativeCheckInputs"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let provided: BTreeSet<String> = inputs.iter().flat_map(|p| provides(p).iter().map(|s| s.to_string())).collect();
    assert_eq!(used, provided, "tools the selected tests use vs nativeCheckInputs {inputs:?}");
    assert!(inputs.iter().all(|p| !provides(p).is_empty()), "an unused nativeCheckInput: {inputs:?}");
    let pre_check = o["package"]["preCheck"].as_str().unwrap();
    assert!(pre_check.lines().any(|l| l == "export IAC_REQUIRE_TOOLS=1"), "a missing tool must fail the build's tests: {pre_check}");
    assert!(pre_check.contains("export NIX_STATE_DIR=$TMPDIR/"), "nix-instantiate needs a writable state directory: {pre_check}");
}

#[test]
fn flake_outputs_evaluate_with_a_stand_in_nixpkgs() {
    let Some(result) = flake_outputs(&["--arg", "checkRuleset", "true"]) else { return };
    let o = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o["inputs"], "github:NixOS/nixpkgs/nixos-26.05");
    check_flake_outputs(&o);
    check_package_tests(&o);
}

/// A configuration whose nftables module would skip its own check must not pass for checked.
#[test]
fn the_ruleset_check_refuses_a_configuration_that_turns_it_off() {
    let Some(result) = flake_outputs(&["--arg", "checkRuleset", "false"]) else { return };
    let err = result.unwrap_err();
    assert!(err.contains("sets networking.nftables.checkRuleset = false: the ruleset check would not run"), "{err}");
}

/// OPTIONAL: runs only when `NIXPKGS_LIB` names a nixpkgs `lib/` directory (third-party, not in
/// CI, never required by IAC_REQUIRE_TOOLS): the same outputs with the real `lib` functions
/// (genAttrs, getExe, makeBinPath, ...) instead of the stand-ins.
#[test]
fn flake_outputs_evaluate_with_the_real_nixpkgs_lib_when_available() {
    let Some(lib) = std::env::var_os("NIXPKGS_LIB").filter(|l| Path::new(l).join("default.nix").is_file()) else {
        eprintln!("not run: NIXPKGS_LIB is not set (optional check)");
        return;
    };
    let lib = std::fs::canonicalize(lib).unwrap();
    let Some(result) = flake_outputs(&["--arg", "checkRuleset", "true", "--arg", "nixpkgsLib", &lib.display().to_string()]) else {
        return;
    };
    let o = result.unwrap_or_else(|e| panic!("{e}"));
    check_flake_outputs(&o);
    check_package_tests(&o);
}
