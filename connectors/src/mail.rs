//! Mail: mbox files (split here, so every "From " variant is handled and a
//! message keeps a stable ordinal), single .eml messages and maildir files,
//! parsed with mail-parser. Attachments go back through the extractor one
//! level deeper; nested messages become child mail records.

use dossier_schema::RecordKind;
use mail_parser::{Address, HeaderName, Message, MessageParser, MimeHeaders};

use crate::extract::{ExtractError, Extracted, Extractor, Place};

/// Most messages read from one mbox; most attachments read from one message.
const MAX_MESSAGES: usize = 1_000_000;
const MAX_ATTACHMENTS: usize = 256;

/// True when `line` (after "From ") is an mbox separator rather than body text
/// such as "From Russia with love": a sender token, then nothing or a date.
fn is_from_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let rest = String::from_utf8_lossy(rest);
    let mut parts = rest.trim_end().splitn(2, ' ');
    let sender = parts.next().unwrap_or("");
    let tail = parts.next().unwrap_or("").trim();
    !sender.is_empty() && (tail.is_empty() || tail.bytes().any(|b| b.is_ascii_digit()))
}

fn next_is_header(bytes: &[u8]) -> bool {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(b"");
    match line.iter().position(|&b| b == b':') {
        Some(p) if p > 0 => line[..p].iter().all(|&b| b.is_ascii_graphic()),
        _ => false,
    }
}

/// Splits an mbox into messages (byte ranges without the separator line).
pub fn split_mbox(bytes: &[u8]) -> Vec<&[u8]> {
    let start = if bytes.starts_with(b"\xef\xbb\xbf") { 3 } else { 0 };
    let mut messages = Vec::new();
    let mut cur: Option<usize> = None;
    let mut pos = start;

    while pos < bytes.len() && messages.len() < MAX_MESSAGES {
        let end = bytes[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i + 1).unwrap_or(bytes.len());
        let line = &bytes[pos..end];
        let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        // Writers do not all leave a blank line before "From "; the line's shape and
        // a header line after it are what tell a separator from body text.
        if is_from_line(trimmed) && next_is_header(&bytes[end..]) {
            if let Some(s) = cur {
                messages.push(&bytes[s..pos]);
            }
            cur = Some(end);
        } else if cur.is_none() && pos == start {
            // Not an mbox after all (no leading separator): treat the whole file as one message.
            cur = Some(start);
        }

        pos = end;
    }
    if let Some(s) = cur
        && s < bytes.len()
    {
        messages.push(&bytes[s..]);
    }
    messages
}

/// Extracts every message of an mbox.
pub fn extract_mbox(x: &Extractor, place: &Place, bytes: &[u8], out: &mut Extracted) -> Result<(), ExtractError> {
    extract_mbox_from(x, place, bytes, 0, out)
}

/// Extracts the messages of `bytes`, numbered on after the `before` messages that precede them
/// in the mailbox (for the part appended to an mbox already indexed).
pub fn extract_mbox_from(
    x: &Extractor,
    place: &Place,
    bytes: &[u8],
    before: usize,
    out: &mut Extracted,
) -> Result<(), ExtractError> {
    let messages = split_mbox(bytes);
    if messages.is_empty() {
        return Err(ExtractError::Invalid { kind: "mbox", reason: "no messages found".into() });
    }
    for (i, m) in messages.iter().enumerate() {
        let child = Place {
            item: place.item,
            key: format!("{}/m{}", place.key, before + i + 1),
            parent: place.parent.clone(),
            depth: place.depth,
        };
        // mail-parser 0.11 panics on some malformed multiparts ("Invalid part ID"):
        // that costs the one message, not the mailbox.
        let mut part = Extracted::default();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| extract_message(x, &child, m, &mut part))) {
            Ok(Ok(())) => {
                out.records.append(&mut part.records);
                out.warnings.append(&mut part.warnings);
            }
            Ok(Err(e)) => x.warn(out, &child, e.to_string()),
            Err(_) => x.warn(out, &child, "the mail parser crashed on this message; it was skipped".into()),
        }
    }
    Ok(())
}

