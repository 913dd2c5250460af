//! Relational silos: SQLite (embedded, through rusqlite), PostgreSQL and MySQL/MariaDB (through
//! sqlx). Read-only; rows stream one at a time, so a table of millions never sits in memory;
//! every column type is turned into text.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use dossier_schema::{Item, Payload, Record, RecordKind};
use futures_util::TryStreamExt;
use sqlx::{Column, Row, TypeInfo};

use crate::spec::{SourceKind, SourceSpec, TableSpec, expand_env};
use crate::{Connector, ConnectorError, ScanReport};

/// A database source.
pub struct DatabaseConnector {
    name: String,
    kind: SourceKind,
    /// The server's URL, or the SQLite file's path.
    url: String,
    tables: Vec<TableSpec>,
    /// Item versions from the last run, by locator; a row's is `u:` and its change-column value.
    known: Arc<crate::Known>,
}

/// A row: each column's name (shared by every row of a read) and its value as text (`None` for
/// NULL).
type Cells = Vec<(Arc<str>, Option<String>)>;

macro_rules! decode_row {
    ($row:expr, $( $t:ty => $f:expr ),* $(,)?) => {{
        let row = $row;
        let mut cells: Cells = Vec::with_capacity(row.columns().len());
        for (i, col) in row.columns().iter().enumerate() {
            let name: Arc<str> = Arc::from(col.name());
            let mut value: Option<Option<String>> = None;
            $(
                if value.is_none() {
                    if let Ok(v) = row.try_get::<Option<$t>, _>(i) {
                        value = Some(v.map($f));
                    }
                }
            )*
            let value = match value {
                Some(v) => v,
                None => match row.try_get::<Option<Vec<u8>>, _>(i) {
                    Ok(Some(b)) => Some(format!("(binary, {} bytes, not indexed)", b.len())),
                    Ok(None) => None,
                    Err(_) => Some(format!("(unsupported type {})", col.type_info().name())),
                },
            };
            cells.push((name, value));
        }
        cells
    }};
}

/// A SQLite value as text: numbers as written, text as text (bytes that are not UTF-8 replaced,
/// not dropped), a blob as its size.
fn sqlite_text(v: rusqlite::types::ValueRef) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(fmt_f64(f)),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(format!("(binary, {} bytes, not indexed)", b.len())),
    }
}

/// Runs `sql` on a SQLite connection, handing each row's cells to `row` until it says stop.
/// (rusqlite reads in the caller's thread: sqlx's SQLite worker thread cost a thread switch every
/// few rows, ten times the query's own time when listing a table's keys.)
fn sqlite_read(conn: &rusqlite::Connection, sql: &str, row: &mut dyn FnMut(Cells) -> Step) -> Read {
    let failed = |e: rusqlite::Error| Read::Failed(format!("query failed: {e}"));
    let mut stmt = match conn.prepare(sql) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let names: Vec<Arc<str>> = stmt.column_names().into_iter().map(Arc::from).collect();
    let mut rows = match stmt.query([]) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let mut n = 0;
    loop {
        match rows.next() {
            Ok(Some(r)) => {
                n += 1;
                let cells: Cells = names
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), r.get_ref(i).ok().and_then(sqlite_text)))
                    .collect();
                if let Step::Stop = row(cells) {
                    return Read::Stopped;
                }
            }
            Ok(None) => return Read::Done(n),
            Err(e) => return failed(e),
        }
    }
}

/// Opens a SQLite file read-only, waiting up to `timeout` for a writer's lock.
fn sqlite_open(path: &str, timeout: std::time::Duration) -> Result<rusqlite::Connection, String> {
    use rusqlite::OpenFlags;
    if !Path::new(path).is_file() {
        return Err(format!("no SQLite file at {path}; check the source's location (relative to the config file)"));
    }
    let conn =
        rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| format!("cannot open SQLite file {path}: {e}"))?;
    conn.busy_timeout(timeout).map_err(|e| format!("cannot open SQLite file {path}: {e}"))?;
    // Opening is lazy: read the schema now, so a file that is not a database says so here.
    conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(|e| format!("cannot read SQLite file {path}: {e}"))?;
    Ok(conn)
}

