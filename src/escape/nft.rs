//! nftables script text: quoted strings (`comment "…"`, `iifname "lo"`) and `#` comment lines.
//!
//! nft's scanner (src/scanner.l) reads a quoted string as `\"[^"]*\"`: there is no escape, so
//! a `"` cannot be held and is refused. A rule comment holds at most 128 bytes
//! (NFTNL_UDATA_COMMENT_MAXLEN; nft rejects longer ones). A `#` comment runs to the end of the
//! line, so a line break would end it and turn the rest into rules: refused.

use super::{Refused, shown};

/// `nft` refuses rule comments longer than this many bytes.
pub const COMMENT_MAX: usize = 128;

/// A quoted nft string (with its quotes) that nft reads back as `raw`.
pub fn quoted(raw: &str) -> Result<String, Refused> {
    if let Some(c) = raw.chars().find(|c| *c == '"' || c.is_control()) {
        return Err(Refused::new(format!("{} cannot be held by an nftables quoted string", shown(c))));
    }
    Ok(format!("\"{raw}\""))
}

/// `comment "…"` text of a rule: a quoted string of at most `COMMENT_MAX` bytes.
pub fn comment(raw: &str) -> Result<String, Refused> {
    if raw.len() > COMMENT_MAX {
        return Err(Refused::new(format!("{} bytes, more than the {COMMENT_MAX} nftables keeps in a rule comment", raw.len())));
    }
    quoted(raw)
}

/// A `# …` comment line of an nft script that nft ignores whatever `raw` holds.
pub fn comment_line(raw: &str) -> Result<String, Refused> {
    if let Some(c) = raw.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
        return Err(Refused::new(format!("{} would end an nftables comment line", shown(c))));
    }
    Ok(format!("# {raw}"))
}
