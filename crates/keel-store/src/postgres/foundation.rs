//! Tenants, keys, accounts, the greeter, counters, audit and server secrets on
//! PostgreSQL. Each tenant's work runs in a transaction scoped to it (row-level
//! security); work that cannot name a tenant uses the explicit cross-tenant path.

use async_trait::async_trait;
use jiff::{civil::Date, Timestamp};
use keel_core::{
    apikey::{Scopes, SecretHash},
    counter::{CounterName, CounterValue},
    greeter::Username,
};
use sqlx::{postgres::PgRow, Row};

use super::{errors::map, PgStore, Rows};
use crate::{
    from_micros, Account, AccountStore, AuditEvent, AuditStore, CounterStore, GreeterStore,
    KeyStore, NewKey, Page, PageRequest, Store, StoreError, StoreResult, StoredKey, Tenant,
    TenantId, TenantStore,
};

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn tenant_from(row: &PgRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: TenantId(row.get(0)),
        name: row.get(1),
        created_at: from_micros(row.get(2))?,
    })
}

#[async_trait]
impl TenantStore for PgStore {
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let tenant = Tenant {
            id: TenantId(uuid::Uuid::new_v4().to_string()),
            name: name.to_owned(),
            created_at: self.clock.now(),
        };
        self.execute_alone(
            Rows::Of(tenant.id.as_str()),
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(tenant.id.as_str())
                .bind(&tenant.name)
                .bind(tenant.created_at.as_microsecond()),
        )
        .await?;
        Ok(tenant)
    }

    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row = self
            .fetch_optional_alone(
                Rows::Of(id.as_str()),
                sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
                    .bind(id.as_str()),
            )
            .await?;
        row.as_ref().map(tenant_from).transpose()
    }

    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>> {
        let after = page.cursor.clone().unwrap_or_default();
        let rows = self
            .fetch_all_alone(
                Rows::OfAllTenants("operator: list tenants"),
                sqlx::query(
                    "SELECT id, name, created_at FROM tenants WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(page.limit) + 1),
            )
            .await?;
        let tenants = rows
            .iter()
            .map(tenant_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(tenants, page.limit, |t| {
            t.id.0.clone()
        }))
    }
}

const KEY_COLUMNS: &str =
    "id, tenant_id, prefix, secret_hash, scopes, created_at, last_used_at, revoked_at";

fn key_from(row: &PgRow) -> StoreResult<StoredKey> {
    let hash: String = row.get(3);
    let scopes: String = row.get(4);
    Ok(StoredKey {
        id: row.get(0),
        tenant_id: TenantId(row.get(1)),
        prefix: row.get(2),
        secret_hash: SecretHash::from_hex(&hash)
            .ok_or_else(|| StoreError::Internal("stored key hash is not hex".into()))?,
        scopes: Scopes::parse_csv(&scopes).map_err(StoreError::Internal)?,
        created_at: from_micros(row.get(5))?,
        last_used_at: row.get::<Option<i64>, _>(6).map(from_micros).transpose()?,
        revoked_at: row.get::<Option<i64>, _>(7).map(from_micros).transpose()?,
    })
}

