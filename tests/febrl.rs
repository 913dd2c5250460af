//! Resolution quality on the Febrl benchmark datasets from ../shared, indexed through the
//! shipped example configs (an ordinary CSV source; `rec_id` is an opaque field), and scored
//! with `dossier eval --truth`. The thresholds are the quality targets, not timings.

mod common;

use std::path::Path;

/// Indexes `examples/febrl/NAME.toml` into a temp dir and scores it against the dataset's truth.
fn score(name: &str) -> serde_json::Value {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/febrl/");
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(format!("{examples}{name}.toml")).unwrap();
    let cfg_text = text
        .replace(&format!("path = \"../../target/febrl/{name}\""), &format!("path = {:?}", tmp.path().join("index")))
        .replace("location = \"../../../shared", &format!("location = \"{examples}../../../shared"));
    assert_ne!(text, cfg_text);
    let cfg = tmp.path().join("dossier.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let c = cfg.to_str().unwrap();
    common::ok(&["index", "--config", c]);
    let dataset = name.split('-').next().unwrap();
    let truth = Path::new(examples).join(format!("../../../shared/corpus/entities/febrl/truth_{dataset}.csv"));
    let out = common::ok(&["eval", "--config", c, "--truth", truth.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    eprintln!("{name}: precision {} recall {} F1 {}", v["precision"], v["recall"], v["f1"]);
    assert_eq!(v["found"], v["truth_records"], "every record of {name} indexed");
    v
}

#[test]
fn febrl_dataset3_meets_the_quality_targets_without_the_shared_id() {
    let Some(_) = common::shared_corpus() else { return };
    let v = score("dataset3-no-ssn");
    assert!(v["f1"].as_f64().unwrap() >= 0.99 && v["precision"].as_f64().unwrap() >= 0.995, "{v}");
    let v = score("dataset3-no-ssn-dob");
    assert!(v["f1"].as_f64().unwrap() >= 0.98 && v["precision"].as_f64().unwrap() >= 0.995, "{v}");
}

#[test]
fn febrl_datasets_1_and_2_resolve_with_high_precision() {
    let Some(_) = common::shared_corpus() else { return };
    for name in ["dataset1-no-ssn", "dataset2-no-ssn", "dataset2-no-ssn-dob"] {
        let v = score(name);
        assert!(v["precision"].as_f64().unwrap() >= 0.995 && v["f1"].as_f64().unwrap() >= 0.97, "{name}: {v}");
    }
}
