//! Receiving and settling on the embedded SQLite bus, with leases in memory
//! ([`super::leases`]): a receive reads on a reader connection and writes only for
//! redeliveries and dead letters; an ack deletes, a nack stores the retry.

use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    from_micros,
    leases::{Claim, QueueKey, QueueLeases},
    queue_counts::{self, Moved},
    to_micros, SqliteStore,
};
use crate::{
    bus::Delivery,
    routing::{json_map, json_value, parse_receipt},
    StoreError, StoreResult,
};

/// A visible queue entry a receive took.
struct Taken {
    seq: i64,
    nonce: String,
    count: u32,
    id: String,
    body: String,
    attributes: String,
    published: i64,
}

/// What one receive took, and what it must write before answering.
#[derive(Default)]
struct Pick {
    taken: Vec<Taken>,
    /// Redeliveries: (seq, receive count) to store before handing them out.
    recounts: Vec<(i64, u32)>,
    /// Entries past `max_receives`: (seq, receive count) to move to dead letters.
    dead: Vec<(i64, u32)>,
}

impl SqliteStore {
    /// One receive that does not wait: up to `max` visible messages, or none.
    pub(super) async fn receive_now(
        &self,
        key: QueueKey,
        max: u32,
        visibility_s: u32,
    ) -> StoreResult<Vec<Delivery>> {
        self.bus_owner.claim()?;
        let now = to_micros(self.clock.now());
        let until = now + i64::from(visibility_s) * 1_000_000;
        let (id, max_receives, due) = self.readers.read(|conn| {
            let (id, max_receives) = queue_of(conn, &key)?;
            Ok((id, max_receives, delayed_due(conn, id, now)?))
        })?;
        if due {
            self.writer
                .execute(move |conn| return_due_entries(conn, id, now))
                .await?;
        }
        let queue = self.leases.queue(key, id);
        let pick = {
            // Held while reading: see the ordering note in `leases`.
            let mut leases = queue.lock();
            self.readers
                .read(|conn| pick(conn, &mut leases, max, max_receives, now, until))?
        };
        if !pick.recounts.is_empty() || !pick.dead.is_empty() {
            let (recounts, dead) = (pick.recounts, pick.dead);
            let writer = self.writer.clone();
            let taken: Vec<i64> = pick.taken.iter().map(|t| t.seq).collect();
            // A task of its own, so a cancelled caller still releases what it held.
            // Not `settle`: dead-letter holds go whether or not the write stood.
            tokio::spawn(async move {
                let dead_seqs: Vec<i64> = dead.iter().map(|(seq, _)| *seq).collect();
                let written = writer
                    .execute(move |conn| store_receive_counts(conn, id, &recounts, &dead))
                    .await;
                let mut leases = queue.lock();
                for seq in dead_seqs {
                    leases.release(seq);
                }
                if written.is_err() {
                    // Not handed out after all: visible again at once.
                    for seq in taken {
                        leases.release(seq);
                    }
                }
                written
            })
            .await
            .map_err(|e| StoreError::Internal(format!("receive task: {e}")))??;
        }
        pick.taken
            .into_iter()
            .map(|t| {
                Ok(Delivery {
                    receipt: format!("{}-{}", t.seq, t.nonce),
                    receive_count: t.count,
                    id: t.id,
                    body: json_value(&t.body)?,
                    attributes: json_map(&t.attributes)?,
                    published_at: from_micros(t.published)?,
                })
            })
            .collect()
    }

    /// Deletes the deliveries `receipts` name; returns the receipts that were not
    /// current (unknown, stale, another queue's, or settled meanwhile).
    pub(super) async fn ack_receipts(
        &self,
        key: QueueKey,
        receipts: Vec<String>,
    ) -> StoreResult<Vec<String>> {
        self.bus_owner.claim()?;
        let Some(queue) = self.leases.existing(&key) else {
            return Ok(receipts);
        };
        let mut not_current = Vec::new();
        let mut settling = Vec::new();
        {
            let mut leases = queue.lock();
            for receipt in receipts {
                let started = parse_receipt(&receipt)
                    .and_then(|(seq, nonce)| leases.start_settling(seq, nonce).map(|_| seq));
                match started {
                    Some(seq) => settling.push((seq, receipt)),
                    None => not_current.push(receipt),
                }
            }
        }
        if settling.is_empty() {
            return Ok(not_current);
        }
        let seqs: Vec<i64> = settling.iter().map(|(seq, _)| *seq).collect();
        let id = queue.lock().id;
        let deleted = self
            .settle(queue, seqs.clone(), move |conn| {
                delete_entries(conn, id, &seqs)
            })
            .await?;
        for ((_, receipt), gone) in settling.into_iter().zip(deleted) {
            if !gone {
                not_current.push(receipt);
            }
        }
        Ok(not_current)
    }

