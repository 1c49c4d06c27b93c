//! Recording checks on SQLite: each result's row in `monitor_checks`, its
//! minute / hour / day buckets in `monitor_rollups`, the monitor's state, the
//! incident it opens or resolves in `monitor_incidents` (with its queued notice)
//! and its SLOs' minute counts — all in the caller's writer job, so a batch of
//! results is one durable step (`sqlite::monitors` holds the rest of the port).

use keel_core::uptime::{Grain, Tally};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::notice_outbox::queue_notice;
use crate::{
    monitors::{
        decode_incident, grain_code, merged_latency, transition, Before, CheckResult, Incident,
        IncidentChange, IncidentRow,
    },
    notice_outbox::{NoticeEvent, NoticeSubject},
    spec_record::spec_from_json,
    StoreResult,
};

pub(super) fn incident_from(r: &Row) -> rusqlite::Result<IncidentRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

pub(super) fn one_incident(
    conn: &Connection,
    tenant: &str,
    id: &str,
) -> StoreResult<Option<Incident>> {
    conn.prepare_cached(
        "SELECT id, monitor_id, opened_at, resolved_at, cause, notes FROM monitor_incidents
         WHERE tenant_id = ?1 AND id = ?2",
    )?
    .query_row([tenant, id], incident_from)
    .optional()?
    .map(decode_incident)
    .transpose()
}

/// Adds a result's tally to its minute, hour and day buckets.
fn add_to_rollups(conn: &Connection, result: &CheckResult, tally: &Tally) -> StoreResult<()> {
    let at = result.at.as_microsecond();
    for grain in Grain::ALL {
        let bucket = grain.bucket(at);
        let key = params![
            result.tenant.as_str(),
            result.monitor_id,
            grain_code(grain),
            bucket
        ];
        let stored: Option<String> = conn
            .prepare_cached(
                "SELECT latency FROM monitor_rollups
                 WHERE tenant_id = ?1 AND monitor_id = ?2 AND grain = ?3 AND bucket = ?4",
            )?
            .query_row(key, |r| r.get(0))
            .optional()?;
        let latency = merged_latency(stored.as_deref(), &tally.latency);
        conn.prepare_cached(
            "INSERT INTO monitor_rollups
                 (tenant_id, monitor_id, grain, bucket, up, down, maintenance, down_ms, latency)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (tenant_id, monitor_id, grain, bucket) DO UPDATE SET
                 up = up + excluded.up, down = down + excluded.down,
                 maintenance = maintenance + excluded.maintenance,
                 down_ms = down_ms + excluded.down_ms, latency = excluded.latency",
        )?
        .execute(params![
            result.tenant.as_str(),
            result.monitor_id,
            grain_code(grain),
            bucket,
            tally.up as i64,
            tally.down as i64,
            tally.maintenance as i64,
            tally.down_ms as i64,
            latency
        ])?;
    }
    Ok(())
}

pub(super) fn record_one(
    conn: &Connection,
    result: &CheckResult,
) -> StoreResult<Vec<IncidentChange>> {
    let tenant = result.tenant.as_str();
    let found: Option<(i64, u32, Option<String>, String)> = conn
        .prepare_cached(
            "SELECT next_check_at, consecutive_failures, open_incident, spec FROM monitors
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .query_row([tenant, &result.monitor_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((next_check_at, consecutive_failures, open_incident, spec)) = found else {
        return Ok(Vec::new()); // deleted since it was claimed
    };
    let before = Before {
        next_check_at,
        consecutive_failures,
        open_incident,
        spec: spec_from_json(&spec)?,
    };
    let Some(after) = transition(&before, result) else {
        return Ok(Vec::new());
    };
    let at = result.at.as_microsecond();
    conn.prepare_cached(
        "INSERT INTO monitor_checks
             (tenant_id, monitor_id, at, up, maintenance, latency_us, status, failure)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        tenant,
        result.monitor_id,
        at,
        result.up,
        result.maintenance,
        result.latency_us.map(|l| l as i64),
        result.status,
        result.failure
    ])?;
    add_to_rollups(conn, result, &after.tally)?;
    if !result.maintenance {
        super::slos::count_check(conn, tenant, &result.monitor_id, at, result.up)?;
    }
    let mut changes = Vec::new();
    if let Some(id) = &after.opens {
        conn.prepare_cached(
            "INSERT INTO monitor_incidents (id, tenant_id, monitor_id, opened_at, cause)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![id, tenant, result.monitor_id, at, result.failure])?;
        queue_notice(
            conn,
            tenant,
            NoticeSubject::Incident,
            id,
            NoticeEvent::Opened,
        )?;
        if let Some(incident) = one_incident(conn, tenant, id)? {
            changes.push(IncidentChange::Opened {
                tenant: result.tenant.clone(),
                incident,
            });
        }
    }
    if let Some(id) = &after.resolves {
        conn.prepare_cached(
            "UPDATE monitor_incidents SET resolved_at = ?3 WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![tenant, id, at])?;
        queue_notice(
            conn,
            tenant,
            NoticeSubject::Incident,
            id,
            NoticeEvent::Resolved,
        )?;
        if let Some(incident) = one_incident(conn, tenant, id)? {
            changes.push(IncidentChange::Resolved {
                tenant: result.tenant.clone(),
                incident,
            });
        }
    }
    conn.prepare_cached(
        "UPDATE monitors SET status = ?3, consecutive_failures = ?4, last_check_at = ?5,
             last_failure = ?6, open_incident = ?7, next_check_at = ?8,
             lease_owner = NULL, lease_until = NULL
         WHERE tenant_id = ?1 AND id = ?2",
    )?
    .execute(params![
        tenant,
        result.monitor_id,
        after.status.as_str(),
        after.consecutive_failures,
        at,
        if result.up {
            None
        } else {
            result.failure.as_deref()
        },
        after.open_incident,
        result.next_check_at
    ])?;
    Ok(changes)
}
