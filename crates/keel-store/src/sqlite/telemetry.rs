//! Telemetry on SQLite: lines in `telemetry_logs` with an FTS5 index kept by
//! triggers, points in `telemetry_points` (labels as JSON, matched with
//! `json_extract`), and import ids in `telemetry_imports` — all written in the
//! writer's group commit, each call in its own savepoint.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::telemetry::Batch;
use rusqlite::{params, types::Value as SqlValue, Connection, OptionalExtension};

use super::{from_micros, SqliteStore};
use crate::{
    routing::json_map,
    telemetry::{
        log_cursor, next_log_cursor, too_many_points, LogQuery, PointQuery, StoredLog,
        TelemetryStore,
    },
    Page, StoreError, StoreResult, TenantId,
};

/// A batch with its JSON columns already written, so the writer thread spends
/// its time on SQLite alone.
struct Encoded {
    batch: Batch,
    attributes: Vec<String>,
    labels: Vec<String>,
}

impl Encoded {
    fn new(batch: Batch) -> StoreResult<Self> {
        let json = |what: &str, r: serde_json::Result<String>| {
            r.map_err(|e| StoreError::Internal(format!("{what}: {e}")))
        };
        let attributes = batch
            .logs
            .iter()
            .map(|l| json("attributes", serde_json::to_string(&l.attributes)))
            .collect::<StoreResult<_>>()?;
        let labels = batch
            .points
            .iter()
            .map(|p| json("labels", serde_json::to_string(&p.labels)))
            .collect::<StoreResult<_>>()?;
        Ok(Self {
            batch,
            attributes,
            labels,
        })
    }
}

