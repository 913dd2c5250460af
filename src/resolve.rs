//! The resolution stage: decides which mentions are the same customer.
//!
//! Each record's mentions are grouped by party into observations (a CRM row is
//! one; a contract naming two customers gives two). Candidate pairs come from
//! several blocking keys (each strong value, surname sound + initial, surname
//! sound + city, company + surname sound), are scored with Fellegi–Sunter-style
//! log-likelihood weights with term-frequency adjustment, and merged best
//! first, refusing merges whose clusters conflict (different birth dates,
//! incompatible given names). Values shared by too many different people are
//! generic and ignored. Records then link to the clusters of their
//! observations ("member") and of their loose strong values ("mentions"); a
//! record is never a bridge between two clusters.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dossier_schema::{Customer, Evidence, Link, MentionKind, Profile, RecordKind};
use serde::{Deserialize, Serialize};

use crate::entities::names::{self, PersonName};
use crate::entities::{LOOSE, normalize};

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

/// Match weights in bits (log2 of m/u).
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    /// Same email.
    pub email: f64,
    /// Same phone.
    pub phone: f64,
    /// Same identifier.
    pub id: f64,
    /// Same family name (before term-frequency adjustment).
    pub last_exact: f64,
    /// Family names sound alike.
    pub last_close: f64,
    /// Family names differ.
    pub last_differ: f64,
    /// Same given name (after nicknames).
    pub first_exact: f64,
    /// Given names agree by initial or sound.
    pub first_close: f64,
    /// Given names differ.
    pub first_differ: f64,
    /// Same company.
    pub company: f64,
    /// Same address.
    pub address: f64,
    /// Both have addresses and none is shared.
    pub address_differ: f64,
    /// Both have emails and none is shared (people do have two, so it is mild).
    pub email_differ: f64,
    /// Same city.
    pub city: f64,
    /// Different city.
    pub city_differ: f64,
    /// Same date of birth.
    pub dob: f64,
    /// Different date of birth.
    pub dob_differ: f64,
    /// Total weight needed to merge.
    pub threshold: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            email: 12.0,
            phone: 10.0,
            id: 14.0,
            last_exact: 4.0,
            last_close: 3.0,
            last_differ: -5.0,
            first_exact: 3.0,
            first_close: 1.5,
            first_differ: -4.0,
            company: 2.5,
            address: 4.0,
            address_differ: -3.0,
            email_differ: -1.5,
            city: 1.5,
            city_differ: -2.5,
            dob: 5.0,
            dob_differ: -8.0,
            threshold: 8.0,
        }
    }
}

/// One party of one record.
#[derive(Debug, Default)]
struct Obs {
    record: usize,
    party: u16,
    names: Vec<PersonName>,
    strong: Vec<(MentionKind, String)>,
    companies: BTreeSet<String>,
    addresses: BTreeSet<String>,
    cities: BTreeSet<String>,
    dobs: BTreeSet<String>,
}

/// Union-find with per-cluster guard data.
struct Clusters {
    parent: Vec<usize>,
    firsts: Vec<BTreeSet<String>>,
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

