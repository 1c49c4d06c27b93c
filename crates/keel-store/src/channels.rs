//! Notification channels (SPEC §7). Each channel also has a subscription on the
//! tenant's `keel.notifications` topic (made by the API), through which its
//! notices are delivered; this port keeps the channel itself. Adapters: SQLite
//! and PostgreSQL (`*::channels`).

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::channel::ChannelSpec;

use crate::{from_micros, StoreResult, TenantId};

/// A tenant has at most this many channels.
pub const MAX_CHANNELS: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredChannel {
    pub id: String,
    pub tenant: TenantId,
    pub spec: ChannelSpec,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// A name the tenant already uses is a [`crate::StoreError::Conflict`].
    async fn create_channel(
        &self,
        tenant: &TenantId,
        spec: ChannelSpec,
    ) -> StoreResult<StoredChannel>;
    async fn channel(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredChannel>>;
    /// Oldest first, all of them (a tenant has at most [`MAX_CHANNELS`]).
    async fn list_channels(&self, tenant: &TenantId) -> StoreResult<Vec<StoredChannel>>;
    async fn delete_channel(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;
}

pub(crate) fn spec_text(spec: &ChannelSpec) -> StoreResult<String> {
    serde_json::to_string(spec)
        .map_err(|e| crate::StoreError::Internal(format!("channel spec: {e}")))
}

pub(crate) fn decode_channel(
    id: String,
    tenant: String,
    spec: &str,
    created_at: i64,
) -> StoreResult<StoredChannel> {
    Ok(StoredChannel {
        id,
        tenant: TenantId(tenant),
        spec: serde_json::from_str(spec)
            .map_err(|e| crate::StoreError::Internal(format!("stored channel spec: {e}")))?,
        created_at: from_micros(created_at)?,
    })
}
