//! Monitors on PostgreSQL (migration 4): the same tables as SQLite's
//! (`sqlite::monitors`) behind row-level security. Probers on any number of
//! replicas claim due checks with `FOR UPDATE SKIP LOCKED` leases; a result
//! takes its monitor's row lock first, so results of one monitor (a check and a
//! heartbeat, say) are applied one after the other.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::{
    latency::LatencyHistogram,
    uptime::{
        monitor::{MonitorKind, MonitorSpec},
        Grain, Tally,
    },
};
use sqlx::{postgres::PgRow, Row};

use super::{
    errors::map,
    monitor_checks::{incident_row, record_one, INCIDENT_COLUMNS},
    PgStore, Rows,
};
use crate::{
    monitors::{
        first_due, grain_code, new_push_token, CheckResult, DueCheck, Incident, IncidentChange,
        MonitorRetention, MonitorRow, MonitorStore, StoredMonitor,
    },
    spec_record::{spec_from_json, spec_json},
    Page, PageRequest, StoreResult, TenantId,
};

const MONITOR_COLUMNS: &str = "id, tenant_id, spec, push_token, created_at, updated_at, status,
    consecutive_failures, last_check_at, last_failure, next_check_at, open_incident, created_at";

fn monitor_from(r: &PgRow) -> StoreResult<StoredMonitor> {
    MonitorRow {
        id: r.get(0),
        tenant: r.get(1),
        spec: r.get(2),
        push_token: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
        status: r.get(6),
        consecutive_failures: r.get::<i32, _>(7) as u32,
        last_check_at: r.get(8),
        last_failure: r.get(9),
        next_check_at: r.get(10),
        open_incident: r.get(11),
    }
    .decode()
}

