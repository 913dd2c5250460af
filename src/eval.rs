//! Measures resolution and search quality against the demo company's ground
//! truth (`truth.jsonl`) and query set (`queries.jsonl`), or resolution alone
//! against any `record_id,entity_id` truth file (Febrl's).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::query::{Engine, QueryError};

/// Errors of an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A line did not parse.
    #[error("{0}: {1}")]
    Json(String, serde_json::Error),
    /// A search failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The truth file is not `record_id,entity_id` lines.
    #[error("{0}: line {1}: expected `record_id,entity_id`")]
    Truth(String, usize),
    /// No indexed record carries the field the truth's ids are in.
    #[error(
        "no indexed record has a `{0}` field matching the truth file's ids; check --key-field and that the index holds the dataset"
    )]
    NoMatch(String),
}

/// Pairwise counts and scores of a clustering against a truth.
#[derive(Debug, Clone, Copy)]
pub struct Pairwise {
    /// Pairs in one predicted cluster and one true cluster.
    pub right: u64,
    /// Pairs in one predicted cluster.
    pub predicted: u64,
    /// Pairs in one true cluster.
    pub truth: u64,
    /// right / predicted (1 when nothing was grouped).
    pub precision: f64,
    /// right / truth (1 when nothing should be).
    pub recall: f64,
    /// Harmonic mean of the two.
    pub f1: f64,
}

impl Pairwise {
    /// Scores from cluster sizes: of each (predicted, true) intersection, of each predicted
    /// cluster, and of each true cluster.
    pub fn from_sizes(
        cells: impl IntoIterator<Item = u64>,
        predicted: impl IntoIterator<Item = u64>,
        truth: impl IntoIterator<Item = u64>,
    ) -> Pairwise {
        let pairs = |sizes: &mut dyn Iterator<Item = u64>| sizes.map(|n| n * n.saturating_sub(1) / 2).sum::<u64>();
        let right = pairs(&mut cells.into_iter());
        let predicted = pairs(&mut predicted.into_iter());
        let truth = pairs(&mut truth.into_iter());
        let precision = if predicted > 0 { right as f64 / predicted as f64 } else { 1.0 };
        let recall = if truth > 0 { right as f64 / truth as f64 } else { 1.0 };
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        Pairwise { right, predicted, truth, precision, recall, f1 }
    }
}

/// Pairwise quality of records grouped into customers, against a truth file.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PairScore {
    /// Records in the truth file.
    pub truth_records: usize,
    /// Of them, records found in the index (by the key field).
    pub found: usize,
    /// True same-entity pairs.
    pub true_pairs: u64,
    /// Pairs put in one customer.
    pub predicted_pairs: u64,
    /// Pairs both true and predicted.
    pub right_pairs: u64,
    /// Pairwise precision.
    pub precision: f64,
    /// Pairwise recall.
    pub recall: f64,
    /// Pairwise F1.
    pub f1: f64,
    /// Customers the found records fall into.
    pub customers: usize,
}

