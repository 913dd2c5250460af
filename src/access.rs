//! Who is asking and what they may see: API keys (kept only as BLAKE3 hashes), the viewer a
//! key grants (its role's sources, unmasking, administration), the per-role views customer
//! documents are written for, and the masking of sensitive values.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::LazyLock;

use dossier_schema::{Dossier, Mention, MentionKind, Record, RecordHit};
use regex::Regex;

use crate::config::{Config, PrivacySection};

/// The view tag of customer documents every source contributes to (roles that see `*`).
pub const ALL_VIEW: &str = "*";
/// What every API key starts with, so a leaked one is recognisable in logs and scanners.
pub const KEY_PREFIX: &str = "dsk_";

/// Who is asking, and what that lets them see.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The key's name (or `cli:USER` at the console); written to the audit log.
    pub who: String,
    /// The role name (`*` for the operator at the console).
    pub role: String,
    /// The sources visible; `None` for all.
    pub sources: Option<BTreeSet<String>>,
    /// Sensitive values shown as they are.
    pub unmask: bool,
    /// May read run reports, the audit log and subject exports.
    pub admin: bool,
}

impl Viewer {
    /// The operator at the console: every source, unmasked.
    pub fn operator() -> Viewer {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Viewer { who: format!("cli:{user}"), role: ALL_VIEW.into(), sources: None, unmask: true, admin: true }
    }

    /// The viewer `role` makes of `who`, or `None` when the config has no such role.
    pub fn for_role(cfg: &Config, who: &str, role: &str) -> Option<Viewer> {
        let spec = cfg.roles.get(role)?;
        Some(Viewer {
            who: who.to_string(),
            role: role.to_string(),
            sources: cfg.role_sources(role),
            unmask: spec.unmask,
            admin: spec.admin,
        })
    }

    /// True when records of `source` exist for this viewer.
    pub fn sees(&self, source: &str) -> bool {
        self.sources.as_ref().is_none_or(|s| s.contains(source))
    }

    /// The tag of the customer documents written for this viewer's role.
    pub fn view(&self) -> &str {
        if self.sources.is_none() { ALL_VIEW } else { &self.role }
    }
}

/// One view customer documents are written for: a tag and the sources it sees (`None`: all).
pub type View = (String, Option<BTreeSet<String>>);

/// The views of a config: `*` (every source) and one per role that sees only some sources.
pub fn views(cfg: &Config) -> Vec<View> {
    let mut out: Vec<View> = vec![(ALL_VIEW.to_string(), None)];
    for role in cfg.roles.keys() {
        if let Some(s) = cfg.role_sources(role) {
            out.push((role.clone(), Some(s)));
        }
    }
    out
}

/// A fingerprint of the views, stored with each run so a server can tell that roles changed
/// since the index was written.
pub fn views_fingerprint(views: &[View]) -> String {
    let mut h = blake3::Hasher::new();
    for (tag, sources) in views {
        h.update(tag.as_bytes());
        h.update(b"\0");
        for s in sources.iter().flatten() {
            h.update(s.as_bytes());
            h.update(b",");
        }
        h.update(if sources.is_none() { b"*\n" } else { b"\n" });
    }
    h.finalize().to_hex().to_string()
}

