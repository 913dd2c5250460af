//! The tantivy schema shared by the indexer and the query engine.
//!
//! One index holds two kinds of documents, told apart by `doctype`: records
//! (full text, fields, source, kind, date, page, linked customers) and customer
//! profiles (names with phonetic and canonical forms, normalized identifiers).

use tantivy::Index;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};

/// The field of record documents that holds their customers' ids (also a fast field).
pub const FIELD_CUSTOMERS: &str = "customers";

/// Name of the tokenizer that splits on non-alphanumerics, lowercases and folds accents.
pub const FOLD_TOKENIZER: &str = "fold";

/// `doctype` value of record documents.
pub const DOC_RECORD: &str = "record";
/// `doctype` value of customer documents.
pub const DOC_CUSTOMER: &str = "customer";

/// Errors opening or checking an index.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The index on disk has other fields than this version of dossier writes.
    #[error(
        "the index schema does not match this version of dossier (field `{0}` is missing or differs); rebuild it with `dossier index --full`"
    )]
    Mismatch(String),
    /// The index on disk was written with another schema altogether.
    #[error(
        "the index was written by another version of dossier; rebuild it with `dossier index --full` (which re-reads every source)"
    )]
    Outdated,
}

/// Handles to every field of the index schema.
#[derive(Debug, Clone)]
pub struct IndexSchema {
    /// The tantivy schema.
    pub schema: Schema,
    /// `record` or `customer`.
    pub doctype: Field,
    /// Record key or customer id (exact).
    pub key: Field,
    /// `source:item-locator` of a record, for deleting an item's records at once.
    pub item: Field,
    /// Source name (exact, fast).
    pub source: Field,
    /// Record kind (exact).
    pub kind: Field,
    /// Title (full text).
    pub title: Field,
    /// Body text (full text with positions, for phrases and snippets).
    pub text: Field,
    /// Field values of a record (full text).
    pub fields: Field,
    /// Record date (fast, for ranges and the timeline).
    pub date: Field,
    /// Linked customer ids of a record (exact, fast, multi-valued).
    pub customers: Field,
    /// Status words of a record (`disputed`, `open`, …; exact).
    pub status: Field,
    /// The whole record or customer as JSON (stored only: the one stored field a search reads
    /// besides `key`, so a document's stored bytes hold its text once).
    pub json: Field,
    /// Customer names (full text, folded).
    pub name: Field,
    /// Double Metaphone codes of customer name parts (exact).
    pub phonetic: Field,
    /// Canonical first names (Bob → robert) and folded name tokens (exact).
    pub canon: Field,
    /// Normalized identifiers, emails, phones and phone tails of a customer (exact).
    pub ids: Field,
    /// Companies, cities and addresses of a customer (full text, folded).
    pub place: Field,
    /// The views (role names, `*` for every source) a customer document is written for (exact,
    /// fast: name matches are checked against it one by one).
    pub view: Field,
}

impl IndexSchema {
    /// Builds the schema.
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let folded = |positions: bool| {
            let idx = TextFieldIndexing::default().set_tokenizer(FOLD_TOKENIZER).set_index_option(if positions {
                IndexRecordOption::WithFreqsAndPositions
            } else {
                IndexRecordOption::WithFreqs
            });
            TextOptions::default().set_indexing_options(idx)
        };
        let doctype = b.add_text_field("doctype", STRING);
        let key = b.add_text_field("key", STRING | STORED);
        let item = b.add_text_field("item", STRING);
        let source = b.add_text_field("source", STRING | FAST);
        let kind = b.add_text_field("kind", STRING);
        let title = b.add_text_field("title", folded(true));
        let text = b.add_text_field("text", folded(true));
        let fields = b.add_text_field("fields", folded(true));
        let date = b.add_date_field("date", INDEXED | FAST);
        let customers = b.add_text_field(FIELD_CUSTOMERS, STRING | FAST);
        let status = b.add_text_field("status", STRING);
        let json = b.add_text_field("json", STORED);
        let name = b.add_text_field("name", folded(true));
        let phonetic = b.add_text_field("phonetic", STRING);
        let canon = b.add_text_field("canon", STRING);
        let ids = b.add_text_field("ids", STRING);
        let place = b.add_text_field("place", folded(false));
        let view = b.add_text_field("view", STRING | FAST);
        IndexSchema {
            schema: b.build(),
            doctype,
            key,
            item,
            source,
            kind,
            title,
            text,
            fields,
            date,
            customers,
            status,
            json,
            name,
            phonetic,
            canon,
            ids,
            place,
            view,
        }
    }

    /// Registers the analyzers this schema names on an index.
    pub fn register_tokenizers(index: &Index) {
        let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(64))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build();
        index.tokenizers().register(FOLD_TOKENIZER, analyzer);
    }

    /// Checks that an index on disk has every field this schema writes, with the same options
    /// (a field that lost its fast column would quietly match nothing).
    pub fn check(&self, on_disk: &Schema) -> Result<(), SchemaError> {
        for (_, entry) in self.schema.fields() {
            let same = on_disk.get_field(entry.name()).is_ok_and(|f| on_disk.get_field_entry(f) == entry);
            if !same {
                return Err(SchemaError::Mismatch(entry.name().to_string()));
            }
        }
        Ok(())
    }
}

impl Default for IndexSchema {
    fn default() -> Self {
        Self::new()
    }
}
