//! Monitors on SQLite (migration 8): definitions with their schedule and state in
//! `monitors`, results in `monitor_checks`, rollups in `monitor_rollups`,
//! incidents in `monitor_incidents`. Every write goes through the writer's group
//! commit, so a claim, or a batch of results, is one durable step.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::latency::LatencyHistogram;
use keel_core::uptime::{monitor::MonitorSpec, Grain, Tally};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{
    monitor_checks::{incident_from, one_incident, record_one},
    SqliteStore,
};
use crate::{
    monitors::{
        decode_incident, first_due, grain_code, new_push_token, CheckResult, DueCheck, Incident,
        IncidentChange, IncidentRow, MonitorRetention, MonitorRow, MonitorStore, StoredMonitor,
    },
    spec_record::{spec_from_json, spec_json},
    Page, PageRequest, StoreResult, TenantId,
};

const MONITOR_COLUMNS: &str = "id, tenant_id, spec, push_token, created_at, updated_at, status,
    consecutive_failures, last_check_at, last_failure, next_check_at, open_incident, rowid";

fn monitor_from(r: &Row) -> rusqlite::Result<(i64, MonitorRow)> {
    Ok((
        r.get(12)?,
        MonitorRow {
            id: r.get(0)?,
            tenant: r.get(1)?,
            spec: r.get(2)?,
            push_token: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
            status: r.get(6)?,
            consecutive_failures: r.get(7)?,
            last_check_at: r.get(8)?,
            last_failure: r.get(9)?,
            next_check_at: r.get(10)?,
            open_incident: r.get(11)?,
        },
    ))
}

fn one_monitor(conn: &Connection, tenant: &str, id: &str) -> StoreResult<Option<StoredMonitor>> {
    conn.prepare_cached(&format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors WHERE tenant_id = ?1 AND id = ?2"
    ))?
    .query_row([tenant, id], monitor_from)
    .optional()?
    .map(|(_, row)| row.decode())
    .transpose()
}

