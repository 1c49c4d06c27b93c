//! Forward-only schema migrations, embedded in the binary and applied in order on
//! start (and by `keel migrate`). Each runs in its own transaction together with the
//! row that records it, so a crash leaves a migration either applied or not.

use jiff::Timestamp;
use rusqlite::Connection;

use crate::StoreResult;

/// (version, name, SQL). Append only: a released migration is never edited.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "bus",
        include_str!("../../migrations/sqlite/0002_bus.sql"),
    ),
    (
        3,
        "collections",
        include_str!("../../migrations/sqlite/0003_collections.sql"),
    ),
    (
        4,
        "server_secrets",
        include_str!("../../migrations/sqlite/0004_server_secrets.sql"),
    ),
    (
        5,
        "queue_entries",
        include_str!("../../migrations/sqlite/0005_queue_entries.sql"),
    ),
    (
        6,
        "objects",
        include_str!("../../migrations/sqlite/0006_objects.sql"),
    ),
    (
        7,
        "telemetry",
        include_str!("../../migrations/sqlite/0007_telemetry.sql"),
    ),
    (
        8,
        "monitors",
        include_str!("../../migrations/sqlite/0008_monitors.sql"),
    ),
    (
        9,
        "slos",
        include_str!("../../migrations/sqlite/0009_slos.sql"),
    ),
    (
        10,
        "notice_outbox",
        include_str!("../../migrations/sqlite/0010_notice_outbox.sql"),
    ),
    (
        11,
        "telemetry_bulk_index",
        include_str!("../../migrations/sqlite/0011_telemetry_bulk_index.sql"),
    ),
    (
        12,
        "console_sessions",
        include_str!("../../migrations/sqlite/0012_console_sessions.sql"),
    ),
    (
        13,
        "queue_counts",
        include_str!("../../migrations/sqlite/0013_queue_counts.sql"),
    ),
    (
        14,
        "session_keys",
        include_str!("../../migrations/sqlite/0014_session_keys.sql"),
    ),
    (
        15,
        "telemetry_log_blocks",
        include_str!("../../migrations/sqlite/0015_telemetry_log_blocks.sql"),
    ),
];

/// Applies every migration not yet applied; returns the versions it applied.
pub fn migrate(conn: &mut Connection) -> StoreResult<Vec<i64>> {
    // Functions that migrations written in SQL call.
    super::log_blocks::register_functions(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INTEGER PRIMARY KEY,
             name        TEXT NOT NULL,
             applied_at  INTEGER NOT NULL
         ) STRICT;",
    )?;
    let done = applied_migrations(conn)?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, Timestamp::now().as_microsecond()],
        )?;
        tx.commit()?;
        applied.push(version);
    }
    Ok(applied)
}

pub fn applied_migrations(conn: &Connection) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
    let versions = stmt
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(versions)
}