    /// Makes the delivery `receipt` names visible again after `delay_s`, keeping
    /// its receive count; `false` when the receipt is not current.
    pub(super) async fn nack_receipt(
        &self,
        key: QueueKey,
        receipt: &str,
        delay_s: u32,
        error: Option<String>,
    ) -> StoreResult<bool> {
        self.bus_owner.claim()?;
        let Some(queue) = self.leases.existing(&key) else {
            return Ok(false);
        };
        let Some((seq, nonce)) = parse_receipt(receipt) else {
            return Ok(false);
        };
        let (id, count) = {
            let mut leases = queue.lock();
            let Some(count) = leases.start_settling(seq, nonce) else {
                return Ok(false);
            };
            (leases.id, count)
        };
        let visible_at = to_micros(self.clock.now()) + i64::from(delay_s) * 1_000_000;
        self.settle(queue, vec![seq], move |conn| {
            delay_entry(conn, id, seq, visible_at, count, error)
        })
        .await
    }

    /// Writes `work`, which settles the deliveries `seqs` (whose leases are
    /// settling), then drops their leases once it committed or, if it failed,
    /// gives them back to their holders. In a task of its own, so a cancelled
    /// caller cannot leave a lease settling forever.
    async fn settle<R, F>(
        &self,
        queue: Arc<Mutex<QueueLeases>>,
        seqs: Vec<i64>,
        work: F,
    ) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let written = writer.execute(work).await;
            let mut leases = queue.lock();
            for seq in seqs {
                match written {
                    Ok(_) => leases.release(seq),
                    Err(_) => leases.stop_settling(seq),
                }
            }
            written
        })
        .await
        .map_err(|e| StoreError::Internal(format!("settling task: {e}")))?
    }

    /// Messages of the queue held by receivers at `now`.
    pub(super) fn leased(&self, key: &QueueKey, now: i64) -> u64 {
        self.leases
            .existing(key)
            .map_or(0, |queue| queue.lock().in_flight(now))
    }
}

/// The queue's id and its subscription's `max_receives`.
fn queue_of(conn: &Connection, (tenant, topic, name): &QueueKey) -> StoreResult<(i64, u32)> {
    conn.prepare_cached(
        "SELECT q.id, s.max_receives FROM subscriptions s
         JOIN queues q ON q.tenant_id = s.tenant_id AND q.topic = s.topic AND q.subscription = s.name
         WHERE s.tenant_id = ?1 AND s.topic = ?2 AND s.name = ?3",
    )?
    .query_row(params![tenant, topic, name], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?
    .ok_or_else(|| StoreError::InvalidInput {
        field: "subscription",
        why: "no such subscription".into(),
    })
}

/// Takes up to `max` visible entries that nobody holds, oldest first, leasing them
/// until `until`. The table holds only entries ready or leased (a nack's delay
/// moves an entry out), so the scan reads past no more than the leased ones.
fn pick(
    conn: &Connection,
    leases: &mut QueueLeases,
    max: u32,
    max_receives: u32,
    now: i64,
    until: i64,
) -> StoreResult<Pick> {
    // Every held entry may come first, so read past as many of them as are held.
    let limit = i64::from(max) + leases.in_flight(now) as i64;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, receive_count, message_id, body, attributes, published_at
         FROM queue_entries WHERE queue = ?1 ORDER BY seq LIMIT ?2",
    )?;
    let queue = leases.id;
    let mut rows = stmt.query(params![queue, limit])?;
    let mut pick = Pick::default();
    while pick.taken.len() < max as usize {
        let Some(row) = rows.next()? else { break };
        let seq: i64 = row.get(0)?;
        let received_before = match leases.claim(seq, row.get(1)?, now) {
            Claim::Held => continue,
            Claim::Free { received_before } => received_before,
        };
        if received_before >= max_receives {
            leases.hold_for_settling(seq, received_before);
            pick.dead.push((seq, received_before));
            continue;
        }
        let count = received_before + 1;
        if received_before > 0 {
            pick.recounts.push((seq, count));
        }
        pick.taken.push(Taken {
            seq,
            nonce: leases.lease(seq, count, until),
            count,
            id: row.get(2)?,
            body: row.get(3)?,
            attributes: row.get(4)?,
            published: row.get(5)?,
        });
    }
    Ok(pick)
}

