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

/// A running `dossier serve`, killed when dropped; `.1` is its address, `.2` what it has logged.
pub struct Server(pub Child, pub String, pub std::sync::Arc<std::sync::Mutex<String>>);

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
    let mut err = BufReader::new(child.stderr.take().unwrap());
    // Notes (no keys yet, roles changed) may come before the address line.
    let mut addr = None;
    for _ in 0..10 {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(a) = line.split("http://").nth(1).and_then(|r| r.split('/').next()) {
            addr = Some(a.to_string());
            break;
        }
    }
    // Keep reading what it logs: a closed pipe would fail its writes.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).is_ok_and(|n| n > 0) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    Server(child, addr.expect("address line"), log)
}

/// The demo key of `role`, from the file `dossier demo` writes beside its config.
pub fn demo_key(config: &Path, role: &str) -> String {
    let text = std::fs::read_to_string(config.with_file_name("demo-keys.txt")).expect("demo-keys.txt");
    text.lines()
        .find_map(|l| l.strip_prefix(role).and_then(|k| k.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no demo key for {role}"))
        .to_string()
}

/// A minimal HTTP/1.1 GET without a key: (status, body).
pub fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    request(addr, "GET", path, None, None)
}

/// A GET with a bearer key.
pub fn get_as(addr: &str, key: &str, path: &str) -> (u16, serde_json::Value) {
    request(addr, "GET", path, Some(key), None)
}

/// A minimal HTTP/1.1 request with an optional bearer key and JSON body: (status, body).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    let len = if method == "GET" {
        String::new()
    } else {
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len())
    };
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{len}Connection: close\r\n\r\n{body}").unwrap();
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
