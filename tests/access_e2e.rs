//! Access control over a real server: keys, roles that see only some sources (on every path a
//! record or a value could leak through), masking, the audit log, subject exports and hostile
//! requests.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, get_as, request};
use serde_json::Value;

const ADMIN_KEY: &str = "dsk_fixture_admin_key_for_tests_only";
const SSN: &str = "078-05-1120";
const DOB: &str = "1980-04-02";

/// Two silos: `desk` (what the front desk sees) and `vault` (what only some roles see). Jane Roe
/// is in both, linked by her email; Bob Vault is in the vault alone.
fn fixture(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("desk")).unwrap();
    std::fs::create_dir_all(dir.join("vault")).unwrap();
    std::fs::write(
        dir.join("desk/notes.csv"),
        "date,name,email,company,status,note\n2024-01-05,Jane Roe,jane.roe@example.com,Open Corp,closed,asked about her plan\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("vault/files.csv"),
        format!(
            "date,name,email,company,account,phone,dob,status,note\n\
             2023-06-01,Janie Roe,jane.roe@example.com,Hidden Holdings,AC-00000077,+1 206 555 0199,{DOB},disputed,secret clause zebra SSN {SSN}\n\
             2023-07-01,Bob Vault,bob.vault@example.com,Vault Only Ltd,AC-00000088,+1 206 555 0142,1975-01-01,open,only the vault knows bob\n"
        ),
    )
    .unwrap();
    let hash = hash_of(ADMIN_KEY);
    let cfg = format!(
        r#"[index]
path = "index"

[[identifiers]]
name = "account"
pattern = '(?i)\bAC-?(?P<id>\d{{8}})\b'
prefixes = ["AC"]

[roles.admin]
sources = ["*"]
unmask = true
admin = true

[roles.desk]
sources = ["desk"]

[roles.clerk]
sources = ["desk", "vault"]

[[keys]]
name = "fixture-admin"
hash = "{hash}"
role = "admin"

[[sources]]
name = "desk"
kind = "files"
location = "desk"
fields = {{ name = "person", email = "email", company = "company" }}

[[sources]]
name = "vault"
kind = "files"
location = "vault"
fields = {{ name = "person", email = "email", company = "company", account = "id:account", phone = "phone", dob = "dob" }}
"#
    );
    let path = dir.join("dossier.toml");
    std::fs::write(&path, cfg).unwrap();
    common::ok(&["index", "--config", path.to_str().unwrap()]);
    path
}

