//! Objects (SPEC §6): two ports that together make an upload and its event atomic.
//!
//! - [`BlobStore`] holds the bytes, under names Keel makes up (`<tenant>/<bucket>/<id>`,
//!   never a client's key), written once and never overwritten. Adapter: the
//!   `object_store` crate on local files or S3 ([`blobs::ObjectStoreBlobs`]).
//! - [`ObjectIndex`] (part of the store) maps keys to blobs, holds buckets and their
//!   notification rules, and holds the **outbox** of event records.
//!
//! An upload writes its blob first, where no key points at it, then commits — in
//! one store transaction — the key's new blob and the events its notification rules
//! publish. The object exists exactly when that commit did, and so do its events:
//! a crash before the commit leaves a blob nobody can see (collected later, see
//! [`ObjectIndex::reserve_blob`]); a crash after it leaves events in the outbox that
//! the relay publishes on restart. A delete is one commit too (key removed, events
//! queued), after which the old blob is collected.

pub mod blobs;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use jiff::Timestamp;
use serde_json::Value;

use crate::{Page, PageRequest, StoreError, StoreResult, TenantId};

/// The bytes of an object: put once, read (whole or a range), deleted.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Streams `body` into a new blob named `name`, never holding more than a few
    /// parts of it in memory; durable when it returns. Refuses (and removes what
    /// was written) once more than `max_bytes` arrived.
    async fn put(
        &self,
        name: &str,
        body: BoxStream<'static, Result<Bytes, String>>,
        max_bytes: u64,
    ) -> Result<PutBlob, PutError>;
    /// The blob's bytes `range` (the whole blob when `None`), as a stream.
    async fn get(
        &self,
        name: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> StoreResult<BoxStream<'static, StoreResult<Bytes>>>;
    /// Removes a blob; removing one that is not there is not an error.
    async fn delete(&self, name: &str) -> StoreResult<()>;
    /// Cheap round trip proving the backend answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    /// `file` or `s3`, for logs and `keel config`.
    fn backend_name(&self) -> &'static str;
    /// The region S3 event records name (`local` on files).
    fn region(&self) -> &str;
}

/// What a finished put learned while streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutBlob {
    pub size: u64,
    /// MD5 of the body, lowercase hex: the object's ETag.
    pub md5_hex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the object is over the size limit of {0} bytes")]
    TooLarge(u64),
    /// The client's body broke off or timed out; nothing was stored.
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A bucket and its notification rules (the JSON array as accepted).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub name: String,
    pub created_at: Timestamp,
    pub rules: Value,
}

/// What the index knows about one object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMeta {
    pub key: String,
    /// The blob holding its bytes.
    pub blob: String,
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    pub modified_at: Timestamp,
}

/// An event record to publish once the change that caused it is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub topic: String,
    pub body: Value,
    /// The bus's dedup id: a relay that publishes twice (crash after the publish,
    /// before the outbox row is gone) is delivered once.
    pub dedup_id: String,
}

/// An outbox row claimed by a relay.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub tenant: TenantId,
    pub message: OutboxMessage,
}

/// How long a blob written but not (yet) committed is kept before it is collected:
/// longer than any upload may take.
pub const UNCOMMITTED_BLOB_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a replaced or deleted object's blob is kept, so reads that began
/// before the change can finish.
pub const REPLACED_BLOB_GRACE: Duration = Duration::from_secs(300);

#[async_trait]
pub trait ObjectIndex: Send + Sync {
    /// Creates the bucket; `true` when it is new, `false` when it existed.
    async fn create_bucket(&self, tenant: &TenantId, bucket: &str) -> StoreResult<(Bucket, bool)>;
    async fn bucket(&self, tenant: &TenantId, bucket: &str) -> StoreResult<Option<Bucket>>;
    /// The tenant's buckets by name; the cursor is the last name.
    async fn list_buckets(&self, tenant: &TenantId, page: PageRequest)
        -> StoreResult<Page<Bucket>>;
    /// Replaces the bucket's rules; `false` when there is no such bucket.
    async fn set_notification_rules(
        &self,
        tenant: &TenantId,
        bucket: &str,
        rules: Value,
    ) -> StoreResult<bool>;
    /// Records, before its bytes are written, that blob `name` is to be collected
    /// at `collect_at` unless an object commit claims it first.
    async fn reserve_blob(
        &self,
        tenant: &TenantId,
        name: &str,
        collect_at: Timestamp,
    ) -> StoreResult<()>;
    /// In one transaction: points `meta.key` at `meta.blob` (claiming it from
    /// collection), queues the blob it replaces for collection at `replaced_collect_at`,
    /// and queues `events`. `false` (nothing written) when the bucket is gone.
    async fn commit_object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        meta: ObjectMeta,
        events: Vec<OutboxMessage>,
        replaced_collect_at: Timestamp,
    ) -> StoreResult<bool>;
    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        key: &str,
    ) -> StoreResult<Option<ObjectMeta>>;
    /// In one transaction: removes the key, queues its blob for collection at
    /// `collect_at` and queues `events`. `false` (and no events) when there was
    /// no such object.
    async fn remove_object(
        &self,
        tenant: &TenantId,
        bucket: &str,
        key: &str,
        events: Vec<OutboxMessage>,
        collect_at: Timestamp,
    ) -> StoreResult<bool>;
    /// Keys starting with `prefix`, in key order; the cursor is the last key.
    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &str,
        prefix: &str,
        page: PageRequest,
    ) -> StoreResult<Page<ObjectMeta>>;
    /// Up to `limit` outbox entries of any tenant, oldest first, leased to the
    /// caller for `lease` (another relay sees them again after it).
    async fn claim_outbox(&self, limit: u32, lease: Duration) -> StoreResult<Vec<OutboxEntry>>;
    /// Removes published outbox entries.
    async fn finish_outbox(&self, ids: Vec<i64>) -> StoreResult<()>;
    /// Up to `limit` blobs due for collection, leased to the caller for `lease`.
    async fn claim_garbage(&self, limit: u32, lease: Duration) -> StoreResult<Vec<String>>;
    /// Forgets collected blobs.
    async fn forget_garbage(&self, names: Vec<String>) -> StoreResult<()>;
}

/// The last key that can start with `prefix`: keys compare byte by byte, and no
/// UTF-8 character sorts after U+10FFFF, so this bounds the index scan of a prefix
/// listing (the query still checks the prefix itself).
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}\u{10FFFF}")
}
