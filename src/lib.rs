//! dossier: a customer 360 search indexer.
//!
//! Data flows one way: connectors (crate `dossier-connectors`) → extraction →
//! [`entities`] → [`resolve`] → [`index`] → [`query`] → [`server`]. Every stage
//! speaks the types of the `dossier-schema` crate. [`pipeline`] runs the stages
//! for an index run; [`state`] holds what tantivy should not.

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
pub use dossier_schema as schema;
