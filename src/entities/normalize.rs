//! Normalizers: each turns a raw value into the form that is compared and
//! indexed, or `None` when the value is empty, a placeholder or malformed.

use std::sync::OnceLock;

use regex::Regex;

use super::names::fold;

/// Placeholders that mean "no value".
const PLACEHOLDERS: &[&str] = &["n a", "na", "none", "null", "unknown", "tbd", "nil", "x", "not provided", "no"];

fn is_placeholder(folded: &str) -> bool {
    folded.is_empty() || PLACEHOLDERS.contains(&folded) || folded.chars().all(|c| c == '0' || c == ' ')
}

/// Lowercased address; `None` unless it looks like `local@domain.tld`.
pub fn email(raw: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    // Internationalized addresses (RFC 6532) are real: stanisław.wójcik@wp.pl.
    let re = RE.get_or_init(|| Regex::new(r"^[\p{L}\p{N}._%+'-]+@[\p{L}\p{N}.-]+\.\p{L}{2,}$").expect("static regex"));
    let e = raw.trim().trim_matches(|c| c == '<' || c == '>').trim_end_matches('.').to_lowercase();
    re.is_match(&e).then_some(e)
}

/// True for role addresses shared by many customers (`info@`, `support@`).
pub fn generic_email(e: &str) -> bool {
    const ROLES: &[&str] = &[
        "info",
        "support",
        "sales",
        "admin",
        "contact",
        "billing",
        "noreply",
        "no-reply",
        "office",
        "hello",
        "help",
        "accounts",
        "service",
        "team",
        "mail",
        "postmaster",
        "webmaster",
    ];
    e.split('@').next().is_some_and(|local| ROLES.contains(&local))
}

/// E.164 (`+15552017788`) from any common writing, reading numbers without a
/// country code in `region`.
pub fn phone(raw: &str, region: phonenumber::country::Id) -> Option<String> {
    let digits = raw.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return None;
    }
    let n = phonenumber::parse(Some(region), raw).ok()?;
    let national = n.national().value();
    if national == 0 || national.to_string().len() < 7 {
        return None;
    }
    let e164 = n.format().mode(phonenumber::Mode::E164).to_string();
    let tail: String = e164.chars().rev().take(7).collect();
    if tail.chars().all(|c| c == '0') {
        return None;
    }
    Some(e164)
}

/// The last seven digits of an E.164 number, for partial-number search.
pub fn phone_tail(e164: &str) -> Option<String> {
    let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
    (digits.len() >= 7).then(|| digits[digits.len() - 7..].iter().collect())
}

const LEGAL_SUFFIXES: &[&str] = &[
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "llc",
    "llp",
    "lp",
    "ltd",
    "limited",
    "plc",
    "gmbh",
    "ag",
    "sa",
    "sarl",
    "srl",
    "bv",
    "nv",
    "oy",
    "ab",
    "as",
    "pty",
    "pte",
    "kg",
    "the",
    "group",
    "holdings",
];

/// Company name without legal suffixes and punctuation (`Acme, Inc.` → `acme`).
pub fn company(raw: &str) -> Option<String> {
    let f = fold(&raw.replace('&', " and "));
    let words: Vec<&str> = f.split(' ').filter(|w| !w.is_empty() && !LEGAL_SUFFIXES.contains(w)).collect();
    let n = words.join(" ");
    (!is_placeholder(&n)).then_some(n)
}

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("hundred", "100"),
    ("first", "1st"),
    ("second", "2nd"),
    ("third", "3rd"),
    ("fourth", "4th"),
    ("fifth", "5th"),
];

const STREET_WORDS: &[(&str, &str)] = &[
    ("street", "st"),
    ("avenue", "ave"),
    ("av", "ave"),
    ("road", "rd"),
    ("route", "rte"),
    ("rt", "rte"),
    ("boulevard", "blvd"),
    ("drive", "dr"),
    ("lane", "ln"),
    ("court", "ct"),
    ("place", "pl"),
    ("square", "sq"),
    ("highway", "hwy"),
    ("parkway", "pkwy"),
    ("suite", "ste"),
    ("apartment", "apt"),
    ("building", "bldg"),
    ("floor", "fl"),
    ("north", "n"),
    ("south", "s"),
    ("east", "e"),
    ("west", "w"),
    ("terrace", "ter"),
    ("circle", "cir"),
    ("mount", "mt"),
    ("saint", "st"),
    ("number", ""),
    ("no", ""),
];

/// US states and common abbreviations → postal code.
const STATES: &[(&str, &str)] = &[
    ("alabama", "al"),
    ("alaska", "ak"),
    ("arizona", "az"),
    ("ariz", "az"),
    ("arkansas", "ar"),
    ("california", "ca"),
    ("calif", "ca"),
    ("colorado", "co"),
    ("colo", "co"),
    ("connecticut", "ct"),
    ("conn", "ct"),
    ("delaware", "de"),
    ("florida", "fl"),
    ("fla", "fl"),
    ("georgia", "ga"),
    ("hawaii", "hi"),
    ("idaho", "id"),
    ("illinois", "il"),
    ("ill", "il"),
    ("indiana", "in"),
    ("ind", "in"),
    ("iowa", "ia"),
    ("kansas", "ks"),
    ("kan", "ks"),
    ("kentucky", "ky"),
    ("louisiana", "la"),
    ("maine", "me"),
    ("maryland", "md"),
    ("massachusetts", "ma"),
    ("mass", "ma"),
    ("michigan", "mi"),
    ("mich", "mi"),
    ("minnesota", "mn"),
    ("minn", "mn"),
    ("mississippi", "ms"),
    ("missouri", "mo"),
    ("montana", "mt"),
    ("nebraska", "ne"),
    ("nevada", "nv"),
    ("new hampshire", "nh"),
    ("new jersey", "nj"),
    ("new mexico", "nm"),
    ("new york", "ny"),
    ("north carolina", "nc"),
    ("north dakota", "nd"),
    ("ohio", "oh"),
    ("oklahoma", "ok"),
    ("okla", "ok"),
    ("oregon", "or"),
    ("ore", "or"),
    ("pennsylvania", "pa"),
    ("penn", "pa"),
    ("rhode island", "ri"),
    ("south carolina", "sc"),
    ("south dakota", "sd"),
    ("tennessee", "tn"),
    ("tenn", "tn"),
    ("texas", "tx"),
    ("tex", "tx"),
    ("utah", "ut"),
    ("vermont", "vt"),
    ("virginia", "va"),
    ("washington", "wa"),
    ("wash", "wa"),
    ("west virginia", "wv"),
    ("wisconsin", "wi"),
    ("wis", "wi"),
    ("wyoming", "wy"),
];

