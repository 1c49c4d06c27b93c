//! The SQLite adapter's implementation of each capability trait. Every statement
//! names its tenant; no query reads across tenants.

use async_trait::async_trait;
use jiff::{civil::Date, Timestamp};
use keel_core::{
    apikey::{Scopes, SecretHash},
    counter::{CounterName, CounterValue},
    greeter::Username,
};
use rusqlite::{params, OptionalExtension, Row};

use super::{from_micros, to_micros, SqliteStore};
use crate::{
    Account, AccountStore, AuditEvent, AuditStore, CounterStore, GreeterStore, KeyStore, NewKey,
    Page, PageRequest, Store, StoreError, StoreResult, StoredKey, Tenant, TenantId, TenantStore,
};

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn tenant_from_parts((id, name, created): (String, String, i64)) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: TenantId(id),
        name,
        created_at: from_micros(created)?,
    })
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let tenant = Tenant {
            id: TenantId(uuid::Uuid::new_v4().to_string()),
            name: name.to_owned(),
            created_at: self.clock.now(),
        };
        let row = tenant.clone();
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![
                    row.id.0,
                    row.name,
                    to_micros(row.created_at)
                ])?;
                Ok(())
            })
            .await?;
        Ok(tenant)
    }

    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let parts = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT id, name, created_at FROM tenants WHERE id = ?1")?
                .query_row([id.as_str()], tenant_from_row)
                .optional()?)
        })?;
        parts.map(tenant_from_parts).transpose()
    }

    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>> {
        let after = page.cursor.clone().unwrap_or_default();
        let rows = self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, created_at FROM tenants WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after, page.limit + 1], tenant_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let tenants = rows
            .into_iter()
            .map(tenant_from_parts)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(tenants, page.limit, |t| {
            t.id.0.clone()
        }))
    }
}

const KEY_COLUMNS: &str =
    "id, tenant_id, prefix, secret_hash, scopes, created_at, last_used_at, revoked_at";

type KeyRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

