//! The marker file at the top of a rendered tree (`README.md`): it tells people what the
//! directory is, and tells `output` that iac wrote it and which files it wrote. `output`
//! replaces a directory only when its marker is exactly what `text` would write for the
//! files it lists, and the directory holds nothing else (issue 13: a check for the file's mere
//! existence let `iac render --out` replace any project that had a README.md).

use std::path::{Path, PathBuf};

/// Written at the top of the output directory.
pub const MARKER: &str = "README.md";

const TITLE: &str = "# generated/ — written by `iac render` for site `";
const LIST_HEADING: &str = "Files iac wrote here (anything else makes `iac render` refuse to replace this directory):";

/// The marker for a tree of `files` (relative paths, the marker itself excluded) of `site`.
pub fn text<'a>(site: &str, files: impl IntoIterator<Item = &'a Path>) -> String {
    let mut out = format!(
        "{TITLE}{site}`\n\n\
         Every file here is derived from `hosts/inventory.toml`. Do not edit: change the inventory\n\
         and run `iac render` (or `nix run .#render`). `iac render --check` fails when this tree\n\
         is stale. The whole directory is replaced atomically on each render.\n\n\
         {LIST_HEADING}\n\n"
    );
    for f in files {
        out.push_str(&format!("- {}\n", f.display()));
    }
    out
}

/// The files a marker lists, if `text` is exactly a marker iac writes.
pub fn parse(text: &str) -> Option<Vec<PathBuf>> {
    let site = text.strip_prefix(TITLE)?.split('\n').next()?.strip_suffix('`')?;
    let (_, list) = text.split_once(&format!("{LIST_HEADING}\n\n"))?;
    let files: Vec<PathBuf> = list.lines().map(|l| l.strip_prefix("- ").map(PathBuf::from)).collect::<Option<_>>()?;
    (self::text(site, files.iter().map(PathBuf::as_path)) == text).then_some(files)
}

/// Whether `text` is the marker of an iac from before issue 13: the same title, but no list
/// of files, so it cannot say what the directory may hold. Such a tree is refused like any
/// foreign one (its contents cannot be checked), but the refusal can say why and what to do.
pub fn is_unlisted_marker(text: &str) -> bool {
    text.starts_with(TITLE) && !text.contains(LIST_HEADING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_text() {
        let files = [Path::new("a/default.nix"), Path::new("k8s/kafka.yaml")];
        let t = text("lab", files);
        assert_eq!(parse(&t), Some(files.iter().map(|p| p.to_path_buf()).collect()));
        assert_eq!(parse("# my project\n"), None);
        assert_eq!(parse(&t.replace("Do not edit", "Please edit")), None);
        assert_eq!(parse(&format!("{t}extra\n")), None);
    }

    #[test]
    fn an_earlier_marker_is_told_apart_from_a_foreign_file() {
        let earlier = "# generated/ — written by `iac render` for site `lab`\n\nEvery file here is derived from `hosts/inventory.toml`.\n";
        assert!(is_unlisted_marker(earlier));
        assert!(!is_unlisted_marker(&text("lab", [Path::new("a/default.nix")])));
        assert!(!is_unlisted_marker("# my project\n"));
    }
}
