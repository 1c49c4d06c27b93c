//! Each queue's entry counts (ready, delayed, dead), kept on its `queues` row by
//! every write that moves entries, inside that write's savepoint, so statistics
//! read three integers instead of counting a million rows (migration 13).
//! Kept by the code rather than by triggers as on PostgreSQL: a row trigger
//! updates the queue's row once per entry where the code updates it once per
//! write, and cost the embedded bus ~25% (BENCHMARKS.md, console section).

use rusqlite::{params, Connection};

use crate::StoreResult;

/// Entries that arrived in (positive) or left (negative) each of a queue's tables.
#[derive(Default, Clone, Copy)]
pub(super) struct Moved {
    pub ready: i64,
    pub delayed: i64,
    pub dead: i64,
}

/// Adds `moved` to queue `queue`'s counts.
pub(super) fn record(conn: &Connection, queue: i64, moved: Moved) -> StoreResult<()> {
    if moved.ready == 0 && moved.delayed == 0 && moved.dead == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE queues SET ready_count = ready_count + ?2, delayed_count = delayed_count + ?3,
            dead_count = dead_count + ?4
         WHERE id = ?1",
    )?
    .execute(params![queue, moved.ready, moved.delayed, moved.dead])?;
    Ok(())
}