async fn insert_key(
    tx: &mut sqlx::PgConnection,
    key: &NewKey,
    id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, scopes, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(key.tenant_id.as_str())
    .bind(&key.prefix)
    .bind(key.secret_hash.to_hex())
    .bind(key.scopes.to_csv())
    .bind(now.as_microsecond())
    .execute(tx)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl KeyStore for PgStore {
    async fn create_key(&self, key: NewKey) -> StoreResult<StoredKey> {
        let (id, now) = (new_id(), self.clock.now());
        let limit = self.quotas.keys_per_tenant;
        let mut tx = self.tenant_tx(key.tenant_id.as_str()).await?;
        Self::lock_tenant_quota(&mut tx, key.tenant_id.as_str()).await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL",
        )
        .bind(key.tenant_id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
        if live as u64 >= limit {
            return Err(StoreError::QuotaExceeded {
                quota: "keys_per_tenant",
                limit,
            });
        }
        insert_key(&mut tx, &key, &id, now).await?;
        tx.commit().await.map_err(map)?;
        Ok(StoredKey::from_new(key, id, now))
    }

    async fn key_by_prefix(&self, prefix: &str) -> StoreResult<Option<StoredKey>> {
        // Authentication: the key names its tenant, so it is looked up before any.
        let row = self
            .fetch_optional_alone(
                Rows::OfAllTenants("authenticate a key"),
                sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1"
                ))
                .bind(prefix),
            )
            .await?;
        row.as_ref().map(key_from).transpose()
    }

    async fn list_keys(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<StoredKey>> {
        let after = page.cursor.clone().unwrap_or_default();
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let statement = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(after)
            .bind(i64::from(page.limit) + 1);
        let rows = self
            .fetch_all_alone(Rows::Of(tenant.as_str()), statement)
            .await?;
        let keys = rows.iter().map(key_from).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(keys, page.limit, |k| k.id.clone()))
    }

    async fn revoke_key(
        &self,
        tenant: &TenantId,
        prefix: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let changed = self
            .execute_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "UPDATE api_keys SET revoked_at = $3
                     WHERE tenant_id = $1 AND prefix = $2 AND revoked_at IS NULL",
                )
                .bind(tenant.as_str())
                .bind(prefix)
                .bind(at.as_microsecond()),
            )
            .await?;
        Ok(changed == 1)
    }

    async fn record_key_use(&self, uses: Vec<(String, Timestamp)>) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let (prefixes, times): (Vec<String>, Vec<i64>) = uses
            .into_iter()
            .map(|(p, at)| (p, at.as_microsecond()))
            .unzip();
        let mut tx = self
            .all_tenants("record key use (batched across tenants)")
            .await?;
        sqlx::query(
            "UPDATE api_keys k SET last_used_at = greatest(coalesce(k.last_used_at, 0), u.at)
             FROM unnest($1::text[], $2::bigint[]) AS u(prefix, at) WHERE k.prefix = u.prefix",
        )
        .bind(prefixes)
        .bind(times)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)
    }

    async fn has_operator_key(&self) -> StoreResult<bool> {
        let mut tx = self
            .all_tenants("bootstrap: is there an operator key")
            .await?;
        let scopes: Vec<String> =
            sqlx::query_scalar("SELECT scopes FROM api_keys WHERE revoked_at IS NULL")
                .fetch_all(&mut *tx)
                .await
                .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(scopes
            .iter()
            .any(|csv| csv.split(',').any(|s| s == "operator")))
    }
}

