//! Workbooks (calamine: xlsx, xlsm, xlsb, xls, ods) and CSV/TSV (csv crate):
//! every sheet, a detected header row naming the fields, one record per data
//! row, dates as dates, merged cells filled from their top-left cell, formulas
//! by their cached values.

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Data, Reader, Sheets, open_workbook_auto_from_rs};
use dossier_schema::{Record, RecordKind};

use crate::extract::{ExtractError, Extracted, Extractor, Place};

/// A sparse sheet: row index → (column index → cell text), and which cells were dates.
#[derive(Default)]
struct Grid {
    rows: BTreeMap<u32, BTreeMap<u32, String>>,
    dates: BTreeMap<(u32, u32), chrono::DateTime<chrono::Utc>>,
    /// Non-empty cells so far, kept as a count: summing the rows per cell was quadratic.
    count: usize,
}

fn cell_text(d: &Data) -> (String, Option<chrono::DateTime<chrono::Utc>>) {
    match d {
        Data::Int(i) => (i.to_string(), None),
        Data::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                (format!("{}", *f as i64), None)
            } else {
                (format!("{f}"), None)
            }
        }
        Data::String(s) => (s.trim().to_string(), None),
        Data::Bool(b) => (b.to_string(), None),
        Data::DateTime(dt) => {
            if dt.is_duration() {
                return (dt.as_duration().map(|d| format!("{}s", d.num_seconds())).unwrap_or_default(), None);
            }
            match dt.as_datetime() {
                Some(n) => {
                    let utc = chrono::DateTime::from_naive_utc_and_offset(n, chrono::Utc);
                    let s = if n.time() == chrono::NaiveTime::MIN {
                        n.format("%Y-%m-%d").to_string()
                    } else {
                        n.format("%Y-%m-%d %H:%M:%S").to_string()
                    };
                    (s, Some(utc))
                }
                None => (String::new(), None),
            }
        }
        Data::DateTimeIso(s) => (s.clone(), crate::text::parse_date(s)),
        Data::DurationIso(s) => (s.clone(), None),
        Data::Error(_) | Data::Empty => (String::new(), None),
    }
}

impl Grid {
    fn put(&mut self, r: u32, c: u32, d: &Data) {
        let (text, date) = cell_text(d);
        if text.is_empty() {
            return;
        }
        if let Some(dt) = date {
            self.dates.insert((r, c), dt);
        }
        if self.rows.entry(r).or_default().insert(c, text).is_none() {
            self.count += 1;
        }
    }

    fn cells(&self) -> usize {
        self.count
    }
}

fn encrypted_hint(e: &str) -> bool {
    let l = e.to_ascii_lowercase();
    l.contains("encrypt") || l.contains("password")
}

