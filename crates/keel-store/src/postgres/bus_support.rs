//! Helpers of the embedded bus on PostgreSQL: the filter cache, topic rows (with
//! their quota) and reading subscription and statistics rows.

use std::collections::HashMap;

use keel_core::{bus::BusName, bus::DeliveryPolicy, filter::FilterPolicy};
use parking_lot::Mutex;
use sqlx::{postgres::PgRow, PgConnection, Row};

use super::errors::map;
use crate::{
    bus::Subscription,
    from_micros,
    routing::{json_value, parse_scope},
    StoreError, StoreResult,
};

/// Parsed filters by their stored text. Subscriptions are read on every publish
/// (another replica may have just added one); only parsing is cached.
#[derive(Default)]
pub struct RouteCache {
    filters: Mutex<HashMap<String, FilterPolicy>>,
}

impl RouteCache {
    pub(super) fn policy(&self, text: Option<&str>) -> StoreResult<FilterPolicy> {
        let Some(text) = text else {
            return Ok(FilterPolicy::match_all());
        };
        if let Some(policy) = self.filters.lock().get(text) {
            return Ok(policy.clone());
        }
        let policy = FilterPolicy::parse(&json_value(text)?, "/filter")
            .map_err(|e| StoreError::Internal(format!("stored filter: {e}")))?;
        let mut filters = self.filters.lock();
        if filters.len() > 10_000 {
            filters.clear();
        }
        filters.insert(text.to_owned(), policy.clone());
        Ok(policy)
    }
}

pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "name, filter, filter_scope, target, max_receives, visibility_timeout_s, retry_backoff_s, created_at";

pub(super) fn subscription_from(topic: &BusName, r: &PgRow) -> StoreResult<Subscription> {
    let name: String = r.get(0);
    let filter: Option<String> = r.get(1);
    let scope: String = r.get(2);
    let target: String = r.get(3);
    let backoff: String = r.get(6);
    Ok(Subscription {
        topic: topic.clone(),
        name: BusName::parse(&name, "/name").map_err(|e| StoreError::Internal(e.to_string()))?,
        filter: filter.as_deref().map(json_value).transpose()?,
        filter_scope: parse_scope(&scope),
        target: json_value(&target)?,
        delivery: DeliveryPolicy {
            max_receives: r.get::<i32, _>(4) as u32,
            visibility_timeout_s: r.get::<i32, _>(5) as u32,
            retry_backoff_s: serde_json::from_str(&backoff)
                .map_err(|e| StoreError::Internal(format!("stored backoff: {e}")))?,
        },
        created_at: from_micros(r.get(7))?,
    })
}

/// Creates the topic row if it is new, refusing one past the tenant's quota.
pub(super) async fn ensure_topic_row(
    conn: &mut PgConnection,
    tenant: &str,
    topic: &str,
    now: i64,
    limit: u64,
) -> StoreResult<()> {
    let created = sqlx::query(
        "INSERT INTO topics (tenant_id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(topic)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map)?
    .rows_affected();
    if created > 0 {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('keel-quota:' || $1, 0))")
            .bind(tenant)
            .execute(&mut *conn)
            .await
            .map_err(map)?;
        let topics: i64 = sqlx::query_scalar("SELECT count(*) FROM topics WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&mut *conn)
            .await
            .map_err(map)?;
        if topics as u64 > limit {
            return Err(StoreError::QuotaExceeded {
                quota: "topics_per_tenant",
                limit,
            });
        }
    }
    Ok(())
}
