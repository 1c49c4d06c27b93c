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
use sqlx::{postgres::PgRow, Postgres, Row, Transaction};

use super::{errors::map, PgStore, Rows};
use crate::{
    monitors::{
        decode_incident, first_due, grain_code, merged_latency, new_push_token, spec_from,
        spec_text, transition, Before, CheckResult, DueCheck, Incident, IncidentChange,
        MonitorRetention, MonitorRow, MonitorStore, StoredMonitor,
    },
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

const INCIDENT_COLUMNS: &str = "id, monitor_id, opened_at, resolved_at, cause, notes";

fn incident_row(r: &PgRow) -> StoreResult<Incident> {
    decode_incident((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
}

async fn one_incident(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    id: &str,
) -> StoreResult<Option<Incident>> {
    sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM monitor_incidents WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map)?
    .as_ref()
    .map(incident_row)
    .transpose()
}

async fn add_to_rollups(
    tx: &mut Transaction<'static, Postgres>,
    result: &CheckResult,
    tally: &Tally,
) -> StoreResult<()> {
    let at = result.at.as_microsecond();
    for grain in Grain::ALL {
        let bucket = grain.bucket(at);
        // The monitor's row lock (taken by the caller) serialises these.
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT latency FROM monitor_rollups
             WHERE tenant_id = $1 AND monitor_id = $2 AND grain = $3 AND bucket = $4",
        )
        .bind(result.tenant.as_str())
        .bind(&result.monitor_id)
        .bind(grain_code(grain))
        .bind(bucket)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map)?;
        sqlx::query(
            "INSERT INTO monitor_rollups
                 (tenant_id, monitor_id, grain, bucket, up, down, maintenance, down_ms, latency)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, monitor_id, grain, bucket) DO UPDATE SET
                 up = monitor_rollups.up + excluded.up,
                 down = monitor_rollups.down + excluded.down,
                 maintenance = monitor_rollups.maintenance + excluded.maintenance,
                 down_ms = monitor_rollups.down_ms + excluded.down_ms,
                 latency = excluded.latency",
        )
        .bind(result.tenant.as_str())
        .bind(&result.monitor_id)
        .bind(grain_code(grain))
        .bind(bucket)
        .bind(tally.up as i64)
        .bind(tally.down as i64)
        .bind(tally.maintenance as i64)
        .bind(tally.down_ms as i64)
        .bind(merged_latency(stored.as_deref(), &tally.latency))
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    }
    Ok(())
}

async fn record_one(
    tx: &mut Transaction<'static, Postgres>,
    result: &CheckResult,
) -> StoreResult<Vec<IncidentChange>> {
    let tenant = result.tenant.as_str();
    let Some(row) = sqlx::query(
        "SELECT next_check_at, consecutive_failures, open_incident, spec FROM monitors
         WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tenant)
    .bind(&result.monitor_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map)?
    else {
        return Ok(Vec::new()); // deleted since it was claimed
    };
    let before = Before {
        next_check_at: row.get(0),
        consecutive_failures: row.get::<i32, _>(1) as u32,
        open_incident: row.get(2),
        spec: spec_from(row.get(3))?,
    };
    let Some(after) = transition(&before, result) else {
        return Ok(Vec::new());
    };
    let at = result.at.as_microsecond();
    sqlx::query(
        "INSERT INTO monitor_checks
             (tenant_id, monitor_id, at, up, maintenance, latency_us, status, failure)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant)
    .bind(&result.monitor_id)
    .bind(at)
    .bind(result.up)
    .bind(result.maintenance)
    .bind(result.latency_us.map(|l| l as i64))
    .bind(result.status.map(i32::from))
    .bind(&result.failure)
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    add_to_rollups(tx, result, &after.tally).await?;
    if !result.maintenance {
        super::slos::count_check(tx, tenant, &result.monitor_id, at, result.up).await?;
    }
    let mut changes = Vec::new();
    if let Some(id) = &after.opens {
        sqlx::query(
            "INSERT INTO monitor_incidents (id, tenant_id, monitor_id, opened_at, cause)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(tenant)
        .bind(&result.monitor_id)
        .bind(at)
        .bind(&result.failure)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
        if let Some(incident) = one_incident(tx, tenant, id).await? {
            changes.push(IncidentChange::Opened {
                tenant: result.tenant.clone(),
                incident,
            });
        }
    }
    if let Some(id) = &after.resolves {
        sqlx::query(
            "UPDATE monitor_incidents SET resolved_at = $3 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
        if let Some(incident) = one_incident(tx, tenant, id).await? {
            changes.push(IncidentChange::Resolved {
                tenant: result.tenant.clone(),
                incident,
            });
        }
    }
    sqlx::query(
        "UPDATE monitors SET status = $3, consecutive_failures = $4, last_check_at = $5,
             last_failure = $6, open_incident = $7, next_check_at = $8,
             lease_owner = NULL, lease_until = NULL
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(&result.monitor_id)
    .bind(after.status.as_str())
    .bind(after.consecutive_failures as i32)
    .bind(at)
    .bind(if result.up {
        None
    } else {
        result.failure.clone()
    })
    .bind(&after.open_incident)
    .bind(result.next_check_at)
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(changes)
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
                .bind(spec_text(&spec)?)
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
            .bind(spec_text(&spec)?)
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
                    spec: spec_from(r.get(3))?,
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
