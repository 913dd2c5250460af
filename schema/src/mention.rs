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

    /// Parses the name produced by [`MentionKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "person" => MentionKind::Person,
            "company" => MentionKind::Company,
            "email" => MentionKind::Email,
            "phone" => MentionKind::Phone,
            "identifier" => MentionKind::Identifier,
            "address" => MentionKind::Address,
            "city" => MentionKind::City,
            "dob" => MentionKind::Dob,
            _ => return None,
        })
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
    pub offset: Option<Offset>,
    /// Which party of the record this mention describes (0 = the record's main subject).
    /// A document naming two customers has mentions of party 0 and 1: it links to both
    /// and never bridges them.
    #[serde(default)]
    pub party: u16,
}

/// A byte offset in a record's text, four bytes with its `Option` (a mention has one or none,
/// and a million records carry millions of mentions). Reads and writes as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Offset(std::num::NonZeroU32);

impl Offset {
    /// Offset `at`; `None` past the largest (`u32::MAX - 1`).
    pub fn new(at: usize) -> Option<Offset> {
        let at = u32::try_from(at).ok()?;
        std::num::NonZeroU32::new(at.checked_add(1)?).map(Offset)
    }

    /// The offset.
    pub fn get(self) -> u32 {
        self.0.get() - 1
    }
}

impl Serialize for Offset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Offset, D::Error> {
        let at = u32::deserialize(d)?;
        Offset::new(at as usize).ok_or_else(|| serde::de::Error::custom(format!("offset {at} is too large")))
    }
}

impl schemars::JsonSchema for Offset {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Offset".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        u32::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_is_eighty_bytes_and_its_offset_reads_and_writes_as_a_number() {
        assert_eq!(std::mem::size_of::<Option<Offset>>(), 4);
        assert!(std::mem::size_of::<Mention>() <= 80);
        for at in [0usize, 1, 4_000_000, u32::MAX as usize - 1] {
            let o = Offset::new(at).unwrap();
            assert_eq!(o.get() as usize, at);
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, at.to_string());
            assert_eq!(serde_json::from_str::<Offset>(&json).unwrap(), o);
        }
        assert_eq!(Offset::new(u32::MAX as usize), None);
        assert_eq!(Offset::new(usize::MAX), None);
        assert!(serde_json::from_str::<Offset>(&u32::MAX.to_string()).is_err());
        let m: Mention = serde_json::from_str(r#"{"kind":"email","raw":"a@b.c","norm":"a@b.c","offset":7}"#).unwrap();
        assert_eq!(m.offset.map(Offset::get), Some(7));
    }

    #[test]
    fn every_mention_kind_parses_from_its_name() {
        use MentionKind::*;
        for k in [Person, Company, Email, Phone, Identifier, Address, City, Dob] {
            assert_eq!(MentionKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        assert_eq!(MentionKind::parse("Person"), None);
    }
}
