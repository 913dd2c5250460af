//! The resolution stage: decides which mentions are the same customer.
//!
//! Each record's mentions are grouped by party into observations (a CRM row is
//! one; a contract naming two customers gives two). Candidate pairs come from
//! several blocking keys (each strong value, name sounds + initials either way
//! round, surname or given-name sound + city, company, date of birth), are
//! compared attribute by attribute (`compare`), scored with Fellegi–Sunter
//! weights estimated from the candidate pairs themselves by EM (`estimate`)
//! with term-frequency adjustment of names, and merged best first, refusing
//! merges whose clusters conflict (different birth dates, incompatible given
//! names). Values shared by too many different people are
//! generic and ignored. Records then link to the clusters of their
//! observations ("member") and of their loose strong values ("mentions"); a
//! record is never a bridge between two clusters.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use dossier_schema::{CompactString, Customer, Evidence, EvidenceKind, Link, MentionKind, Profile, RecordKind};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::entities::names::{self, PersonName};
use crate::entities::{LOOSE, normalize};

pub mod compare;
pub mod estimate;
pub mod prior;
pub mod values;

pub use prior::PriorLinks;
use values::{Sets, Values};

use compare::{FEATURES, Feature, Gamma, Packed};
pub use estimate::Weights;

/// What resolution needs of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEntities {
    /// Record key.
    pub key: String,
    /// Record kind.
    pub kind: RecordKind,
    /// Parent record key.
    pub parent: Option<String>,
    /// The mentions.
    pub mentions: Vec<dossier_schema::Mention>,
}

/// One party of one record.
#[derive(Debug, Default)]
struct Obs {
    record: usize,
    party: u16,
    names: Vec<PersonName>,
    /// The names' sound codes, index for index.
    sounds: Vec<compare::Sounds>,
    /// Strong values that are not generic: emails, phones, identifiers and the identifiers'
    /// kinds (`order`, `account`), filled from `found` by [`split_strong`].
    strong: Sets<4>,
    /// Strong values as found, until generic values are known.
    found: Vec<(MentionKind, CompactString)>,
    /// Companies, streets, cities and birth dates. A street is an address without the
    /// observation's own city words, so that address and city are compared apart (two
    /// neighbours share a city, not a street).
    soft: Sets<4>,
}

impl Obs {
    fn emails(&self) -> Values<'_> {
        self.strong.get(0)
    }
    fn phones(&self) -> Values<'_> {
        self.strong.get(1)
    }
    fn ids(&self) -> Values<'_> {
        self.strong.get(2)
    }
    fn id_kinds(&self) -> Values<'_> {
        self.strong.get(3)
    }
    fn companies(&self) -> Values<'_> {
        self.soft.get(0)
    }
    fn streets(&self) -> Values<'_> {
        self.soft.get(1)
    }
    fn cities(&self) -> Values<'_> {
        self.soft.get(2)
    }
    fn dobs(&self) -> Values<'_> {
        self.soft.get(3)
    }
}

/// What is read of an observation once its customer's detail is built: its record and its
/// strong values (emails, phones, identifiers, and their kinds).
struct Held {
    record: usize,
    strong: Sets<4>,
}

/// What a cluster's guards look at: its members' given names, surnames and birth dates.
#[derive(Default)]
struct Guard {
    firsts: BTreeSet<CompactString>,
    lasts: BTreeSet<CompactString>,
    dobs: BTreeSet<CompactString>,
}

impl Guard {
    fn of(o: &Obs) -> Guard {
        Guard {
            firsts: o.names.iter().filter(|n| !n.first.is_empty()).map(|n| n.first.clone()).collect(),
            lasts: o.names.iter().filter(|n| !n.last.is_empty()).map(|n| n.last.clone()).collect(),
            dobs: o.dobs().iter().cloned().collect(),
        }
    }

    fn size(&self) -> usize {
        self.firsts.len() + self.lasts.len() + self.dobs.len()
    }
}

/// Union-find with per-cluster guard data, built when a cluster is first merged (most
/// observations never are, and building theirs would cost a copy of every name).
struct Clusters<'a> {
    parent: Vec<usize>,
    guards: Vec<Option<Guard>>,
    obs: &'a [Obs],
}

impl Clusters<'_> {
    /// The guard of root `r`, built from its observation if it is still alone.
    fn guard(&mut self, r: usize) -> Guard {
        self.guards[r].take().unwrap_or_else(|| Guard::of(&self.obs[r]))
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Merges unless the clusters conflict; returns whether they are now one. A conflict the
    /// pair itself carries (`priced`: its own given names or birth dates differ, and it scored
    /// above the threshold all the same) is already weighed; only conflicts brought by other
    /// members, as a chain A~B~C with A and C apart, refuse the merge.
    fn union(&mut self, a: usize, b: usize, priced: Priced) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return true;
        }
        let (ga, gb) = (self.guard(ra), self.guard(rb));
        if !Self::compatible(&ga, &gb, priced) {
            self.guards[ra] = Some(ga);
            self.guards[rb] = Some(gb);
            return false;
        }
        let (small, big, mut g, moved) = if ga.size() < gb.size() { (ra, rb, gb, ga) } else { (rb, ra, ga, gb) };
        self.parent[small] = big;
        g.firsts.extend(moved.firsts);
        g.lasts.extend(moved.lasts);
        g.dobs.extend(moved.dobs);
        self.guards[big] = Some(g);
        true
    }

    /// Whether two clusters may be one person: birth dates equal or one slip apart, and given
    /// names alike (or swapped with a surname), unless the pair's own weight priced the conflict.
    fn compatible(a: &Guard, b: &Guard, priced: Priced) -> bool {
        let dobs_ok = a.dobs.is_empty()
            || b.dobs.is_empty()
            || a.dobs.iter().any(|x| b.dobs.iter().any(|y| x == y || compare::dates_close(x, y)));
        if !dobs_ok && !priced.dob {
            return false;
        }
        if !a.firsts.is_empty() && !b.firsts.is_empty() && !priced.first {
            let close = |x: &str, y: &str| matches!(compare::first_level(x, y), 1..=3);
            return a.firsts.iter().any(|x| b.firsts.iter().any(|y| close(x, y)))
                // Given name and surname swapped in one silo.
                || a.firsts.iter().any(|x| b.lasts.iter().any(|y| compare::last_level(x, y) == 1))
                || b.firsts.iter().any(|x| a.lasts.iter().any(|y| compare::last_level(x, y) == 1));
        }
        true
    }
}

/// Which of a pair's own conflicts its score already weighed.
#[derive(Debug, Clone, Copy, Default)]
struct Priced {
    first: bool,
    dob: bool,
}

/// The outcome of a resolution run.
#[derive(Debug, Default)]
pub struct Resolution {
    /// The customers, ordered by id: every one after a full resolution; after an incremental
    /// one, those resolved again and those whose links changed.
    pub customers: Vec<Customer>,
    /// After an incremental resolution, the ids of the other customers, as the run before left
    /// them (same members, profile and links), in order.
    pub unchanged: Vec<String>,
    /// After an incremental resolution that did not want every customer, the ids whose stored
    /// customer changes: those in `customers`, and ids gone since (a record no longer links to
    /// them); `None` when every customer is written.
    pub changed: Option<std::collections::HashSet<String>>,
    /// After an incremental resolution, the records whose customers differ from the previous
    /// links (new, changed, removed or relinked records); `None` after a full one.
    pub relinked: Option<rustc_hash::FxHashSet<CompactString>>,
    /// Record key → customer ids (inline texts: a million records' keys and ids as heap
    /// strings were a tenth of a large run's memory at its end). After an incremental
    /// resolution, only the fresh records' and the relinked ones' (a relinked key missing here
    /// links to no one now); every other record links as the previous links say.
    pub links: LinkMap,
    /// Values found generic and ignored, with how many people shared each.
    pub generic: Vec<(String, usize)>,
    /// Customer id → what each source's member records say, for per-role profiles.
    pub sources: HashMap<String, Sources>,
    /// The weights used (estimated from this run's candidate pairs, or the priors).
    pub weights: Weights,
    /// The model this run learnt (`Plan::Estimate` only), for later runs to reuse.
    pub learnt: Option<Model>,
    /// Observations resolved again (all of them unless the run was incremental).
    pub resolved: usize,
    /// Observations in all.
    pub observations: usize,
    /// After an incremental run, the customers resolved again (others are as the run before
    /// left them, but for the records that mention them); `None` after a full resolution.
    pub resolved_customers: Option<std::collections::HashSet<String>>,
}

/// A profile's value sets, numbered for [`Sources`]: names, emails, phones, companies,
/// addresses, cities, identifiers, birth dates.
fn profile_set(p: &Profile, field: u8) -> &dossier_schema::ValueSet {
    match field {
        0 => &p.names,
        1 => &p.emails,
        2 => &p.phones,
        3 => &p.companies,
        4 => &p.addresses,
        5 => &p.cities,
        6 => &p.ids,
        _ => &p.dobs,
    }
}

/// [`profile_set`], to add to.
fn profile_set_mut(p: &mut Profile, field: u8) -> &mut dossier_schema::ValueSet {
    match field {
        0 => &mut p.names,
        1 => &mut p.emails,
        2 => &mut p.phones,
        3 => &mut p.companies,
        4 => &mut p.addresses,
        5 => &mut p.cities,
        6 => &mut p.ids,
        _ => &mut p.dobs,
    }
}

/// The [`profile_set`] a mention's value goes to, and that value: names, companies and places
/// as written, the rest normalized.
fn profile_value(m: &dossier_schema::Mention) -> (u8, &str) {
    match m.kind {
        MentionKind::Person => (0, &m.raw),
        MentionKind::Email => (1, &m.norm),
        MentionKind::Phone => (2, &m.norm),
        MentionKind::Company => (3, &m.raw),
        MentionKind::Address => (4, &m.raw),
        MentionKind::City => (5, &m.raw),
        MentionKind::Identifier => (6, &m.norm),
        MentionKind::Dob => (7, &m.norm),
    }
}

/// Which of a customer's values each of its sources gives, so that a role seeing only some
/// sources gets a profile of what those say. Places in the customer's profile, not copies of
/// the values: a copy of the profile per source was a third of a large run's memory.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The sources' names, in order (shared by every customer of a run).
    names: Vec<Arc<str>>,
    /// (profile set, value's place in it, source's place in `names`), sorted.
    given: Box<[(u8, u32, u16)]>,
    /// (name's place in the profile's names, source, how often that source writes it), sorted.
    name_counts: Box<[(u32, u16, u32)]>,
}

impl Sources {
    /// Customer `id`'s profile, and what each source gives of it, from its members' mentions
    /// with their sources.
    pub fn build(id: &str, mentions: &[(&Arc<str>, &dossier_schema::Mention)]) -> (Profile, Sources) {
        let mut profile = Profile::default();
        let mut names: Vec<Arc<str>> = Vec::new();
        for (source, m) in mentions {
            let (field, value) = profile_value(m);
            let set = profile_set_mut(&mut profile, field);
            if !set.contains(value) {
                set.insert(value);
            }
            if let Err(i) = names.binary_search(source) {
                names.insert(i, Arc::clone(source));
            }
        }
        let mut given = Vec::with_capacity(mentions.len());
        let mut written = Vec::new();
        for (source, m) in mentions {
            let (field, value) = profile_value(m);
            let (Some(at), Ok(s)) = (profile_set(&profile, field).position(value), names.binary_search(source)) else {
                continue;
            };
            given.push((field, at as u32, s as u16));
            if field == 0 {
                written.push((at as u32, s as u16));
            }
        }
        given.sort_unstable();
        given.dedup();
        written.sort_unstable();
        let mut name_counts: Vec<(u32, u16, u32)> = Vec::new();
        for (n, s) in written {
            match name_counts.last_mut() {
                Some(last) if (last.0, last.1) == (n, s) => last.2 += 1,
                _ => name_counts.push((n, s, 1)),
            }
        }
        profile.shrink_to_fit();
        let sources = Sources {
            names: exact(names),
            given: exact(given).into_boxed_slice(),
            name_counts: exact(name_counts).into_boxed_slice(),
        };
        profile.display_name = sources.display_name(id, &profile, |_| true);
        (profile, sources)
    }

    /// The sources' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|s| &**s)
    }

    /// The profile of customer `id` (whose whole profile is `whole`) that the sources `visible`
    /// accepts give: their values, and the name they write most for display.
    pub fn profile(&self, id: &str, whole: &Profile, visible: impl Fn(&str) -> bool) -> Profile {
        let seen: Vec<bool> = self.names.iter().map(|s| visible(s)).collect();
        let mut p = Profile::default();
        for &(field, at, _) in self.given.iter().filter(|g| seen[usize::from(g.2)]) {
            let Some(value) = profile_set(whole, field).get(at as usize) else { continue };
            // `given` is sorted: the values come in order, one given by two sources twice in a row.
            let set = profile_set_mut(&mut p, field);
            if set.iter().next_back() != Some(value) {
                set.insert(value);
            }
        }
        p.shrink_to_fit();
        p.display_name = self.display_name(id, whole, |s| seen[usize::from(s)]);
        p
    }

    /// The name the sources `seen` write most (at a tie, the longer, then the later in order);
    /// else the profile's first email; else the id.
    fn display_name(&self, id: &str, whole: &Profile, seen: impl Fn(u16) -> bool) -> String {
        let mut best: Option<(u32, u32)> = None;
        let mut at = 0;
        while at < self.name_counts.len() {
            let n = self.name_counts[at].0;
            let mut count = 0;
            while at < self.name_counts.len() && self.name_counts[at].0 == n {
                if seen(self.name_counts[at].1) {
                    count += self.name_counts[at].2;
                }
                at += 1;
            }
            let len = |i: u32| whole.names.get(i as usize).map_or(0, CompactString::len);
            if count > 0 && best.is_none_or(|(b, c)| (count, len(n)) >= (c, len(b))) {
                best = Some((n, count));
            }
        }
        let email = || {
            let first = self.given.iter().find(|g| g.0 == 1 && seen(g.2))?;
            whole.emails.get(first.1 as usize).map(CompactString::to_string)
        };
        best.and_then(|(n, _)| whole.names.get(n as usize).map(CompactString::to_string))
            .or_else(email)
            .unwrap_or_else(|| id.to_string())
    }
}

/// Most observations compared within one soft blocking key; larger blocks are
/// too unspecific to be evidence and would make the run quadratic.
const MAX_BLOCK: usize = 400;
/// How many neighbours in name order a member of a large name block is compared with.
const WINDOW: usize = 20;
/// A strong value shared by more distinct surnames than this is generic.
const GENERIC_PEOPLE: usize = 3;

fn customer_id(key: &str, party: u16) -> String {
    let h = blake3::hash(format!("{key}\u{1f}{party}").as_bytes());
    format!("c{}", &h.to_hex()[..12])
}

/// Observations of records: their non-loose mentions, by party. An observation with no name
/// and no strong value identifies no one and is left out.
fn observations<R: Borrow<RecordEntities> + Sync>(records: &[R]) -> Vec<Obs> {
    records.par_iter().enumerate().flat_map_iter(|(ri, r)| record_observations(ri, r.borrow())).collect()
}