/// Whether any of the queue's delayed entries is due at `now`.
fn delayed_due(conn: &Connection, queue: i64, now: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM delayed_entries WHERE queue = ?1 AND visible_at <= ?2)",
        )?
        .query_row(params![queue, now], |r| r.get(0))?)
}

/// Moves the queue's due delayed entries back among the ready ones, in their old
/// place (their seq).
fn return_due_entries(conn: &Connection, queue: i64, now: i64) -> StoreResult<()> {
    let returned = conn
        .prepare_cached(
            "INSERT INTO queue_entries
            (queue, seq, message_id, body, attributes, published_at, receive_count, last_error)
         SELECT queue, seq, message_id, body, attributes, published_at, receive_count, last_error
         FROM delayed_entries WHERE queue = ?1 AND visible_at <= ?2",
        )?
        .execute(params![queue, now])? as i64;
    conn.prepare_cached("DELETE FROM delayed_entries WHERE queue = ?1 AND visible_at <= ?2")?
        .execute(params![queue, now])?;
    queue_counts::record(
        conn,
        queue,
        Moved {
            ready: returned,
            delayed: -returned,
            dead: 0,
        },
    )
}

/// A nack: stores the receive count and the error, and moves the entry out of the
/// ready ones until `visible_at`; `false` when the entry is gone.
fn delay_entry(
    conn: &Connection,
    queue: i64,
    seq: i64,
    visible_at: i64,
    count: u32,
    error: Option<String>,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE queue_entries SET receive_count = ?3, last_error = coalesce(?4, last_error)
             WHERE queue = ?1 AND seq = ?2",
        )?
        .execute(params![queue, seq, count, error])?;
    if changed == 1 {
        conn.prepare_cached(
            "INSERT INTO delayed_entries
                (queue, visible_at, seq, message_id, body, attributes, published_at, receive_count, last_error)
             SELECT queue, ?3, seq, message_id, body, attributes, published_at, receive_count, last_error
             FROM queue_entries WHERE queue = ?1 AND seq = ?2",
        )?
        .execute(params![queue, seq, visible_at])?;
        conn.prepare_cached("DELETE FROM queue_entries WHERE queue = ?1 AND seq = ?2")?
            .execute(params![queue, seq])?;
        queue_counts::record(
            conn,
            queue,
            Moved {
                ready: -1,
                delayed: 1,
                dead: 0,
            },
        )?;
    }
    Ok(changed == 1)
}

fn store_receive_counts(
    conn: &Connection,
    queue: i64,
    recounts: &[(i64, u32)],
    dead: &[(i64, u32)],
) -> StoreResult<()> {
    let mut recount = conn.prepare_cached(
        "UPDATE queue_entries SET receive_count = ?3 WHERE queue = ?1 AND seq = ?2",
    )?;
    for (seq, count) in recounts {
        recount.execute(params![queue, seq, count])?;
    }
    let mut bury = conn.prepare_cached(
        "INSERT INTO dead_letters
            (queue, seq, message_id, body, attributes, published_at, receive_count, last_error)
         SELECT queue, seq, message_id, body, attributes, published_at, ?3,
            coalesce(last_error, 'not acknowledged within its visibility timeout')
         FROM queue_entries WHERE queue = ?1 AND seq = ?2",
    )?;
    let mut remove =
        conn.prepare_cached("DELETE FROM queue_entries WHERE queue = ?1 AND seq = ?2")?;
    let mut buried = 0;
    for (seq, count) in dead {
        if bury.execute(params![queue, seq, count])? == 1 {
            remove.execute(params![queue, seq])?;
            buried += 1;
        }
    }
    queue_counts::record(
        conn,
        queue,
        Moved {
            ready: -buried,
            delayed: 0,
            dead: buried,
        },
    )
}

/// Deletes the queue's entries `seqs`; for each, whether it was still there.
fn delete_entries(conn: &Connection, queue: i64, seqs: &[i64]) -> StoreResult<Vec<bool>> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM queue_entries WHERE queue = ?1 AND seq = ?2")?;
    let deleted: Vec<bool> = seqs
        .iter()
        .map(|seq| Ok(stmt.execute(params![queue, seq])? == 1))
        .collect::<StoreResult<_>>()?;
    let gone = deleted.iter().filter(|d| **d).count() as i64;
    queue_counts::record(
        conn,
        queue,
        Moved {
            ready: -gone,
            ..Moved::default()
        },
    )?;
    Ok(deleted)
}
