//! The latency buckets every Keel histogram shares, so request and worker
//! latencies can be compared bucket for bucket.

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

pub(crate) fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}
