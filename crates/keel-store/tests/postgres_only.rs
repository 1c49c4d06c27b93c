//! Checks of the PostgreSQL adapter alone: row-level security binds the
//! application role even for a statement that forgets its tenant filter, and
//! migrations apply from an empty database once, however many replicas start.
//! Needs `KEEL_TEST_POSTGRES_URL`; skips with a printed reason without it.

mod adapters;

use adapters::{Adapter, Kind};
use keel_core::counter::CounterName;
use keel_store::TenantId;
use sqlx::{Connection, Executor, PgConnection, Row};

/// Connects to the adapter's database as a fresh login role that is a member of
/// the application role (`keel_app`) and nothing else: what a deployment that
/// gives Keel its own login would use.
async fn connect_as_app_role(database_url: &str) -> (PgConnection, String) {
    let login = format!(
        "keel_rls_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = PgConnection::connect(database_url).await.unwrap();
    admin
        .execute(format!("CREATE ROLE {login} LOGIN IN ROLE keel_app").as_str())
        .await
        .unwrap();
    let mut url = url::Url::parse(database_url).unwrap();
    url.set_username(&login).unwrap();
    let conn = PgConnection::connect(url.as_str()).await.unwrap();
    (conn, login)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_without_a_tenant_filter_sees_and_changes_only_its_tenant() {
    let Some(a) = Adapter::open(Kind::Postgres).await else {
        return;
    };
    let first = a.store.create_tenant("first").await.unwrap().id;
    let second = a.store.create_tenant("second").await.unwrap().id;
    let name = CounterName::parse("orders").unwrap();
    for _ in 0..3 {
        a.store.next(&first, &name).await.unwrap();
    }
    a.store.next(&second, &name).await.unwrap();

    let url = a.database_url().unwrap();
    let (mut conn, login) = connect_as_app_role(&url).await;
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!superuser);

    // No tenant named: no rows at all, not every tenant's.
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM counters")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(visible, 0);

    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('keel.tenant', $1, true)")
        .bind(first.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    // Forgets its tenant filter: sees only the first tenant's counter…
    let rows = sqlx::query("SELECT tenant_id, value FROM counters")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>(0), first.as_str());
    assert_eq!(rows[0].get::<i64, _>(1), 3);
    // …changes only it…
    let changed = sqlx::query("UPDATE counters SET value = 100")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);
    let deleted = sqlx::query("DELETE FROM tenants").execute(&mut *tx).await;
    // (the first tenant's own row is referenced by its counter: refused either way)
    assert!(deleted.is_err() || deleted.unwrap().rows_affected() <= 1);
    tx.rollback().await.unwrap();

    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('keel.tenant', $1, true)")
        .bind(first.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    // …and cannot write a row into another tenant.
    let planted =
        sqlx::query("INSERT INTO counters (tenant_id, name, value) VALUES ($1, 'planted', 1)")
            .bind(second.as_str())
            .execute(&mut *tx)
            .await;
    assert!(planted.is_err(), "a row for another tenant was written");
    tx.rollback().await.unwrap();
    conn.close().await.unwrap();

    // The other tenant's counter is untouched.
    assert_eq!(a.store.current(&second, &name).await.unwrap(), 1);
    let mut admin = PgConnection::connect(&url).await.unwrap();
    admin
        .execute(format!("DROP ROLE {login}").as_str())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(a) = Adapter::open(Kind::Postgres).await else {
        return;
    };
    // Four more "replicas" open the same database at once.
    let (r1, r2, r3, r4) = tokio::join!(a.reopen(), a.reopen(), a.reopen(), a.reopen());
    let opened = [r1, r2, r3, r4];
    let url = a.database_url().unwrap();
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let expected: Vec<i64> = keel_store::postgres::MIGRATIONS
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(versions, expected);
    // And every one of them works.
    for backends in &opened {
        backends
            .store
            .next(
                &TenantId::default_tenant(),
                &CounterName::parse("c").unwrap(),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        a.store
            .current(
                &TenantId::default_tenant(),
                &CounterName::parse("c").unwrap()
            )
            .await
            .unwrap(),
        4
    );
}
