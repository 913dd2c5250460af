//! The entities stage: finds customer mentions in records (from mapped or
//! recognised fields, mail headers, labelled lines such as `Customer: …`, and
//! free text) and normalizes them for matching.

pub mod names;
pub mod normalize;

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use dossier_schema::{CompactString, Mention, MentionKind, Record, RecordKind};
use regex::Regex;

use crate::config::Config;

/// Party number of a mention found loose in free text: it links its record to
/// the customer holding that value but describes no one by itself.
pub const LOOSE: u16 = u16::MAX;

/// What a field or label holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldKind {
    Person,
    FirstName,
    LastName,
    Email,
    Phone,
    Company,
    Address,
    City,
    State,
    Postcode,
    Dob,
    Id(String),
    FreeText,
    Other,
}

struct IdPattern {
    kind: String,
    re: Regex,
    prefixes: Vec<String>,
}

/// Finds and normalizes mentions; built once per run from the config.
pub struct Entities {
    region: phonenumber::country::Id,
    own_domains: Vec<String>,
    ids: Vec<IdPattern>,
    maps: BTreeMap<String, BTreeMap<String, String>>,
}

fn field_kind_from_name(name: &str, id_kinds: &[IdPattern]) -> FieldKind {
    let n = names::fold(name).replace(' ', "_");
    let n = n.rsplit('.').next().unwrap_or(&n).to_string();
    let n = n.rsplit("__").next().unwrap_or(&n).to_string();
    match n.as_str() {
        "name" | "full_name" | "fullname" | "customer" | "customer_name" | "client" | "client_name" | "contact"
        | "contact_name" | "person" | "caller" | "account_holder" | "party" | "bill_to" | "attn" | "attention" => {
            FieldKind::Person
        }
        "first_name" | "firstname" | "given_name" | "first" | "forename" => FieldKind::FirstName,
        "last_name" | "lastname" | "surname" | "family_name" | "last" => FieldKind::LastName,
        "email" | "e_mail" | "email_address" | "mail" | "customer_email" | "contact_email" => FieldKind::Email,
        "phone" | "telephone" | "tel" | "mobile" | "cell" | "phone_number" | "ph" | "contact_phone" | "fax" => {
            FieldKind::Phone
        }
        "company" | "company_name" | "organization" | "organisation" | "employer" | "business" => FieldKind::Company,
        "address" | "street" | "street_address" | "address_1" | "address1" | "address_2" | "address2"
        | "address_line_1" | "address_line_2" | "full_address" | "postal_address" | "billing_address"
        | "street_number" | "house_number" => FieldKind::Address,
        "city" | "town" | "suburb" | "locality" => FieldKind::City,
        "state" | "province" | "region" => FieldKind::State,
        "postcode" | "post_code" | "postal_code" | "zip" | "zip_code" | "zipcode" => FieldKind::Postcode,
        "dob" | "date_of_birth" | "birth_date" | "birthdate" | "born" => FieldKind::Dob,
        "note" | "notes" | "comment" | "comments" | "description" | "text" | "body" | "message" | "summary"
        | "details" => FieldKind::FreeText,
        other => {
            for p in id_kinds {
                let k = p.kind.as_str();
                let hit = other == k
                    || other.strip_prefix(k).is_some_and(|rest| {
                        matches!(rest, "_id" | "_no" | "_number" | "_num" | "id" | "no" | "number" | "_ref")
                    });
                if hit {
                    return FieldKind::Id(p.kind.clone());
                }
            }
            FieldKind::Other
        }
    }
}

fn mapped_kind(v: &str) -> FieldKind {
    match v {
        "person" => FieldKind::Person,
        "first_name" => FieldKind::FirstName,
        "last_name" => FieldKind::LastName,
        "email" => FieldKind::Email,
        "phone" => FieldKind::Phone,
        "company" => FieldKind::Company,
        "address" => FieldKind::Address,
        "city" => FieldKind::City,
        "state" => FieldKind::State,
        "postcode" => FieldKind::Postcode,
        "dob" => FieldKind::Dob,
        "status" => FieldKind::Other,
        other => match other.strip_prefix("id:") {
            Some(k) => FieldKind::Id(k.to_string()),
            None => FieldKind::Other,
        },
    }
}

