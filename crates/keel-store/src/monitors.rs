//! Uptime monitors (SPEC §7): definitions, the schedule probers share through
//! leases, every check's result with its minute/hour/day rollups, and incidents.
//! Adapters: SQLite (`sqlite::monitors`) and PostgreSQL (`postgres::monitors`);
//! what a result does to a monitor's state is decided here, once, by
//! [`transition`].

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::{
    latency::LatencyHistogram,
    uptime::{monitor::MonitorSpec, Grain, Tally},
};
use serde::Serialize;

use crate::{from_micros, spec_record::spec_from_json, Page, PageRequest, StoreResult, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorStatus {
    /// Not checked yet.
    Pending,
    Up,
    Down,
    /// The last check fell in a maintenance window.
    Maintenance,
}

impl MonitorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorStatus::Pending => "pending",
            MonitorStatus::Up => "up",
            MonitorStatus::Down => "down",
            MonitorStatus::Maintenance => "maintenance",
        }
    }

    pub(crate) fn parse(raw: &str) -> Self {
        match raw {
            "up" => MonitorStatus::Up,
            "down" => MonitorStatus::Down,
            "maintenance" => MonitorStatus::Maintenance,
            _ => MonitorStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorState {
    pub status: MonitorStatus,
    pub consecutive_failures: u32,
    pub last_check_at: Option<Timestamp>,
    pub last_failure: Option<String>,
    pub next_check_at: Timestamp,
    /// The incident open now, if any.
    pub open_incident: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredMonitor {
    pub id: String,
    pub tenant: TenantId,
    pub spec: MonitorSpec,
    /// Push monitors: the secret a heartbeat presents.
    pub push_token: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub state: MonitorState,
}

/// A check a prober has claimed: run it at `scheduled_at` (µs), then record it.
#[derive(Debug, Clone)]
pub struct DueCheck {
    pub tenant: TenantId,
    pub monitor_id: String,
    pub scheduled_at: i64,
    pub spec: MonitorSpec,
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub tenant: TenantId,
    pub monitor_id: String,
    /// The slot the check was claimed for; the result is dropped unless the
    /// monitor still waits for that slot (so a check is counted once even if two
    /// probers ran it). `None` for heartbeats, which come when they come.
    pub scheduled_at: Option<i64>,
    pub at: Timestamp,
    pub up: bool,
    /// Inside a maintenance window: counted as neither up nor down.
    pub maintenance: bool,
    pub latency_us: Option<u64>,
    pub status: Option<u16>,
    pub failure: Option<String>,
    /// When the next check is due (µs).
    pub next_check_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub id: String,
    pub monitor_id: String,
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub cause: Option<String>,
    pub notes: Option<String>,
}

/// An incident a recorded result opened or resolved (for notifications).
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentChange {
    Opened {
        tenant: TenantId,
        incident: Incident,
    },
    Resolved {
        tenant: TenantId,
        incident: Incident,
    },
}

/// How long each kind of record is kept (µs before "now" to prune at).
#[derive(Debug, Clone, Copy)]
pub struct MonitorRetention {
    pub checks_s: i64,
    pub minutes_s: i64,
    pub hours_s: i64,
    pub days_s: i64,
}

impl Default for MonitorRetention {
    /// Raw checks 7 days, minute rollups 2 days, hour rollups 32 days (so any
    /// window up to 31 days is answered from them), day rollups 400 days.
    fn default() -> Self {
        Self {
            checks_s: 7 * 86_400,
            minutes_s: 2 * 86_400,
            hours_s: 32 * 86_400,
            days_s: 400 * 86_400,
        }
    }
}

#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// A new monitor, first due on its phase after now; a name the tenant already
    /// uses is a [`crate::StoreError::Conflict`].
    async fn create_monitor(
        &self,
        tenant: &TenantId,
        spec: MonitorSpec,
    ) -> StoreResult<StoredMonitor>;
    async fn monitor(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredMonitor>>;
    async fn monitor_named(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Option<StoredMonitor>>;
    /// Oldest first.
    async fn list_monitors(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<StoredMonitor>>;
    /// Replaces the definition and reschedules it; its results and incidents stay.
    async fn replace_monitor(
        &self,
        tenant: &TenantId,
        id: &str,
        spec: MonitorSpec,
    ) -> StoreResult<Option<StoredMonitor>>;
    /// Removes the monitor with its results, rollups and incidents.
    async fn delete_monitor(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;
    /// A push monitor by id, whichever tenant owns it (a heartbeat carries the
    /// monitor's token, not a key).
    async fn push_monitor(&self, id: &str) -> StoreResult<Option<StoredMonitor>>;

    /// Claims up to `limit` checks due by `horizon` (µs) whose lease is free,
    /// across tenants, leasing each to `prober` until its slot plus its timeout
    /// plus `margin_us`. Earliest first.
    async fn claim_checks(
        &self,
        prober: &str,
        horizon: i64,
        margin_us: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueCheck>>;
    /// Records results (raw row, rollups, state, incidents) and frees their
    /// leases; returns the incidents they opened or resolved.
    async fn record_checks(&self, results: Vec<CheckResult>) -> StoreResult<Vec<IncidentChange>>;
    /// Gives claimed checks back unrun (a prober stopping): they are due again
    /// at once for any prober.
    async fn release_checks(&self, prober: &str) -> StoreResult<()>;

    /// The monitor's rollup buckets of `grain` starting in `[from, to)` (µs),
    /// oldest first.
    async fn monitor_tallies(
        &self,
        tenant: &TenantId,
        monitor_id: &str,
        grain: Grain,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<(i64, Tally)>>;
    /// Incidents of a monitor, newest first; with `overlapping`, only those open
    /// at some time in `[from, to)` (µs).
    async fn list_incidents(
        &self,
        tenant: &TenantId,
        monitor_id: &str,
        overlapping: Option<(i64, i64)>,
        page: PageRequest,
    ) -> StoreResult<Page<Incident>>;
    async fn incident(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Incident>>;
    /// Sets the cause and/or notes (`None` leaves a field as it is).
    async fn update_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        cause: Option<String>,
        notes: Option<String>,
    ) -> StoreResult<Option<Incident>>;
    /// Deletes up to `limit` rows (of every tenant) older than the retention
    /// allows at `now`; returns how many went.
    async fn prune_monitor_data(
        &self,
        now: Timestamp,
        retention: MonitorRetention,
        limit: u32,
    ) -> StoreResult<u64>;
}

/// A monitor's state as a result finds it.
#[derive(Debug, Clone)]
pub(crate) struct Before {
    pub next_check_at: i64,
    pub consecutive_failures: u32,
    pub open_incident: Option<String>,
    pub spec: MonitorSpec,
}

/// What recording a result changes.
#[derive(Debug, Clone)]
pub(crate) struct After {
    pub status: MonitorStatus,
    pub consecutive_failures: u32,
    pub open_incident: Option<String>,
    /// An incident to open (its id), cause = the failure.
    pub opens: Option<String>,
    /// The incident to resolve now.
    pub resolves: Option<String>,
    /// What the result adds to each of its rollup buckets.
    pub tally: Tally,
}

/// The one rule for what a result does: `None` when it is stale (its slot was
/// recorded already, or the monitor was rescheduled since it was claimed).
pub(crate) fn transition(before: &Before, result: &CheckResult) -> Option<After> {
    if result
        .scheduled_at
        .is_some_and(|slot| slot != before.next_check_at)
    {
        return None;
    }
    let mut tally = Tally::default();
    if result.maintenance {
        tally.maintenance = 1;
        return Some(After {
            status: MonitorStatus::Maintenance,
            consecutive_failures: 0,
            open_incident: before.open_incident.clone(),
            opens: None,
            resolves: None,
            tally,
        });
    }
    if let Some(latency) = result.latency_us {
        tally.latency.record(latency);
    }
    if result.up {
        tally.up = 1;
        return Some(After {
            status: MonitorStatus::Up,
            consecutive_failures: 0,
            open_incident: None,
            opens: None,
            resolves: before.open_incident.clone(),
            tally,
        });
    }
    tally.down = 1;
    tally.down_ms = u64::from(before.spec.interval_s) * 1000;
    let failures = before.consecutive_failures.saturating_add(1);
    let opens = (before.open_incident.is_none() && failures >= before.spec.incident_after)
        .then(|| uuid::Uuid::now_v7().to_string());
    Some(After {
        status: MonitorStatus::Down,
        consecutive_failures: failures,
        open_incident: opens.clone().or_else(|| before.open_incident.clone()),
        opens,
        resolves: None,
        tally,
    })
}

/// Where a new or rescheduled monitor is next due.
pub(crate) fn first_due(id: &str, spec: &MonitorSpec, now: i64) -> i64 {
    match spec.kind {
        keel_core::uptime::monitor::MonitorKind::Push => now + spec.period_micros(),
        _ => keel_core::uptime::first_slot(id, spec.interval_s, now),
    }
}

/// A rollup row's stored latency merged with a result's.
pub(crate) fn merged_latency(stored: Option<&str>, add: &LatencyHistogram) -> String {
    let mut h = stored
        .map(LatencyHistogram::from_sparse)
        .unwrap_or_default();
    h.merge(add);
    h.to_sparse()
}

pub(crate) fn grain_code(grain: Grain) -> i16 {
    match grain {
        Grain::Minute => 0,
        Grain::Hour => 1,
        Grain::Day => 2,
    }
}

/// A fresh push token: 24 random bytes in hex.
pub(crate) fn new_push_token() -> StoreResult<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| crate::StoreError::Internal(format!("randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A monitor row as read, before its times and spec are decoded.
pub(crate) struct MonitorRow {
    pub id: String,
    pub tenant: String,
    pub spec: String,
    pub push_token: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: String,
    pub consecutive_failures: u32,
    pub last_check_at: Option<i64>,
    pub last_failure: Option<String>,
    pub next_check_at: i64,
    pub open_incident: Option<String>,
}

impl MonitorRow {
    pub(crate) fn decode(self) -> StoreResult<StoredMonitor> {
        Ok(StoredMonitor {
            id: self.id,
            tenant: TenantId(self.tenant),
            spec: spec_from_json(&self.spec)?,
            push_token: self.push_token,
            created_at: from_micros(self.created_at)?,
            updated_at: from_micros(self.updated_at)?,
            state: MonitorState {
                status: MonitorStatus::parse(&self.status),
                consecutive_failures: self.consecutive_failures,
                last_check_at: self.last_check_at.map(from_micros).transpose()?,
                last_failure: self.last_failure,
                next_check_at: from_micros(self.next_check_at)?,
                open_incident: self.open_incident,
            },
        })
    }
}

pub(crate) type IncidentRow = (
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

pub(crate) fn decode_incident(row: IncidentRow) -> StoreResult<Incident> {
    let (id, monitor_id, opened_at, resolved_at, cause, notes) = row;
    Ok(Incident {
        id,
        monitor_id,
        opened_at: from_micros(opened_at)?,
        resolved_at: resolved_at.map(from_micros).transpose()?,
        cause,
        notes,
    })
}
