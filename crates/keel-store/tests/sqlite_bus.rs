//! The embedded SQLite bus alone: what its in-memory leases and its table layout
//! mean across restarts, for a second process, and for a database written by the
//! previous schema. What every bus does is in the bus conformance suites.

use std::{path::Path, time::Duration};

use jiff::Timestamp;
use keel_core::bus::{BusName, DeliveryPolicy};
use keel_store::{
    bus::{Bus, FilterScope, OutgoingMessage, ReceiveRequest, Subscription},
    sqlite::SqliteStore,
    StoreError, TenantId,
};
use serde_json::{json, Map};

fn name(s: &str) -> BusName {
    BusName::parse(s, "/name").unwrap()
}

fn take(max: u32) -> ReceiveRequest {
    ReceiveRequest {
        max,
        visibility_s: 300,
        wait: Duration::ZERO,
    }
}

async fn subscribed(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(path).unwrap();
    store
        .put_subscription(
            &TenantId::default_tenant(),
            Subscription {
                topic: name("orders"),
                name: name("q"),
                filter: None,
                filter_scope: FilterScope::Attributes,
                target: json!({"type": "queue"}),
                delivery: DeliveryPolicy::default(),
                created_at: Timestamp::UNIX_EPOCH,
            },
        )
        .await
        .unwrap();
    store
}

async fn publish(store: &SqliteStore, bodies: &[i64]) {
    let messages = bodies
        .iter()
        .map(|b| OutgoingMessage {
            body: json!(b),
            attributes: Map::new(),
            dedup_id: None,
        })
        .collect();
    store
        .publish(&TenantId::default_tenant(), &name("orders"), messages)
        .await
        .unwrap();
}

async fn receive(store: &SqliteStore, max: u32) -> Result<Vec<(i64, u32)>, StoreError> {
    let got = store
        .receive(
            &TenantId::default_tenant(),
            &name("orders"),
            &name("q"),
            take(max),
        )
        .await?;
    Ok(got
        .into_iter()
        .map(|d| (d.body.as_i64().unwrap(), d.receive_count))
        .collect())
}

#[tokio::test]
async fn messages_in_flight_are_received_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    {
        let store = subscribed(&path).await;
        publish(&store, &[1, 2, 3]).await;
        assert_eq!(receive(&store, 2).await.unwrap(), vec![(1, 1), (2, 1)]);
        // A nack stores its receive count, and so does the redelivery after it; a
        // first receive does not.
        let held = store
            .receive(
                &TenantId::default_tenant(),
                &name("orders"),
                &name("q"),
                take(1),
            )
            .await
            .unwrap();
        assert!(store
            .nack(
                &TenantId::default_tenant(),
                &name("orders"),
                &name("q"),
                &held[0].receipt,
                0,
                Some("boom".into()),
            )
            .await
            .unwrap());
        assert_eq!(receive(&store, 10).await.unwrap(), vec![(3, 2)]);
    }
    // Leases lived in the process that stopped: everything is visible at once,
    // not after the 300 s visibility.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        receive(&store, 10).await.unwrap(),
        vec![(1, 1), (2, 1), (3, 3)]
    );
}

#[tokio::test]
async fn a_second_store_on_the_same_database_cannot_consume_while_the_first_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let first = subscribed(&path).await;
    publish(&first, &[1, 2]).await;
    assert_eq!(receive(&first, 1).await.unwrap(), vec![(1, 1)]);

    let second = SqliteStore::open(&path).unwrap();
    // Publishing needs no claim on the bus.
    publish(&second, &[3]).await;
    match receive(&second, 10).await {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("another process"), "{why}"),
        other => panic!("a second consumer of one database must be refused, got {other:?}"),
    }
    let refused_ack = second
        .ack(
            &TenantId::default_tenant(),
            &name("orders"),
            &name("q"),
            vec!["1-x".into()],
        )
        .await;
    assert!(matches!(refused_ack, Err(StoreError::Unavailable(_))));

    drop(first);
    // The first has gone: the second takes over, and message 1 is free again.
    let mut got = receive(&second, 10).await.unwrap();
    got.sort();
    assert_eq!(got, vec![(1, 1), (2, 1), (3, 1)]);
}

/// A database written by schema 4 (one `deliveries` table) keeps its queued
/// messages, their visible times and receive counts, and its dead letters through
/// migration 5.
#[tokio::test]
async fn queued_messages_and_dead_letters_survive_the_queue_table_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let tenant = TenantId::default_tenant();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 applied_at INTEGER NOT NULL) STRICT;",
        )
        .unwrap();
        for &(version, migration, sql) in &keel_store::sqlite::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![version, migration],
            )
            .unwrap();
        }
        conn.execute_batch(&format!(
            "INSERT INTO topics VALUES ('{t}', 'orders', 0);
             INSERT INTO subscriptions VALUES ('{t}', 'orders', 'q', NULL, 'attributes',
                 '{{\"type\":\"queue\"}}', 5, 30, '[1]', 0);
             INSERT INTO deliveries (seq, tenant_id, topic, subscription, message_id, body,
                 attributes, published_at, state, visible_at, receive_count, receipt, last_error)
             VALUES
                 (6, '{t}', 'orders', 'q', 'm6', '6', '{{}}', 1, 0, 4102444800000000, 1, 'r', NULL),
                 (7, '{t}', 'orders', 'q', 'm7', '7', '{{}}', 1, 0, 1, 2, NULL, 'flaky'),
                 (8, '{t}', 'orders', 'q', 'm8', '8', '{{}}', 2, 1, 2, 5, NULL, 'poison'),
                 (9, '{t}', 'orders', 'q', 'm9', '9', '{{}}', 3, 0, 3, 0, NULL, NULL);",
            t = tenant.as_str()
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let stats = store
        .stats(&tenant, &name("orders"), &name("q"))
        .await
        .unwrap();
    // 6 was in flight until 2100 under the old layout, and still is.
    assert_eq!((stats.depth, stats.in_flight, stats.dlq_depth), (2, 1, 1));
    // 7 is a redelivery (its count is stored again), 9 a first receive.
    assert_eq!(receive(&store, 10).await.unwrap(), vec![(7, 3), (9, 1)]);
    let dead = store
        .dead_letters(&tenant, &name("orders"), &name("q"), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].id.as_str(),
            dead[0].receive_count,
            dead[0].last_error.as_deref()
        ),
        ("m8", 5, Some("poison"))
    );
    // New entries come after the migrated ones, and the dead letter goes back to
    // its own place among them.
    publish(&store, &[10]).await;
    assert_eq!(
        store
            .redrive(&tenant, &name("orders"), &name("q"), None)
            .await
            .unwrap(),
        1
    );
    let store = {
        drop(store);
        SqliteStore::open(&path).unwrap()
    };
    assert_eq!(
        receive(&store, 10).await.unwrap(),
        vec![(7, 4), (8, 1), (9, 1), (10, 1)]
    );
}
