//! Collections and delivery attempts on PostgreSQL.

use async_trait::async_trait;
use keel_core::bus::BusName;
use serde_json::Value;
use sqlx::{postgres::PgRow, Row};

use super::{errors::map, PgStore, Rows};
use crate::{
    collections::{CollectionStore, DeliveryAttempt, Record},
    from_micros,
    routing::{json_text, json_value},
    Page, PageRequest, StoreResult, TenantId,
};

fn record_from(r: &PgRow) -> StoreResult<(i64, Record)> {
    Ok((
        r.get(0),
        Record {
            id: r.get(1),
            data: json_value(r.get(2))?,
            created_at: from_micros(r.get(3))?,
            updated_at: from_micros(r.get(4))?,
        },
    ))
}

#[async_trait]
impl CollectionStore for PgStore {
    async fn upsert_records(
        &self,
        tenant: &TenantId,
        collection: &str,
        records: Vec<(String, Value)>,
    ) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let (mut ids, mut data) = (
            Vec::with_capacity(records.len()),
            Vec::with_capacity(records.len()),
        );
        for (id, value) in records {
            ids.push(id);
            data.push(json_text(&value)?);
        }
        let now = self.now_micros();
        // A batch may name one id twice (a message redelivered into the same
        // batch); ON CONFLICT cannot touch a row twice in one statement, so the
        // last copy of each id wins here.
        let upsert = sqlx::query(
            "INSERT INTO records AS r (tenant_id, collection, id, data, created_at, updated_at)
             SELECT DISTINCT ON (u.id) $1, $2, u.id, u.data, $3, $3
             FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS u(id, data, n)
             ORDER BY u.id, u.n DESC
             ON CONFLICT (tenant_id, collection, id) DO UPDATE SET
                data = excluded.data, updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(collection)
        .bind(now)
        .bind(ids)
        .bind(data);
        self.execute_alone(Rows::Of(tenant.as_str()), upsert)
            .await
            .map(drop)
    }

    async fn records(
        &self,
        tenant: &TenantId,
        collection: &str,
        page: PageRequest,
    ) -> StoreResult<Page<Record>> {
        let before = page.before_seq()?;
        let rows = self
            .fetch_all_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "SELECT seq, id, data, created_at, updated_at FROM records
             WHERE tenant_id = $1 AND collection = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4",
                )
                .bind(tenant.as_str())
                .bind(collection)
                .bind(before)
                .bind(i64::from(page.limit) + 1),
            )
            .await?;
        let records = rows
            .iter()
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
        let row = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "SELECT seq, id, data, created_at, updated_at FROM records
             WHERE tenant_id = $1 AND collection = $2 AND id = $3",
                )
                .bind(tenant.as_str())
                .bind(collection)
                .bind(id),
            )
            .await?;
        row.map(|r| record_from(&r).map(|(_, record)| record))
            .transpose()
    }

    async fn delete_record(
        &self,
        tenant: &TenantId,
        collection: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let deleted = self
            .execute_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "DELETE FROM records WHERE tenant_id = $1 AND collection = $2 AND id = $3",
                )
                .bind(tenant.as_str())
                .bind(collection)
                .bind(id),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn stored_count(
        &self,
        tenant: &TenantId,
        collection: &str,
        ids: &[String],
    ) -> StoreResult<usize> {
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM records WHERE tenant_id = $1 AND collection = $2 AND id = ANY($3)",
        )
        .bind(tenant.as_str())
        .bind(collection)
        .bind(ids)
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(count as usize)
    }

    async fn record_attempts(
        &self,
        attempts: Vec<(TenantId, BusName, BusName, DeliveryAttempt)>,
    ) -> StoreResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        // Batched per subscription, which is one tenant; still written through the
        // explicit path because the batch type allows several.
        let mut c: (
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<i32>,
            Vec<i64>,
            Vec<String>,
            Vec<Option<i32>>,
            Vec<Option<String>>,
            Vec<f64>,
            Vec<Option<String>>,
        ) = Default::default();
        for (tenant, topic, subscription, a) in attempts {
            c.0.push(tenant.0);
            c.1.push(topic.as_str().to_owned());
            c.2.push(subscription.as_str().to_owned());
            c.3.push(a.message_id);
            c.4.push(a.attempt as i32);
            c.5.push(a.at.as_microsecond());
            c.6.push(a.outcome);
            c.7.push(a.status.map(i32::from));
            c.8.push(a.error);
            c.9.push(a.latency_ms);
            c.10.push(a.report.as_ref().map(Value::to_string));
        }
        let statement = sqlx::query(
            "INSERT INTO delivery_attempts
             (tenant_id, topic, subscription, message_id, attempt, at, outcome, status, error, latency_ms, report)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[],
                                  $6::bigint[], $7::text[], $8::int[], $9::text[], $10::float8[], $11::text[])",
        )
        .bind(c.0)
        .bind(c.1)
        .bind(c.2)
        .bind(c.3)
        .bind(c.4)
        .bind(c.5)
        .bind(c.6)
        .bind(c.7)
        .bind(c.8)
        .bind(c.9)
        .bind(c.10);
        self.execute_alone(
            Rows::OfAllTenants("record built-in workers' delivery attempts"),
            statement,
        )
        .await
        .map(drop)
    }

    async fn attempts(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        subscription: &BusName,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryAttempt>> {
        let statement = sqlx::query(
            "SELECT message_id, attempt, at, outcome, status, error, latency_ms, report FROM delivery_attempts
             WHERE tenant_id = $1 AND topic = $2 AND subscription = $3 ORDER BY seq DESC LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(topic.as_str())
        .bind(subscription.as_str())
        .bind(i64::from(limit));
        let rows = self
            .fetch_all_alone(Rows::Of(tenant.as_str()), statement)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryAttempt {
                    message_id: r.get(0),
                    attempt: r.get::<i32, _>(1) as u32,
                    at: from_micros(r.get(2))?,
                    outcome: r.get(3),
                    status: r.get::<Option<i32>, _>(4).map(|s| s as u16),
                    error: r.get(5),
                    latency_ms: r.get(6),
                    report: r
                        .get::<Option<String>, _>(7)
                        .as_deref()
                        .map(json_value)
                        .transpose()?,
                })
            })
            .collect()
    }
}
