//! SLOs on PostgreSQL (migration 5): the same tables as SQLite's
//! (`sqlite::slos`) behind row-level security. Counts are added with
//! `ON CONFLICT … DO UPDATE`, so API replicas flushing the same minute add up
//! rather than overwrite; the partial unique index on open alerts makes
//! evaluators on many replicas open (and notify) each alert once.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::slo::{
    budget::{Counts, Severity},
    SloSpec,
};
use sqlx::{postgres::PgRow, Postgres, Row, Transaction};

use super::{errors::map, spec_record_from, PgStore, Rows};
use crate::{
    slos::{decode_alert, SloAlert, SloCount, SloStore, StoredSlo, MINUTE_US},
    spec_record::{spec_json, RECORD_COLUMNS as SLO_COLUMNS},
    Page, PageRequest, StoreResult, TenantId,
};

const ALERT_COLUMNS: &str = "id, slo_id, severity, windows, opened_at, resolved_at";

fn alert_from(r: &PgRow) -> StoreResult<SloAlert> {
    decode_alert((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
}

/// Adds a recorded check to the minute counts of every SLO on its monitor (in
/// the transaction that records the check).
pub(super) async fn count_check(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    monitor_id: &str,
    at: i64,
    up: bool,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO slo_counts (tenant_id, slo_id, minute, good, total)
         SELECT tenant_id, id, $3, $4, 1 FROM slos WHERE tenant_id = $1 AND monitor_id = $2
         ON CONFLICT (tenant_id, slo_id, minute) DO UPDATE SET
             good = slo_counts.good + excluded.good, total = slo_counts.total + 1",
    )
    .bind(tenant)
    .bind(monitor_id)
    .bind(at.div_euclid(MINUTE_US) * MINUTE_US)
    .bind(i64::from(up))
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl SloStore for PgStore {
    async fn create_slo(&self, tenant: &TenantId, spec: SloSpec) -> StoreResult<StoredSlo> {
        let now = self.now_micros();
        let row = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(&format!(
                    "INSERT INTO slos (id, tenant_id, name, spec, monitor_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SLO_COLUMNS}"
                ))
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(tenant.as_str())
                .bind(&spec.name)
                .bind(spec_json(&spec)?)
                .bind(spec.monitor())
                .bind(now),
            )
            .await?
            .ok_or_else(|| crate::StoreError::Internal("insert returned nothing".into()))?;
        spec_record_from(&row)
    }

    async fn slo(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredSlo>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {SLO_COLUMNS} FROM slos WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.as_str())
            .bind(id),
        )
        .await?
        .as_ref()
        .map(spec_record_from)
        .transpose()
    }

    async fn list_slos(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<StoredSlo>> {
        let rows = self
            .fetch_all_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(&format!(
                    "SELECT {SLO_COLUMNS} FROM slos WHERE tenant_id = $1 AND id > $2
                     ORDER BY id LIMIT $3"
                ))
                .bind(tenant.as_str())
                .bind(page.cursor.clone().unwrap_or_default())
                .bind(i64::from(page.limit) + 1),
            )
            .await?;
        let slos = rows
            .iter()
            .map(spec_record_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(slos, page.limit, |s| s.id.clone()))
    }

    async fn all_slos(&self) -> StoreResult<Vec<StoredSlo>> {
        self.fetch_all_alone(
            Rows::OfAllTenants("evaluate and count every SLO"),
            sqlx::query(&format!("SELECT {SLO_COLUMNS} FROM slos ORDER BY id")),
        )
        .await?
        .iter()
        .map(spec_record_from)
        .collect()
    }

    async fn delete_slo(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        let gone = sqlx::query("DELETE FROM slos WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        for table in ["slo_counts", "slo_alerts"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND slo_id = $2"
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

    async fn add_slo_counts(&self, counts: Vec<SloCount>) -> StoreResult<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.all_tenants("add request SLO counts").await?;
        for c in &counts {
            sqlx::query(
                "INSERT INTO slo_counts (tenant_id, slo_id, minute, good, total)
                 SELECT tenant_id, id, $3, $4, $5 FROM slos WHERE tenant_id = $1 AND id = $2
                 ON CONFLICT (tenant_id, slo_id, minute) DO UPDATE SET
                     good = slo_counts.good + excluded.good,
                     total = slo_counts.total + excluded.total",
            )
            .bind(c.tenant.as_str())
            .bind(&c.slo_id)
            .bind(c.minute)
            .bind(c.counts.good as i64)
            .bind(c.counts.total as i64)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        tx.commit().await.map_err(map)
    }

    async fn slo_counts(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        ranges: &[(i64, i64)],
    ) -> StoreResult<Vec<Counts>> {
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        let mut sums = Vec::with_capacity(ranges.len());
        for &(from, to) in ranges {
            let row = sqlx::query(
                "SELECT coalesce(sum(good), 0)::BIGINT, coalesce(sum(total), 0)::BIGINT
                 FROM slo_counts
                 WHERE tenant_id = $1 AND slo_id = $2 AND minute >= $3 AND minute < $4",
            )
            .bind(tenant.as_str())
            .bind(slo_id)
            .bind(from)
            .bind(to)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            sums.push(Counts {
                good: row.get::<i64, _>(0) as u64,
                total: row.get::<i64, _>(1) as u64,
            });
        }
        tx.commit().await.map_err(map)?;
        Ok(sums)
    }

    async fn open_slo_alert(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        severity: Severity,
        windows: &str,
        at: Timestamp,
    ) -> StoreResult<Option<SloAlert>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                // One statement, so the alert and its notice commit together.
                "WITH alert AS (
                     INSERT INTO slo_alerts (id, tenant_id, slo_id, severity, windows, opened_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT DO NOTHING RETURNING tenant_id, {ALERT_COLUMNS}),
                 notice AS (
                     INSERT INTO notice_outbox (tenant_id, kind, subject_id, event)
                     SELECT tenant_id, 'slo_alert', id, 'opened' FROM alert)
                 SELECT {ALERT_COLUMNS} FROM alert"
            ))
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant.as_str())
            .bind(slo_id)
            .bind(severity.as_str())
            .bind(windows)
            .bind(at.as_microsecond()),
        )
        .await?
        .as_ref()
        .map(alert_from)
        .transpose()
    }

    async fn resolve_slo_alert(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        severity: Severity,
        at: Timestamp,
    ) -> StoreResult<Option<SloAlert>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "WITH alert AS (
                     UPDATE slo_alerts SET resolved_at = $4
                     WHERE tenant_id = $1 AND slo_id = $2 AND severity = $3
                       AND resolved_at IS NULL
                     RETURNING tenant_id, {ALERT_COLUMNS}),
                 notice AS (
                     INSERT INTO notice_outbox (tenant_id, kind, subject_id, event)
                     SELECT tenant_id, 'slo_alert', id, 'resolved' FROM alert)
                 SELECT {ALERT_COLUMNS} FROM alert"
            ))
            .bind(tenant.as_str())
            .bind(slo_id)
            .bind(severity.as_str())
            .bind(at.as_microsecond()),
        )
        .await?
        .as_ref()
        .map(alert_from)
        .transpose()
    }

    async fn slo_alert(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<SloAlert>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {ALERT_COLUMNS} FROM slo_alerts WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.as_str())
            .bind(id),
        )
        .await?
        .as_ref()
        .map(alert_from)
        .transpose()
    }

    async fn slo_alerts(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<SloAlert>> {
        self.fetch_all_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {ALERT_COLUMNS} FROM slo_alerts WHERE tenant_id = $1 AND slo_id = $2
                 ORDER BY opened_at DESC, id DESC LIMIT $3"
            ))
            .bind(tenant.as_str())
            .bind(slo_id)
            .bind(i64::from(limit)),
        )
        .await?
        .iter()
        .map(alert_from)
        .collect()
    }

    async fn prune_slo_counts(&self, before: i64, limit: u32) -> StoreResult<u64> {
        self.execute_alone(
            Rows::OfAllTenants("prune SLO counts"),
            sqlx::query(
                "DELETE FROM slo_counts WHERE ctid IN
                 (SELECT ctid FROM slo_counts WHERE minute < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(i64::from(limit)),
        )
        .await
    }
}
