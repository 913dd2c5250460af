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
fn outcome(cfg: &Path) -> (BTreeSet<BTreeSet<String>>, BTreeMap<String, String>, usize) {
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

#[test]
fn chinook_gives_the_same_customers_through_sqlite_postgres_and_mysql() {
    let Some(corpus) = common::shared_corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = corpus.join("databases/chinook/Chinook_Sqlite.sqlite");
    let lite = config(&tmp.path().join("lite"), "sqlite", sqlite.to_str().unwrap(), false);
    common::ok(&["index", "--config", lite.to_str().unwrap()]);
    let (lite_clusters, lite_names, lite_records) = outcome(&lite);
    assert_eq!(lite_clusters.len(), 59, "59 Chinook customers");
    assert_eq!(lite_records, 59 + 412, "every customer row and invoice is linked");
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
            common::ok(&["index", "--config", pg.to_str().unwrap()]);
            let (c, n, r) = outcome(&pg);
            assert_eq!(r, lite_records);
            assert_eq!(c, lite_clusters, "PostgreSQL and SQLite resolve the same customers");
            assert_eq!(n, lite_names);
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
            common::ok(&["index", "--config", my.to_str().unwrap()]);
            let (c, n, r) = outcome(&my);
            assert_eq!(r, lite_records);
            assert_eq!(c, lite_clusters, "MySQL and SQLite resolve the same customers");
            assert_eq!(n, lite_names);
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
