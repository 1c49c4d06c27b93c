//! Plain records that cross the store boundary.

use jiff::Timestamp;
use keel_core::apikey::{Scopes, SecretHash};

/// A tenant's id: a UUID in text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub String);

impl TenantId {
    /// The tenant public `/hello` calls without a key are stored under; created by
    /// the first migration.
    pub fn default_tenant() -> Self {
        Self(DEFAULT_TENANT_ID.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub const DEFAULT_TENANT_ID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub tenant_id: TenantId,
    pub prefix: String,
    pub secret_hash: SecretHash,
    pub scopes: Scopes,
}

#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: String,
    pub tenant_id: TenantId,
    pub prefix: String,
    pub secret_hash: SecretHash,
    pub scopes: Scopes,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl StoredKey {
    /// The key as just stored: never used, not revoked.
    pub fn from_new(key: NewKey, id: String, now: Timestamp) -> Self {
        Self {
            id,
            tenant_id: key.tenant_id,
            prefix: key.prefix,
            secret_hash: key.secret_hash,
            scopes: key.scopes,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub tenant_id: TenantId,
    pub email: String,
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// One entry of the append-only audit trail (SPEC §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// UUIDv7: time-ordered, so it doubles as the pagination cursor.
    pub id: String,
    pub at: Timestamp,
    /// `None` for authentication failures that named no known tenant.
    pub tenant_id: Option<TenantId>,
    pub key_prefix: Option<String>,
    pub method: String,
    pub route: String,
    pub resource_id: Option<String>,
    pub status: u16,
    pub request_id: String,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: u32,
    /// Opaque to clients: whatever the previous page's `next_cursor` was.
    pub cursor: Option<String>,
}

impl PageRequest {
    /// For listings ordered by a row sequence, newest first: rows below this seq
    /// come next. A cursor this server never issued is invalid input.
    pub fn before_seq(&self) -> crate::StoreResult<i64> {
        match &self.cursor {
            None => Ok(i64::MAX),
            Some(c) => c
                .parse::<i64>()
                .map_err(|_| crate::StoreError::InvalidInput {
                    field: "cursor",
                    why: "not a cursor this server issued".into(),
                }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A newest-first page of rows fetched as `(seq, item)` with `seq < before`
    /// (see [`PageRequest::before_seq`]): the cursor is the last row's seq.
    pub fn from_seq_rows(rows: Vec<(i64, T)>, limit: u32) -> Self {
        let page = Page::from_overfetch(rows, limit, |(seq, _)| seq.to_string());
        Page {
            items: page.items.into_iter().map(|(_, item)| item).collect(),
            next_cursor: page.next_cursor,
        }
    }

    /// Builds a page from `limit + 1` fetched rows: the extra row only says that
    /// there is more, and the cursor is the last row kept.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// Stored times are microseconds since the Unix epoch.
pub(crate) fn from_micros(micros: i64) -> crate::StoreResult<Timestamp> {
    Timestamp::from_microsecond(micros)
        .map_err(|e| crate::StoreError::Internal(format!("stored time {micros} out of range: {e}")))
}
