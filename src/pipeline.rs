//! One index run: connectors list items → changed items are extracted →
//! entities found → customers resolved → records and profiles indexed →
//! one tantivy commit → the state store records what was done.
//!
//! The tantivy commit comes first: a crash before the state write leaves the
//! items looking new, and the next run replaces their documents (deletes go by
//! item), so nothing is duplicated or lost.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use dossier_connectors::extract::{Extracted, Format};
use dossier_connectors::{Extractor, Known, SourceKind, connector_for};
use dossier_schema::{Item, ItemError, Mention, Payload, Record};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::config::Config;
use crate::entities::Entities;
use crate::extraction::Isolated;
use crate::index::IndexStore;
use crate::resolve::{self, RecordEntities};
use crate::state::{Container, RunCommit, RunReport, SourceReport, State};

/// Errors that stop a run (per-item and per-source problems never do).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The run's temporary record file failed.
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    /// A `--source` named no configured source.
    #[error("no source named `{0}` in the config (see `[[sources]]`)")]
    UnknownSource(String),
    /// The thread reading the stored records failed.
    #[error("reading the stored records failed: {0}")]
    Background(String),
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Re-extract every item, not only new and changed ones.
    pub full: bool,
    /// Only these sources (all when empty).
    pub sources: Vec<String>,
    /// Show progress bars (on a terminal).
    pub progress: bool,
    /// Extract files in worker processes started from this executable
    /// (`dossier extract-worker`); `None` extracts in this process.
    pub isolate: Option<std::path::PathBuf>,
    /// Items not extracted by then wait for the next run (a source's time budget).
    pub deadline: Option<Instant>,
}

/// Paths of the index and state store under the config's index folder.
pub fn paths(cfg: &Config) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = cfg.index_dir();
    (dir.join("tantivy"), dir.join("state.sqlite"))
}

fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// Moved or renamed files: a new file whose version (size and nanosecond modification time,
/// which a rename or `mv` keeps) is that of exactly one vanished file, and no other new file's.
/// Returns (index of the old locator in `known`, index of the new item).
fn find_moves(known: &Known, seen: &[bool], items: &[Item]) -> Vec<(usize, usize)> {
    let mut gone: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (_, version)) in known.iter().enumerate().filter(|(i, _)| !seen[*i]) {
        gone.entry(version.as_str()).or_default().push(i);
    }
    if gone.is_empty() {
        return Vec::new();
    }
    let mut new: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, item) in items.iter().enumerate().filter(|(_, it)| !known.contains_key(it.locator.as_str())) {
        new.entry(item.version.as_str()).or_default().push(i);
    }
    let mut out = Vec::new();
    for (version, news) in new {
        if let ([i], Some([old])) = (news.as_slice(), gone.get(version).map(Vec::as_slice)) {
            out.push((*old, *i));
        }
    }
    // (In the order of the old locators, as the moves were carried over before.)
    let locator = |i: usize| known.get_index(i).map(|(l, _)| l);
    out.sort_by(|a, b| locator(a.0).cmp(&locator(b.0)).then(a.1.cmp(&b.1)));
    out
}

/// The records of item `old`, from the index and the store, keyed under item `new`.
fn carry_over(
    store: &IndexStore,
    state: &State,
    source: &str,
    old: &str,
    new: &str,
) -> Result<Vec<(Record, Vec<Mention>)>, String> {
    let (old_prefix, new_prefix) = (Record::key_for(source, old), Record::key_for(source, new));
    let rekey = |k: &str| k.strip_prefix(&old_prefix).map(|rest| format!("{new_prefix}{rest}"));
    let base = |l: &str| l.rsplit('/').next().unwrap_or(l).to_string();
    let (old_name, new_name) = (base(old), base(new));
    let entities = state.entities_of_item(source, old).map_err(|e| e.to_string())?;
    if entities.is_empty() {
        return Err("no stored records".into());
    }
    let mut out = Vec::with_capacity(entities.len());
    for e in entities {
        let mut r = store.record(&e.key).map_err(|e| e.to_string())?.ok_or("a record is not in the index")?;
        r.key = rekey(&r.key).ok_or("a record key does not start with its item's")?;
        r.item = new.to_string();
        r.parent = r.parent.as_deref().map(|p| rekey(p).unwrap_or_else(|| p.to_string()));
        r.title = r.title.replace(&old_name, &new_name);
        r.mentions.clear();
        out.push((r, e.mentions));
    }
    Ok(out)
}

/// What a source's listing found.
struct Listing {
    /// The connector's report, or why the source could not be listed at all.
    scan: Result<dossier_connectors::ScanReport, String>,
    /// Which of the known items were listed, by their index in the known versions (a table's
    /// listing sees every row): what is not is gone.
    seen: Vec<bool>,
    /// Items listed, and of them new, changed and unchanged ones (by version).
    count: u64,
    new: u64,
    changed: u64,
    unchanged: u64,
}

impl Listing {
    /// A listing that broke off for `reason`.
    fn failed(spec: &dossier_connectors::SourceSpec, reason: String) -> Listing {
        let scan = Err(format!("source `{}`: listing stopped: {reason}", spec.name));
        Listing { scan, seen: Vec::new(), count: 0, new: 0, changed: 0, unchanged: 0 }
    }

    /// Whether every item was listed, so an item not seen is gone.
    fn complete(&self) -> bool {
        matches!(&self.scan, Ok(s) if s.complete)
    }
}

