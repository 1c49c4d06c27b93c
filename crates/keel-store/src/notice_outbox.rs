//! Notices waiting to be published (SPEC §7, issue 10: "incident and alert
//! notifications go through the bus so none is lost on restart").
//!
//! The adapter writes a row in the same transaction that opens or resolves an
//! incident ([`crate::monitors::MonitorStore::record_checks`]) or an SLO alert
//! ([`crate::slos::SloStore::open_slo_alert`], `resolve_slo_alert`). A relay in
//! the server claims rows under a lease, builds each notice from the incident or
//! alert it names, publishes it with a dedup id and removes the row; a relay
//! killed between the publish and the removal publishes again after the lease,
//! and the bus drops the copy. Adapters: SQLite and PostgreSQL
//! (`*::notice_outbox`).

use std::time::Duration;

use async_trait::async_trait;

use crate::{StoreError, StoreResult, TenantId};

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeSubject {
    Incident,
    SloAlert,
}

/// What happened to the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeEvent {
    Opened,
    Resolved,
}

/// A notice to publish, claimed by a relay.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingNotice {
    pub id: i64,
    pub tenant: TenantId,
    pub subject: NoticeSubject,
    /// The incident's or the alert's id.
    pub subject_id: String,
    pub event: NoticeEvent,
}

#[async_trait]
pub trait NoticeOutbox: Send + Sync {
    /// Up to `limit` pending notices of any tenant, oldest first, leased to the
    /// caller for `lease` (another relay sees them again once it runs out).
    async fn claim_notices(&self, limit: u32, lease: Duration) -> StoreResult<Vec<PendingNotice>>;
    /// Removes notices that are on the bus.
    async fn finish_notices(&self, ids: Vec<i64>) -> StoreResult<()>;
}

impl NoticeSubject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incident => "incident",
            Self::SloAlert => "slo_alert",
        }
    }

    pub(crate) fn parse(text: &str) -> StoreResult<Self> {
        match text {
            "incident" => Ok(Self::Incident),
            "slo_alert" => Ok(Self::SloAlert),
            other => Err(StoreError::Internal(format!(
                "stored notice kind {other:?}"
            ))),
        }
    }
}

impl NoticeEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Resolved => "resolved",
        }
    }

    pub(crate) fn parse(text: &str) -> StoreResult<Self> {
        match text {
            "opened" => Ok(Self::Opened),
            "resolved" => Ok(Self::Resolved),
            other => Err(StoreError::Internal(format!(
                "stored notice event {other:?}"
            ))),
        }
    }
}

/// A claimed row from its columns `id, tenant_id, kind, subject_id, event`.
pub(crate) fn decode_pending(
    id: i64,
    tenant: String,
    kind: &str,
    subject_id: String,
    event: &str,
) -> StoreResult<PendingNotice> {
    Ok(PendingNotice {
        id,
        tenant: TenantId(tenant),
        subject: NoticeSubject::parse(kind)?,
        subject_id,
        event: NoticeEvent::parse(event)?,
    })
}
