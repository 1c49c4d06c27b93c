//! The object index contract (buckets, keys → blobs, the event outbox, blobs to
//! collect), one suite run unchanged on every store adapter (SQLite, PostgreSQL).
//! The blob stores have their own suite (`blobs_conformance.rs`).

mod adapters;

use std::time::Duration;

use adapters::{Adapter, Kind};
use jiff::{SignedDuration, Timestamp};
use keel_core::clock::Clock;
use keel_store::{
    objects::{ObjectMeta, OutboxMessage},
    PageRequest, TenantId,
};
use serde_json::json;

fn meta(key: &str, blob: &str, at: Timestamp) -> ObjectMeta {
    ObjectMeta {
        key: key.into(),
        blob: blob.into(),
        size: 3,
        etag: "900150983cd24fb0d6963f7d28e17f72".into(),
        content_type: "text/plain".into(),
        modified_at: at,
    }
}

fn event(n: u32) -> OutboxMessage {
    OutboxMessage {
        topic: "incoming".into(),
        body: json!({"n": n}),
        dedup_id: format!("event-{n}"),
    }
}

fn later(at: Timestamp, seconds: i64) -> Timestamp {
    at.checked_add(SignedDuration::from_secs(seconds)).unwrap()
}

async fn buckets_are_created_once_and_per_tenant(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let (t, other) = (
        store.create_tenant("t").await.unwrap().id,
        store.create_tenant("o").await.unwrap().id,
    );
    let (bucket, created) = store.create_bucket(&t, "logs").await.unwrap();
    assert!(created);
    assert_eq!(bucket.rules, json!([]));
    let (again, created) = store.create_bucket(&t, "logs").await.unwrap();
    assert!(!created);
    assert_eq!(again.created_at, bucket.created_at);
    assert!(store.bucket(&other, "logs").await.unwrap().is_none());
    let rules = json!([{"id": "r", "events": ["ObjectCreated:*"], "topic": "incoming"}]);
    assert!(store
        .set_notification_rules(&t, "logs", rules.clone())
        .await
        .unwrap());
    assert!(!store
        .set_notification_rules(&other, "logs", rules.clone())
        .await
        .unwrap());
    assert_eq!(
        store.bucket(&t, "logs").await.unwrap().unwrap().rules,
        rules
    );

    // Listed by name, a page at a time, the tenant's own only.
    store.create_bucket(&t, "assets").await.unwrap();
    store.create_bucket(&t, "zips").await.unwrap();
    let page = |cursor: Option<String>| keel_store::PageRequest { limit: 2, cursor };
    let first = store.list_buckets(&t, page(None)).await.unwrap();
    let names: Vec<&str> = first.items.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["assets", "logs"]);
    assert_eq!(first.items[1].rules, rules);
    let rest = store
        .list_buckets(&t, page(first.next_cursor))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].name, "zips");
    assert!(rest.next_cursor.is_none());
    assert!(store
        .list_buckets(&other, page(None))
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn an_object_and_its_events_commit_together(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = TenantId::default_tenant();
    let now = a.clock.now();
    // No bucket: nothing is written, no event queued.
    assert!(!store
        .commit_object(&t, "none", meta("k", "b0", now), vec![event(0)], now)
        .await
        .unwrap());
    assert!(store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap()
        .is_empty());

    store.create_bucket(&t, "logs").await.unwrap();
    store
        .reserve_blob(&t, "b1", later(now, 3600))
        .await
        .unwrap();
    assert!(store
        .commit_object(
            &t,
            "logs",
            meta("data/a.json", "b1", now),
            vec![event(1), event(2)],
            now
        )
        .await
        .unwrap());
    assert_eq!(
        store.object(&t, "logs", "data/a.json").await.unwrap(),
        Some(meta("data/a.json", "b1", now))
    );
    let other = store.create_tenant("o").await.unwrap().id;
    assert!(store
        .object(&other, "logs", "data/a.json")
        .await
        .unwrap()
        .is_none());

    let claimed = store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>(),
        vec![event(1), event(2)]
    );
    assert!(claimed.iter().all(|e| e.tenant == t));
    // Leased: another relay does not see them until the lease ends.
    assert!(store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap()
        .is_empty());
    a.advance(31);
    let again = store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    store
        .finish_outbox(again.iter().map(|e| e.id).collect())
        .await
        .unwrap();
    a.advance(31);
    assert!(store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap()
        .is_empty());
}

