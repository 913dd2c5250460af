//! A synthetic population for the resolution benchmark: people written several times each,
//! Febrl-style (typos, missing values, swapped or replaced names, a slipped birth date), at any
//! size, with the truth known. Names are built from syllables so that a million records keep
//! realistic name frequencies instead of repeating a short list.

use dossier_schema::{Record, RecordKind};

use crate::demo::Rng;

const SYLLABLES: &[&str] = &[
    "an", "bel", "cor", "da", "el", "fin", "gar", "hol", "is", "jo", "ka", "lin", "mar", "nor", "ol", "pen", "quin",
    "ros", "sam", "tor", "ul", "ven", "wil", "xa", "yor", "zel", "bri", "cha", "dru", "ste",
];
const STREET_KINDS: &[&str] = &["street", "road", "avenue", "place", "crescent", "court", "drive", "lane"];
const STATES: &[&str] = &["nsw", "vic", "qld", "wa", "sa", "tas", "act", "nt"];

fn word(rng: &mut Rng, parts: usize) -> String {
    (0..parts).map(|_| *rng.pick(SYLLABLES)).collect()
}

/// Two neighbouring letters swapped, or one dropped.
fn typo(rng: &mut Rng, w: &str) -> String {
    let mut cs: Vec<char> = w.chars().collect();
    if cs.len() > 3 {
        let i = 1 + rng.below(cs.len() - 2);
        if rng.chance(50) {
            cs.swap(i, i + 1);
        } else {
            cs.remove(i);
        }
    }
    cs.into_iter().collect()
}

struct Person {
    first: String,
    last: String,
    number: u32,
    street: String,
    city: String,
    postcode: u32,
    state: &'static str,
    dob: String,
    email: Option<String>,
    phone: Option<String>,
}

/// `records` rows about about `records / 2.5` people, each with the person it is about
/// (the truth), keyed `synth:people.csv!rN`.
pub fn population(records: usize, seed: u64) -> Vec<(Record, usize)> {
    rows(records, seed).collect()
}

/// The rows of [`population`] one at a time, so that a large population need not be held whole.
pub fn rows(records: usize, seed: u64) -> impl Iterator<Item = (Record, usize)> {
    let mut rng = Rng(seed);
    let cities: Vec<(String, u32, &str)> = (0..(records / 300).clamp(20, 3000))
        .map(|i| (format!("{}ton", word(&mut rng, 2)), 1000 + (i as u32 * 7) % 9000, *rng.pick(STATES)))
        .collect();
    let mut made = 0usize;
    let mut person = 0usize;
    // The copies of the current person not yet handed out, last first.
    let mut pending: Vec<Record> = Vec::new();
    std::iter::from_fn(move || {
        if made >= records {
            return None;
        }
        if pending.is_empty() {
            pending = copies(&mut rng, &cities, person, made, records - made);
            pending.reverse();
            person += 1;
        }
        made += 1;
        pending.pop().map(|r| (r, person - 1))
    })
}

/// One new person's rows (one to four, at most `room`), the first numbered `next`.
fn copies(
    rng: &mut Rng,
    cities: &[(String, u32, &'static str)],
    person: usize,
    next: usize,
    room: usize,
) -> Vec<Record> {
    let (city, postcode, state) = rng.pick(cities).clone();
    let first = word(rng, 2);
    let last = word(rng, 3);
    let p = Person {
        email: rng.chance(50).then(|| format!("{first}.{last}{person}@mail.example")),
        phone: rng.chance(40).then(|| format!("555-{:03}-{:04}", 200 + rng.below(700), rng.below(10_000))),
        first,
        last,
        number: 1 + rng.below(400) as u32,
        street: format!("{} {}", word(rng, 2), rng.pick(STREET_KINDS)),
        city,
        postcode,
        state,
        dob: format!("{}{:02}{:02}", 1930 + rng.below(75), 1 + rng.below(12), 1 + rng.below(28)),
    };
    let copies = 1 + rng.below(4);
    let mut out = Vec::with_capacity(copies);
    for copy in 0..copies {
        if out.len() >= room {
            break;
        }
        let i = next + out.len();
        let mut r = Record::new("synth", "people.csv", format!("synth:people.csv!r{}", i + 2), RecordKind::SheetRow);
        // The first copy is clean; the others carry the usual dirt.
        let dirty = copy > 0;
        let mut field = |rng: &mut Rng, name: &str, value: String| {
            if dirty && rng.chance(4) {
                return;
            }
            let v = if dirty && rng.chance(10) { typo(rng, &value) } else { value };
            r.fields.insert(name.to_string(), v);
        };
        let (mut first, mut last) = (p.first.clone(), p.last.clone());
        if dirty && rng.chance(3) {
            first = word(rng, 2);
        }
        if dirty && rng.chance(2) {
            std::mem::swap(&mut first, &mut last);
        }
        field(rng, "given_name", first);
        field(rng, "surname", last);
        field(rng, "street_number", p.number.to_string());
        field(rng, "address_1", p.street.clone());
        field(rng, "suburb", p.city.clone());
        field(rng, "postcode", p.postcode.to_string());
        field(rng, "state", p.state.to_string());
        let mut dob = p.dob.clone();
        if dirty && rng.chance(5) {
            let k = 4 + rng.below(4);
            let digit = char::from(b'0' + rng.below(10) as u8);
            dob.replace_range(k..k + 1, &digit.to_string());
        }
        field(rng, "date_of_birth", dob);
        if let Some(e) = &p.email {
            field(rng, "email", e.clone());
        }
        if let Some(ph) = &p.phone {
            field(rng, "phone", ph.clone());
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_population_is_reproducible_and_has_duplicates() {
        let a = population(1000, 7);
        let b = population(1000, 7);
        assert_eq!(a.len(), 1000);
        assert_eq!(
            a.iter().map(|x| x.0.fields.clone()).collect::<Vec<_>>(),
            b.iter().map(|x| x.0.fields.clone()).collect::<Vec<_>>()
        );
        let people = a.iter().map(|x| x.1).max().unwrap() + 1;
        assert!(people < 700 && people > 250, "{people}");
    }
}
