//! dossier's connectors: each silo kind behind one trait.
//!
//! A connector lists the items of one configured source (files, table rows,
//! ticket lines) with stable locators and versions. File items are turned into
//! records by [`extract`], which dispatches on the format and is safe to run on
//! hostile input: every parse is bounded by [`Limits`].

// A library reports through its return values: a stray debug print fails clippy.
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod database;
pub mod extract;
pub mod files;
pub mod mail;
pub mod pdf;
pub mod sheet;
pub mod spec;
pub mod text;
pub mod tickets;

use dossier_schema::Item;

pub use extract::{ExtractError, Extractor};
pub use spec::{Limits, SourceKind, SourceSpec, TableSpec, TicketSpec};

/// Errors that stop a whole source's listing (an item's failure never does).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The source's location does not exist or cannot be read.
    #[error("source `{source_name}`: cannot read {location}: {reason}")]
    Location {
        /// Source name.
        source_name: String,
        /// The configured location.
        location: String,
        /// Why.
        reason: String,
    },
    /// The database could not be reached or queried.
    #[error("source `{source_name}`: database error: {reason}")]
    Database {
        /// Source name.
        source_name: String,
        /// Why, without credentials.
        reason: String,
    },
    /// The configuration of the source is wrong.
    #[error("source `{source_name}`: {reason}")]
    Config {
        /// Source name.
        source_name: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
}

/// What a listing produced besides items.
#[derive(Debug, Default, Clone)]
pub struct ScanReport {
    /// True when every part of the source was listed; deletes are applied only then.
    pub complete: bool,
    /// Items that could not be listed or read while listing.
    pub errors: Vec<dossier_schema::ItemError>,
    /// Times a dropped connection was re-established and the read resumed.
    pub reconnects: u32,
}

/// One configured silo that can list its items.
pub trait Connector: Send {
    /// The source name.
    fn name(&self) -> &str;
    /// Lists every item, calling `sink` for each; `sink` returns false to stop early.
    fn scan(&mut self, sink: &mut dyn FnMut(Item) -> bool) -> Result<ScanReport, ConnectorError>;
    /// The item versions of the last run, by locator. A connector that can list cheaply what
    /// changed (a database table with a change column) uses them to read only that; it passes
    /// on unchanged items with their old version and no content. Shared rather than copied: a
    /// table's known rows may be millions.
    fn set_known(&mut self, _known: std::sync::Arc<Known>) {}
}

/// The item versions of a source's last run, by locator. A table's rows are hundreds of
/// thousands of items, each looked up once or twice a listing: most locators and versions fit
/// a [`CompactString`](dossier_schema::CompactString) without a heap allocation, FxHash hashes
/// them, and an entry's index lets a listing mark it seen without a second table.
pub type Known =
    indexmap::IndexMap<dossier_schema::CompactString, dossier_schema::CompactString, rustc_hash::FxBuildHasher>;

/// Builds the connector for a source spec. `base` resolves relative locations.
pub fn connector_for(spec: &SourceSpec, base: &std::path::Path) -> Result<Box<dyn Connector>, ConnectorError> {
    match spec.kind {
        SourceKind::Files | SourceKind::Tickets => Ok(Box::new(files::FileConnector::new(spec, base)?)),
        SourceKind::Sqlite | SourceKind::Postgres | SourceKind::Mysql => {
            Ok(Box::new(database::DatabaseConnector::new(spec, base)?))
        }
    }
}
