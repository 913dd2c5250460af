//! The whole path on the demo company: generate, index, search, export, evaluate,
//! re-index incrementally.

mod common;

use common::*;

#[test]
fn the_demo_company_is_searchable_by_anything_a_caller_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = demo(&dir, 60);
    let customers = export(&cfg);
    assert!(customers.len() >= 55 && customers.len() <= 60, "60 generated, {} resolved", customers.len());
    let jane = customer_of(&customers, "crm:customers/1").expect("Jane is a customer");

    // Every silo's record of Jane lands in one dossier: CRM, contract page, mail, call note, invoice row.
    let jane_keys: Vec<String> = customers.iter().find(|c| c["id"] == jane.as_str()).unwrap()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    for k in [
        "contracts:contract-10000000.pdf#p1",
        "support:support.mbox/m1",
        "calls:call-notes.csv!r2",
        "billing:invoices-2024.xlsx!Invoices!r2",
    ] {
        assert!(jane_keys.iter().any(|x| x == k), "{k} missing from Jane's dossier: {jane_keys:?}");
    }

    for q in [
        "jayne smyth acme",
        "J. Smith Seattle",
        "smith jane",
        "555 201 7788",
        "+1 (555) 201-7788",
        "104233",
        "ORD-104233",
        "jane.smith@acme.example",
        "2017788",
    ] {
        let r = search(&cfg, q);
        let top = &r["dossiers"][0];
        assert_eq!(
            top["id"].as_str(),
            Some(jane.as_str()),
            "query {q:?}: {}",
            serde_json::to_string_pretty(&r["dossiers"]).unwrap()
        );
        assert!(top["score"].as_f64().unwrap() > 0.0);
        assert!(top["keys"].as_array().unwrap().len() >= 5);
    }
    // Billing's dispute is flagged for everyone who opens the dossier.
    let r = search(&cfg, "jane.smith@acme.example");
    let flags = r["dossiers"][0]["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f["label"].as_str().unwrap().contains("disputed")), "{flags:?}");
    // Each record says where it sits: page, sheet and row, sender, table.
    let loci: std::collections::HashMap<&str, &str> = r["dossiers"][0]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["records"].as_array().unwrap().iter())
        .map(|h| (h["key"].as_str().unwrap(), h["locus"].as_str().unwrap()))
        .collect();
    assert_eq!(loci.get("billing:invoices-2024.xlsx!Invoices!r2"), Some(&"sheet Invoices, row 2"), "{loci:?}");
    assert_eq!(loci.get("contracts:contract-10000000.pdf#p2"), Some(&"page 2"));
    assert_eq!(loci.get("crm:customers/1"), Some(&"table customers, key 1"));
    assert!(loci.get("support:support.mbox/m1").is_some_and(|l| l.starts_with("from ")), "{loci:?}");

    // Two John Smiths, two customers.
    let boston = customer_of(&customers, "crm:customers/2").unwrap();
    let austin = customer_of(&customers, "crm:customers/3").unwrap();
    assert_ne!(boston, austin);
    assert_eq!(search(&cfg, "John Smith Boston")["dossiers"][0]["id"].as_str(), Some(boston.as_str()));
    assert_eq!(search(&cfg, "John Smith Austin")["dossiers"][0]["id"].as_str(), Some(austin.as_str()));

    // Legal finds the clause, with its page.
    let r = search(&cfg, "\"limitation of liability\"");
    assert!(r["total"].as_u64().unwrap() >= 10);
    let page = r["dossiers"][0]["groups"][0]["records"][0]["page"].as_u64();
    assert_eq!(page, Some(3), "{}", serde_json::to_string_pretty(&r["dossiers"][0]["groups"]).unwrap());
    // The page's snippet shows the clause, its words highlighted.
    let hit = &r["dossiers"][0]["groups"][0]["records"][0];
    let snippet = hit["snippet"].as_str().unwrap().to_ascii_lowercase();
    assert!(snippet.contains("<b>limitation</b>") && snippet.contains("<b>liability</b>"), "{hit}");

    // Query syntax: proximity, NOT, OR, filters; bad syntax degrades to words with a notice.
    let matched_pages = |q: &str| -> Vec<String> {
        let r = search(&cfg, q);
        let mut keys: Vec<String> = r["dossiers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["groups"].as_array().unwrap().iter())
            .flat_map(|g| g["records"].as_array().unwrap().iter())
            .filter(|h| h["matched"] == true)
            .map(|h| h["key"].as_str().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    };
    assert!(matched_pages("\"notice days\"").is_empty(), "the words are not adjacent");
    let near = matched_pages("\"notice days\"~3");
    assert!(!near.is_empty() && near.iter().all(|k| k.ends_with("#p2")), "{near:?}");
    let not = matched_pages("\"termination notice\" NOT liability");
    assert!(!not.is_empty() && not.iter().all(|k| k.ends_with("#p2")), "{not:?}");
    let either = matched_pages("liability OR disputed");
    assert!(
        either.iter().any(|k| k.ends_with("#p3")) && either.iter().any(|k| k.starts_with("billing:")),
        "{either:?}"
    );
    let mails = search(&cfg, "kind:email date:2024");
    assert!(mails["total"].as_u64().unwrap() > 0);
    for d in mails["dossiers"].as_array().unwrap() {
        for g in d["groups"].as_array().unwrap() {
            for h in g["records"].as_array().unwrap().iter().filter(|h| h["matched"] == true) {
                assert_eq!(h["kind"], "email", "{h}");
                assert!(h["date"].as_str().unwrap().starts_with("2024"), "{h}");
            }
        }
    }
    let bad = search(&cfg, "\"unclosed AND (");
    assert!(!bad["notices"].as_array().unwrap().is_empty(), "{bad}");

    // The ground truth agrees.
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--json", "--dir", dir.to_str().unwrap()])).unwrap();
    assert!(eval["pair_f1"].as_f64().unwrap() >= 0.98, "{eval}");
    assert!(eval["link_precision"].as_f64().unwrap() >= 0.99, "{eval}");
    assert!(eval["link_recall"].as_f64().unwrap() >= 0.97, "{eval}");
    for kind in ["email", "number", "phone", "name", "contract"] {
        assert!(eval["queries"][kind]["hit_at_1"].as_f64().unwrap() >= 0.95, "{kind}: {eval}");
    }
}

#[test]
fn an_index_of_another_schema_is_refused_by_a_run_and_rebuilt_by_the_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = demo(&dir, 20);
    let before = export(&cfg);
    // What an earlier version of dossier would have left: an index of another schema.
    let idx = dir.join("index/tantivy");
    std::fs::remove_dir_all(&idx).unwrap();
    std::fs::create_dir_all(&idx).unwrap();
    let mut b = tantivy::schema::Schema::builder();
    b.add_text_field("key", tantivy::schema::STRING | tantivy::schema::STORED);
    tantivy::Index::create_in_dir(&idx, b.build()).unwrap();

    let out = run(&["index", "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("dossier index --full"), "{err}");
    assert_eq!(err.matches("another version of dossier").count(), 1, "said once: {err}");

    let out = run(&["demo", "--dir", dir.to_str().unwrap(), "--no-serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("rebuilding it"), "{err}");
    assert_eq!(export(&cfg), before, "the same customers");
    let jane = customer_of(&before, "crm:customers/1").unwrap();
    let top = &search(&cfg, "jane.smith@acme.example")["dossiers"][0];
    assert_eq!(top["id"].as_str(), Some(jane.as_str()), "the rebuilt index answers: {top}");
}

#[test]
fn incremental_runs_touch_only_what_changed_and_deletes_need_a_complete_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = demo(&dir, 20);
    let c = cfg.to_str().unwrap();
    let before = export(&cfg);
    let out = ok(&["index", "--config", c]);
    assert_eq!(export(&cfg), before, "an incremental run with no change gives the same customers as the full run");
    assert!(!out.contains(" new ") || out.contains("    0 new"), "{out}");
    let status: serde_json::Value = serde_json::from_str(&ok(&["status", "--json", "--config", c])).unwrap();
    let last = &status[0];
    assert_eq!(last["status"], "completed");
    let sum = |field: &str| last["sources"].as_array().unwrap().iter().map(|s| s[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("new") + sum("changed"), 0, "{last}");
    // Nothing changed, so resolution had nothing to do.
    assert_eq!(last["resolved"], 0, "{last}");
    assert!(last["stages"]["resolution"].is_null() && last["customers"].as_u64().unwrap() >= 20, "{last}");
    assert!(sum("unchanged") > 50);

    // A new call note is found at once; a deleted contract is gone.
    let notes = dir.join("calls/call-notes.csv");
    let mut text = std::fs::read_to_string(&notes).unwrap();
    text.push_str("2024-12-01,agent1,,\"caller gave ORD-104233 again, wants a refund escalation\"\n");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&notes, text).unwrap();
    std::fs::remove_file(dir.join("contracts/contract-10000039.pdf")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    for stage in ["listing", "extraction", "resolution", "index_writing", "commit", "state_commit"] {
        assert!(report["stages"][stage].is_u64(), "stage {stage} timed: {report}");
    }
    // Only the customers the new note and the deleted contract reach are resolved again, and
    // only theirs are rewritten: the index and the store still agree, and no customer is left
    // without a member.
    let resolved = report["resolved"].as_u64().unwrap();
    assert!(resolved > 0 && resolved * 2 < report["observations"].as_u64().unwrap(), "{report}");
    ok(&["check", "--config", c]);
    let customers = export(&cfg);
    assert_eq!(customers.len() as u64, report["customers"].as_u64().unwrap());
    for cu in &customers {
        assert!(cu["links"].as_array().unwrap().iter().any(|l| l["role"] == "member"), "{cu}");
    }
    let status: serde_json::Value = serde_json::from_str(&ok(&["status", "--json", "--config", c])).unwrap();
    assert_eq!(status[0]["id"], report["id"]);
    let sources = status[0]["sources"].as_array().unwrap();
    let calls = sources.iter().find(|s| s["source"] == "calls").unwrap();
    assert_eq!(calls["changed"], 1);
    let contracts = sources.iter().find(|s| s["source"] == "contracts").unwrap();
    assert_eq!(contracts["deleted"], 1);
    let r = search(&cfg, "refund escalation");
    assert_eq!(r["dossiers"][0]["id"], customer_of(&export(&cfg), "crm:customers/1").unwrap().as_str());
    assert!(
        !export(&cfg).iter().any(|c| c["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k.as_str().unwrap().contains("contract-10000039")))
    );

    // A vanished silo does not empty the index.
    std::fs::rename(dir.join("support"), dir.join("support-gone")).unwrap();
    let out = run(&["index", "--config", c]);
    assert!(out.status.success(), "a source error is reported, not fatal");
    let r = search(&cfg, "jane.smith@acme.example");
    let keys = r["dossiers"][0]["keys"].as_array().unwrap();
    assert!(keys.iter().any(|k| k.as_str().unwrap().starts_with("support:")), "mail kept: {keys:?}");
    let status: serde_json::Value = serde_json::from_str(&ok(&["status", "--json", "--config", c])).unwrap();
    let support = status[0]["sources"].as_array().unwrap().iter().find(|s| s["source"] == "support").unwrap().clone();
    assert!(support["error"].as_str().unwrap().contains("cannot read"), "{support}");
}

#[test]
fn config_errors_name_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("dossier.toml");
    std::fs::write(
        &cfg,
        "[index]\npath = \"x\"\n\n[[sources]]\nname = \"a\"\nkind = \"files\"\nlocation = \".\"\nlocaton = \"typo\"\n",
    )
    .unwrap();
    let out = run(&["index", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dossier.toml:8:") && err.contains("locaton"), "{err}");
    let out = run(&["index", "--config", tmp.path().join("missing.toml").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dossier demo"));
}

#[test]
fn a_source_that_fails_item_after_item_stops_and_keeps_what_it_had() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("good.txt"), "Jane Smith called about order ORD-104233.").unwrap();
    let cfg = tmp.path().join("dossier.toml");
    std::fs::write(
        &cfg,
        "[index]\npath = \"index\"\n\n[[sources]]\nname = \"docs\"\nkind = \"files\"\nlocation = \"docs\"\nlimits = { max_consecutive_failures = 5 }\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    ok(&["index", "--config", c]);
    // The share goes bad: every new file is a broken PDF.
    for i in 0..60 {
        std::fs::write(docs.join(format!("scan-{i:02}.pdf")), format!("%PDF-1.7 truncated {i}")).unwrap();
    }
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let s = &report["sources"][0];
    assert!(s["stopped"].as_str().unwrap_or_default().contains("in a row"), "{s}");
    let (failed, deferred) = (s["failed"].as_u64().unwrap(), s["deferred"].as_u64().unwrap());
    assert!(failed >= 5 && deferred > 0 && failed + deferred == 60, "{s}");
    // What was indexed before is still there, and agrees with the store.
    let check: serde_json::Value = serde_json::from_str(&ok(&["check", "--json", "--config", c])).unwrap();
    assert_eq!(check["records"], 1, "{check}");
    // Once the cause is gone, the next run goes through.
    for i in 0..60 {
        std::fs::remove_file(docs.join(format!("scan-{i:02}.pdf"))).unwrap();
    }
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    assert!(report["sources"][0]["stopped"].is_null(), "{report}");
    ok(&["check", "--config", c]);
}

#[test]
fn a_renamed_or_moved_file_is_carried_over_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = demo(&dir, 20);
    let c = cfg.to_str().unwrap();
    let contracts = dir.join("contracts");
    std::fs::create_dir_all(contracts.join("2024")).unwrap();
    std::fs::rename(contracts.join("contract-10000000.pdf"), contracts.join("2024/acme-signed.pdf")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let s = report["sources"].as_array().unwrap().iter().find(|s| s["source"] == "contracts").unwrap().clone();
    assert_eq!((s["moved"].as_u64(), s["new"].as_u64(), s["deleted"].as_u64()), (Some(1), Some(0), Some(0)), "{s}");
    assert_eq!(s["records"], 0, "nothing was read again: {s}");
    let keys: Vec<String> = export(&cfg)
        .iter()
        .flat_map(|c| c["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect();
    assert!(keys.iter().any(|k| k == "contracts:2024/acme-signed.pdf#p2"), "the pages live under the new name");
    assert!(!keys.iter().any(|k| k.starts_with("contracts:contract-10000000.pdf")), "and not under the old");
    let hit = ok(&["search", "--json", "--config", c, "\"termination notice\""]);
    assert!(hit.contains("2024/acme-signed.pdf#p2"), "{hit}");
    ok(&["check", "--config", c]);
}

#[test]
fn a_message_appended_to_a_mailbox_is_read_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = demo(&dir, 20);
    let c = cfg.to_str().unwrap();
    let mbox = dir.join("support/support.mbox");
    let support = |report: &serde_json::Value| {
        report["sources"].as_array().unwrap().iter().find(|s| s["source"] == "support").unwrap().clone()
    };
    let records = || -> u64 {
        let check: serde_json::Value = serde_json::from_str(&ok(&["check", "--json", "--config", c])).unwrap();
        check["records"].as_u64().unwrap()
    };
    let before = records();
    let append = |mbox: &std::path::Path, word: &str| {
        let mut text = std::fs::read(mbox).unwrap();
        text.extend_from_slice(
            format!(
                "From jane.smith@acme.example Tue Dec  3 10:00:00 2024\nFrom: Jane Smith <jane.smith@acme.example>\n\
                 To: Support Desk <support@northwind-telecom.example>\nSubject: About the {word} plan\n\
                 Date: 03 Dec 2024 10:00:00 -0800\nMessage-ID: <{word}@acme.example>\n\nIs the {word} plan available?\n"
            )
            .as_bytes(),
        );
        std::fs::write(mbox, text).unwrap();
    };
    append(&mbox, "platypusline");
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let s = support(&report);
    assert_eq!(
        (s["changed"].as_u64(), s["appended"].as_u64(), s["records"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(records(), before + 1, "one record more, none lost");
    let hit = search(&cfg, "platypusline");
    assert_eq!(
        hit["dossiers"][0]["id"],
        common::customer_of(&export(&cfg), "crm:customers/1").unwrap().as_str(),
        "{hit}"
    );

    // A second append numbers on.
    append(&mbox, "quollline");
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    assert_eq!(support(&report)["records"], 1);
    assert_eq!(records(), before + 2);
    assert!(
        ok(&["search", "--json", "--config", c, "quollline"]).contains("support:support.mbox/m"),
        "keys are numbered on"
    );

    // A moved mailbox is carried over, and what was indexed of it goes with it: the next
    // message appended to it is read alone.
    std::fs::create_dir_all(dir.join("support/archive")).unwrap();
    std::fs::rename(&mbox, dir.join("support/archive/support.mbox")).unwrap();
    let mbox = dir.join("support/archive/support.mbox");
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let s = support(&report);
    assert_eq!((s["moved"].as_u64(), s["records"].as_u64()), (Some(1), Some(0)), "{s}");
    assert_eq!(records(), before + 2);
    append(&mbox, "wombatline");
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let s = support(&report);
    assert_eq!((s["appended"].as_u64(), s["records"].as_u64()), (Some(1), Some(1)), "{s}");
    assert_eq!(records(), before + 3);
    assert!(
        ok(&["search", "--json", "--config", c, "wombatline"]).contains("support:archive/support.mbox/m"),
        "the appended message lives under the new name"
    );

    // A change inside the mailbox is not an append: the whole mailbox is read again.
    let mut bytes = std::fs::read(&mbox).unwrap();
    let at = bytes.windows(13).position(|w| w == b"Disputed bill").unwrap() + 13;
    bytes.insert(at, b's');
    std::fs::write(&mbox, bytes).unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let s = support(&report);
    assert_eq!(s["appended"], 0, "{s}");
    assert!(s["records"].as_u64().unwrap() > 2, "{s}");
    assert_eq!(records(), before + 3);
    ok(&["check", "--config", c]);
}

#[test]
fn rows_appended_to_a_csv_file_are_read_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = demo(&dir, 20);
    let c = cfg.to_str().unwrap();
    let csv = dir.join("calls/callbacks.csv");
    let mut text = String::from("date,agent,caller,note\n");
    for i in 1..=30 {
        text += &format!("2024-05-{:02},agent{},Caller {i},\"asked for a callback, ticket {i}\"\n", i % 28 + 1, i % 9);
    }
    std::fs::write(&csv, &text).unwrap();
    ok(&["index", "--config", c]);
    let calls = |report: &serde_json::Value| {
        report["sources"].as_array().unwrap().iter().find(|s| s["source"] == "calls").unwrap().clone()
    };
    let records = || -> u64 {
        let check: serde_json::Value = serde_json::from_str(&ok(&["check", "--json", "--config", c])).unwrap();
        check["records"].as_u64().unwrap()
    };
    let before = records();
    let append = |rows: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&csv).unwrap();
        std::io::Write::write_all(&mut f, rows.as_bytes()).unwrap();
    };
    append("2024-06-01,agent3,,\"numbatline: jane.smith@acme.example wants the fibre plan\"\n");
    append("2024-06-02,agent4,Caller 31,\"quokkaline, a note\nover two lines\"\n");
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let s = calls(&report);
    assert_eq!(
        (s["changed"].as_u64(), s["appended"].as_u64(), s["records"].as_u64()),
        (Some(1), Some(1), Some(2)),
        "two rows read, not thirty-two: {s}"
    );
    assert_eq!(records(), before + 2, "two records more, none lost");
    let hit = search(&cfg, "numbatline");
    assert_eq!(
        hit["dossiers"][0]["id"],
        common::customer_of(&export(&cfg), "crm:customers/1").unwrap().as_str(),
        "{hit}"
    );
    let quokka = ok(&["search", "--json", "--config", c, "quokkaline"]);
    assert!(quokka.contains("calls:callbacks.csv!r33"), "rows are numbered on: {quokka}");

    // A full read finds the same rows under the same keys: nothing doubled, nothing renamed.
    ok(&["index", "--full", "--config", c]);
    assert_eq!(records(), before + 2);
    assert!(ok(&["search", "--json", "--config", c, "quokkaline"]).contains("calls:callbacks.csv!r33"));

    // An edited row is not an append: the file is read again whole.
    std::fs::write(&csv, std::fs::read_to_string(&csv).unwrap().replace("ticket 7\"", "ticket 7b\"")).unwrap();
    append("2024-06-03,agent5,Caller 32,\"wallabyline\"\n");
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let s = calls(&report);
    assert_eq!((s["appended"].as_u64(), s["records"].as_u64()), (Some(0), Some(33)), "{s}");
    assert_eq!(records(), before + 3);
    ok(&["check", "--config", c]);
}

#[test]
fn customers_merged_by_an_incremental_run_leave_their_old_ids_pointing_at_the_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let people = tmp.path().join("people");
    std::fs::create_dir(&people).unwrap();
    let cfg = tmp.path().join("dossier.toml");
    std::fs::write(
        &cfg,
        "[index]\npath = \"index\"\ndefault_region = \"US\"\n\n[[sources]]\nname = \"people\"\nkind = \"files\"\n\
         location = \"people\"\ninclude = [\"*.csv\"]\nfields = { Name = \"person\" }\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    // Thirty different people, so that one more record is a small change (an incremental run).
    let (firsts, lasts) = (
        ["Alice", "Bruno", "Carmen", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ingrid", "Jonas"],
        ["Albrecht", "Brennan", "Castell"],
    );
    let mut crm = String::from("Name,Email,Phone,Note\n");
    for (i, (f, l)) in firsts.iter().flat_map(|f| lasts.iter().map(move |l| (f, l))).enumerate() {
        let email = format!("{}.{}@example.com", f.to_lowercase(), l.to_lowercase());
        crm += &format!("{f} {l},{email},(206) 555-{:04},customer since 20{}\n", 1000 + i * 37, 10 + i % 10);
    }
    std::fs::write(people.join("crm.csv"), crm).unwrap();
    // One name, nothing else shared: two customers.
    std::fs::write(
        people.join("support.csv"),
        "Name,Email,Phone,Note\nMarguerite Oyelaran,m.oyelaran@example.org,,billing question\n",
    )
    .unwrap();
    std::fs::write(
        people.join("shop.csv"),
        "Name,Email,Phone,Note\nMarguerite Oyelaran,marguerite@oyelaran.example,(312) 555-8844,new address\n",
    )
    .unwrap();
    ok(&["index", "--config", c]);
    let before = export(&cfg);
    let (support, shop) =
        (customer_of(&before, "people:support.csv!r2").unwrap(), customer_of(&before, "people:shop.csv!r2").unwrap());
    assert_ne!(support, shop, "two customers before the bridging note");

    // A note with the support email and the shop phone: one customer now.
    std::fs::write(
        people.join("notes.csv"),
        "Name,Email,Phone,Note\nMarguerite Oyelaran,m.oyelaran@example.org,(312) 555-8844,called about both\n",
    )
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&["index", "--json", "--config", c])).unwrap();
    let resolved = report["resolved"].as_u64().unwrap();
    assert!(resolved > 0 && resolved * 2 < report["observations"].as_u64().unwrap(), "incremental: {report}");
    let after = export(&cfg);
    let merged = customer_of(&after, "people:notes.csv!r2").unwrap();
    assert_eq!(customer_of(&after, "people:support.csv!r2").as_ref(), Some(&merged));
    assert_eq!(customer_of(&after, "people:shop.csv!r2").as_ref(), Some(&merged));
    // Every id gone since the first run leads to the customer its records went to.
    let gone: Vec<&String> = [&support, &shop].into_iter().filter(|id| **id != merged).collect();
    assert!(!gone.is_empty(), "a merge leaves at most one of the two ids");
    for id in gone {
        let out = ok(&["customers", "explain", "--config", c, id]);
        assert!(out.starts_with(&format!("{id} was merged into {merged}")), "{out}");
    }
    // The records that did not change but changed customer are found under the merge.
    for words in ["new address", "billing question"] {
        let r = search(&cfg, words);
        assert_eq!(r["dossiers"][0]["id"].as_str(), Some(merged.as_str()), "{words}: {r}");
    }
    ok(&["check", "--config", c]);
}
