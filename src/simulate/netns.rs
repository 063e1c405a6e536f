//! The process and namespace layer: the sandbox the whole simulation lives in, `ip netns`
//! namespaces inside it, commands run in them, and sockets opened in them.
//!
//! Safety comes in layers. `iac simulate` re-executes itself under `unshare` in an empty
//! network namespace (plus a user namespace when not root) and refuses to go on in any network
//! namespace that has more than `lo`. It then makes a mount namespace of its own, in-process,
//! and mounts a fresh tmpfs on `/run`: every `ip netns add` lands in that private `/run/netns`,
//! invisible to the host, and the kernel destroys all of it when the process ends, however it
//! ends (even SIGKILL). Finally a [`Guard`] deletes the namespaces it created on return, on
//! error and on SIGINT/SIGTERM, so an orderly exit leaves nothing even inside the sandbox.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::SimulateError;
use crate::reporter::Reporter;

/// Set in the environment of the re-executed process: we are inside the sandbox.
pub const INSIDE_ENV: &str = "IAC_SIMULATE_SANDBOX";

/// Replace this process with itself under `unshare` (private net + mount namespaces, and a
/// user namespace when not root). Returns only on failure.
pub fn enter_sandbox() -> SimulateError {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return SimulateError::Io { what: "locating the iac executable".into(), source: e },
    };
    let unshare = match which::which("unshare") {
        Ok(p) => p,
        Err(_) => return SimulateError::Sandbox("`unshare` (util-linux) is not on PATH".into()),
    };
    let mut cmd = Command::new(unshare);
    cmd.args(sandbox_args(rustix::process::geteuid().is_root()));
    cmd.arg(exe);
    cmd.args(std::env::args_os().skip(1));
    cmd.env(INSIDE_ENV, "1");
    let e = cmd.exec();
    SimulateError::Sandbox(format!("cannot run unshare: {e}"))
}

/// `unshare` options: root needs no user namespace (and CI containers may forbid one);
/// everyone else maps themselves to root in a fresh user namespace that owns everything.
pub fn sandbox_args(is_root: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if !is_root {
        args.extend(["--user", "--map-root-user"].map(OsString::from));
    }
    args.extend(["--net", "--mount", "--propagation", "private", "--"].map(OsString::from));
    args
}

pub fn inside_sandbox() -> bool {
    std::env::var_os(INSIDE_ENV).is_some()
}

/// Refuse to go on unless this process really is in a fresh network namespace (nothing but
/// `lo`): the environment variable alone must never put the simulation in the host's network.
pub fn verify_sandbox() -> Result<(), SimulateError> {
    let dev = std::fs::read_to_string("/proc/self/net/dev")
        .map_err(|source| SimulateError::Io { what: "reading /proc/self/net/dev".into(), source })?;
    let links: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    if links != ["lo"] {
        return Err(SimulateError::Sandbox(format!("{INSIDE_ENV} is set but this network namespace has links {links:?}; refusing")));
    }
    Ok(())
}

/// A mount namespace of our own (made here, whatever the environment says), private from `/`
/// down, with a fresh tmpfs on /run: `ip netns` keeps its bind mounts and the `/run/netns`
/// directory there, out of the host's file system, and the kernel drops them with us.
/// Must run before any other thread exists.
pub fn private_run() -> Result<(), SimulateError> {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
    use rustix::thread::{UnshareFlags, unshare_unsafe};
    let fail = |what: &str, e: rustix::io::Errno| SimulateError::Sandbox(format!("{what}: {e}"));
    // SAFETY: called while the process is single-threaded (before the signal watcher and any
    // probe thread start), so no other thread's view of the file system changes under it.
    unsafe { unshare_unsafe(UnshareFlags::NEWNS) }.map_err(|e| fail("cannot create a private mount namespace", e))?;
    mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC).map_err(|e| fail("cannot make / private", e))?;
    mount("iac-simulate", "/run", "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, Some(c"mode=0755"))
        .map_err(|e| fail("cannot mount a private tmpfs on /run", e))
}

/// Run a command to completion; a non-zero exit is an error carrying its stderr.
pub fn run(program: &str, args: &[String]) -> Result<String, SimulateError> {
    run_with_input(program, args, None)
}

