//! Keel observing itself (SPEC §8): Prometheus metrics for `/metrics`, and
//! per-minute request statistics for `/v1/stats/overview` (and, later, request SLIs).

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::Arc,
};

use keel_core::{clock::Clock, latency::LatencyHistogram};
use keel_store::WriteStats;
use parking_lot::{Mutex, RwLock};
use prometheus_client::{
    collector::Collector,
    encoding::{
        text::{encode_eof, encode_registry},
        DescriptorEncoder, EncodeLabelSet, EncodeMetric,
    },
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::Registry,
};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

pub use crate::bus_metrics::{BusMetrics, BusTotals};
use crate::{cached_reads::CacheMetrics, histograms::latency_histogram};

pub struct Telemetry {
    pub bus: Arc<BusMetrics>,
    pub cache: Arc<CacheMetrics>,
    /// Telemetry ingest and import counters.
    pub ingest: Arc<crate::ingest::IngestMetrics>,
    /// Probe results and incidents.
    pub probes: Arc<crate::prober::ProbeMetrics>,
    /// SLO budgets, burn rates and alerts.
    pub slos: Arc<crate::slo::evaluate::SloMetrics>,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// method → route template → its instruments. Routes are templates, so this
    /// stays small; caching the handles keeps the per-request path free of label
    /// allocations.
    routes: RwLock<HashMap<String, HashMap<String, Arc<RouteInstruments>>>>,
    pub stats: RequestStats,
}

struct RouteInstruments {
    labels: RouteLabels,
    latency: Histogram,
    by_status: RwLock<HashMap<u16, Counter>>,
    /// `METHOD /template`, the key of the per-minute statistics.
    stats_key: String,
}

impl Telemetry {
    pub fn new(write_stats: Arc<WriteStats>, clock: Arc<dyn Clock>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "keel_http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "keel_http_request_duration_seconds",
            "HTTP request latency by route template and method",
            latency.clone(),
        );
        registry.register_collector(Box::new(WriteStatsCollector(write_stats)));
        let bus = Arc::new(BusMetrics::register(&mut registry));
        let cache = Arc::new(CacheMetrics::register(&mut registry));
        let ingest = Arc::new(crate::ingest::IngestMetrics::register(&mut registry));
        let probes = Arc::new(crate::prober::ProbeMetrics::register(&mut registry));
        let slos = Arc::new(crate::slo::evaluate::SloMetrics::register(&mut registry));
        Self {
            bus,
            cache,
            ingest,
            probes,
            slos,
            registry,
            requests,
            latency,
            routes: RwLock::new(HashMap::new()),
            stats: RequestStats::new(clock),
        }
    }

    /// Records one request that finished `at`. `route` is the matched template.
    pub fn observe(
        &self,
        at: jiff::Timestamp,
        method: &str,
        route: &str,
        status: u16,
        micros: u64,
    ) {
        let route = self.instruments(method, route);
        route.latency.observe(micros as f64 / 1e6);
        self.status_counter(&route, status).inc();
        self.stats.record_at(at, &route.stats_key, status, micros);
    }

    fn instruments(&self, method: &str, route: &str) -> Arc<RouteInstruments> {
        if let Some(found) = self.routes.read().get(method).and_then(|m| m.get(route)) {
            return found.clone();
        }
        let labels = RouteLabels {
            route: route.to_owned(),
            method: method.to_owned(),
        };
        let created = Arc::new(RouteInstruments {
            latency: self.latency.get_or_create(&labels).clone(),
            labels,
            by_status: RwLock::new(HashMap::new()),
            stats_key: format!("{method} {route}"),
        });
        self.routes
            .write()
            .entry(method.to_owned())
            .or_default()
            .entry(route.to_owned())
            .or_insert(created)
            .clone()
    }

    fn status_counter(&self, route: &RouteInstruments, status: u16) -> Counter {
        if let Some(counter) = route.by_status.read().get(&status) {
            return counter.clone();
        }
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                route: route.labels.route.clone(),
                method: route.labels.method.clone(),
                status: status.to_string(),
            })
            .clone();
        route
            .by_status
            .write()
            .entry(status)
            .or_insert(counter)
            .clone()
    }

    /// The Prometheus exposition (OpenMetrics text); queue gauges per queue (with
    /// tenant labels) only when `per_queue`.
    pub fn render(&self, per_queue: bool) -> String {
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| self.bus.encode_queues(&mut out, per_queue))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}

