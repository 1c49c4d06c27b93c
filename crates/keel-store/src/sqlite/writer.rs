//! The single write path with group commit.
//!
//! One thread owns the only writing connection. It takes the first job that arrives,
//! then every job already queued behind it (up to [`MAX_BATCH`]), runs them all in
//! one transaction — each inside its own savepoint, so one job's failure does not
//! undo its neighbours — and commits once. SQLite in WAL mode with
//! `synchronous=FULL` fsyncs the log on that commit; only then is each job's caller
//! answered. Concurrent writers therefore share an fsync instead of queueing for one,
//! and a batch grows by itself exactly when load rises.
//!
//! The writer checkpoints the WAL itself, every [`CHECKPOINT_FRAMES`] frames:
//! a checkpoint on a thread of its own was tried (issue 9) and could not keep
//! the WAL bounded under sustained ingest — the WAL starts over only when a
//! checkpoint has copied all of it, which a concurrent one never does while the
//! writer keeps committing.

use std::{sync::Arc, thread};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::errors::map_sqlite_error;
use crate::{StoreError, StoreResult, WriteStats};

/// Enough to amortise an fsync over thousands of small writes while bounding how
/// long the first job in a batch waits for the last.
pub const MAX_BATCH: usize = 4096;
const QUEUE_DEPTH: usize = 65_536;
/// WAL frames (pages) after which a commit checkpoints: 16 MiB of 4 KiB pages,
/// four times SQLite's default, so fewer checkpoints (each with a database fsync)
/// copy the pages that heavy writes rewrite many times over.
const CHECKPOINT_FRAMES: i64 = 4096;
/// The writer's page cache (KiB): the tables and indexes it appends to stay in
/// memory instead of being read back for every insert. Pages are only taken as
/// they are used, so an idle store stays small.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// A write waiting for its batch: runs inside the batch transaction, then learns
/// whether the batch committed.
trait Job: Send {
    /// Does the work; `false` when it failed and its savepoint must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    fn complete(self: Box<Self>, commit: StoreResult<()>);
}

struct Pending<R, F> {
    work: Option<F>,
    result: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<R, F> Job for Pending<R, F>
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let work = self.work.take().expect("a job runs once");
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn complete(self: Box<Self>, commit: StoreResult<()>) {
        let answer = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Internal("a job was never run".into())),
        };
        // The caller may have gone away (request cancelled); the write stands.
        let _ = self.reply.send(answer);
    }
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    pub stats: Arc<WriteStats>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_FRAMES)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(WriteStats::default());
        let thread_stats = stats.clone();
        thread::Builder::new()
            .name("keel-sqlite-writer".into())
            .spawn(move || run(conn, rx, &thread_stats))
            .expect("spawn the writer thread");
        Ok(Self { jobs: tx, stats })
    }

    /// Runs `work` in the next batch and returns its result once that batch is
    /// durable on disk.
    pub async fn execute<R, F>(&self, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (reply, reply_rx) = oneshot::channel::<StoreResult<R>>();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        reply_rx
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before committing".into()))?
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>, stats: &WriteStats) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    // Ends when every sender is gone: the store was dropped and queued jobs all ran.
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len() as u64;
        let outcome = commit_batch(&conn, &mut batch);
        // Counted before the callers hear back, so a caller that has its answer
        // also sees its write in the statistics.
        stats.record_commit(size);
        for job in batch.drain(..) {
            job.complete(outcome.as_ref().map(|_| ()).map_err(StoreError::clone));
        }
    }
}

/// Runs every job of the batch in one transaction and commits it once.
fn commit_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> StoreResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(map_sqlite_error)?;
    for job in batch.iter_mut() {
        let ok = conn.execute_batch("SAVEPOINT job").is_ok() && {
            let ok = job.run(conn);
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            conn.execute_batch(end).is_ok()
        };
        if !ok && conn.is_autocommit() {
            // A savepoint statement itself failed and took the transaction with it.
            return Err(StoreError::Unavailable(
                "the write transaction was lost".into(),
            ));
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(map_sqlite_error(e));
    }
    Ok(())
}
