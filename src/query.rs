//! The query stage: reads what a rep typed (emails, phone numbers in any
//! format, identifiers with or without prefixes, names with typos and
//! nicknames, contract words and phrases, filters), scores customers rather
//! than documents, and builds each customer's dossier.

use std::collections::{BTreeMap, HashSet};

use rustc_hash::FxHashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use dossier_schema::index::DOC_RECORD;
use dossier_schema::{
    Customer, Dossier, Flag, MatchReason, Profile, Provenance, Record, RecordGroup, RecordHit, SearchResponse,
    SubjectExport, Suggestion, TimelineEntry,
};
use tantivy::collector::{Collector, SegmentCollector, TopDocs};
use tantivy::index::SegmentId;
use tantivy::query::{
    AllQuery, BooleanQuery, FuzzyTermQuery, InvertedIndexRangeQuery, Occur, Query, QueryParser, TermQuery, TermSetQuery,
};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{
    BitSet, DocAddress, DocId, DocSet, Score, Searcher, SegmentOrdinal, SegmentReader, TERMINATED, TantivyDocument,
    Term,
};

use crate::access::{Masker, Viewer};
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
    /// The roles in the config are not the ones the index was written for.
    #[error(
        "the roles in the config changed since the last index run, so each role's view of the customers is out of date; run `dossier index` first"
    )]
    StaleViews,
}

/// Most records shown in one dossier; most text hits aggregated per query.
const MAX_DOSSIER_RECORDS: usize = 500;
/// Most name-matched customers whose own records a query's other words are searched in.
const MAX_NAMED: usize = 200;
const MAX_TEXT_HITS: usize = 1000;
/// Words that carry no meaning in a name or id search.
const STOP: &[&str] = &[
    "the", "and", "or", "not", "of", "a", "an", "in", "on", "for", "to", "with", "ph", "phone", "order", "account",
    "invoice", "no", "number",
];
/// Status words that raise a flag.
const PROBLEMS: &[&str] =
    &["disputed", "dispute", "overdue", "open", "pending", "investigation", "escalated", "unpaid", "past", "hold"];

/// Runs of digits with phone punctuation: "+1 (555) 201-7788", "555.201.7788".
static PHONE_LIKE: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\+?\d[\d\s().-]{5,}\d").expect("static regex"));

/// A string fast field of record documents, per segment: the customer ids of a text query's
/// thousand hits (reading each stored document for them cost more than the search), the source
/// of a dossier's records (hidden ones are skipped before their stored text is decompressed).
struct FastStr {
    columns: Vec<Option<tantivy::columnar::StrColumn>>,
    buf: String,
}

impl FastStr {
    /// Every value of each document, in order. The values are looked up in one pass over each
    /// segment's dictionary: one lookup alone decompresses a dictionary block, with a new zstd
    /// context each time, and a text query looks up a thousand hits' customers.
    fn all_of(&self, addrs: &[DocAddress]) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); addrs.len()];
        // (segment, value's ordinal, document's place in `addrs`)
        let mut wanted: Vec<(u32, u64, usize)> = Vec::new();
        for (i, a) in addrs.iter().enumerate() {
            if let Some(Some(col)) = self.columns.get(a.segment_ord as usize) {
                wanted.extend(col.term_ords(a.doc_id).map(|o| (a.segment_ord, o, i)));
            }
        }
        wanted.sort_unstable();
        for group in wanted.chunk_by(|x, y| x.0 == y.0) {
            let Some(Some(col)) = self.columns.get(group[0].0 as usize) else { continue };
            let mut ords: Vec<u64> = group.iter().map(|w| w.1).collect();
            ords.dedup();
            let mut terms: Vec<String> = Vec::with_capacity(ords.len());
            let found =
                col.dictionary().sorted_ords_to_term_cb(&ords, |b| terms.push(String::from_utf8_lossy(b).into_owned()));
            if !matches!(found, Ok(true)) || terms.len() != ords.len() {
                continue;
            }
            // `group` and `ords` are both in ordinal order: walk them together.
            let mut t = 0;
            for &(_, ord, i) in group {
                while ords[t] != ord {
                    t += 1;
                }
                out[i].push(terms[t].clone());
            }
        }
        out
    }

    /// The first value of a document.
    fn first(&mut self, addr: DocAddress) -> Option<&str> {
        let col = self.columns.get(addr.segment_ord as usize)?.as_ref()?;
        let ord = col.term_ords(addr.doc_id).next()?;
        col.ord_to_str(ord, &mut self.buf).ok()?.then_some(self.buf.as_str())
    }
}

/// The parts of a stored [`Record`] a dossier shows; serde skips the rest (its mentions).
#[derive(serde::Deserialize)]
struct ShownRecord {
    key: String,
    source: String,
    kind: dossier_schema::RecordKind,
    item: String,
    #[serde(default)]
    parent: Option<String>,
    title: String,
    text: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    date: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    note: Option<String>,
}

