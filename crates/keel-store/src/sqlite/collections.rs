//! Collections and delivery attempts on SQLite.

use async_trait::async_trait;
use keel_core::bus::BusName;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::{from_micros, SqliteStore};
use crate::{
    collections::{CollectionStore, DeliveryAttempt, Record},
    routing::json_value,
    Page, PageRequest, StoreError, StoreResult, TenantId,
};

type RecordRow = (i64, String, String, i64, i64);

fn record_from(row: RecordRow) -> StoreResult<(i64, Record)> {
    let (seq, id, data, created, updated) = row;
    Ok((
        seq,
        Record {
            id,
            data: serde_json::from_str(&data)
                .map_err(|e| StoreError::Internal(format!("stored record: {e}")))?,
            created_at: from_micros(created)?,
            updated_at: from_micros(updated)?,
        },
    ))
}

#[async_trait]
impl CollectionStore for SqliteStore {
    async fn upsert_records(
        &self,
        tenant: &TenantId,
        collection: &str,
        records: Vec<(String, serde_json::Value)>,
    ) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let (tenant, collection) = (tenant.0.clone(), collection.to_owned());
        let now = self.clock.now().as_microsecond();
        let rows = records
            .into_iter()
            .map(|(id, data)| Ok((id, crate::routing::json_text(&data)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        self.writer
            .execute(move |conn| {
                let mut upsert = conn.prepare_cached(
                    "INSERT INTO records (tenant_id, collection, id, data, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     ON CONFLICT (tenant_id, collection, id) DO UPDATE SET
                        data = excluded.data, updated_at = excluded.updated_at",
                )?;
                for (id, data) in &rows {
                    upsert.execute(params![tenant, collection, id, data, now])?;
                }
                Ok(())
            })
            .await
    }

    async fn records(
        &self,
        tenant: &TenantId,
        collection: &str,
        page: PageRequest,
    ) -> StoreResult<Page<Record>> {
        let before = page.before_seq()?;
        let rows: Vec<RecordRow> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT seq, id, data, created_at, updated_at FROM records
                     WHERE tenant_id = ?1 AND collection = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
                )?
                .query_map(params![tenant.as_str(), collection, before, page.limit + 1], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<_, _>>()?)
        })?;
        let records = rows
            .into_iter()
            .map(record_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_seq_rows(records, page.limit))
    }

    async fn record(
        &self,
        tenant: &TenantId,
        collection: &str,
        id: &str,
    ) -> StoreResult<Option<Record>> {
        let row: Option<RecordRow> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT seq, id, data, created_at, updated_at FROM records
                     WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
                )?
                .query_row(params![tenant.as_str(), collection, id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?)
        })?;
        row.map(|r| record_from(r).map(|(_, record)| record))
            .transpose()
    }

    async fn delete_record(
        &self,
        tenant: &TenantId,
        collection: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let (tenant, collection, id) = (tenant.0.clone(), collection.to_owned(), id.to_owned());
        self.writer
            .execute(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "DELETE FROM records WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
                    )?
                    .execute(params![tenant, collection, id])?
                    == 1)
            })
            .await
    }

    async fn stored_count(
        &self,
        tenant: &TenantId,
        collection: &str,
        ids: &[String],
    ) -> StoreResult<usize> {
        self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM records WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3)",
            )?;
            let mut count = 0;
            for id in ids {
                if stmt.query_row(params![tenant.as_str(), collection, id], |r| r.get::<_, bool>(0))? {
                    count += 1;
                }
            }
            Ok(count)
        })
    }

    async fn record_attempts(
        &self,
        attempts: Vec<(TenantId, BusName, BusName, DeliveryAttempt)>,
    ) -> StoreResult<()> {
        self.writer
            .execute(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "INSERT INTO delivery_attempts
                     (tenant_id, topic, subscription, message_id, attempt, at, outcome, status, error, latency_ms, report)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for (tenant, topic, subscription, a) in &attempts {
                    stmt.execute(params![
                        tenant.as_str(),
                        topic.as_str(),
                        subscription.as_str(),
                        a.message_id,
                        a.attempt,
                        a.at.as_microsecond(),
                        a.outcome,
                        a.status,
                        a.error,
                        a.latency_ms,
                        a.report.as_ref().map(Value::to_string)
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn attempts(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        subscription: &BusName,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryAttempt>> {
        type Row = (
            String,
            u32,
            i64,
            String,
            Option<u16>,
            Option<String>,
            f64,
            Option<String>,
        );
        let rows: Vec<Row> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT message_id, attempt, at, outcome, status, error, latency_ms, report FROM delivery_attempts
                     WHERE tenant_id = ?1 AND topic = ?2 AND subscription = ?3 ORDER BY seq DESC LIMIT ?4",
                )?
                .query_map(params![tenant.as_str(), topic.as_str(), subscription.as_str(), limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
                })?
                .collect::<Result<_, _>>()?)
        })?;
        rows.into_iter()
            .map(
                |(message_id, attempt, at, outcome, status, error, latency_ms, report)| {
                    Ok(DeliveryAttempt {
                        message_id,
                        attempt,
                        at: from_micros(at)?,
                        outcome,
                        status,
                        error,
                        latency_ms,
                        report: report.as_deref().map(json_value).transpose()?,
                    })
                },
            )
            .collect()
    }
}
