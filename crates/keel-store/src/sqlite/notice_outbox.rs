//! Notices waiting to be published, on SQLite (migration 10, table
//! `notice_outbox`); see [`crate::notice_outbox`].

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::{delete_outbox_rows, lease_outbox_rows, SqliteStore};
use crate::{
    notice_outbox::{decode_pending, NoticeEvent, NoticeOutbox, NoticeSubject, PendingNotice},
    StoreResult,
};

/// Queues a notice in the caller's transaction (the one making the change).
pub(super) fn queue_notice(
    conn: &Connection,
    tenant: &str,
    subject: NoticeSubject,
    subject_id: &str,
    event: NoticeEvent,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO notice_outbox (tenant_id, kind, subject_id, event) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        tenant,
        subject.as_str(),
        subject_id,
        event.as_str()
    ])?;
    Ok(())
}

#[async_trait]
impl NoticeOutbox for SqliteStore {
    async fn claim_notices(&self, limit: u32, lease: Duration) -> StoreResult<Vec<PendingNotice>> {
        let now = self.clock.now().as_microsecond();
        // Relays look every few seconds; an empty outbox costs them no commit.
        let any: bool = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM notice_outbox WHERE leased_until <= ?1)",
                )?
                .query_row([now], |r| r.get(0))?)
        })?;
        if !any {
            return Ok(Vec::new());
        }
        let until = now + lease.as_micros() as i64;
        let rows: Vec<(i64, String, String, String, String)> = self
            .writer
            .execute(move |conn| {
                lease_outbox_rows(
                    conn,
                    "notice_outbox",
                    "id, tenant_id, kind, subject_id, event",
                    (now, until, limit),
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
            })
            .await?;
        let mut pending = rows
            .into_iter()
            .map(|(id, tenant, kind, subject_id, event)| {
                decode_pending(id, tenant, &kind, subject_id, &event)
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
        self.writer
            .execute(move |conn| delete_outbox_rows(conn, "notice_outbox", &ids))
            .await
    }
}
