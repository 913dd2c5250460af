//! Search benchmarks on a demo company: server-side latency by query kind, and
//! HTTP throughput from concurrent keep-alive clients on loopback. These print
//! figures for BENCHMARKS.md; nothing here asserts a speed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::config::Config;
use crate::eval::DemoQuery;
use crate::query::{Engine, QueryError};
use crate::server::{AppState, router};

/// Errors of the HTTP load benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The loopback socket failed.
    #[error("benchmark socket: {0}")]
    Io(#[from] std::io::Error),
    /// The engine or state store failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// No key could be made for the load.
    #[error("benchmark key: {0}")]
    Key(String),
}

/// Latency percentiles of a set of timed calls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Calls timed.
    pub n: usize,
    /// Mean, in milliseconds.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of `samples` (nearest rank).
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |p: f64| ms(samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]);
        Latency {
            n: samples.len(),
            mean_ms: samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64,
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: ms(samples[samples.len() - 1]),
        }
    }
}

/// Server-side search latency: each query answered in process (ranking, dossier building and
/// JSON encoding, without HTTP), after one warm-up pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SearchLatency {
    /// Over every query.
    pub all: Latency,
    /// By query kind.
    pub by_kind: BTreeMap<String, Latency>,
}

/// Times every query of `queries` on `engine`.
pub fn search_latency(engine: &Engine, queries: &[DemoQuery]) -> Result<SearchLatency, QueryError> {
    for q in queries {
        engine.search(&q.q, 0, 10)?;
    }
    let mut all = Vec::with_capacity(queries.len());
    let mut by_kind: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for q in queries {
        let t = Instant::now();
        let r = engine.search(&q.q, 0, 10)?;
        // The server sends JSON; encoding it is part of the work.
        let _ = serde_json::to_vec(&r);
        let d = t.elapsed();
        all.push(d);
        by_kind.entry(q.kind.clone()).or_default().push(d);
    }
    Ok(SearchLatency {
        all: Latency::of(all),
        by_kind: by_kind.into_iter().map(|(k, v)| (k, Latency::of(v))).collect(),
    })
}

/// What the HTTP load generator saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpLoad {
    /// The role the load's API key has (its view and masking are part of the work).
    pub role: String,
    /// Concurrent keep-alive clients.
    pub clients: usize,
    /// Measured wall time, seconds.
    pub seconds: f64,
    /// Searches answered with 200.
    pub ok: u64,
    /// Searches that failed (connection errors or other statuses).
    pub errors: u64,
    /// Successful searches per second.
    pub per_second: f64,
    /// Client-side latency under this load (queueing included).
    pub latency: Latency,
    /// Resident memory of the process (server and clients) at the end, MiB.
    pub rss_mib: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
}

/// Resident and peak resident memory of this process, MiB (Linux; zero elsewhere).
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Serves `engine` on a loopback port and sends `queries` round-robin from `clients`
/// concurrent keep-alive connections for `duration`, with a key of `role` made for the run
/// (every search is authenticated and audited, as in production).
pub async fn http_load(
    cfg: &Config,
    engine: Engine,
    role: &str,
    queries: &[DemoQuery],
    clients: usize,
    duration: Duration,
) -> Result<HttpLoad, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut state = AppState::new(cfg, engine)?;
    let key = crate::access::new_key().map_err(|e| BenchError::Key(e.to_string()))?;
    state.auth.allow("bench", &key, role);
    let auth: axum::http::HeaderValue =
        format!("Bearer {key}").parse().map_err(|_| BenchError::Key("not a header value".into()))?;
    let app = router(Arc::new(state));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let uris: Arc<Vec<axum::http::Uri>> = Arc::new(
        queries
            .iter()
            .filter_map(|q| {
                let enc = percent_encoding::utf8_percent_encode(&q.q, percent_encoding::NON_ALPHANUMERIC);
                format!("http://{addr}/api/search?q={enc}&per_page=10").parse().ok()
            })
            .collect(),
    );
    if uris.is_empty() {
        server.abort();
        return Ok(HttpLoad::default());
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let uris = uris.clone();
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            // One pooled client per task: one keep-alive connection each.
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            let mut i = c * 7919;
            while Instant::now() < deadline {
                let uri = uris[i % uris.len()].clone();
                i += 1;
                let t = Instant::now();
                let mut req = axum::http::Request::new(Empty::<bytes::Bytes>::new());
                *req.uri_mut() = uri;
                req.headers_mut().insert(axum::http::header::AUTHORIZATION, auth.clone());
                let answered = match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        resp.into_body().collect().await.is_ok() && ok
                    }
                    Err(_) => false,
                };
                if answered {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0u64);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            errors += e;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    server.abort();
    let (rss, peak) = memory_mib();
    Ok(HttpLoad {
        role: role.to_string(),
        clients,
        seconds,
        ok: lat.len() as u64,
        errors,
        per_second: lat.len() as f64 / seconds.max(1e-9),
        latency: Latency::of(lat),
        rss_mib: rss,
        peak_rss_mib: peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Latency::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!((l.p50_ms.round(), l.p95_ms.round(), l.p99_ms.round(), l.max_ms.round()), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Latency::of(Vec::new()).n, 0);
    }
}

