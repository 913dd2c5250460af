//! Source schedules (`every 15m` style intervals or cron expressions with seconds), and the
//! runner that keeps them inside `dossier serve`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use notify_debouncer_mini::notify::{self, RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use crate::config::Config;
use crate::pipeline::RunOptions;

/// When a source is re-indexed.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A fixed interval.
    Every(Duration),
    /// A cron expression.
    Cron(Box<cron::Schedule>),
}

/// Parses a duration written `30s`, `15m`, `2h` or `1d`.
pub fn parse_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| format!("`{t}`: expected a number and a unit, as in `15m`"))?;
    let secs = match unit.trim() {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        u => return Err(format!("`{t}`: unknown unit `{u}`; use s, m, h or d")),
    };
    match secs {
        Some(0) => Err(format!("`{t}`: must be positive")),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Err(format!("`{t}`: too long")),
    }
}

impl Schedule {
    /// Parses `every 30s|15m|2h|1d` or a cron expression such as `0 */15 * * * *`.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("every ") {
            return parse_duration(rest).map(Schedule::Every);
        }
        cron::Schedule::from_str(t).map(|c| Schedule::Cron(Box::new(c))).map_err(|e| {
            format!("`{t}` is neither `every N[smhd]` nor a cron expression (sec min hour day month weekday): {e}")
        })
    }

    /// The next run after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
            Schedule::Cron(c) => c.after(&after).next(),
        }
    }

    /// At most how late a run may start after its time, so that sources on one schedule do
    /// not all hit their silos at the same second: a tenth of the period, at most a minute.
    fn jitter_max(&self, at: DateTime<Utc>) -> Duration {
        let period = self.next_after(at).and_then(|n| (n - at).to_std().ok()).unwrap_or(Duration::from_secs(60));
        (period / 10).min(Duration::from_secs(60))
    }
}

/// A run asked for.
#[derive(Debug, Clone)]
struct Request {
    source: Option<String>,
    full: bool,
    why: &'static str,
}

/// Index runs inside `dossier serve`: each scheduled source on its schedule, and runs asked
/// for over the API, one at a time, with at most one waiting per source.
#[derive(Clone)]
pub struct Runs {
    tx: crossbeam_channel::Sender<Request>,
    waiting: Arc<Mutex<BTreeSet<String>>>,
    /// The file watchers of sources with `watch = true` (they stop when dropped).
    watchers: Arc<Mutex<Vec<Debouncer<RecommendedWatcher>>>>,
    /// Told after each run, so the server sees its commit at once.
    finished: Arc<tokio::sync::Notify>,
}

/// How long a burst of file events is gathered before one run.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// What the name of "every source" is in the waiting set.
const ALL: &str = "*";

impl Runs {
    /// Starts the runner thread, and the clock thread when a source has a schedule. `isolate`
    /// extracts files in worker processes started from that executable.
    pub fn start(cfg: Config, isolate: Option<PathBuf>) -> Runs {
        let (tx, rx) = crossbeam_channel::bounded::<Request>(256);
        let runs = Runs {
            tx,
            waiting: Arc::new(Mutex::new(BTreeSet::new())),
            watchers: Arc::new(Mutex::new(Vec::new())),
            finished: Arc::new(tokio::sync::Notify::new()),
        };
        for s in cfg.sources.iter().filter(|s| s.watch) {
            if let Err(e) = runs.watch(&cfg, s) {
                tracing::warn!(source = s.name, "cannot watch the source's files ({e}); it runs on its schedule only");
            }
        }
        let scheduled: Vec<(String, Schedule)> = cfg
            .sources
            .iter()
            .filter_map(|s| Some((s.name.clone(), Schedule::parse(s.schedule.as_deref()?).ok()?)))
            .collect();
        let cfg = Arc::new(cfg);
        let waiting = runs.waiting.clone();
        let runner_cfg = cfg.clone();
        let finished = runs.finished.clone();
        std::thread::spawn(move || {
            for req in rx {
                if let Ok(mut w) = waiting.lock() {
                    w.remove(req.source.as_deref().unwrap_or(ALL));
                }
                run_one(&runner_cfg, &req, isolate.clone());
                finished.notify_one();
            }
        });
        if !scheduled.is_empty() {
            let clock = runs.clone();
            std::thread::spawn(move || clock.keep_time(scheduled));
        }
        runs
    }

    /// Notified after each run this runner makes.
    pub fn finished(&self) -> Arc<tokio::sync::Notify> {
        self.finished.clone()
    }

