//! Turns an item's bytes into records, choosing the extractor by content and
//! name. Attachments come back here, one level deeper, so a PDF inside a mail
//! inside an mbox is searchable; depth, sizes and counts are bounded.

use std::path::Path;

use dossier_schema::{ItemError, Record, RecordKind};

use crate::spec::{Limits, SourceSpec, TicketSpec};

/// Why an item could not be extracted. The message names the reason; the caller adds the item.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExtractError {
    /// The file cannot be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// Encrypted, and no configured password opens it.
    #[error("encrypted, no password: {0}")]
    Encrypted(String),
    /// The bytes are not a valid document of the kind they claim.
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// The format (`PDF`, `workbook`, `mail`, …).
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The content passes a size or count limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// No extractor handles this kind of file.
    #[error("unsupported file type: {0}")]
    Unsupported(String),
}

/// Records and the non-fatal problems met while extracting one item.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Extracted {
    /// The records.
    pub records: Vec<Record>,
    /// Problems with parts of the item (an attachment that would not open, a cut text).
    pub warnings: Vec<ItemError>,
}

/// The formats dossier recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PDF document.
    Pdf,
    /// Excel, LibreOffice or Excel binary workbook.
    Workbook,
    /// Comma, semicolon or tab separated values.
    Csv,
    /// A Unix mailbox of many messages.
    Mbox,
    /// One RFC 5322 message.
    Eml,
    /// JSON or JSON Lines.
    Json,
    /// Plain text.
    Text,
}

/// Decides the format from the first bytes, then the name.
pub fn sniff(name: &str, bytes: &[u8]) -> Option<Format> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let head = &bytes[..bytes.len().min(1024)];
    let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    if body.starts_with(b"%PDF") || ext == "pdf" {
        return Some(Format::Pdf);
    }
    match ext.as_str() {
        "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" | "xla" | "xlam" => return Some(Format::Workbook),
        "csv" | "tsv" | "tab" => return Some(Format::Csv),
        "mbox" | "mbx" => return Some(Format::Mbox),
        "eml" | "msg822" => return Some(Format::Eml),
        "json" | "jsonl" | "ndjson" => return Some(Format::Json),
        "txt" | "md" | "text" | "log" => {}
        _ => {}
    }
    if body.starts_with(b"From ") {
        return Some(Format::Mbox);
    }
    if looks_like_mail(body) {
        return Some(Format::Eml);
    }
    if body.starts_with(b"PK\x03\x04") || body.starts_with(b"\xd0\xcf\x11\xe0") {
        return Some(Format::Workbook);
    }
    match ext.as_str() {
        "txt" | "md" | "text" | "log" | "" => Some(Format::Text),
        _ => None,
    }
}

/// True when the bytes start with mail header fields such as `From:` or `Received:`.
fn looks_like_mail(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut header_lines = 0;
    for line in text.lines().take(8) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        match line.split_once(':') {
            Some((name, _)) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                header_lines += 1
            }
            _ => return false,
        }
    }
    header_lines >= 2
}

/// Extracts records from the items of one source.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Extractor {
    /// Source name.
    pub source: String,
    /// Bounds.
    pub limits: Limits,
    /// Passwords to try on encrypted files.
    pub passwords: Vec<String>,
    /// Ticket mapping, for tickets sources.
    pub tickets: Option<TicketSpec>,
}

/// Where in an item the records being extracted sit.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    /// The item's locator.
    pub item: &'a str,
    /// The key of the first record; parts append `#p3`, `/att/2`, `!Sheet!r4`.
    pub key: String,
    /// The parent record's key, for attachments.
    pub parent: Option<String>,
    /// Attachment depth (0 for the item itself).
    pub depth: u32,
}

impl Extractor {
    /// An extractor for `spec`.
    pub fn new(spec: &SourceSpec) -> Self {
        Extractor {
            source: spec.name.clone(),
            limits: spec.limits,
            passwords: spec.passwords.clone(),
            tickets: spec.tickets.clone(),
        }
    }

    /// Reads and extracts one file item.
    pub fn extract_file(&self, locator: &str, path: &Path) -> Result<Extracted, ExtractError> {
        let len = std::fs::metadata(path).map_err(|e| ExtractError::Io(e.to_string()))?.len();
        if len > self.limits.max_file_bytes {
            return Err(ExtractError::TooLarge(format!("{len} bytes, limit {}", self.limits.max_file_bytes)));
        }
        let bytes = std::fs::read(path).map_err(|e| ExtractError::Io(e.to_string()))?;
        let place = Place { item: locator, key: Record::key_for(&self.source, locator), parent: None, depth: 0 };
        let mut out = Extracted::default();
        self.extract_bytes(&place, locator, &bytes, &mut out)?;
        Ok(out)
    }

    /// Extracts only the messages appended to the mbox at `path` in bytes `offset..end`, numbered
    /// on after the `before` messages that precede them (those are unchanged and already indexed).
    /// Bytes written after `end` wait for the next run.
    pub fn extract_mbox_tail(
        &self,
        locator: &str,
        path: &Path,
        (offset, end): (u64, u64),
        before: usize,
    ) -> Result<Extracted, ExtractError> {
        let len = std::fs::metadata(path).map_err(|e| ExtractError::Io(e.to_string()))?.len();
        if len > self.limits.max_file_bytes {
            return Err(ExtractError::TooLarge(format!("{len} bytes, limit {}", self.limits.max_file_bytes)));
        }
        let bytes = std::fs::read(path).map_err(|e| ExtractError::Io(e.to_string()))?;
        let range = usize::try_from(offset).ok().zip(usize::try_from(end).ok());
        let tail = range.and_then(|(o, e)| bytes.get(o..e)).ok_or_else(|| ExtractError::Invalid {
            kind: "mbox",
            reason: format!("the mailbox is shorter than the {end} bytes it had when the run began"),
        })?;
        let place = Place { item: locator, key: Record::key_for(&self.source, locator), parent: None, depth: 0 };
        let mut out = Extracted::default();
        crate::mail::extract_mbox_from(self, &place, tail, before, &mut out)?;
        Ok(out)
    }

