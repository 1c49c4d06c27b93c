//! The read side of the pipeline (SPEC §5): collections written by the built-in
//! `store` target, and the record of delivery attempts made by built-in workers.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::bus::BusName;
use serde_json::Value;

use crate::{Page, PageRequest, StoreResult, TenantId};

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The id of the message that wrote it: redelivery upserts, never duplicates.
    pub id: String,
    pub data: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One try of a built-in worker to deliver one message.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub message_id: String,
    pub attempt: u32,
    pub at: Timestamp,
    /// `delivered`, `failed` or `dead-lettered`.
    pub outcome: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: f64,
    /// What the delivery did, when the worker reports more than an outcome
    /// (`telemetry-import`: `{"imported", "rejected", "errors"}`).
    pub report: Option<Value>,
}

#[async_trait]
pub trait CollectionStore: Send + Sync {
    /// Writes records by id: a new id inserts, a known one replaces its data (so
    /// the store target may see a message twice — a redelivery after a crash —
    /// and still leave one row). Durable before it returns.
    async fn upsert_records(
        &self,
        tenant: &TenantId,
        collection: &str,
        records: Vec<(String, Value)>,
    ) -> StoreResult<()>;
    /// Newest first.
    async fn records(
        &self,
        tenant: &TenantId,
        collection: &str,
        page: PageRequest,
    ) -> StoreResult<Page<Record>>;
    async fn record(
        &self,
        tenant: &TenantId,
        collection: &str,
        id: &str,
    ) -> StoreResult<Option<Record>>;
    async fn delete_record(
        &self,
        tenant: &TenantId,
        collection: &str,
        id: &str,
    ) -> StoreResult<bool>;
    /// How many of `ids` are stored in the collection.
    async fn stored_count(
        &self,
        tenant: &TenantId,
        collection: &str,
        ids: &[String],
    ) -> StoreResult<usize>;
    async fn record_attempts(
        &self,
        attempts: Vec<(TenantId, BusName, BusName, DeliveryAttempt)>,
    ) -> StoreResult<()>;
    /// Newest first.
    async fn attempts(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        subscription: &BusName,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryAttempt>>;
}