/// Scores the customers in the index against a `record_id,entity_id` CSV, matching each
/// record by the value of its field `key_field` (an opaque key such as Febrl's `rec_id`).
pub fn evaluate_truth(engine: &Engine, truth: &Path, key_field: &str) -> Result<PairScore, EvalError> {
    let name = truth.display().to_string();
    let text = std::fs::read_to_string(truth).map_err(|e| EvalError::Io(name.clone(), e))?;
    let mut entity_of: HashMap<String, String> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("record_id")) {
            continue;
        }
        let (r, e) = line.split_once(',').ok_or_else(|| EvalError::Truth(name.clone(), i + 1))?;
        entity_of.insert(r.trim().trim_matches('"').to_string(), e.trim().trim_matches('"').to_string());
    }
    let keys = engine.with_state(|s| s.record_keys())?.map_err(QueryError::from)?;
    let member_of: HashMap<String, String> = engine
        .customers()?
        .into_iter()
        .flat_map(|c| {
            let id = c.id;
            c.links.into_iter().filter(|l| l.role == "member").map(move |l| (l.key, id.clone()))
        })
        .collect();
    let mut cell: HashMap<(String, &str), u64> = HashMap::new();
    let mut pred: HashMap<String, u64> = HashMap::new();
    let mut gold: HashMap<&str, u64> = HashMap::new();
    let mut found = 0;
    for key in &keys {
        let Some(r) = engine.record(key)? else { continue };
        let Some(id) = r.field(key_field) else { continue };
        let Some(entity) = entity_of.get(id) else { continue };
        found += 1;
        let p = member_of.get(key).cloned().unwrap_or_else(|| format!("single:{key}"));
        *cell.entry((p.clone(), entity.as_str())).or_default() += 1;
        *pred.entry(p).or_default() += 1;
        *gold.entry(entity.as_str()).or_default() += 1;
    }
    if found == 0 {
        return Err(EvalError::NoMatch(key_field.to_string()));
    }
    // Every true entity counts, found or not: a record missing from the index loses its pairs.
    let mut gold_all: HashMap<&str, u64> = HashMap::new();
    for e in entity_of.values() {
        *gold_all.entry(e.as_str()).or_default() += 1;
    }
    let p = Pairwise::from_sizes(cell.values().copied(), pred.values().copied(), gold_all.values().copied());
    Ok(PairScore {
        truth_records: entity_of.len(),
        found,
        true_pairs: p.truth,
        predicted_pairs: p.predicted,
        right_pairs: p.right,
        precision: p.precision,
        recall: p.recall,
        f1: p.f1,
        customers: pred.len(),
    })
}

#[derive(Deserialize)]
struct Truth {
    key: String,
    customer: String,
}

/// One line of a demo company's `queries.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct DemoQuery {
    /// What the rep types.
    pub q: String,
    /// `name`, `phone`, `number`, `email` or `contract`.
    pub kind: String,
    /// The customer (ground-truth id) it should find.
    pub customer: Option<String>,
    /// For contract queries, the page it should find.
    pub key: Option<String>,
    /// Customers the query describes just as well as `customer`.
    #[serde(default)]
    pub ties: Vec<String>,
}

/// Reads a demo company's query set.
pub fn read_queries(dir: &Path) -> Result<Vec<DemoQuery>, EvalError> {
    read_lines(&dir.join("queries.jsonl"))
}

/// Quality of one query kind.
#[derive(Debug, Default, Clone, Serialize)]
pub struct QueryScore {
    /// Queries run.
    pub n: usize,
    /// Share with the expected customer first (or, for contract queries, the page in the top 3).
    pub hit_at_1: f64,
    /// Mean reciprocal rank of the expected customer.
    pub mrr: f64,
    /// Queries that describe several customers equally well (any of them first counts as a hit).
    pub ties: usize,
}

/// The evaluation.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EvalReport {
    /// Records in the ground truth.
    pub records: usize,
    /// Pairwise precision of records grouped into customers.
    pub pair_precision: f64,
    /// Pairwise recall.
    pub pair_recall: f64,
    /// Pairwise F1.
    pub pair_f1: f64,
    /// Share of record→customer links that are right.
    pub link_precision: f64,
    /// Share of records linked to their customer.
    pub link_recall: f64,
    /// Search quality by query kind.
    pub queries: BTreeMap<String, QueryScore>,
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, EvalError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io(name.clone(), e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| EvalError::Json(name.clone(), e)))
        .collect()
}

