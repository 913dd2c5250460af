//! Ticket and chat exports (CSV with a header, JSON Lines, or a JSON array of
//! conversations), mapped by the source's `tickets` spec: which field is the
//! text, the id, the date, the author, the title. Other scalar values become
//! fields with dotted names (`scenario.personal.email`).

use dossier_schema::RecordKind;
use serde_json::Value;

use crate::extract::{ExtractError, Extracted, Extractor, Place};
use crate::spec::TicketSpec;

const MAX_FIELDS: usize = 256;
const MAX_DEPTH: usize = 6;

fn flatten(prefix: &str, v: &Value, depth: usize, out: &mut Vec<(String, String)>) {
    if out.len() >= MAX_FIELDS || depth > MAX_DEPTH {
        return;
    }
    let key = |k: &str| {
        if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k), v, depth + 1, out);
            }
        }
        Value::String(s) if !s.is_empty() => out.push((prefix.to_string(), s.clone())),
        Value::Number(n) => out.push((prefix.to_string(), n.to_string())),
        Value::Bool(b) => out.push((prefix.to_string(), b.to_string())),
        _ => {}
    }
}

/// Renders a conversation value as lines: `[[speaker, text], …]`,
/// `[{speaker, text}, …]`, or plain text.
fn conversation(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(turns) => turns
            .iter()
            .map(|t| match t {
                Value::Array(pair) if pair.len() == 2 => {
                    format!("{}: {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or(""))
                }
                Value::Object(o) => {
                    let who =
                        ["speaker", "author", "from", "role"].iter().find_map(|k| o.get(*k)).and_then(Value::as_str);
                    let text =
                        ["text", "body", "message", "content"].iter().find_map(|k| o.get(*k)).and_then(Value::as_str);
                    match (who, text) {
                        (Some(w), Some(t)) => format!("{w}: {t}"),
                        (None, Some(t)) => t.to_string(),
                        _ => String::new(),
                    }
                }
                other => conversation(other),
            })
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, k| cur.get(k))
}

fn to_record(x: &Extractor, place: &Place, spec: &TicketSpec, n: usize, v: &Value, out: &mut Extracted) {
    let id = spec
        .id
        .as_deref()
        .and_then(|p| lookup(v, p))
        .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
        .unwrap_or_else(|| format!("r{n}"));
    let mut r = x.record(place, format!("{}!{id}", place.key), RecordKind::Ticket);
    let mut fields = Vec::new();
    flatten("", v, 0, &mut fields);
    for (k, val) in fields {
        r.fields.insert(k, val);
    }
    r.text = lookup(v, &spec.text).map(conversation).unwrap_or_default();
    r.title = spec
        .title
        .as_deref()
        .and_then(|p| lookup(v, p))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("Ticket {id}"));
    if let Some(d) = spec.date.as_deref().and_then(|p| lookup(v, p)).and_then(Value::as_str) {
        r.date = crate::text::parse_date(d);
    }
    if let Some(a) = spec.author.as_deref().and_then(|p| lookup(v, p)).and_then(Value::as_str) {
        r.fields.insert("author".into(), a.to_string());
    }
    r.fields.insert("ticket".into(), id);
    x.bound_text(&mut r, out);
    out.records.push(r);
}

/// Extracts the tickets of one export file.
pub fn extract(
    x: &Extractor,
    place: &Place,
    name: &str,
    bytes: &[u8],
    out: &mut Extracted,
) -> Result<(), ExtractError> {
    let Some(spec) = x.tickets.as_ref() else {
        return Err(ExtractError::Unsupported(name.to_string()));
    };
    let text = crate::text::decode(bytes);
    let trimmed = text.trim_start();
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".csv") || lower.ends_with(".tsv") {
        let delim = if lower.ends_with(".tsv") { b'\t' } else { b',' };
        let mut rdr = csv::ReaderBuilder::new().delimiter(delim).flexible(true).from_reader(text.as_bytes());
        let headers = rdr.headers().map_err(|e| ExtractError::Invalid { kind: "CSV", reason: e.to_string() })?.clone();
        for (i, row) in rdr.records().enumerate().take(x.limits.max_records) {
            match row {
                Ok(row) => {
                    let obj: serde_json::Map<String, Value> = headers
                        .iter()
                        .zip(row.iter())
                        .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                        .collect();
                    to_record(x, place, spec, i + 2, &Value::Object(obj), out);
                }
                Err(e) => x.warn(out, place, format!("line {}: {e}", i + 2)),
            }
        }
        return Ok(());
    }
    if trimmed.starts_with('[') {
        let v: Value =
            serde_json::from_str(trimmed).map_err(|e| ExtractError::Invalid { kind: "JSON", reason: e.to_string() })?;
        for (i, item) in v.as_array().into_iter().flatten().enumerate().take(x.limits.max_records) {
            to_record(x, place, spec, i + 1, item, out);
        }
        return Ok(());
    }
    for (i, line) in text.lines().enumerate().take(x.limits.max_records) {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => to_record(x, place, spec, i + 1, &v, out),
            Err(e) => x.warn(out, place, format!("line {}: {e}", i + 1)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_shapes() {
        let v: Value = serde_json::json!([["agent", "Hi"], ["customer", "Hello"]]);
        assert_eq!(conversation(&v), "agent: Hi\ncustomer: Hello");
        let v: Value = serde_json::json!([{"speaker": "USER", "text": "book a table"}]);
        assert_eq!(conversation(&v), "USER: book a table");
    }

    #[test]
    fn flattens_nested() {
        let v: Value = serde_json::json!({"a": {"b": "x", "n": 3}, "c": []});
        let mut out = vec![];
        flatten("", &v, 0, &mut out);
        assert_eq!(out, vec![("a.b".to_string(), "x".to_string()), ("a.n".to_string(), "3".to_string())]);
    }
}
