//! Telemetry (issue 9, SPEC §10): OTLP protobuf log ingest in batches of 1,000
//! beside decoding the same payloads alone; a full-text query over 1,000,000
//! stored lines beside the same listing without words; bytes on disk per million
//! lines beside the lines as plain NDJSON.
//!
//! Keel runs in this process on its own SQLite file (embedded defaults), so the
//! file's growth is what the lines cost.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{any_value, AnyValue, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message;

use crate::{servers, verdict};

const BATCH: usize = 1_000;
/// Distinct payloads cycled through (so nothing is cached by accident).
const PAYLOADS: usize = 16;
const WORDS: [&str; 32] = [
    "request",
    "served",
    "user",
    "order",
    "payment",
    "cache",
    "miss",
    "hit",
    "retry",
    "timeout",
    "disk",
    "queue",
    "worker",
    "started",
    "finished",
    "export",
    "import",
    "latency",
    "error",
    "warning",
    "session",
    "login",
    "logout",
    "invoice",
    "shipment",
    "refund",
    "token",
    "upstream",
    "database",
    "replica",
    "failover",
    "checkpoint",
];

fn text(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// A log line of 8 words; `rare` marks one line in 100,000 with a word no other has.
fn line(n: u64) -> String {
    let mut words: Vec<&str> = (0..8)
        .map(|i| WORDS[((n.wrapping_mul(2654435761) >> (i * 4)) % 32) as usize])
        .collect();
    if n % 100_000 == 7 {
        words.push("zebracorn");
    }
    format!("{} id={n}", words.join(" "))
}

fn payload(first: u64, base_nanos: u64) -> (Bytes, u64) {
    let mut plain_bytes = 0;
    let records = (first..first + BATCH as u64)
        .map(|n| {
            let body = line(n);
            plain_bytes += body.len() as u64 + 60; // {"log":…,"ts":…,"account":…}\n
            LogRecord {
                time_unix_nano: base_nanos + n * 1_000_000,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body)),
                }),
                attributes: vec![text("route", format!("/v1/orders/{}", n % 50))],
                ..Default::default()
            }
        })
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    text("cloud.account.id", format!("acct-{}", first % 9)),
                    text("service.name", "bench".into()),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (Bytes::from(request.encode_to_vec()), plain_bytes)
}

fn db_bytes(dir: &Path) -> u64 {
    ["keel.db", "keel.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

async fn post(client: &reqwest::Client, base: &str, key: &str, body: Bytes) -> anyhow::Result<()> {
    let response = client
        .post(format!("{base}/v1/logs"))
        .bearer_auth(key)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "OTLP export: {}",
        response.status()
    );
    Ok(())
}

async fn query_latencies(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    runs: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut took = Vec::with_capacity(runs);
    let mut found = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let response = client.get(url).bearer_auth(key).send().await?;
        anyhow::ensure!(response.status() == 200, "query: {}", response.status());
        let body: serde_json::Value = response.json().await?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        found = body["logs"].as_array().map_or(0, Vec::len);
    }
    took.sort_by(f64::total_cmp);
    Ok((
        crate::percentile(&took, 0.5),
        crate::percentile(&took, 0.99),
        found,
    ))
}

