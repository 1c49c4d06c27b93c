//! Notification channels on SQLite (migration 9, table `channels`).

use async_trait::async_trait;
use keel_core::channel::ChannelSpec;
use rusqlite::{params, Connection};

use super::SqliteStore;
use crate::{
    channels::{decode_channel, spec_text, ChannelStore, StoredChannel},
    StoreResult, TenantId,
};

fn channel_rows(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> StoreResult<Vec<StoredChannel>> {
    let rows: Vec<(String, String, String, i64)> = conn
        .prepare_cached(sql)?
        .query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, tenant, spec, at)| decode_channel(id, tenant, &spec, at))
        .collect()
}

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
        let text = spec_text(&spec)?;
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO channels (id, tenant_id, name, spec, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, tenant, spec.name, text, now])?;
                decode_channel(id, tenant, &text, now)
            })
            .await
    }

    async fn channel(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<StoredChannel>> {
        self.readers.read(|conn| {
            Ok(channel_rows(
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
            channel_rows(
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
