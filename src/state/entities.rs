//! The stored form of a record's entities: postcard, a compact binary encoding, behind a
//! format byte. An incremental run reads every record's entities; JSON took 1.8 s to read back
//! at 100k customers (BENCHMARKS.md). Kinds are stored by their stable names, not by variant
//! number, so reordering an enum cannot change what stored bytes mean. Rows an earlier dossier
//! wrote as JSON text still read.

use dossier_schema::{CompactString, Mention, MentionKind, Offset, RecordKind};
use serde::{Deserialize, Serialize};

use crate::resolve::RecordEntities;

/// First byte of an encoded record: the layout's version (JSON text starts with `{`).
const FORMAT: u8 = 1;

/// Why stored entities did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The binary layout did not decode.
    #[error("{0}")]
    Binary(#[from] postcard::Error),
    /// A row an earlier dossier wrote as JSON did not parse.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A kind name no dossier writes.
    #[error("unknown {0} kind `{1}`")]
    Kind(&'static str, String),
    /// An offset past the largest.
    #[error("offset {0} is too large")]
    Offset(u32),
    /// Bytes after the record.
    #[error("{0} bytes after the record")]
    Trailing(usize),
    /// Neither this layout nor JSON.
    #[error("unknown format (first byte {0:#04x}); written by a newer dossier?")]
    Format(u8),
    /// No bytes at all.
    #[error("empty value")]
    Empty,
}

#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    key: &'a str,
    kind: &'a str,
    parent: Option<&'a str>,
    #[serde(borrow)]
    mentions: Vec<StoredMention<'a>>,
}

#[derive(Serialize, Deserialize)]
struct StoredMention<'a> {
    kind: &'a str,
    /// `None` when written as its normal form (most emails and numbers): fewer bytes to read.
    raw: Option<&'a str>,
    norm: &'a str,
    field: Option<&'a str>,
    offset: Option<u32>,
    party: u16,
}

/// `e` in its stored form.
pub fn encode(e: &RecordEntities) -> Result<Vec<u8>, postcard::Error> {
    let stored = Stored {
        key: &e.key,
        kind: e.kind.as_str(),
        parent: e.parent.as_deref(),
        mentions: e
            .mentions
            .iter()
            .map(|m| StoredMention {
                kind: m.kind.as_str(),
                raw: (m.raw != m.norm).then_some(m.raw.as_str()),
                norm: &m.norm,
                field: m.field.as_deref(),
                offset: m.offset.map(Offset::get),
                party: m.party,
            })
            .collect(),
    };
    postcard::to_extend(&stored, vec![FORMAT])
}

/// Entities from their stored form (or from the JSON an earlier dossier stored).
pub fn decode(bytes: &[u8]) -> Result<RecordEntities, DecodeError> {
    let (&first, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    match first {
        FORMAT => {}
        b'{' => return Ok(serde_json::from_slice(bytes)?),
        other => return Err(DecodeError::Format(other)),
    }
    let (s, left): (Stored, &[u8]) = postcard::take_from_bytes(rest)?;
    if !left.is_empty() {
        return Err(DecodeError::Trailing(left.len()));
    }
    let kind = RecordKind::parse(s.kind).ok_or_else(|| DecodeError::Kind("record", s.kind.to_string()))?;
    let mentions = s
        .mentions
        .into_iter()
        .map(|m| {
            let norm = CompactString::from(m.norm);
            Ok(Mention {
                kind: MentionKind::parse(m.kind).ok_or_else(|| DecodeError::Kind("mention", m.kind.to_string()))?,
                raw: m.raw.map_or_else(|| norm.clone(), CompactString::from),
                norm,
                field: m.field.map(CompactString::from),
                offset: m.offset.map(|at| Offset::new(at as usize).ok_or(DecodeError::Offset(at))).transpose()?,
                party: m.party,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(RecordEntities { key: s.key.to_string(), kind, parent: s.parent.map(str::to_string), mentions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mention(kind: MentionKind, raw: &str, norm: &str) -> Mention {
        Mention { kind, raw: raw.into(), norm: norm.into(), field: None, offset: None, party: 0 }
    }

    fn sample() -> RecordEntities {
        let mut long = mention(
            MentionKind::Address,
            "10 Route 9, Seattle, Washington 98101, United States",
            "10 route 9 seattle wa 98101",
        );
        long.offset = Offset::new(4_000_000);
        long.party = 2;
        let mut email = mention(MentionKind::Email, "jane@acme.example", "jane@acme.example");
        email.field = Some("email".into());
        RecordEntities {
            key: "contracts:acme/jane.pdf#p3".into(),
            kind: RecordKind::Page,
            parent: Some("contracts:acme/jane.pdf".into()),
            mentions: vec![email, long, mention(MentionKind::Person, "Jayne Smyth", "jayne smyth")],
        }
    }

    #[test]
    fn entities_read_back_as_written_and_earlier_json_rows_still_read() {
        let e = sample();
        let bytes = encode(&e).unwrap();
        assert_eq!(decode(&bytes).unwrap(), e);
        let json = serde_json::to_vec(&e).unwrap();
        assert!(bytes.len() < json.len() * 2 / 3, "{} bytes against JSON's {}", bytes.len(), json.len());
        assert_eq!(decode(&json).unwrap(), e);
    }

    #[test]
    fn damaged_bytes_are_an_error_naming_what_is_wrong() {
        let bytes = encode(&sample()).unwrap();
        assert!(matches!(decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(decode(&[7, 1, 2]), Err(DecodeError::Format(7))));
        assert!(matches!(decode(&bytes[..bytes.len() - 3]), Err(DecodeError::Binary(_))));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(DecodeError::Trailing(1))));
        // The record kind's name, changed in place (same length, so the layout holds).
        let mut renamed = bytes.clone();
        let at = renamed.windows(4).position(|w| w == b"page").unwrap();
        renamed[at + 3] = b'x';
        assert!(matches!(decode(&renamed), Err(DecodeError::Kind("record", k)) if k == "pagx"));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let mut framed = vec![FORMAT];
            framed.extend(&bytes);
            let _ = decode(&framed);
        }

        #[test]
        fn any_entities_round_trip(
            key in ".{0,40}",
            parent in proptest::option::of(".{0,30}"),
            ms in proptest::collection::vec((0usize..8, ".{0,30}", ".{0,30}", proptest::option::of("[a-z_]{1,12}"), proptest::option::of(0u32..u32::MAX - 1), any::<u16>()), 0..12),
        ) {
            use MentionKind::*;
            let kinds = [Person, Company, Email, Phone, Identifier, Address, City, Dob];
            let mentions = ms.into_iter().map(|(k, raw, norm, field, offset, party)| Mention {
                kind: kinds[k],
                raw: raw.into(),
                norm: norm.into(),
                field: field.map(Into::into),
                offset: offset.and_then(|o| Offset::new(o as usize)),
                party,
            }).collect();
            let e = RecordEntities { key, kind: RecordKind::Ticket, parent, mentions };
            prop_assert_eq!(decode(&encode(&e).unwrap()).unwrap(), e);
        }
    }
}