/// A new random API key.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    use base64::Engine;
    Ok(format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a key: `blake3:HEX`. Keys are 256 random bits, so a fast hash is enough
/// (no password stretching is needed against guessing).
pub fn hash_key(key: &str) -> String {
    format!("blake3:{}", blake3::hash(key.trim().as_bytes()).to_hex())
}

/// The hex digest of a `blake3:HEX` hash, when it is one.
pub fn parse_key_hash(h: &str) -> Option<&str> {
    let hex = h.strip_prefix("blake3:")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// Masks sensitive values for viewers without `unmask`.
#[derive(Debug, Clone)]
pub struct Masker {
    patterns: Vec<Regex>,
    /// The patterns together, one pass telling whether a text may hold any (most hold none):
    /// each without its Unicode word boundaries, which matches wherever it matches and more.
    /// (With them, one non-ASCII character in a text, a dash or an accent, kept the search off
    /// the lazy DFA: 20 µs instead of 0.8 µs for a dossier's preview.) `None` when the set
    /// could not be built, and every pattern is tried.
    any: Option<regex::RegexSet>,
    /// The fewest bytes a match of any pattern holds: a shorter text (most field values) holds
    /// none, and is not searched (a shown record has a dozen values, each search of the set has
    /// its fixed cost).
    shortest: usize,
    fields: Vec<String>,
}

/// `hir` without its Unicode word-boundary assertions: it matches every text `hir` matches.
fn without_word_bounds(hir: &regex_syntax::hir::Hir) -> regex_syntax::hir::Hir {
    use regex_syntax::hir::{Capture, Hir, HirKind, Look, Repetition};
    match hir.kind() {
        HirKind::Look(
            Look::WordUnicode
            | Look::WordUnicodeNegate
            | Look::WordStartUnicode
            | Look::WordEndUnicode
            | Look::WordStartHalfUnicode
            | Look::WordEndHalfUnicode,
        ) => Hir::empty(),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(without_word_bounds).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(without_word_bounds).collect()),
        HirKind::Repetition(r) => {
            Hir::repetition(Repetition { sub: Box::new(without_word_bounds(&r.sub)), ..r.clone() })
        }
        HirKind::Capture(c) => Hir::capture(Capture { sub: Box::new(without_word_bounds(&c.sub)), ..c.clone() }),
        _ => hir.clone(),
    }
}

/// The masking character.
const DOT: char = '•';

/// Markup a snippet may carry around highlighted words.
static TAGS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"</?b>").expect("static regex"));

impl Masker {
    /// The masker of a `[privacy]` section; patterns that do not compile are skipped (the
    /// config check has already rejected them).
    pub fn new(p: &PrivacySection) -> Masker {
        let patterns: Vec<Regex> = p.mask_patterns.iter().filter_map(|s| Regex::new(s).ok()).collect();
        // A pattern that does not parse here (none: they compiled) leaves every text searched
        // with every pattern; one that can match nothing needs no room.
        let parsed: Option<Vec<regex_syntax::hir::Hir>> =
            patterns.iter().map(|re| regex_syntax::Parser::new().parse(re.as_str()).ok()).collect();
        let (any, shortest) = match parsed {
            Some(hirs) => (
                regex::RegexSet::new(hirs.iter().map(|h| without_word_bounds(h).to_string())).ok(),
                hirs.iter().filter_map(|h| h.properties().minimum_len()).min().unwrap_or(usize::MAX),
            ),
            None => (None, 0),
        };
        Masker { any, shortest, patterns, fields: p.mask_fields.iter().map(|f| f.to_ascii_lowercase()).collect() }
    }

    /// True when a field of this name is masked whole.
    pub fn is_masked_field(&self, name: &str) -> bool {
        // Compared byte by byte, not through a lowered copy: a dossier asks for every field.
        let fold = |b: u8| if b == b' ' || b == b'-' { b'_' } else { b.to_ascii_lowercase() };
        self.fields.iter().any(|f| f.len() == name.len() && f.bytes().zip(name.bytes()).all(|(x, y)| x == fold(y)))
    }

