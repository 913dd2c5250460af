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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dossier_schema::{Customer, Evidence, Link, MentionKind, Profile, RecordKind};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::entities::names::{self, PersonName};
use crate::entities::{LOOSE, normalize};

pub mod compare;
pub mod estimate;

use compare::{Feature, Gamma};
pub use estimate::Weights;

/// What resolution needs of a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Strong values that are not generic, by kind (filled once generic values are known).
    emails: BTreeSet<String>,
    phones: BTreeSet<String>,
    ids: BTreeSet<String>,
    /// The kinds of `ids` (`order`, `account`).
    id_kinds: BTreeSet<String>,
    strong: Vec<(MentionKind, String)>,
    companies: BTreeSet<String>,
    /// The addresses as found; emptied into `streets` once the cities are known.
    addresses: BTreeSet<String>,
    /// The addresses without the observation's own city words, so that address and city are
    /// compared apart (two neighbours share a city, not a street).
    streets: BTreeSet<String>,
    cities: BTreeSet<String>,
    dobs: BTreeSet<String>,
}

/// Union-find with per-cluster guard data.
struct Clusters {
    parent: Vec<usize>,
    firsts: Vec<BTreeSet<String>>,
    lasts: Vec<BTreeSet<String>>,
    dobs: Vec<BTreeSet<String>>,
}

impl Clusters {
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
        // Two birth dates that are neither equal nor one slip apart are two people.
        let dobs_ok = self.dobs[ra].is_empty()
            || self.dobs[rb].is_empty()
            || self.dobs[ra].iter().any(|x| self.dobs[rb].iter().any(|y| x == y || compare::dates_close(x, y)));
        if !dobs_ok && !priced.dob {
            return false;
        }
        if !self.firsts[ra].is_empty() && !self.firsts[rb].is_empty() && !priced.first {
            let close = |x: &String, y: &String| matches!(compare::first_level(x, y), 1..=3);
            let compatible = self.firsts[ra].iter().any(|x| self.firsts[rb].iter().any(|y| close(x, y)))
                // Given name and surname swapped in one silo.
                || self.firsts[ra].iter().any(|x| self.lasts[rb].iter().any(|y| compare::last_level(x, y) == 1))
                || self.firsts[rb].iter().any(|x| self.lasts[ra].iter().any(|y| compare::last_level(x, y) == 1));
            if !compatible {
                return false;
            }
        }
        let size = |i: usize| self.firsts[i].len() + self.lasts[i].len() + self.dobs[i].len();
        let (small, big) = if size(ra) < size(rb) { (ra, rb) } else { (rb, ra) };
        self.parent[small] = big;
        for set in [&mut self.firsts, &mut self.lasts, &mut self.dobs] {
            let moved = std::mem::take(&mut set[small]);
            set[big].extend(moved);
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
    /// The customers, ordered by id.
    pub customers: Vec<Customer>,
    /// Record key → customer ids.
    pub links: HashMap<String, Vec<String>>,
    /// Values found generic and ignored, with how many people shared each.
    pub generic: Vec<(String, usize)>,
    /// Customer id → what each source's member records say, for per-role profiles.
    pub sources: HashMap<String, BTreeMap<String, SourceProfile>>,
    /// The weights used (estimated from this run's candidate pairs, or the priors).
    pub weights: Weights,
}

/// What one source's records say about a customer.
#[derive(Debug, Clone, Default)]
pub struct SourceProfile {
    /// The values.
    pub profile: Profile,
    /// How often each name is written, to choose the display name.
    pub name_counts: BTreeMap<String, usize>,
}

impl SourceProfile {
    /// Adds one mention's value.
    fn add(&mut self, m: &dossier_schema::Mention) {
        let p = &mut self.profile;
        match m.kind {
            MentionKind::Person => {
                *self.name_counts.entry(m.raw.clone()).or_default() += 1;
                p.names.insert(m.raw.clone());
            }
            MentionKind::Email => {
                p.emails.insert(m.norm.clone());
            }
            MentionKind::Phone => {
                p.phones.insert(m.norm.clone());
            }
            MentionKind::Company => {
                p.companies.insert(m.raw.clone());
            }
            MentionKind::Address => {
                p.addresses.insert(m.raw.clone());
            }
            MentionKind::City => {
                p.cities.insert(m.raw.clone());
            }
            MentionKind::Identifier => {
                p.ids.insert(m.norm.clone());
            }
            MentionKind::Dob => {
                p.dobs.insert(m.norm.clone());
            }
        }
    }
}

/// The profile of customer `id` from some of its sources: every value, and the most written
/// name for display (else an email, else the id).
pub fn merged_profile<'a>(id: &str, parts: impl IntoIterator<Item = &'a SourceProfile>) -> Profile {
    let mut profile = Profile::default();
    let mut name_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for part in parts {
        let (p, q) = (&mut profile, &part.profile);
        p.names.extend(q.names.iter().cloned());
        p.emails.extend(q.emails.iter().cloned());
        p.phones.extend(q.phones.iter().cloned());
        p.companies.extend(q.companies.iter().cloned());
        p.addresses.extend(q.addresses.iter().cloned());
        p.cities.extend(q.cities.iter().cloned());
        p.ids.extend(q.ids.iter().cloned());
        p.dobs.extend(q.dobs.iter().cloned());
        for (n, c) in &part.name_counts {
            *name_counts.entry(n).or_default() += c;
        }
    }
    profile.display_name = name_counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.len().cmp(&a.0.len()).reverse()))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| profile.emails.iter().next().cloned().unwrap_or_else(|| id.to_string()));
    profile
}