/// Builds on the calling thread what the first record's mentions would otherwise build on an
/// extraction thread: the phone-number metadata, the patterns, the name tables.
pub fn warm_up() {
    let _ = (email_re(), phone_re(), label_re());
    let _ = normalize::email("jane.smith@example.com");
    let _ = normalize::phone("+1 206 555 0100", phonenumber::country::Id::US);
    let _ = names::parse("Bob Smith");
    let _ = names::phonetic("smith");
}

fn email_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[\p{L}\p{N}._%+'-]+@[\p{L}\p{N}.-]+\.\p{L}{2,}\b").expect("static regex"))
}

fn phone_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)|\b\d{3})[\s.-]?\d{3}[\s.-]\d{4}\b|\b\d{3}[.-]\d{4}\b\s*(?:x\d+)?|\+\d{1,3}[\s.-]?\d{3}[\s.-]?\d{3}[\s.-]?\d{4}\b|\b1[\s.-]\d{3}[\s.-]\d{3}[\s.-]\d{4}\b")
            .expect("static regex")
    })
}

fn label_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?m)^[ \t>*-]*([A-Za-z][A-Za-z .'_/-]{0,30}?)[ \t]*:[ \t]*(\S[^\r\n]{0,200})$")
            .expect("static regex")
    })
}

/// Collects mentions, dropping duplicates.
struct Collector {
    out: Vec<Mention>,
    seen: HashSet<(MentionKind, String, u16)>,
    /// (kind, norm) already found under any party, so a loose copy adds nothing.
    values: HashSet<(MentionKind, String)>,
}

impl Collector {
    fn push(
        &mut self,
        kind: MentionKind,
        raw: &str,
        norm: Option<String>,
        field: Option<&str>,
        offset: Option<usize>,
        party: u16,
    ) {
        let Some(norm) = norm else { return };
        if party == LOOSE && self.values.contains(&(kind, norm.clone())) {
            return;
        }
        if self.seen.insert((kind, norm.clone(), party)) {
            self.values.insert((kind, norm.clone()));
            self.out.push(Mention {
                kind,
                raw: raw.trim().chars().take(200).collect(),
                norm: norm.into(),
                field: field.map(CompactString::from),
                offset: offset.and_then(dossier_schema::Offset::new),
                party,
            });
        }
    }
}

impl Entities {
    /// Builds the stage from the config.
    pub fn new(cfg: &Config) -> Self {
        let region = cfg.index.default_region.parse().unwrap_or(phonenumber::country::Id::US);
        let ids = cfg
            .identifiers
            .iter()
            .filter_map(|i| {
                Some(IdPattern { kind: i.name.clone(), re: Regex::new(&i.pattern).ok()?, prefixes: i.prefixes.clone() })
            })
            .collect();
        let mut maps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for s in &cfg.sources {
            let m = maps.entry(s.name.clone()).or_default();
            for (f, k) in s.fields.iter().chain(s.tables.iter().flat_map(|t| t.fields.iter())) {
                m.insert(f.to_ascii_lowercase(), k.clone());
            }
        }
        Entities {
            region,
            own_domains: cfg.index.own_domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            ids,
            maps,
        }
    }

    /// The default phone region.
    pub fn region(&self) -> phonenumber::country::Id {
        self.region
    }

    /// The calling code of the default region (1 for US), for numbers typed without one.
    pub fn country_code(&self) -> Option<u16> {
        phonenumber::metadata::DATABASE.by_id(self.region.as_ref()).map(|m| m.country_code())
    }

    /// The configured identifier kinds.
    pub fn id_kinds(&self) -> Vec<String> {
        self.ids.iter().map(|p| p.kind.clone()).collect()
    }

    /// True when an email belongs to the company itself.
    pub fn is_own(&self, email: &str) -> bool {
        email
            .rsplit('@')
            .next()
            .is_some_and(|d| self.own_domains.iter().any(|o| d == o || d.ends_with(&format!(".{o}"))))
    }

    fn kind_of(&self, source: &str, field: &str) -> FieldKind {
        if let Some(k) = self.maps.get(source).and_then(|m| m.get(&field.to_ascii_lowercase())) {
            return mapped_kind(k);
        }
        field_kind_from_name(field, &self.ids)
    }

    /// Normalizes an identifier of `kind` with that kind's prefixes.
    pub fn identifier(&self, kind: &str, raw: &str) -> Option<String> {
        let prefixes = self.ids.iter().find(|p| p.kind == kind).map(|p| p.prefixes.as_slice()).unwrap_or(&[]);
        normalize::identifier(kind, raw, prefixes)
    }

