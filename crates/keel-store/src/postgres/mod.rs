//! The PostgreSQL adapter (`store = "postgres://…"`): every store capability and,
//! with `bus = "embedded"`, the bus in the same database.
//!
//! Tenancy is enforced twice: every statement names its tenant, and every
//! tenant-owned table has forced row-level security keyed on the transaction's
//! `keel.tenant` setting (see `migrations/postgres/0001_schema.sql`). Pooled
//! sessions run as the application role (`SET ROLE keel_app` by default), which
//! neither owns the tables nor is a superuser, so the policies bind it. Work that
//! spans tenants (authenticating a key before its tenant is known, the worker's
//! list of subscriptions, operator listings) goes through [`PgStore::all_tenants`],
//! which names its reason and is logged.
//!
//! Many replicas may share one database: counters take their increments in
//! combined writes (`counters.rs`), receives take rows with `FOR UPDATE SKIP LOCKED`, quotas are checked under a
//! per-tenant advisory lock, and a publish wakes waiting receivers on every
//! replica through `NOTIFY`.

mod bus;
mod bus_support;
mod channels;
mod collections;
mod counters;
mod errors;
mod foundation;
mod maintenance;
mod migrations;
mod monitor_checks;
mod monitors;
mod notice_outbox;
mod objects;
mod queue_counts;
mod receive;
mod sessions;
mod slos;
mod telemetry;

use std::{sync::Arc, time::Duration};

use keel_core::clock::Clock;
use sqlx::{
    postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow},
    ConnectOptions, Executor, PgPool, Postgres, Transaction,
};
use tokio::sync::Notify;

use crate::{fanout_budget::FanoutBudget, PostgresOptions, Quotas, StoreError, StoreResult};

pub use migrations::{migrate, MIGRATIONS};

/// Whose rows a statement run alone may touch.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// One tenant's: row-level security shows the transaction no other.
    Of(&'a str),
    /// Every tenant's, through the explicit, logged path; the reason says why.
    OfAllTenants(&'static str),
}

/// One statement with its bound parameters.
type Statement<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The channel a publish notifies so that waiting receivers look again.
const ARRIVALS_CHANNEL: &str = "keel_arrivals";

/// The PostgreSQL-backed store and embedded bus. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    quotas: Quotas,
    fanout_budget: Arc<FanoutBudget>,
    /// Woken when any replica publishes (via `LISTEN`) or this one redrives.
    arrivals: Arc<Notify>,
    routes: Arc<bus_support::RouteCache>,
    stats: Arc<crate::WriteStats>,
    counter_batches: Arc<counters::CounterBatches>,
}