    /// `s` with every sensitive match masked but for its last four alphanumerics.
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        if s.len() < self.shortest || self.any.as_ref().is_some_and(|any| !any.is_match(s)) {
            return out;
        }
        for re in &self.patterns {
            if !re.is_match(&out) {
                continue;
            }
            let masked = re
                .replace_all(&out, |c: &regex::Captures| {
                    let m = &c[0];
                    let digits: Vec<u32> = m.chars().filter_map(|ch| ch.to_digit(10)).collect();
                    // Long digit runs are masked only when they are card numbers, so order and
                    // phone numbers stay readable.
                    if digits.len() >= 13 && !luhn(&digits) { m.to_string() } else { mask_keep_last4(m) }
                })
                .into_owned();
            out = Cow::Owned(masked);
        }
        out
    }

    /// Masks `values` (and the patterns) in `s`.
    fn text_and_values(&self, s: &str, values: &[String]) -> String {
        let mut out = self.text(s).into_owned();
        for v in values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), &mask_all(v));
            }
        }
        out
    }

    /// A snippet with highlight markup: when anything in it is sensitive, the plain masked text
    /// (the highlight would split a value across tags and let it through).
    pub fn html(&self, s: &str, values: &[String]) -> String {
        let plain = TAGS.replace_all(s, "");
        let masked = self.text_and_values(&plain, values);
        if masked == plain { s.to_string() } else { masked }
    }

    /// The values of a record's masked fields, longest first so a value inside another does
    /// not leave part of the longer one.
    fn values(&self, r: &Record) -> Vec<String> {
        let mut v: Vec<String> = r
            .fields
            .iter()
            .filter(|(k, v)| self.is_masked_field(k) && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .chain(r.mentions.iter().filter(|m| m.kind == MentionKind::Dob).map(|m| m.raw.to_string()))
            .filter(|v| v.len() >= 4)
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.len()));
        v.dedup();
        v
    }

    /// A record as a viewer without `unmask` sees it.
    pub fn record(&self, r: &mut Record) {
        let values = self.values(r);
        r.title = self.text_and_values(&r.title, &values);
        r.text = self.text_and_values(&r.text, &values);
        for (k, v) in r.fields.iter_mut() {
            *v = if self.is_masked_field(k) { mask_all(v) } else { self.text_and_values(v, &values) };
        }
        for m in &mut r.mentions {
            mask_mention(self, m, &values);
        }
    }

    /// A record hit built from `r` (already masked), whose snippet may carry highlights.
    pub fn hit(&self, h: &mut RecordHit, values: &[String]) {
        h.snippet = self.html(&h.snippet, values);
        h.title = self.text_and_values(&h.title, values);
    }

    /// Masks a record, returning the values it masked (for its snippet).
    pub fn record_with_values(&self, r: &mut Record) -> Vec<String> {
        let values = self.values(r);
        self.record(r);
        values
    }

    /// The profile and reasons of a dossier; records are masked as the dossier is built.
    pub fn dossier(&self, d: &mut Dossier) {
        d.profile.dobs = d.profile.dobs.iter().map(|v| mask_all(v)).collect();
        for w in &mut d.why {
            w.matched = self.text(&w.matched).into_owned();
            w.query = self.text(&w.query).into_owned();
        }
    }
}

fn mask_mention(m: &Masker, x: &mut Mention, values: &[String]) {
    if x.kind == MentionKind::Dob {
        x.raw = mask_all(&x.raw).into();
        x.norm = mask_all(&x.norm).into();
    } else {
        x.raw = m.text_and_values(&x.raw, values).into();
        x.norm = m.text_and_values(&x.norm, values).into();
    }
}

/// Every alphanumeric replaced.
fn mask_all(s: &str) -> String {
    s.chars().map(|c| if c.is_alphanumeric() { DOT } else { c }).collect()
}

/// Every alphanumeric but the last four replaced.
fn mask_keep_last4(s: &str) -> String {
    let n = s.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                seen += 1;
                if seen + 4 <= n { DOT } else { c }
            } else {
                c
            }
        })
        .collect()
}