/// Most observations compared within one soft blocking key; larger blocks are
/// too unspecific to be evidence and would make the run quadratic.
const MAX_BLOCK: usize = 400;
/// A strong value shared by more distinct surnames than this is generic.
const GENERIC_PEOPLE: usize = 3;

fn customer_id(key: &str, party: u16) -> String {
    let h = blake3::hash(format!("{key}\u{1f}{party}").as_bytes());
    format!("c{}", &h.to_hex()[..12])
}

/// Resolves customers from every record's mentions.
///
/// `prior` holds the starting weights; the weights used are estimated from this run's candidate
/// pairs when there are enough of them (`Resolution::weights` says which).
pub fn resolve(records: &[RecordEntities], prior: &Weights) -> Resolution {
    let clock = std::time::Instant::now();
    let lap = |what: &str| tracing::debug!("resolution: {what} at {:.2}s", clock.elapsed().as_secs_f64());
    // 1. Observations: the non-loose mentions of each record, by party.
    let mut obs: Vec<Obs> = Vec::new();
    let mut index: HashMap<(usize, u16), usize> = HashMap::new();
    for (ri, r) in records.iter().enumerate() {
        for m in r.mentions.iter().filter(|m| m.party != LOOSE) {
            let oi = *index.entry((ri, m.party)).or_insert_with(|| {
                obs.push(Obs { record: ri, party: m.party, ..Default::default() });
                obs.len() - 1
            });
            let o = &mut obs[oi];
            match m.kind {
                MentionKind::Person => {
                    if let Some(n) = names::parse(&m.norm) {
                        o.names.push(n);
                    }
                }
                MentionKind::Email | MentionKind::Phone | MentionKind::Identifier => {
                    o.strong.push((m.kind, m.norm.clone()))
                }
                MentionKind::Company => {
                    o.companies.insert(m.norm.clone());
                }
                MentionKind::Address => {
                    o.addresses.insert(m.norm.clone());
                }
                MentionKind::City => {
                    o.cities.insert(m.norm.clone());
                }
                MentionKind::Dob => {
                    o.dobs.insert(m.norm.clone());
                }
            }
        }
    }
    for o in &mut obs {
        o.sounds = o.names.iter().map(compare::Sounds::of).collect();
        let city_words: BTreeSet<&str> = o.cities.iter().flat_map(|c| c.split(' ')).collect();
        o.streets = std::mem::take(&mut o.addresses)
            .iter()
            .map(|a| a.split(' ').filter(|t| !city_words.contains(t)).collect::<Vec<_>>().join(" "))
            .filter(|a| !a.is_empty())
            .collect();
    }
    // An observation with no name and no strong value identifies no one.
    obs.retain(|o| !o.names.is_empty() || !o.strong.is_empty());

    lap("observations");
    // 2. Generic strong values: shared by many different surnames, or role addresses.
    let mut holders: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, o) in obs.iter().enumerate() {
        for (_, v) in &o.strong {
            holders.entry(v.as_str()).or_default().push(i);
        }
    }
    let mut generic: HashMap<String, usize> = HashMap::new();
    for (v, hs) in &holders {
        let surnames: BTreeSet<String> =
            hs.iter().flat_map(|&i| obs[i].sounds.iter().map(|n| n.last.0.clone())).collect();
        if surnames.len() > GENERIC_PEOPLE || (v.contains('@') && normalize::generic_email(v)) {
            generic.insert(v.to_string(), surnames.len());
        }
    }

    for o in &mut obs {
        for (k, v) in &o.strong {
            if generic.contains_key(v) {
                continue;
            }
            match k {
                MentionKind::Email => o.emails.insert(v.clone()),
                MentionKind::Phone => o.phones.insert(v.clone()),
                _ => {
                    o.id_kinds.insert(v.split_once(':').map(|(k, _)| k.to_string()).unwrap_or_default());
                    o.ids.insert(v.clone())
                }
            };
        }
    }

    // 3. Name frequencies for term-frequency adjustment.
    let mut freq: HashMap<&str, usize> = HashMap::new();
    for o in &obs {
        for n in &o.names {
            for part in [&n.first, &n.last] {
                if !part.is_empty() {
                    *freq.entry(part.as_str()).or_default() += 1;
                }
            }
        }
    }
    let total_names = freq.values().sum::<usize>().max(1) as f64;
    let mean_freq = total_names / freq.len().max(1) as f64;
    // A common name is weaker evidence: scale by how much rarer than average it is.
    let tf_adjust = |v: &str| (mean_freq / freq.get(v).copied().unwrap_or(1) as f64).log2().clamp(-2.0, 2.0);

    lap("generic values");
    // 4. Blocking.
    let mut blocks: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, o) in obs.iter().enumerate() {
        for (_, v) in &o.strong {
            if !generic.contains_key(v) {
                blocks.entry(format!("s|{v}")).or_default().push(i);
            }
        }
        // A birth date with either initial: a date alone is shared by too many strangers, and
        // a record whose given name or surname was replaced still keeps the other.
        for d in &o.dobs {
            for n in &o.names {
                for part in [&n.first, &n.last] {
                    if let Some(c) = part.chars().next() {
                        blocks.entry(format!("d|{d}|{c}")).or_default().push(i);
                    }
                }
            }
        }
        for a in &o.streets {
            for k in address_blocks(a) {
                blocks.entry(k).or_default().push(i);
            }
        }
        for (n, sound) in o.names.iter().zip(&o.sounds) {
            let (lc, fc) = (sound.last.0.clone(), sound.first.0.clone());
            let initial = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
            if !lc.is_empty() {
                blocks.entry(format!("n|{lc}|{}", initial(&n.first))).or_default().push(i);
            }
            // Both sounds, in either order: given name and surname swapped still meet.
            if !fc.is_empty() && !lc.is_empty() {
                let (x, y) = if fc <= lc { (&fc, &lc) } else { (&lc, &fc) };
                blocks.entry(format!("b|{x}|{y}")).or_default().push(i);
            }
            for c in &o.cities {
                if !lc.is_empty() {
                    blocks.entry(format!("c|{lc}|{c}")).or_default().push(i);
                }
                if !fc.is_empty() {
                    blocks.entry(format!("f|{fc}|{c}")).or_default().push(i);
                }
            }
            for c in &o.companies {
                blocks.entry(format!("o|{lc}|{c}")).or_default().push(i);
            }
        }
    }
    // u32 halves the largest allocation of the stage; observations are far fewer than 2^32.
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, members) in &blocks {
        if members.len() >= 2 && (k.starts_with("s|") || members.len() <= MAX_BLOCK) {
            *per_kind.entry(&k[..2]).or_default() += members.len().min(MAX_BLOCK * 4).pow(2) / 2;
        }
        if members.len() < 2 || (!k.starts_with("s|") && members.len() > MAX_BLOCK) {
            continue;
        }
        let members = &members[..members.len().min(MAX_BLOCK * 4)];
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                if obs[a].record != obs[b].record {
                    pairs.push((a.min(b) as u32, a.max(b) as u32));
                }
            }
        }
    }

    tracing::debug!("candidate pairs by block kind: {per_kind:?}");
    lap("blocking");
    // 5. Compare every candidate pair, estimate the weights from them, and score.
    pairs.par_sort_unstable();
    pairs.dedup();
    // Term-frequency adjustment of a pair's same names: a common name is weaker evidence.
    let tf_of = |g: &Gamma, names: Option<(&PersonName, &PersonName)>| -> f64 {
        let Some((na, _)) = names else { return 0.0 };
        let mut x = 0.0;
        if g[Feature::Last.index()] == 1 {
            x += tf_adjust(&na.last);
        }
        if g[Feature::First.index()] == 1 {
            x += tf_adjust(&na.first).min(0.0);
        }
        x
    };
    // Levels and name adjustment only (16 bytes a pair): the values behind them are found again
    // for the few pairs that merge.
    let compared: Vec<(Gamma, f32)> = pairs
        .par_iter()
        .map(|&(a, b)| {
            let c = compare_obs(&obs[a as usize], &obs[b as usize], false);
            (c.gamma, tf_of(&c.gamma, c.names) as f32)
        })
        .collect();
    let mut patterns: HashMap<Gamma, usize> = HashMap::new();
    for (g, _) in &compared {
        *patterns.entry(*g).or_default() += 1;
    }
    let mut random = estimate::LevelCounts { population: obs.len(), ..Default::default() };
    let sample: Vec<Gamma> = estimate::random_pairs(obs.len())
        .into_par_iter()
        .filter(|&(a, b)| obs[a].record != obs[b].record)
        .map(|(a, b)| compare_obs(&obs[a], &obs[b], false).gamma)
        .collect();
    for g in &sample {
        random.add(g);
    }
    lap("comparisons");
    let weights = estimate::estimate(&patterns, &random, prior);
    lap("estimation");
    let w = &weights;
    // The name part of a pair's weight, with its term-frequency adjustment.
    let name_weight = |g: &Gamma, tf: f64| {
        w.of(Feature::First, g[Feature::First.index()]) + w.of(Feature::Last, g[Feature::Last.index()]) + tf
    };
    // Which pairs merge, from their levels alone; their evidence is built after.
    let passing: Vec<(usize, f64)> = compared
        .par_iter()
        .enumerate()
        .filter_map(|(i, (g, tf))| {
            let others = [
                Feature::Email,
                Feature::Phone,
                Feature::Id,
                Feature::Company,
                Feature::Address,
                Feature::City,
                Feature::Dob,
            ];
            let total = name_weight(g, f64::from(*tf)) + others.iter().map(|&f| w.of(f, g[f.index()])).sum::<f64>();
            let positive = |f: Feature| g[f.index()] > 0 && w.of(f, g[f.index()]) > 0.0;
            let strong =
                [Feature::Email, Feature::Phone, Feature::Id].iter().any(|&f| g[f.index()] == 1 && positive(f));
            let has_name = g[Feature::First.index()] != 0 || g[Feature::Last.index()] != 0;
            // Names alone (no strong id) need corroboration beyond the name itself.
            let corroborated = strong
                || [Feature::Company, Feature::Address, Feature::City, Feature::Dob].iter().any(|&f| positive(f));
            (total >= w.threshold && corroborated && (has_name || strong)).then_some((i, total))
        })
        .collect();
    let mut scored: Vec<(f64, usize, usize, Vec<Evidence>, Priced)> = Vec::with_capacity(passing.len());
    for (i, total) in passing {
        let (a, b) = (pairs[i].0 as usize, pairs[i].1 as usize);
        let c = compare_obs(&obs[a], &obs[b], true);
        let g = c.gamma;
        let other = &records[obs[b].record].key;
        let mut evidence: Vec<Evidence> = Vec::new();
        let mut push = |kind: &str, value: String, weight: f64| {
            evidence.push(Evidence { kind: kind.into(), value, other: other.clone(), weight })
        };
        if let Some((na, nb)) = c.names
            && (g[Feature::First.index()] != 0 || g[Feature::Last.index()] != 0)
        {
            push("name", format!("{} ~ {}", na.norm(), nb.norm()), name_weight(&g, tf_of(&g, c.names)));
        }
        for f in [Feature::Email, Feature::Phone, Feature::Id] {
            let l = g[f.index()];
            if l == 1 {
                // The feature counts once, however many values the two share.
                for (n, v) in c.shared.iter().filter(|(k, _)| *k == f).enumerate() {
                    push(f.kind(), v.1.clone(), if n == 0 { w.of(f, 1) } else { 0.0 });
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
        // Only weights learnt from the data know what a differing given name costs here (a
        // typo-ridden silo, or a household sharing a phone); the priors keep the hard guard.
        let priced = Priced {
            first: w.estimated && g[Feature::First.index()] == 4,
            dob: w.estimated && g[Feature::Dob.index()] == 3,
        };
        scored.push((total, a, b, evidence, priced));
    }
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));

    lap("scoring");
    // 6. Cluster, best pairs first, with guards.
    let mut cl = Clusters {
        parent: (0..obs.len()).collect(),
        firsts: obs
            .iter()
            .map(|o| o.names.iter().filter(|n| !n.first.is_empty()).map(|n| n.first.clone()).collect())
            .collect(),
        lasts: obs
            .iter()
            .map(|o| o.names.iter().filter(|n| !n.last.is_empty()).map(|n| n.last.clone()).collect())
            .collect(),
        dobs: obs.iter().map(|o| o.dobs.clone()).collect(),
    };
    let mut evidence_of: HashMap<usize, Vec<Evidence>> = HashMap::new();
    for (_, a, b, ev, priced) in scored {
        if cl.union(a, b, priced) {
            evidence_of.entry(b).or_insert_with(|| ev.clone());
            evidence_of.entry(a).or_insert_with(|| {
                ev.iter().map(|e| Evidence { other: records[obs[b].record].key.clone(), ..e.clone() }).collect()
            });
        }
    }

    lap("clustering");
    // 7. Customers: id from the earliest member (smallest record key, then party).
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..obs.len() {
        let r = cl.find(i);
        members.entry(r).or_default().push(i);
    }
    let mut value_owner: HashMap<&str, BTreeSet<String>> = HashMap::new();
    let mut customers: Vec<Customer> = Vec::with_capacity(members.len());
    let mut links: HashMap<String, Vec<String>> = HashMap::new();
    let mut link_role: HashMap<(String, String), (String, Vec<Evidence>)> = HashMap::new();
    let mut sources: HashMap<String, BTreeMap<String, SourceProfile>> = HashMap::new();
    for ms in members.values() {
        let founder = ms
            .iter()
            .min_by(|&&x, &&y| {
                records[obs[x].record].key.cmp(&records[obs[y].record].key).then(obs[x].party.cmp(&obs[y].party))
            })
            .copied()
            .unwrap_or(ms[0]);
        let id = customer_id(&records[obs[founder].record].key, obs[founder].party);
        let mut parts: BTreeMap<String, SourceProfile> = BTreeMap::new();
        for &i in ms {
            let r = &records[obs[i].record];
            let source = r.key.split_once(':').map_or(r.key.as_str(), |(s, _)| s);
            let part = parts.entry(source.to_string()).or_default();
            for m in r.mentions.iter().filter(|m| m.party == obs[i].party) {
                part.add(m);
            }
            for (_, v) in &obs[i].strong {
                if !generic.contains_key(v) {
                    value_owner.entry(v.as_str()).or_default().insert(id.clone());
                }
            }
            let ev = if i == founder { Vec::new() } else { evidence_of.get(&i).cloned().unwrap_or_default() };
            link_role.entry((r.key.clone(), id.clone())).or_insert(("member".into(), ev));
        }
        let profile = merged_profile(&id, parts.values());
        sources.insert(id.clone(), parts);
        customers.push(Customer { id, profile, links: Vec::new() });
    }

    lap("customers");
    // 8. Loose strong values link documents to the one customer holding them.
    for r in records {
        for m in r.mentions.iter().filter(|m| m.party == LOOSE && m.kind.is_strong()) {
            let Some(owners) = value_owner.get(m.norm.as_str()) else {
                continue;
            };
            // A value held by several customers identifies none of them.
            if owners.len() != 1 {
                continue;
            }
            for id in owners {
                link_role.entry((r.key.clone(), id.clone())).or_insert_with(|| {
                    (
                        "mentions".into(),
                        vec![Evidence {
                            kind: m.kind.as_str().into(),
                            value: m.norm.clone(),
                            other: r.key.clone(),
                            weight: 0.0,
                        }],
                    )
                });
            }
        }
    }
    for (key, id) in link_role.keys() {
        links.entry(key.clone()).or_default().push(id.clone());
    }

    // 9. Parts inherit: a page or attachment with no customer of its own takes its
    //    parent's, and a document takes the customers of its pages.
    let by_key: HashMap<&str, &RecordEntities> = records.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut inherited: Vec<(String, String, String)> = Vec::new();
    for r in records {
        if r.kind == RecordKind::Page
            && let Some(p) = &r.parent
        {
            for id in links.get(&r.key).cloned().unwrap_or_default() {
                inherited.push((p.clone(), id, r.key.clone()));
            }
        }
    }
    for (k, id, from) in inherited {
        add_link(&mut links, &mut link_role, &k, &id, &from);
    }
    for r in records {
        if links.contains_key(&r.key) {
            continue;
        }
        let mut p = r.parent.as_deref();
        let mut depth = 0;
        while let Some(pk) = p {
            if let Some(ids) = links.get(pk).cloned() {
                for id in ids {
                    add_link(&mut links, &mut link_role, &r.key, &id, pk);
                }
                break;
            }
            depth += 1;
            p = if depth < 8 { by_key.get(pk).and_then(|x| x.parent.as_deref()) } else { None };
        }
    }

    let mut by_customer: HashMap<String, Vec<Link>> = HashMap::new();
    for ((key, id), (role, evidence)) in link_role {
        by_customer.entry(id).or_default().push(Link { key, role, evidence });
    }
    for c in &mut customers {
        let mut ls = by_customer.remove(&c.id).unwrap_or_default();
        ls.sort_by(|a, b| a.key.cmp(&b.key));
        c.links = ls;
    }
    customers.sort_by(|a, b| a.id.cmp(&b.id));
    for ids in links.values_mut() {
        ids.sort();
        ids.dedup();
    }
    let mut generic: Vec<(String, usize)> = generic.into_iter().collect();
    generic.sort();
    Resolution { customers, links, generic, sources, weights }
}