pub async fn run(data_dir: &Path, duration: Duration, lines: u64) -> anyhow::Result<()> {
    let dir = data_dir.join("telemetry");
    let _ = std::fs::remove_dir_all(&dir);
    let keel = servers::start_keel(&dir, true).await?;
    let base = format!("http://{}", keel.addr);
    let key = keel.operator_key.clone();
    let base_nanos = jiff::Timestamp::now().as_nanosecond() as u64 - 3_600_000_000_000;
    let payloads: Vec<Bytes> = (0..PAYLOADS)
        .map(|i| payload(i as u64 * BATCH as u64, base_nanos).0)
        .collect();
    let mean_size = payloads.iter().map(Bytes::len).sum::<usize>() / PAYLOADS;

    // Baseline: decoding the same payloads, nothing else.
    let started = Instant::now();
    let mut decoded = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        for p in &payloads {
            let request = ExportLogsServiceRequest::decode(&p[..])?;
            decoded += request.resource_logs[0].scope_logs[0].log_records.len() as u64;
        }
    }
    let decode_rate = decoded as f64 / started.elapsed().as_secs_f64();

    // Ingest: 4 exporters posting batches of 1,000 for `duration`.
    let client = reqwest::Client::new();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let exporters: Vec<_> = (0..4)
        .map(|i| {
            let (client, base, key, payloads) =
                (client.clone(), base.clone(), key.clone(), payloads.clone());
            let (sent, stop) = (sent.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    post(&client, &base, &key, payloads[n % PAYLOADS].clone()).await?;
                    sent.fetch_add(BATCH as u64, Ordering::Relaxed);
                    n += 4;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for exporter in exporters {
        exporter.await??;
    }
    let ingest_rate = sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    println!();
    println!(
        "Telemetry: OTLP/HTTP protobuf logs, batches of {BATCH} (~{} KiB each), 4 exporters",
        mean_size / 1024
    );
    println!("  protobuf decode alone (baseline)            {decode_rate:>10.0} records/s");
    println!("  POST /v1/logs → stored (SQLite + FTS5)     {ingest_rate:>10.0} records/s");
    verdict(
        &format!("{:.0} records/s", ingest_rate),
        ingest_rate >= 200_000.0,
        "target ≥ 200,000 records/s",
    );

    // A store of `lines` lines (fresh directory), then queries over it.
    let dir = data_dir.join("telemetry-query");
    let _ = std::fs::remove_dir_all(&dir);
    let keel = servers::start_keel(&dir, true).await?;
    let base = format!("http://{}", keel.addr);
    let key = keel.operator_key.clone();
    let empty = db_bytes(&dir);
    let mut plain = 0u64;
    let started = Instant::now();
    let mut first = 0;
    while first < lines {
        let mut batch = Vec::new();
        for _ in 0..4 {
            if first >= lines {
                break;
            }
            let (body, bytes) = payload(first, base_nanos);
            plain += bytes;
            batch.push(body);
            first += BATCH as u64;
        }
        let posts = batch
            .into_iter()
            .map(|body| post(&client, &base, &key, body));
        for result in futures::future::join_all(posts).await {
            result?;
        }
    }
    let load_took = started.elapsed();
    // Checkpoint the WAL into the database file so its size is the data's.
    let conn = rusqlite::Connection::open(dir.join("keel.db"))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    let stored = db_bytes(&dir) - empty;
    let window = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    let url = |q: &str| format!("{base}/v1/logs?{window}&limit=100{q}");
    let (base_p50, base_p99, _) = query_latencies(&client, &url(""), &key, 200).await?;
    let (rare_p50, rare_p99, rare_found) =
        query_latencies(&client, &url("&q=zebracorn"), &key, 200).await?;
    let (two_p50, two_p99, _) =
        query_latencies(&client, &url("&q=payment%20timeout"), &key, 200).await?;
    let (common_p50, common_p99, _) =
        query_latencies(&client, &url("&q=request"), &key, 200).await?;
    let per_million = |bytes: u64| bytes as f64 / lines as f64 * 1e6 / (1024.0 * 1024.0);
    println!();
    println!(
        "Telemetry: {lines} lines loaded in {:.1} s; GET /v1/logs, 100 per page, 200 queries each",
        load_took.as_secs_f64()
    );
    println!(
        "  newest lines, no words (baseline)  p50 {base_p50:>7.2} ms   p99 {base_p99:>7.2} ms"
    );
    println!(
        "  q=zebracorn (1 in 100,000; {rare_found} found)  p50 {rare_p50:>7.2} ms   p99 {rare_p99:>7.2} ms"
    );
    println!("  q=payment timeout (two words)      p50 {two_p50:>7.2} ms   p99 {two_p99:>7.2} ms");
    println!(
        "  q=request (in most lines)          p50 {common_p50:>7.2} ms   p99 {common_p99:>7.2} ms"
    );
    let worst_p50 = rare_p50.max(two_p50).max(common_p50);
    verdict(
        &format!("slowest word query p50 {worst_p50:.1} ms"),
        worst_p50 <= 50.0,
        "aim ≤ 50 ms",
    );
    println!(
        "  bytes per million lines: {:.0} MiB on disk (SQLite, lines + attributes + FTS5 index) \
         beside {:.0} MiB as plain NDJSON (baseline)",
        per_million(stored),
        per_million(plain)
    );
    Ok(())
}
