//! Settling deliveries on JetStream: acks and nacks, checked against the lease
//! each delivery wrote (JetStream's own ack subject would also ack a message's
//! later delivery, and is the same for two subscriptions receiving in step).

use std::time::Duration;

use async_nats::jetstream::message::AckKind;
use bytes::Bytes;
use futures::future::try_join_all;
use keel_core::bus::BusName;

use super::{
    queue::{lease_key, now_ms, within, Reader},
    unavailable, NatsBus, API_TIMEOUT,
};
use crate::{StoreResult, TenantId};

impl NatsBus {
    /// The receipts that are not current; the others are acked.
    pub(super) async fn ack_receipts(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        receipts: Vec<String>,
    ) -> StoreResult<Vec<String>> {
        let Some(reader) = self.reader(tenant, topic, name).await? else {
            return Ok(receipts);
        };
        let reader = &reader;
        let outcomes = try_join_all(receipts.into_iter().map(|receipt| async move {
            let acked = self.ack_one(reader, &receipt).await?;
            StoreResult::Ok((!acked).then_some(receipt))
        }))
        .await?;
        Ok(outcomes.into_iter().flatten().collect())
    }

    async fn ack_one(&self, reader: &Reader<'_>, receipt: &str) -> StoreResult<bool> {
        let Some(lease) = self.current_lease(reader, receipt).await? else {
            return Ok(false);
        };
        // Whoever removes the lease owns the ack: two acks of one receipt, or an
        // ack racing a redelivery, cannot both succeed.
        if !self.leases.delete_if(&lease.key, lease.revision).await? {
            return Ok(false);
        }
        self.client
            .request(
                format!("{}{}", reader.queue.ack_prefix, lease.ack_tail),
                "+ACK".into(),
            )
            .await
            .map_err(|e| unavailable("acking", e))?;
        if lease.receive_count > 1 {
            let _ = self.leases.delete(&format!("{}.e", lease.key)).await;
        }
        Ok(true)
    }

    pub(super) async fn nack_receipt(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        receipt: &str,
        delay_s: u32,
        error: Option<String>,
    ) -> StoreResult<bool> {
        let Some(reader) = self.reader(tenant, topic, name).await? else {
            return Ok(false);
        };
        let Some(lease) = self.current_lease(&reader, receipt).await? else {
            return Ok(false);
        };
        // A nack retires the receipt, as on the embedded buses: removing the lease
        // decides which of two racing nacks (or a nack and an ack) wins.
        if !self.leases.delete_if(&lease.key, lease.revision).await? {
            return Ok(false);
        }
        if let Some(error) = error {
            // Never empty: an empty value is a deletion.
            let error = if error.is_empty() {
                "error".to_owned()
            } else {
                error
            };
            self.leases
                .put(&format!("{}.e", lease.key), error.into())
                .await?;
        }
        let nak: Bytes = AckKind::Nak(Some(Duration::from_secs(delay_s as u64))).into();
        self.client
            .publish(
                format!("{}{}", reader.queue.ack_prefix, lease.ack_tail),
                nak,
            )
            .await
            .map_err(|e| unavailable("nacking", e))?;
        within(API_TIMEOUT, "nacking", self.client.flush()).await?;
        Ok(true)
    }

    /// The lease a receipt names, if the receipt is its current delivery.
    async fn current_lease(
        &self,
        reader: &Reader<'_>,
        receipt: &str,
    ) -> StoreResult<Option<Lease>> {
        let Some(parsed) = parse_receipt(receipt) else {
            return Ok(None);
        };
        let key = lease_key(reader, parsed.sequence);
        let entry = self.leases.get(&key).await?;
        let held = entry
            .value
            .as_deref()
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(parse_lease);
        let Some((delivery_sequence, nonce, ack_by_ms)) = held else {
            return Ok(None);
        };
        // A receipt whose visibility has (nearly) run out is not current even
        // before JetStream redelivers.
        let current = delivery_sequence == parsed.delivery_sequence
            && nonce == parsed.nonce
            && now_ms() < ack_by_ms;
        Ok(current.then(|| Lease {
            key,
            revision: entry.revision,
            receive_count: parsed.receive_count,
            ack_tail: parsed.ack_tail.to_owned(),
        }))
    }
}

struct Lease {
    key: String,
    revision: u64,
    receive_count: u32,
    /// The JetStream ack subject's tail this delivery is acked with.
    ack_tail: String,
}

/// A receipt is the tail of JetStream's ack subject,
/// `<delivered>.<stream seq>.<delivery seq>.<timestamp>.<pending>`, and the lease's
/// nonce: digits only, so it cannot name another subject; the stream and consumer
/// come from the queue the caller names.
struct Receipt<'a> {
    receive_count: u32,
    sequence: u64,
    delivery_sequence: u64,
    nonce: u64,
    ack_tail: &'a str,
}

fn parse_receipt(receipt: &str) -> Option<Receipt<'_>> {
    let parts: Vec<&str> = receipt.split('.').collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 20 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let ack_tail = &receipt[..receipt.len() - parts[5].len() - 1];
    Some(Receipt {
        receive_count: parts[0].parse().ok()?,
        sequence: parts[1].parse().ok()?,
        delivery_sequence: parts[2].parse().ok()?,
        nonce: parts[5].parse().ok()?,
        ack_tail,
    })
}

/// A lease's value: `<delivery seq>.<nonce>.<ack by, ms since the epoch>`.
fn parse_lease(value: &str) -> Option<(u64, u64, u64)> {
    let mut parts = value.split('.');
    let parsed = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    parts.next().is_none().then_some(parsed)
}