fn addr_list(a: Option<&Address>) -> String {
    a.map(|a| {
        a.iter()
            .map(|ad| match (ad.name(), ad.address()) {
                (Some(n), Some(e)) => format!("{n} <{e}>"),
                (None, Some(e)) => e.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// A header as text; when the parser met undeclared 8-bit bytes (U+FFFD), the raw
/// bytes are decoded again as windows-1252, which is what such mail nearly always is.
fn header_text(msg: &Message, name: HeaderName, parsed: Option<String>) -> Option<String> {
    let parsed = parsed?;
    if !parsed.contains('\u{FFFD}') {
        return Some(parsed);
    }
    let raw = msg.raw_message();
    let h = msg.headers().iter().find(|h| h.name == name)?;
    let (s, e) = (h.offset_start() as usize, h.offset_end() as usize);
    let bytes = raw.get(s..e)?;
    Some(crate::text::squash(&encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0))
}

fn list_text(v: &mail_parser::HeaderValue) -> String {
    match v {
        mail_parser::HeaderValue::Text(t) => t.to_string(),
        mail_parser::HeaderValue::TextList(l) => l.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// Extracts one message (and its attachments) at `place`.
pub fn extract_message(x: &Extractor, place: &Place, bytes: &[u8], out: &mut Extracted) -> Result<(), ExtractError> {
    let msg = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| ExtractError::Invalid { kind: "mail", reason: "not a message".into() })?;
    message_records(x, place, &msg, out);
    Ok(())
}

fn message_records(x: &Extractor, place: &Place, msg: &Message, out: &mut Extracted) {
    let mut r = x.record(place, place.key.clone(), RecordKind::Email);
    let subject = header_text(msg, HeaderName::Subject, msg.subject().map(str::to_string)).unwrap_or_default();
    let from = header_text(msg, HeaderName::From, Some(addr_list(msg.from()))).unwrap_or_default();
    r.title = if subject.is_empty() { "(no subject)".into() } else { subject.clone() };
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            r.fields.insert(k.to_string(), v);
        }
    };
    put("subject", subject);
    put("from", from);
    put("to", addr_list(msg.to()));
    put("cc", addr_list(msg.cc()));
    put("message_id", msg.message_id().unwrap_or_default().to_string());
    put("in_reply_to", list_text(msg.in_reply_to()));
    put("references", list_text(msg.references()));
    if let Some(d) = msg.date() {
        r.date = chrono::DateTime::from_timestamp(d.to_timestamp(), 0);
        put("date", d.to_rfc3339());
    }
    let thread = r
        .field("references")
        .and_then(|s| s.split_whitespace().next())
        .or_else(|| r.field("in_reply_to"))
        .or_else(|| r.field("message_id"))
        .map(str::to_string);
    if let Some(t) = thread {
        r.fields.insert("thread".into(), t);
    }
    let mut body = String::new();
    for part in msg.text_bodies() {
        if part.is_text_html() {
            continue;
        }
        if let Some(t) = part.text_contents() {
            body.push_str(t);
            body.push('\n');
        }
    }
    if body.trim().is_empty() {
        for part in msg.html_bodies() {
            if let Some(t) = part.text_contents() {
                body.push_str(&crate::text::html_to_text(t));
                body.push('\n');
            }
        }
    }
    r.text = body.trim().to_string();
    x.bound_text(&mut r, out);
    let mail_key = r.key.clone();
    out.records.push(r);

    if place.depth >= x.limits.max_depth {
        if msg.attachment_count() > 0 {
            x.warn(out, place, format!("attachments deeper than {} levels were not read", x.limits.max_depth));
        }
        return;
    }
    for (i, part) in msg.attachments().enumerate() {
        if i >= MAX_ATTACHMENTS {
            x.warn(out, place, format!("more than {MAX_ATTACHMENTS} attachments; the rest were not read"));
            break;
        }
        let child = Place {
            item: place.item,
            key: format!("{mail_key}/att/{}", i + 1),
            parent: Some(mail_key.clone()),
            depth: place.depth + 1,
        };
        if let Some(inner) = part.message() {
            message_records(x, &child, inner, out);
            continue;
        }
        // The name is display text only: it never becomes a path.
        let name = part.attachment_name().map(str::to_string).unwrap_or_else(|| format!("attachment-{}", i + 1));
        let ctype =
            part.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))).unwrap_or_default();
        let before = out.records.len();
        let result = x.extract_bytes(&child, &name, part.contents(), out);
        let made = out.records.len() > before;
        if let Some(first) = out.records.get_mut(before) {
            if first.kind == RecordKind::Note {
                first.kind = RecordKind::Attachment;
            }
            first.fields.insert("attachment".into(), name.clone());
        }
        if let Err(e) = &result
            && !matches!(e, ExtractError::Unsupported(_))
        {
            x.warn(out, &child, format!("attachment `{name}`: {e}"));
        }
        if !made {
            let mut a = x.record(&child, child.key.clone(), RecordKind::Attachment);
            a.parent = Some(mail_key.clone());
            a.title = name.clone();
            a.fields.insert("attachment".into(), name.clone());
            a.fields.insert("content_type".into(), ctype);
            a.fields.insert("bytes".into(), part.contents().len().to_string());
            a.note = Some(match result {
                Err(e) => e.to_string(),
                Ok(()) => "no text".into(),
            });
            out.records.push(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_split_ignores_from_in_body() {
        let mbox = b"\xef\xbb\xbfFrom -\nFrom: a@x.com\nSubject: one\n\nFrom Russia with love\nYear: 1963\n\nFrom b@y.com Sat Jan  3 01:05:34 1996\nFrom: b@y.com\nSubject: two\n\nbody\n";
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        assert!(String::from_utf8_lossy(m[0]).contains("Russia"));
        assert!(String::from_utf8_lossy(m[1]).starts_with("From: b@y.com"));
    }

    #[test]
    fn from_line_shapes() {
        assert!(is_from_line(b"From -"));
        assert!(is_from_line(b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011"));
        assert!(!is_from_line(b"From Russia with love"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::extract::Place;
    use crate::spec::SourceSpec;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes split into messages that are pieces of the input, at most one per line.
        #[test]
        fn split_mbox_returns_pieces_of_its_input(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            let parts = split_mbox(&bytes);
            prop_assert!(parts.len() <= lines);
            let range = bytes.as_ptr_range();
            for p in parts {
                prop_assert!(range.start <= p.as_ptr() && p.as_ptr_range().end <= range.end);
            }
        }

        /// Messages written as an mbox come back one for one, whatever their bodies say, as
        /// long as body lines starting with "From " are quoted the mboxrd way.
        #[test]
        fn mbox_round_trip(bodies in proptest::collection::vec(
            proptest::collection::vec("(From [a-z]{1,8}( [0-9]{1,4})?|[ -~]{0,40})", 0..6), 1..8)) {
            let mut mbox = String::new();
            for (i, body) in bodies.iter().enumerate() {
                mbox.push_str(&format!("From sender{i}@example.com Sat Jan  3 01:05:34 1996\n"));
                mbox.push_str(&format!("From: sender{i}@example.com\nSubject: message {i}\n\n"));
                for line in body {
                    if line.starts_with("From ") {
                        mbox.push('>');
                    }
                    mbox.push_str(line);
                    mbox.push('\n');
                }
            }
            let parts = split_mbox(mbox.as_bytes());
            prop_assert_eq!(parts.len(), bodies.len());
            for (i, p) in parts.iter().enumerate() {
                let text = String::from_utf8_lossy(p);
                let subject = format!("Subject: message {i}\n");
                prop_assert!(text.contains(&subject));
            }
        }

        /// Arbitrary bytes as an mbox, a message or a CSV give records or an error, never a panic.
        #[test]
        fn extractors_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 1..2048), pick in 0..3usize) {
            let name = ["f.mbox", "f.eml", "f.csv"][pick];
            let spec = SourceSpec::files("p", "/nonexistent");
            let x = Extractor::new(&spec);
            let place = Place { item: name, key: format!("p:{name}"), parent: None, depth: 0 };
            let mut out = Extracted::default();
            if x.extract_bytes(&place, name, &bytes, &mut out).is_ok() {
                prop_assert!(out.records.len() <= spec.limits.max_records);
                prop_assert!(out.records.iter().all(|r| r.key.starts_with("p:f.")));
            }
        }
    }
}
