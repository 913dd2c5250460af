//! Person names: parsing (titles, suffixes, initials, "Last, First"),
//! nickname canonicalisation and Double Metaphone codes.

use std::collections::HashMap;
use std::sync::OnceLock;

use dossier_schema::CompactString;
use rphonetic::DoubleMetaphone;

/// A parsed person name, folded to ASCII lowercase (parts inline up to 24 bytes: resolution
/// holds one per record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonName {
    /// Given name, canonical (`bob` → `robert`); may be a single initial.
    pub first: CompactString,
    /// Family name.
    pub last: CompactString,
    /// Every other part (middle names, initials).
    pub middle: Vec<CompactString>,
}

const TITLES: &[&str] = &["mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "mme", "herr", "frau"];
const SUFFIXES: &[&str] = &["jr", "sr", "ii", "iii", "iv", "phd", "md", "esq", "dds", "cpa"];

/// Nickname → canonical given name. A list of name facts compiled for dossier.
const NICKNAMES: &[(&str, &[&str])] = &[
    ("robert", &["bob", "bobby", "rob", "robbie", "bert"]),
    ("william", &["bill", "billy", "will", "willy", "liam"]),
    ("richard", &["rick", "ricky", "dick", "rich", "richie"]),
    ("james", &["jim", "jimmy", "jamie"]),
    ("john", &["jack", "johnny"]),
    ("jonathan", &["jon"]),
    ("margaret", &["maggie", "meg", "peggy", "marge", "margie"]),
    ("elizabeth", &["liz", "beth", "betty", "lizzie", "eliza", "libby", "bess"]),
    ("katherine", &["kate", "kathy", "katie", "kat", "catherine", "kathryn", "cathy"]),
    ("jennifer", &["jen", "jenny"]),
    ("michael", &["mike", "mikey", "mick"]),
    ("thomas", &["tom", "tommy"]),
    ("charles", &["charlie", "chuck"]),
    ("joseph", &["joe", "joey"]),
    ("daniel", &["dan", "danny"]),
    ("david", &["dave", "davy"]),
    ("edward", &["ed", "eddie", "ned"]),
    ("anthony", &["tony"]),
    ("christopher", &["chris"]),
    ("matthew", &["matt"]),
    ("andrew", &["andy", "drew"]),
    ("steven", &["steve", "stephen"]),
    ("alexander", &["alex", "xander"]),
    ("patricia", &["pat", "patty", "trish", "tricia"]),
    ("susan", &["sue", "susie", "suzy"]),
    ("deborah", &["deb", "debbie", "debra"]),
    ("rebecca", &["becky", "becca"]),
    ("barbara", &["barb", "babs"]),
    ("jessica", &["jess", "jessie"]),
    ("samuel", &["sam", "sammy"]),
    ("benjamin", &["ben", "benny"]),
    ("nicholas", &["nick", "nicky"]),
    ("timothy", &["tim", "timmy"]),
    ("gregory", &["greg"]),
    ("kenneth", &["ken", "kenny"]),
    ("ronald", &["ron", "ronnie"]),
    ("donald", &["don", "donnie"]),
    ("douglas", &["doug"]),
    ("frederick", &["fred", "freddie"]),
    ("gerald", &["jerry", "gerry"]),
    ("lawrence", &["larry"]),
    ("peter", &["pete"]),
    ("raymond", &["ray"]),
    ("theodore", &["ted", "teddy", "theo"]),
    ("victoria", &["vicky", "vicki", "tori"]),
    ("virginia", &["ginny"]),
    ("abigail", &["abby"]),
    ("albert", &["al", "bertie"]),
    ("amanda", &["mandy"]),
    ("angela", &["angie"]),
    ("cynthia", &["cindy"]),
    ("dorothy", &["dot", "dottie", "dolly"]),
    ("eleanor", &["ellie", "nell", "nora"]),
    ("frances", &["fran"]),
    ("francis", &["frank", "frankie"]),
    ("henry", &["hank", "harry", "hal"]),
    ("jacqueline", &["jackie"]),
    ("joshua", &["josh"]),
    ("judith", &["judy"]),
    ("kimberly", &["kim"]),
    ("leonard", &["len", "lenny", "leo"]),
    ("louis", &["lou"]),
    ("mary", &["molly", "polly", "mae"]),
    ("nathaniel", &["nate", "nat", "nathan"]),
    ("pamela", &["pam"]),
    ("philip", &["phil", "phillip"]),
    ("randall", &["randy"]),
    ("russell", &["russ"]),
    ("sandra", &["sandy"]),
    ("stanley", &["stan"]),
    ("terrence", &["terry"]),
    ("valerie", &["val"]),
    ("walter", &["walt", "wally"]),
    ("zachary", &["zach", "zack"]),
    ("jane", &["janie", "jayne"]),
    ("anne", &["ann", "annie", "anna"]),
    ("sarah", &["sara", "sally", "sadie"]),
    ("gabriel", &["gabe"]),
    ("ernest", &["ernie"]),
    ("eugene", &["gene"]),
    ("vincent", &["vince", "vinny"]),
];

fn nickname_map() -> &'static HashMap<&'static str, &'static str> {
    static MAP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut m = HashMap::new();
        for (canon, nicks) in NICKNAMES {
            for n in *nicks {
                m.entry(*n).or_insert(*canon);
            }
        }
        m
    })
}

/// The canonical form of a given name (`bob` → `robert`); other names unchanged.
pub fn canonical_first(name: &str) -> &str {
    nickname_map().get(name).copied().unwrap_or(name)
}

