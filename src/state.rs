//! The state store: an embedded SQLite database beside the tantivy index for
//! what the index should not hold: item versions, each record's mentions,
//! customers and links, id redirects, run reports with per-item errors, and
//! the audit log. Migrations are versioned with `PRAGMA user_version`.

use std::collections::HashMap;
use std::path::Path;

use dossier_schema::{Customer, ItemError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::resolve::RecordEntities;

mod entities;

/// The last run's links, in record key order.
pub type Links = crate::resolve::PriorLinks;

/// Column `i` of `row` as text, borrowed from the row (no copy for a value only looked at).
fn text_at<'a>(row: &'a rusqlite::Row<'_>, i: usize) -> Result<&'a str, StateError> {
    row.get_ref(i)?
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)).into())
}

/// Column `i` of `row` as bytes: a blob, or the bytes of a text.
fn bytes_at<'a>(row: &'a rusqlite::Row<'_>, i: usize) -> Result<&'a [u8], StateError> {
    use rusqlite::types::ValueRef;
    match row.get_ref(i)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b),
        other => Err(rusqlite::Error::InvalidColumnType(i, "entities".into(), other.data_type()).into()),
    }
}

/// The entities stored in column `at` of `row`, whose key is column `key`.
fn decode_at(row: &rusqlite::Row<'_>, key: usize, at: usize) -> Result<RecordEntities, StateError> {
    entities::decode(bytes_at(row, at)?).map_err(|e| StateError::Entities(text_at(row, key).unwrap_or("?").into(), e))
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value did not decode.
    #[error("state store: corrupt value: {0}")]
    Json(#[from] serde_json::Error),
    /// A record's stored entities did not decode.
    #[error("state store: the entities of record `{0}` do not decode: {1}; `dossier index --full` rebuilds them")]
    Entities(String, entities::DecodeError),
    /// A record's entities could not be encoded.
    #[error("state store: the entities of record `{0}` could not be encoded: {1}")]
    Encode(String, postcard::Error),
    /// The links did not come in key order (a store changed by hand).
    #[error("state store: {0}; `dossier index --full` writes them again")]
    LinkOrder(#[from] crate::resolve::prior::OutOfOrder),
    /// The store was written by a newer dossier.
    #[error("state store version {0} is newer than this dossier understands ({1}); upgrade dossier")]
    TooNew(i64, i64),
}

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE items(source TEXT NOT NULL, locator TEXT NOT NULL, version TEXT NOT NULL, run INTEGER NOT NULL,
        PRIMARY KEY(source, locator));
     CREATE TABLE records(key TEXT PRIMARY KEY, source TEXT NOT NULL, item TEXT NOT NULL, entities TEXT NOT NULL);
     CREATE INDEX records_item ON records(source, item);
     CREATE TABLE customers(id TEXT PRIMARY KEY, data TEXT NOT NULL);
     CREATE TABLE links(key TEXT NOT NULL, customer TEXT NOT NULL, PRIMARY KEY(key, customer));
     CREATE INDEX links_customer ON links(customer);
     CREATE TABLE redirects(old TEXT PRIMARY KEY, new TEXT NOT NULL, at TEXT NOT NULL);
     CREATE TABLE runs(id INTEGER PRIMARY KEY, started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL,
        full INTEGER NOT NULL, report TEXT);
     CREATE TABLE item_errors(run INTEGER NOT NULL, source TEXT NOT NULL, locator TEXT NOT NULL, reason TEXT NOT NULL);
     CREATE INDEX item_errors_run ON item_errors(run);
     CREATE TABLE audit(id INTEGER PRIMARY KEY, at TEXT NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
        customer TEXT, detail TEXT);",
    // 2: API keys, run metadata, and an audit log that cannot be rewritten.
    "CREATE TABLE api_keys(name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
        created TEXT NOT NULL, revoked TEXT);
     CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
     ALTER TABLE audit ADD COLUMN role TEXT;
     ALTER TABLE audit ADD COLUMN record TEXT;
     ALTER TABLE audit ADD COLUMN query TEXT;
     CREATE INDEX audit_customer ON audit(customer);
     CREATE INDEX audit_who ON audit(who);
     CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 3: each link's role, so an incremental run knows the previous run's customers.
    "ALTER TABLE links ADD COLUMN role TEXT;",
    // 4: what was indexed of each mailbox, so an append is read alone.
    "CREATE TABLE containers(source TEXT NOT NULL, locator TEXT NOT NULL, len INTEGER NOT NULL,
        head TEXT NOT NULL, messages INTEGER NOT NULL, PRIMARY KEY(source, locator));",
    // 5: links kept in key order, so a run reads them in the order of its records (the table is
    //    the primary key's tree: one structure fewer to write, and a key-ordered read is a scan).
    "CREATE TABLE links_by_key(key TEXT NOT NULL, customer TEXT NOT NULL, role TEXT, PRIMARY KEY(key, customer))
        WITHOUT ROWID;
     INSERT INTO links_by_key SELECT key, customer, role FROM links;
     DROP TABLE links;
     ALTER TABLE links_by_key RENAME TO links;
     CREATE INDEX links_customer ON links(customer);",
    // 6: records and items kept in their primary key's order too: an incremental run reads every
    //    record by key and a source's item versions, and each was a walk of the key's index with
    //    a lookup of every row in the table beside it (the records' read 0.23 -> 0.09 s at 100k
    //    customers in the sqlite3 shell).
    "CREATE TABLE records_by_key(key TEXT PRIMARY KEY, source TEXT NOT NULL, item TEXT NOT NULL,
        entities TEXT NOT NULL) WITHOUT ROWID;
     INSERT INTO records_by_key SELECT key, source, item, entities FROM records;
     DROP TABLE records;
     ALTER TABLE records_by_key RENAME TO records;
     CREATE INDEX records_item ON records(source, item);
     CREATE TABLE items_by_key(source TEXT NOT NULL, locator TEXT NOT NULL, version TEXT NOT NULL,
        run INTEGER NOT NULL, PRIMARY KEY(source, locator)) WITHOUT ROWID;
     INSERT INTO items_by_key SELECT source, locator, version, run FROM items;
     DROP TABLE items;
     ALTER TABLE items_by_key RENAME TO items;",
];