/// Exposes the store's commit sharing, read at scrape time.
struct WriteStatsCollector(Arc<WriteStats>);

impl fmt::Debug for WriteStatsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteStatsCollector")
    }
}

impl Collector for WriteStatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let commits = ConstCounter::new(self.0.commits.load(Relaxed));
        commits.encode(encoder.encode_descriptor(
            "keel_store_commits",
            "Durable commits (each one fsync)",
            None,
            commits.metric_type(),
        )?)?;
        let writes = ConstCounter::new(self.0.writes.load(Relaxed));
        writes.encode(encoder.encode_descriptor(
            "keel_store_committed_writes",
            "Writes committed; divided by commits it is the mean commit batch size",
            None,
            writes.metric_type(),
        )?)?;
        let largest = ConstGauge::new(self.0.largest_batch.load(Relaxed) as i64);
        largest.encode(encoder.encode_descriptor(
            "keel_store_commit_batch_size_max",
            "Largest number of writes that shared one commit",
            None,
            largest.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Keep a day of minutes: the longest window `/v1/stats/overview` offers.
pub const MAX_WINDOW_MINUTES: i64 = 24 * 60;

#[derive(Default)]
struct RouteMinute {
    requests: u64,
    /// Neither 2xx nor 3xx.
    failed: u64,
    server_errors: u64,
    latency: LatencyHistogram,
}

impl RouteMinute {
    fn merge(&mut self, other: &RouteMinute) {
        self.requests += other.requests;
        self.failed += other.failed;
        self.server_errors += other.server_errors;
        self.latency.merge(&other.latency);
    }
}

struct Minute {
    start: i64,
    routes: HashMap<String, RouteMinute>,
}

/// Per-minute, per-route request counts and latency histograms for the last day,
/// in this process.
pub struct RequestStats {
    clock: Arc<dyn Clock>,
    minutes: Mutex<VecDeque<Minute>>,
}

impl RequestStats {
    fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            minutes: Mutex::new(VecDeque::new()),
        }
    }

    fn current_minute(&self) -> i64 {
        self.clock.now().as_second().div_euclid(60)
    }

    #[cfg(test)]
    fn record(&self, route: &str, status: u16, micros: u64) {
        self.record_at(self.clock.now(), route, status, micros);
    }

    pub fn record_at(&self, at: jiff::Timestamp, route: &str, status: u16, micros: u64) {
        let minute = at.as_second().div_euclid(60);
        let mut minutes = self.minutes.lock();
        if minutes.back().is_none_or(|m| m.start < minute) {
            minutes.push_back(Minute {
                start: minute,
                routes: HashMap::new(),
            });
            while minutes
                .front()
                .is_some_and(|m| m.start <= minute - MAX_WINDOW_MINUTES)
            {
                minutes.pop_front();
            }
        }
        let current = minutes.back_mut().expect("pushed above");
        let entry = match current.routes.get_mut(route) {
            Some(entry) => entry,
            None => current.routes.entry(route.to_owned()).or_default(),
        };
        entry.requests += 1;
        if !(200..400).contains(&status) {
            entry.failed += 1;
        }
        if status >= 500 {
            entry.server_errors += 1;
        }
        entry.latency.record(micros);
    }

    /// Summaries over the last `window_minutes` minutes (the current one included).
    pub fn overview(&self, window_minutes: i64) -> Overview {
        let now_minute = self.current_minute();
        let first = now_minute - window_minutes + 1;
        let mut overall = RouteMinute::default();
        let mut routes: HashMap<String, RouteMinute> = HashMap::new();
        let mut per_minute = Vec::new();
        for minute in self.minutes.lock().iter().filter(|m| m.start >= first) {
            let mut in_minute = 0;
            for (route, stats) in &minute.routes {
                overall.merge(stats);
                routes.entry(route.clone()).or_default().merge(stats);
                in_minute += stats.requests;
            }
            per_minute.push(MinuteCount {
                minute: minute_timestamp(minute.start),
                requests: in_minute,
            });
        }
        let mut routes: Vec<RouteSummary> = routes
            .into_iter()
            .map(|(route, stats)| RouteSummary::of(Some(route), &stats, window_minutes))
            .collect();
        routes.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.route.cmp(&b.route)));
        Overview {
            window_minutes,
            from: minute_timestamp(first),
            to: self.clock.now().to_string(),
            overall: RouteSummary::of(None, &overall, window_minutes),
            routes,
            throughput_per_minute: per_minute,
        }
    }
}

