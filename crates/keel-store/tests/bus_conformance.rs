//! The bus contract (SPEC §4), one suite for every bus adapter: the embedded bus
//! on SQLite and on PostgreSQL, and NATS JetStream. Time moves through
//! `Adapter::advance` (the test clock; on NATS, real time as well), so timeouts
//! here are a few seconds. This file: publishing, routing, dedup, tenancy,
//! quotas, durability and long polls; `bus_receipts_conformance.rs`: visibility,
//! receipts, nacks and dead letters.

mod adapters;

use adapters::{
    bus::{fixture, fixture_with, name_of, take},
    Kind,
};
use jiff::Timestamp;
use keel_core::bus::DeliveryPolicy;
use keel_store::{
    bus::{FilterScope, OutgoingMessage, ReceiveRequest, Subscription},
    StoreError,
};
use serde_json::{json, Map};

async fn publish_fans_out_through_filters_in_order(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("orders", "all", None, FilterScope::Attributes, 5)
        .await;
    f.subscribe(
        "orders",
        "big",
        Some(json!({"total": [{"numeric": [">", 100]}]})),
        FilterScope::Attributes,
        5,
    )
    .await;
    f.subscribe(
        "orders",
        "pt",
        Some(json!({"address": {"country": ["PT"]}})),
        FilterScope::Body,
        5,
    )
    .await;
    let a = f
        .publish(
            "orders",
            json!({"n": 1, "address": {"country": "PT"}}),
            json!({"total": 50}),
            None,
        )
        .await;
    let b = f
        .publish(
            "orders",
            json!({"n": 2, "address": {"country": "ES"}}),
            json!({"total": 500}),
            None,
        )
        .await;
    let ids = |d: Vec<keel_store::bus::Delivery>| d.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(f.receive("orders", "all", 10).await),
        [a.clone(), b.clone()]
    );
    assert_eq!(ids(f.receive("orders", "big", 10).await), [b]);
    assert_eq!(ids(f.receive("orders", "pt", 10).await), [a]);
}

async fn the_same_id_within_the_window_is_delivered_once(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 5)
        .await;
    let first = f.publish("t", json!(1), json!({}), Some("order-1")).await;
    let again = f.publish("t", json!(1), json!({}), Some("order-1")).await;
    assert_eq!(first, again);
    assert_eq!(f.receive("t", "q", 10).await.len(), 1);
    f.advance(f.a.dedup_window_s() + 1);
    let later = f.publish("t", json!(1), json!({}), Some("order-1")).await;
    assert_ne!(
        later, first,
        "outside the 5-minute window it is a new message"
    );
}