/// A few values on the stack, on their way into an observation's [`Sets`].
type Inline = smallvec::SmallVec<[CompactString; 2]>;

/// Moves an observation's strong values into its emails, phones and identifiers, leaving out
/// the `generic` ones.
fn split_strong(o: &mut Obs, generic: impl Fn(&str) -> bool) {
    let (mut emails, mut phones, mut ids, mut id_kinds) = (Inline::new(), Inline::new(), Inline::new(), Inline::new());
    for (k, v) in std::mem::take(&mut o.found) {
        if generic(&v) {
            continue;
        }
        match k {
            MentionKind::Email => emails.push(v),
            MentionKind::Phone => phones.push(v),
            _ => {
                id_kinds.push(v.split_once(':').map(|(k, _)| CompactString::from(k)).unwrap_or_default());
                ids.push(v)
            }
        };
    }
    o.strong = Sets::new([emails, phones, ids, id_kinds]);
}

/// An observation's strong values that are not generic (after [`split_strong`]).
fn strong_values(o: &Obs) -> impl Iterator<Item = &CompactString> {
    o.emails().iter().chain(o.phones()).chain(o.ids())
}

/// The observations of record `ri`, one per party, in the order the parties are first mentioned.
fn record_observations(ri: usize, r: &RecordEntities) -> smallvec::SmallVec<[Obs; 1]> {
    /// One party's values as they are found, before they are sorted into sets.
    #[derive(Default)]
    struct Found {
        companies: Inline,
        addresses: Inline,
        cities: Inline,
        dobs: Inline,
    }
    let mut obs: smallvec::SmallVec<[(Obs, Found); 1]> = smallvec::SmallVec::new();
    for m in r.mentions.iter().filter(|m| m.party != LOOSE) {
        let oi = match obs.iter().position(|(o, _)| o.party == m.party) {
            Some(i) => i,
            None => {
                // Names and strong values sized once: half a million observations' vectors
                // grown push by push, then shrunk, were a fifth of building them.
                let count = |of: fn(MentionKind) -> bool| {
                    r.mentions.iter().filter(|x| x.party == m.party && of(x.kind)).count()
                };
                let names = Vec::with_capacity(count(|k| k == MentionKind::Person));
                let found = Vec::with_capacity(count(MentionKind::is_strong));
                let o = Obs { record: ri, party: m.party, names, found, ..Default::default() };
                obs.push((o, Found::default()));
                obs.len() - 1
            }
        };
        let (o, found) = &mut obs[oi];
        match m.kind {
            MentionKind::Person => {
                if let Some(n) = names::parse(&m.norm) {
                    o.names.push(n);
                }
            }
            MentionKind::Email | MentionKind::Phone | MentionKind::Identifier => o.found.push((m.kind, m.norm.clone())),
            MentionKind::Company => found.companies.push(m.norm.clone()),
            MentionKind::Address => found.addresses.push(m.norm.clone()),
            MentionKind::City => found.cities.push(m.norm.clone()),
            MentionKind::Dob => found.dobs.push(m.norm.clone()),
        }
    }
    obs.retain(|(o, _)| !o.names.is_empty() || !o.found.is_empty());
    obs.into_iter()
        .map(|(mut o, found)| {
            o.names.shrink_to_fit();
            o.found.shrink_to_fit();
            o.sounds = o.names.iter().map(compare::Sounds::of).collect();
            // (Written word by word into the street: a city is a word or two, and a set of its
            // words and a joined vector were four allocations an address.)
            let city_word = |t: &str| found.cities.iter().any(|c| c.split(' ').any(|w| w == t));
            let streets: Inline = found
                .addresses
                .iter()
                .map(|a| {
                    let mut street = CompactString::default();
                    for (i, t) in a.split(' ').filter(|t| !city_word(t)).enumerate() {
                        if i > 0 {
                            street.push(' ');
                        }
                        street.push_str(t);
                    }
                    street
                })
                .filter(|a| !a.is_empty())
                .collect();
            o.soft = Sets::new([found.companies, streets, found.cities, found.dobs]);
            o
        })
        .collect()
}

/// A pair's total weight when it merges: at the threshold, and corroborated beyond names
/// alone (a strong value, or a company, address, city or birth date that agrees).
fn passes(g: &Gamma, tf: f64, w: &Weights) -> Option<f64> {
    let total = FEATURES.iter().map(|&f| w.of(f, g[f.index()])).sum::<f64>() + tf;
    let positive = |f: Feature| g[f.index()] > 0 && w.of(f, g[f.index()]) > 0.0;
    let strong = [Feature::Email, Feature::Phone, Feature::Id].iter().any(|&f| g[f.index()] == 1 && positive(f));
    let has_name = g[Feature::First.index()] != 0 || g[Feature::Last.index()] != 0;
    let corroborated =
        strong || [Feature::Company, Feature::Address, Feature::City, Feature::Dob].iter().any(|&f| positive(f));
    (total >= w.threshold && corroborated && (has_name || strong)).then_some(total)
}

/// A blocking key: its kind (a letter) in the top byte, a hash of its parts below. Integers, not
/// strings, as an observation has about ten keys; two keys sharing a hash would only join two
/// blocks, costing pairs, never a wrong merge (every pair is still compared).
type BlockKey = u64;

fn block_key(kind: u8, parts: &[&str]) -> BlockKey {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for p in parts {
        h.write(p.as_bytes());
        h.write_u8(0xff);
    }
    (u64::from(kind) << 56) | (h.finish() & ((1 << 56) - 1))
}

/// The kind letter of a blocking key.
fn key_kind(k: BlockKey) -> u8 {
    (k >> 56) as u8
}

/// The blocking keys of one observation (after [`split_strong`]).
fn block_keys(o: &Obs) -> Vec<BlockKey> {
    let mut keys: Vec<BlockKey> = strong_values(o).map(|v| block_key(b's', &[v])).collect();
    // A birth date with either initial: a date alone is shared by too many strangers, and
    // a record whose given name or surname was replaced still keeps the other.
    for d in o.dobs() {
        for n in &o.names {
            for part in [&n.first, &n.last] {
                if let Some(c) = part.chars().next() {
                    keys.push(block_key(b'd', &[d, c.encode_utf8(&mut [0; 4])]));
                }
            }
        }
    }
    for a in o.streets() {
        keys.extend(address_blocks(a));
    }
    for (n, sound) in o.names.iter().zip(&o.sounds) {
        name_keys(o, n, sound, &mut keys);
    }
    keys
}

/// The blocking keys of one of `o`'s names: surname sound + initial, both sounds, a sound with
/// a city, the surname's sound with a company.
fn name_keys(o: &Obs, n: &PersonName, sound: &compare::Sounds, keys: &mut Vec<BlockKey>) {
    let (lc, fc) = (sound.last.0.as_str(), sound.first.0.as_str());
    keys.extend(name_block(n, sound));
    // Both sounds, in either order: given name and surname swapped still meet.
    if !fc.is_empty() && !lc.is_empty() {
        let (x, y) = if fc <= lc { (fc, lc) } else { (lc, fc) };
        keys.push(block_key(b'b', &[x, y]));
    }
    for c in o.cities() {
        if !lc.is_empty() {
            keys.push(block_key(b'c', &[lc, c]));
        }
        if !fc.is_empty() {
            keys.push(block_key(b'f', &[fc, c]));
        }
    }
    for c in o.companies() {
        keys.push(block_key(b'o', &[lc, c]));
    }
}

/// The name block of a name: its surname's sound with its given name's initial.
fn name_block(n: &PersonName, sound: &compare::Sounds) -> Option<BlockKey> {
    let lc = sound.last.0.as_str();
    if lc.is_empty() {
        return None;
    }
    let mut buf = [0; 4];
    let initial = n.first.chars().next().map_or("", |c| c.encode_utf8(&mut buf));
    Some(block_key(b'n', &[lc, initial]))
}

/// Whether a block compares each member with its `WINDOW` next in name order only (a sorted
/// neighbourhood), not with every member: a large name block (a common name's sounds, alone or
/// with a city or company) holds many different people, and its twins sort next to each other.
fn windowed(key: BlockKey, len: usize) -> bool {
    name_kind(key) && len > 2 * WINDOW
}

/// Whether a key is one of a name's ([`name_keys`]), which are windowed when large.
fn name_kind(key: BlockKey) -> bool {
    matches!(key_kind(key), b'n' | b'b' | b'c' | b'f' | b'o')
}

/// Where an observation sorts in a windowed block: by the name that put it there (given name,
/// surname; in a both-sounds block the two in alphabetical order, so a swapped name sorts with
/// its twin), then its first street, so that namesakes at one address sort together, then
/// record key and party, so that its place depends on no run's numbering and an incremental
/// run can tell where a removed one sat.
type Order<'a> = (&'a str, &'a str, &'a str, &'a str, u16);

/// A name or street of an [`Order`] as a windowed block's sort compares it: its first 15 bytes
/// and its length (16 for any longer) as one number, then, when that ties on a longer one, its
/// other bytes. The same order as the text's, without a `memcmp` call for most comparisons
/// (those calls were most of sorting the blocks a 1% run reaches).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Part<'a> {
    head: u128,
    text: &'a str,
}

impl<'a> Part<'a> {
    fn of(text: &'a str) -> Part<'a> {
        let b = text.as_bytes();
        let n = b.len().min(15);
        let mut head = [0u8; 16];
        head[..n].copy_from_slice(&b[..n]);
        // (A shorter text padded with zeros sorts first on its length, as it does on its bytes.)
        head[15] = b.len().min(16) as u8;
        Part { head: u128::from_be_bytes(head), text }
    }
}

impl Ord for Part<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.head.cmp(&other.head).then_with(|| match self.text.len() {
            // Equal heads of texts this short are equal texts.
            0..=15 => std::cmp::Ordering::Equal,
            _ => self.text.as_bytes()[15..].cmp(&other.text.as_bytes()[15..]),
        })
    }
}

impl PartialOrd for Part<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// An [`Order`] with its names and street as [`Part`]s: it sorts as the [`Order`] does.
type SortKey<'a> = (Part<'a>, Part<'a>, Part<'a>, &'a str, u16);

/// `o` as a [`SortKey`].
fn sort_key(o: Order<'_>) -> SortKey<'_> {
    (Part::of(o.0), Part::of(o.1), Part::of(o.2), o.3, o.4)
}

/// Sorts the members of windowed block `k` by their [`Order`].
fn sort_block(ms: &mut [u32], obs: &[Obs], records: &[&RecordEntities], k: BlockKey) {
    fetch_orders(ms, obs, records);
    ms.sort_by_cached_key(|&i| {
        let o = &obs[i as usize];
        sort_key(name_order(o, &records[o.record].key, k))
    });
}

/// Reads what the [`Order`]s of observations `ms` are made of into the cache. Each order reads
/// its observation, then its names, street and record, each a read from memory that waits on
/// the one before; read first in passes whose reads do not wait on each other, they are in the
/// cache when the orders are made. (Sorting the blocks a 1% run reaches: 0.22-0.25 -> 0.16-0.18 s.)
fn fetch_orders(ms: &[u32], obs: &[Obs], records: &[&RecordEntities]) {
    let mut read = 0usize;
    for &i in ms {
        read = read.wrapping_add(obs[i as usize].record);
    }
    for &i in ms {
        let o = &obs[i as usize];
        let name = o.names.first().map_or(0, |n| n.first.len());
        let street = o.streets().iter().next().map_or(0, CompactString::len);
        read = read.wrapping_add(records[o.record].key.len() + name + street);
    }
    std::hint::black_box(read);
}

/// The [`Order`] of observation `o` of record `record` in windowed block `key`.
fn name_order<'a>(o: &'a Obs, record: &'a str, key: BlockKey) -> Order<'a> {
    let mut keys = Vec::new();
    // One name (most observations) made every name key of the observation: no need to find which.
    let named = match o.names.as_slice() {
        [n] => Some(n),
        _ => o
            .names
            .iter()
            .zip(&o.sounds)
            .find(|(n, sound)| {
                keys.clear();
                name_keys(o, n, sound, &mut keys);
                keys.contains(&key)
            })
            .map(|(n, _)| n),
    };
    let (first, last) = named.map_or(("", ""), |n| (n.first.as_str(), n.last.as_str()));
    let (first, last) = if key_kind(key) == b'b' && last < first { (last, first) } else { (first, last) };
    (first, last, o.streets().iter().next().map_or("", CompactString::as_str), record, o.party)
}

/// Calls `f` with each candidate pair of a block's members (see [`windowed`]).
fn block_pairs(key: BlockKey, members: &[u32], mut f: impl FnMut(u32, u32)) {
    if !block_used(key, members.len()) {
        return;
    }
    let ms = paired(members);
    let reach = if windowed(key, ms.len()) { WINDOW } else { ms.len() };
    for (x, &a) in ms.iter().enumerate() {
        for &b in &ms[x + 1..ms.len().min(x + 1 + reach)] {
            f(a, b);
        }
    }
}

/// Whether a block of `len` observations under `key` makes candidate pairs: a soft key shared
/// by too many is no evidence.
fn block_used(key: BlockKey, len: usize) -> bool {
    len >= 2 && (key_kind(key) == b's' || len <= MAX_BLOCK)
}

/// The members of a block that are paired: a strong value's block is cut, not dropped.
fn paired(members: &[u32]) -> &[u32] {
    &members[..members.len().min(MAX_BLOCK * 4)]
}

/// The blocks' members, each windowed block's in name order: sorted up front in a full run, on
/// first use in an incremental one (whose few changes read few of its blocks).
struct Blocks {
    /// Each key's block number.
    index: BlockIndex,
    keys: Vec<BlockKey>,
    /// Where each block's members start in `members` (one more entry than blocks).
    start: Vec<u32>,
    /// Each block's members in observation order, block after block; windowed blocks sorted in
    /// place unless they are lazy.
    members: Vec<u32>,
    /// A lazy windowed block's place in `sorted`, else `u32::MAX` (empty when none is lazy).
    slot: Vec<u32>,
    sorted: Vec<std::sync::OnceLock<Vec<u32>>>,
}

/// Each blocking key's block number. Keys are shared out among shards by a hash of their own,
/// so that each shard's map is built on a core of its own (the map of a run's 800k blocks was
/// the longest serial step of an incremental run); a shard's blocks are numbered in order of
/// first appearance, after those of the shards before it.
struct BlockIndex {
    shards: Vec<FxHashMap<BlockKey, u32>>,
    /// Each shard's first block number.
    base: Vec<u32>,
}

impl BlockIndex {
    /// The shard of `k` among `n` (a power of two). (The map hashes its keys again: the shard
    /// is taken from other bits, or a shard's keys would crowd part of its map's buckets.)
    fn shard(k: BlockKey, n: usize) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize & (n - 1)
    }

    /// The block of `k`, if any observation has that key.
    fn get(&self, k: BlockKey) -> Option<u32> {
        let s = Self::shard(k, self.shards.len());
        self.shards[s].get(&k).map(|&b| self.base[s] + b)
    }
}

