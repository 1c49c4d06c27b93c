//! Which checks fall in a maintenance window: every tenant's windows, kept in
//! memory and reloaded every [`RELIST_EVERY`] (at once after a change through
//! this process), so marking a check costs no store read.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use jiff::{tz::TimeZone, Timestamp};
use keel_store::{maintenance::StoredWindow, Store, TenantId};
use tokio::sync::watch;

pub const RELIST_EVERY: Duration = Duration::from_secs(2);

pub struct MaintenanceWindows {
    store: Arc<dyn Store>,
    time_zone: TimeZone,
    windows: RwLock<Arc<Vec<StoredWindow>>>,
}

impl MaintenanceWindows {
    pub fn new(store: Arc<dyn Store>, time_zone: TimeZone) -> Self {
        Self {
            store,
            time_zone,
            windows: RwLock::new(Arc::new(Vec::new())),
        }
    }

    pub async fn relist(&self) {
        match self.store.all_windows().await {
            Ok(all) => *self.windows.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(all),
            Err(e) => tracing::debug!(error = %e, "maintenance windows: cannot list them"),
        }
    }

    /// Whether a check of the monitor at `at` is in one of its tenant's windows.
    pub fn covers(&self, tenant: &TenantId, monitor_id: &str, at: Timestamp) -> bool {
        let windows = self
            .windows
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        windows.iter().any(|w| {
            w.tenant == *tenant
                && w.spec.applies_to(monitor_id)
                && w.spec.covers(at, &self.time_zone)
        })
    }
}

pub async fn run(windows: Arc<MaintenanceWindows>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(RELIST_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => windows.relist().await,
            _ = stop.changed() => return,
        }
    }
}