fn insert_batch(conn: &Connection, tenant: &str, encoded: &Encoded) -> StoreResult<()> {
    let batch = &encoded.batch;
    let mut log = conn.prepare_cached(
        "INSERT INTO telemetry_logs (tenant_id, ts, account, level, body, attributes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut ids = None;
    for (line, attributes) in batch.logs.iter().zip(&encoded.attributes) {
        log.execute(params![
            tenant,
            line.ts.as_microsecond(),
            line.account,
            line.level,
            line.body,
            attributes
        ])?;
        let id = conn.last_insert_rowid();
        ids = Some(ids.map_or((id, id), |(first, _)| (first, id)));
    }
    // One statement indexes the whole batch: FTS5 writes its pending terms out at
    // the end of each statement, so indexing line by line would leave a segment
    // per line to merge (migration 11). The ids are the batch's own — this is the
    // only writer, and nothing else inserts lines in between.
    if let Some((first, last)) = ids {
        conn.prepare_cached(
            "INSERT INTO telemetry_logs_text (rowid, body)
             SELECT id, body FROM telemetry_logs WHERE id BETWEEN ?1 AND ?2",
        )?
        .execute([first, last])?;
    }
    let mut point = conn.prepare_cached(
        "INSERT INTO telemetry_points (tenant_id, name, ts, account, value, labels)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (p, labels) in batch.points.iter().zip(&encoded.labels) {
        point.execute(params![
            tenant,
            p.name,
            p.ts.as_microsecond(),
            p.account,
            p.value,
            labels
        ])?;
    }
    Ok(())
}

/// `$."key"`: a JSON path naming one label, whatever characters the key holds
/// (a `"` cannot be quoted in SQLite's path syntax, so such keys are refused).
fn label_path(key: &str) -> StoreResult<String> {
    if key.contains('"') || key.contains('\\') {
        return Err(StoreError::InvalidInput {
            field: "label",
            why: "label names in queries cannot hold `\"` or `\\`".into(),
        });
    }
    Ok(format!("$.\"{key}\""))
}

type LogRow = (i64, i64, String, String, String, String);

/// Below this many lines holding a query's rarest word, the query starts from the
/// full-text index and sorts what it finds; above it, from the newest lines,
/// checking each against the index (which finds a page of a common word at once
/// but would walk the whole table for a rare one).
const INDEX_FIRST_BELOW: i64 = 20_000;

/// How many lines (of every tenant) hold the rarest of `terms`.
fn rarest_word_lines(conn: &Connection, terms: &[String]) -> StoreResult<i64> {
    let mut lines = conn
        .prepare_cached("SELECT coalesce(sum(doc), 0) FROM telemetry_logs_words WHERE term = ?1")?;
    let mut rarest = i64::MAX;
    for term in terms {
        rarest = rarest.min(lines.query_row([term], |r| r.get(0))?);
    }
    Ok(rarest)
}

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn append_telemetry(
        &self,
        tenant: &TenantId,
        batch: Batch,
        import: Option<String>,
    ) -> StoreResult<bool> {
        let tenant = tenant.0.clone();
        let now = self.clock.now().as_microsecond();
        let encoded = Encoded::new(batch)?;
        // The batch comes back to be freed here, not on the writer thread.
        let (stored, _encoded) = self
            .writer
            .execute(move |conn| {
                if let Some(import) = &import {
                    let new = conn
                        .prepare_cached(
                            "INSERT INTO telemetry_imports (tenant_id, id, imported_at)
                             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        )?
                        .execute(params![tenant, import, now])?;
                    if new == 0 {
                        return Ok((false, encoded));
                    }
                }
                insert_batch(conn, &tenant, &encoded)?;
                Ok((true, encoded))
            })
            .await?;
        Ok(stored)
    }

    async fn query_logs(&self, tenant: &TenantId, query: LogQuery) -> StoreResult<Page<StoredLog>> {
        let (before_ts, before_id) = log_cursor(&query.page)?;
        let limit = query.page.limit;
        let index_first = !query.terms.is_empty()
            && self
                .readers
                .read(|conn| rarest_word_lines(conn, &query.terms))?
                < INDEX_FIRST_BELOW;
        // The index's matches as the outer loop (CROSS JOIN fixes the order), or
        // the newest lines filtered by the index.
        let mut sql = String::from(if index_first {
            "SELECT id, ts, account, level, body, attributes
             FROM (SELECT rowid AS hit FROM telemetry_logs_text WHERE telemetry_logs_text MATCH ?1)
             CROSS JOIN telemetry_logs ON id = hit
             WHERE tenant_id = ?2 AND ts >= ?3 AND ts < ?4 AND (ts, id) < (?5, ?6)"
        } else {
            "SELECT id, ts, account, level, body, attributes FROM telemetry_logs
             WHERE ?1 IS NULL AND tenant_id = ?2 AND ts >= ?3 AND ts < ?4 AND (ts, id) < (?5, ?6)"
        });
        // Terms are letters and digits only; quoted, each is one FTS5 word.
        let matching = query
            .terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" ");
        let mut args: Vec<SqlValue> = vec![
            if index_first {
                matching.clone().into()
            } else {
                SqlValue::Null
            },
            tenant.as_str().to_owned().into(),
            query.from.as_microsecond().into(),
            query.to.as_microsecond().into(),
            before_ts.into(),
            before_id.into(),
        ];
        if let Some(account) = query.account {
            args.push(account.into());
            sql.push_str(&format!(" AND account = ?{}", args.len()));
        }
        if let Some(level) = query.level {
            args.push(level.into());
            sql.push_str(&format!(" AND level = ?{} COLLATE NOCASE", args.len()));
        }
        if !query.terms.is_empty() && !index_first {
            args.push(matching.into());
            sql.push_str(&format!(
                " AND id IN (SELECT rowid FROM telemetry_logs_text WHERE telemetry_logs_text MATCH ?{})",
                args.len()
            ));
        }
        args.push(i64::from(limit).into());
        sql.push_str(&format!(" ORDER BY ts DESC, id DESC LIMIT ?{}", args.len()));
        let rows: Vec<LogRow> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<_, _>>()?)
        })?;
        let full = rows.len() == limit as usize;
        let last = rows.last().map(|r| (r.1, r.0));
        let items = rows
            .into_iter()
            .map(|(_, ts, account, level, body, attributes)| {
                Ok(StoredLog {
                    ts: from_micros(ts)?,
                    level,
                    body,
                    account,
                    attributes: json_map(&attributes)?,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok(Page {
            items,
            next_cursor: next_log_cursor(last, full),
        })
    }

    async fn query_points(
        &self,
        tenant: &TenantId,
        query: PointQuery,
        max: usize,
    ) -> StoreResult<Vec<(i64, f64)>> {
        let mut sql = String::from(
            "SELECT ts, value FROM telemetry_points
             WHERE tenant_id = ?1 AND name = ?2 AND ts >= ?3 AND ts < ?4",
        );
        let mut args: Vec<SqlValue> = vec![
            tenant.as_str().to_owned().into(),
            query.name.into(),
            query.from.as_microsecond().into(),
            query.to.as_microsecond().into(),
        ];
        if let Some(account) = query.account {
            args.push(account.into());
            sql.push_str(&format!(" AND account = ?{}", args.len()));
        }
        for (key, value) in query.labels {
            args.push(label_path(&key)?.into());
            args.push(value.into());
            sql.push_str(&format!(
                " AND json_extract(labels, ?{}) = ?{}",
                args.len() - 1,
                args.len()
            ));
        }
        args.push((max as i64 + 1).into());
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
        let points: Vec<(i64, f64)> = self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?)
        })?;
        if points.len() > max {
            return Err(too_many_points(max));
        }
        Ok(points)
    }

    async fn telemetry_retention(&self, tenant: &TenantId) -> StoreResult<Option<u32>> {
        self.readers.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT retention_days FROM telemetry_settings WHERE tenant_id = ?1",
                )?
                .query_row([tenant.as_str()], |r| r.get(0))
                .optional()?)
        })
    }

    async fn set_telemetry_retention(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
    ) -> StoreResult<()> {
        let tenant = tenant.0.clone();
        self.writer
            .execute(move |conn| {
                match days {
                    Some(days) => conn
                        .prepare_cached(
                            "INSERT INTO telemetry_settings (tenant_id, retention_days) VALUES (?1, ?2)
                             ON CONFLICT (tenant_id) DO UPDATE SET retention_days = excluded.retention_days",
                        )?
                        .execute(params![tenant, days])?,
                    None => conn
                        .prepare_cached("DELETE FROM telemetry_settings WHERE tenant_id = ?1")?
                        .execute([&tenant])?,
                };
                Ok(())
            })
            .await
    }

    async fn prune_telemetry(
        &self,
        tenant: &TenantId,
        before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64> {
        let tenant = tenant.0.clone();
        let before = before.as_microsecond();
        self.writer
            .execute(move |conn| {
                let mut gone = 0;
                for (table, column) in [
                    ("telemetry_logs", "ts"),
                    ("telemetry_points", "ts"),
                    ("telemetry_imports", "imported_at"),
                ] {
                    let left = i64::from(limit) - gone as i64;
                    if left <= 0 {
                        break;
                    }
                    let key = if table == "telemetry_imports" { "id" } else { "rowid" };
                    gone += conn
                        .prepare_cached(&format!(
                            "DELETE FROM {table} WHERE tenant_id = ?1 AND {key} IN
                             (SELECT {key} FROM {table} WHERE tenant_id = ?1 AND {column} < ?2 LIMIT ?3)"
                        ))?
                        .execute(params![tenant, before, left])? as u64;
                }
                Ok(gone)
            })
            .await
    }
}
