//! In-flight receives of the embedded bus, held in this process's memory.
//!
//! A receive used to write each message it handed out (a new visibility time, a
//! receipt, a receive count), which moved the message's index entry and cost more
//! than its publish and its ack together. Only one process serves a SQLite
//! database's bus (see [`BusOwner`]), so that process can remember who holds what:
//! a first receive writes nothing at all, and an ack deletes the row as before.
//!
//! What is written, and when:
//! - a **redelivery** (the message was received before: an expired lease, or a
//!   receive count already stored by a nack) stores its new receive count before it
//!   is handed out, and a message past `max_receives` is dead-lettered then;
//! - a **nack** stores the visibility, the count and the error, as before;
//! - a **first receive** stores nothing. If the process dies, the messages it had
//!   in flight are visible again at once on restart (at-least-once allows a
//!   redelivery; it is what a visibility timeout would have done later), and their
//!   first receive is not counted.
//!
//! Ordering with the reads: acks, nacks and dead-letter moves mark their lease
//! `settling` before they write and drop it only after their commit, and a receive
//! holds its queue's lock while it reads. So a receive either still sees the lease
//! (and skips the row) or starts its read after the commit (and no longer sees the
//! row): a settled message is never handed out again.

use std::{collections::HashMap, fs::File, path::PathBuf, sync::Arc};

use parking_lot::Mutex;

use crate::{StoreError, StoreResult};

/// One queue: a tenant's subscription.
pub(super) type QueueKey = (String, String, String);

#[derive(Default)]
pub(super) struct Leases {
    queues: Mutex<HashMap<QueueKey, Arc<Mutex<QueueLeases>>>>,
}

impl Leases {
    /// The leases of the queue `id`, made on first use: only for a subscription
    /// that exists (tenants choose the names).
    pub(super) fn queue(&self, key: QueueKey, id: i64) -> Arc<Mutex<QueueLeases>> {
        self.queues
            .lock()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Mutex::new(QueueLeases {
                    id,
                    by_seq: HashMap::new(),
                }))
            })
            .clone()
    }

    /// The queue's leases if anything was ever received from it.
    pub(super) fn existing(&self, key: &QueueKey) -> Option<Arc<Mutex<QueueLeases>>> {
        self.queues.lock().get(key).cloned()
    }

    /// How many messages each queue has in flight at `now`.
    pub(super) fn in_flight_by_queue(&self, now: i64) -> HashMap<QueueKey, u64> {
        let queues: Vec<_> = self
            .queues
            .lock()
            .iter()
            .map(|(key, queue)| (key.clone(), queue.clone()))
            .collect();
        queues
            .into_iter()
            .map(|(key, queue)| {
                let n = queue.lock().in_flight(now);
                (key, n)
            })
            .collect()
    }
}

/// The leases of one queue, by the message's queue-entry sequence number.
pub(super) struct QueueLeases {
    /// The queue's row id (`queues.id`).
    pub(super) id: i64,
    by_seq: HashMap<i64, Lease>,
}

struct Lease {
    nonce: String,
    /// Until when (µs) nobody else may receive the message.
    until: i64,
    /// Receives so far, this one included.
    count: u32,
    /// An ack, nack or dead-letter move is being written: nobody may receive or
    /// settle the message meanwhile, however long that write takes.
    settling: bool,
}

/// What a receive may do with a visible queue entry.
pub(super) enum Claim {
    /// Someone holds it, or it is being settled.
    Held,
    /// Receives it stored or leased before (the larger of the two).
    Free { received_before: u32 },
}

impl QueueLeases {
    /// Whether the entry `seq`, whose stored receive count is `stored_count`, may be
    /// received at `now`.
    pub(super) fn claim(&self, seq: i64, stored_count: u32, now: i64) -> Claim {
        match self.by_seq.get(&seq) {
            Some(lease) if lease.settling || lease.until > now => Claim::Held,
            Some(lease) => Claim::Free {
                received_before: lease.count.max(stored_count),
            },
            None => Claim::Free {
                received_before: stored_count,
            },
        }
    }

    /// Leases `seq` to a new receiver until `until`; returns its receipt nonce.
    pub(super) fn lease(&mut self, seq: i64, count: u32, until: i64) -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        self.by_seq.insert(
            seq,
            Lease {
                nonce: nonce.clone(),
                until,
                count,
                settling: false,
            },
        );
        nonce
    }

    /// Holds `seq` while a dead-letter move is written.
    pub(super) fn hold_for_settling(&mut self, seq: i64, count: u32) {
        self.by_seq.insert(
            seq,
            Lease {
                nonce: String::new(),
                until: i64::MAX,
                count,
                settling: true,
            },
        );
    }

    /// Starts settling the delivery a receipt names, if the receipt is still its
    /// current one; returns the delivery's receive count.
    pub(super) fn start_settling(&mut self, seq: i64, nonce: &str) -> Option<u32> {
        let lease = self.by_seq.get_mut(&seq)?;
        if lease.settling || lease.nonce != nonce {
            return None;
        }
        lease.settling = true;
        Some(lease.count)
    }

    /// The write settling `seq` failed: the delivery is held as before.
    pub(super) fn stop_settling(&mut self, seq: i64) {
        if let Some(lease) = self.by_seq.get_mut(&seq) {
            lease.settling = false;
        }
    }

    /// The write settling `seq` committed (or a lease taken by a receive that then
    /// failed is given back).
    pub(super) fn release(&mut self, seq: i64) {
        self.by_seq.remove(&seq);
    }

    /// Messages held at `now`: leased and not expired, or being settled.
    pub(super) fn in_flight(&self, now: i64) -> u64 {
        self.by_seq
            .values()
            .filter(|l| l.settling || l.until > now)
            .count() as u64
    }
}

/// The claim of this process on a database's bus: leases live in memory, so two
/// processes receiving from one database would hand out the same messages. The
/// first process to consume takes an exclusive lock on `<database>-bus.lock`
/// (released when it exits, however it exits); another process's receives, acks
/// and nacks then answer "unavailable". Other uses of the database (publishing,
/// `keel` commands beside a running server) need no claim.
pub(super) struct BusOwner {
    path: PathBuf,
    lock: Mutex<Option<File>>,
}

impl BusOwner {
    pub(super) fn new(database: &std::path::Path) -> Self {
        let mut path = database.as_os_str().to_owned();
        path.push("-bus.lock");
        Self {
            path: path.into(),
            lock: Mutex::new(None),
        }
    }

    pub(super) fn claim(&self) -> StoreResult<()> {
        let mut lock = self.lock.lock();
        if lock.is_some() {
            return Ok(());
        }
        let unavailable = |why: String| {
            StoreError::Unavailable(format!(
                "cannot serve the bus of this database: {why} ({})",
                self.path.display()
            ))
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .map_err(|e| unavailable(e.to_string()))?;
        match file.try_lock() {
            Ok(()) => {
                *lock = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(unavailable(
                "another process is serving it (one process per SQLite database; run replicas on PostgreSQL)".into(),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(unavailable(e.to_string())),
        }
    }
}
