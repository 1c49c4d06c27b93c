//! Console sessions on PostgreSQL (migration 7, table `console_sessions`, behind
//! row-level security). A session is found by its token before its tenant is
//! known, as a key is by its prefix.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::{PgStore, Rows};
use crate::{
    sessions::{ConsoleSession, SessionStore},
    types::from_micros,
    StoreResult, TenantId,
};

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, token_hash: &str, session: ConsoleSession) -> StoreResult<()> {
        self.execute_alone(
            Rows::Of(session.tenant_id.as_str()),
            sqlx::query(
                "INSERT INTO console_sessions
                 (token_hash, tenant_id, key_prefix, csrf_token, created_at, expires_at, owns_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(token_hash)
            .bind(session.tenant_id.as_str())
            .bind(&session.key_prefix)
            .bind(&session.csrf_token)
            .bind(session.created_at.as_microsecond())
            .bind(session.expires_at.as_microsecond())
            .bind(session.owns_key),
        )
        .await
        .map(drop)
    }

    async fn session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ConsoleSession>> {
        let row = self
            .fetch_optional_alone(
                Rows::OfAllTenants("authenticate a console session"),
                sqlx::query(&format!(
                    "SELECT {SESSION_COLUMNS}
                     FROM console_sessions WHERE token_hash = $1 AND expires_at > $2"
                ))
                .bind(token_hash)
                .bind(now.as_microsecond()),
            )
            .await?;
        row.as_ref().map(session_of).transpose()
    }

    async fn delete_session(&self, tenant: &TenantId, token_hash: &str) -> StoreResult<bool> {
        Ok(self
            .execute_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "DELETE FROM console_sessions WHERE tenant_id = $1 AND token_hash = $2",
                )
                .bind(tenant.as_str())
                .bind(token_hash),
            )
            .await?
            > 0)
    }

    async fn prune_sessions(&self, now: Timestamp) -> StoreResult<Vec<ConsoleSession>> {
        let rows = self
            .fetch_all_alone(
                Rows::OfAllTenants("prune expired console sessions"),
                sqlx::query(&format!(
                    "DELETE FROM console_sessions WHERE expires_at <= $1
                     RETURNING {SESSION_COLUMNS}"
                ))
                .bind(now.as_microsecond()),
            )
            .await?;
        rows.iter().map(session_of).collect()
    }
}

const SESSION_COLUMNS: &str = "tenant_id, key_prefix, csrf_token, created_at, expires_at, owns_key";

fn session_of(r: &sqlx::postgres::PgRow) -> StoreResult<ConsoleSession> {
    Ok(ConsoleSession {
        tenant_id: TenantId(r.get(0)),
        key_prefix: r.get(1),
        csrf_token: r.get(2),
        created_at: from_micros(r.get(3))?,
        expires_at: from_micros(r.get(4))?,
        owns_key: r.get(5),
    })
}