impl Blocks {
    /// The blocks of each observation's keys (`per_obs`), on every core.
    fn new(per_obs: &[Vec<BlockKey>], lazy: bool, obs: &[Obs], records: &[&RecordEntities]) -> Blocks {
        Self::sharded(per_obs, rayon::current_num_threads().clamp(1, 8).next_power_of_two(), lazy, obs, records)
    }

    /// [`Blocks::new`] with the keys shared out among `n` shards (a power of two).
    fn sharded(per_obs: &[Vec<BlockKey>], n: usize, lazy: bool, obs: &[Obs], records: &[&RecordEntities]) -> Blocks {
        let mine = |s: usize| move |k: &&BlockKey| BlockIndex::shard(**k, n) == s;
        // Each shard's map, its keys and member counts, and the block of each of its keys met
        // (observation by observation), to place the members after.
        type Shard = (FxHashMap<BlockKey, u32>, Vec<BlockKey>, Vec<u32>, Vec<u32>);
        let shards: Vec<Shard> = (0..n)
            .into_par_iter()
            .map(|s| {
                let (mut map, mut keys, mut count, mut which) =
                    (FxHashMap::default(), Vec::new(), Vec::<u32>::new(), Vec::new());
                for k in per_obs.iter().flatten().filter(mine(s)) {
                    let b = *map.entry(*k).or_insert_with(|| {
                        keys.push(*k);
                        count.push(0);
                        (keys.len() - 1) as u32
                    });
                    count[b as usize] += 1;
                    which.push(b);
                }
                (map, keys, count, which)
            })
            .collect();
        let blocks: usize = shards.iter().map(|s| s.1.len()).sum();
        let (mut base, mut start) = (Vec::with_capacity(n), Vec::with_capacity(blocks + 1));
        start.push(0u32);
        for (_, keys, count, _) in &shards {
            base.push(keys.len() as u32);
            for c in count {
                start.push(start[start.len() - 1] + c);
            }
        }
        // (Each shard's block count, made its first block's number.)
        let mut first = 0;
        for b in &mut base {
            let count = *b;
            *b = first;
            first += count;
        }
        // Each shard's members fill a stretch of their own, in observation order.
        let mut members = vec![0u32; start[blocks] as usize];
        let mut rest: &mut [u32] = &mut members;
        let mut stretches = Vec::with_capacity(n);
        for (s, (_, keys, _, _)) in shards.iter().enumerate() {
            let (b0, b1) = (base[s] as usize, base[s] as usize + keys.len());
            let (stretch, tail) = std::mem::take(&mut rest).split_at_mut((start[b1] - start[b0]) as usize);
            stretches.push((stretch, &start[b0..=b1]));
            rest = tail;
        }
        stretches.into_par_iter().zip(&shards).enumerate().for_each(|(s, ((stretch, start), shard))| {
            let mut fill: Vec<u32> = start.iter().map(|&x| x - start[0]).collect();
            let mut which = shard.3.iter();
            for (i, keys) in per_obs.iter().enumerate() {
                for _ in keys.iter().filter(mine(s)) {
                    if let Some(&b) = which.next() {
                        stretch[fill[b as usize] as usize] = i as u32;
                        fill[b as usize] += 1;
                    }
                }
            }
        });
        let mut keys = Vec::with_capacity(blocks);
        let mut maps = Vec::with_capacity(n);
        for (map, k, _, _) in shards {
            keys.extend(k);
            maps.push(map);
        }
        let mut blocks = Blocks {
            index: BlockIndex { shards: maps, base },
            keys,
            start,
            members,
            slot: Vec::new(),
            sorted: Vec::new(),
        };
        if lazy {
            let mut sorted = Vec::new();
            blocks.slot = (0..blocks.keys.len())
                .map(|b| {
                    if windowed(blocks.keys[b], blocks.members(b).len()) {
                        sorted.push(std::sync::OnceLock::new());
                        (sorted.len() - 1) as u32
                    } else {
                        u32::MAX
                    }
                })
                .collect();
            blocks.sorted = sorted;
        } else {
            // The windowed blocks' stretches, cut apart, sorted on every core.
            let mut rows: Vec<(BlockKey, &mut [u32])> = Vec::new();
            let mut rest: &mut [u32] = &mut blocks.members;
            for (b, k) in blocks.keys.iter().enumerate() {
                let len = (blocks.start[b + 1] - blocks.start[b]) as usize;
                let (row, tail) = std::mem::take(&mut rest).split_at_mut(len);
                rest = tail;
                if windowed(*k, len) {
                    rows.push((*k, row));
                }
            }
            rows.into_par_iter().for_each(|(k, ms)| {
                sort_block(ms, obs, records, k);
            });
        }
        blocks
    }

    /// How many blocks there are.
    fn len(&self) -> usize {
        self.keys.len()
    }

    /// The block of key `k`, if any observation has it.
    fn of(&self, k: BlockKey) -> Option<u32> {
        self.index.get(k)
    }

    /// Block `b`'s members, in observation order unless it is windowed and not lazy.
    fn members(&self, b: usize) -> &[u32] {
        &self.members[self.start[b] as usize..self.start[b + 1] as usize]
    }

    /// Block `b`'s members, in name order if it is windowed.
    fn get(&self, b: usize, obs: &[Obs], records: &[&RecordEntities]) -> &[u32] {
        match self.slot.get(b) {
            Some(&s) if s != u32::MAX => self.sorted[s as usize].get_or_init(|| {
                let mut ms = self.members(b).to_vec();
                sort_block(&mut ms, obs, records, self.keys[b]);
                ms
            }),
            _ => self.members(b),
        }
    }

    /// Whether block `b` must be read in name order and is not sorted yet.
    fn unsorted(&self, b: usize) -> bool {
        self.slot.get(b).is_some_and(|&s| s != u32::MAX && self.sorted[s as usize].get().is_none())
    }

    /// The candidate pairs that `keep` accepts of the blocks with a member `wanted` accepts (the
    /// lazy ones among them put in order first, on every core); other blocks are passed over.
    fn pairs(
        &self,
        obs: &[Obs],
        records: &[&RecordEntities],
        wanted: impl Fn(u32) -> bool + Sync,
        keep: impl Fn(u32, u32) -> bool,
    ) -> Neighbours {
        if !self.slot.is_empty() {
            self.sort_where(obs, records, 0..self.len(), |ms| ms.iter().any(|&i| wanted(i)));
        }
        Neighbours::build(obs.len(), |f| {
            for (b, k) in self.keys.iter().enumerate() {
                if !self.unsorted(b) {
                    block_pairs(*k, self.get(b, obs, records), |x, y| {
                        if keep(x, y) {
                            f(x, y)
                        }
                    });
                }
            }
        })
    }

    /// Sorts, on every core, the lazy blocks among `bs` that `wanted` accepts (by their members
    /// in any order).
    fn sort_where(
        &self,
        obs: &[Obs],
        records: &[&RecordEntities],
        bs: impl IntoParallelIterator<Item = usize>,
        wanted: impl Fn(&[u32]) -> bool + Sync,
    ) {
        bs.into_par_iter().filter(|&b| self.unsorted(b) && wanted(self.members(b))).for_each(|b| {
            self.get(b, obs, records);
        });
    }
}

/// Candidate pairs as each observation's later neighbours, sorted and without repeats: the
/// pairs of all blocks counted first, then placed, so that the largest buffer of a run is made
/// once at its size, four bytes a pair (a list of pairs and its sort took twice that).
struct Neighbours {
    /// Where each observation's row starts in `next` (one more entry than observations).
    start: Vec<usize>,
    /// Each row's neighbours, all greater than the row's observation.
    next: Vec<u32>,
}

impl Neighbours {
    /// The pairs `each` gives (in either order, repeats allowed) of `n` observations; `each`
    /// is called twice, and must give the same pairs both times.
    fn build(n: usize, each: impl Fn(&mut dyn FnMut(u32, u32))) -> Neighbours {
        let mut start = vec![0usize; n + 1];
        each(&mut |a, b| start[a.min(b) as usize + 1] += 1);
        for i in 1..=n {
            start[i] += start[i - 1];
        }
        let mut next = vec![0u32; start[n]];
        let mut fill = start.clone();
        each(&mut |a, b| {
            let row = a.min(b) as usize;
            next[fill[row]] = a.max(b);
            fill[row] += 1;
        });
        drop(fill);
        let mut pairs = Neighbours { start, next: Vec::new() };
        let lens: Vec<usize> = pairs
            .rows_mut(&mut next)
            .into_par_iter()
            .map(|row| {
                row.sort_unstable();
                let mut len = 0;
                for i in 0..row.len() {
                    if len == 0 || row[i] != row[len - 1] {
                        row[len] = row[i];
                        len += 1;
                    }
                }
                len
            })
            .collect();
        // Rows closed up, front to back (a row only moves toward the start).
        let mut at = 0;
        for (a, len) in lens.into_iter().enumerate() {
            let from = pairs.start[a];
            next.copy_within(from..from + len, at);
            pairs.start[a] = at;
            at += len;
        }
        pairs.start[n] = at;
        next.truncate(at);
        pairs.next = next;
        pairs
    }

    /// Pairs in all.
    fn len(&self) -> usize {
        self.next.len()
    }

    /// The neighbours of observation `a`.
    fn row(&self, a: usize) -> &[u32] {
        &self.next[self.start[a]..self.start[a + 1]]
    }

    /// `out` (one value per pair, in pair order) cut into rows.
    fn rows_mut<'a, T>(&self, mut out: &'a mut [T]) -> Vec<&'a mut [T]> {
        let mut rows = Vec::with_capacity(self.start.len().saturating_sub(1));
        for w in self.start.windows(2) {
            let (row, rest) = std::mem::take(&mut out).split_at_mut(w[1] - w[0]);
            rows.push(row);
            out = rest;
        }
        rows
    }
}

/// The part of the data a resolution run learns and later runs reuse: the match weights and
/// the name frequencies behind the term-frequency adjustment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Model {
    /// The match weights.
    pub weights: Weights,
    /// Name part → how many names carry it.
    pub name_freq: HashMap<String, u32>,
    /// The mean of `name_freq`.
    pub mean_freq: f64,
    /// Records the model was learnt from.
    pub records: usize,
}

impl Model {
    /// The term-frequency adjustment of a name part: a common name is weaker evidence, scaled
    /// by how much rarer than average it is.
    fn tf_adjust(&self, v: &str) -> f64 {
        (self.mean_freq / f64::from(self.name_freq.get(v).copied().unwrap_or(1))).log2().clamp(-2.0, 2.0)
    }
}

/// Record key → customer ids, sorted (inline texts, Fx-hashed: a run holds one entry per record).
pub type LinkMap = FxHashMap<CompactString, Vec<CompactString>>;

/// What an incremental run knows of the previous one.
#[derive(Debug, Default)]
pub struct Previous {
    /// Each record's customers, and which of them it is a member of (the others it mentions,
    /// or is a part of a record that does): to find the previous customers and tell which
    /// customers' links change.
    pub links: PriorLinks,
    /// Keys of the records extracted this run (new or changed).
    pub fresh: rustc_hash::FxHashSet<String>,
    /// The previous versions of records replaced or removed this run.
    pub replaced: Vec<RecordEntities>,
    /// The strong values found generic by the previous run.
    pub generic: std::collections::HashSet<String>,
    /// Whether every customer is wanted in the result with its profile and links, not only the
    /// changed ones (the caller writes every customer again).
    pub every_customer: bool,
}