/// Extraction figures of one file format.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FormatThroughput {
    /// Files of this format.
    pub files: usize,
    /// Files that ended as an error entry.
    pub failed: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Records extracted.
    pub records: usize,
    /// PDF pages among them.
    pub pages: usize,
    /// Mail messages among them.
    pub messages: usize,
    /// Sheet, CSV and table rows among them.
    pub rows: usize,
    /// Wall time spent extracting them, seconds.
    pub seconds: f64,
}

/// Word recall of dossier's PDF text against `pdftotext` (poppler).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PdfRecall {
    /// PDFs compared (pdftotext found at least 20 words and dossier read the file).
    pub files: usize,
    /// Words pdftotext found in them.
    pub words: usize,
    /// Of those, words dossier found too (as a multiset).
    pub found: usize,
    /// `found / words`.
    pub recall: f64,
    /// Per file: path, pdftotext words, recall.
    pub per_file: Vec<(String, usize, f64)>,
    /// PDFs not compared, with why.
    pub skipped: Vec<(String, String)>,
}

/// What `dossier bench extract` measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExtractBench {
    /// By format (`pdf`, `workbook`, `csv`, `mbox`, `eml`, `json`, `text`).
    pub formats: BTreeMap<String, FormatThroughput>,
    /// Largest resident memory of an extraction worker, MiB.
    pub worker_peak_rss_mib: f64,
    /// PDF word recall, when asked for and pdftotext is installed.
    pub pdf_recall: Option<PdfRecall>,
}

/// Lower-cased words of two characters or more, counted.
fn words(text: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 2) {
        *out.entry(w.to_lowercase()).or_insert(0) += 1;
    }
    out
}

/// Reads a child's pipe to its end on a thread of its own, so the child never blocks on a full
/// pipe while we wait for it.
fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// `pdftotext`'s text of a PDF, or why there is none (missing tool, failure, 30 s timeout).
fn pdftotext(path: &Path) -> Result<String, String> {
    let mut child = std::process::Command::new("pdftotext")
        .args(["-q", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("pdftotext: {e} (install poppler-utils)"))?;
    let stdout = child.stdout.take().ok_or("pdftotext: no output")?;
    let reader = read_all(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("pdftotext took longer than 30 s".into());
            }
        }
    }
    reader.join().map_err(|_| "pdftotext output unreadable".to_string())
}

