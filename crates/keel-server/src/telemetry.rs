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
    encoding::{text::encode, DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{exponential_buckets, Histogram},
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

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The bus's counters (SPEC §8): published, delivered, acked, dead-lettered, and
/// built-in worker outcomes and latency per target.
pub struct BusMetrics {
    queue_depth: Family<QueueLabels, Gauge>,
    queue_in_flight: Family<QueueLabels, Gauge>,
    queue_oldest_age: Family<QueueLabels, Gauge>,
    queue_dead_letters: Family<QueueLabels, Gauge>,
    published: Counter,
    delivered: Counter,
    acked: Counter,
    dead_lettered: Counter,
    outcomes: Family<WorkerLabels, Counter>,
    latency: Family<TargetLabels, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    target: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    topic: String,
    subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

impl BusMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            queue_depth: Family::default(),
            queue_in_flight: Family::default(),
            queue_oldest_age: Family::default(),
            queue_dead_letters: Family::default(),
            published: Counter::default(),
            delivered: Counter::default(),
            acked: Counter::default(),
            dead_lettered: Counter::default(),
            outcomes: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        };
        for (name, help, family) in [
            (
                "keel_queue_depth",
                "Messages visible in a subscription's queue",
                &metrics.queue_depth,
            ),
            (
                "keel_queue_in_flight",
                "Messages received and not yet acked",
                &metrics.queue_in_flight,
            ),
            (
                "keel_queue_oldest_age_seconds",
                "Age of the oldest queued message",
                &metrics.queue_oldest_age,
            ),
            (
                "keel_queue_dead_letters",
                "Messages in a subscription's dead-letter queue",
                &metrics.queue_dead_letters,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "keel_bus_published",
            "Messages accepted by publish",
            metrics.published.clone(),
        );
        registry.register(
            "keel_bus_delivered",
            "Messages handed to consumers and built-in targets",
            metrics.delivered.clone(),
        );
        registry.register(
            "keel_bus_acked",
            "Messages acknowledged",
            metrics.acked.clone(),
        );
        registry.register(
            "keel_bus_dead_lettered",
            "Messages moved to a dead-letter queue by a built-in target",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "keel_worker_outcomes",
            "Built-in target deliveries by target and outcome",
            metrics.outcomes.clone(),
        );
        registry.register(
            "keel_worker_duration_seconds",
            "Built-in target delivery latency by target",
            metrics.latency.clone(),
        );
        metrics
    }

    /// Replaces the per-queue gauges with a fresh reading (queues that emptied
    /// disappear rather than keep their last value).
    pub fn set_queues(
        &self,
        queues: &[(
            keel_store::TenantId,
            String,
            String,
            keel_store::bus::QueueStats,
        )],
    ) {
        for family in [
            &self.queue_depth,
            &self.queue_in_flight,
            &self.queue_oldest_age,
            &self.queue_dead_letters,
        ] {
            family.clear();
        }
        for (tenant, topic, subscription, stats) in queues {
            let labels = QueueLabels {
                tenant: tenant.to_string(),
                topic: topic.clone(),
                subscription: subscription.clone(),
            };
            self.queue_depth
                .get_or_create(&labels)
                .set(stats.depth as i64);
            self.queue_in_flight
                .get_or_create(&labels)
                .set(stats.in_flight as i64);
            self.queue_oldest_age
                .get_or_create(&labels)
                .set(stats.oldest_age_s as i64);
            self.queue_dead_letters
                .get_or_create(&labels)
                .set(stats.dlq_depth as i64);
        }
    }

    /// Totals for `/v1/stats/overview`.
    pub fn totals(&self) -> BusTotals {
        BusTotals {
            published: self.published.get(),
            delivered: self.delivered.get(),
            acked: self.acked.get(),
            dead_lettered: self.dead_lettered.get(),
        }
    }

    pub fn published(&self, n: u64) {
        self.published.inc_by(n);
    }

    pub fn delivered(&self, n: u64) {
        self.delivered.inc_by(n);
    }

    pub fn acked(&self, n: u64) {
        self.acked.inc_by(n);
    }

    /// `n` deliveries to a built-in `target` ended in `outcome` after `elapsed`.
    pub fn worker_outcome(
        &self,
        target: &str,
        outcome: &str,
        n: u64,
        elapsed: std::time::Duration,
    ) {
        self.outcomes
            .get_or_create(&WorkerLabels {
                target: target.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(n);
        self.latency
            .get_or_create(&TargetLabels {
                target: target.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.delivered.inc_by(n);
        match outcome {
            "delivered" => {
                self.acked.inc_by(n);
            }
            "dead-lettered" => {
                self.dead_lettered.inc_by(n);
            }
            _ => {}
        }
    }
}

pub struct Telemetry {
    pub bus: BusMetrics,
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
        let bus = BusMetrics::register(&mut registry);
        Self {
            bus,
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

    /// The Prometheus exposition (OpenMetrics text).
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
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

/// Bus message counts since this process started.
#[derive(Debug, Serialize, ToSchema)]
pub struct BusTotals {
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
    pub dead_lettered: u64,
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