/// The elements of an array, as one comma-separated text.
fn list<T: ToString>(v: Vec<T>) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

fn pg_cells(row: &sqlx::postgres::PgRow) -> Cells {
    let mut cells = decode_row!(row,
        String => |v| v,
        i64 => |v| v.to_string(),
        i32 => |v| v.to_string(),
        i16 => |v| v.to_string(),
        f64 => fmt_f64,
        f32 => |v| fmt_f64(v as f64),
        rust_decimal::Decimal => |v| v.normalize().to_string(),
        bool => |v| v.to_string(),
        chrono::DateTime<chrono::Utc> => |v| v.to_rfc3339(),
        chrono::NaiveDateTime => |v| v.to_string(),
        chrono::NaiveDate => |v| v.to_string(),
        chrono::NaiveTime => |v| v.to_string(),
        serde_json::Value => |v| v.to_string(),
        sqlx::types::Uuid => |v| v.to_string(),
        Vec<String> => list,
        Vec<i64> => list,
        Vec<i32> => list,
        Vec<f64> => |v: Vec<f64>| v.into_iter().map(fmt_f64).collect::<Vec<_>>().join(", "),
        Vec<rust_decimal::Decimal> => |v: Vec<rust_decimal::Decimal>| list(v.into_iter().map(|d| d.normalize()).collect()),
        Vec<bool> => list,
    );
    // An enum's value travels as its label's text, which String's type check does not know.
    for (i, col) in row.columns().iter().enumerate() {
        if matches!(col.type_info().kind(), sqlx::postgres::PgTypeKind::Enum(_))
            && let Ok(v) = row.try_get_unchecked::<Option<String>, _>(i)
        {
            cells[i].1 = v;
        }
    }
    cells
}

fn mysql_cells(row: &sqlx::mysql::MySqlRow) -> Cells {
    decode_row!(row,
        String => |v| v,
        i64 => |v| v.to_string(),
        i32 => |v| v.to_string(),
        u64 => |v| v.to_string(),
        u32 => |v| v.to_string(),
        i16 => |v| v.to_string(),
        i8 => |v| v.to_string(),
        f64 => fmt_f64,
        f32 => |v| fmt_f64(v as f64),
        rust_decimal::Decimal => |v| v.normalize().to_string(),
        // DATETIME has no zone: as written; TIMESTAMP comes in the session's, which sqlx sets to UTC.
        chrono::NaiveDateTime => |v| v.to_string(),
        chrono::DateTime<chrono::Utc> => |v| v.to_rfc3339(),
        chrono::NaiveDate => |v| v.to_string(),
        chrono::NaiveTime => |v| v.to_string(),
        u16 => |v| v.to_string(),
        serde_json::Value => |v| v.to_string(),
    )
}

fn fmt_f64(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

impl DatabaseConnector {
    /// A connector for `spec`; a relative SQLite path is resolved against `base`.
    pub fn new(spec: &SourceSpec, base: &Path) -> Result<Self, ConnectorError> {
        if spec.tables.is_empty() {
            return Err(ConnectorError::Config {
                source_name: spec.name.clone(),
                reason: "a database source needs at least one [[sources.tables]] entry".into(),
            });
        }
        let loc = expand_env(&spec.location);
        let url = match spec.kind {
            SourceKind::Sqlite => {
                // `sqlite://path`, `sqlite:path` or a bare path; a URL's `?options` are not a path's.
                let path = loc.strip_prefix("sqlite://").or_else(|| loc.strip_prefix("sqlite:")).unwrap_or(&loc);
                let path = path.split_once('?').map_or(path, |(p, _)| p);
                base.join(path).display().to_string()
            }
            _ => loc,
        };
        Ok(DatabaseConnector {
            name: spec.name.clone(),
            kind: spec.kind,
            url,
            tables: spec.tables.clone(),
            known: Arc::default(),
        })
    }

    fn db_err(&self, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Database { source_name: self.name.clone(), reason: e.to_string() }
    }
}

/// What a row handler wants next.
enum Step {
    /// Go on reading.
    Next,
    /// The sink wants no more.
    Stop,
}

/// The lowest of change-column values: numerically when all are numbers, else as text (ISO
/// dates sort as text). `None` when any is NULL (such rows can only be found by a full read).
fn lowest<'a>(values: impl Iterator<Item = Option<&'a str>> + Clone) -> Option<&'a str> {
    let all: Option<Vec<&str>> = values.collect();
    let all = all?;
    if all.iter().all(|v| v.parse::<f64>().is_ok()) {
        all.into_iter().min_by(|a, b| a.parse::<f64>().unwrap_or(0.0).total_cmp(&b.parse::<f64>().unwrap_or(0.0)))
    } else {
        all.into_iter().min()
    }
}