/// The Luhn checksum of card numbers.
fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> Masker {
        Masker::new(&PrivacySection::default())
    }

    #[test]
    fn ssn_and_card_numbers_are_masked_but_order_and_phone_numbers_are_not() {
        let m = masker();
        assert_eq!(m.text("SSN 123-45-6789."), "SSN •••-••-6789.");
        assert_eq!(m.text("card 4111 1111 1111 1111 on file"), "card •••• •••• •••• 1111 on file");
        // Fails the Luhn check: a long reference number, not a card.
        assert_eq!(m.text("ref 4111 1111 1111 1112"), "ref 4111 1111 1111 1112");
        assert_eq!(m.text("call 555-201-7788 about ORD-104233"), "call 555-201-7788 about ORD-104233");
    }

    #[test]
    fn masked_fields_hide_their_value_everywhere_in_the_record() {
        let m = masker();
        let mut r = Record::new("crm", "customers/1", "crm:customers/1".into(), dossier_schema::RecordKind::Row);
        r.fields.insert("Date of Birth".into(), "1980-04-02".into());
        r.fields.insert("full_name".into(), "Jane Smith".into());
        r.text = "full_name: Jane Smith\nDate of Birth: 1980-04-02".into();
        m.record(&mut r);
        assert_eq!(r.fields["Date of Birth"], "••••-••-••");
        assert_eq!(r.fields["full_name"], "Jane Smith");
        assert!(!r.text.contains("1980"), "{}", r.text);
        // A highlighted snippet of a masked value loses its markup rather than leak.
        assert_eq!(m.html("born <b>1980</b>-04-02", &["1980-04-02".into()]), "born ••••-••-••");
        assert_eq!(m.html("<b>Jane</b> Smith", &[]), "<b>Jane</b> Smith");
    }

    #[test]
    fn field_names_match_whatever_their_case_spaces_or_hyphens() {
        let m = masker();
        for f in ["Date of Birth", "date-of-birth", "DATE_OF_BIRTH", "SSN"] {
            assert!(m.is_masked_field(f), "{f}");
        }
        for f in ["date of birth place", "dob2", "", "birth"] {
            assert!(!m.is_masked_field(f), "{f}");
        }
    }

    #[test]
    fn a_text_without_a_sensitive_value_is_passed_through_and_one_with_is_masked() {
        let m = masker();
        assert!(matches!(m.text("call 555-201-7788 about ORD-104233"), Cow::Borrowed(_)));
        // A card number (Luhn-valid) keeps its last four digits.
        assert_eq!(m.text("card 4111111111111111"), "card ••••••••••••1111");
        // A configured pattern masks as the default ones do.
        let one = Masker::new(&PrivacySection { mask_patterns: vec![r"\bsecret\b".into()], mask_fields: vec![] });
        assert_eq!(one.text("a secret word, secretly"), "a ••cret word, secretly");
        // A text shorter than any match is not searched; one just long enough is masked.
        assert_eq!((m.shortest, one.shortest), (11, 6));
        assert_eq!(m.text("123-45-6789"), "•••-••-6789");
        assert_eq!(one.text("secret"), "••cret");
        // Non-ASCII text around a value: found by the loosened set, masked by the pattern itself.
        assert_eq!(m.text("n° 123-45-6789 — réf"), "n° •••-••-6789 — réf");
        assert!(matches!(m.text("déjà 123-45-67890 — réf"), Cow::Borrowed(_)), "no word boundary, no match");
        let never = Masker::new(&PrivacySection { mask_patterns: vec![r"[a&&b]".into()], mask_fields: vec![] });
        assert_eq!((never.shortest, never.text("a b").as_ref()), (usize::MAX, "a b"));
    }

    proptest::proptest! {
        /// The loosened set says "maybe" of every text a pattern matches, so no value it
        /// should mask goes unmasked; texts mix digits, separators, letters and non-ASCII.
        #[test]
        fn the_loosened_set_finds_every_text_a_pattern_matches(
            t in "([0-9]{3}-[0-9]{2}-[0-9]{4,5}|[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{1,8}|[0-9a-zé—•-]{1,3}| ){0,6}"
        ) {
            let m = masker();
            let set = m.any.as_ref().expect("the default patterns make a set");
            for re in &m.patterns {
                proptest::prop_assert!(!re.is_match(&t) || set.is_match(&t), "{} in {:?}", re.as_str(), t);
            }
        }
    }

    #[test]
    fn keys_hash_and_parse() {
        let k = new_key().unwrap();
        assert!(k.starts_with(KEY_PREFIX) && k.len() > 40);
        let h = hash_key(&k);
        assert!(parse_key_hash(&h).is_some());
        assert_ne!(hash_key(&new_key().unwrap()), h);
        assert!(parse_key_hash("sha1:abc").is_none());
    }

    #[test]
    fn luhn_checks() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
    }
}