    /// Queues a run of one source (every source when `None`); false when one is already waiting.
    pub fn request(&self, source: Option<String>, full: bool) -> bool {
        self.queue(Request { source, full, why: "asked" })
    }

    fn queue(&self, req: Request) -> bool {
        let Ok(mut w) = self.waiting.lock() else { return false };
        if !w.insert(req.source.clone().unwrap_or_else(|| ALL.into())) {
            return false;
        }
        drop(w);
        self.tx.try_send(req).is_ok()
    }

    /// Watches a file source's folder: a change (not one inside the index folder) queues a run.
    fn watch(&self, cfg: &Config, s: &dossier_connectors::SourceSpec) -> Result<(), notify::Error> {
        let root = cfg.base.join(dossier_connectors::spec::expand_env(&s.location));
        let index_dir = cfg.index_dir();
        let (runs, name) = (self.clone(), s.name.clone());
        let mut debouncer = new_debouncer(DEBOUNCE, move |res: DebounceEventResult| {
            let Ok(events) = res else { return };
            if events.iter().any(|e| !e.path.starts_with(&index_dir)) {
                runs.queue(Request { source: Some(name.clone()), full: false, why: "watched" });
            }
        })?;
        debouncer.watcher().watch(&root, RecursiveMode::Recursive)?;
        if let Ok(mut w) = self.watchers.lock() {
            w.push(debouncer);
        }
        Ok(())
    }

    /// Queues each scheduled source when its time (plus jitter) comes.
    fn keep_time(&self, scheduled: Vec<(String, Schedule)>) {
        let now = Utc::now();
        let mut due: Vec<Option<DateTime<Utc>>> = scheduled.iter().map(|(_, s)| next_with_jitter(s, now)).collect();
        loop {
            let now = Utc::now();
            for (i, (name, s)) in scheduled.iter().enumerate() {
                if due[i].is_some_and(|d| d <= now) {
                    if !self.queue(Request { source: Some(name.clone()), full: false, why: "scheduled" }) {
                        tracing::info!(source = name, "scheduled run skipped: the last one is still waiting");
                    }
                    due[i] = next_with_jitter(s, now);
                }
            }
            let Some(next) = due.iter().flatten().min() else { return };
            let wait = (*next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            std::thread::sleep(wait.clamp(Duration::from_millis(50), Duration::from_secs(60)));
        }
    }
}

fn next_with_jitter(s: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let next = s.next_after(after)?;
    let max = s.jitter_max(next).as_millis() as u64;
    let jitter = if max == 0 { 0 } else { getrandom::u64().unwrap_or(0) % max };
    Some(next + chrono::Duration::milliseconds(jitter as i64))
}

/// Runs one index pass and logs what it did; a failure is logged, and the server goes on.
fn run_one(cfg: &Config, req: &Request, isolate: Option<PathBuf>) {
    let budget = req
        .source
        .as_deref()
        .and_then(|s| cfg.source(s))
        .and_then(|s| s.budget.as_deref())
        .and_then(|b| parse_duration(b).ok());
    let opts = RunOptions {
        full: req.full,
        sources: req.source.iter().cloned().collect(),
        progress: false,
        isolate,
        deadline: budget.map(|b| std::time::Instant::now() + b),
    };
    let what = req.source.as_deref().unwrap_or("every source");
    tracing::info!(source = what, why = req.why, full = req.full, "index run starting");
    match crate::pipeline::run(cfg, &opts) {
        Ok(r) => {
            let deferred: u64 = r.sources.iter().map(|s| s.deferred).sum();
            tracing::info!(
                source = what,
                run = r.id,
                millis = r.millis,
                errors = r.errors.len(),
                deferred,
                "index run finished"
            );
        }
        Err(e) => tracing::warn!(source = what, "index run failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_cron() {
        let now = Utc::now();
        let s = Schedule::parse("every 15m").unwrap();
        assert_eq!((s.next_after(now).unwrap() - now).num_minutes(), 15);
        assert!(Schedule::parse("0 */5 * * * *").unwrap().next_after(now).is_some());
        assert!(Schedule::parse("every 0m").is_err());
        assert!(Schedule::parse("sometimes").unwrap_err().contains("cron"));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").is_err() && parse_duration("99999999999999999d").is_err());
        // Jitter spreads runs over at most a tenth of the period.
        let every = Schedule::parse("every 100s").unwrap();
        for _ in 0..20 {
            let at = next_with_jitter(&every, now).unwrap();
            assert!(at >= now + chrono::Duration::seconds(100) && at <= now + chrono::Duration::seconds(110));
        }
    }
}
