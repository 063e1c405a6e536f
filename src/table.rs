//! Plain-text tables for people: every column but the last padded to its widest cell, two
//! spaces apart, the last column (usually the reason why) left free.

/// Rows of cells (the header is the first row) as aligned lines, each ending in a newline.
pub fn aligned<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let padded = columns.saturating_sub(1);
    let widths: Vec<usize> =
        (0..padded).map(|i| rows.iter().filter_map(|r| r.as_ref().get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let row = row.as_ref();
        for (i, cell) in row.iter().enumerate() {
            match widths.get(i) {
                Some(w) => out.push_str(&format!("{cell:<w$}  ")),
                None => out.push_str(cell),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::aligned;

    #[test]
    fn pads_all_but_the_last_column() {
        let rows = vec![vec!["A".to_string(), "BB".into(), "why".into()], vec!["ccc".to_string(), "d".into(), "a longer reason".into()]];
        assert_eq!(aligned(&rows), "A    BB  why\nccc  d   a longer reason\n");
    }
}