/// Folds text to ASCII lowercase words (accents dropped, punctuation to spaces).
pub fn fold(s: &str) -> String {
    let ascii = deunicode::deunicode(s);
    let mut out = String::with_capacity(ascii.len());
    let mut space = true;
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            space = false;
        } else if c == '\'' {
            continue;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Parses a person name as written in any silo. `, Isabelle` (nothing before the comma) is a
/// given name alone, as a record with an empty surname column gives it.
pub fn parse(raw: &str) -> Option<PersonName> {
    if let Some(given) = raw.trim_start().strip_prefix(',') {
        let folded = fold(given);
        let mut parts = folded.split(' ').filter(|p| !p.is_empty() && !TITLES.contains(p));
        let first = parts.next()?;
        if first.chars().any(|c| c.is_ascii_digit()) {
            return None;
        }
        return Some(PersonName {
            first: canonical_first(first).into(),
            last: CompactString::default(),
            middle: parts.take(4).map(CompactString::from).collect(),
        });
    }
    // "Smith, Jane A." is surname first.
    let (surname_first, text) = match raw.split_once(',') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() && !a.trim().contains(' ') => {
            (true, format!("{} {}", b.trim(), a.trim()))
        }
        _ => (false, raw.to_string()),
    };
    let _ = surname_first;
    let folded = fold(&text);
    let mut parts: Vec<&str> = folded.split(' ').filter(|p| !p.is_empty()).collect();
    while parts.first().is_some_and(|p| TITLES.contains(p)) {
        parts.remove(0);
    }
    while parts.len() > 1 && parts.last().is_some_and(|p| SUFFIXES.contains(p)) {
        parts.pop();
    }
    if parts.is_empty() || parts.len() > 6 || parts.iter().any(|p| p.chars().any(|c| c.is_ascii_digit())) {
        return None;
    }
    if parts.len() == 1 {
        return Some(PersonName { first: CompactString::default(), last: parts[0].into(), middle: vec![] });
    }
    let last = parts.pop().unwrap_or_default().into();
    let first = canonical_first(parts.remove(0)).into();
    Some(PersonName { first, last, middle: parts.into_iter().map(CompactString::from).collect() })
}

/// A name from separate given-name and surname columns, either of which may be empty.
pub fn from_parts(first: &str, last: &str) -> Option<PersonName> {
    let (f, l) = (fold(first), fold(last));
    let bad = |s: &str| s.chars().any(|c| c.is_ascii_digit()) || s.split(' ').count() > 4;
    if bad(&f) || bad(&l) {
        return None;
    }
    match (f.is_empty(), l.is_empty()) {
        (true, true) => None,
        (false, false) => parse(&format!("{f} {l}")),
        (true, false) => Some(PersonName { first: CompactString::default(), last: l.into(), middle: vec![] }),
        (false, true) => parse(&format!(", {f}")),
    }
}

fn metaphone() -> &'static DoubleMetaphone {
    static DM: OnceLock<DoubleMetaphone> = OnceLock::new();
    DM.get_or_init(DoubleMetaphone::default)
}

/// Double Metaphone codes (primary, alternate) of one ASCII word.
pub fn phonetic(word: &str) -> (String, String) {
    // rphonetic panics on non-ASCII input such as "García": fold first.
    let w = fold(word).replace(' ', "");
    if w.is_empty() {
        return (String::new(), String::new());
    }
    let r = metaphone().double_metaphone(&w);
    (r.primary(), r.alternate())
}

/// True when two words sound alike (any Double Metaphone code in common).
pub fn sounds_alike(a: &str, b: &str) -> bool {
    codes_alike(&phonetic(a), &phonetic(b))
}

/// True when two words' Double Metaphone codes (as `phonetic` gives them) agree, primary or
/// alternate; for callers that computed the codes once.
pub fn codes_alike<S: AsRef<str> + PartialEq>(a: &(S, S), b: &(S, S)) -> bool {
    !a.0.as_ref().is_empty() && (a.0 == b.0 || a.0 == b.1 || a.1 == b.0 || (a.1 == b.1 && !a.1.as_ref().is_empty()))
}

impl PersonName {
    /// `first last`, the normalized form.
    pub fn norm(&self) -> String {
        match (self.first.is_empty(), self.last.is_empty()) {
            (true, _) => self.last.to_string(),
            (false, true) => self.first.to_string(),
            (false, false) => format!("{} {}", self.first, self.last),
        }
    }

    /// The form `parse` reads back: `first last`, or `, first` for a given name alone.
    pub fn key(&self) -> String {
        if self.last.is_empty() { format!(", {}", self.first) } else { self.norm() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_titles_suffixes_and_surname_first() {
        let n = parse("Dr. Robert J. Smith Jr.").unwrap();
        assert_eq!((n.first.as_str(), n.last.as_str()), ("robert", "smith"));
        let n = parse("Smith, Bob").unwrap();
        assert_eq!(n.norm(), "robert smith");
        assert_eq!(parse("García Márquez").unwrap().last, "marquez");
        assert!(parse("Order 12345").is_none());
    }

    #[test]
    fn phonetics_nicknames_and_name_parts() {
        assert!(sounds_alike("smyth", "smith"));
        assert!(sounds_alike("García", "garcia"));
        assert_eq!(parse("Jayne Smyth").unwrap().first, "jane", "jayne is a jane");
        let n = from_parts("Isabelle", "").unwrap();
        assert_eq!((n.first.as_str(), n.last.as_str(), n.key().as_str()), ("isabelle", "", ", isabelle"));
        assert_eq!(parse(&n.key()), Some(n));
        assert_eq!(from_parts("", "Green").unwrap().last, "green");
        assert_eq!(from_parts("", ""), None);
    }
}
