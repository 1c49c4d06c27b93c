//! Telemetry on PostgreSQL: the same tables as SQLite's (`sqlite::telemetry`)
//! behind row-level security; full text through a generated `tsvector` column
//! with a GIN index, labels as `jsonb` matched by containment. Batches go in with
//! one `unnest` insert per table.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::telemetry::Batch;
use sqlx::{postgres::PgRow, QueryBuilder, Row};

use super::{errors::map, PgStore, Rows};
use crate::{
    from_micros,
    routing::{json_map, json_text},
    telemetry::{
        log_cursor, next_log_cursor, too_many_points, LogQuery, PointQuery, StoredLog,
        TelemetryStore,
    },
    Page, StoreError, StoreResult, TenantId,
};

fn log_from(r: &PgRow) -> StoreResult<StoredLog> {
    Ok(StoredLog {
        ts: from_micros(r.get(1))?,
        account: r.get(2),
        level: r.get(3),
        body: r.get(4),
        attributes: json_map(r.get(5))?,
    })
}

#[async_trait]
impl TelemetryStore for PgStore {
    async fn append_telemetry(
        &self,
        tenant: &TenantId,
        batch: Batch,
        import: Option<String>,
    ) -> StoreResult<bool> {
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        if let Some(import) = import {
            let new = sqlx::query(
                "INSERT INTO telemetry_imports (tenant_id, id, imported_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(import)
            .bind(self.now_micros())
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
            if new == 0 {
                return Ok(false);
            }
        }
        if !batch.logs.is_empty() {
            let (mut ts, mut accounts, mut levels, mut bodies, mut attributes) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for line in batch.logs {
                ts.push(line.ts.as_microsecond());
                accounts.push(line.account);
                levels.push(line.level);
                // PostgreSQL text cannot hold NUL; JSON escapes it, bodies cannot.
                bodies.push(line.body.replace('\0', "\u{FFFD}"));
                attributes.push(json_text(&serde_json::Value::Object(line.attributes))?);
            }
            sqlx::query(
                "INSERT INTO telemetry_logs (tenant_id, ts, account, level, body, attributes)
                 SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])",
            )
            .bind(tenant.as_str())
            .bind(ts)
            .bind(accounts)
            .bind(levels)
            .bind(bodies)
            .bind(attributes)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        if !batch.points.is_empty() {
            let (mut names, mut ts, mut accounts, mut values, mut labels) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for p in batch.points {
                names.push(p.name);
                ts.push(p.ts.as_microsecond());
                accounts.push(p.account);
                values.push(p.value);
                labels.push(
                    serde_json::to_string(&p.labels)
                        .map_err(|e| StoreError::Internal(format!("labels: {e}")))?,
                );
            }
            sqlx::query(
                "INSERT INTO telemetry_points (tenant_id, name, ts, account, value, labels)
                 SELECT $1, n, t, a, v, l::jsonb
                 FROM unnest($2::text[], $3::bigint[], $4::text[], $5::float8[], $6::text[]) AS u(n, t, a, v, l)",
            )
            .bind(tenant.as_str())
            .bind(names)
            .bind(ts)
            .bind(accounts)
            .bind(values)
            .bind(labels)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn query_logs(&self, tenant: &TenantId, query: LogQuery) -> StoreResult<Page<StoredLog>> {
        let (before_ts, before_id) = log_cursor(&query.page)?;
        let limit = query.page.limit;
        let mut sql = QueryBuilder::new(
            "SELECT id, ts, account, level, body, attributes FROM telemetry_logs WHERE tenant_id = ",
        );
        sql.push_bind(tenant.as_str())
            .push(" AND ts >= ")
            .push_bind(query.from.as_microsecond())
            .push(" AND ts < ")
            .push_bind(query.to.as_microsecond())
            .push(" AND (ts, id) < (")
            .push_bind(before_ts)
            .push(", ")
            .push_bind(before_id)
            .push(")");
        if let Some(account) = query.account {
            sql.push(" AND account = ").push_bind(account);
        }
        if let Some(level) = query.level {
            sql.push(" AND lower(level) = lower(")
                .push_bind(level)
                .push(")");
        }
        if !query.terms.is_empty() {
            // plainto_tsquery ANDs the words and never fails on odd characters.
            sql.push(" AND words @@ plainto_tsquery('simple', ")
                .push_bind(query.terms.join(" "))
                .push(")");
        }
        sql.push(" ORDER BY ts DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let mut tx = self.begin(Rows::Of(tenant.as_str())).await?;
        let rows = sql.build().fetch_all(&mut *tx).await.map_err(map)?;
        tx.commit().await.map_err(map)?;
        let full = rows.len() == limit as usize;
        let last = rows.last().map(|r| (r.get(1), r.get(0)));
        Ok(Page {
            items: rows.iter().map(log_from).collect::<StoreResult<_>>()?,
            next_cursor: next_log_cursor(last, full),
        })
    }

    async fn query_points(
        &self,
        tenant: &TenantId,
        query: PointQuery,
        max: usize,
    ) -> StoreResult<Vec<(i64, f64)>> {
        let mut sql =
            QueryBuilder::new("SELECT ts, value FROM telemetry_points WHERE tenant_id = ");
        sql.push_bind(tenant.as_str())
            .push(" AND name = ")
            .push_bind(query.name)
            .push(" AND ts >= ")
            .push_bind(query.from.as_microsecond())
            .push(" AND ts < ")
            .push_bind(query.to.as_microsecond());
        if let Some(account) = query.account {
            sql.push(" AND account = ").push_bind(account);
        }
        if !query.labels.is_empty() {
            let wanted: serde_json::Map<String, serde_json::Value> = query
                .labels
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            sql.push(" AND labels @> ")
                .push_bind(serde_json::Value::Object(wanted).to_string())
                .push("::jsonb");
        }
        sql.push(" LIMIT ").push_bind(max as i64 + 1);
        let mut tx = self.begin(Rows::Of(tenant.as_str())).await?;
        let rows = sql.build().fetch_all(&mut *tx).await.map_err(map)?;
        tx.commit().await.map_err(map)?;
        if rows.len() > max {
            return Err(too_many_points(max));
        }
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn telemetry_retention(&self, tenant: &TenantId) -> StoreResult<Option<u32>> {
        let statement =
            sqlx::query("SELECT retention_days FROM telemetry_settings WHERE tenant_id = $1")
                .bind(tenant.as_str());
        let row = self
            .fetch_optional_alone(Rows::Of(tenant.as_str()), statement)
            .await?;
        Ok(row.map(|r| r.get::<i32, _>(0) as u32))
    }

    async fn set_telemetry_retention(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
    ) -> StoreResult<()> {
        let statement = match days {
            Some(days) => sqlx::query(
                "INSERT INTO telemetry_settings (tenant_id, retention_days) VALUES ($1, $2)
                 ON CONFLICT (tenant_id) DO UPDATE SET retention_days = excluded.retention_days",
            )
            .bind(tenant.as_str())
            .bind(days as i32),
            None => sqlx::query("DELETE FROM telemetry_settings WHERE tenant_id = $1")
                .bind(tenant.as_str()),
        };
        self.execute_alone(Rows::Of(tenant.as_str()), statement)
            .await
            .map(drop)
    }

    async fn prune_telemetry(
        &self,
        tenant: &TenantId,
        before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64> {
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        let mut gone = 0u64;
        for (table, column, key) in [
            ("telemetry_logs", "ts", "id"),
            ("telemetry_points", "ts", "id"),
            ("telemetry_imports", "imported_at", "id"),
        ] {
            let left = i64::from(limit) - gone as i64;
            if left <= 0 {
                break;
            }
            gone += sqlx::query(&format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND {key} IN
                 (SELECT {key} FROM {table} WHERE tenant_id = $1 AND {column} < $2 LIMIT $3)"
            ))
            .bind(tenant.as_str())
            .bind(before.as_microsecond())
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
