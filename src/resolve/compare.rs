//! Comparisons of two observations, attribute by attribute, as agreement levels.
//!
//! Each attribute has a few levels, from the strongest agreement (1) to
//! disagreement (the last); 0 means one side lacks the value, which is no
//! evidence either way. The weights of the levels are estimated from the data
//! (`estimate`); this module only decides which level a pair is at.

use super::values::Values;
use dossier_schema::{CompactString, EvidenceKind};

use crate::entities::names::{self, PersonName};

/// The attributes compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Given name.
    First,
    /// Family name.
    Last,
    /// Postal address.
    Address,
    /// City or suburb.
    City,
    /// Date of birth.
    Dob,
    /// Email address.
    Email,
    /// Phone number.
    Phone,
    /// Configured identifier (account, order, national id…).
    Id,
    /// Company.
    Company,
}

/// Number of features.
pub const NF: usize = 9;

/// Every feature, in the order of a comparison vector.
pub const FEATURES: [Feature; NF] = [
    Feature::First,
    Feature::Last,
    Feature::Address,
    Feature::City,
    Feature::Dob,
    Feature::Email,
    Feature::Phone,
    Feature::Id,
    Feature::Company,
];

/// Most levels of one feature.
pub const MAX_LEVELS: usize = 4;
const _: () = assert!(MAX_LEVELS < 8 && 3 * NF <= 32, "a packed comparison vector holds every level");

impl Feature {
    /// Position in a comparison vector.
    pub fn index(self) -> usize {
        self as usize
    }

    /// How many levels (besides 0, missing) the feature has.
    pub fn levels(self) -> usize {
        match self {
            Feature::First | Feature::Address => 4,
            Feature::Last | Feature::City | Feature::Dob => 3,
            Feature::Email | Feature::Phone | Feature::Id | Feature::Company => 2,
        }
    }

    /// The name used in evidence (`name` for both name parts).
    pub fn kind(self) -> EvidenceKind {
        match self {
            Feature::First | Feature::Last => EvidenceKind::Name,
            Feature::Address => EvidenceKind::Address,
            Feature::City => EvidenceKind::City,
            Feature::Dob => EvidenceKind::Dob,
            Feature::Email => EvidenceKind::Email,
            Feature::Phone => EvidenceKind::Phone,
            Feature::Id => EvidenceKind::Identifier,
            Feature::Company => EvidenceKind::Company,
        }
    }

    /// What level `l` means, for reports.
    pub fn level_name(self, l: u8) -> &'static str {
        match (self, l) {
            (_, 0) => "missing",
            (Feature::First, 1)
            | (Feature::Last, 1)
            | (Feature::Address, 1)
            | (Feature::City, 1)
            | (Feature::Dob, 1) => "same",
            (Feature::Email | Feature::Phone | Feature::Id | Feature::Company, 1) => "shared",
            (Feature::First, 2) | (Feature::Last, 2) | (Feature::City, 2) | (Feature::Dob, 2) => "close",
            (Feature::Address, 2) => "close",
            (Feature::Address, 3) => "partial",
            (Feature::First, 3) => "initial",
            _ => "differs",
        }
    }
}

/// A comparison vector: one level per feature.
pub type Gamma = [u8; NF];

/// A comparison vector in one word, three bits a level: a run keeps one per candidate pair
/// (tens of millions at a million records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Packed(u32);

impl Packed {
    /// Packs `g`.
    pub fn of(g: &Gamma) -> Packed {
        Packed(g.iter().enumerate().fold(0, |acc, (i, &l)| acc | (u32::from(l.min(7)) << (3 * i))))
    }

    /// The comparison vector back.
    pub fn gamma(self) -> Gamma {
        std::array::from_fn(|i| ((self.0 >> (3 * i)) & 7) as u8)
    }
}