/// Where a resolution run's model comes from, and what it re-resolves.
#[derive(Debug, Clone, Copy)]
pub enum Plan<'a> {
    /// Learn the model from the records, starting from these weights.
    Estimate(&'a Weights),
    /// Resolve every record with a model kept from an earlier run.
    Fixed(&'a Model),
    /// Re-resolve only the customers a change can reach, with the model of the runs before:
    /// the result is the one `Fixed` gives over the same records.
    Incremental(&'a Model, &'a Previous),
}

/// Resolves customers from every record's mentions (see [`Plan`]).
/// `records` may be owned or borrowed, so a caller holding them in several places need not copy them.
pub fn resolve<R: Borrow<RecordEntities> + Sync>(records: &[R], plan: Plan) -> Resolution {
    let records: Vec<&RecordEntities> = records.iter().map(Borrow::borrow).collect();
    let records = records.as_slice();
    let clock = std::time::Instant::now();
    let lap = |what: &str| {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let (rss, peak) = crate::bench::memory_mib();
            tracing::debug!(
                "resolution: {what} at {:.2}s, memory {rss:.0} MiB (peak {peak:.0})",
                clock.elapsed().as_secs_f64()
            );
        }
    };
    lap("start");
    // 1. Observations: the non-loose mentions of each record, by party.
    let mut obs = observations(records);

    lap("observations");
    // Record key → index, for the parts (step 9). An incremental run builds it beside the
    // blocking, where a core has time to spare (here, it was 40 ms of one core at 100k
    // customers, the other waiting), and finds its fresh records by their keys.
    let key_index =
        || -> FxHashMap<&str, u32> { records.iter().enumerate().map(|(i, r)| (r.key.as_str(), i as u32)).collect() };
    let mut record_index: Option<FxHashMap<&str, u32>> = None;
    // Whether each record is fresh (an incremental run asks it of every observation, more than
    // once: by index, not by key).
    let fresh: Vec<bool> = match plan {
        Plan::Incremental(_, prev) => records.par_iter().map(|r| prev.fresh.contains(r.key.as_str())).collect(),
        _ => Vec::new(),
    };
    // 2. Generic strong values: shared by many different surnames, or role addresses. An
    //    incremental run weighs only the values of changed records and those generic before:
    //    any other value has the holders it had, so it is still not generic.
    let weighed: Option<rustc_hash::FxHashSet<&str>> = match plan {
        Plan::Incremental(_, prev) => {
            let mut values: rustc_hash::FxHashSet<&str> = prev.generic.iter().map(String::as_str).collect();
            for o in obs.iter().filter(|o| fresh[o.record]) {
                values.extend(o.found.iter().map(|(_, v)| v.as_str()));
            }
            Some(values)
        }
        _ => None,
    };
    let mut holders: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
    for (i, o) in obs.iter().enumerate() {
        for (_, v) in &o.found {
            if weighed.as_ref().is_none_or(|w| w.contains(v.as_str())) {
                holders.entry(v.as_str()).or_default().push(i);
            }
        }
    }
    drop(weighed);
    let generic: FxHashMap<String, usize> = holders
        .par_iter()
        .filter_map(|(v, hs)| {
            let mut surnames: Vec<&str> =
                hs.iter().flat_map(|&i| obs[i].sounds.iter().map(|n| n.last.0.as_str())).collect();
            surnames.sort_unstable();
            surnames.dedup();
            (surnames.len() > GENERIC_PEOPLE || (v.contains('@') && normalize::generic_email(v)))
                .then(|| (v.to_string(), surnames.len()))
        })
        .collect();
    // A value that turned generic or stopped being so changes every pair of its holders.
    let mut seeds: Vec<usize> = Vec::new();
    if let Plan::Incremental(_, prev) = plan {
        for (v, hs) in &holders {
            if generic.contains_key(*v) != prev.generic.contains(*v) {
                seeds.extend(hs);
            }
        }
    }
    drop(holders);

    obs.par_iter_mut().for_each(|o| split_strong(o, |v| generic.contains_key(v)));

    // 3. The model: learnt from these records, or kept from earlier runs.
    let mut learnt: Option<Model> = None;
    let model: &Model = match plan {
        Plan::Fixed(m) | Plan::Incremental(m, _) => m,
        Plan::Estimate(prior) => {
            let mut name_freq: HashMap<String, u32> = HashMap::new();
            for o in &obs {
                for n in &o.names {
                    for part in [&n.first, &n.last] {
                        if !part.is_empty() {
                            *name_freq.entry(part.to_string()).or_default() += 1;
                        }
                    }
                }
            }
            let total = name_freq.values().map(|&c| f64::from(c)).sum::<f64>().max(1.0);
            let mean_freq = total / name_freq.len().max(1) as f64;
            learnt.insert(Model { weights: prior.clone(), name_freq, mean_freq, records: records.len() })
        }
    };

    lap("generic values");
    // 4. Blocking: every key's observations, in observation order. (An incremental run finds
    //    the previous customers' members meanwhile, which takes a core for a third of the time.)
    let blocking = || {
        let per_obs: Vec<Vec<BlockKey>> = obs.par_iter().map(block_keys).collect();
        let blocks = Blocks::new(&per_obs, matches!(plan, Plan::Incremental(..)), &obs, records);
        (per_obs, blocks)
    };
    // (With the previous run's link rows of the records, by a merge: both are in key order; and
    // the records' index by key, needed from step 9 on.)
    let ((per_obs, blocks), before) = rayon::join(blocking, || match plan {
        Plan::Incremental(_, prev) => {
            let rows = prev.links.rows_of(records.iter().map(|r| r.key.as_str()));
            record_index = Some(key_index());
            Some((Before::of(&obs, &rows, &fresh, prev), rows))
        }
        _ => None,
    });
    let (before, prior_rows) = before.unzip();
    if tracing::enabled!(tracing::Level::DEBUG) {
        let mut per_kind: BTreeMap<char, usize> = BTreeMap::new();
        // (How many pairs a block makes does not depend on its order.)
        for (b, k) in blocks.keys.iter().enumerate() {
            block_pairs(*k, blocks.members(b), |_, _| *per_kind.entry(char::from(key_kind(*k))).or_default() += 1);
        }
        tracing::debug!("candidate pairs by block kind (before removing repeats): {per_kind:?}");
    }
    lap("block keys");

    // Term-frequency adjustment of a pair's same names: a common name is weaker evidence.
    let tf_of = |g: &Gamma, names: Option<(&PersonName, &PersonName)>| -> f64 {
        let Some((na, _)) = names else { return 0.0 };
        let mut x = 0.0;
        if g[Feature::Last.index()] == 1 {
            x += model.tf_adjust(&na.last);
        }
        if g[Feature::First.index()] == 1 {
            x += model.tf_adjust(&na.first).min(0.0);
        }
        x
    };

    // 5. Which observations to resolve. An incremental run resolves again the changed
    //    observations and every customer a change can reach; every other customer stands as
    //    the run before found it (taken whole when alone in its region, else put back together
    //    from its own members' pairs).
    let (region, alone): (Option<Vec<u32>>, Vec<bool>) = match (plan, before) {
        (Plan::Incremental(m, prev), Some(before)) => {
            let (region, alone) = regions(records, &obs, &per_obs, &blocks, before, &fresh, prev, seeds, &|a, b| {
                would_merge(&obs[a], &obs[b], &m.weights, tf_of)
            });
            (Some(region), alone)
        }
        _ => (None, Vec::new()),
    };
    // An untouched region of one previous customer is that customer again: its pairs are
    // neither compared nor clustered here (their evidence is found later, if it is written).
    let skipped = |r: u32| alone.get(r as usize).copied().unwrap_or(false);
    let resolved = region.as_ref().map_or(obs.len(), |r| r.iter().filter(|&&x| x == 0).count());
    lap("blocking");

    // (A million small vectors: freed on another core.)
    rayon::spawn(move || drop(per_obs));
    // 6. Candidate pairs, each observation's later neighbours (4 bytes a pair), compared. A
    //    block none of whose members is paired is passed over (and, if lazy, never sorted).
    let paired_obs = |i: u32| region.as_ref().is_none_or(|r| !skipped(r[i as usize]));
    let pairs = blocks.pairs(&obs, records, paired_obs, |a, b| {
        let same_region = region.as_ref().is_none_or(|r| r[a as usize] == r[b as usize] && !skipped(r[a as usize]));
        same_region && obs[a as usize].record != obs[b as usize].record
    });
    // An incremental run may need the blocks again, for the evidence of skipped customers.
    let blocks = if alone.is_empty() {
        drop(blocks);
        None
    } else {
        Some(blocks)
    };
    // Levels and name adjustment only (8 bytes a pair): the values behind them are found again
    // for the few pairs that merge.
    let compare = |obs: &[Obs], a: usize, b: usize| -> (Packed, f32) {
        let x = compare_obs(&obs[a], &obs[b], false);
        (Packed::of(&x.gamma), tf_of(&x.gamma, x.names) as f32)
    };
    let mut compared: Vec<(Packed, f32)> = vec![(Packed::default(), 0.0); pairs.len()];
    pairs.rows_mut(&mut compared).into_par_iter().enumerate().for_each(|(a, out)| {
        for (c, &b) in out.iter_mut().zip(pairs.row(a)) {
            *c = compare(&obs, a, b as usize);
        }
    });
    lap("comparisons");
    let mut weights = model.weights.clone();
    if let Plan::Estimate(prior) = plan {
        let mut packed: FxHashMap<Packed, usize> = FxHashMap::default();
        for (g, _) in &compared {
            *packed.entry(*g).or_default() += 1;
        }
        let patterns: HashMap<Gamma, usize> = packed.into_iter().map(|(g, n)| (g.gamma(), n)).collect();
        let mut random = estimate::LevelCounts { population: obs.len(), ..Default::default() };
        let sample: Vec<Gamma> = estimate::random_pairs(obs.len())
            .into_par_iter()
            .filter(|&(a, b)| obs[a].record != obs[b].record)
            .map(|(a, b)| compare_obs(&obs[a], &obs[b], false).gamma)
            .collect();
        for g in &sample {
            random.add(g);
        }
        weights = estimate::estimate(&patterns, &random, prior);
        lap("estimation");
    }
    let w = &weights;
    // The name part of a pair's weight, with its term-frequency adjustment.
    let name_weight = |g: &Gamma, tf: f64| {
        w.of(Feature::First, g[Feature::First.index()]) + w.of(Feature::Last, g[Feature::Last.index()]) + tf
    };
    // Only weights learnt from the data know what a differing given name costs here (a
    // typo-ridden silo, or a household sharing a phone); the priors keep the hard guard.
    // A compared pair that passes: its weight, its sides, and the conflicts it priced.
    let score = |a: u32, b: u32, (p, tf): (Packed, f32)| -> Option<(f64, u32, u32, Priced)> {
        let g = p.gamma();
        let total = passes(&g, f64::from(tf), w)?;
        let priced = Priced {
            first: w.estimated && g[Feature::First.index()] == 4,
            dob: w.estimated && g[Feature::Dob.index()] == 3,
        };
        Some((total, a, b, priced))
    };
    let best_first = |x: &(f64, u32, u32, Priced), y: &(f64, u32, u32, Priced)| {
        y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2))
    };
    let mut scored: Vec<(f64, u32, u32, Priced)> = (0..obs.len())
        .into_par_iter()
        .flat_map_iter(|a| {
            let (row, at) = (pairs.row(a), pairs.start[a]);
            let compared = &compared;
            row.iter().enumerate().filter_map(move |(j, &b)| score(a as u32, b, compared[at + j]))
        })
        .collect();
    drop(compared);
    drop(pairs);
    scored.sort_by(best_first);
    // The evidence of a pair: which values agreed or differed, with their weights, each naming
    // the record of observation `named` (one side of the pair). Built only for the pairs that
    // give a member its evidence.
    // (The observations are a parameter, not captured, so that a full run can thin them out
    // once every customer's evidence is built.)
    let explain = |obs: &[Obs], a: usize, b: usize, named: usize| -> Vec<Evidence> {
        let c = compare_obs(&obs[a], &obs[b], true);
        let g = c.gamma;
        let other: Arc<str> = Arc::from(records[obs[named].record].key.as_str());
        let mut evidence: Vec<Evidence> = Vec::new();
        let mut push = |kind: EvidenceKind, value: String, weight: f64| {
            evidence.push(Evidence { kind, value: value.into(), other: other.clone(), weight })
        };
        if let Some((na, nb)) = c.names
            && (g[Feature::First.index()] != 0 || g[Feature::Last.index()] != 0)
        {
            push(EvidenceKind::Name, format!("{} ~ {}", na.norm(), nb.norm()), name_weight(&g, tf_of(&g, c.names)));
        }
        for f in [Feature::Email, Feature::Phone, Feature::Id] {
            let l = g[f.index()];
            if l == 1 {
                // The feature counts once, however many values the two share.
                for (n, v) in c.shared.iter().filter(|(k, _)| *k == f).enumerate() {
                    push(f.kind(), v.1.to_string(), if n == 0 { w.of(f, 1) } else { 0.0 });
                }
            } else if l > 1 && w.of(f, l) != 0.0 {
                push(f.kind(), "differs".into(), w.of(f, l));
            }
        }
        for (f, v) in [
            (Feature::Company, c.company),
            (Feature::Address, c.address),
            (Feature::City, c.city),
            (Feature::Dob, c.dob),
        ] {
            let l = g[f.index()];
            if l > 0 && w.of(f, l) != 0.0 {
                push(f.kind(), v, w.of(f, l));
            }
        }
        exact(evidence)
    };

    lap("scoring");
    // 6. Cluster, best pairs first, with guards. A member's evidence is the first merge that
    //    took it in, and names the record on the other side of that pair; the pair is noted
    //    here and explained later, for the customers whose links are written.
    let mut cl =
        Clusters { parent: (0..obs.len()).collect(), guards: (0..obs.len()).map(|_| None).collect(), obs: &obs };
    const NO_PAIR: (u32, u32) = (u32::MAX, u32::MAX);
    let mut first_pair: Vec<(u32, u32)> = vec![NO_PAIR; obs.len()];
    let cluster = |cl: &mut Clusters, first_pair: &mut [(u32, u32)], scored: Vec<(f64, u32, u32, Priced)>| {
        for (_, a, b, priced) in scored {
            if cl.union(a as usize, b as usize, priced) {
                for z in [a as usize, b as usize] {
                    if first_pair[z] == NO_PAIR {
                        first_pair[z] = (a, b);
                    }
                }
            }
        }
    };
    cluster(&mut cl, &mut first_pair, scored);
    // Each skipped region is one cluster: its members under its first observation.
    if let Some(r) = &region {
        let mut head: Vec<u32> = vec![u32::MAX; alone.len()];
        for (i, &ri) in r.iter().enumerate() {
            if skipped(ri) {
                let h = &mut head[ri as usize];
                if *h == u32::MAX {
                    *h = i as u32;
                } else {
                    cl.parent[i] = *h as usize;
                }
            }
        }
    }

    lap("clustering");
    // 7. Customers: id from the earliest member (smallest record key, then party).
    //    Each cluster's members in order, clusters by their root's place: counted, then laid
    //    out in one vector (a map of a vector a cluster was 100,000 allocations).
    let roots: Vec<u32> = (0..obs.len()).map(|i| cl.find(i) as u32).collect();
    drop(cl);
    let mut ends: Vec<u32> = vec![0; obs.len() + 1];
    for &r in &roots {
        ends[r as usize + 1] += 1;
    }
    for i in 1..ends.len() {
        ends[i] += ends[i - 1];
    }
    let mut members: Vec<usize> = vec![0; obs.len()];
    let mut next = ends.clone();
    for (i, &r) in roots.iter().enumerate() {
        members[next[r as usize] as usize] = i;
        next[r as usize] += 1;
    }
    drop((roots, next));
    let groups: Vec<&[usize]> =
        ends.windows(2).filter(|w| w[1] > w[0]).map(|w| &members[w[0] as usize..w[1] as usize]).collect();
    drop(ends);
    let heads: Vec<(String, usize)> = groups
        .par_iter()
        .map(|ms| {
            let founder = ms
                .iter()
                .min_by(|&&x, &&y| {
                    records[obs[x].record].key.cmp(&records[obs[y].record].key).then(obs[x].party.cmp(&obs[y].party))
                })
                .copied()
                .unwrap_or(ms[0]);
            (customer_id(&records[obs[founder].record].key, obs[founder].party), founder)
        })
        .collect();
    // Each record's source (its key's prefix), named once for every customer's profile.
    let mut source_names: Vec<Arc<str>> = Vec::new();
    let mut source_at: FxHashMap<&str, u32> = FxHashMap::default();
    let source_of: Vec<u32> = records
        .iter()
        .map(|r| {
            let s = r.key.split_once(':').map_or(r.key.as_str(), |(s, _)| s);
            *source_at.entry(s).or_insert_with(|| {
                source_names.push(Arc::from(s));
                (source_names.len() - 1) as u32
            })
        })
        .collect();
    drop(source_at);
    // The evidence of member `i`: its first merge's, naming the record on the other side.
    let evidence_of = |obs: &[Obs], first_pair: &[(u32, u32)], i: usize| -> Vec<Evidence> {
        let (a, b) = first_pair[i];
        if (a, b) == NO_PAIR {
            return Vec::new();
        }
        let (a, b) = (a as usize, b as usize);
        explain(obs, a, b, if i == b { a } else { b })
    };
    type Detail = (Profile, Sources, Vec<(usize, Vec<Evidence>)>);
    // A customer's profile, its sources, and the evidence of each member record (by its first
    // observation in the customer, as the member links keep it).
    let detail = |obs: &[Obs], first_pair: &[(u32, u32)], ci: usize| -> Detail {
        let (ms, (id, founder)) = (groups[ci], &heads[ci]);
        let mentions: Vec<(&Arc<str>, &dossier_schema::Mention)> = ms
            .iter()
            .flat_map(|&i| {
                let (r, party) = (obs[i].record, obs[i].party);
                let source = &source_names[source_of[r] as usize];
                records[r].mentions.iter().filter(move |m| m.party == party).map(move |m| (source, m))
            })
            .collect();
        let (profile, sources) = Sources::build(id, &mentions);
        let mut seen: Vec<usize> = Vec::new();
        let mut evidence = Vec::new();
        for &i in ms.iter() {
            if !seen.contains(&obs[i].record) {
                seen.push(obs[i].record);
                evidence
                    .push((obs[i].record, if i == *founder { Vec::new() } else { evidence_of(obs, first_pair, i) }));
            }
        }
        (profile, sources, evidence)
    };
    // A full resolution writes every customer; an incremental one only those it resolved again
    // or whose records changed, known once the links are (below).
    let incremental = region.is_some();
    let mut details: Vec<Option<Detail>> = Vec::new();
    if !incremental {
        details = (0..groups.len()).into_par_iter().map(|ci| Some(detail(&obs, &first_pair, ci))).collect();
        lap("profiles and evidence");
    }
    let observations = obs.len();
    // Only each observation's record and strong values are read from here on (which customer
    // holds each); a full run has built every customer's detail and needs nothing more.
    // (An incremental run keeps the observations, and reads them where they are.)
    let held: Vec<Held> = if incremental {
        Vec::new()
    } else {
        std::mem::take(&mut obs).into_par_iter().map(|o| Held { record: o.record, strong: o.strong }).collect()
    };
    // A strong value's owning customer (by index); `None` when several hold it. Only values
    // that some record mentions loosely are looked up.
    // (The records' loose strong mentions are few: found once, on every core, for both uses.)
    let loose_mentions: Vec<(usize, &dossier_schema::Mention)> = records
        .par_iter()
        .enumerate()
        .flat_map_iter(|(ri, r)| {
            r.mentions.iter().filter(|m| m.party == LOOSE && m.kind.is_strong()).map(move |m| (ri, m))
        })
        .collect();
    let loose: rustc_hash::FxHashSet<&str> = loose_mentions.iter().map(|(_, m)| m.norm.as_str()).collect();
    // An observation's record and strong values, wherever they are now (a full run has moved
    // its observations into `held`).
    let held_of = |i: usize| match held.get(i) {
        Some(h) => (h.record, &h.strong),
        None => (obs[i].record, &obs[i].strong),
    };
    // Each observation's strong values looked up among them, in observation order (the
    // memory's) and on every core: 1.5 million lookups at 100k customers.
    let mut customer_of = vec![0u32; held.len().max(obs.len())];
    for (ci, ms) in groups.iter().enumerate() {
        for &i in *ms {
            customer_of[i] = ci as u32;
        }
    }
    let held_values: Vec<(&str, usize)> = customer_of
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, &ci)| {
            let (_, strong) = held_of(i);
            // Emails, phones and identifiers (not their kinds).
            [strong.get(0), strong.get(1), strong.get(2)]
                .into_iter()
                .flat_map(Values::iter)
                .filter(|v| loose.contains(v.as_str()))
                .map(move |v| (v.as_str(), ci as usize))
        })
        .collect();
    drop(customer_of);
    let mut value_owner: FxHashMap<&str, Option<usize>> = FxHashMap::default();
    for (v, ci) in held_values {
        value_owner.entry(v).and_modify(|o| *o = o.filter(|&x| x == ci)).or_insert(Some(ci));
    }
    // Each record's customers by index, not by key and id (a million records' links keyed by
    // two copied strings each were a tenth of a large run's memory); inline, as most records
    // link to one customer. A record index at or past `records.len()` names a parent key that
    // is no record of this run (`extra_keys`). Members are most links: their role is implied;
    // the others' roles and evidence are kept by (record, customer) in `other_roles`.
    let mut linked: Vec<Linked> = vec![Linked::new(); records.len()];
    let mut other_roles: FxHashMap<(u32, u32), (&'static str, Vec<Evidence>)> = FxHashMap::default();
    let mut resolved_customers = region.as_ref().map(|_| std::collections::HashSet::new());
    for (ci, ((id, _), ms)) in heads.iter().zip(&groups).enumerate() {
        if let (Some(set), Some(r)) = (resolved_customers.as_mut(), region.as_ref())
            && ms.iter().any(|&i| r[i] == 0)
        {
            set.insert(id.clone());
        }
        for &i in ms.iter() {
            let (record, _) = held_of(i);
            if !linked[record].contains(&(ci as u32)) {
                linked[record].push(ci as u32);
            }
        }
    }

    lap("customers");
    // 8. Loose strong values link documents to the one customer holding them.
    for &(ri, m) in &loose_mentions {
        // A value held by several customers identifies none of them.
        let Some(Some(owner)) = value_owner.get(m.norm.as_str()) else {
            continue;
        };
        let owner = *owner as u32;
        // (A member, or linked by an earlier mention: its first link stands.)
        if !linked[ri].contains(&owner) {
            linked[ri].push(owner);
            let other = Arc::from(records[ri].key.as_str());
            let evidence = Evidence { kind: m.kind.into(), value: m.norm.clone(), other, weight: 0.0 };
            other_roles.insert((ri as u32, owner), ("mentions", vec![evidence]));
        }
    }
    drop((value_owner, loose, loose_mentions));
    drop(held);
    lap("mentions");

    // 9. Parts inherit: a page or attachment with no customer of its own takes its
    //    parent's, and a document takes the customers of its pages.
    let mut index_of: FxHashMap<&str, u32> = record_index.take().unwrap_or_else(key_index);
    let mut extra_keys: Vec<&str> = Vec::new();
    let mut inherited: Vec<(u32, u32, u32)> = Vec::new();
    for (ri, r) in records.iter().enumerate() {
        if r.kind == RecordKind::Page
            && let Some(p) = &r.parent
        {
            let pi = *index_of.entry(p.as_str()).or_insert_with(|| {
                extra_keys.push(p);
                (records.len() + extra_keys.len() - 1) as u32
            });
            for &ci in &linked[ri] {
                inherited.push((pi, ci, ri as u32));
            }
        }
    }
    linked.resize(records.len() + extra_keys.len(), Linked::new());
    let key_of = |i: u32| -> &str {
        records.get(i as usize).map_or_else(|| extra_keys[i as usize - records.len()], |r| r.key.as_str())
    };
    for (ri, ci, from) in inherited {
        add_link(&mut linked, &mut other_roles, ri, ci, key_of(from));
    }
    for (ri, r) in records.iter().enumerate() {
        if !linked[ri].is_empty() {
            continue;
        }
        let mut p = r.parent.as_deref();
        let mut depth = 0;
        while let Some(pk) = p {
            if let Some(&pi) = index_of.get(pk)
                && !linked[pi as usize].is_empty()
            {
                for ci in linked[pi as usize].clone() {
                    add_link(&mut linked, &mut other_roles, ri as u32, ci, pk);
                }
                break;
            }
            depth += 1;
            p = if depth < 8 {
                index_of.get(pk).and_then(|&i| records.get(i as usize)).and_then(|x| x.parent.as_deref())
            } else {
                None
            };
        }
    }
    // Each record's customer ids, sorted, without repeats.
    let ids_of = |cs: &[u32]| -> smallvec::SmallVec<[&str; 2]> {
        let mut ids: smallvec::SmallVec<[&str; 2]> = cs.iter().map(|&ci| heads[ci as usize].0.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let link = |key: &str, ids: smallvec::SmallVec<[&str; 2]>| {
        (CompactString::from(key), exact(ids.into_iter().map(CompactString::from).collect()))
    };
    // 10. The customers written: after an incremental resolution, those resolved again and
    //     those a record now or no longer links to; the others stand as the run before left them.
    //     It gives only the links of fresh and relinked records (every other record's stand):
    //     a 1% run compares every record's ids with the last run's, but builds few.
    let mut changed = None;
    let mut relinked = None;
    let mut wanted: std::collections::HashSet<&str> = resolved_customers.iter().flatten().map(String::as_str).collect();
    let links: LinkMap = match plan {
        Plan::Incremental(_, prev) => {
            let (mut links, mut moved) = (LinkMap::default(), rustc_hash::FxHashSet::default());
            let old_links = &prev.links;
            // Each record's row of the last run's links (found with the previous customers),
            // then each parent's that is no record.
            let mut rows = prior_rows.unwrap_or_default();
            rows.extend(extra_keys.iter().map(|k| old_links.find(k).map(|r| r as u32)));
            // Every record's ids against the last run's, on every core: how many of the last
            // run's links are records here (when fewer than all, the others are gone), and the
            // records whose ids differ (`true`) or that are fresh, with their old row and new ids.
            // (`fresh` ends with the records: a parent key that is no record is not fresh.)
            type Differ<'x> = Vec<(usize, Option<u32>, smallvec::SmallVec<[&'x str; 2]>, bool)>;
            let (found, differ) = linked
                .par_iter()
                .zip(&rows)
                .enumerate()
                .fold(
                    || (0usize, Differ::new()),
                    |(mut found, mut differ), (ri, (cs, &row))| {
                        found += usize::from(row.is_some());
                        let ids = ids_of(cs);
                        let moved = match row {
                            Some(row) => !old_links.ids(row as usize).eq(ids.iter().copied()),
                            None => !ids.is_empty(),
                        };
                        if moved || fresh.get(ri).copied().unwrap_or(false) {
                            differ.push((ri, row, ids, moved));
                        }
                        (found, differ)
                    },
                )
                .reduce(
                    || (0, Differ::new()),
                    |(a, mut x), (b, y)| {
                        x.extend(y);
                        (a + b, x)
                    },
                );
            for (ri, row, ids, differs) in differ {
                let key = key_of(ri as u32);
                if differs {
                    let old = row.into_iter().flat_map(|r| old_links.ids(r as usize));
                    wanted.extend(old.chain(ids.iter().copied()));
                    moved.insert(CompactString::from(key));
                }
                if !ids.is_empty() {
                    let (k, v) = link(key, ids);
                    links.insert(k, v);
                }
            }
            if found < old_links.len() {
                let mut gone = vec![true; old_links.len()];
                for r in rows.iter().flatten() {
                    gone[*r as usize] = false;
                }
                for r in (0..old_links.len()).filter(|&r| gone[r]) {
                    wanted.extend(old_links.ids(r));
                    moved.insert(CompactString::from(old_links.key(r)));
                }
            }
            relinked = Some(moved);
            links
        }
        _ => linked
            .iter()
            .enumerate()
            .filter(|(_, cs)| !cs.is_empty())
            .map(|(ri, cs)| link(key_of(ri as u32), ids_of(cs)))
            .collect(),
    };
    drop(index_of);
    lap("links");
    if let Plan::Incremental(_, prev) = plan {
        let written = |id: &str| prev.every_customer || wanted.contains(id);
        // The skipped regions of customers written: their pairs are clustered now, in the
        // order a full run gives them, for each member's evidence.
        let mut redo = vec![false; alone.len()];
        for ((id, _), ms) in heads.iter().zip(&groups) {
            if let Some(r) = region.as_ref().map(|r| r[ms[0]])
                && skipped(r)
                && written(id)
            {
                redo[r as usize] = true;
            }
        }
        if let (Some(r), Some(blocks)) = (region.as_ref().filter(|_| redo.contains(&true)), blocks.as_ref()) {
            let again = |a: u32| redo[r[a as usize] as usize];
            let pairs = blocks.pairs(&obs, records, again, |a, b| {
                let (x, y) = (a as usize, b as usize);
                r[x] == r[y] && again(a) && obs[x].record != obs[y].record
            });
            // (All of them when every customer is written: on every core, as the run's own.)
            let obs = &obs;
            let mut scored: Vec<(f64, u32, u32, Priced)> = (0..obs.len())
                .into_par_iter()
                .filter(|&a| again(a as u32))
                .flat_map_iter(|a| {
                    pairs.row(a).iter().filter_map(move |&b| score(a as u32, b, compare(obs, a, b as usize)))
                })
                .collect();
            scored.sort_by(best_first);
            let mut cl =
                Clusters { parent: (0..obs.len()).collect(), guards: (0..obs.len()).map(|_| None).collect(), obs };
            cluster(&mut cl, &mut first_pair, scored);
        }
        details = heads
            .par_iter()
            .enumerate()
            .map(|(ci, (id, _))| written(id).then(|| detail(&obs, &first_pair, ci)))
            .collect();
        if !prev.every_customer {
            changed = Some(wanted.into_iter().map(str::to_string).collect());
        }
    }
    let mut customers: Vec<Customer> = Vec::new();
    let mut sources: HashMap<String, Sources> = HashMap::new();
    let mut unchanged: Vec<String> = Vec::new();
    // Customer index → its place in `customers` (written ones only).
    let mut at: Vec<Option<u32>> = vec![None; heads.len()];
    // The evidence of written customers' members, by (record, customer).
    let mut member_evidence: FxHashMap<(u32, u32), Vec<Evidence>> = FxHashMap::default();
    for (ci, ((id, _), d)) in heads.into_iter().zip(details).enumerate() {
        let Some((profile, parts, evidence)) = d else {
            unchanged.push(id);
            continue;
        };
        member_evidence.extend(evidence.into_iter().map(|(r, ev)| ((r as u32, ci as u32), ev)));
        sources.insert(id.clone(), parts);
        at[ci] = Some(customers.len() as u32);
        customers.push(Customer { id, profile, links: Vec::new() });
    }
    drop((groups, first_pair, source_of, source_names));
    // Half a million observations take a while to free: on another core, as the rest is serial.
    rayon::spawn(move || drop((members, obs)));
    // Each customer's links in a vector of their number (one grown by pushes keeps room for
    // four or more, and a million links add up).
    let mut count = vec![0u32; customers.len()];
    for ci in linked.iter().flatten() {
        if let Some(i) = at[*ci as usize] {
            count[i as usize] += 1;
        }
    }
    let mut by_customer: Vec<Vec<Link>> = count.into_iter().map(|n| Vec::with_capacity(n as usize)).collect();
    for (ri, cs) in linked.iter().enumerate() {
        for &ci in cs {
            let Some(i) = at[ci as usize] else { continue };
            let (role, evidence) = match other_roles.remove(&(ri as u32, ci)) {
                Some(other) => other,
                None => ("member", member_evidence.remove(&(ri as u32, ci)).unwrap_or_default()),
            };
            by_customer[i as usize].push(Link { key: key_of(ri as u32).to_string(), role: role.into(), evidence });
        }
    }
    drop((at, linked));
    for (c, mut ls) in customers.iter_mut().zip(by_customer) {
        ls.sort_by(|a, b| a.key.cmp(&b.key));
        c.links = ls;
    }
    customers.sort_by(|a, b| a.id.cmp(&b.id));
    unchanged.sort();
    lap("customers' links");
    if tracing::enabled!(tracing::Level::DEBUG) {
        let links: usize = customers.iter().map(|c| c.links.len()).sum();
        let pieces: usize = customers.iter().flat_map(|c| &c.links).map(|l| l.evidence.len()).sum();
        let values: usize = customers.iter().flat_map(|c| (0..8).map(|f| profile_set(&c.profile, f).len())).sum();
        tracing::debug!(
            "resolution: {} customers, {links} links, {pieces} pieces of evidence, {values} profile values",
            customers.len()
        );
    }
    let mut generic: Vec<(String, usize)> = generic.into_iter().collect();
    generic.sort();
    let learnt = learnt.map(|m| Model { weights: weights.clone(), ..m });
    Resolution {
        customers,
        unchanged,
        changed,
        relinked,
        links,
        generic,
        sources,
        weights,
        learnt,
        resolved,
        observations,
        resolved_customers,
    }
}

