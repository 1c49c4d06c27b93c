//! What telemetry ingest shares between its routes (`routes::telemetry`) and the
//! `telemetry-import` worker: reading a possibly gzipped body within the size
//! limit, storing a parsed batch, the ingest counters on `/metrics`, and the
//! retention pruner.

use std::{io::Read, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{header, HeaderMap},
};
use bytes::Bytes;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use keel_core::{clock::Clock, telemetry::Parsed};
use keel_store::{PageRequest, Store, StoreResult, TenantId};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::sync::watch;

use crate::problem::ApiError;

/// Ingest counters (SPEC §6, §8).
#[derive(Default)]
pub struct IngestMetrics {
    records: Family<RecordLabels, Counter>,
    bytes: Family<FormatLabels, Counter>,
    imports: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    /// `logs` or `metrics`.
    signal: String,
    /// `accepted` or `rejected`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabels {
    /// `simple`, `otlp`, or `import`.
    format: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

impl IngestMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "keel_telemetry_records",
            "Telemetry records received, by signal and outcome (accepted or rejected)",
            metrics.records.clone(),
        );
        registry.register(
            "keel_telemetry_received_bytes",
            "Telemetry body bytes received (after decompression), by format",
            metrics.bytes.clone(),
        );
        registry.register(
            "keel_telemetry_imports",
            "telemetry-import deliveries by outcome (imported, duplicate, dead-lettered, failed)",
            metrics.imports.clone(),
        );
        metrics
    }

    /// Counts what one body held once its rows are stored.
    pub fn accepted(&self, format: &str, bytes: usize, counts: Counts, rejected_signal: &str) {
        let count = |signal: &str, outcome: &str, n: u64| {
            if n > 0 {
                self.records
                    .get_or_create(&RecordLabels {
                        signal: signal.into(),
                        outcome: outcome.into(),
                    })
                    .inc_by(n);
            }
        };
        count("logs", "accepted", counts.logs);
        count("metrics", "accepted", counts.points);
        count(rejected_signal, "rejected", counts.rejected);
        self.bytes
            .get_or_create(&FormatLabels {
                format: format.into(),
            })
            .inc_by(bytes as u64);
    }

    pub fn import_outcome(&self, outcome: &str) {
        self.imports
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }
}

/// How many lines, points and rejections one body held.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub logs: u64,
    pub points: u64,
    pub rejected: u64,
}

impl Counts {
    pub fn of(parsed: &Parsed) -> Self {
        Self {
            logs: parsed.batch.logs.len() as u64,
            points: parsed.batch.points.len() as u64,
            rejected: parsed.rejected.count,
        }
    }

    pub fn accepted(self) -> u64 {
        self.logs + self.points
    }
}

/// Reads a request body of at most `max` bytes after decompression
/// (`Content-Encoding: gzip` or none): a small body that inflates past the limit
/// is refused as surely as a large one.
pub async fn read_body(body: Body, headers: &HeaderMap, max: u64) -> Result<Bytes, ApiError> {
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {other:?} is not supported; send gzip or none"
            )))
        }
    };
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "telemetry bodies are at most {max} bytes after decompression (telemetry_max_bytes)"
        ))
    };
    let raw = http_body_util::Limited::new(body, max as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else if crate::connections::is_body_timeout(e.as_ref()) {
                ApiError::RequestTimeout("the request body stopped arriving".into())
            } else {
                ApiError::MalformedBody(format!("the request body could not be read: {e}"))
            }
        })?
        .to_bytes();
    if !gzip {
        return Ok(raw);
    }
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(max + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid gzip: {e}")))?;
    if inflated.len() as u64 > max {
        return Err(too_large());
    }
    Ok(Bytes::from(inflated))
}

/// The media type of a request, without parameters, lowercased.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Rows pruned per step: small enough that a step never holds the writer long.
const PRUNE_STEP: u32 = 2_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Deletes every tenant's telemetry older than its retention (its own, else
/// `retention`), in small steps, every minute, until `stop` turns true. Replicas
/// may all run it: a step deletes what is there, so two pruners only share the work.
pub async fn prune(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        if let Err(e) = prune_once(&*store, &*clock, retention, &stop).await {
            tracing::warn!(error = %e, "telemetry pruning failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One pass over every tenant; returns how many rows went.
pub async fn prune_once(
    store: &dyn Store,
    clock: &dyn Clock,
    retention: Duration,
    stop: &watch::Receiver<bool>,
) -> StoreResult<u64> {
    let now = clock.now();
    let cutoff = |retention: Duration| {
        now.checked_sub(SignedDuration::try_from(retention).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN)
    };
    let mut gone = 0;
    let mut cursor = None;
    loop {
        let page = store
            .list_tenants(PageRequest { limit: 500, cursor })
            .await?;
        for tenant in &page.items {
            let own = store.telemetry_retention(&tenant.id).await?;
            let kept = own.map_or(retention, |days| {
                Duration::from_secs(u64::from(days) * 86_400)
            });
            gone += prune_tenant(store, &tenant.id, cutoff(kept), stop).await?;
        }
        cursor = page.next_cursor;
        if cursor.is_none() || *stop.borrow() {
            return Ok(gone);
        }
    }
}

async fn prune_tenant(
    store: &dyn Store,
    tenant: &TenantId,
    before: Timestamp,
    stop: &watch::Receiver<bool>,
) -> StoreResult<u64> {
    let mut gone = 0;
    while !*stop.borrow() {
        let step = store.prune_telemetry(tenant, before, PRUNE_STEP).await?;
        gone += step;
        if step < u64::from(PRUNE_STEP) {
            break;
        }
        // Lets ingest's writes in between steps.
        tokio::task::yield_now().await;
    }
    Ok(gone)
}
