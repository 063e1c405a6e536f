//! A throwaway PostgreSQL server for tests: `initdb` + `pg_ctl` in a temporary directory on a
//! free loopback port, with scram-sha-256 password authentication over TCP, stopped and
//! removed afterwards.
//!
//! ```ignore
//! use crate::support::pg::PgServer;
//!
//! let pg = PgServer::shared();                  // one server per test process, cleaned up at exit
//! let db = pg.fresh_database("mytest");          // own role (with a password) and database
//! pg.psql(&db.name, "CREATE TABLE t (x int)");   // run SQL as the superuser
//! let cmd = db.apply_env(Command::new(...));     // PGHOST/PGPORT/PGUSER/PGDATABASE/PGPASSWORD
//!
//! let own = PgServer::builder()                  // a server of your own, stopped on drop
//!     .hba("hostssl all all 127.0.0.1/32 scram-sha-256\n")
//!     .conf("ssl = on")
//!     .file("server.crt", pem, 0o600)            // written into the data directory
//!     .start();
//! own.stop();                                    // pg_ctl stop -m fast, as an operator would
//! ```
//!
//! Binaries are looked for in `$PG_BINDIR`, then the newest `/usr/lib/postgresql/<v>/bin`
//! (where Debian puts them, off PATH), then PATH. `initdb` refuses to run as root, so when the
//! tests run as root (CI does) the server runs as `nobody`, which owns the temporary directory.
//! Every server also gets a small reaper process: when the test process exits, however it
//! exits, the reaper stops the server (SIGQUIT, immediate shutdown) and removes the directory.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const SUPERUSER: &str = "postgres";
pub const HOST: &str = "127.0.0.1";

pub struct PgServer {
    pub port: u16,
    /// The superuser's password (random per server).
    pub password: String,
    root: PathBuf,
    data: PathBuf,
    bindir: PathBuf,
    run_as: Option<(u32, u32)>,
    owned: bool,
}

/// A role and a database it owns, on some server.
#[derive(Debug, Clone)]
pub struct Db {
    pub name: String,
    pub user: String,
    pub password: String,
    pub port: u16,
}

impl Db {
    /// Point a command at this database: PG* variables set, ambient ones (and ~/.pgpass)
    /// cleared so the developer's environment cannot leak in.
    pub fn apply_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        clear_pg_env(cmd)
            .env("PGHOST", HOST)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.name)
            .env("PGPASSWORD", &self.password)
    }
}

/// Remove every libpq variable and point HOME at an empty directory (no ~/.pgpass, no default
/// admin identity), and drop `IAC_INVENTORY` and `IAC_IDENTITY`.
pub fn clear_pg_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("HOME", "/nonexistent-home-for-tests").env_remove("IAC_INVENTORY").env_remove("IAC_IDENTITY")
}

#[derive(Default)]
pub struct Builder {
    hba: Option<String>,
    conf: Vec<String>,
    files: Vec<(String, Vec<u8>, u32)>,
}

impl Builder {
    /// Replace pg_hba.conf (default: scram-sha-256 for local and 127.0.0.1/::1 connections).
    pub fn hba(mut self, text: &str) -> Self {
        self.hba = Some(text.to_owned());
        self
    }

    /// One more postgresql.conf line.
    pub fn conf(mut self, line: &str) -> Self {
        self.conf.push(line.to_owned());
        self
    }

    /// A file in the data directory (certificates, keys), owned by the server's user.
    pub fn file(mut self, name: &str, contents: &[u8], mode: u32) -> Self {
        self.files.push((name.to_owned(), contents.to_vec(), mode));
        self
    }

    pub fn start(self) -> PgServer {
        PgServer::start_with(self, true)
    }
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

impl PgServer {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// One server for the whole test binary (started on first use, never dropped: the reaper
    /// removes it when the process exits).
    pub fn shared() -> &'static PgServer {
        SHARED.get_or_init(|| PgServer::start_with(Builder::default(), false))
    }