/// A parsed query.
#[derive(Debug, Default, Clone)]
pub struct ParsedQuery {
    /// Exact identifier terms to look up, with the query text each came from.
    pub ids: Vec<(String, String, &'static str)>,
    /// Words that may be names.
    pub name_words: Vec<String>,
    /// The text part, in tantivy query syntax.
    pub text: String,
    /// The text part word by word.
    text_parts: Vec<String>,
    /// Which text parts were also read as name words (index into `text_parts`, folded word).
    name_parts: Vec<(usize, String)>,
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
    for m in PHONE_LIKE.find_iter(q) {
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
        let initial = folded.len() == 1 && folded.chars().all(|c| c.is_ascii_alphabetic());
        if initial || folded.len() >= 2 && !STOP.contains(&folded.as_str()) {
            p.name_words.push(folded.clone());
            p.name_parts.push((text_parts.len(), folded));
        }
        text_parts.push(raw.to_string());
    }
    // Initials only narrow a name: alone ("j") they would match thousands of customers.
    if p.name_words.iter().all(|w| w.len() == 1) {
        p.name_words.clear();
        p.name_parts.clear();
    }
    p.ids.sort();
    p.ids.dedup();
    p.text = text_parts.join(" ");
    p.text_parts = text_parts;
    p
}

impl ParsedQuery {
    /// The text part without the words that were read as the customer's name, company or city:
    /// "jayne smyth termination notice" looks for "termination notice" in Jayne Smyth's records.
    fn text_without(&self, used: &HashSet<&str>) -> String {
        let drop: HashSet<usize> =
            self.name_parts.iter().filter(|(_, w)| used.contains(w.as_str())).map(|(i, _)| *i).collect();
        let kept: Vec<&str> =
            self.text_parts.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, t)| t.as_str()).collect();
        kept.join(" ")
    }
}

/// Collects matching documents into a vector: the sets can hold a tenth of the index (every
/// customer in a city), and hashing them into a set cost more than the search itself. With a
/// view, only customer documents of that view are kept, checked in the view's set of
/// documents (see [`SegmentCache`]).
struct DocVec<'a>(Option<(&'a SegmentCache, &'a str)>);

/// [`DocVec`] for one segment, with the view's documents when there is a view.
struct DocVecSegment {
    segment: u32,
    view: Option<ViewSet>,
    docs: Vec<DocAddress>,
}

