//! The bus contract (SPEC §4), one suite for every bus adapter: the embedded bus
//! on SQLite and on PostgreSQL, and NATS JetStream. Time moves through
//! `Adapter::advance` (the test clock; on NATS, real time as well), so timeouts
//! here are a few seconds.

mod adapters;

use adapters::{Adapter, Kind};
use jiff::Timestamp;
use keel_core::bus::{BusName, DeliveryPolicy};
use keel_store::{
    bus::{FilterScope, OutgoingMessage, ReceiveRequest, Subscription},
    StoreError, TenantId,
};
use serde_json::{json, Map, Value};

struct Fixture {
    a: Adapter,
    tenant: TenantId,
}

async fn fixture(kind: Kind) -> Option<Fixture> {
    fixture_with(kind, keel_store::Quotas::default()).await
}

async fn fixture_with(kind: Kind, quotas: keel_store::Quotas) -> Option<Fixture> {
    let a = Adapter::open_with(kind, quotas).await?;
    let tenant = a.store.create_tenant("t").await.unwrap().id;
    Some(Fixture { a, tenant })
}

/// The visibility timeout receives ask for (shorter than the subscriptions' own
/// 30 s, so a per-receive visibility is what every check exercises).
const VISIBILITY: i64 = 2;

fn take(max: u32) -> ReceiveRequest {
    ReceiveRequest {
        max,
        visibility_s: VISIBILITY as u32,
        wait: std::time::Duration::ZERO,
    }
}

impl Fixture {
    fn advance(&self, seconds: i64) {
        self.a.advance(seconds);
    }

    async fn subscribe(
        &self,
        topic: &str,
        name: &str,
        filter: Option<Value>,
        scope: FilterScope,
        max_receives: u32,
    ) {
        self.a
            .bus
            .put_subscription(
                &self.tenant,
                Subscription {
                    topic: name_of(topic),
                    name: name_of(name),
                    filter,
                    filter_scope: scope,
                    target: json!({"type": "queue"}),
                    delivery: DeliveryPolicy::new(max_receives, 30, vec![1, 5]).unwrap(),
                    created_at: Timestamp::UNIX_EPOCH,
                },
            )
            .await
            .unwrap();
    }

    async fn publish(
        &self,
        topic: &str,
        body: Value,
        attributes: Value,
        dedup: Option<&str>,
    ) -> String {
        let attributes: Map<String, Value> = attributes.as_object().cloned().unwrap_or_default();
        let ids = self
            .a
            .bus
            .publish(
                &self.tenant,
                &name_of(topic),
                vec![OutgoingMessage {
                    body,
                    attributes,
                    dedup_id: dedup.map(str::to_owned),
                }],
            )
            .await
            .unwrap();
        ids.into_iter().next().unwrap()
    }

    async fn receive(&self, topic: &str, sub: &str, max: u32) -> Vec<keel_store::bus::Delivery> {
        self.a
            .bus
            .receive(&self.tenant, &name_of(topic), &name_of(sub), take(max))
            .await
            .unwrap()
    }
}

fn name_of(s: &str) -> BusName {
    BusName::parse(s, "/name").unwrap()
}

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

async fn visibility_timeout_redelivers_with_a_new_receipt(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 5)
        .await;
    f.publish("t", json!("hello"), json!({"k": "v"}), None)
        .await;
    let first = f.receive("t", "q", 1).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    assert_eq!(first[0].body, json!("hello"));
    assert_eq!(first[0].attributes["k"], "v");
    assert!(
        f.receive("t", "q", 1).await.is_empty(),
        "hidden while in flight"
    );
    let stats =
        f.a.bus
            .stats(&f.tenant, &name_of("t"), &name_of("q"))
            .await
            .unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 1));
    f.advance(VISIBILITY + 1);
    let second = f.receive("t", "q", 1).await;
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);
    // The superseded receipt acks nothing; the current one acks.
    let (t, q) = (name_of("t"), name_of("q"));
    let ack = |r: &str| f.a.bus.ack(&f.tenant, &t, &q, vec![r.to_owned()]);
    assert_eq!(
        ack(&first[0].receipt).await.unwrap(),
        [first[0].receipt.clone()]
    );
    assert!(ack(&second[0].receipt).await.unwrap().is_empty());
    assert_eq!(
        ack(&second[0].receipt).await.unwrap(),
        [second[0].receipt.clone()],
        "acking twice"
    );
    f.advance(VISIBILITY + 1);
    assert!(
        f.receive("t", "q", 1).await.is_empty(),
        "acked messages never return"
    );
}

