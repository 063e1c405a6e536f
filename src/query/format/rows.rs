//! Row writers: JSON array, JSON lines, and the aligned table with its bounded window.

use std::io::{self, Write};

use tokio_postgres::Row;
use unicode_width::UnicodeWidthStr;

use super::Format;
use super::decode::{Column, Kind, cell};
use super::encode::{table_text, write_json};

/// Where rows go, one at a time.
pub trait RowWriter {
    fn row(&mut self, row: &Row) -> io::Result<()>;
    /// Show everything written so far (`--follow` between polls). A table fixes its column
    /// widths here if it has not yet.
    fn flush(&mut self) -> io::Result<()>;
    /// After the last row; `rows` is how many there were.
    fn finish(&mut self, rows: u64) -> io::Result<()>;
}

pub fn writer<'w, W: Write + 'w>(format: Format, columns: &[Column], out: W) -> Box<dyn RowWriter + 'w> {
    match format {
        Format::Table => Box::new(Table::new(columns, out)),
        Format::Json => Box::new(Json::new(columns, out, false)),
        Format::Jsonl => Box::new(Json::new(columns, out, true)),
    }
}

/// JSON array or JSON lines. Keys are escaped once, up front.
pub struct Json<W> {
    out: W,
    kinds: Vec<Kind>,
    keys: Vec<Vec<u8>>,
    lines: bool,
    first: bool,
}

impl<W: Write> Json<W> {
    pub fn new(columns: &[Column], out: W, lines: bool) -> Self {
        let keys = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut k = if i == 0 { b"{".to_vec() } else { b",".to_vec() };
                serde_json::to_writer(&mut k, &c.name).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
        Json { out, kinds: columns.iter().map(|c| c.kind).collect(), keys, lines, first: true }
    }
}

impl<W: Write> RowWriter for Json<W> {
    fn row(&mut self, row: &Row) -> io::Result<()> {
        if !self.lines {
            self.out.write_all(if self.first { b"[\n" } else { b",\n" })?;
        }
        self.first = false;
        for (i, kind) in self.kinds.iter().enumerate() {
            self.out.write_all(&self.keys[i])?;
            write_json(&mut self.out, &cell(row, i, *kind)?)?;
        }
        self.out.write_all(if self.kinds.is_empty() { b"{}" } else { b"}" })?;
        if self.lines {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _rows: u64) -> io::Result<()> {
        if !self.lines {
            self.out.write_all(if self.first { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()
    }
}

/// An aligned table. Column widths need the cells, so the first [`Table::WINDOW_ROWS`] rows
/// (or [`Table::WINDOW_BYTES`] of cell text, whichever comes first) are held back to measure
/// them; later rows stream with those widths, and a longer cell just pushes its row out of
/// line. Memory stays bounded however many rows follow.
pub struct Table<W> {
    out: W,
    names: Vec<String>,
    kinds: Vec<Kind>,
    held: Vec<Vec<String>>,
    held_bytes: usize,
    widths: Option<Vec<usize>>,
}

impl<W: Write> Table<W> {
    pub const WINDOW_ROWS: usize = 1000;
    pub const WINDOW_BYTES: usize = 1 << 20;

    pub fn new(columns: &[Column], out: W) -> Self {
        Table {
            out,
            names: columns.iter().map(|c| c.name.clone()).collect(),
            kinds: columns.iter().map(|c| c.kind).collect(),
            held: Vec::new(),
            held_bytes: 0,
            widths: None,
        }
    }

    /// Text cells for tables that are not query rows (`iac query schema`); every column left
    /// aligned.
    pub fn push(&mut self, cells: Vec<String>) -> io::Result<()> {
        match &self.widths {
            None => {
                self.held_bytes += cells.iter().map(String::len).sum::<usize>();
                self.held.push(cells);
                if self.held.len() >= Self::WINDOW_ROWS || self.held_bytes >= Self::WINDOW_BYTES {
                    self.release()?;
                }
                Ok(())
            }
            Some(_) => self.line(&cells),
        }
    }

    /// Fix the widths from the held rows, print the header and the held rows.
    fn release(&mut self) -> io::Result<()> {
        let mut widths: Vec<usize> = self.names.iter().map(|n| n.width()).collect();
        for row in &self.held {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.width());
            }
        }
        self.widths = Some(widths.clone());
        let names = self.names.clone();
        self.line_with(&names, &widths, false)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(self.out, "{}", rule.join("-+-"))?;
        for row in std::mem::take(&mut self.held) {
            self.line(&row)?;
        }
        self.held_bytes = 0;
        Ok(())
    }

    fn line(&mut self, cells: &[String]) -> io::Result<()> {
        let widths = self.widths.clone().unwrap_or_default();
        self.line_with(cells, &widths, true)
    }

    fn line_with(&mut self, cells: &[String], widths: &[usize], align_numbers: bool) -> io::Result<()> {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str(" | ");
            }
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.width());
            let last = i + 1 == cells.len();
            if align_numbers && self.kinds.get(i).is_some_and(|k| k.right_aligned()) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                if !last {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(self.out, "{line}")
    }
}

impl<W: Write> RowWriter for Table<W> {
    fn row(&mut self, row: &Row) -> io::Result<()> {
        let mut cells = Vec::with_capacity(self.kinds.len());
        for i in 0..self.kinds.len() {
            cells.push(table_text(&cell(row, i, self.kinds[i])?));
        }
        self.push(cells)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.widths.is_none() {
            self.release()?;
        }
        self.out.flush()
    }

    fn finish(&mut self, rows: u64) -> io::Result<()> {
        if self.widths.is_none() {
            self.release()?;
        }
        writeln!(self.out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        self.out.flush()
    }
}