/// Extracts every file under `dir` (hidden files skipped) one at a time through an isolated
/// worker of `exe`, timing each format; with `recall`, compares PDF text with pdftotext.
pub fn extract_bench(
    dir: &Path,
    exe: std::path::PathBuf,
    limits: &dossier_connectors::Limits,
    recall: bool,
    progress: bool,
) -> ExtractBench {
    use dossier_schema::RecordKind;
    let spec = dossier_connectors::SourceSpec::files("bench", &dir.display().to_string());
    let x = dossier_connectors::Extractor::new(&spec);
    let pool = crate::extraction::Isolated::new(exe, 1, limits.memory_mib);
    let timeout = Duration::from_secs(limits.timeout_secs);
    let files: Vec<walkdir::DirEntry> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .collect();
    let bar = if progress { indicatif::ProgressBar::new(files.len() as u64) } else { indicatif::ProgressBar::hidden() };
    let mut out = ExtractBench::default();
    let mut rec = recall.then(PdfRecall::default);
    for e in files {
        bar.inc(1);
        let path = e.path();
        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
        let mut head = vec![0u8; 1024];
        let n = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
        head.truncate(n);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(format) = dossier_connectors::extract::sniff(&name, &head) else { continue };
        let fmt = format!("{format:?}").to_lowercase();
        let locator = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let t = Instant::now();
        let result = pool.extract(&x, &locator, path, None, timeout);
        let secs = t.elapsed().as_secs_f64();
        let s = out.formats.entry(fmt).or_default();
        s.files += 1;
        s.bytes += size;
        s.seconds += secs;
        let records = match result {
            Ok(ex) => ex.records,
            Err(why) => {
                s.failed += 1;
                if let Some(r) = rec.as_mut().filter(|_| format == dossier_connectors::extract::Format::Pdf) {
                    r.skipped.push((locator.clone(), why));
                }
                continue;
            }
        };
        s.records += records.len();
        s.pages += records.iter().filter(|r| r.kind == RecordKind::Page).count();
        s.messages += records.iter().filter(|r| r.kind == RecordKind::Email).count();
        s.rows += records.iter().filter(|r| matches!(r.kind, RecordKind::Row | RecordKind::SheetRow)).count();
        if let Some(r) = rec.as_mut().filter(|_| format == dossier_connectors::extract::Format::Pdf) {
            let ours: String = records
                .iter()
                .filter(|r| r.kind == RecordKind::Page)
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            match pdftotext(path) {
                Err(why) => r.skipped.push((locator, why)),
                Ok(theirs) => {
                    let (want, have) = (words(&theirs), words(&ours));
                    let total: usize = want.values().sum();
                    if total < 20 {
                        r.skipped.push((locator, format!("pdftotext finds {total} words (no text layer)")));
                        continue;
                    }
                    let found: usize = want.iter().map(|(w, n)| (*n).min(have.get(w).copied().unwrap_or(0))).sum();
                    r.files += 1;
                    r.words += total;
                    r.found += found;
                    r.per_file.push((locator, total, found as f64 / total as f64));
                }
            }
        }
    }
    bar.finish_and_clear();
    drop(pool);
    // The workers have exited (their input closed) and been waited for: their peak is the
    // largest of the children's.
    out.worker_peak_rss_mib = children_peak_rss_mib();
    if let Some(r) = rec.as_mut() {
        r.recall = if r.words > 0 { r.found as f64 / r.words as f64 } else { 0.0 };
    }
    out.pdf_recall = rec;
    out
}

/// Largest resident memory of any waited-for child process, MiB (Linux).
fn children_peak_rss_mib() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } == 0;
    if ok { usage.ru_maxrss as f64 / 1024.0 } else { 0.0 }
}

/// One `dossier index` run measured from outside, in its own process.
#[derive(Debug, Clone, Serialize)]
pub struct IndexRun {
    /// `full`, `no change`, `1% changed`, `1% deleted`.
    pub label: String,
    /// Wall time of the process, seconds.
    pub wall_secs: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
    /// What the run reported (counts per source, stage times).
    pub report: crate::state::RunReport,
}

/// The runs of one kind in `dossier bench index` (its repeats), by wall time.
#[derive(Debug, Clone, Serialize)]
pub struct RunKind {
    /// `full`, `no change`, `1% changed`, `1% deleted`.
    pub label: String,
    /// How many ran.
    pub runs: usize,
    /// Median wall time, seconds (the mean of the middle two of an even count).
    pub median_secs: f64,
    /// Fastest run, seconds.
    pub min_secs: f64,
    /// Slowest run, seconds.
    pub max_secs: f64,
}

/// What `dossier bench index` sums up: each kind's median and range, and the 1% runs' share of
/// the full run, by medians.
#[derive(Debug, Clone, Serialize)]
pub struct IndexSummary {
    /// One entry a kind, in the order they first ran.
    pub kinds: Vec<RunKind>,
    /// Median 1% changed run over median full run.
    pub changed_share: Option<f64>,
    /// Median 1% deleted run over median full run.
    pub deleted_share: Option<f64>,
}

