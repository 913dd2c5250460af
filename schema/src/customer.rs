//! Resolved customers, the evidence behind each link, and the dossiers a query returns.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::{MentionKind, ValueSet};

/// What a piece of evidence compares: a kind of value, or the document a part belongs to.
/// Written as its lowercase name (`name`, `email`, `part_of`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// Two names compared (given name and surname).
    Name,
    /// A person's name found in a document.
    Person,
    /// Companies.
    Company,
    /// Emails.
    Email,
    /// Phones.
    Phone,
    /// Identifiers (order, account, invoice numbers).
    Identifier,
    /// Addresses.
    Address,
    /// Cities.
    City,
    /// Dates of birth.
    Dob,
    /// A part (page, attachment) takes the customers of the document it is part of.
    PartOf,
}

impl EvidenceKind {
    /// The name it is written as.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Name => "name",
            EvidenceKind::Person => "person",
            EvidenceKind::Company => "company",
            EvidenceKind::Email => "email",
            EvidenceKind::Phone => "phone",
            EvidenceKind::Identifier => "identifier",
            EvidenceKind::Address => "address",
            EvidenceKind::City => "city",
            EvidenceKind::Dob => "dob",
            EvidenceKind::PartOf => "part_of",
        }
    }
}

impl From<MentionKind> for EvidenceKind {
    fn from(k: MentionKind) -> EvidenceKind {
        match k {
            MentionKind::Person => EvidenceKind::Person,
            MentionKind::Company => EvidenceKind::Company,
            MentionKind::Email => EvidenceKind::Email,
            MentionKind::Phone => EvidenceKind::Phone,
            MentionKind::Identifier => EvidenceKind::Identifier,
            MentionKind::Address => EvidenceKind::Address,
            MentionKind::City => EvidenceKind::City,
            MentionKind::Dob => EvidenceKind::Dob,
        }
    }
}

impl std::fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for EvidenceKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One piece of evidence for a link: which value matched, from where, with what weight.
/// Every link but a founder's has several, so they are compact: the kind a byte, short texts
/// inline, and the other record's key shared by the pieces of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evidence {
    /// What matched (`name`, `email`, `phone`, `part_of`, …).
    pub kind: EvidenceKind,
    /// The normalized value that matched.
    pub value: CompactString,
    /// The record the other side of the comparison came from.
    pub other: Arc<str>,
    /// Log-likelihood weight (bits) this comparison contributed.
    pub weight: f64,
}

/// Why one record belongs to (or is linked to) a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Link {
    /// The record key.
    pub key: String,
    /// `member`: the record describes this customer; `mentions`: a document that names it.
    pub role: CompactString,
    /// The comparisons that put it there (empty for the cluster's founding record).
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

/// What the silos say about one customer, every variant kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Profile {
    /// The most frequent full name, for display.
    pub display_name: String,
    /// Every name as written.
    pub names: ValueSet,
    /// Emails, normalized.
    pub emails: ValueSet,
    /// Phones in E.164.
    pub phones: ValueSet,
    /// Companies as written.
    pub companies: ValueSet,
    /// Addresses as written.
    pub addresses: ValueSet,
    /// Cities as written.
    pub cities: ValueSet,
    /// Identifiers as `kind:value`.
    pub ids: ValueSet,
    /// Dates of birth.
    pub dobs: ValueSet,
}

impl Profile {
    /// Gives back the spare capacity of every set: a finished profile is read, not grown.
    pub fn shrink_to_fit(&mut self) {
        self.display_name.shrink_to_fit();
        for set in [
            &mut self.names,
            &mut self.emails,
            &mut self.phones,
            &mut self.companies,
            &mut self.addresses,
            &mut self.cities,
            &mut self.ids,
            &mut self.dobs,
        ] {
            set.shrink_to_fit();
        }
    }
}

/// A resolved customer: a stable id, a profile and its linked records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Customer {
    /// Stable id, derived from the cluster's earliest member.
    pub id: String,
    /// What the silos say.
    pub profile: Profile,
    /// Every linked record, with its evidence.
    pub links: Vec<Link>,
}

impl Customer {
    /// The keys of every linked record.
    pub fn keys(&self) -> Vec<String> {
        self.links.iter().map(|l| l.key.clone()).collect()
    }
}

/// Why a customer matched a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MatchReason {
    /// What kind of evidence: `identifier`, `email`, `phone`, `name`, `text`.
    pub kind: String,
    /// The query part that matched.
    pub query: String,
    /// The value it matched (normalized profile value or record key).
    pub matched: String,
}

/// An open problem flagged at the top of a dossier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Flag {
    /// Short label: `disputed invoice`, `open ticket`, `unanswered email`.
    pub label: String,
    /// The record that raised it.
    pub key: String,
    /// One line of detail.
    pub detail: String,
}

/// One record in a dossier, with a snippet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordHit {
    /// The record key.
    pub key: String,
    /// Source name.
    pub source: String,
    /// Record kind.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Highlighted snippet (HTML with `<b>`), or the start of the text.
    pub snippet: String,
    /// Page number for PDF pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The record's date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<DateTime<Utc>>,
    /// True when this record matched the query's words.
    pub matched: bool,
    /// Where it is, as a person says it: `page 2`, `sheet Invoices, row 5`, `from Jane <jane@…>`.
    #[serde(default)]
    pub locus: String,
}

/// Records of one source and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordGroup {
    /// Source name.
    pub source: String,
    /// Record kind.
    pub kind: String,
    /// The records, matching ones first, then newest first.
    pub records: Vec<RecordHit>,
}

/// One event on a dossier's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TimelineEntry {
    /// When.
    pub date: DateTime<Utc>,
    /// The record.
    pub key: String,
    /// Source name.
    pub source: String,
    /// One line.
    pub title: String,
}

/// What a query returns for one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Dossier {
    /// Customer id (`None` for the group of matching records linked to no customer).
    pub id: Option<String>,
    /// Rank score.
    pub score: f64,
    /// The profile.
    pub profile: Profile,
    /// Why it matched.
    pub why: Vec<MatchReason>,
    /// Open problems.
    pub flags: Vec<Flag>,
    /// Records grouped by source and kind.
    pub groups: Vec<RecordGroup>,
    /// All dated records, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Keys of every record in the dossier.
    pub keys: Vec<String>,
}

/// A page of ranked dossiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchResponse {
    /// The query as received.
    pub query: String,
    /// Exact number of matching customers.
    pub total: usize,
    /// 0-based page number.
    pub page: usize,
    /// Dossiers per page.
    pub per_page: usize,
    /// The dossiers of this page, best first.
    pub dossiers: Vec<Dossier>,
    /// Matching records linked to no customer (first page only).
    pub unlinked: Vec<RecordHit>,
    /// Things the user should know (a query read as plain words, …).
    pub notices: Vec<String>,
}

/// One typeahead completion: a customer the typed prefix points to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Suggestion {
    /// The customer's id (open it with `/api/customers/{id}`).
    pub id: String,
    /// The customer's display name.
    pub name: String,
    /// Company and city, to tell namesakes apart.
    pub detail: String,
    /// What the prefix completed: `name`, `company`, `email` or `number`.
    pub matched: String,
}