/// Column letters for a 0-based index: 0 → A, 27 → AB.
pub fn column_name(mut c: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// Reads a sheet cell by cell into `g`, stopping past `max_cells`.
macro_rules! stream_cells {
    ($wb:expr, $name:expr, $g:expr, $max:expr) => {{
        let mut reader = $wb.worksheet_cells_reader($name).map_err(|e| e.to_string())?;
        while let Some(cell) = reader.next_cell().map_err(|e| e.to_string())? {
            if $g.cells() >= $max {
                return Err(format!("more than {} cells", $max));
            }
            let (r, c) = cell.get_position();
            $g.put(r, c, &Data::from(cell.get_value().clone()));
        }
    }};
}

fn read_grid<RS: std::io::Read + std::io::Seek>(
    wb: &mut Sheets<RS>,
    name: &str,
    max_cells: usize,
) -> Result<Grid, String> {
    let mut g = Grid::default();
    // xlsx and xlsb stream their cells: a sheet claiming XFD1048576 costs nothing.
    match wb {
        // The two readers are different types with the same shape.
        Sheets::Xlsx(x) => stream_cells!(x, name, g, max_cells),
        Sheets::Xlsb(x) => stream_cells!(x, name, g, max_cells),
        _ => {
            let range = wb.worksheet_range(name).map_err(|e| e.to_string())?;
            let (r0, c0) = range.start().unwrap_or((0, 0));
            for (i, row) in range.rows().enumerate() {
                for (j, d) in row.iter().enumerate() {
                    g.put(r0 + i as u32, c0 + j as u32, d);
                }
                if g.cells() > max_cells {
                    return Err(format!("more than {max_cells} cells"));
                }
            }
        }
    }
    Ok(g)
}

/// Merged regions of a sheet (xlsx and xls record them).
fn merges<RS: std::io::Read + std::io::Seek>(wb: &mut Sheets<RS>, name: &str) -> Vec<calamine::Dimensions> {
    match wb {
        Sheets::Xlsx(x) => x.merge_cells_by_sheet_name(name).unwrap_or_default(),
        Sheets::Xls(x) => x.merge_cells_by_sheet_name(name).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Every cell of a merged region reads as its top-left value.
fn fill_merges(g: &mut Grid, merges: &[calamine::Dimensions]) {
    for m in merges {
        let (sr, sc) = m.start;
        let (er, ec) = m.end;
        let area = (er.saturating_sub(sr) as u64 + 1) * (ec.saturating_sub(sc) as u64 + 1);
        if area > 10_000 {
            continue;
        }
        let Some(v) = g.rows.get(&sr).and_then(|r| r.get(&sc)).cloned() else { continue };
        for r in sr..=er {
            for c in sc..=ec {
                g.rows.entry(r).or_default().entry(c).or_insert_with(|| v.clone());
            }
        }
    }
}

/// Rows the header is looked for in: the header of a CSV file that only grew stays the same.
pub const HEADER_ROWS: usize = 20;

/// Picks the header row: the first of the top rows with at least two cells that
/// are all text (not numbers, not dates) and at least half as wide as the widest top row.
fn header_row(g: &Grid) -> Option<u32> {
    let width = g.rows.values().take(HEADER_ROWS).map(BTreeMap::len).max().unwrap_or(0);
    for (&r, cells) in g.rows.iter().take(HEADER_ROWS) {
        let texty = cells.iter().all(|(&c, v)| {
            !g.dates.contains_key(&(r, c)) && v.parse::<f64>().is_err() && v.chars().any(char::is_alphabetic)
        });
        if cells.len() >= 2 && texty && cells.len() * 2 >= width {
            return Some(r);
        }
    }
    None
}

/// Header names, made unique (`Amount`, `Amount_2`).
fn header_names(cells: &BTreeMap<u32, String>) -> BTreeMap<u32, String> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    cells
        .iter()
        .map(|(&c, v)| {
            let base = crate::text::squash(v);
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            (c, if *n == 1 { base } else { format!("{base}_{n}") })
        })
        .collect()
}

/// Builds one record per data row of a grid.
fn rows_to_records(
    x: &Extractor,
    place: &Place,
    title: &str,
    key_part: &str,
    mut g: Grid,
    merges: &[calamine::Dimensions],
    out: &mut Extracted,
) {
    // The header is chosen before merges are filled: a title merged across the
    // sheet's width is one cell, not a row of identical headers.
    let header = header_row(&g);
    fill_merges(&mut g, merges);
    let names = header.and_then(|h| g.rows.get(&h)).map(header_names).unwrap_or_default();
    grid_records(x, place, title, key_part, &g, header, &names, out);
}

/// Builds one record per row of `g` after the `header` row, its cells named by `names`.
#[allow(clippy::too_many_arguments)]
fn grid_records(
    x: &Extractor,
    place: &Place,
    title: &str,
    key_part: &str,
    g: &Grid,
    header: Option<u32>,
    names: &BTreeMap<u32, String>,
    out: &mut Extracted,
) {
    for (&r, cells) in &g.rows {
        if Some(r) <= header && header.is_some() {
            continue;
        }
        let mut rec: Record = x.record(place, format!("{}{key_part}!r{}", place.key, r + 1), RecordKind::SheetRow);
        rec.title = format!("{title} · row {}", r + 1);
        let mut text = String::new();
        for (&c, v) in cells {
            let name = names.get(&c).cloned().unwrap_or_else(|| column_name(c));
            if rec.date.is_none() && (g.dates.contains_key(&(r, c)) || crate::text::is_date_field(&name)) {
                rec.date = g.dates.get(&(r, c)).copied().or_else(|| crate::text::parse_date(v));
            }
            text.push_str(&name);
            text.push_str(": ");
            text.push_str(v);
            text.push('\n');
            rec.fields.insert(name, v.clone());
        }
        rec.text = text;
        rec.fields.insert("row".into(), (r + 1).to_string());
        x.bound_text(&mut rec, out);
        out.records.push(rec);
    }
}

/// Extracts every sheet of a workbook.
pub fn extract_workbook(
    x: &Extractor,
    place: &Place,
    name: &str,
    bytes: &[u8],
    out: &mut Extracted,
) -> Result<(), ExtractError> {
    if bytes.starts_with(b"\xd0\xcf\x11\xe0") && contains(bytes, b"E\0n\0c\0r\0y\0p\0t\0e\0d\0P\0a\0c\0k\0a\0g\0e") {
        return Err(ExtractError::Encrypted("the workbook is password-protected (OLE2 EncryptedPackage)".into()));
    }
    let mut wb = open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| {
        let msg = e.to_string();
        if encrypted_hint(&msg) {
            ExtractError::Encrypted(msg)
        } else {
            ExtractError::Invalid { kind: "workbook", reason: msg }
        }
    })?;
    let file_name = name.rsplit('/').next().unwrap_or(name);
    let sheets = wb.sheet_names();
    if sheets.is_empty() {
        return Err(ExtractError::Invalid { kind: "workbook", reason: "no sheets".into() });
    }
    for sheet in sheets {
        match read_grid(&mut wb, &sheet, x.limits.max_cells) {
            Ok(g) => {
                let m = merges(&mut wb, &sheet);
                rows_to_records(x, place, &format!("{file_name} · {sheet}"), &format!("!{sheet}"), g, &m, out)
            }
            Err(e) => x.warn(out, place, format!("sheet `{sheet}` skipped: {e}")),
        }
    }
    Ok(())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Picks the delimiter that splits the first lines most consistently.
fn sniff_delimiter(text: &str, name: &str) -> u8 {
    if name.to_ascii_lowercase().ends_with(".tsv") {
        return b'\t';
    }
    let lines: Vec<&str> = text.lines().take(10).collect();
    let mut best = (b',', 0usize);
    for d in [b',', b';', b'\t', b'|'] {
        let counts: Vec<usize> = lines.iter().map(|l| l.bytes().filter(|&b| b == d).count()).collect();
        let min = counts.iter().copied().min().unwrap_or(0);
        if min > best.1 {
            best = (d, min);
        }
    }
    best.0
}

/// Reads the rows of CSV `text` into `g`, numbered from `first`, at most `limit` of them;
/// returns how many rows there were, or `None` when there were more than `limit`.
fn csv_rows(
    x: &Extractor,
    place: &Place,
    text: &str,
    delim: u8,
    (first, limit): (usize, usize),
    g: &mut Grid,
    out: &mut Extracted,
) -> Result<Option<usize>, ExtractError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(false)
        .flexible(true)
        // `a, b, c` (Febrl's style) means `a`, `b`, `c`.
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = 0;
    for (i, row) in rdr.records().enumerate() {
        if i >= limit {
            return Ok(None);
        }
        rows = i + 1;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                x.warn(out, place, format!("line {}: {e}", first + i + 1));
                continue;
            }
        };
        for (c, v) in row.iter().enumerate() {
            g.put((first + i) as u32, c as u32, &Data::String(v.to_string()));
        }
        if g.cells() > x.limits.max_cells {
            return Err(ExtractError::TooLarge(format!("more than {} cells", x.limits.max_cells)));
        }
    }
    Ok(Some(rows))
}

