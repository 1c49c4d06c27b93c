//! Queue statistics from the counts the delivery triggers keep (migration 8):
//! a queue's live and dead deliveries are its folded `queue_counts` row plus its
//! pending `queue_count_deltas`; what is in flight (invisible until later) and
//! the oldest message come from index ranges of `deliveries_ready`, which hold
//! only the in-flight rows and the first ready one.

use sqlx::{postgres::PgRow, Postgres, Row, Transaction};

use super::errors::map;
use crate::{bus::QueueStats, StoreResult};

/// Key for the advisory lock one folder holds at a time, so two replicas'
/// folds never wait on each other's counter rows.
const FOLD_LOCK: i64 = 0x6b65_656c_0c0f;

/// The statistics columns, `$1` being now in µs, for the queues of `totals`
/// (one row per queue: tenant_id, topic, subscription, live, dead).
fn stats_sql(filter: &str) -> String {
    format!(
        "WITH totals AS (
             SELECT tenant_id, topic, subscription, sum(live)::BIGINT AS live, sum(dead)::BIGINT AS dead
             FROM (SELECT tenant_id, topic, subscription, live, dead FROM queue_counts {filter}
                   UNION ALL
                   SELECT tenant_id, topic, subscription, live, dead FROM queue_count_deltas {filter}) c
             GROUP BY tenant_id, topic, subscription)
         SELECT t.tenant_id, t.topic, t.subscription, t.live, t.dead,
            (SELECT count(*) FROM deliveries d
             WHERE d.tenant_id = t.tenant_id AND d.topic = t.topic
               AND d.subscription = t.subscription AND d.state = 0 AND d.visible_at > $1),
            (SELECT min(published_at) FROM (
                (SELECT published_at FROM deliveries d
                 WHERE d.tenant_id = t.tenant_id AND d.topic = t.topic
                   AND d.subscription = t.subscription AND d.state = 0 AND d.visible_at <= $1
                 ORDER BY d.visible_at LIMIT 1)
                UNION ALL
                SELECT published_at FROM deliveries d
                WHERE d.tenant_id = t.tenant_id AND d.topic = t.topic
                  AND d.subscription = t.subscription AND d.state = 0 AND d.visible_at > $1) o)
         FROM totals t"
    )
}

/// One queue's statistics, in a transaction of its tenant.
pub(super) async fn of_queue(
    tx: &mut Transaction<'static, Postgres>,
    now: i64,
    tenant: &str,
    topic: &str,
    subscription: &str,
) -> StoreResult<QueueStats> {
    let row = sqlx::query(&stats_sql(
        "WHERE tenant_id = $2 AND topic = $3 AND subscription = $4",
    ))
    .bind(now)
    .bind(tenant)
    .bind(topic)
    .bind(subscription)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map)?;
    Ok(row.map(|r| stats_of(&r, now)).unwrap_or_default())
}

/// Every queue that holds anything, in a transaction across tenants:
/// (tenant, topic, subscription, stats).
pub(super) async fn of_every_queue(
    tx: &mut Transaction<'static, Postgres>,
    now: i64,
) -> StoreResult<Vec<(String, String, String, QueueStats)>> {
    let rows = sqlx::query(&format!(
        "SELECT * FROM ({}) s WHERE s.live > 0 OR s.dead > 0",
        stats_sql("")
    ))
    .bind(now)
    .fetch_all(&mut **tx)
    .await
    .map_err(map)?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), stats_of(r, now)))
        .collect())
}

fn stats_of(r: &PgRow, now: i64) -> QueueStats {
    let (live, dead, in_flight): (i64, i64, i64) = (r.get(3), r.get(4), r.get(5));
    let oldest: Option<i64> = r.get(6);
    QueueStats {
        depth: (live - in_flight).max(0) as u64,
        in_flight: in_flight.max(0) as u64,
        oldest_age_s: oldest.map_or(0, |t| ((now - t).max(0) / 1_000_000) as u64),
        dlq_depth: dead.max(0) as u64,
    }
}

/// Folds every pending delta into its queue's row, in a transaction across
/// tenants; does nothing while another replica folds.
pub(super) async fn fold(tx: &mut Transaction<'static, Postgres>) -> StoreResult<()> {
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(FOLD_LOCK)
        .fetch_one(&mut **tx)
        .await
        .map_err(map)?;
    if !ours {
        return Ok(());
    }
    sqlx::query(
        "WITH moved AS (
             DELETE FROM queue_count_deltas RETURNING tenant_id, topic, subscription, live, dead)
         INSERT INTO queue_counts (tenant_id, topic, subscription, live, dead)
         SELECT tenant_id, topic, subscription, sum(live), sum(dead) FROM moved
         GROUP BY tenant_id, topic, subscription
         ORDER BY tenant_id, topic, subscription
         ON CONFLICT (tenant_id, topic, subscription) DO UPDATE
             SET live = queue_counts.live + excluded.live, dead = queue_counts.dead + excluded.dead",
    )
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(())
}
