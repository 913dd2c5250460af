//! Prometheus metrics of `dossier serve` (`GET /metrics`, OpenMetrics text): requests and their
//! latency as they happen, and the index's runs, freshness and size read at each scrape from the
//! state store, so runs made by `dossier index` in other processes count too.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::RunReport;

/// The content type of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ItemLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// What the index looks like at a scrape.
#[derive(Debug, Default)]
pub struct IndexSnapshot {
    /// Runs recorded in the state store, by status.
    pub runs: Vec<(String, u64)>,
    /// The last run that finished (completed or failed), with when it finished (Unix seconds).
    pub last: Option<(RunReport, f64)>,
    /// Customers.
    pub customers: u64,
    /// Bytes of the index folder (tantivy and state store).
    pub index_bytes: u64,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    runs: Family<StatusLabels, Gauge>,
    last_items: Family<ItemLabels, Gauge>,
    last_source_seconds: Family<SourceLabels, FloatGauge>,
    last_seconds: FloatGauge,
    last_finished: FloatGauge,
    customers: Gauge,
    index_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dossier");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        // 0.25 ms to about 4 s.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
        });
        registry.register(
            "request_duration_seconds",
            "Server-side time to answer a request, by route",
            latency.clone(),
        );
        let runs = Family::<StatusLabels, Gauge>::default();
        registry.register("index_runs", "Index runs recorded in the state store, by status", runs.clone());
        let last_items = Family::<ItemLabels, Gauge>::default();
        registry.register(
            "last_run_items",
            "Items of the last finished index run, by source and outcome (seen, new, changed, unchanged, deleted, failed, deferred)",
            last_items.clone(),
        );
        let last_source_seconds = Family::<SourceLabels, FloatGauge>::default();
        registry.register(
            "last_run_source_duration_seconds",
            "Wall time of each source in the last finished index run",
            last_source_seconds.clone(),
        );
        let last_seconds = FloatGauge::default();
        registry.register(
            "last_run_duration_seconds",
            "Wall time of the last finished index run",
            last_seconds.clone(),
        );
        let last_finished = FloatGauge::default();
        registry.register(
            "last_run_finished_timestamp_seconds",
            "When the last index run finished (Unix time): alert when it is too old",
            last_finished.clone(),
        );
        let customers = Gauge::default();
        registry.register("customers", "Customers in the index", customers.clone());
        let index_bytes = Gauge::default();
        registry.register("index_size_bytes", "Bytes on disk of the index and its state store", index_bytes.clone());
        Metrics {
            registry,
            requests,
            latency,
            runs,
            last_items,
            last_source_seconds,
            last_seconds,
            last_finished,
            customers,
            index_bytes,
        }
    }

    /// Counts one answered request; `route` is the route's pattern (`/api/customers/{id}`), never
    /// the path, so ids do not become labels.
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { route: route.to_string(), status }).inc();
        self.latency.get_or_create(&RouteLabels { route: route.to_string() }).observe(seconds);
    }

    /// The metrics as OpenMetrics text, with the index's figures from `snap`.
    pub fn render(&self, snap: &IndexSnapshot) -> Result<String, std::fmt::Error> {
        self.runs.clear();
        for (status, n) in &snap.runs {
            self.runs.get_or_create(&StatusLabels { status: status.clone() }).set(*n as i64);
        }
        self.last_items.clear();
        self.last_source_seconds.clear();
        if let Some((r, finished)) = &snap.last {
            for s in &r.sources {
                for (outcome, n) in [
                    ("seen", s.seen),
                    ("new", s.new),
                    ("changed", s.changed),
                    ("unchanged", s.unchanged),
                    ("deleted", s.deleted),
                    ("failed", s.failed),
                    ("deferred", s.deferred),
                ] {
                    let l = ItemLabels { source: s.source.clone(), outcome: outcome.into() };
                    self.last_items.get_or_create(&l).set(n as i64);
                }
                self.last_source_seconds
                    .get_or_create(&SourceLabels { source: s.source.clone() })
                    .set(s.millis as f64 / 1000.0);
            }
            self.last_seconds.set(r.millis as f64 / 1000.0);
            self.last_finished.set(*finished);
        }
        self.customers.set(snap.customers as i64);
        self.index_bytes.set(snap.index_bytes as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Bytes of the files under `dir` (not following links; at most a million entries).
pub fn folder_bytes(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .take(1_000_000)
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SourceReport;

    #[test]
    fn renders_requests_latency_and_the_last_run() {
        let m = Metrics::new();
        m.observe("/api/search", 200, 0.003);
        m.observe("/api/search", 200, 0.004);
        m.observe("/api/customers/{id}", 404, 0.001);
        let report = RunReport {
            millis: 1500,
            sources: vec![SourceReport { source: "crm".into(), seen: 7, failed: 1, millis: 900, ..Default::default() }],
            ..Default::default()
        };
        let snap = IndexSnapshot {
            runs: vec![("completed".into(), 3), ("failed".into(), 1)],
            last: Some((report, 1.7e9)),
            customers: 42,
            index_bytes: 1024,
        };
        let text = m.render(&snap).unwrap();
        for want in [
            "dossier_http_requests_total{route=\"/api/search\",status=\"200\"} 2",
            "dossier_request_duration_seconds_count{route=\"/api/search\"} 2",
            "dossier_index_runs{status=\"failed\"} 1",
            "dossier_last_run_items{source=\"crm\",outcome=\"seen\"} 7",
            "dossier_last_run_duration_seconds 1.5",
            "dossier_customers 42",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
