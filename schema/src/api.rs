//! Shapes of the HTTP API that are not search results themselves.

use serde::{Deserialize, Serialize};

use crate::Suggestion;

/// Every error the API answers, with the HTTP status repeated in the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiErrorBody {
    /// What went wrong and, where it helps, what to do.
    pub error: String,
    /// The HTTP status code.
    pub status: u16,
}

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The dossier version.
    pub version: String,
}

/// `GET /api/suggest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Suggestions {
    /// Customers the typed prefix points to, names starting with it first.
    pub suggestions: Vec<Suggestion>,
}

/// Where one record came from, for a subject-access export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Provenance {
    /// The record key.
    pub key: String,
    /// The configured source.
    pub source: String,
    /// The item (file, row, message) within the source.
    pub item: String,
    /// The item's version when it was read (modification time and size, or a row's change column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_version: Option<String>,
    /// The index run that read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
}

/// Everything dossier holds about one customer, for a subject-access request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectExport {
    /// The customer id.
    pub customer: String,
    /// Earlier ids of this customer (merged or split since).
    pub former_ids: Vec<String>,
    /// When the export was made (RFC 3339).
    pub exported_at: String,
    /// What the silos say, every variant kept.
    pub profile: crate::Profile,
    /// Why each record belongs to the customer.
    pub links: Vec<crate::Link>,
    /// Every linked record in full, with the mentions found in it.
    pub records: Vec<crate::Record>,
    /// Where each record came from.
    pub provenance: Vec<Provenance>,
}