/// A SQL string literal of a value read from the same database (the server coerces it to the
/// column's type, which a bound text parameter would not be in PostgreSQL).
fn literal(kind: SourceKind, v: &str) -> String {
    let v = v.replace('\'', "''");
    match kind {
        SourceKind::Mysql => format!("'{}'", v.replace('\\', "\\\\")),
        _ => format!("'{v}'"),
    }
}

/// Reconnections allowed per table before its read is given up (listing then incomplete).
const MAX_RECONNECTS: u32 = 3;

/// Whether a read failed because the connection went away (server restart, killed session,
/// network), so reconnecting and reading on is worth it; not for bad SQL or permissions.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // PostgreSQL: admin shutdown / crash / cannot connect now, and class 08 (connection exception);
            // MySQL/MariaDB: 70100 (query/connection killed), 08S01 (communication link failure).
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "70100" | "08S01") || code.starts_with("08")
        }
        _ => false,
    }
}

/// What to do about a database failure an operator can fix, after the driver's own message.
fn sql_error(e: &sqlx::Error) -> String {
    const GRANT: &str = "grant the source's user SELECT on the table (dossier only reads)";
    const CREDENTIALS: &str =
        "check the user and password in the source's location (or the environment variable it names)";
    const DATABASE: &str = "check the database name in the source's location";
    let advice = match e {
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            let msg = d.message().to_ascii_lowercase();
            match code.as_ref() {
                "28P01" | "28000" => Some(CREDENTIALS),
                "3D000" => Some(DATABASE),
                "42P01" | "42S02" => Some("check the table's name (`[[sources.tables]] name`) or its `query`"),
                "42703" | "42S22" => {
                    Some("check the column names in the table's `key`, `updated`, `date` and `fields`, or its `query`")
                }
                "42501" => Some(GRANT),
                "42000" if msg.contains("unknown database") => Some(DATABASE),
                "42000" if msg.contains("denied") => Some(GRANT),
                _ => None,
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
            Some("check that the server runs and the host and port in the source's location")
        }
        _ => None,
    };
    match advice {
        Some(a) => format!("{e}; {a}"),
        None => e.to_string(),
    }
}

fn quote_ident(kind: SourceKind, name: &str) -> String {
    match kind {
        SourceKind::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// Builds the record and item of one row.
fn row_item(source: &str, t: &TableSpec, cells: Cells) -> Result<Item, String> {
    let mut key_parts = Vec::with_capacity(t.key.len());
    for k in &t.key {
        key_parts
            .push(cell(&cells, k).ok_or_else(|| format!("table `{}`: key column `{k}` is missing or NULL", t.name))?);
    }
    let locator = locator(t, &key_parts);
    let mut r = Record::new(source, &locator, Record::key_for(source, &locator), RecordKind::Row);
    let mut text = String::new();
    let mut hasher = blake3::Hasher::new();
    for (name, value) in &cells {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        if let Some(v) = value {
            hasher.update(v.as_bytes());
            if !v.is_empty() {
                text.push_str(name);
                text.push_str(": ");
                text.push_str(v);
                text.push('\n');
                r.fields.insert(name.to_string(), v.clone());
            }
        }
        hasher.update(&[1]);
    }
    r.fields.insert("table".into(), t.name.clone());
    r.text = text;
    r.title = match &t.title {
        Some(tpl) => {
            cells.iter().fold(tpl.clone(), |acc, (n, v)| acc.replace(&format!("{{{n}}}"), v.as_deref().unwrap_or("")))
        }
        None => format!("{} {}", t.name, key_parts.join(",")),
    };
    let date_col = t
        .date
        .clone()
        .or_else(|| cells.iter().map(|(n, _)| n).find(|n| crate::text::is_date_field(n)).map(|n| n.to_string()));
    r.date = date_col.and_then(|c| cell(&cells, &c)).and_then(crate::text::parse_date);
    let version = match t.updated.as_deref().and_then(|u| cell(&cells, u)) {
        Some(v) => format!("u:{v}"),
        None => format!("h:{}", &hasher.finalize().to_hex()[..16]),
    };
    let size = r.text.len() as u64;
    Ok(Item { locator, version, size, payload: Payload::Records(vec![r]) })
}

impl Connector for DatabaseConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn set_known(&mut self, known: Arc<crate::Known>) {
        self.known = known;
    }

    fn scan(&mut self, sink: &mut dyn FnMut(Item) -> bool) -> Result<ScanReport, ConnectorError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| self.db_err(e))?;
        rt.block_on(self.scan_async(sink))
    }
}