/// Extracts a CSV or TSV file: the first row names the fields when it looks like a header.
pub fn extract_csv(
    x: &Extractor,
    place: &Place,
    name: &str,
    bytes: &[u8],
    out: &mut Extracted,
) -> Result<(), ExtractError> {
    let text = crate::text::decode(bytes);
    let delim = sniff_delimiter(&text, name);
    let mut g = Grid::default();
    // Rows past the limit are left out; the file is then read whole again when it changes.
    let rows = csv_rows(x, place, &text, delim, (0, x.limits.max_records.saturating_add(1)), &mut g, out)?;
    if place.depth == 0 {
        out.rows = rows;
    }
    let file_name = name.rsplit('/').next().unwrap_or(name);
    rows_to_records(x, place, file_name, "", g, &[], out);
    Ok(())
}

/// Extracts the rows appended to a CSV file, `tail`, numbered on after its `before` rows, which
/// start with `head`. The header and delimiter come from the file's first rows, as a whole read
/// would find them; a file that was read in parts had more than [`HEADER_ROWS`] rows, so rows
/// appended to it cannot change them.
pub fn extract_csv_tail(
    x: &Extractor,
    place: &Place,
    name: &str,
    head: &[u8],
    tail: &[u8],
    before: usize,
    out: &mut Extracted,
) -> Result<(), ExtractError> {
    // The top rows, whole lines of the first MiB: enough for any header a person would write.
    let sample = &head[..head.len().min(1 << 20)];
    let sample = &sample[..sample.iter().rposition(|&b| b == b'\n').map_or(sample.len(), |p| p + 1)];
    let head_text = crate::text::decode(sample);
    let delim = sniff_delimiter(&head_text, name);
    let mut top = Grid::default();
    let mut quiet = Extracted::default();
    csv_rows(x, place, &head_text, delim, (0, HEADER_ROWS), &mut top, &mut quiet)?;
    let header = header_row(&top);
    let names = header.and_then(|h| top.rows.get(&h)).map(header_names).unwrap_or_default();
    let limit = x.limits.max_records.saturating_add(1).saturating_sub(before);
    let mut g = Grid::default();
    let rows = csv_rows(x, place, &crate::text::decode(tail), delim, (before, limit), &mut g, out)?
        .ok_or_else(|| ExtractError::TooLarge(format!("more than {} rows", x.limits.max_records)))?;
    out.rows = Some(before + rows);
    let file_name = name.rsplit('/').next().unwrap_or(name);
    grid_records(x, place, file_name, "", &g, header, &names, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SourceSpec;

    fn ex() -> Extractor {
        Extractor::new(&SourceSpec::files("s", "."))
    }

    #[test]
    fn columns() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(27), "AB");
    }

    #[test]
    fn csv_with_header_semicolons_and_latin1() {
        let x = ex();
        let place = Place { item: "a.csv", key: "s:a.csv".into(), parent: None, depth: 0 };
        let mut out = Extracted::default();
        extract_csv(&x, &place, "a.csv", b"Name;Invoice date;Amount\nRen\xe9e;2024-02-01;10\nBo;;5\n", &mut out)
            .unwrap();
        assert_eq!(out.records.len(), 2);
        let r = &out.records[0];
        assert_eq!(r.key, "s:a.csv!r2");
        assert_eq!(r.field("Name"), Some("Renée"));
        assert_eq!(r.date.unwrap().format("%F").to_string(), "2024-02-01");
        assert!(out.records[1].field("Invoice date").is_none());
    }
}
