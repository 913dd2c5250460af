//! The whole shared corpus — hostile files included — indexes through the real
//! binary with isolated extraction: the run completes, every failure is
//! explained, and the facts of EXPECTED.md are searchable.

mod common;

#[test]
fn the_whole_shared_corpus_indexes_and_every_failure_is_explained() {
    let Some(_) = common::shared_corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shared-corpus.toml")).unwrap();
    // The example's paths are relative to examples/: point them there from a temp index.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
    let cfg_text = example
        .replace("path = \"../target/shared-corpus-index\"", &format!("path = {:?}", tmp.path().join("index")))
        .replace("location = \"../../shared", &format!("location = \"{examples}../../shared"));
    let cfg = tmp.path().join("dossier.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let c = cfg.to_str().unwrap();
    common::ok(&["index", "--config", c]);

    let status: serde_json::Value = serde_json::from_str(&common::ok(&["status", "--json", "--config", c])).unwrap();
    let run = &status[0];
    assert_eq!(run["status"], "completed");
    for s in run["sources"].as_array().unwrap() {
        assert!(s["error"].is_null(), "{s}");
        assert!(s["records"].as_u64().unwrap() > 0, "{s}");
    }
    let errors = run["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "the corpus has hostile files");
    for e in errors {
        assert!(e["reason"].as_str().unwrap().len() > 5, "{e}");
    }
    let reason = |loc: &str| {
        errors
            .iter()
            .find(|e| e["locator"] == loc)
            .map(|e| e["reason"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(reason("pypdf_samples/libreoffice-writer-password.pdf").is_empty(), "opened with the configured password");
    assert!(reason("public_records/empty.pdf").contains("empty"));
    assert!(reason("calamine/pass_protected.xlsx").contains("encrypted"));
    assert!(reason("hostile_qpdf/bad-content.pdf").contains("invalid"), "{}", reason("hostile_qpdf/bad-content.pdf"));

    let search = |q: &str| common::search(&cfg, q);
    let r = search("luisg@embraer.com.br");
    assert_eq!(r["dossiers"][0]["profile"]["display_name"], "Luís Gonçalves", "{r}");
    assert!(r["dossiers"][0]["keys"].as_array().unwrap().iter().any(|k| k == "chinook:Invoice/98"));
    let r = search("3348917502");
    assert!(r["dossiers"][0]["profile"]["names"].as_array().unwrap().iter().any(|n| n == "crystal minh"), "{r}");
    let r = search("\"Agile Delivery Services\"");
    let hit =
        r["unlinked"].as_array().unwrap().iter().chain(r["dossiers"].as_array().unwrap().iter().flat_map(|d| {
            d["groups"].as_array().unwrap().iter().flat_map(|g| g["records"].as_array().unwrap().iter())
        }));
    assert!(hit.clone().any(|h| h["key"] == "pdf:contracts/GSA_ADS_BPA_RFQ_4QTFHS150004_Mod5.pdf#p1"), "{r}");
}
