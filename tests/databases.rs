//! The database connectors against real servers: Chinook loaded into SQLite,
//! PostgreSQL (127.0.0.1:5432, trust, database `test`) and MariaDB/MySQL
//! (127.0.0.1:3306, root, no password) must give the same records and customers.
//! Skips with a reason when a server or the shared corpus is absent; fails under CI=true.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const DB: &str = "dossier_chinook_test";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(why: &str) {
    if ci() {
        panic!("{why}, and CI=true requires it");
    }
    eprintln!("skipping: {why}");
}

fn sh(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr))) }
}

/// The script without its own CREATE DATABASE / connect lines, so it loads into our database.
fn script(corpus: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(corpus.join("databases/chinook").join(name)).unwrap();
    text.lines()
        .filter(|l| {
            let t = l.trim_start().to_ascii_uppercase();
            !(t.starts_with("DROP DATABASE")
                || t.starts_with("CREATE DATABASE")
                || t.starts_with("\\C ")
                || t.starts_with("USE "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn load_postgres(corpus: &Path, dir: &Path) -> Result<(), String> {
    let psql = |args: &[&str]| {
        let mut c = Command::new("psql");
        c.args(["-h", "127.0.0.1", "-v", "ON_ERROR_STOP=1", "-q"]).args(args);
        c
    };
    sh(&mut psql(&["-d", "test", "-c", &format!("DROP DATABASE IF EXISTS {DB}")]))?;
    sh(&mut psql(&["-d", "test", "-c", &format!("CREATE DATABASE {DB} ENCODING 'UTF8' TEMPLATE template0")]))?;
    let f = dir.join("pg.sql");
    std::fs::write(&f, script(corpus, "Chinook_PostgreSql.sql")).unwrap();
    sh(&mut psql(&["-d", DB, "-f", f.to_str().unwrap()]))
}

fn load_mysql(corpus: &Path, dir: &Path) -> Result<(), String> {
    let mysql = || {
        let mut c = Command::new("mysql");
        c.args(["-h", "127.0.0.1", "-P", "3306", "-uroot", "--default-character-set=utf8mb4"]);
        c
    };
    sh(mysql().args(["-e", &format!("DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB} CHARACTER SET utf8mb4")]))?;
    let f = std::fs::File::open({
        let p = dir.join("my.sql");
        std::fs::write(&p, script(corpus, "Chinook_MySql.sql")).unwrap();
        p
    })
    .unwrap();
    sh(mysql().arg(DB).stdin(f))
}

/// A config indexing Chinook's customers, invoices and employees under the same field names.
fn config(dir: &Path, kind: &str, location: &str, pg: bool) -> std::path::PathBuf {
    let (customer, invoice, employee) = if pg {
        (
            r#"SELECT customer_id AS "CustomerId", first_name AS "FirstName", last_name AS "LastName", company AS "Company", city AS "City", country AS "Country", phone AS "Phone", email AS "Email", support_rep_id AS "SupportRepId" FROM customer"#,
            r#"SELECT i.invoice_id AS "InvoiceId", i.customer_id AS "CustomerId", i.invoice_date AS "InvoiceDate", i.total AS "Total", c.first_name AS "FirstName", c.last_name AS "LastName", c.email AS "Email" FROM invoice i JOIN customer c ON c.customer_id = i.customer_id"#,
            r#"SELECT employee_id AS "EmployeeId", first_name AS "EmpFirst", last_name AS "EmpLast", title AS "Title" FROM employee"#,
        )
    } else {
        (
            "SELECT CustomerId, FirstName, LastName, Company, City, Country, Phone, Email, SupportRepId FROM Customer",
            "SELECT i.InvoiceId, i.CustomerId, i.InvoiceDate, i.Total, c.FirstName, c.LastName, c.Email FROM Invoice i JOIN Customer c ON c.CustomerId = i.CustomerId",
            "SELECT EmployeeId, FirstName AS EmpFirst, LastName AS EmpLast, Title FROM Employee",
        )
    };
    let text = format!(
        r#"[index]
path = "index"

[[sources]]
name = "chinook"
kind = "{kind}"
location = "{location}"
fields = {{ Company = "company", City = "city" }}

[[sources.tables]]
name = "customer"
query = '{customer}'
key = ["CustomerId"]

[[sources.tables]]
name = "invoice"
query = '{invoice}'
key = ["InvoiceId"]
date = "InvoiceDate"

[[sources.tables]]
name = "employee"
query = '{employee}'
key = ["EmployeeId"]
"#
    );
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("dossier.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// What must agree across drivers: each customer's member keys, and the customers' names.
fn outcome(cfg: &Path) -> Outcome {
    let customers = common::export(cfg);
    let clusters = customers
        .iter()
        .map(|c| c["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect())
        .collect();
    let names = customers
        .iter()
        .map(|c| {
            (c["keys"][0].as_str().unwrap().to_string(), c["profile"]["display_name"].as_str().unwrap().to_string())
        })
        .collect();
    let records = customers.iter().map(|c| c["keys"].as_array().unwrap().len()).sum();
    (clusters, names, records)
}

type Outcome = (BTreeSet<BTreeSet<String>>, BTreeMap<String, String>, usize);

/// Indexes through `cfg` and checks records, customers and names against SQLite's.
fn assert_same_as_sqlite(cfg: &Path, lite: &Outcome, driver: &str) {
    common::ok(&["index", "--config", cfg.to_str().unwrap()]);
    let got = outcome(cfg);
    assert_eq!(got.2, lite.2, "{driver}: records");
    assert_eq!(got.0, lite.0, "{driver} and SQLite resolve the same customers");
    assert_eq!(got.1, lite.1, "{driver}: names");
}

#[test]
fn chinook_gives_the_same_customers_through_sqlite_postgres_and_mysql() {
    let Some(corpus) = common::shared_corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = corpus.join("databases/chinook/Chinook_Sqlite.sqlite");
    let lite = config(&tmp.path().join("lite"), "sqlite", sqlite.to_str().unwrap(), false);
    common::ok(&["index", "--config", lite.to_str().unwrap()]);
    let lite_outcome = outcome(&lite);
    let (lite_clusters, _, lite_records) = &lite_outcome;
    assert_eq!(lite_clusters.len(), 59, "59 Chinook customers");
    assert_eq!(*lite_records, 59 + 412, "every customer row and invoice is linked");
    let luis = common::search(&lite, "luisg@embraer.com.br");
    assert_eq!(luis["dossiers"][0]["profile"]["display_name"], "Luís Gonçalves");
    let invoices = luis["dossiers"][0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k.as_str().unwrap().starts_with("chinook:invoice/"))
        .count();
    assert_eq!(invoices, 7);

    let mut servers = 0;
    match load_postgres(&corpus, tmp.path()) {
        Err(e) => skip(&format!("PostgreSQL is not available at 127.0.0.1:5432 ({e})")),
        Ok(()) => {
            servers += 1;
            let pg = config(&tmp.path().join("pg"), "postgres", &format!("postgres://root@127.0.0.1:5432/{DB}"), true);
            assert_same_as_sqlite(&pg, &lite_outcome, "PostgreSQL");
            // Incremental: one changed row, one deleted invoice.
            sh(Command::new("psql").args(["-h", "127.0.0.1", "-d", DB, "-c", "UPDATE customer SET city = 'Campinas' WHERE customer_id = 1; DELETE FROM invoice_line WHERE invoice_id = 98; DELETE FROM invoice WHERE invoice_id = 98;"])).unwrap();
            common::ok(&["index", "--config", pg.to_str().unwrap()]);
            let st: serde_json::Value =
                serde_json::from_str(&common::ok(&["status", "--json", "--config", pg.to_str().unwrap()])).unwrap();
            let s = &st[0]["sources"][0];
            assert_eq!(
                (s["changed"].as_u64(), s["deleted"].as_u64(), s["new"].as_u64()),
                (Some(1), Some(1), Some(0)),
                "{s}"
            );
            let r = common::search(&pg, "Luís Gonçalves Campinas");
            assert_eq!(r["dossiers"][0]["profile"]["display_name"], "Luís Gonçalves");
            assert!(!r["dossiers"][0]["keys"].as_array().unwrap().iter().any(|k| k == "chinook:invoice/98"));
        }
    }
    match load_mysql(&corpus, tmp.path()) {
        Err(e) => skip(&format!("MySQL/MariaDB is not available at 127.0.0.1:3306 ({e})")),
        Ok(()) => {
            servers += 1;
            let my = config(&tmp.path().join("my"), "mysql", &format!("mysql://root@127.0.0.1:3306/{DB}"), false);
            assert_same_as_sqlite(&my, &lite_outcome, "MySQL");
        }
    }
    eprintln!("compared SQLite with {servers} server(s)");
}

#[test]
fn an_unreachable_database_is_a_clear_source_error_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "postgres", "postgres://nobody@127.0.0.1:1/none", true);
    let out = common::ok(&["index", "--config", cfg.to_str().unwrap()]);
    assert!(out.contains("ERROR") && out.contains("chinook"), "{out}");
}

/// Rows of the table read while its server session is killed.
const ROWS: usize = 200_000;

/// Reads a fresh table of `ROWS` rows through the connector and, after `kill_at` rows, kills the
/// connector's server session from outside; returns the locators handed on and the scan report.
/// The table is one page, so the kill lands in the middle of a page's read (a kill between pages
/// only costs the pool a fresh connection) and the read must resume after the last row handed on.
fn read_with_a_killed_session(
    kind: &str,
    url: &str,
    kill: &mut dyn FnMut() -> Result<(), String>,
    kill_at: usize,
) -> (Vec<String>, dossier_connectors::ScanReport) {
    let spec: dossier_connectors::SourceSpec = toml::from_str(&format!(
        "name = \"big\"\nkind = \"{kind}\"\nlocation = \"{url}\"\n[[tables]]\nname = \"big\"\nkey = [\"id\"]\nbatch_rows = {ROWS}\n"
    ))
    .unwrap();
    let mut c = dossier_connectors::connector_for(&spec, Path::new(".")).unwrap();
    let mut seen = Vec::new();
    let report = c
        .scan(&mut |item| {
            seen.push(item.locator);
            if seen.len() == kill_at {
                kill().unwrap();
            }
            true
        })
        .unwrap();
    (seen, report)
}

fn assert_resumed(driver: &str, seen: &[String], report: &dossier_connectors::ScanReport, rows: usize) {
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{driver}: a row was handed on twice");
    assert_eq!(seen.len(), rows, "{driver}: rows lost after the reconnect; errors {:?}", report.errors);
    assert!(report.complete, "{driver}: the resumed listing is complete: {:?}", report.errors);
    assert!(report.reconnects >= 1, "{driver}: the session was killed mid-read, so the read must have reconnected");
}

#[test]
fn a_read_survives_a_killed_server_session_and_resumes_without_loss_or_duplicates() {
    const RESUME_DB: &str = "dossier_resume_test";
    let psql = |db: &str, sql: &str| {
        sh(Command::new("psql").args(["-h", "127.0.0.1", "-v", "ON_ERROR_STOP=1", "-q", "-d", db, "-c", sql]))
    };
    let mut servers = 0;
    // Only an absent server skips; a setup that fails on a present server fails the test.
    let pg_ready = psql("test", "SELECT 1").map(|_| {
        psql("test", &format!("DROP DATABASE IF EXISTS {RESUME_DB}"))
            .and_then(|_| psql("test", &format!("CREATE DATABASE {RESUME_DB}")))
            .and_then(|_| {
                psql(
                    RESUME_DB,
                    &format!(
                        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, {ROWS}) g"
                    ),
                )
            })
            .expect("setting up the PostgreSQL table")
    });
    match pg_ready {
        Err(e) => skip(&format!("PostgreSQL is not available at 127.0.0.1:5432 ({e})")),
        Ok(()) => {
            servers += 1;
            let mut kill = || {
                psql(
                    "test",
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dossier'",
                )
            };
            let url = format!("postgres://root@127.0.0.1:5432/{RESUME_DB}");
            let (seen, report) = read_with_a_killed_session("postgres", &url, &mut kill, 5_000);
            assert_resumed("postgres", &seen, &report, ROWS);
        }
    }

    let mysql = |sql: &str| sh(Command::new("mysql").args(["-h", "127.0.0.1", "-P", "3306", "-uroot", "-e", sql]));
    let my_ready = mysql("SELECT 1").map(|_| {
        mysql(&format!(
        "SET SESSION max_recursive_iterations = {ROWS}; DROP DATABASE IF EXISTS {RESUME_DB}; CREATE DATABASE {RESUME_DB}; \
         CREATE TABLE {RESUME_DB}.big (id INT PRIMARY KEY, note TEXT); \
         INSERT INTO {RESUME_DB}.big WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {ROWS}) \
         SELECT g, REPEAT(MD5(g), 16) FROM s;"
        ))
        .expect("setting up the MariaDB table")
    });
    match my_ready {
        Err(e) => skip(&format!("MariaDB/MySQL is not available at 127.0.0.1:3306 ({e})")),
        Ok(()) => {
            servers += 1;
            let mut kill = || {
                let out = Command::new("mysql")
                    .args(["-h", "127.0.0.1", "-P", "3306", "-uroot", "-N", "-e"])
                    .arg(format!(
                        "SELECT id FROM information_schema.processlist WHERE db = '{RESUME_DB}' AND id <> CONNECTION_ID()"
                    ))
                    .output()
                    .map_err(|e| e.to_string())?;
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    mysql(&format!("KILL {id}"))?;
                }
                Ok(())
            };
            let url = format!("mysql://root@127.0.0.1:3306/{RESUME_DB}");
            let (seen, report) = read_with_a_killed_session("mysql", &url, &mut kill, 5_000);
            assert_resumed("mysql", &seen, &report, ROWS);
        }
    }
    eprintln!("{servers} database servers tested");
}

/// Lists a `customers(id, name, email, updated_at)` table through the connector with the
/// versions of a previous listing, as a table or through a `query` (read as a derived table);
/// returns (all items by locator → version, locators read in full).
fn list_with_known(
    kind: &str,
    url: &str,
    query: Option<&str>,
    known: &std::collections::HashMap<String, String>,
) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let query = query.map(|q| format!("query = \"{q}\"\n")).unwrap_or_default();
    let spec: dossier_connectors::SourceSpec = toml::from_str(&format!(
        "name = \"crm\"\nkind = \"{kind}\"\nlocation = \"{url}\"\n[[tables]]\nname = \"customers\"\n{query}key = [\"id\"]\nupdated = \"updated_at\"\nbatch_rows = 97\n"
    ))
    .unwrap();
    let mut c = dossier_connectors::connector_for(&spec, Path::new(".")).unwrap();
    c.set_known(std::sync::Arc::new(known.iter().map(|(l, v)| (l.as_str().into(), v.as_str().into())).collect()));
    let (mut all, mut full) = (BTreeMap::new(), BTreeSet::new());
    let report = c
        .scan(&mut |item| {
            if let dossier_schema::Payload::Records(r) = &item.payload
                && !r.is_empty()
            {
                full.insert(item.locator.clone());
            }
            all.insert(item.locator, item.version);
            true
        })
        .unwrap();
    assert!(report.complete && report.errors.is_empty(), "{kind}: {:?}", report.errors);
    (all, full)
}

/// Loads 1,000 rows, lists them, changes 3 (one with its change value moved backwards), deletes 2,
/// adds 1, and lists again with the first listing's versions: only the 4 changed or new rows are
/// read in full, the other 995 pass as unchanged, the deleted 2 are absent. Pages of 97 rows, so
/// every read crosses page boundaries. The same through a `query` whose change column is computed
/// (the later of two columns, as over a join), with a trailing semicolon.
fn check_change_column(kind: &str, url: &str, exec: &dyn Fn(&str) -> Result<(), String>) {
    check_change_column_of(kind, url, None, exec);
    let latest = if kind == "sqlite" { "MAX" } else { "GREATEST" };
    let query =
        format!("SELECT id, name, email, {latest}(updated_at, created_at) AS updated_at FROM customers WHERE id > 0;");
    check_change_column_of(kind, url, Some(&query), exec);
}

fn check_change_column_of(db: &str, url: &str, query: Option<&str>, exec: &dyn Fn(&str) -> Result<(), String>) {
    let kind = &format!("{db}{}", if query.is_some() { " (query)" } else { "" });
    exec("DROP TABLE IF EXISTS customers").unwrap();
    exec(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(80), email VARCHAR(80), updated_at TIMESTAMP, \
         created_at TIMESTAMP)",
    )
    .unwrap();
    let values: Vec<String> = (1..=1000)
        .map(|i| format!("({i}, 'Customer {i}', 'c{i}@example.com', '2024-01-01 00:00:00', '2020-01-01 00:00:00')"))
        .collect();
    exec(&format!("INSERT INTO customers VALUES {}", values.join(", "))).unwrap();
    let (first, full) = list_with_known(db, url, query, &Default::default());
    assert_eq!((first.len(), full.len()), (1000, 1000), "{kind}: a first listing reads every row");

    exec("UPDATE customers SET name = 'Renamed', updated_at = '2024-06-01 12:00:00' WHERE id IN (10, 20)").unwrap();
    // A clock set back: the change value moved backwards, and the row must still be read.
    exec("UPDATE customers SET name = 'Backdated', updated_at = '2023-01-01 00:00:00' WHERE id = 30").unwrap();
    exec("DELETE FROM customers WHERE id IN (40, 50)").unwrap();
    exec("INSERT INTO customers VALUES (1001, 'New Customer', 'new@example.com', '2024-07-01 08:00:00', '2020-01-01')")
        .unwrap();
    let known: std::collections::HashMap<String, String> = first.into_iter().collect();
    let (second, full) = list_with_known(db, url, query, &known);
    assert_eq!(second.len(), 999, "{kind}: 1000 - 2 deleted + 1 new");
    let want: BTreeSet<String> =
        ["customers/10", "customers/20", "customers/30", "customers/1001"].iter().map(|s| s.to_string()).collect();
    assert_eq!(full, want, "{kind}: only changed and new rows are read in full");
    assert!(!second.contains_key("customers/40") && !second.contains_key("customers/50"));
    let unchanged = second.iter().filter(|(k, v)| known.get(*k) == Some(*v)).count();
    assert_eq!(unchanged, 995, "{kind}");
}

#[test]
fn a_change_column_makes_incremental_reads_read_only_changed_rows() {
    const INCR_DB: &str = "dossier_incremental_test";
    let mut servers = 0;
    let psql = |db: &str, sql: &str| {
        sh(Command::new("psql").args(["-h", "127.0.0.1", "-v", "ON_ERROR_STOP=1", "-q", "-d", db, "-c", sql]))
    };
    match psql("test", "SELECT 1").map(|_| {
        psql("test", &format!("DROP DATABASE IF EXISTS {INCR_DB}"))
            .and_then(|_| psql("test", &format!("CREATE DATABASE {INCR_DB}")))
            .expect("creating the PostgreSQL database")
    }) {
        Err(e) => skip(&format!("PostgreSQL is not available at 127.0.0.1:5432 ({e})")),
        Ok(()) => {
            servers += 1;
            let url = format!("postgres://root@127.0.0.1:5432/{INCR_DB}");
            check_change_column("postgres", &url, &|sql| psql(INCR_DB, sql));
        }
    }
    let mysql = |sql: &str| sh(Command::new("mysql").args(["-h", "127.0.0.1", "-P", "3306", "-uroot", "-e", sql]));
    match mysql("SELECT 1").map(|_| {
        mysql(&format!("DROP DATABASE IF EXISTS {INCR_DB}; CREATE DATABASE {INCR_DB}")).expect("creating the database")
    }) {
        Err(e) => skip(&format!("MariaDB/MySQL is not available at 127.0.0.1:3306 ({e})")),
        Ok(()) => {
            servers += 1;
            let url = format!("mysql://root@127.0.0.1:3306/{INCR_DB}");
            check_change_column("mysql", &url, &|sql| mysql(&format!("USE {INCR_DB}; {sql}")));
        }
    }
    // SQLite, embedded: always there.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("crm.sqlite");
    let conn = std::sync::Mutex::new(rusqlite::Connection::open(&path).unwrap());
    let url = format!("sqlite://{}", path.display());
    check_change_column("sqlite", &url, &|sql| conn.lock().unwrap().execute_batch(sql).map_err(|e| e.to_string()));
    eprintln!("{servers} database servers and SQLite tested");
}

/// Every message about source `name` in a run report: its listing error and its item errors.
fn messages_of(report: &serde_json::Value, name: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for s in report["sources"].as_array().into_iter().flatten().filter(|s| s["source"] == name) {
        out.extend(s["error"].as_str().map(str::to_string));
    }
    for e in report["errors"].as_array().into_iter().flatten().filter(|e| e["source"] == name) {
        out.extend(e["reason"].as_str().map(str::to_string));
    }
    out.join(" | ")
}

#[test]
fn bad_credentials_missing_tables_and_columns_and_denied_reads_are_clear_errors_and_the_run_goes_on() {
    const DB: &str = "dossier_errors_test";
    let tmp = tempfile::tempdir().unwrap();
    // A healthy source beside the broken ones.
    let lite = tmp.path().join("good.sqlite");
    rusqlite::Connection::open(&lite)
        .unwrap()
        .execute_batch(
            "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT, email TEXT);
             INSERT INTO customers VALUES (1, 'Jane Smith', 'jane@acme.example'), (2, 'Bob Stone', 'bob@y.example');",
        )
        .unwrap();
    let mut text = format!(
        "[index]\npath = \"index\"\n\n[[sources]]\nname = \"good\"\nkind = \"sqlite\"\nlocation = \"sqlite://{}\"\n[[sources.tables]]\nname = \"customers\"\nkey = [\"id\"]\n",
        lite.display()
    );
    let table = |name: &str, kind: &str, url: &str, t: &str| {
        format!(
            "\n[[sources]]\nname = \"{name}\"\nkind = \"{kind}\"\nlocation = \"{url}\"\n[[sources.tables]]\nname = \"customers\"\nkey = [\"id\"]\n{t}\n"
        )
    };
    // (source, what its message must advise)
    let mut expect: Vec<(&str, &str)> = Vec::new();

    let psql = |db: &str, sql: &str| {
        sh(Command::new("psql").args(["-h", "127.0.0.1", "-v", "ON_ERROR_STOP=1", "-q", "-d", db, "-c", sql]))
    };
    match psql("test", "SELECT 1") {
        Err(e) => skip(&format!("PostgreSQL is not available at 127.0.0.1:5432 ({e})")),
        Ok(()) => {
            psql("test", &format!("DROP DATABASE IF EXISTS {DB}"))
                .and_then(|_| psql("test", &format!("CREATE DATABASE {DB}")))
                .and_then(|_| psql(DB, "CREATE TABLE customers(id int PRIMARY KEY, name text, email text); INSERT INTO customers VALUES (1, 'Ann Lee', 'ann@x.example')"))
                .and_then(|_| psql(DB, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dossier_noread') THEN CREATE ROLE dossier_noread LOGIN; END IF; END $$; REVOKE ALL ON customers FROM dossier_noread"))
                .expect("setting up PostgreSQL");
            let url = |user: &str| format!("postgres://{user}@127.0.0.1:5432/{DB}");
            text += &table("pg_role", "postgres", &url("nobody_dossier_xyz"), "");
            text += &table("pg_table", "postgres", &url("root"), "")
                .replace("name = \"customers\"", "name = \"orders_missing\"");
            text += &table("pg_column", "postgres", &url("root"), "query = 'SELECT id, nope FROM customers'");
            text += &table("pg_denied", "postgres", &url("dossier_noread"), "");
            expect.extend([
                ("pg_role", "check the user and password"),
                ("pg_table", "check the table's name"),
                ("pg_column", "check the column names"),
                ("pg_denied", "grant the source's user SELECT"),
            ]);
        }
    }
    let mysql = |sql: &str| sh(Command::new("mysql").args(["-h", "127.0.0.1", "-P", "3306", "-uroot", "-e", sql]));
    match mysql("SELECT 1") {
        Err(e) => skip(&format!("MariaDB/MySQL is not available at 127.0.0.1:3306 ({e})")),
        Ok(()) => {
            mysql(&format!(
                "DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; \
                 CREATE TABLE {DB}.customers (id INT PRIMARY KEY, name TEXT, email TEXT); \
                 INSERT INTO {DB}.customers VALUES (1, 'Ann Lee', 'ann@x.example'); \
                 DROP USER IF EXISTS 'dossier_pw'@'%'; CREATE USER 'dossier_pw'@'%' IDENTIFIED BY 'right'; \
                 GRANT SELECT ON {DB}.* TO 'dossier_pw'@'%'; \
                 DROP USER IF EXISTS 'dossier_noread'@'%'; CREATE USER 'dossier_noread'@'%' IDENTIFIED BY 'pw';"
            ))
            .expect("setting up MariaDB");
            let url = |user: &str| format!("mysql://{user}@127.0.0.1:3306/{DB}");
            text += &table("my_password", "mysql", &url("dossier_pw:wrong"), "");
            text += &table("my_table", "mysql", &url("root"), "")
                .replace("name = \"customers\"", "name = \"orders_missing\"");
            text += &table("my_column", "mysql", &url("root"), "query = 'SELECT id, nope FROM customers'");
            text += &table("my_denied", "mysql", &url("dossier_noread:pw"), "");
            expect.extend([
                ("my_password", "check the user and password"),
                ("my_table", "check the table's name"),
                ("my_column", "check the column names"),
                ("my_denied", "grant the source's user SELECT"),
            ]);
        }
    }
    let cfg = tmp.path().join("dossier.toml");
    std::fs::write(&cfg, text).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&common::ok(&["index", "--json", "--config", cfg.to_str().unwrap()])).unwrap();
    for (name, advice) in &expect {
        let said = messages_of(&report, name);
        assert!(said.contains(advice), "{name}: expected advice {advice:?}, got {said:?}");
        assert!(!said.contains(":wrong@") && !said.contains(":pw@"), "{name}: a password leaked: {said}");
    }
    let good = report["sources"].as_array().unwrap().iter().find(|s| s["source"] == "good").unwrap();
    assert_eq!(good["records"], 2, "the healthy source is indexed: {good}");
    eprintln!("{} broken database sources named with advice", expect.len());
}

/// Lists `table` of an SQLite file through the connector, in pages of `rows`.
fn list_sqlite(path: &Path, table: &str, key: &str, rows: usize) -> (Vec<String>, dossier_connectors::ScanReport) {
    let spec: dossier_connectors::SourceSpec = toml::from_str(&format!(
        "name = \"lite\"\nkind = \"sqlite\"\nlocation = \"sqlite://{}\"\n[[tables]]\nname = \"{table}\"\nkey = {key}\nbatch_rows = {rows}\n",
        path.display()
    ))
    .unwrap();
    let mut c = dossier_connectors::connector_for(&spec, Path::new(".")).unwrap();
    let mut seen = Vec::new();
    let report = c
        .scan(&mut |item| {
            seen.push(item.locator);
            true
        })
        .unwrap();
    (seen, report)
}

#[test]
fn a_table_is_read_in_key_pages_once_each_row_and_keyless_or_binary_keys_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("paged.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    // A two-column key with repeated first parts across page boundaries, text and numbers mixed,
    // a quote in a key, and two rows without a key value.
    let mut sql = String::from("CREATE TABLE lines(invoice INTEGER, line TEXT, note TEXT);");
    for invoice in 1..=20 {
        for line in ["a", "b'q", "c"] {
            sql += &format!("INSERT INTO lines VALUES ({invoice}, '{}', 'n');", line.replace('\'', "''"));
        }
    }
    sql += "INSERT INTO lines VALUES (NULL, 'x', 'n'); INSERT INTO lines VALUES (5, NULL, 'n');";
    sql += "CREATE TABLE blobs(id BLOB, note TEXT); INSERT INTO blobs VALUES (x'00ff', 'a'), (x'01', 'b');";
    conn.execute_batch(&sql).unwrap();
    for rows in [1, 4, 7, 60, 10_000] {
        let (seen, report) = list_sqlite(&path, "lines", r#"["invoice", "line"]"#, rows);
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (60, 60), "pages of {rows}: every keyed row once");
        assert!(seen.contains(&"lines/7,b'q".to_string()), "{seen:?}");
        assert!(report.complete, "pages of {rows}: {:?}", report.errors);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(report.errors[0].reason.contains("2 rows have no value in key column(s) invoice, line"));
    }
    let (seen, report) = list_sqlite(&path, "blobs", r#"["id"]"#, 10);
    assert!(seen.is_empty() && !report.complete, "a binary key cannot page: {seen:?}");
    assert!(report.errors[0].reason.contains("key column `id` is (binary, 2 bytes"), "{:?}", report.errors);
}

/// Lists every row of table `types` through the connector: each row's fields by key value.
fn fields_of(kind: &str, url: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let spec: dossier_connectors::SourceSpec = toml::from_str(&format!(
        "name = \"t\"\nkind = \"{kind}\"\nlocation = \"{url}\"\n[[tables]]\nname = \"types\"\nkey = [\"id\"]\n"
    ))
    .unwrap();
    let mut c = dossier_connectors::connector_for(&spec, Path::new(".")).unwrap();
    let mut rows = BTreeMap::new();
    let report = c
        .scan(&mut |item| {
            if let dossier_schema::Payload::Records(r) = item.payload {
                rows.insert(item.locator, r[0].fields.clone().into_iter().collect());
            }
            true
        })
        .unwrap();
    assert!(report.complete && report.errors.is_empty(), "{kind}: {:?}", report.errors);
    rows
}

/// Checks that row `types/1` reads as `want` (column → text), and that row `types/2`, NULL but
/// for its key, has no other fields.
fn assert_types(kind: &str, rows: &BTreeMap<String, BTreeMap<String, String>>, want: &[(&str, &str)]) {
    let one = &rows["types/1"];
    for (col, text) in want {
        assert_eq!(one.get(*col).map(String::as_str), Some(*text), "{kind}: column {col} in {one:?}");
    }
    let two: Vec<&String> = rows["types/2"].keys().filter(|k| !["id", "table"].contains(&k.as_str())).collect();
    assert!(two.is_empty(), "{kind}: NULLs are no fields: {two:?}");
}

#[test]
fn every_column_type_reads_as_text_and_binary_is_named_not_indexed() {
    const TYPES_DB: &str = "dossier_types_test";
    let mut servers = 0;
    let psql = |db: &str, sql: &str| {
        sh(Command::new("psql").args(["-h", "127.0.0.1", "-v", "ON_ERROR_STOP=1", "-q", "-d", db, "-c", sql]))
    };
    match psql("test", "SELECT 1").map(|_| {
        psql("test", &format!("DROP DATABASE IF EXISTS {TYPES_DB}"))
            .and_then(|_| psql("test", &format!("CREATE DATABASE {TYPES_DB} ENCODING 'UTF8' TEMPLATE template0")))
            .and_then(|_| {
                psql(
                    TYPES_DB,
                    "CREATE TYPE mood AS ENUM ('calm', 'disputed'); \
                     CREATE TABLE types (id int PRIMARY KEY, big bigint, small smallint, amount numeric(12,4), \
                     ratio real, score double precision, whole double precision, flag boolean, name text, \
                     code varchar(10), born date, opens time, seen timestamp, paid timestamptz, doc json, \
                     docb jsonb, photo bytea, ref uuid, mood mood, tags text[], scores int[], prices numeric[]); \
                     INSERT INTO types VALUES (1, 9007199254740993, -7, 1234.5000, 1.5, 2.25, 3, true, 'Zoë 😀', \
                     'AB-01', '2024-02-29', '13:45:00', '2024-02-29 13:45:00', '2024-02-29 13:45:00+02', \
                     '{\"a\": 1}', '{\"b\": [1, 2]}', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'disputed', \
                     ARRAY['vip', 'late payer'], ARRAY[3, 5], ARRAY[1.50, 2.25]); \
                     INSERT INTO types (id) VALUES (2);",
                )
            })
            .expect("setting up the PostgreSQL table")
    }) {
        Err(e) => skip(&format!("PostgreSQL is not available at 127.0.0.1:5432 ({e})")),
        Ok(()) => {
            servers += 1;
            let rows = fields_of("postgres", &format!("postgres://root@127.0.0.1:5432/{TYPES_DB}"));
            assert_types(
                "postgres",
                &rows,
                &[
                    ("big", "9007199254740993"),
                    ("small", "-7"),
                    ("amount", "1234.5"),
                    ("ratio", "1.5"),
                    ("score", "2.25"),
                    ("whole", "3"),
                    ("flag", "true"),
                    ("name", "Zoë 😀"),
                    ("code", "AB-01"),
                    ("born", "2024-02-29"),
                    ("opens", "13:45:00"),
                    ("seen", "2024-02-29 13:45:00"),
                    ("paid", "2024-02-29T11:45:00+00:00"),
                    ("doc", "{\"a\":1}"),
                    ("docb", "{\"b\":[1,2]}"),
                    ("photo", "(binary, 2 bytes, not indexed)"),
                    ("ref", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                    ("mood", "disputed"),
                    ("tags", "vip, late payer"),
                    ("scores", "3, 5"),
                    ("prices", "1.5, 2.25"),
                ],
            );
        }
    }
    let mysql = |sql: &str| {
        sh(Command::new("mysql").args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-uroot",
            "--default-character-set=utf8mb4",
            "-e",
            sql,
        ]))
    };
    match mysql("SELECT 1").map(|_| {
        mysql(&format!(
            "DROP DATABASE IF EXISTS {TYPES_DB}; CREATE DATABASE {TYPES_DB} CHARACTER SET utf8mb4; \
             CREATE TABLE {TYPES_DB}.types (id INT PRIMARY KEY, big BIGINT UNSIGNED, small TINYINT, \
             amount DECIMAL(12,4), ratio FLOAT, score DOUBLE, whole DOUBLE, flag BOOLEAN, \
             name VARCHAR(40) CHARACTER SET utf8mb4, old VARCHAR(40) CHARACTER SET latin1, born DATE, \
             opens TIME, seen DATETIME, paid TIMESTAMP NULL, yr YEAR, doc JSON, photo BLOB); \
             SET time_zone = '+00:00'; \
             INSERT INTO {TYPES_DB}.types VALUES (1, 18446744073709551615, -7, 1234.5000, 1.5, 2.25, 3, TRUE, \
             'Zoë 😀', 'café', '2024-02-29', '13:45:00', '2024-02-29 13:45:00', '2024-02-29 11:45:00', 2024, \
             '{{\"a\": 1}}', x'00ff'); \
             INSERT INTO {TYPES_DB}.types (id) VALUES (2);"
        ))
        .expect("setting up the MariaDB table")
    }) {
        Err(e) => skip(&format!("MariaDB/MySQL is not available at 127.0.0.1:3306 ({e})")),
        Ok(()) => {
            servers += 1;
            let rows = fields_of("mysql", &format!("mysql://root@127.0.0.1:3306/{TYPES_DB}"));
            assert_types(
                "mysql",
                &rows,
                &[
                    ("big", "18446744073709551615"),
                    ("small", "-7"),
                    ("amount", "1234.5"),
                    ("ratio", "1.5"),
                    ("score", "2.25"),
                    ("whole", "3"),
                    ("flag", "1"),
                    ("name", "Zoë 😀"),
                    ("old", "café"),
                    ("born", "2024-02-29"),
                    ("opens", "13:45:00"),
                    ("seen", "2024-02-29 13:45:00"),
                    ("paid", "2024-02-29T11:45:00+00:00"),
                    ("yr", "2024"),
                    ("doc", "{\"a\": 1}"),
                    ("photo", "(binary, 2 bytes, not indexed)"),
                ],
            );
        }
    }
    // SQLite, embedded: its storage classes, and a column of dates kept as text.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("types.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE types (id INTEGER PRIMARY KEY, big INTEGER, score REAL, whole REAL, name TEXT, \
             seen DATETIME, photo BLOB); \
             INSERT INTO types VALUES (1, 9007199254740993, 2.25, 3.0, 'Zoë 😀', '2024-02-29 13:45:00', x'00ff'); \
             INSERT INTO types (id) VALUES (2);",
        )
        .unwrap();
    let rows = fields_of("sqlite", &format!("sqlite://{}", path.display()));
    assert_types(
        "sqlite",
        &rows,
        &[
            ("big", "9007199254740993"),
            ("score", "2.25"),
            ("whole", "3"),
            ("name", "Zoë 😀"),
            ("seen", "2024-02-29 13:45:00"),
            ("photo", "(binary, 2 bytes, not indexed)"),
        ],
    );
    eprintln!("{servers} database servers and SQLite tested");
}
