//! The bus on NATS JetStream (`bus = "nats://host:port[?prefix=keel&dedup_window_s=300]"`).
//!
//! Layout, per deployment prefix `p` and tenant `T`:
//! - one stream per tenant, `p_m_T`, subjects `p.m.T.>`, **interest retention**
//!   (a message is kept until every subscription of its topic has acked it). A
//!   publish goes to `p.m.T.<topic>.=`; a redrive to `p.m.T.<topic>.<subscription>`.
//!   One stream per tenant rather than per topic keeps the number of streams
//!   proportional to tenants and lets one stream's sequence name a tenant's messages;
//!   subjects keep topics apart and no tenant can name another's stream (every name
//!   is built here from the authenticated tenant).
//! - one durable pull consumer per subscription, filtered on `p.m.T.<topic>.*`.
//!   Filters are evaluated by Keel at consume time with the same `FilterPolicy` as
//!   the embedded buses: one message per publish keeps a publish atomic and its
//!   dedup id meaningful; a message a subscription's filter refuses (or a redrive
//!   meant for a sibling subscription) is acked by that subscription unseen.
//! - dead letters in a second stream per tenant, `p_d_T` (limits retention), one
//!   subject per subscription; redrive republishes to the subscription's own subject.
//! - two key-value buckets: `p_registry` (each tenant's topics and subscriptions, one
//!   key per tenant, changed by compare-and-set so quotas hold across replicas) and
//!   `p_leases` (the current delivery of each message in flight, which JetStream
//!   does not track: its ack subject would ack a message's *later* delivery too, so
//!   a receipt is checked against its lease before it acks).
//!
//! Time: visibility timeouts, nack delays and the dedup window run on the NATS
//! server's clock (ack wait, `-NAK` with delay, the stream's duplicate window);
//! `published_at` and ages use Keel's clock.

mod bucket;
mod dead_letters;
mod queue;
mod receipts;
mod registry;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer::pull, stream};
use keel_core::{bus::BusName, clock::Clock};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::{
    bus::{Bus, DeadLetter, Delivery, OutgoingMessage, QueueStats, ReceiveRequest, Subscription},
    fanout_budget::FanoutBudget,
    Quotas, StoreError, StoreResult, TenantId,
};

pub use registry::Registry;

/// What a `nats://` bus URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// The server address as async-nats takes it (the URL without its query).
    pub server: String,
    /// Prefix of every stream, subject and bucket this deployment uses, so several
    /// deployments (or test runs) can share one NATS server.
    pub prefix: String,
    /// JetStream's duplicate window: a publish id seen within it is delivered once.
    pub dedup_window: Duration,
}

impl NatsSettings {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("bus {raw:?}: {e}"))?;
        if url.scheme() != "nats" && url.scheme() != "tls" {
            return Err(format!("bus {raw:?}: expected nats://host:port"));
        }
        let mut settings = Self {
            server: raw.split('?').next().unwrap_or(raw).to_owned(),
            prefix: "keel".into(),
            dedup_window: Duration::from_secs(300),
        };
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "prefix" => {
                    let ok = (1..=32).contains(&value.len())
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
                    if !ok {
                        return Err(format!(
                            "bus {raw:?}: prefix is 1 to 32 letters, digits, '_' or '-'"
                        ));
                    }
                    settings.prefix = value.into_owned();
                }
                "dedup_window_s" => {
                    let seconds: u64 = value
                        .parse()
                        .ok()
                        .filter(|s| (1..=86_400).contains(s))
                        .ok_or_else(|| {
                            format!("bus {raw:?}: dedup_window_s is 1 to 86400 seconds")
                        })?;
                    settings.dedup_window = Duration::from_secs(seconds);
                }
                other => return Err(format!("bus {raw:?}: unknown option {other:?}")),
            }
        }
        Ok(settings)
    }
}

