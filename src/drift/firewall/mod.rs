//! Firewall drift: the host's `nft -j list ruleset` against the table `iac render` produces for
//! it, compared as values, not as text.
//!
//! Both sides go through the kernel and nft's own normalisation: the rendered `nftables.nft`
//! is loaded into a scratch network namespace by the local `nft` and listed as JSON there
//! ([`expected_listing`]), the live side is the host's listing. Then `ruleset` parses both with
//! the `nftables` crate's typed schema, and `compare` reports missing and extra rules (in
//! order), set elements (as address ranges), chains and changed policies, and other tables'
//! base chains that drop on the input or forward hook. `show` prints rules for people,
//! `elements` holds a set's elements as ranges.
//!
//! The two `nft` versions may differ (the host's is NixOS's, this machine's its distribution's):
//! the schema ignores keys it does not know, and an object it cannot read is kept raw
//! (`ruleset`), so a newer host reads as far as the schema goes instead of failing.

pub mod compare;
mod elements;
pub mod ruleset;
mod show;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::report::PartReport;

/// The local programs the firewall part runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub unshare: PathBuf,
    pub nft: PathBuf,
    /// Whether iac runs as root (then `unshare -n` suffices; otherwise a user namespace too).
    pub local_root: bool,
}

impl Tools {
    /// `unshare` and `nft` from PATH.
    pub fn locate() -> Result<Self, super::DriftError> {
        let find = |tool: &'static str, hint: &'static str| which::which(tool).map_err(|_| super::DriftError::ToolMissing { tool, hint });
        Ok(Tools {
            unshare: find("unshare", "install util-linux")?,
            nft: find("nft", "install nftables (Debian: apt-get install nftables)")?,
            local_root: rustix::process::geteuid().is_root(),
        })
    }
}

/// Loads a ruleset file with the `nft` given as `$1` and lists iac's table, inside the scratch
/// namespace `unshare` made. Fixed text: the paths arrive as arguments.
const LOAD_AND_LIST: &str = r#""$1" -f "$2" && exec "$1" -j list table inet iac"#;

/// The rendered ruleset (`nftables.nft`'s text) as the local kernel holds it, listed as JSON:
/// loaded in a private network namespace, so this machine's firewall is never touched and no
/// privilege is needed where user namespaces are allowed.
pub fn expected_listing(tools: &Tools, nftables_nft: &str) -> Result<String, String> {
    let mut file = tempfile::Builder::new().prefix("iac-drift-").suffix(".nft").tempfile().map_err(|e| format!("a temporary file: {e}"))?;
    file.write_all(nftables_nft.as_bytes()).map_err(|e| format!("writing {}: {e}", file.path().display()))?;
    let out = Command::new(&tools.unshare)
        .arg(if tools.local_root { "-n" } else { "-rn" })
        .args(["/bin/sh", "-c", LOAD_AND_LIST, "iac-drift-expected"])
        .arg(&tools.nft)
        .arg(file.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tools.unshare.display()))?;
    if !out.status.success() {
        return Err(format!(
            "the local nft could not load and list the rendered ruleset in a scratch network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("the local nft's listing is not UTF-8: {e}"))
}

/// This machine's whole ruleset (`--local`: the kernel of the network namespace iac runs in).
pub fn local_listing(tools: &Tools) -> Result<String, String> {
    let out = Command::new(&tools.nft)
        .args(["-j", "list", "ruleset"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tools.nft.display()))?;
    if !out.status.success() {
        return Err(format!("`nft -j list ruleset` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("nft's listing is not UTF-8: {e}"))
}

/// Compare the expected listing (of the rendered table) with the live one (of the whole
/// ruleset).
pub fn check(expected: &str, live: &str) -> PartReport {
    let want = match ruleset::parse(expected) {
        Ok(r) => r,
        Err(e) => return PartReport::failed(format!("the listing of the rendered ruleset: {e}")),
    };
    let have = match ruleset::parse(live) {
        Ok(r) => r,
        Err(e) => return PartReport::failed(format!("the host's listing: {e}")),
    };
    PartReport::compared(compare::compare(&want, &have))
}