async fn max_receives_dead_letters_and_redrive_brings_them_back(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 2)
        .await;
    let id = f.publish("t", json!(1), json!({}), None).await;
    let other = f.publish("t", json!(2), json!({}), None).await;
    for _ in 0..2 {
        assert_eq!(f.receive("t", "q", 10).await.len(), 2);
        f.advance(VISIBILITY + 1);
    }
    assert!(
        f.receive("t", "q", 10).await.is_empty(),
        "both exceeded max_receives"
    );
    let stats =
        f.a.bus
            .stats(&f.tenant, &name_of("t"), &name_of("q"))
            .await
            .unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.dlq_depth), (0, 0, 2));
    let dead =
        f.a.bus
            .dead_letters(&f.tenant, &name_of("t"), &name_of("q"), 100)
            .await
            .unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].receive_count, 2);
    assert!(dead[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("visibility"));

    assert_eq!(
        f.a.bus
            .redrive(
                &f.tenant,
                &name_of("t"),
                &name_of("q"),
                Some(vec![id.clone()])
            )
            .await
            .unwrap(),
        1
    );
    let back = f.receive("t", "q", 10).await;
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].id.clone(), back[0].receive_count), (id, 1));
    assert_eq!(
        f.a.bus
            .redrive(&f.tenant, &name_of("t"), &name_of("q"), None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(f.receive("t", "q", 10).await[0].id, other);
    assert_eq!(
        f.a.bus
            .redrive(&f.tenant, &name_of("t"), &name_of("q"), None)
            .await
            .unwrap(),
        0,
        "empty DLQ"
    );
}

async fn nack_delays_and_records_the_error(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 1)
        .await;
    f.publish("t", json!(1), json!({}), None).await;
    let got = f.receive("t", "q", 1).await;
    assert!(f
        .a
        .bus
        .nack(
            &f.tenant,
            &name_of("t"),
            &name_of("q"),
            &got[0].receipt,
            3,
            Some("HTTP 500".into())
        )
        .await
        .unwrap());
    assert!(!f
        .a
        .bus
        .nack(&f.tenant, &name_of("t"), &name_of("q"), "unknown", 0, None)
        .await
        .unwrap());
    f.advance(1);
    assert!(f.receive("t", "q", 1).await.is_empty());
    f.advance(3);
    // max_receives is 1: the next receive dead-letters it with the recorded error.
    assert!(f.receive("t", "q", 1).await.is_empty());
    let dead =
        f.a.bus
            .dead_letters(&f.tenant, &name_of("t"), &name_of("q"), 10)
            .await
            .unwrap();
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500"));
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

/// A receipt acks one delivery of its own queue: presented to another
/// subscription of the topic, or by another tenant, it acks nothing, and in a
/// batch only the current receipts are acked.
async fn a_receipt_acks_only_its_own_queue(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 5)
        .await;
    f.subscribe("t", "other", None, FilterScope::Attributes, 5)
        .await;
    f.publish("t", json!(1), json!({}), None).await;
    f.publish("t", json!(2), json!({}), None).await;
    let taken = f.receive("t", "q", 2).await;
    let receipts: Vec<String> = taken.iter().map(|d| d.receipt.clone()).collect();
    let t = name_of("t");
    let on_other_queue =
        f.a.bus
            .ack(&f.tenant, &t, &name_of("other"), receipts.clone())
            .await
            .unwrap();
    assert_eq!(
        on_other_queue, receipts,
        "another subscription acks nothing"
    );
    let stranger = f.a.store.create_tenant("stranger").await.unwrap().id;
    let by_stranger =
        f.a.bus
            .ack(&stranger, &t, &name_of("q"), receipts.clone())
            .await
            .unwrap();
    assert_eq!(by_stranger, receipts, "another tenant acks nothing");
    let stale = format!("{}x", receipts[0]);
    let mixed =
        f.a.bus
            .ack(
                &f.tenant,
                &t,
                &name_of("q"),
                vec![stale.clone(), receipts[1].clone()],
            )
            .await
            .unwrap();
    assert_eq!(mixed, [stale]);
    f.advance(VISIBILITY + 1);
    let back = f.receive("t", "q", 10).await;
    assert_eq!(back.len(), 1, "only the acked one is gone");
    assert_eq!(back[0].id, taken[0].id);
    assert_eq!(f.receive("t", "other", 10).await.len(), 2);
}

