//! Definitions a tenant keeps as a JSON spec beside an id and a creation time:
//! SLOs, notification channels and maintenance windows (and the spec column of
//! monitors). One record type, one encoder and one decoder serve every such
//! table on both adapters, so a spec is stored and read back the same way
//! wherever it lives.

use jiff::Timestamp;
use serde::{de::DeserializeOwned, Serialize};

use crate::{from_micros, StoreError, StoreResult, TenantId};

/// The columns every spec record's table starts with, in this order.
pub(crate) const RECORD_COLUMNS: &str = "id, tenant_id, spec, created_at";

/// One stored definition of kind `S`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecRecord<S> {
    pub id: String,
    pub tenant: TenantId,
    pub spec: S,
    pub created_at: Timestamp,
}

/// A spec the store keeps as JSON; `WHAT` names it in errors.
pub(crate) trait StoredSpec: Serialize + DeserializeOwned {
    const WHAT: &'static str;
}

impl StoredSpec for keel_core::slo::SloSpec {
    const WHAT: &'static str = "SLO spec";
}

impl StoredSpec for keel_core::channel::ChannelSpec {
    const WHAT: &'static str = "channel spec";
}

impl StoredSpec for keel_core::uptime::maintenance::MaintenanceSpec {
    const WHAT: &'static str = "maintenance spec";
}

impl StoredSpec for keel_core::uptime::monitor::MonitorSpec {
    const WHAT: &'static str = "monitor spec";
}

pub(crate) fn spec_json<S: StoredSpec>(spec: &S) -> StoreResult<String> {
    serde_json::to_string(spec).map_err(|e| StoreError::Internal(format!("{}: {e}", S::WHAT)))
}

/// A stored spec that no longer parses is the store's fault, not the caller's.
pub(crate) fn spec_from_json<S: StoredSpec>(text: &str) -> StoreResult<S> {
    serde_json::from_str(text).map_err(|e| StoreError::Internal(format!("stored {}: {e}", S::WHAT)))
}

/// A record from its [`RECORD_COLUMNS`].
pub(crate) fn decode_record<S: StoredSpec>(
    id: String,
    tenant: String,
    spec: &str,
    created_at: i64,
) -> StoreResult<SpecRecord<S>> {
    Ok(SpecRecord {
        id,
        tenant: TenantId(tenant),
        spec: spec_from_json(spec)?,
        created_at: from_micros(created_at)?,
    })
}