#[async_trait]
impl MonitorStore for SqliteStore {
    async fn create_monitor(
        &self,
        tenant: &TenantId,
        spec: MonitorSpec,
    ) -> StoreResult<StoredMonitor> {
        let tenant = tenant.0.clone();
        let now = self.clock.now().as_microsecond();
        let id = uuid::Uuid::now_v7().to_string();
        let token = match spec.kind {
            keel_core::uptime::monitor::MonitorKind::Push => Some(new_push_token()?),
            _ => None,
        };
        let first = first_due(&id, &spec, now);
        let text = spec_json(&spec)?;
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO monitors (id, tenant_id, name, spec, interval_s, timeout_ms,
                         push_token, created_at, updated_at, next_check_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
                )?
                .execute(params![
                    id,
                    tenant,
                    spec.name,
                    text,
                    spec.interval_s,
                    spec.timeout_ms,
                    token,
                    now,
                    first
                ])?;
                one_monitor(conn, &tenant, &id)?
                    .ok_or_else(|| crate::StoreError::Internal("monitor vanished".into()))
            })
            .await
    }

    async fn monitor(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredMonitor>> {
        self.readers
            .read(|conn| one_monitor(conn, tenant.as_str(), id))
    }

    async fn monitor_named(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Option<StoredMonitor>> {
        self.readers.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {MONITOR_COLUMNS} FROM monitors WHERE tenant_id = ?1 AND name = ?2"
            ))?
            .query_row([tenant.as_str(), name], monitor_from)
            .optional()?
            .map(|(_, row)| row.decode())
            .transpose()
        })
    }

    async fn list_monitors(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<StoredMonitor>> {
        let after = match &page.cursor {
            None => 0,
            Some(_) => page.before_seq()?,
        };
        let rows = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {MONITOR_COLUMNS} FROM monitors WHERE tenant_id = ?1 AND rowid > ?2
                     ORDER BY rowid LIMIT ?3"
                ))?
                .query_map(
                    params![tenant.as_str(), after, i64::from(page.limit) + 1],
                    monitor_from,
                )?
                .collect::<Result<Vec<_>, _>>()?)
        })?;
        let page = Page::from_overfetch(rows, page.limit, |(seq, _)| seq.to_string());
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(_, row)| row.decode())
                .collect::<StoreResult<_>>()?,
            next_cursor: page.next_cursor,
        })
    }

    async fn replace_monitor(
        &self,
        tenant: &TenantId,
        id: &str,
        spec: MonitorSpec,
    ) -> StoreResult<Option<StoredMonitor>> {
        let (tenant, id) = (tenant.0.clone(), id.to_owned());
        let now = self.clock.now().as_microsecond();
        let next = first_due(&id, &spec, now);
        let text = spec_json(&spec)?;
        let token = new_push_token()?;
        self.writer
            .execute(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE monitors SET name = ?3, spec = ?4, interval_s = ?5, timeout_ms = ?6,
                             updated_at = ?7, next_check_at = ?8, lease_owner = NULL,
                             lease_until = NULL,
                             push_token = CASE WHEN ?9 THEN coalesce(push_token, ?10) END
                         WHERE tenant_id = ?1 AND id = ?2",
                    )?
                    .execute(params![
                        tenant,
                        id,
                        spec.name,
                        text,
                        spec.interval_s,
                        spec.timeout_ms,
                        now,
                        next,
                        spec.kind == keel_core::uptime::monitor::MonitorKind::Push,
                        token
                    ])?;
                if changed == 0 {
                    return Ok(None);
                }
                one_monitor(conn, &tenant, &id)
            })
            .await
    }

    async fn delete_monitor(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.0.clone(), id.to_owned());
        self.writer
            .execute(move |conn| {
                let gone = conn
                    .prepare_cached("DELETE FROM monitors WHERE tenant_id = ?1 AND id = ?2")?
                    .execute([&tenant, &id])?;
                for table in ["monitor_checks", "monitor_rollups", "monitor_incidents"] {
                    conn.prepare_cached(&format!(
                        "DELETE FROM {table} WHERE tenant_id = ?1 AND monitor_id = ?2"
                    ))?
                    .execute([&tenant, &id])?;
                }
                Ok(gone > 0)
            })
            .await
    }

    async fn push_monitor(&self, id: &str) -> StoreResult<Option<StoredMonitor>> {
        self.readers.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {MONITOR_COLUMNS} FROM monitors WHERE id = ?1 AND push_token IS NOT NULL"
            ))?
            .query_row([id], monitor_from)
            .optional()?
            .map(|(_, row)| row.decode())
            .transpose()
        })
    }

    async fn claim_checks(
        &self,
        prober: &str,
        horizon: i64,
        margin_us: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueCheck>> {
        let prober = prober.to_owned();
        let now = self.clock.now().as_microsecond();
        // Most polls find nothing due: look on a reader first, so an idle prober
        // costs no commits.
        let any_due = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM monitors WHERE next_check_at <= ?1
                       AND (lease_until IS NULL OR lease_until < ?2) LIMIT 1",
                )?
                .query_row(params![horizon, now], |_| Ok(()))
                .optional()?
                .is_some())
        })?;
        if !any_due {
            return Ok(Vec::new());
        }
        self.writer
            .execute(move |conn| {
                let rows: Vec<(String, String, i64, String)> = conn
                    .prepare_cached(
                        "UPDATE monitors
                         SET lease_owner = ?1,
                             lease_until = max(next_check_at, ?2) + timeout_ms * 1000 + ?4
                         WHERE id IN (SELECT id FROM monitors
                                      WHERE next_check_at <= ?3
                                        AND (lease_until IS NULL OR lease_until < ?2)
                                      ORDER BY next_check_at LIMIT ?5)
                         RETURNING tenant_id, id, next_check_at, spec",
                    )?
                    .query_map(params![prober, now, horizon, margin_us, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                let mut due = rows
                    .into_iter()
                    .map(|(tenant, monitor_id, scheduled_at, spec)| {
                        Ok(DueCheck {
                            tenant: TenantId(tenant),
                            monitor_id,
                            scheduled_at,
                            spec: spec_from_json(&spec)?,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                due.sort_by_key(|d| d.scheduled_at);
                Ok(due)
            })
            .await
    }

    async fn record_checks(&self, results: Vec<CheckResult>) -> StoreResult<Vec<IncidentChange>> {
        self.writer
            .execute(move |conn| {
                let mut changes = Vec::new();
                for result in &results {
                    changes.extend(record_one(conn, result)?);
                }
                Ok(changes)
            })
            .await
    }

    async fn release_checks(&self, prober: &str) -> StoreResult<()> {
        let prober = prober.to_owned();
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "UPDATE monitors SET lease_owner = NULL, lease_until = NULL
                     WHERE lease_owner = ?1",
                )?
                .execute([prober])?;
                Ok(())
            })
            .await
    }

    async fn monitor_tallies(
        &self,
        tenant: &TenantId,
        monitor_id: &str,
        grain: Grain,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<(i64, Tally)>> {
        self.readers.read(|conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT bucket, up, down, maintenance, down_ms, latency FROM monitor_rollups
                     WHERE tenant_id = ?1 AND monitor_id = ?2 AND grain = ?3
                       AND bucket >= ?4 AND bucket < ?5
                     ORDER BY bucket",
                )?
                .query_map(
                    params![tenant.as_str(), monitor_id, grain_code(grain), from, to],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            Tally {
                                up: r.get::<_, i64>(1)? as u64,
                                down: r.get::<_, i64>(2)? as u64,
                                maintenance: r.get::<_, i64>(3)? as u64,
                                down_ms: r.get::<_, i64>(4)? as u64,
                                latency: LatencyHistogram::from_sparse(&r.get::<_, String>(5)?),
                            },
                        ))
                    },
                )?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    async fn list_incidents(
        &self,
        tenant: &TenantId,
        monitor_id: &str,
        overlapping: Option<(i64, i64)>,
        page: PageRequest,
    ) -> StoreResult<Page<Incident>> {
        let before = page.before_seq()?;
        let (from, to) = overlapping.unwrap_or((i64::MIN, i64::MAX));
        let rows: Vec<(i64, IncidentRow)> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, monitor_id, opened_at, resolved_at, cause, notes, rowid
                     FROM monitor_incidents
                     WHERE tenant_id = ?1 AND monitor_id = ?2 AND rowid < ?3
                       AND opened_at < ?5 AND (resolved_at IS NULL OR resolved_at >= ?4)
                     ORDER BY rowid DESC LIMIT ?6",
                )?
                .query_map(
                    params![
                        tenant.as_str(),
                        monitor_id,
                        before,
                        from,
                        to,
                        i64::from(page.limit) + 1
                    ],
                    |r| Ok((r.get(6)?, incident_from(r)?)),
                )?
                .collect::<Result<_, _>>()?)
        })?;
        let page = Page::from_seq_rows(rows, page.limit);
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(decode_incident)
                .collect::<StoreResult<_>>()?,
            next_cursor: page.next_cursor,
        })
    }

    async fn incident(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Incident>> {
        self.readers
            .read(|conn| one_incident(conn, tenant.as_str(), id))
    }

    async fn update_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        cause: Option<String>,
        notes: Option<String>,
    ) -> StoreResult<Option<Incident>> {
        let (tenant, id) = (tenant.0.clone(), id.to_owned());
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "UPDATE monitor_incidents SET cause = coalesce(?3, cause),
                         notes = coalesce(?4, notes)
                     WHERE tenant_id = ?1 AND id = ?2",
                )?
                .execute(params![tenant, id, cause, notes])?;
                one_incident(conn, &tenant, &id)
            })
            .await
    }

    async fn prune_monitor_data(
        &self,
        now: Timestamp,
        retention: MonitorRetention,
        limit: u32,
    ) -> StoreResult<u64> {
        let now = now.as_microsecond();
        self.writer
            .execute(move |conn| {
                let mut gone = conn
                    .prepare_cached(
                        "DELETE FROM monitor_checks WHERE id IN
                         (SELECT id FROM monitor_checks WHERE at < ?1 LIMIT ?2)",
                    )?
                    .execute(params![now - retention.checks_s * 1_000_000, limit])?
                    as u64;
                for (grain, keep_s) in [
                    (Grain::Minute, retention.minutes_s),
                    (Grain::Hour, retention.hours_s),
                    (Grain::Day, retention.days_s),
                ] {
                    let left = i64::from(limit) - gone as i64;
                    if left <= 0 {
                        break;
                    }
                    gone += conn
                        .prepare_cached(
                            "DELETE FROM monitor_rollups
                             WHERE (tenant_id, monitor_id, grain, bucket) IN
                             (SELECT tenant_id, monitor_id, grain, bucket FROM monitor_rollups
                              WHERE grain = ?1 AND bucket < ?2 LIMIT ?3)",
                        )?
                        .execute(params![grain_code(grain), now - keep_s * 1_000_000, left])?
                        as u64;
                }
                Ok(gone)
            })
            .await
    }
}
