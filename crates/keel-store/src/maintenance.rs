//! Maintenance windows (SPEC §7). The prober reads every tenant's windows
//! ([`MaintenanceStore::all_windows`]) and marks the checks they cover;
//! adapters: SQLite and PostgreSQL (`*::maintenance`).

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::uptime::maintenance::MaintenanceSpec;

use crate::{from_micros, StoreResult, TenantId};

/// A tenant has at most this many windows.
pub const MAX_WINDOWS: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredWindow {
    pub id: String,
    pub tenant: TenantId,
    pub spec: MaintenanceSpec,
    pub created_at: Timestamp,
}

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

pub(crate) fn spec_text(spec: &MaintenanceSpec) -> StoreResult<String> {
    serde_json::to_string(spec)
        .map_err(|e| crate::StoreError::Internal(format!("maintenance spec: {e}")))
}

pub(crate) fn decode_window(
    id: String,
    tenant: String,
    spec: &str,
    created_at: i64,
) -> StoreResult<StoredWindow> {
    Ok(StoredWindow {
        id,
        tenant: TenantId(tenant),
        spec: serde_json::from_str(spec)
            .map_err(|e| crate::StoreError::Internal(format!("stored maintenance spec: {e}")))?,
        created_at: from_micros(created_at)?,
    })
}
