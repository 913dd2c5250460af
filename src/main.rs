//! The `dossier` command line.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dossier::config::Config;
use dossier::pipeline::{self, RunOptions};
use dossier::query::Engine;
use dossier::state::RunReport;

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
    },
    /// Serve the JSON API and the search page.
    Serve {
        /// Address to listen on (default from the config, 127.0.0.1:7860).
        #[arg(long)]
        listen: Option<String>,
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
    /// Measure resolution and search quality on a demo company's ground truth.
    Eval {
        /// Folder of the demo company (holds truth.jsonl and queries.jsonl).
        #[arg(long, default_value = "demo-company")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
}

#[derive(Subcommand)]
enum CustomersCommand {
    /// One JSON object per customer per line: id, record keys, profile, evidence.
    Export,
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
            "  {:<12} {:>6} items  {:>5} new {:>5} changed {:>6} unchanged {:>4} deleted {:>4} failed  {:>7} records{}",
            s.source,
            s.seen,
            s.new,
            s.changed,
            s.unchanged,
            s.deleted,
            s.failed,
            s.records,
            s.error.as_deref().map(|e| format!("  ERROR: {e}")).unwrap_or_default()
        );
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
    let report = pipeline::run(cfg, &RunOptions { full, sources, progress, isolate })?;
    Ok(report)
}

fn serve(cfg: &Config, listen: Option<String>) -> Result<()> {
    let engine = Engine::open(cfg)?;
    let listen = listen.unwrap_or_else(|| cfg.server.listen.clone());
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(dossier::server::serve(engine, &listen)).with_context(|| format!("serving on {listen}"))?;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_json, cli.verbose);
    match cli.command {
        Command::Demo { dir, customers, no_serve, listen } => {
            if !dossier::demo::exists(&dir) {
                eprintln!("generating the demo company ({customers} customers) in {}", dir.display());
                dossier::demo::generate(&dir, customers)
                    .with_context(|| format!("generating the demo in {}", dir.display()))?;
            }
            let cfg = Config::load(&dir.join("dossier.toml"))?;
            let report = index(&cfg, false, Vec::new())?;
            print_report(&report);
            if !no_serve {
                serve(&cfg, listen)?;
            }
        }
        Command::Index { full, sources } => {
            let cfg = Config::load(&cli.config)?;
            let report = index(&cfg, full, sources)?;
            print_report(&report);
        }
        Command::Search { query, json, page, per_page } => {
            let cfg = Config::load(&cli.config)?;
            if per_page == 0 || per_page > 1000 {
                bail!("--per-page must be between 1 and 1000");
            }
            let engine = Engine::open(&cfg)?;
            let r = engine.search(&query, page, per_page)?;
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
                        .map(String::as_str)
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
        Command::Eval { dir, json } => {
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
                    println!("queries {kind:<9} n={:<5} hit@1 {:.3}  MRR {:.3}", s.n, s.hit_at_1, s.mrr);
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
