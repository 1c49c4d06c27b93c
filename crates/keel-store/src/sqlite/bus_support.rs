//! Helpers of the embedded bus: receipts, JSON columns, the per-topic routing
//! cache, and reading subscription rows.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
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

use super::from_micros;
use crate::{
    bus::{FilterScope, Subscription},
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

pub(super) fn ensure_topic_row(
    conn: &Connection,
    tenant: &str,
    topic: &str,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO topics (tenant_id, name, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![tenant, topic, now])?;
    Ok(())
}

/// A topic's subscriptions with their parsed filters: where a publish fans out.
pub(super) type Routes = Arc<Vec<(String, FilterScope, FilterPolicy)>>;

/// In-memory state of the writer thread's bus work. Only writer jobs touch it,
/// and they run one at a time in commit order, so it matches what the database
/// says (a batch that fails to commit only costs a reload).
#[derive(Default)]
pub(super) struct BusCache {
    routes: Mutex<HashMap<(String, String), Routes>>,
    /// When expired dedup ids were last swept (µs).
    last_sweep: AtomicI64,
}

impl BusCache {
    /// The topic's routes; the first call per topic also makes sure it exists.
    pub(super) fn routes(
        &self,
        conn: &Connection,
        tenant: &str,
        topic: &str,
        now: i64,
    ) -> StoreResult<Routes> {
        let key = (tenant.to_owned(), topic.to_owned());
        if let Some(routes) = self.routes.lock().get(&key) {
            return Ok(routes.clone());
        }
        ensure_topic_row(conn, tenant, topic, now)?;
        let routes: Routes = Arc::new(routing(conn, tenant, topic)?);
        self.routes.lock().insert(key, routes.clone());
        Ok(routes)
    }

    pub(super) fn forget(&self, tenant: &str, topic: &str) {
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
