//! `iac drift` end to end, with the real components wherever they run here:
//!
//! - the firewall with the real `nft`, in private network namespaces: `--local` inside one, and
//!   over "SSH" through a fake `ssh` on PATH that runs the remote command line locally, as sshd
//!   would (`sh -c LINE`), inside a fresh network namespace per host holding that host's live
//!   ruleset (the rendered `nftables.nft` the binary wrote, plus the test's changes);
//! - PostgreSQL against a real server the test starts, whose pg_hba.conf is the file NixOS
//!   writes from the rendered module (our lines, then the module's own);
//! - the NixOS generation with a fake `nix` that prints each host's build and a stand-in
//!   `readlink` on the fake host for `/run/current-system`;
//! - the cluster against the in-process fake API server, on the manifests `iac render` wrote
//!   and `iac apply` applied.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::support::fake_apiserver::{Fake, Scenario};
use crate::support::pg::{HOST, PgServer, SUPERUSER, clear_pg_env};
use crate::support::{self, IAC, bundled_inventory, code, iac, rendered_flake, replace_once, repo, stderr, stdout, system_path, tool};

/// The lines of a report that name a difference (`- `, `+ `, `~ `, `! ` after the indent).
fn findings(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| ["- ", "+ ", "~ ", "! "].iter().any(|m| l.starts_with(m)))
        .map(str::to_owned)
        .collect()
}