fn key_row(row: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

fn key_from_row(r: KeyRow) -> StoreResult<StoredKey> {
    let (id, tenant, prefix, hash, scopes, created, used, revoked) = r;
    Ok(StoredKey {
        id,
        tenant_id: TenantId(tenant),
        prefix,
        secret_hash: SecretHash::from_hex(&hash)
            .ok_or_else(|| StoreError::Internal("stored key hash is not hex".into()))?,
        scopes: Scopes::parse_csv(&scopes).map_err(StoreError::Internal)?,
        created_at: from_micros(created)?,
        last_used_at: used.map(from_micros).transpose()?,
        revoked_at: revoked.map(from_micros).transpose()?,
    })
}

fn insert_key(
    conn: &rusqlite::Connection,
    key: &NewKey,
    id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, scopes, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        key.tenant_id.0,
        key.prefix,
        key.secret_hash.to_hex(),
        key.scopes.to_csv(),
        to_micros(now)
    ])?;
    Ok(())
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: NewKey) -> StoreResult<StoredKey> {
        let (id, now) = (new_id(), self.clock.now());
        let row = key.clone();
        let row_id = id.clone();
        let limit = self.quotas.keys_per_tenant;
        self.writer
            .execute(move |conn| {
                let live: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM api_keys WHERE tenant_id = ?1 AND revoked_at IS NULL",
                    )?
                    .query_row([row.tenant_id.as_str()], |r| r.get(0))?;
                if live as u64 >= limit {
                    return Err(StoreError::QuotaExceeded {
                        quota: "keys_per_tenant",
                        limit,
                    });
                }
                insert_key(conn, &row, &row_id, now)
            })
            .await?;
        Ok(StoredKey::from_new(key, id, now))
    }

    async fn key_by_prefix(&self, prefix: &str) -> StoreResult<Option<StoredKey>> {
        let row = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?1"
                ))?
                .query_row([prefix], key_row)
                .optional()?)
        })?;
        row.map(key_from_row).transpose()
    }

    async fn list_keys(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<StoredKey>> {
        let after = page.cursor.clone().unwrap_or_default();
        let rows = self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![tenant.as_str(), after, page.limit + 1], key_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let keys = rows
            .into_iter()
            .map(key_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(keys, page.limit, |k| k.id.clone()))
    }

    async fn revoke_key(
        &self,
        tenant: &TenantId,
        prefix: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let (tenant, prefix) = (tenant.0.clone(), prefix.to_owned());
        self.writer
            .execute(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE api_keys SET revoked_at = ?3
                         WHERE tenant_id = ?1 AND prefix = ?2 AND revoked_at IS NULL",
                    )?
                    .execute(params![tenant, prefix, to_micros(at)])?;
                Ok(changed == 1)
            })
            .await
    }

    async fn record_key_use(&self, uses: Vec<(String, Timestamp)>) -> StoreResult<()> {
        self.writer
            .execute(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE prefix = ?1",
                )?;
                for (prefix, at) in &uses {
                    stmt.execute(params![prefix, to_micros(*at)])?;
                }
                Ok(())
            })
            .await
    }

    async fn has_operator_key(&self) -> StoreResult<bool> {
        self.readers.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT scopes FROM api_keys WHERE revoked_at IS NULL")?;
            let scopes = stmt
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(scopes
                .iter()
                .any(|csv| csv.split(',').any(|s| s == "operator")))
        })
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn register_account(
        &self,
        email: &str,
        password_hash: &str,
        prefix: &str,
        secret_hash: SecretHash,
    ) -> StoreResult<(Account, StoredKey)> {
        let now = self.clock.now();
        let account = Account {
            id: new_id(),
            tenant_id: TenantId(uuid::Uuid::new_v4().to_string()),
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            created_at: now,
        };
        let key = NewKey {
            tenant_id: account.tenant_id.clone(),
            prefix: prefix.to_owned(),
            secret_hash,
            scopes: Scopes::account_owner(),
        };
        let key_id = new_id();
        let (row, key_row, row_key_id) = (account.clone(), key.clone(), key_id.clone());
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![row.tenant_id.0, row.email, to_micros(now)])?;
                conn.prepare_cached(
                    "INSERT INTO accounts (id, tenant_id, email, password_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    row.id,
                    row.tenant_id.0,
                    row.email,
                    row.password_hash,
                    to_micros(now)
                ])
                // The unique index decides, so two registrations racing for one
                // email cannot both win (whichever process or replica they hit).
                .map_err(|e| match crate::StoreError::from(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict("email already registered".into())
                    }
                    other => other,
                })?;
                insert_key(conn, &key_row, &row_key_id, now)
            })
            .await?;
        Ok((account, StoredKey::from_new(key, key_id, now)))
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        let row = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, tenant_id, email, password_hash, created_at FROM accounts WHERE email = ?1",
                )?
                .query_row([email], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, i64>(4)?))
                })
                .optional()?)
        })?;
        row.map(|(id, tenant, email, password_hash, created)| {
            Ok(Account {
                id,
                tenant_id: TenantId(tenant),
                email,
                password_hash,
                created_at: from_micros(created)?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl GreeterStore for SqliteStore {
    async fn save_birthday(
        &self,
        tenant: &TenantId,
        user: &Username,
        born: Date,
    ) -> StoreResult<()> {
        let (tenant, user) = (tenant.0.clone(), user.as_str().to_owned());
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO greeter_birthdays (tenant_id, username, date_of_birth) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant_id, username) DO UPDATE SET date_of_birth = excluded.date_of_birth",
                )?
                .execute(params![tenant, user, born.to_string()])?;
                Ok(())
            })
            .await
    }

    async fn birthday(&self, tenant: &TenantId, user: &Username) -> StoreResult<Option<Date>> {
        let raw: Option<String> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT date_of_birth FROM greeter_birthdays WHERE tenant_id = ?1 AND username = ?2",
                )?
                .query_row([tenant.as_str(), user.as_str()], |r| r.get(0))
                .optional()?)
        })?;
        raw.map(|s| {
            s.parse::<Date>()
                .map_err(|e| StoreError::Internal(format!("stored date {s:?}: {e}")))
        })
        .transpose()
    }
}

