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
