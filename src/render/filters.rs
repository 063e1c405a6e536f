//! Escaping for values placed into Nix strings. Inventory values reach the generated Nix, so
//! a `"` or `${` in them must stay text, never become Nix syntax.

use std::fmt::Display;

/// Escape for a double-quoted Nix string; returns the value with its quotes.
#[askama::filter_fn]
pub fn nix_string(value: impl Display, _: &dyn askama::Values) -> askama::Result<String> {
    Ok(quote_nix(&value.to_string()))
}

/// Escape for the inside of a Nix indented string (`'' … ''`).
#[askama::filter_fn]
pub fn nix_indented(value: impl Display, _: &dyn askama::Values) -> askama::Result<String> {
    Ok(escape_indented(&value.to_string()))
}

pub fn quote_nix(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 2);
    out.push('"');
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn escape_indented(raw: &str) -> String {
    raw.replace("''", "'''").replace("${", "''${")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_interpolation_stay_text() {
        assert_eq!(quote_nix(r#"a"b\c${d}$e"#), r#""a\"b\\c\${d}$e""#);
        assert_eq!(escape_indented("x'' ${y}"), "x''' ''${y}");
    }

    #[test]
    fn escaped_values_parse_back_as_one_string() {
        for raw in [r#"a"b"#, "${builtins.abort 1}", "x''y", "\\${}"] {
            let src = format!("{{ a = {}; b = ''{}''; }}", quote_nix(raw), escape_indented(raw));
            let parsed = rnix::Root::parse(&src);
            assert!(parsed.errors().is_empty(), "{src}: {:?}", parsed.errors());
            assert!(!src.contains("${builtins") || src.contains("\\${builtins"));
        }
    }
}
