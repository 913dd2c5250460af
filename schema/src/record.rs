//! Items (what a connector lists) and records (what is indexed and shown).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::mention::Mention;

/// What kind of thing a record is; decides grouping and display in a dossier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A row of a database table or query.
    Row,
    /// A data row of a spreadsheet sheet or CSV file.
    SheetRow,
    /// A PDF document (parent of its pages; carries metadata, little text).
    Document,
    /// One page of a PDF document.
    Page,
    /// One email message.
    Email,
    /// A file attached to an email (its own text, the mail as parent).
    Attachment,
    /// A ticket or chat conversation from an export.
    Ticket,
    /// A plain text file or note.
    Note,
}

impl RecordKind {
    /// The stable lowercase name used in the index, the API and `kind:` filters.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Row => "row",
            RecordKind::SheetRow => "sheet_row",
            RecordKind::Document => "document",
            RecordKind::Page => "page",
            RecordKind::Email => "email",
            RecordKind::Attachment => "attachment",
            RecordKind::Ticket => "ticket",
            RecordKind::Note => "note",
        }
    }

    /// Parses the name produced by [`RecordKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "row" => RecordKind::Row,
            "sheet_row" => RecordKind::SheetRow,
            "document" => RecordKind::Document,
            "page" => RecordKind::Page,
            "email" => RecordKind::Email,
            "attachment" => RecordKind::Attachment,
            "ticket" => RecordKind::Ticket,
            "note" => RecordKind::Note,
            _ => return None,
        })
    }
}

/// The unit that is indexed and shown: a row, an email, an attachment, a PDF page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Record {
    /// Globally unique key: `source:locator` plus `#pN`, `/att/N` or `!Sheet!rN`.
    pub key: String,
    /// The configured source name.
    pub source: String,
    /// What kind of record this is.
    pub kind: RecordKind,
    /// Locator of the item this record was extracted from (deletes go by item).
    pub item: String,
    /// Key of the parent record (a PDF page's document, an attachment's mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A short human title: subject line, file name, table and key.
    pub title: String,
    /// The full text (body, page text, or the row rendered as `field: value` lines).
    pub text: String,
    /// Named fields: columns, headers, mail headers; in source order of discovery.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The record's main date (order date, mail date, invoice date), for the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<DateTime<Utc>>,
    /// 1-based page number for PDF pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// A problem noted while extracting (for example "no text layer"); the record is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Customer mentions found by the entities stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Mention>,
}

impl Record {
    /// A record with the given identity and empty content.
    pub fn new(source: &str, item: &str, key: String, kind: RecordKind) -> Self {
        Record {
            key,
            source: source.to_string(),
            kind,
            item: item.to_string(),
            parent: None,
            title: String::new(),
            text: String::new(),
            fields: BTreeMap::new(),
            date: None,
            page: None,
            note: None,
            mentions: Vec::new(),
        }
    }

    /// The key of a record of `source` at `locator`, as the CLI contract spells it.
    pub fn key_for(source: &str, locator: &str) -> String {
        format!("{source}:{locator}")
    }

    /// A field's value looked up case-insensitively.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Where an item's content is to be found.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A file to be extracted.
    File(PathBuf),
    /// Records already built while listing (database rows, ticket lines).
    Records(Vec<Record>),
}

/// What a connector lists: a file, a table row, a message; with a stable locator and a version.
#[derive(Debug, Clone)]
pub struct Item {
    /// Stable within the source: a relative path, `table/key`, …
    pub locator: String,
    /// Changes when the content changes: a content hash, mtime+size, or a row version.
    pub version: String,
    /// Size in bytes, for progress and limits.
    pub size: u64,
    /// The content.
    pub payload: Payload,
}

/// Why one item could not be read; recorded in the run's report, the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ItemError {
    /// The source name.
    pub source: String,
    /// The item's locator (or the source location when listing failed).
    pub locator: String,
    /// A sentence saying what went wrong and, where it helps, what to do.
    pub reason: String,
}