    /// Normalizes a value of the given field kind into the collector.
    fn value(
        &self,
        c: &mut Collector,
        kind: &FieldKind,
        raw: &str,
        field: Option<&str>,
        offset: Option<usize>,
        party: u16,
    ) {
        match kind {
            FieldKind::Person => c.push(
                MentionKind::Person,
                raw,
                names::parse(raw).filter(|n| !n.first.is_empty()).map(|n| n.norm()),
                field,
                offset,
                party,
            ),
            FieldKind::Email => {
                let e = normalize::email(raw).filter(|e| !self.is_own(e));
                c.push(MentionKind::Email, raw, e, field, offset, party)
            }
            FieldKind::Phone => {
                c.push(MentionKind::Phone, raw, normalize::phone(raw, self.region), field, offset, party)
            }
            FieldKind::Company => c.push(MentionKind::Company, raw, normalize::company(raw), field, offset, party),
            FieldKind::Address => {
                c.push(MentionKind::Address, raw, normalize::address(raw), field, offset, party);
                // "Seattle, WA" at the end of an address also gives the city.
                let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
                if parts.len() >= 3 {
                    let city = parts[parts.len() - 2];
                    c.push(MentionKind::City, city, normalize::city(city), field, offset, party);
                }
            }
            FieldKind::City => {
                let city = raw.split(',').next().unwrap_or(raw);
                c.push(MentionKind::City, city, normalize::city(city), field, offset, party)
            }
            FieldKind::Dob => c.push(MentionKind::Dob, raw, normalize::dob(raw), field, offset, party),
            FieldKind::Id(k) => c.push(MentionKind::Identifier, raw, self.identifier(k, raw), field, offset, party),
            FieldKind::FreeText => self.loose(c, raw, field),
            FieldKind::FirstName | FieldKind::LastName | FieldKind::State | FieldKind::Postcode | FieldKind::Other => {}
        }
    }

    /// Emails, phone numbers and configured identifiers anywhere in free text.
    fn loose(&self, c: &mut Collector, text: &str, field: Option<&str>) {
        for m in email_re().find_iter(text).take(200) {
            let e = normalize::email(m.as_str()).filter(|e| !self.is_own(e));
            c.push(MentionKind::Email, m.as_str(), e, field, Some(m.start()), LOOSE);
        }
        for m in phone_re().find_iter(text).take(200) {
            c.push(
                MentionKind::Phone,
                m.as_str(),
                normalize::phone(m.as_str(), self.region),
                field,
                Some(m.start()),
                LOOSE,
            );
        }
        for p in &self.ids {
            for caps in p.re.captures_iter(text).take(200) {
                let Some(m) = caps.name("id").or_else(|| caps.get(0)) else {
                    continue;
                };
                c.push(
                    MentionKind::Identifier,
                    m.as_str(),
                    normalize::identifier(&p.kind, m.as_str(), &p.prefixes),
                    field,
                    Some(m.start()),
                    LOOSE,
                );
            }
        }
    }

    /// `Label: value` lines of documents and mail bodies: each person label
    /// opens a new party; the labels after it describe that party.
    fn labelled(&self, c: &mut Collector, source: &str, text: &str, first_party: u16) {
        let mut party: Option<u16> = None;
        let mut next = first_party;
        for caps in label_re().captures_iter(text).take(500) {
            let (Some(label), Some(value)) = (caps.get(1), caps.get(2)) else {
                continue;
            };
            let kind = self.kind_of(source, label.as_str());
            if kind == FieldKind::Person {
                party = Some(next);
                next = next.saturating_add(1).min(LOOSE - 1);
            }
            let p = match (&kind, party) {
                (FieldKind::FreeText | FieldKind::Other, _) => continue,
                (_, Some(p)) => p,
                (_, None) => first_party,
            };
            self.value(c, &kind, value.as_str(), Some(label.as_str()), Some(value.start()), p);
        }
    }