/// Record key → the customers each record links to other than as a member, from customers'
/// links (what [`Previous::others`] holds).
pub fn others_of(customers: &[Customer]) -> LinkMap {
    let mut out = LinkMap::default();
    for c in customers {
        for l in c.links.iter().filter(|l| l.role != "member") {
            out.entry(l.key.as_str().into()).or_default().push(c.id.as_str().into());
        }
    }
    out
}

/// `v` in an allocation of its length: `shrink_to_fit` may keep the block in place (mimalloc
/// does when it shrinks to half or more), and a million records' small vectors add up.
fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    if v.capacity() == v.len() {
        return v;
    }
    let mut e = Vec::with_capacity(v.len());
    e.append(&mut v);
    e
}

/// The previous run's customers as an incremental run finds them among its observations.
struct Before {
    /// Where each record's observations start (observations are made record by record).
    obs_start: Vec<usize>,
    /// The customers that lost or changed a member: all of each is resolved again.
    whole: Vec<u32>,
    /// Each previous customer's current observations, by the customer's number.
    cust_obs: Vec<Vec<usize>>,
    /// Where each record's customers start in `custs`.
    custs_start: Vec<usize>,
    /// Each current record's previous customers (every observation of a record counts in each).
    custs: Vec<u32>,
}

impl Before {
    /// The previous customers, by their numbers in `prev.links`, with their current
    /// observations; each current record's customers. `rows`: each record's row of links.
    fn of(obs: &[Obs], rows: &[Option<u32>], fresh: &[bool], prev: &Previous) -> Before {
        let links = &prev.links;
        // Observations are made record by record: each record's are a run of them.
        let obs_start = row_starts(rows.len(), obs.iter().map(|o| o.record));
        debug_assert!(obs.windows(2).all(|w| w[0].record <= w[1].record));
        let mut whole: Vec<u32> = Vec::new();
        let mut cust_obs: Vec<Vec<usize>> = vec![Vec::new(); links.customers()];
        let mut custs_start: Vec<usize> = Vec::with_capacity(rows.len() + 1);
        let mut custs: Vec<u32> = Vec::with_capacity(rows.len());
        let mut found = vec![false; links.len()];
        for (ri, row) in rows.iter().enumerate() {
            custs_start.push(custs.len());
            let Some(row) = row.map(|r| r as usize) else { continue };
            found[row] = true;
            for (n, _) in links.links(row).filter(|&(_, member)| member) {
                cust_obs[n as usize].extend(obs_start[ri]..obs_start[ri + 1]);
                custs.push(n);
                if fresh[ri] {
                    // A customer that changed a member: all of it is resolved again.
                    whole.push(n);
                }
            }
        }
        custs_start.push(custs.len());
        // And one that lost a member.
        for row in (0..links.len()).filter(|&r| !found[r]) {
            whole.extend(links.links(row).filter(|&(_, member)| member).map(|(n, _)| n));
        }
        Before { obs_start, whole, cust_obs, custs_start, custs }
    }
}

