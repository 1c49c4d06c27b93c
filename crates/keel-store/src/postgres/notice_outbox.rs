//! Notices waiting to be published, on PostgreSQL (migration 6, table
//! `notice_outbox`, behind row-level security); see [`crate::notice_outbox`].

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Postgres, Row, Transaction};

use super::{errors::map, PgStore, Rows};
use crate::{
    notice_outbox::{decode_pending, NoticeEvent, NoticeOutbox, NoticeSubject, PendingNotice},
    StoreResult,
};

/// Queues a notice in the caller's transaction (the one making the change).
pub(super) async fn queue_notice(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    subject: NoticeSubject,
    subject_id: &str,
    event: NoticeEvent,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO notice_outbox (tenant_id, kind, subject_id, event) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant)
    .bind(subject.as_str())
    .bind(subject_id)
    .bind(event.as_str())
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl NoticeOutbox for PgStore {
    async fn claim_notices(&self, limit: u32, lease: Duration) -> StoreResult<Vec<PendingNotice>> {
        let now = self.now_micros();
        let rows = self
            .fetch_all_alone(
                Rows::OfAllTenants("relay incident and alert notices"),
                sqlx::query(
                    "UPDATE notice_outbox SET leased_until = $2
                     WHERE id IN (SELECT id FROM notice_outbox WHERE leased_until <= $1
                                  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING id, tenant_id, kind, subject_id, event",
                )
                .bind(now)
                .bind(now + lease.as_micros() as i64)
                .bind(i64::from(limit)),
            )
            .await?;
        let mut pending = rows
            .iter()
            .map(|r| {
                decode_pending(
                    r.get(0),
                    r.get(1),
                    r.get::<&str, _>(2),
                    r.get(3),
                    r.get::<&str, _>(4),
                )
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING gives no order; the oldest change is told first.
        pending.sort_by_key(|p| p.id);
        Ok(pending)
    }

    async fn finish_notices(&self, ids: Vec<i64>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.execute_alone(
            Rows::OfAllTenants("relay incident and alert notices"),
            sqlx::query("DELETE FROM notice_outbox WHERE id = ANY($1)").bind(ids),
        )
        .await
        .map(drop)
    }
}