fn write_exe(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn nft_tools() -> Option<(PathBuf, PathBuf)> {
    Some((tool("unshare")?, tool("nft")?))
}

// ---------------------------------------------------------------- firewall, --local

/// `iac drift --local alphard` in a private network namespace holding alphard's rendered
/// ruleset (the committed artifact) changed by `change` (nft commands).
fn local(change: &str) -> Option<Output> {
    let (unshare, _) = nft_tools()?;
    let dir = tempfile::tempdir().unwrap();
    let change_file = dir.path().join("change.nft");
    fs::write(&change_file, format!("{change}\n")).unwrap();
    let out = Command::new(unshare)
        .args(["-rn", "/bin/sh", "-c", r#"nft -f "$1" && nft -f "$2" && exec "$3" drift --local alphard --inventory "$4""#, "sh"])
        .arg(repo().join("generated/alphard/nftables.nft"))
        .arg(&change_file)
        .arg(IAC)
        .arg(repo().join("hosts/inventory.toml"))
        .env_remove("IAC_INVENTORY")
        .output()
        .unwrap();
    eprintln!("{}{}", stdout(&out), stderr(&out));
    Some(out)
}

#[test]
fn local_the_rendered_ruleset_loaded_is_no_drift() {
    let Some(out) = local("# nothing changed") else { return };
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "== alphard (172.22.0.134, read on this machine (--local))\nfirewall: in sync\ndrift: in sync: 0 of 1 host(s) differ; 0 error(s)\n"
    );
}

#[test]
fn local_an_added_rule_is_reported() {
    let Some(out) = local("add rule inet iac input ip saddr 10.9.9.9 tcp dport 8080 accept") else { return };
    assert_eq!(code(&out), 1);
    assert_eq!(findings(&out), ["+ chain input, rule 13: ip saddr 10.9.9.9 tcp dport 8080 accept"]);
    assert!(stdout(&out).contains("firewall: DRIFT (1 difference(s))\n"), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("drift: DRIFT: 1 of 1 host(s) differ; 0 error(s)\n"), "{}", stdout(&out));
}

#[test]
fn local_a_removed_set_element_is_reported() {
    let Some(out) = local("delete element inet iac pod_cidr { 10.42.0.0/16 }\nadd element inet iac pod_cidr { 10.42.0.0/17 }") else {
        return;
    };
    assert_eq!(code(&out), 1);
    // Half of the pod CIDR is gone: the missing half, as a prefix.
    assert_eq!(findings(&out), ["- set pod_cidr: element 10.42.128.0/17"]);
}

#[test]
fn local_a_changed_policy_is_reported() {
    let Some(out) = local("chain inet iac forward { policy accept; }") else { return };
    assert_eq!(code(&out), 1);
    assert_eq!(findings(&out), ["~ chain forward: policy accept (rendered: policy drop)"]);
}

/// The seed's outage: another table's forward chain with `policy drop` cuts what our table
/// accepts, while our own table is intact.
#[test]
fn local_a_foreign_table_with_a_dropping_forward_chain_is_reported() {
    let Some(out) = local(
        "table ip filter {\n chain FORWARD { type filter hook forward priority 0; policy drop; }\n chain INPUT { type filter hook input priority 0; policy accept; ip saddr 10.0.0.0/8 drop; }\n}",
    ) else {
        return;
    };
    assert_eq!(code(&out), 1);
    assert_eq!(
        findings(&out),
        [
            "! table ip filter, chain FORWARD (hook forward, priority 0): policy drop: a drop in any base chain is final, so what iac's \
             table accepts on the forward hook is dropped here unless this chain accepts it too",
            "! table ip filter, chain INPUT (hook input, priority 0), rule 1: ip saddr 10.0.0.0/8 drop (drops whatever it matches, \
             whatever iac's table accepts)"
        ]
    );
}

/// A newer `nft` on the host may add keys to its JSON (and print a statement the `nftables`
/// crate has no variant for): the real listing of the rendered ruleset, with a new key in every
/// object and every match, reads as the same ruleset, and an unknown statement in another table
/// is kept, not fatal.
#[test]
fn a_newer_nfts_listing_reads_as_the_same_ruleset() {
    if nft_tools().is_none() {
        return;
    }
    let tools = iac::drift::firewall::Tools::locate().unwrap();
    let rendered = fs::read_to_string(repo().join("generated/alphard/nftables.nft")).unwrap();
    let expected = iac::drift::firewall::expected_listing(&tools, &rendered).unwrap();
    let mut listing: Value = serde_json::from_str(&expected).unwrap();
    let objects = listing["nftables"].as_array_mut().unwrap();
    for obj in objects.iter_mut() {
        for inner in obj.as_object_mut().unwrap().values_mut() {
            inner["x-newer-nft"] = json!({"added": 1});
            for stmt in inner.get_mut("expr").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(m) = stmt.get_mut("match") {
                    m["x-newer-nft"] = json!(true);
                }
            }
        }
    }
    objects[0]["metainfo"]["version"] = json!("1.1.3");
    let newer = listing.to_string();
    assert_ne!(newer, expected);
    let report = iac::drift::firewall::check(&expected, &newer);
    assert_eq!(report.findings, [], "{report:#?}");
    assert_eq!(report.state, iac::drift::report::State::InSync);

    objects_push_foreign(&mut listing);
    let report = iac::drift::firewall::check(&expected, &listing.to_string());
    let texts: Vec<String> = report.findings.iter().map(|f| f.text()).collect();
    assert_eq!(
        texts,
        [
            r#"! table ip filter, chain INPUT (hook input, priority 0), rule 1: [{"x-future-statement":{}},{"drop":null}] (drops whatever it matches, whatever iac's table accepts)"#
        ]
    );
}

fn objects_push_foreign(listing: &mut Value) {
    let objects = listing["nftables"].as_array_mut().unwrap();
    objects.push(json!({"table": {"family": "ip", "name": "filter", "handle": 9}}));
    objects.push(json!({"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}));
    objects.push(json!({"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 2, "expr": [{"x-future-statement": {}}, {"drop": null}]}}));
}

// ---------------------------------------------------------------- hosts over a fake ssh

/// Records its argv (one record at a time), then plays the host at the destination's address: unreachable, or a
/// fresh network namespace holding `$FAKE_SIM/ADDR/ruleset.nft` changed by `change.nft` (a
/// second transaction, as a later hand edit is), where it runs the remote
/// command line as sshd would (without the `sudo -n --` a non-root user gets), with
/// `/run/current-system` answered by a stand-in `readlink` on the host's PATH.
const FAKE_SSH: &str = r#"#!/bin/bash
set -u
# Hosts are read in parallel and a record (the whole remote script) is longer than one write:
# take turns, or records interleave.
{ flock 9; printf '%s\036' "$*" >> "$FAKE_SIM/ssh.log"; } 9>>"$FAKE_SIM/ssh.lock"
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do shift; done
dest=$2; shift 2
addr=${dest#*@}
sim=$FAKE_SIM/$addr
if [ ! -d "$sim" ] || [ -e "$sim/unreachable" ]; then
  echo "ssh: connect to host $addr port 22: Connection timed out" >&2
  exit 255
fi
line="$*"
line=${line#sudo -n -- }
line="${line% /run/current-system} $sim/current-system"
export PATH="$sim/bin:$PATH"
exec unshare -rn /bin/sh -c 'nft -f "$1" && nft -f "$2" || exit 254; exec /bin/sh -c "$3"' fake-host "$sim/ruleset.nft" "$sim/change.nft" "$line"
"#;

/// `nix build ... FLAKE#nixosConfigurations."HOST"...`: prints `$FAKE_SIM/built/HOST`.
const FAKE_NIX: &str = r#"#!/bin/bash
set -u
for a in "$@"; do
  case "$a" in *'#nixosConfigurations."'*) host=${a#*#nixosConfigurations.\"}; host=${host%%\"*} ;; esac
done
printf '%s\n' "$*" >> "$FAKE_SIM/nix.log"
echo "building '/nix/store/x-nixos-system-$host.drv'..." >&2
cat "$FAKE_SIM/built/$host"
"#;

/// A flake directory with an inventory and its render (by the binary), fakes on PATH, and a
/// simulated host per address.
struct Estate {
    dir: tempfile::TempDir,
}

impl Estate {
    fn new(inventory: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        rendered_flake(dir.path(), inventory);
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        write_exe(&bin.join("ssh"), FAKE_SSH);
        write_exe(&bin.join("nix"), FAKE_NIX);
        fs::create_dir_all(dir.path().join("sim/built")).unwrap();
        Self { dir }
    }

    fn flake(&self) -> PathBuf {
        self.dir.path().join("flake")
    }

    /// The host at `addr` runs `running` with its rendered ruleset changed by `change`; the
    /// flake builds `built` for it.
    fn host(&self, name: &str, addr: &str, change: &str, running: &str, built: &str) {
        let sim = self.dir.path().join("sim").join(addr);
        fs::create_dir_all(sim.join("bin")).unwrap();
        let rendered = fs::read_to_string(self.flake().join("generated").join(name).join("nftables.nft")).unwrap();
        fs::write(sim.join("ruleset.nft"), rendered).unwrap();
        fs::write(sim.join("change.nft"), format!("{change}\n")).unwrap();
        fs::write(sim.join("current-system"), "").unwrap();
        fs::write(sim.join("running"), running).unwrap();
        write_exe(&sim.join("bin/readlink"), &format!("#!/bin/sh\ncat '{}'\n", sim.join("running").display()));
        fs::write(self.dir.path().join("sim/built").join(name), built).unwrap();
    }

    fn drift(&self, args: &[&str], pg: Option<&[(&str, String)]>) -> Output {
        let path = format!("{}:{}", self.dir.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = iac();
        clear_pg_env(&mut cmd)
            .arg("drift")
            .args(args)
            .arg("--flake")
            .arg(self.flake())
            .env("PATH", path)
            .env("FAKE_SIM", self.dir.path().join("sim"));
        for (k, v) in pg.unwrap_or_default() {
            cmd.env(k, v);
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        eprintln!("--- iac drift {}\n{}{}", args.join(" "), stdout(&out), stderr(&out));
        out
    }

    fn log(&self, what: &str) -> String {
        fs::read_to_string(self.dir.path().join("sim").join(what)).unwrap_or_default()
    }
}

/// A port nothing listens on: PostgreSQL there refuses at once.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind((HOST, 0)).unwrap();
    l.local_addr().unwrap().port().to_string()
}

/// Three hosts at once: alphard with an added rule and in sync with its build, hamal (a
/// non-root login) with a set element gone and a different generation, alkaid unreachable. Each
/// is reported for itself; the unreachable one is an error with its reason; exit 1.
#[test]
fn each_host_reports_for_itself_and_an_unreachable_one_is_an_error() {
    if nft_tools().is_none() {
        return;
    }
    let inventory =
        replace_once(&bundled_inventory(), "address = \"172.22.0.135\"\n", "address = \"172.22.0.135\"\nssh_user = \"deploy\"\n");
    let e = Estate::new(&inventory);
    e.host(
        "alphard",
        "172.22.0.134",
        "add rule inet iac input ip saddr 10.9.9.9 tcp dport 8080 accept",
        &system_path('a', "alphard"),
        &system_path('a', "alphard"),
    );
    e.host(
        "hamal",
        "172.22.0.135",
        "delete element inet iac admin { 172.22.0.0/24 }",
        &system_path('a', "hamal"),
        &system_path('b', "hamal"),
    );
    let port = closed_port();
    let pg = [("PGHOST", HOST.to_owned()), ("PGPORT", port.clone())];
    let out = e.drift(&["--all"], Some(&pg));
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let expected = format!(
        "(- rendered, not on the host   + on the host, not rendered   ~ differs   ! warning)\n\
         == alkaid (172.22.0.133)\n\
         ERROR: unreachable over SSH (ssh: connect to host 172.22.0.133 port 22: Connection timed out)\n\
         postgres: ERROR: cannot reach PostgreSQL at 127.0.0.1:{port}: Connection refused (os error 111)\n\
         == alphard (172.22.0.134)\n\
         firewall: DRIFT (1 difference(s))\n  \
           + chain input, rule 13: ip saddr 10.9.9.9 tcp dport 8080 accept\n\
         generation: in sync ({a})\n\
         == hamal (172.22.0.135)\n\
         firewall: DRIFT (1 difference(s))\n  \
           - set admin: element 172.22.0.0/24\n\
         generation: DIFFERS: running {ha}, the flake builds {hb}\n\
         drift: DRIFT: 2 of 3 host(s) differ; 1 error(s)\n",
        a = system_path('a', "alphard"),
        ha = system_path('a', "hamal"),
        hb = system_path('b', "hamal"),
    );
    assert_eq!(text, expected);
    // The deploy path's SSH options, one connection per reachable host, sudo for the non-root login.
    let log = e.log("ssh.log");
    let ssh: Vec<&str> = log.split_terminator('\x1e').collect();
    assert_eq!(ssh.len(), 3, "{log}");
    for line in &ssh {
        assert!(
            line.starts_with("-o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p 22 -- "),
            "{line}"
        );
    }
    assert!(ssh.iter().any(|l| l.contains("deploy@172.22.0.135 sudo -n -- /bin/sh -c ")), "{log}");
    assert!(ssh.iter().any(|l| l.contains("root@172.22.0.134 /bin/sh -c ")), "{log}");
    // The fixed script, and the path it reads as an argument.
    assert!(
        ssh.iter().all(|l| l.contains(&iac::deploy::plan::quote(iac::drift::host::READ).unwrap().into_owned())
            && l.ends_with(" iac-drift /run/current-system")),
        "{log}"
    );
    // The build is deploy's: nix build --no-link --print-out-paths FLAKE#...toplevel.
    let nix = e.log("nix.log");
    assert!(nix.contains("build --no-link --print-out-paths"), "{nix}");
    assert!(nix.contains("#nixosConfigurations.\"hamal\".config.system.build.toplevel"), "{nix}");
    assert!(!nix.contains("alkaid"), "an unreachable host is not built: {nix}");

    // The same as JSON, in the documented shape.
    let out = e.drift(&["--all", "--format", "json"], Some(&pg));
    assert_eq!(code(&out), 1);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((report["drift"].clone(), report["errors"].clone(), report["cluster"].clone()), (json!(true), json!(1), Value::Null));
    let hosts = report["hosts"].as_array().unwrap();
    assert_eq!(hosts.iter().map(|h| h["host"].as_str().unwrap()).collect::<Vec<_>>(), ["alkaid", "alphard", "hamal"]);
    assert_eq!(hosts[0]["error"], "unreachable over SSH (ssh: connect to host 172.22.0.133 port 22: Connection timed out)");
    assert_eq!(hosts[0]["firewall"], Value::Null);
    assert_eq!(hosts[0]["postgres"]["state"], "error");
    assert_eq!(
        hosts[1]["firewall"],
        json!({"state": "drift", "error": null, "findings": [{"change": "extra", "severity": "drift", "subject": "chain input, rule 13",
            "expected": null, "actual": "ip saddr 10.9.9.9 tcp dport 8080 accept"}]})
    );
    assert_eq!(hosts[1]["source"], "ssh");
    assert_eq!(
        hosts[2]["generation"],
        json!({"state": "differs", "running": system_path('a', "hamal"), "built": system_path('b', "hamal"), "reason": null})
    );
}

#[test]
fn hosts_that_run_what_the_inventory_says_exit_0() {
    if nft_tools().is_none() {
        return;
    }
    let e = Estate::new(&bundled_inventory());
    for (name, addr) in [("alphard", "172.22.0.134"), ("hamal", "172.22.0.135")] {
        e.host(name, addr, "", &system_path('a', name), &system_path('a', name));
    }
    let out = e.drift(&["alphard", "hamal"], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "== alphard (172.22.0.134)\nfirewall: in sync\ngeneration: in sync ({})\n== hamal (172.22.0.135)\nfirewall: in sync\n\
             generation: in sync ({})\ndrift: in sync: 0 of 2 host(s) differ; 0 error(s)\n",
            system_path('a', "alphard"),
            system_path('a', "hamal")
        )
    );
    // --no-build builds nothing, and a generation not built is not drift.
    let out = e.drift(&["alphard", "--no-build"], None);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains(&format!("generation: not built (--no-build); running {}\n", system_path('a', "alphard"))),
        "{}",
        stdout(&out)
    );
    assert_eq!(e.log("nix.log").lines().count(), 2, "only the first run built");
}

#[test]
fn an_unknown_host_or_an_invalid_inventory_exits_2() {
    let e = Estate::new(&bundled_inventory());
    let out = e.drift(&["mizar"], None);
    assert_eq!(code(&out), 2);
    assert_eq!(stderr(&out), "error: unknown host `mizar` (the inventory has: alkaid, alphard, hamal)\n");
    fs::write(e.flake().join("hosts/inventory.toml"), replace_once(&bundled_inventory(), "172.22.0.134", "172.22.0.300")).unwrap();
    let out = e.drift(&["--all"], None);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("hosts.alphard.address"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

// ---------------------------------------------------------------- PostgreSQL

/// alkaid over the fake ssh (its rendered ruleset, no build) and its PostgreSQL: a real server
/// whose pg_hba.conf is the file the NixOS module writes from the rendered module.
struct Database {
    estate: Estate,
    server: PgServer,
    hba: String,
}

impl Database {
    fn new() -> Option<Self> {
        Self::with_inventory(&bundled_inventory())
    }

    fn with_inventory(inventory: &str) -> Option<Self> {
        nft_tools()?;
        let estate = Estate::new(inventory);
        estate.host("alkaid", "172.22.0.133", "", &system_path('a', "alkaid"), &system_path('a', "alkaid"));
        let site = iac::load_site(&support::bundled_inventory_path()).unwrap();
        let hba = iac::drift::postgres::expected_file(&iac::render::flows(&site), site.host("alkaid").unwrap());
        let server = PgServer::builder().hba(&hba).start();
        // What NixOS writes next to it (identMap) and creates (ensureUsers, ensureDatabases).
        server.write_data_file("pg_ident.conf", b"postgres postgres postgres\n", 0o600);
        server.psql("postgres", "CREATE ROLE kafka LOGIN");
        server.psql("postgres", "CREATE DATABASE kafka OWNER kafka");
        Some(Self { estate, server, hba })
    }

    fn drift_as(&self, user: &str, password: &str) -> Output {
        let env = [
            ("PGHOST", HOST.to_owned()),
            ("PGPORT", self.server.port.to_string()),
            ("PGUSER", user.to_owned()),
            ("PGDATABASE", "postgres".to_owned()),
            ("PGPASSWORD", password.to_owned()),
        ];
        self.estate.drift(&["alkaid", "--no-build"], Some(&env))
    }

    fn drift(&self) -> Output {
        self.drift_as(SUPERUSER, &self.server.password.clone())
    }

    fn postgres_lines(out: &Output) -> Vec<String> {
        let text = stdout(out);
        let start = text.find("postgres: ").map_or(0, |i| i);
        text[start..].lines().take_while(|l| !l.starts_with("generation:")).map(str::to_owned).collect()
    }
}

#[test]
fn postgres_as_rendered_is_in_sync() {
    let Some(db) = Database::new() else { return };
    // The file the test serves is exactly the module's: our line, then NixOS's four.
    assert_eq!(
        db.hba,
        "# Generated file; do not edit!\n# TYPE  DATABASE  USER  ADDRESS  METHOD\nhost kafka kafka 172.22.0.0/24 scram-sha-256\n\n\
         # default value of services.postgresql.authentication\nlocal all postgres         peer map=postgres\n\
         local all all              peer\nhost  all all 127.0.0.1/32 md5\nhost  all all ::1/128      md5\n"
    );
    let out = db.drift();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "== alkaid (172.22.0.133)\nfirewall: in sync\npostgres: in sync\ngeneration: not built (--no-build); running {}\n\
             drift: in sync: 0 of 1 host(s) differ; 0 error(s)\n",
            system_path('a', "alkaid")
        )
    );
}

#[test]
fn postgres_added_removed_and_changed_hba_lines_and_a_missing_role() {
    let Some(db) = Database::new() else { return };
    // A hand edit: our line's method weakened, NixOS's `local all all peer` gone, a line added,
    // and one PostgreSQL cannot parse. pg_hba_file_rules reads the file on disk: no reload.
    let edited = db
        .hba
        .replace("host kafka kafka 172.22.0.0/24 scram-sha-256", "host kafka kafka 172.22.0.0/24 md5")
        .replace("local all all              peer\n", "")
        .replace(
            "host  all all ::1/128      md5\n",
            "host  all all ::1/128      md5\nhost  all all 10.0.0.0/8 trust\nhost all all 192.168.0.0/16 scram\n",
        );
    db.server.write_data_file("pg_hba.conf", edited.as_bytes(), 0o600);
    let out = db.drift();
    assert_eq!(code(&out), 1);
    assert_eq!(
        Database::postgres_lines(&out),
        [
            "postgres: DRIFT (4 difference(s))",
            "  ! pg_hba line 10: invalid authentication method \"scram\" (PostgreSQL rejects the line, and with it a reload of the whole file)",
            "  ~ pg_hba line 3 (host kafka kafka 172.22.0.0/24): method md5 (rendered: method scram-sha-256)",
            "  - pg_hba rule 3: local all all peer",
            "  + pg_hba line 9: host all all 10.0.0.0/8 trust",
        ]
    );

    // The file as rendered again, but the owner's role is gone (the database now owned by the
    // superuser, as DROP ROLE requires).
    db.server.write_data_file("pg_hba.conf", db.hba.as_bytes(), 0o600);
    db.server.psql("postgres", "ALTER DATABASE kafka OWNER TO postgres");
    db.server.psql("postgres", "DROP ROLE kafka");
    let out = db.drift();
    assert_eq!(code(&out), 1);
    assert_eq!(
        Database::postgres_lines(&out),
        [
            "postgres: DRIFT (2 difference(s))",
            "  - role kafka: the owner of database kafka (LOGIN)",
            "  ~ database kafka: owner postgres (rendered: owner kafka)",
        ]
    );
    db.server.psql("postgres", "CREATE ROLE kafka NOLOGIN");
    db.server.psql("postgres", "DROP DATABASE kafka");
    assert_eq!(
        Database::postgres_lines(&db.drift()),
        [
            "postgres: DRIFT (2 difference(s))",
            "  ~ role kafka: NOLOGIN: it cannot log in (rendered: LOGIN)",
            "  - database kafka: the database, owned by kafka",
        ]
    );
}

/// The privileges docs/drift.md names: without them a non-superuser's pg_hba part is an error
/// that says what to grant (roles and databases still compared); with exactly those two grants
/// the whole comparison runs.
#[test]
fn postgres_a_reader_needs_exactly_the_two_grants() {
    let Some(db) = Database::new() else { return };
    db.server.psql("postgres", "CREATE ROLE drift_reader LOGIN PASSWORD 'reader-pw-3x'");
    let out = db.drift_as("drift_reader", "reader-pw-3x");
    assert_eq!(code(&out), 1);
    assert_eq!(
        Database::postgres_lines(&out),
        ["postgres: ERROR: cannot read pg_hba_file_rules as drift_reader: permission denied (superusers only by default); as a \
             superuser run in database postgres `GRANT SELECT ON pg_hba_file_rules TO drift_reader; GRANT EXECUTE ON FUNCTION \
             pg_hba_file_rules() TO drift_reader;` (docs/drift.md)"]
    );
    assert!(stdout(&out).ends_with("drift: ERROR: 0 of 1 host(s) differ; 1 error(s)\n"), "{}", stdout(&out));
    // No predefined role includes it: pg_read_all_settings (nor pg_monitor) is not enough.
    db.server.psql("postgres", "GRANT pg_read_all_settings, pg_monitor TO drift_reader");
    let out = db.drift_as("drift_reader", "reader-pw-3x");
    assert_eq!(code(&out), 1);
    assert!(
        Database::postgres_lines(&out)[0].starts_with("postgres: ERROR: cannot read pg_hba_file_rules as drift_reader: permission denied")
    );
    db.server.psql("postgres", "REVOKE pg_read_all_settings, pg_monitor FROM drift_reader");
    db.server.psql("postgres", "GRANT SELECT ON pg_hba_file_rules TO drift_reader");
    db.server.psql("postgres", "GRANT EXECUTE ON FUNCTION pg_hba_file_rules() TO drift_reader");
    let out = db.drift_as("drift_reader", "reader-pw-3x");
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(Database::postgres_lines(&out), ["postgres: in sync"]);
}

/// No password typed by hand: the owner's password is the database's declared secret, made by
/// `iac secrets init` in the flake (FLAKE/secrets) and set on the role as the host's setup unit
/// sets it; drift connects as the owner (from the inventory) with it, decrypted with the
/// admin's identity, and names that source, never the value.
#[test]
fn postgres_connects_with_the_declared_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("admin.key");
    let admin = support::new_age_key(&key);
    let Some(db) = Database::with_inventory(&replace_once(&bundled_inventory(), support::EXAMPLE_ADMIN, &admin)) else { return };
    let flake = db.estate.flake();
    let out = iac()
        .arg("secrets")
        .arg("init")
        .arg("--inventory")
        .arg(flake.join("hosts/inventory.toml"))
        .arg("--dir")
        .arg(flake.join("secrets"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = iac()
        .args(["secrets", "show", "kafka-db", "--inventory"])
        .arg(flake.join("hosts/inventory.toml"))
        .arg("--dir")
        .arg(flake.join("secrets"))
        .arg("--identity")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let value = String::from_utf8(out.stdout).unwrap();
    db.server.psql("postgres", &format!("ALTER ROLE kafka PASSWORD '{value}'"));
    // In the database drift connects to: grants on a catalog view are per database.
    db.server.psql("kafka", "GRANT SELECT ON pg_hba_file_rules TO kafka");
    db.server.psql("kafka", "GRANT EXECUTE ON FUNCTION pg_hba_file_rules() TO kafka");
    // The server's address only: user and database are the inventory's (kafka, kafka).
    let server = [("PGHOST", HOST.to_owned()), ("PGPORT", db.server.port.to_string())];
    let with_key = [&server[..], &[("IAC_IDENTITY", key.display().to_string())]].concat();
    let clean = |out: Output| {
        assert!(!stdout(&out).contains(&value) && !stderr(&out).contains(&value), "the value is in an output");
        out
    };
    let out = clean(db.estate.drift(&["alkaid", "--no-build"], Some(&with_key)));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(Database::postgres_lines(&out), ["postgres: in sync"]);
    let file = flake.join("secrets/kafka-db.age");
    let source = format!(
        "alkaid: reading PostgreSQL at {HOST}:{} as kafka (password: declared secret kafka-db ({}) with identity {})",
        db.server.port,
        file.display(),
        key.display()
    );
    assert!(stderr(&out).contains(&source), "{}", stderr(&out));
    // Without the identity there is no password (the pgpass file is next, and there is none).
    let out = clean(db.estate.drift(&["alkaid", "--no-build"], Some(&server)));
    assert_eq!(code(&out), 1);
    assert!(Database::postgres_lines(&out)[0].contains("the server asks for a password and none was found"), "{}", stdout(&out));
    // A key that is not an admin's: the host's error names the file and the key.
    let stranger = dir.path().join("stranger.key");
    support::new_age_key(&stranger);
    let stranger_arg = stranger.display().to_string();
    let out = clean(db.estate.drift(&["alkaid", "--no-build", "--identity", &stranger_arg], Some(&server)));
    assert_eq!(code(&out), 1);
    let line = &Database::postgres_lines(&out)[0];
    assert!(line.contains(&format!("cannot decrypt {} with {}", file.display(), stranger.display())), "{line}");
}

// ---------------------------------------------------------------- the cluster

struct Cluster {
    dir: tempfile::TempDir,
    fake: Fake,
}

const NS: &str = "/api/v1/namespaces/kafka-pipeline";
const APPS: &str = "/apis/apps/v1/namespaces/kafka-pipeline";
const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/kafka-pipeline";

impl Cluster {
    async fn new() -> Self {
        let fake = Fake::start(Scenario::healthy()).await;
        let dir = tempfile::tempdir().unwrap();
        fake.kubeconfig(dir.path());
        let c = Cluster { dir, fake };
        c.render(&bundled_inventory());
        c
    }

    fn render(&self, inventory: &str) {
        let inv = self.dir.path().join("inventory.toml");
        fs::write(&inv, inventory).unwrap();
        let out = iac().args(["render", "--inventory"]).arg(&inv).arg("--out").arg(self.dir.path().join("generated")).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }

    async fn iac(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::from(iac());
        cmd.args(args)
            .arg("--inventory")
            .arg(self.dir.path().join("inventory.toml"))
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .env_remove("KUBECONFIG")
            .env_remove("IAC_INVENTORY")
            .env("IAC_PG_PASSWORD", "fixture-pw-Zq7xK2");
        let out = cmd.output().await.unwrap();
        eprintln!("--- iac {}\n{}{}", args.join(" "), stdout(&out), stderr(&out));
        out
    }

    async fn drift(&self) -> Output {
        let generated = self.dir.path().join("generated");
        self.iac(&["drift", "--k8s", "--generated", generated.to_str().unwrap()]).await
    }

    async fn apply(&self) {
        let generated = self.dir.path().join("generated");
        let out = self.iac(&["apply", "--generated", generated.to_str().unwrap(), "--timeout", "20"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }

    async fn raw(&self, method: &str, path: &str, content_type: &str, body: Value) {
        let client = iac::cluster::connect_client(Some(&self.dir.path().join("kubeconfig")), None).await.unwrap().client;
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", content_type)
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        client.request::<Value>(req).await.unwrap();
    }

    /// The report's cluster lines.
    fn lines(out: &Output) -> Vec<String> {
        let text = stdout(out);
        text[text.find("== cluster").unwrap()..].lines().skip(1).map(str::to_owned).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_what_apply_would_change_and_what_it_would_prune() {
    let c = Cluster::new().await;
    // Nothing applied yet: everything is missing, starting with the namespace.
    let out = c.drift().await;
    assert_eq!(code(&out), 1);
    let lines = Cluster::lines(&out);
    assert_eq!(lines[0], "  namespace/kafka-pipeline: MISSING (`iac apply` creates it)");
    assert_eq!(lines[1], "  networkpolicy/default-deny: MISSING (`iac apply` creates it)");
    assert!(
        lines.iter().all(|l| l.contains(": MISSING (`iac apply` creates it)") || l.starts_with("  0 of 14") || l.starts_with("drift:")),
        "{lines:#?}"
    );
    assert_eq!(lines[lines.len() - 2], "  0 of 14 object(s) in sync");

    c.apply().await;
    let before = c.fake.requests().len();
    let out = c.drift().await;
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(Cluster::lines(&out), ["  14 of 14 object(s) in sync", "drift: in sync: cluster: 0 of 14 object(s) differ; 0 error(s)"]);
    // Dry runs only, the Secret read through its metadata alone.
    let sent = &c.fake.requests()[before..];
    assert!(sent.iter().filter(|r| r.method == "PATCH").all(|r| r.query.get("dryRun").map(String::as_str) == Some("All")
        && r.query.get("fieldManager").map(String::as_str) == Some("iac")
        && r.query.get("force").map(String::as_str) == Some("true")));
    // The 13 objects `iac apply` applies (the Secret is iac's own, not rendered).
    assert_eq!(sent.iter().filter(|r| r.method == "PATCH").count(), 13);
    assert!(sent.iter().all(|r| !matches!(r.method.as_str(), "DELETE" | "POST" | "PUT")));
    let secret = sent.iter().find(|r| r.path == format!("{NS}/secrets/pipeline-postgres")).unwrap();
    assert!(secret.accept.contains("as=PartialObjectMetadata"), "{}", secret.accept);

    // A kubectl edit of a field iac applies, an annotation iac does not apply (an apply keeps
    // it: not drift), a deleted NetworkPolicy, and a labelled Service no longer rendered.
    c.raw(
        "PATCH",
        &format!("{APPS}/statefulsets/kafka?fieldManager=kubectl-edit"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 3}, "metadata": {"annotations": {"note": "hand edit"}}}),
    )
    .await;
    c.raw("DELETE", &format!("{NETPOL}/networkpolicies/kafka-connect"), "application/json", json!({})).await;
    let labels = json!({"app.kubernetes.io/managed-by": "iac", "app.kubernetes.io/part-of": "iac-pipeline", "app.kubernetes.io/instance": "loe-homelab"});
    c.raw("PATCH", &format!("{NS}/services/kafka-old?fieldManager=iac&force=true"), "application/apply-patch+yaml", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kafka-old", "labels": labels}, "spec": {"ports": [{"port": 9092}]}})).await;
    let out = c.drift().await;
    assert_eq!(code(&out), 1);
    assert_eq!(
        Cluster::lines(&out),
        [
            "  networkpolicy/kafka-connect: MISSING (`iac apply` creates it)",
            "  statefulset/kafka: DIFFERS (live → what `iac apply` would leave)",
            "      spec.replicas: 3 → 1",
            "  service/kafka-old: NOT RENDERED (carries iac's labels; `iac apply` prunes it)",
            "  12 of 15 object(s) in sync",
            "drift: DRIFT: cluster: 3 of 15 object(s) differ; 0 error(s)",
        ]
    );
    // Nothing was persisted by the dry runs.
    let sts = c.fake.object(&format!("{APPS}/statefulsets"), "kafka").unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    assert!(c.fake.object(&format!("{NS}/services"), "kafka-old").is_some());
    assert!(c.fake.object(&format!("{NETPOL}/networkpolicies"), "kafka-connect").is_none());
    assert!(c.fake.managers(&format!("{APPS}/statefulsets/kafka"))["kubectl-edit"].contains(".spec.replicas"));
}

/// A change the API server refuses (a StatefulSet's volume claim template) is reported as such,
/// not as a failure of the whole command.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_a_change_the_api_server_refuses_is_reported() {
    let c = Cluster::new().await;
    c.apply().await;
    c.render(&replace_once(&bundled_inventory(), "storage = \"5Gi\"", "storage = \"20Gi\""));
    let out = c.drift().await;
    assert_eq!(code(&out), 1);
    let lines = Cluster::lines(&out);
    assert_eq!(lines[0], "  statefulset/kafka: REFUSED by the API server");
    assert!(
        lines[1].starts_with("      422 Invalid: StatefulSet.apps \"kafka\" is invalid: spec: Forbidden: updates to statefulset spec"),
        "{lines:#?}"
    );
    assert!(lines[1].ends_with("(`iac apply` explains the way through)"), "{lines:#?}");
}