    /// Every mention in a record.
    pub fn mentions(&self, r: &Record) -> Vec<Mention> {
        let mut c = Collector { out: Vec::new(), seen: HashSet::new(), values: HashSet::new() };
        match r.kind {
            RecordKind::Row | RecordKind::SheetRow | RecordKind::Ticket => {
                let (mut first, mut last) = (None, None);
                let mut addr = AddressParts::default();
                for (f, v) in &r.fields {
                    match self.kind_of(&r.source, f) {
                        FieldKind::FirstName => first = Some(v.as_str()),
                        FieldKind::LastName => last = Some(v.as_str()),
                        FieldKind::Address => addr.street.push((f.as_str(), v.as_str())),
                        FieldKind::City => {
                            addr.city = Some(v.as_str());
                            self.value(&mut c, &FieldKind::City, v, Some(f), None, 0);
                        }
                        FieldKind::State => addr.state = Some(v.as_str()),
                        FieldKind::Postcode => addr.postcode = Some(v.as_str()),
                        k => self.value(&mut c, &k, v, Some(f), None, 0),
                    }
                }
                if first.is_some() || last.is_some() {
                    let (f, l) = (first.unwrap_or(""), last.unwrap_or(""));
                    let raw = format!("{f} {l}");
                    let norm = names::from_parts(f, l).map(|n| n.key());
                    c.push(MentionKind::Person, &raw, norm, Some("name"), None, 0);
                }
                if let Some((field, whole)) = addr.compose() {
                    c.push(MentionKind::Address, &whole, normalize::address(&whole), Some(field), None, 0);
                }
                if r.kind == RecordKind::Ticket {
                    self.loose(&mut c, &r.text, None);
                }
            }
            RecordKind::Email => {
                // The customer side of a mail: the sender, or the recipient when an agent wrote it.
                let from = r.field("from").unwrap_or("");
                let from_email = email_re().find(from).and_then(|m| normalize::email(m.as_str()));
                let side = match &from_email {
                    Some(e) if self.is_own(e) => r.field("to").unwrap_or(""),
                    _ => from,
                };
                let first = side.split(',').next().unwrap_or("");
                if let Some(m) = email_re().find(first) {
                    self.value(&mut c, &FieldKind::Email, m.as_str(), Some("from"), None, 0);
                    let name = first[..m.start()].trim().trim_matches(|ch| ch == '"' || ch == '<').trim();
                    if !name.is_empty() {
                        self.value(&mut c, &FieldKind::Person, name, Some("from"), None, 0);
                    }
                }
                self.labelled(&mut c, &r.source, &r.text, 1);
                self.loose(&mut c, &r.text, None);
            }
            RecordKind::Page | RecordKind::Note | RecordKind::Attachment | RecordKind::Document => {
                self.labelled(&mut c, &r.source, &r.text, 0);
                self.loose(&mut c, &r.text, None);
            }
        }
        let document = !matches!(r.kind, RecordKind::Row | RecordKind::SheetRow | RecordKind::Ticket);
        if document {
            single_party_owns_loose(&mut c.out);
        }
        c.out
    }
}

/// The address columns of one row, put together as one postal address.
#[derive(Default)]
struct AddressParts<'a> {
    street: Vec<(&'a str, &'a str)>,
    city: Option<&'a str>,
    state: Option<&'a str>,
    postcode: Option<&'a str>,
}

impl<'a> AddressParts<'a> {
    /// `7 Wallaby Place, Delmar, Cleveland, SA 2119` and the first street column's name; none
    /// without a street column (a city alone is a city mention, not an address).
    fn compose(&self) -> Option<(&'a str, String)> {
        let field = self.street.first()?.0;
        let mut parts: Vec<String> = Vec::new();
        let mut number = String::new();
        // A column holding only a house number leads the line it belongs to.
        for (_, v) in &self.street {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            if v.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '/') && v.len() <= 8 {
                number = format!("{number} {v}").trim().to_string();
            } else {
                parts.push(v.to_string());
            }
        }
        match parts.first_mut() {
            Some(p) if !number.is_empty() => *p = format!("{number} {p}"),
            None if !number.is_empty() => parts.push(number),
            _ => {}
        }
        if parts.is_empty() {
            return None;
        }
        parts.extend(self.city.map(str::to_string));
        let tail: Vec<&str> = [self.state, self.postcode].into_iter().flatten().map(str::trim).collect();
        if !tail.is_empty() {
            parts.push(tail.join(" "));
        }
        Some((field, parts.join(", ")))
    }
}