/// `dossier keys hash` of a key given on standard input.
fn hash_of(key: &str) -> String {
    let mut child = Command::new(common::bin())
        .args(["keys", "hash", "--config", "/nonexistent.toml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{key}").unwrap();
    let out = child.wait_with_output().unwrap();
    // `keys hash` needs no config: it only hashes.
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `dossier keys add NAME --role ROLE`: the key printed once.
fn add_key(cfg: &Path, name: &str, role: &str) -> String {
    common::ok(&["keys", "add", name, "--role", role, "--config", cfg.to_str().unwrap()]).trim().to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Every record key a search answer or dossier shows, wherever it shows it.
fn keys_shown(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let dossiers = match v.get("dossiers") {
        Some(d) => d.as_array().cloned().unwrap_or_default(),
        None => vec![v.clone()],
    };
    for d in &dossiers {
        out.extend(strings(&d["keys"]));
        for g in d["groups"].as_array().into_iter().flatten() {
            out.extend(
                g["records"].as_array().into_iter().flatten().filter_map(|r| r["key"].as_str().map(String::from)),
            );
        }
        out.extend(d["timeline"].as_array().into_iter().flatten().filter_map(|t| t["key"].as_str().map(String::from)));
        out.extend(d["flags"].as_array().into_iter().flatten().filter_map(|f| f["key"].as_str().map(String::from)));
        for w in d["why"].as_array().into_iter().flatten() {
            if w["kind"] == "text" {
                out.extend(w["matched"].as_str().map(String::from));
            }
        }
    }
    out.extend(v["unlinked"].as_array().into_iter().flatten().filter_map(|r| r["key"].as_str().map(String::from)));
    out
}

#[test]
fn a_role_sees_only_its_sources_on_every_path_and_sensitive_values_are_masked() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture(&tmp.path().join("co"));
    let desk = add_key(&cfg, "dana", "desk");
    let clerk = add_key(&cfg, "carl", "clerk");
    let srv = common::start(&cfg);
    let a = srv.1.as_str();

    // The operator sees both of Jane's silos, unmasked.
    let (st, all) = get_as(a, ADMIN_KEY, "/api/search?q=jane%20roe");
    assert_eq!(st, 200, "{all}");
    let jane = all["dossiers"][0]["id"].as_str().unwrap().to_string();
    let p = &all["dossiers"][0]["profile"];
    assert!(strings(&p["companies"]).contains(&"Hidden Holdings".to_string()), "{p}");
    assert!(strings(&p["dobs"]).iter().any(|d| d == DOB), "{p}");
    assert!(keys_shown(&all).iter().any(|k| k.starts_with("vault:")));
    let (_, bob) = get_as(a, ADMIN_KEY, "/api/search?q=bob%20vault");
    let bob = bob["dossiers"][0]["id"].as_str().unwrap().to_string();

    // The desk: Jane exists with what the desk says of her, and nothing else.
    let (st, r) = get_as(a, &desk, "/api/search?q=jane%20roe");
    assert_eq!((st, r["total"].as_u64()), (200, Some(1)), "{r}");
    let d = &r["dossiers"][0];
    assert_eq!(d["id"].as_str(), Some(jane.as_str()));
    let text = d.to_string();
    for hidden in ["Janie", "Hidden Holdings", "00000077", "2065550199", "zebra", "disputed", "1980", "vault:"] {
        assert!(!text.contains(hidden), "the desk sees {hidden:?}: {text}");
    }
    assert!(d["flags"].as_array().unwrap().is_empty(), "a flag from a hidden record: {d}");
    assert!(keys_shown(&r).iter().all(|k| k.starts_with("desk:")), "{r}");
    let (st, d) = get_as(a, &desk, &format!("/api/customers/{jane}"));
    assert_eq!(st, 200);
    assert!(!d.to_string().contains("Hidden Holdings") && keys_shown(&d).iter().all(|k| k.starts_with("desk:")), "{d}");

    // Queries that only hidden records or values answer find nothing: not in hits, counts,
    // unlinked records, or typeahead.
    for q in [
        "zebra",
        "%22secret%20clause%22",
        "Hidden%20Holdings",
        "AC-00000077",
        "206%20555%200199",
        "bob%20vault",
        "bob.vault%40example.com",
        "source%3Avault",
        "status%3Adisputed",
        "jane%20roe%20zebra",
    ] {
        let (st, r) = get_as(a, &desk, &format!("/api/search?q={q}"));
        assert_eq!(st, 200, "{q}: {r}");
        assert!(keys_shown(&r).iter().all(|k| k.starts_with("desk:")), "{q}: {r}");
        let shown = format!("{} {}", r["dossiers"], r["unlinked"]);
        let leaked = r["dossiers"].as_array().unwrap().iter().any(|d| d["id"] == bob.as_str())
            || shown.contains("Hidden")
            || shown.contains("zebra");
        assert!(!leaked, "{q}: {r}");
        if q != "jane%20roe%20zebra" {
            assert_eq!(r["total"].as_u64(), Some(0), "{q}: {r}");
        }
    }
    for typed in ["Hidd", "Bob%20V", "AC-0000", "bob.vault%40", "206555"] {
        let (_, s) = get_as(a, &desk, &format!("/api/suggest?q={typed}"));
        assert_eq!(s["suggestions"].as_array().map(Vec::len), Some(0), "{typed}: {s}");
    }
    let (_, s) = get_as(a, &desk, "/api/suggest?q=jan");
    assert_eq!(s["suggestions"][0]["id"].as_str(), Some(jane.as_str()), "{s}");
    assert!(!s.to_string().contains("Hidden"), "{s}");
    assert_eq!(get_as(a, &desk, &format!("/api/customers/{bob}")).0, 404);
    assert_eq!(get_as(a, &desk, "/api/records/vault:files.csv!r2").0, 404);
    assert_eq!(get_as(a, ADMIN_KEY, "/api/records/vault:files.csv!r2").0, 200);
    for path in ["/api/runs", "/api/admin/audit"] {
        assert_eq!(get_as(a, &desk, path).0, 403, "{path}");
    }

    // The clerk sees the vault, masked: no date of birth, no social security number, anywhere.
    let (_, r) = get_as(a, &clerk, "/api/search?q=zebra");
    assert_eq!(r["total"].as_u64(), Some(1), "{r}");
    let text = r.to_string();
    assert!(text.contains("zebra") && !text.contains(SSN) && !text.contains(DOB), "{text}");
    assert!(text.contains("•••-••-1120"), "the last four digits stay: {text}");
    let (_, rec) = get_as(a, &clerk, "/api/records/vault:files.csv!r2");
    let text = rec.to_string();
    assert!(!text.contains(SSN) && !text.contains(DOB), "{text}");
    let (_, rec) = get_as(a, ADMIN_KEY, "/api/records/vault:files.csv!r2");
    assert!(rec.to_string().contains(SSN), "the admin role unmasks: {rec}");
    // Searching by the number itself: the clerk may find the customer, the log keeps no number.
    let (st, _) = get_as(a, &clerk, &format!("/api/search?q={SSN}"));
    assert_eq!(st, 200);
    assert!(!srv.2.lock().unwrap().contains(SSN), "the server log holds a masked value");

    // The audit log: who looked at whom, with which query; filters by key and customer.
    let out = common::ok(&["audit", "--json", "--limit", "1000", "--config", cfg.to_str().unwrap()]);
    assert!(!out.contains(SSN), "the audit log holds a masked value: {out}");
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(entries.iter().any(|e| e["who"] == "dana" && e["action"] == "dossier" && e["customer"] == jane.as_str()));
    assert!(entries.iter().any(|e| e["who"] == "dana" && e["action"] == "search" && e["query"] == "jane roe"));
    assert!(entries.iter().any(|e| e["who"] == "carl" && e["action"] == "record"));
    let out = common::ok(&["audit", "--json", "--who", "dana", "--customer", &jane, "--config", cfg.to_str().unwrap()]);
    let mine: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(!mine.is_empty() && mine.iter().all(|e| e["who"] == "dana" && e["customer"] == jane.as_str()));
    let (st, api) = get_as(a, ADMIN_KEY, "/api/admin/audit?who=carl&limit=3");
    assert_eq!(st, 200);
    assert!(api.as_array().unwrap().len() <= 3 && api.as_array().unwrap().iter().all(|e| e["who"] == "carl"));

    // A revoked key is refused from the next request on.
    common::ok(&["keys", "revoke", "dana", "--config", cfg.to_str().unwrap()]);
    assert_eq!(get_as(a, &desk, "/api/search?q=jane").0, 401);
    let listed = common::ok(&["keys", "list", "--config", cfg.to_str().unwrap()]);
    assert!(listed.contains("dana") && listed.contains("revoked"), "{listed}");
}

#[test]
fn a_subject_export_holds_every_record_its_provenance_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture(&tmp.path().join("co"));
    let jane = common::search(&cfg, "jane.roe@example.com")["dossiers"][0]["id"].as_str().unwrap().to_string();
    let file = tmp.path().join("jane.json");
    common::ok(&[
        "customers",
        "export-subject",
        &jane,
        "-o",
        file.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let x: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(x["customer"].as_str(), Some(jane.as_str()));
    let keys: Vec<&str> = x["records"].as_array().unwrap().iter().filter_map(|r| r["key"].as_str()).collect();
    assert!(keys.iter().any(|k| k.starts_with("desk:")) && keys.iter().any(|k| k.starts_with("vault:")), "{keys:?}");
    // Unmasked: it is the customer's own data.
    assert!(x.to_string().contains(SSN));
    for p in x["provenance"].as_array().unwrap() {
        assert!(p["item_version"].is_string() && p["run"].as_i64() == Some(1), "{p}");
    }
    let vault_link = x["links"].as_array().unwrap().iter().find(|l| l["key"].as_str().unwrap().starts_with("vault:"));
    let evidence = vault_link.expect("a vault link")["evidence"].to_string();
    assert!(evidence.contains("jane.roe@example.com") || x["links"].to_string().contains("email"), "{x}");
    assert_eq!(
        common::run(&["customers", "export-subject", "cnope", "--config", cfg.to_str().unwrap()]).status.code(),
        Some(1)
    );

    // The admin route gives the same, and refuses bodies that are not the JSON it takes.
    let srv = common::start(&cfg);
    let a = srv.1.as_str();
    let body = format!("{{\"customer\":\"{jane}\"}}");
    let (st, api) = request(a, "POST", "/api/admin/export-subject", Some(ADMIN_KEY), Some(&body));
    assert_eq!(st, 200, "{api}");
    assert_eq!(api["records"].as_array().map(Vec::len), x["records"].as_array().map(Vec::len));
    let big = format!("{{\"customer\":\"{}\"}}", "a".repeat(20_000));
    for (body, want) in [
        ("{not json", 400),
        ("{\"customer\": 5}", 422),
        ("{\"customer\":\"x\",\"all\":true}", 422),
        ("{\"customer\":\"../../etc\"}", 400),
        (big.as_str(), 413),
    ] {
        let (st, r) = request(a, "POST", "/api/admin/export-subject", Some(ADMIN_KEY), Some(body));
        assert_eq!(st, want, "{body:.60}: {r}");
        assert!(r["error"].is_string(), "{r}");
    }
    let out = common::ok(&["audit", "--json", "--action", "export-subject", "--config", cfg.to_str().unwrap()]);
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(entries.len(), 2, "the console export and the API export: {out}");
}

#[test]
fn hostile_requests_get_clear_4xx_answers_and_slow_clients_are_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture(&tmp.path().join("co"));
    let srv = common::start(&cfg);
    let a = srv.1.as_str();

    // Without a valid key nothing but the health check (and the sign-in page) answers.
    assert_eq!(get(a, "/api/health").0, 200);
    assert_eq!(get(a, "/").0, 200);
    for path in [
        "/api/search?q=jane",
        "/api/suggest?q=ja",
        "/api/customers/c1",
        "/api/records/desk:x",
        "/api/runs",
        "/api/openapi.json",
        "/api/nothing",
    ] {
        let (st, body) = get(a, path);
        assert_eq!(st, 401, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        assert_eq!(get_as(a, "dsk_not_a_key", path).0, 401, "{path}");
    }
    assert_eq!(get_as(a, &"k".repeat(10_000), "/api/search?q=jane").0, 401);

    let long = "a".repeat(600);
    for (path, want) in [
        ("/api/search?q=jane&page=-1", 400),
        ("/api/search?q=jane&page=abc", 400),
        ("/api/search?q=jane&page=99999999", 400),
        ("/api/search?q=jane&per_page=1000000000000", 400),
        ("/api/search?q=jane&per_page=0", 400),
        (&format!("/api/search?q={long}") as &str, 400),
        ("/api/search?q=jane%00", 400),
        ("/api/suggest?q=ja&limit=-3", 400),
        ("/api/records/desk:..%2F..%2Fetc%2Fpasswd", 400),
        ("/api/records/..%2F..%2F..%2Fetc%2Fshadow", 400),
        ("/api/customers/..%2Fetc", 400),
        ("/api/admin/audit?limit=999999999", 400),
        ("/api/nothing", 404),
    ] {
        let (st, body) = get_as(a, ADMIN_KEY, path);
        assert_eq!(st, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }

    // A client that never finishes its headers is disconnected; one that never finishes its
    // body gets 408. Meanwhile others are served.
    let slow_head = {
        let a = a.to_string();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(&a).unwrap();
            s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let t = Instant::now();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            (t.elapsed(), buf)
        })
    };
    let slow_body = {
        let a = a.to_string();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(&a).unwrap();
            let head = format!(
                "POST /api/admin/export-subject HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"cust"
            );
            s.write_all(head.as_bytes()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get_as(a, ADMIN_KEY, "/api/search?q=jane").0, 200, "served while slow clients wait");
    let (waited, got) = slow_head.join().unwrap();
    assert!(got.is_empty() && waited < Duration::from_secs(25), "cut off after {waited:?}: {got:?}");
    let got = slow_body.join().unwrap();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
}

#[test]
fn changed_roles_and_new_records_take_effect_after_one_index_run_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture(&tmp.path().join("co"));
    let desk = add_key(&cfg, "dana", "desk");
    // The desk is given the vault too.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[roles.desk]\nsources = [\"desk\"]", "[roles.desk]\nsources = [\"desk\", \"vault\"]");
    std::fs::write(&cfg, text).unwrap();
    {
        let srv = common::start(&cfg);
        let (st, body) = get_as(srv.1.as_str(), &desk, "/api/search?q=zebra");
        assert_eq!(st, 503, "{body}");
        assert!(body["error"].as_str().unwrap().contains("dossier index"), "{body}");
        // The administrator's view of every source does not depend on the roles.
        assert_eq!(get_as(srv.1.as_str(), ADMIN_KEY, "/api/search?q=zebra").0, 200);
    }
    // A running server sees the run within seconds, without a restart.
    let srv = common::start(&cfg);
    assert_eq!(get_as(srv.1.as_str(), &desk, "/api/search?q=zebra").0, 503);
    common::ok(&["index", "--config", cfg.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (st, body) = loop {
        let (st, body) = get_as(srv.1.as_str(), &desk, "/api/search?q=zebra");
        if st == 200 || Instant::now() > deadline {
            break (st, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!((st, body["total"].as_u64()), (200, Some(1)), "{body}");
    // New records too: a row added to the desk's silo and indexed is found by the same server.
    let notes = tmp.path().join("co/desk/notes.csv");
    let mut text = std::fs::read_to_string(&notes).unwrap();
    text.push_str("2024-02-01,Zed Newcomer,zed@example.com,New Co,open,first call\n");
    std::fs::write(&notes, text).unwrap();
    common::ok(&["index", "--config", cfg.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get_as(srv.1.as_str(), &desk, "/api/search?q=zed%20newcomer");
        if body["total"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not see the new run: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
