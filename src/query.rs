//! The query stage: reads what a rep typed (emails, phone numbers in any
//! format, identifiers with or without prefixes, names with typos and
//! nicknames, contract words and phrases, filters), scores customers rather
//! than documents, and builds each customer's dossier.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use dossier_schema::index::{DOC_CUSTOMER, DOC_RECORD};
use dossier_schema::{
    Customer, Dossier, Flag, MatchReason, Record, RecordGroup, RecordHit, SearchResponse, TimelineEntry,
};
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, FuzzyTermQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use crate::config::Config;
use crate::entities::{Entities, names, normalize};
use crate::index::IndexStore;
use crate::state::State;

/// Errors answering a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// tantivy failed.
    #[error("search: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The state store lock was poisoned by a panic elsewhere.
    #[error("state store unavailable")]
    Poisoned,
}

/// Most records shown in one dossier; most text hits aggregated per query.
const MAX_DOSSIER_RECORDS: usize = 500;
const MAX_TEXT_HITS: usize = 1000;
/// Words that carry no meaning in a name or id search.
const STOP: &[&str] = &[
    "the", "and", "or", "not", "of", "a", "an", "in", "on", "for", "to", "with", "ph", "phone", "order", "account",
    "invoice", "no", "number",
];
/// Status words that raise a flag.
const PROBLEMS: &[&str] =
    &["disputed", "dispute", "overdue", "open", "pending", "investigation", "escalated", "unpaid", "past", "hold"];