/// The region of each observation in an incremental run: 0 for those resolved again, else a
/// number per group of the previous run's customers. A group is a union of whole customers
/// that no changed pair reaches, so resolving it alone gives what the run before gave.
///
/// Resolved again: the observations of fresh records; every customer that had a fresh or
/// removed member; the holders of values whose generic status changed; the members of blocks
/// a change pushed across the size limit; and, until nothing more is reached, every customer
/// with a member that would merge with one of those.
///
/// Also says, for each region, whether it is one previous customer untouched (then its
/// observations are that customer again).
#[allow(clippy::too_many_arguments)]
fn regions(
    records: &[&RecordEntities],
    obs: &[Obs],
    per_obs: &[Vec<BlockKey>],
    blocks: &Blocks,
    before: Before,
    fresh: &[bool],
    prev: &Previous,
    mut seeds: Vec<usize>,
    merges: &(dyn Fn(usize, usize) -> bool + Sync),
) -> (Vec<u32>, Vec<bool>) {
    let Before { obs_start, mut whole, cust_obs, custs_start, custs } = before;
    let obs_of_record = |r: usize| obs_start[r]..obs_start[r + 1];
    let obs_custs = |i: usize| &custs[custs_start[obs[i].record]..custs_start[obs[i].record + 1]];
    // Fresh records, and any observation the previous run did not place.
    for (i, o) in obs.iter().enumerate() {
        if obs_custs(i).is_empty() || fresh[o.record] {
            seeds.push(i);
        }
    }
    // Blocks a change pushed across the size limit: their pairs appear or vanish.
    let mut delta: FxHashMap<BlockKey, (usize, usize)> = FxHashMap::default();
    for (i, o) in obs.iter().enumerate() {
        if fresh[o.record] {
            for k in &per_obs[i] {
                delta.entry(*k).or_default().0 += 1;
            }
        }
    }
    // Where removed observations sorted in name blocks.
    let mut removed_obs = observations(&prev.replaced);
    let mut removed_at: FxHashMap<BlockKey, Vec<Order>> = FxHashMap::default();
    for o in &mut removed_obs {
        split_strong(o, |v| prev.generic.contains(v));
    }
    for o in &removed_obs {
        for k in block_keys(o) {
            delta.entry(k).or_default().1 += 1;
            if name_kind(k) {
                removed_at.entry(k).or_default().push(name_order(o, &prev.replaced[o.record].key, k));
            }
        }
    }
    let is_fresh = |i: usize| fresh[obs[i].record];
    let changed_blocks: Vec<usize> = delta.keys().filter_map(|k| blocks.of(*k).map(|b| b as usize)).collect();
    blocks.sort_where(obs, records, changed_blocks, |_| true);
    // (On every core: each windowed block finds its members in name order again.)
    let shifted: Vec<usize> = delta
        .par_iter()
        .flat_map_iter(|(k, (added, removed))| {
            let Some(b) = blocks.of(*k) else { return Vec::new() };
            let ms = blocks.get(b as usize, obs, records);
            let (now, before) = (ms.len(), (ms.len() + removed).saturating_sub(*added));
            let cut = key_kind(*k) == b's' && now.max(before) > MAX_BLOCK * 4;
            if cut || block_used(*k, now) != block_used(*k, before) || windowed(*k, now) != windowed(*k, before) {
                ms.iter().map(|&i| i as usize).collect()
            } else if windowed(*k, now) {
                let removed = removed_at.get(k).map_or(&[][..], Vec::as_slice);
                window_shifts(records, obs, *k, ms, removed, &is_fresh, merges)
            } else {
                Vec::new()
            }
        })
        .collect();
    seeds.extend(shifted);

    drop(removed_at);
    // The closure: whole customers, whole records, and whatever merges with them.
    let mut in_s = vec![false; obs.len()];
    let mut cust_done = vec![false; cust_obs.len()];
    let mut queue: Vec<usize> = Vec::new();
    let mut head = 0;
    let mut pending = seeds;
    loop {
        loop {
            if let Some(c) = whole.pop() {
                if !cust_done[c as usize] {
                    cust_done[c as usize] = true;
                    pending.extend(cust_obs[c as usize].iter().copied());
                }
                continue;
            }
            let Some(i) = pending.pop() else { break };
            if in_s[i] {
                continue;
            }
            in_s[i] = true;
            queue.push(i);
            whole.extend(obs_custs(i).iter().copied());
            pending.extend(obs_of_record(obs[i].record));
        }
        if head == queue.len() {
            break;
        }
        let batch = &queue[head..];
        head = queue.len();
        let reached: Vec<usize> = batch
            .par_iter()
            .flat_map_iter(|&a| {
                let mut near: Vec<usize> = Vec::new();
                for k in &per_obs[a] {
                    let Some(b) = blocks.of(*k) else { continue };
                    let all = blocks.get(b as usize, obs, records);
                    if !block_used(*k, all.len()) {
                        continue;
                    }
                    let ms = paired(all);
                    let ms = if windowed(*k, ms.len()) {
                        // Its members in name order: `a` meets its window only.
                        let Some(x) = ms.iter().position(|&m| m as usize == a) else { continue };
                        &ms[x.saturating_sub(WINDOW)..ms.len().min(x + WINDOW + 1)]
                    } else if ms.len() < all.len() && ms.binary_search(&(a as u32)).is_err() {
                        // A cut block pairs its first members only.
                        continue;
                    } else {
                        ms
                    };
                    near.extend(ms.iter().map(|&m| m as usize).filter(|&m| !in_s[m] && obs[m].record != obs[a].record));
                }
                near.sort_unstable();
                near.dedup();
                near.into_iter().filter(move |&m| merges(a, m))
            })
            .collect();
        pending.extend(reached);
    }

    // The rest: previous customers joined by records that were members of several.
    let mut parent: Vec<u32> = (0..cust_obs.len() as u32).collect();
    fn find(p: &mut [u32], mut x: u32) -> u32 {
        while p[x as usize] != x {
            p[x as usize] = p[p[x as usize] as usize];
            x = p[x as usize];
        }
        x
    }
    for r in 0..records.len() {
        for w in custs[custs_start[r]..custs_start[r + 1]].windows(2) {
            let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
            parent[a.max(b) as usize] = a.min(b);
        }
    }
    let region: Vec<u32> = (0..obs.len())
        .map(|i| match obs_custs(i).first() {
            Some(&c) if !in_s[i] => 1 + find(&mut parent, c),
            _ => 0,
        })
        .collect();
    let mut customers = vec![0u32; cust_obs.len() + 1];
    for c in 0..cust_obs.len() as u32 {
        customers[1 + find(&mut parent, c) as usize] += 1;
    }
    (region, customers.into_iter().map(|n| n == 1).collect())
}

/// Where each of `n` rows starts in a list whose entries belong to rows `rows` (the list in row
/// order), with the list's end last: row `r` is `start[r]..start[r + 1]`.
fn row_starts(n: usize, rows: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut start = vec![0usize; n + 1];
    for r in rows {
        start[r + 1] += 1;
    }
    for r in 0..n {
        start[r + 1] += start[r];
    }
    start
}

/// The untouched members of windowed block `key` (members `ms`, in name order) that an
/// incremental run must resolve again because a change moved their windows: a pair of two
/// untouched members enters or leaves the window when a member added (fresh) or removed
/// (`removed`, where it sorted) lies between them, and such a pair matters only if it merges.
fn window_shifts(
    records: &[&RecordEntities],
    obs: &[Obs],
    key: BlockKey,
    ms: &[u32],
    removed: &[Order],
    is_fresh: &dyn Fn(usize) -> bool,
    merges: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Vec<usize> {
    let now = ms.len();
    let fresh: Vec<bool> = ms.iter().map(|&m| is_fresh(m as usize)).collect();
    let mut removed: Vec<Order> = removed.to_vec();
    removed.sort_unstable();
    // Where each removed member sat: before the first member now that sorts after it (found
    // by halving, so a large block's members' orders are not all made and compared).
    let at: Vec<usize> = removed
        .iter()
        .map(|gone| {
            ms.partition_point(|&m| {
                let o = &obs[m as usize];
                name_order(o, &records[o.record].key, key) <= *gone
            })
        })
        .collect();
    // Each untouched member's place in the previous run's order: its place now, less the
    // fresh members before it, plus the removed ones that sorted before it.
    let mut before = vec![usize::MAX; now];
    let (mut r, mut added) = (0, 0);
    let mut changes: Vec<usize> = Vec::new();
    for x in 0..now {
        while r < at.len() && at[r] <= x {
            r += 1;
            changes.push(x);
        }
        if fresh[x] {
            added += 1;
            changes.push(x);
        } else {
            before[x] = x - added + r;
        }
    }
    changes.extend(std::iter::repeat_n(now, removed.len() - r));
    changes.dedup();
    // A pair that straddles a change and whose distance crosses the window, either way.
    let reach = WINDOW + changes.len() + 1;
    let mut out = Vec::new();
    for &x in &changes {
        for p in x.saturating_sub(reach)..x {
            for q in x..now.min(x + reach + 1) {
                if fresh[p] || fresh[q] {
                    continue;
                }
                let inside_now = q - p <= WINDOW;
                let inside_before = before[q].saturating_sub(before[p]) <= WINDOW;
                if inside_now != inside_before && merges(ms[p] as usize, ms[q] as usize) {
                    out.extend([ms[p] as usize, ms[q] as usize]);
                }
            }
        }
    }
    out
}

/// Blocking keys of a normalized address, so that a record whose name was mistyped or
/// changed still meets its twin at the same address: house number with postcode, and each
/// of them with the sound of the street's longest word.
fn address_blocks(a: &str) -> Vec<BlockKey> {
    let tokens: Vec<&str> = a.split(' ').filter(|t| !t.is_empty()).collect();
    let numbers: Vec<&str> = tokens.iter().copied().filter(|t| t.bytes().all(|c| c.is_ascii_digit())).collect();
    let word = tokens
        .iter()
        .copied()
        .filter(|t| t.len() >= 4 && !t.bytes().all(|c| c.is_ascii_digit()))
        .max_by(|x, y| x.len().cmp(&y.len()).then(y.cmp(x)))
        .map(|w| compare::codes(w).0)
        .unwrap_or_default();
    let mut out = Vec::new();
    if let (Some(first), Some(last)) = (numbers.first(), numbers.last())
        && numbers.len() >= 2
    {
        out.push(block_key(b'a', &[first, last]));
    }
    if !word.is_empty() {
        for n in numbers.first().into_iter().chain(numbers.last().filter(|_| numbers.len() >= 2)) {
            out.push(block_key(b'w', &[n, word.as_str()]));
        }
    }
    out
}

/// One candidate pair compared: the levels, and the values behind them for the evidence.
struct Compared<'a> {
    gamma: Gamma,
    names: Option<(&'a PersonName, &'a PersonName)>,
    shared: Vec<(Feature, CompactString)>,
    company: String,
    address: String,
    city: String,
    dob: String,
}

/// Compares two observations attribute by attribute; the values behind each level are kept
/// only when `explain` (for the evidence of pairs that merge), so the many pairs that do not
/// cost no allocation.
fn compare_obs<'a>(a: &'a Obs, b: &'a Obs, explain: bool) -> Compared<'a> {
    let mut c = compare_who(a, b, explain);
    compare_where(a, b, explain, &mut c);
    c
}

/// The names, strong values and companies of a pair: the first part of [`compare_obs`].
fn compare_who<'a>(a: &'a Obs, b: &'a Obs, explain: bool) -> Compared<'a> {
    let mut g: Gamma = [0; compare::NF];
    let mut names = None;
    if let Some((f, l, na, nb)) = compare::names_level(&a.names, &a.sounds, &b.names, &b.sounds) {
        g[Feature::First.index()] = f;
        g[Feature::Last.index()] = l;
        names = Some((na, nb));
    }
    let mut shared = Vec::new();
    for (f, va, vb) in [
        (Feature::Email, a.emails(), b.emails()),
        (Feature::Phone, a.phones(), b.phones()),
        (Feature::Id, a.ids(), b.ids()),
    ] {
        if va.is_empty() || vb.is_empty() {
            continue;
        }
        let mut both = va.common(vb).peekable();
        if both.peek().is_some() {
            g[f.index()] = 1;
            if explain {
                shared.extend(both.map(|v| (f, v.clone())));
            }
        } else if f != Feature::Id || !a.id_kinds().is_disjoint(b.id_kinds()) {
            // Identifiers differ only between two of one kind (two accounts, not an account and an order).
            g[f.index()] = 2;
        }
    }
    let mut company = String::new();
    if !a.companies().is_empty() && !b.companies().is_empty() {
        match a.companies().common(b.companies()).next() {
            Some(c) => {
                g[Feature::Company.index()] = 1;
                if explain {
                    company = c.to_string();
                }
            }
            None => {
                g[Feature::Company.index()] = 2;
                if explain {
                    company = "differs".into();
                }
            }
        }
    }
    Compared { gamma: g, names, shared, company, address: String::new(), city: String::new(), dob: String::new() }
}

