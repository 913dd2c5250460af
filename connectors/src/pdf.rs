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
    let mut s = String::new();
    let mut out = pdf_extract::PlainTextOutput::new(&mut s);
    pdf_extract::output_doc_page(doc, &mut out, page).map_err(|e| e.to_string())?;
    Ok(s)
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
