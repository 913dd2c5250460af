//! The `dossier` command line.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dossier::access::{self, Viewer};
use dossier::config::Config;
use dossier::index::IndexError;
use dossier::pipeline::{self, RunError, RunOptions};
use dossier::query::Engine;
use dossier::state::{AuditEntry, AuditFilter, RunReport};

// Searching and indexing allocate many small, short-lived objects (query parts, hit lists, JSON);
// mimalloc serves them faster than glibc's allocator (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc.h (libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `mi_option_allow_thp` of mimalloc.h.
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// dossier: one search box over every customer silo.
///
/// Crawls databases, PDFs, spreadsheets, mailboxes and ticket exports, works out
/// which records belong to the same customer without a shared id, and answers
/// with ranked customer dossiers.
#[derive(Parser)]
#[command(name = "dossier", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// The config file.
    #[arg(long, short = 'c', global = true, default_value = "dossier.toml", env = "DOSSIER_CONFIG")]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    /// More log output (-v info, -vv debug).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index the configured sources (incremental: only new and changed items).
    ///
    /// Exits 0 when the run completed, even if some items failed (they are in
    /// the report: `dossier status`); non-zero when the run could not happen.
    Index {
        /// Re-extract everything, not only what changed.
        #[arg(long)]
        full: bool,
        /// Index only this source (repeatable).
        #[arg(long = "source", value_name = "NAME")]
        sources: Vec<String>,
        /// Print the run's report as JSON (counts per source, stage times, failed items).
        #[arg(long)]
        json: bool,
    },
    /// Search: a name, phone, email, order or account number, or contract words.
    Search {
        /// The query, as a rep would type it.
        query: String,
        /// Print the ranked dossiers as JSON.
        #[arg(long)]
        json: bool,
        /// 0-based page of customers.
        #[arg(long, default_value_t = 0)]
        page: usize,
        /// Customers per page.
        #[arg(long, default_value_t = 10)]
        per_page: usize,
        /// See what this role sees (its sources, masking) instead of everything.
        #[arg(long)]
        role: Option<String>,
    },
    /// Serve the JSON API and the search page; re-index each source on its schedule, and sources
    /// with `watch = true` seconds after a file changes.
    Serve {
        /// Address to listen on (default from the config, 127.0.0.1:7860).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Check that the index and the state store agree: every record indexed once, nothing
    /// indexed the store does not know, a document for every customer. Exit 1 when they do not.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the last runs: counts, duration and per-item errors.
    Status {
        /// How many runs.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate the demo company (if absent), index it and serve it.
    Demo {
        /// Folder of the demo company.
        #[arg(long, default_value = "demo-company")]
        dir: PathBuf,
        /// How many customers to generate.
        #[arg(long, default_value_t = 200)]
        customers: usize,
        /// Generate and index only; do not serve.
        #[arg(long)]
        no_serve: bool,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Measure resolution and search quality on a demo company's ground truth, or resolution
    /// alone against a `record_id,entity_id` truth file (`--truth`, with the index of --config).
    Eval {
        /// Folder of the demo company (holds truth.jsonl and queries.jsonl).
        #[arg(long, default_value = "demo-company")]
        dir: PathBuf,
        /// A `record_id,entity_id` CSV to score the index of --config against, instead of a demo.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// The record field holding the truth file's record ids.
        #[arg(long, default_value = "rec_id", requires = "truth")]
        key_field: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure speed (figures for BENCHMARKS.md; see README).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Internal: an isolated extraction worker (started by `dossier index`).
    #[command(hide = true)]
    ExtractWorker {
        /// Address-space limit in MiB.
        #[arg(long, default_value_t = 2048)]
        memory_mib: u64,
    },
    /// Resolved customers.
    Customers {
        #[command(subcommand)]
        command: CustomersCommand,
    },
    /// API keys: the server answers only requests that carry one.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// List the audit log: who looked at which customer or record, when, with which query.
    Audit {
        /// Only this key name (`cli:USER` for the console).
        #[arg(long)]
        who: Option<String>,
        /// Only this customer id.
        #[arg(long)]
        customer: Option<String>,
        /// Only this action: search, suggest, dossier, record, export-subject.
        #[arg(long)]
        action: Option<String>,
        /// Only from this time on (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Only before this time.
        #[arg(long)]
        until: Option<String>,
        /// Most entries, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for a role and print it once; only its hash is kept.
    Add {
        /// Who holds the key (shown in the audit log).
        name: String,
        /// The role it grants, from the config's [roles].
        #[arg(long)]
        role: String,
    },
    /// List keys: name, role, created, revoked.
    List,
    /// Revoke a key by name; the server refuses it from the next request on.
    Revoke {
        /// The key's name.
        name: String,
    },
    /// Print the `blake3:…` hash of a key read from standard input, for a [[keys]] entry.
    Hash,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Read one configured source without extracting or indexing: items (rows) per second and
    /// MB/s of the connector alone, to size a silo's sync.
    Read {
        /// The source name from the config.
        source: String,
    },
    /// Extract every file under a folder through the isolated workers, one at a time: per-format
    /// files, records, pages/messages/rows per second, MB/s and the workers' peak memory.
    Extract {
        /// The folder to read (for example ../shared/corpus).
        dir: PathBuf,
        /// Also measure PDF word recall against `pdftotext` (poppler-utils must be installed).
        #[arg(long)]
        recall: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Index a generated demo company four times, each in its own process: full, with nothing
    /// changed, after changing 1% of its CRM rows and contract PDFs, after deleting 1%. Prints
    /// wall time, peak memory, records/s and the time of each stage.
    Index {
        /// Folder of the demo company (generated there when it holds no dossier.toml; the
        /// benchmark then changes and deletes some of its rows and files).
        #[arg(long, default_value = "bench-company")]
        dir: PathBuf,
        /// Customers to generate.
        #[arg(long, default_value_t = 10_000)]
        customers: usize,
        /// Run the four runs this many times (each repeat changes and deletes another 1%),
        /// and give each kind's median and range, and the 1% runs' share of the full run by
        /// medians: one run is at the mercy of the machine's noise.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
        repeat: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Draw how index runs grow with the company's size: an SVG of run times, peak memory and
    /// index size against customers (both axes logarithmic), from `bench index --json` results.
    Plot {
        /// Results of `dossier bench index --json`, one per size (two sizes or more).
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// The SVG to write.
        #[arg(long, default_value = "growth.svg")]
        out: PathBuf,
    },
    /// Resolve a synthetic population of people written several times each, Febrl-style
    /// (typos, missing values, swapped and replaced names), in this process: time, candidate
    /// pairs, peak memory and pairwise quality against the known truth. One size per run.
    Resolve {
        /// Records to generate and resolve.
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search on an indexed demo company: server-side latency of its query set by kind,
    /// then HTTP throughput from concurrent clients on loopback.
    Search {
        /// Folder of the demo company (holds dossier.toml and queries.jsonl).
        #[arg(long, default_value = "demo-company")]
        dir: PathBuf,
        /// Concurrent keep-alive HTTP clients (0 skips the HTTP load).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Seconds of HTTP load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The role of the load's API key (default `support`, else the first role).
        #[arg(long)]
        role: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CustomersCommand {
    /// One JSON object per customer per line: id, record keys, profile, evidence.
    Export,
    /// Everything held about one customer, for a subject-access request: profile, every linked
    /// record in full, where each came from, and why it is linked. Unmasked; audited.
    ExportSubject {
        /// The customer id (an old id of a merged customer is followed).
        id: String,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Why each record is in a customer's dossier.
    Explain {
        /// The customer id (old ids of merged customers are followed).
        id: String,
    },
}

fn init_logging(json: bool, verbose: u8) {
    let level = match verbose {
        // The PDF parser logs every repair it makes; those are noise unless asked for.
        0 => "warn,lopdf=error,pdf_extract=error,sqlx=error",
        1 => "info,lopdf=error,pdf_extract=error,sqlx=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOSSIER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn print_report(r: &RunReport) {
    println!("run {} {}: {} customers, {:.1}s", r.id, r.status, r.customers, r.millis as f64 / 1000.0);
    for s in &r.sources {
        println!(
            "  {:<12} {:>6} items  {:>5} new {:>5} changed {:>6} unchanged {:>4} moved {:>4} deleted {:>4} failed  {:>7} records{}{}",
            s.source,
            s.seen,
            s.new,
            s.changed,
            s.unchanged,
            s.moved,
            s.deleted,
            s.failed,
            s.records,
            if s.deferred > 0 { format!("  {} deferred to the next run", s.deferred) } else { String::new() },
            s.error.as_deref().or(s.stopped.as_deref()).map(|e| format!("  ERROR: {e}")).unwrap_or_default()
        );
    }
    if !r.stages.is_empty() {
        let stages: Vec<String> = r.stages.iter().map(|(k, ms)| format!("{k} {:.1}s", *ms as f64 / 1000.0)).collect();
        println!("  stages: {}", stages.join(", "));
    }
    if !r.errors.is_empty() {
        println!("  {} problems (dossier status shows them):", r.errors.len());
        for e in r.errors.iter().take(10) {
            println!("    {}:{} — {}", e.source, e.locator, e.reason);
        }
    }
}

fn index(cfg: &Config, full: bool, sources: Vec<String>) -> Result<RunReport> {
    let progress = std::io::stderr().is_terminal();
    // Parsers run in worker processes started from this very binary.
    let isolate = std::env::current_exe().ok();
    let report = pipeline::run(cfg, &RunOptions { full, sources, progress, isolate, deadline: None })?;
    Ok(report)
}

/// The file `dossier demo` keeps its demo keys in (the demo only: real keys are shown once).
const DEMO_KEYS: &str = "demo-keys.txt";

/// One key per role of the demo company, made on its first run: (role, key).
fn demo_keys(cfg: &Config, dir: &std::path::Path) -> Result<Vec<(String, String)>> {
    let path = dir.join(DEMO_KEYS);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .map(|(r, k)| (r.to_string(), k.trim().to_string()))
            .collect());
    }
    let store = dossier::state::State::open(&pipeline::paths(cfg).1)?;
    let mut out = Vec::new();
    let mut text =
        String::from("# API keys of the demo company's roles: ROLE KEY. Demo only; real keys are shown once.\n");
    for role in cfg.roles.keys() {
        let key = access::new_key().map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
        let mut name = format!("demo-{role}");
        // The keys file was removed: the old keys go, new ones take their place.
        if store.keys()?.iter().any(|k| k.name == name) {
            store.revoke_key(&name)?;
            name = format!("demo-{role}-{}", chrono::Utc::now().timestamp());
        }
        store.add_key(&name, &access::hash_key(&key), role)?;
        text.push_str(&format!("{role} {key}\n"));
        out.push((role.clone(), key));
    }
    write_private(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(out)
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

/// Writes a console look to the audit log.
fn audit_cli(
    engine: &Engine,
    cfg: &Config,
    v: &Viewer,
    action: &str,
    customers: Vec<Option<String>>,
    query: &str,
) -> Result<()> {
    let query = Some(engine.masker().text(query).into_owned());
    let entry = |customer: Option<String>| AuditEntry {
        who: v.who.clone(),
        role: Some(v.role.clone()),
        action: action.to_string(),
        customer,
        query: query.clone(),
        detail: Some("console".into()),
        ..Default::default()
    };
    let mut entries: Vec<AuditEntry> = customers.into_iter().map(entry).collect();
    if entries.is_empty() {
        entries.push(entry(None));
    }
    dossier::state::State::open(&pipeline::paths(cfg).1)?.audit(&entries)?;
    Ok(())
}

fn keys(cfg: &Config, command: KeysCommand) -> Result<()> {
    let (index_dir, state_path) = pipeline::paths(cfg);
    std::fs::create_dir_all(&index_dir).with_context(|| format!("creating {}", index_dir.display()))?;
    let store = dossier::state::State::open(&state_path)?;
    match command {
        KeysCommand::Add { name, role } => {
            if !cfg.roles.contains_key(&role) {
                bail!("no role {role:?} in the config; define [roles.{role}] or use one of {:?}", cfg.roles.keys());
            }
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                bail!("a key name is 1 to 64 printable characters");
            }
            if store.keys()?.iter().any(|k| k.name == name) || cfg.keys.iter().any(|k| k.name == name) {
                bail!("a key named {name:?} exists; revoke it or choose another name");
            }
            let key = access::new_key().map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
            store.add_key(&name, &access::hash_key(&key), &role)?;
            eprintln!("key {name:?} for role `{role}` (shown once; only its hash is kept):");
            println!("{key}");
        }
        KeysCommand::List => {
            for k in store.keys()? {
                let state = k.revoked.map(|r| format!("revoked {r}")).unwrap_or_else(|| "live".into());
                println!("{:<24} {:<12} created {}  {state}", k.name, k.role, k.created);
            }
            for k in &cfg.keys {
                println!("{:<24} {:<12} in the config", k.name, k.role);
            }
        }
        KeysCommand::Revoke { name } => {
            if !store.revoke_key(&name)? {
                if cfg.keys.iter().any(|k| k.name == name) {
                    bail!("key {name:?} is in the config's [[keys]]: remove it there");
                }
                bail!("no live key named {name:?}; list them with `dossier keys list`");
            }
            eprintln!("revoked {name:?}");
        }
        // Answered in `main`, before any config is read.
        KeysCommand::Hash => {}
    }
    Ok(())
}

fn serve(cfg: &Config, listen: Option<String>) -> Result<()> {
    let engine = Engine::open(cfg)?;
    if !engine.views_current() {
        eprintln!(
            "warning: the roles in the config changed since the last index run; role keys get 503 until `dossier index` runs"
        );
    }
    let live_keys = engine.with_state(|s| s.keys())??.iter().filter(|k| k.revoked.is_none()).count() + cfg.keys.len();
    if live_keys == 0 {
        eprintln!(
            "note: no API keys yet, so the API refuses every request; create one with `dossier keys add NAME --role ROLE`"
        );
    }
    let mut state = dossier::server::AppState::new(cfg, engine)?;
    let scheduled: Vec<&str> = cfg.sources.iter().filter(|s| s.schedule.is_some()).map(|s| s.name.as_str()).collect();
    if !scheduled.is_empty() {
        eprintln!("re-indexing on schedule: {}", scheduled.join(", "));
    }
    state.runs = Some(dossier::schedule::Runs::start(cfg.clone(), std::env::current_exe().ok()));
    let listen = listen.unwrap_or_else(|| cfg.server.listen.clone());
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(dossier::server::serve(state, &listen)).with_context(|| format!("serving on {listen}"))?;
    Ok(())
}

fn bench_index(dir: &std::path::Path, customers: usize, repeat: u32, json: bool) -> Result<()> {
    use dossier::bench;
    let exe = std::env::current_exe().context("finding this program to run `dossier index`")?;
    let config = dir.join("dossier.toml");
    let mut generate_secs = None;
    if !config.exists() {
        eprintln!("generating a demo company of {customers} customers in {}", dir.display());
        let t = std::time::Instant::now();
        dossier::demo::generate(dir, customers)?;
        generate_secs = Some(t.elapsed().as_secs_f64());
    }
    let mut runs = Vec::new();
    for k in 0..repeat {
        let of = if repeat > 1 { format!(" ({} of {repeat})", k + 1) } else { String::new() };
        eprintln!("full run{of}");
        runs.push(bench::index_run(&exe, &config, true, "full")?);
        eprintln!("incremental run, nothing changed{of}");
        runs.push(bench::index_run(&exe, &config, false, "no change")?);
        // Each repeat changes and deletes its own hundredth (every 100th row and contract from
        // another offset; the changed and deleted offsets never meet).
        let (rows, files) = bench::alter_demo(dir, 10, 3 + 10 * k, false)?;
        eprintln!("incremental run after changing {rows} customer rows and {files} contracts{of}");
        runs.push(bench::index_run(&exe, &config, false, "1% changed")?);
        let (rows, files) = bench::alter_demo(dir, 10, 7 + 10 * k, true)?;
        eprintln!("incremental run after deleting {rows} customer rows and {files} contracts{of}");
        runs.push(bench::index_run(&exe, &config, false, "1% deleted")?);
    }
    let index_mib = dir_size(&dir.join("index")) as f64 / (1 << 20) as f64;
    let summary = bench::IndexSummary::of(&runs);
    if json {
        let out = serde_json::json!({
            "generate_secs": generate_secs,
            "runs": runs,
            "summary": summary,
            "index_mib": index_mib,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if let Some(g) = generate_secs {
        println!("generated in {g:.1} s");
    }
    let stages = ["listing", "extraction", "load_stored", "resolution", "index_writing", "relinking", "commit"];
    print!("{:<11} {:>8} {:>9} {:>9} {:>8} {:>8}", "run", "wall s", "peak MiB", "records", "rec/s", "deleted");
    for s in stages {
        print!(" {:>10}", s);
    }
    println!();
    for r in &runs {
        let records: u64 = r.report.sources.iter().map(|s| s.records).sum();
        let deleted: u64 = r.report.sources.iter().map(|s| s.deleted).sum();
        print!(
            "{:<11} {:>8.1} {:>9.0} {:>9} {:>8.0} {:>8}",
            r.label,
            r.wall_secs,
            r.peak_rss_mib,
            records,
            records as f64 / r.wall_secs.max(1e-9),
            deleted
        );
        for s in stages {
            print!(" {:>10.1}", r.report.stages.get(s).copied().unwrap_or(0) as f64 / 1000.0);
        }
        println!();
    }
    println!("customers: {}; index on disk: {index_mib:.0} MiB", runs.last().map(|r| r.report.customers).unwrap_or(0));
    if repeat > 1 {
        println!("\n{:<11} {:>4} {:>9} {:>15}", "run", "runs", "median s", "range s");
        for k in &summary.kinds {
            println!("{:<11} {:>4} {:>9.2} {:>7.2} - {:<6.2}", k.label, k.runs, k.median_secs, k.min_secs, k.max_secs);
        }
    }
    for (label, share) in [("1% changed", summary.changed_share), ("1% deleted", summary.deleted_share)] {
        if let Some(share) = share {
            println!("{label}: {:.1}% of the full run{}", share * 100.0, if repeat > 1 { " (medians)" } else { "" });
        }
    }
    Ok(())
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn bench_extract(dir: &std::path::Path, recall: bool, json: bool) -> Result<()> {
    anyhow::ensure!(dir.is_dir(), "{} is not a folder: give the folder to read", dir.display());
    let exe = std::env::current_exe().context("finding this program to start extraction workers")?;
    let limits = dossier_connectors::Limits::default();
    let r = dossier::bench::extract_bench(dir, exe, &limits, recall, std::io::stderr().is_terminal());
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{:<9} {:>6} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "format", "files", "failed", "MB", "records", "pages", "msgs", "rows", "seconds", "pages/s", "msgs/s", "MB/s"
    );
    for (fmt, s) in &r.formats {
        let per = |n: usize| if s.seconds > 0.0 { n as f64 / s.seconds } else { 0.0 };
        println!(
            "{fmt:<9} {:>6} {:>6} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>9.2} {:>9.1} {:>9.1} {:>8.2}",
            s.files,
            s.failed,
            s.bytes as f64 / 1e6,
            s.records,
            s.pages,
            s.messages,
            s.rows,
            s.seconds,
            per(s.pages),
            per(s.messages),
            s.bytes as f64 / 1e6 / s.seconds.max(1e-9)
        );
    }
    println!("extraction worker peak RSS: {:.0} MiB", r.worker_peak_rss_mib);
    if let Some(p) = &r.pdf_recall {
        println!(
            "PDF word recall against pdftotext: {:.4} ({} of {} words in {} PDFs; {} not compared)",
            p.recall,
            p.found,
            p.words,
            p.files,
            p.skipped.len()
        );
        let mut worst = p.per_file.clone();
        worst.sort_by(|a, b| a.2.total_cmp(&b.2));
        for (f, n, rc) in worst.iter().take(10) {
            println!("  {rc:.4}  {n:>7} words  {f}");
        }
    }
    Ok(())
}

fn bench_search(dir: &std::path::Path, clients: usize, seconds: u64, role: Option<String>, json: bool) -> Result<()> {
    use dossier::bench;
    let cfg = Config::load(&dir.join("dossier.toml"))?;
    let queries = dossier::eval::read_queries(dir)?;
    let engine = Engine::open(&cfg)?;
    let customers = engine.customers()?.len();
    eprintln!("timing {} queries on {customers} customers (one warm-up pass first)", queries.len());
    let latency = bench::search_latency(&engine, &queries)?;
    let (_, peak_before_load) = bench::memory_mib();
    let http = if clients > 0 {
        // The load runs as a support rep would, through that role's view and masking.
        let role = match role {
            Some(r) if cfg.roles.contains_key(&r) => r,
            Some(r) => bail!("no role {r:?} in {}; roles: {:?}", dir.join("dossier.toml").display(), cfg.roles.keys()),
            None if cfg.roles.contains_key("support") => "support".to_string(),
            None => {
                cfg.roles.keys().next().cloned().context("the config defines no [roles]; the HTTP load needs one")?
            }
        };
        eprintln!("HTTP load: {clients} clients for {seconds} s, as role `{role}`");
        let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        let d = std::time::Duration::from_secs(seconds);
        Some(rt.block_on(bench::http_load(&cfg, engine, &role, &queries, clients, d))?)
    } else {
        None
    };
    if json {
        let out = serde_json::json!({ "customers": customers, "latency": latency, "http": http,
            "peak_rss_mib_before_load": peak_before_load });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("server-side latency, {customers} customers (ms):");
    println!("  {:<10} {:>6} {:>8} {:>8} {:>8} {:>8}", "kind", "n", "p50", "p95", "p99", "max");
    for (kind, l) in latency.by_kind.iter().chain(std::iter::once((&"all".to_string(), &latency.all))) {
        println!("  {kind:<10} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2}", l.n, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms);
    }
    if let Some(h) = http {
        println!(
            "HTTP as `{}`: {} clients, {:.1} s: {} searches ({} errors), {:.0}/s; client-side p50 {:.2} ms p99 {:.2} ms; \
             process RSS {:.0} MiB (peak {:.0} MiB)",
            h.role,
            h.clients,
            h.seconds,
            h.ok,
            h.errors,
            h.per_second,
            h.latency.p50_ms,
            h.latency.p99_ms,
            h.rss_mib,
            h.peak_rss_mib
        );
    }
    Ok(())
}

/// Whether a command's main work is answering searches (see the purge delay in `main`).
fn serves(c: &Command) -> bool {
    matches!(c, Command::Serve { .. } | Command::Bench { command: BenchCommand::Search { .. } })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // mimalloc 3 keeps freed pages a second (whole arenas ten) before giving them back, so a
    // run that frees one stage's working set and builds the next held both: 100 ms returns
    // them between stages at no measured cost in time (BENCHMARKS.md, resolution at 1M records).
    // A server's requests free and take the same few megabytes again and again: there each
    // purge meant the kernel zeroing fresh pages for the next request (8% of a search load's
    // cycles), so serving keeps mimalloc's own delay. An operator's MIMALLOC_PURGE_DELAY wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() && !serves(&cli.command) {
        // SAFETY: sets a plain option before any thread starts; mimalloc reads it on each purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100) };
    }
    // Transparent huge pages: mimalloc asks for them, each first touch of one zeroes 2 MiB and
    // mimalloc purges 2 MiB at a time. On the 2-core VMs measured, a 1% run spent most of its
    // system time zeroing them: 4.1-4.7 -> 3.3-4.2 s without them (six alternations), a full run
    // 64 -> 60-63 s (BENCHMARKS.md). An operator's MIMALLOC_ALLOW_THP wins.
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: sets a plain option before any thread starts; mimalloc reads it when it maps memory.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0) };
        // Mappings made before this line too (mimalloc's first arena), and worker processes.
        // SAFETY: prctl with integer arguments only changes this process's use of huge pages.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    init_logging(cli.log_json, cli.verbose);
    match cli.command {
        Command::Demo { dir, customers, no_serve, listen } => {
            if !dossier::demo::exists(&dir) {
                eprintln!("generating the demo company ({customers} customers) in {}", dir.display());
                dossier::demo::generate(&dir, customers)
                    .with_context(|| format!("generating the demo in {}", dir.display()))?;
            }
            let cfg = Config::load(&dir.join("dossier.toml"))?;
            // The demo's company is generated: an index of it written by another version of
            // dossier (another schema) is rebuilt rather than refused. The run finds that out
            // when it opens the index, before it has touched anything.
            let report = match index(&cfg, false, Vec::new()) {
                Err(e) if matches!(e.downcast_ref(), Some(RunError::Index(IndexError::Schema(_)))) => {
                    eprintln!("the demo's index was written by another version of dossier; rebuilding it");
                    index(&cfg, true, Vec::new())?
                }
                r => r?,
            };
            print_report(&report);
            let keys = demo_keys(&cfg, &dir)?;
            if !no_serve {
                if let Some((_, key)) = keys.iter().find(|(role, _)| role == "admin") {
                    eprintln!("\nadmin key for the web page and the API: {key}");
                }
                eprintln!("keys of every demo role: {}", dir.join(DEMO_KEYS).display());
                serve(&cfg, listen)?;
            }
        }
        Command::Index { full, sources, json } => {
            let cfg = Config::load(&cli.config)?;
            let report = index(&cfg, full, sources)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
        }
        Command::Search { query, json, page, per_page, role } => {
            let cfg = Config::load(&cli.config)?;
            if per_page == 0 || per_page > 1000 {
                bail!("--per-page must be between 1 and 1000");
            }
            let engine = Engine::open(&cfg)?;
            let viewer = match &role {
                None => Viewer::operator(),
                Some(r) => Viewer::for_role(&cfg, &Viewer::operator().who, r).with_context(|| {
                    format!("no role {r:?} in {}; roles: {:?}", cli.config.display(), cfg.roles.keys())
                })?,
            };
            let r = engine.search_as(&viewer, &query, page, per_page)?;
            audit_cli(&engine, &cfg, &viewer, "search", r.dossiers.iter().map(|d| d.id.clone()).collect(), &query)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{} customers for {query:?}", r.total);
                for n in &r.notices {
                    println!("note: {n}");
                }
                for (i, d) in r.dossiers.iter().enumerate() {
                    let p = &d.profile;
                    println!(
                        "\n{}. {} [{}] score {}",
                        page * per_page + i + 1,
                        p.display_name,
                        d.id.as_deref().unwrap_or("-"),
                        d.score
                    );
                    let facts: Vec<&str> = p
                        .emails
                        .iter()
                        .chain(&p.phones)
                        .chain(&p.companies)
                        .chain(&p.cities)
                        .map(|s| s.as_str())
                        .collect();
                    println!("   {}", facts.join(" · "));
                    for f in &d.flags {
                        println!("   ⚑ {} — {}", f.label, f.detail);
                    }
                    for w in d.why.iter().take(3) {
                        println!("   matched {} {:?} → {}", w.kind, w.query, w.matched);
                    }
                    for g in &d.groups {
                        println!("   {} / {}: {} records", g.source, g.kind, g.records.len());
                    }
                }
                if !r.unlinked.is_empty() {
                    println!("\nrecords linked to no customer:");
                    for h in &r.unlinked {
                        println!("   {} — {}", h.key, h.title);
                    }
                }
            }
        }
        Command::Bench { command: BenchCommand::Read { source } } => {
            let cfg = Config::load(&cli.config)?;
            let spec = cfg
                .sources
                .iter()
                .find(|s| s.name == source)
                .with_context(|| format!("no source named {source:?} in {}", cli.config.display()))?;
            let mut c = dossier_connectors::connector_for(spec, &cfg.base)?;
            let t = std::time::Instant::now();
            let (mut items, mut bytes) = (0u64, 0u64);
            let report = c.scan(&mut |item| {
                items += 1;
                bytes += item.size;
                true
            })?;
            let secs = t.elapsed().as_secs_f64().max(1e-9);
            println!(
                "{source}: {items} items, {:.1} MB in {secs:.2} s: {:.0} items/s, {:.1} MB/s; peak memory {:.0} MiB; complete: {}, errors: {}, reconnects: {}",
                bytes as f64 / 1e6,
                items as f64 / secs,
                bytes as f64 / 1e6 / secs,
                dossier::bench::memory_mib().1,
                report.complete,
                report.errors.len(),
                report.reconnects
            );
        }
        Command::Bench { command: BenchCommand::Resolve { records, json } } => {
            eprintln!("generating {records} records and resolving them");
            let r = dossier::bench::resolve_bench(records)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "records {}  people {}  mentions {:.1} s  resolution {:.1} s  candidate pairs {}  customers {}  peak {:.0} MiB",
                    r.records, r.people, r.mentions_secs, r.resolution_secs, r.pairs, r.customers, r.peak_rss_mib
                );
                println!(
                    "pairwise precision {:.4}  recall {:.4}  F1 {:.4}  ({})",
                    r.precision,
                    r.recall,
                    r.f1,
                    if r.estimated { "weights estimated from the data" } else { "prior weights" }
                );
                println!(
                    "incremental, 1% changed and 1% added: {:.1} s, {} of {} observations resolved again",
                    r.incremental_secs, r.incremental_resolved, r.observations
                );
            }
        }
        Command::Bench { command: BenchCommand::Index { dir, customers, repeat, json } } => {
            bench_index(&dir, customers, repeat, json)?;
        }
        Command::Bench { command: BenchCommand::Plot { results, out } } => {
            let mut points = Vec::new();
            for path in &results {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let json: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                    format!("{} is not JSON; write it with `dossier bench index --json`", path.display())
                })?;
                points.push(
                    dossier::plot::GrowthPoint::from_json(&json)
                        .with_context(|| format!("reading {}", path.display()))?,
                );
            }
            std::fs::write(&out, dossier::plot::growth_svg(&points)?)
                .with_context(|| format!("writing {}", out.display()))?;
            for p in &points {
                println!(
                    "{:>9.0} customers: full {:.1} s, 1% changed {:.1} s, nothing changed {:.1} s, peak {:.0} MiB, index {:.0} MiB",
                    p.customers, p.full_secs, p.changed_secs, p.unchanged_secs, p.peak_mib, p.index_mib
                );
            }
            println!("wrote {}", out.display());
        }
        Command::Bench { command: BenchCommand::Extract { dir, recall, json } } => {
            bench_extract(&dir, recall, json)?;
        }
        Command::Bench { command: BenchCommand::Search { dir, clients, seconds, role, json } } => {
            bench_search(&dir, clients, seconds, role, json)?;
        }
        Command::Eval { truth: Some(truth), key_field, json, .. } => {
            let cfg = Config::load(&cli.config)?;
            let engine = Engine::open(&cfg)?;
            let r = dossier::eval::evaluate_truth(&engine, &truth, &key_field)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "records {} of {} found; {} customers; true pairs {}, predicted {}, right {}",
                    r.found, r.truth_records, r.customers, r.true_pairs, r.predicted_pairs, r.right_pairs
                );
                println!("pairwise precision {:.4}  recall {:.4}  F1 {:.4}", r.precision, r.recall, r.f1);
            }
        }
        Command::Eval { dir, json, .. } => {
            let cfg = Config::load(&dir.join("dossier.toml"))?;
            let engine = Engine::open(&cfg)?;
            let r = dossier::eval::evaluate(&engine, &dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("records in ground truth: {}", r.records);
                println!(
                    "records grouped into customers: pairwise precision {:.4}  recall {:.4}  F1 {:.4}",
                    r.pair_precision, r.pair_recall, r.pair_f1
                );
                println!(
                    "record→customer links:          precision {:.4}  recall {:.4}",
                    r.link_precision, r.link_recall
                );
                for (kind, s) in &r.queries {
                    println!(
                        "queries {kind:<9} n={:<5} hit@1 {:.3}  MRR {:.3}  (ties {})",
                        s.n, s.hit_at_1, s.mrr, s.ties
                    );
                }
            }
        }
        Command::ExtractWorker { memory_mib } => {
            dossier::extraction::worker_main(memory_mib)?;
        }
        Command::Serve { listen } => {
            let cfg = Config::load(&cli.config)?;
            serve(&cfg, listen)?;
        }
        Command::Check { json } => {
            let cfg = Config::load(&cli.config)?;
            let r = dossier::check::check(&cfg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} records and {} customers in the state store; index at run {}, store at run {}",
                    r.records,
                    r.customers,
                    r.index_run.map_or("none".into(), |n| n.to_string()),
                    r.state_run.map_or("none".into(), |n| n.to_string())
                );
                for (what, f) in [
                    ("indexed more than once", &r.duplicated),
                    ("stored but not indexed", &r.missing),
                    ("indexed but unknown to the store", &r.unknown),
                    ("customers without a document", &r.customers_missing),
                ] {
                    if f.count > 0 {
                        println!("{} {what}: {}", f.count, f.first.join(", "));
                    }
                }
            }
            if !r.consistent() {
                if r.index_ahead() {
                    bail!(
                        "the index holds run {} that the state store never recorded (the run was killed between its two commits); the next `dossier index` reconciles them",
                        r.index_run.unwrap_or_default()
                    );
                }
                bail!("the index and the state store disagree; `dossier index --full` rebuilds the index");
            }
            if !json {
                println!("consistent");
            }
        }
        Command::Status { runs, json } => {
            let cfg = Config::load(&cli.config)?;
            let engine = Engine::open(&cfg)?;
            let reports = engine.with_state(|s| s.runs(runs, 200))??;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else if reports.is_empty() {
                println!("no runs yet: run `dossier index`");
            } else {
                for r in &reports {
                    print_report(r);
                }
            }
        }
        Command::Keys { command: KeysCommand::Hash } => {
            // Hashing needs no config: the hash goes into one.
            let mut key = String::new();
            std::io::stdin().read_line(&mut key).context("reading the key from standard input")?;
            if key.trim().is_empty() {
                bail!("give the key on standard input: `echo KEY | dossier keys hash`");
            }
            println!("{}", access::hash_key(&key));
        }
        Command::Keys { command } => {
            let cfg = Config::load(&cli.config)?;
            keys(&cfg, command)?;
        }
        Command::Audit { who, customer, action, since, until, limit, json } => {
            let cfg = Config::load(&cli.config)?;
            let store = dossier::state::State::open(&pipeline::paths(&cfg).1)?;
            let f = AuditFilter { who, customer, action, since, until, limit };
            let entries = store.audit_entries(&f)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("no audit entries match");
            } else {
                for e in &entries {
                    let what = e.customer.as_deref().or(e.record.as_deref()).unwrap_or("-");
                    let q = e.query.as_deref().map(|q| format!(" q={q:?}")).unwrap_or_default();
                    let d = e.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                    println!("{}  {} [{}]  {} {what}{q}{d}", e.at, e.who, e.role.as_deref().unwrap_or("-"), e.action);
                }
            }
        }
        Command::Customers { command } => {
            let cfg = Config::load(&cli.config)?;
            let engine = Engine::open(&cfg)?;
            match command {
                CustomersCommand::Export => {
                    use std::io::Write;
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    for c in engine.customers()? {
                        let line =
                            serde_json::json!({ "id": c.id, "keys": c.keys(), "profile": c.profile, "links": c.links });
                        writeln!(out, "{line}")?;
                    }
                }
                CustomersCommand::ExportSubject { id, out } => {
                    let Some(x) = engine.export_subject(&id)? else {
                        bail!("no customer {id}: find its id with `dossier search`")
                    };
                    let v = Viewer::operator();
                    let mut store = dossier::state::State::open(&pipeline::paths(&cfg).1)?;
                    store.audit(&[AuditEntry {
                        who: v.who.clone(),
                        role: Some(v.role.clone()),
                        action: "export-subject".into(),
                        customer: Some(x.customer.clone()),
                        detail: Some(format!("{} records", x.records.len())),
                        ..Default::default()
                    }])?;
                    let text = serde_json::to_string_pretty(&x)?;
                    match out {
                        Some(p) => {
                            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
                            eprintln!("wrote {} records of {} to {}", x.records.len(), x.customer, p.display());
                        }
                        None => println!("{text}"),
                    }
                }
                CustomersCommand::Explain { id } => {
                    let Some(c) = engine.customer_links(&id)? else {
                        bail!("no customer {id}: list them with `dossier customers export`")
                    };
                    if c.id != id {
                        println!("{id} was merged into {}", c.id);
                    }
                    println!("{} [{}]: {} records", c.profile.display_name, c.id, c.links.len());
                    for l in &c.links {
                        println!("  {} ({})", l.key, l.role);
                        if l.evidence.is_empty() && l.role == "member" {
                            println!("      founding record of this customer");
                        }
                        for e in &l.evidence {
                            println!("      {} {:?} with {} ({:+.1})", e.kind, e.value, e.other, e.weight);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
