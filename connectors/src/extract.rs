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
    /// Rows of a CSV file read whole, header included: a later version that only grew is read
    /// from there on.
    #[serde(default)]
    pub rows: Option<usize>,
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

    /// Extracts only what was appended to the mbox or CSV file at `path`, in bytes `offset..end`:
    /// messages or rows numbered on after the `before` ones that precede them (those are
    /// unchanged and already indexed). Bytes written after `end` wait for the next run.
    pub fn extract_tail(
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
            kind: "file",
            reason: format!("the file is shorter than the {end} bytes it had when the run began"),
        })?;
        let place = Place { item: locator, key: Record::key_for(&self.source, locator), parent: None, depth: 0 };
        let mut out = Extracted::default();
        match sniff(locator, &bytes) {
            Some(Format::Mbox) => crate::mail::extract_mbox_from(self, &place, tail, before, &mut out)?,
            Some(Format::Csv) if self.tickets.is_none() => {
                let head = bytes.get(..usize::try_from(offset).unwrap_or(usize::MAX)).unwrap_or(&bytes);
                crate::sheet::extract_csv_tail(self, &place, locator, head, tail, before, &mut out)?
            }
            _ => {
                return Err(ExtractError::Invalid {
                    kind: "file",
                    reason: "only a mailbox or a CSV file can be read from where it was last read".into(),
                });
            }
        }
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
        let out = x.extract_tail("box.mbox", &path, (offset, end), 2).unwrap();
        let keys: Vec<&str> = out.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["mail:box.mbox/m3"]);
        assert!(out.records[0].text.contains("body 3"));
        // Bytes written after the run began wait for the next one; a shrunk file is an error.
        std::fs::write(&path, all.clone() + &msg(4)).unwrap();
        assert_eq!(x.extract_tail("box.mbox", &path, (offset, end), 2).unwrap().records.len(), 1);
        std::fs::write(&path, &first).unwrap();
        assert!(x.extract_tail("box.mbox", &path, (offset, end), 2).is_err());
    }

    #[test]
    fn the_rows_appended_to_a_csv_file_read_alone_are_the_rows_a_whole_read_finds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.csv");
        let mut first = String::from("\u{feff}date;agent;caller;note\n");
        for i in 1..=30 {
            first += &format!("2024-03-{:02};agent{i};Caller {i};\"note {i}, call back\"\n", i % 28 + 1);
        }
        // Appended: a quoted field across lines, a blank line, non-ASCII text.
        let all = first.clone() + "2024-04-01;agent9;Zoë Ng;\"line one\nline two\"\n\n2024-04-02;agent1;Bo;short\n";
        std::fs::write(&path, &all).unwrap();
        let x = Extractor::new(&crate::SourceSpec::files("calls", "."));
        let whole = x.extract_file("calls.csv", &path).unwrap();
        assert_eq!(whole.rows, Some(33), "a header, 30 rows, 2 appended; the blank line is no row");
        let (offset, end) = (first.len() as u64, all.len() as u64);
        let tail = x.extract_tail("calls.csv", &path, (offset, end), 31).unwrap();
        assert_eq!(tail.rows, Some(33));
        let keys: Vec<&str> = tail.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["calls:calls.csv!r32", "calls:calls.csv!r33"]);
        for r in &tail.records {
            let same = whole.records.iter().find(|w| w.key == r.key).unwrap();
            assert_eq!((&r.text, &r.fields, &r.title, r.date), (&same.text, &same.fields, &same.title, same.date));
        }
        assert_eq!(tail.records[0].fields.get("caller").map(String::as_str), Some("Zoë Ng"));
        // More rows than the limit: an error, not a silent cut that would shift the numbering.
        let mut spec = crate::SourceSpec::files("calls", ".");
        spec.limits.max_records = 31;
        assert!(Extractor::new(&spec).extract_tail("calls.csv", &path, (offset, end), 31).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Rows appended to any CSV file of more than 20 rows, read alone, are the records a whole
        /// read finds for them: same keys, texts, fields, titles and dates.
        #[test]
        fn a_csv_tail_reads_as_the_whole_file_does(
            rows in proptest::collection::vec(
                proptest::collection::vec("[a-zA-Z0-9 ,;\"\n\u{e9}\u{20ac}-]{0,10}", 1..5), 22..40),
            extra in 0usize..16,
        ) {
            let split = (21 + extra).min(rows.len() - 1);
            let write = |rows: &[Vec<String>]| {
                let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
                for r in rows {
                    w.write_record(r).unwrap();
                }
                w.into_inner().unwrap()
            };
            let first = write(&rows[..split]);
            let all = write(&rows);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.csv");
            std::fs::write(&path, &all).unwrap();
            let x = Extractor::new(&crate::SourceSpec::files("s", "."));
            let whole = x.extract_file("t.csv", &path).unwrap();
            let before = x.extract_file("t.csv", &{
                let p = dir.path().join("first.csv");
                std::fs::write(&p, &first).unwrap();
                p
            }).unwrap().rows.unwrap();
            let tail = x.extract_tail("t.csv", &path, (first.len() as u64, all.len() as u64), before).unwrap();
            proptest::prop_assert_eq!(tail.rows, whole.rows);
            let found = |out: &Extracted, key: &str| out.records.iter().find(|r| r.key == key).map(|r| {
                (r.text.clone(), r.fields.clone(), r.title.clone(), r.date)
            });
            let tail_keys: Vec<&String> = tail.records.iter().map(|r| &r.key).collect();
            let wanted: Vec<&String> = whole.records.iter().map(|r| &r.key)
                .filter(|k| k.rsplit("!r").next().and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n > before))
                .collect();
            proptest::prop_assert_eq!(&tail_keys, &wanted);
            for k in tail_keys {
                proptest::prop_assert_eq!(found(&tail, k), found(&whole, k));
            }
        }
    }
}
