//! The index stage: writes records and customer profiles into tantivy, with
//! one writer and atomic commits whose payload names the run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use dossier_schema::index::{DOC_CUSTOMER, DOC_RECORD};
use dossier_schema::{Customer, IndexSchema, Profile, Record};
use tantivy::directory::MmapDirectory;
use tantivy::indexer::LogMergePolicy;
use tantivy::schema::Value;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::access::View;
use crate::entities::names;
use crate::entities::normalize;
use crate::resolve::Sources;

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// tantivy failed.
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// Another process holds the writer lock.
    #[error(
        "another dossier is indexing into {0} (its lock is held); wait for it to finish, or remove a stale lock after a crash"
    )]
    Busy(String),
    /// The schema on disk is not ours.
    #[error(transparent)]
    Schema(#[from] dossier_schema::SchemaError),
    /// The folder could not be created.
    #[error("index folder {0}: {1}")]
    Io(String, String),
    /// A stored document did not decode.
    #[error("index: corrupt stored document: {0}")]
    Json(#[from] serde_json::Error),
}

/// An open index with its schema handles and a reader.
pub struct IndexStore {
    /// The tantivy index.
    pub index: Index,
    /// Field handles.
    pub fields: IndexSchema,
    /// A reader, reloaded manually after each commit so results are visible at once.
    pub reader: IndexReader,
    /// Records and items to delete, sent to the writer as one query per batch: tantivy keeps
    /// every delete until the commit, and a delete by term holds a scorer's 1 KiB cache.
    pending: std::sync::Mutex<Pending>,
}

/// Deletes waiting to be sent to the writer, and the first that could not be.
#[derive(Default)]
struct Pending {
    terms: Vec<Term>,
    failed: Option<tantivy::TantivyError>,
}

/// Bytes of stored documents compressed together. A search reads a few dozen documents
/// scattered over the index, and each read decompresses its whole block: with tantivy's 16 KiB
/// blocks, decompression was 7% of the serving CPU.
const DOCSTORE_BLOCK_BYTES: usize = 4096;

/// Deletes sent to the writer together.
const DELETE_BATCH: usize = 50_000;

impl Pending {
    fn send(&mut self, w: &IndexWriter<TantivyDocument>) {
        if self.terms.is_empty() {
            return;
        }
        let query = tantivy::query::TermSetQuery::new(std::mem::take(&mut self.terms));
        // Fails only for a field that is not indexed; the run must not commit without it.
        if let Err(e) = w.delete_query(Box::new(query)) {
            self.failed.get_or_insert(e);
        }
    }
}

/// Status words found in fields such as `status` or `invoice_status`.
pub fn status_words(r: &Record) -> Vec<String> {
    r.fields
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k == "status" || k.ends_with("_status") || k.ends_with(" status") || k == "disposition"
        })
        .flat_map(|(_, v)| names::fold(v).split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The exact terms a normalized strong value is found by: itself, a phone's
/// last seven digits, an identifier without its kind.
/// Prefix of the `canon` terms that hold a given name's initial.
pub const INITIAL: &str = "i:";

/// The terms under which a normalized strong value (email, phone, identifier) is indexed.
pub fn id_terms(norm: &str) -> Vec<String> {
    let mut out = vec![norm.to_string()];
    if norm.starts_with('+') {
        out.extend(normalize::phone_tail(norm));
    } else if let Some((_, bare)) = norm.split_once(':') {
        out.push(bare.to_string());
    }
    out
}

impl IndexStore {
    /// Opens the index in `dir`, creating it when absent.
    pub fn open(dir: &Path) -> Result<IndexStore, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Io(dir.display().to_string(), e.to_string()))?;
        let fields = IndexSchema::new();
        let mmap = MmapDirectory::open(dir).map_err(|e| IndexError::Io(dir.display().to_string(), e.to_string()))?;
        let mut index = Index::open_or_create(mmap, fields.schema.clone()).map_err(|e| match e {
            tantivy::TantivyError::SchemaError(_) => IndexError::Schema(dossier_schema::SchemaError::Outdated),
            e => IndexError::Tantivy(e),
        })?;
        // Segments written from here on (new ones and merges) use it; older ones keep theirs.
        index.settings_mut().docstore_blocksize = DOCSTORE_BLOCK_BYTES;
        fields.check(&index.schema())?;
        IndexSchema::register_tokenizers(&index);
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(IndexStore { index, fields, reader, pending: Default::default() })
    }

    /// Opens the index for an index run. With `rebuild`, an index written by another version of
    /// dossier (its schema differs) is removed and created anew: the caller re-reads every item.
    pub fn open_for_run(dir: &Path, rebuild: bool) -> Result<IndexStore, IndexError> {
        match Self::open(dir) {
            Err(IndexError::Schema(_)) if rebuild => {
                tracing::warn!("the index in {} has another schema; rebuilding it", dir.display());
                std::fs::remove_dir_all(dir).map_err(|e| IndexError::Io(dir.display().to_string(), e.to_string()))?;
                Self::open(dir)
            }
            r => r,
        }
    }

    /// Takes the single writer; a second indexer gets [`IndexError::Busy`].
    pub fn writer(&self, dir: &Path) -> Result<IndexWriter<TantivyDocument>, IndexError> {
        let w: IndexWriter<TantivyDocument> = match self.index.writer_with_num_threads(2, 128 << 20) {
            Ok(w) => w,
            Err(tantivy::TantivyError::LockFailure(_, _)) => {
                return Err(IndexError::Busy(dir.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        // No merge while a run deletes and adds: a merge running then left records doubled in
        // the index now and then (the end-to-end tests under load: 2 runs in 12 with merges
        // during the run, 0 in 12 without). Segments are merged after the run's commit.
        w.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        Ok(w)
    }

    /// The merge policy once a run's deletes and additions are committed.
    fn merge_policy() -> LogMergePolicy {
        let mut policy = LogMergePolicy::default();
        // Re-indexing in place deletes many documents: let deletes trigger merges.
        policy.set_del_docs_ratio_before_merge(0.3);
        policy
    }

    /// Ends a run's writing: merges the committed segments and waits for the merges, so no
    /// merge outlives the run (a later run's writer does not merge).
    ///
    /// When no segment holds half of the index's documents (after a first or full run, whose
    /// writer threads cut it into many), every segment is merged into one: each query sets
    /// itself up once per segment, and one segment instead of six answered 10% more searches a
    /// second for 7 s of a 100,000-customer run. Later runs add small segments beside it, which
    /// the merge policy gathers.
    pub fn finish(&self, mut w: IndexWriter<TantivyDocument>) -> Result<(), IndexError> {
        let metas = self.index.searchable_segment_metas()?;
        let total: u64 = metas.iter().map(|m| u64::from(m.num_docs())).sum();
        let largest = metas.iter().map(|m| u64::from(m.num_docs())).max().unwrap_or(0);
        if metas.len() > 1 && largest * 2 < total {
            let ids: Vec<_> = metas.iter().map(|m| m.id()).collect();
            w.merge(&ids).wait()?;
        }
        w.set_merge_policy(Box::new(Self::merge_policy()));
        // A commit with nothing new keeps the run's payload and lets the policy pick merges.
        let payload = self.index.load_metas()?.payload;
        let mut prepared = w.prepare_commit()?;
        if let Some(p) = &payload {
            prepared.set_payload(p);
        }
        prepared.commit()?;
        w.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Deletes every record of one item.
    pub fn delete_item(&self, w: &IndexWriter<TantivyDocument>, source: &str, item: &str) {
        self.delete(w, Term::from_field_text(self.fields.item, &Record::key_for(source, item)));
    }

    /// Deletes one record by key.
    pub fn delete_record(&self, w: &IndexWriter<TantivyDocument>, key: &str) {
        self.delete(w, Term::from_field_text(self.fields.key, key));
    }

    /// Queues the delete of the documents holding `term`; it takes effect before any document
    /// added after it.
    fn delete(&self, w: &IndexWriter<TantivyDocument>, term: Term) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.terms.push(term);
        if pending.terms.len() >= DELETE_BATCH {
            pending.send(w);
        }
    }

    /// Sends the queued deletes to the writer: before a document is added, and before a commit.
    fn flush_deletes(&self, w: &IndexWriter<TantivyDocument>) -> Result<(), IndexError> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.send(w);
        match pending.failed.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Adds a record document linked to `customers`.
    pub fn add_record(
        &self,
        w: &IndexWriter<TantivyDocument>,
        r: &Record,
        customers: &[impl AsRef<str>],
    ) -> Result<(), IndexError> {
        self.flush_deletes(w)?;
        let f = &self.fields;
        let mut d = TantivyDocument::default();
        d.add_text(f.doctype, DOC_RECORD);
        d.add_text(f.key, &r.key);
        d.add_text(f.item, Record::key_for(&r.source, &r.item));
        d.add_text(f.source, &r.source);
        d.add_text(f.kind, r.kind.as_str());
        d.add_text(f.title, &r.title);
        d.add_text(f.text, &r.text);
        let mut fields = String::new();
        for (k, v) in &r.fields {
            fields.push_str(k);
            fields.push(' ');
            fields.push_str(v);
            fields.push('\n');
        }
        d.add_text(f.fields, &fields);
        if let Some(dt) = r.date {
            d.add_date(f.date, tantivy::DateTime::from_timestamp_secs(dt.timestamp()));
        }
        for c in customers {
            d.add_text(f.customers, c.as_ref());
        }
        for s in status_words(r) {
            d.add_text(f.status, &s);
        }
        // Normalized ids, emails and phones found anywhere in the record, so a
        // number in a call note is found in every format too.
        for m in r.mentions.iter().filter(|m| m.kind.is_strong()) {
            for t in id_terms(&m.norm) {
                d.add_text(f.ids, &t);
            }
        }
        d.add_text(f.json, serde_json::to_string(r)?);
        w.add_document(d)?;
        Ok(())
    }

    /// Replaces every customer document: one per view a customer's profile differs in. A
    /// role that sees only some sources gets a document whose profile holds only what those
    /// sources say, so no name, number or place learned from a hidden record can match or show;
    /// a customer none of whose records a role sees has no document for it.
    ///
    /// With `only`, just those customers' documents are replaced (ids absent from `customers`
    /// are deleted); without, every customer document is.
    pub fn replace_customers(
        &self,
        w: &IndexWriter<TantivyDocument>,
        customers: &[Customer],
        sources: &HashMap<String, Sources>,
        views: &[View],
        only: Option<&HashSet<String>>,
    ) -> Result<(), IndexError> {
        match only {
            // Customer ids never contain `:`, so they are no record's key.
            Some(ids) => ids.iter().for_each(|id| self.delete(w, Term::from_field_text(self.fields.key, id))),
            None => self.delete(w, Term::from_field_text(self.fields.doctype, DOC_CUSTOMER)),
        }
        self.flush_deletes(w)?;
        let none = Sources::default();
        for c in customers.iter().filter(|c| only.is_none_or(|ids| ids.contains(&c.id))) {
            let parts = sources.get(&c.id).unwrap_or(&none);
            // Views that see the same sources of this customer share one document.
            let mut docs: BTreeMap<Vec<&str>, Vec<&str>> = BTreeMap::new();
            for (tag, allowed) in views {
                let visible: Vec<&str> =
                    parts.names().filter(|s| allowed.as_ref().is_none_or(|a| a.contains(*s))).collect();
                if allowed.is_none() || !visible.is_empty() {
                    docs.entry(visible).or_default().push(tag);
                }
            }
            let all: Vec<&str> = parts.names().collect();
            for (visible, tags) in docs {
                let profile = if visible == all {
                    c.profile.clone()
                } else {
                    parts.profile(&c.id, &c.profile, |s| visible.contains(&s))
                };
                w.add_document(self.customer_doc(&c.id, profile, &tags)?)?;
            }
        }
        Ok(())
    }

    /// The document of one customer as the views in `tags` see it.
    fn customer_doc(&self, id: &str, profile: Profile, tags: &[&str]) -> Result<TantivyDocument, IndexError> {
        let f = &self.fields;
        let mut d = TantivyDocument::default();
        d.add_text(f.doctype, DOC_CUSTOMER);
        d.add_text(f.key, id);
        for t in tags {
            d.add_text(f.view, t);
        }
        let p = &profile;
        for n in &p.names {
            d.add_text(f.name, n);
            for word in names::fold(n).split(' ').filter(|w| w.len() > 1) {
                d.add_text(f.canon, word);
            }
            // Sound-alike codes for family names only: given names that sound
            // alike are often different people (Jane and John share a code).
            if let Some(parsed) = names::parse(n) {
                d.add_text(f.canon, &parsed.first);
                d.add_text(f.canon, &parsed.last);
                // Initials of given and middle names, for "J. Smith" and "Jane Q Smith".
                for given in std::iter::once(&parsed.first).chain(&parsed.middle) {
                    if let Some(c) = given.chars().next() {
                        d.add_text(f.canon, format!("{INITIAL}{c}"));
                    }
                }
                let (a, b) = names::phonetic(&parsed.last);
                for code in [a.clone(), b].into_iter().filter(|c| !c.is_empty()).collect::<BTreeSet<_>>() {
                    d.add_text(f.phonetic, &code);
                }
            }
        }
        for v in p.emails.iter().chain(&p.phones).chain(&p.ids) {
            for t in id_terms(v) {
                d.add_text(f.ids, &t);
            }
        }
        for v in p.companies.iter().chain(&p.cities).chain(&p.addresses) {
            d.add_text(f.place, v);
        }
        let stored = Customer { id: id.to_string(), profile, links: Vec::new() };
        d.add_text(f.json, serde_json::to_string(&stored)?);
        Ok(d)
    }

    /// Commits with the run id as payload and makes the result visible.
    pub fn commit(&self, w: &mut IndexWriter<TantivyDocument>, run: i64) -> Result<(), IndexError> {
        self.flush_deletes(w)?;
        let mut prepared = w.prepare_commit()?;
        prepared.set_payload(&format!("run={run}"));
        prepared.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// How many live documents hold each `key` value (record keys, and customer ids once per
    /// view document), read from the term dictionary of the last commit.
    pub fn key_counts(&self) -> Result<HashMap<String, u32>, IndexError> {
        use tantivy::DocSet;
        let searcher = self.reader.searcher();
        let io = |e: std::io::Error| IndexError::Io("the index's key terms".into(), e.to_string());
        let mut out: HashMap<String, u32> = HashMap::new();
        for seg in searcher.segment_readers() {
            let inverted = seg.inverted_index(self.fields.key)?;
            let alive = seg.alive_bitset();
            let mut terms = inverted.terms().stream().map_err(io)?;
            while terms.advance() {
                let mut postings = inverted
                    .read_postings_from_terminfo(terms.value(), tantivy::schema::IndexRecordOption::Basic)
                    .map_err(io)?;
                let mut n = 0u32;
                let mut doc = postings.doc();
                while doc != tantivy::TERMINATED {
                    if alive.is_none_or(|a| a.is_alive(doc)) {
                        n += 1;
                    }
                    doc = postings.advance();
                }
                if n > 0 {
                    *out.entry(String::from_utf8_lossy(terms.key()).into_owned()).or_default() += n;
                }
            }
        }
        Ok(out)
    }

    /// The run id the last commit carries (`None` before the first).
    pub fn committed_run(&self) -> Result<Option<i64>, IndexError> {
        let metas = self.index.load_metas()?;
        Ok(metas.payload.as_deref().and_then(|p| p.strip_prefix("run=")).and_then(|r| r.parse().ok()))
    }

    /// The stored record with `key`, if any.
    pub fn record(&self, key: &str) -> Result<Option<Record>, IndexError> {
        let searcher = self.reader.searcher();
        let q = tantivy::query::TermQuery::new(
            Term::from_field_text(self.fields.key, key),
            tantivy::schema::IndexRecordOption::Basic,
        );
        let hits = searcher.search(&q, &tantivy::collector::TopDocs::with_limit(1).order_by_score())?;
        for (_, addr) in hits {
            let doc: TantivyDocument = searcher.doc(addr)?;
            if let Some(j) = doc.get_first(self.fields.json).and_then(|v| v.as_str())
                && let Ok(r) = serde_json::from_str::<Record>(j)
            {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_of_another_schema_is_refused_with_advice_and_rebuilt_by_a_full_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tantivy");
        std::fs::create_dir_all(&path).unwrap();
        let mut b = tantivy::schema::Schema::builder();
        b.add_text_field("other", tantivy::schema::STRING);
        Index::create_in_dir(&path, b.build()).unwrap();
        let e = IndexStore::open(&path).err().expect("refused").to_string();
        assert!(e.contains("dossier index --full"), "{e}");
        assert!(IndexStore::open_for_run(&path, false).is_err());
        let store = IndexStore::open_for_run(&path, true).unwrap();
        assert!(store.index.schema().get_field("view").is_ok());
    }

    #[test]
    fn a_run_merges_its_segments_only_once_it_has_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = IndexStore::open(dir.path()).unwrap();
        let mut w = store.writer(dir.path()).unwrap();
        for n in 0..12 {
            let mut r = Record::new("s", "f", format!("s:f#{n}"), dossier_schema::RecordKind::Page);
            r.text = "words".into();
            store.delete_record(&w, &r.key);
            store.add_record(&w, &r, &[] as &[&str]).unwrap();
            store.commit(&mut w, n).unwrap();
        }
        let segments = || store.reader.searcher().segment_readers().len();
        assert_eq!(segments(), 12, "no merge while the run writes");
        store.finish(w).unwrap();
        assert!(segments() < 12, "merged after: {} segments", segments());
        assert_eq!(store.committed_run().unwrap(), Some(11), "the run's mark stays");
        let counts = store.key_counts().unwrap();
        assert_eq!(counts.len(), 12);
        assert!(counts.values().all(|&n| n == 1), "nothing doubled or lost");
    }

    #[test]
    fn queued_deletes_apply_before_the_documents_added_after_them_and_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = IndexStore::open(dir.path()).unwrap();
        let mut w = store.writer(dir.path()).unwrap();
        let rec = |item: &str, n: usize, text: &str| {
            let mut r = Record::new("s", item, format!("s:{item}#{n}"), dossier_schema::RecordKind::Page);
            r.text = text.into();
            r
        };
        let items: Vec<String> = (0..DELETE_BATCH + 10).map(|i| format!("f{i}")).collect();
        for item in items.iter().take(200) {
            store.add_record(&w, &rec(item, 1, "old"), &[] as &[&str]).unwrap();
            store.add_record(&w, &rec(item, 2, "old"), &[] as &[&str]).unwrap();
        }
        store.commit(&mut w, 1).unwrap();
        // More deletes than one batch, some of items never indexed; then one item comes back.
        for item in &items {
            store.delete_item(&w, "s", item);
        }
        store.add_record(&w, &rec("f1", 1, "new"), &[] as &[&str]).unwrap();
        store.commit(&mut w, 2).unwrap();
        let searcher = store.reader.searcher();
        assert_eq!(searcher.num_docs(), 1, "every old record is gone, the re-added one is there");
        assert_eq!(store.record("s:f1#1").unwrap().map(|r| r.text).as_deref(), Some("new"));
        assert!(store.record("s:f0#2").unwrap().is_none());
    }
}