impl Collector for DocVec<'_> {
    type Fruit = Vec<DocAddress>;
    type Child = DocVecSegment;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<DocVecSegment> {
        let view = match self.0 {
            None => None,
            Some((cache, v)) => Some(cache.view(reader, v)?),
        };
        Ok(DocVecSegment { segment, view, docs: Vec::new() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<DocAddress>>) -> tantivy::Result<Vec<DocAddress>> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for DocVecSegment {
    type Fruit = Vec<DocAddress>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if self.view.as_ref().is_none_or(|set| set.contains(doc)) {
            self.docs.push(DocAddress::new(self.segment, doc));
        }
    }

    fn harvest(self) -> Vec<DocAddress> {
        self.docs
    }
}

/// What a query reads of each segment before its first match and is the same for every
/// query, made once and kept while the segment lives: each view's customer documents, as a bit
/// per document, and the string fast fields. Name queries match thousands of customer
/// documents of every view; reading each one's `view` fast field to keep the viewer's was a
/// sixth of a search load (intersecting with the view's posting list, every customer, cost
/// more), and opening the `source` column for each dossier of a page another twentieth.
#[derive(Default)]
struct SegmentCache {
    views: RwLock<FxHashMap<(SegmentId, Box<str>), ViewSet>>,
    columns: RwLock<FxHashMap<(SegmentId, &'static str), Option<tantivy::columnar::StrColumn>>>,
}

/// One segment's documents of one view.
type ViewSet = Arc<BitSet>;

impl SegmentCache {
    /// The documents of view `v` in a segment.
    fn view(&self, reader: &SegmentReader, v: &str) -> tantivy::Result<ViewSet> {
        let id = reader.segment_id();
        if let Some(set) = self.views.read().ok().and_then(|m| m.get(&(id, Box::from(v))).cloned()) {
            return Ok(set);
        }
        let mut set = BitSet::with_max_value(reader.max_doc());
        let term = Term::from_field_text(reader.schema().get_field("view")?, v);
        if let Some(mut postings) =
            reader.inverted_index(term.field())?.read_postings(&term, IndexRecordOption::Basic)?
        {
            let mut doc = postings.doc();
            while doc != TERMINATED {
                set.insert(doc);
                doc = postings.advance();
            }
        }
        let set = Arc::new(set);
        if let Ok(mut m) = self.views.write() {
            m.insert((id, Box::from(v)), set.clone());
        }
        Ok(set)
    }

    /// String fast field `field` of every segment of `s`.
    fn fast_str(&self, s: &Searcher, field: &'static str) -> Result<FastStr, QueryError> {
        let mut columns = Vec::with_capacity(s.segment_readers().len());
        for r in s.segment_readers() {
            let key = (r.segment_id(), field);
            let known = self.columns.read().ok().and_then(|m| m.get(&key).cloned());
            let col = match known {
                Some(c) => c,
                None => {
                    let c = r.fast_fields().str(field)?;
                    if let Ok(mut m) = self.columns.write() {
                        m.insert(key, c.clone());
                    }
                    c
                }
            };
            columns.push(col);
        }
        Ok(FastStr { columns, buf: String::new() })
    }

    /// Forgets the segments `s` no longer holds (merged or deleted).
    fn keep(&self, s: &Searcher) {
        let live: HashSet<SegmentId> = s.segment_readers().iter().map(SegmentReader::segment_id).collect();
        if let Ok(mut m) = self.views.write() {
            m.retain(|(id, _), _| live.contains(id));
        }
        if let Ok(mut m) = self.columns.write() {
            m.retain(|(id, _), _| live.contains(id));
        }
    }
}

/// The search engine over one index and state store.
pub struct Engine {
    store: IndexStore,
    state: Mutex<State>,
    entities: Entities,
    masker: Masker,
    /// Fingerprint of the config's role views.
    views: String,
    /// True when the index was written for the config's roles (re-read on reload).
    views_current: AtomicBool,
    /// What queries read of each segment alike.
    segments: SegmentCache,
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
        let state = State::open(&state_path)?;
        let views = crate::access::views_fingerprint(&crate::access::views(cfg));
        let current = state.meta("views")?.is_none_or(|w| w == views);
        Ok(Engine {
            store: IndexStore::open(&index_dir)?,
            state: Mutex::new(state),
            entities: Entities::new(cfg),
            masker: Masker::new(&cfg.privacy),
            views,
            views_current: AtomicBool::new(current),
            segments: SegmentCache::default(),
        })
    }

    /// Fails when `v` is a role whose view is out of date (the operator's view of all sources
    /// is always current).
    fn check_view(&self, v: &Viewer) -> Result<(), QueryError> {
        if v.sources.is_some() && !self.views_current.load(Ordering::Relaxed) {
            return Err(QueryError::StaleViews);
        }
        Ok(())
    }

    /// True when the index was written for the config's roles.
    pub fn views_current(&self) -> bool {
        self.views_current.load(Ordering::Relaxed)
    }

    /// The masker of the config's `[privacy]` section.
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Sees the latest commit (cheap when there is none): a server calls it every few seconds,
    /// so an index run made by another process shows without a restart.
    pub fn reload(&self) -> Result<(), QueryError> {
        self.store.reader.reload()?;
        self.segments.keep(&self.store.reader.searcher());
        let written = self.state.lock().map_err(|_| QueryError::Poisoned)?.meta("views")?;
        self.views_current.store(written.is_none_or(|w| w == self.views), Ordering::Relaxed);
        Ok(())
    }

    fn term(&self, f: tantivy::schema::Field, v: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(Term::from_field_text(f, v), IndexRecordOption::Basic))
    }

    fn customer_doc(&self, s: &Searcher, addr: DocAddress) -> Option<Customer> {
        let d: TantivyDocument = s.doc(addr).ok()?;
        serde_json::from_str(d.get_first(self.store.fields.json)?.as_str()?).ok()
    }

    fn docs(&self, s: &Searcher, q: &dyn Query) -> Result<Vec<DocAddress>, QueryError> {
        Ok(s.search(q, &DocVec(None))?)
    }

    /// The customer documents of the viewer's view matching `q`, a query on fields only
    /// customer documents carry.
    fn customer_docs(&self, s: &Searcher, v: &Viewer, q: &dyn Query) -> Result<Vec<DocAddress>, QueryError> {
        Ok(s.search(q, &DocVec(Some((&self.segments, v.view()))))?)
    }

    /// Customer documents of the viewer's view matching `q` (only customer documents carry a
    /// view).
    fn customers_only(&self, v: &Viewer, q: Box<dyn Query>) -> BooleanQuery {
        BooleanQuery::new(vec![(Occur::Must, self.term(self.store.fields.view, v.view())), (Occur::Must, q)])
    }

    /// The sources in the index the viewer does not see. Records are filtered by excluding
    /// these (an exclusion only seeks; a union of the visible sources, or a `TermSetQuery`,
    /// walked every record of them and cost more than the search). The list is read from the
    /// index's own terms, so a source no longer in the config is hidden too.
    fn hidden_sources(&self, s: &Searcher, v: &Viewer) -> Result<Vec<String>, QueryError> {
        if v.sources.is_none() {
            return Ok(Vec::new());
        }
        let mut out = BTreeMap::new();
        for seg in s.segment_readers() {
            let inv = seg.inverted_index(self.store.fields.source)?;
            let mut terms = inv.terms().stream().map_err(tantivy::TantivyError::from)?;
            while terms.advance() {
                let name = String::from_utf8_lossy(terms.key()).into_owned();
                if !v.sees(&name) {
                    out.insert(name, ());
                }
            }
        }
        Ok(out.into_keys().collect())
    }

    /// Record filter from the viewer's sources and `source:`, `kind:`, `status:` and `date:`.
    fn record_filter(&self, hidden: &[String], p: &ParsedQuery) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.store.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, self.term(f.doctype, DOC_RECORD))];
        for h in hidden {
            must.push((Occur::MustNot, self.term(f.source, h)));
        }
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

    /// Answers a query with a page of ranked dossiers, as the operator (every source, unmasked).
    pub fn search(&self, q: &str, page: usize, per_page: usize) -> Result<SearchResponse, QueryError> {
        self.search_as(&Viewer::operator(), q, page, per_page)
    }

    /// Answers a query as `v` sees the customers: records of hidden sources do not exist, and
    /// sensitive values are masked unless the role unmasks them.
    pub fn search_as(&self, v: &Viewer, q: &str, page: usize, per_page: usize) -> Result<SearchResponse, QueryError> {
        self.check_view(v)?;
        let searcher = self.store.reader.searcher();
        let f = &self.store.fields;
        let p = parse(q, &self.entities);
        let hidden = self.hidden_sources(&searcher, v)?;
        let mut notices = Vec::new();
        let mut cands: FxHashMap<DocAddress, Candidate> = FxHashMap::default();
        let filtered = !(p.sources.is_empty() && p.kinds.is_empty() && p.statuses.is_empty() && p.date.is_none());

        // Identifiers, emails and phones: exact terms on customers.
        let mut id_records: Vec<(DocAddress, String, String, &'static str)> = Vec::new();
        for (term, raw, kind) in &p.ids {
            let q = self.customers_only(v, self.term(f.ids, term));
            for addr in self.docs(&searcher, &q)? {
                let c = cands.entry(addr).or_default();
                c.id_hits += if *kind == "identifier" && !term.contains(':') { 0.9 } else { 1.0 };
                c.why.push(MatchReason { kind: kind.to_string(), query: raw.clone(), matched: term.clone() });
            }
            // Records that carry the value in their text (a call note) count for their customers too.
            let mut rq = self.record_filter(&hidden, &p);
            rq.push((Occur::Must, self.term(f.ids, term)));
            for (_, addr) in searcher.search(&BooleanQuery::new(rq), &TopDocs::with_limit(200).order_by_score())? {
                id_records.push((addr, term.clone(), raw.clone(), kind));
            }
        }

        // Names: each word scores its best kind of match on each customer.
        // Per customer: score, words matched, whether any matched as a name, and which words (bit per word).
        // The name, canon, phonetic and place fields exist on customer documents only; each query
        // keeps the documents of the viewer's view.
        let mut name_scores: FxHashMap<DocAddress, (f64, usize, bool, u64)> = FxHashMap::default();
        // Company and city words only add to customers some word matched as a name: alone they
        // match a tenth of the index and can never make a name match.
        let mut places: Vec<(usize, Vec<DocAddress>)> = Vec::new();
        for (wi, w) in p.name_words.iter().enumerate().take(64) {
            let mut best: FxHashMap<DocAddress, (f64, bool)> = FxHashMap::default();
            let mut add = |docs: Vec<DocAddress>, s: f64, is_name: bool| {
                // A common name's sound matches thousands: grown by doubling, the map was
                // rehashed a dozen times a word.
                best.reserve(docs.len());
                for d in docs {
                    let e = best.entry(d).or_insert((0.0, false));
                    if s > e.0 {
                        *e = (s, is_name);
                    }
                }
            };
            if w.len() == 1 {
                // An initial ("J Smith", "Smith, J."): given names starting with it.
                let q = self.term(f.canon, &format!("{}{w}", crate::index::INITIAL));
                add(self.customer_docs(&searcher, v, q.as_ref())?, 1.5, true);
            } else {
                let canon = names::canonical_first(w).to_string();
                let exact: Vec<(Occur, Box<dyn Query>)> =
                    vec![(Occur::Should, self.term(f.canon, w)), (Occur::Should, self.term(f.canon, &canon))];
                add(self.customer_docs(&searcher, v, &BooleanQuery::new(exact))?, 3.0, true);
                let (code, alt) = names::phonetic(w);
                if !code.is_empty() {
                    let mut ph: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Should, self.term(f.phonetic, &code))];
                    if !alt.is_empty() && alt != code {
                        ph.push((Occur::Should, self.term(f.phonetic, &alt)));
                    }
                    add(self.customer_docs(&searcher, v, &BooleanQuery::new(ph))?, 2.0, true);
                }
                if w.len() >= 4 {
                    let dist = if w.len() >= 8 { 2 } else { 1 };
                    let fz = FuzzyTermQuery::new(Term::from_field_text(f.name, w), dist, true);
                    add(self.customer_docs(&searcher, v, &fz)?, 2.0, true);
                }
                places.push((wi, self.customer_docs(&searcher, v, self.term(f.place, w).as_ref())?));
            }
            name_scores.reserve(best.len());
            for (d, (s, is_name)) in best {
                let e = name_scores.entry(d).or_insert((0.0, 0, false, 0));
                e.0 += s;
                e.1 += 1;
                e.2 |= is_name;
                e.3 |= 1 << wi;
            }
        }
        for (wi, docs) in places {
            for d in docs {
                if let Some(e) = name_scores.get_mut(&d)
                    && e.3 & (1 << wi) == 0
                {
                    e.0 += 1.0;
                    e.1 += 1;
                    e.3 |= 1 << wi;
                }
            }
        }
        let need = p.name_words.len().div_ceil(2).max(1);
        let mut name_cands: HashSet<DocAddress> = HashSet::new();
        let mut used_mask = 0u64;
        for (d, (score, matched, is_name, mask)) in name_scores {
            if matched >= need && is_name && (matched >= 2 || p.name_words.len() == 1 || score >= 3.0) {
                let c = cands.entry(d).or_default();
                c.name = score;
                c.why.push(MatchReason { kind: "name".into(), query: p.name_words.join(" "), matched: String::new() });
                name_cands.insert(d);
                used_mask |= mask;
            }
        }
        let used: HashSet<&str> = p
            .name_words
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 64 && used_mask & (1 << i) != 0)
            .map(|(_, w)| w.as_str())
            .collect();
        // The "why" of a name match quotes the words that matched as names, not the whole query.
        let name_query: Vec<&str> = p.name_words.iter().map(String::as_str).filter(|w| used.contains(w)).collect();
        for d in &name_cands {
            if let Some(c) = cands.get_mut(d) {
                for w in c.why.iter_mut().filter(|w| w.kind == "name") {
                    w.query = name_query.join(" ");
                }
            }
        }

        // Text: records matching the words and phrases, aggregated per customer. When some words
        // named customers, the other words are also looked for in those customers' records alone.
        let mut unlinked = Vec::new();
        let mut text_query: Option<Box<dyn Query>> = None;
        let mut customer_addr_by_id: FxHashMap<String, DocAddress> = FxHashMap::default();
        let mut runs: Vec<(String, bool)> = Vec::new();
        let customer_ids = self.segments.fast_str(&searcher, dossier_schema::index::FIELD_CUSTOMERS)?;
        let mut text_used = p.text.clone();
        if !p.text.trim().is_empty() || filtered {
            runs.push((p.text.clone(), false));
        }
        let narrowed = p.text_without(&used);
        if !used.is_empty() && !narrowed.trim().is_empty() && narrowed != p.text {
            runs.push((narrowed, true));
        }
        let mut parser = QueryParser::for_index(&self.store.index, vec![f.title, f.text, f.fields]);
        parser.set_conjunction_by_default();
        parser.set_field_boost(f.title, 2.0);
        for (text, only_named) in runs {
            let tq: Box<dyn Query> = if text.trim().is_empty() {
                Box::new(AllQuery)
            } else {
                let (tq, errors) = parser.parse_query_lenient(&text);
                if !errors.is_empty() && notices.is_empty() {
                    notices.push(format!(
                        "Parts of the query could not be read as search syntax and were searched as plain words: {}",
                        errors.len()
                    ));
                }
                tq
            };
            let mut clauses = self.record_filter(&hidden, &p);
            clauses.push((Occur::Must, tq.box_clone()));
            // Words looked for in the named customers' records: search only those records, so the
            // clause is found even when thousands of other contracts say the same.
            if only_named && name_cands.len() <= MAX_NAMED {
                let ids: Vec<Term> = name_cands
                    .iter()
                    .filter_map(|a| self.customer_doc(&searcher, *a))
                    .map(|c| Term::from_field_text(f.customers, &c.id))
                    .collect();
                clauses.push((Occur::Must, Box::new(TermSetQuery::new(ids))));
            }
            let full = BooleanQuery::new(clauses);
            let hits = searcher.search(&full, &TopDocs::with_limit(MAX_TEXT_HITS).order_by_score())?;
            let max = hits.first().map(|h| h.0).unwrap_or(1.0).max(1e-6);
            let mut any = false;
            let addrs: Vec<DocAddress> = hits.iter().map(|h| h.1).collect();
            for ((score, addr), ids) in hits.into_iter().zip(customer_ids.all_of(&addrs)) {
                if ids.is_empty() {
                    if !only_named
                        && unlinked.len() < 20
                        && let Some(mut r) = self.record_of(&searcher.doc(addr)?)
                    {
                        let values = if v.unmask { Vec::new() } else { self.masker.record_with_values(&mut r) };
                        let mut h = hit(&r, String::new(), true);
                        if !v.unmask {
                            self.masker.hit(&mut h, &values);
                        }
                        unlinked.push(h);
                    }
                    continue;
                }
                for id in ids {
                    let Some(caddr) = self.customer_addr(v, &searcher, &mut customer_addr_by_id, &id)? else {
                        continue;
                    };
                    if only_named && !name_cands.contains(&caddr) {
                        continue;
                    }
                    any = true;
                    let c = cands.entry(caddr).or_default();
                    c.text = c.text.max(score / max);
                    if !c.hits.contains(&addr) {
                        c.hits.push(addr);
                    }
                }
            }
            if any || text_query.is_none() {
                text_query = Some(tq);
                text_used = text;
            }
        }
        let addrs: Vec<DocAddress> = id_records.iter().map(|r| r.0).collect();
        for ((addr, term, raw, kind), ids) in id_records.into_iter().zip(customer_ids.all_of(&addrs)) {
            for id in ids {
                let Some(caddr) = self.customer_addr(v, &searcher, &mut customer_addr_by_id, &id)? else { continue };
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

        // Rank: identifiers outrank names, which outrank text. Only the customers that can be on
        // this page (ties at its edge included) are read, to order equal scores by id.
        let mut scored: Vec<(f64, DocAddress)> = cands
            .iter()
            .map(|(addr, c)| {
                let s = 1000.0 * c.id_hits + 10.0 * c.name + 5.0 * c.text as f64 + (c.hits.len().min(20) as f64) * 0.01;
                (s, *addr)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let end = (page + 1).saturating_mul(per_page);
        let edge = scored.get(end.saturating_sub(1)).map(|x| x.0);
        let mut ranked: Vec<(f64, Customer, DocAddress)> = scored
            .iter()
            .take_while(|(s, _)| edge.is_none_or(|e| *s >= e))
            .filter_map(|(s, addr)| self.customer_doc(&searcher, *addr).map(|cu| (*s, cu, *addr)))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        let total = scored.len();
        let mut dossiers = Vec::new();
        let snippets = match &text_query {
            Some(tq) if !p.text.trim().is_empty() => SnippetGenerator::create(&searcher, tq.as_ref(), f.text).ok(),
            _ => None,
        };
        for (score, cu, addr) in ranked.into_iter().skip(page * per_page).take(per_page) {
            let c = cands.remove(&addr).unwrap_or_default();
            let matched: HashSet<DocAddress> = c.hits.iter().copied().collect();
            let mut why = c.why;
            for a in c.hits.iter().take(if p.text.trim().is_empty() { 0 } else { 5 }) {
                if let Ok(d) = searcher.doc::<TantivyDocument>(*a)
                    && let Some(k) = d.get_first(f.key).and_then(|v| v.as_str())
                {
                    why.push(MatchReason { kind: "text".into(), query: text_used.clone(), matched: k.to_string() });
                }
            }
            let mut d = self.dossier(v, &searcher, &cu.id, Some(cu.profile), &matched, snippets.as_ref())?;
            d.score = (score * 1000.0).round() / 1000.0;
            // Name reasons say which names matched.
            for w in &mut why {
                if w.kind == "name" {
                    w.matched = d.profile.names.iter().cloned().collect::<Vec<_>>().join(" / ");
                }
            }
            d.why = why;
            if !v.unmask {
                self.masker.dossier(&mut d);
            }
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
        v: &Viewer,
        s: &Searcher,
        cache: &mut FxHashMap<String, DocAddress>,
        id: &str,
    ) -> Result<Option<DocAddress>, QueryError> {
        if let Some(a) = cache.get(id) {
            return Ok(Some(*a));
        }
        let q = self.customers_only(v, self.term(self.store.fields.key, id));
        let a = self.docs(s, &q)?.into_iter().next();
        if let Some(a) = a {
            cache.insert(id.to_string(), a);
        }
        Ok(a)
    }

    /// A stored record as a dossier shows it: without its mentions, which are most of its JSON.
    fn shown_record_of(&self, d: &TantivyDocument) -> Option<Record> {
        let json = d.get_first(self.store.fields.json)?.as_str()?;
        let r: ShownRecord = serde_json::from_str(json).ok()?;
        Some(Record {
            key: r.key,
            source: r.source,
            kind: r.kind,
            item: r.item,
            parent: r.parent,
            title: r.title,
            text: r.text,
            fields: r.fields,
            date: r.date,
            page: r.page,
            note: r.note,
            mentions: Vec::new(),
        })
    }

    fn record_of(&self, d: &TantivyDocument) -> Option<Record> {
        serde_json::from_str(d.get_first(self.store.fields.json)?.as_str()?).ok()
    }

    /// Typeahead: customers whose name, company, email or number starts with what was typed.
    pub fn suggest(&self, typed: &str, limit: usize) -> Result<Vec<Suggestion>, QueryError> {
        self.suggest_as(&Viewer::operator(), typed, limit)
    }

    /// Typeahead as `v` sees the customers: names and numbers from hidden sources complete nothing.
    pub fn suggest_as(&self, v: &Viewer, typed: &str, limit: usize) -> Result<Vec<Suggestion>, QueryError> {
        self.check_view(v)?;
        let typed = typed.trim();
        if typed.chars().count() < 2 {
            return Ok(Vec::new());
        }
        let searcher = self.store.reader.searcher();
        let f = &self.store.fields;
        // Prefixes expand to at most this many index terms, so "a" cannot walk the whole dictionary.
        const MAX_TERMS: u64 = 200;
        let prefix = |field, p: &str| -> Box<dyn Query> {
            let mut q = InvertedIndexRangeQuery::new(
                Bound::Included(Term::from_field_text(field, p)),
                Bound::Excluded(Term::from_field_text(field, &format!("{p}\u{10FFFF}"))),
            );
            q.limit(MAX_TERMS);
            Box::new(q)
        };
        let digits = typed.chars().filter(char::is_ascii_digit).count();
        let (query, matched): (Box<dyn Query>, &str) = if typed.contains('@') {
            (prefix(f.ids, &typed.to_lowercase()), "email")
        } else if digits >= 3 && (!typed.chars().any(char::is_whitespace) || digits * 2 >= typed.len()) {
            // A number as typed: without its letters prefix (ORD-), separators or leading zeros.
            let bare: String = typed.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase();
            let bare = bare.trim_start_matches(|c: char| c.is_ascii_alphabetic()).trim_start_matches('0');
            if bare.len() < 3 {
                return Ok(Vec::new());
            }
            let mut any: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Should, prefix(f.ids, bare))];
            // Phones are stored in E.164: a number typed from its area code on is a prefix of +CC….
            if bare.chars().all(|c| c.is_ascii_digit()) {
                any.push((Occur::Should, prefix(f.ids, &format!("+{bare}"))));
                if let Some(cc) = self.entities.country_code() {
                    any.push((Occur::Should, prefix(f.ids, &format!("+{cc}{bare}"))));
                }
            }
            (Box::new(BooleanQuery::new(any)), "number")
        } else {
            // Words as the index tokenizes them; all but the last are whole, the last is a prefix.
            let mut analyzer = self.store.index.tokenizer_for_field(f.name)?;
            let mut words = Vec::new();
            let mut stream = analyzer.token_stream(typed);
            while let Some(t) = stream.next() {
                if words.len() < 6 {
                    words.push(t.text.clone());
                }
            }
            let Some(last) = words.pop() else { return Ok(Vec::new()) };
            let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for w in &words {
                let either = BooleanQuery::new(vec![
                    (Occur::Should, self.term(f.name, w)),
                    (Occur::Should, self.term(f.place, w)),
                ]);
                must.push((Occur::Must, Box::new(either)));
            }
            let either = BooleanQuery::new(vec![
                (Occur::Should, prefix(f.name, &last)),
                (Occur::Should, prefix(f.place, &last)),
            ]);
            must.push((Occur::Must, Box::new(either)));
            (Box::new(BooleanQuery::new(must)), "name")
        };
        let hits = searcher.search(&self.customers_only(v, query), &TopDocs::with_limit(200).order_by_score())?;
        let folded = names::fold(typed);
        let mut out: Vec<(bool, Suggestion)> = Vec::new();
        for (_, addr) in hits {
            let Some(c) = self.customer_doc(&searcher, addr) else { continue };
            let p = &c.profile;
            let starts = names::fold(&p.display_name).starts_with(&folded);
            let matched = if matched == "name" && !p.names.iter().any(|n| names::fold(n).contains(&folded)) {
                "company"
            } else {
                matched
            };
            let detail =
                p.companies.iter().next().into_iter().chain(p.cities.iter().next()).cloned().collect::<Vec<_>>();
            out.push((
                starts,
                Suggestion {
                    id: c.id,
                    name: p.display_name.clone(),
                    detail: detail.join(" · "),
                    matched: matched.into(),
                },
            ));
        }
        // Names that start with what was typed first, then alphabetical, so the list does not jump.
        out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.name.cmp(&b.1.name)).then(a.1.id.cmp(&b.1.id)));
        Ok(out.into_iter().map(|(_, s)| s).take(limit).collect())
    }

    /// The dossier of one customer (following redirects), with no query, as the operator.
    pub fn customer(&self, id: &str) -> Result<Option<Dossier>, QueryError> {
        self.customer_as(&Viewer::operator(), id)
    }

    /// The dossier of one customer as `v` sees it; `None` when no record of it is visible.
    pub fn customer_as(&self, v: &Viewer, id: &str) -> Result<Option<Dossier>, QueryError> {
        self.check_view(v)?;
        let real = {
            let st = self.state.lock().map_err(|_| QueryError::Poisoned)?;
            st.customer(id)?.map(|c| c.id)
        };
        let Some(real) = real else { return Ok(None) };
        let searcher = self.store.reader.searcher();
        let q = self.customers_only(v, self.term(self.store.fields.key, &real));
        let Some(c) = self.docs(&searcher, &q)?.into_iter().next().and_then(|a| self.customer_doc(&searcher, a)) else {
            return Ok(None);
        };
        let mut d = self.dossier(v, &searcher, &real, Some(c.profile), &HashSet::new(), None)?;
        if !v.unmask {
            self.masker.dossier(&mut d);
        }
        Ok(Some(d))
    }

    /// One record in full, as the operator.
    pub fn record(&self, key: &str) -> Result<Option<Record>, QueryError> {
        Ok(self.store.record(key)?)
    }

    /// One record in full as `v` sees it: `None` when its source is hidden, masked unless the
    /// role unmasks.
    pub fn record_as(&self, v: &Viewer, key: &str) -> Result<Option<Record>, QueryError> {
        let Some(mut r) = self.store.record(key)? else { return Ok(None) };
        if !v.sees(&r.source) {
            return Ok(None);
        }
        if !v.unmask {
            self.masker.record(&mut r);
        }
        Ok(Some(r))
    }

    /// Everything held about one customer (following redirects), unmasked, for a
    /// subject-access request: profile, links with their evidence, every linked record in full
    /// and where it came from.
    pub fn export_subject(&self, id: &str) -> Result<Option<SubjectExport>, QueryError> {
        let st = self.state.lock().map_err(|_| QueryError::Poisoned)?;
        let Some(c) = st.customer(id)? else { return Ok(None) };
        let mut records = Vec::new();
        let mut provenance = Vec::new();
        for l in &c.links {
            let Some(r) = self.store.record(&l.key)? else { continue };
            let v = st.item_version(&r.source, &r.item)?;
            provenance.push(Provenance {
                key: r.key.clone(),
                source: r.source.clone(),
                item: r.item.clone(),
                item_version: v.as_ref().map(|x| x.0.clone()),
                run: v.map(|x| x.1),
            });
            records.push(r);
        }
        Ok(Some(SubjectExport {
            former_ids: st.former_ids(&c.id)?,
            customer: c.id,
            exported_at: chrono::Utc::now().to_rfc3339(),
            profile: c.profile,
            links: c.links,
            records,
            provenance,
        }))
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
        v: &Viewer,
        s: &Searcher,
        id: &str,
        profile: Option<Profile>,
        matched: &HashSet<DocAddress>,
        snippets: Option<&SnippetGenerator>,
    ) -> Result<Dossier, QueryError> {
        let f = &self.store.fields;
        let profile = match profile {
            Some(p) => p,
            None => {
                let cq = self.customers_only(v, self.term(f.key, id));
                self.docs(s, &cq)?
                    .into_iter()
                    .next()
                    .and_then(|a| self.customer_doc(s, a))
                    .map(|c| c.profile)
                    .unwrap_or_default()
            }
        };
        // Only record documents carry the `customers` field: no document-type filter, no scoring.
        // Records of hidden sources are skipped as they are read (a customer has few records;
        // a source filter in the query would walk every record of the visible sources).
        let mut addrs = self.docs(s, self.term(f.customers, id).as_ref())?;
        addrs.sort();
        if v.sources.is_some() {
            let mut sources = self.segments.fast_str(s, "source")?;
            addrs.retain(|a| sources.first(*a).is_some_and(|src| v.sees(src)));
        }
        addrs.truncate(MAX_DOSSIER_RECORDS);
        let mut records: Vec<(Record, bool, String)> = Vec::new();
        for a in addrs {
            let d: TantivyDocument = s.doc(a)?;
            let Some(mut r) = self.shown_record_of(&d) else {
                continue;
            };
            if !v.sees(&r.source) {
                continue;
            }
            let is_match = matched.contains(&a);
            // A highlighted snippet is made from the whole text, before it is cut below.
            let sn = match (is_match, snippets) {
                (true, Some(g)) => Some(g.snippet(&r.text)).filter(|sn| !sn.fragment().is_empty()),
                _ => None,
            };
            // A dossier shows the start of a record's text, never the whole: only that much is
            // masked (a contract page is kilobytes, masking it was a tenth of a search), with a
            // margin longer than any value a mask pattern or field covers, so none is cut in two.
            if !v.unmask {
                cut_chars(&mut r.text, PREVIEW_CHARS + MASK_MARGIN);
            }
            let values = if v.unmask { Vec::new() } else { self.masker.record_with_values(&mut r) };
            // The record is masked already, and a preview of it with it; the snippet is masked here.
            let snippet = match sn {
                Some(sn) if v.unmask => sn.to_html(),
                Some(sn) => self.masker.html(&sn.to_html(), &values),
                None => preview(&r.text),
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

/// Characters of a record's text a dossier shows when no snippet of it matched.
const PREVIEW_CHARS: usize = 240;
/// Characters past the preview masked with it (see [`Engine::dossier`]).
const MASK_MARGIN: usize = 256;

fn preview(text: &str) -> String {
    let t: String = text.chars().take(PREVIEW_CHARS).collect();
    html_escape(&t)
}

/// `s` cut to its first `n` characters.
fn cut_chars(s: &mut String, n: usize) {
    if let Some((at, _)) = s.char_indices().nth(n) {
        s.truncate(at);
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Where a record sits in its item, in words: its page, its sheet and row, or its sender.
fn locus(r: &Record) -> String {
    if let Some(p) = r.page {
        return format!("page {p}");
    }
    if let Some(from) = r.field("from") {
        return format!("from {from}");
    }
    // Workbook rows: `file!Sheet!rN`.
    let mut parts = r.key.rsplitn(3, '!');
    if let (Some(row), Some(sheet), Some(_)) = (parts.next(), parts.next(), parts.next())
        && let Some(n) = row.strip_prefix('r')
    {
        return format!("sheet {sheet}, row {n}");
    }
    if let Some(n) = r.key.rsplit_once("!r").map(|(_, n)| n).filter(|n| n.chars().all(|c| c.is_ascii_digit())) {
        return format!("row {n}");
    }
    // Database rows: `source:table/key`.
    if r.kind == dossier_schema::RecordKind::Row
        && let Some((table, key)) = r.key.split_once(':').and_then(|(_, loc)| loc.split_once('/'))
    {
        return format!("table {table}, key {key}");
    }
    String::new()
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
        locus: locus(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_cut_at_a_character_never_inside_one() {
        let mut s = "Zoë • née".to_string();
        cut_chars(&mut s, 3);
        assert_eq!(s, "Zoë");
        let mut s = "short".to_string();
        cut_chars(&mut s, 10);
        assert_eq!(s, "short");
    }

    #[test]
    fn the_mask_margin_outlasts_the_default_patterns_longest_match() {
        // A card number in groups, the longest default match, is well inside the margin.
        assert!("4111 1111 1111 1111 111".len() * 4 < MASK_MARGIN);
    }
}
