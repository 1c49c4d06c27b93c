//! Telemetry on SQLite: lines in blocks with a word index (`sqlite::log_blocks`),
//! points in `telemetry_points` (labels as JSON, matched with
//! `json_extract`), and import ids in `telemetry_imports` — all written in the
//! writer's group commit, each call in its own savepoint.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::telemetry::{Batch, MetricPoint};
use rusqlite::{params, types::Value as SqlValue, Connection, OptionalExtension};

use super::{log_blocks, SqliteStore};
use crate::{
    telemetry::{too_many_points, LogQuery, PointQuery, StoredLog, TelemetryStore},
    Page, StoreError, StoreResult, TenantId,
};

/// A batch with its JSON columns and log blocks already written, so the writer
/// thread spends its time on SQLite alone.
struct Encoded {
    blocks: Vec<log_blocks::EncodedBlock>,
    points: Vec<MetricPoint>,
    labels: Vec<String>,
}

impl Encoded {
    fn new(batch: Batch) -> StoreResult<Self> {
        let labels = batch
            .points
            .iter()
            .map(|p| {
                serde_json::to_string(&p.labels)
                    .map_err(|e| StoreError::Internal(format!("labels: {e}")))
            })
            .collect::<StoreResult<_>>()?;
        Ok(Self {
            blocks: log_blocks::encode_blocks(&batch.logs)?,
            points: batch.points,
            labels,
        })
    }
}

fn insert_batch(conn: &Connection, tenant: &str, encoded: &Encoded) -> StoreResult<()> {
    for block in &encoded.blocks {
        log_blocks::insert(conn, tenant, block)?;
    }
    let mut point = conn.prepare_cached(
        "INSERT INTO telemetry_points (tenant_id, name, ts, account, value, labels)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (p, labels) in encoded.points.iter().zip(&encoded.labels) {
        point.execute(params![
            tenant,
            p.name,
            p.ts.as_microsecond(),
            p.account,
            p.value,
            labels
        ])?;
    }
    Ok(())
}

/// `$."key"`: a JSON path naming one label, whatever characters the key holds
/// (a `"` cannot be quoted in SQLite's path syntax, so such keys are refused).
fn label_path(key: &str) -> StoreResult<String> {
    if key.contains('"') || key.contains('\\') {
        return Err(StoreError::InvalidInput {
            field: "label",
            why: "label names in queries cannot hold `\"` or `\\`".into(),
        });
    }
    Ok(format!("$.\"{key}\""))
}

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn append_telemetry(
        &self,
        tenant: &TenantId,
        batch: Batch,
        import: Option<String>,
    ) -> StoreResult<bool> {
        let tenant = tenant.0.clone();
        let now = self.clock.now().as_microsecond();
        let encoded = Encoded::new(batch)?;
        // The batch comes back to be freed here, not on the writer thread.
        let (stored, _encoded) = self
            .writer
            .execute(move |conn| {
                if let Some(import) = &import {
                    let new = conn
                        .prepare_cached(
                            "INSERT INTO telemetry_imports (tenant_id, id, imported_at)
                             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        )?
                        .execute(params![tenant, import, now])?;
                    if new == 0 {
                        return Ok((false, encoded));
                    }
                }
                insert_batch(conn, &tenant, &encoded)?;
                Ok((true, encoded))
            })
            .await?;
        Ok(stored)
    }

    async fn query_logs(&self, tenant: &TenantId, query: LogQuery) -> StoreResult<Page<StoredLog>> {
        self.readers
            .read(|conn| log_blocks::query(conn, tenant.as_str(), &query))
    }

    async fn query_points(
        &self,
        tenant: &TenantId,
        query: PointQuery,
        max: usize,
    ) -> StoreResult<Vec<(i64, f64)>> {
        let mut sql = String::from(
            "SELECT ts, value FROM telemetry_points
             WHERE tenant_id = ?1 AND name = ?2 AND ts >= ?3 AND ts < ?4",
        );
        let mut args: Vec<SqlValue> = vec![
            tenant.as_str().to_owned().into(),
            query.name.into(),
            query.from.as_microsecond().into(),
            query.to.as_microsecond().into(),
        ];
        if let Some(account) = query.account {
            args.push(account.into());
            sql.push_str(&format!(" AND account = ?{}", args.len()));
        }
        for (key, value) in query.labels {
            args.push(label_path(&key)?.into());
            args.push(value.into());
            sql.push_str(&format!(
                " AND json_extract(labels, ?{}) = ?{}",
                args.len() - 1,
                args.len()
            ));
        }
        args.push((max as i64 + 1).into());
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
        let points: Vec<(i64, f64)> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?)
        })?;
        if points.len() > max {
            return Err(too_many_points(max));
        }
        Ok(points)
    }

    async fn telemetry_retention(&self, tenant: &TenantId) -> StoreResult<Option<u32>> {
        self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT retention_days FROM telemetry_settings WHERE tenant_id = ?1",
                )?
                .query_row([tenant.as_str()], |r| r.get(0))
                .optional()?)
        })
    }

    async fn set_telemetry_retention(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
    ) -> StoreResult<()> {
        let tenant = tenant.0.clone();
        self.writer
            .execute(move |conn| {
                match days {
                    Some(days) => conn
                        .prepare_cached(
                            "INSERT INTO telemetry_settings (tenant_id, retention_days) VALUES (?1, ?2)
                             ON CONFLICT (tenant_id) DO UPDATE SET retention_days = excluded.retention_days",
                        )?
                        .execute(params![tenant, days])?,
                    None => conn
                        .prepare_cached("DELETE FROM telemetry_settings WHERE tenant_id = ?1")?
                        .execute([&tenant])?,
                };
                Ok(())
            })
            .await
    }

    async fn prune_telemetry(
        &self,
        tenant: &TenantId,
        before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64> {
        let tenant = tenant.0.clone();
        let before = before.as_microsecond();
        self.writer
            .execute(move |conn| {
                let mut gone = log_blocks::prune(conn, &tenant, before, limit)?;
                for (table, column) in [
                    ("telemetry_points", "ts"),
                    ("telemetry_imports", "imported_at"),
                ] {
                    let left = i64::from(limit) - gone as i64;
                    if left <= 0 {
                        break;
                    }
                    let key = if table == "telemetry_imports" { "id" } else { "rowid" };
                    gone += conn
                        .prepare_cached(&format!(
                            "DELETE FROM {table} WHERE tenant_id = ?1 AND {key} IN
                             (SELECT {key} FROM {table} WHERE tenant_id = ?1 AND {column} < ?2 LIMIT ?3)"
                        ))?
                        .execute(params![tenant, before, left])? as u64;
                }
                Ok(gone)
            })
            .await
    }
}
