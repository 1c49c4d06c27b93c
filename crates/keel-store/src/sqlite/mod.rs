//! The embedded adapter: one SQLite database file in WAL mode.
//!
//! Writes go through [`writer::Writer`] (one connection, group commit, fsync before
//! any caller is answered); reads through [`readers::Readers`]. The embedded bus
//! (`bus = "embedded"`) rides the same write path, so a publish and its queue
//! entries commit together.

mod bus;
mod bus_support;
mod channels;
mod collections;
mod consume;
mod errors;
mod leases;
mod log_blocks;
mod maintenance;
mod migrations;
mod monitor_checks;
mod monitors;
mod notice_outbox;
mod objects;
mod queries;
mod queue_counts;
mod readers;
mod sessions;
mod slos;
mod telemetry;
pub mod writer;

use std::{path::Path, sync::Arc, time::Duration};

use jiff::Timestamp;
use keel_core::clock::{Clock, SystemClock};
use rusqlite::Connection;

use crate::{Quotas, StoreError, StoreResult};

pub use migrations::{applied_migrations, migrate, MIGRATIONS};

/// The SQLite-backed store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: writer::Writer,
    readers: Arc<readers::Readers>,
    clock: Arc<dyn Clock>,
    /// Woken after every commit that may have made messages visible, so long polls
    /// answer at once.
    published: Arc<tokio::sync::Notify>,
    bus_cache: Arc<bus_support::BusCache>,
    quotas: Quotas,
    fanout_budget: Arc<crate::fanout_budget::FanoutBudget>,
    /// Messages in flight, held in memory by the one process serving the bus.
    leases: Arc<leases::Leases>,
    bus_owner: Arc<leases::BusOwner>,
    /// The next queue entry's sequence number; only writer jobs take from it (a
    /// job rolled back leaves a gap, which nothing minds).
    next_seq: Arc<std::sync::atomic::AtomicI64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies pending
    /// migrations, and starts the writer thread.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// As [`SqliteStore::open`], with the bus's notion of "now" (visibility
    /// timeouts, dedup windows) taken from `clock`.
    pub fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        create_private_file(path)?;
        let mut conn = open_connection(path)?;
        migrate(&mut conn)?;
        let next_seq = last_queue_seq(&conn)? + 1;
        Ok(Self {
            writer: writer::Writer::start(conn)?,
            readers: Arc::new(readers::Readers::new(path.to_owned())),
            clock,
            published: Arc::new(tokio::sync::Notify::new()),
            bus_cache: Arc::default(),
            quotas: Quotas::default(),
            fanout_budget: Arc::new(crate::fanout_budget::FanoutBudget::new(
                Quotas::default().fanout_bytes_per_second,
                Quotas::default().fanout_bytes_per_publish,
            )),
            leases: Arc::default(),
            bus_owner: Arc::new(leases::BusOwner::new(path)),
            next_seq: Arc::new(next_seq.into()),
        })
    }

    /// The same store, enforcing `quotas` from now on.
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        // A burst of one publish's worth: never several big publishes in one commit.
        self.fanout_budget = Arc::new(crate::fanout_budget::FanoutBudget::new(
            quotas.fanout_bytes_per_second,
            quotas.fanout_bytes_per_publish,
        ));
        self
    }

    fn wake_receivers(&self) {
        self.published.notify_waiters();
    }

    pub fn commit_stats(&self) -> Arc<crate::WriteStats> {
        self.writer.stats.clone()
    }
}

/// The highest sequence number any queue entry, delayed entry or dead letter has:
/// a seek per queue in the tables ordered by (queue, seq), a scan of the queue's
/// delayed entries.
fn last_queue_seq(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(max(m), 0) FROM (
            SELECT (SELECT max(seq) FROM queue_entries WHERE queue = q.id) AS m FROM queues q
            UNION ALL
            SELECT (SELECT max(seq) FROM dead_letters WHERE queue = q.id) FROM queues q
            UNION ALL
            SELECT (SELECT max(seq) FROM delayed_entries WHERE queue = q.id) FROM queues q)",
        [],
        |r| r.get(0),
    )?)
}

/// Creates the database file (and its folder) readable by this user only — the
/// file holds key hashes, webhook secrets and every tenant's data. SQLite gives
/// the WAL and shared-memory files it creates later the database file's mode.
/// An existing file keeps the mode its operator gave it.
fn create_private_file(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let unavailable = |what: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot create {}: {e}", what.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| unavailable(dir, e))?;
        }
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(unavailable(path, e)),
    }
}

/// A connection with the settings every Keel connection needs: WAL (readers never
/// block the writer), `synchronous=FULL` (a commit is fsync'd before it returns),
/// a busy timeout so a second process on the same file waits rather than fails,
/// and temporary data in memory: the writer's savepoints journal every page they
/// touch, and sorts of search results are temporary B-trees — neither needs a file.
pub(crate) fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(crate) fn to_micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(crate) use crate::from_micros;

/// Spec records (SLOs, channels, maintenance windows) from a query that selects
/// their [`RECORD_COLUMNS`](crate::spec_record::RECORD_COLUMNS).
fn spec_records<S: crate::spec_record::StoredSpec>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> StoreResult<Vec<crate::SpecRecord<S>>> {
    let rows: Vec<(String, String, String, i64)> = conn
        .prepare_cached(sql)?
        .query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, tenant, spec, at)| crate::spec_record::decode_record(id, tenant, &spec, at))
        .collect()
}

/// Leases up to `limit` rows of an outbox `table` whose lease ran out by `now`,
/// oldest id first, until `until`, and returns their `columns` read by `row`.
/// The object outbox and the notice outbox share it.
fn lease_outbox_rows<T>(
    conn: &Connection,
    table: &str,
    columns: &str,
    (now, until, limit): (i64, i64, u32),
    row: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    Ok(conn
        .prepare_cached(&format!(
            "UPDATE {table} SET leased_until = ?2
             WHERE id IN (SELECT id FROM {table} WHERE leased_until <= ?1 ORDER BY id LIMIT ?3)
             RETURNING {columns}"
        ))?
        .query_map(rusqlite::params![now, until, limit], row)?
        .collect::<Result<_, _>>()?)
}

/// Removes the outbox rows `ids` of `table` (published).
fn delete_outbox_rows(conn: &Connection, table: &str, ids: &[i64]) -> StoreResult<()> {
    let mut delete = conn.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?;
    for id in ids {
        delete.execute([id])?;
    }
    Ok(())
}
