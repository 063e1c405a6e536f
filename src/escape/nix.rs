//! Nix string literals: double-quoted (`"…"`) and indented (`'' … ''`).
//!
//! The rules come from Nix's lexer (src/libexpr/lexer.l) and parser (`stripIndentation`):
//! - In a double-quoted string `\` escapes the next character, `${` starts an interpolation
//!   and a raw carriage return is normalised to a newline, so `"`, `\`, `$`, CR, LF and tab are
//!   all written as escapes.
//! - In an indented string `''$` is a literal `$`, `'''` a literal `''`, `''\X` the escape
//!   `\X`, and `''` ends the string. A literal `'` is only safe when the next character is
//!   neither `'` nor `$` (nor the start of an escape): `'` before `''${` would read as `'''`
//!   (a literal `''`) followed by a live interpolation, the injection of issue 13. So a `'` is
//!   written as `''\'` unless a plain character follows it, and `$` as `''$` before `{` or at
//!   the end of a run.
//! - Nix strips from every line of an indented string the smallest indentation (spaces) of its
//!   non-blank lines, drops a whitespace-only last line, and the opening `''` swallows the
//!   first newline. `indented` therefore writes every line at one fixed indentation and puts a
//!   value's own leading spaces into an interpolation `${"  "}`, which is never indentation.
//! - Nix strings cannot hold NUL: refused.

use super::{Refused, shown};

fn refuse_nul(raw: &str) -> Result<(), Refused> {
    if raw.contains('\0') { Err(Refused::new(format!("{} cannot be held by a Nix string", shown('\0')))) } else { Ok(()) }
}

/// A double-quoted Nix string literal (with its quotes) that evaluates to `raw`.
pub fn string(raw: &str) -> Result<String, Refused> {
    refuse_nul(raw)?;
    let mut out = String::with_capacity(raw.len() + 2);
    out.push('"');
    for c in raw.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// An indented Nix string literal (`''` … `''`) that evaluates to exactly `text`. Its lines
/// stand at `indent` spaces; when `text` ends with a newline the closing `''` stands on a line
/// of its own at `indent - 2`, as a person would write it.
pub fn indented(text: &str, indent: usize) -> Result<String, Refused> {
    refuse_nul(text)?;
    if text.is_empty() {
        return Ok("''''".into());
    }
    let pad = " ".repeat(indent);
    let mut out = String::with_capacity(text.len() + text.len() / 4 + 8);
    out.push_str("''\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        if i == last && line.is_empty() {
            // `text` ended with a newline: the closing line is blank and Nix drops it.
            out.push_str(&" ".repeat(indent.saturating_sub(2)));
            break;
        }
        if !line.is_empty() {
            out.push_str(&pad);
            let rest = line.trim_start_matches(' ');
            let lead = &line[..line.len() - rest.len()];
            if !lead.is_empty() {
                out.push_str("${");
                out.push_str(&string(lead)?);
                out.push('}');
            }
            // A line break follows every line but the last: it is a plain character.
            run(rest, (i != last).then_some('\n'), &mut out);
        }
        if i != last {
            out.push('\n');
        }
    }
    out.push_str("''");
    Ok(out)
}

/// One line's text (no newline) in indented-string syntax, `after` being the character that
/// follows it in the literal (`None`: the closing `''`); see the module comment.
fn run(text: &str, after: Option<char>, out: &mut String) {
    let plain = |c: Option<char>| c.is_some_and(|c| !matches!(c, '\'' | '$' | '\r'));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied().or(after);
        match c {
            '\'' if plain(next) => out.push('\''),
            '\'' => out.push_str("''\\'"),
            '$' if next.is_some_and(|n| n != '{') => out.push('$'),
            '$' => out.push_str("''$"),
            '\r' => out.push_str("''\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_quoted() {
        assert_eq!(string(r#"a"b\c${d}$e"#).unwrap(), r#""a\"b\\c\${d}\$e""#);
        assert!(string("a\0b").is_err());
    }

    #[test]
    fn indented_keeps_the_issue_13_payload_as_text() {
        let payload = "admin web UI '${builtins.substring 38 1 (builtins.toXML 1)}accept";
        let lit = indented(payload, 2).unwrap();
        // `'` becomes the escape `''\'`, then `${` becomes `''${`: both stay text.
        assert!(lit.contains("UI ''\\'''${builtins"), "{lit}");
    }

    #[test]
    fn indented_layout() {
        assert_eq!(indented("a\nb\n", 4).unwrap(), "''\n    a\n    b\n  ''");
        assert_eq!(indented("a\n\nb", 4).unwrap(), "''\n    a\n\n    b''");
        assert_eq!(indented("  a", 2).unwrap(), "''\n  ${\"  \"}a''");
        assert_eq!(indented("", 2).unwrap(), "''''");
        assert_eq!(indented("it's $HOME", 2).unwrap(), "''\n  it's $HOME''");
    }
}