    fn start_with(b: Builder, owned: bool) -> PgServer {
        let bindir = bindir();
        let run_as = if unsafe { libc::geteuid() } == 0 { Some(nobody()) } else { None };
        // As root, the server's user must reach the directory: /tmp is open to all, while
        // $TMPDIR might be under a private home.
        let parent = if run_as.is_some() { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let root = tempfile::Builder::new().prefix("iac-pg-").tempdir_in(parent).expect("temp dir").keep();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let data = root.join("data");
        let password = random_password();
        std::fs::write(root.join("pwfile"), format!("{password}\n")).expect("pwfile");
        chown_tree(&root, run_as);
        let mut server = PgServer { port: 0, password, root, data, bindir, run_as, owned };
        server.spawn_reaper();
        let out = server
            .as_server_user(&server.bindir.join("initdb"))
            .args(["-D"])
            .arg(&server.data)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", server.root.join("pwfile").display()))
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let hba = b.hba.unwrap_or_else(|| {
            "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n".to_owned()
        });
        server.write_data_file("pg_hba.conf", hba.as_bytes(), 0o600);
        for (name, contents, mode) in &b.files {
            server.write_data_file(name, contents, *mode);
        }
        let mut last_log = String::new();
        for _attempt in 0..5 {
            server.port = free_port();
            let mut conf = vec![
                format!("port = {}", server.port),
                format!("listen_addresses = '{HOST}'"),
                format!("unix_socket_directories = '{}'", server.root.display()),
                "fsync = off".into(),
                "synchronous_commit = off".into(),
                "full_page_writes = off".into(),
                "max_connections = 40".into(),
                "shared_buffers = 32MB".into(),
            ];
            conf.extend(b.conf.iter().cloned());
            server.write_data_file("postgresql.auto.conf", (conf.join("\n") + "\n").as_bytes(), 0o600);
            let log = server.root.join("server.log");
            let out = server
                .as_server_user(&server.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(&server.data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null())
                .output()
                .expect("run pg_ctl");
            if out.status.success() {
                return server;
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("PostgreSQL did not start:\n{last_log}");
    }

    /// Run a PostgreSQL program as the user that owns the data directory.
    fn as_server_user(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env_remove("PGDATA").stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", &self.root);
        }
        cmd
    }

    /// Write (or replace) a file in the data directory, owned by the server's user.
    pub fn write_data_file(&self, name: &str, contents: &[u8], mode: u32) {
        let path = self.data.join(name);
        std::fs::write(&path, contents).expect("write data file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown");
        }
    }

    /// Stop the server the way an operator does (`pg_ctl stop -m fast`: sessions are told
    /// "terminating connection due to administrator command" and closed). Only for a server of
    /// your own (`builder().start()`), never the shared one.
    pub fn stop(&self) {
        assert!(self.owned, "stop() on the shared server would break every other test");
        let out = self
            .as_server_user(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .expect("pg_ctl stop");
        assert!(out.status.success(), "stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A PostgreSQL client program (psql, pg_dump, ...) of the server's version.
    pub fn program(&self, name: &str) -> Command {
        let path = self.bindir.join(name);
        let mut cmd = Command::new(if path.exists() { path } else { PathBuf::from(name) });
        clear_pg_env(&mut cmd);
        cmd
    }

    /// Run SQL as the superuser in `database` with psql; panic with psql's message on error.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self.psql_output(database, sql);
        assert!(out.status.success(), "psql failed: {}\nSQL: {sql}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn psql_output(&self, database: &str, sql: &str) -> Output {
        self.program("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", HOST])
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", database, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .expect("run psql")
    }

    /// A new role (login, with a password) and a database it owns, named from `prefix`.
    pub fn fresh_database(&self, prefix: &str) -> Db {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}_{n}");
        let password = random_password();
        self.psql("postgres", &format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"));
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER {name}"));
        Db { name: name.clone(), user: name, password, port: self.port }
    }

    /// The reaper outlives this process by design: nobody waits for it (init adopts it).
    #[allow(clippy::zombie_processes)]
    fn spawn_reaper(&self) {
        let script = r#"
            while kill -0 "$1" 2>/dev/null && [ -d "$3" ]; do sleep 1; done
            if [ -f "$2/postmaster.pid" ]; then
                pid=$(head -n 1 "$2/postmaster.pid")
                kill -QUIT "$pid" 2>/dev/null
                i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
            fi
            rm -rf "$3""#;
        Command::new("sh")
            .args(["-c", script, "iac-pg-reaper"])
            .arg(std::process::id().to_string())
            .arg(&self.data)
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn reaper");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = self
            .as_server_user(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Where initdb and pg_ctl are.
fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    let initdb = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("initdb")).find(|p| p.exists()))
        .expect("initdb not found: apt-get install postgresql, or set PG_BINDIR");
    let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
    real.parent().expect("initdb's directory").to_path_buf()
}

/// uid and gid of `nobody`, from /etc/passwd.
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"nobody")).then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
        })
        .unwrap_or((65534, 65534))
}

fn chown_tree(path: &Path, run_as: Option<(u32, u32)>) {
    let Some((uid, gid)) = run_as else { return };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("read dir").flatten() {
            chown_tree(&e.path(), run_as);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind((HOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Letters and digits only (safe inside SQL quotes), from the kernel's random source.
pub fn random_password() -> String {
    let mut buf = [0u8; 18];
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("urandom");
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    buf.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect()
}
