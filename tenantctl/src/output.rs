//! Human tables and `--json` output.

use serde::Serialize;

/// Prints rows as an aligned table (human) or the value as JSON (`--json`).
pub fn print<T: Serialize>(
    json: bool,
    value: &T,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
        return Ok(());
    }
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(headers.iter().map(|header| (*header).to_owned()).collect())
    );
    for row in rows {
        println!("{}", line(row));
    }
    Ok(())
}

/// An optional value for a table cell.
pub fn cell<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}
