//! The collections contract (SPEC §5), one suite for every store adapter: records
//! upserted by id (a redelivered message rewrites its row, never adds one), listed
//! newest first per tenant, and the record of delivery attempts.

mod adapters;

use adapters::{Adapter, Kind};
use jiff::Timestamp;
use keel_core::bus::BusName;
use keel_store::{collections::DeliveryAttempt, PageRequest, TenantId};
use serde_json::json;

async fn tenant(a: &Adapter, name: &str) -> TenantId {
    a.store.create_tenant(name).await.unwrap().id
}

async fn upserting_twice_keeps_one_row_with_the_latest_data(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let t = tenant(&a, "t").await;
    a.store
        .upsert_records(
            &t,
            "orders",
            vec![
                ("m1".into(), json!({"v": 1})),
                ("m2".into(), json!({"v": 2})),
            ],
        )
        .await
        .unwrap();
    // A redelivery of m1 (and the same id twice within one batch).
    a.store
        .upsert_records(
            &t,
            "orders",
            vec![
                ("m1".into(), json!({"v": 10})),
                ("m1".into(), json!({"v": 11})),
            ],
        )
        .await
        .unwrap();
    let page = a
        .store
        .records(
            &t,
            "orders",
            PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let m1 = a.store.record(&t, "orders", "m1").await.unwrap().unwrap();
    assert_eq!(m1.data, json!({"v": 11}));
    assert_eq!(
        a.store
            .stored_count(&t, "orders", &["m1".into(), "m2".into(), "m3".into()])
            .await
            .unwrap(),
        2
    );
}

async fn records_page_newest_first_and_stay_in_their_tenant(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let (t, other) = (tenant(&a, "t").await, tenant(&a, "other").await);
    for i in 0..5 {
        a.store
            .upsert_records(&t, "c", vec![(format!("m{i}"), json!(i))])
            .await
            .unwrap();
    }
    let first = a
        .store
        .records(
            &t,
            "c",
            PageRequest {
                limit: 3,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = first.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["m4", "m3", "m2"]);
    let second = a
        .store
        .records(
            &t,
            "c",
            PageRequest {
                limit: 3,
                cursor: first.next_cursor,
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = second.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["m1", "m0"]);
    assert!(second.next_cursor.is_none());
    // Another tenant sees nothing, cannot read or delete by id.
    let theirs = a
        .store
        .records(
            &other,
            "c",
            PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert!(theirs.items.is_empty());
    assert!(a.store.record(&other, "c", "m1").await.unwrap().is_none());
    assert!(!a.store.delete_record(&other, "c", "m1").await.unwrap());
    assert!(a.store.delete_record(&t, "c", "m1").await.unwrap());
    assert!(a.store.record(&t, "c", "m1").await.unwrap().is_none());
}

async fn delivery_attempts_are_listed_newest_first(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let t = tenant(&a, "t").await;
    let (topic, sub) = (
        BusName::parse("t", "/t").unwrap(),
        BusName::parse("hook", "/s").unwrap(),
    );
    let attempt = |n: u32, outcome: &str| DeliveryAttempt {
        message_id: "m1".into(),
        attempt: n,
        at: Timestamp::UNIX_EPOCH,
        outcome: outcome.into(),
        status: (outcome == "delivered").then_some(200),
        error: (outcome != "delivered").then(|| "HTTP 500".into()),
        latency_ms: 1.5,
        report: (outcome == "delivered").then(|| serde_json::json!({"imported": 2, "errors": []})),
    };
    a.store
        .record_attempts(vec![
            (t.clone(), topic.clone(), sub.clone(), attempt(1, "failed")),
            (
                t.clone(),
                topic.clone(),
                sub.clone(),
                attempt(2, "delivered"),
            ),
        ])
        .await
        .unwrap();
    let listed = a.store.attempts(&t, &topic, &sub, 10).await.unwrap();
    assert_eq!(listed, vec![attempt(2, "delivered"), attempt(1, "failed")]);
    let other = tenant(&a, "other").await;
    assert!(a
        .store
        .attempts(&other, &topic, &sub, 10)
        .await
        .unwrap()
        .is_empty());
}

on_every_adapter!(
    upserting_twice_keeps_one_row_with_the_latest_data,
    records_page_newest_first_and_stay_in_their_tenant,
    delivery_attempts_are_listed_newest_first,
);