#[async_trait]
impl AccountStore for PgStore {
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
        let mut tx = self.tenant_tx(account.tenant_id.as_str()).await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(account.tenant_id.as_str())
            .bind(&account.email)
            .bind(now.as_microsecond())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        // The unique index on email decides between registrations racing on any
        // replicas.
        sqlx::query(
            "INSERT INTO accounts (id, tenant_id, email, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&account.id)
        .bind(account.tenant_id.as_str())
        .bind(&account.email)
        .bind(&account.password_hash)
        .bind(now.as_microsecond())
        .execute(&mut *tx)
        .await
        .map_err(|e| match map(e) {
            StoreError::Conflict(_) => StoreError::Conflict("email already registered".into()),
            other => other,
        })?;
        insert_key(&mut tx, &key, &key_id, now).await?;
        tx.commit().await.map_err(map)?;
        Ok((account, StoredKey::from_new(key, key_id, now)))
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        // Logging in names an email, not a tenant.
        let statement = sqlx::query(
            "SELECT id, tenant_id, email, password_hash, created_at FROM accounts WHERE email = $1",
        )
        .bind(email);
        let row = self
            .fetch_optional_alone(Rows::OfAllTenants("log in by email"), statement)
            .await?;
        row.map(|r| {
            Ok(Account {
                id: r.get(0),
                tenant_id: TenantId(r.get(1)),
                email: r.get(2),
                password_hash: r.get(3),
                created_at: from_micros(r.get(4))?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl GreeterStore for PgStore {
    async fn save_birthday(
        &self,
        tenant: &TenantId,
        user: &Username,
        born: Date,
    ) -> StoreResult<()> {
        let statement = sqlx::query(
            "INSERT INTO greeter_birthdays (tenant_id, username, date_of_birth) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, username) DO UPDATE SET date_of_birth = excluded.date_of_birth",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(born.to_string());
        self.execute_alone(Rows::Of(tenant.as_str()), statement)
            .await
            .map(drop)
    }

    async fn birthday(&self, tenant: &TenantId, user: &Username) -> StoreResult<Option<Date>> {
        let raw: Option<String> = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query(
                    "SELECT date_of_birth FROM greeter_birthdays WHERE tenant_id = $1 AND username = $2",
                )
                .bind(tenant.as_str())
                .bind(user.as_str()),
            )
            .await?
            .map(|row| row.get(0));
        raw.map(|s| {
            s.parse::<Date>()
                .map_err(|e| StoreError::Internal(format!("stored date {s:?}: {e}")))
        })
        .transpose()
    }
}

#[async_trait]
impl CounterStore for PgStore {
    async fn next(&self, tenant: &TenantId, counter: &CounterName) -> StoreResult<i64> {
        // Concurrent increments are combined into one write (see `counters.rs`).
        self.next_combined(tenant, counter.as_str()).await
    }

    async fn current(&self, tenant: &TenantId, counter: &CounterName) -> StoreResult<i64> {
        let value: Option<i64> = self
            .fetch_optional_alone(
                Rows::Of(tenant.as_str()),
                sqlx::query("SELECT value FROM counters WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant.as_str())
                    .bind(counter.as_str()),
            )
            .await?
            .map(|row| row.get(0));
        Ok(value.unwrap_or(0))
    }

    async fn set_current(
        &self,
        tenant: &TenantId,
        counter: &CounterName,
        value: CounterValue,
    ) -> StoreResult<i64> {
        self.execute_alone(
            Rows::Of(tenant.as_str()),
            sqlx::query(
                "INSERT INTO counters (tenant_id, name, value) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, name) DO UPDATE SET value = excluded.value",
            )
            .bind(tenant.as_str())
            .bind(counter.as_str())
            .bind(value.get()),
        )
        .await?;
        Ok(value.get())
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut columns: (
            Vec<String>,
            Vec<i64>,
            Vec<Option<String>>,
            Vec<Option<String>>,
            Vec<String>,
            Vec<String>,
            Vec<Option<String>>,
            Vec<i32>,
            Vec<String>,
            Vec<Option<String>>,
        ) = Default::default();
        for e in events {
            columns.0.push(e.id);
            columns.1.push(e.at.as_microsecond());
            columns.2.push(e.tenant_id.map(|t| t.0));
            columns.3.push(e.key_prefix);
            columns.4.push(e.method);
            columns.5.push(e.route);
            columns.6.push(e.resource_id);
            columns.7.push(i32::from(e.status));
            columns.8.push(e.request_id);
            columns.9.push(e.source);
        }
        // The audit sink batches events of many tenants into one write.
        self.execute_alone(
            Rows::OfAllTenants("append a batch of audit events"),
            sqlx::query(
                "INSERT INTO audit_events
             (id, at, tenant_id, key_prefix, method, route, resource_id, status, request_id, source)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::int[], $9::text[], $10::text[])",
            )
            .bind(columns.0)
            .bind(columns.1)
            .bind(columns.2)
            .bind(columns.3)
            .bind(columns.4)
            .bind(columns.5)
            .bind(columns.6)
            .bind(columns.7)
            .bind(columns.8)
            .bind(columns.9),
        )
        .await
        .map(drop)
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>> {
        let before = page.before_seq()?;
        let statement = sqlx::query(
            "SELECT seq, id, at, tenant_id, key_prefix, method, route, resource_id, status, request_id, source
             FROM audit_events WHERE tenant_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(before)
        .bind(i64::from(page.limit) + 1);
        let rows = self
            .fetch_all_alone(Rows::Of(tenant.as_str()), statement)
            .await?;
        let events = rows
            .iter()
            .map(|r| {
                Ok((
                    r.get::<i64, _>(0),
                    AuditEvent {
                        id: r.get(1),
                        at: from_micros(r.get(2))?,
                        tenant_id: r.get::<Option<String>, _>(3).map(TenantId),
                        key_prefix: r.get(4),
                        method: r.get(5),
                        route: r.get(6),
                        resource_id: r.get(7),
                        status: u16::try_from(r.get::<i32, _>(8)).unwrap_or(0),
                        request_id: r.get(9),
                        source: r.get(10),
                    },
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_seq_rows(events, page.limit))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn server_secret(&self, name: &str) -> StoreResult<[u8; 32]> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| StoreError::Internal(format!("no randomness: {e}")))?;
        // Whichever replica inserts first wins; every replica reads the winner.
        sqlx::query(
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh.to_vec())
        .bind(self.now_micros())
        .execute(&self.pool)
        .await
        .map_err(map)?;
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(map)?;
        stored
            .try_into()
            .map_err(|_| StoreError::Internal("a stored server secret is not 32 bytes".into()))
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    fn write_stats(&self) -> std::sync::Arc<crate::WriteStats> {
        // PostgreSQL groups commits itself; Keel does not see its batches.
        self.stats.clone()
    }
}
