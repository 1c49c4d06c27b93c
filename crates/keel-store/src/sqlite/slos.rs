//! SLOs on SQLite (migration 9): definitions in `slos`, minute counts in
//! `slo_counts`, alerts in `slo_alerts` (a partial unique index keeps one open
//! per SLO and severity).

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::slo::{
    budget::{Counts, Severity},
    SloSpec,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::{notice_outbox::queue_notice, spec_records, SqliteStore};
use crate::{
    notice_outbox::{NoticeEvent, NoticeSubject},
    slos::{decode_alert, AlertRow, SloAlert, SloCount, SloStore, StoredSlo},
    spec_record::{spec_json, RECORD_COLUMNS as SLO_COLUMNS},
    Page, PageRequest, StoreResult, TenantId,
};

const ALERT_COLUMNS: &str = "id, slo_id, severity, windows, opened_at, resolved_at";

fn alert_row(r: &rusqlite::Row) -> rusqlite::Result<AlertRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn one_alert(conn: &Connection, tenant: &str, id: &str) -> StoreResult<Option<SloAlert>> {
    conn.prepare_cached(&format!(
        "SELECT {ALERT_COLUMNS} FROM slo_alerts WHERE tenant_id = ?1 AND id = ?2"
    ))?
    .query_row([tenant, id], alert_row)
    .optional()?
    .map(decode_alert)
    .transpose()
}

/// Adds a recorded check to the minute counts of every SLO on its monitor (in
/// the transaction that records the check).
pub(super) fn count_check(
    conn: &Connection,
    tenant: &str,
    monitor_id: &str,
    at: i64,
    up: bool,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO slo_counts (tenant_id, slo_id, minute, good, total)
         SELECT tenant_id, id, ?3, ?4, 1 FROM slos WHERE tenant_id = ?1 AND monitor_id = ?2
         ON CONFLICT (tenant_id, slo_id, minute) DO UPDATE SET
             good = good + excluded.good, total = total + 1",
    )?
    .execute(params![
        tenant,
        monitor_id,
        at.div_euclid(crate::slos::MINUTE_US) * crate::slos::MINUTE_US,
        i64::from(up)
    ])?;
    Ok(())
}