/// What was indexed of a mailbox or CSV file: its first `len` bytes (BLAKE3 `head`), holding
/// `messages` messages or rows. A later version that starts with the same bytes only appended some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Bytes indexed.
    pub len: u64,
    /// BLAKE3 of those bytes, hex.
    pub head: String,
    /// Messages (of a mailbox) or rows (of a CSV file, its header included) in them.
    pub messages: usize,
}

/// A stored API key (its hash only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredKey {
    /// Who holds it.
    pub name: String,
    /// `blake3:HEX`.
    pub hash: String,
    /// The role it grants.
    pub role: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// When it was revoked, if it was.
    pub revoked: Option<String>,
}

/// One audit log entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The key's name, or `cli:USER`.
    pub who: String,
    /// The role the key grants.
    pub role: Option<String>,
    /// `search`, `dossier`, `record`, `export-subject`, `denied`.
    pub action: String,
    /// The customer looked at.
    pub customer: Option<String>,
    /// The record looked at.
    pub record: Option<String>,
    /// The query typed (sensitive values masked).
    pub query: Option<String>,
    /// Anything else (the route, the status).
    pub detail: Option<String>,
}

/// What to list of the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this key name.
    pub who: Option<String>,
    /// Only this customer.
    pub customer: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only at or after this time (RFC 3339 or a date).
    pub since: Option<String>,
    /// Only before this time.
    pub until: Option<String>,
    /// Most entries, newest first.
    pub limit: usize,
}

/// Per-source counts of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct SourceReport {
    /// Source name.
    pub source: String,
    /// Items listed.
    pub seen: u64,
    /// Items new since the last run.
    pub new: u64,
    /// Items changed since the last run.
    pub changed: u64,
    /// Items unchanged (skipped).
    pub unchanged: u64,
    /// Items removed.
    pub deleted: u64,
    /// Items moved or renamed: their records carried over, not read again.
    #[serde(default)]
    pub moved: u64,
    /// Changed mailboxes that only grew: their new messages read, not the whole file.
    #[serde(default)]
    pub appended: u64,
    /// Items that failed.
    pub failed: u64,
    /// Records written.
    pub records: u64,
    /// True when the listing completed (deletes applied).
    pub complete: bool,
    /// Why the source could not be listed, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time in milliseconds.
    pub millis: u64,
    /// Times a dropped database connection was re-established and the read resumed.
    #[serde(default)]
    pub reconnects: u32,
    /// Items left for the next run: the source's time budget ran out, or its failures passed
    /// the limits.
    #[serde(default)]
    pub deferred: u64,
    /// Why the source's run stopped before extracting every item, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RunReport {
    /// Run id.
    pub id: i64,
    /// Start time (RFC 3339).
    pub started: String,
    /// `completed`, `failed` or `running`.
    pub status: String,
    /// True for `--full`.
    pub full: bool,
    /// Per source.
    pub sources: Vec<SourceReport>,
    /// Customers after the run.
    pub customers: u64,
    /// Observations (a record's party) resolved this run: all of them on a full resolution,
    /// those a change could reach on an incremental one.
    #[serde(default)]
    pub resolved: u64,
    /// Observations in all.
    #[serde(default)]
    pub observations: u64,
    /// Wall time in milliseconds.
    pub millis: u64,
    /// Per-item errors.
    #[serde(default)]
    pub errors: Vec<ItemError>,
    /// Wall time per stage in milliseconds: `listing`, `extraction` (with mention finding),
    /// `load_stored`, `resolution`, `index_writing`, `relinking`, `commit` (the index), and, in the
    /// report a run returns, `state_commit`.
    #[serde(default)]
    pub stages: std::collections::BTreeMap<String, u64>,
}

/// Every stored record's entities with its item, and every link (see
/// [`State::read_stored_in_background`]).
pub struct StoredRecords {
    /// Source names, numbered for `entities`.
    pub sources: Vec<String>,
    /// Each record's (source number, item locator) and entities, in key order.
    pub entities: Vec<((u32, dossier_schema::CompactString), RecordEntities)>,
    /// Each record's customers, and which of them it is a member of.
    pub links: Links,
}

/// A run's rows written by [`State::begin_commit`], not committed yet; dropped, it writes nothing.
pub struct PendingRun<'a> {
    tx: rusqlite::Transaction<'a>,
    run: i64,
}

impl PendingRun<'_> {
    /// Writes the run's `report` (its failed items were written with the rows) and commits.
    pub fn finish(self, report: &RunReport) -> Result<(), StateError> {
        let mut report = report.clone();
        report.errors.clear();
        self.tx.execute(
            "UPDATE runs SET finished = ?1, status = ?2, report = ?3 WHERE id = ?4",
            params![chrono::Utc::now().to_rfc3339(), report.status, serde_json::to_string(&report)?, self.run],
        )?;
        self.tx.commit()?;
        Ok(())
    }
}

/// The state store.
pub struct State {
    conn: Connection,
}

