//! Helpers of the embedded bus on SQLite: topic rows, the per-topic routing cache
//! and reading subscription rows (routing itself is in `crate::routing`).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc,
    },
};

use keel_core::{
    bus::{BusName, DeliveryPolicy},
    filter::FilterPolicy,
};
use parking_lot::Mutex;
use rusqlite::{params, Connection};

use super::{from_micros, readers::Readers};
use crate::{
    bus::{FilterScope, Subscription},
    routing::{json_value, parse_route, parse_scope, Routes},
    StoreError, StoreResult,
};

/// Creates the topic row if it is new, refusing a topic past the tenant's quota
/// (the insert is undone with the job's savepoint).
pub(super) fn ensure_topic_row(
    conn: &Connection,
    tenant: &str,
    topic: &str,
    now: i64,
    limit: u64,
) -> StoreResult<()> {
    let created = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO topics (tenant_id, name, created_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![tenant, topic, now])?;
    if created > 0 {
        let topics: i64 = conn
            .prepare_cached("SELECT count(*) FROM topics WHERE tenant_id = ?1")?
            .query_row([tenant], |r| r.get(0))?;
        if topics as u64 > limit {
            return Err(StoreError::QuotaExceeded {
                quota: "topics_per_tenant",
                limit,
            });
        }
    }
    Ok(())
}

/// Routing shared by publishers. Routes are read through a reader connection and
/// filters evaluated on the publisher's task, never on the writer thread, so an
/// expensive filter slows only its own publish. A subscription change bumps
/// `generation` *after* it commits; a load that raced with it is not cached.
#[derive(Default)]
pub(super) struct BusCache {
    routes: Mutex<HashMap<(String, String), TopicRoutes>>,
    generation: AtomicU64,
    /// When expired dedup ids were last swept (µs).
    last_sweep: AtomicI64,
}

/// A topic's routes and, in the same order, the queue id of each route's
/// subscription (a queue is made in the same write as its subscription, and
/// neither changes its id afterwards).
#[derive(Clone)]
pub(super) struct TopicRoutes {
    pub(super) routes: Routes,
    pub(super) queues: Arc<Vec<i64>>,
}

impl BusCache {
    pub(super) fn routes(
        &self,
        readers: &Readers,
        tenant: &str,
        topic: &str,
    ) -> StoreResult<TopicRoutes> {
        let key = (tenant.to_owned(), topic.to_owned());
        if let Some(routes) = self.routes.lock().get(&key) {
            return Ok(routes.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let (routes, queues) = readers
            .read(|conn| routing(conn, tenant, topic))?
            .into_iter()
            .unzip();
        let routes = TopicRoutes {
            routes: Arc::new(routes),
            queues: Arc::new(queues),
        };
        let mut cached = self.routes.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            cached.insert(key, routes.clone());
        }
        Ok(routes)
    }

    /// Call after a change to the topic's subscriptions has committed.
    pub(super) fn forget(&self, tenant: &str, topic: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.routes
            .lock()
            .remove(&(tenant.to_owned(), topic.to_owned()));
    }

    /// Deletes expired dedup ids, at most once a second.
    pub(super) fn sweep_dedup(&self, conn: &Connection, now: i64) -> StoreResult<()> {
        if now - self.last_sweep.load(Ordering::Relaxed) < 1_000_000 {
            return Ok(());
        }
        self.last_sweep.store(now, Ordering::Relaxed);
        conn.prepare_cached("DELETE FROM message_dedup WHERE expires_at <= ?1")?
            .execute([now])?;
        Ok(())
    }
}

/// A subscription's name and parsed filter, as `Routes` holds them.
type Route = (String, FilterScope, FilterPolicy);

/// The subscriptions of a topic with their parsed filters, each with its queue id.
fn routing(conn: &Connection, tenant: &str, topic: &str) -> StoreResult<Vec<(Route, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.name, s.filter, s.filter_scope, q.id FROM subscriptions s
         JOIN queues q ON q.tenant_id = s.tenant_id AND q.topic = s.topic AND q.subscription = s.name
         WHERE s.tenant_id = ?1 AND s.topic = ?2",
    )?;
    let rows = stmt
        .query_map(params![tenant, topic], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(name, filter, scope, queue)| {
            Ok((parse_route(name, filter.as_deref(), &scope)?, queue))
        })
        .collect()
}

pub(super) fn subscription_from_row(
    topic: &BusName,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<Subscription, StoreError>> {
    let name: String = row.get(0)?;
    let filter: Option<String> = row.get(1)?;
    let scope: String = row.get(2)?;
    let target: String = row.get(3)?;
    let max_receives: u32 = row.get(4)?;
    let visibility: u32 = row.get(5)?;
    let backoff: String = row.get(6)?;
    let created: i64 = row.get(7)?;
    Ok((|| {
        Ok(Subscription {
            topic: topic.clone(),
            name: BusName::parse(&name, "/name")
                .map_err(|e| StoreError::Internal(e.to_string()))?,
            filter: filter.as_deref().map(json_value).transpose()?,
            filter_scope: parse_scope(&scope),
            target: json_value(&target)?,
            delivery: DeliveryPolicy {
                max_receives,
                visibility_timeout_s: visibility,
                retry_backoff_s: serde_json::from_str(&backoff)
                    .map_err(|e| StoreError::Internal(format!("stored backoff: {e}")))?,
            },
            created_at: from_micros(created)?,
        })
    })())
}
