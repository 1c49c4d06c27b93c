//! Log lines on SQLite, kept in blocks: each stored batch (up to [`BLOCK_LINES`]
//! lines) is one row of `telemetry_log_blocks` holding its lines as a JSON array,
//! with its time span, accounts and levels beside it, and one document in the
//! contentless FTS5 table `telemetry_log_block_words` listing the block's words.
//!
//! Why blocks: with a row, a time-index entry and a full-text document per line,
//! the single writer spent ~13 µs on every line (B-tree inserts, FTS5 positions,
//! merges; BENCHMARKS.md "Telemetry ingest, second pass"). A block costs the
//! writer one row and one small index document per batch; the JSON and the word
//! list are built on the request's own thread before the job reaches the writer.
//!
//! The index stores each distinct word of a block once, as a 64-bit FNV-1a hash
//! written in hex (`detail=none`, the `ascii` tokenizer), so it only ever narrows
//! a query to the blocks that may hold its words; the lines themselves are then
//! matched exactly by [`holds_all_words`], the same rule the PostgreSQL adapter
//! follows. A hash collision costs a block read, never a wrong answer.
//!
//! A line's id is its block's id shifted left by [`INDEX_BITS`] plus its place in
//! the block, so ids still grow with arrival. Pruning that removes only some of a
//! block's lines leaves `null` in their places, so the other lines keep their ids
//! (and cursors stay valid).

use std::{
    collections::{BinaryHeap, HashSet},
    fmt::Write,
};

use keel_core::telemetry::LogLine;
use rusqlite::{params, types::Value as SqlValue, Connection};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::from_micros;
use crate::{
    telemetry::{holds_all_words, log_cursor, next_log_cursor, raw_words, LogQuery, StoredLog},
    Page, StoreError, StoreResult,
};

/// Most lines in one block; a larger batch is stored as several.
pub(super) const BLOCK_LINES: usize = 1024;
/// Bits of a line id that hold its place in its block.
const INDEX_BITS: u32 = 16;
const _: () = assert!(BLOCK_LINES <= 1 << INDEX_BITS);

/// A line as a block stores it: `[ts µs, account, level, body, attributes]`.
#[derive(Serialize)]
struct LineOut<'a>(i64, &'a str, &'a str, &'a str, &'a Map<String, Value>);

#[derive(Deserialize)]
struct LineIn(i64, String, String, String, Map<String, Value>);

/// A block ready for the writer: every column already written.
pub(super) struct EncodedBlock {
    min_ts: i64,
    max_ts: i64,
    lines: i64,
    accounts: String,
    levels: String,
    data: String,
    words: String,
}

fn json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(format!("log block: {e}")))
}

/// The distinct values among `values`, as a JSON array (a block holds few).
fn distinct_json<'a>(values: impl Iterator<Item = &'a str>) -> StoreResult<String> {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    json(&seen)
}

/// FNV-1a, 64 bits: fixed forever, since stored indexes hold its values.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The index token of one word, lowercased as [`crate::telemetry::search_terms`]
/// lowercases (ASCII words without allocating).
fn word_hash(word: &str) -> u64 {
    if word.is_ascii() {
        let mut lower = [0u8; 64];
        if word.len() <= lower.len() {
            let lower = &mut lower[..word.len()];
            lower.copy_from_slice(word.as_bytes());
            lower.make_ascii_lowercase();
            return fnv1a(lower);
        }
    }
    fnv1a(word.to_lowercase().as_bytes())
}

/// The index document of a block: each distinct word's token once.
fn block_words<'a>(bodies: impl Iterator<Item = &'a str>) -> String {
    let mut seen = HashSet::new();
    let mut words = String::new();
    for body in bodies {
        for word in raw_words(body) {
            let hash = word_hash(word);
            if seen.insert(hash) {
                if !words.is_empty() {
                    words.push(' ');
                }
                write!(words, "{hash:016x}").expect("writing to a String");
            }
        }
    }
    words
}

/// The FTS5 query for blocks that may hold every one of `terms`.
fn terms_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{:016x}\"", word_hash(t)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn encode(lines: &[Option<&LogLine>]) -> StoreResult<EncodedBlock> {
    let live = || lines.iter().flatten();
    let ts = live().map(|l| l.ts.as_microsecond());
    let data: Vec<Option<LineOut>> = lines
        .iter()
        .map(|l| {
            l.map(|l| {
                LineOut(
                    l.ts.as_microsecond(),
                    &l.account,
                    &l.level,
                    &l.body,
                    &l.attributes,
                )
            })
        })
        .collect();
    Ok(EncodedBlock {
        min_ts: ts.clone().min().unwrap_or(0),
        max_ts: ts.max().unwrap_or(0),
        lines: live().count() as i64,
        accounts: distinct_json(live().map(|l| l.account.as_str()))?,
        levels: distinct_json(live().map(|l| l.level.as_str()))?,
        data: json(&data)?,
        words: block_words(live().map(|l| l.body.as_str())),
    })
}

