//! Maintenance windows on SQLite (migration 9, table `maintenance_windows`).

use async_trait::async_trait;
use keel_core::uptime::maintenance::MaintenanceSpec;
use rusqlite::params;

use super::{spec_records, SqliteStore};
use crate::{
    maintenance::{MaintenanceStore, StoredWindow},
    spec_record::{decode_record, spec_json},
    StoreResult, TenantId,
};

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn create_window(
        &self,
        tenant: &TenantId,
        spec: MaintenanceSpec,
    ) -> StoreResult<StoredWindow> {
        let tenant = tenant.0.clone();
        let now = self.clock.now().as_microsecond();
        let id = uuid::Uuid::now_v7().to_string();
        let text = spec_json(&spec)?;
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO maintenance_windows (id, tenant_id, spec, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![id, tenant, text, now])?;
                decode_record(id, tenant, &text, now)
            })
            .await
    }

    async fn list_windows(&self, tenant: &TenantId) -> StoreResult<Vec<StoredWindow>> {
        self.readers.read(|conn| {
            spec_records(
                conn,
                "SELECT id, tenant_id, spec, created_at FROM maintenance_windows
                 WHERE tenant_id = ?1 ORDER BY id",
                [tenant.as_str()],
            )
        })
    }

    async fn all_windows(&self) -> StoreResult<Vec<StoredWindow>> {
        self.readers.read(|conn| {
            spec_records(
                conn,
                "SELECT id, tenant_id, spec, created_at FROM maintenance_windows ORDER BY id",
                [],
            )
        })
    }

    async fn delete_window(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.0.clone(), id.to_owned());
        self.writer
            .execute(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "DELETE FROM maintenance_windows WHERE tenant_id = ?1 AND id = ?2",
                    )?
                    .execute([&tenant, &id])?
                    > 0)
            })
            .await
    }
}