/// Lists a source, handing on its new and changed items (every item in a full run) while
/// `send` returns true.
fn list(
    spec: &dossier_connectors::SourceSpec,
    base: &std::path::Path,
    known: &std::sync::Arc<Known>,
    full: bool,
    send: &mut dyn FnMut(Item) -> bool,
) -> Listing {
    let mut seen = vec![false; known.len()];
    let (mut count, mut new, mut changed, mut unchanged) = (0, 0, 0, 0);
    let scan = connector_for(spec, base)
        .and_then(|mut c| {
            if !full {
                c.set_known(std::sync::Arc::clone(known));
            }
            c.scan(&mut |item| {
                count += 1;
                let entry = known.get_full(item.locator.as_str());
                let version = entry.map(|(i, _, v)| {
                    seen[i] = true;
                    v
                });
                match version {
                    Some(v) if *v == item.version && !full => {
                        unchanged += 1;
                        true
                    }
                    Some(_) => {
                        changed += 1;
                        send(item)
                    }
                    None => {
                        new += 1;
                        send(item)
                    }
                }
            })
        })
        .map_err(|e| e.to_string());
    Listing { scan, seen, count, new, changed, unchanged }
}

/// Puts a listing's counts and errors in the source's report and, when the listing is complete,
/// deletes what it did not see: an unreachable silo must not empty the index.
fn finish_listing(
    sr: &mut SourceReport,
    report: &mut RunReport,
    spec: &dossier_connectors::SourceSpec,
    listing: Listing,
    known: &Known,
    mut delete: impl FnMut(&str),
) {
    (sr.seen, sr.new, sr.changed, sr.unchanged) = (listing.count, listing.new, listing.changed, listing.unchanged);
    match listing.scan {
        Ok(scan) => {
            sr.complete = scan.complete;
            report.errors.extend(scan.errors);
            sr.reconnects = scan.reconnects;
        }
        Err(e) => {
            tracing::warn!("{e}");
            sr.error = Some(e.clone());
            report.errors.push(ItemError { source: spec.name.clone(), locator: spec.location.clone(), reason: e });
        }
    }
    if sr.complete && sr.error.is_none() {
        for (locator, _) in known.iter().zip(&listing.seen).filter(|(_, seen)| !**seen).map(|(k, _)| k) {
            delete(locator);
            sr.deleted += 1;
        }
    }
}

/// An item's records and, index for index, each one's mentions.
type WithMentions = (Extracted, Vec<Vec<Mention>>);

/// Extracted items waiting to be spooled: enough to keep both cores busy, few enough that
/// their records are a small part of memory.
const EXTRACT_QUEUE: usize = 64;

/// Items the failure share is measured over.
const FAILURE_WINDOW: usize = 200;

/// Watches a source's item failures as they come and trips when they pass its limits, so a
/// source that fails everything (a dead share, a missing tool) stops instead of grinding on.
struct FailureGate {
    max_consecutive: usize,
    max_share: f64,
    state: std::sync::Mutex<(usize, std::collections::VecDeque<bool>)>,
    tripped: std::sync::OnceLock<String>,
}

impl FailureGate {
    fn new(limits: &dossier_connectors::Limits) -> FailureGate {
        FailureGate {
            max_consecutive: limits.max_consecutive_failures,
            max_share: limits.max_failure_share,
            state: std::sync::Mutex::new((0, std::collections::VecDeque::with_capacity(FAILURE_WINDOW))),
            tripped: std::sync::OnceLock::new(),
        }
    }

    /// Records one item's outcome.
    fn record(&self, failed: bool) {
        let Ok(mut st) = self.state.lock() else { return };
        let (consecutive, window) = &mut *st;
        *consecutive = if failed { *consecutive + 1 } else { 0 };
        if window.len() == FAILURE_WINDOW {
            window.pop_front();
        }
        window.push_back(failed);
        let failures = window.iter().filter(|f| **f).count();
        let why = if self.max_consecutive > 0 && *consecutive >= self.max_consecutive {
            Some(format!("{consecutive} items failed in a row"))
        } else if window.len() == FAILURE_WINDOW && failures as f64 > self.max_share * FAILURE_WINDOW as f64 {
            Some(format!("{failures} of the last {FAILURE_WINDOW} items failed"))
        } else {
            None
        };
        if let Some(why) = why {
            let _ = self.tripped.set(format!(
                "stopped: {why} (limits.max_consecutive_failures {}, limits.max_failure_share {}); see the failed items' reasons, fix the cause and run again",
                self.max_consecutive, self.max_share
            ));
        }
    }

    fn tripped(&self) -> Option<&String> {
        self.tripped.get()
    }
}

/// Extracts one item (a database row's records are taken from it); a panic inside a parser
/// costs this item only, and with workers so do hangs and memory blow-ups.
/// With `append`, only the messages or rows appended to a mailbox or CSV file are read.
fn extract_item(
    x: &Extractor,
    item: &mut Item,
    pool: Option<&Isolated>,
    append: Option<&Append>,
) -> Result<Extracted, String> {
    let tail = append.map(|a| (a.offset, a.after.len, a.before));
    match (&mut item.payload, pool) {
        (Payload::Records(rs), _) => Ok(Extracted { records: std::mem::take(rs), ..Default::default() }),
        (Payload::File(path), Some(pool)) => {
            pool.extract(x, &item.locator, path, tail, std::time::Duration::from_secs(x.limits.timeout_secs.max(1)))
        }
        (Payload::File(path), None) => {
            let read = || match tail {
                Some((offset, end, before)) => x.extract_tail(&item.locator, path, (offset, end), before),
                None => x.extract_file(&item.locator, path),
            };
            match std::panic::catch_unwind(AssertUnwindSafe(read)) {
                Ok(Ok(e)) => Ok(e),
                Ok(Err(e)) => Err(e.to_string()),
                Err(p) => Err(crate::extraction::panic_reason(p.as_ref())),
            }
        }
    }
}

/// A mailbox or CSV file that only grew since it was indexed: where the new messages or rows
/// start, how many came before them, and what will have been indexed once they are read.
struct Append {
    offset: u64,
    before: usize,
    after: Container,
}