/// A batch's lines as blocks, in arrival order.
pub(super) fn encode_blocks(lines: &[LogLine]) -> StoreResult<Vec<EncodedBlock>> {
    lines
        .chunks(BLOCK_LINES)
        .map(|chunk| encode(&chunk.iter().map(Some).collect::<Vec<_>>()))
        .collect()
}

fn decode(data: &str) -> StoreResult<Vec<Option<LogLine>>> {
    let lines: Vec<Option<LineIn>> = serde_json::from_str(data)
        .map_err(|e| StoreError::Internal(format!("stored log block: {e}")))?;
    lines
        .into_iter()
        .map(|line| {
            line.map(|LineIn(ts, account, level, body, attributes)| {
                Ok(LogLine {
                    ts: from_micros(ts)?,
                    level,
                    body,
                    account,
                    attributes,
                })
            })
            .transpose()
        })
        .collect()
}

/// `keel_block_words(data)`: a stored block's index document, for migrations
/// that build blocks in SQL.
pub(super) fn register_functions(conn: &Connection) -> StoreResult<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "keel_block_words",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let data: String = ctx.get(0)?;
            let lines = decode(&data).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            Ok(block_words(lines.iter().flatten().map(|l| l.body.as_str())))
        },
    )?;
    Ok(())
}

pub(super) fn insert(conn: &Connection, tenant: &str, block: &EncodedBlock) -> StoreResult<()> {
    write(conn, None, tenant, block)
}

/// Stores a block under `id` (a new one when `None`) with its index document.
fn write(
    conn: &Connection,
    id: Option<i64>,
    tenant: &str,
    block: &EncodedBlock,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO telemetry_log_blocks (id, tenant_id, min_ts, max_ts, lines, accounts, levels, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id,
        tenant,
        block.min_ts,
        block.max_ts,
        block.lines,
        block.accounts,
        block.levels,
        block.data
    ])?;
    index(conn, conn.last_insert_rowid(), &block.words)
}

fn index(conn: &Connection, id: i64, words: &str) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO telemetry_log_block_words (rowid, words) VALUES (?1, ?2)")?
        .execute(params![id, words])?;
    Ok(())
}

fn delete(conn: &Connection, id: i64) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM telemetry_log_blocks WHERE id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM telemetry_log_block_words WHERE rowid = ?1")?
        .execute([id])?;
    Ok(())
}

/// A line waiting to be returned; the greatest `(ts, id)` comes out first.
struct Candidate {
    ts: i64,
    id: i64,
    line: LogLine,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.id) == (other.ts, other.id)
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts, self.id).cmp(&(other.ts, other.id))
    }
}

/// The next block of a query: its id, newest line's time and lines.
fn next_block(blocks: &mut rusqlite::Rows) -> StoreResult<Option<(i64, i64, String)>> {
    Ok(match blocks.next()? {
        Some(row) => Some((row.get(0)?, row.get(1)?, row.get(2)?)),
        None => None,
    })
}

