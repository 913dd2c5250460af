//! What a connector needs to know about its source, as written in `dossier.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The kind of silo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A folder of files: PDFs, spreadsheets, CSV, mailboxes, .eml, text.
    Files,
    /// A folder of ticket or chat exports (CSV, JSON Lines, JSON) mapped by `tickets`.
    Tickets,
    /// An SQLite database file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
    /// A MySQL or MariaDB server.
    Mysql,
}

/// One table (or query) of a database source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Table name; also the record locator's prefix.
    pub name: String,
    /// A query to run instead of `SELECT * FROM name`.
    #[serde(default)]
    pub query: Option<String>,
    /// The key column(s) that identify a row.
    pub key: Vec<String>,
    /// A column that changes whenever the row does (`updated_at`, a row version); for a `query`,
    /// a column of its result (over a join, the latest of the joined rows' change columns).
    #[serde(default)]
    pub updated: Option<String>,
    /// The column holding the row's main date, for the timeline.
    #[serde(default)]
    pub date: Option<String>,
    /// A title template such as `"Order {id}"`; default `table key`.
    #[serde(default)]
    pub title: Option<String>,
    /// Columns mapped to mention kinds (`person`, `first_name`, `last_name`, `email`, `phone`,
    /// `company`, `address`, `city`, `state`, `postcode`, `dob`, `id:KIND`, `ignore`), beyond the
    /// source's own map.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Rows per page when the table is read in key order (not for a `query`, read in one pass).
    #[serde(default = "TableSpec::default_batch_rows")]
    pub batch_rows: usize,
}

impl TableSpec {
    fn default_batch_rows() -> usize {
        10_000
    }
}

/// How ticket and chat exports map to records.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSpec {
    /// The column (or JSON key) holding the conversation text.
    pub text: String,
    /// The column holding the ticket id; default the row number.
    #[serde(default)]
    pub id: Option<String>,
    /// The column holding the date.
    #[serde(default)]
    pub date: Option<String>,
    /// The column holding the author.
    #[serde(default)]
    pub author: Option<String>,
    /// The column holding the subject or title.
    #[serde(default)]
    pub title: Option<String>,
}

/// Size and time bounds applied to every item of a source.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest file read, in bytes.
    #[serde(default = "Limits::default_max_file")]
    pub max_file_bytes: u64,
    /// Most records one item may produce.
    #[serde(default = "Limits::default_max_records")]
    pub max_records: usize,
    /// Most PDF pages read from one document.
    #[serde(default = "Limits::default_max_pages")]
    pub max_pages: usize,
    /// Most spreadsheet cells read from one sheet.
    #[serde(default = "Limits::default_max_cells")]
    pub max_cells: usize,
    /// How deep attachments inside attachments are followed.
    #[serde(default = "Limits::default_max_depth")]
    pub max_depth: u32,
    /// Most text kept for one record, in bytes.
    #[serde(default = "Limits::default_max_text")]
    pub max_text_bytes: usize,
    /// Wall-clock seconds one item may take to extract.
    #[serde(default = "Limits::default_timeout")]
    pub timeout_secs: u64,
    /// Address-space limit of an isolated extraction, in MiB.
    #[serde(default = "Limits::default_memory")]
    pub memory_mib: u64,
    /// A run of a source stops after this many failed items in a row (0: never).
    #[serde(default = "Limits::default_consecutive_failures")]
    pub max_consecutive_failures: usize,
    /// A run of a source stops when more than this share of its last 200 items failed (1.0: never).
    #[serde(default = "Limits::default_failure_share")]
    pub max_failure_share: f64,
}

impl Limits {
    fn default_max_file() -> u64 {
        256 << 20
    }
    fn default_max_records() -> usize {
        200_000
    }
    fn default_max_pages() -> usize {
        2_000
    }
    fn default_max_cells() -> usize {
        5_000_000
    }
    fn default_max_depth() -> u32 {
        4
    }
    fn default_max_text() -> usize {
        4 << 20
    }
    fn default_timeout() -> u64 {
        30
    }
    fn default_memory() -> u64 {
        2048
    }
    fn default_consecutive_failures() -> usize {
        50
    }
    fn default_failure_share() -> f64 {
        0.5
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: Self::default_max_file(),
            max_records: Self::default_max_records(),
            max_pages: Self::default_max_pages(),
            max_cells: Self::default_max_cells(),
            max_depth: Self::default_max_depth(),
            max_text_bytes: Self::default_max_text(),
            timeout_secs: Self::default_timeout(),
            memory_mib: Self::default_memory(),
            max_consecutive_failures: Self::default_consecutive_failures(),
            max_failure_share: Self::default_failure_share(),
        }
    }
}

/// One configured silo, as `[[sources]]` in `dossier.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Unique name (`crm`, `billing`, `contracts`); the first part of every record key.
    pub name: String,
    /// The kind of silo.
    pub kind: SourceKind,
    /// A folder or file path (relative to the config file), or a database URL.
    /// `${VAR}` is replaced from the environment, so credentials stay out of the file.
    pub location: String,
    /// Glob patterns of files to include (default: everything).
    #[serde(default)]
    pub include: Vec<String>,
    /// Glob patterns of files to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Roles allowed to see this source's records (empty: every role).
    #[serde(default)]
    pub roles: Vec<String>,
    /// When to re-index: cron syntax (`0 */15 * * * *`) or an interval (`every 15m`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Longest a scheduled or asked-for run of this source may extract (`30m`); what is left
    /// waits for the next run.
    #[serde(default)]
    pub budget: Option<String>,
    /// For file sources: `dossier serve` indexes a change within seconds of it (bursts are
    /// gathered for a second first).
    #[serde(default)]
    pub watch: bool,
    /// Passwords to try on encrypted PDFs and workbooks.
    #[serde(default)]
    pub passwords: Vec<String>,
    /// Fields mapped to mention kinds, for every table or file of this source.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Tables of a database source.
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// Mapping of a tickets source.
    #[serde(default)]
    pub tickets: Option<TicketSpec>,
    /// Bounds for every item.
    #[serde(default)]
    pub limits: Limits,
}

impl SourceSpec {
    /// A files source named `name` at `location` with every other setting at its default.
    pub fn files(name: &str, location: &str) -> SourceSpec {
        SourceSpec {
            name: name.to_string(),
            kind: SourceKind::Files,
            location: location.to_string(),
            include: Vec::new(),
            exclude: Vec::new(),
            roles: Vec::new(),
            schedule: None,
            budget: None,
            watch: false,
            passwords: Vec::new(),
            fields: BTreeMap::new(),
            tables: Vec::new(),
            tickets: None,
            limits: Limits::default(),
        }
    }
}

/// Replaces `${VAR}` with the environment's value (empty when unset).
pub fn expand_env(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let var = &rest[start + 2..start + 2 + end];
                out.push_str(&std::env::var(var).unwrap_or_default());
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        // SAFETY: single-threaded test setting a variable only it reads.
        unsafe { std::env::set_var("DOSSIER_TEST_PW", "s3cret") };
        assert_eq!(expand_env("postgres://u:${DOSSIER_TEST_PW}@h/db"), "postgres://u:s3cret@h/db");
        assert_eq!(expand_env("no vars"), "no vars");
        assert_eq!(expand_env("broken ${X"), "broken ${X");
    }
}
