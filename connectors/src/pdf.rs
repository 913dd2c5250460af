//! PDFs, page by page: lopdf reads structure, metadata and encryption;
//! pdf-extract lays out each page's glyphs with their positions so words keep
//! their spaces. Callers run this in an isolated worker (see the `dossier`
//! crate's extraction stage): pdf-extract can panic, hang or balloon on hostile files.

use dossier_schema::RecordKind;
use lopdf::{Document, Object};

use crate::extract::{ExtractError, Extracted, Extractor, Place};

fn info_string(doc: &Document, key: &[u8]) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let dict = match info {
        Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        Object::Dictionary(d) => d,
        _ => return None,
    };
    let value = dict.get(key).ok()?;
    let bytes = match value {
        Object::String(b, _) => b.as_slice(),
        _ => return None,
    };
    // PDF text strings are UTF-16BE with a BOM, or PDFDocEncoding (close to Latin-1).
    let s = if bytes.starts_with(&[0xfe, 0xff]) {
        let units: Vec<u16> = bytes[2..].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        String::from_utf16_lossy(&units)
    } else {
        bytes.iter().map(|&b| b as char).collect()
    };
    let s = s.trim_matches(char::from(0)).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// `D:20240105123000Z` → `2024-01-05`.
fn pdf_date(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let d = s.strip_prefix("D:").unwrap_or(s);
    if d.len() < 8 || !d.is_char_boundary(8) {
        return None;
    }
    crate::text::parse_date(&format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8]))
}

/// Reads a PDF that the text extractor's lopdf cannot (some linearized files
/// and broken cross-reference tables) with the newer lopdf, writes it out
/// clean, and loads that. Encrypted files are left to the normal path.
fn repair(bytes: &[u8]) -> Option<Document> {
    let mut newer = lopdf_repair::Document::load_mem(bytes).ok()?;
    if newer.is_encrypted() {
        return None;
    }
    let mut clean = Vec::new();
    newer.save_to(&mut clean).ok()?;
    Document::load_mem(&clean).ok()
}

/// Opens a document, decrypting it with the empty password or a configured one.
pub fn open(bytes: &[u8], passwords: &[String]) -> Result<Document, ExtractError> {
    let doc = match Document::load_mem(bytes) {
        Ok(d) => d,
        Err(e) => repair(bytes).ok_or_else(|| ExtractError::Invalid { kind: "PDF", reason: e.to_string() })?,
    };
    if !doc.is_encrypted() && !doc.get_pages().is_empty() {
        return Ok(doc);
    }
    if !doc.is_encrypted() && doc.trailer.get(b"Encrypt").is_err() {
        return Ok(doc);
    }
    // Decrypting while loading also reads objects kept in encrypted object streams.
    for pw in std::iter::once("").chain(passwords.iter().map(String::as_str)) {
        if let Ok(d) = Document::load_mem_with_options(bytes, lopdf::LoadOptions::with_password(pw))
            && !d.is_encrypted()
            && !d.get_pages().is_empty()
        {
            return Ok(d);
        }
    }
    Err(ExtractError::Encrypted(if passwords.is_empty() {
        "the PDF needs a password; add it to the source's `passwords`".into()
    } else {
        "none of the source's passwords opens it".into()
    }))
}

fn page_text(doc: &Document, page: u32) -> Result<String, String> {
    let mut out = Layout::default();
    pdf_extract::output_doc_page(doc, &mut out, page).map_err(|e| e.to_string())?;
    Ok(out.text)
}

/// Lays glyphs out as text: a space where the next glyph starts clearly after the previous
/// one ended, a line break where it moves across the baseline. pdf-extract's own plain-text
/// output only looks at the first glyph of each string and measures in unrotated page space,
/// so table cells drawn glyph by glyph and rotated pages lost every space (10% word recall on
/// a rotated Senate report).
#[derive(Default)]
struct Layout {
    text: String,
    last: Option<Glyph>,
}

