//! Read connections. WAL lets readers run beside the writer without blocking it.
//!
//! Reads run on the calling task's thread rather than through `spawn_blocking`: the
//! point lookups Keel makes take microseconds on a warm page cache, less than the
//! hop to a blocking thread would cost. Long scans must not use this path.

use std::path::PathBuf;

use parking_lot::Mutex;
use rusqlite::Connection;

use super::open_connection;
use crate::StoreResult;

/// Idle connections kept for reuse; more are opened under load and closed after.
const KEEP_IDLE: usize = 8;

pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn read<R>(&self, work: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        let conn = match self.idle.lock().pop() {
            Some(conn) => conn,
            None => {
                let conn = open_connection(&self.path)?;
                conn.pragma_update(None, "query_only", true)?;
                conn
            }
        };
        let result = work(&conn);
        let mut idle = self.idle.lock();
        if idle.len() < KEEP_IDLE {
            idle.push(conn);
        }
        result
    }
}
