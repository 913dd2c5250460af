//! Helpers shared by the end-to-end tests: run the real binary, parse its JSON.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `dossier` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dossier"))
}

/// Runs `dossier ARGS…` and returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env("DOSSIER_LOG", "warn").output().expect("run dossier")
}

/// Runs and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "dossier {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates and indexes a demo company of `n` customers in `dir`.
pub fn demo(dir: &Path, n: usize) -> PathBuf {
    ok(&["demo", "--dir", dir.to_str().unwrap(), "--customers", &n.to_string(), "--no-serve"]);
    dir.join("dossier.toml")
}

/// `dossier search --json` parsed.
pub fn search(config: &Path, q: &str) -> serde_json::Value {
    let out = ok(&["search", "--json", "--config", config.to_str().unwrap(), q]);
    serde_json::from_str(&out).expect("search JSON")
}

/// `dossier customers export` parsed: one object per customer.
pub fn export(config: &Path) -> Vec<serde_json::Value> {
    ok(&["customers", "export", "--config", config.to_str().unwrap()])
        .lines()
        .map(|l| serde_json::from_str(l).expect("export line"))
        .collect()
}

/// The id of the customer whose records include `key`.
pub fn customer_of(customers: &[serde_json::Value], key: &str) -> Option<String> {
    customers
        .iter()
        .find(|c| c["keys"].as_array().is_some_and(|ks| ks.iter().any(|k| k == key)))
        .and_then(|c| c["id"].as_str().map(str::to_string))
}

/// The directory of the shared corpus, or `None` (with a printed reason) when
/// it is absent; under CI=true its absence fails the test.
pub fn shared_corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("../shared/corpus is missing, and CI=true requires it");
    }
    eprintln!("skipping: ../shared/corpus is not beside this checkout");
    None
}
