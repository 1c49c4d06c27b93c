//! A small key-value map on a JetStream stream: one subject per key, one message
//! kept per subject, compare-and-set through `Nats-Expected-Last-Subject-Sequence`.
//! This is what JetStream's own KV buckets are; async-nats' KV API cannot create
//! or open them on the 2.9 servers Debian ships (it first reads account
//! information in a form those servers do not send), while these stream calls
//! work on every server with JetStream.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use futures::StreamExt;

use super::unavailable;
use crate::StoreResult;

pub(super) struct Bucket {
    js: jetstream::Context,
    stream: stream::Stream,
    /// `<subject prefix>.` — a key's subject is this plus the key.
    subjects: String,
}

/// A key as read: the revision to compare against (0 when it never existed) and
/// its value (`None` when absent or deleted).
pub(super) struct Entry {
    pub revision: u64,
    pub value: Option<Bytes>,
}

impl Bucket {
    pub(super) async fn open(
        js: &jetstream::Context,
        name: String,
        subject_prefix: String,
        max_age: Duration,
    ) -> StoreResult<Self> {
        let stream = js
            .get_or_create_stream(stream::Config {
                name,
                subjects: vec![format!("{subject_prefix}.>")],
                max_messages_per_subject: 1,
                max_age,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("opening a key-value stream", e))?;
        Ok(Self {
            js: js.clone(),
            stream,
            subjects: format!("{subject_prefix}."),
        })
    }

    pub(super) async fn get(&self, key: &str) -> StoreResult<Entry> {
        let subject = format!("{}{key}", self.subjects);
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => Ok(Entry {
                revision: message.sequence,
                value: (!message.payload.is_empty()).then_some(message.payload),
            }),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(Entry {
                revision: 0,
                value: None,
            }),
            Err(e) => Err(unavailable("reading a key", e)),
        }
    }

    /// Writes unconditionally; returns the new revision.
    pub(super) async fn put(&self, key: &str, value: Bytes) -> StoreResult<u64> {
        self.write(key, value, None)
            .await?
            .ok_or_else(|| unavailable("writing a key", "refused"))
    }

    /// Writes if the key is still at `revision` (0: never written); `None` when
    /// another writer got there first.
    pub(super) async fn put_if(
        &self,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> StoreResult<Option<u64>> {
        self.write(key, value, Some(revision)).await
    }

    /// Deletes if the key is still at `revision`; `false` when it is not.
    pub(super) async fn delete_if(&self, key: &str, revision: u64) -> StoreResult<bool> {
        Ok(self
            .write(key, Bytes::new(), Some(revision))
            .await?
            .is_some())
    }

    pub(super) async fn delete(&self, key: &str) -> StoreResult<()> {
        self.write(key, Bytes::new(), None).await.map(|_| ())
    }

    async fn write(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<u64>,
    ) -> StoreResult<Option<u64>> {
        let mut publish = jetstream::message::PublishMessage::build().payload(value);
        if let Some(revision) = expected {
            publish = publish.expected_last_subject_sequence(revision);
        }
        let subject = format!("{}{key}", self.subjects);
        let acked = match self.js.send_publish(subject, publish).await {
            Ok(ack) => ack.await,
            Err(e) => return Err(unavailable("writing a key", e)),
        };
        match acked {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(unavailable("writing a key", e)),
        }
    }

    /// Every key that has a value or had one (deleted keys linger until they age
    /// out; callers read each key anyway).
    pub(super) async fn keys(&self) -> StoreResult<Vec<String>> {
        let mut subjects = self
            .stream
            .info_with_subjects(format!("{}>", self.subjects))
            .await
            .map_err(|e| unavailable("listing keys", e))?;
        let mut keys = Vec::new();
        while let Some(entry) = subjects.next().await {
            let (subject, _) = entry.map_err(|e| unavailable("listing keys", e))?;
            if let Some(key) = subject.strip_prefix(&self.subjects) {
                keys.push(key.to_owned());
            }
        }
        Ok(keys)
    }

    /// A round trip to JetStream (for `/readyz`).
    pub(super) async fn ping(&self) -> StoreResult<()> {
        self.stream
            .get_info()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("reaching JetStream", e))
    }
}