async fn queues_are_per_tenant(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 5)
        .await;
    f.publish("t", json!(1), json!({}), None).await;
    let other = f.a.store.create_tenant("other").await.unwrap().id;
    let attempt =
        f.a.bus
            .receive(&other, &name_of("t"), &name_of("q"), take(10))
            .await;
    assert!(matches!(attempt, Err(StoreError::InvalidInput { .. })));
    assert!(f
        .a
        .bus
        .subscription(&other, &name_of("t"), &name_of("q"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(f.receive("t", "q", 10).await.len(), 1);

    // Listing: the tenant's own subscriptions, by topic then name.
    f.subscribe("t", "a", None, FilterScope::Attributes, 5)
        .await;
    f.subscribe("s", "z", None, FilterScope::Attributes, 5)
        .await;
    let listed = f.a.bus.list_subscriptions(&f.tenant).await.unwrap();
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|s| (s.topic.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(names, [("s", "z"), ("t", "a"), ("t", "q")]);
    assert_eq!(
        listed[2],
        f.a.bus
            .subscription(&f.tenant, &name_of("t"), &name_of("q"))
            .await
            .unwrap()
            .unwrap()
    );
    assert!(f.a.bus.list_subscriptions(&other).await.unwrap().is_empty());
}

async fn accepted_messages_survive_reopening(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 5)
        .await;
    let batch = (0..100)
        .map(|i| OutgoingMessage {
            body: json!(i),
            attributes: Map::new(),
            dedup_id: None,
        })
        .collect();
    assert_eq!(
        f.a.bus
            .publish(&f.tenant, &name_of("t"), batch)
            .await
            .unwrap()
            .len(),
        100
    );
    let reopened = f.a.reopen().await;
    let got = reopened
        .bus
        .receive(&f.tenant, &name_of("t"), &name_of("q"), take(100))
        .await
        .unwrap();
    let bodies: Vec<i64> = got.iter().map(|d| d.body.as_i64().unwrap()).collect();
    assert_eq!(bodies, (0..100).collect::<Vec<_>>());
}

async fn quotas_are_enforced_inside_the_write(kind: Kind) {
    use keel_store::Quotas;
    let quotas = Quotas {
        topics_per_tenant: 1,
        subscriptions_per_tenant: 1,
        fanout_bytes_per_publish: 100,
        ..Quotas::default()
    };
    let Some(f) = fixture_with(kind, quotas).await else {
        return;
    };
    let store = f.a.bus.clone();
    let sub = |topic: &str, name: &str| Subscription {
        topic: name_of(topic),
        name: name_of(name),
        filter: None,
        filter_scope: FilterScope::Attributes,
        target: json!({"type": "queue"}),
        delivery: DeliveryPolicy::default(),
        created_at: Timestamp::UNIX_EPOCH,
    };
    store
        .put_subscription(&f.tenant, sub("a", "s1"))
        .await
        .unwrap();
    let quota = |e: StoreError| match e {
        StoreError::QuotaExceeded { quota, .. } => quota,
        other => panic!("expected a quota error, got {other:?}"),
    };
    assert_eq!(
        quota(
            store
                .ensure_topic(&f.tenant, &name_of("b"))
                .await
                .unwrap_err()
        ),
        "topics_per_tenant"
    );
    assert_eq!(
        quota(
            store
                .put_subscription(&f.tenant, sub("a", "s2"))
                .await
                .unwrap_err()
        ),
        "subscriptions_per_tenant"
    );
    let big = OutgoingMessage {
        body: json!("x".repeat(200)),
        attributes: Map::new(),
        dedup_id: None,
    };
    assert_eq!(
        quota(
            store
                .publish(&f.tenant, &name_of("a"), vec![big])
                .await
                .unwrap_err()
        ),
        "fanout_bytes_per_publish"
    );
    // Nothing of the refused writes was kept.
    assert_eq!(
        store
            .stats(&f.tenant, &name_of("a"), &name_of("s1"))
            .await
            .unwrap()
            .depth,
        0
    );
    assert!(store
        .subscription(&f.tenant, &name_of("a"), &name_of("s2"))
        .await
        .unwrap()
        .is_none());
}

async fn a_new_subscription_sees_the_next_publish(kind: Kind) {
    // Routing is cached outside the writer; a subscription change must reach it.
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "first", None, FilterScope::Attributes, 5)
        .await;
    let message = || OutgoingMessage {
        body: json!(1),
        attributes: Map::new(),
        dedup_id: None,
    };
    f.a.bus
        .publish(&f.tenant, &name_of("t"), vec![message()])
        .await
        .unwrap();
    f.subscribe("t", "second", None, FilterScope::Attributes, 5)
        .await;
    f.a.bus
        .publish(&f.tenant, &name_of("t"), vec![message()])
        .await
        .unwrap();
    let depth = |name: &'static str| {
        let store = f.a.bus.clone();
        let tenant = f.tenant.clone();
        async move {
            store
                .stats(&tenant, &name_of("t"), &name_of(name))
                .await
                .unwrap()
                .depth
        }
    };
    assert_eq!(depth("first").await, 2);
    assert_eq!(depth("second").await, 1);
}

async fn a_waiting_receive_answers_when_a_message_arrives(kind: Kind) {
    use std::time::{Duration, Instant};
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 5)
        .await;
    let waiting = |wait: Duration| ReceiveRequest {
        max: 10,
        visibility_s: 30,
        wait,
    };
    // Nothing arrives: the whole wait passes and the answer is empty.
    let started = Instant::now();
    let got =
        f.a.bus
            .receive(
                &f.tenant,
                &name_of("t"),
                &name_of("q"),
                waiting(Duration::from_millis(300)),
            )
            .await
            .unwrap();
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A publish during the wait answers it, long before the wait is over.
    let (bus, tenant) = (f.a.bus.clone(), f.tenant.clone());
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let message = OutgoingMessage {
            body: json!("late"),
            attributes: Map::new(),
            dedup_id: None,
        };
        bus.publish(&tenant, &name_of("t"), vec![message])
            .await
            .unwrap();
    });
    let started = Instant::now();
    let got =
        f.a.bus
            .receive(
                &f.tenant,
                &name_of("t"),
                &name_of("q"),
                waiting(Duration::from_secs(20)),
            )
            .await
            .unwrap();
    publisher.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, json!("late"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait ran out instead"
    );
}

on_every_bus!(
    publish_fans_out_through_filters_in_order,
    the_same_id_within_the_window_is_delivered_once,
    queues_are_per_tenant,
    accepted_messages_survive_reopening,
    quotas_are_enforced_inside_the_write,
    a_new_subscription_sees_the_next_publish,
    a_waiting_receive_answers_when_a_message_arrives,
);
