//! dossier: a customer 360 search indexer.
//!
//! Data flows one way: connectors (crate `dossier-connectors`) → extraction →
//! [`entities`] → [`resolve`] → [`index`] → [`query`] → [`server`]. Every stage
//! speaks the types of the `dossier-schema` crate. [`pipeline`] runs the stages
//! for an index run; [`state`] holds what tantivy should not.

// The library speaks through `tracing` and its return values; the few lines written to a
// terminal on purpose say so where they are (a stray debug print fails clippy).
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod access;
pub mod bench;
pub mod check;
pub mod config;
pub mod demo;
pub mod entities;
pub mod eval;
pub mod extraction;

pub mod index;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod plot;
pub mod query;
pub mod resolve;
pub mod schedule;
pub mod server;
pub mod spool;
pub mod state;
pub mod synth;

pub use dossier_connectors as connectors;

/// Writes a line for the person at the terminal: progress when asked for, where the server listens.
#[allow(clippy::print_stderr, reason = "the one place the library writes to the terminal")]
pub(crate) fn tell(line: std::fmt::Arguments) {
    eprintln!("{line}");
}
pub use dossier_schema as schema;