/// A Double Metaphone code in four bytes, zero-padded: rphonetic's default encoder writes at
/// most four ASCII letters, and a million names' four codes each took 96 MB as strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code([u8; 4]);

impl Code {
    /// The code `s` (its first four bytes; empty unless ASCII, which codes always are).
    pub fn new(s: &str) -> Code {
        let mut c = [0; 4];
        if s.is_ascii() {
            let n = s.len().min(4);
            c[..n].copy_from_slice(&s.as_bytes()[..n]);
        }
        Code(c)
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        let n = self.0.iter().position(|&b| b == 0).unwrap_or(4);
        std::str::from_utf8(&self.0[..n]).unwrap_or_default()
    }

    /// Whether there is no code (an empty word).
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A name's Double Metaphone codes, computed once per observation rather than once per pair.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sounds {
    /// Codes of the given name.
    pub first: (Code, Code),
    /// Codes of the surname.
    pub last: (Code, Code),
}

impl Sounds {
    /// The codes of `n`.
    pub fn of(n: &PersonName) -> Sounds {
        Sounds { first: codes(&n.first), last: codes(&n.last) }
    }
}

/// A word's Double Metaphone codes (primary, alternate), from a cache of this thread's last
/// words: a company's names repeat (a few thousand given names among a million records), and
/// folding and encoding them again was half the cost of a 1% run's observations.
pub fn codes(word: &str) -> (Code, Code) {
    /// Words a thread keeps; past it the cache starts again (a bound on memory, not a policy).
    const KEPT: usize = 1 << 16;
    thread_local! {
        static CACHE: std::cell::RefCell<rustc_hash::FxHashMap<CompactString, (Code, Code)>> =
            Default::default();
    }
    if word.is_empty() {
        return Default::default();
    }
    CACHE.with_borrow_mut(|cache| {
        if let Some(c) = cache.get(word) {
            return *c;
        }
        let (a, b) = names::phonetic(word);
        let c = (Code::new(&a), Code::new(&b));
        if cache.len() >= KEPT {
            cache.clear();
        }
        cache.insert(word.into(), c);
        c
    })
}

/// An upper bound of the Jaro similarity of two words from their shared letters alone (Jaro
/// can match no more characters than the two have in common): cheap, and most word pairs of a
/// block are far below any threshold, so the real measure is skipped for them.
fn jaro_bound(a: &str, b: &str) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    // Normalized values are ASCII; for anything else bytes are not characters: no bound.
    if !a.is_ascii() || !b.is_ascii() || a.len() > usize::from(u16::MAX) {
        return 1.0;
    }
    // Both are ASCII: 128 counters, cleared in a few vector stores.
    let mut counts = [0u16; 128];
    for &c in a.as_bytes() {
        counts[usize::from(c)] += 1;
    }
    let mut common = 0usize;
    for &c in b.as_bytes() {
        let n = &mut counts[usize::from(c)];
        if *n > 0 {
            *n -= 1;
            common += 1;
        }
    }
    let m = common as f64;
    (m / a.len() as f64 + m / b.len() as f64 + 1.0) / 3.0
}

/// Jaro–Winkler similarity when it may reach `at_least`, else 0 without computing it.
pub fn jaro_winkler_at_least(a: &str, b: &str, at_least: f64) -> f64 {
    // Winkler's prefix bonus adds at most 0.4 × (1 − jaro).
    let bound = jaro_bound(a, b);
    if bound + 0.4 * (1.0 - bound) < at_least {
        return 0.0;
    }
    strsim::jaro_winkler(a, b)
}

/// True when one typed slip turns `a` into `b`: a letter changed, added or dropped, or two
/// neighbours swapped (optimal string alignment distance ≤ 1, in one pass, no allocation).
pub fn one_edit_apart(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let start = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    match long.len() - short.len() {
        0 => {
            let end = short.len() - start;
            // Past the first difference: one change, or one swap of neighbours.
            end == 0
                || short[start + 1..] == long[start + 1..]
                || (end >= 2
                    && short[start] == long[start + 1]
                    && short[start + 1] == long[start]
                    && short[start + 2..] == long[start + 2..])
        }
        1 => short[start..] == long[start + 1..],
        _ => false,
    }
}

