//! The object index on SQLite: buckets, keys → blobs, the event outbox and the
//! blobs waiting to be collected (see `objects` for why they share transactions).

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{delete_outbox_rows, from_micros, lease_outbox_rows, SqliteStore};
use crate::{
    objects::{prefix_end, Bucket, ObjectIndex, ObjectMeta, OutboxEntry, OutboxMessage},
    routing::{json_text, json_value},
    Page, PageRequest, StoreResult, TenantId,
};

type ObjectRow = (String, String, i64, String, String, i64);

fn meta_from(row: ObjectRow) -> StoreResult<ObjectMeta> {
    let (key, blob, size, etag, content_type, modified) = row;
    Ok(ObjectMeta {
        key,
        blob,
        size: size as u64,
        etag,
        content_type,
        modified_at: from_micros(modified)?,
    })
}

fn queue_events(
    conn: &Connection,
    tenant: &str,
    events: &[(String, String, String)],
) -> StoreResult<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO object_outbox (tenant_id, topic, body, dedup_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (topic, body, dedup_id) in events {
        insert.execute(params![tenant, topic, body, dedup_id])?;
    }
    Ok(())
}

/// Queues blob `name` for collection at `at` (micros), replacing an earlier date.
fn collect_later(conn: &Connection, tenant: &str, name: &str, at: i64) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO blob_garbage (name, tenant_id, collect_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![name, tenant, at])?;
    Ok(())
}

fn event_rows(events: Vec<OutboxMessage>) -> StoreResult<Vec<(String, String, String)>> {
    events
        .into_iter()
        .map(|e| Ok((e.topic, json_text(&e.body)?, e.dedup_id)))
        .collect()
}

#[async_trait]
impl ObjectIndex for SqliteStore {
    async fn create_bucket(&self, tenant: &TenantId, bucket: &str) -> StoreResult<(Bucket, bool)> {
        let (tenant, name) = (tenant.0.clone(), bucket.to_owned());
        let now = self.clock.now().as_microsecond();
        let (created, at, rules): (bool, i64, String) = self
            .writer
            .execute(move |conn| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO buckets (tenant_id, name, created_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![tenant, name, now])?;
                let (at, rules) = conn
                    .prepare_cached(
                        "SELECT created_at, rules FROM buckets WHERE tenant_id = ?1 AND name = ?2",
                    )?
                    .query_row(params![tenant, name], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok((inserted == 1, at, rules))
            })
            .await?;
        let bucket = Bucket {
            name: bucket.to_owned(),
            created_at: from_micros(at)?,
            rules: json_value(&rules)?,
        };
        Ok((bucket, created))
    }