/// A page of matching lines, newest first. Blocks come from the time index newest
/// span first (narrowed by the word index and their accounts and levels); a line
/// is returned once no block still unread can hold a newer one.
pub(super) fn query(
    conn: &Connection,
    tenant: &str,
    query: &LogQuery,
) -> StoreResult<Page<StoredLog>> {
    let (before_ts, before_id) = log_cursor(&query.page)?;
    let (from, to) = (query.from.as_microsecond(), query.to.as_microsecond());
    let limit = query.page.limit as usize;
    let mut sql = String::from(
        // The newest-span index, always: it yields blocks in the order lines are
        // returned, so a page stops reading early (the planner could otherwise take
        // the oldest-span index for `min_ts` and sort every block first).
        "SELECT id, max_ts, data FROM telemetry_log_blocks INDEXED BY telemetry_log_blocks_by_newest
         WHERE tenant_id = ?1 AND max_ts >= ?2 AND min_ts < ?3 AND min_ts <= ?4",
    );
    let mut args: Vec<SqlValue> = vec![
        tenant.to_owned().into(),
        from.into(),
        to.into(),
        before_ts.into(),
    ];
    if !query.terms.is_empty() {
        args.push(terms_query(&query.terms).into());
        sql.push_str(&format!(
            " AND id IN (SELECT rowid FROM telemetry_log_block_words
                         WHERE telemetry_log_block_words MATCH ?{})",
            args.len()
        ));
    }
    if let Some(account) = &query.account {
        args.push(account.clone().into());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM json_each(accounts) WHERE value = ?{})",
            args.len()
        ));
    }
    if let Some(level) = &query.level {
        args.push(level.clone().into());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM json_each(levels) WHERE value = ?{} COLLATE NOCASE)",
            args.len()
        ));
    }
    sql.push_str(" ORDER BY max_ts DESC, id DESC");
    let wanted = |ts: i64, id: i64, line: &LogLine| {
        ts >= from
            && ts < to
            && (ts, id) < (before_ts, before_id)
            && query.account.as_ref().is_none_or(|a| *a == line.account)
            && query
                .level
                .as_ref()
                .is_none_or(|l| l.eq_ignore_ascii_case(&line.level))
            && holds_all_words(&line.body, &query.terms)
    };
    let mut statement = conn.prepare_cached(&sql)?;
    let mut blocks = statement.query(rusqlite::params_from_iter(args))?;
    let mut waiting = BinaryHeap::new();
    let mut found: Vec<(i64, i64, LogLine)> = Vec::new();
    let mut unread = next_block(&mut blocks)?;
    while found.len() < limit {
        // Lines newer than every unread block's newest line are final.
        let newest_unread = unread.as_ref().map(|(_, max_ts, _)| *max_ts);
        match waiting.peek() {
            Some(Candidate { ts, .. }) if newest_unread.is_none_or(|m| *ts > m) => {
                let Candidate { ts, id, line } = waiting.pop().expect("peeked");
                found.push((ts, id, line));
                continue;
            }
            None if unread.is_none() => break,
            _ => {}
        }
        let (block, _, data) = unread.take().expect("an unread block");
        for (place, line) in decode(&data)?.into_iter().enumerate() {
            let Some(line) = line else { continue };
            let (ts, id) = (line.ts.as_microsecond(), block << INDEX_BITS | place as i64);
            if wanted(ts, id, &line) {
                waiting.push(Candidate { ts, id, line });
            }
        }
        unread = next_block(&mut blocks)?;
    }
    let full = found.len() == limit;
    let last = found.last().map(|(ts, id, _)| (*ts, *id));
    Ok(Page {
        items: found
            .into_iter()
            .map(|(_, _, l)| StoredLog {
                ts: l.ts,
                level: l.level,
                body: l.body,
                account: l.account,
                attributes: l.attributes,
            })
            .collect(),
        next_cursor: next_log_cursor(last, full),
    })
}

/// Removes up to `limit` of the tenant's lines older than `before`, oldest
/// blocks first; returns how many went. A block whose every line goes is deleted
/// with its index document; otherwise it is written again without those lines.
pub(super) fn prune(conn: &Connection, tenant: &str, before: i64, limit: u32) -> StoreResult<u64> {
    let mut left = u64::from(limit);
    let mut gone = 0;
    // Spans only: a block that goes whole is never read.
    let candidates: Vec<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT id, max_ts, lines
             FROM telemetry_log_blocks INDEXED BY telemetry_log_blocks_by_oldest
             WHERE tenant_id = ?1 AND min_ts < ?2 ORDER BY min_ts, id LIMIT ?3",
        )?
        .query_map(params![tenant, before, i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, max_ts, lines) in candidates {
        if left == 0 {
            break;
        }
        let lines = lines as u64;
        if max_ts < before && lines <= left {
            delete(conn, id)?;
            gone += lines;
            left -= lines;
            continue;
        }
        let data: String = conn
            .prepare_cached("SELECT data FROM telemetry_log_blocks WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        let mut kept = decode(&data)?;
        let mut old: Vec<(i64, usize)> = kept
            .iter()
            .enumerate()
            .filter_map(|(place, l)| {
                let ts = l.as_ref()?.ts.as_microsecond();
                (ts < before).then_some((ts, place))
            })
            .collect();
        old.sort_unstable();
        old.truncate(left as usize);
        for &(_, place) in &old {
            kept[place] = None;
        }
        let removed = old.len() as u64;
        gone += removed;
        left -= removed;
        if removed == lines {
            delete(conn, id)?;
            continue;
        }
        // Written again under its own id, so the lines it keeps keep theirs.
        let block = encode(&kept.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        delete(conn, id)?;
        write(conn, Some(id), tenant, &block)?;
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_ignore_case_and_repeat_once() {
        assert_eq!(word_hash("Disk"), word_hash("disk"));
        assert_eq!(word_hash("ÉCHEC"), word_hash("échec"));
        assert_ne!(word_hash("disk"), word_hash("disks"));
        let words = block_words(["disk full", "Disk FULL again"].into_iter());
        assert_eq!(words.split(' ').count(), 3);
        // The FNV-1a test vector: the stored tokens must never change.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
