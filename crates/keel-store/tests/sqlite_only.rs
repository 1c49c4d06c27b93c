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