/// The JetStream bus. Cheap to share; every replica opens its own.
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    dedup_window: Duration,
    clock: Arc<dyn Clock>,
    quotas: Quotas,
    fanout_budget: FanoutBudget,
    registry: Registry,
    leases: bucket::Bucket,
    /// Tenant streams known to exist, with the creation time that makes their
    /// sequence numbers into message ids unique even if a stream is recreated.
    streams: Mutex<HashMap<String, TenantStream>>,
    consumers: Mutex<HashMap<(String, String, String), QueueConsumer>>,
}

#[derive(Clone)]
struct TenantStream {
    messages: stream::Stream,
    /// Milliseconds since the epoch when the stream was created.
    created_ms: u64,
}

#[derive(Clone)]
struct QueueConsumer {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    /// `$JS.ACK.<stream>.<consumer>.`: a receipt is what follows it.
    ack_prefix: String,
    name: String,
    ack_wait_s: u32,
}

/// How long a JetStream API call may take before the bus counts as unavailable.
const API_TIMEOUT: Duration = Duration::from_secs(5);

impl NatsBus {
    pub async fn connect(
        settings: &NatsSettings,
        clock: Arc<dyn Clock>,
        quotas: Quotas,
    ) -> StoreResult<Self> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(API_TIMEOUT)
            .request_timeout(Some(API_TIMEOUT))
            .connect(settings.server.as_str())
            .await
            .map_err(|e| unavailable("connecting", e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .build(client.clone());
        let registry = Registry::open(&js, &settings.prefix).await?;
        // A lease outlives the longest visibility timeout; one left behind (a
        // process died between receive and ack) ages out.
        let leases = bucket::Bucket::open(
            &js,
            format!("{}_leases", settings.prefix),
            format!("{}.lease", settings.prefix),
            Duration::from_secs(2 * 86_400),
        )
        .await?;
        Ok(Self {
            client,
            js,
            prefix: settings.prefix.clone(),
            dedup_window: settings.dedup_window,
            clock,
            quotas,
            fanout_budget: FanoutBudget::new(
                quotas.fanout_bytes_per_second,
                quotas
                    .fanout_bytes_per_second
                    .max(quotas.fanout_bytes_per_publish),
            ),
            registry,
            leases,
            streams: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
        })
    }

    fn messages_stream_name(&self, tenant: &TenantId) -> String {
        format!("{}_m_{}", self.prefix, token(tenant.as_str()))
    }

    fn dead_letter_stream_name(&self, tenant: &TenantId) -> String {
        format!("{}_d_{}", self.prefix, token(tenant.as_str()))
    }

    /// Where a publish to `topic` goes.
    fn topic_subject(&self, tenant: &TenantId, topic: &BusName) -> String {
        format!(
            "{}.m.{}.{}.=",
            self.prefix,
            token(tenant.as_str()),
            token(topic.as_str())
        )
    }

    /// Where a redrive to one subscription goes (its consumer's filter takes both).
    fn redrive_subject(&self, tenant: &TenantId, topic: &BusName, name: &BusName) -> String {
        format!(
            "{}.m.{}.{}.{}",
            self.prefix,
            token(tenant.as_str()),
            token(topic.as_str()),
            token(name.as_str())
        )
    }

    fn dead_letter_subject(&self, tenant: &TenantId, topic: &BusName, name: &BusName) -> String {
        format!(
            "{}.d.{}.{}.{}",
            self.prefix,
            token(tenant.as_str()),
            token(topic.as_str()),
            token(name.as_str())
        )
    }

    /// The tenant's message stream, created on first use by whichever replica
    /// gets there first (creation with the same configuration is idempotent).
    async fn tenant_stream(&self, tenant: &TenantId) -> StoreResult<TenantStream> {
        if let Some(known) = self.streams.lock().get(tenant.as_str()) {
            return Ok(known.clone());
        }
        let mut messages = self
            .js
            .get_or_create_stream(stream::Config {
                name: self.messages_stream_name(tenant),
                subjects: vec![format!("{}.m.{}.>", self.prefix, token(tenant.as_str()))],
                retention: stream::RetentionPolicy::Interest,
                storage: stream::StorageType::File,
                duplicate_window: self.dedup_window,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("creating the tenant's stream", e))?;
        let created = messages
            .info()
            .await
            .map_err(|e| unavailable("reading the tenant's stream", e))?
            .created;
        let known = TenantStream {
            messages,
            created_ms: (created.unix_timestamp_nanos() / 1_000_000).max(0) as u64,
        };
        self.streams
            .lock()
            .insert(tenant.as_str().to_owned(), known.clone());
        Ok(known)
    }

    /// The tenant's dead-letter stream if it exists: reading dead letters or
    /// statistics never creates it.
    async fn existing_dead_letter_stream(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Option<stream::Stream>> {
        match self
            .js
            .get_stream(self.dead_letter_stream_name(tenant))
            .await
        {
            Ok(dead) => Ok(Some(dead)),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(error)
                    if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(unavailable("reading the dead letters", e)),
            },
        }
    }

    async fn dead_letter_stream(&self, tenant: &TenantId) -> StoreResult<stream::Stream> {
        self.js
            .get_or_create_stream(stream::Config {
                name: self.dead_letter_stream_name(tenant),
                subjects: vec![format!("{}.d.{}.>", self.prefix, token(tenant.as_str()))],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                // Moving a message to the dead letters is retried under the same
                // id (after at most the longest visibility, 12 h); the window
                // makes the retry land once.
                duplicate_window: Duration::from_secs(13 * 3600),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("creating the tenant's dead-letter stream", e))
    }

    /// The subscription's durable consumer, created (or its ack wait updated) by
    /// any replica.
    async fn queue_consumer(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        visibility_s: u32,
    ) -> StoreResult<QueueConsumer> {
        let key = (
            tenant.as_str().to_owned(),
            topic.as_str().to_owned(),
            name.as_str().to_owned(),
        );
        if let Some(known) = self.consumers.lock().get(&key) {
            if known.ack_wait_s == visibility_s {
                return Ok(known.clone());
            }
        }
        let stream = self.tenant_stream(tenant).await?;
        let durable = consumer_name(topic, name);
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: format!(
                "{}.m.{}.{}.*",
                self.prefix,
                token(tenant.as_str()),
                token(topic.as_str())
            ),
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(visibility_s.max(1) as u64),
            // Keel counts deliveries itself and dead-letters past max_receives.
            max_deliver: -1,
            max_ack_pending: 20_000,
            ..Default::default()
        };
        let consumer = match stream.messages.create_consumer(config.clone()).await {
            Ok(consumer) => consumer,
            // An existing consumer with another ack wait: update it.
            Err(_) => stream
                .messages
                .update_consumer(config)
                .await
                .map_err(|e| unavailable("creating the subscription's consumer", e))?,
        };
        let known = QueueConsumer {
            consumer,
            ack_prefix: format!("$JS.ACK.{}.{}.", self.messages_stream_name(tenant), durable),
            name: durable,
            ack_wait_s: visibility_s.max(1),
        };
        self.consumers.lock().insert(key, known.clone());
        Ok(known)
    }

    /// Makes a message id from a stream sequence: unique per tenant, and the same
    /// for a duplicate publish (JetStream acks it with the first one's sequence).
    fn message_id(stream_created_ms: u64, sequence: u64) -> String {
        format!("{stream_created_ms:011x}-{sequence:012x}")
    }
}

/// Names may contain '.', which NATS reserves as a token separator; '~' is not in
/// a name's alphabet, so the mapping is one to one.
fn token(name: &str) -> String {
    name.replace('.', "~")
}

/// A durable consumer's name: short and path-safe whatever the names' lengths.
fn consumer_name(topic: &BusName, name: &BusName) -> String {
    let digest = Sha256::digest(format!("{}\n{}", topic.as_str(), name.as_str()));
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("q{hex}")
}

pub(crate) fn unavailable(doing: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("NATS, {doing}: {error}"))
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    async fn ensure_topic(&self, tenant: &TenantId, topic: &BusName) -> StoreResult<()> {
        self.registry
            .ensure_topic(tenant, topic, &self.quotas)
            .await
    }

    async fn publish(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        messages: Vec<OutgoingMessage>,
    ) -> StoreResult<Vec<String>> {
        self.publish_messages(tenant, topic, messages).await
    }

    async fn put_subscription(
        &self,
        tenant: &TenantId,
        subscription: Subscription,
    ) -> StoreResult<Subscription> {
        let subscription = Subscription {
            created_at: self.clock.now(),
            ..subscription
        };
        let stored = self
            .registry
            .put_subscription(tenant, &subscription, &self.quotas)
            .await?;
        // The consumer exists before the answer, so the next publish reaches it.
        self.queue_consumer(
            tenant,
            &stored.topic,
            &stored.name,
            stored.delivery.visibility_timeout_s,
        )
        .await?;
        Ok(stored)
    }

    async fn subscription(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
    ) -> StoreResult<Option<Subscription>> {
        let found = self
            .registry
            .read_fresh(tenant)
            .await?
            .subscription(topic, name);
        if let Some(subscription) = &found {
            // The registry is written before the consumer is created: whoever
            // sees a subscription makes sure its consumer exists, so a publish
            // that follows cannot pass it by.
            self.queue_consumer(
                tenant,
                topic,
                name,
                subscription.delivery.visibility_timeout_s,
            )
            .await?;
        }
        Ok(found)
    }

    async fn list_subscriptions(&self, tenant: &TenantId) -> StoreResult<Vec<Subscription>> {
        let mut found: Vec<Subscription> = self
            .registry
            .read_fresh(tenant)
            .await?
            .subscriptions()
            .collect();
        found.sort_by(|a, b| {
            (a.topic.as_str(), a.name.as_str()).cmp(&(b.topic.as_str(), b.name.as_str()))
        });
        Ok(found)
    }

    async fn receive(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        request: ReceiveRequest,
    ) -> StoreResult<Vec<Delivery>> {
        self.receive_messages(tenant, topic, name, request).await
    }

    async fn ack(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        receipts: Vec<String>,
    ) -> StoreResult<Vec<String>> {
        self.ack_receipts(tenant, topic, name, receipts).await
    }

    async fn nack(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        receipt: &str,
        delay_s: u32,
        error: Option<String>,
    ) -> StoreResult<bool> {
        self.nack_receipt(tenant, topic, name, receipt, delay_s, error)
            .await
    }

    async fn stats(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
    ) -> StoreResult<QueueStats> {
        self.queue_stats(tenant, topic, name).await
    }

    async fn dead_letters(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>> {
        self.list_dead_letters(tenant, topic, name, limit).await
    }

    async fn redrive(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        ids: Option<Vec<String>>,
    ) -> StoreResult<u64> {
        self.redrive_dead_letters(tenant, topic, name, ids).await
    }

    async fn worker_subscriptions(&self) -> StoreResult<Vec<(TenantId, Subscription)>> {
        let mut found = Vec::new();
        for tenant in self.registry.tenants().await? {
            let known = self.registry.read(&tenant).await?;
            for subscription in known.subscriptions() {
                if subscription.target.get("type").and_then(|t| t.as_str()) != Some("queue") {
                    found.push((tenant.clone(), subscription));
                }
            }
        }
        Ok(found)
    }

    async fn all_queue_stats(&self) -> StoreResult<Vec<(TenantId, String, String, QueueStats)>> {
        let mut found = Vec::new();
        for tenant in self.registry.tenants().await? {
            let known = self.registry.read(&tenant).await?;
            for subscription in known.subscriptions() {
                // One queue that cannot be read does not hide the others.
                let stats = match self
                    .queue_stats(&tenant, &subscription.topic, &subscription.name)
                    .await
                {
                    Ok(stats) => stats,
                    Err(e) => {
                        tracing::warn!(error = %e, "NATS: queue statistics unavailable");
                        continue;
                    }
                };
                if stats != QueueStats::default() {
                    found.push((
                        tenant.clone(),
                        subscription.topic.as_str().to_owned(),
                        subscription.name.as_str().to_owned(),
                        stats,
                    ));
                }
            }
        }
        Ok(found)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.registry.ping().await
    }

    fn backend_name(&self) -> &'static str {
        "nats"
    }
}
