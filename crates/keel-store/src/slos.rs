//! Service level objectives (SPEC §7): definitions, the good/total event counts
//! per minute their budgets and burn rates are summed from, and the burn-rate
//! alerts open on them. Adapters: SQLite (`sqlite::slos`) and PostgreSQL
//! (`postgres::slos`).
//!
//! Counts come from two places: a monitor SLI's are added by
//! [`crate::monitors::MonitorStore::record_checks`] in the same transaction as
//! the check they count (so a check and its SLO event never disagree), a
//! request SLI's by the API processes through [`SloStore::add_slo_counts`].

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::slo::{
    budget::{Counts, Severity},
    SloSpec,
};
use serde::Serialize;

use crate::{from_micros, Page, PageRequest, StoreResult, TenantId};

/// Minute counts are kept this long: the longest window (a 92-day quarter)
/// and then some.
pub const SLO_COUNT_RETENTION_S: i64 = 100 * 86_400;
pub const MINUTE_US: i64 = 60_000_000;

pub type StoredSlo = crate::SpecRecord<SloSpec>;

/// Events to add to one SLO's minute.
#[derive(Debug, Clone, PartialEq)]
pub struct SloCount {
    pub tenant: TenantId,
    pub slo_id: String,
    /// The minute's start, µs.
    pub minute: i64,
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloAlert {
    pub id: String,
    pub slo_id: String,
    #[serde(serialize_with = "severity_name")]
    pub severity: Severity,
    /// The rule that fired: `"1h/5m"`, `"6h/30m"`, `"1d/2h"` or `"3d/6h"`.
    pub windows: String,
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
}

fn severity_name<S: serde::Serializer>(s: &Severity, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(s.as_str())
}

#[async_trait]
pub trait SloStore: Send + Sync {
    /// A name the tenant already uses is a [`crate::StoreError::Conflict`].
    async fn create_slo(&self, tenant: &TenantId, spec: SloSpec) -> StoreResult<StoredSlo>;
    async fn slo(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredSlo>>;
    /// Oldest first.
    async fn list_slos(&self, tenant: &TenantId, page: PageRequest)
        -> StoreResult<Page<StoredSlo>>;
    /// Every tenant's SLOs (for the evaluator and the request counters).
    async fn all_slos(&self) -> StoreResult<Vec<StoredSlo>>;
    /// Removes the SLO with its counts and alerts.
    async fn delete_slo(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;

    /// Adds events to minutes (creating them); counts of an SLO deleted
    /// meanwhile are dropped.
    async fn add_slo_counts(&self, counts: Vec<SloCount>) -> StoreResult<()>;
    /// One sum per range, over the minutes starting in `[from, to)` (µs).
    async fn slo_counts(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        ranges: &[(i64, i64)],
    ) -> StoreResult<Vec<Counts>>;

    /// Opens an alert of `severity` unless one is open already; `Some` only
    /// for the caller that opened it (so evaluators on many replicas notify
    /// once).
    async fn open_slo_alert(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        severity: Severity,
        windows: &str,
        at: Timestamp,
    ) -> StoreResult<Option<SloAlert>>;
    /// Resolves the open alert of `severity`; `Some` only for the caller that
    /// resolved it.
    async fn resolve_slo_alert(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        severity: Severity,
        at: Timestamp,
    ) -> StoreResult<Option<SloAlert>>;
    async fn slo_alert(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<SloAlert>>;
    /// Newest first.
    async fn slo_alerts(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<SloAlert>>;
    /// Deletes up to `limit` minute counts (of every tenant) older than `before`
    /// (µs); returns how many went.
    async fn prune_slo_counts(&self, before: i64, limit: u32) -> StoreResult<u64>;
}

pub(crate) type AlertRow = (String, String, String, String, i64, Option<i64>);

pub(crate) fn decode_alert(row: AlertRow) -> StoreResult<SloAlert> {
    let (id, slo_id, severity, windows, opened_at, resolved_at) = row;
    Ok(SloAlert {
        id,
        slo_id,
        severity: Severity::parse(&severity)
            .ok_or_else(|| crate::StoreError::Internal(format!("alert severity {severity:?}")))?,
        windows,
        opened_at: from_micros(opened_at)?,
        resolved_at: resolved_at.map(from_micros).transpose()?,
    })
}