/// A parsed query.
#[derive(Debug, Default, Clone)]
pub struct ParsedQuery {
    /// Exact identifier terms to look up, with the query text each came from.
    pub ids: Vec<(String, String, &'static str)>,
    /// Words that may be names.
    pub name_words: Vec<String>,
    /// The text part, in tantivy query syntax.
    pub text: String,
    /// `source:` filters.
    pub sources: Vec<String>,
    /// `kind:` filters.
    pub kinds: Vec<String>,
    /// `status:` filters.
    pub statuses: Vec<String>,
    /// `date:` range, inclusive, as seconds.
    pub date: Option<(i64, i64)>,
}

fn date_range(v: &str) -> Option<(i64, i64)> {
    let parse = |s: &str, end: bool| -> Option<i64> {
        let s = s.trim();
        if s.is_empty() {
            return Some(if end { i64::MAX } else { i64::MIN });
        }
        let full = match s.len() {
            4 => {
                if end {
                    format!("{s}-12-31")
                } else {
                    format!("{s}-01-01")
                }
            }
            7 => {
                if end {
                    format!("{s}-28")
                } else {
                    format!("{s}-01")
                }
            }
            _ => s.to_string(),
        };
        let d = dossier_connectors::text::parse_date(&full)?.timestamp();
        Some(if end { d + 86_399 } else { d })
    };
    match v.split_once("..") {
        Some((a, b)) => Some((parse(a, false)?, parse(b, true)?)),
        None => Some((parse(v, false)?, parse(v, true)?)),
    }
}

/// Splits a query into identifiers, names, text and filters.
pub fn parse(q: &str, ent: &Entities) -> ParsedQuery {
    let mut p = ParsedQuery::default();
    let mut rest = q.to_string();
    // Phones first: they span several tokens ("+1 (555) 201-7788").
    let phone_re = regex::Regex::new(r"\+?\d[\d\s().-]{5,}\d").expect("static regex");
    for m in phone_re.find_iter(q) {
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        if (digits.len() >= 10 && m.as_str().chars().any(|c| !c.is_ascii_digit())
            || digits.len() == 10
            || digits.len() == 11 && digits.starts_with('1'))
            && let Some(e) = normalize::phone(m.as_str(), ent.region())
        {
            p.ids.push((e, m.as_str().trim().to_string(), "phone"));
            // A bare run of digits may as well be an order or account number: keep it for those too.
            if !m.as_str().trim().chars().all(|c| c.is_ascii_digit()) {
                rest = rest.replacen(m.as_str(), " ", 1);
            }
        }
    }
    let mut text_parts: Vec<String> = Vec::new();
    let mut in_quote = false;
    for raw in rest.split_whitespace() {
        if raw.contains('"') {
            in_quote ^= raw.matches('"').count() % 2 == 1;
            text_parts.push(raw.to_string());
            continue;
        }
        if in_quote {
            text_parts.push(raw.to_string());
            continue;
        }
        if let Some((k, v)) = raw.split_once(':') {
            let v = v.to_ascii_lowercase();
            match k.to_ascii_lowercase().as_str() {
                "source" => {
                    p.sources.push(v);
                    continue;
                }
                "kind" => {
                    p.kinds.push(v);
                    continue;
                }
                "status" => {
                    p.statuses.push(v);
                    continue;
                }
                "date" => {
                    p.date = date_range(&v);
                    continue;
                }
                _ => {}
            }
        }
        if let Some(e) = normalize::email(raw) {
            p.ids.push((e, raw.to_string(), "email"));
            continue;
        }
        let token = raw.trim_matches(|c: char| !c.is_alphanumeric());
        if token.chars().any(|c| c.is_ascii_digit()) {
            let digits: String = token.chars().filter(char::is_ascii_digit).collect();
            for kind in ent.id_kinds() {
                if let Some(n) = ent.identifier(&kind, token) {
                    p.ids.push((n, token.to_string(), "identifier"));
                }
            }
            let bare: String =
                token.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
            let bare = bare.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            let bare = bare.trim_start_matches('0');
            if !bare.is_empty() {
                p.ids.push((bare.to_string(), token.to_string(), "identifier"));
            }
            if digits.len() == 7 {
                p.ids.push((digits.clone(), token.to_string(), "phone"));
            }
            text_parts.push(raw.to_string());
            continue;
        }
        if matches!(raw, "AND" | "OR" | "NOT") || raw.starts_with('-') || raw.starts_with('+') {
            text_parts.push(raw.to_string());
            continue;
        }
        let folded = names::fold(token);
        if folded.len() >= 2 && !STOP.contains(&folded.as_str()) {
            p.name_words.push(folded);
        }
        text_parts.push(raw.to_string());
    }
    p.ids.sort();
    p.ids.dedup();
    p.text = text_parts.join(" ");
    p
}

/// The search engine over one index and state store.
pub struct Engine {
    store: IndexStore,
    state: Mutex<State>,
    entities: Entities,
}

/// Per-customer evidence gathered for ranking.
#[derive(Default)]
struct Candidate {
    id_hits: f64,
    name: f64,
    text: f32,
    why: Vec<MatchReason>,
    hits: Vec<DocAddress>,
}

impl Engine {
    /// Opens the index and state of `cfg`.
    pub fn open(cfg: &Config) -> Result<Engine, QueryError> {
        let (index_dir, state_path) = crate::pipeline::paths(cfg);
        Ok(Engine {
            store: IndexStore::open(&index_dir)?,
            state: Mutex::new(State::open(&state_path)?),
            entities: Entities::new(cfg),
        })
    }

    /// Sees the latest commit.
    pub fn reload(&self) -> Result<(), QueryError> {
        self.store.reader.reload()?;
        Ok(())
    }

    fn term(&self, f: tantivy::schema::Field, v: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(Term::from_field_text(f, v), IndexRecordOption::Basic))
    }

    fn customer_doc(&self, s: &Searcher, addr: DocAddress) -> Option<Customer> {
        let d: TantivyDocument = s.doc(addr).ok()?;
        serde_json::from_str(d.get_first(self.store.fields.json)?.as_str()?).ok()
    }

    fn docs(&self, s: &Searcher, q: &dyn Query) -> Result<HashSet<DocAddress>, QueryError> {
        Ok(s.search(q, &DocSetCollector)?)
    }

    fn customers_only(&self, q: Box<dyn Query>) -> BooleanQuery {
        BooleanQuery::new(vec![(Occur::Must, self.term(self.store.fields.doctype, DOC_CUSTOMER)), (Occur::Must, q)])
    }