/// In a document that describes exactly one party (a mail's sender, an invoice's
/// "Bill to"), the ids, phones and emails in its text are that party's: a
/// signature's phone, "my order 104233". With two or more parties they stay
/// loose, so the document links to each party and bridges none.
fn single_party_owns_loose(ms: &mut Vec<Mention>) {
    let parties: HashSet<u16> = ms.iter().filter(|m| m.party != LOOSE).map(|m| m.party).collect();
    if parties.len() != 1 || !parties.contains(&0) {
        return;
    }
    let owned: HashSet<(MentionKind, CompactString)> =
        ms.iter().filter(|m| m.party == 0).map(|m| (m.kind, m.norm.clone())).collect();
    ms.retain(|m| m.party != LOOSE || !owned.contains(&(m.kind, m.norm.clone())));
    for m in ms.iter_mut().filter(|m| m.party == LOOSE && m.kind.is_strong()) {
        m.party = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ent() -> Entities {
        let cfg = Config::parse(
            "[index]\npath = \"d\"\nown_domains = [\"northwind.example\"]\n[[identifiers]]\nname = \"order\"\npattern = '(?i)\\b(?:ORD-?|order\\s*#?\\s*)(?P<id>\\d{6})\\b'\nprefixes = [\"ORD\"]\n",
            "t",
            Path::new("."),
        )
        .unwrap();
        Entities::new(&cfg)
    }

    #[test]
    fn call_note_gives_loose_order_and_phone() {
        let e = ent();
        let mut r = Record::new("calls", "notes.csv", "calls:notes.csv!r2".into(), RecordKind::SheetRow);
        r.fields.insert("note".into(), "caller gave order 104233, ph 555.201.7788".into());
        let m = e.mentions(&r);
        let norms: Vec<_> = m.iter().map(|m| (m.norm.as_str(), m.party)).collect();
        assert!(norms.contains(&("order:104233", LOOSE)), "{norms:?}");
        assert!(norms.contains(&("+15552017788", LOOSE)), "{norms:?}");
    }

    #[test]
    fn contract_parties_stay_apart() {
        let e = ent();
        let mut r = Record::new("legal", "c.pdf", "legal:c.pdf#p1".into(), RecordKind::Page);
        r.text = "Customer: Jayne Smyth\nCompany: Acme Corp\nAddress: 10 Route 9, Seattle, WA\n\nCustomer: Bob Jones\nEmail: bob@jones.example\n".into();
        let m = e.mentions(&r);
        let p0: Vec<_> = m.iter().filter(|m| m.party == 0).map(|m| m.norm.as_str()).collect();
        let p1: Vec<_> = m.iter().filter(|m| m.party == 1).map(|m| m.norm.as_str()).collect();
        assert!(p0.contains(&"jane smyth") && p0.contains(&"acme") && p0.contains(&"seattle"), "{p0:?}");
        assert!(p1.contains(&"robert jones") && p1.contains(&"bob@jones.example"), "{p1:?}");
    }

    #[test]
    fn row_columns_make_one_address_and_a_name_with_one_part_missing() {
        let e = ent();
        let mut r = Record::new("f", "d.csv", "f:d.csv!r2".into(), RecordKind::SheetRow);
        for (k, v) in [
            ("given_name", "Isabelle"),
            ("surname", ""),
            ("street_number", "23"),
            ("address_1", "Gundulu Place"),
            ("address_2", "Curringa"),
            ("suburb", "Utakarra"),
            ("postcode", "2193"),
            ("state", "WA"),
        ] {
            r.fields.insert(k.into(), v.into());
        }
        let m = e.mentions(&r);
        let norm = |k: MentionKind| m.iter().filter(|x| x.kind == k).map(|x| x.norm.clone()).collect::<Vec<_>>();
        assert_eq!(norm(MentionKind::Person), vec![", isabelle"]);
        assert_eq!(norm(MentionKind::Address), vec!["23 gundulu pl curringa utakarra wa 2193"]);
        assert_eq!(norm(MentionKind::City), vec!["utakarra"]);
        let a = m.iter().find(|x| x.kind == MentionKind::Address).unwrap();
        assert_eq!(a.raw, "23 Gundulu Place, Curringa, Utakarra, WA 2193");
    }

    #[test]
    fn agent_mail_describes_the_recipient() {
        let e = ent();
        let mut r = Record::new("mail", "box", "mail:box/m2".into(), RecordKind::Email);
        r.fields.insert("from".into(), "Agent <agent@northwind.example>".into());
        r.fields.insert("to".into(), "Jane Smith <jane.smith@acme.example>".into());
        let m = e.mentions(&r);
        assert!(m.iter().any(|m| m.norm == "jane.smith@acme.example" && m.party == 0));
        assert!(!m.iter().any(|m| m.norm.contains("northwind")));
    }
}
