//! Maintenance windows on PostgreSQL (migration 5, table `maintenance_windows`,
//! behind row-level security).

use async_trait::async_trait;
use keel_core::uptime::maintenance::MaintenanceSpec;

use super::{spec_record_from, PgStore, Rows};
use crate::{
    maintenance::{MaintenanceStore, StoredWindow},
    spec_record::{spec_json, RECORD_COLUMNS as COLUMNS},
    StoreResult, TenantId,
};

#[async_trait]
impl MaintenanceStore for PgStore {
    async fn create_window(
        &self,
        tenant: &TenantId,
        spec: MaintenanceSpec,
    ) -> StoreResult<StoredWindow> {
        let row = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(&format!(
                    "INSERT INTO maintenance_windows (id, tenant_id, spec, created_at)
                     VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
                ))
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(tenant.as_str())
                .bind(spec_json(&spec)?)
                .bind(self.now_micros()),
            )
            .await?
            .ok_or_else(|| crate::StoreError::Internal("insert returned nothing".into()))?;
        spec_record_from(&row)
    }

    async fn list_windows(&self, tenant: &TenantId) -> StoreResult<Vec<StoredWindow>> {
        self.fetch_all_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM maintenance_windows WHERE tenant_id = $1 ORDER BY id"
            ))
            .bind(tenant.as_str()),
        )
        .await?
        .iter()
        .map(spec_record_from)
        .collect()
    }

    async fn all_windows(&self) -> StoreResult<Vec<StoredWindow>> {
        self.fetch_all_alone(
            Rows::OfAllTenants("the prober marks checks in maintenance windows"),
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM maintenance_windows ORDER BY id"
            )),
        )
        .await?
        .iter()
        .map(spec_record_from)
        .collect()
    }

    async fn delete_window(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        Ok(self
            .execute_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query("DELETE FROM maintenance_windows WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id),
            )
            .await?
            > 0)
    }
}
