//! The HTTP API of `dossier serve`, over a real socket.

mod common;

use common::{demo_key, start};

#[test]
fn api_answers_searches_customers_records_and_errors_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::demo(&tmp.path().join("co"), 20);
    let srv = start(&cfg);
    let a = srv.1.as_str();
    let key = demo_key(&cfg, "admin");
    let get = |a: &str, p: &str| common::get_as(a, &key, p);

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
        ("/api/records/..%2F..%2Fetc%2Fpasswd", 400),
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

/// Checks `v` against the subset of JSON Schema that schemars emits for our types
/// ($ref, type, properties, required, items, additionalProperties, oneOf/anyOf, enum),
/// so a shape the server sends and the OpenAPI document disagree on fails here.
fn conforms(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    v: &serde_json::Value,
    at: &str,
) -> Result<(), String> {
    use serde_json::Value;
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").ok_or(format!("{at}: unexpected $ref {r}"))?;
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    for alt in ["oneOf", "anyOf"] {
        if let Some(alts) = schema[alt].as_array() {
            return if alts.iter().any(|s| conforms(doc, s, v, at).is_ok()) {
                Ok(())
            } else {
                Err(format!("{at}: {v} matches none of {alt}"))
            };
        }
    }
    if let Some(vals) = schema["enum"].as_array()
        && !vals.contains(v)
    {
        return Err(format!("{at}: {v} not in {vals:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        return Err(format!("{at}: {v} is not {types:?}"));
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema["properties"].as_object()) {
        for req in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !obj.contains_key(req) {
                return Err(format!("{at}: missing required `{req}`"));
            }
        }
        for (k, val) in obj {
            match props.get(k) {
                Some(s) => conforms(doc, s, val, &format!("{at}.{k}"))?,
                None if schema["additionalProperties"] == Value::Bool(false) => {
                    return Err(format!("{at}: `{k}` is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn suggest_completes_names_and_numbers_and_every_answer_matches_the_openapi_document() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::demo(&tmp.path().join("co"), 30);
    let srv = start(&cfg);
    let a = srv.1.as_str();
    let key = demo_key(&cfg, "admin");
    let get = |a: &str, p: &str| common::get_as(a, &key, p);
    let jane = common::search(&cfg, "jane.smith@acme.example")["dossiers"][0]["id"].as_str().unwrap().to_string();

    // A name prefix, a typed-as-spoken order number, an email prefix: each finds Jane.
    for typed in ["jane%20smi", "Smith%20Ja", "ORD-1042", "jane.smith%40acme", "555.201.77", "%2B1%20555%20201"] {
        let (st, body) = get(a, &format!("/api/suggest?q={typed}"));
        assert_eq!(st, 200, "{typed}: {body}");
        let ids: Vec<&str> = body["suggestions"].as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
        assert!(ids.contains(&jane.as_str()), "{typed}: {body}");
    }
    let (_, body) = get(a, "/api/suggest?q=j");
    assert_eq!(body["suggestions"].as_array().map(Vec::len), Some(0), "one letter suggests nothing");
    let (_, body) = get(a, "/api/suggest?q=zzzzqx");
    assert_eq!(body["suggestions"].as_array().map(Vec::len), Some(0));
    assert_eq!(get(a, "/api/suggest?q=ja&limit=500").0, 400);

    let (st, doc) = get(a, "/api/openapi.json");
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/health",
        "/api/search",
        "/api/suggest",
        "/api/customers/{id}",
        "/api/records/{key}",
        "/api/runs",
        "/api/openapi.json",
        "/api/whoami",
        "/api/admin/audit",
        "/api/admin/export-subject",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    // Real answers, checked against the document's own schemas.
    let record_key = common::search(&cfg, "jane smith")["dossiers"][0]["keys"][0].as_str().unwrap().to_string();
    let checks = [
        ("/api/health", "/api/health", "200"),
        ("/api/search?q=jayne%20smyth%20termination%20notice", "/api/search", "200"),
        ("/api/search?q=", "/api/search", "400"),
        ("/api/suggest?q=jane", "/api/suggest", "200"),
        (&format!("/api/customers/{jane}") as &str, "/api/customers/{id}", "200"),
        ("/api/customers/cnope", "/api/customers/{id}", "404"),
        (&format!("/api/records/{}", record_key.replace('#', "%23")) as &str, "/api/records/{key}", "200"),
        ("/api/runs", "/api/runs", "200"),
        ("/api/whoami", "/api/whoami", "200"),
        ("/api/admin/audit?limit=5", "/api/admin/audit", "200"),
    ];
    for (url, path, status) in checks {
        let (st, body) = get(a, url);
        assert_eq!(st.to_string(), status, "{url}: {body}");
        let schema = &doc["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{path} {status} has no schema");
        if let Err(e) = conforms(&doc, schema, &body, url) {
            panic!("{e}");
        }
    }
}

#[test]
fn bench_search_times_every_demo_query_and_loads_the_http_api() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    common::demo(&dir, 20);
    let out =
        common::ok(&["bench", "search", "--dir", dir.to_str().unwrap(), "--clients", "2", "--seconds", "1", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let queries = std::fs::read_to_string(dir.join("queries.jsonl")).unwrap().lines().count() as u64;
    assert_eq!(r["latency"]["all"]["n"].as_u64(), Some(queries), "{r}");
    for kind in ["name", "phone", "number", "email", "contract"] {
        assert!(r["latency"]["by_kind"][kind]["n"].as_u64().unwrap() > 0, "{kind}: {r}");
    }
    assert!(r["http"]["ok"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["http"]["errors"].as_u64(), Some(0), "{r}");
    assert!(r["http"]["peak_rss_mib"].as_f64().unwrap() > 0.0);
}

/// Polls `check` every 250 ms for up to `secs` seconds.
fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    false
}

#[test]
fn the_server_runs_scheduled_and_requested_index_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = common::demo(&dir, 20);
    // The call notes every two seconds, not watched: the schedule alone must find the change.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\nwatch = true", "\n");
    let calls = text.find("name = \"calls\"").unwrap();
    let at = calls + text[calls..].find("schedule = ").unwrap();
    let end = at + text[at..].find('\n').unwrap();
    std::fs::write(&cfg, format!("{}schedule = \"every 2s\"{}", &text[..at], &text[end..])).unwrap();
    let srv = start(&cfg);
    let a = srv.1.as_str();
    let admin = demo_key(&cfg, "admin");
    let support = demo_key(&cfg, "support");

    // A new call note is found without anyone running `dossier index`.
    let notes = dir.join("calls/call-notes.csv");
    let mut text = std::fs::read_to_string(&notes).unwrap();
    text.push_str("2024-12-02,agent7,,\"caller gave ORD-104233, asked about the zanzibarite upgrade\"\n");
    std::fs::write(&notes, text).unwrap();
    let found = eventually(60, || {
        let (st, body) = common::get_as(a, &admin, "/api/search?q=zanzibarite");
        st == 200 && body["total"].as_u64().unwrap_or(0) > 0
    });
    assert!(found, "the scheduled run indexed the note; server log:\n{}", srv.2.lock().unwrap());

    // An administrator asks for a run of one source; others may not, and unknown sources are named.
    let post = |key: &str, body: &str| common::request(a, "POST", "/api/admin/runs", Some(key), Some(body));
    let (st, body) = post(&admin, r#"{"source":"billing"}"#);
    assert_eq!((st, &body["source"]), (202, &serde_json::json!("billing")), "{body}");
    assert_eq!(post(&support, r#"{"source":"billing"}"#).0, 403);
    let (st, body) = post(&admin, r#"{"source":"nope"}"#);
    assert_eq!(st, 404, "{body}");
    assert_eq!(post(&admin, r#"{"sauce":"billing"}"#).0, 422);
    let ran = eventually(60, || {
        let (_, runs) = common::get_as(a, &admin, "/api/runs");
        runs.as_array().is_some_and(|rs| {
            rs.iter().any(|r| {
                r["status"] == "completed"
                    && r["sources"].as_array().is_some_and(|s| s.len() == 1 && s[0]["source"] == "billing")
            })
        })
    });
    assert!(ran, "the requested run finished; server log:\n{}", srv.2.lock().unwrap());

    // Prometheus sees the runs, the searches and their latency.
    let (st, text) = common::get_as(a, &admin, "/metrics");
    let text = text.as_str().unwrap_or_default().to_string();
    assert_eq!(st, 200, "{text}");
    for want in [
        "dossier_index_runs{status=\"completed\"}",
        "dossier_last_run_items{source=",
        "dossier_http_requests_total{route=\"/api/search\",status=\"200\"}",
        "dossier_request_duration_seconds_bucket{le=",
        "dossier_last_run_finished_timestamp_seconds",
        "dossier_index_size_bytes",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    assert_eq!(common::get_as(a, &support, "/metrics").0, 403);
}

#[test]
fn a_watched_source_is_searchable_seconds_after_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = common::demo(&dir, 20);
    // Only the call notes watched.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\nwatch = true", "\n");
    let calls = text.find("name = \"calls\"").unwrap();
    let end = calls + text[calls..].find('\n').unwrap();
    std::fs::write(&cfg, format!("{}\nwatch = true{}", &text[..end], &text[end..])).unwrap();
    let srv = start(&cfg);
    let a = srv.1.as_str();
    let admin = demo_key(&cfg, "admin");
    // Give the watcher a moment to be in place.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let notes = dir.join("calls/call-notes.csv");
    let mut text = std::fs::read_to_string(&notes).unwrap();
    text.push_str("2024-12-03,agent2,,\"caller gave ORD-104233 and asked about the quokkaline plan\"\n");
    let t = std::time::Instant::now();
    std::fs::write(&notes, text).unwrap();
    let found = eventually(60, || {
        let (st, body) = common::get_as(a, &admin, "/api/search?q=quokkaline");
        st == 200 && body["total"].as_u64().unwrap_or(0) > 0
    });
    assert!(found, "the watched change was indexed; server log:\n{}", srv.2.lock().unwrap());
    eprintln!("change to searchable: {:.1} s", t.elapsed().as_secs_f64());
}