fn minute_timestamp(minute: i64) -> String {
    jiff::Timestamp::from_second(minute * 60)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub window_minutes: i64,
    pub from: String,
    pub to: String,
    pub overall: RouteSummary,
    /// Busiest first.
    pub routes: Vec<RouteSummary>,
    /// Requests in each minute of the window that saw any.
    pub throughput_per_minute: Vec<MinuteCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MinuteCount {
    pub minute: String,
    pub requests: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteSummary {
    /// `METHOD /template`; absent on the overall summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub requests: u64,
    pub requests_per_minute: f64,
    /// Share of responses that were neither 2xx nor 3xx.
    pub error_rate_percent: f64,
    pub server_error_rate_percent: f64,
    pub latency_ms: LatencySummary,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LatencySummary {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl RouteSummary {
    fn of(route: Option<String>, stats: &RouteMinute, window_minutes: i64) -> Self {
        let percent = |n: u64| {
            if stats.requests == 0 {
                0.0
            } else {
                round3(n as f64 * 100.0 / stats.requests as f64)
            }
        };
        let ms = |q| stats.latency.quantile(q).map(|us| round3(us / 1000.0));
        Self {
            route,
            requests: stats.requests,
            requests_per_minute: round3(stats.requests as f64 / window_minutes as f64),
            error_rate_percent: percent(stats.failed),
            server_error_rate_percent: percent(stats.server_errors),
            latency_ms: LatencySummary {
                p50: ms(0.5),
                p95: ms(0.95),
                p99: ms(0.99),
            },
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `5m`, `1h`, `24h` … → minutes, at most a day.
pub fn parse_window(raw: &str) -> Option<i64> {
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let n: i64 = digits.parse().ok()?;
    let minutes = match unit {
        "m" => n,
        "h" => n.checked_mul(60)?,
        "d" => n.checked_mul(24 * 60)?,
        _ => return None,
    };
    (1..=MAX_WINDOW_MINUTES)
        .contains(&minutes)
        .then_some(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::clock::ManualClock;

    #[test]
    fn windows() {
        assert_eq!(parse_window("5m"), Some(5));
        assert_eq!(parse_window("1h"), Some(60));
        assert_eq!(parse_window("1d"), Some(1440));
        for bad in ["", "h", "0m", "25h", "2d", "1w", "-1h", "1.5h"] {
            assert_eq!(parse_window(bad), None, "{bad}");
        }
    }

    #[test]
    fn overview_counts_rates_and_drops_minutes_outside_the_window() {
        let clock = Arc::new(ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap()));
        let stats = RequestStats::new(clock.clone());
        stats.record("GET /a", 200, 1000);
        stats.record("GET /a", 500, 3000);
        clock.set("2026-01-01T00:10:00Z".parse().unwrap());
        stats.record("GET /b", 404, 2000);
        stats.record("GET /b", 200, 2000);
        let last5 = stats.overview(5);
        assert_eq!(last5.overall.requests, 2);
        assert_eq!(last5.overall.error_rate_percent, 50.0);
        assert_eq!(last5.overall.server_error_rate_percent, 0.0);
        let hour = stats.overview(60);
        assert_eq!(hour.overall.requests, 4);
        assert_eq!(hour.overall.server_error_rate_percent, 25.0);
        assert_eq!(hour.throughput_per_minute.len(), 2);
        assert_eq!(hour.routes.len(), 2);
    }
}