#[async_trait]
impl SloStore for SqliteStore {
    async fn create_slo(&self, tenant: &TenantId, spec: SloSpec) -> StoreResult<StoredSlo> {
        let tenant = tenant.0.clone();
        let now = self.clock.now().as_microsecond();
        let id = uuid::Uuid::now_v7().to_string();
        let text = spec_json(&spec)?;
        let monitor = spec.monitor().map(str::to_owned);
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO slos (id, tenant_id, name, spec, monitor_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![id, tenant, spec.name, text, monitor, now])?;
                Ok(StoredSlo {
                    id,
                    tenant: TenantId(tenant),
                    spec,
                    created_at: crate::from_micros(now)?,
                })
            })
            .await
    }

    async fn slo(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredSlo>> {
        self.readers.read(|conn| {
            Ok(spec_records(
                conn,
                &format!("SELECT {SLO_COLUMNS} FROM slos WHERE tenant_id = ?1 AND id = ?2"),
                [tenant.as_str(), id],
            )?
            .pop())
        })
    }

    async fn list_slos(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<StoredSlo>> {
        // Ids are UUIDv7: ordered by creation.
        let after = page.cursor.clone().unwrap_or_default();
        let rows = self.readers.read(|conn| {
            spec_records(
                conn,
                &format!(
                    "SELECT {SLO_COLUMNS} FROM slos WHERE tenant_id = ?1 AND id > ?2
                     ORDER BY id LIMIT ?3"
                ),
                params![tenant.as_str(), after, i64::from(page.limit) + 1],
            )
        })?;
        Ok(Page::from_overfetch(rows, page.limit, |s| s.id.clone()))
    }

    async fn all_slos(&self) -> StoreResult<Vec<StoredSlo>> {
        self.readers.read(|conn| {
            spec_records(
                conn,
                &format!("SELECT {SLO_COLUMNS} FROM slos ORDER BY id"),
                [],
            )
        })
    }

    async fn delete_slo(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.0.clone(), id.to_owned());
        self.writer
            .execute(move |conn| {
                let gone = conn
                    .prepare_cached("DELETE FROM slos WHERE tenant_id = ?1 AND id = ?2")?
                    .execute([&tenant, &id])?;
                for table in ["slo_counts", "slo_alerts"] {
                    conn.prepare_cached(&format!(
                        "DELETE FROM {table} WHERE tenant_id = ?1 AND slo_id = ?2"
                    ))?
                    .execute([&tenant, &id])?;
                }
                Ok(gone > 0)
            })
            .await
    }

    async fn add_slo_counts(&self, counts: Vec<SloCount>) -> StoreResult<()> {
        if counts.is_empty() {
            return Ok(());
        }
        self.writer
            .execute(move |conn| {
                let mut add = conn.prepare_cached(
                    "INSERT INTO slo_counts (tenant_id, slo_id, minute, good, total)
                     SELECT tenant_id, id, ?3, ?4, ?5 FROM slos WHERE tenant_id = ?1 AND id = ?2
                     ON CONFLICT (tenant_id, slo_id, minute) DO UPDATE SET
                         good = good + excluded.good, total = total + excluded.total",
                )?;
                for c in &counts {
                    add.execute(params![
                        c.tenant.as_str(),
                        c.slo_id,
                        c.minute,
                        c.counts.good as i64,
                        c.counts.total as i64
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn slo_counts(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        ranges: &[(i64, i64)],
    ) -> StoreResult<Vec<Counts>> {
        self.readers.read(|conn| {
            let mut sum = conn.prepare_cached(
                "SELECT coalesce(sum(good), 0), coalesce(sum(total), 0) FROM slo_counts
                 WHERE tenant_id = ?1 AND slo_id = ?2 AND minute >= ?3 AND minute < ?4",
            )?;
            ranges
                .iter()
                .map(|&(from, to)| {
                    let (good, total): (i64, i64) = sum
                        .query_row(params![tenant.as_str(), slo_id, from, to], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?;
                    Ok(Counts {
                        good: good as u64,
                        total: total as u64,
                    })
                })
                .collect()
        })
    }

    async fn open_slo_alert(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        severity: Severity,
        windows: &str,
        at: Timestamp,
    ) -> StoreResult<Option<SloAlert>> {
        let (tenant, slo_id, windows) = (tenant.0.clone(), slo_id.to_owned(), windows.to_owned());
        let id = uuid::Uuid::now_v7().to_string();
        self.writer
            .execute(move |conn| {
                let opened = conn
                    .prepare_cached(
                        "INSERT INTO slo_alerts (id, tenant_id, slo_id, severity, windows, opened_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![
                        id,
                        tenant,
                        slo_id,
                        severity.as_str(),
                        windows,
                        at.as_microsecond()
                    ])?;
                if opened == 0 {
                    return Ok(None);
                }
                queue_notice(conn, &tenant, NoticeSubject::SloAlert, &id, NoticeEvent::Opened)?;
                one_alert(conn, &tenant, &id)
            })
            .await
    }

    async fn resolve_slo_alert(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        severity: Severity,
        at: Timestamp,
    ) -> StoreResult<Option<SloAlert>> {
        let (tenant, slo_id) = (tenant.0.clone(), slo_id.to_owned());
        self.writer
            .execute(move |conn| {
                let id: Option<String> = conn
                    .prepare_cached(
                        "UPDATE slo_alerts SET resolved_at = ?4
                         WHERE tenant_id = ?1 AND slo_id = ?2 AND severity = ?3
                           AND resolved_at IS NULL
                         RETURNING id",
                    )?
                    .query_row(
                        params![tenant, slo_id, severity.as_str(), at.as_microsecond()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(id) = id else {
                    return Ok(None);
                };
                queue_notice(
                    conn,
                    &tenant,
                    NoticeSubject::SloAlert,
                    &id,
                    NoticeEvent::Resolved,
                )?;
                one_alert(conn, &tenant, &id)
            })
            .await
    }

    async fn slo_alert(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<SloAlert>> {
        self.readers
            .read(|conn| one_alert(conn, tenant.as_str(), id))
    }

    async fn slo_alerts(
        &self,
        tenant: &TenantId,
        slo_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<SloAlert>> {
        self.readers.read(|conn| {
            let rows: Vec<AlertRow> = conn
                .prepare_cached(&format!(
                    "SELECT {ALERT_COLUMNS} FROM slo_alerts WHERE tenant_id = ?1 AND slo_id = ?2
                     ORDER BY opened_at DESC, id DESC LIMIT ?3"
                ))?
                .query_map(params![tenant.as_str(), slo_id, limit], alert_row)?
                .collect::<Result<_, _>>()?;
            rows.into_iter().map(decode_alert).collect()
        })
    }

    async fn prune_slo_counts(&self, before: i64, limit: u32) -> StoreResult<u64> {
        self.writer
            .execute(move |conn| {
                let gone = conn
                    .prepare_cached(
                        "DELETE FROM slo_counts WHERE (tenant_id, slo_id, minute) IN
                         (SELECT tenant_id, slo_id, minute FROM slo_counts
                          WHERE minute < ?1 LIMIT ?2)",
                    )?
                    .execute(params![before, limit])?;
                Ok(gone as u64)
            })
            .await
    }
}
