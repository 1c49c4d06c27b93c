//! Console sessions on SQLite (migration 12, table `console_sessions`).

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::{
    sessions::{ConsoleSession, SessionStore},
    types::from_micros,
    StoreResult, TenantId,
};

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, token_hash: &str, session: ConsoleSession) -> StoreResult<()> {
        let token_hash = token_hash.to_owned();
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO console_sessions
                     (token_hash, tenant_id, key_prefix, csrf_token, created_at, expires_at,
                      owns_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    token_hash,
                    session.tenant_id.as_str(),
                    session.key_prefix,
                    session.csrf_token,
                    session.created_at.as_microsecond(),
                    session.expires_at.as_microsecond(),
                    session.owns_key
                ])?;
                Ok(())
            })
            .await
    }

    async fn session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ConsoleSession>> {
        let found = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS}
                     FROM console_sessions WHERE token_hash = ?1 AND expires_at > ?2"
                ))?
                .query_row(params![token_hash, now.as_microsecond()], session_row)
                .optional()?)
        })?;
        found.map(SessionRow::into_session).transpose()
    }

    async fn delete_session(&self, tenant: &TenantId, token_hash: &str) -> StoreResult<bool> {
        let (tenant, token_hash) = (tenant.0.clone(), token_hash.to_owned());
        self.writer
            .execute(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "DELETE FROM console_sessions WHERE tenant_id = ?1 AND token_hash = ?2",
                    )?
                    .execute([&tenant, &token_hash])?
                    > 0)
            })
            .await
    }

    async fn prune_sessions(&self, now: Timestamp) -> StoreResult<Vec<ConsoleSession>> {
        let now = now.as_microsecond();
        let rows: Vec<SessionRow> = self
            .writer
            .execute(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "DELETE FROM console_sessions WHERE expires_at <= ?1
                         RETURNING {SESSION_COLUMNS}"
                    ))?
                    .query_map([now], session_row)?
                    .collect::<Result<_, _>>()?)
            })
            .await?;
        rows.into_iter().map(SessionRow::into_session).collect()
    }
}

const SESSION_COLUMNS: &str = "tenant_id, key_prefix, csrf_token, created_at, expires_at, owns_key";

/// A row of [`SESSION_COLUMNS`].
struct SessionRow(String, String, String, i64, i64, bool);

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

impl SessionRow {
    fn into_session(self) -> StoreResult<ConsoleSession> {
        let SessionRow(tenant, key_prefix, csrf_token, created, expires, owns_key) = self;
        Ok(ConsoleSession {
            tenant_id: TenantId(tenant),
            key_prefix,
            csrf_token,
            created_at: from_micros(created)?,
            expires_at: from_micros(expires)?,
            owns_key,
        })
    }
}