/// Blocking keys of a normalized address, so that a record whose name was mistyped or
/// changed still meets its twin at the same address: house number with postcode, and each
/// of them with the sound of the street's longest word.
fn address_blocks(a: &str) -> Vec<String> {
    let tokens: Vec<&str> = a.split(' ').filter(|t| !t.is_empty()).collect();
    let numbers: Vec<&str> = tokens.iter().copied().filter(|t| t.bytes().all(|c| c.is_ascii_digit())).collect();
    let word = tokens
        .iter()
        .copied()
        .filter(|t| t.len() >= 4 && !t.bytes().all(|c| c.is_ascii_digit()))
        .max_by(|x, y| x.len().cmp(&y.len()).then(y.cmp(x)))
        .map(|w| names::phonetic(w).0)
        .unwrap_or_default();
    let mut out = Vec::new();
    if let (Some(first), Some(last)) = (numbers.first(), numbers.last())
        && numbers.len() >= 2
    {
        out.push(format!("a|{first}|{last}"));
    }
    if !word.is_empty() {
        for n in numbers.first().into_iter().chain(numbers.last().filter(|_| numbers.len() >= 2)) {
            out.push(format!("w|{n}|{word}"));
        }
    }
    out
}

/// One candidate pair compared: the levels, and the values behind them for the evidence.
struct Compared<'a> {
    gamma: Gamma,
    names: Option<(&'a PersonName, &'a PersonName)>,
    shared: Vec<(Feature, String)>,
    company: String,
    address: String,
    city: String,
    dob: String,
}

