//! The object index on PostgreSQL: the same tables and transactions as SQLite's
//! (`sqlite::objects`), tenant rows behind row-level security; relays and the
//! collector claim outbox and garbage rows of every tenant with `SKIP LOCKED`
//! leases, so replicas share the work.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::Value;
use sqlx::{postgres::PgRow, Postgres, Row, Transaction};

use super::{errors::map, PgStore, Rows};
use crate::{
    from_micros,
    objects::{prefix_end, Bucket, ObjectIndex, ObjectMeta, OutboxEntry, OutboxMessage},
    routing::{json_text, json_value},
    Page, PageRequest, StoreResult, TenantId,
};

fn meta_from(r: &PgRow) -> StoreResult<ObjectMeta> {
    Ok(ObjectMeta {
        key: r.get(0),
        blob: r.get(1),
        size: r.get::<i64, _>(2) as u64,
        etag: r.get(3),
        content_type: r.get(4),
        modified_at: from_micros(r.get(5))?,
    })
}

async fn queue_events(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    events: Vec<OutboxMessage>,
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let (mut topics, mut bodies, mut dedup_ids) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        topics.push(event.topic);
        bodies.push(json_text(&event.body)?);
        dedup_ids.push(event.dedup_id);
    }
    sqlx::query(
        "INSERT INTO object_outbox (tenant_id, topic, body, dedup_id)
         SELECT $1, u.topic, u.body, u.dedup_id
         FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(topic, body, dedup_id, n)
         ORDER BY u.n",
    )
    .bind(tenant)
    .bind(topics)
    .bind(bodies)
    .bind(dedup_ids)
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(())
}

