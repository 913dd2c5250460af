//! Relational silos through sqlx: SQLite (embedded), PostgreSQL, MySQL/MariaDB.
//! Read-only; rows stream from the server one at a time, so a table of
//! millions never sits in memory; every column type is turned into text.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use dossier_schema::{Item, Payload, Record, RecordKind};
use futures_util::TryStreamExt;
use sqlx::{Column, Row, TypeInfo};

use crate::spec::{SourceKind, SourceSpec, TableSpec, expand_env};
use crate::{Connector, ConnectorError, ScanReport};

/// A database source.
pub struct DatabaseConnector {
    name: String,
    kind: SourceKind,
    url: String,
    tables: Vec<TableSpec>,
    /// Row versions (`u:` change-column values) from the last run, by locator.
    known: HashMap<String, String>,
}

/// One column of one row, as text (`None` for NULL).
type Cells = Vec<(String, Option<String>)>;

macro_rules! decode_row {
    ($row:expr, $( $t:ty => $f:expr ),* $(,)?) => {{
        let row = $row;
        let mut cells: Cells = Vec::with_capacity(row.columns().len());
        for (i, col) in row.columns().iter().enumerate() {
            let name = col.name().to_string();
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

fn sqlite_cells(row: &sqlx::sqlite::SqliteRow) -> Cells {
    decode_row!(row,
        i64 => |v| v.to_string(),
        f64 => fmt_f64,
        String => |v| v,
        chrono::NaiveDateTime => |v| v.to_string(),
    )
}

fn pg_cells(row: &sqlx::postgres::PgRow) -> Cells {
    decode_row!(row,
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
    )
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
        chrono::DateTime<chrono::Utc> => |v| v.to_rfc3339(),
        chrono::NaiveDateTime => |v| v.to_string(),
        chrono::NaiveDate => |v| v.to_string(),
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
                let path = loc.strip_prefix("sqlite://").unwrap_or(&loc);
                format!("sqlite://{}?mode=ro", base.join(path).display())
            }
            _ => loc,
        };
        Ok(DatabaseConnector {
            name: spec.name.clone(),
            kind: spec.kind,
            url,
            tables: spec.tables.clone(),
            known: HashMap::new(),
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
    let get = |c: &str| cells.iter().find(|(n, _)| n.eq_ignore_ascii_case(c)).and_then(|(_, v)| v.clone());
    let mut key_parts = Vec::with_capacity(t.key.len());
    for k in &t.key {
        key_parts.push(get(k).ok_or_else(|| format!("table `{}`: key column `{k}` is missing or NULL", t.name))?);
    }
    let locator = format!("{}/{}", t.name, key_parts.join(","));
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
                r.fields.insert(name.clone(), v.clone());
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
    let date_col =
        t.date.clone().or_else(|| cells.iter().map(|(n, _)| n).find(|n| crate::text::is_date_field(n)).cloned());
    r.date = date_col.and_then(|c| get(&c)).and_then(|v| crate::text::parse_date(&v));
    let version = match t.updated.as_deref().and_then(get) {
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

    fn set_known(&mut self, known: &HashMap<String, String>) {
        self.known = known.iter().filter(|(_, v)| v.starts_with("u:")).map(|(k, v)| (k.clone(), v.clone())).collect();
    }

    fn scan(&mut self, sink: &mut dyn FnMut(Item) -> bool) -> Result<ScanReport, ConnectorError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| self.db_err(e))?;
        rt.block_on(self.scan_async(sink))
    }
}

impl DatabaseConnector {
    async fn scan_async(&self, sink: &mut dyn FnMut(Item) -> bool) -> Result<ScanReport, ConnectorError> {
        let mut report = ScanReport { complete: true, errors: Vec::new(), reconnects: 0 };
        let timeout = std::time::Duration::from_secs(15);
        // Runs one query and hands each row's cells to $body (which says Step::Next or Step::Stop).
        // A dropped connection is reconnected and the query read again; $body must skip rows it
        // has already handled. Evaluates to Ok(true) when read to the end, Ok(false) when stopped.
        macro_rules! for_each_row {
            ($pool:expr, $sql:expr, $cells:expr, $table:expr, |$c:ident| $body:block) => {{
                let mut reconnects = 0u32;
                let mut outcome: Result<bool, String> = Ok(true);
                'read: loop {
                    // The query text is the operator's own configuration, not user input.
                    let mut rows = sqlx::query(sqlx::AssertSqlSafe($sql)).fetch($pool);
                    loop {
                        match rows.try_next().await {
                            Ok(Some(row)) => {
                                let $c = $cells(&row);
                                if let Step::Stop = $body {
                                    outcome = Ok(false);
                                    break 'read;
                                }
                            }
                            Ok(None) => break 'read,
                            Err(e) if connection_lost(&e) && reconnects < MAX_RECONNECTS => {
                                reconnects += 1;
                                report.reconnects += 1;
                                tracing::warn!(
                                    "{}: connection lost reading `{}` ({e}); reconnecting ({reconnects}/{MAX_RECONNECTS})",
                                    self.name,
                                    $table
                                );
                                drop(rows);
                                tokio::time::sleep(std::time::Duration::from_millis(500 << reconnects)).await;
                                continue 'read;
                            }
                            Err(e) => {
                                outcome = Err(format!("query failed: {}", sql_error(&e)));
                                break 'read;
                            }
                        }
                    }
                }
                outcome
            }};
        }
        macro_rules! run_tables {
            ($pool:expr, $cells:expr) => {{
                let pool = $pool;
                for t in &self.tables {
                    let all_sql =
                        t.query.clone().unwrap_or_else(|| format!("SELECT * FROM {}", quote_ident(self.kind, &t.name)));
                    // Rows already handed on, so a read resumed after a dropped connection sends each row once.
                    let mut emitted: HashSet<String> = HashSet::new();
                    let mut reported: HashSet<String> = HashSet::new();
                    let mut failed: Option<String> = None;
                    // With a change column and a previous run: list keys and change values only, pass on
                    // unchanged rows as such, and read in full only the rows changed since.
                    let mut wanted: Option<HashSet<String>> = None;
                    let mut passes = vec![all_sql.clone()];
                    if let (Some(upd), None) = (&t.updated, &t.query)
                        && self.known.keys().any(|k| k.starts_with(&format!("{}/", t.name)))
                    {
                        let cols: Vec<String> =
                            t.key.iter().chain(std::iter::once(upd)).map(|c| quote_ident(self.kind, c)).collect();
                        let list_sql = format!("SELECT {} FROM {}", cols.join(", "), quote_ident(self.kind, &t.name));
                        let mut changed: Vec<(String, Option<String>)> = Vec::new();
                        let listed = for_each_row!(&pool, list_sql.as_str(), $cells, t.name, |cells| {
                            let get = |c: &str| {
                                cells.iter().find(|(n, _)| n.eq_ignore_ascii_case(c)).and_then(|(_, v)| v.clone())
                            };
                            let parts: Option<Vec<String>> = t.key.iter().map(|k| get(k)).collect();
                            match parts {
                                // A row without its key is reported by the full read.
                                None => Step::Next,
                                Some(parts) => {
                                    let locator = format!("{}/{}", t.name, parts.join(","));
                                    let version = get(upd).map(|u| format!("u:{u}"));
                                    if version.is_some() && self.known.get(&locator) == version.as_ref() {
                                        if emitted.insert(locator.clone()) {
                                            let version = version.unwrap_or_default();
                                            let item = Item {
                                                locator,
                                                version,
                                                size: 0,
                                                payload: Payload::Records(Vec::new()),
                                            };
                                            if sink(item) { Step::Next } else { Step::Stop }
                                        } else {
                                            Step::Next
                                        }
                                    } else {
                                        changed.push((locator, get(upd)));
                                        Step::Next
                                    }
                                }
                            }
                        });
                        match listed {
                            Ok(false) => {
                                report.complete = false;
                                return Ok(report);
                            }
                            Err(e) => failed = Some(e),
                            Ok(true) => {
                                passes.clear();
                                if !changed.is_empty() {
                                    // Changed rows have a change value at least the lowest changed one; rows whose
                                    // value went backwards are caught by a last full pass.
                                    if let Some(since) = lowest(changed.iter().map(|c| c.1.as_deref())) {
                                        passes.push(format!(
                                            "{all_sql} WHERE {} >= {}",
                                            quote_ident(self.kind, upd),
                                            literal(self.kind, since)
                                        ));
                                    }
                                    passes.push(all_sql.clone());
                                }
                                wanted = Some(changed.into_iter().map(|c| c.0).collect());
                            }
                        }
                    }
                    for sql in passes.iter().filter(|_| failed.is_none()) {
                        if wanted.as_ref().is_some_and(|w| w.is_empty()) {
                            break;
                        }
                        let read = for_each_row!(&pool, sql.as_str(), $cells, t.name, |cells| {
                            match row_item(&self.name, t, cells) {
                                Ok(item) => {
                                    let needed = match wanted.as_mut() {
                                        Some(w) => w.remove(&item.locator),
                                        None => true,
                                    };
                                    if !needed || !emitted.insert(item.locator.clone()) {
                                        Step::Next
                                    } else if sink(item) {
                                        Step::Next
                                    } else {
                                        Step::Stop
                                    }
                                }
                                Err(reason) => {
                                    if reported.insert(reason.clone()) {
                                        report.errors.push(dossier_schema::ItemError {
                                            source: self.name.clone(),
                                            locator: t.name.clone(),
                                            reason,
                                        });
                                    }
                                    Step::Next
                                }
                            }
                        });
                        match read {
                            Ok(true) => {}
                            Ok(false) => {
                                report.complete = false;
                                return Ok(report);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(reason) = failed {
                        // A failed table leaves the listing incomplete: no deletes for this source.
                        report.complete = false;
                        report.errors.push(dossier_schema::ItemError {
                            source: self.name.clone(),
                            locator: t.name.clone(),
                            reason,
                        });
                    }
                }
                pool.close().await;
            }};
        }
        match self.kind {
            SourceKind::Sqlite => {
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeout)
                    .connect(&self.url)
                    .await
                    .map_err(|e| self.db_err(sql_error(&e)))?;
                run_tables!(pool, sqlite_cells);
            }
            SourceKind::Postgres => {
                let opts: sqlx::postgres::PgConnectOptions = self.url.parse().map_err(|e| self.db_err(e))?;
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeout)
                    .connect_with(opts.application_name("dossier"))
                    .await
                    .map_err(|e| self.db_err(sql_error(&e)))?;
                run_tables!(pool, pg_cells);
            }
            SourceKind::Mysql => {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeout)
                    .connect(&self.url)
                    .await
                    .map_err(|e| self.db_err(sql_error(&e)))?;
                run_tables!(pool, mysql_cells);
            }
            SourceKind::Files | SourceKind::Tickets => {
                return Err(ConnectorError::Config {
                    source_name: self.name.clone(),
                    reason: "not a database source".into(),
                });
            }
        }
        Ok(report)
    }
}
