//! Small text helpers shared by the extractors: charset decoding, bounded
//! truncation, HTML to text and lenient date parsing.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Decodes bytes of unknown charset: UTF-8 (with or without BOM), UTF-16 with a
/// BOM, otherwise windows-1252 (the usual legacy code page of exports).
pub fn decode(bytes: &[u8]) -> String {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (s, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return s.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary; says whether it cut.
pub fn truncate(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

/// Collapses runs of whitespace into single spaces and trims.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Turns HTML into readable plain text.
pub fn html_to_text(html: &str) -> String {
    html2text::from_read(html.as_bytes(), 100).unwrap_or_else(|_| html.to_string())
}

/// Parses the date formats exports use: RFC 3339, `YYYY-MM-DD[ HH:MM[:SS]]`,
/// `MM/DD/YYYY`, `DD.MM.YYYY`, RFC 2822. Returns `None` for anything else.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.len() < 8 || s.len() > 40 {
        return None;
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(s) {
        return Some(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&d));
        }
    }
    for f in ["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%B %d, %Y", "%b %d, %Y", "%d %B %Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0).map(|d| Utc.from_utc_datetime(&d));
        }
    }
    None
}

/// True for a field name that usually holds a record's main date.
pub fn is_date_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "date" || n.ends_with("_date") || n.ends_with(" date") || n.ends_with("_at") || n == "created" || n == "when"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_latin1_and_bom() {
        assert_eq!(decode(b"R\xe9sum\xe9"), "Résumé");
        assert_eq!(decode(b"\xef\xbb\xbfhi"), "hi");
        assert_eq!(decode("naïve".as_bytes()), "naïve");
    }

    #[test]
    fn truncates_on_char_boundary() {
        let mut s = "ééé".to_string();
        assert!(truncate(&mut s, 3));
        assert_eq!(s, "é");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2024-03-05").unwrap().to_rfc3339(), "2024-03-05T00:00:00+00:00");
        assert_eq!(parse_date("03/05/2024").unwrap().to_rfc3339(), "2024-03-05T00:00:00+00:00");
        assert!(parse_date("Tue, 10 May 2005 11:26:39 -0600").is_some());
        assert!(parse_date("hello world").is_none());
    }
}