impl PgStore {
    /// Connects, applies pending migrations (one replica at a time), prepares the
    /// application role, and starts listening for arrivals.
    pub async fn connect(
        url: &str,
        options: &PostgresOptions,
        clock: Arc<dyn Clock>,
        quotas: Quotas,
    ) -> StoreResult<Self> {
        let connect: PgConnectOptions = url.parse().map_err(|e| StoreError::InvalidInput {
            field: "store",
            why: format!("not a PostgreSQL URL: {e}"),
        })?;
        let connect = connect.log_statements(tracing::log::LevelFilter::Trace);
        migrations::migrate_and_grant(&connect, &options.app_role).await?;
        let role = options.app_role.clone();
        let timeout_ms = options.statement_timeout.as_millis();
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _| {
                let role = role.clone();
                Box::pin(async move {
                    let mut setup = format!("SET statement_timeout = {timeout_ms};");
                    if !role.is_empty() {
                        setup.push_str(&format!("SET ROLE {};", quote_identifier(&role)));
                    }
                    conn.execute(setup.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(connect.clone())
            .await
            .map_err(errors::map)?;
        if options.app_role.is_empty() {
            refuse_privileged_login(&pool).await?;
        }
        let store = Self {
            pool,
            clock,
            quotas,
            fanout_budget: Arc::new(FanoutBudget::new(
                quotas.fanout_bytes_per_second,
                quotas.fanout_bytes_per_publish,
            )),
            arrivals: Arc::new(Notify::new()),
            routes: Arc::default(),
            stats: Arc::default(),
            counter_batches: Arc::default(),
        };
        store.start_listening();
        Ok(store)
    }

    /// A transaction that sees and writes only `tenant`'s rows.
    async fn tenant_tx(&self, tenant: &str) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.map_err(errors::map)?;
        sqlx::query("SELECT set_config('keel.tenant', $1, true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(errors::map)?;
        Ok(tx)
    }

    /// A transaction that spans tenants: the explicit path for work that cannot
    /// name one tenant. `why` says what it is for, in the log.
    async fn all_tenants(&self, why: &'static str) -> StoreResult<Transaction<'static, Postgres>> {
        tracing::trace!(why, "cross-tenant transaction");
        let mut tx = self.pool.begin().await.map_err(errors::map)?;
        sqlx::query("SELECT set_config('keel.all_tenants', 'on', true)")
            .execute(&mut *tx)
            .await
            .map_err(errors::map)?;
        Ok(tx)
    }

    /// A transaction that may touch `rows`.
    async fn begin(&self, rows: Rows<'_>) -> StoreResult<Transaction<'static, Postgres>> {
        match rows {
            Rows::Of(tenant) => self.tenant_tx(tenant).await,
            Rows::OfAllTenants(why) => self.all_tenants(why).await,
        }
    }

    /// Runs `statement` alone in its own transaction; how many rows it changed.
    async fn execute_alone(&self, rows: Rows<'_>, statement: Statement<'_>) -> StoreResult<u64> {
        let mut tx = self.begin(rows).await?;
        let done = statement.execute(&mut *tx).await.map_err(errors::map)?;
        tx.commit().await.map_err(errors::map)?;
        Ok(done.rows_affected())
    }

    /// Runs `statement` alone in its own transaction; every row it returned.
    async fn fetch_all_alone(
        &self,
        rows: Rows<'_>,
        statement: Statement<'_>,
    ) -> StoreResult<Vec<PgRow>> {
        let mut tx = self.begin(rows).await?;
        let found = statement.fetch_all(&mut *tx).await.map_err(errors::map)?;
        tx.commit().await.map_err(errors::map)?;
        Ok(found)
    }

    /// Runs `statement` alone in its own transaction; the row it returned, if any.
    async fn fetch_optional_alone(
        &self,
        rows: Rows<'_>,
        statement: Statement<'_>,
    ) -> StoreResult<Option<PgRow>> {
        let mut tx = self.begin(rows).await?;
        let found = statement
            .fetch_optional(&mut *tx)
            .await
            .map_err(errors::map)?;
        tx.commit().await.map_err(errors::map)?;
        Ok(found)
    }

    /// Serialises quota-checked writes of one tenant until the transaction ends, so
    /// replicas writing at once cannot overshoot a quota together.
    async fn lock_tenant_quota(
        tx: &mut Transaction<'static, Postgres>,
        tenant: &str,
    ) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('keel-quota:' || $1, 0))")
            .bind(tenant)
            .execute(&mut **tx)
            .await
            .map_err(errors::map)?;
        Ok(())
    }

    fn now_micros(&self) -> i64 {
        self.clock.now().as_microsecond()
    }

    /// Relays `NOTIFY keel_arrivals` from every replica to local waiters. The
    /// listener reconnects by itself; waiters re-check on a timer anyway, so a
    /// notification lost while it reconnects delays a receive, never loses one.
    fn start_listening(&self) {
        let pool = self.pool.clone();
        let arrivals = Arc::downgrade(&self.arrivals);
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(e) => {
                        tracing::debug!(error = %e, "arrivals listener: cannot connect; retrying");
                        if arrivals.strong_count() == 0 || pool.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(ARRIVALS_CHANNEL).await {
                    tracing::debug!(error = %e, "arrivals listener: LISTEN failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    let received =
                        tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
                    let Some(signal) = arrivals.upgrade() else {
                        return;
                    };
                    match received {
                        Ok(Ok(_)) => signal.notify_waiters(),
                        // Quiet: look whether the store is still wanted.
                        Err(_) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "arrivals listener: lost; reconnecting");
                            break;
                        }
                    }
                }
            }
        });
    }

    /// The pool, for adapter-level tests (row-level security, migrations).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Quotes a role name as an SQL identifier.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Without an application role to switch to, the URL's own user serves requests:
/// refuse one that row-level security would not bind.
async fn refuse_privileged_login(pool: &PgPool) -> StoreResult<()> {
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(pool)
            .await
            .map_err(errors::map)?;
    if superuser || bypass {
        return Err(StoreError::InvalidInput {
            field: "store",
            why: "the PostgreSQL user is a superuser or bypasses row-level security; \
                  set postgres_app_role (KEEL_POSTGRES_APP_ROLE) or connect as a plain role"
                .into(),
        });
    }
    Ok(())
}

/// A spec record (SLO, channel, maintenance window) from a row that starts with
/// its [`RECORD_COLUMNS`](crate::spec_record::RECORD_COLUMNS).
fn spec_record_from<S: crate::spec_record::StoredSpec>(
    r: &PgRow,
) -> StoreResult<crate::SpecRecord<S>> {
    use sqlx::Row;
    crate::spec_record::decode_record(r.get(0), r.get(1), r.get::<&str, _>(2), r.get(3))
}
