//! Telemetry storage (SPEC §6): log lines searchable by full text and metric points
//! aggregated at query time, every row a tenant's with the account as a dimension
//! inside it. Adapters: SQLite (lines in blocks with an FTS5 index of their
//! words, `sqlite::log_blocks`) and PostgreSQL
//! (`tsvector` with a GIN index, `postgres::telemetry`). Both split text into words
//! the same way — runs of letters and digits, compared case-insensitively — so a
//! query finds the same lines on either.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::telemetry::Batch;
use serde_json::{Map, Value};

use crate::{Page, PageRequest, StoreError, StoreResult, TenantId};

/// A stored log line, as queries return it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLog {
    pub ts: Timestamp,
    pub level: String,
    pub body: String,
    pub account: String,
    pub attributes: Map<String, Value>,
}

/// Which lines `GET /v1/logs` wants, newest first.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub account: Option<String>,
    /// Compared case-insensitively.
    pub level: Option<String>,
    /// Words every line must contain (see [`search_terms`]); none: any line.
    pub terms: Vec<String>,
    pub from: Timestamp,
    /// Exclusive.
    pub to: Timestamp,
    pub page: PageRequest,
}

/// Which points `GET /v1/metrics/{name}` aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct PointQuery {
    pub name: String,
    pub account: Option<String>,
    /// Every pair must be among a point's labels.
    pub labels: Vec<(String, String)>,
    pub from: Timestamp,
    /// Exclusive.
    pub to: Timestamp,
}

/// Most words a full-text query may hold.
pub const MAX_TERMS: usize = 16;

/// The words of a text as full-text search sees them: runs of letters and
/// digits, not yet lowercased.
pub fn raw_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// Whether `text` holds every one of `terms` (each lowercased, as
/// [`search_terms`] gives them) as a word.
pub fn holds_all_words(text: &str, terms: &[String]) -> bool {
    if terms.is_empty() {
        return true;
    }
    let words: Vec<&str> = raw_words(text).collect();
    terms.iter().all(|term| {
        words.iter().any(|word| {
            if word.is_ascii() {
                word.eq_ignore_ascii_case(term)
            } else {
                word.to_lowercase() == *term
            }
        })
    })
}

/// The words of a full-text query: runs of letters and digits, lowercased.
pub fn search_terms(q: &str) -> StoreResult<Vec<String>> {
    let terms: Vec<String> = raw_words(q).map(str::to_lowercase).collect();
    if terms.len() > MAX_TERMS {
        return Err(StoreError::InvalidInput {
            field: "q",
            why: format!("a query holds at most {MAX_TERMS} words"),
        });
    }
    Ok(terms)
}

#[async_trait]
pub trait TelemetryStore: Send + Sync {
    /// Stores the batch in one durable transaction. With `import`, records that
    /// import id in the same transaction — and when it was recorded before, writes
    /// nothing and returns `false` (a redelivered import lands once).
    async fn append_telemetry(
        &self,
        tenant: &TenantId,
        batch: Batch,
        import: Option<String>,
    ) -> StoreResult<bool>;
    /// Matching lines, newest first (by time, then arrival).
    async fn query_logs(&self, tenant: &TenantId, query: LogQuery) -> StoreResult<Page<StoredLog>>;
    /// `(time in µs, value)` of every matching point, in no particular order;
    /// [`StoreError::InvalidInput`] when more than `max` match.
    async fn query_points(
        &self,
        tenant: &TenantId,
        query: PointQuery,
        max: usize,
    ) -> StoreResult<Vec<(i64, f64)>>;
    /// The tenant's own retention in days, if it set one.
    async fn telemetry_retention(&self, tenant: &TenantId) -> StoreResult<Option<u32>>;
    /// Sets (or, with `None`, clears) the tenant's own retention in days.
    async fn set_telemetry_retention(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
    ) -> StoreResult<()>;
    /// Deletes up to `limit` of the tenant's lines, points and import records
    /// older than `before`; returns how many rows went. Callers repeat it in small
    /// steps so that pruning never holds up ingest for long.
    async fn prune_telemetry(
        &self,
        tenant: &TenantId,
        before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64>;
}

/// A log page's position: the last line's time (µs) and row id.
pub(crate) fn log_cursor(page: &PageRequest) -> StoreResult<(i64, i64)> {
    let Some(cursor) = &page.cursor else {
        return Ok((i64::MAX, i64::MAX));
    };
    cursor
        .split_once(':')
        .and_then(|(ts, id)| Some((ts.parse().ok()?, id.parse().ok()?)))
        .ok_or_else(|| StoreError::InvalidInput {
            field: "cursor",
            why: "not a cursor of this listing".into(),
        })
}

pub(crate) fn next_log_cursor(last: Option<(i64, i64)>, full: bool) -> Option<String> {
    last.filter(|_| full).map(|(ts, id)| format!("{ts}:{id}"))
}

/// The error for a metric query matching more than `max` points.
pub(crate) fn too_many_points(max: usize) -> StoreError {
    StoreError::InvalidInput {
        field: "from",
        why: format!("more than {max} points match; narrow the range or the labels"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_words_lowercased() {
        assert_eq!(
            search_terms("Disk-FULL on /dev/sda1!").unwrap(),
            ["disk", "full", "on", "dev", "sda1"]
        );
        assert!(search_terms("  ").unwrap().is_empty());
        assert!(search_terms(&"w ".repeat(17)).is_err());
    }

    #[test]
    fn a_text_holds_words_whatever_their_case() {
        let terms = search_terms("disk FULL").unwrap();
        assert!(holds_all_words("Disk-full on /dev/sda1", &terms));
        assert!(!holds_all_words("disk fullness", &terms));
        assert!(holds_all_words(
            "ÉCHEC du disque",
            &search_terms("échec").unwrap()
        ));
        assert!(holds_all_words("anything", &[]));
    }
}
