//! One host's deploy, and the bounded pool that runs several at once.
//!
//! A host's failure is an [`Outcome`], not an error: the other hosts go on, and the summary
//! reports every one of them.
//!
//! Why this file is long: one host's sequence (check, build, compare, copy, switch, confirm,
//! settle) reads top to bottom in one place, with the few helpers it runs commands through.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::model::{Delivery, Host, SecretFile, Site};

use super::plan::{Cmd, Plan, PushedFile, SWITCH_LIMIT};
use super::progress::View;
use super::remote::{self, Status};
use super::store_path::StorePath;
use super::{DeployError, lockout};

/// How far a host got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stopped at a check (SSH, reading the running system).
    Check,
    Build,
    /// Writing the host's pushed secrets.
    Secrets,
    /// Already runs the built system.
    Skip,
    Switch,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Build => "build",
            Self::Secrets => "secrets",
            Self::Skip => "skip",
            Self::Switch => "switch",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostResult {
    Ok(String),
    Failed(String),
    /// The target went back to the system it ran before.
    RolledBack(String),
    /// Switched, but iac could neither confirm nor learn the outcome: unless the host is
    /// lost, its guard rolls it back by itself.
    Unconfirmed(String),
}

impl HostResult {
    pub fn text(&self) -> String {
        match self {
            Self::Ok(s) => format!("ok: {s}"),
            Self::Failed(s) => format!("FAILED: {s}"),
            Self::RolledBack(s) => format!("ROLLED BACK: {s}"),
            Self::Unconfirmed(s) => format!("UNCONFIRMED: {s}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    pub result: HostResult,
    pub elapsed: Duration,
    /// For people: the command that failed and what it said.
    pub detail: String,
    /// For people: what the host went on despite (`--allow-lockout`, an SSH path iac could
    /// not judge, a stale secret file it could not remove).
    pub warnings: Vec<String>,
    /// The stale secret files removed from the host after its new system was confirmed
    /// (paths only).
    pub removed: Vec<String>,
}

/// What a host's run reports while it goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Progress<'a> {
    /// A new step ("building", "switching").
    Step(&'a str),
    /// The latest line of a long step's output: shown in the live view only.
    Note(&'a str),
    /// Something the host goes on despite: shown as a step, and kept for the summary.
    Warning(&'a str),
}

/// The decrypted values of the secrets `iac deploy` pushes, by secret name: decrypted once,
/// before any host is touched, and only ever written to an ssh's standard input.
pub type Values = BTreeMap<String, Vec<u8>>;

/// Deploy `hosts` with at most `jobs` at a time; outcomes in the order of `hosts`.
pub(super) fn run_all(
    plan: &Plan,
    site: &Site,
    hosts: &[&Host],
    jobs: usize,
    values: &Values,
    lockout: &lockout::Check,
    view: &dyn View,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; hosts.len()];
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Event)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, hosts.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(host) = hosts.get(i) else { break };
                    let outcome = deploy(plan, site, host, values, lockout, &|p: Progress<'_>| {
                        let _ = tx.send((
                            i,
                            match p {
                                Progress::Step(s) => Event::Step(s.to_string()),
                                Progress::Note(s) => Event::Note(s.to_string()),
                                Progress::Warning(s) => Event::Step(format!("warning: {s}")),
                            },
                        ));
                    });
                    let _ = tx.send((i, Event::Done(outcome)));
                }
            });
        }
        drop(tx);
        for (i, event) in rx {
            match event {
                Event::Step(step) => view.step(i, &step),
                Event::Note(note) => view.note(i, &note),
                Event::Done(outcome) => {
                    view.done(i, &outcome);
                    if let Some(slot) = outcomes.get_mut(i) {
                        *slot = Some(outcome);
                    }
                }
            }
        }
    });
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| Outcome {
                action: Action::Check,
                result: HostResult::Failed("the worker stopped without a result".into()),
                elapsed: Duration::ZERO,
                detail: String::new(),
                warnings: Vec::new(),
                removed: Vec::new(),
            })
        })
        .collect()
}

enum Event {
    Step(String),
    Note(String),
    Done(Outcome),
}

/// What ended a host's sequence early.
struct Stop {
    action: Action,
    result: HostResult,
    detail: String,
}

fn failed(action: Action, result: impl Into<String>, detail: impl Into<String>) -> Stop {
    Stop { action, result: HostResult::Failed(result.into()), detail: detail.into() }
}

impl From<DeployError> for Stop {
    fn from(e: DeployError) -> Self {
        failed(Action::Check, "cannot run a command", e.to_string())
    }
}