/// A file's bytes read once through BLAKE3 and, once `text` is set, checked to be UTF-8.
struct Digest {
    hash: blake3::Hasher,
    /// Check the bytes from now on.
    text: bool,
    /// A character cut by the end of the last chunk.
    carry: Vec<u8>,
    /// No invalid UTF-8 seen.
    utf8: bool,
    /// The last byte read.
    last: Option<u8>,
}

impl Digest {
    fn new() -> Digest {
        Digest { hash: blake3::Hasher::new(), text: false, carry: Vec::new(), utf8: true, last: None }
    }

    /// Reads exactly `len` more bytes of `f`; `None` when the file ends or fails first.
    fn read(&mut self, f: &mut std::fs::File, len: u64) -> Option<()> {
        use std::io::Read;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let n = f.read(&mut buf[..want]).ok()?;
            if n == 0 {
                return None;
            }
            self.update(&buf[..n]);
            left -= n as u64;
        }
        Some(())
    }

    fn update(&mut self, b: &[u8]) {
        self.hash.update(b);
        self.last = b.last().copied().or(self.last);
        if self.text && self.utf8 {
            let joined;
            let bytes = if self.carry.is_empty() {
                b
            } else {
                joined = [self.carry.as_slice(), b].concat();
                &joined
            };
            match std::str::from_utf8(bytes) {
                Ok(_) => self.carry.clear(),
                Err(e) if e.error_len().is_none() => self.carry = bytes[e.valid_up_to()..].to_vec(),
                Err(_) => self.utf8 = false,
            }
        }
    }

    /// Whether the bytes checked were whole UTF-8 text.
    fn is_text(&self) -> bool {
        self.utf8 && self.carry.is_empty()
    }

    fn hex(&self) -> String {
        self.hash.finalize().to_hex().to_string()
    }
}

/// The format of the file at `path`, from its first bytes and its name.
fn format_of(locator: &str, f: &mut std::fs::File) -> Option<Format> {
    use std::io::{Read, Seek};
    let mut head = [0u8; 1024];
    let n = f.read(&mut head).ok()?;
    f.seek(std::io::SeekFrom::Start(0)).ok()?;
    dossier_connectors::extract::sniff(locator, &head[..n])
}

/// Reads `path` once: whether it starts with the bytes indexed as `old` (same BLAKE3), ending a
/// line, and goes on with a new message (`From `) for a mailbox, or with whole UTF-8 lines for a
/// CSV file; then what its first `len` bytes (its size now) hold. A mailbox's writer still
/// appending leaves the rest for the next run; a CSV file cut mid-line is read whole.
fn appended(locator: &str, path: &std::path::Path, old: &Container, max_bytes: u64) -> Option<Append> {
    use std::io::Read;
    let len = std::fs::metadata(path).ok()?.len();
    if len <= old.len || len > max_bytes {
        return None;
    }
    let mut f = std::fs::File::open(path).ok()?;
    let format = format_of(locator, &mut f)?;
    let mut d = Digest::new();
    d.read(&mut f, old.len)?;
    if d.hex() != old.head || d.last != Some(b'\n') {
        return None;
    }
    let mut rest = len - old.len;
    match format {
        Format::Mbox => {
            let mut from = [0u8; 5];
            f.read_exact(&mut from).ok()?;
            if &from != b"From " {
                return None;
            }
            d.update(&from);
            rest -= from.len() as u64;
        }
        Format::Csv => d.text = true,
        _ => return None,
    }
    d.read(&mut f, rest)?;
    if format == Format::Csv && !(d.is_text() && d.last == Some(b'\n')) {
        return None;
    }
    Some(Append {
        offset: old.len,
        before: old.messages,
        after: Container { len, head: d.hex(), messages: old.messages },
    })
}

/// What is indexed of the mailbox or CSV file at `path` once `ex` (its messages or rows) is:
/// `None` when the file is neither, cannot be read, or is no longer the `listed` bytes long (it
/// changed while it was read: the next run reads it in full again). A CSV file is read in parts
/// only when it is UTF-8 text in whole lines with more rows than its header is looked for in.
fn container(item: &Item, path: &std::path::Path, item_key: &str, ex: &Extracted) -> Option<Container> {
    let listed = item.size;
    // Only a file whose records are messages (`KEY/mN`), or a CSV file's rows, can be one;
    // others are not opened again.
    let messages = format!("{item_key}/m");
    let mailbox = ex.records.iter().any(|r| r.key.starts_with(&messages));
    let rows = ex.rows.filter(|&n| n > dossier_connectors::sheet::HEADER_ROWS);
    if !mailbox && rows.is_none() {
        return None;
    }
    let mut f = std::fs::File::open(path).ok()?;
    if f.metadata().ok()?.len() != listed {
        return None;
    }
    let format = format_of(&item.locator, &mut f)?;
    let mut d = Digest::new();
    d.text = format == Format::Csv;
    d.read(&mut f, listed)?;
    let parts = match (format, rows) {
        (Format::Mbox, _) if mailbox => messages_in(item_key, &ex.records, 0),
        (Format::Csv, Some(rows)) if d.is_text() && d.last == Some(b'\n') => rows,
        _ => return None,
    };
    Some(Container { len: listed, head: d.hex(), messages: parts })
}

/// The highest message number among `records` of mailbox `item_key` (`KEY/mN…`), at least `floor`.
fn messages_in(item_key: &str, records: &[Record], floor: usize) -> usize {
    let prefix = format!("{item_key}/m");
    records
        .iter()
        .filter_map(|r| r.key.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('/').next()?.parse::<usize>().ok())
        .fold(floor, usize::max)
}