/// The addresses, cities and birth dates of a pair: the rest of [`compare_obs`].
fn compare_where(a: &Obs, b: &Obs, explain: bool, c: &mut Compared<'_>) {
    let g = &mut c.gamma;
    (g[Feature::Address.index()], c.address) = compare::address_level(a.streets(), b.streets(), explain);
    (g[Feature::City.index()], c.city) = compare::city_level(a.cities(), b.cities(), explain);
    (g[Feature::Dob.index()], c.dob) = compare::dob_level(a.dobs(), b.dobs(), explain);
}

/// Whether observations `a` and `b` pass ([`passes`], with `tf_of` their names' adjustment). Their
/// addresses, cities and birth dates are compared only when the best weights of those could
/// still bring the pair to the threshold: most pairs a change reaches are two people whose
/// names differ, and the addresses' edit distance was most of comparing them.
fn would_merge(
    a: &Obs,
    b: &Obs,
    w: &Weights,
    tf_of: impl Fn(&Gamma, Option<(&PersonName, &PersonName)>) -> f64,
) -> bool {
    const PLACE: [Feature; 3] = [Feature::Address, Feature::City, Feature::Dob];
    let mut c = compare_who(a, b, false);
    let tf = tf_of(&c.gamma, c.names);
    let known: f64 = FEATURES.iter().filter(|f| !PLACE.contains(f)).map(|&f| w.of(f, c.gamma[f.index()])).sum();
    let best: f64 = PLACE.iter().map(|&f| (1..=f.levels() as u8).map(|l| w.of(f, l)).fold(0.0, f64::max)).sum();
    // (With a margin for the sums' rounding: the bound only keeps a pair from the full test.)
    if known + tf + best + 1e-9 < w.threshold {
        return false;
    }
    compare_where(a, b, false, &mut c);
    passes(&c.gamma, tf, w).is_some()
}

/// A record's customers, by index.
type Linked = smallvec::SmallVec<[u32; 2]>;