/// One host, start to end.
pub(super) fn deploy(
    plan: &Plan,
    site: &Site,
    host: &Host,
    values: &Values,
    lockout: &lockout::Check,
    progress: &dyn Fn(Progress<'_>),
) -> Outcome {
    let start = Instant::now();
    let warnings = RefCell::new(Vec::new());
    let keep = |p: Progress<'_>| {
        if let Progress::Warning(w) = p {
            warnings.borrow_mut().push(w.to_string());
        }
        progress(p);
    };
    let (stop, removed) = match sequence(plan, site, host, values, lockout, &keep) {
        // Only now, with the new system confirmed (or none needed), may the old files go.
        Ok(s) => {
            let removed = prune(plan, site, host, &keep);
            (s, removed)
        }
        Err(s) => (s, Vec::new()),
    };
    Outcome {
        action: stop.action,
        result: stop.result,
        elapsed: start.elapsed(),
        detail: stop.detail,
        warnings: warnings.into_inner(),
        removed,
    }
}

/// Remove the secret files iac pushed to `host` earlier that it no longer reads
/// (`remote::PRUNE`), once its new system is confirmed: not before, since a rollback may bring
/// back a system that reads them. Every host gets it, also one that now reads no pushed secret
/// (it may have been given a host key, or lost its last consumer). What could not be removed is
/// a warning, not a failure: the host runs its confirmed system, and the record keeps such a
/// file for the next deploy. The removed paths, in the record's order.
fn prune(plan: &Plan, site: &Site, host: &Host, progress: &dyn Fn(Progress<'_>)) -> Vec<String> {
    let files = site.secret_files(host);
    let pushed: Vec<&str> = files.iter().filter(|f| f.delivery == Delivery::Push).map(|f| f.path.as_str()).collect();
    let kept: Vec<&str> = files.iter().filter(|f| f.delivery != Delivery::Push).map(|f| f.path.as_str()).collect();
    progress(Progress::Step("removing the secret files it no longer reads"));
    let warn = |w: String| progress(Progress::Warning(&w));
    let cmd = match plan.prune_secrets(host, &pushed, &kept) {
        Ok(cmd) => cmd,
        Err(e) => {
            warn(format!("stale secret files not removed: {e}"));
            return Vec::new();
        }
    };
    let out = match exec(&cmd) {
        Ok(out) => out,
        Err(e) => {
            warn(format!("stale secret files not removed: {e}"));
            return Vec::new();
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let (removed, other) = remote::pruned(&text);
    for path in &removed {
        progress(Progress::Step(&format!("removed the stale secret file {path}")));
    }
    if !out.status.success() || !other.is_empty() {
        let said = if other.is_empty() { last_line(&out.stderr) } else { other.join("; ") };
        let again = if out.status.success() { "" } else { "; the next deploy tries again" };
        warn(format!("stale secret files: {said}{again}"));
    }
    removed.into_iter().map(String::from).collect()
}

fn sequence(
    plan: &Plan,
    site: &Site,
    host: &Host,
    values: &Values,
    lockout: &lockout::Check,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Stop, Stop> {
    let say = &|step: &str| progress(Progress::Step(step));
    let note = &|line: &str| progress(Progress::Note(line));
    say("checking SSH, the host key, the secrets' directories and the new firewall's SSH path");
    let files = site.secret_files(host);
    let dirs = secret_dirs(&files);
    let preflight = plan.preflight(host, &dirs)?;
    let out = exec(&preflight)?;
    if out.status.code() == Some(255) {
        return Err(failed(Action::Check, format!("unreachable over SSH ({})", last_line(&out.stderr)), report(&preflight, &out)));
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(refusal) = remote::sudo_refusal(&stderr).filter(|_| host.ssh_user != "root") {
            return Err(failed(Action::Check, remote::sudo_refused(&host.ssh_user, &host.name, refusal), report(&preflight, &out)));
        }
        return Err(failed(
            Action::Check,
            format!("the preflight on the host failed ({})", last_line(&out.stderr)),
            report(&preflight, &out),
        ));
    }
    let mut subjects: Vec<&str> = Vec::new();
    if host.host_key.is_some() {
        subjects.push(remote::HOST_KEY_PUB);
    }
    subjects.extend(dirs.iter().copied());
    let problems = remote::preflight_problems(&String::from_utf8_lossy(&out.stdout), &subjects);
    if !problems.is_empty() {
        let list = problems
            .iter()
            .map(|(what, subject)| {
                let why = if *subject == remote::HOST_KEY_PUB {
                    format!("hosts.{}.host_key: its secrets would not decrypt at activation", host.name)
                } else {
                    let names: Vec<&str> = files.iter().filter(|f| parent(&f.path) == *subject).map(|f| f.secret.as_str()).collect();
                    format!("where {} go{}", names.join(", "), if names.len() == 1 { "es" } else { "" })
                };
                format!("{what}: {subject} ({why})")
            })
            .collect::<Vec<_>>();
        return Err(failed(
            Action::Check,
            format!("not ready for its secrets: {}", list.join("; ")),
            format!(
                "declare the key `ssh-keyscan -t ed25519 {}` reports as host_key and run `iac secrets rekey`; a secrets \
                 directory must be owned by root and writable by root only",
                host.address
            ),
        ));
    }
    // Would the new ruleset admit this machine's next SSH connection (the confirmation's)?
    let reach = lockout::judge(site, &lockout.flows, host, remote::ssh_connection(&String::from_utf8_lossy(&out.stdout)));
    match reach.refusal(host) {
        Some(refusal) if !lockout.allow => {
            return Err(failed(Action::Check, refusal, reach.hint(site, &lockout.flows, host)));
        }
        _ => {
            if let Some(warning) = reach.warning(host, plan.rollback) {
                progress(Progress::Warning(&warning));
            }
        }
    }

    say("building");
    let new = build(plan, host, note)?;

    let pushed: Vec<&SecretFile> = files.iter().filter(|f| f.delivery == Delivery::Push).collect();
    if !pushed.is_empty() {
        say(&format!("writing {} secret(s) over SSH", pushed.len()));
        push(plan, host, &pushed, values)?;
    }

    say("reading the running system");
    let current = plan.current_system(host)?;
    let out = exec(&current)?;
    if !out.status.success() {
        return Err(failed(Action::Check, "cannot read /run/current-system", report(&current, &out)));
    }
    let prev = StorePath::parse(String::from_utf8_lossy(&out.stdout).trim())
        .map_err(|e| failed(Action::Check, "/run/current-system is not a store path", e.to_string()))?;
    if new == prev {
        return Ok(Stop { action: Action::Skip, result: HostResult::Ok("up to date".into()), detail: new.to_string() });
    }

    say("copying the closure");
    let copy = match &plan.build_host {
        None => plan.copy(host, &new),
        Some(builder) => plan.copy_from_builder(builder, host, &new)?,
    };
    let out = exec(&copy)?;
    if !out.status.success() {
        return Err(failed(Action::Switch, "copying the closure failed (nothing changed)", report(&copy, &out)));
    }

    say("switching");
    let activate = plan.activate(host, &new, &prev)?;
    let out = exec(&activate)?;
    // A lost connection: the guard may have started all the same, and waiting tells.
    if !out.status.success() && !connection_lost(out.status) {
        return Err(failed(Action::Switch, "could not start the activation (nothing changed)", report(&activate, &out)));
    }
    let deadline = Instant::now() + SWITCH_LIMIT + plan.settle_limit();
    let status = match settle(plan, host, false, deadline, say) {
        Ok(status) => status,
        // The guard runs on without us: unless something confirms, it rolls back.
        Err(lost) if plan.rollback => return Err(unconfirmed(plan, lost.detail)),
        Err(lost) => return Err(lost),
    };
    if status != Status::Switched {
        return finish(status, "", &new);
    }

    say("confirming over a new SSH connection");
    let confirm = plan.confirm(host)?;
    let out = exec(&confirm)?;
    let answer = if out.status.success() { Status::parse(&String::from_utf8_lossy(&out.stdout)) } else { Status::Missing };
    match answer {
        Status::Confirmed | Status::RolledBack(_) | Status::RollbackFailed(_) => finish(answer, "", &new),
        // Confirmed; the target still writes the boot entry: wait for its verdict.
        Status::Committing => match settle(plan, host, true, Instant::now() + plan.settle_limit(), say) {
            Ok(status) => finish(status, "", &new),
            Err(lost) => Err(unconfirmed(plan, lost.detail)),
        },
        _ => {
            let why = format!("the confirmation failed: {}", report(&confirm, &out));
            say("confirmation failed; waiting for the host to roll back");
            let deadline = Instant::now() + plan.settle_limit();
            match settle(plan, host, true, deadline, say) {
                Ok(status) => finish(status, &why, &new),
                Err(lost) => Err(unconfirmed(plan, format!("{why}\n{}", lost.detail))),
            }
        }
    }
}

/// The host was switched (or may have been) and iac lost it before any verdict.
fn unconfirmed(plan: &Plan, detail: String) -> Stop {
    Stop {
        action: Action::Switch,
        result: HostResult::Unconfirmed(format!(
            "no confirmation; the host rolls back by itself {}s after its switch",
            plan.confirm_timeout.as_secs()
        )),
        detail,
    }
}

/// Turn a settled status into the host's outcome.
fn finish(status: Status, why: &str, new: &StorePath) -> Result<Stop, Stop> {
    let detail = |more: &str| [why, more].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join("\n");
    let stop = |result| Stop { action: Action::Switch, result, detail: detail("") };
    match status {
        Status::Confirmed => {
            Ok(Stop { action: Action::Switch, result: HostResult::Ok("switched, confirmed".into()), detail: new.to_string() })
        }
        Status::Done => {
            Ok(Stop { action: Action::Switch, result: HostResult::Ok("switched (no rollback guard)".into()), detail: new.to_string() })
        }
        Status::RolledBack(d) => Err(stop(HostResult::RolledBack(d))),
        Status::RollbackFailed(d) => Err(stop(HostResult::Failed(format!("rollback failed after: {d}")))),
        Status::Failed(d) => Err(stop(HostResult::Failed(d))),
        Status::Abandoned(d) => Err(stop(HostResult::Failed(d))),
        other => Err(Stop {
            action: Action::Switch,
            result: HostResult::Failed("the target reported no settled status".into()),
            detail: detail(&format!("last status: {other:?}")),
        }),
    }
}

/// Wait on the target until the guard's status settles, opening a new connection whenever
/// one drops (a firewall change may cut it) until `deadline`.
fn settle(plan: &Plan, host: &Host, through_switched: bool, deadline: Instant, say: &dyn Fn(&str)) -> Result<Status, Stop> {
    let mut first = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = if first && !through_switched { SWITCH_LIMIT.min(left) } else { left };
        first = false;
        let wait = plan.wait(host, limit, through_switched)?;
        let out = exec(&wait)?;
        if out.status.success() {
            return Ok(Status::parse(&String::from_utf8_lossy(&out.stdout)));
        }
        if !connection_lost(out.status) {
            return Err(failed(Action::Switch, "waiting for the switch failed", report(&wait, &out)));
        }
        if Instant::now() + Duration::from_secs(2) >= deadline {
            return Err(failed(Action::Switch, "lost the host during the switch", report(&wait, &out)));
        }
        say("connection lost; reconnecting");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Whether ssh lost the host, rather than the remote command failing: ssh's own exit status 255
/// (it could not connect, or the connection dropped), or ssh killed by a signal, its connection
/// gone with it. Either way what runs on the host is unknown and goes on without us (the guard
/// is a unit, not a child of the session), so only a new connection can tell. Before this
/// counted a killed ssh, iac gave up on a host it could still reach (tests/it/deploy_e2e.rs, case
/// 3: reported `UNCONFIRMED` while the activation was still running).
fn connection_lost(status: ExitStatus) -> bool {
    status.code() == Some(255) || status.signal().is_some()
}

/// Build the host's system, here or on `--build-host`; its store path comes from the build's
/// output (a remote build leaves no `result` link here, and a local one makes none).
fn build(plan: &Plan, host: &Host, note: &dyn Fn(&str)) -> Result<StorePath, Stop> {
    let built = match &plan.build_host {
        None => {
            let build = plan.build(host);
            let out = exec_streaming(&build, note)?;
            if !out.status.success() {
                return Err(failed(Action::Build, "nix build failed", report(&build, &out)));
            }
            out
        }
        Some(builder) => {
            let eval = plan.eval_drv(host);
            let out = exec_streaming(&eval, note)?;
            if !out.status.success() {
                return Err(failed(Action::Build, "evaluating the system failed", report(&eval, &out)));
            }
            let drv = StorePath::parse(last_line(&out.stdout).as_str())
                .map_err(|e| failed(Action::Build, "nix eval did not print a derivation", e.to_string()))?;
            let copy = plan.copy_drv(builder, &drv);
            let out = exec_streaming(&copy, note)?;
            if !out.status.success() {
                return Err(failed(Action::Build, format!("copying the derivation to {builder} failed"), report(&copy, &out)));
            }
            let build = plan.build_remote(builder, &drv)?;
            let out = exec_streaming(&build, note)?;
            if !out.status.success() {
                return Err(failed(Action::Build, format!("nix build on {builder} failed"), report(&build, &out)));
            }
            out
        }
    };
    StorePath::parse(last_line(&built.stdout).as_str())
        .map_err(|e| failed(Action::Build, "the build did not print a store path", e.to_string()))
}

/// The directories `files` go to, each once, in order.
fn secret_dirs(files: &[SecretFile]) -> Vec<&str> {
    let mut dirs: Vec<&str> = Vec::new();
    for f in files {
        let d = parent(&f.path);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Write the host's pushed secrets before anything of the new system reaches it: the values on
/// the ssh's standard input, never on a command line or in a message.
fn push(plan: &Plan, host: &Host, files: &[&SecretFile], values: &Values) -> Result<(), Stop> {
    let mut input = Vec::new();
    let mut specs = Vec::new();
    for f in files {
        let value = values.get(&f.secret).ok_or_else(|| {
            failed(Action::Secrets, format!("secret `{}` was not decrypted before the deploy", f.secret), "an iac bug: please report it")
        })?;
        input.extend_from_slice(value);
        specs.push(PushedFile { path: f.path.clone(), owner: f.owner.clone(), group: f.group.clone(), mode: f.mode, len: value.len() });
    }
    let cmd = plan.push_secrets(host, &specs)?;
    let out = exec_input(&cmd, &input)?;
    if out.status.code() == Some(255) {
        return Err(failed(
            Action::Secrets,
            format!("lost the host while writing its secrets ({})", last_line(&out.stderr)),
            report(&cmd, &out),
        ));
    }
    let paths: Vec<&str> = std::iter::once(remote::PUSHED_RECORD).chain(files.iter().map(|f| f.path.as_str())).collect();
    let problems = remote::preflight_problems(&String::from_utf8_lossy(&out.stdout), &paths);
    if !out.status.success() || !problems.is_empty() {
        let list = problems.iter().map(|(what, path)| format!("{what}: {path}")).collect::<Vec<_>>().join("; ");
        return Err(failed(Action::Secrets, format!("writing the secrets failed (nothing switched): {list}"), report(&cmd, &out)));
    }
    Ok(())
}

/// Run `cmd` with `input` on its standard input.
fn exec_input(cmd: &Cmd, input: &[u8]) -> Result<Output, DeployError> {
    let spawn_err = |source| DeployError::Spawn { cmd: cmd.display(), source };
    let mut child = cmd.to_command().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A child that exits early closes the pipe: its exit status and output tell why.
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().map_err(spawn_err)
}

fn exec(cmd: &Cmd) -> Result<Output, DeployError> {
    cmd.to_command().stdin(Stdio::null()).output().map_err(|source| DeployError::Spawn { cmd: cmd.display(), source })
}

/// Run `cmd`, passing each line it prints on stderr (Nix's build log) to `note` as it comes,
/// and keeping all of it for the report.
fn exec_streaming(cmd: &Cmd, note: &dyn Fn(&str)) -> Result<Output, DeployError> {
    let spawn_err = |source| DeployError::Spawn { cmd: cmd.display(), source };
    let mut child = cmd.to_command().stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(spawn_err)?;
    let stdout = child.stdout.take();
    let collect = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut out) = stdout {
            let _ = out.read_to_end(&mut buf);
        }
        buf
    });
    let mut stderr = Vec::new();
    if let Some(err) = child.stderr.take() {
        let mut reader = BufReader::new(err);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).map_err(spawn_err)? > 0 {
            let text = String::from_utf8_lossy(&line);
            if !text.trim().is_empty() {
                note(text.trim());
            }
            stderr.append(&mut line);
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    let stdout = collect.join().unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no message").to_string()
}

/// The command and the end of what it printed, for the summary's details.
fn report(cmd: &Cmd, out: &Output) -> String {
    let code = out.status.code().map_or_else(|| "a signal".to_string(), |c| format!("exit {c}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("$ {}\n({code})\n{tail}", cmd.show()).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_ssh_is_a_lost_connection_like_its_own_failure() {
        // Wait statuses as waitpid reports them: exit code in the second byte, or a signal.
        assert!(connection_lost(ExitStatus::from_raw(255 << 8)));
        assert!(connection_lost(ExitStatus::from_raw(9))); // SIGKILL
        assert!(!connection_lost(ExitStatus::from_raw(0)));
        assert!(!connection_lost(ExitStatus::from_raw(1 << 8)));
        assert!(!connection_lost(ExitStatus::from_raw(3 << 8)));
    }
}
