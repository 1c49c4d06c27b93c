//! Forward-only migrations for PostgreSQL, embedded in the binary and applied on
//! start (and by `keel migrate`). Replicas starting together take turns: the
//! first holds a session advisory lock while it migrates, the others wait for it
//! and then find nothing left to do. Each migration commits together with the row
//! that records it.

use sqlx::{postgres::PgConnectOptions, Connection, Executor, PgConnection, Row};

use super::{errors::map, quote_identifier};
use crate::StoreResult;

/// (version, name, SQL). Append only: a released migration is never edited.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "objects",
        include_str!("../../migrations/postgres/0002_objects.sql"),
    ),
    (
        3,
        "telemetry",
        include_str!("../../migrations/postgres/0003_telemetry.sql"),
    ),
    (
        4,
        "monitors",
        include_str!("../../migrations/postgres/0004_monitors.sql"),
    ),
    (
        5,
        "slos",
        include_str!("../../migrations/postgres/0005_slos.sql"),
    ),
    (
        6,
        "notice_outbox",
        include_str!("../../migrations/postgres/0006_notice_outbox.sql"),
    ),
    (
        7,
        "console_sessions",
        include_str!("../../migrations/postgres/0007_console_sessions.sql"),
    ),
    (
        8,
        "queue_counts",
        include_str!("../../migrations/postgres/0008_queue_counts.sql"),
    ),
    (
        9,
        "session_keys",
        include_str!("../../migrations/postgres/0009_session_keys.sql"),
    ),
];

/// Any constant both replicas agree on: the key of the migration lock.
const MIGRATION_LOCK: i64 = 0x006b_6565_6c6d_6967; // "keelmig"

/// Applies every pending migration over `connection` and, when `app_role` is
/// given, makes sure that role exists and may use every table; returns the
/// versions applied. Holds the migration lock throughout, so replicas take turns.
pub async fn migrate(connection: &mut PgConnection, app_role: &str) -> StoreResult<Vec<i64>> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *connection)
        .await
        .map_err(map)?;
    let mut result = apply_pending(connection).await;
    if result.is_ok() && !app_role.is_empty() {
        if let Err(e) = grant(connection, app_role).await {
            result = Err(e);
        }
    }
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *connection)
        .await
        .map_err(map);
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply_pending(connection: &mut PgConnection) -> StoreResult<Vec<i64>> {
    connection
        .execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     BIGINT PRIMARY KEY,
                 name        TEXT NOT NULL,
                 applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(map)?;
    let done: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *connection)
        .await
        .map_err(map)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        let mut tx = connection.begin().await.map_err(map)?;
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(map)?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        tracing::info!(version, name, "applied migration");
        applied.push(version);
    }
    Ok(applied)
}

/// Migrates as the URL's user (the owner), who must be able to create tables and
/// (for the application role) roles.
pub(super) async fn migrate_and_grant(
    options: &PgConnectOptions,
    app_role: &str,
) -> StoreResult<()> {
    let mut connection = PgConnection::connect_with(options).await.map_err(map)?;
    migrate(&mut connection, app_role).await?;
    connection.close().await.map_err(map)?;
    Ok(())
}

/// Makes sure the application role exists, may use every table of this schema,
/// and can be switched to by the migrating user. Roles are shared by every
/// database of the server, so databases migrating at once can collide on them
/// ("tuple concurrently updated"): each step is idempotent and retried.
async fn grant(connection: &mut PgConnection, app_role: &str) -> StoreResult<()> {
    let role = quote_identifier(app_role);
    let literal = app_role.replace('\'', "''");
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut *connection)
        .await
        .map_err(map)?;
    let schema = quote_identifier(&schema);
    let steps = [
        format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{literal}') THEN
                     CREATE ROLE {role} NOLOGIN;
                 END IF;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ),
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"),
        format!(
            "DO $$ BEGIN
                 IF NOT pg_has_role(current_user, '{literal}', 'MEMBER') THEN
                     EXECUTE format('GRANT %I TO %I', '{literal}', current_user);
                 END IF;
             END $$"
        ),
    ];
    for step in &steps {
        let mut tries = 0;
        loop {
            match sqlx::raw_sql(step).execute(&mut *connection).await {
                Ok(_) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::debug!(error = %e, "granting to the application role: retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(20 * tries)).await;
                }
                Err(e) => return Err(map(e)),
            }
        }
    }
    Ok(())
}