    async fn bucket(&self, tenant: &TenantId, bucket: &str) -> StoreResult<Option<Bucket>> {
        let row: Option<(i64, String)> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT created_at, rules FROM buckets WHERE tenant_id = ?1 AND name = ?2",
                )?
                .query_row(params![tenant.as_str(), bucket], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
        })?;
        row.map(|(at, rules)| {
            Ok(Bucket {
                name: bucket.to_owned(),
                created_at: from_micros(at)?,
                rules: json_value(&rules)?,
            })
        })
        .transpose()
    }

    async fn list_buckets(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<Bucket>> {
        let after = page.cursor.clone().unwrap_or_default();
        let rows: Vec<(String, i64, String)> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, created_at, rules FROM buckets
                     WHERE tenant_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
                )?
                .query_map(params![tenant.as_str(), after, page.limit + 1], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?)
        })?;
        let buckets = rows
            .into_iter()
            .map(|(name, at, rules)| {
                Ok(Bucket {
                    name,
                    created_at: from_micros(at)?,
                    rules: json_value(&rules)?,
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
        let (tenant, bucket, rules) = (tenant.0.clone(), bucket.to_owned(), json_text(&rules)?);
        self.writer
            .execute(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE buckets SET rules = ?3 WHERE tenant_id = ?1 AND name = ?2",
                    )?
                    .execute(params![tenant, bucket, rules])?
                    == 1)
            })
            .await
    }

    async fn reserve_blob(
        &self,
        tenant: &TenantId,
        name: &str,
        collect_at: Timestamp,
    ) -> StoreResult<()> {
        let (tenant, name) = (tenant.0.clone(), name.to_owned());
        let at = collect_at.as_microsecond();
        self.writer
            .execute(move |conn| collect_later(conn, &tenant, &name, at))
            .await
    }

    async fn commit_object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        meta: ObjectMeta,
        events: Vec<OutboxMessage>,
        replaced_collect_at: Timestamp,
    ) -> StoreResult<bool> {
        let (tenant, bucket) = (tenant.0.clone(), bucket.to_owned());
        let events = event_rows(events)?;
        let collect_at = replaced_collect_at.as_microsecond();
        let modified = meta.modified_at.as_microsecond();
        self.writer
            .execute(move |conn| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM buckets WHERE tenant_id = ?1 AND name = ?2")?
                    .query_row(params![tenant, bucket], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !exists {
                    return Ok(false);
                }
                let replaced: Option<String> = conn
                    .prepare_cached(
                        "SELECT blob FROM objects WHERE tenant_id = ?1 AND bucket = ?2 AND key = ?3",
                    )?
                    .query_row(params![tenant, bucket, meta.key], |r| r.get(0))
                    .optional()?;
                conn.prepare_cached(
                    "INSERT INTO objects (tenant_id, bucket, key, blob, size, etag, content_type, modified_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (tenant_id, bucket, key) DO UPDATE SET blob = excluded.blob,
                        size = excluded.size, etag = excluded.etag,
                        content_type = excluded.content_type, modified_at = excluded.modified_at",
                )?
                .execute(params![
                    tenant,
                    bucket,
                    meta.key,
                    meta.blob,
                    meta.size as i64,
                    meta.etag,
                    meta.content_type,
                    modified
                ])?;
                conn.prepare_cached("DELETE FROM blob_garbage WHERE name = ?1")?
                    .execute(params![meta.blob])?;
                if let Some(old) = replaced.filter(|old| *old != meta.blob) {
                    collect_later(conn, &tenant, &old, collect_at)?;
                }
                queue_events(conn, &tenant, &events)?;
                Ok(true)
            })
            .await
    }

    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        key: &str,
    ) -> StoreResult<Option<ObjectMeta>> {
        let row: Option<ObjectRow> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT key, blob, size, etag, content_type, modified_at FROM objects
                     WHERE tenant_id = ?1 AND bucket = ?2 AND key = ?3",
                )?
                .query_row(params![tenant.as_str(), bucket, key], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()?)
        })?;
        row.map(meta_from).transpose()
    }

    async fn remove_object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        key: &str,
        events: Vec<OutboxMessage>,
        collect_at: Timestamp,
    ) -> StoreResult<bool> {
        let (tenant, bucket, key) = (tenant.0.clone(), bucket.to_owned(), key.to_owned());
        let events = event_rows(events)?;
        let collect_at = collect_at.as_microsecond();
        self.writer
            .execute(move |conn| {
                let removed: Option<String> = conn
                    .prepare_cached(
                        "DELETE FROM objects WHERE tenant_id = ?1 AND bucket = ?2 AND key = ?3
                         RETURNING blob",
                    )?
                    .query_row(params![tenant, bucket, key], |r| r.get(0))
                    .optional()?;
                let Some(blob) = removed else {
                    return Ok(false);
                };
                collect_later(conn, &tenant, &blob, collect_at)?;
                queue_events(conn, &tenant, &events)?;
                Ok(true)
            })
            .await
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &str,
        prefix: &str,
        page: PageRequest,
    ) -> StoreResult<Page<ObjectMeta>> {
        let after = page.cursor.clone().unwrap_or_default();
        let end = prefix_end(prefix);
        let rows: Vec<ObjectRow> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT key, blob, size, etag, content_type, modified_at FROM objects
                     WHERE tenant_id = ?1 AND bucket = ?2 AND key >= ?3 AND key > ?4 AND key < ?5
                       AND substr(key, 1, length(?3)) = ?3
                     ORDER BY key LIMIT ?6",
                )?
                .query_map(
                    params![tenant.as_str(), bucket, prefix, after, end, page.limit + 1],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )?
                .collect::<Result<_, _>>()?)
        })?;
        let metas = rows
            .into_iter()
            .map(meta_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(metas, page.limit, |m| m.key.clone()))
    }

    async fn claim_outbox(&self, limit: u32, lease: Duration) -> StoreResult<Vec<OutboxEntry>> {
        let now = self.clock.now().as_microsecond();
        let until = now + lease.as_micros() as i64;
        let rows: Vec<(i64, String, String, String, String)> = self
            .writer
            .execute(move |conn| {
                lease_outbox_rows(
                    conn,
                    "object_outbox",
                    "id, tenant_id, topic, body, dedup_id",
                    (now, until, limit),
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
            })
            .await?;
        let mut entries = rows
            .into_iter()
            .map(|(id, tenant, topic, body, dedup_id)| {
                Ok(OutboxEntry {
                    id,
                    tenant: TenantId(tenant),
                    message: OutboxMessage {
                        topic,
                        body: json_value(&body)?,
                        dedup_id,
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
        self.writer
            .execute(move |conn| delete_outbox_rows(conn, "object_outbox", &ids))
            .await
    }

    async fn claim_garbage(&self, limit: u32, lease: Duration) -> StoreResult<Vec<String>> {
        let now = self.clock.now().as_microsecond();
        let until = now + lease.as_micros() as i64;
        self.writer
            .execute(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE blob_garbage SET collect_at = ?2
                         WHERE name IN (SELECT name FROM blob_garbage WHERE collect_at <= ?1
                                        ORDER BY collect_at LIMIT ?3)
                         RETURNING name",
                    )?
                    .query_map(params![now, until, limit], |r| r.get(0))?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn forget_garbage(&self, names: Vec<String>) -> StoreResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        self.writer
            .execute(move |conn| {
                let mut delete = conn.prepare_cached("DELETE FROM blob_garbage WHERE name = ?1")?;
                for name in &names {
                    delete.execute(params![name])?;
                }
                Ok(())
            })
            .await
    }
}