async fn collect_later(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    blob: &str,
    at: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO blob_garbage (name, tenant_id, collect_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET collect_at = excluded.collect_at",
    )
    .bind(blob)
    .bind(tenant)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl ObjectIndex for PgStore {
    async fn create_bucket(&self, tenant: &TenantId, bucket: &str) -> StoreResult<(Bucket, bool)> {
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        let inserted = sqlx::query(
            "INSERT INTO buckets (tenant_id, name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(bucket)
        .bind(self.now_micros())
        .execute(&mut *tx)
        .await
        .map_err(map)?
        .rows_affected();
        let row =
            sqlx::query("SELECT created_at, rules FROM buckets WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(bucket)
                .fetch_one(&mut *tx)
                .await
                .map_err(map)?;
        tx.commit().await.map_err(map)?;
        let bucket = Bucket {
            name: bucket.to_owned(),
            created_at: from_micros(row.get(0))?,
            rules: json_value(row.get(1))?,
        };
        Ok((bucket, inserted == 1))
    }

    async fn bucket(&self, tenant: &TenantId, bucket: &str) -> StoreResult<Option<Bucket>> {
        let row = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "SELECT created_at, rules FROM buckets WHERE tenant_id = $1 AND name = $2",
                )
                .bind(tenant.as_str())
                .bind(bucket),
            )
            .await?;
        row.map(|r| {
            Ok(Bucket {
                name: bucket.to_owned(),
                created_at: from_micros(r.get(0))?,
                rules: json_value(r.get(1))?,
            })
        })
        .transpose()
    }

    async fn list_buckets(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<Bucket>> {
        let rows = self
            .fetch_all_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "SELECT name, created_at, rules FROM buckets
                     WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT $3",
                )
                .bind(tenant.as_str())
                .bind(page.cursor.clone().unwrap_or_default())
                .bind(i64::from(page.limit) + 1),
            )
            .await?;
        let buckets = rows
            .iter()
            .map(|r| {
                Ok(Bucket {
                    name: r.get(0),
                    created_at: from_micros(r.get(1))?,
                    rules: json_value(r.get(2))?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(buckets, page.limit, |b| {
            b.name.clone()
        }))
    }

    async fn set_notification_rules(
        &self,
        tenant: &TenantId,
        bucket: &str,
        rules: Value,
    ) -> StoreResult<bool> {
        let changed = self
            .execute_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query("UPDATE buckets SET rules = $3 WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant.as_str())
                    .bind(bucket)
                    .bind(json_text(&rules)?),
            )
            .await?;
        Ok(changed == 1)
    }

    async fn reserve_blob(
        &self,
        tenant: &TenantId,
        name: &str,
        collect_at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        collect_later(&mut tx, tenant.as_str(), name, collect_at.as_microsecond()).await?;
        tx.commit().await.map_err(map)
    }

    async fn commit_object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        meta: ObjectMeta,
        events: Vec<OutboxMessage>,
        replaced_collect_at: Timestamp,
    ) -> StoreResult<bool> {
        let t = tenant.as_str();
        let mut tx = self.tenant_tx(t).await?;
        // Locks the bucket row, so a commit and a change of rules or another
        // commit of the same key take turns.
        let exists =
            sqlx::query("SELECT 1 FROM buckets WHERE tenant_id = $1 AND name = $2 FOR SHARE")
                .bind(t)
                .bind(bucket)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map)?
                .is_some();
        if !exists {
            return Ok(false);
        }
        // Commits of one key take turns: two uploads of a new key would otherwise
        // both see no row to replace, and the first one's blob would never be
        // queued for collection.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('keel-object:' || $1 || '/' || $2 || '/' || $3, 0))")
            .bind(t)
            .bind(bucket)
            .bind(&meta.key)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        let replaced: Option<String> = sqlx::query_scalar(
            "SELECT blob FROM objects WHERE tenant_id = $1 AND bucket = $2 AND key = $3 FOR UPDATE",
        )
        .bind(t)
        .bind(bucket)
        .bind(&meta.key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        sqlx::query(
            "INSERT INTO objects (tenant_id, bucket, key, blob, size, etag, content_type, modified_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, bucket, key) DO UPDATE SET blob = excluded.blob,
                size = excluded.size, etag = excluded.etag,
                content_type = excluded.content_type, modified_at = excluded.modified_at",
        )
        .bind(t)
        .bind(bucket)
        .bind(&meta.key)
        .bind(&meta.blob)
        .bind(meta.size as i64)
        .bind(&meta.etag)
        .bind(&meta.content_type)
        .bind(meta.modified_at.as_microsecond())
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        sqlx::query("DELETE FROM blob_garbage WHERE name = $1")
            .bind(&meta.blob)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        if let Some(old) = replaced.filter(|old| *old != meta.blob) {
            collect_later(&mut tx, t, &old, replaced_collect_at.as_microsecond()).await?;
        }
        queue_events(&mut tx, t, events).await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        key: &str,
    ) -> StoreResult<Option<ObjectMeta>> {
        let row = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "SELECT key, blob, size, etag, content_type, modified_at FROM objects
                     WHERE tenant_id = $1 AND bucket = $2 AND key = $3",
                )
                .bind(tenant.as_str())
                .bind(bucket)
                .bind(key),
            )
            .await?;
        row.as_ref().map(meta_from).transpose()
    }

    async fn remove_object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        key: &str,
        events: Vec<OutboxMessage>,
        collect_at: Timestamp,
    ) -> StoreResult<bool> {
        let t = tenant.as_str();
        let mut tx = self.tenant_tx(t).await?;
        let removed: Option<String> = sqlx::query_scalar(
            "DELETE FROM objects WHERE tenant_id = $1 AND bucket = $2 AND key = $3 RETURNING blob",
        )
        .bind(t)
        .bind(bucket)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        let Some(blob) = removed else {
            return Ok(false);
        };
        collect_later(&mut tx, t, &blob, collect_at.as_microsecond()).await?;
        queue_events(&mut tx, t, events).await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &str,
        prefix: &str,
        page: PageRequest,
    ) -> StoreResult<Page<ObjectMeta>> {
        let after = page.cursor.clone().unwrap_or_default();
        let rows = self
            .fetch_all_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "SELECT key, blob, size, etag, content_type, modified_at FROM objects
                     WHERE tenant_id = $1 AND bucket = $2 AND key >= $3 AND key > $4 AND key < $5
                       AND starts_with(key, $3)
                     ORDER BY key LIMIT $6",
                )
                .bind(tenant.as_str())
                .bind(bucket)
                .bind(prefix)
                .bind(after)
                .bind(prefix_end(prefix))
                .bind(i64::from(page.limit) + 1),
            )
            .await?;
        let metas = rows
            .iter()
            .map(meta_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(metas, page.limit, |m| m.key.clone()))
    }

    async fn claim_outbox(&self, limit: u32, lease: Duration) -> StoreResult<Vec<OutboxEntry>> {
        let now = self.now_micros();
        let rows = self
            .fetch_all_alone(
                Rows::OfAllTenants("relay object events"),
                sqlx::query(
                    "UPDATE object_outbox SET leased_until = $2
                     WHERE id IN (SELECT id FROM object_outbox WHERE leased_until <= $1
                                  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING id, tenant_id, topic, body, dedup_id",
                )
                .bind(now)
                .bind(now + lease.as_micros() as i64)
                .bind(i64::from(limit)),
            )
            .await?;
        let mut entries = rows
            .iter()
            .map(|r| {
                Ok(OutboxEntry {
                    id: r.get(0),
                    tenant: TenantId(r.get(1)),
                    message: OutboxMessage {
                        topic: r.get(2),
                        body: json_value(r.get(3))?,
                        dedup_id: r.get(4),
                    },
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    async fn finish_outbox(&self, ids: Vec<i64>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.execute_alone(
            Rows::OfAllTenants("relay object events"),
            sqlx::query("DELETE FROM object_outbox WHERE id = ANY($1)").bind(ids),
        )
        .await
        .map(drop)
    }

    async fn claim_garbage(&self, limit: u32, lease: Duration) -> StoreResult<Vec<String>> {
        let now = self.now_micros();
        let rows = self
            .fetch_all_alone(
                Rows::OfAllTenants("collect blobs"),
                sqlx::query(
                    "UPDATE blob_garbage SET collect_at = $2
                     WHERE name IN (SELECT name FROM blob_garbage WHERE collect_at <= $1
                                    ORDER BY collect_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING name",
                )
                .bind(now)
                .bind(now + lease.as_micros() as i64)
                .bind(i64::from(limit)),
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn forget_garbage(&self, names: Vec<String>) -> StoreResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        self.execute_alone(
            Rows::OfAllTenants("collect blobs"),
            sqlx::query("DELETE FROM blob_garbage WHERE name = ANY($1)").bind(names),
        )
        .await
        .map(drop)
    }
}