/// Runs one index pass and returns its report.
pub fn run(cfg: &Config, opts: &RunOptions) -> Result<RunReport, RunError> {
    let t0 = Instant::now();
    for s in &opts.sources {
        if cfg.source(s).is_none() {
            return Err(RunError::UnknownSource(s.clone()));
        }
    }
    let (index_dir, state_path) = paths(cfg);
    // A full run of every source re-reads everything, so it may rebuild an outdated index.
    let store = IndexStore::open_for_run(&index_dir, opts.full && opts.sources.is_empty())?;
    let mut writer = store.writer(&index_dir)?;
    let mut state = State::open(&state_path)?;
    // This process holds the index lock, so a run still marked running was killed.
    let interrupted = state.mark_interrupted()?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "an earlier run was interrupted; this run finishes its work");
    }
    let (run_id, started) = state.begin_run(opts.full)?;
    // What the last incremental run left in the WAL goes back into the store on a core of its
    // own while this run lists (see below).
    let checkpoint = {
        let path = state_path.clone();
        std::thread::spawn(move || State::open(&path)?.checkpoint_passive())
    };
    let entities = Entities::new(cfg);
    // Built now, on the core left idle while the item versions are read, not by the first
    // extraction beside the stored records' read.
    std::thread::spawn(crate::entities::warm_up);

    let mut commit = RunCommit { run: run_id, ..Default::default() };
    let mut report =
        RunReport { id: run_id, started, status: "completed".into(), full: opts.full, ..Default::default() };
    // This run's records: their text waits on disk, their entities (source, item, entities) stay
    // here for resolution and become the state store's rows.
    let mut spool = crate::spool::Spool::new(&index_dir)?;
    let mut fresh: Vec<(String, String, RecordEntities)> = Vec::new();
    // An incremental resolution reads every stored record: once this run is known to change
    // something, they are read on another thread while extraction goes on (a run that changes
    // nothing never reads them).
    let memo = if opts.full { None } else { state.resolution_memo()? };
    // An incremental run writes a few percent of the store: its WAL is checkpointed by the next
    // run (above) or the server, not while this one's caller waits. A run that writes all of
    // it checkpoints at its commit, so that no run starts with a whole store to copy.
    if memo.is_some() {
        state.defer_checkpoints()?;
    }
    let mut prefetch = Prefetch::new(memo.is_some().then(|| state_path.clone()));
    let mut add_fresh = |spool: &mut crate::spool::Spool, r: Record, mentions: Vec<Mention>| {
        prefetch.begin();
        spool.push(&r)?;
        let e = RecordEntities { key: r.key, kind: r.kind, parent: r.parent, mentions };
        fresh.push((r.source, r.item, e));
        Ok::<(), RunError>(())
    };
    // Items of earlier runs whose stored records this run replaces or removes. An item no run
    // stored has no records to replace, so a first run of a large source keeps none here.
    let mut touched_items = Touched::default();

    for spec in cfg.sources.iter().filter(|s| opts.sources.is_empty() || opts.sources.contains(&s.name)) {
        let ts = Instant::now();
        let mut sr = SourceReport { source: spec.name.clone(), ..Default::default() };
        let known = std::sync::Arc::new(state.item_versions(&spec.name)?);
        // A database's rows go to extraction while the table is read: nothing there can move, and
        // a table of millions of rows must not wait whole in memory. A folder is listed first,
        // because a moved file is found by comparing the whole listing with the last one.
        let streamed = !matches!(spec.kind, SourceKind::Files | SourceKind::Tickets);
        let mut items: Vec<Item> = Vec::new();
        let mut listing: Option<Listing> = None;
        let t_list = Instant::now();
        if !streamed {
            listing = Some(list(spec, &cfg.base, &known, opts.full, &mut |item| {
                items.push(item);
                true
            }));
        }
        // What is indexed of this source's mailboxes and CSV files: moved ones take it along, grown ones are
        // read from where it ends.
        let indexed_parts = if streamed { HashMap::new() } else { state.containers(&spec.name)? };
        let mut carried: HashSet<usize> = HashSet::new();
        if let Some(l) = listing.as_mut().filter(|l| l.complete()) {
            // Moves first: their records are carried over to the new name, not read again.
            for (o, i) in find_moves(&known, &l.seen, &items) {
                let (Some((old, _)), item) = (known.get_index(o), &items[i]) else { continue };
                let old = old.to_string();
                match carry_over(&store, &state, &spec.name, &old, &item.locator) {
                    Ok(records) => {
                        store.delete_item(&writer, &spec.name, &old);
                        commit.removed_items.push((spec.name.clone(), old.clone()));
                        commit.items.push((spec.name.clone(), item.locator.clone(), item.version.clone()));
                        touched_items.insert(&spec.name, old.clone());
                        for (r, m) in records {
                            add_fresh(&mut spool, r, m)?;
                        }
                        // A moved mailbox keeps what was indexed of it: a message appended to it
                        // later is still read alone.
                        if let Some(k) = indexed_parts.get(&old) {
                            commit.containers.push((spec.name.clone(), item.locator.clone(), k.clone()));
                        }
                        // Handled: not a delete.
                        l.seen[o] = true;
                        carried.insert(i);
                        sr.moved += 1;
                        l.new -= 1;
                    }
                    // Read it again under its new name; the old one is deleted below.
                    Err(e) => tracing::debug!(source = spec.name, old, new = item.locator, "not carried over: {e}"),
                }
            }
        }
        if let Some(l) = listing.take() {
            finish_listing(&mut sr, &mut report, spec, l, &known, |locator| {
                store.delete_item(&writer, &spec.name, locator);
                commit.removed_items.push((spec.name.clone(), locator.to_string()));
                touched_items.insert(&spec.name, locator.to_string());
            });
            stage(&mut report, "listing", t_list);
        }
        let t_extract = Instant::now();
        // Mailboxes and CSV files that only grew: their new messages or rows are read alone.
        let appends: HashMap<usize, Append> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| !opts.full && matches!(spec.kind, SourceKind::Files) && !carried.contains(i))
            .filter_map(|(i, item)| {
                let Payload::File(path) = &item.payload else { return None };
                let old = indexed_parts.get(&item.locator)?;
                appended(&item.locator, path, old, spec.limits.max_file_bytes).map(|a| (i, a))
            })
            .collect();
        let x = Extractor::new(spec);
        let pool = opts.isolate.as_ref().map(|exe| {
            let size = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
            Isolated::new(exe.clone(), size, spec.limits.memory_mib)
        });
        let pb = bar(opts.progress, (items.len() - carried.len()) as u64, &spec.name);
        if streamed {
            // The table's size is not known ahead: rows so far and their rate, no bar or ETA.
            pb.set_style(
                ProgressStyle::with_template("{msg:>12} {spinner} {human_pos} rows in {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
        }
        // `None`: the time budget was spent, or the failures passed the source's limits, before
        // this item; it stays as it was, to be extracted by the next run.
        let gate = FailureGate::new(&spec.limits);
        // Both cores extract while this thread spools what they found, through a bounded queue:
        // a source's memory is a few items' records, not the whole source's. Failures wait
        // until every item is done: whether the source stopped decides what they cost.
        let mut failures: Vec<(usize, Item, String)> = Vec::new();
        let mut warnings: Vec<(usize, ItemError)> = Vec::new();
        let stop = std::sync::atomic::AtomicBool::new(false);
        type Done = (usize, Item, Option<Result<WithMentions, String>>);
        let extract = |feed: &mut (dyn Iterator<Item = (usize, Item)> + Send),
                       tx: std::sync::mpsc::SyncSender<Done>| {
            feed.par_bridge().for_each_with(tx, |tx, (i, mut item)| {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let out = if opts.deadline.is_some_and(|d| Instant::now() >= d) || gate.tripped().is_some() {
                    None
                } else {
                    // An item to read again: the run changes something. (Begun here rather than
                    // at its first record, which waits for the extractor's first use: 0.3 s.)
                    prefetch.begin();
                    let r = extract_item(&x, &mut item, pool.as_ref(), appends.get(&i));
                    gate.record(r.is_err());
                    pb.inc(1);
                    Some(r.map(|ex| {
                        let m = ex.records.par_iter().map(|r| entities.mentions(r)).collect();
                        (ex, m)
                    }))
                };
                if tx.send((i, item, out)).is_err() {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Done>(EXTRACT_QUEUE);
        let streamed_listing = std::thread::scope(|scope| {
            let lister = if streamed {
                let (item_tx, item_rx) = std::sync::mpsc::sync_channel::<Item>(EXTRACT_QUEUE);
                let (stop, pb, known, base) = (&stop, &pb, &known, &cfg.base);
                let lister = scope.spawn(move || {
                    list(spec, base, known, opts.full, &mut |item| {
                        pb.inc_length(1);
                        !stop.load(std::sync::atomic::Ordering::Relaxed) && item_tx.send(item).is_ok()
                    })
                });
                scope.spawn(move || extract(&mut item_rx.into_iter().enumerate(), tx));
                Some(lister)
            } else {
                let mut feed = std::mem::take(&mut items).into_iter().enumerate().filter(|(i, _)| !carried.contains(i));
                scope.spawn(move || extract(&mut feed, tx));
                None
            };
            let mut consume = || -> Result<(), RunError> {
                for (i, item, res) in &rx {
                    let (ex, mentions) = match res {
                        None => {
                            sr.deferred += 1;
                            continue;
                        }
                        Some(Err(reason)) => {
                            failures.push((i, item, reason));
                            continue;
                        }
                        Some(Ok(done)) => done,
                    };
                    let appended_to = appends.get(&i);
                    if let Some(a) = appended_to {
                        // Appended messages: the mailbox's other records stay as they are.
                        let item_key = Record::key_for(&spec.name, &item.locator);
                        let parts = ex.rows.unwrap_or_else(|| messages_in(&item_key, &ex.records, a.before));
                        let after = Container { messages: parts, ..a.after.clone() };
                        commit.containers.push((spec.name.clone(), item.locator.clone(), after));
                        commit.appended_items.push((spec.name.clone(), item.locator.clone(), item.version.clone()));
                        sr.appended += 1;
                        // A run killed after its index commit but before the store's left these in the
                        // index already: replaced, not doubled.
                        for r in &ex.records {
                            store.delete_record(&writer, &r.key);
                        }
                    } else {
                        store.delete_item(&writer, &spec.name, &item.locator);
                        if known.contains_key(item.locator.as_str()) {
                            touched_items.insert(&spec.name, item.locator.clone());
                        }
                        if let Payload::File(path) = &item.payload
                            && let Some(k) = container(&item, path, &Record::key_for(&spec.name, &item.locator), &ex)
                        {
                            commit.containers.push((spec.name.clone(), item.locator.clone(), k));
                        }
                        commit.items.push((spec.name.clone(), item.locator, item.version));
                    }
                    warnings.extend(ex.warnings.into_iter().map(|w| (i, w)));
                    sr.records += ex.records.len() as u64;
                    for (r, m) in ex.records.into_iter().zip(mentions) {
                        add_fresh(&mut spool, r, m)?;
                    }
                }
                Ok(())
            };
            let consumed = consume();
            // A failed spool write stops the extraction (and a database's listing) instead of
            // leaving them to finish.
            stop.store(consumed.is_err(), std::sync::atomic::Ordering::Relaxed);
            drop(rx);
            let listing = lister.map(|l| {
                l.join().unwrap_or_else(|p| Listing::failed(spec, crate::extraction::panic_reason(p.as_ref())))
            });
            consumed.map(|()| listing)
        })?;
        if let Some(l) = streamed_listing {
            finish_listing(&mut sr, &mut report, spec, l, &known, |locator| {
                store.delete_item(&writer, &spec.name, locator);
                commit.removed_items.push((spec.name.clone(), locator.to_string()));
                touched_items.insert(&spec.name, locator.to_string());
            });
        }
        warnings.sort_by_key(|(i, _)| *i);
        report.errors.extend(warnings.into_iter().map(|(_, w)| w));
        failures.sort_by_key(|(i, _, _)| *i);
        sr.stopped = gate.tripped().cloned();
        pb.finish_and_clear();
        for (i, item, reason) in failures {
            sr.failed += 1;
            report.errors.push(ItemError { source: spec.name.clone(), locator: item.locator.clone(), reason });
            // The source stopped: the cause is likely the source's, not the item's, so the item
            // keeps what it had (in the index and the store) until a run reads it. So does a
            // mailbox whose appended messages could not be read.
            if sr.stopped.is_some() || appends.contains_key(&i) {
                continue;
            }
            store.delete_item(&writer, &spec.name, &item.locator);
            if known.contains_key(item.locator.as_str()) {
                touched_items.insert(&spec.name, item.locator.clone());
            }
            // A failed item is remembered with its version so an unchanged bad file is not retried every run.
            commit.items.push((spec.name.clone(), item.locator, item.version));
        }
        stage(&mut report, "extraction", t_extract);
        if let Some(why) = &sr.stopped {
            tracing::warn!(source = spec.name, "{why}");
            if opts.progress {
                crate::tell(format_args!("{:>12}  {why}", spec.name));
            }
        } else if sr.deferred > 0 {
            tracing::warn!(
                source = spec.name,
                deferred = sr.deferred,
                "the source's time budget ran out; the items left wait for the next run"
            );
        }
        sr.millis = ts.elapsed().as_millis() as u64;
        if opts.progress {
            crate::tell(format_args!(
                "{:>12}  {} items: {} new, {} changed, {} unchanged, {} moved, {} deleted, {} failed; {} records",
                sr.source, sr.seen, sr.new, sr.changed, sr.unchanged, sr.moved, sr.deleted, sr.failed, sr.records
            ));
        }
        report.sources.push(sr);
        // Items deleted (or failed) without a fresh record: the stored ones are needed too.
        if !touched_items.is_empty() {
            prefetch.begin();
        }
    }

    // Nothing added, changed or removed, and the customer documents were written for these
    // roles: the customers stand as they are, and resolution has nothing to do.
    let views = crate::access::views(cfg);
    let fingerprint = crate::access::views_fingerprint(&views);
    let views_current = state.meta("views")?.as_deref() == Some(fingerprint.as_str());
    if touched_items.is_empty() && fresh.is_empty() && memo.is_some() && views_current {
        let t = Instant::now();
        store.commit(&mut writer, run_id)?;
        stage(&mut report, "commit", t);
        let t = Instant::now();
        report.customers = state.customer_count()?;
        report.millis = t0.elapsed().as_millis() as u64;
        commit.report = report.clone();
        checkpointed(checkpoint);
        state.commit_run(&commit)?;
        stage(&mut report, "state_commit", t);
        let t = Instant::now();
        merge(&store, writer);
        stage(&mut report, "merging", t);
        report.millis = t0.elapsed().as_millis() as u64;
        return Ok(report);
    }

    // Resolution over every record: the stored ones not replaced this run, plus the fresh ones.
    let t = Instant::now();
    let mut replaced: Vec<RecordEntities> = Vec::new();
    // The kept records take the place of what was read, in the same allocation (a million
    // records are 100 MB, and fresh memory is what costs most here: BENCHMARKS.md).
    let mut keep = |touched: bool, e: RecordEntities| {
        if touched {
            replaced.push(e);
            return None;
        }
        Some(e)
    };
    let (stored, mut old_links): (Vec<RecordEntities>, _) = match prefetch.take()? {
        Some(l) => {
            let sources = &l.sources;
            let stored = (l.entities.into_iter())
                .filter_map(|((s, item), e)| keep(touched_items.contains(&sources[s as usize], &item), e))
                .collect();
            (stored, l.links)
        }
        None => {
            // The old versions of re-read items matter only to an incremental resolution (the memo).
            let class = |source: &str, item: &str| {
                let touched = touched_items.contains(source, item);
                (memo.is_some() || !touched).then_some(touched)
            };
            let stored = (state.all_entities(class)?.into_iter()).filter_map(|(touched, e)| keep(touched, e)).collect();
            (stored, state.all_links()?)
        }
    };
    let mut all: Vec<&RecordEntities> = stored.iter().chain(fresh.iter().map(|(_, _, e)| e)).collect();
    // Resolution is order-sensitive at ties: the same records in the same order give
    // the same customers, whether this run is full or incremental.
    all.sort_by(|a, b| a.key.cmp(&b.key));
    // What resolution sees as changed: new records, records whose entities differ from their
    // stored version, and removed ones. A re-read file whose rows say what they said is not.
    let mut old_versions: HashMap<String, RecordEntities> = replaced.into_iter().map(|e| (e.key.clone(), e)).collect();
    let mut changed_keys: rustc_hash::FxHashSet<String> = Default::default();
    for (_, _, e) in &fresh {
        if old_versions.get(&e.key).is_some_and(|o| o == e) {
            old_versions.remove(&e.key);
        } else {
            changed_keys.insert(e.key.clone());
        }
    }
    let replaced: Vec<RecordEntities> = old_versions.into_values().collect();
    // An incremental run reuses the model of the last full resolution while the records
    // changed since are under a tenth of them; then resolution learns it again.
    let changed = (changed_keys.len() + replaced.iter().filter(|e| !changed_keys.contains(&e.key)).count()) as u64;
    let kept = memo.as_ref().and_then(|m| {
        let model: resolve::Model = serde_json::from_str(m.model.as_deref()?).ok()?;
        let drift = m.drift.saturating_add(changed);
        (drift <= model.records as u64 / 10).then_some((model, drift, m))
    });
    let mut previous = resolve::Previous::default();
    let plan = match &kept {
        Some((model, _, memo)) => {
            previous = resolve::Previous {
                fresh: changed_keys,
                replaced,
                generic: memo.generic.iter().cloned().collect(),
                // Lent for the run, given back below.
                links: std::mem::take(&mut old_links),
                // New views: every customer's documents are written again.
                every_customer: !views_current,
            };
            resolve::Plan::Incremental(model, &previous)
        }
        None => {
            drop(replaced);
            resolve::Plan::Estimate(&resolve::Weights::default())
        }
    };
    stage(&mut report, "load_stored", t);
    let t = Instant::now();
    let mut resolution = resolve::resolve(&all, plan);
    if kept.is_some() {
        old_links = std::mem::take(&mut previous.links);
    }
    // (Its replaced records and link exceptions: freed on another core.)
    rayon::spawn(move || drop(previous));
    tracing::debug!(
        estimated = resolution.weights.estimated,
        pairs = resolution.weights.pairs,
        match_share = resolution.weights.match_share,
        resolved = resolution.resolved,
        observations = resolution.observations,
        "match weights\n{}",
        resolution.weights.describe()
    );
    report.resolved = resolution.resolved as u64;
    report.observations = resolution.observations as u64;
    commit.resolution = Some(crate::state::ResolutionMemo {
        model: match &resolution.learnt {
            Some(m) => Some(serde_json::to_string(m).map_err(crate::state::StateError::from)?),
            None => None,
        },
        drift: kept.as_ref().map_or(0, |k| k.1),
        generic: resolution.generic.iter().map(|(v, _)| v.clone()).collect(),
    });
    stage(&mut report, "resolution", t);
    let t = Instant::now();

    // Records of this run, with their customers.
    drop(all);
    let pb = bar(opts.progress, fresh.len() as u64, "indexing");
    for (r, (_, _, e)) in spool.into_records()?.zip(&fresh) {
        let mut r = r?;
        r.mentions.clone_from(&e.mentions);
        let ids = resolution.links.get(r.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        store.add_record(&writer, &r, ids)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    stage(&mut report, "index_writing", t);
    let t = Instant::now();
    // Unchanged records whose customers changed are rewritten from their stored copy.
    let empty = Vec::new();
    let new = |key: &str| resolution.links.get(key).unwrap_or(&empty);
    // (Each stored record's row of the last run's links, by a merge: both are in key order.)
    let old_rows = match &resolution.relinked {
        Some(_) => Vec::new(),
        None => old_links.rows_of(stored.iter().map(|e| e.key.as_str())),
    };
    let moved = |i: usize, key: &str| match &resolution.relinked {
        // An incremental resolution compared every record's links with these already.
        Some(keys) => keys.contains(key),
        None => match old_rows[i] {
            Some(r) => !old_links.ids(r as usize).eq(new(key).iter().map(|id| id.as_str())),
            None => !new(key).is_empty(),
        },
    };
    // Found and read back from the index on every core (a 1% delete rewrites 2,000 records,
    // each a lookup and a document to decode); deleted together, then added.
    let rewrite: Vec<(&str, Record)> = stored
        .par_iter()
        .enumerate()
        .filter(|(i, e)| moved(*i, &e.key))
        .map(|(_, e)| e)
        .filter_map(|e| store.record(&e.key).map(|r| r.map(|r| (e.key.as_str(), r))).transpose())
        .collect::<Result<_, _>>()?;
    for (key, _) in &rewrite {
        store.delete_record(&writer, key);
    }
    for (key, r) in &rewrite {
        store.add_record(&writer, r, new(key))?;
    }
    tracing::debug!(rewritten = rewrite.len(), "records relinked");
    drop(rewrite);
    // A million records take a while to free: on another core, while this one writes.
    rayon::spawn(move || drop(stored));
    // The customers whose documents and stored rows change: after an incremental resolution,
    // those resolved again, those a record now or no longer links to, and those gone; every
    // one after a full resolution, or when the roles' views changed.
    let changed: Option<HashSet<String>> = resolution.changed.take();
    store.replace_customers(&writer, &resolution.customers, &resolution.sources, &views, changed.as_ref())?;
    commit.views = Some(fingerprint);

    // Redirects: an old id whose records now live under another id points there.
    let new_ids: rustc_hash::FxHashSet<&str> = resolution
        .customers
        .iter()
        .map(|c| c.id.as_str())
        .chain(resolution.unchanged.iter().map(String::as_str))
        .collect();
    let mut old_members: HashMap<&str, Vec<&str>> = HashMap::new();
    // A record that linked to a customer gone links elsewhere or nowhere now: after an
    // incremental resolution, it is one of the relinked.
    let before: Box<dyn Iterator<Item = usize>> = match &resolution.relinked {
        Some(keys) => Box::new(keys.iter().filter_map(|k| old_links.find(k))),
        None => Box::new(0..old_links.len()),
    };
    for row in before {
        for id in old_links.ids(row).filter(|id| !new_ids.contains(id)) {
            old_members.entry(id).or_default().push(old_links.key(row));
        }
    }
    for (old, keys) in old_members {
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for k in keys {
            for id in resolution.links.get(k).into_iter().flatten() {
                *votes.entry(id.as_str()).or_default() += 1;
            }
        }
        if let Some((new, _)) = votes.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))) {
            commit.redirects.push((old.to_string(), new.to_string()));
        }
    }
    rayon::spawn(move || drop(old_links));

    stage(&mut report, "relinking", t);
    let t = Instant::now();
    report.customers = (resolution.customers.len() + resolution.unchanged.len()) as u64;
    commit.customers = Some(match &changed {
        Some(ids) => resolution.customers.into_iter().filter(|c| ids.contains(&c.id)).collect(),
        None => resolution.customers,
    });
    commit.customers_replaced = changed.map(|ids| ids.into_iter().collect());
    commit.records = fresh;
    commit.report = report.clone();
    checkpointed(checkpoint);
    // The index commits on another core while the state store's rows are written; the store
    // commits only once the index has, as it did after it (tests/crash.rs).
    let (indexed, pending) = std::thread::scope(|s| {
        let index = s.spawn(|| store.commit(&mut writer, run_id));
        let pending = state.begin_commit(&commit);
        (index.join(), pending)
    });
    indexed.map_err(|p| RunError::Background(crate::extraction::panic_reason(p.as_ref())))??;
    let pending = pending?;
    // (Both commits' work; `state_commit` is what is left of the store's.)
    stage(&mut report, "commit", t);
    let t = Instant::now();
    report.millis = t0.elapsed().as_millis() as u64;
    pending.finish(&report)?;
    // The stored report was written above; the caller's copy also times that write and the merges.
    stage(&mut report, "state_commit", t);
    let t = Instant::now();
    merge(&store, writer);
    stage(&mut report, "merging", t);
    report.millis = t0.elapsed().as_millis() as u64;
    Ok(report)
}

/// Waits for the checkpoint begun at the run's start, so that this run's commit writes the WAL
/// from its start. A failed one loses nothing (the WAL stays; the next run tries again): logged.
fn checkpointed(h: std::thread::JoinHandle<Result<(), crate::state::StateError>>) {
    match h.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("checkpointing the state store: {e}; the next run tries again"),
        Err(p) => tracing::warn!("checkpointing the state store: {}", crate::extraction::panic_reason(p.as_ref())),
    }
}

/// Merges the index's segments after a run has committed; a failure there loses nothing (the
/// run is committed, the next run merges), so it is logged, not returned.
fn merge(store: &IndexStore, writer: tantivy::IndexWriter<tantivy::TantivyDocument>) {
    if let Err(e) = store.finish(writer) {
        tracing::warn!("merging the index's segments failed: {e}; the next run merges them");
    }
}

/// The stored records an incremental run resolves with, read on a thread of their own while
/// the run lists and extracts (see [`State::read_stored_in_background`]): a 1% run's extraction
/// is mostly a database's listing, on one core.
struct Prefetch {
    /// The state store to read; `None` when the run needs no stored records read ahead.
    path: Option<std::path::PathBuf>,
    /// Shared, so that the threads that find changes (extraction, spooling) can start the read.
    handle: std::sync::OnceLock<StoredRead>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The thread reading the stored records.
type StoredRead = std::thread::JoinHandle<Result<Option<crate::state::StoredRecords>, crate::state::StateError>>;

impl Prefetch {
    /// Ready to read the store at `path`; with `None`, reads nothing.
    fn new(path: Option<std::path::PathBuf>) -> Prefetch {
        Prefetch { path, handle: std::sync::OnceLock::new(), stop: Default::default() }
    }

    /// Starts the read, unless it has started.
    fn begin(&self) {
        if let Some(p) = &self.path {
            self.handle.get_or_init(|| State::read_stored_in_background(p, self.stop.clone()));
        }
    }

    /// What was read, waiting for the end of the read; `None` when no read was started.
    fn take(&mut self) -> Result<Option<crate::state::StoredRecords>, RunError> {
        let Some(h) = self.handle.take() else { return Ok(None) };
        Ok(h.join().map_err(|p| RunError::Background(crate::extraction::panic_reason(p.as_ref())))??)
    }
}

impl Drop for Prefetch {
    /// A run that ends early (an error) stops the read too.
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Items of earlier runs whose stored records a run replaces or removes, by source (looked up
/// for every stored record, without building a key).
#[derive(Default)]
struct Touched(HashMap<String, HashSet<String>>);

impl Touched {
    fn insert(&mut self, source: &str, item: String) {
        self.0.entry(source.to_string()).or_default().insert(item);
    }

    fn contains(&self, source: &str, item: &str) -> bool {
        self.0.get(source).is_some_and(|items| items.contains(item))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Adds the time since `since` to a stage of the run's report.
fn stage(report: &mut RunReport, name: &str, since: Instant) {
    *report.stages.entry(name.to_string()).or_default() += since.elapsed().as_millis() as u64;
    if tracing::enabled!(tracing::Level::DEBUG) {
        let (rss, peak) = crate::bench::memory_mib();
        tracing::debug!("stage {name}: {:.1}s, memory {rss:.0} MiB (peak {peak:.0})", since.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_gate_trips_on_a_run_of_failures_or_a_bad_share() {
        let limits = dossier_connectors::Limits { max_consecutive_failures: 3, ..Default::default() };
        let g = FailureGate::new(&limits);
        for failed in [true, true, false, true, true] {
            g.record(failed);
        }
        assert!(g.tripped().is_none(), "a success breaks the run");
        g.record(true);
        assert!(g.tripped().is_some_and(|w| w.contains("3 items failed in a row")));

        let limits =
            dossier_connectors::Limits { max_consecutive_failures: 0, max_failure_share: 0.5, ..Default::default() };
        let g = FailureGate::new(&limits);
        for i in 0..FAILURE_WINDOW {
            g.record(i % 2 == 0);
        }
        assert!(g.tripped().is_none(), "half is not more than half");
        for _ in 0..4 {
            g.record(true);
            g.record(true);
            g.record(false);
        }
        assert!(g.tripped().is_some_and(|w| w.contains("of the last 200")));
    }
}
