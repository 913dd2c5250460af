//! Helpers shared by the end-to-end tests: run the real binary, parse its JSON.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// A running `dossier serve`, killed when dropped; `.1` is its address.
pub struct Server(pub Child, pub String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `dossier serve` on a free loopback port.
pub fn start(config: &std::path::Path) -> Server {
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    err.read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("address line").to_string();
    Server(child, addr)
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}