/// Two subscriptions of one topic receiving the same messages in step: each
/// receipt acks only in its own queue, however alike their deliveries are.
async fn receipts_of_queues_receiving_in_step_do_not_mix(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "a", None, FilterScope::Attributes, 5)
        .await;
    f.subscribe("t", "b", None, FilterScope::Attributes, 5)
        .await;
    f.publish("t", json!(1), json!({}), None).await;
    let from_a = f.receive("t", "a", 1).await;
    let from_b = f.receive("t", "b", 1).await;
    let t = name_of("t");
    let on_b =
        f.a.bus
            .ack(
                &f.tenant,
                &t,
                &name_of("b"),
                vec![from_a[0].receipt.clone()],
            )
            .await
            .unwrap();
    assert_eq!(
        on_b,
        [from_a[0].receipt.clone()],
        "a's receipt acks nothing in b"
    );
    let own =
        f.a.bus
            .ack(
                &f.tenant,
                &t,
                &name_of("b"),
                vec![from_b[0].receipt.clone()],
            )
            .await
            .unwrap();
    assert!(own.is_empty(), "b's own receipt is still current");
}

/// A nack retires its receipt: a second nack, or an ack, with it does nothing.
async fn a_nack_retires_its_receipt(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 5)
        .await;
    f.publish("t", json!(1), json!({}), None).await;
    let got = f.receive("t", "q", 1).await;
    let (t, q) = (name_of("t"), name_of("q"));
    let nack = || f.a.bus.nack(&f.tenant, &t, &q, &got[0].receipt, 1, None);
    assert!(nack().await.unwrap());
    assert!(
        !nack().await.unwrap(),
        "a second nack with the same receipt"
    );
    let ack =
        f.a.bus
            .ack(&f.tenant, &t, &q, vec![got[0].receipt.clone()])
            .await
            .unwrap();
    assert_eq!(ack, [got[0].receipt.clone()], "an ack after the nack");
    f.advance(2);
    let again = f.receive("t", "q", 1).await;
    assert_eq!(again.len(), 1, "the nacked message comes back");
    assert_eq!(again[0].receive_count, 2);
}

on_every_bus!(
    receipts_of_queues_receiving_in_step_do_not_mix,
    a_nack_retires_its_receipt,
    a_receipt_acks_only_its_own_queue,
    a_waiting_receive_answers_when_a_message_arrives,
    publish_fans_out_through_filters_in_order,
    visibility_timeout_redelivers_with_a_new_receipt,
    max_receives_dead_letters_and_redrive_brings_them_back,
    nack_delays_and_records_the_error,
    the_same_id_within_the_window_is_delivered_once,
    queues_are_per_tenant,
    accepted_messages_survive_reopening,
    quotas_are_enforced_inside_the_write,
    a_new_subscription_sees_the_next_publish,
);