/// Given-name level: 1 same (after nicknames), 2 close (typo, sound), 3 initial only, 4 differ.
pub fn first_level(a: &str, b: &str) -> u8 {
    first_level_coded(a, b, &names::phonetic(a), &names::phonetic(b))
}

fn first_level_coded<S: AsRef<str> + PartialEq>(a: &str, b: &str, ac: &(S, S), bc: &(S, S)) -> u8 {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    if a == b {
        return 1;
    }
    if a.len() == 1 || b.len() == 1 {
        return if a.as_bytes()[0] == b.as_bytes()[0] { 3 } else { 4 };
    }
    // A typo, or a sound-alike that is also spelled alike: sound alone is too loose for given
    // names (Jane and John share a Double Metaphone code).
    let jw = jaro_winkler_at_least(a, b, 0.8);
    if jw > 0.9 || (jw > 0.8 && names::codes_alike(ac, bc)) { 2 } else { 4 }
}

/// Family-name level: 1 same, 2 close (sound, one edit, typo), 3 differ.
pub fn last_level(a: &str, b: &str) -> u8 {
    last_level_coded(a, b, &names::phonetic(a), &names::phonetic(b))
}

fn last_level_coded<S: AsRef<str> + PartialEq>(a: &str, b: &str, ac: &(S, S), bc: &(S, S)) -> u8 {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    if a == b {
        return 1;
    }
    let close = names::codes_alike(ac, bc)
        || (a.len() > 3 && one_edit_apart(a.as_bytes(), b.as_bytes()))
        || jaro_winkler_at_least(a, b, 0.9) >= 0.9;
    if close { 2 } else { 3 }
}

/// How much a pair of names agree, to pick the best of several names: higher is better.
fn name_rank(first: u8, last: u8) -> i32 {
    let f = match first {
        1 => 3,
        2 => 2,
        3 => 1,
        0 => 0,
        _ => -3,
    };
    let l = match last {
        1 => 4,
        2 => 3,
        0 => 0,
        _ => -4,
    };
    f + l
}

/// The best agreement of two observations' names (with their `Sounds`, index for index), and
/// the pair of names it came from. Given name and surname swapped (`Masno Madeline` for
/// `Madeline Mason`) count, as close at best.
pub fn names_level<'a>(
    a: &'a [PersonName],
    a_sounds: &[Sounds],
    b: &'a [PersonName],
    b_sounds: &[Sounds],
) -> Option<(u8, u8, &'a PersonName, &'a PersonName)> {
    let mut best: Option<(i32, u8, u8, &PersonName, &PersonName)> = None;
    for (na, sa) in a.iter().zip(a_sounds) {
        for (nb, sb) in b.iter().zip(b_sounds) {
            let f = first_level_coded(&na.first, &nb.first, &sa.first, &sb.first);
            let l = last_level_coded(&na.last, &nb.last, &sa.last, &sb.last);
            let mut cand = (name_rank(f, l), f, l);
            if cand.0 < name_rank(1, 1) {
                let sf = last_level_coded(&na.first, &nb.last, &sa.first, &sb.last);
                let sl = last_level_coded(&na.last, &nb.first, &sa.last, &sb.first);
                if sf > 0 && sl > 0 && sf < 3 && sl < 3 {
                    let (sf, sl) = (sf.max(2), sl.max(2));
                    let r = name_rank(sf, sl);
                    if r > cand.0 {
                        cand = (r, sf, sl);
                    }
                }
            }
            if best.is_none_or(|b| cand.0 > b.0) {
                best = Some((cand.0, cand.1, cand.2, na, nb));
            }
        }
    }
    best.map(|(_, f, l, na, nb)| (f, l, na, nb))
}