/// Evaluates the index of a demo company in `dir`.
pub fn evaluate(engine: &Engine, dir: &Path) -> Result<EvalReport, EvalError> {
    let truth: Vec<Truth> = read_lines(&dir.join("truth.jsonl"))?;
    let queries = read_queries(dir)?;
    let customers = engine.customers()?;
    let mut links: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut member_of: HashMap<&str, &str> = HashMap::new();
    for c in &customers {
        for l in &c.links {
            links.entry(l.key.as_str()).or_default().push(c.id.as_str());
            if l.role == "member" || !member_of.contains_key(l.key.as_str()) {
                member_of.insert(l.key.as_str(), c.id.as_str());
            }
        }
    }
    // Pairwise scores over the contingency table of (predicted, true) clusters.
    let mut cell: HashMap<(String, &str), usize> = HashMap::new();
    let mut pred: HashMap<String, usize> = HashMap::new();
    let mut gold: HashMap<&str, usize> = HashMap::new();
    for (i, t) in truth.iter().enumerate() {
        let p = member_of.get(t.key.as_str()).map(|s| s.to_string()).unwrap_or_else(|| format!("single-{i}"));
        *cell.entry((p.clone(), t.customer.as_str())).or_default() += 1;
        *pred.entry(p).or_default() += 1;
        *gold.entry(t.customer.as_str()).or_default() += 1;
    }
    let size = |n: &usize| *n as u64;
    let scores = Pairwise::from_sizes(cell.values().map(size), pred.values().map(size), gold.values().map(size));
    // Each true customer's predicted id: the cluster holding most of its records.
    let mut votes: HashMap<&str, HashMap<String, usize>> = HashMap::new();
    for ((p, g), n) in &cell {
        votes.entry(g).or_default().insert(p.clone(), *n);
    }
    let cluster_of: HashMap<&str, String> = votes
        .into_iter()
        .filter_map(|(g, v)| v.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).map(|(p, _)| (g, p)))
        .collect();
    let (mut right, mut total_links, mut found) = (0usize, 0usize, 0usize);
    for t in &truth {
        let want = cluster_of.get(t.customer.as_str());
        let got = links.get(t.key.as_str()).cloned().unwrap_or_default();
        total_links += got.len();
        right += got.iter().filter(|g| Some(&g.to_string()) == want).count();
        if got.iter().any(|g| Some(&g.to_string()) == want) {
            found += 1;
        }
    }
    let mut report = EvalReport {
        records: truth.len(),
        pair_precision: scores.precision,
        pair_recall: scores.recall,
        pair_f1: scores.f1,
        link_precision: if total_links > 0 { right as f64 / total_links as f64 } else { 1.0 },
        link_recall: found as f64 / truth.len().max(1) as f64,
        queries: BTreeMap::new(),
    };
    for q in &queries {
        let r = engine.search(&q.q, 0, 10)?;
        let s = report.queries.entry(q.kind.clone()).or_default();
        s.n += 1;
        if !q.ties.is_empty() {
            s.ties += 1;
        }
        // The clusters that are a right answer: the customer meant, and any it is indistinguishable from.
        let right: Vec<&String> = q.customer.iter().chain(&q.ties).filter_map(|c| cluster_of.get(c.as_str())).collect();
        let is_right = |d: &dossier_schema::Dossier| d.id.as_ref().is_some_and(|id| right.contains(&id));
        if let Some(key) = &q.key {
            let hit = r.dossiers.iter().take(3).any(|d| {
                d.groups.iter().any(|g| g.records.iter().any(|h| h.matched && &h.key == key))
                    || (!q.ties.is_empty()
                        && is_right(d)
                        && d.groups.iter().any(|g| g.records.iter().any(|h| h.matched)))
            });
            if hit {
                s.hit_at_1 += 1.0;
                s.mrr += 1.0;
            }
        } else if let Some(pos) = r.dossiers.iter().position(is_right) {
            if pos == 0 {
                s.hit_at_1 += 1.0;
            }
            s.mrr += 1.0 / (pos + 1) as f64;
        }
    }
    for s in report.queries.values_mut() {
        s.hit_at_1 /= s.n.max(1) as f64;
        s.mrr /= s.n.max(1) as f64;
    }
    Ok(report)
}
