//! The audit trail's write side (SPEC §1). Events are buffered and written in
//! batches a moment after the response leaves, so auditing never adds a commit to
//! a request's latency. The price: a kill -9 can lose the last fraction of a second
//! of audit events (never the writes they describe); SIGTERM flushes them all.

use std::{sync::Arc, time::Duration};

use keel_store::{AuditEvent, Store, TenantId};
use parking_lot::Mutex;
use tokio::sync::Notify;

const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Past this many buffered events the flusher is woken early.
const EAGER_FLUSH_AT: usize = 1000;

pub struct AuditSink {
    store: Arc<dyn Store>,
    buffer: Arc<Mutex<Vec<AuditEvent>>>,
    wake: Arc<Notify>,
}

impl AuditSink {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let sink = Self {
            store,
            buffer: Arc::new(Mutex::new(Vec::new())),
            wake: Arc::new(Notify::new()),
        };
        let (store, buffer, wake) = (
            sink.store.clone(),
            Arc::downgrade(&sink.buffer),
            sink.wake.clone(),
        );
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(FLUSH_INTERVAL, wake.notified()).await;
                let Some(buffer) = buffer.upgrade() else {
                    return;
                };
                write_out(&*store, &buffer).await;
            }
        });
        sink
    }

    pub fn record(&self, event: AuditEvent) {
        let len = {
            let mut buffer = self.buffer.lock();
            buffer.push(event);
            buffer.len()
        };
        if len >= EAGER_FLUSH_AT {
            self.wake.notify_one();
        }
    }

    /// Writes everything buffered now.
    pub async fn flush(&self) {
        write_out(&*self.store, &self.buffer).await;
    }
}

async fn write_out(store: &dyn Store, buffer: &Mutex<Vec<AuditEvent>>) {
    let events = std::mem::take(&mut *buffer.lock());
    if events.is_empty() {
        return;
    }
    let count = events.len();
    if let Err(e) = store.append_audit(events.clone()).await {
        // Put them back in front so a store outage delays the trail, not loses it.
        tracing::warn!(error = %e, count, "could not write audit events; will retry");
        let mut buffer = buffer.lock();
        let newer = std::mem::take(&mut *buffer);
        *buffer = events;
        buffer.extend(newer);
    }
}

/// What a handler tells the audit trail about the request it served, beyond what
/// the edge knows: the resource it touched and, for public routes that create or
/// name a tenant, which tenant that was.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub tenant_id: Option<TenantId>,
    pub resource_id: Option<String>,
}

impl AuditNote {
    pub fn resource(id: impl Into<String>) -> Self {
        Self {
            tenant_id: None,
            resource_id: Some(id.into()),
        }
    }

    pub fn tenant_resource(tenant: TenantId, id: impl Into<String>) -> Self {
        Self {
            tenant_id: Some(tenant),
            resource_id: Some(id.into()),
        }
    }
}
