//! Dead letters on JetStream: a message past its receives moves to the tenant's
//! dead-letter stream (one subject per subscription); a redrive republishes it to
//! the subscription's own subject with a fresh receive count.

use async_nats::jetstream;
use keel_core::bus::BusName;
use serde_json::{Map, Value};

use super::{
    queue::{lease_key, Envelope, Reader, NOT_ACKED},
    token, unavailable, NatsBus,
};
use crate::{bus::DeadLetter, from_micros, StoreError, StoreResult, TenantId};

impl NatsBus {
    pub(super) async fn dead_letter(
        &self,
        reader: &Reader<'_>,
        sequence: u64,
        mut envelope: Envelope,
        receive_count: u32,
    ) -> StoreResult<()> {
        let lease = lease_key(reader, sequence);
        let error = match self.leases.get(&format!("{lease}.e")).await?.value {
            Some(error) => String::from_utf8_lossy(&error).into_owned(),
            None => NOT_ACKED.to_owned(),
        };
        envelope
            .id
            .get_or_insert_with(|| Self::message_id(reader.created_ms, sequence));
        envelope.rc = Some(receive_count);
        envelope.e = Some(error);
        let payload = serde_json::to_vec(&envelope)
            .map_err(|e| StoreError::Internal(format!("encoding a dead letter: {e}")))?;
        self.dead_letter_stream(reader.tenant).await?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(format!("{}-{sequence}", reader.queue.name));
        self.js
            .send_publish(
                self.dead_letter_subject(reader.tenant, reader.topic, reader.name),
                publish,
            )
            .await
            .map_err(|e| unavailable("dead-lettering", e))?
            .await
            .map_err(|e| unavailable("dead-lettering", e))?;
        Ok(())
    }

    /// The subscription's dead letters in `dead`, oldest first, with their
    /// stream sequences.
    async fn dead_letter_messages(
        &self,
        dead: &jetstream::stream::Stream,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Envelope)>> {
        let subject = self.dead_letter_subject(tenant, topic, name);
        let mut found = Vec::new();
        let mut next = 1;
        while found.len() < limit {
            let message = dead
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(subject.clone())
                .send()
                .await;
            let message = match message {
                Ok(message) => message,
                Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                    break
                }
                Err(e) => return Err(unavailable("reading dead letters", e)),
            };
            next = message.sequence + 1;
            if let Ok(envelope) = serde_json::from_slice::<Envelope>(&message.payload) {
                found.push((message.sequence, envelope));
            }
        }
        Ok(found)
    }

    pub(super) async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>> {
        let Some(dead) = self.existing_dead_letter_stream(tenant).await? else {
            return Ok(Vec::new());
        };
        let found = self
            .dead_letter_messages(&dead, tenant, topic, name, limit as usize)
            .await?;
        found
            .into_iter()
            .map(|(_, envelope)| {
                Ok(DeadLetter {
                    id: envelope.id.unwrap_or_default(),
                    body: envelope.b,
                    attributes: match envelope.a {
                        Value::Object(map) => map,
                        _ => Map::new(),
                    },
                    published_at: from_micros(envelope.t)?,
                    receive_count: envelope.rc.unwrap_or_default(),
                    last_error: envelope.e,
                })
            })
            .collect()
    }

    /// Republishes dead letters to the subscription's own subject (a fresh stream
    /// message, so a fresh receive count), then removes them from the dead letters.
    pub(super) async fn redrive_dead_letters(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        ids: Option<Vec<String>>,
    ) -> StoreResult<u64> {
        let Some(dead) = self.existing_dead_letter_stream(tenant).await? else {
            return Ok(0);
        };
        let found = self
            .dead_letter_messages(&dead, tenant, topic, name, usize::MAX)
            .await?;
        self.tenant_stream(tenant).await?;
        let subject = self.redrive_subject(tenant, topic, name);
        let mut moved = 0;
        for (sequence, mut envelope) in found {
            let wanted = match (&ids, &envelope.id) {
                (None, _) => true,
                (Some(ids), Some(id)) => ids.contains(id),
                (Some(_), None) => false,
            };
            if !wanted {
                continue;
            }
            envelope.rc = None;
            envelope.e = None;
            let payload = serde_json::to_vec(&envelope)
                .map_err(|e| StoreError::Internal(format!("encoding a redrive: {e}")))?;
            // Republished under an id, so a redrive retried after a failure
            // between publish and delete lands once.
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("redrive-{}-{sequence}", token(name.as_str())));
            self.js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| unavailable("redriving", e))?
                .await
                .map_err(|e| unavailable("redriving", e))?;
            match dead.delete_message(sequence).await {
                Ok(_) => moved += 1,
                // A concurrent redrive moved it first (its republish and ours
                // share a message id, so the queue holds it once).
                Err(e) if already_deleted(&e) => {}
                Err(e) => return Err(unavailable("removing a redriven dead letter", e)),
            }
        }
        Ok(moved)
    }
}

/// Whether deleting a stream message failed because it was gone: newer servers
/// say so with their own code, nats-server 2.9 with "delete failed" and the reason
/// in its text.
fn already_deleted(e: &jetstream::stream::DeleteMessageError) -> bool {
    match e.kind() {
        jetstream::stream::DeleteMessageErrorKind::JetStream(error) => {
            error.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND
                || (error.error_code() == jetstream::ErrorCode::STREAM_MESSAGE_DELETE_FAILED
                    && error.to_string().contains("no message found"))
        }
        _ => false,
    }
}