#[async_trait]
impl MonitorStore for PgStore {
    async fn create_monitor(
        &self,
        tenant: &TenantId,
        spec: MonitorSpec,
    ) -> StoreResult<StoredMonitor> {
        let now = self.now_micros();
        let id = uuid::Uuid::now_v7().to_string();
        let token = match spec.kind {
            MonitorKind::Push => Some(new_push_token()?),
            _ => None,
        };
        let row = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(&format!(
                    "INSERT INTO monitors (id, tenant_id, name, spec, interval_s, timeout_ms,
                         push_token, created_at, updated_at, next_check_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
                     RETURNING {MONITOR_COLUMNS}"
                ))
                .bind(&id)
                .bind(tenant.as_str())
                .bind(&spec.name)
                .bind(spec_json(&spec)?)
                .bind(spec.interval_s as i32)
                .bind(spec.timeout_ms as i32)
                .bind(token)
                .bind(now)
                .bind(first_due(&id, &spec, now)),
            )
            .await?
            .ok_or_else(|| crate::StoreError::Internal("insert returned nothing".into()))?;
        monitor_from(&row)
    }

    async fn monitor(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredMonitor>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {MONITOR_COLUMNS} FROM monitors WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.as_str())
            .bind(id),
        )
        .await?
        .as_ref()
        .map(monitor_from)
        .transpose()
    }

    async fn monitor_named(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Option<StoredMonitor>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {MONITOR_COLUMNS} FROM monitors WHERE tenant_id = $1 AND name = $2"
            ))
            .bind(tenant.as_str())
            .bind(name),
        )
        .await?
        .as_ref()
        .map(monitor_from)
        .transpose()
    }

    async fn list_monitors(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<StoredMonitor>> {
        // Ids are UUIDv7: ordered by creation.
        let after = page.cursor.clone().unwrap_or_default();
        let rows = self
            .fetch_all_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(&format!(
                    "SELECT {MONITOR_COLUMNS} FROM monitors WHERE tenant_id = $1 AND id > $2
                     ORDER BY id LIMIT $3"
                ))
                .bind(tenant.as_str())
                .bind(after)
                .bind(i64::from(page.limit) + 1),
            )
            .await?;
        let monitors = rows
            .iter()
            .map(monitor_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(monitors, page.limit, |m| m.id.clone()))
    }

    async fn replace_monitor(
        &self,
        tenant: &TenantId,
        id: &str,
        spec: MonitorSpec,
    ) -> StoreResult<Option<StoredMonitor>> {
        let now = self.now_micros();
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "UPDATE monitors SET name = $3, spec = $4, interval_s = $5, timeout_ms = $6,
                     updated_at = $7, next_check_at = $8, lease_owner = NULL, lease_until = NULL,
                     push_token = CASE WHEN $9 THEN coalesce(push_token, $10) END
                 WHERE tenant_id = $1 AND id = $2
                 RETURNING {MONITOR_COLUMNS}"
            ))
            .bind(tenant.as_str())
            .bind(id)
            .bind(&spec.name)
            .bind(spec_json(&spec)?)
            .bind(spec.interval_s as i32)
            .bind(spec.timeout_ms as i32)
            .bind(now)
            .bind(first_due(id, &spec, now))
            .bind(spec.kind == MonitorKind::Push)
            .bind(new_push_token()?),
        )
        .await?
        .as_ref()
        .map(monitor_from)
        .transpose()
    }

    async fn delete_monitor(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        let gone = sqlx::query("DELETE FROM monitors WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        for table in ["monitor_checks", "monitor_rollups", "monitor_incidents"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND monitor_id = $2"
            ))
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(gone > 0)
    }

    async fn push_monitor(&self, id: &str) -> StoreResult<Option<StoredMonitor>> {
        self.fetch_optional_alone(
            Rows::OfAllTenants("find a push monitor by id"),
            sqlx::query(&format!(
                "SELECT {MONITOR_COLUMNS} FROM monitors WHERE id = $1 AND push_token IS NOT NULL"
            ))
            .bind(id),
        )
        .await?
        .as_ref()
        .map(monitor_from)
        .transpose()
    }

    async fn claim_checks(
        &self,
        prober: &str,
        horizon: i64,
        margin_us: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueCheck>> {
        let rows = self
            .fetch_all_alone(
                Rows::OfAllTenants("claim due monitor checks"),
                sqlx::query(
                    "UPDATE monitors m SET lease_owner = $1,
                         lease_until = GREATEST(m.next_check_at, $2) + m.timeout_ms::bigint * 1000 + $4
                     FROM (SELECT id FROM monitors
                           WHERE next_check_at <= $3 AND (lease_until IS NULL OR lease_until < $2)
                           ORDER BY next_check_at LIMIT $5 FOR UPDATE SKIP LOCKED) due
                     WHERE m.id = due.id
                     RETURNING m.tenant_id, m.id, m.next_check_at, m.spec",
                )
                .bind(prober)
                .bind(self.now_micros())
                .bind(horizon)
                .bind(margin_us)
                .bind(i64::from(limit)),
            )
            .await?;
        let mut due = rows
            .iter()
            .map(|r| {
                Ok(DueCheck {
                    tenant: TenantId(r.get(0)),
                    monitor_id: r.get(1),
                    scheduled_at: r.get(2),
                    spec: spec_from_json(r.get(3))?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        due.sort_by_key(|d| d.scheduled_at);
        Ok(due)
    }

    async fn record_checks(&self, results: Vec<CheckResult>) -> StoreResult<Vec<IncidentChange>> {
        let mut changes = Vec::new();
        let mut tx = self.all_tenants("record monitor checks").await?;
        for result in &results {
            changes.extend(record_one(&mut tx, result).await?);
        }
        tx.commit().await.map_err(map)?;
        Ok(changes)
    }

    async fn release_checks(&self, prober: &str) -> StoreResult<()> {
        self.execute_alone(
            Rows::OfAllTenants("release a prober's checks"),
            sqlx::query(
                "UPDATE monitors SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
            )
            .bind(prober),
        )
        .await?;
        Ok(())
    }

    async fn monitor_tallies(
        &self,
        tenant: &TenantId,
        monitor_id: &str,
        grain: Grain,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<(i64, Tally)>> {
        let rows = self
            .fetch_all_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "SELECT bucket, up, down, maintenance, down_ms, latency FROM monitor_rollups
                     WHERE tenant_id = $1 AND monitor_id = $2 AND grain = $3
                       AND bucket >= $4 AND bucket < $5
                     ORDER BY bucket",
                )
                .bind(tenant.as_str())
                .bind(monitor_id)
                .bind(grain_code(grain))
                .bind(from)
                .bind(to),
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<i64, _>(0),
                    Tally {
                        up: r.get::<i64, _>(1) as u64,
                        down: r.get::<i64, _>(2) as u64,
                        maintenance: r.get::<i64, _>(3) as u64,
                        down_ms: r.get::<i64, _>(4) as u64,
                        latency: LatencyHistogram::from_sparse(r.get(5)),
                    },
                )
            })
            .collect())
    }

    async fn list_incidents(
        &self,
        tenant: &TenantId,
        monitor_id: &str,
        overlapping: Option<(i64, i64)>,
        page: PageRequest,
    ) -> StoreResult<Page<Incident>> {
        // Ids are UUIDv7: newest first is descending id.
        let before = page.cursor.clone().unwrap_or_else(|| "~".into());
        let (from, to) = overlapping.unwrap_or((i64::MIN, i64::MAX));
        let rows = self
            .fetch_all_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(&format!(
                    "SELECT {INCIDENT_COLUMNS} FROM monitor_incidents
                     WHERE tenant_id = $1 AND monitor_id = $2 AND id < $3
                       AND opened_at < $5 AND (resolved_at IS NULL OR resolved_at >= $4)
                     ORDER BY id DESC LIMIT $6"
                ))
                .bind(tenant.as_str())
                .bind(monitor_id)
                .bind(before)
                .bind(from)
                .bind(to)
                .bind(i64::from(page.limit) + 1),
            )
            .await?;
        let incidents = rows
            .iter()
            .map(incident_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(incidents, page.limit, |i| {
            i.id.clone()
        }))
    }

    async fn incident(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Incident>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM monitor_incidents WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.as_str())
            .bind(id),
        )
        .await?
        .as_ref()
        .map(incident_row)
        .transpose()
    }

    async fn update_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        cause: Option<String>,
        notes: Option<String>,
    ) -> StoreResult<Option<Incident>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "UPDATE monitor_incidents SET cause = coalesce($3, cause), notes = coalesce($4, notes)
                 WHERE tenant_id = $1 AND id = $2 RETURNING {INCIDENT_COLUMNS}"
            ))
            .bind(tenant.as_str())
            .bind(id)
            .bind(cause)
            .bind(notes),
        )
        .await?
        .as_ref()
        .map(incident_row)
        .transpose()
    }

    async fn prune_monitor_data(
        &self,
        now: Timestamp,
        retention: MonitorRetention,
        limit: u32,
    ) -> StoreResult<u64> {
        let now = now.as_microsecond();
        let mut tx = self.all_tenants("prune monitor results").await?;
        let mut gone = sqlx::query(
            "DELETE FROM monitor_checks WHERE id IN
             (SELECT id FROM monitor_checks WHERE at < $1 LIMIT $2)",
        )
        .bind(now - retention.checks_s * 1_000_000)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(map)?
        .rows_affected();
        for (grain, keep_s) in [
            (Grain::Minute, retention.minutes_s),
            (Grain::Hour, retention.hours_s),
            (Grain::Day, retention.days_s),
        ] {
            let left = i64::from(limit) - gone as i64;
            if left <= 0 {
                break;
            }
            gone += sqlx::query(
                "DELETE FROM monitor_rollups WHERE ctid IN
                 (SELECT ctid FROM monitor_rollups WHERE grain = $1 AND bucket < $2 LIMIT $3)",
            )
            .bind(grain_code(grain))
            .bind(now - keep_s * 1_000_000)
            .bind(left)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        }
        tx.commit().await.map_err(map)?;
        Ok(gone)
    }
}