async fn replaced_removed_and_uncommitted_blobs_are_collected(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = TenantId::default_tenant();
    let now = a.clock.now();
    store.create_bucket(&t, "b").await.unwrap();
    for blob in ["v1", "v2", "lost"] {
        store
            .reserve_blob(&t, blob, later(now, 3600))
            .await
            .unwrap();
    }
    store
        .commit_object(&t, "b", meta("k", "v1", now), vec![], later(now, 60))
        .await
        .unwrap();
    store
        .commit_object(&t, "b", meta("k", "v2", now), vec![], later(now, 60))
        .await
        .unwrap();
    assert!(store
        .claim_garbage(10, Duration::from_secs(30))
        .await
        .unwrap()
        .is_empty());
    a.advance(61);
    // The replaced blob is due; the current one never is; the uncommitted one later.
    assert_eq!(
        store
            .claim_garbage(10, Duration::from_secs(30))
            .await
            .unwrap(),
        vec!["v1"]
    );
    assert!(!store
        .remove_object(&t, "b", "missing", vec![event(9)], now)
        .await
        .unwrap());
    assert!(store
        .remove_object(&t, "b", "k", vec![event(3)], a.clock.now())
        .await
        .unwrap());
    assert!(store.object(&t, "b", "k").await.unwrap().is_none());
    let garbage = store
        .claim_garbage(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(garbage, vec!["v2"]);
    store
        .forget_garbage(vec!["v1".into(), "v2".into()])
        .await
        .unwrap();
    a.advance(3600);
    assert_eq!(
        store
            .claim_garbage(10, Duration::from_secs(30))
            .await
            .unwrap(),
        vec!["lost"]
    );
    // Only the removal that removed something queued its event.
    let events: Vec<_> = store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(events, vec![event(3)]);
}

async fn listings_follow_key_order_prefix_and_cursor(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = TenantId::default_tenant();
    let now = a.clock.now();
    store.create_bucket(&t, "b").await.unwrap();
    let keys = [
        "data/b.json",
        "data/a.json",
        "data0",
        "data/ü.json",
        "data/z/ä",
        "other",
        "data/",
    ];
    for (n, key) in keys.iter().enumerate() {
        store
            .commit_object(&t, "b", meta(key, &format!("blob{n}"), now), vec![], now)
            .await
            .unwrap();
    }
    let list = |prefix: &'static str, limit: u32, cursor: Option<String>| {
        let store = store.clone();
        let t = t.clone();
        async move {
            store
                .list_objects(&t, "b", prefix, PageRequest { limit, cursor })
                .await
                .unwrap()
        }
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = list("data/", 2, cursor).await;
        seen.extend(page.items.into_iter().map(|m| m.key));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    // Byte order of UTF-8: "z/ä" < "ü" (0x7A < 0xC3).
    assert_eq!(
        seen,
        [
            "data/",
            "data/a.json",
            "data/b.json",
            "data/z/ä",
            "data/ü.json"
        ]
    );
    let all = list("", 100, None).await;
    assert_eq!(all.items.len(), keys.len());
    assert!(all.next_cursor.is_none());
    assert!(list("nothing", 10, None).await.items.is_empty());
}

on_every_adapter!(
    buckets_are_created_once_and_per_tenant,
    an_object_and_its_events_commit_together,
    replaced_removed_and_uncommitted_blobs_are_collected,
    listings_follow_key_order_prefix_and_cursor,
);
