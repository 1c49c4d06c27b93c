//! Notification channels (SPEC §7). Each channel also has a subscription on the
//! tenant's `keel.notifications` topic (made by the API), through which its
//! notices are delivered; this port keeps the channel itself. Adapters: SQLite
//! and PostgreSQL (`*::channels`).

use async_trait::async_trait;
use keel_core::channel::ChannelSpec;

use crate::{SpecRecord, StoreResult, TenantId};

/// A tenant has at most this many channels.
pub const MAX_CHANNELS: usize = 100;

pub type StoredChannel = SpecRecord<ChannelSpec>;

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