pub fn run_with_input(program: &str, args: &[String], input: Option<&str>) -> Result<String, SimulateError> {
    let what = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SimulateError::Io { what: what(), source })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(|source| SimulateError::Io { what: what(), source })?;
    }
    let out = child.wait_with_output().map_err(|source| SimulateError::Io { what: what(), source })?;
    if !out.status.success() {
        return Err(SimulateError::Command { what: what(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One network namespace, by its `ip netns` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns(pub String);

impl Netns {
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }

    /// `ip -n NS ARGS…`
    pub fn ip(&self, args: &[&str]) -> Result<String, SimulateError> {
        let mut v = vec!["-n".to_string(), self.0.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        run("ip", &v)
    }

    /// `ip netns exec NS PROGRAM ARGS…`, optionally fed `input` on stdin.
    pub fn exec(&self, program: &str, args: &[&str], input: Option<&str>) -> Result<String, SimulateError> {
        let mut v = vec!["netns".to_string(), "exec".into(), self.0.clone(), program.into()];
        v.extend(args.iter().map(|s| s.to_string()));
        run_with_input("ip", &v, input)
    }

    /// Run `f` on a fresh thread that has entered this namespace: sockets it opens belong to
    /// the namespace for their whole life, whichever thread uses them later.
    pub fn within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::thread::JoinHandle<std::io::Result<T>> {
        let path = self.path();
        thread::spawn(move || {
            let file = File::open(&path)?;
            move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))?;
            f()
        })
    }

    /// Like [`Netns::within`], waiting for the result.
    pub fn run_within<T: Send + 'static>(&self, f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, SimulateError> {
        let what = format!("working in namespace {}", self.0);
        match self.within(f).join() {
            Ok(r) => r.map_err(|source| SimulateError::Io { what, source }),
            Err(_) => Err(SimulateError::Sandbox(format!("{what}: thread panicked"))),
        }
    }

    /// Write a sysctl of this namespace (`/proc/sys/net/...` resolves to the opener's netns).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), SimulateError> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let value = value.to_string();
        self.run_within(move || std::fs::write(&path, value))
    }
}

/// Deletes every namespace it created, once: on drop (normal return, error) and from the
/// signal watcher (SIGINT/SIGTERM).
#[derive(Default)]
pub struct Guard {
    created: Arc<Mutex<Vec<Netns>>>,
    /// Directories removed with the namespaces (the run's temporary directory).
    dirs: Arc<Mutex<Vec<PathBuf>>>,
    interrupted: Arc<std::sync::atomic::AtomicBool>,
}

impl Guard {
    pub fn add(&self, name: &str) -> Result<Netns, SimulateError> {
        let ns = Netns(name.to_string());
        // Register first: a half-created namespace is still ours to delete.
        if let Ok(mut v) = self.created.lock() {
            v.push(ns.clone());
        }
        run("ip", &["netns".into(), "add".into(), name.into()])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Delete every namespace created so far; returns how many were deleted.
    pub fn cleanup(&self) -> usize {
        cleanup_list(&self.created)
    }

    /// Remove `dir` (recursively) when interrupted; on a normal return its owner removes it.
    pub fn remove_on_exit(&self, dir: &std::path::Path) {
        if let Ok(mut v) = self.dirs.lock() {
            v.push(dir.to_path_buf());
        }
    }

    /// Whether SIGINT or SIGTERM arrived: the watcher then owns the exit.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// On SIGINT or SIGTERM: clean up, say so through `report`, exit 130/143.
    pub fn watch_signals(&self, report: &'static dyn Reporter) -> Result<(), SimulateError> {
        let created = Arc::clone(&self.created);
        let dirs = Arc::clone(&self.dirs);
        let interrupted = Arc::clone(&self.interrupted);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| SimulateError::Io { what: "starting the signal watcher".into(), source })?;
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                    let _ = tx.send(false);
                    return;
                };
                let _ = tx.send(true);
                let code = tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                };
                interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                let n = cleanup_list(&created);
                if let Ok(v) = dirs.lock() {
                    for d in v.iter() {
                        let _ = std::fs::remove_dir_all(d);
                    }
                }
                report.progress(&format!("simulate: interrupted; deleted {n} namespaces"));
                std::process::exit(code);
            });
        });
        match rx.recv() {
            Ok(true) => Ok(()),
            _ => Err(SimulateError::Sandbox("cannot install the SIGINT/SIGTERM handlers".into())),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn cleanup_list(created: &Mutex<Vec<Netns>>) -> usize {
    let list = match created.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(_) => return 0,
    };
    let mut n = 0;
    for ns in list.iter().rev() {
        if run("ip", &["netns".into(), "delete".into(), ns.0.clone()]).is_ok() {
            n += 1;
        }
    }
    n
}