    /// Extracts `bytes` named `name` into `out`.
    pub fn extract_bytes(
        &self,
        place: &Place,
        name: &str,
        bytes: &[u8],
        out: &mut Extracted,
    ) -> Result<(), ExtractError> {
        if bytes.is_empty() {
            return Err(ExtractError::Invalid { kind: "file", reason: "empty (0 bytes)".into() });
        }
        let format = if self.tickets.is_some() && place.depth == 0 {
            match sniff(name, bytes) {
                Some(Format::Csv) | Some(Format::Json) => Some(Format::Json),
                other => other,
            }
        } else {
            sniff(name, bytes)
        };
        let before = out.records.len();
        match format {
            Some(Format::Pdf) => crate::pdf::extract(self, place, name, bytes, out)?,
            Some(Format::Workbook) => crate::sheet::extract_workbook(self, place, name, bytes, out)?,
            Some(Format::Csv) => crate::sheet::extract_csv(self, place, name, bytes, out)?,
            Some(Format::Mbox) => crate::mail::extract_mbox(self, place, bytes, out)?,
            Some(Format::Eml) => crate::mail::extract_message(self, place, bytes, out)?,
            Some(Format::Json) if place.depth == 0 && self.tickets.is_some() => {
                crate::tickets::extract(self, place, name, bytes, out)?
            }
            Some(Format::Json) | Some(Format::Text) => self.extract_text(place, name, bytes, out),
            None => {
                return Err(ExtractError::Unsupported(name.rsplit('/').next().unwrap_or(name).to_string()));
            }
        }
        if out.records.len() - before > self.limits.max_records {
            out.records.truncate(before + self.limits.max_records);
            self.warn(out, place, format!("more than {} records; the rest were not indexed", self.limits.max_records));
        }
        Ok(())
    }

    fn extract_text(&self, place: &Place, name: &str, bytes: &[u8], out: &mut Extracted) {
        let mut r = self.record(place, place.key.clone(), RecordKind::Note);
        r.title = name.rsplit('/').next().unwrap_or(name).to_string();
        r.text = crate::text::decode(bytes);
        self.bound_text(&mut r, out);
        out.records.push(r);
    }

    /// A new record at `place` with `key`.
    pub fn record(&self, place: &Place, key: String, kind: RecordKind) -> Record {
        let mut r = Record::new(&self.source, place.item, key, kind);
        r.parent = place.parent.clone();
        r
    }

    /// Cuts a record's text to the limit, with a warning.
    pub fn bound_text(&self, r: &mut Record, out: &mut Extracted) {
        if crate::text::truncate(&mut r.text, self.limits.max_text_bytes) {
            let msg = format!("text cut at {} bytes", self.limits.max_text_bytes);
            r.note = Some(msg.clone());
            out.warnings.push(ItemError { source: self.source.clone(), locator: self.locator_of(&r.key), reason: msg });
        }
    }

    /// Records a non-fatal problem.
    pub fn warn(&self, out: &mut Extracted, place: &Place, reason: String) {
        out.warnings.push(ItemError { source: self.source.clone(), locator: self.locator_of(&place.key), reason });
    }

    /// A record key without its `source:` prefix, as reports name items.
    fn locator_of(&self, key: &str) -> String {
        key.strip_prefix(&self.source).and_then(|k| k.strip_prefix(':')).unwrap_or(key).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content_then_name() {
        assert_eq!(sniff("x.bin", b"%PDF-1.7"), Some(Format::Pdf));
        assert_eq!(sniff("box", b"From a@b.c Sat Jan  3 01:05:34 1996\n"), Some(Format::Mbox));
        assert_eq!(sniff("m", b"From: a@b.c\nSubject: hi\n\nbody"), Some(Format::Eml));
        assert_eq!(sniff("a.CSV", b"a,b\n1,2"), Some(Format::Csv));
        assert_eq!(sniff("a.png", b"\x89PNG"), None);
    }

    #[test]
    fn the_tail_of_a_mailbox_is_read_alone_and_numbered_on() {
        let msg = |n: u32| {
            format!("From a@b.example Mon Jan  1 00:00:00 2024\nFrom: a@b.example\nSubject: s{n}\n\nbody {n}\n")
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.mbox");
        let (first, all) = (msg(1) + &msg(2), msg(1) + &msg(2) + &msg(3));
        std::fs::write(&path, &all).unwrap();
        let x = Extractor::new(&crate::SourceSpec::files("mail", "."));
        let (offset, end) = (first.len() as u64, all.len() as u64);
        let out = x.extract_mbox_tail("box.mbox", &path, (offset, end), 2).unwrap();
        let keys: Vec<&str> = out.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["mail:box.mbox/m3"]);
        assert!(out.records[0].text.contains("body 3"));
        // Bytes written after the run began wait for the next one; a shrunk file is an error.
        std::fs::write(&path, all.clone() + &msg(4)).unwrap();
        assert_eq!(x.extract_mbox_tail("box.mbox", &path, (offset, end), 2).unwrap().records.len(), 1);
        std::fs::write(&path, &first).unwrap();
        assert!(x.extract_mbox_tail("box.mbox", &path, (offset, end), 2).is_err());
    }
}
