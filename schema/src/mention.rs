//! Customer-identifying values found in records.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// What a mention identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MentionKind {
    /// A person's name.
    Person,
    /// A company name.
    Company,
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A configured identifier (account, order, invoice, contract number); `norm` is `kind:value`.
    Identifier,
    /// A postal address.
    Address,
    /// A city (from a field or an address).
    City,
    /// A date of birth.
    Dob,
}

impl MentionKind {
    /// Strong kinds identify a customer by themselves (when not generic).
    pub fn is_strong(self) -> bool {
        matches!(self, MentionKind::Email | MentionKind::Phone | MentionKind::Identifier)
    }

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            MentionKind::Person => "person",
            MentionKind::Company => "company",
            MentionKind::Email => "email",
            MentionKind::Phone => "phone",
            MentionKind::Identifier => "identifier",
            MentionKind::Address => "address",
            MentionKind::City => "city",
            MentionKind::Dob => "dob",
        }
    }
}

/// A customer-identifying value, kept raw for display and normalized for matching.
/// The texts are inline up to 24 bytes (most values are shorter): a million records carry
/// several million mentions, and a heap string each was half their memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Mention {
    /// What it identifies.
    pub kind: MentionKind,
    /// As written in the record.
    pub raw: CompactString,
    /// Normalized for matching: E.164 phone, lowercase email, `order:104233`, folded name.
    pub norm: CompactString,
    /// The field it came from, or `None` for free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<CompactString>,
    /// Byte offset in the record text when found in free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    /// Which party of the record this mention describes (0 = the record's main subject).
    /// A document naming two customers has mentions of party 0 and 1: it links to both
    /// and never bridges them.
    #[serde(default)]
    pub party: u16,
}
