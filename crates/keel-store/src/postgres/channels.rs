//! Notification channels on PostgreSQL (migration 5, table `channels`, behind
//! row-level security).

use async_trait::async_trait;
use keel_core::channel::ChannelSpec;

use super::{spec_record_from, PgStore, Rows};
use crate::{
    channels::{ChannelStore, StoredChannel},
    spec_record::{spec_json, RECORD_COLUMNS as COLUMNS},
    StoreResult, TenantId,
};

#[async_trait]
impl ChannelStore for PgStore {
    async fn create_channel(
        &self,
        tenant: &TenantId,
        spec: ChannelSpec,
    ) -> StoreResult<StoredChannel> {
        let row = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(&format!(
                    "INSERT INTO channels (id, tenant_id, name, spec, created_at)
                     VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
                ))
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(tenant.as_str())
                .bind(&spec.name)
                .bind(spec_json(&spec)?)
                .bind(self.now_micros()),
            )
            .await?
            .ok_or_else(|| crate::StoreError::Internal("insert returned nothing".into()))?;
        spec_record_from(&row)
    }

    async fn channel(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredChannel>> {
        self.fetch_optional_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM channels WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.as_str())
            .bind(id),
        )
        .await?
        .as_ref()
        .map(spec_record_from)
        .transpose()
    }

    async fn list_channels(&self, tenant: &TenantId) -> StoreResult<Vec<StoredChannel>> {
        self.fetch_all_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM channels WHERE tenant_id = $1 ORDER BY id"
            ))
            .bind(tenant.as_str()),
        )
        .await?
        .iter()
        .map(spec_record_from)
        .collect()
    }

    async fn delete_channel(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        Ok(self
            .execute_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query("DELETE FROM channels WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id),
            )
            .await?
            > 0)
    }
}
