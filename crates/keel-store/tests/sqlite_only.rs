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

/// A word query takes one of two plans on SQLite (from the full-text index when
/// its rarest word is rare, else from the newest lines); both must give the same
/// answer. The shared suite's few lines only ever take the first.
#[tokio::test]
async fn word_queries_answer_the_same_whichever_plan_runs() {
    use keel_core::telemetry::{Batch, LogLine};
    use keel_store::{
        telemetry::{search_terms, LogQuery, TelemetryStore},
        PageRequest, TenantStore,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("keel.db")).unwrap();
    let tenant = store.create_tenant("t").await.unwrap().id;
    let at = |s: i64| jiff::Timestamp::from_second(1_800_000_000 + s).unwrap();
    let lines = 25_000; // more lines than the plan's threshold hold "common"
    let batch = Batch {
        logs: (0..lines)
            .map(|i| LogLine {
                ts: at(i),
                level: "info".into(),
                body: format!("common word {i}"),
                account: String::new(),
                attributes: Default::default(),
            })
            .collect(),
        points: vec![],
    };
    store.append_telemetry(&tenant, batch, None).await.unwrap();
    let query = |q: &str, cursor: Option<String>| LogQuery {
        account: None,
        level: None,
        terms: search_terms(q).unwrap(),
        from: at(0),
        to: at(lines),
        page: PageRequest { limit: 3, cursor },
    };
    let seconds = |page: &keel_store::Page<keel_store::telemetry::StoredLog>| {
        page.items
            .iter()
            .map(|l| l.ts.as_second() - 1_800_000_000)
            .collect::<Vec<_>>()
    };
    // Common words: the newest lines first, and the cursor goes on from there.
    let first = store
        .query_logs(&tenant, query("common word", None))
        .await
        .unwrap();
    assert_eq!(seconds(&first), [24_999, 24_998, 24_997]);
    let next = store
        .query_logs(&tenant, query("common word", first.next_cursor))
        .await
        .unwrap();
    assert_eq!(seconds(&next), [24_996, 24_995, 24_994]);
    // A rare word with a common one: from the index, the same shape of answer.
    let rare = store
        .query_logs(&tenant, query("common 7", None))
        .await
        .unwrap();
    assert_eq!(seconds(&rare), [7]);
    assert!(rare.next_cursor.is_none());
}