/// Links record `ri` to customer `ci` as a part of record `from`, unless it is already linked.
fn add_link(
    linked: &mut [Linked],
    roles: &mut FxHashMap<(u32, u32), (&'static str, Vec<Evidence>)>,
    ri: u32,
    ci: u32,
    from: &str,
) {
    if linked[ri as usize].contains(&ci) {
        return;
    }
    linked[ri as usize].push(ci);
    let evidence = Evidence { kind: EvidenceKind::PartOf, value: from.into(), other: Arc::from(from), weight: 0.0 };
    roles.insert((ri, ci), ("part", vec![evidence]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_schema::Mention;

    fn m(kind: MentionKind, norm: &str, party: u16) -> Mention {
        Mention { kind, raw: norm.into(), norm: norm.into(), field: None, offset: None, party }
    }

    fn rec(key: &str, kind: RecordKind, ms: Vec<Mention>) -> RecordEntities {
        RecordEntities { key: key.into(), kind, parent: None, mentions: ms }
    }

    use MentionKind::*;

    #[test]
    fn a_view_of_some_sources_shows_their_values_and_the_name_they_write_most() {
        let (crm, mail, billing): (Arc<str>, Arc<str>, Arc<str>) = ("crm".into(), "mail".into(), "billing".into());
        let written = [
            (&crm, m(Person, "Jane Smith", 0)),
            (&crm, m(Email, "jane@acme.example", 0)),
            (&mail, m(Person, "Jayne Smyth", 0)),
            (&mail, m(Person, "Jayne Smyth", 0)),
            (&mail, m(Person, "Jane Smith", 0)),
            (&mail, m(Phone, "+15552017788", 0)),
            (&billing, m(Email, "jane@acme.example", 0)),
            (&billing, m(Identifier, "invoice:7", 0)),
        ];
        let mentions: Vec<(&Arc<str>, &Mention)> = written.iter().map(|(s, m)| (*s, m)).collect();
        let (whole, sources) = Sources::build("c1", &mentions);
        assert_eq!(sources.names().collect::<Vec<_>>(), ["billing", "crm", "mail"]);
        assert_eq!(whole.display_name, "Jayne Smyth", "written most: twice by mail");
        assert_eq!(whole.names.iter().collect::<Vec<_>>(), ["Jane Smith", "Jayne Smyth"]);
        assert_eq!(sources.profile("c1", &whole, |_| true), whole, "every source is the whole profile");

        let crm_only = sources.profile("c1", &whole, |s| s == "crm");
        assert_eq!(crm_only.display_name, "Jane Smith");
        assert_eq!(crm_only.names.iter().collect::<Vec<_>>(), ["Jane Smith"]);
        assert_eq!(crm_only.emails.iter().collect::<Vec<_>>(), ["jane@acme.example"]);
        assert!(crm_only.phones.is_empty() && crm_only.ids.is_empty(), "{crm_only:?}");

        let billing_only = sources.profile("c1", &whole, |s| s == "billing");
        assert_eq!(billing_only.display_name, "jane@acme.example", "no name: the email");
        assert!(billing_only.names.is_empty());
        assert_eq!(billing_only.ids.iter().collect::<Vec<_>>(), ["invoice:7"]);
        assert_eq!(sources.profile("c1", &whole, |_| false).display_name, "c1", "nothing seen: the id");
    }

    #[test]
    fn jayne_smyth_is_jane_smith_and_the_boston_john_is_not_the_austin_one() {
        let records = vec![
            rec(
                "crm:c/1",
                RecordKind::Row,
                vec![
                    m(Person, "jane smith", 0),
                    m(Company, "acme", 0),
                    m(Address, "10 rte 9 seattle wa", 0),
                    m(City, "seattle", 0),
                    m(Email, "jane.smith@acme.example", 0),
                    m(Identifier, "order:104233", 0),
                ],
            ),
            rec(
                "legal:k.pdf#p1",
                RecordKind::Page,
                vec![m(Person, "jane smyth", 0), m(Company, "acme", 0), m(Address, "10 rte 9 seattle wa", 0)],
            ),
            rec(
                "mail:box/m1",
                RecordKind::Email,
                vec![m(Email, "jane.smith@acme.example", 0), m(Person, "jane smith", 0)],
            ),
            rec("calls:n!r2", RecordKind::SheetRow, vec![m(Identifier, "order:104233", LOOSE)]),
            rec("crm:c/2", RecordKind::Row, vec![m(Person, "john smith", 0), m(City, "boston", 0)]),
            rec("crm:c/3", RecordKind::Row, vec![m(Person, "john smith", 0), m(City, "austin", 0)]),
        ];
        let r = resolve(&records, Plan::Estimate(&Weights::default()));
        let jane = &r.links["crm:c/1"];
        assert_eq!(jane.len(), 1);
        for k in ["legal:k.pdf#p1", "mail:box/m1", "calls:n!r2"] {
            assert_eq!(&r.links[k], jane, "{k}");
        }
        assert_ne!(r.links["crm:c/2"], r.links["crm:c/3"]);
        assert_eq!(r.customers.len(), 3);
    }

    #[test]
    fn a_document_with_two_parties_links_both_and_bridges_neither() {
        let records = vec![
            rec("crm:a", RecordKind::Row, vec![m(Person, "ann lee", 0), m(Email, "ann@x.example", 0)]),
            rec("crm:b", RecordKind::Row, vec![m(Person, "bob stone", 0), m(Email, "bob@y.example", 0)]),
            rec(
                "legal:c#p1",
                RecordKind::Page,
                vec![
                    m(Person, "ann lee", 0),
                    m(Email, "ann@x.example", 0),
                    m(Person, "bob stone", 1),
                    m(Email, "bob@y.example", 1),
                ],
            ),
        ];
        let mut records = records;
        // The page's document is no record of this run: it still takes the page's customers.
        records[2].parent = Some("legal:c".into());
        let r = resolve(&records, Plan::Estimate(&Weights::default()));
        assert_eq!(r.customers.len(), 2);
        assert_eq!(r.links["legal:c#p1"].len(), 2);
        assert_eq!(r.links["legal:c"], r.links["legal:c#p1"]);
        let parts: Vec<&Link> = r.customers.iter().flat_map(|c| &c.links).filter(|l| l.key == "legal:c").collect();
        assert!(parts.len() == 2 && parts.iter().all(|l| l.role == "part" && &*l.evidence[0].other == "legal:c#p1"));
        assert_eq!((r.observations, r.resolved), (4, 4), "two rows and the page's two parties");
    }

    #[test]
    fn shared_office_phone_is_generic_and_conflicting_first_names_do_not_merge() {
        let mut records = Vec::new();
        for (i, n) in ["amy adams", "bo brown", "cy cole", "di dunn", "ed eve"].iter().enumerate() {
            records.push(rec(&format!("crm:{i}"), RecordKind::Row, vec![m(Person, n, 0), m(Phone, "+15550000001", 0)]));
        }
        records.push(rec("crm:h1", RecordKind::Row, vec![m(Person, "john smith", 0), m(Phone, "+15552220000", 0)]));
        records.push(rec("crm:h2", RecordKind::Row, vec![m(Person, "mary smith", 0), m(Phone, "+15552220000", 0)]));
        let r = resolve(&records, Plan::Estimate(&Weights::default()));
        assert_eq!(
            r.customers.len(),
            7,
            "{:?}",
            r.customers.iter().map(|c| &c.profile.display_name).collect::<Vec<_>>()
        );
        assert!(r.generic.iter().any(|(v, _)| v == "+15550000001"));
    }

    /// A shared phone whose holders leave stops being generic: an incremental run weighs it
    /// again (it was generic before) and gives what a full run gives.
    #[test]
    fn a_value_that_stops_being_generic_is_weighed_again_by_an_incremental_run() {
        let mut before = Vec::new();
        for (i, n) in ["amy adams", "bo brown", "cy cole", "di dunn", "ed eve"].iter().enumerate() {
            before.push(rec(&format!("crm:{i}"), RecordKind::Row, vec![m(Person, n, 0), m(Phone, "+15550000001", 0)]));
        }
        before.push(rec(
            "web:0",
            RecordKind::Row,
            vec![m(Person, "amy adams", 0), m(Phone, "+15550000001", 0), m(City, "boston", 0)],
        ));
        before.sort_by(|a, b| a.key.cmp(&b.key));
        let first = resolve(&before, Plan::Estimate(&Weights::default()));
        assert!(first.generic.iter().any(|(v, _)| v == "+15550000001"));
        let model = first.learnt.clone().expect("a model is learnt");
        let gone = ["crm:2", "crm:3", "crm:4"];
        let after: Vec<RecordEntities> = before.iter().filter(|r| !gone.contains(&r.key.as_str())).cloned().collect();
        let previous = Previous {
            replaced: before.iter().filter(|r| gone.contains(&r.key.as_str())).cloned().collect(),
            generic: first.generic.iter().map(|(v, _)| v.clone()).collect(),
            links: PriorLinks::of(&first.links, &others_of(&first.customers)),
            ..Default::default()
        };
        let incremental = resolve(&after, Plan::Incremental(&model, &previous));
        let full = resolve(&after, Plan::Fixed(&model));
        assert!(full.generic.is_empty(), "{:?}", full.generic);
        assert!(incremental.generic.is_empty(), "{:?}", incremental.generic);
        assert_incremental_is_full(&incremental, &full, &first);
    }

    #[test]
    fn ids_are_stable_and_evidence_is_kept() {
        let records = vec![
            rec("b:2", RecordKind::Row, vec![m(Person, "jane smith", 0), m(Email, "j@s.example", 0)]),
            rec("a:1", RecordKind::Row, vec![m(Person, "jane smith", 0), m(Email, "j@s.example", 0)]),
        ];
        let r = resolve(&records, Plan::Estimate(&Weights::default()));
        assert_eq!(r.customers.len(), 1);
        assert_eq!(r.customers[0].id, customer_id("a:1", 0));
        let l = r.customers[0].links.iter().find(|l| l.key == "b:2").unwrap();
        assert!(l.evidence.iter().any(|e| e.kind == "email" && &*e.other == "a:1"));

        // Whichever side of a pair a member was, its evidence names the other record.
        let records = vec![
            rec("a:1", RecordKind::Row, vec![m(Person, "jane smith", 0), m(Email, "j@s.example", 0)]),
            rec("b:2", RecordKind::Row, vec![m(Person, "jane smith", 0), m(Email, "j@s.example", 0)]),
            rec("c:3", RecordKind::Row, vec![m(Person, "jane smith", 0), m(Email, "j@s.example", 0)]),
        ];
        let r = resolve(&records, Plan::Estimate(&Weights::default()));
        assert_eq!(r.customers.len(), 1);
        for l in &r.customers[0].links {
            assert!(l.evidence.iter().all(|e| *e.other != *l.key), "{l:?}");
            assert_eq!(l.evidence.is_empty(), l.key == "a:1", "{l:?}");
        }
    }

    proptest::proptest! {
        /// However many shards build them, each key's block holds the observations with that
        /// key, in observation order.
        #[test]
        fn blocks_hold_each_keys_observations_in_order_whatever_the_shards(
            per_obs in proptest::collection::vec(proptest::collection::vec(0u64..40, 0..5), 0..60),
        ) {
            // (Unwindowed keys: kind `s`; members stay in observation order.)
            let per_obs: Vec<Vec<BlockKey>> =
                per_obs.into_iter().map(|ks| ks.into_iter().map(|k| (u64::from(b's') << 56) | k).collect()).collect();
            let mut want: BTreeMap<BlockKey, Vec<u32>> = BTreeMap::new();
            for (i, ks) in per_obs.iter().enumerate() {
                for k in ks {
                    want.entry(*k).or_default().push(i as u32);
                }
            }
            for n in [1, 2, 4, 8] {
                let blocks = Blocks::sharded(&per_obs, n, true, &[], &[]);
                proptest::prop_assert_eq!(blocks.len(), want.len());
                for (k, ms) in &want {
                    let b = blocks.of(*k).expect("every key has a block") as usize;
                    proptest::prop_assert_eq!(blocks.keys[b], *k);
                    proptest::prop_assert_eq!(blocks.members(b), ms.as_slice());
                }
                proptest::prop_assert_eq!(blocks.of((u64::from(b's') << 56) | 99), None);
            }
        }
    }

    #[test]
    fn candidate_pairs_are_each_rows_later_neighbours_sorted_once_each() {
        // Pairs in both orders, repeated, with rows left empty: what blocks give.
        let given: Vec<(u32, u32)> = vec![(3, 1), (1, 3), (0, 5), (5, 0), (2, 4), (1, 2), (3, 1), (5, 4), (0, 1)];
        let pairs = Neighbours::build(7, |f| {
            for &(a, b) in &given {
                f(a, b);
            }
        });
        let rows: Vec<Vec<u32>> = (0..7).map(|a| pairs.row(a).to_vec()).collect();
        assert_eq!(rows, [vec![1, 5], vec![2, 3], vec![4], vec![], vec![5], vec![], vec![]]);
        assert_eq!(pairs.len(), 6);
        let mut out = vec![0usize; pairs.len()];
        for (a, row) in pairs.rows_mut(&mut out).into_iter().enumerate() {
            row.fill(a);
        }
        assert_eq!(out, [0, 0, 1, 1, 2, 4], "a value per pair, cut into its rows");
        let none = Neighbours::build(0, |_| {});
        assert_eq!((none.len(), none.rows_mut(&mut [0u8; 0]).len()), (0, 0));
    }

    #[test]
    fn a_change_in_a_windowed_block_seeds_exactly_the_pairs_it_moves_across_the_window() {
        // 45 namesakes in one name block, in record-key order; every pair would merge.
        let person = |key: &str| rec(key, RecordKind::Row, vec![m(Person, "jab smith", 0)]);
        let records: Vec<RecordEntities> = (0..45).map(|i| person(&format!("k:{i:02}"))).collect();
        let refs: Vec<&RecordEntities> = records.iter().collect();
        let obs = observations(&refs);
        let key = name_block(&obs[0].names[0], &obs[0].sounds[0]).unwrap();
        assert!(windowed(key, obs.len()));
        let ms: Vec<u32> = (0..obs.len() as u32).collect();
        let seeded = |removed: &[Order], fresh: &dyn Fn(usize) -> bool, merges: bool| {
            let mut out = window_shifts(&refs, &obs, key, &ms, removed, fresh, &|_, _| merges);
            out.sort_unstable();
            out.dedup();
            out
        };
        // A removed record that sorted between k:10 and k:11: k:p and k:p+20 are now within the
        // window and were one place too far apart before, for p up to 10.
        let gone = [person("k:10a")];
        let gone_obs = observations(&gone);
        let removed = [name_order(&gone_obs[0], "k:10a", key)];
        let expected: Vec<usize> = (0..=10).chain(20..=30).collect();
        assert_eq!(seeded(&removed, &|_| false, true), expected);
        assert!(seeded(&removed, &|_| false, false).is_empty(), "pairs that would not merge change nothing");
        // A new record k:22: k:p and k:p+21 across it were within the window before.
        let expected: Vec<usize> = (2..=21).chain(23..=42).collect();
        assert_eq!(seeded(&[], &|i| i == 22, true), expected);
        assert!(seeded(&[], &|_| false, true).is_empty(), "no change, nothing seeded");
    }

    #[test]
    fn a_large_name_block_is_windowed_and_an_incremental_run_still_gives_the_full_result() {
        // 150 people named J… Smith: one name block of 300 observations, each person written
        // twice (a CRM row with a phone, a mail signature without).
        let firsts: Vec<String> = "aeiou"
            .chars()
            .flat_map(|a| "bdklmnrst".chars().flat_map(move |b| "aeiou".chars().map(move |c| format!("j{a}{b}{c}"))))
            .collect();
        let person = |key: &str, i: usize, first: &str, phone: bool| {
            let mut ms = vec![m(Person, &format!("{first} smith"), 0), m(Address, &format!("{} main st", 100 + i), 0)];
            if phone {
                ms.push(m(Phone, &format!("+1555{i:07}"), 0));
            }
            rec(key, RecordKind::Row, ms)
        };
        let mut old: Vec<RecordEntities> = Vec::new();
        for (i, first) in firsts.iter().enumerate().take(150) {
            old.push(person(&format!("crm:{i:03}"), i, first, true));
            old.push(person(&format!("mail:{i:03}"), i, first, false));
        }
        old.sort_by(|a, b| a.key.cmp(&b.key));
        let first = resolve(&old, Plan::Estimate(&Weights::default()));
        // Two of each name's keys are windowed here (surname sound + initial, and both sounds),
        // each pairing a member with at most WINDOW others; the whole block would give 44,850.
        assert!(
            first.weights.pairs <= 2 * 300 * WINDOW,
            "{} candidate pairs: the blocks are windowed",
            first.weights.pairs
        );
        assert_eq!(first.customers.len(), 150, "twins sort next to each other");
        let model = first.learnt.clone().expect("a model is learnt");
        let full_before = resolve(&old, Plan::Fixed(&model));

        // Remove a row, rename one (it moves in the block's order), add a person in the middle.
        let mut new: Vec<RecordEntities> = Vec::new();
        let (mut replaced, mut fresh) = (Vec::new(), rustc_hash::FxHashSet::default());
        for r in &old {
            match r.key.as_str() {
                "mail:040" => replaced.push(r.clone()),
                "crm:090" => {
                    replaced.push(r.clone());
                    let c = person("crm:090", 90, &firsts[12], true);
                    fresh.insert(c.key.clone());
                    new.push(c);
                }
                _ => new.push(r.clone()),
            }
        }
        for key in ["new:1", "new:2"] {
            let e = person(key, 200, &firsts[70], key == "new:1");
            fresh.insert(e.key.clone());
            new.push(e);
        }
        new.sort_by(|a, b| a.key.cmp(&b.key));
        let previous = Previous {
            fresh,
            replaced,
            generic: full_before.generic.iter().map(|(v, _)| v.clone()).collect(),
            links: PriorLinks::of(&full_before.links, &others_of(&full_before.customers)),
            every_customer: false,
        };
        let incremental = resolve(&new, Plan::Incremental(&model, &previous));
        let full = resolve(&new, Plan::Fixed(&model));
        assert!(incremental.resolved < incremental.observations, "{} resolved again", incremental.resolved);
        assert_incremental_is_full(&incremental, &full, &full_before);
    }

    /// Names and streets sharing their first 15 bytes or not, as long as 15 bytes or not, with NULs.
    const NAME: &str = "(aaaaaaaaaaaaaa)?[ab\\x00]{0,4}";

    /// A test's [`Order`] from owned parts.
    fn order_of(x: &(String, String, String, String, u16)) -> Order<'_> {
        (&x.0, &x.1, &x.2, &x.3, x.4)
    }

    proptest::proptest! {
        // Orders whose names and streets share their first 15 bytes or not.
        #[test]
        fn a_sort_key_orders_as_its_order_does(
            a in (NAME, NAME, NAME, "[ab]{0,2}", 0u16..2),
            b in (NAME, NAME, NAME, "[ab]{0,2}", 0u16..2),
        ) {
            let (x, y) = (order_of(&a), order_of(&b));
            proptest::prop_assert_eq!(x.cmp(&y), sort_key(x).cmp(&sort_key(y)));
        }
    }

    /// Checks an incremental result against a full resolution of the same records with the same
    /// model: the customers it gives are the full run's, the others (`unchanged`) stand as the
    /// run `before` left them and as the full run finds them, and records link where the full
    /// run's do.
    fn assert_incremental_is_full(incremental: &Resolution, full: &Resolution, before: &Resolution) {
        let by_id = |r: &Resolution| -> HashMap<String, Customer> {
            r.customers.iter().map(|c| (c.id.clone(), c.clone())).collect()
        };
        let (now, then) = (by_id(full), by_id(before));
        for c in &incremental.customers {
            assert_eq!(Some(c), now.get(&c.id), "{} as the full run gives it", c.id);
        }
        for id in &incremental.unchanged {
            assert!(now.contains_key(id), "{id} is a customer of the full run");
            assert_eq!(then.get(id), now.get(id), "{id} stands as the run before left it");
        }
        let mut ids: Vec<&String> = incremental.customers.iter().map(|c| &c.id).chain(&incremental.unchanged).collect();
        ids.sort();
        assert_eq!(ids, full.customers.iter().map(|c| &c.id).collect::<Vec<_>>());
        // The links it gives are the relinked records' (and fresh ones'): the rest stand.
        let relinked = incremental.relinked.as_ref().expect("an incremental run says what it relinked");
        let mut links = before.links.clone();
        links.retain(|k, _| !relinked.contains(k));
        for (k, ids) in &incremental.links {
            assert!(relinked.contains(k) || before.links.get(k) == Some(ids), "{k} is given as it was, or relinked");
            links.insert(k.clone(), ids.clone());
        }
        assert_eq!(links, full.links);
    }

    #[test]
    fn a_pair_passes_with_its_places_compared_only_when_they_could_count_as_with_all_compared() {
        let cfg = crate::config::Config::parse("[index]\npath = \"unused\"\n", "t", std::path::Path::new("."))
            .expect("config");
        let entities = crate::entities::Entities::new(&cfg);
        let records: Vec<RecordEntities> = crate::synth::population(400, 7)
            .iter()
            .map(|(r, _)| RecordEntities {
                key: r.key.clone(),
                kind: r.kind,
                parent: None,
                mentions: entities.mentions(r),
            })
            .collect();
        let model = resolve(&records, Plan::Estimate(&Weights::default())).learnt.expect("a model is learnt");
        let mut obs = observations(&records);
        for o in &mut obs {
            split_strong(o, |_| false);
        }
        let (mut passed, mut pairs) = (0, 0);
        // Without a names' adjustment, and with one that lowers every pair to near the threshold.
        for tf in [0.0, -2.0] {
            let tf_of = |_: &Gamma, _: Option<(&PersonName, &PersonName)>| tf;
            for (i, a) in obs.iter().enumerate() {
                for b in &obs[i + 1..] {
                    let c = compare_obs(a, b, false);
                    let full = passes(&c.gamma, tf, &model.weights).is_some();
                    assert_eq!(would_merge(a, b, &model.weights, tf_of), full, "{:?}", c.gamma);
                    passed += usize::from(full);
                    pairs += 1;
                }
            }
        }
        // (Both outcomes met, many times.)
        assert!(passed > 100 && pairs - passed > 100_000, "{passed} of {pairs}");
    }

    #[test]
    fn an_incremental_run_gives_what_a_full_run_with_the_same_model_gives() {
        let cfg = crate::config::Config::parse("[index]\npath = \"unused\"\n", "t", std::path::Path::new("."))
            .expect("config");
        let entities = crate::entities::Entities::new(&cfg);
        let entity = |r: &dossier_schema::Record| RecordEntities {
            key: r.key.clone(),
            kind: r.kind,
            parent: None,
            mentions: entities.mentions(r),
        };
        let population = crate::synth::population(3000, 11);
        let mut old: Vec<RecordEntities> = population.iter().map(|(r, _)| entity(r)).collect();
        // A contract naming two customers, so that a record is a member of two.
        let mut two = old[0].clone();
        two.key = "legal:two#p1".into();
        two.mentions.extend(old[1].mentions.iter().map(|m| Mention { party: 1, ..m.clone() }));
        old.push(two);
        old.sort_by(|a, b| a.key.cmp(&b.key));
        let first = resolve(&old, Plan::Estimate(&Weights::default()));
        let model = first.learnt.clone().expect("a model is learnt");
        assert!(model.weights.estimated);
        // Learning and reusing the model give the same customers.
        assert_eq!(resolve(&old, Plan::Fixed(&model)).customers, first.customers);

        // Change a record in 40, remove one in 50, add new people and new records of known
        // people, and make an office phone shared by many (it turns generic).
        let mut new: Vec<RecordEntities> = Vec::new();
        let mut replaced = Vec::new();
        let mut fresh = rustc_hash::FxHashSet::default();
        for (i, r) in old.iter().enumerate() {
            if i % 50 == 7 {
                replaced.push(r.clone());
            } else if i % 40 == 3 {
                replaced.push(r.clone());
                let mut c = r.clone();
                c.mentions.retain(|m| m.kind != Email);
                c.mentions.push(m(Phone, "+15550009999", 0));
                fresh.insert(c.key.clone());
                new.push(c);
            } else {
                new.push(r.clone());
            }
        }
        for (n, (r, _)) in crate::synth::population(120, 99).iter().enumerate() {
            let mut e = entity(r);
            e.key = format!("new:{n}");
            fresh.insert(e.key.clone());
            new.push(e);
        }
        for (n, r) in old.iter().step_by(97).enumerate() {
            let e = RecordEntities { key: format!("copy:{n}"), ..r.clone() };
            fresh.insert(e.key.clone());
            new.push(e);
        }
        // A note that only mentions the email of a known customer of several records: that
        // customer gains a link without being resolved again, and keeps its members' evidence.
        let members = |id: &str| {
            first
                .customers
                .iter()
                .find(|c| c.id == id)
                .map_or(0, |c| c.links.iter().filter(|l| l.role == "member").count())
        };
        let email = old[500..]
            .iter()
            .filter(|r| first.links.get(r.key.as_str()).is_some_and(|ids| ids.len() == 1 && members(&ids[0]) >= 2))
            .find_map(|r| r.mentions.iter().find(|m| m.kind == Email && m.party == 0))
            .expect("an email of a customer of several records")
            .norm
            .clone();
        new.push(rec("note:loose", RecordKind::Row, vec![m(Email, &email, LOOSE)]));
        fresh.insert("note:loose".into());
        new.sort_by(|a, b| a.key.cmp(&b.key));
        let previous = Previous {
            fresh,
            replaced,
            generic: first.generic.iter().map(|(v, _)| v.clone()).collect(),
            links: PriorLinks::of(&first.links, &others_of(&first.customers)),
            every_customer: false,
        };
        let incremental = resolve(&new, Plan::Incremental(&model, &previous));
        let full = resolve(&new, Plan::Fixed(&model));
        assert!(full.generic.iter().any(|(v, _)| v == "+15550009999"));
        assert!(
            incremental.resolved < incremental.observations / 2,
            "{} of {} resolved again",
            incremental.resolved,
            incremental.observations
        );
        assert_incremental_is_full(&incremental, &full, &first);
        assert!(incremental.unchanged.len() > incremental.customers.len(), "most customers stand as they were");
        let noted = &full.links["note:loose"];
        assert_eq!(noted.len(), 1, "the note links to the email's customer");
        assert!(
            !incremental.resolved_customers.as_ref().is_some_and(|r| r.contains(noted[0].as_str())),
            "not resolved again"
        );
        let given = incremental.customers.iter().find(|c| c.id == noted[0]).expect("given again: its links changed");
        assert!(given.links.iter().any(|l| l.role == "member" && !l.evidence.is_empty()), "with its members' evidence");

        // Nothing changed: nothing is resolved again, and the result stands.
        let still = Previous {
            generic: full.generic.iter().map(|(v, _)| v.clone()).collect(),
            links: PriorLinks::of(&full.links, &others_of(&full.customers)),
            ..Default::default()
        };
        let again = resolve(&new, Plan::Incremental(&model, &still));
        assert_eq!(again.resolved, 0);
        assert!(again.customers.is_empty(), "nothing changed, no customer is given again");
        assert_incremental_is_full(&again, &full, &full);
        let every = Previous { every_customer: true, ..still };
        assert_eq!(resolve(&new, Plan::Incremental(&model, &every)).customers, full.customers);
    }
}
