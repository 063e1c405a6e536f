//! Parse inventory text into the schema, turning serde errors into errors that name the file,
//! the line and the dotted key (through `serde_path_to_error`), so a typo is found in seconds.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, InventoryError, InventoryErrors};

use super::schema::InventoryFile;

/// The inventory text and the file it came from; turns byte spans into line and column.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(file: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self { file: file.into(), text: text.into() }
    }

    /// 1-based line and column of a byte offset. Offsets past the end map to the last line.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// An error at `span` about `key`. An empty span (a defaulted value) points at line 1.
    pub fn error(&self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) -> InventoryError {
        let (line, column) = self.position(span.start);
        InventoryError { file: self.file.clone(), line, column, key: key.into(), message: message.into() }
    }
}

/// Read and parse an inventory file. Validation is a separate step (`model::validate`).
pub fn load(path: &Path) -> Result<(Source, InventoryFile), Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let source = Source::new(path, text);
    let file = parse(&source)?;
    Ok((source, file))
}

/// Parse inventory text; syntax errors and schema errors (unknown keys, wrong types, unknown
/// roles) come back with their position and dotted key.
pub fn parse(source: &Source) -> Result<InventoryFile, InventoryErrors> {
    let deserializer = toml::Deserializer::parse(&source.text).map_err(|e| syntax_error(source, &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = dotted_key(e.path());
        let inner = e.into_inner();
        let span = inner.span().unwrap_or(0..0);
        InventoryErrors(vec![source.error(span, key, inner.message().trim().to_string())])
    })
}

fn syntax_error(source: &Source, e: &toml::de::Error) -> InventoryErrors {
    let span = e.span().unwrap_or(0..0);
    InventoryErrors(vec![source.error(span, "(syntax)", e.message().trim().to_string())])
}

/// The serde path as a user writes the key: `hosts.hamal.roles[0]`, without the segments
/// `toml::Spanned` adds internally.
fn dotted_key(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Map { key: k } | Segment::Enum { variant: k } if k.starts_with("$__serde_spanned") => {}
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Unknown => {}
        }
    }
    if key.is_empty() { "(top level)".into() } else { key }
}
