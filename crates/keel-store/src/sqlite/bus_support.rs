//! Helpers of the embedded bus: receipts, JSON columns, the per-topic routing
//! cache, routing messages through filters, and reading subscription rows.

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
use serde_json::{Map, Value};

use super::{from_micros, readers::Readers};
use crate::{
    bus::{FilterScope, OutgoingMessage, Subscription},
    StoreError, StoreResult,
};

/// A receipt is `<queue entry seq>-<random nonce>`: the seq finds the entry by its
/// primary key, the nonce (stored with it, replaced on every receive) proves the
/// receipt is the current one. No index on receipts is needed.
pub(super) fn parse_receipt(receipt: &str) -> Option<(i64, &str)> {
    let (seq, nonce) = receipt.split_once('-')?;
    Some((seq.parse().ok()?, nonce))
}

/// How long a publish id is remembered (SPEC §4: 5 minutes).
pub(super) const DEDUP_WINDOW_MICROS: i64 = 5 * 60 * 1_000_000;

pub(super) fn json_text(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(format!("encoding JSON: {e}")))
}

pub(super) fn json_value(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Internal(format!("stored JSON: {e}")))
}

pub(super) fn json_map(text: &str) -> StoreResult<Map<String, Value>> {
    match json_value(text)? {
        Value::Object(map) => Ok(map),
        _ => Err(StoreError::Internal(
            "stored attributes are not an object".into(),
        )),
    }
}

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

/// A topic's subscriptions with their parsed filters: where a publish fans out.
pub(super) type Routes = Arc<Vec<(String, FilterScope, FilterPolicy)>>;

/// Routing shared by publishers. Routes are read through a reader connection and
/// filters evaluated on the publisher's task, never on the writer thread, so an
/// expensive filter slows only its own publish. A subscription change bumps
/// `generation` *after* it commits; a load that raced with it is not cached.
#[derive(Default)]
pub(super) struct BusCache {
    routes: Mutex<HashMap<(String, String), Routes>>,
    generation: AtomicU64,
    /// When expired dedup ids were last swept (µs).
    last_sweep: AtomicI64,
}

impl BusCache {
    pub(super) fn routes(
        &self,
        readers: &Readers,
        tenant: &str,
        topic: &str,
    ) -> StoreResult<Routes> {
        let key = (tenant.to_owned(), topic.to_owned());
        if let Some(routes) = self.routes.lock().get(&key) {
            return Ok(routes.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let routes: Routes = Arc::new(readers.read(|conn| routing(conn, tenant, topic))?);
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

/// A message ready for the writer: filters evaluated, JSON serialised once.
pub(super) struct Routed {
    pub messages: Vec<RoutedMessage>,
    /// Bytes the publish writes in all: each message's size times its copies.
    pub fanout_bytes: u64,
}

pub(super) struct RoutedMessage {
    pub dedup_id: Option<String>,
    /// Indexes into the routes it matched.
    pub matched: Vec<usize>,
    /// Body and attributes as stored; `None` when it matched nothing.
    pub texts: Option<(String, String)>,
}

/// Evaluates every message against every route and checks the fan-out quota:
/// the bytes a publish writes are its messages' sizes times their copies.
pub(super) fn route_messages(
    routes: &Routes,
    messages: Vec<OutgoingMessage>,
    fanout_limit: u64,
) -> StoreResult<Routed> {
    let mut fanout_bytes: u64 = 0;
    let messages = messages
        .into_iter()
        .map(|message| {
            let attributes = Value::Object(message.attributes);
            let matched: Vec<usize> = routes
                .iter()
                .enumerate()
                .filter(|(_, (_, scope, policy))| {
                    policy.matches(match scope {
                        FilterScope::Attributes => &attributes,
                        FilterScope::Body => &message.body,
                    })
                })
                .map(|(i, _)| i)
                .collect();
            let texts = if matched.is_empty() {
                None
            } else {
                let texts = (json_text(&message.body)?, json_text(&attributes)?);
                let size = (texts.0.len() + texts.1.len()) as u64;
                fanout_bytes = fanout_bytes.saturating_add(size * matched.len() as u64);
                if fanout_bytes > fanout_limit {
                    return Err(StoreError::QuotaExceeded {
                        quota: "fanout_bytes_per_publish",
                        limit: fanout_limit,
                    });
                }
                Some(texts)
            };
            Ok(RoutedMessage {
                dedup_id: message.dedup_id,
                matched,
                texts,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Routed {
        messages,
        fanout_bytes,
    })
}

/// The subscriptions of a topic with their parsed filters.
fn routing(
    conn: &Connection,
    tenant: &str,
    topic: &str,
) -> StoreResult<Vec<(String, FilterScope, FilterPolicy)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, filter, filter_scope FROM subscriptions WHERE tenant_id = ?1 AND topic = ?2",
    )?;
    let rows = stmt
        .query_map(params![tenant, topic], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(name, filter, scope)| {
            let policy = match filter {
                None => FilterPolicy::match_all(),
                Some(text) => FilterPolicy::parse(&json_value(&text)?, "/filter")
                    .map_err(|e| StoreError::Internal(format!("stored filter of {name}: {e}")))?,
            };
            let scope = if scope == "body" {
                FilterScope::Body
            } else {
                FilterScope::Attributes
            };
            Ok((name, scope, policy))
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
            filter_scope: if scope == "body" {
                FilterScope::Body
            } else {
                FilterScope::Attributes
            },
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