/// Folds a US state name or abbreviation to its postal code.
pub fn state(word: &str) -> Option<&'static str> {
    let f = fold(word);
    STATES
        .iter()
        .find(|(name, _)| *name == f)
        .map(|(_, c)| *c)
        .or_else(|| STATES.iter().map(|(_, c)| *c).find(|c| *c == f))
}

/// Address with number words, street words and state names folded
/// (`Ten Route Nine, Seattle, Wash.` → `10 rte 9 seattle wa`).
pub fn address(raw: &str) -> Option<String> {
    let mut f = fold(raw);
    for (name, code) in STATES.iter().filter(|(n, _)| n.contains(' ')) {
        if f.ends_with(name) || f.contains(&format!(" {name} ")) {
            f = f.replace(name, code);
        }
    }
    let words: Vec<String> = f
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| {
            if let Some((_, d)) = NUMBER_WORDS.iter().find(|(n, _)| *n == w) {
                return d.to_string();
            }
            if let Some((_, s)) = STREET_WORDS.iter().find(|(n, _)| *n == w) {
                return s.to_string();
            }
            if let Some((_, s)) = STATES.iter().find(|(n, _)| *n == w) {
                return s.to_string();
            }
            w.to_string()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let n = words.join(" ");
    (!is_placeholder(&n) && n.chars().any(|c| c.is_ascii_alphabetic())).then_some(n)
}

/// City folded.
pub fn city(raw: &str) -> Option<String> {
    let f = fold(raw);
    (!is_placeholder(&f) && f.len() > 1).then_some(f)
}

/// An identifier as `kind:value`: prefixes, separators and leading zeros folded
/// (`ORD-00104233` → `order:104233`).
pub fn identifier(kind: &str, raw: &str, prefixes: &[String]) -> Option<String> {
    let mut s = raw.trim().to_ascii_uppercase();
    for p in prefixes {
        let p = p.to_ascii_uppercase();
        if let Some(rest) = s.strip_prefix(&p) {
            s = rest.to_string();
            break;
        }
    }
    let alnum: String = s.chars().filter(char::is_ascii_alphanumeric).collect();
    let v = alnum.trim_start_matches('0').to_ascii_lowercase();
    if v.is_empty() || v.len() > 40 {
        return None;
    }
    Some(format!("{kind}:{v}"))
}

/// A date of birth as `YYYY-MM-DD`.
pub fn dob(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.len() == 8 && t.chars().all(|c| c.is_ascii_digit()) {
        let d = chrono::NaiveDate::parse_from_str(t, "%Y%m%d").ok()?;
        return Some(d.format("%Y-%m-%d").to_string());
    }
    dossier_connectors::text::parse_date(t).map(|d| d.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_in_every_format_agree() {
        let us = phonenumber::country::Id::US;
        for raw in ["555.201.7788", "(555) 201-7788", "+1 (555) 201-7788", "555 201 7788", "1-555-201-7788"] {
            assert_eq!(phone(raw, us).as_deref(), Some("+15552017788"), "{raw}");
        }
        assert_eq!(phone("12", us), None);
        assert_eq!(phone_tail("+15552017788").as_deref(), Some("2017788"));
    }

    #[test]
    fn companies_and_addresses_fold() {
        assert_eq!(company("Acme, Inc.").as_deref(), Some("acme"));
        assert_eq!(company("ACME Corp").as_deref(), Some("acme"));
        assert_eq!(company("n/a"), None);
        assert_eq!(address("Ten Route Nine, Seattle, Wash.").as_deref(), Some("10 rte 9 seattle wa"));
        assert_eq!(address("10 Route 9, Seattle, WA").as_deref(), Some("10 rte 9 seattle wa"));
        assert_eq!(address("1 Main Street, New York, New York").as_deref(), Some("1 main st ny ny"));
    }

    #[test]
    fn identifiers_and_emails() {
        let p = vec!["ORD".to_string()];
        assert_eq!(identifier("order", "ORD-00104233", &p).as_deref(), Some("order:104233"));
        assert_eq!(identifier("order", "104233", &p).as_deref(), Some("order:104233"));
        assert_eq!(email("<Jane.Smith@ACME.example>").as_deref(), Some("jane.smith@acme.example"));
        assert!(email("not an email").is_none());
        assert_eq!(email("Stanisław.Wójcik@wp.pl").as_deref(), Some("stanisław.wójcik@wp.pl"));
        assert!(generic_email("info@acme.example"));
    }
}
