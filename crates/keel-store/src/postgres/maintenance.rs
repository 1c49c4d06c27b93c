//! Maintenance windows on PostgreSQL (migration 5, table `maintenance_windows`,
//! behind row-level security).

use async_trait::async_trait;
use keel_core::uptime::maintenance::MaintenanceSpec;
use sqlx::{postgres::PgRow, Row};

use super::{PgStore, Rows};
use crate::{
    maintenance::{decode_window, spec_text, MaintenanceStore, StoredWindow},
    StoreResult, TenantId,
};

const COLUMNS: &str = "id, tenant_id, spec, created_at";

fn window_from(r: &PgRow) -> StoreResult<StoredWindow> {
    decode_window(r.get(0), r.get(1), r.get::<&str, _>(2), r.get(3))
}

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
                .bind(spec_text(&spec)?)
                .bind(self.now_micros()),
            )
            .await?
            .ok_or_else(|| crate::StoreError::Internal("insert returned nothing".into()))?;
        window_from(&row)
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
        .map(window_from)
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
        .map(window_from)
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
