//! The embedded bus on SQLite: publishes, receives, acks and redrives are jobs on
//! the group-commit writer, so a 202 for a publish means the message and its queue
//! entries are fsync'd, and a burst of publishers shares commits.

use async_trait::async_trait;
use keel_core::bus::BusName;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use std::sync::atomic::Ordering;

use super::{
    bus_support::{ensure_topic_row, subscription_from_row, TopicRoutes},
    from_micros,
    leases::QueueKey,
    queue_counts::{self, Moved},
    to_micros, SqliteStore,
};
use crate::{
    bus::{Bus, DeadLetter, Delivery, OutgoingMessage, QueueStats, ReceiveRequest, Subscription},
    routing::{json_map, json_text, json_value, route_messages, DEDUP_WINDOW_MICROS},
    StoreError, StoreResult, TenantId,
};

#[async_trait]
impl Bus for SqliteStore {
    async fn all_queue_stats(&self) -> StoreResult<Vec<(TenantId, String, String, QueueStats)>> {
        let now = to_micros(self.clock.now());
        let rows: Vec<(String, String, String, CountedQueue)> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT q.tenant_id, q.topic, q.subscription, {QUEUE_COUNTS}
                     FROM queues q
                     WHERE q.ready_count > 0 OR q.delayed_count > 0 OR q.dead_count > 0"
                ))?
                .query_map([now], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        CountedQueue::from_row(r, 3)?,
                    ))
                })?
                .collect::<Result<_, _>>()?)
        })?;
        let mut leased = self.leases.in_flight_by_queue(now);
        Ok(rows
            .into_iter()
            .map(|(tenant, topic, name, counted)| {
                let held = leased
                    .remove(&(tenant.clone(), topic.clone(), name.clone()))
                    .unwrap_or(0);
                (TenantId(tenant), topic, name, counted.stats(held, now))
            })
            .collect())
    }

    async fn worker_subscriptions(&self) -> StoreResult<Vec<(TenantId, Subscription)>> {
        let rows = self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, filter, filter_scope, target, max_receives, visibility_timeout_s, retry_backoff_s, created_at,
                        tenant_id, topic
                 FROM subscriptions WHERE json_extract(target, '$.type') IS NOT 'queue'",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    let tenant: String = r.get(8)?;
                    let topic: String = r.get(9)?;
                    let topic = BusName::parse(&topic, "/topic")
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    Ok((TenantId(tenant), subscription_from_row(&topic, r)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(tenant, sub)| Ok((tenant, sub?)))
            .collect()
    }

    async fn ping(&self) -> StoreResult<()> {
        crate::Store::ping(self).await
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn ensure_topic(&self, tenant: &TenantId, topic: &BusName) -> StoreResult<()> {
        let limit = self.quotas.topics_per_tenant;
        let (tenant, topic, now) = (
            tenant.0.clone(),
            topic.as_str().to_owned(),
            to_micros(self.clock.now()),
        );
        self.writer
            .execute(move |conn| ensure_topic_row(conn, &tenant, &topic, now, limit))
            .await
    }

    async fn publish(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        messages: Vec<OutgoingMessage>,
    ) -> StoreResult<Vec<String>> {
        let (tenant, topic, now) = (
            tenant.0.clone(),
            topic.as_str().to_owned(),
            to_micros(self.clock.now()),
        );
        let TopicRoutes { routes, queues } =
            self.bus_cache.routes(&self.readers, &tenant, &topic)?;
        let quotas = self.quotas;
        // Filters run here, on the publisher's task (a blocking thread when the
        // batch is large), never on the shared writer thread.
        let routed = if routes.len() * messages.len() <= 256 {
            route_messages(&routes, messages, quotas.fanout_bytes_per_publish)?
        } else {
            let routes = routes.clone();
            tokio::task::spawn_blocking(move || {
                route_messages(&routes, messages, quotas.fanout_bytes_per_publish)
            })
            .await
            .map_err(|e| StoreError::Internal(format!("routing task: {e}")))??
        };
        self.fanout_budget.charge(&tenant, routed.fanout_bytes)?;
        let routed = routed.messages;
        let cache = self.bus_cache.clone();
        let next_seq = self.next_seq.clone();
        let ids = self
            .writer
            .execute(move |conn| {
                ensure_topic_row(conn, &tenant, &topic, now, quotas.topics_per_tenant)?;
                cache.sweep_dedup(conn, now)?;
                let mut ids = Vec::with_capacity(routed.len());
                let mut arrived = vec![0i64; queues.len()];
                for message in routed {
                    if let Some(dedup) = &message.dedup_id {
                        let seen: Option<String> = conn
                            .prepare_cached(
                                "SELECT message_id FROM message_dedup
                                 WHERE tenant_id = ?1 AND topic = ?2 AND dedup_id = ?3 AND expires_at > ?4",
                            )?
                            .query_row(params![tenant, topic, dedup, now], |r| r.get(0))
                            .optional()?;
                        if let Some(first) = seen {
                            ids.push(first);
                            continue;
                        }
                    }
                    let id = uuid::Uuid::now_v7().to_string();
                    if let Some(dedup) = &message.dedup_id {
                        // REPLACE: an expired row the sweep has not reached yet.
                        conn.prepare_cached(
                            "INSERT OR REPLACE INTO message_dedup (tenant_id, topic, dedup_id, message_id, expires_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )?
                        .execute(params![tenant, topic, dedup, id, now + DEDUP_WINDOW_MICROS])?;
                    }
                    if let Some((body, attrs)) = &message.texts {
                        let mut insert = conn.prepare_cached(
                            "INSERT INTO queue_entries
                                (queue, seq, message_id, body, attributes, published_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?;
                        for &route in &message.matched {
                            let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                            insert.execute(params![queues[route], seq, id, body, attrs, now])?;
                            arrived[route] += 1;
                        }
                    }
                    // With no matching subscription the message is accepted and
                    // delivered to nobody, as SNS does.
                    ids.push(id);
                }
                for (route, &ready) in arrived.iter().enumerate() {
                    let moved = Moved { ready, ..Moved::default() };
                    queue_counts::record(conn, queues[route], moved)?;
                }
                Ok(ids)
            })
            .await?;
        self.wake_receivers();
        Ok(ids)
    }

    async fn put_subscription(
        &self,
        tenant: &TenantId,
        subscription: Subscription,
    ) -> StoreResult<Subscription> {
        let tenant = tenant.0.clone();
        let now = self.clock.now();
        let stored = Subscription {
            created_at: now,
            ..subscription
        };
        let row = stored.clone();
        let quotas = self.quotas;
        let tenant_id = tenant.clone();
        self.writer
            .execute(move |conn| {
                ensure_topic_row(
                    conn,
                    &tenant,
                    row.topic.as_str(),
                    to_micros(now),
                    quotas.topics_per_tenant,
                )?;
                conn.prepare_cached(
                    "INSERT INTO subscriptions (tenant_id, topic, name, filter, filter_scope, target,
                        max_receives, visibility_timeout_s, retry_backoff_s, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (tenant_id, topic, name) DO UPDATE SET
                        filter = excluded.filter, filter_scope = excluded.filter_scope,
                        target = excluded.target, max_receives = excluded.max_receives,
                        visibility_timeout_s = excluded.visibility_timeout_s,
                        retry_backoff_s = excluded.retry_backoff_s",
                )?
                .execute(params![
                    tenant,
                    row.topic.as_str(),
                    row.name.as_str(),
                    row.filter.as_ref().map(json_text).transpose()?,
                    row.filter_scope.as_str(),
                    json_text(&row.target)?,
                    row.delivery.max_receives,
                    row.delivery.visibility_timeout_s,
                    json_text(&row.delivery.retry_backoff_s)?,
                    to_micros(now)
                ])?;
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO queues (tenant_id, topic, subscription) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![tenant, row.topic.as_str(), row.name.as_str()])?;
                // Counted after the write, inside its savepoint: over the quota
                // undoes it, and concurrent requests cannot overshoot together.
                let (subscriptions, webhooks): (i64, i64) = conn
                    .prepare_cached(
                        "SELECT count(*), coalesce(sum(json_extract(target, '$.type') = 'webhook'), 0)
                         FROM subscriptions WHERE tenant_id = ?1",
                    )?
                    .query_row([&tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
                if subscriptions as u64 > quotas.subscriptions_per_tenant {
                    return Err(StoreError::QuotaExceeded {
                        quota: "subscriptions_per_tenant",
                        limit: quotas.subscriptions_per_tenant,
                    });
                }
                let is_webhook = row.target.get("type").and_then(Value::as_str) == Some("webhook");
                if is_webhook && webhooks as u64 > quotas.webhooks_per_tenant {
                    return Err(StoreError::QuotaExceeded {
                        quota: "webhooks_per_tenant",
                        limit: quotas.webhooks_per_tenant,
                    });
                }
                Ok(())
            })
            .await?;
        self.bus_cache
            .forget(tenant_id.as_str(), stored.topic.as_str());
        Ok(stored)
    }

    async fn subscription(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
    ) -> StoreResult<Option<Subscription>> {
        let found = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, filter, filter_scope, target, max_receives, visibility_timeout_s, retry_backoff_s, created_at
                     FROM subscriptions WHERE tenant_id = ?1 AND topic = ?2 AND name = ?3",
                )?
                .query_row(params![tenant.as_str(), topic.as_str(), name.as_str()], |r| subscription_from_row(topic, r))
                .optional()?)
        })?;
        found.transpose()
    }

    async fn list_subscriptions(&self, tenant: &TenantId) -> StoreResult<Vec<Subscription>> {
        let found = self.readers.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT name, filter, filter_scope, target, max_receives, visibility_timeout_s, retry_backoff_s, created_at, topic
                 FROM subscriptions WHERE tenant_id = ?1 ORDER BY topic, name",
            )?;
            let rows = statement.query_map(params![tenant.as_str()], |r| {
                let topic: String = r.get(8)?;
                Ok(match BusName::parse(&topic, "/topic") {
                    Ok(topic) => subscription_from_row(&topic, r)?,
                    Err(e) => Err(StoreError::Internal(e.to_string())),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })?;
        found.into_iter().collect()
    }

    async fn receive(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        request: ReceiveRequest,
    ) -> StoreResult<Vec<Delivery>> {
        // Publishes in this process wake the wait; the re-check catches messages
        // that become visible by time.
        let found = crate::wait::until(&self.published, request.wait, RECHECK, || async {
            let got = self
                .receive_now(
                    queue_key(tenant, topic, name),
                    request.max,
                    request.visibility_s,
                )
                .await?;
            Ok((!got.is_empty()).then_some(got))
        })
        .await?;
        Ok(found.unwrap_or_default())
    }

    async fn ack(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        receipts: Vec<String>,
    ) -> StoreResult<Vec<String>> {
        self.ack_receipts(queue_key(tenant, topic, name), receipts)
            .await
    }

    async fn nack(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        receipt: &str,
        delay_s: u32,
        error: Option<String>,
    ) -> StoreResult<bool> {
        self.nack_receipt(queue_key(tenant, topic, name), receipt, delay_s, error)
            .await
    }

    async fn stats(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
    ) -> StoreResult<QueueStats> {
        let now = to_micros(self.clock.now());
        let counted = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {QUEUE_COUNTS} FROM queues q
                     WHERE q.tenant_id = ?2 AND q.topic = ?3 AND q.subscription = ?4"
                ))?
                .query_row(
                    params![now, tenant.as_str(), topic.as_str(), name.as_str()],
                    |r| CountedQueue::from_row(r, 0),
                )
                .optional()?)
        })?;
        // Leased entries look visible in the table; the leases say otherwise.
        let held = self.leased(&queue_key(tenant, topic, name), now);
        Ok(counted.unwrap_or_default().stats(held, now))
    }

    async fn dead_letters(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>> {
        let rows: Vec<(String, String, String, i64, u32, Option<String>)> =
            self.readers.read(|conn| {
                Ok(conn
                .prepare_cached(
                    "SELECT d.message_id, d.body, d.attributes, d.published_at, d.receive_count, d.last_error
                     FROM queues q JOIN dead_letters d ON d.queue = q.id
                     WHERE q.tenant_id = ?1 AND q.topic = ?2 AND q.subscription = ?3
                     ORDER BY d.seq LIMIT ?4",
                )?
                .query_map(params![tenant.as_str(), topic.as_str(), name.as_str(), limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?
                .collect::<Result<_, _>>()?)
            })?;
        rows.into_iter()
            .map(
                |(id, body, attributes, published, receive_count, last_error)| {
                    Ok(DeadLetter {
                        id,
                        body: json_value(&body)?,
                        attributes: json_map(&attributes)?,
                        published_at: from_micros(published)?,
                        receive_count,
                        last_error,
                    })
                },
            )
            .collect()
    }

    async fn redrive(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        ids: Option<Vec<String>>,
    ) -> StoreResult<u64> {
        let (tenant, topic, name) = (
            tenant.0.clone(),
            topic.as_str().to_owned(),
            name.as_str().to_owned(),
        );
        let moved = self
            .writer
            .execute(move |conn| {
                let Some(queue) = conn
                    .prepare_cached(
                        "SELECT id FROM queues WHERE tenant_id = ?1 AND topic = ?2 AND subscription = ?3",
                    )?
                    .query_row(params![tenant, topic, name], |r| r.get::<_, i64>(0))
                    .optional()?
                else {
                    return Ok(0);
                };
                // Back in its old place, received afresh; its last error is kept.
                let revive = "INSERT INTO queue_entries
                        (queue, seq, message_id, body, attributes, published_at, receive_count, last_error)
                     SELECT queue, seq, message_id, body, attributes, published_at, 0, last_error
                     FROM dead_letters WHERE queue = ?1";
                let forget = "DELETE FROM dead_letters WHERE queue = ?1";
                let moved = match ids {
                    None => {
                        conn.prepare_cached(revive)?.execute([queue])?;
                        conn.prepare_cached(forget)?.execute([queue])?
                    }
                    Some(ids) => {
                        let mut revive = conn.prepare_cached(&format!("{revive} AND message_id = ?2"))?;
                        let mut forget = conn.prepare_cached(&format!("{forget} AND message_id = ?2"))?;
                        let mut moved = 0;
                        for id in &ids {
                            revive.execute(params![queue, id])?;
                            moved += forget.execute(params![queue, id])?;
                        }
                        moved
                    }
                } as i64;
                queue_counts::record(
                    conn,
                    queue,
                    Moved {
                        ready: moved,
                        delayed: 0,
                        dead: -moved,
                    },
                )?;
                Ok(moved as u64)
            })
            .await?;
        self.wake_receivers();
        Ok(moved)
    }
}

/// How often a waiting receive looks again without a wake-up.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

fn queue_key(tenant: &TenantId, topic: &BusName, name: &BusName) -> QueueKey {
    (
        tenant.0.clone(),
        topic.as_str().to_owned(),
        name.as_str().to_owned(),
    )
}

/// A queue's statistics from its counts (migration 13) and two seeks, with `now`
/// as `?1`: the delayed entries are split into due and waiting by their
/// (queue, visible_at) order, and the oldest ready entry is the first by seq
/// (seqs are handed out in publish order). Only delayed entries — nacked ones,
/// normally few — are scanned for their oldest.
const QUEUE_COUNTS: &str = "q.ready_count, q.delayed_count, q.dead_count,
    (SELECT count(*) FROM delayed_entries WHERE queue = q.id AND visible_at <= ?1),
    (SELECT published_at FROM queue_entries WHERE queue = q.id ORDER BY seq LIMIT 1),
    CASE WHEN q.delayed_count > 0
        THEN (SELECT min(published_at) FROM delayed_entries WHERE queue = q.id) END";

/// One row of [`QUEUE_COUNTS`].
#[derive(Default)]
struct CountedQueue {
    ready: i64,
    delayed: i64,
    dead: i64,
    due: i64,
    oldest_ready: Option<i64>,
    oldest_delayed: Option<i64>,
}

impl CountedQueue {
    fn from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            ready: r.get(at)?,
            delayed: r.get(at + 1)?,
            dead: r.get(at + 2)?,
            due: r.get(at + 3)?,
            oldest_ready: r.get(at + 4)?,
            oldest_delayed: r.get(at + 5)?,
        })
    }

    /// The statistics, with `held` of the ready entries leased to consumers.
    fn stats(&self, held: u64, now: i64) -> QueueStats {
        let oldest = match (self.oldest_ready, self.oldest_delayed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        QueueStats {
            depth: ((self.ready + self.due).max(0) as u64).saturating_sub(held),
            in_flight: (self.delayed - self.due).max(0) as u64 + held,
            oldest_age_s: oldest.map_or(0, |t| ((now - t).max(0) / 1_000_000) as u64),
            dlq_depth: self.dead.max(0) as u64,
        }
    }
}