/// Where the previous glyph was, in its own baseline's coordinates.
#[derive(Clone, Copy)]
struct Glyph {
    /// Unit vector of the baseline.
    dir: (f64, f64),
    /// Position across the baseline.
    across: f64,
    /// Where along the baseline the glyph's advance ended.
    end: f64,
    /// The font size across the baseline, in page units.
    em_across: f64,
}

/// A gap of this many ems between glyphs is a word space (kerning stays well below it).
const SPACE_EM: f64 = 0.15;
/// A move of this many ems across the baseline starts a new line.
const LINE_EM: f64 = 0.5;

impl pdf_extract::OutputDev for Layout {
    fn begin_page(
        &mut self,
        _page: u32,
        _media: &pdf_extract::MediaBox,
        _art: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), pdf_extract::OutputError> {
        self.last = None;
        Ok(())
    }
    fn end_page(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
    fn output_character(
        &mut self,
        trm: &pdf_extract::Transform,
        width: f64,
        // Character spacing is left out of the advance: files that set it often cancel it with
        // explicit positions, and counting it put every following glyph "behind" the previous one.
        _spacing: f64,
        font_size: f64,
        ch: &str,
    ) -> Result<(), pdf_extract::OutputError> {
        // The text rendering matrix maps glyph space to the page: its first row is the
        // baseline's direction and scale, its second the glyph's up direction.
        let norm = trm.m11.hypot(trm.m12);
        if !norm.is_finite() || norm < 1e-9 || !font_size.is_finite() {
            return Ok(());
        }
        let dir = (trm.m11 / norm, trm.m12 / norm);
        let (x, y) = (trm.m31, trm.m32);
        let along = x * dir.0 + y * dir.1;
        let across = y * dir.0 - x * dir.1;
        let em = (font_size * norm).abs().max(1e-6);
        let em_across = (font_size * trm.m21.hypot(trm.m22)).abs().max(em * 0.1);
        let blank = ch.chars().all(char::is_whitespace);
        if let Some(last) = self.last {
            let same_dir = dir.0 * last.dir.0 + dir.1 * last.dir.1 > 0.99;
            let new_line = !same_dir || (across - last.across).abs() > LINE_EM * last.em_across.min(em_across);
            let gap = along - last.end;
            let ends_blank = self.text.ends_with(char::is_whitespace);
            if new_line {
                if !self.text.ends_with('\n') {
                    while self.text.ends_with(' ') {
                        self.text.pop();
                    }
                    self.text.push('\n');
                }
            } else if !blank && !ends_blank && (gap > SPACE_EM * em || gap < -em) {
                // Forward past a space's width, or back over an earlier glyph (another column).
                self.text.push(' ');
            }
        }
        if !(blank && self.text.ends_with(char::is_whitespace)) {
            self.text.push_str(if blank { " " } else { ch });
        }
        // A font whose width table lacks a glyph reports 0: assume half an em rather than
        // reading the glyph's own width as the gap to the next.
        let width = if width <= 0.0 && !blank { 0.5 } else { width };
        let advance = width * font_size * norm;
        self.last = Some(Glyph { dir, across, end: along + advance.max(0.0), em_across });
        Ok(())
    }
    fn begin_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
    fn end_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
    fn end_line(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
}

/// Extracts a document record and one record per page.
pub fn extract(
    x: &Extractor,
    place: &Place,
    name: &str,
    bytes: &[u8],
    out: &mut Extracted,
) -> Result<(), ExtractError> {
    let doc = open(bytes, &x.passwords)?;
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(ExtractError::Invalid { kind: "PDF", reason: "no pages could be read".into() });
    }
    let file_name = name.rsplit('/').next().unwrap_or(name).to_string();
    let mut d = x.record(place, place.key.clone(), RecordKind::Document);
    d.title = info_string(&doc, b"Title").unwrap_or_else(|| file_name.clone());
    d.fields.insert("file".into(), file_name.clone());
    d.fields.insert("pages".into(), pages.len().to_string());
    if let Some(a) = info_string(&doc, b"Author") {
        d.fields.insert("author".into(), a);
    }
    if let Some(c) = info_string(&doc, b"CreationDate") {
        d.date = pdf_date(&c);
        d.fields.insert("created".into(), c);
    }
    let doc_key = d.key.clone();
    let title = d.title.clone();
    let total = pages.len();
    out.records.push(d);
    let mut words = 0usize;
    for (&n, &page_id) in pages.iter().take(x.limits.max_pages) {
        let mut p = x.record(place, format!("{doc_key}#p{n}"), RecordKind::Page);
        p.parent = Some(doc_key.clone());
        p.page = Some(n);
        p.title = format!("{title} · page {n}");
        match page_text(&doc, n) {
            Ok(t) => p.text = t.trim().to_string(),
            Err(e) => p.note = Some(format!("page text unreadable: {e}")),
        }
        if p.text.is_empty() && p.note.is_none() {
            let has_images = doc.get_page_images(page_id).map(|v| !v.is_empty()).unwrap_or(false);
            p.note =
                Some(if has_images { "no text layer (image-only page)".into() } else { "no text on this page".into() });
        }
        words += p.text.split_whitespace().count();
        x.bound_text(&mut p, out);
        out.records.push(p);
    }
    if total > x.limits.max_pages {
        x.warn(out, place, format!("{total} pages; only the first {} were read", x.limits.max_pages));
    }
    if words == 0 {
        x.warn(out, place, "no text on any page (scanned or image-only document)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::{Stream, dictionary};

    /// A one-page document in Helvetica whose page draws `content`.
    fn page(content: &str) -> Document {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
        let resources = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font}});
        let contents = doc.add_object(Stream::new(dictionary! {}, content.as_bytes().to_vec()));
        let page = doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => contents});
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {"Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1,
            "Resources" => resources, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()]}),
        );
        let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
        doc.trailer.set("Root", catalog);
        doc
    }

    #[test]
    fn glyphs_placed_one_by_one_keep_their_word_spaces() {
        // "Jane Smith" drawn a glyph at a time (as table generators do): the space is a gap.
        // Helvetica advance widths per 1000 em, at 10 pt.
        let width = |c: char| match c {
            'J' => 5.0,
            'S' => 6.67,
            'm' => 8.33,
            'i' => 2.22,
            't' => 2.78,
            _ => 5.56,
        };
        let mut s = String::from("BT /F1 10 Tf ");
        let mut x = 72.0;
        for c in "Jane Smith".chars() {
            if c != ' ' {
                s.push_str(&format!("1 0 0 1 {x:.2} 700 Tm ({c}) Tj "));
            }
            x += if c == ' ' { 2.78 } else { width(c) };
        }
        s.push_str("ET");
        assert_eq!(page_text(&page(&s), 1).unwrap().trim(), "Jane Smith");
    }

    #[test]
    fn kerning_inside_a_word_is_not_a_space() {
        let s = "BT /F1 10 Tf 72 700 Td [(T) 80 (ermination) -250 (notice)] TJ ET";
        assert_eq!(page_text(&page(s), 1).unwrap().trim(), "Termination notice");
    }

    #[test]
    fn rotated_text_keeps_spaces_and_lines() {
        // A landscape report: the baseline runs up the page.
        let s = "BT /F1 10 Tf 0 1 -1 0 300 100 Tm (Limitation of liability) Tj \
                 0 1 -1 0 314 100 Tm (Ninety days notice) Tj ET";
        assert_eq!(page_text(&page(s), 1).unwrap().trim(), "Limitation of liability\nNinety days notice");
    }

    #[test]
    fn table_cells_on_one_line_are_separated() {
        let s = "BT /F1 10 Tf 1 0 0 1 72 700 Tm (Invoice) Tj 1 0 0 1 200 700 Tm (104233) Tj \
                 1 0 0 1 72 686 Tm (Status) Tj 1 0 0 1 200 686 Tm (disputed) Tj ET";
        assert_eq!(page_text(&page(s), 1).unwrap().trim(), "Invoice 104233\nStatus disputed");
    }
}
