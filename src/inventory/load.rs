//! Parse inventory text into the schema, turning serde errors into errors that name the file,
//! the line and the dotted key (through `serde_path_to_error`), so a typo is found in seconds.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::error::{InventoryError, InventoryErrors, LoadError};
use super::schema::{InventoryFile, KeySpans};

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
/// A file that is not UTF-8 is an invalid inventory (exit 2) located at its first bad byte.
pub fn load(path: &Path) -> Result<(Source, InventoryFile), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let source = Source::new(path, prefix);
            let byte = e.as_bytes()[valid];
            let err = source.error(valid..valid, "(encoding)", format!("byte 0x{byte:02x} is not UTF-8: the inventory must be UTF-8 text"));
            return Err(InventoryErrors(vec![err]).into());
        }
    };
    let source = Source::new(path, text);
    let file = parse(&source)?;
    Ok((source, file))
}

/// Parse inventory text; syntax errors and schema errors (unknown keys, wrong types, unknown
/// roles) come back with their position and dotted key.
pub fn parse(source: &Source) -> Result<InventoryFile, InventoryErrors> {
    let deserializer = toml::Deserializer::parse(&source.text).map_err(|e| syntax_error(source, &e))?;
    let mut file: InventoryFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = dotted_key(e.path());
        let inner = e.into_inner();
        let span = inner.span().unwrap_or(0..0);
        InventoryErrors(vec![source.error(span, key, inner.message().trim().to_string())])
    })?;
    file.keys = key_spans(&source.text);
    Ok(file)
}

/// Where the names of `[networks.*]`, `[hosts.*]` and `[databases.*]` stand: map keys carry
/// no span through serde, so the text is read once more as a TOML document that keeps them.
fn key_spans(text: &str) -> KeySpans {
    let mut spans = KeySpans::default();
    let Ok(doc) = toml::de::DeTable::parse(text) else { return spans };
    for (table, value) in doc.get_ref().iter() {
        if !["networks", "hosts", "databases"].contains(&table.get_ref().as_ref()) {
            continue;
        }
        let Some(children) = value.get_ref().as_table() else { continue };
        for (key, _) in children.iter() {
            spans.0.insert((table.get_ref().to_string(), key.get_ref().to_string()), key.span());
        }
    }
    spans
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
