//! The bus suites' fixture: a tenant on an adapter, a subscription helper and
//! receives with a short visibility (JetStream's timers run in real time).

use jiff::Timestamp;
use keel_core::bus::{BusName, DeliveryPolicy};
use keel_store::{
    bus::{Delivery, FilterScope, OutgoingMessage, ReceiveRequest, Subscription},
    TenantId,
};
use serde_json::{json, Map, Value};

use super::{Adapter, Kind};

pub struct Fixture {
    pub a: Adapter,
    pub tenant: TenantId,
}

pub async fn fixture(kind: Kind) -> Option<Fixture> {
    fixture_with(kind, keel_store::Quotas::default()).await
}

pub async fn fixture_with(kind: Kind, quotas: keel_store::Quotas) -> Option<Fixture> {
    let a = Adapter::open_with(kind, quotas).await?;
    let tenant = a.store.create_tenant("t").await.unwrap().id;
    Some(Fixture { a, tenant })
}

/// The visibility timeout receives ask for (shorter than the subscriptions' own
/// 30 s, so a per-receive visibility is what every check exercises).
pub const VISIBILITY: i64 = 2;

pub fn take(max: u32) -> ReceiveRequest {
    ReceiveRequest {
        max,
        visibility_s: VISIBILITY as u32,
        wait: std::time::Duration::ZERO,
    }
}

impl Fixture {
    pub fn advance(&self, seconds: i64) {
        self.a.advance(seconds);
    }

    pub async fn subscribe(
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

    pub async fn publish(
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

    pub async fn receive(&self, topic: &str, sub: &str, max: u32) -> Vec<Delivery> {
        self.a
            .bus
            .receive(&self.tenant, &name_of(topic), &name_of(sub), take(max))
            .await
            .unwrap()
    }
}

pub fn name_of(s: &str) -> BusName {
    BusName::parse(s, "/name").unwrap()
}
