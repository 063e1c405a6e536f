//! `iac secrets` end to end (issue 17): files the real `age` reads, `init` that changes nothing
//! the second time, a wrong identity that fails clearly, `rekey` after a host key is added,
//! `check` that tells stale and hand-made files apart, the decryption unit's script run
//! exactly as NixOS runs it (taken from the generated module by Nix itself) with Debian's `age`
//! against an `ssh-keygen` host key, and a fresh clone that goes from `iac secrets init` to a
//! deploy plan with no value typed by hand and no value in any output.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use iac::render::secrets::SCRIPT;

use crate::support::{
    EXAMPLE_ADMIN, bundled_inventory, code, iac, new_age_key, replace_once, repo, ssh_keygen, stderr, stdout, text, tool,
};

/// A project: the bundled inventory (edited by `edit`) with the example admin key replaced by
/// a fresh age key in `admin.key`, and the bundled hosts' hand-kept files.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(edit: impl Fn(&Path, String) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin = new_age_key(&dir.path().join("admin.key"));
        let inventory = edit(dir.path(), replace_once(&bundled_inventory(), EXAMPLE_ADMIN, &admin));
        fs::create_dir_all(dir.path().join("hosts")).unwrap();
        fs::write(dir.path().join("hosts/inventory.toml"), inventory).unwrap();
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn iac(&self, args: &[&str]) -> Output {
        self.iac_stdin(args, b"")
    }

    fn iac_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = iac()
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("IAC_INVENTORY")
            .env_remove("IAC_IDENTITY")
            // No default identity of the machine's user is ever picked up.
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.iac(args);
        assert!(out.status.success(), "iac {args:?}: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    fn show(&self, name: &str) -> Vec<u8> {
        let out = self.iac(&["secrets", "show", name, "--identity", "admin.key"]);
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(&format!("secrets/{name}.age"))).unwrap()
    }
}

/// Debian's `age -d -i IDENTITY FILE`.
fn age_decrypt(identity: &Path, file: &Path) -> Option<Output> {
    let age = tool("age")?;
    Some(Command::new(age).arg("-d").arg("-i").arg(identity).arg(file).output().unwrap())
}

#[test]
fn init_creates_what_age_reads_and_a_second_run_changes_nothing() {
    let p = Project::new(|_, t| t);
    let out = p.iac(&["secrets", "check"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("MISSING   kafka-db: secrets/kafka-db.age does not exist"), "{}", stdout(&out));
    let first = p.ok(&["secrets", "init"]);
    assert!(first.contains("created   k3s-token: secrets/k3s-token.age (k3s-token)"), "{first}");
    assert!(first.contains("created   kafka-db: secrets/kafka-db.age (password)"), "{first}");
    let before = [p.bytes("k3s-token"), p.bytes("kafka-db")];
    let second = p.ok(&["secrets", "init"]);
    assert!(second.contains("exists    kafka-db: secrets/kafka-db.age (left as it is)"), "{second}");
    assert_eq!([p.bytes("k3s-token"), p.bytes("kafka-db")], before, "a second init changed a file");
    assert!(p.ok(&["secrets", "check"]).contains("2 secrets: 2 ok, 0 not"));

    // The values have their kind's shape, and the real `age` reads the files iac wrote.
    let token = p.show("k3s-token");
    let password = p.show("kafka-db");
    assert!(token.len() == 64 && token.iter().all(u8::is_ascii_hexdigit), "{}", text(&token));
    assert!(password.len() == 32 && password.iter().all(u8::is_ascii_alphanumeric));
    for (name, value) in [("k3s-token", &token), ("kafka-db", &password)] {
        let Some(out) = age_decrypt(&p.path("admin.key"), &p.path(&format!("secrets/{name}.age"))) else { return };
        assert!(out.status.success(), "age: {}", stderr(&out));
        assert_eq!(&out.stdout, value, "{name}");
    }
}

/// An admin with an SSH key instead of an age key: `set` from stdin, `show` with the SSH key,
/// the real `age` with the SSH key; every byte comes back (a trailing newline, a NUL, non-UTF-8).
#[test]
fn round_trip_with_an_ssh_admin_key_and_any_bytes() {
    let p = Project::new(|dir, t| {
        let ssh = ssh_keygen(dir, "admin-ssh");
        t + &format!("\n[admins.ops]\nkey = \"{ssh} ops@laptop\"\n")
    });
    let value = b"line one\nwith a NUL \x00 and \xff\xfe\n".to_vec();
    let out = p.iac_stdin(&["secrets", "set", "kafka-db"], &value);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("wrote secrets/kafka-db.age ({} bytes, encrypted)\n", value.len()));
    for identity in ["admin.key", "admin-ssh"] {
        let out = p.iac(&["secrets", "show", "kafka-db", "--identity", identity]);
        assert!(out.status.success(), "{identity}: {}", stderr(&out));
        assert_eq!(out.stdout, value, "{identity}");
        let Some(out) = age_decrypt(&p.path(identity), &p.path("secrets/kafka-db.age")) else { return };
        assert_eq!(out.stdout, value, "age -i {identity}");
    }
    // An empty value is refused, and the file stays as it was.
    let before = p.bytes("kafka-db");
    let out = p.iac_stdin(&["secrets", "set", "kafka-db"], b"");
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("secret `kafka-db` would be empty"), "{}", stderr(&out));
    assert_eq!(p.bytes("kafka-db"), before);
    let out = p.iac_stdin(&["secrets", "set", "nope"], b"x");
    assert!(stderr(&out).contains("unknown secret `nope` (the inventory declares: k3s-token, kafka-db)"), "{}", stderr(&out));
}