/// Similarity of two normalized addresses in 0..=1: the share of tokens that find their like
/// on the other side (numbers exactly, or with one digit changed for half; words with a typo),
/// or of characters when words were run together (`pridhamstreet`).
pub fn address_similarity(a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    // Every candidate pair with addresses comes here: the tokens stay on the stack.
    let (mut sa, mut sb) = ([("", false); 24], [("", false); 24]);
    let (Some(ta), Some(tb)) = (address_tokens(a, &mut sa), address_tokens(b, &mut sb)) else {
        return address_similarity_long(a, b);
    };
    if ta.is_empty() || tb.is_empty() {
        return 0.0;
    }
    let tokens = tokens_share(ta, tb);
    // Characters only matter when they could lift the pair to the next level (0.5, 0.8, 1.0 in
    // `address_level`): skip the quadratic edit distance when the lengths say it cannot (the
    // normalized distance is at most the ratio of the lengths).
    let next = match tokens {
        t if t < 0.5 => 0.5,
        t if t < 0.8 => 0.8,
        t if t < 1.0 => 1.0,
        _ => return tokens,
    };
    let (la, lb) = (a.len() - ta.len() + 1, b.len() - tb.len() + 1);
    if (la.min(lb) as f64) < next * la.max(lb) as f64 {
        return tokens;
    }
    // The words run together, compared by edit distance up to what reaches `next` (a larger
    // distance leaves the pair at the level its tokens gave).
    let (mut ca, mut cb) = ([0u8; 128], [0u8; 128]);
    let (Some(ca), Some(cb)) = (squashed(ta, &mut ca), squashed(tb, &mut cb)) else {
        return address_similarity_long(a, b);
    };
    let longest = ca.len().max(cb.len());
    let within = ((1.0 - next) * longest as f64).ceil() as usize;
    match levenshtein_within(ca, cb, within) {
        Some(d) => tokens.max(1.0 - d as f64 / longest as f64),
        None => tokens,
    }
}

/// The share of two addresses' tokens (each with whether it is a number) that find their like
/// on the other side: the same, a number with one digit changed for half, a word with a typo.
fn tokens_share(ta: &[(&str, bool)], tb: &[(&str, bool)]) -> f64 {
    let token = |(x, nx): (&str, bool), (y, ny): (&str, bool)| -> f64 {
        if x == y {
            return 1.0;
        }
        if nx || ny {
            let one_off = nx && ny && x.len() == y.len() && x.len() >= 4 && strsim::hamming(x, y).is_ok_and(|d| d == 1);
            return if one_off { 0.5 } else { 0.0 };
        }
        if x.len() >= 4 && y.len() >= 4 && jaro_winkler_at_least(x, y, 0.88) >= 0.88 { 0.9 } else { 0.0 }
    };
    let side = |p: &[(&str, bool)], q: &[(&str, bool)]| -> f64 {
        p.iter().map(|&x| q.iter().map(|&y| token(x, y)).fold(0.0, f64::max)).sum::<f64>()
    };
    (side(ta, tb) + side(tb, ta)) / (ta.len() + tb.len()) as f64
}