    /// Merges unless the clusters conflict; returns whether they are now one.
    fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return true;
        }
        if !self.dobs[ra].is_empty() && !self.dobs[rb].is_empty() && self.dobs[ra].is_disjoint(&self.dobs[rb]) {
            return false;
        }
        if !self.firsts[ra].is_empty() && !self.firsts[rb].is_empty() {
            let compatible = self.firsts[ra].iter().any(|x| {
                self.firsts[rb].iter().any(|y| {
                    x == y
                        || (x.len() == 1 || y.len() == 1) && x.as_bytes()[0] == y.as_bytes()[0]
                        || names::given_names_close(x, y)
                })
            });
            if !compatible {
                return false;
            }
        }
        let (small, big) = if self.firsts[ra].len() + self.dobs[ra].len() < self.firsts[rb].len() + self.dobs[rb].len()
        {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small] = big;
        let f = std::mem::take(&mut self.firsts[small]);
        self.firsts[big].extend(f);
        let d = std::mem::take(&mut self.dobs[small]);
        self.dobs[big].extend(d);
        true
    }
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
pub fn resolve(records: &[RecordEntities], w: &Weights) -> Resolution {
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
    // An observation with no name and no strong value identifies no one.
    obs.retain(|o| !o.names.is_empty() || !o.strong.is_empty());

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
            hs.iter().flat_map(|&i| obs[i].names.iter().map(|n| names::phonetic(&n.last).0)).collect();
        if surnames.len() > GENERIC_PEOPLE || (v.contains('@') && normalize::generic_email(v)) {
            generic.insert(v.to_string(), surnames.len());
        }
    }

    // 3. Surname frequencies for term-frequency adjustment.
    let mut surname_freq: HashMap<&str, usize> = HashMap::new();
    for o in &obs {
        for n in &o.names {
            *surname_freq.entry(n.last.as_str()).or_default() += 1;
        }
    }
    let total_names = surname_freq.values().sum::<usize>().max(1) as f64;
    let mean_freq = total_names / surname_freq.len().max(1) as f64;

    // 4. Blocking.
    let mut blocks: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, o) in obs.iter().enumerate() {
        for (_, v) in &o.strong {
            if !generic.contains_key(v) {
                blocks.entry(format!("s|{v}")).or_default().push(i);
            }
        }
        for n in &o.names {
            let code = names::phonetic(&n.last).0;
            let initial = n.first.chars().next().map(String::from).unwrap_or_default();
            blocks.entry(format!("n|{code}|{initial}")).or_default().push(i);
            for c in &o.cities {
                blocks.entry(format!("c|{code}|{c}")).or_default().push(i);
            }
            for c in &o.companies {
                blocks.entry(format!("o|{code}|{c}")).or_default().push(i);
            }
        }
    }
    let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (k, members) in &blocks {
        if members.len() < 2 || (!k.starts_with("s|") && members.len() > MAX_BLOCK) {
            continue;
        }
        let members = &members[..members.len().min(MAX_BLOCK * 4)];
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                if obs[a].record != obs[b].record {
                    pairs.insert((a.min(b), a.max(b)));
                }
            }
        }
    }

    // 5. Score.
    let mut scored: Vec<(f64, usize, usize, Vec<Evidence>)> = Vec::new();
    for &(a, b) in &pairs {
        let (oa, ob) = (&obs[a], &obs[b]);
        let mut ev: Vec<(String, String, f64)> = Vec::new();
        for (k, v) in &oa.strong {
            if generic.contains_key(v) || !ob.strong.iter().any(|(_, x)| x == v) {
                continue;
            }
            let wt = match k {
                MentionKind::Email => w.email,
                MentionKind::Phone => w.phone,
                _ => w.id,
            };
            ev.push((k.as_str().to_string(), v.clone(), wt));
        }
        // Best name agreement across the two sides' names.
        let mut best: Option<(f64, String)> = None;
        for na in &oa.names {
            for nb in &ob.names {
                let tf = surname_freq.get(na.last.as_str()).copied().unwrap_or(1) as f64;
                // A common surname is weaker evidence: scale by how much rarer than average it is.
                let adj = (mean_freq / tf).log2().clamp(-2.0, 2.0);
                let last = match na.last_agreement(nb) {
                    2 => w.last_exact + adj,
                    1 => w.last_close + adj,
                    _ => w.last_differ,
                };
                let first = match na.first_agreement(nb) {
                    2 => w.first_exact,
                    1 => w.first_close,
                    0 => 0.0,
                    _ => w.first_differ,
                };
                let s = last + first;
                if best.as_ref().is_none_or(|(bs, _)| s > *bs) {
                    best = Some((s, format!("{} ~ {}", na.norm(), nb.norm())));
                }
            }
        }
        let has_name = best.is_some();
        if let Some((s, v)) = best {
            ev.push(("name".into(), v, s));
        }
        let shared = |x: &BTreeSet<String>, y: &BTreeSet<String>| x.intersection(y).next().cloned();
        if let Some(c) = shared(&oa.companies, &ob.companies) {
            ev.push(("company".into(), c, w.company));
        }
        match shared(&oa.addresses, &ob.addresses) {
            Some(c) => ev.push(("address".into(), c, w.address)),
            None if !oa.addresses.is_empty() && !ob.addresses.is_empty() => {
                ev.push(("address".into(), "differs".into(), w.address_differ))
            }
            None => {}
        }
        let emails = |o: &Obs| {
            o.strong.iter().filter(|(k, _)| *k == MentionKind::Email).map(|(_, v)| v.clone()).collect::<BTreeSet<_>>()
        };
        let (ea, eb) = (emails(oa), emails(ob));
        if !ea.is_empty() && !eb.is_empty() && ea.is_disjoint(&eb) {
            ev.push(("email".into(), "differs".into(), w.email_differ));
        }
        match shared(&oa.cities, &ob.cities) {
            Some(c) => ev.push(("city".into(), c, w.city)),
            None if !oa.cities.is_empty() && !ob.cities.is_empty() && oa.addresses.is_disjoint(&ob.addresses) => {
                ev.push(("city".into(), "differs".into(), w.city_differ))
            }
            None => {}
        }
        match shared(&oa.dobs, &ob.dobs) {
            Some(d) => ev.push(("dob".into(), d, w.dob)),
            None if !oa.dobs.is_empty() && !ob.dobs.is_empty() => {
                ev.push(("dob".into(), "differs".into(), w.dob_differ))
            }
            None => {}
        }
        let total: f64 = ev.iter().map(|e| e.2).sum();
        let strong = ev.iter().any(|e| matches!(e.0.as_str(), "email" | "phone" | "identifier") && e.2 > 0.0);
        // Names alone (no strong id) need corroboration beyond the name itself.
        let corroborated =
            strong || ev.iter().any(|e| matches!(e.0.as_str(), "company" | "address" | "city" | "dob") && e.2 > 0.0);
        if total >= w.threshold && corroborated && (has_name || strong) {
            let other = records[ob.record].key.clone();
            let evidence = ev
                .into_iter()
                .map(|(kind, value, weight)| Evidence { kind, value, other: other.clone(), weight })
                .collect();
            scored.push((total, a, b, evidence));
        }
    }
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));

    // 6. Cluster, best pairs first, with guards.
    let mut cl = Clusters {
        parent: (0..obs.len()).collect(),
        firsts: obs
            .iter()
            .map(|o| o.names.iter().filter(|n| !n.first.is_empty()).map(|n| n.first.clone()).collect())
            .collect(),
        dobs: obs.iter().map(|o| o.dobs.clone()).collect(),
    };
    let mut evidence_of: HashMap<usize, Vec<Evidence>> = HashMap::new();
    for (_, a, b, ev) in scored {
        if cl.union(a, b) {
            evidence_of.entry(b).or_insert_with(|| ev.clone());
            evidence_of.entry(a).or_insert_with(|| {
                ev.iter().map(|e| Evidence { other: records[obs[b].record].key.clone(), ..e.clone() }).collect()
            });
        }
    }

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
    Resolution { customers, links, generic, sources }
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