/// A connection to a database of one of the three kinds.
enum Pool {
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

/// How one query's read ended.
enum Read {
    /// Read to its end: this many rows.
    Done(usize),
    /// The row handler wanted no more.
    Stopped,
    /// The connection went away; reading again may work.
    Lost(String),
    /// The query failed for good (bad SQL, permissions).
    Failed(String),
}

impl Pool {
    /// Runs `sql`, handing each row's cells to `row` until it says stop.
    async fn read(&self, sql: &str, row: &mut dyn FnMut(Cells) -> Step) -> Read {
        macro_rules! go {
            ($pool:expr, $cells:expr) => {{
                // The query text is built from the operator's own configuration, not user input.
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch($pool);
                let mut n = 0;
                loop {
                    match rows.try_next().await {
                        Ok(Some(r)) => {
                            n += 1;
                            if let Step::Stop = row($cells(&r)) {
                                break Read::Stopped;
                            }
                        }
                        Ok(None) => break Read::Done(n),
                        Err(e) if connection_lost(&e) => break Read::Lost(e.to_string()),
                        Err(e) => break Read::Failed(format!("query failed: {}", sql_error(&e))),
                    }
                }
            }};
        }
        match self {
            Pool::Sqlite(c) => sqlite_read(c, sql, row),
            Pool::Postgres(p) => go!(p, pg_cells),
            Pool::Mysql(p) => go!(p, mysql_cells),
        }
    }

    async fn close(&self) {
        match self {
            Pool::Sqlite(_) => {}
            Pool::Postgres(p) => p.close().await,
            Pool::Mysql(p) => p.close().await,
        }
    }
}

/// The value of column `c` in a row's cells (names compare without case, as SQL's do).
fn cell<'a>(cells: &'a Cells, c: &str) -> Option<&'a str> {
    cells.iter().find(|(n, _)| n.eq_ignore_ascii_case(c)).and_then(|(_, v)| v.as_deref())
}

/// A row's locator: the table's name, then its key values (`customers/42`, `lines/7,2`), built
/// in one allocation (a listing makes one for every row of the table).
fn locator(t: &TableSpec, parts: &[&str]) -> String {
    let mut locator = String::with_capacity(t.name.len() + 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    locator.push_str(&t.name);
    locator.push('/');
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            locator.push(',');
        }
        locator.push_str(p);
    }
    locator
}

/// A row's key values, as text that the server can compare again with the key columns.
fn key_values(t: &TableSpec, cells: &Cells) -> Result<Vec<String>, String> {
    Ok(key_refs(t, cells)?.into_iter().map(str::to_string).collect())
}