#[async_trait]
impl CounterStore for SqliteStore {
    async fn next(&self, tenant: &TenantId, counter: &CounterName) -> StoreResult<i64> {
        let (tenant, name) = (tenant.0.clone(), counter.as_str().to_owned());
        self.writer
            .execute(move |conn| {
                // The WHERE keeps a counter at 2^63−1 from overflowing (SQLite would
                // silently turn the sum into a float); no row back means exhausted.
                conn.prepare_cached(
                    "INSERT INTO counters (tenant_id, name, value) VALUES (?1, ?2, 1)
                     ON CONFLICT (tenant_id, name) DO UPDATE SET value = value + 1
                     WHERE value < 9223372036854775807
                     RETURNING value",
                )?
                .query_row(params![tenant, name], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::CounterExhausted)
            })
            .await
    }

    async fn current(&self, tenant: &TenantId, counter: &CounterName) -> StoreResult<i64> {
        self.readers.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM counters WHERE tenant_id = ?1 AND name = ?2")?
                .query_row([tenant.as_str(), counter.as_str()], |r| r.get(0))
                .optional()?
                .unwrap_or(0))
        })
    }

    async fn set_current(
        &self,
        tenant: &TenantId,
        counter: &CounterName,
        value: CounterValue,
    ) -> StoreResult<i64> {
        let (tenant, name) = (tenant.0.clone(), counter.as_str().to_owned());
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO counters (tenant_id, name, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant_id, name) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![tenant, name, value.get()])?;
                Ok(value.get())
            })
            .await
    }
}

type AuditRow = (
    String,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    i64,
    String,
    Option<String>,
);

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        self.writer
            .execute(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "INSERT INTO audit_events
                     (id, at, tenant_id, key_prefix, method, route, resource_id, status, request_id, source)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for e in &events {
                    stmt.execute(params![
                        e.id,
                        to_micros(e.at),
                        e.tenant_id.as_ref().map(|t| t.as_str()),
                        e.key_prefix,
                        e.method,
                        e.route,
                        e.resource_id,
                        e.status,
                        e.request_id,
                        e.source
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>> {
        // The cursor is the last row's sequence number; no cursor = newest first.
        let before = page.before_seq()?;
        let rows: Vec<(i64, AuditRow)> = self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, id, at, tenant_id, key_prefix, method, route, resource_id, status, request_id, source
                 FROM audit_events WHERE tenant_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![tenant.as_str(), before, page.limit + 1], |r| {
                    Ok((
                        r.get(0)?,
                        (
                            r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?,
                            r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?,
                        ),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let events = rows
            .into_iter()
            .map(
                |(
                    seq,
                    (
                        id,
                        at,
                        tenant,
                        key_prefix,
                        method,
                        route,
                        resource_id,
                        status,
                        request_id,
                        source,
                    ),
                )| {
                    Ok((
                        seq,
                        AuditEvent {
                            id,
                            at: from_micros(at)?,
                            tenant_id: tenant.map(TenantId),
                            key_prefix,
                            method,
                            route,
                            resource_id,
                            status: u16::try_from(status).unwrap_or(0),
                            request_id,
                            source,
                        },
                    ))
                },
            )
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_seq_rows(events, page.limit))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.readers
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))?;
        Ok(())
    }

    async fn server_secret(&self, name: &str) -> StoreResult<[u8; 32]> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| StoreError::Internal(format!("no randomness: {e}")))?;
        let name = name.to_owned();
        let now = to_micros(self.clock.now());
        let stored: Vec<u8> = self
            .writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO server_secrets (name, value, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![name, fresh.to_vec(), now])?;
                Ok(conn
                    .prepare_cached("SELECT value FROM server_secrets WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))?)
            })
            .await?;
        stored
            .try_into()
            .map_err(|_| StoreError::Internal("a stored server secret is not 32 bytes".into()))
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    fn write_stats(&self) -> std::sync::Arc<crate::WriteStats> {
        self.commit_stats()
    }
}
