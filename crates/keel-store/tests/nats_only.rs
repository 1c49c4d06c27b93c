//! What only the JetStream bus needs checking: the window between a subscription's
//! registry entry and its durable consumer. The conformance suite covers the rest.

use std::sync::Arc;

use futures::StreamExt;
use keel_core::{
    bus::{BusName, DeliveryPolicy},
    clock::SystemClock,
};
use keel_store::{
    bus::{Bus, FilterScope, OutgoingMessage, ReceiveRequest, Subscription},
    nats::{NatsBus, NatsSettings},
    testing::TestNats,
    Quotas, TenantId,
};
use serde_json::{json, Map};

fn name(raw: &str) -> BusName {
    BusName::parse(raw, "/name").unwrap()
}

async fn open(url: &str) -> NatsBus {
    NatsBus::connect(
        &NatsSettings::parse(url).unwrap(),
        Arc::new(SystemClock),
        Quotas::default(),
    )
    .await
    .unwrap()
}

/// A replica that finds a subscription (here: one whose creator died after
/// writing the registry, before creating the consumer) and then publishes must
/// not lose the message: JetStream keeps messages only for consumers that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_found_in_the_registry_gets_its_consumer_before_a_publish() {
    let Some(nats) = TestNats::new("nats_only") else {
        return;
    };
    let tenant = TenantId("tenant-a".into());
    let creator = open(&nats.url).await;
    creator
        .put_subscription(
            &tenant,
            Subscription {
                topic: name("jobs"),
                name: name("_collection"),
                filter: None,
                filter_scope: FilterScope::Attributes,
                target: json!({"type": "queue"}),
                delivery: DeliveryPolicy::default(),
                created_at: jiff::Timestamp::UNIX_EPOCH,
            },
        )
        .await
        .unwrap();
    // The consumer disappears, as if the creator had died before making it.
    let server = std::env::var(keel_store::testing::NATS_URL_VAR).unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(server).await.unwrap());
    let prefix = nats.url.split("prefix=").nth(1).unwrap().to_owned();
    let stream = js.get_stream(format!("{prefix}_m_tenant-a")).await.unwrap();
    let consumers: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
    assert_eq!(consumers.len(), 1);
    stream.delete_consumer(&consumers[0]).await.unwrap();

    let other = open(&nats.url).await;
    assert!(other
        .subscription(&tenant, &name("jobs"), &name("_collection"))
        .await
        .unwrap()
        .is_some());
    other
        .publish(
            &tenant,
            &name("jobs"),
            vec![OutgoingMessage {
                body: json!("kept"),
                attributes: Map::new(),
                dedup_id: None,
            }],
        )
        .await
        .unwrap();
    let got = other
        .receive(
            &tenant,
            &name("jobs"),
            &name("_collection"),
            ReceiveRequest {
                max: 10,
                visibility_s: 30,
                wait: std::time::Duration::from_secs(2),
            },
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "the message was kept for the subscription");
    assert_eq!(got[0].body, json!("kept"));
}
