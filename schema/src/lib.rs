//! Shared types of dossier: every stage (connectors → extraction → entities →
//! resolution → index → query → server) speaks in these types and nothing else.

// A library reports through its return values: a stray debug print fails clippy.
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod api;
pub mod customer;
pub mod index;
pub mod mention;
pub mod record;
pub mod set;

pub use api::{ApiErrorBody, Health, Provenance, SubjectExport, Suggestions};
/// The compact string of [`Mention`] texts, for the stages that build mentions.
pub use compact_str::CompactString;
pub use customer::{
    Customer, Dossier, Evidence, EvidenceKind, Flag, Link, MatchReason, Profile, RecordGroup, RecordHit,
    SearchResponse, Suggestion, TimelineEntry,
};
pub use index::{IndexSchema, SchemaError};
pub use mention::{Mention, MentionKind, Offset};
pub use record::{Item, ItemError, Payload, Record, RecordKind};
pub use set::ValueSet;
