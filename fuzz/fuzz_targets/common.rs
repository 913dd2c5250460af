//! Shared by the fuzz targets: extract bytes as a file of one format, with the limits a
//! source gets by default, and check what every extraction must hold.

use dossier_connectors::extract::{Extracted, Place};
use dossier_connectors::{Extractor, SourceSpec};

/// Extracts `data` as a file named `name` (its extension picks the format unless the content
/// says otherwise) and checks the invariants of any result.
pub fn extract(name: &str, data: &[u8]) {
    let spec = SourceSpec::files("fuzz", "/nonexistent");
    let x = Extractor::new(&spec);
    let place = Place { item: name, key: format!("fuzz:{name}"), parent: None, depth: 0 };
    let mut out = Extracted::default();
    if x.extract_bytes(&place, name, data, &mut out).is_ok() {
        assert!(out.records.len() <= spec.limits.max_records, "record bound broken");
        for r in &out.records {
            assert!(r.key.starts_with("fuzz:"), "record key escapes its item: {}", r.key);
            assert!(r.text.len() <= spec.limits.max_text_bytes + 64, "text bound broken");
        }
    }
}
