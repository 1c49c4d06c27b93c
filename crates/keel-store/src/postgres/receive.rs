//! One receive on PostgreSQL, without waiting: take visible entries with
//! `FOR UPDATE SKIP LOCKED` (competing consumers on any replica never get the same
//! one), dead-letter those past their last receive, hide the rest with a fresh
//! receipt.

use keel_core::bus::BusName;
use sqlx::Row;

use super::{errors::map, PgStore};
use crate::{
    bus::Delivery,
    from_micros,
    routing::{json_map, json_value},
    StoreError, StoreResult, TenantId,
};

impl PgStore {
    /// One receive that does not wait.
    pub(super) async fn receive_now(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        max: u32,
        visibility_s: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let now = self.now_micros();
        let mut tx = self.tenant_tx(tenant.as_str()).await?;
        let max_receives: i32 = sqlx::query_scalar(
            "SELECT max_receives FROM subscriptions WHERE tenant_id = $1 AND topic = $2 AND name = $3",
        )
        .bind(tenant.as_str())
        .bind(topic.as_str())
        .bind(name.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or_else(|| StoreError::InvalidInput {
            field: "subscription",
            why: "no such subscription".into(),
        })?;
        let mut out = Vec::new();
        // Entries past their last receive are dead-lettered as they are met, so
        // take again until `max` are delivered or nothing is left.
        while out.len() < max as usize {
            let rows = sqlx::query(
                "SELECT seq, receive_count, message_id, body, attributes, published_at
                 FROM deliveries
                 WHERE tenant_id = $1 AND topic = $2 AND subscription = $3
                   AND state = 0 AND visible_at <= $4
                 ORDER BY visible_at, seq LIMIT $5
                 FOR UPDATE SKIP LOCKED",
            )
            .bind(tenant.as_str())
            .bind(topic.as_str())
            .bind(name.as_str())
            .bind(now)
            .bind((max as usize - out.len()) as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(map)?;
            if rows.is_empty() {
                break;
            }
            let (mut dead, mut taken, mut nonces) = (Vec::new(), Vec::new(), Vec::new());
            for r in &rows {
                let seq: i64 = r.get(0);
                let count: i32 = r.get(1);
                if count >= max_receives {
                    dead.push(seq);
                    continue;
                }
                let nonce = uuid::Uuid::new_v4().simple().to_string();
                taken.push(seq);
                nonces.push(nonce.clone());
                out.push(Delivery {
                    receipt: format!("{seq}-{nonce}"),
                    receive_count: count as u32 + 1,
                    id: r.get(2),
                    body: json_value(r.get(3))?,
                    attributes: json_map(r.get(4))?,
                    published_at: from_micros(r.get(5))?,
                });
            }
            if !dead.is_empty() {
                sqlx::query(
                    "UPDATE deliveries SET state = 1, receipt = NULL,
                        last_error = coalesce(last_error, 'not acknowledged within its visibility timeout')
                     WHERE seq = ANY($1)",
                )
                .bind(&dead)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            }
            if !taken.is_empty() {
                sqlx::query(
                    "UPDATE deliveries d SET receive_count = d.receive_count + 1, visible_at = $3, receipt = u.nonce
                     FROM unnest($1::bigint[], $2::text[]) AS u(seq, nonce) WHERE d.seq = u.seq",
                )
                .bind(&taken)
                .bind(&nonces)
                .bind(now + i64::from(visibility_s) * 1_000_000)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            }
        }
        tx.commit().await.map_err(map)?;
        Ok(out)
    }
}
