//! Checks of the SQLite adapter alone: how it commits and how it keeps its file.
//! Everything a caller can observe is in the conformance suites.

use std::{collections::BTreeSet, sync::Arc};

use keel_core::counter::CounterName;
use keel_store::{sqlite::SqliteStore, CounterStore, TenantId};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("keel.db")).unwrap());
    let t = TenantId::default_tenant();
    let name = CounterName::parse("c").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (store, t, name) = (store.clone(), t.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..50 {
                got.push(store.next(&t, &name).await.unwrap());
            }
            got
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 3200);
    let stats = store.commit_stats();
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        stats.writes.load(std::sync::atomic::Ordering::Relaxed),
        3200
    );
    assert!(
        commits < 3200,
        "64 concurrent writers should share commits, got {commits} commits"
    );
}

#[test]
fn the_database_and_its_folder_are_private_to_their_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keel-data");
    let path = data.join("keel.db");
    let _store = keel_store::sqlite::SqliteStore::open(&path).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&path), 0o600);
    // SQLite gives its WAL the database file's mode.
    let wal = data.join("keel.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
}

/// Lines written under schema 14 (a row and a full-text document per line) move
/// into blocks with migration 15: every one is still found, by its words, level
/// and account, newest first, with its attributes.
#[tokio::test]
async fn log_lines_survive_the_move_into_blocks() {
    use keel_store::{
        telemetry::{search_terms, LogQuery, TelemetryStore},
        PageRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let tenant = TenantId::default_tenant();
    let at = |s: i64| 1_800_000_000_000_000 + s * 1_000_000;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 applied_at INTEGER NOT NULL) STRICT;",
        )
        .unwrap();
        for &(version, migration, sql) in &keel_store::sqlite::MIGRATIONS[..14] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![version, migration],
            )
            .unwrap();
        }
        // 2,500 lines of this tenant (three blocks' worth) and one of another.
        let mut insert = conn
            .prepare(
                "INSERT INTO telemetry_logs (tenant_id, ts, account, level, body, attributes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .unwrap();
        for i in 0..2_500i64 {
            let level = if i % 100 == 0 { "ERROR" } else { "info" };
            let body = format!("line {i} of the old layout");
            let attributes = format!("{{\"n\":{i}}}");
            insert
                .execute(rusqlite::params![
                    tenant.as_str(),
                    at(i),
                    "111",
                    level,
                    body,
                    attributes
                ])
                .unwrap();
        }
        insert
            .execute(rusqlite::params![
                "other",
                at(7),
                "111",
                "info",
                "line 7 elsewhere",
                "{}"
            ])
            .unwrap();
        conn.execute_batch(
            "INSERT INTO telemetry_logs_text (rowid, body) SELECT id, body FROM telemetry_logs;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let query = |q: &str, level: Option<&str>, limit: u32| LogQuery {
        account: Some("111".into()),
        level: level.map(Into::into),
        terms: search_terms(q).unwrap(),
        from: jiff::Timestamp::from_microsecond(at(0)).unwrap(),
        to: jiff::Timestamp::from_microsecond(at(10_000)).unwrap(),
        page: PageRequest {
            limit,
            cursor: None,
        },
    };
    let newest = store
        .query_logs(&tenant, query("old layout", None, 3))
        .await
        .unwrap();
    let bodies: Vec<&str> = newest.items.iter().map(|l| l.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "line 2499 of the old layout",
            "line 2498 of the old layout",
            "line 2497 of the old layout"
        ]
    );
    assert_eq!(newest.items[0].attributes["n"], 2499);
    let seven = store
        .query_logs(&tenant, query("7", None, 10))
        .await
        .unwrap();
    assert_eq!(
        seven.items.len(),
        1,
        "the other tenant's line 7 stays its own"
    );
    let errors = store
        .query_logs(&tenant, query("", Some("error"), 100))
        .await
        .unwrap();
    assert_eq!(errors.items.len(), 25);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (blocks, lines): (i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(lines) FROM telemetry_log_blocks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((blocks, lines), (4, 2_501));
}