/// Compares two observations attribute by attribute; the values behind each level are kept
/// only when `explain` (for the evidence of pairs that merge), so the many pairs that do not
/// cost no allocation.
fn compare_obs<'a>(a: &'a Obs, b: &'a Obs, explain: bool) -> Compared<'a> {
    let mut g: Gamma = [0; compare::NF];
    let mut names = None;
    if let Some((f, l, na, nb)) = compare::names_level(&a.names, &a.sounds, &b.names, &b.sounds) {
        g[Feature::First.index()] = f;
        g[Feature::Last.index()] = l;
        names = Some((na, nb));
    }
    let mut shared = Vec::new();
    for (f, va, vb) in
        [(Feature::Email, &a.emails, &b.emails), (Feature::Phone, &a.phones, &b.phones), (Feature::Id, &a.ids, &b.ids)]
    {
        if va.is_empty() || vb.is_empty() {
            continue;
        }
        let mut both = va.intersection(vb).peekable();
        if both.peek().is_some() {
            g[f.index()] = 1;
            if explain {
                shared.extend(both.map(|v| (f, v.clone())));
            }
        } else if f != Feature::Id || !a.id_kinds.is_disjoint(&b.id_kinds) {
            // Identifiers differ only between two of one kind (two accounts, not an account and an order).
            g[f.index()] = 2;
        }
    }
    let mut company = String::new();
    if !a.companies.is_empty() && !b.companies.is_empty() {
        match a.companies.intersection(&b.companies).next() {
            Some(c) => {
                g[Feature::Company.index()] = 1;
                if explain {
                    company = c.clone();
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
    let (l, address) = compare::address_level(&a.streets, &b.streets, explain);
    g[Feature::Address.index()] = l;
    let (l, city) = compare::city_level(&a.cities, &b.cities, explain);
    g[Feature::City.index()] = l;
    let (l, dob) = compare::dob_level(&a.dobs, &b.dobs, explain);
    g[Feature::Dob.index()] = l;
    Compared { gamma: g, names, shared, company, address, city, dob }
}

fn add_link(
    links: &mut HashMap<String, Vec<String>>,
    roles: &mut HashMap<(String, String), (String, Vec<Evidence>)>,
    key: &str,
    id: &str,
    from: &str,
) {
    links.entry(key.to_string()).or_default().push(id.to_string());
    roles.entry((key.to_string(), id.to_string())).or_insert_with(|| {
        (
            "part".into(),
            vec![Evidence { kind: "part_of".into(), value: from.to_string(), other: from.to_string(), weight: 0.0 }],
        )
    });
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
        let r = resolve(&records, &Weights::default());
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
        let r = resolve(&records, &Weights::default());
        assert_eq!(r.customers.len(), 2);
        assert_eq!(r.links["legal:c#p1"].len(), 2);
    }

    #[test]
    fn shared_office_phone_is_generic_and_conflicting_first_names_do_not_merge() {
        let mut records = Vec::new();
        for (i, n) in ["amy adams", "bo brown", "cy cole", "di dunn", "ed eve"].iter().enumerate() {
            records.push(rec(&format!("crm:{i}"), RecordKind::Row, vec![m(Person, n, 0), m(Phone, "+15550000001", 0)]));
        }
        records.push(rec("crm:h1", RecordKind::Row, vec![m(Person, "john smith", 0), m(Phone, "+15552220000", 0)]));
        records.push(rec("crm:h2", RecordKind::Row, vec![m(Person, "mary smith", 0), m(Phone, "+15552220000", 0)]));
        let r = resolve(&records, &Weights::default());
        assert_eq!(
            r.customers.len(),
            7,
            "{:?}",
            r.customers.iter().map(|c| &c.profile.display_name).collect::<Vec<_>>()
        );
        assert!(r.generic.iter().any(|(v, _)| v == "+15550000001"));
    }

    #[test]
    fn ids_are_stable_and_evidence_is_kept() {
        let records = vec![
            rec("b:2", RecordKind::Row, vec![m(Person, "jane smith", 0), m(Email, "j@s.example", 0)]),
            rec("a:1", RecordKind::Row, vec![m(Person, "jane smith", 0), m(Email, "j@s.example", 0)]),
        ];
        let r = resolve(&records, &Weights::default());
        assert_eq!(r.customers.len(), 1);
        assert_eq!(r.customers[0].id, customer_id("a:1", 0));
        let l = r.customers[0].links.iter().find(|l| l.key == "b:2").unwrap();
        assert!(l.evidence.iter().any(|e| e.kind == "email" && e.other == "a:1"));
    }
}