impl State {
    /// Opens (creating and migrating) the store at `path`.
    pub fn open(path: &Path) -> Result<State, StateError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A WAL reused from its start is cut back to this (a full run's is the whole store).
        conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let latest = MIGRATIONS.len() as i64;
        if version > latest {
            return Err(StateError::TooNew(version, latest));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(State { conn })
    }

    /// [`State::open`], reading the store's file through a memory map rather than copies into
    /// SQLite's page cache: for the connections that read every record and link of the store
    /// (1% change at 100k customers: 4.3-5.8 -> 3.4-4.9 s over four alternations in a noisy
    /// hour, within the noise over four more; its system time always lower). Not the run's own
    /// connection: the pages it maps stay in its resident memory while it lives (a full run over
    /// a store, which deletes every customer, peaked at 2.0 GB instead of 1.4). Capped by
    /// SQLite's own build limit (2 GB); the WAL is read as before. Only this store, which dossier
    /// alone writes: a mapped file cut short under a reader is a signal, not an error.
    pub fn open_mapped(path: &Path) -> Result<State, StateError> {
        let state = State::open(path)?;
        state.conn.pragma_update(None, "mmap_size", 1i64 << 31)?;
        Ok(state)
    }

    /// Item versions of a source: locator → version.
    pub fn item_versions(&self, source: &str) -> Result<dossier_connectors::Known, StateError> {
        // Sized once: a table's rows are hundreds of thousands of items.
        let count: i64 = self.conn.query_row("SELECT count(*) FROM items WHERE source = ?1", [source], |r| r.get(0))?;
        let mut versions = dossier_connectors::Known::with_capacity_and_hasher(
            usize::try_from(count).unwrap_or(0),
            Default::default(),
        );
        let mut st = self.conn.prepare("SELECT locator, version FROM items WHERE source = ?1")?;
        let mut rows = st.query([source])?;
        while let Some(row) = rows.next()? {
            versions.insert(text_at(row, 0)?.into(), text_at(row, 1)?.into());
        }
        Ok(versions)
    }

    /// Record keys of the given items.
    pub fn record_keys_of_item(&self, source: &str, item: &str) -> Result<Vec<String>, StateError> {
        let mut st = self.conn.prepare_cached("SELECT key FROM records WHERE source = ?1 AND item = ?2")?;
        let rows = st.query_map([source, item], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The entities of one item's records.
    pub fn entities_of_item(&self, source: &str, item: &str) -> Result<Vec<RecordEntities>, StateError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT key, entities FROM records WHERE source = ?1 AND item = ?2 ORDER BY key")?;
        let mut rows = st.query([source, item])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(decode_at(row, 0, 1)?);
        }
        Ok(out)
    }

    /// The mailboxes of a source indexed so far: locator → what was indexed.
    pub fn containers(&self, source: &str) -> Result<HashMap<String, Container>, StateError> {
        let mut st = self.conn.prepare("SELECT locator, len, head, messages FROM containers WHERE source = ?1")?;
        let rows = st.query_map([source], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Container { len: r.get::<_, i64>(1)? as u64, head: r.get(2)?, messages: r.get::<_, i64>(3)? as usize },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every record's entities, for resolution, each with what `class` says of its (source,
    /// item): `None` leaves the record out (a run that re-read every item needs none of their
    /// old versions), `Some(flag)` reads it and hands `flag` back with it.
    pub fn all_entities<T: Send>(
        &self,
        class: impl FnMut(&str, &str) -> Option<T>,
    ) -> Result<Vec<(T, RecordEntities)>, StateError> {
        self.entities_until(class, &std::sync::atomic::AtomicBool::new(false))
    }

    /// [`State::all_entities`], given up (what was read so far) once `stop` is set.
    fn entities_until<T: Send>(
        &self,
        mut class: impl FnMut(&str, &str) -> Option<T>,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Vec<(T, RecordEntities)>, StateError> {
        use rayon::prelude::*;
        /// Rows read before they are decoded on every core: enough to share out, little to hold.
        const CHUNK: usize = 8192;
        /// Rows read, waiting to be decoded: each row's flag and where its key and entities lie
        /// in one buffer. (A buffer a row was 1.3 million allocations at 100k customers, on the
        /// thread every other waits for; the chunks go back to the reader to be filled again.)
        struct Chunk<T> {
            rows: Vec<(T, std::ops::Range<usize>, std::ops::Range<usize>)>,
            bytes: Vec<u8>,
        }
        let parse = |chunk: &mut Chunk<T>, out: &mut Vec<(T, RecordEntities)>| -> Result<(), StateError> {
            let bytes = &chunk.bytes;
            let parsed: Result<Vec<_>, StateError> = chunk
                .rows
                .par_drain(..)
                .map(|(flag, key, at)| {
                    entities::decode(&bytes[at])
                        .map(|e| (flag, e))
                        .map_err(|e| StateError::Entities(String::from_utf8_lossy(&bytes[key]).into_owned(), e))
                })
                .collect();
            out.extend(parsed?);
            chunk.bytes.clear();
            Ok(())
        };
        // Sized once: each doubling of a million records' vector is 100 MB of fresh memory.
        let count: i64 = self.conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?;
        let count = usize::try_from(count).unwrap_or(0);
        let mut st = self.conn.prepare("SELECT source, item, entities, key FROM records ORDER BY key")?;
        // Rows are read here while the chunk before is decoded on another thread: the store
        // gives rows one at a time, and reading then decoding in turn left the cores idle half
        // the time.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk<T>>(2);
        let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<Chunk<T>>(3);
        std::thread::scope(|s| {
            let decoder = s.spawn(move || -> Result<Vec<(T, RecordEntities)>, StateError> {
                let mut out = Vec::with_capacity(count);
                for mut chunk in rx {
                    parse(&mut chunk, &mut out)?;
                    // (A reader that stopped takes none back.)
                    let _ = back_tx.try_send(chunk);
                }
                Ok(out)
            });
            let read = (|| -> Result<(), StateError> {
                let fresh = || Chunk { rows: Vec::with_capacity(CHUNK), bytes: Vec::new() };
                let mut rows = st.query([])?;
                let mut chunk: Chunk<T> = fresh();
                while let Some(row) = rows.next()? {
                    if let Some(flag) = class(text_at(row, 0)?, text_at(row, 1)?) {
                        let b = &mut chunk.bytes;
                        let key = b.len()..b.len() + text_at(row, 3)?.len();
                        b.extend_from_slice(text_at(row, 3)?.as_bytes());
                        let at = b.len()..b.len() + bytes_at(row, 2)?.len();
                        b.extend_from_slice(bytes_at(row, 2)?);
                        chunk.rows.push((flag, key, at));
                        if chunk.rows.len() == CHUNK {
                            let next = back_rx.try_recv().unwrap_or_else(|_| fresh());
                            // Stopped, or the decoder failed (its error is the one to report).
                            if stop.load(std::sync::atomic::Ordering::Relaxed)
                                || tx.send(std::mem::replace(&mut chunk, next)).is_err()
                            {
                                return Ok(());
                            }
                        }
                    }
                }
                // (A decoder that failed has its error to report.)
                let _ = tx.send(chunk);
                Ok(())
            })();
            drop(tx);
            let decoded = decoder.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            read?;
            decoded
        })
    }

    /// Reads every record's entities and every link, as [`State::all_entities`] and
    /// [`State::all_links`] do, on a thread of its own with its own connection to the store at
    /// `path`, so that an incremental run reads them while it extracts. Setting `stop` ends the
    /// read early, with `None`.
    pub fn read_stored_in_background(
        path: &Path,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<Result<Option<StoredRecords>, StateError>> {
        use std::sync::atomic::Ordering;
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let state = State::open_mapped(&path)?;
            // The links are read on a thread and a connection of their own: each read is serial
            // at heart, and one after the other they were most of the wait for stored records.
            let read = std::thread::scope(|s| {
                let links = s.spawn(|| State::open_mapped(&path)?.links_until(&stop));
                let mut sources: Vec<String> = Vec::new();
                let entities = state.entities_until(
                    |source, item| {
                        // Rows come in key order, so a source's rows (keys `source:…`) come together.
                        let s = match sources.iter().rposition(|s| s == source) {
                            Some(s) => s,
                            None => {
                                sources.push(source.to_string());
                                sources.len() - 1
                            }
                        };
                        Some((s as u32, dossier_schema::CompactString::from(item)))
                    },
                    &stop,
                );
                // (Joined whatever the entities gave: a failed read of either is the run's error.)
                let links = links.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                Ok::<_, StateError>((sources, entities?, links?))
            });
            let (sources, entities, links) = read?;
            Ok((!stop.load(Ordering::Relaxed)).then_some(StoredRecords { sources, entities, links }))
        })
    }

    /// Every record key.
    pub fn record_keys(&self) -> Result<Vec<String>, StateError> {
        let mut st = self.conn.prepare("SELECT key FROM records ORDER BY key")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every record's links to customers, with their roles.
    pub fn all_links(&self) -> Result<Links, StateError> {
        self.links_until(&std::sync::atomic::AtomicBool::new(false))
    }

    /// [`State::all_links`], given up (no links) once `stop` is set.
    fn links_until(&self, stop: &std::sync::atomic::AtomicBool) -> Result<Links, StateError> {
        let count: i64 = self.conn.query_row("SELECT count(*) FROM links", [], |r| r.get(0))?;
        let mut links = crate::resolve::prior::PriorLinksBuilder::with_capacity(usize::try_from(count).unwrap_or(0));
        // The table is its primary key's tree: this order is a scan.
        let mut st = self.conn.prepare("SELECT key, customer, role = 'member' FROM links ORDER BY key, customer")?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(Default::default());
            }
            // (A link from before roles were kept counts as no member's.)
            links.push(text_at(row, 0)?, text_at(row, 1)?, row.get::<_, Option<bool>>(2)?.unwrap_or(false))?;
        }
        Ok(links.finish())
    }

    /// Runs recorded, by status.
    pub fn run_counts(&self) -> Result<Vec<(String, u64)>, StateError> {
        let mut st = self.conn.prepare("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The last run that finished, with when it finished (RFC 3339).
    pub fn last_finished_run(&self) -> Result<Option<(RunReport, String)>, StateError> {
        let row = self
            .conn
            .query_row("SELECT id, finished FROM runs WHERE finished IS NOT NULL ORDER BY id DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        let Some((id, finished)) = row else { return Ok(None) };
        // Runs left `running` by a crash come after it at most a few times.
        let report = self.runs(50, 0)?.into_iter().find(|r| r.id == id);
        Ok(report.map(|r| (r, finished)))
    }

    /// The last run that completed.
    pub fn last_completed_run(&self) -> Result<Option<i64>, StateError> {
        Ok(self.conn.query_row("SELECT MAX(id) FROM runs WHERE status = 'completed'", [], |r| r.get(0))?)
    }

    /// Marks runs still `running` as `interrupted`: called by a run holding the index lock, so
    /// those were killed before they finished.
    pub fn mark_interrupted(&self) -> Result<usize, StateError> {
        Ok(self.conn.execute(
            "UPDATE runs SET status = 'interrupted', finished = ?1 WHERE status = 'running'",
            [chrono::Utc::now().to_rfc3339()],
        )?)
    }

    /// Every customer id.
    pub fn customer_ids(&self) -> Result<Vec<String>, StateError> {
        let mut st = self.conn.prepare("SELECT id FROM customers ORDER BY id")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many customers there are.
    pub fn customer_count(&self) -> Result<u64, StateError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM customers", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// What the last resolution kept for incremental runs: its model (JSON), the records
    /// changed since it was learnt, and the generic values. `None` when there is none, or
    /// it predates link roles.
    pub fn resolution_memo(&self) -> Result<Option<ResolutionMemo>, StateError> {
        let (Some(model), Some(drift), Some(generic)) =
            (self.meta("resolution_model")?, self.meta("resolution_drift")?, self.meta("generic_values")?)
        else {
            return Ok(None);
        };
        Ok(Some(ResolutionMemo {
            model: Some(model),
            drift: drift.parse().unwrap_or(u64::MAX),
            generic: serde_json::from_str(&generic)?,
        }))
    }

    /// Starts a run; returns its id.
    pub fn begin_run(&self, full: bool) -> Result<(i64, String), StateError> {
        let started = chrono::Utc::now().to_rfc3339();
        self.conn
            .execute("INSERT INTO runs(started, status, full) VALUES (?1, 'running', ?2)", params![started, full])?;
        Ok((self.conn.last_insert_rowid(), started))
    }

    /// Everything a run learned, written in one transaction after the index commit.
    pub fn commit_run(&mut self, c: &RunCommit) -> Result<(), StateError> {
        self.begin_commit(c)?.finish(&c.report)
    }

    /// Writes what [`State::commit_run`] writes but the run's report, in a transaction left open
    /// until [`PendingRun::finish`], so that the rows are written while the index commits and
    /// the store commits only after it.
    pub fn begin_commit(&mut self, c: &RunCommit) -> Result<PendingRun<'_>, StateError> {
        let tx = self.conn.transaction()?;
        {
            let mut del_item = tx.prepare_cached("DELETE FROM items WHERE source = ?1 AND locator = ?2")?;
            let mut del_recs = tx.prepare_cached("DELETE FROM records WHERE source = ?1 AND item = ?2")?;
            let mut del_container = tx.prepare_cached("DELETE FROM containers WHERE source = ?1 AND locator = ?2")?;
            for (source, locator) in &c.removed_items {
                del_item.execute([source, locator])?;
                del_recs.execute([source, locator])?;
                del_container.execute([source, locator])?;
            }
            let mut put_item = tx.prepare_cached(
                "INSERT OR REPLACE INTO items(source, locator, version, run) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (source, locator, version) in &c.items {
                del_recs.execute([source, locator])?;
                del_container.execute([source, locator])?;
                put_item.execute(params![source, locator, version, c.run])?;
            }
            for (source, locator, version) in &c.appended_items {
                put_item.execute(params![source, locator, version, c.run])?;
            }
            let mut put_container = tx.prepare_cached(
                "INSERT OR REPLACE INTO containers(source, locator, len, head, messages) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (source, locator, k) in &c.containers {
                put_container.execute(params![source, locator, k.len as i64, k.head, k.messages as i64])?;
            }
            let mut put_rec = tx.prepare_cached(
                "INSERT OR REPLACE INTO records(key, source, item, entities) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (source, item, e) in &c.records {
                let bytes = entities::encode(e).map_err(|err| StateError::Encode(e.key.clone(), err))?;
                put_rec.execute(params![e.key, source, item, bytes])?;
            }
            if let Some(customers) = &c.customers {
                match &c.customers_replaced {
                    Some(ids) => {
                        let mut del_c = tx.prepare_cached("DELETE FROM customers WHERE id = ?1")?;
                        let mut del_l = tx.prepare_cached("DELETE FROM links WHERE customer = ?1")?;
                        for id in ids {
                            del_c.execute([id])?;
                            del_l.execute([id])?;
                        }
                    }
                    None => {
                        tx.execute("DELETE FROM customers", [])?;
                        tx.execute("DELETE FROM links", [])?;
                    }
                }
                let mut put_c = tx.prepare_cached("INSERT INTO customers(id, data) VALUES (?1, ?2)")?;
                let mut put_l =
                    tx.prepare_cached("INSERT OR IGNORE INTO links(key, customer, role) VALUES (?1, ?2, ?3)")?;
                for cu in customers {
                    put_c.execute(params![cu.id, serde_json::to_string(cu)?])?;
                    for l in &cu.links {
                        put_l.execute(params![l.key, cu.id, l.role.as_str()])?;
                    }
                }
                let now = chrono::Utc::now().to_rfc3339();
                let mut put_r =
                    tx.prepare_cached("INSERT OR REPLACE INTO redirects(old, new, at) VALUES (?1, ?2, ?3)")?;
                for (old, new) in &c.redirects {
                    put_r.execute(params![old, new, now])?;
                }
            }
            let mut put_e =
                tx.prepare_cached("INSERT INTO item_errors(run, source, locator, reason) VALUES (?1, ?2, ?3, ?4)")?;
            for e in &c.report.errors {
                put_e.execute(params![c.run, e.source, e.locator, e.reason])?;
            }
            if let Some(r) = &c.resolution {
                let mut put_m = tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?;
                if let Some(m) = &r.model {
                    put_m.execute(["resolution_model", m])?;
                }
                put_m.execute(["resolution_drift", &r.drift.to_string()])?;
                put_m.execute(["generic_values", &serde_json::to_string(&r.generic)?])?;
            }
            if let Some(v) = &c.views {
                tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('views', ?1)", [v])?;
            }
        }
        Ok(PendingRun { tx, run: c.run })
    }

    /// Marks a run failed.
    pub fn fail_run(&self, run: i64, why: &str) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE runs SET finished = ?1, status = 'failed', report = ?2 WHERE id = ?3",
            params![chrono::Utc::now().to_rfc3339(), serde_json::json!({ "error": why }).to_string(), run],
        )?;
        Ok(())
    }

    /// The last `n` runs, newest first, with their per-item errors (at most `max_errors` each).
    pub fn runs(&self, n: usize, max_errors: usize) -> Result<Vec<RunReport>, StateError> {
        let mut st =
            self.conn.prepare("SELECT id, started, status, full, report FROM runs ORDER BY id DESC LIMIT ?1")?;
        let rows = st.query_map([n as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, started, status, full, report) = row?;
            let mut rep: RunReport = report.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
            rep.id = id;
            rep.started = started;
            rep.status = status;
            rep.full = full;
            let mut es =
                self.conn.prepare_cached("SELECT source, locator, reason FROM item_errors WHERE run = ?1 LIMIT ?2")?;
            let errs = es.query_map(params![id, max_errors as i64], |r| {
                Ok(ItemError { source: r.get(0)?, locator: r.get(1)?, reason: r.get(2)? })
            })?;
            rep.errors = errs.collect::<Result<_, _>>()?;
            out.push(rep);
        }
        Ok(out)
    }

    /// Every customer, ordered by id.
    pub fn customers(&self) -> Result<Vec<Customer>, StateError> {
        let mut st = self.conn.prepare("SELECT data FROM customers ORDER BY id")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for s in rows {
            out.push(serde_json::from_str(&s?)?);
        }
        Ok(out)
    }

    /// One customer, following redirects of merged or split ids.
    pub fn customer(&self, id: &str) -> Result<Option<Customer>, StateError> {
        let mut id = id.to_string();
        for _ in 0..16 {
            let c: Option<String> =
                self.conn.query_row("SELECT data FROM customers WHERE id = ?1", [&id], |r| r.get(0)).optional()?;
            if let Some(s) = c {
                return Ok(Some(serde_json::from_str(&s)?));
            }
            match self
                .conn
                .query_row("SELECT new FROM redirects WHERE old = ?1", [&id], |r| r.get::<_, String>(0))
                .optional()?
            {
                Some(next) => id = next,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Leaves the WAL this connection writes to be checkpointed later: by the next run's
    /// [`State::checkpoint_passive`] or the server's checkpointer, not in its commits nor when it
    /// closes. (Copying a 1% run's 87 MB of WAL back and waiting for the disk was about 0.2 s of
    /// a 4.5 s run.) What is committed is in the WAL, which every reader reads: nothing waits for it.
    pub fn defer_checkpoints(&self) -> Result<(), StateError> {
        self.manual_checkpoints()?;
        self.conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        Ok(())
    }

    /// Copies into the database what the WAL holds that no reader still needs there, waiting
    /// for no one; the WAL is reused from its start by the next write once all of it is copied.
    pub fn checkpoint_passive(&self) -> Result<(), StateError> {
        self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Stops this connection's commits from checkpointing the WAL (a checkpoint waits for the
    /// disk); pair it with [`State::checkpoint`] run from elsewhere.
    pub fn manual_checkpoints(&self) -> Result<(), StateError> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(())
    }

    /// Copies the WAL back into the database and truncates it. Writers wait for it (a passive
    /// checkpoint never catches up with a steady writer, and the WAL grew without bound).
    pub fn checkpoint(&self) -> Result<(), StateError> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Appends entries to the audit log in one transaction; `at` is filled in.
    pub fn audit(&mut self, entries: &[AuditEntry]) -> Result<(), StateError> {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO audit(at, who, role, action, customer, record, query, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in entries {
                st.execute(params![at, e.who, e.role, e.action, e.customer, e.record, e.query, e.detail])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Audit entries, newest first.
    pub fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StateError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, at, who, role, action, customer, record, query, detail FROM audit
             WHERE (?1 IS NULL OR who = ?1) AND (?2 IS NULL OR customer = ?2) AND (?3 IS NULL OR action = ?3)
               AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5)
             ORDER BY id DESC LIMIT ?6",
        )?;
        let rows = st.query_map(params![f.who, f.customer, f.action, f.since, f.until, f.limit as i64], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                who: r.get(2)?,
                role: r.get(3)?,
                action: r.get(4)?,
                customer: r.get(5)?,
                record: r.get(6)?,
                query: r.get(7)?,
                detail: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores a new key's hash; fails when the name is taken.
    pub fn add_key(&self, name: &str, hash: &str, role: &str) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO api_keys(name, hash, role, created) VALUES (?1, ?2, ?3, ?4)",
            params![name, hash, role, chrono::Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }

    /// Every stored key, revoked ones included.
    pub fn keys(&self) -> Result<Vec<StoredKey>, StateError> {
        let mut st =
            self.conn.prepare_cached("SELECT name, hash, role, created, revoked FROM api_keys ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(StoredKey { name: r.get(0)?, hash: r.get(1)?, role: r.get(2)?, created: r.get(3)?, revoked: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The live key with this hash: (name, role).
    pub fn key_by_hash(&self, hash: &str) -> Result<Option<(String, String)>, StateError> {
        Ok(self
            .conn
            .prepare_cached("SELECT name, role FROM api_keys WHERE hash = ?1 AND revoked IS NULL")?
            .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Revokes a key; false when no live key has that name.
    pub fn revoke_key(&self, name: &str) -> Result<bool, StateError> {
        let n = self.conn.execute(
            "UPDATE api_keys SET revoked = ?1 WHERE name = ?2 AND revoked IS NULL",
            params![chrono::Utc::now().to_rfc3339(), name],
        )?;
        Ok(n > 0)
    }

    /// A value of the run metadata.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    /// Old ids that redirect to `id`, directly or through others.
    pub fn former_ids(&self, id: &str) -> Result<Vec<String>, StateError> {
        let mut st = self.conn.prepare_cached("SELECT old FROM redirects WHERE new = ?1 ORDER BY old")?;
        let mut out: Vec<String> = Vec::new();
        let mut todo = vec![id.to_string()];
        while let Some(x) = todo.pop() {
            for old in st.query_map([&x], |r| r.get::<_, String>(0))? {
                let old = old?;
                if old != id && !out.contains(&old) && out.len() < 10_000 {
                    todo.push(old.clone());
                    out.push(old);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The version and run of an item as last read.
    pub fn item_version(&self, source: &str, locator: &str) -> Result<Option<(String, i64)>, StateError> {
        Ok(self
            .conn
            .prepare_cached("SELECT version, run FROM items WHERE source = ?1 AND locator = ?2")?
            .query_row([source, locator], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The keys of the records linked to a customer.
    pub fn linked_keys(&self, customer: &str) -> Result<Vec<String>, StateError> {
        let mut st = self.conn.prepare_cached("SELECT key FROM links WHERE customer = ?1 ORDER BY key")?;
        let rows = st.query_map([customer], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Everything one run writes to the state store.
#[derive(Debug, Default)]
pub struct RunCommit {
    /// Run id.
    pub run: i64,
    /// Items (re)indexed: (source, locator, version).
    pub items: Vec<(String, String, String)>,
    /// Items removed: (source, locator).
    pub removed_items: Vec<(String, String)>,
    /// Items that only grew (messages appended to a mailbox): (source, locator, version); their
    /// records stay and `records` holds the new ones.
    pub appended_items: Vec<(String, String, String)>,
    /// Mailboxes indexed this run: (source, locator, what was indexed).
    pub containers: Vec<(String, String, Container)>,
    /// Records' entities: (source, item, entities).
    pub records: Vec<(String, String, RecordEntities)>,
    /// The customers to write, when resolution ran: all of them, or with `customers_replaced`
    /// those that changed.
    pub customers: Option<Vec<Customer>>,
    /// The customers whose rows are replaced by `customers` (those absent from it are gone);
    /// `None`: every row is.
    pub customers_replaced: Option<Vec<String>>,
    /// Old id → new id.
    pub redirects: Vec<(String, String)>,
    /// The report.
    pub report: RunReport,
    /// Fingerprint of the role views the customer documents were written for.
    pub views: Option<String>,
    /// What resolution keeps for the next run, when it ran.
    pub resolution: Option<ResolutionMemo>,
}

/// What resolution keeps between runs for incremental resolution.
#[derive(Debug, Clone, Default)]
pub struct ResolutionMemo {
    /// The model, when this run learnt a new one (JSON).
    pub model: Option<String>,
    /// Records changed since the model was learnt.
    pub drift: u64,
    /// The strong values found generic.
    pub generic: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_of_records_is_read_in_key_order_and_a_bad_row_is_named() {
        use dossier_schema::RecordKind;
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("state.sqlite")).unwrap();
        let (run, _) = s.begin_run(true).unwrap();
        // Several chunks' worth, so that rows are read while earlier chunks are decoded.
        let n = 20_000;
        let records: Vec<_> = (0..n)
            .map(|i| {
                let key = format!("crm:customers/{i:05}");
                let e = RecordEntities { key: key.clone(), kind: RecordKind::Row, parent: None, mentions: Vec::new() };
                ("crm".to_string(), format!("customers/{i:05}"), e)
            })
            .collect();
        s.commit_run(&RunCommit { run, records, ..Default::default() }).unwrap();
        let read = s.all_entities(|_, item| (!item.ends_with('7')).then(|| item.to_string())).unwrap();
        assert_eq!(read.len(), n - n / 10);
        assert!(read.windows(2).all(|w| w[0].1.key < w[1].1.key));
        assert!(read.iter().all(|(item, e)| e.key == format!("crm:{item}")));
        // A row that does not decode fails the read, naming its record, whichever chunk it is in.
        s.conn.execute("UPDATE records SET entities = x'01ff' WHERE key = 'crm:customers/12345'", []).unwrap();
        match s.all_entities(|_, _| Some(())) {
            Err(StateError::Entities(key, _)) => assert_eq!(key, "crm:customers/12345"),
            other => panic!("expected the bad row named, got {:?}", other.map(|v| v.len())),
        }
    }

    #[test]
    fn stored_records_read_in_the_background_are_those_read_in_line() {
        use dossier_schema::{Link, RecordKind};
        use std::sync::{Arc, atomic::AtomicBool};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.sqlite");
        let mut s = State::open(&p).unwrap();
        let (run, _) = s.begin_run(true).unwrap();
        let rec = |source: &str, item: &str, key: &str| {
            let e = RecordEntities { key: key.into(), kind: RecordKind::Row, parent: None, mentions: Vec::new() };
            (source.to_string(), item.to_string(), e)
        };
        let records = vec![
            rec("crm", "customers/1", "crm:customers/1"),
            rec("crm", "customers/2", "crm:customers/2"),
            rec("mail", "inbox.mbox", "mail:inbox.mbox#1"),
            rec("mail", "inbox.mbox", "mail:inbox.mbox#2"),
        ];
        let link = |key: &str, role: &str| Link { key: key.into(), role: role.into(), evidence: Vec::new() };
        let customer = |id: &str, links: Vec<Link>| Customer { id: id.into(), profile: Default::default(), links };
        let customers = vec![
            customer("c1", vec![link("crm:customers/1", "member"), link("mail:inbox.mbox#1", "mentions")]),
            customer("c2", vec![link("crm:customers/2", "member"), link("mail:inbox.mbox#1", "member")]),
        ];
        s.commit_run(&RunCommit { run, records, customers: Some(customers), ..Default::default() }).unwrap();

        let read = State::read_stored_in_background(&p, Default::default()).join().unwrap().unwrap().unwrap();
        let links = s.all_links().unwrap();
        assert_eq!(read.links, links);
        assert_eq!(links.len(), 3);
        let roles =
            |key: &str| links.find(key).map(|i| links.links(i).map(|(n, m)| (links.id(n), m)).collect::<Vec<_>>());
        assert_eq!(roles("mail:inbox.mbox#1"), Some(vec![("c1", false), ("c2", true)]));
        assert_eq!(roles("crm:customers/2"), Some(vec![("c2", true)]));
        assert_eq!(read.sources, ["crm", "mail"]);
        let inline = s.all_entities(|source, item| Some((source.to_string(), item.to_string()))).unwrap();
        let background: Vec<_> = read
            .entities
            .into_iter()
            .map(|((source, item), e)| ((read.sources[source as usize].clone(), item.to_string()), e))
            .collect();
        assert_eq!(background, inline);
        assert_eq!(inline.len(), 4);
        // A read told to stop hands nothing back.
        let stopped = State::read_stored_in_background(&p, Arc::new(AtomicBool::new(true)));
        assert!(stopped.join().unwrap().unwrap().is_none());
    }

    #[test]
    fn migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.sqlite");
        {
            let s = State::open(&p).unwrap();
            let (run, _) = s.begin_run(false).unwrap();
            assert_eq!(run, 1);
        }
        let s = State::open(&p).unwrap();
        assert_eq!(s.runs(5, 10).unwrap().len(), 1);
    }

    #[test]
    fn links_of_a_store_from_before_their_key_order_are_kept_and_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.sqlite");
        {
            let conn = Connection::open(&p).unwrap();
            for m in &MIGRATIONS[..4] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", 4).unwrap();
            conn.execute_batch(
                "INSERT INTO links VALUES ('pdf:b', 'c2', 'member'), ('crm:a', 'c9', 'mentions'),
                    ('crm:a', 'c1', 'member'), ('old:x', 'c1', NULL);",
            )
            .unwrap();
        }
        let s = State::open(&p).unwrap();
        let links = s.all_links().unwrap();
        let all: Vec<(&str, Vec<(&str, bool)>)> =
            (0..links.len()).map(|i| (links.key(i), links.links(i).map(|(n, m)| (links.id(n), m)).collect())).collect();
        assert_eq!(
            all,
            [
                ("crm:a", vec![("c1", true), ("c9", false)]),
                ("old:x", vec![("c1", false)]),
                ("pdf:b", vec![("c2", true)])
            ]
        );
        assert_eq!(s.linked_keys("c1").unwrap(), ["crm:a", "old:x"]);
    }

    #[test]
    fn records_and_items_of_a_store_from_before_their_key_order_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.sqlite");
        let stored = entities::encode(&RecordEntities {
            key: "crm:customers/2".into(),
            kind: dossier_schema::RecordKind::Row,
            parent: None,
            mentions: Vec::new(),
        })
        .unwrap();
        {
            let conn = Connection::open(&p).unwrap();
            for m in &MIGRATIONS[..5] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", 5).unwrap();
            conn.execute("INSERT INTO records VALUES ('crm:customers/2', 'crm', 'customers/2', ?1)", [&stored])
                .unwrap();
            conn.execute_batch(
                "INSERT INTO items VALUES ('crm', 'customers/2', 'u:2026', 3), ('pdf', 'a.pdf', 'm:1', 2);",
            )
            .unwrap();
        }
        let s = State::open(&p).unwrap();
        let without_rowid: i64 = s
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%WITHOUT ROWID%'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(without_rowid, 3, "links, records and items");
        let read = s.all_entities(|source, item| Some(format!("{source} {item}"))).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].0.as_str(), read[0].1.key.as_str()), ("crm customers/2", "crm:customers/2"));
        assert_eq!(s.entities_of_item("crm", "customers/2").unwrap().len(), 1);
        let versions = s.item_versions("crm").unwrap();
        assert_eq!(versions.get("customers/2").map(|v| v.as_str()), Some("u:2026"));
        assert_eq!(s.item_version("pdf", "a.pdf").unwrap(), Some(("m:1".to_string(), 2)));
    }

    #[test]
    fn a_deferred_checkpoint_leaves_the_commit_in_the_wal_until_the_next_run_copies_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.sqlite");
        let wal = dir.path().join("state.sqlite-wal");
        // The database file alone, as a reader without the WAL would see it.
        let file_alone = |name: &str| {
            let copy = dir.path().join(name);
            std::fs::copy(&p, &copy).unwrap();
            State::open(&copy).unwrap().runs(5, 0).unwrap().len()
        };
        State::open(&p).unwrap();
        {
            let s = State::open(&p).unwrap();
            s.defer_checkpoints().unwrap();
            s.begin_run(false).unwrap();
        }
        // Closed, and neither checkpointed nor removed: the run is in the WAL only.
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        assert_eq!(file_alone("before.sqlite"), 0);
        let next = State::open(&p).unwrap();
        assert_eq!(next.runs(5, 0).unwrap().len(), 1, "readers read the WAL");
        next.checkpoint_passive().unwrap();
        assert_eq!(file_alone("after.sqlite"), 1);
    }

    #[test]
    fn the_audit_log_is_append_only_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("state.sqlite")).unwrap();
        let e = |who: &str, c: &str| AuditEntry {
            who: who.into(),
            action: "dossier".into(),
            customer: Some(c.into()),
            ..Default::default()
        };
        s.audit(&[e("ann", "c1"), e("bob", "c2"), e("ann", "c2")]).unwrap();
        let f = AuditFilter { who: Some("ann".into()), limit: 10, ..Default::default() };
        assert_eq!(s.audit_entries(&f).unwrap().len(), 2);
        let f = AuditFilter { customer: Some("c2".into()), limit: 1, ..Default::default() };
        let got = s.audit_entries(&f).unwrap();
        assert_eq!((got.len(), got[0].who.as_str()), (1, "ann"));
        let err = s.conn.execute("DELETE FROM audit", []).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{err}");
        assert!(s.conn.execute("UPDATE audit SET who = 'x'", []).is_err());
    }

    #[test]
    fn keys_are_stored_by_hash_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("state.sqlite")).unwrap();
        s.add_key("ann", "blake3:00", "support").unwrap();
        assert!(s.add_key("ann", "blake3:01", "support").is_err());
        assert_eq!(s.key_by_hash("blake3:00").unwrap(), Some(("ann".into(), "support".into())));
        assert!(s.revoke_key("ann").unwrap());
        assert_eq!(s.key_by_hash("blake3:00").unwrap(), None);
        assert!(!s.revoke_key("ann").unwrap());
    }
}
