//! Relational silos through sqlx: SQLite (embedded), PostgreSQL, MySQL/MariaDB.
//! Read-only; rows stream from the server one at a time, so a table of
//! millions never sits in memory; every column type is turned into text.

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
        Ok(DatabaseConnector { name: spec.name.clone(), kind: spec.kind, url, tables: spec.tables.clone() })
    }

    fn db_err(&self, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Database { source_name: self.name.clone(), reason: e.to_string() }
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

    fn scan(&mut self, sink: &mut dyn FnMut(Item) -> bool) -> Result<ScanReport, ConnectorError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| self.db_err(e))?;
        rt.block_on(self.scan_async(sink))
    }
}

impl DatabaseConnector {
    async fn scan_async(&self, sink: &mut dyn FnMut(Item) -> bool) -> Result<ScanReport, ConnectorError> {
        let mut report = ScanReport { complete: true, errors: Vec::new() };
        let timeout = std::time::Duration::from_secs(15);
        macro_rules! run_tables {
            ($pool:expr, $cells:expr) => {{
                let pool = $pool;
                for t in &self.tables {
                    let q =
                        t.query.clone().unwrap_or_else(|| format!("SELECT * FROM {}", quote_ident(self.kind, &t.name)));
                    // The query text is the operator's own configuration, not user input.
                    let mut rows = sqlx::query(sqlx::AssertSqlSafe(q.as_str())).fetch(&pool);
                    loop {
                        match rows.try_next().await {
                            Ok(Some(row)) => match row_item(&self.name, t, $cells(&row)) {
                                Ok(item) => {
                                    if !sink(item) {
                                        report.complete = false;
                                        return Ok(report);
                                    }
                                }
                                Err(reason) => report.errors.push(dossier_schema::ItemError {
                                    source: self.name.clone(),
                                    locator: t.name.clone(),
                                    reason,
                                }),
                            },
                            Ok(None) => break,
                            Err(e) => {
                                // A failed table leaves the listing incomplete: no deletes for this source.
                                report.complete = false;
                                report.errors.push(dossier_schema::ItemError {
                                    source: self.name.clone(),
                                    locator: t.name.clone(),
                                    reason: format!("query failed: {e}"),
                                });
                                break;
                            }
                        }
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
                    .map_err(|e| self.db_err(e))?;
                run_tables!(pool, sqlite_cells);
            }
            SourceKind::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeout)
                    .connect(&self.url)
                    .await
                    .map_err(|e| self.db_err(e))?;
                run_tables!(pool, pg_cells);
            }
            SourceKind::Mysql => {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeout)
                    .connect(&self.url)
                    .await
                    .map_err(|e| self.db_err(e))?;
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
