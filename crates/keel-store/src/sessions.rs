//! Console sessions (SPEC §12): a signed-in browser holds a random token in a
//! cookie; the store keeps only the token's SHA-256, the key the session acts
//! as, its CSRF token and when it ends. Adapters: SQLite and PostgreSQL
//! (`*::sessions`), both checked by `tests/store_conformance.rs`.

use async_trait::async_trait;
use jiff::Timestamp;

use crate::{StoreResult, TenantId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub tenant_id: TenantId,
    /// The key the session acts as: its scopes decide what the console shows
    /// and allows, and revoking it ends the session.
    pub key_prefix: String,
    /// Sent back with every form that changes something.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The key was issued for this session alone (a sign-in with email and
    /// password) and is revoked when the session ends.
    pub owns_key: bool,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session under the hash of its token.
    async fn create_session(&self, token_hash: &str, session: ConsoleSession) -> StoreResult<()>;
    /// The session with this token hash, unless it is unknown or expired at `now`.
    async fn session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ConsoleSession>>;
    /// Ends a session (sign-out); `false` when there was none.
    async fn delete_session(&self, tenant: &TenantId, token_hash: &str) -> StoreResult<bool>;
    /// Deletes every session that expired before `now`; returns them (the keys
    /// they owned are to be revoked).
    async fn prune_sessions(&self, now: Timestamp) -> StoreResult<Vec<ConsoleSession>>;
}