#[test]
fn a_wrong_identity_is_a_clear_failure() {
    let p = Project::new(|_, t| t);
    p.ok(&["secrets", "init"]);
    new_age_key(&p.path("other.key"));
    let out = p.iac(&["secrets", "show", "kafka-db", "--identity", "other.key"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "error: cannot decrypt secrets/kafka-db.age with other.key: it is not encrypted to this identity's key\n",
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    // No identity at all: the places looked at are named.
    let out = p.iac(&["secrets", "show", "kafka-db"]);
    assert!(
        stderr(&out).contains("no identity to decrypt with: pass --identity FILE (or set IAC_IDENTITY); looked for"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(".config/iac/age.key"), "{}", stderr(&out));
    // A passphrase-protected SSH key is refused, never prompted for.
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"]).arg(p.path("locked")).output();
    if keygen.is_ok_and(|o| o.status.success()) {
        let out = p.iac(&["secrets", "show", "kafka-db", "--identity", "locked"]);
        assert!(stderr(&out).contains("is a passphrase-protected SSH key: iac does not prompt"), "{}", stderr(&out));
    }
}

/// A host gets a host key: its secrets must be encrypted to it. `check` and `render --check`
/// say which file and which host; `rekey` rewrites exactly those files, to a header the host's
/// own key opens with the real `age`; the values stay the same.
#[test]
fn rekey_after_adding_a_host_key() {
    let p = Project::new(|_, t| t);
    p.ok(&["secrets", "init"]);
    p.ok(&["render"]);
    let (token, password) = (p.show("k3s-token"), p.show("kafka-db"));
    let token_file = p.bytes("k3s-token");

    let key = ssh_keygen(p.dir.path(), "alkaid-host");
    let inv = fs::read_to_string(p.path("hosts/inventory.toml")).unwrap();
    fs::write(
        p.path("hosts/inventory.toml"),
        replace_once(&inv, "roles = [\"postgresql\"]", &format!("roles = [\"postgresql\"]\nhost_key = \"{key}\"")),
    )
    .unwrap();
    let out = p.iac(&["secrets", "check"]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("STALE     kafka-db: secrets/kafka-db.age: not encrypted to host alkaid: iac secrets rekey"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("ok        k3s-token"), "{}", stdout(&out));
    p.ok(&["render"]);
    let out = p.iac(&["render", "--check"]);
    assert_eq!(code(&out), 1, "render --check must fail on a stale secret: {}", stderr(&out));
    assert!(stderr(&out).contains("STALE     kafka-db"), "{}", stderr(&out));
    if let Some(out) = age_decrypt(&p.path("alkaid-host"), &p.path("secrets/kafka-db.age")) {
        assert!(!out.status.success(), "the host key opened a file not yet encrypted to it");
    }

    let out = p.ok(&["secrets", "rekey", "--identity", "admin.key"]);
    assert!(out.contains("rekeyed   kafka-db: encrypted to admin example, host alkaid"), "{out}");
    assert!(out.contains("ok        k3s-token: already encrypted to its recipients"), "{out}");
    assert!(out.contains("1 file(s) rewritten"), "{out}");
    assert_eq!(p.bytes("k3s-token"), token_file, "a file with the right recipients was rewritten");
    assert!(p.ok(&["secrets", "check"]).contains("2 secrets: 2 ok, 0 not"));
    assert!(p.iac(&["render", "--check"]).status.success());
    assert_eq!((p.show("k3s-token"), p.show("kafka-db")), (token, password.clone()));
    if let Some(out) = age_decrypt(&p.path("alkaid-host"), &p.path("secrets/kafka-db.age")) {
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(out.stdout, password);
    }
    assert!(p.ok(&["secrets", "rekey", "--identity", "admin.key"]).contains("0 file(s) rewritten"));

    // An admin removed: the files still name their key.
    let inv = fs::read_to_string(p.path("hosts/inventory.toml")).unwrap();
    let second = new_age_key(&p.path("second.key"));
    let inv = inv.replace("[admins.example]", &format!("[admins.second]\nkey = \"{second}\"\n\n[admins.example]"));
    fs::write(p.path("hosts/inventory.toml"), &inv).unwrap();
    p.ok(&["secrets", "rekey", "--identity", "admin.key"]);
    let start = inv.find("[admins.example]").unwrap();
    let end = start + inv[start..].find("\n\n").unwrap();
    fs::write(p.path("hosts/inventory.toml"), format!("{}{}", &inv[..start], &inv[end..])).unwrap();
    let out = p.iac(&["secrets", "check"]);
    assert!(
        stdout(&out).contains("STALE     kafka-db: secrets/kafka-db.age: encrypted to 1 key(s) the inventory no longer gives it"),
        "{}",
        stdout(&out)
    );
    // The remaining admin rekeys; the removed one's key opens nothing afterwards.
    p.ok(&["secrets", "rekey", "--identity", "second.key"]);
    let out = p.iac(&["secrets", "show", "kafka-db", "--identity", "admin.key"]);
    assert_eq!(code(&out), 1, "the removed admin still decrypts");
}

/// A file re-encrypted with the plain `age` tool carries no record of its recipients: `check`
/// says so instead of guessing, and `rekey` makes it iac's again.
#[test]
fn a_file_encrypted_by_hand_is_reported_and_rekeyed() {
    let p = Project::new(|_, t| t);
    p.ok(&["secrets", "init"]);
    let Some(age) = tool("age") else { return };
    let admin = age::x25519::Identity::from_str_trimmed(&fs::read_to_string(p.path("admin.key")).unwrap()).to_public().to_string();
    let out =
        Command::new(age).args(["-r", &admin, "-o"]).arg(p.path("secrets/kafka-db.age")).stdin(Stdio::piped()).spawn().and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"typed by hand")?;
            c.wait_with_output()
        });
    assert!(out.unwrap().status.success());
    let out = p.iac(&["secrets", "check"]);
    assert!(
        stdout(&out).contains("UNKNOWN   kafka-db: secrets/kafka-db.age has no iac recipient record (not written by iac)"),
        "{}",
        stdout(&out)
    );
    fs::write(p.path("secrets/k3s-token.age"), "not age at all").unwrap();
    let out = p.iac(&["secrets", "check"]);
    assert!(stdout(&out).contains("BROKEN    k3s-token: secrets/k3s-token.age: not an age file"), "{}", stdout(&out));
    fs::remove_file(p.path("secrets/k3s-token.age")).unwrap();
    p.ok(&["secrets", "init"]);
    p.ok(&["secrets", "rekey", "--identity", "admin.key"]);
    assert!(p.ok(&["secrets", "check"]).contains("2 ok"));
    assert_eq!(p.show("kafka-db"), b"typed by hand");
}

trait FromStrTrimmed {
    fn from_str_trimmed(s: &str) -> Self;
}

impl FromStrTrimmed for age::x25519::Identity {
    fn from_str_trimmed(s: &str) -> Self {
        s.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap().parse().unwrap()
    }
}

/// `opaque` secrets are never invented: `init` says how to set them and exits 1.
#[test]
fn opaque_secrets_are_set_never_generated() {
    let p = Project::new(|_, t| t + "\n[secrets.api-token]\nkind = \"opaque\"\nhosts = [{ host = \"alkaid\" }]\n");
    let out = p.iac(&["secrets", "init"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("warning: api-token: kind opaque is never generated: iac secrets set api-token < FILE"),
        "{}",
        stderr(&out)
    );
    assert!(!p.path("secrets/api-token.age").exists());
    assert!(p.iac_stdin(&["secrets", "set", "api-token"], b"from the vendor").status.success());
    assert!(p.iac(&["secrets", "init"]).status.success());
}

// ---- the decryption unit, as NixOS runs it -------------------------------------------------

/// The `iac-secrets` unit of `host`, as Nix evaluates the generated module: `pkgs.age` is a
/// directory whose `bin/age` is Debian's age, `pkgs.runtimeShell` this machine's bash, and Nix
/// copies the script and the ciphertext into a store of the test's own (as it would into
/// /nix/store). The unit's attributes as JSON.
fn evaluated_unit(p: &Project, host: &str) -> Option<serde_json::Value> {
    let nix = tool("nix-instantiate")?;
    let age = tool("age")?;
    let bash = tool("bash")?;
    let pkg = p.path("age-pkg/bin");
    fs::create_dir_all(&pkg).unwrap();
    std::os::unix::fs::symlink(&age, pkg.join("age")).unwrap();
    let nixdir = p.path("nix");
    let expr = format!(
        "(import {}/generated/{host}/secrets.nix {{ pkgs = {{ runtimeShell = \"{}\"; age = \"{}\"; }}; }}).systemd.services.iac-secrets",
        p.dir.path().display(),
        bash.display(),
        p.path("age-pkg").display()
    );
    let out = Command::new(nix)
        .args(["--eval", "--read-write-mode", "--strict", "--json", "-E", &expr])
        .env("NIX_STORE_DIR", nixdir.join("store"))
        .env("NIX_STATE_DIR", nixdir.join("var"))
        .env("NIX_LOG_DIR", nixdir.join("log"))
        .env("NIX_CONF_DIR", nixdir.join("etc"))
        .env("NIX_CONFIG", "build-users-group =\nsandbox = false")
        .output()
        .unwrap();
    assert!(out.status.success(), "nix-instantiate: {}", stderr(&out));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Run `script` as the unit does (`bash -e`, as root) in a private mount namespace where
/// `/etc/ssh/ssh_host_ed25519_key` is `host_key`, and `/run` and `/var/lib` are empty tmpfs
/// (with `prepare` run first, to set up a directory). Afterwards: the exit code, the output,
/// and `PATH OWNER GROUP MODE` with the content of every file under /run/secrets and
/// /var/lib/secrets.
fn run_unit(script: &str, host_key: &Path, prepare: &str) -> (i32, String, Vec<(String, Vec<u8>)>) {
    let out_dir = tempfile::tempdir().unwrap();
    let driver = r#"set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /etc/ssh
cp "$2" /etc/ssh/ssh_host_ed25519_key
chmod 0600 /etc/ssh/ssh_host_ed25519_key
eval "$4"
set +e
bash -e -c "$1" > "$3/log" 2>&1
echo $? > "$3/code"
for f in /run/secrets/* /var/lib/secrets/*; do
  [ -f "$f" ] || continue
  n=$(printf '%s' "$f" | tr / _)
  stat -c '%n %U %G %a' "$f" >> "$3/stat"
  cp "$f" "$3/$n"
done
for d in /run/secrets /var/lib/secrets; do [ -d "$d" ] && stat -c '%n %U %G %a' "$d" >> "$3/stat"; done
true
"#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", driver, "driver"])
        .arg(script)
        .arg(host_key)
        .arg(out_dir.path())
        .arg(prepare)
        .output()
        .unwrap();
    assert!(out.status.success(), "the namespace driver failed: {}", stderr(&out));
    let code: i32 = fs::read_to_string(out_dir.path().join("code")).unwrap().trim().parse().unwrap();
    let log = fs::read_to_string(out_dir.path().join("log")).unwrap_or_default();
    let stat = fs::read_to_string(out_dir.path().join("stat")).unwrap_or_default();
    let files = stat
        .lines()
        .map(|l| {
            let path = l.split(' ').next().unwrap();
            let content = fs::read(out_dir.path().join(path.replace('/', "_"))).unwrap_or_default();
            (l.to_string(), content)
        })
        .collect();
    (code, log, files)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The decryption unit of a host with a host key, exactly as its module gives it to systemd,
/// run against that host's `ssh-keygen` key with Debian's `age`: every secret lands at its path
/// with its owner, group and mode; with another key, the unit fails and names each secret.
#[test]
fn the_decryption_unit_runs_as_nixos_runs_it() {
    if !is_root() {
        assert!(std::env::var_os("IAC_REQUIRE_TOOLS").is_none(), "this test needs root (mount namespaces, chown)");
        eprintln!("skipping: needs root");
        return;
    }
    let p = Project::new(|dir, t| {
        let key = ssh_keygen(dir, "alkaid-host");
        let t = replace_once(&t, "roles = [\"postgresql\"]", &format!("roles = [\"postgresql\"]\nhost_key = \"{key}\""));
        t + "\n[secrets.grafana-db]\nkind = \"password\"\nhosts = [{ host = \"alkaid\", owner = \"nobody\", group = \"nogroup\", mode = \"0440\" }]\n"
    });
    p.ok(&["secrets", "init"]);
    p.ok(&["render"]);
    let module = fs::read_to_string(p.path("generated/alkaid/secrets.nix")).unwrap();
    assert_eq!(fs::read_to_string(p.path("generated/alkaid/iac-secrets.sh")).unwrap(), SCRIPT);
    let Some(unit) = evaluated_unit(&p, "alkaid") else { return };
    assert_eq!(unit["before"], serde_json::json!(["postgresql-setup.service"]), "{module}");
    assert_eq!(unit["requiredBy"], serde_json::json!(["postgresql-setup.service"]));
    assert_eq!(unit["serviceConfig"]["Type"], "oneshot");
    let script = unit["script"].as_str().unwrap();
    // Only store paths of ciphertext and the script: no value in the unit.
    let (grafana, kafka) = (p.show("grafana-db"), p.show("kafka-db"));
    assert!(!script.contains(&text(&grafana)) && !script.contains(&text(&kafka)));

    let (code, log, files) = run_unit(script, &p.path("alkaid-host"), "");
    assert_eq!(code, 0, "{log}");
    let want = [
        ("/run/secrets/grafana-db nobody nogroup 440".to_string(), grafana.clone()),
        ("/var/lib/secrets/postgresql-kafka root root 400".to_string(), kafka.clone()),
        ("/run/secrets root root 751".to_string(), vec![]),
        ("/var/lib/secrets root root 751".to_string(), vec![]),
    ];
    assert_eq!(files, want, "{log}");
    assert!(log.contains("iac-secrets: secret kafka-db: /var/lib/secrets/postgresql-kafka (root:root 0400)"), "{log}");
    assert!(!log.contains(&text(&kafka)), "a value in the unit's log");

    // Another host key: the unit fails, naming every secret it could not decrypt.
    ssh_keygen(p.dir.path(), "stranger");
    let (code, log, files) = run_unit(script, &p.path("stranger"), "");
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("iac-secrets: secret kafka-db: cannot decrypt"), "{log}");
    assert!(log.contains("iac-secrets: failed: grafana-db kafka-db"), "{log}");
    assert!(files.iter().all(|(l, _)| !l.contains(" 440") && !l.contains(" 400")), "{files:?}");

    // A directory someone else may write to is refused; the other secret still lands.
    let (code, log, files) = run_unit(script, &p.path("alkaid-host"), "mkdir -m 0777 /run/secrets");
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("iac-secrets: secret grafana-db: refusing to write into /run/secrets"), "{log}");
    assert!(files.iter().any(|(l, c)| l.starts_with("/var/lib/secrets/postgresql-kafka") && *c == kafka), "{files:?}");
}

// ---- done when ------------------------------------------------------------------------------

/// A fresh clone of the repository with the bundled inventory and one admin key: `iac secrets
/// init`, `iac render`, `iac deploy --all --dry-run` deliver every secret (pushed to hosts
/// without a host key, decrypted at activation on one with a host key), with no value typed by
/// hand, and no value in generated/, in any output, or in the test snapshots.
#[test]
fn a_fresh_clone_goes_from_init_to_a_deploy_plan_with_no_value_typed() {
    let p = Project::new(|dir, t| {
        let key = ssh_keygen(dir, "hamal-host");
        replace_once(&t, "roles = [\"k3s-agent\"]", &format!("roles = [\"k3s-agent\"]\nhost_key = \"{key}\""))
    });
    for dir in ["alkaid", "alphard", "hamal"] {
        let from = repo().join("hosts").join(dir);
        fs::create_dir_all(p.path(&format!("hosts/{dir}"))).unwrap();
        for f in fs::read_dir(from).unwrap() {
            let f = f.unwrap().path();
            fs::copy(&f, p.path(&format!("hosts/{dir}/{}", f.file_name().unwrap().to_string_lossy()))).unwrap();
        }
    }
    let mut outputs = vec![p.ok(&["secrets", "init"]), p.ok(&["render"]), p.ok(&["secrets", "check"])];
    let out = p.iac(&["render", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    outputs.push(stdout(&out) + &stderr(&out));
    let plan = p.iac(&["deploy", "--all", "--dry-run", "--identity", "admin.key"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let plan_text = stdout(&plan);
    outputs.push(plan_text.clone() + &stderr(&plan));

    // Every secret is delivered: the token to both nodes (pushed to alphard, decrypted on hamal),
    // the password to alkaid (pushed).
    assert!(plan_text.contains("# 3 secret file(s) of these hosts are encrypted to their recipients"), "{plan_text}");
    assert!(plan_text.contains("# the pushed secrets decrypt with admin.key"), "{plan_text}");
    assert!(
        plan_text.contains("# secret kafka-db -> /var/lib/secrets/postgresql-kafka (root:root 0400), read by the password of database `kafka`'s owner `kafka` (postgresql-setup): written over SSH below"),
        "{plan_text}"
    );
    assert!(
        plan_text.contains("# secret k3s-token -> /var/lib/secrets/k3s-token (root:root 0400), read by the cluster token (k3s server"),
        "{plan_text}"
    );
    assert!(
        plan_text.contains("# secret k3s-token -> /run/secrets/k3s-token (root:root 0400), read by the cluster token (k3s agent: services.k3s.tokenFile): decrypted at activation by iac-secrets.service"),
        "{plan_text}"
    );
    assert_eq!(plan_text.matches("iac-push-secrets /var/lib/iac/pushed-secrets /var/lib/secrets/").count(), 2, "{plan_text}");
    // Every host gets the cleanup once confirmed; hamal's decrypted file is kept, never removed.
    assert_eq!(plan_text.matches(" iac-prune-secrets /var/lib/iac/pushed-secrets ").count(), 3, "{plan_text}");
    assert!(plan_text.contains(" iac-prune-secrets /var/lib/iac/pushed-secrets -- /run/secrets/k3s-token "), "{plan_text}");
    // hamal's module carries the unit and points k3s at the decrypted file; the others read
    // the pushed paths.
    let hamal = fs::read_to_string(p.path("generated/hamal/default.nix")).unwrap();
    assert!(hamal.contains("imports = [ ./secrets.nix ];") && hamal.contains("tokenFile = \"/run/secrets/k3s-token\";"), "{hamal}");
    let unit = fs::read_to_string(p.path("generated/hamal/secrets.nix")).unwrap();
    assert!(unit.contains("k3s-token ${../../secrets/k3s-token.age} /run/secrets/k3s-token root root 0400"), "{unit}");
    assert!(unit.contains("requiredBy = [ \"k3s.service\" ];"), "{unit}");
    let alkaid = fs::read_to_string(p.path("generated/alkaid/postgresql.nix")).unwrap();
    assert!(alkaid.contains("\"kafka-password:/var/lib/secrets/postgresql-kafka\""), "{alkaid}");

    // No value anywhere: generated/, the outputs, the repository's snapshots.
    let values = [p.show("k3s-token"), p.show("kafka-db")].map(|v| String::from_utf8(v).unwrap());
    let mut files = Vec::new();
    collect(&p.path("generated"), &mut files);
    collect(&repo().join("tests/it/snapshots"), &mut files);
    collect(&repo().join("generated"), &mut files);
    assert!(files.len() > 30, "{}", files.len());
    for v in &values {
        for f in &files {
            assert!(!fs::read(f).unwrap().windows(v.len()).any(|w| w == v.as_bytes()), "{} holds a secret value", f.display());
        }
        for o in &outputs {
            assert!(!o.contains(v.as_str()), "a value in an output:\n{o}");
        }
    }
    // The ciphertext is all the repository holds: secrets/ has only .age files.
    let names: Vec<String> =
        fs::read_dir(p.path("secrets")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| n.ends_with(".age")) && names.len() == 2, "{names:?}");
    let meta = fs::metadata(p.path("secrets/kafka-db.age")).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.permissions().mode() & 0o777), (0o644, 0o644));
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}
