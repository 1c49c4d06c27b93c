//! The bus contract (SPEC §4), continued: visibility timeouts, receipts, nacks,
//! dead letters and redrive, on every bus adapter (see `bus_conformance.rs`).

mod adapters;

use adapters::{
    bus::{fixture, name_of, VISIBILITY},
    Kind,
};
use keel_store::bus::FilterScope;
use serde_json::json;

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

/// Two operators pressing "redrive all" at once: each dead letter goes back once,
/// and neither request fails.
async fn concurrent_redrives_move_each_dead_letter_once(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 1)
        .await;
    for n in 0..6 {
        f.publish("t", json!(n), json!({}), None).await;
    }
    assert_eq!(f.receive("t", "q", 10).await.len(), 6);
    f.advance(VISIBILITY + 1);
    assert!(
        f.receive("t", "q", 10).await.is_empty(),
        "all dead-lettered"
    );
    let (t, q) = (name_of("t"), name_of("q"));
    let redrive = || f.a.bus.redrive(&f.tenant, &t, &q, None);
    let (a, b) = tokio::join!(redrive(), redrive());
    assert_eq!(a.unwrap() + b.unwrap(), 6);
    let mut back: Vec<_> = f
        .receive("t", "q", 10)
        .await
        .into_iter()
        .map(|d| d.body)
        .collect();
    back.sort_by_key(|b| b.as_i64());
    assert_eq!(back, (0..6).map(|n| json!(n)).collect::<Vec<_>>());
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

/// Queue statistics follow every move of an entry: publish, receive, ack, nack
/// (delayed, then due, or visible at once), dead-lettering and redrive. Where an
/// entry waits to be received again, JetStream still counts it as pending
/// acknowledgement until it is redelivered, so there only the sum of `depth`
/// and `in_flight` (neither acked nor dead) is the contract.
async fn statistics_follow_every_move(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    f.subscribe("t", "q", None, FilterScope::Attributes, 2)
        .await;
    let (t, q) = (name_of("t"), name_of("q"));
    let stats = || async {
        let s = f.a.bus.stats(&f.tenant, &t, &q).await.unwrap();
        (s.depth, s.in_flight, s.dlq_depth)
    };
    let unsettled = || async {
        let (depth, in_flight, dead) = stats().await;
        (depth + in_flight, dead)
    };
    for n in 0..5 {
        f.publish("t", json!(n), json!({}), None).await;
    }
    assert_eq!(stats().await, (5, 0, 0), "published");
    f.advance(10);
    let oldest = f.a.bus.stats(&f.tenant, &t, &q).await.unwrap().oldest_age_s;
    assert!((10..=11).contains(&oldest), "oldest is {oldest} s old");

    let got = f.receive("t", "q", 3).await;
    assert_eq!(stats().await, (2, 3, 0), "three received");
    assert!(f
        .a
        .bus
        .ack(&f.tenant, &t, &q, vec![got[0].receipt.clone()])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(stats().await, (2, 2, 0), "one acked");
    assert!(f
        .a
        .bus
        .nack(&f.tenant, &t, &q, &got[1].receipt, 5, None)
        .await
        .unwrap());
    assert_eq!(stats().await, (2, 2, 0), "one nacked for later");
    assert!(f
        .a
        .bus
        .nack(&f.tenant, &t, &q, &got[2].receipt, 0, None)
        .await
        .unwrap());
    assert_eq!(unsettled().await, (4, 0), "one nacked for now");
    f.advance(6);
    assert_eq!(unsettled().await, (4, 0), "the later one is due");

    // Two of the four have been received once before: at max_receives 2 they
    // die after this delivery times out, the others after the next.
    assert_eq!(f.receive("t", "q", 10).await.len(), 4);
    assert_eq!(stats().await, (0, 4, 0), "all received");
    f.advance(VISIBILITY + 1);
    assert_eq!(unsettled().await, (4, 0), "their visibility timed out");
    assert_eq!(f.receive("t", "q", 10).await.len(), 2);
    assert_eq!(stats().await, (0, 2, 2), "two dead-lettered");
    // The statistics of every queue (for /metrics) agree, and reading them
    // leaves this queue's as they were.
    let every = f.a.bus.all_queue_stats().await.unwrap();
    let ours = every
        .iter()
        .find(|(tenant, topic, name, _)| {
            *tenant == f.tenant && topic == t.as_str() && name == q.as_str()
        })
        .map(|(.., s)| (s.depth, s.in_flight, s.dlq_depth));
    assert_eq!(ours, Some((0, 2, 2)), "among every queue's statistics");
    assert_eq!(stats().await, (0, 2, 2), "after every queue's statistics");
    f.advance(VISIBILITY + 1);
    assert!(f.receive("t", "q", 10).await.is_empty());
    assert_eq!(stats().await, (0, 0, 4), "all dead-lettered");

    let dead = f.a.bus.dead_letters(&f.tenant, &t, &q, 10).await.unwrap();
    let one = Some(vec![dead[0].id.clone()]);
    assert_eq!(f.a.bus.redrive(&f.tenant, &t, &q, one).await.unwrap(), 1);
    assert_eq!(stats().await, (1, 0, 3), "one redriven");
    assert_eq!(f.a.bus.redrive(&f.tenant, &t, &q, None).await.unwrap(), 3);
    assert_eq!(stats().await, (4, 0, 0), "all redriven");
    let last = f.receive("t", "q", 10).await;
    let receipts = last.iter().map(|d| d.receipt.clone()).collect();
    assert!(f
        .a
        .bus
        .ack(&f.tenant, &t, &q, receipts)
        .await
        .unwrap()
        .is_empty());
    let empty = f.a.bus.stats(&f.tenant, &t, &q).await.unwrap();
    assert_eq!(
        (
            empty.depth,
            empty.in_flight,
            empty.dlq_depth,
            empty.oldest_age_s
        ),
        (0, 0, 0, 0),
        "all acked"
    );
}

on_every_bus!(
    visibility_timeout_redelivers_with_a_new_receipt,
    max_receives_dead_letters_and_redrive_brings_them_back,
    nack_delays_and_records_the_error,
    a_receipt_acks_only_its_own_queue,
    receipts_of_queues_receiving_in_step_do_not_mix,
    a_nack_retires_its_receipt,
    concurrent_redrives_move_each_dead_letter_once,
    statistics_follow_every_move,
);