/// [`key_values`], borrowed from the row (most tables have a key of one or two columns, and a
/// listing looks at every row's).
fn key_refs<'a>(t: &TableSpec, cells: &'a Cells) -> Result<smallvec::SmallVec<[&'a str; 2]>, String> {
    t.key
        .iter()
        .map(|k| match cell(cells, k) {
            None => Err(format!("table `{}`: key column `{k}` is missing or NULL", t.name)),
            Some(v) if v.starts_with("(binary, ") || v.starts_with("(unsupported type ") => Err(format!(
                "table `{}`: key column `{k}` is {v}, which cannot identify a row; key the table on \
                 other columns, or give it a `query` that selects the key as text",
                t.name
            )),
            Some(v) => Ok(v),
        })
        .collect()
}

/// One page of a table in key order: the `select` columns of the rows after key `after`, that
/// match `filter`. Rows without a key value cannot be paged to; they are counted apart.
fn page_sql(
    kind: SourceKind,
    t: &TableSpec,
    select: &str,
    filter: Option<&str>,
    after: Option<&[String]>,
    rows: usize,
) -> String {
    let keys: Vec<String> = t.key.iter().map(|k| quote_ident(kind, k)).collect();
    let mut conds: Vec<String> = keys.iter().map(|k| format!("{k} IS NOT NULL")).collect();
    conds.extend(filter.map(str::to_string));
    if let Some(after) = after {
        let values: Vec<String> = after.iter().map(|v| literal(kind, v)).collect();
        conds.push(match (keys.as_slice(), values.as_slice()) {
            ([k], [v]) => format!("{k} > {v}"),
            _ => format!("({}) > ({})", keys.join(", "), values.join(", ")),
        });
    }
    format!(
        "SELECT {select} FROM {} WHERE {} ORDER BY {} LIMIT {rows}",
        quote_ident(kind, &t.name),
        conds.join(" AND "),
        keys.join(", ")
    )
}

impl DatabaseConnector {
    /// Whether to read again after the connection dropped; waits a little longer each time.
    async fn reconnect(&self, table: &str, reconnects: &mut u32, total: &mut u32, why: &str) -> bool {
        if *reconnects >= MAX_RECONNECTS {
            return false;
        }
        *reconnects += 1;
        *total += 1;
        tracing::warn!(
            "{}: connection lost reading `{table}` ({why}); reconnecting ({reconnects}/{MAX_RECONNECTS})",
            self.name
        );
        tokio::time::sleep(std::time::Duration::from_millis(500 << *reconnects)).await;
        true
    }

