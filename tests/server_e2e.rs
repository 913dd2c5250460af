//! The HTTP API of `dossier serve`, over a real socket.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &std::path::Path) -> Server {
    let mut child = Command::new(common::bin())
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
fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
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

#[test]
fn api_answers_searches_customers_records_and_errors_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::demo(&tmp.path().join("co"), 20);
    let srv = start(&cfg);
    let a = srv.1.as_str();

    let (st, body) = get(a, "/api/health");
    assert_eq!((st, body["status"].as_str()), (200, Some("ok")));

    let (st, body) = get(a, "/api/search?q=555%20201%207788");
    assert_eq!(st, 200);
    let id = body["dossiers"][0]["id"].as_str().unwrap().to_string();
    assert!(
        body["dossiers"][0]["profile"]["emails"].as_array().unwrap().iter().any(|e| e == "jane.smith@acme.example")
    );

    let (st, body) = get(a, &format!("/api/customers/{id}"));
    assert_eq!(st, 200);
    assert!(!body["timeline"].as_array().unwrap().is_empty());

    let (st, body) = get(a, "/api/records/contracts:contract-10000000.pdf%23p2");
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["page"], 2);

    for (path, want) in [
        ("/api/search?q=", 400),
        ("/api/search?q=x&per_page=100000", 400),
        ("/api/customers/cnope", 404),
        ("/api/records/..%2F..%2Fetc%2Fpasswd", 404),
        ("/api/nothing", 404),
    ] {
        let (st, body) = get(a, path);
        assert_eq!(st, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let long = "a".repeat(600);
    assert_eq!(get(a, &format!("/api/search?q={long}")).0, 400);
    let (st, page) = get(a, "/");
    assert_eq!(st, 200);
    assert!(page.as_str().unwrap().contains("<input id=\"q\""));
}