impl IndexSummary {
    /// Sums up `runs` by label.
    pub fn of(runs: &[IndexRun]) -> IndexSummary {
        let mut kinds: Vec<RunKind> = Vec::new();
        for label in runs.iter().map(|r| r.label.as_str()) {
            if kinds.iter().any(|k| k.label == label) {
                continue;
            }
            let mut secs: Vec<f64> = runs.iter().filter(|r| r.label == label).map(|r| r.wall_secs).collect();
            secs.sort_by(f64::total_cmp);
            let n = secs.len();
            let median = if n % 2 == 1 { secs[n / 2] } else { (secs[n / 2 - 1] + secs[n / 2]) / 2.0 };
            kinds.push(RunKind {
                label: label.to_string(),
                runs: n,
                median_secs: median,
                min_secs: secs[0],
                max_secs: secs[n - 1],
            });
        }
        let median = |label: &str| kinds.iter().find(|k| k.label == label).map(|k| k.median_secs);
        let share = |label: &str| Some(median(label)? / median("full").filter(|&f| f > 0.0)?);
        let (changed_share, deleted_share) = (share("1% changed"), share("1% deleted"));
        IndexSummary { kinds, changed_share, deleted_share }
    }
}

/// Errors of `dossier bench index`.
#[derive(Debug, thiserror::Error)]
pub enum IndexBenchError {
    /// The index process could not be started or waited for.
    #[error("running `dossier index`: {0}")]
    Io(#[from] std::io::Error),
    /// It ran but did not complete.
    #[error("`dossier index` failed ({status}): {stderr}")]
    Failed {
        /// Exit status.
        status: String,
        /// Its last error output.
        stderr: String,
    },
    /// Its report was not JSON.
    #[error("reading the run report: {0}")]
    Report(#[from] serde_json::Error),
    /// Changing the demo company's CRM failed.
    #[error("changing the demo CRM: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Runs `exe index --json` (with `--full` when asked) on `config` in a child process and
/// measures its wall time and peak memory.
pub fn index_run(exe: &Path, config: &Path, full: bool, label: &str) -> Result<IndexRun, IndexBenchError> {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("index").arg("--json").arg("--config").arg(config);
    if full {
        cmd.arg("--full");
    }
    let t = Instant::now();
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
    let out = read_all(child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?);
    let err = read_all(child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?);
    // wait4 rather than Child::wait: it also returns this child's own peak memory.
    let mut status = 0;
    // SAFETY: rusage is plain integers, valid when zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: wait4 writes only into the two locals passed; the pid is our own unreaped child.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_secs = t.elapsed().as_secs_f64();
    if rc < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let tail: String = err.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        return Err(IndexBenchError::Failed { status: format!("wait status {status}"), stderr: tail });
    }
    Ok(IndexRun {
        label: label.to_string(),
        wall_secs,
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        report: serde_json::from_str(&out)?,
    })
}

/// Changes or deletes about `per_mille`/1000 of the demo company's CRM customer rows and
/// contract PDFs (every k-th, from `offset`): customer rows get a new street and change time,
/// PDFs a new modification time. The mailbox, workbook and call log are single files and stay.
pub fn alter_demo(dir: &Path, per_mille: u32, offset: u32, delete: bool) -> Result<(usize, usize), IndexBenchError> {
    let step = (1000 / per_mille.max(1)).max(1);
    let db = rusqlite::Connection::open(dir.join("crm/crm.sqlite"))?;
    let rows = if delete {
        // Their orders go too (the CRM enforces the foreign key).
        db.execute("DELETE FROM orders WHERE customer_id % ?1 = ?2", rusqlite::params![step, offset % step])?;
        db.execute("DELETE FROM customers WHERE id % ?1 = ?2", rusqlite::params![step, offset % step])?
    } else {
        db.execute(
            "UPDATE customers SET street = street || ' (moved)', updated_at = datetime('now') WHERE id % ?1 = ?2",
            rusqlite::params![step, offset % step],
        )?
    };
    let mut pdfs: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("contracts"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    pdfs.sort();
    let mut files = 0;
    for p in pdfs.iter().skip(offset as usize % step as usize).step_by(step as usize) {
        if delete {
            std::fs::remove_file(p)?;
        } else {
            let f = std::fs::OpenOptions::new().write(true).open(p)?;
            f.set_modified(std::time::SystemTime::now() + Duration::from_secs(1))?;
        }
        files += 1;
    }
    Ok((rows, files))
}

/// One run of the resolution benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ResolveBench {
    /// Records resolved.
    pub records: usize,
    /// People behind them (the truth).
    pub people: usize,
    /// Seconds finding and normalizing the mentions of every record.
    pub mentions_secs: f64,
    /// Seconds of resolution (blocking, comparing, estimating, clustering, profiles, links).
    pub resolution_secs: f64,
    /// Candidate pairs compared.
    pub pairs: usize,
    /// Customers found.
    pub customers: usize,
    /// Pairwise precision against the truth.
    pub precision: f64,
    /// Pairwise recall.
    pub recall: f64,
    /// Pairwise F1.
    pub f1: f64,
    /// Whether the weights were estimated (else the priors).
    pub estimated: bool,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
    /// Seconds of an incremental resolution after 1% of the records changed (one value
    /// dropped) and 1% were added, with the learnt model.
    pub incremental_secs: f64,
    /// Observations the incremental resolution resolved again.
    pub incremental_resolved: usize,
    /// Observations in all.
    pub observations: usize,
}

/// Resolves a synthetic population of `records` rows in this process (run one size per
/// process: peak memory only grows) and scores it against the population's truth.
pub fn resolve_bench(records: usize) -> Result<ResolveBench, crate::config::ConfigError> {
    use rayon::prelude::*;
    let cfg = Config::parse("[index]\npath = \"unused\"\n", "bench", Path::new("."))?;
    let entities = crate::entities::Entities::new(&cfg);
    // The rows are made and read a chunk at a time and only their mentions kept (with each
    // row's person, the truth): the peak is resolution's, not the texts'.
    let t = Instant::now();
    let mut recs: Vec<crate::resolve::RecordEntities> = Vec::with_capacity(records);
    let mut truth: Vec<u32> = Vec::with_capacity(records);
    let mut rows = crate::synth::rows(records, 42).peekable();
    while rows.peek().is_some() {
        let chunk: Vec<(dossier_schema::Record, usize)> = rows.by_ref().take(10_000).collect();
        truth.extend(chunk.iter().map(|(_, p)| *p as u32));
        recs.par_extend(chunk.into_par_iter().map(|(r, _)| crate::resolve::RecordEntities {
            mentions: entities.mentions(&r),
            key: r.key,
            kind: r.kind,
            parent: None,
        }));
    }
    let mentions_secs = t.elapsed().as_secs_f64();
    tracing::debug!("mentions of {} records: memory {:.0} MiB", recs.len(), memory_mib().0);
    let t = Instant::now();
    let res = crate::resolve::resolve(&recs, crate::resolve::Plan::Estimate(&crate::resolve::Weights::default()));
    let resolution_secs = t.elapsed().as_secs_f64();
    let peak_rss_mib = memory_mib().1;
    let (incremental_secs, incremental_resolved) = incremental_bench(&recs, &res, &entities, records);
    // Pairwise scores over the contingency table of (customer, person).
    let truth: HashMap<&str, u32> = recs.iter().map(|r| r.key.as_str()).zip(truth).collect();
    let mut cell: HashMap<(&str, u32), u64> = HashMap::new();
    let mut pred: HashMap<&str, u64> = HashMap::new();
    let mut gold: HashMap<u32, u64> = HashMap::new();
    for c in &res.customers {
        for l in c.links.iter().filter(|l| l.role == "member") {
            if let Some(&p) = truth.get(l.key.as_str()) {
                *cell.entry((c.id.as_str(), p)).or_default() += 1;
                *pred.entry(c.id.as_str()).or_default() += 1;
            }
        }
    }
    for p in truth.values() {
        *gold.entry(*p).or_default() += 1;
    }
    let p = crate::eval::Pairwise::from_sizes(cell.values().copied(), pred.values().copied(), gold.values().copied());
    Ok(ResolveBench {
        records: recs.len(),
        people: gold.len(),
        mentions_secs,
        resolution_secs,
        pairs: res.weights.pairs,
        customers: res.customers.len(),
        precision: p.precision,
        recall: p.recall,
        f1: p.f1,
        estimated: res.weights.estimated,
        peak_rss_mib,
        incremental_secs,
        incremental_resolved,
        observations: res.observations,
    })
}

/// Times an incremental resolution after 1% of `recs` changed and 1% more were added.
fn incremental_bench(
    recs: &[crate::resolve::RecordEntities],
    res: &crate::resolve::Resolution,
    entities: &crate::entities::Entities,
    records: usize,
) -> (f64, usize) {
    use crate::resolve::{Plan, Previous, RecordEntities};
    let Some(model) = &res.learnt else { return (0.0, 0) };
    let mut previous = Previous {
        generic: res.generic.iter().map(|(v, _)| v.clone()).collect(),
        links: crate::resolve::PriorLinks::of(&res.links, &crate::resolve::others_of(&res.customers)),
        ..Default::default()
    };
    // The changed and added records are new; the others are the same ones, borrowed.
    let mut new: Vec<RecordEntities> = Vec::with_capacity(recs.len() / 50);
    for (i, r) in recs.iter().enumerate() {
        if i % 100 == 37 {
            previous.replaced.push(r.clone());
            let mut c = r.clone();
            // One value fewer, as when a silo blanks a column.
            c.mentions.pop();
            previous.fresh.insert(c.key.clone());
            new.push(c);
        }
    }
    for (n, (r, _)) in crate::synth::population(records / 100, 4242).iter().enumerate() {
        let mut e = RecordEntities { key: String::new(), kind: r.kind, parent: None, mentions: entities.mentions(r) };
        e.key = format!("added:{n:08}");
        previous.fresh.insert(e.key.clone());
        new.push(e);
    }
    let mut next: Vec<&RecordEntities> =
        recs.iter().enumerate().filter(|(i, _)| i % 100 != 37).map(|(_, r)| r).chain(&new).collect();
    next.sort_by(|a, b| a.key.cmp(&b.key));
    let t = Instant::now();
    let inc = crate::resolve::resolve(&next, Plan::Incremental(model, &previous));
    (t.elapsed().as_secs_f64(), inc.resolved)
}

#[cfg(test)]
mod resolve_bench_tests {
    #[test]
    fn the_resolution_benchmark_scores_a_small_population() {
        let r = super::resolve_bench(3000).unwrap();
        assert_eq!(r.records, 3000);
        assert!(r.estimated && r.pairs > 0, "{r:?}");
        assert!(r.precision > 0.99 && r.recall > 0.95, "{r:?}");
    }
}

#[cfg(test)]
mod index_summary_tests {
    use super::{IndexRun, IndexSummary};

    fn run(label: &str, wall_secs: f64) -> IndexRun {
        IndexRun { label: label.into(), wall_secs, peak_rss_mib: 0.0, report: Default::default() }
    }

    #[test]
    fn repeats_are_summed_up_by_median_and_range_and_the_shares_by_medians() {
        let runs = [
            run("full", 100.0),
            run("1% changed", 4.0),
            run("1% deleted", 5.0),
            run("full", 80.0),
            run("1% changed", 3.0),
            run("1% deleted", 5.5),
            run("full", 90.0),
            run("1% changed", 9.0),
        ];
        let s = IndexSummary::of(&runs);
        let labels: Vec<&str> = s.kinds.iter().map(|k| k.label.as_str()).collect();
        assert_eq!(labels, ["full", "1% changed", "1% deleted"]);
        let full = &s.kinds[0];
        assert_eq!((full.runs, full.median_secs, full.min_secs, full.max_secs), (3, 90.0, 80.0, 100.0));
        // An even count's median is the mean of its middle two.
        assert_eq!(s.kinds[2].median_secs, 5.25);
        assert_eq!(s.changed_share, Some(4.0 / 90.0));
        assert_eq!(s.deleted_share, Some(5.25 / 90.0));
        // Without a full run there is no share.
        assert_eq!(IndexSummary::of(&runs[1..3]).changed_share, None);
    }
}