    /// Reads table `t` to its end, handing each row's cells to `row`: `Ok(true)` when read to the
    /// end, `Ok(false)` when `row` stopped it. A table is read page by page in key order, so its
    /// size never matters and a dropped connection resumes after the last row handed on; a
    /// `query` is read in one pass, and after a drop read again, skipping the rows already handed
    /// on. `total` counts the reconnections.
    async fn read_table(
        &self,
        pool: &Pool,
        t: &TableSpec,
        select: &str,
        filter: Option<&str>,
        total: &mut u32,
        row: &mut dyn FnMut(Cells) -> Step,
    ) -> Result<bool, String> {
        let mut reconnects = 0u32;
        let lost = |e: &str| format!("connection lost {} times, last: {e}", MAX_RECONNECTS + 1);
        if let Some(query) = &t.query {
            // Some columns or rows only (the keys and change values, or the changed rows): the
            // query is read as a derived table, which all three servers accept.
            let wrapped;
            let query = if select == "*" && filter.is_none() {
                query.as_str()
            } else {
                let inner = query.trim().trim_end_matches(';');
                let filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
                wrapped = format!("SELECT {select} FROM ({inner}) AS dossier_query{filter}");
                wrapped.as_str()
            };
            let mut handed: HashSet<Vec<String>> = HashSet::new();
            loop {
                let mut once = |cells: Cells| match key_values(t, &cells) {
                    Ok(key) if handed.contains(&key) => Step::Next,
                    Ok(key) => {
                        handed.insert(key);
                        row(cells)
                    }
                    Err(_) => row(cells),
                };
                match pool.read(query, &mut once).await {
                    Read::Done(_) => return Ok(true),
                    Read::Stopped => return Ok(false),
                    Read::Failed(e) => return Err(e),
                    Read::Lost(e) => {
                        if !self.reconnect(&t.name, &mut reconnects, total, &e).await {
                            return Err(lost(&e));
                        }
                    }
                }
            }
        }
        let rows = t.batch_rows.max(1);
        let mut after: Option<Vec<String>> = None;
        loop {
            let sql = page_sql(self.kind, t, select, filter, after.as_deref(), rows);
            let mut bad: Option<String> = None;
            let mut paged = |cells: Cells| {
                let checked = match key_refs(t, &cells) {
                    // A key the server does not put after the last one cannot be paged through.
                    Ok(key)
                        if after.as_deref().is_some_and(|a| a.iter().map(String::as_str).eq(key.iter().copied())) =>
                    {
                        Err(format!(
                            "table `{}`: its key ({}) does not order its rows; give the table a `query` to read it in one pass",
                            t.name,
                            t.key.join(", ")
                        ))
                    }
                    Ok(key) => {
                        // The last key, in the strings of the one before (a listing reads every row).
                        let last = after.get_or_insert_with(Vec::new);
                        last.resize(key.len(), String::new());
                        for (l, k) in last.iter_mut().zip(&key) {
                            l.clear();
                            l.push_str(k);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                match checked {
                    Ok(()) => row(cells),
                    Err(e) => {
                        bad = Some(e);
                        Step::Stop
                    }
                }
            };
            let read = pool.read(&sql, &mut paged).await;
            if let Some(e) = bad {
                return Err(e);
            }
            match read {
                Read::Done(n) if n < rows => return Ok(true),
                Read::Done(_) => {}
                Read::Stopped => return Ok(false),
                Read::Failed(e) => return Err(e),
                Read::Lost(e) => {
                    if !self.reconnect(&t.name, &mut reconnects, total, &e).await {
                        return Err(lost(&e));
                    }
                }
            }
        }
    }

    /// Counts the rows of `t` that have no key value, which a paged read cannot reach.
    async fn keyless_rows(&self, pool: &Pool, t: &TableSpec) -> Result<u64, String> {
        let cond: Vec<String> = t.key.iter().map(|k| format!("{} IS NULL", quote_ident(self.kind, k))).collect();
        let sql = format!("SELECT COUNT(*) AS n FROM {} WHERE {}", quote_ident(self.kind, &t.name), cond.join(" OR "));
        let mut n = 0;
        match pool
            .read(&sql, &mut |cells| {
                n = cell(&cells, "n").and_then(|v| v.parse().ok()).unwrap_or(0);
                Step::Next
            })
            .await
        {
            Read::Done(_) | Read::Stopped => Ok(n),
            Read::Lost(e) | Read::Failed(e) => Err(e),
        }
    }

    /// Lists one table (or query): with a change column and a previous run, its keys and change
    /// values first, unchanged rows passed on as such, then only the changed rows read in full;
    /// otherwise every row in full. `Ok(false)` when the sink stopped the listing.
    async fn scan_table(
        &self,
        pool: &Pool,
        t: &TableSpec,
        report: &mut ScanReport,
        sink: &mut dyn FnMut(Item) -> bool,
    ) -> Result<bool, String> {
        // A row's failure is reported once per table and reason, not once per row.
        let mut reported: HashSet<String> = HashSet::new();
        let mut full_row = |cells: Cells,
                            errors: &mut Vec<dossier_schema::ItemError>,
                            sink: &mut dyn FnMut(Item) -> bool,
                            wanted: Option<&mut HashSet<String>>| {
            match row_item(&self.name, t, cells) {
                Ok(item) => {
                    let needed = wanted.is_none_or(|w| w.remove(&item.locator));
                    if !needed || sink(item) { Step::Next } else { Step::Stop }
                }
                Err(reason) => {
                    if reported.insert(reason.clone()) {
                        errors.push(dossier_schema::ItemError {
                            source: self.name.clone(),
                            locator: t.name.clone(),
                            reason,
                        });
                    }
                    Step::Next
                }
            }
        };
        let listed = (self.known.iter())
            .any(|(k, v)| v.starts_with("u:") && k.strip_prefix(t.name.as_str()).is_some_and(|r| r.starts_with('/')));
        let (Some(upd), true) = (&t.updated, listed) else {
            if t.query.is_none() {
                let n = self.keyless_rows(pool, t).await?;
                if n > 0 {
                    report.errors.push(dossier_schema::ItemError {
                        source: self.name.clone(),
                        locator: t.name.clone(),
                        reason: format!(
                            "table `{}`: {n} rows have no value in key column(s) {} and are not indexed",
                            t.name,
                            t.key.join(", ")
                        ),
                    });
                }
            }
            let errors = &mut report.errors;
            let mut all = |cells: Cells| full_row(cells, errors, sink, None);
            return self.read_table(pool, t, "*", None, &mut report.reconnects, &mut all).await;
        };
        let cols: Vec<String> = t.key.iter().chain(std::iter::once(upd)).map(|c| quote_ident(self.kind, c)).collect();
        let mut changed: Vec<(String, Option<String>)> = Vec::new();
        // (Every row of the table passes here: its locator is made in one allocation, and its
        // version is compared with the known one before any is made.)
        let mut unchanged = |cells: Cells| {
            let Ok(parts) = key_refs(t, &cells) else { return Step::Next };
            let locator = locator(t, &parts);
            let value = cell(&cells, upd);
            match (value, self.known.get(locator.as_str())) {
                (Some(u), Some(known)) if known.strip_prefix("u:") == Some(u) => {
                    let item =
                        Item { locator, version: known.to_string(), size: 0, payload: Payload::Records(Vec::new()) };
                    if sink(item) { Step::Next } else { Step::Stop }
                }
                _ => {
                    changed.push((locator, value.map(str::to_string)));
                    Step::Next
                }
            }
        };
        if !self.read_table(pool, t, &cols.join(", "), None, &mut report.reconnects, &mut unchanged).await? {
            return Ok(false);
        }
        // Changed rows have a change value at least the lowest changed one; rows whose value went
        // backwards are caught by a last full pass.
        let since = lowest(changed.iter().map(|c| c.1.as_deref()))
            .map(|since| format!("{} >= {}", quote_ident(self.kind, upd), literal(self.kind, since)));
        let mut wanted: HashSet<String> = changed.into_iter().map(|c| c.0).collect();
        for filter in [since.as_deref(), None] {
            if wanted.is_empty() {
                break;
            }
            let errors = &mut report.errors;
            let mut some = |cells: Cells| full_row(cells, errors, sink, Some(&mut wanted));
            if !self.read_table(pool, t, "*", filter, &mut report.reconnects, &mut some).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn scan_async(&self, sink: &mut dyn FnMut(Item) -> bool) -> Result<ScanReport, ConnectorError> {
        let mut report = ScanReport { complete: true, errors: Vec::new(), reconnects: 0 };
        let timeout = std::time::Duration::from_secs(15);
        let pool = match self.kind {
            SourceKind::Sqlite => Pool::Sqlite(sqlite_open(&self.url, timeout).map_err(|e| self.db_err(e))?),
            SourceKind::Postgres => {
                let opts: sqlx::postgres::PgConnectOptions = self.url.parse().map_err(|e| self.db_err(e))?;
                Pool::Postgres(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(timeout)
                        .connect_with(opts.application_name("dossier"))
                        .await
                        .map_err(|e| self.db_err(sql_error(&e)))?,
                )
            }
            SourceKind::Mysql => Pool::Mysql(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeout)
                    .connect(&self.url)
                    .await
                    .map_err(|e| self.db_err(sql_error(&e)))?,
            ),
            SourceKind::Files | SourceKind::Tickets => {
                return Err(ConnectorError::Config {
                    source_name: self.name.clone(),
                    reason: "not a database source".into(),
                });
            }
        };
        for t in &self.tables {
            match self.scan_table(&pool, t, &mut report, sink).await {
                Ok(true) => {}
                Ok(false) => {
                    report.complete = false;
                    break;
                }
                Err(reason) => {
                    // A failed table leaves the listing incomplete: no deletes for this source.
                    report.complete = false;
                    report.errors.push(dossier_schema::ItemError {
                        source: self.name.clone(),
                        locator: t.name.clone(),
                        reason,
                    });
                }
            }
        }
        pool.close().await;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(key: &[&str]) -> TableSpec {
        TableSpec {
            name: "order lines".into(),
            query: None,
            key: key.iter().map(|k| k.to_string()).collect(),
            updated: None,
            date: None,
            title: None,
            fields: Default::default(),
            batch_rows: 10,
        }
    }

    #[test]
    fn a_page_starts_after_the_last_key_in_key_order() {
        let t = table(&["id"]);
        assert_eq!(
            page_sql(SourceKind::Postgres, &t, "*", None, None, 10),
            r#"SELECT * FROM "order lines" WHERE "id" IS NOT NULL ORDER BY "id" LIMIT 10"#
        );
        let t = table(&["inv", "line"]);
        let after = ["7".to_string(), "it's".to_string()];
        assert_eq!(
            page_sql(SourceKind::Mysql, &t, "`inv`, `line`", Some("`u` >= '5'"), Some(&after), 3),
            "SELECT `inv`, `line` FROM `order lines` WHERE `inv` IS NOT NULL AND `line` IS NOT NULL AND `u` >= '5' \
             AND (`inv`, `line`) > ('7', 'it''s') ORDER BY `inv`, `line` LIMIT 3"
        );
    }

    #[test]
    fn a_key_is_read_from_its_cells_or_named_as_unusable() {
        let t = table(&["ID"]);
        let cells: Cells = vec![("id".into(), Some("42".into())), ("note".into(), None)];
        assert_eq!(key_values(&t, &cells), Ok(vec!["42".to_string()]));
        let cells: Cells = vec![("id".into(), None)];
        assert!(key_values(&t, &cells).is_err_and(|e| e.contains("missing or NULL")));
        let cells: Cells = vec![("id".into(), Some("(binary, 16 bytes, not indexed)".into()))];
        assert!(key_values(&t, &cells).is_err_and(|e| e.contains("cannot identify a row")));
    }

    fn sqlite_source(location: &str) -> DatabaseConnector {
        let mut spec = SourceSpec::files("lite", location);
        spec.kind = SourceKind::Sqlite;
        spec.tables = vec![table(&["id"])];
        spec.tables[0].name = "notes".into();
        DatabaseConnector::new(&spec, Path::new("/")).unwrap()
    }

    #[test]
    fn a_sqlite_file_reads_every_value_as_text_and_a_missing_or_bad_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("crm.sqlite");
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, amount REAL, photo BLOB)").unwrap();
        // Latin-1 text stored as TEXT: its bytes are not UTF-8.
        db.execute("INSERT INTO notes VALUES (1, CAST(?1 AS TEXT), 12.0, x'0102')", [b"caf\xe9".to_vec()]).unwrap();
        db.execute("INSERT INTO notes VALUES (2, NULL, 0.25, NULL)", []).unwrap();
        drop(db);
        let mut rows = Vec::new();
        let report = sqlite_source(&format!("sqlite://{}?mode=ro", path.display()))
            .scan(&mut |item| {
                let Payload::Records(rs) = item.payload else { return true };
                rows.extend(rs.into_iter().map(|r| r.fields));
                true
            })
            .unwrap();
        assert!(report.complete && report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["body"], "caf\u{fffd}");
        assert_eq!(rows[0]["amount"], "12");
        assert_eq!(rows[0]["photo"], "(binary, 2 bytes, not indexed)");
        assert_eq!((rows[1].get("body"), rows[1]["amount"].as_str()), (None, "0.25"));

        let missing = tmp.path().join("gone.sqlite");
        let err = sqlite_source(&missing.display().to_string()).scan(&mut |_| true).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("no SQLite file at") && e.contains("gone.sqlite")),
            "{err:?}"
        );
        let junk = tmp.path().join("junk.sqlite");
        std::fs::write(&junk, b"this is not a database, only text long enough to look like a header").unwrap();
        let err = sqlite_source(&junk.display().to_string()).scan(&mut |_| true).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("cannot read SQLite file") && e.contains("junk.sqlite")),
            "{err:?}"
        );
    }
}