/// The non-empty space-separated tokens of `a` in `buf`, each with whether it is a number;
/// `None` when there are more than `buf` holds.
fn address_tokens<'a, 'b>(a: &'a str, buf: &'b mut [(&'a str, bool)]) -> Option<&'b [(&'a str, bool)]> {
    let mut n = 0;
    for t in a.split(' ').filter(|t| !t.is_empty()) {
        *buf.get_mut(n)? = (t, t.bytes().all(|c| c.is_ascii_digit()));
        n += 1;
    }
    Some(&buf[..n])
}

/// The tokens run together in `buf`, when they are ASCII and fit.
fn squashed<'b>(tokens: &[(&str, bool)], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let mut n = 0;
    for (t, _) in tokens {
        if !t.is_ascii() {
            return None;
        }
        buf.get_mut(n..n + t.len())?.copy_from_slice(t.as_bytes());
        n += t.len();
    }
    Some(&buf[..n])
}

/// The Levenshtein distance of `a` and `b` when it is at most `k`: one row on the stack, and
/// the rows stop as soon as none of their cells is within `k`.
fn levenshtein_within(a: &[u8], b: &[u8], k: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > k || b.len() >= 256 {
        return None;
    }
    let mut row = [0usize; 256];
    for (j, cell) in row.iter_mut().enumerate().take(b.len() + 1) {
        *cell = j;
    }
    for (i, &x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        let mut least = row[0];
        for (j, &y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(x != y));
            diagonal = above;
            least = least.min(row[j + 1]);
        }
        if least > k {
            return None;
        }
    }
    (row[b.len()] <= k).then_some(row[b.len()])
}

/// [`address_similarity`] for addresses too long for the stack buffers (the general way).
fn address_similarity_long(a: &str, b: &str) -> f64 {
    // A string has fewer tokens than bytes: buffers that long always hold them.
    let (mut sa, mut sb) = (vec![("", false); a.len()], vec![("", false); b.len()]);
    let (ta, tb) = (address_tokens(a, &mut sa).unwrap_or_default(), address_tokens(b, &mut sb).unwrap_or_default());
    if ta.is_empty() || tb.is_empty() {
        return 0.0;
    }
    let tokens = tokens_share(ta, tb);
    if tokens >= 1.0 {
        return tokens;
    }
    let concat = |t: &[(&str, bool)]| t.iter().map(|(w, _)| *w).collect::<String>();
    tokens.max(strsim::normalized_levenshtein(&concat(ta), &concat(tb)))
}

/// Address level: 1 same, 2 close (≥ 0.8 similar), 3 partial (≥ 0.5), 4 differ; with the
/// values behind it when `explain`.
pub fn address_level(a: Values<'_>, b: Values<'_>, explain: bool) -> (u8, String) {
    if a.is_empty() || b.is_empty() {
        return (0, String::new());
    }
    let mut best: (f64, Option<(&CompactString, &CompactString)>) = (0.0, None);
    for x in a {
        for y in b {
            let s = address_similarity(x, y);
            if s > best.0 {
                best = (s, Some((x, y)));
            }
        }
    }
    let level = match best.0 {
        s if s >= 1.0 => 1,
        s if s >= 0.8 => 2,
        s if s >= 0.5 => 3,
        _ => 4,
    };
    let value = match best.1 {
        _ if !explain => String::new(),
        Some((x, y)) if level < 4 => {
            if x == y {
                x.to_string()
            } else {
                format!("{x} ~ {y}")
            }
        }
        _ => "differs".into(),
    };
    (level, value)
}

/// City level: 1 same, 2 close (typo, split word), 3 differ; with the values when `explain`.
pub fn city_level(a: Values<'_>, b: Values<'_>, explain: bool) -> (u8, String) {
    if a.is_empty() || b.is_empty() {
        return (0, String::new());
    }
    if let Some(c) = a.common(b).next() {
        return (1, if explain { c.to_string() } else { String::new() });
    }
    let squash = |s: &str| s.bytes().filter(|&c| c != b' ').collect::<Vec<u8>>();
    for x in a {
        for y in b {
            if jaro_winkler_at_least(x, y, 0.9) >= 0.9 || squash(x) == squash(y) {
                return (2, if explain { format!("{x} ~ {y}") } else { String::new() });
            }
        }
    }
    (3, if explain { "differs".into() } else { String::new() })
}

/// True when two `YYYY-MM-DD` dates differ by one typed digit, two swapped digits, or day and
/// month swapped.
pub fn dates_close(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let diff: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).collect();
    match diff.as_slice() {
        [_] => true,
        [i, j] if *j == i + 1 => x[*i] == y[*j] && x[*j] == y[*i],
        _ => a.len() == 10 && a[..4] == b[..4] && a[5..7] == b[8..10] && a[8..10] == b[5..7],
    }
}

/// Date-of-birth level: 1 same, 2 close, 3 differ; with the values when `explain`.
pub fn dob_level(a: Values<'_>, b: Values<'_>, explain: bool) -> (u8, String) {
    if a.is_empty() || b.is_empty() {
        return (0, String::new());
    }
    if let Some(d) = a.common(b).next() {
        return (1, if explain { d.to_string() } else { String::new() });
    }
    for x in a {
        for y in b {
            if dates_close(x, y) {
                return (2, if explain { format!("{x} ~ {y}") } else { String::new() });
            }
        }
    }
    (3, if explain { "differs".into() } else { String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set of `xs`, held by the caller (read it with `.get(0)`).
    fn set(xs: &[&str]) -> super::super::values::Sets<1> {
        super::super::values::Sets::new([xs.iter().map(|&s| CompactString::from(s)).collect::<Vec<_>>()])
    }

    #[test]
    fn cached_codes_are_the_words_codes_every_time() {
        for w in ["smith", "smyth", "García", "o'brien", "x", "", "smith"] {
            let (a, b) = names::phonetic(w);
            let want = (Code::new(&a), Code::new(&b));
            assert_eq!(codes(w), want, "{w}");
            assert_eq!(codes(w), want, "{w} from the cache");
        }
        assert_eq!(codes("smith"), codes("smyth"), "sounds alike");
    }

    #[test]
    fn a_packed_comparison_vector_unpacks_to_itself() {
        for seed in 0..2_000u32 {
            let g: Gamma = std::array::from_fn(|i| ((seed.wrapping_mul(2_654_435_761) >> (3 * i)) % 5) as u8);
            assert_eq!(Packed::of(&g).gamma(), g);
        }
        let a: Gamma = [1, 0, 0, 0, 0, 0, 0, 0, 0];
        let b: Gamma = [0, 1, 0, 0, 0, 0, 0, 0, 0];
        assert_ne!(Packed::of(&a), Packed::of(&b));
    }

    #[test]
    fn a_sound_code_holds_every_double_metaphone_code_and_sorts_as_its_text() {
        let words = ["", "smith", "schmidt", "thompson", "mcallister", "garcía", "xavier", "wright", "ochoa"];
        let mut codes = Vec::new();
        for w in words {
            let (a, b) = names::phonetic(w);
            for c in [a, b] {
                assert!(c.len() <= 4, "{w}: {c}");
                assert_eq!(Code::new(&c).as_str(), c);
                assert_eq!(Code::new(&c).is_empty(), c.is_empty());
                codes.push(c);
            }
        }
        for x in &codes {
            for y in &codes {
                assert_eq!(Code::new(x).cmp(&Code::new(y)), x.cmp(y), "{x} {y}");
            }
        }
        assert_eq!(Code::new("ABCDEF").as_str(), "ABCD");
        assert!(Code::new("é").is_empty());
    }

    #[test]
    fn the_bounded_edit_distance_is_the_edit_distance_within_its_bound() {
        let words = ["", "a", "ab", "kitten", "sitting", "pridhamstreet", "pridhamst", "177pridhamst3165", "xyz"];
        for a in words {
            for b in words {
                let d = strsim::levenshtein(a, b);
                for k in 0..12 {
                    let want = (d <= k).then_some(d);
                    assert_eq!(levenshtein_within(a.as_bytes(), b.as_bytes(), k), want, "{a} {b} {k}");
                }
            }
        }
    }

    #[test]
    fn long_addresses_are_compared_the_general_way() {
        let long: String = (0..40).map(|i| format!("w{i}x ")).collect();
        assert_eq!(
            address_similarity(&long, &long.replace("w3x", "w3y")),
            address_similarity_long(&long, &long.replace("w3x", "w3y"))
        );
        let a = "177 pridham st milton marsden nsw 3165";
        let b = "177 pridhamstreet milton marsden nsw 3165";
        assert_eq!(address_level(set(&[a]).get(0), set(&[b]).get(0), false).0, {
            let s = address_similarity_long(a, b);
            if s >= 1.0 {
                1
            } else if s >= 0.8 {
                2
            } else if s >= 0.5 {
                3
            } else {
                4
            }
        });
    }

    #[test]
    fn addresses_with_typos_run_together_words_and_swapped_lines_are_close() {
        let a = "177 pridham st milton marsden nsw 3165";
        assert!(address_similarity(a, "177 pridhamstreet milton marsden nsw 3165") >= 0.8);
        assert!(address_similarity(a, "177 pridham st milton marsden nsw 3167") >= 0.8);
        assert!(
            address_similarity("23 gundulu pl curringa utakarra wa 2193", "23 curringa gundulu pl utakarra wa 2193")
                >= 0.99
        );
        assert!(address_similarity(a, "12 kent st towradgi nsw 3107") < 0.5);
        assert_eq!(address_level(set(&[a]).get(0), set(&[]).get(0), true).0, 0);
    }

    #[test]
    fn one_edit_apart_agrees_with_osa_distance() {
        let words = ["smith", "smyth", "simth", "smiths", "mith", "smith", "jones", "s", "", "ab", "ba", "abc", "acb"];
        for a in words {
            for b in words {
                assert_eq!(one_edit_apart(a.as_bytes(), b.as_bytes()), strsim::osa_distance(a, b) <= 1, "{a} {b}");
            }
        }
    }

    #[test]
    fn the_jaro_bound_never_hides_a_match() {
        for (a, b) in [("pridham", "pridhamstreet"), ("smith", "smyth"), ("martha", "marhta"), ("dixon", "dicksonx")] {
            assert!(jaro_bound(a, b) >= strsim::jaro(a, b) - 1e-12, "{a} {b}");
            assert_eq!(jaro_winkler_at_least(a, b, 0.5), strsim::jaro_winkler(a, b));
        }
        assert_eq!(jaro_winkler_at_least("street", "milton", 0.88), 0.0);
    }

    #[test]
    fn dates_with_one_slip_are_close() {
        assert!(dates_close("1908-04-19", "1908-04-18"));
        assert!(dates_close("1908-04-19", "1908-04-91"));
        assert!(dates_close("1908-04-12", "1908-12-04"));
        assert!(!dates_close("1908-04-19", "1956-04-09"));
        assert_eq!(dob_level(set(&["1908-04-19"]).get(0), set(&["1956-04-09"]).get(0), true).0, 3);
    }

    #[test]
    fn swapped_names_agree_and_missing_parts_are_no_evidence() {
        let level = |x: &[PersonName], y: &[PersonName]| {
            let (sx, sy): (Vec<Sounds>, Vec<Sounds>) =
                (x.iter().map(Sounds::of).collect(), y.iter().map(Sounds::of).collect());
            names_level(x, &sx, y, &sy).map(|r| (r.0, r.1))
        };
        let a = vec![names::from_parts("madeline", "mason").unwrap()];
        let b = vec![names::from_parts("masno", "madeline").unwrap()];
        assert_eq!(level(&a, &b), Some((2, 2)));
        let c = vec![names::from_parts("isabelle", "").unwrap()];
        let d = vec![names::from_parts("isabeel", "").unwrap()];
        assert_eq!(level(&c, &d), Some((2, 0)));
        assert_eq!(first_level("j", "jane"), 3);
        assert_eq!(first_level("jane", "john"), 4, "one sound, two names");
        assert_eq!(last_level("smith", "smyth"), 2);
        assert_eq!(last_level("smith", "jones"), 3);
    }
}
