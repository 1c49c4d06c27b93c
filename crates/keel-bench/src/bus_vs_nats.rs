//! The bus alone, at library level: publish + consume + ack of 128-byte messages
//! through Keel's embedded bus, beside NATS JetStream with file storage on the same
//! machine (target ≥ 1.0× JetStream's rate).
//!
//! Both sides keep 100 messages in flight: Keel publishes batches of 100 (one
//! durable commit each) from 4 publishers, and its consumer receives up to 100 and
//! acks them in one call. JetStream publishers keep 100 acknowledged publishes
//! outstanding each, and its consumer pulls continuously in batches of 100 and
//! acks every 100th message with `AckPolicy::All` (double-acked: confirmed by the
//! server, as Keel's ack is durable before it returns).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer::pull, stream::StorageType};
use futures::StreamExt;
use keel_core::bus::{BusName, DeliveryPolicy};
use keel_store::{
    bus::{Bus, FilterScope, OutgoingMessage, ReceiveRequest, Subscription},
    sqlite::SqliteStore,
    TenantId,
};
use serde_json::{json, Map, Value};

const PUBLISHERS: usize = 4;
const BATCH: usize = 100;

fn payload() -> String {
    // A 128-byte message body.
    "x".repeat(128)
}

pub async fn embedded(data_dir: &std::path::Path, total: usize) -> anyhow::Result<f64> {
    let dir = data_dir.join("bus-bench");
    let _ = std::fs::remove_dir_all(&dir);
    // The bus at full speed: the per-tenant fan-out budget lifted.
    let store = Arc::new(SqliteStore::open(&dir.join("keel.db"))?.with_quotas(
        keel_store::Quotas {
            fanout_bytes_per_second: 1 << 40,
            ..keel_store::Quotas::default()
        },
    ));
    publish_and_consume(store, total, 1).await
}

/// Publish + consume + ack of `total` messages through `bus`, with `consumers`
/// receiving concurrently (as that many worker replicas would); messages/s.
pub async fn publish_and_consume(
    bus: Arc<dyn Bus>,
    total: usize,
    consumers: usize,
) -> anyhow::Result<f64> {
    let tenant = TenantId::default_tenant();
    let topic = BusName::parse("bench", "/t").map_err(anyhow::Error::msg)?;
    let name = BusName::parse("q", "/s").map_err(anyhow::Error::msg)?;
    bus.put_subscription(
        &tenant,
        Subscription {
            topic: topic.clone(),
            name: name.clone(),
            filter: None,
            filter_scope: FilterScope::Attributes,
            target: json!({"type": "queue"}),
            delivery: DeliveryPolicy::default(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
        },
    )
    .await?;
    let body = Value::String(payload());
    let started = Instant::now();
    let mut publishers = Vec::new();
    for _ in 0..PUBLISHERS {
        let (bus, tenant, topic, body) = (bus.clone(), tenant.clone(), topic.clone(), body.clone());
        publishers.push(tokio::spawn(async move {
            for _ in 0..total / PUBLISHERS / BATCH {
                let batch = (0..BATCH)
                    .map(|_| OutgoingMessage {
                        body: body.clone(),
                        attributes: Map::new(),
                        dedup_id: None,
                    })
                    .collect();
                bus.publish(&tenant, &topic, batch).await?;
            }
            anyhow::Ok(())
        }));
    }
    let expected = total / PUBLISHERS / BATCH * PUBLISHERS * BATCH;
    let consumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut receivers = Vec::new();
    for _ in 0..consumers.max(1) {
        let (bus, tenant, topic, name, consumed) = (
            bus.clone(),
            tenant.clone(),
            topic.clone(),
            name.clone(),
            consumed.clone(),
        );
        receivers.push(tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            while consumed.load(Ordering::SeqCst) < expected {
                let got = bus
                    .receive(
                        &tenant,
                        &topic,
                        &name,
                        ReceiveRequest {
                            max: BATCH as u32,
                            visibility_s: 30,
                            wait: Duration::from_millis(200),
                        },
                    )
                    .await?;
                let n = got.len();
                let receipts = got.into_iter().map(|d| d.receipt).collect();
                let not_current = bus.ack(&tenant, &topic, &name, receipts).await?;
                anyhow::ensure!(not_current.is_empty(), "acks failed");
                consumed.fetch_add(n, Ordering::SeqCst);
            }
            anyhow::Ok(())
        }));
    }
    for receiver in receivers {
        receiver.await??;
    }
    for p in publishers {
        p.await??;
    }
    let consumed = consumed.load(std::sync::atomic::Ordering::SeqCst);
    Ok(consumed as f64 / started.elapsed().as_secs_f64())
}

pub async fn jetstream(url: &str, total: usize) -> anyhow::Result<f64> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let _ = js.delete_stream("KEELBENCH").await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "KEELBENCH".into(),
            subjects: vec!["keelbench.>".into()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("q".into()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            ..Default::default()
        })
        .await?;
    let body = bytes::Bytes::from(payload());
    let started = Instant::now();
    let mut publishers = Vec::new();
    for _ in 0..PUBLISHERS {
        let (js, body) = (js.clone(), body.clone());
        publishers.push(tokio::spawn(async move {
            for _ in 0..total / PUBLISHERS / BATCH {
                let mut acks = Vec::with_capacity(BATCH);
                for _ in 0..BATCH {
                    acks.push(js.publish("keelbench.q", body.clone()).await?);
                }
                for ack in acks {
                    ack.await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    let expected = total / PUBLISHERS / BATCH * PUBLISHERS * BATCH;
    let mut consumed = 0;
    // A continuous pull (the client keeps fetch requests of 100 in flight), acking
    // cumulatively every 100 messages.
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await?;
    while consumed < expected {
        let message = messages
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("the JetStream consumer ended"))?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        consumed += 1;
        if consumed % BATCH == 0 || consumed == expected {
            message
                .double_ack()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    for p in publishers {
        p.await??;
    }
    let rate = consumed as f64 / started.elapsed().as_secs_f64();
    let _ = js.delete_stream("KEELBENCH").await;
    Ok(rate)
}
