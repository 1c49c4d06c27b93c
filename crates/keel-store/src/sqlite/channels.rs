//! Notification channels on SQLite (migration 9, table `channels`).

use async_trait::async_trait;
use keel_core::channel::ChannelSpec;
use rusqlite::params;

use super::{spec_records, SqliteStore};
use crate::{
    channels::{ChannelStore, StoredChannel},
    spec_record::{decode_record, spec_json},
    StoreResult, TenantId,
};

#[async_trait]
impl ChannelStore for SqliteStore {
    async fn create_channel(
        &self,
        tenant: &TenantId,
        spec: ChannelSpec,
    ) -> StoreResult<StoredChannel> {
        let tenant = tenant.0.clone();
        let now = self.clock.now().as_microsecond();
        let id = uuid::Uuid::now_v7().to_string();
        let text = spec_json(&spec)?;
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO channels (id, tenant_id, name, spec, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, tenant, spec.name, text, now])?;
                decode_record(id, tenant, &text, now)
            })
            .await
    }

    async fn channel(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredChannel>> {
        self.readers.read(|conn| {
            Ok(spec_records(
                conn,
                "SELECT id, tenant_id, spec, created_at FROM channels
                 WHERE tenant_id = ?1 AND id = ?2",
                [tenant.as_str(), id],
            )?
            .pop())
        })
    }

    async fn list_channels(&self, tenant: &TenantId) -> StoreResult<Vec<StoredChannel>> {
        self.readers.read(|conn| {
            spec_records(
                conn,
                "SELECT id, tenant_id, spec, created_at FROM channels
                 WHERE tenant_id = ?1 ORDER BY id",
                [tenant.as_str()],
            )
        })
    }

    async fn delete_channel(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.0.clone(), id.to_owned());
        self.writer
            .execute(move |conn| {
                Ok(conn
                    .prepare_cached("DELETE FROM channels WHERE tenant_id = ?1 AND id = ?2")?
                    .execute([&tenant, &id])?
                    > 0)
            })
            .await
    }
}
