//! Crash safety for real: index runs killed with SIGKILL at several moments leave the last
//! committed index searchable and consistent with the state store, and the next run finishes
//! the work without duplicates or losses.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, ok, run};

/// `dossier check --json`, parsed, with whether it passed and what it said.
fn check(config: &str) -> (bool, serde_json::Value, String) {
    let out = run(&["check", "--json", "--config", config]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn runs_killed_at_any_moment_lose_nothing_and_duplicate_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("co");
    let cfg = common::demo(&dir, 400);
    let c = cfg.to_str().unwrap();
    let notes = dir.join("calls/call-notes.csv");
    let mbox = dir.join("support/support.mbox");
    let words = ["aardwolf", "bushbaby", "caracal", "dugong", "echidna", "fossa", "gerenuk", "hoatzin"];
    // Each run has new work: a new call note, a message appended to the mailbox, and every
    // other run re-reads everything.
    let add_work = |i: usize, word: &str| {
        let mut text = std::fs::read_to_string(&notes).unwrap();
        text.push_str(&format!("2024-12-{:02},agent{i},,\"caller gave ORD-104233 about the {word} plan\"\n", i + 1));
        std::fs::write(&notes, text).unwrap();
        let mut mail = std::fs::read(&mbox).unwrap();
        mail.extend_from_slice(
            format!(
                "From jane.smith@acme.example Tue Dec  3 10:00:00 2024\nFrom: Jane Smith <jane.smith@acme.example>\n\
                 Subject: the {word} plan again\nMessage-ID: <{word}@acme.example>\n\nStill waiting about {word}.\n"
            )
            .as_bytes(),
        );
        std::fs::write(&mbox, mail).unwrap();
    };
    // Kill points spread over a run — listing, extraction, resolution, index writing, commits,
    // merges — as shares of how long a run of the same kind and work takes here (fixed delays
    // killed too few runs on a fast machine, and only early ones on a slow one).
    let timed = |i: usize, word: &str, full: bool| {
        add_work(i, word);
        let t = std::time::Instant::now();
        ok(&if full { vec!["index", "--full", "--config", c] } else { vec!["index", "--config", c] });
        t.elapsed().as_millis() as u64
    };
    let (full_ms, incremental_ms) = (timed(8, "quagga", true), timed(9, "rhebok", false));
    let shares = [0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.85, 0.95];
    let delays =
        shares.iter().enumerate().map(|(i, f)| (if i % 2 == 0 { full_ms } else { incremental_ms } as f64 * f) as u64);
    let mut interrupted = 0;
    for (i, (word, delay)) in words.iter().zip(delays).enumerate() {
        add_work(i, word);
        let mut args = vec!["index", "--config", c];
        if i % 2 == 0 {
            args.push("--full");
        }
        let mut child = Command::new(bin())
            .args(&args)
            .env("DOSSIER_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        // SIGKILL: no destructor, no flush, no lock release but the kernel's.
        let killed = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        interrupted += usize::from(killed);

        // What was committed before is still searchable…
        let hits = common::search(&cfg, "ORD-104233");
        assert!(hits["total"].as_u64().unwrap() > 0, "after a kill at {delay} ms: {hits}");
        // …and agrees with the store, unless the kill fell between the two commits, which
        // `check` names and the next run mends.
        let (passed, report, said) = check(c);
        assert!(
            passed || said.contains("the next `dossier index` reconciles"),
            "after a kill at {delay} ms: {said}\n{report}"
        );
    }
    assert!(interrupted >= 4, "most runs were killed while running ({interrupted} of {})", words.len());

    // The next run finishes the work: consistent, every note found once.
    ok(&["index", "--config", c]);
    let (passed, report, said) = check(c);
    assert!(passed, "{said}\n{report}");
    for word in words {
        let hits = common::search(&cfg, word);
        assert_eq!(hits["total"], 1, "{word}: {hits}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--json", "--runs", "20", "--config", c])).unwrap();
    assert_eq!(status[0]["status"], "completed");
    assert!(status.as_array().unwrap().iter().all(|r| r["status"] != "running"), "{status}");

    // The same records as a clean index of the same files.
    let clean = dir.join("clean.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let at = text.find("path = ").unwrap();
    let end = at + text[at..].find('\n').unwrap();
    std::fs::write(&clean, format!("{}path = \"index-clean\"{}", &text[..at], &text[end..])).unwrap();
    let cl = clean.to_str().unwrap();
    ok(&["index", "--config", cl]);
    let (_, clean_report, _) = check(cl);
    assert_eq!(report["records"], clean_report["records"], "{report}\n{clean_report}");
}
