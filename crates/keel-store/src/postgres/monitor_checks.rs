//! Recording checks on PostgreSQL: as on SQLite (`sqlite::monitor_checks`), each
//! result's row, its rollups, the monitor's state, the incident it opens or
//! resolves (with its queued notice) and its SLOs' minute counts, in the
//! caller's transaction, after taking the monitor's row lock
//! (`postgres::monitors` holds the rest of the port).

use keel_core::uptime::{Grain, Tally};
use sqlx::{postgres::PgRow, Postgres, Row, Transaction};

use super::{errors::map, notice_outbox::queue_notice};
use crate::{
    monitors::{
        decode_incident, grain_code, merged_latency, transition, Before, CheckResult, Incident,
        IncidentChange,
    },
    notice_outbox::{NoticeEvent, NoticeSubject},
    spec_record::spec_from_json,
    StoreResult,
};

pub(super) const INCIDENT_COLUMNS: &str = "id, monitor_id, opened_at, resolved_at, cause, notes";

pub(super) fn incident_row(r: &PgRow) -> StoreResult<Incident> {
    decode_incident((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
}

pub(super) async fn one_incident(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    id: &str,
) -> StoreResult<Option<Incident>> {
    sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM monitor_incidents WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map)?
    .as_ref()
    .map(incident_row)
    .transpose()
}

async fn add_to_rollups(
    tx: &mut Transaction<'static, Postgres>,
    result: &CheckResult,
    tally: &Tally,
) -> StoreResult<()> {
    let at = result.at.as_microsecond();
    for grain in Grain::ALL {
        let bucket = grain.bucket(at);
        // The monitor's row lock (taken by the caller) serialises these.
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT latency FROM monitor_rollups
             WHERE tenant_id = $1 AND monitor_id = $2 AND grain = $3 AND bucket = $4",
        )
        .bind(result.tenant.as_str())
        .bind(&result.monitor_id)
        .bind(grain_code(grain))
        .bind(bucket)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map)?;
        sqlx::query(
            "INSERT INTO monitor_rollups
                 (tenant_id, monitor_id, grain, bucket, up, down, maintenance, down_ms, latency)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, monitor_id, grain, bucket) DO UPDATE SET
                 up = monitor_rollups.up + excluded.up,
                 down = monitor_rollups.down + excluded.down,
                 maintenance = monitor_rollups.maintenance + excluded.maintenance,
                 down_ms = monitor_rollups.down_ms + excluded.down_ms,
                 latency = excluded.latency",
        )
        .bind(result.tenant.as_str())
        .bind(&result.monitor_id)
        .bind(grain_code(grain))
        .bind(bucket)
        .bind(tally.up as i64)
        .bind(tally.down as i64)
        .bind(tally.maintenance as i64)
        .bind(tally.down_ms as i64)
        .bind(merged_latency(stored.as_deref(), &tally.latency))
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    }
    Ok(())
}

pub(super) async fn record_one(
    tx: &mut Transaction<'static, Postgres>,
    result: &CheckResult,
) -> StoreResult<Vec<IncidentChange>> {
    let tenant = result.tenant.as_str();
    let Some(row) = sqlx::query(
        "SELECT next_check_at, consecutive_failures, open_incident, spec FROM monitors
         WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tenant)
    .bind(&result.monitor_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map)?
    else {
        return Ok(Vec::new()); // deleted since it was claimed
    };
    let before = Before {
        next_check_at: row.get(0),
        consecutive_failures: row.get::<i32, _>(1) as u32,
        open_incident: row.get(2),
        spec: spec_from_json(row.get(3))?,
    };
    let Some(after) = transition(&before, result) else {
        return Ok(Vec::new());
    };
    let at = result.at.as_microsecond();
    sqlx::query(
        "INSERT INTO monitor_checks
             (tenant_id, monitor_id, at, up, maintenance, latency_us, status, failure)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant)
    .bind(&result.monitor_id)
    .bind(at)
    .bind(result.up)
    .bind(result.maintenance)
    .bind(result.latency_us.map(|l| l as i64))
    .bind(result.status.map(i32::from))
    .bind(&result.failure)
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    add_to_rollups(tx, result, &after.tally).await?;
    if !result.maintenance {
        super::slos::count_check(tx, tenant, &result.monitor_id, at, result.up).await?;
    }
    let mut changes = Vec::new();
    if let Some(id) = &after.opens {
        sqlx::query(
            "INSERT INTO monitor_incidents (id, tenant_id, monitor_id, opened_at, cause)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(tenant)
        .bind(&result.monitor_id)
        .bind(at)
        .bind(&result.failure)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
        queue_notice(tx, tenant, NoticeSubject::Incident, id, NoticeEvent::Opened).await?;
        if let Some(incident) = one_incident(tx, tenant, id).await? {
            changes.push(IncidentChange::Opened {
                tenant: result.tenant.clone(),
                incident,
            });
        }
    }
    if let Some(id) = &after.resolves {
        sqlx::query(
            "UPDATE monitor_incidents SET resolved_at = $3 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
        queue_notice(
            tx,
            tenant,
            NoticeSubject::Incident,
            id,
            NoticeEvent::Resolved,
        )
        .await?;
        if let Some(incident) = one_incident(tx, tenant, id).await? {
            changes.push(IncidentChange::Resolved {
                tenant: result.tenant.clone(),
                incident,
            });
        }
    }
    sqlx::query(
        "UPDATE monitors SET status = $3, consecutive_failures = $4, last_check_at = $5,
             last_failure = $6, open_incident = $7, next_check_at = $8,
             lease_owner = NULL, lease_until = NULL
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(&result.monitor_id)
    .bind(after.status.as_str())
    .bind(after.consecutive_failures as i32)
    .bind(at)
    .bind(if result.up {
        None
    } else {
        result.failure.clone()
    })
    .bind(&after.open_incident)
    .bind(result.next_check_at)
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(changes)
}