    /// Record filter from `source:`, `kind:`, `status:` and `date:`.
    fn record_filter(&self, p: &ParsedQuery) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.store.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, self.term(f.doctype, DOC_RECORD))];
        let any = |field, vals: &[String]| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(vals.iter().map(|v| (Occur::Should, self.term(field, v))).collect()))
        };
        if !p.sources.is_empty() {
            must.push((Occur::Must, any(f.source, &p.sources)));
        }
        if !p.kinds.is_empty() {
            must.push((Occur::Must, any(f.kind, &p.kinds)));
        }
        if !p.statuses.is_empty() {
            must.push((Occur::Must, any(f.status, &p.statuses)));
        }
        if let Some((a, b)) = p.date {
            let lo = tantivy::DateTime::from_timestamp_secs(a.max(-62_135_596_800));
            let hi = tantivy::DateTime::from_timestamp_secs(b.min(253_402_300_799));
            must.push((
                Occur::Must,
                Box::new(tantivy::query::RangeQuery::new(
                    std::ops::Bound::Included(Term::from_field_date(f.date, lo)),
                    std::ops::Bound::Included(Term::from_field_date(f.date, hi)),
                )),
            ));
        }
        must
    }

    /// Answers a query with a page of ranked dossiers.
    pub fn search(&self, q: &str, page: usize, per_page: usize) -> Result<SearchResponse, QueryError> {
        let searcher = self.store.reader.searcher();
        let f = &self.store.fields;
        let p = parse(q, &self.entities);
        let mut notices = Vec::new();
        let mut cands: HashMap<DocAddress, Candidate> = HashMap::new();
        let filtered = !(p.sources.is_empty() && p.kinds.is_empty() && p.statuses.is_empty() && p.date.is_none());

        // Identifiers, emails and phones: exact terms on customers.
        let mut id_records: Vec<(DocAddress, String, String, &'static str)> = Vec::new();
        for (term, raw, kind) in &p.ids {
            let q = self.customers_only(self.term(f.ids, term));
            for addr in self.docs(&searcher, &q)? {
                let c = cands.entry(addr).or_default();
                c.id_hits += if *kind == "identifier" && !term.contains(':') { 0.9 } else { 1.0 };
                c.why.push(MatchReason { kind: kind.to_string(), query: raw.clone(), matched: term.clone() });
            }
            // Records that carry the value in their text (a call note) count for their customers too.
            let mut rq = self.record_filter(&p);
            rq.push((Occur::Must, self.term(f.ids, term)));
            for (_, addr) in searcher.search(&BooleanQuery::new(rq), &TopDocs::with_limit(200).order_by_score())? {
                id_records.push((addr, term.clone(), raw.clone(), kind));
            }
        }

        // Names: each word scores its best kind of match on each customer.
        let mut name_scores: HashMap<DocAddress, (f64, usize, bool)> = HashMap::new();
        for w in &p.name_words {
            let mut best: HashMap<DocAddress, (f64, bool)> = HashMap::new();
            let mut add = |docs: HashSet<DocAddress>, s: f64, is_name: bool| {
                for d in docs {
                    let e = best.entry(d).or_insert((0.0, false));
                    if s > e.0 {
                        *e = (s, is_name);
                    }
                }
            };
            let canon = names::canonical_first(w).to_string();
            let exact: Vec<(Occur, Box<dyn Query>)> =
                vec![(Occur::Should, self.term(f.canon, w)), (Occur::Should, self.term(f.canon, &canon))];
            add(self.docs(&searcher, &self.customers_only(Box::new(BooleanQuery::new(exact))))?, 3.0, true);
            let (code, alt) = names::phonetic(w);
            if !code.is_empty() {
                let mut ph: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Should, self.term(f.phonetic, &code))];
                if !alt.is_empty() && alt != code {
                    ph.push((Occur::Should, self.term(f.phonetic, &alt)));
                }
                add(self.docs(&searcher, &self.customers_only(Box::new(BooleanQuery::new(ph))))?, 2.0, true);
            }
            if w.len() >= 4 {
                let dist = if w.len() >= 8 { 2 } else { 1 };
                let fz = FuzzyTermQuery::new(Term::from_field_text(f.name, w), dist, true);
                add(self.docs(&searcher, &self.customers_only(Box::new(fz)))?, 2.0, true);
            }
            add(self.docs(&searcher, &self.customers_only(self.term(f.place, w)))?, 1.0, false);
            for (d, (s, is_name)) in best {
                let e = name_scores.entry(d).or_insert((0.0, 0, false));
                e.0 += s;
                e.1 += 1;
                e.2 |= is_name;
            }
        }
        let need = p.name_words.len().div_ceil(2).max(1);
        for (d, (score, matched, is_name)) in name_scores {
            if matched >= need && is_name && (matched >= 2 || p.name_words.len() == 1 || score >= 3.0) {
                let c = cands.entry(d).or_default();
                c.name = score;
                c.why.push(MatchReason { kind: "name".into(), query: p.name_words.join(" "), matched: String::new() });
            }
        }

        // Text: records matching the words and phrases, aggregated per customer.
        let mut unlinked = Vec::new();
        let mut text_query: Option<Box<dyn Query>> = None;
        let mut customer_addr_by_id: HashMap<String, DocAddress> = HashMap::new();
        if !p.text.trim().is_empty() || filtered {
            let mut parser = QueryParser::for_index(&self.store.index, vec![f.title, f.text, f.fields]);
            parser.set_conjunction_by_default();
            parser.set_field_boost(f.title, 2.0);
            let tq: Box<dyn Query> = if p.text.trim().is_empty() {
                Box::new(AllQuery)
            } else {
                let (tq, errors) = parser.parse_query_lenient(&p.text);
                if !errors.is_empty() {
                    notices.push(format!(
                        "Parts of the query could not be read as search syntax and were searched as plain words: {}",
                        errors.len()
                    ));
                }
                tq
            };
            let mut clauses = self.record_filter(&p);
            clauses.push((Occur::Must, tq.box_clone()));
            let full = BooleanQuery::new(clauses);
            let hits = searcher.search(&full, &TopDocs::with_limit(MAX_TEXT_HITS).order_by_score())?;
            let max = hits.first().map(|h| h.0).unwrap_or(1.0).max(1e-6);
            for (score, addr) in hits {
                let d: TantivyDocument = searcher.doc(addr)?;
                let ids: Vec<String> = d.get_all(f.customers).filter_map(|v| v.as_str().map(str::to_string)).collect();
                if ids.is_empty() {
                    if unlinked.len() < 20
                        && let Some(r) = self.record_of(&d)
                    {
                        unlinked.push(hit(&r, String::new(), true));
                    }
                    continue;
                }
                for id in ids {
                    let Some(caddr) = self.customer_addr(&searcher, &mut customer_addr_by_id, &id)? else { continue };
                    let c = cands.entry(caddr).or_default();
                    c.text = c.text.max(score / max);
                    c.hits.push(addr);
                }
            }
            text_query = Some(tq);
        }
        for (addr, term, raw, kind) in id_records {
            let d: TantivyDocument = searcher.doc(addr)?;
            for id in d.get_all(f.customers).filter_map(|v| v.as_str().map(str::to_string)) {
                let Some(caddr) = self.customer_addr(&searcher, &mut customer_addr_by_id, &id)? else { continue };
                let c = cands.entry(caddr).or_default();
                if !c.why.iter().any(|w| w.matched == term) {
                    c.id_hits += 0.8;
                    c.why.push(MatchReason { kind: kind.to_string(), query: raw.clone(), matched: term.clone() });
                }
                c.hits.push(addr);
            }
        }
        if filtered {
            // With filters, a customer must have a matching record.
            cands.retain(|_, c| !c.hits.is_empty());
        }

        // Rank: identifiers outrank names, which outrank text.
        let mut ranked: Vec<(f64, String, DocAddress)> = Vec::with_capacity(cands.len());
        for (addr, c) in &cands {
            let score = 1000.0 * c.id_hits + 10.0 * c.name + 5.0 * c.text as f64 + (c.hits.len().min(20) as f64) * 0.01;
            if let Some(cu) = self.customer_doc(&searcher, *addr) {
                ranked.push((score, cu.id, *addr));
            }
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let total = ranked.len();
        let mut dossiers = Vec::new();
        let snippets = match &text_query {
            Some(tq) if !p.text.trim().is_empty() => SnippetGenerator::create(&searcher, tq.as_ref(), f.text).ok(),
            _ => None,
        };
        for (score, id, addr) in ranked.into_iter().skip(page * per_page).take(per_page) {
            let c = cands.remove(&addr).unwrap_or_default();
            let matched: HashSet<DocAddress> = c.hits.iter().copied().collect();
            let mut why = c.why;
            for a in c.hits.iter().take(if p.text.trim().is_empty() { 0 } else { 5 }) {
                if let Ok(d) = searcher.doc::<TantivyDocument>(*a)
                    && let Some(k) = d.get_first(f.key).and_then(|v| v.as_str())
                {
                    why.push(MatchReason { kind: "text".into(), query: p.text.clone(), matched: k.to_string() });
                }
            }
            let mut d = self.dossier(&searcher, &id, &matched, snippets.as_ref())?;
            d.score = (score * 1000.0).round() / 1000.0;
            // Name reasons say which names matched.
            for w in &mut why {
                if w.kind == "name" {
                    w.matched = d.profile.names.iter().cloned().collect::<Vec<_>>().join(" / ");
                }
            }
            d.why = why;
            dossiers.push(d);
        }
        Ok(SearchResponse {
            query: q.to_string(),
            total,
            page,
            per_page,
            dossiers,
            unlinked: if page == 0 { unlinked } else { Vec::new() },
            notices,
        })
    }

    /// The customer document of `id`, cached per query.
    fn customer_addr(
        &self,
        s: &Searcher,
        cache: &mut HashMap<String, DocAddress>,
        id: &str,
    ) -> Result<Option<DocAddress>, QueryError> {
        if let Some(a) = cache.get(id) {
            return Ok(Some(*a));
        }
        let q = self.customers_only(self.term(self.store.fields.key, id));
        let a = self.docs(s, &q)?.into_iter().next();
        if let Some(a) = a {
            cache.insert(id.to_string(), a);
        }
        Ok(a)
    }

    fn record_of(&self, d: &TantivyDocument) -> Option<Record> {
        serde_json::from_str(d.get_first(self.store.fields.json)?.as_str()?).ok()
    }

    /// The dossier of one customer (following redirects), with no query.
    pub fn customer(&self, id: &str) -> Result<Option<Dossier>, QueryError> {
        let real = {
            let st = self.state.lock().map_err(|_| QueryError::Poisoned)?;
            st.customer(id)?.map(|c| c.id)
        };
        let Some(real) = real else { return Ok(None) };
        let searcher = self.store.reader.searcher();
        Ok(Some(self.dossier(&searcher, &real, &HashSet::new(), None)?))
    }

    /// One record in full.
    pub fn record(&self, key: &str) -> Result<Option<Record>, QueryError> {
        Ok(self.store.record(key)?)
    }

    /// Every customer with links and evidence, from the state store.
    pub fn customers(&self) -> Result<Vec<Customer>, QueryError> {
        Ok(self.state.lock().map_err(|_| QueryError::Poisoned)?.customers()?)
    }

    /// One customer with links and evidence, following redirects.
    pub fn customer_links(&self, id: &str) -> Result<Option<Customer>, QueryError> {
        Ok(self.state.lock().map_err(|_| QueryError::Poisoned)?.customer(id)?)
    }

    /// Runs a closure on the state store.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, QueryError> {
        Ok(f(&*self.state.lock().map_err(|_| QueryError::Poisoned)?))
    }

    fn dossier(
        &self,
        s: &Searcher,
        id: &str,
        matched: &HashSet<DocAddress>,
        snippets: Option<&SnippetGenerator>,
    ) -> Result<Dossier, QueryError> {
        let f = &self.store.fields;
        let cq = self.customers_only(self.term(f.key, id));
        let profile = self
            .docs(s, &cq)?
            .into_iter()
            .next()
            .and_then(|a| self.customer_doc(s, a))
            .map(|c| c.profile)
            .unwrap_or_default();
        let rq = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.doctype, DOC_RECORD)),
            (Occur::Must, self.term(f.customers, id)),
        ]);
        let addrs = s.search(&rq, &TopDocs::with_limit(MAX_DOSSIER_RECORDS).order_by_score())?;
        let mut records: Vec<(Record, bool, String)> = Vec::new();
        for (_, a) in addrs {
            let d: TantivyDocument = s.doc(a)?;
            let Some(r) = self.record_of(&d) else {
                continue;
            };
            let is_match = matched.contains(&a);
            let snippet = match (is_match, snippets) {
                (true, Some(g)) => {
                    let sn = g.snippet_from_doc(&d);
                    if sn.fragment().is_empty() { preview(&r.text) } else { sn.to_html() }
                }
                _ => preview(&r.text),
            };
            records.push((r, is_match, snippet));
        }
        records.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.date.cmp(&a.0.date)).then(a.0.key.cmp(&b.0.key)));
        let mut flags = Vec::new();
        let mut replied: HashSet<String> = HashSet::new();
        for (r, _, _) in &records {
            if let Some(x) = r.field("in_reply_to") {
                replied.extend(x.split_whitespace().map(str::to_string));
            }
        }
        for (r, _, _) in &records {
            let words = crate::index::status_words(r);
            if let Some(w) = words.iter().find(|w| PROBLEMS.contains(&String::as_str(w))) {
                let what = if r.key.to_ascii_lowercase().contains("invoice")
                    || r.title.to_ascii_lowercase().contains("invoice")
                    || r.fields.keys().any(|k| k.to_ascii_lowercase().contains("invoice"))
                {
                    "invoice"
                } else if r.kind == dossier_schema::RecordKind::Ticket || r.key.contains("ticket") {
                    "ticket"
                } else {
                    "item"
                };
                let status = words.join(" ");
                flags.push(Flag {
                    label: format!("{w} {what}"),
                    key: r.key.clone(),
                    detail: format!("{} — status: {status}", r.title),
                });
            }
            if r.kind == dossier_schema::RecordKind::Email {
                let from = r.field("from").unwrap_or("");
                let from_customer = regex_email(from).is_some_and(|e| !self.entities.is_own(&e));
                let answered = r.field("message_id").is_some_and(|m| replied.contains(m));
                if from_customer && !answered && r.parent.is_none() {
                    flags.push(Flag {
                        label: "unanswered email".into(),
                        key: r.key.clone(),
                        detail: format!("{} — from {from}", r.title),
                    });
                }
            }
        }
        let mut groups: BTreeMap<(String, String), Vec<RecordHit>> = BTreeMap::new();
        let mut timeline = Vec::new();
        let mut keys = Vec::new();
        for (r, is_match, snippet) in &records {
            keys.push(r.key.clone());
            if let Some(d) = r.date {
                timeline.push(TimelineEntry {
                    date: d,
                    key: r.key.clone(),
                    source: r.source.clone(),
                    title: r.title.clone(),
                });
            }
            groups.entry((r.source.clone(), r.kind.as_str().to_string())).or_default().push(hit(
                r,
                snippet.clone(),
                *is_match,
            ));
        }
        timeline.sort_by(|a, b| a.date.cmp(&b.date).then(a.key.cmp(&b.key)));
        keys.sort();
        let mut groups: Vec<RecordGroup> =
            groups.into_iter().map(|((source, kind), records)| RecordGroup { source, kind, records }).collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.records.iter().filter(|r| r.matched).count()));
        Ok(Dossier { id: Some(id.to_string()), score: 0.0, profile, why: Vec::new(), flags, groups, timeline, keys })
    }
}

fn regex_email(s: &str) -> Option<String> {
    s.split(|c: char| c == '<' || c == '>' || c.is_whitespace() || c == ',').find_map(normalize::email)
}

fn preview(text: &str) -> String {
    let t: String = text.chars().take(240).collect();
    html_escape(&t)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn hit(r: &Record, snippet: String, matched: bool) -> RecordHit {
    RecordHit {
        key: r.key.clone(),
        source: r.source.clone(),
        kind: r.kind.as_str().to_string(),
        title: r.title.clone(),
        snippet: if snippet.is_empty() { preview(&r.text) } else { snippet },
        page: r.page,
        date: r.date,
        matched,
    }
}
