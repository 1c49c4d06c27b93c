//! How PostgreSQL's failures map onto [`StoreError`]: what a retry may fix
//! (connection lost, pool exhausted, statement timeout, serialization failure,
//! server shutting down or out of resources) is `Unavailable` (→ 503), a unique
//! violation is `Conflict`, the rest is a bug.

use crate::StoreError;

pub fn map(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                "23505" => StoreError::Conflict(db.message().to_owned()),
                // 08: connection exceptions; 53: insufficient resources; 57: operator
                // intervention (incl. statement timeout 57014, shutdown 57P01);
                // 40: serialization failure / deadlock.
                c if ["08", "53", "57", "40"].iter().any(|p| c.starts_with(p)) => {
                    StoreError::Unavailable(e.to_string())
                }
                // 25006: read-only transaction (a replica promoted/demoted under us).
                "25006" => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Internal(e.to_string()),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}
