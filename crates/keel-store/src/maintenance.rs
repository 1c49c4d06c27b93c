//! Maintenance windows (SPEC §7). The prober reads every tenant's windows
//! ([`MaintenanceStore::all_windows`]) and marks the checks they cover;
//! adapters: SQLite and PostgreSQL (`*::maintenance`).

use async_trait::async_trait;
use keel_core::uptime::maintenance::MaintenanceSpec;

use crate::{SpecRecord, StoreResult, TenantId};

/// A tenant has at most this many windows.
pub const MAX_WINDOWS: usize = 500;

pub type StoredWindow = SpecRecord<MaintenanceSpec>;

#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    async fn create_window(
        &self,
        tenant: &TenantId,
        spec: MaintenanceSpec,
    ) -> StoreResult<StoredWindow>;
    /// Oldest first, all of them (at most [`MAX_WINDOWS`]).
    async fn list_windows(&self, tenant: &TenantId) -> StoreResult<Vec<StoredWindow>>;
    /// Every tenant's windows (for the prober).
    async fn all_windows(&self) -> StoreResult<Vec<StoredWindow>>;
    async fn delete_window(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;
}
