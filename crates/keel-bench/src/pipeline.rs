//! SPEC §10's pipeline targets: `POST /v1/collections/{c}/records` → stored by the
//! store worker, single messages (≥ 30,000/s) and batches of 100 (≥ 200,000/s), and
//! p99 publish→stored at 10,000/s (≤ 50 ms). The baseline is a bare axum handler
//! that parses the same body and answers 202 from memory.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{
    load::{self, Target},
    row, verdict,
};

/// Polls the collection's queue until the worker has stored everything.
async fn drained(keel: SocketAddr, key: &str, collection: &str) -> anyhow::Result<Instant> {
    let target = Target::get(
        keel,
        &format!("/v1/queues/{collection}/_collection"),
        Some(key),
    );
    loop {
        let stats = load::one(&target).await?;
        let stats: serde_json::Value = serde_json::from_slice(&stats)?;
        if stats["depth"] == 0 && stats["in_flight"] == 0 {
            return Ok(Instant::now());
        }
        // Each look counts the queue (a scan of it on PostgreSQL): looking every
        // few milliseconds made the counting a core's worth of the load. Costs
        // at most this much on the measured time.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one publish-until-stored run reached.
pub struct Stored {
    pub outcome: load::Outcome,
    /// Calls answered per second while publishing.
    pub calls_per_s: f64,
    /// Records stored per second, from the first publish until the worker had
    /// emptied the queue.
    pub stored_per_s: f64,
    pub elapsed_s: f64,
}

/// Publishes `body` (`per_call` records) to collection `name` as fast as answers
/// come back for `duration`, then waits until the workers have stored it all.
pub async fn publish_until_stored_quietly(
    keel: SocketAddr,
    key: &str,
    duration: Duration,
    name: &str,
    body: &str,
    per_call: u64,
    connections: usize,
) -> anyhow::Result<Stored> {
    let path = format!("/v1/collections/{name}/records");
    // Creates the collection's feed before measuring.
    let first = r#"{"warm":true}"#.to_owned();
    load::one(&Target::post(
        keel,
        &format!("{path}?wait=true"),
        Some(key),
        first,
    ))
    .await?;
    let started = Instant::now();
    let outcome = load::run(
        &Target::post(keel, &path, Some(key), body.to_owned()),
        connections,
        duration,
        None,
        false,
    )
    .await;
    let done = drained(keel, key, name).await?;
    let elapsed_s = (done - started).as_secs_f64();
    Ok(Stored {
        calls_per_s: outcome.rate(),
        stored_per_s: (outcome.requests * per_call) as f64 / elapsed_s,
        outcome,
        elapsed_s,
    })
}

/// [`publish_until_stored_quietly`] beside the baseline (the same calls to the
/// bare handler), printed; returns the baseline and the records stored per second.
#[allow(clippy::too_many_arguments)] // one call site per suite row; named at each
async fn publish_until_stored(
    keel: SocketAddr,
    bare: SocketAddr,
    key: &str,
    duration: Duration,
    name: &str,
    body: &str,
    per_call: u64,
    connections: usize,
) -> anyhow::Result<(load::Outcome, f64)> {
    let path = format!("/v1/collections/{name}/records");
    let base = load::run(
        &Target::post(bare, &path, None, body.to_owned()),
        connections,
        duration,
        None,
        false,
    )
    .await;
    let ours = publish_until_stored_quietly(keel, key, duration, name, body, per_call, connections)
        .await?;
    println!();
    println!("POST /v1/collections/{{c}}/records, {per_call} record(s) per call, {connections} connections (rates are calls/s)");
    row("bare axum, parse + 202 (baseline)", &base);
    row("keel, 202 once durable", &ours.outcome);
    println!(
        "    stored by the worker: {} records in {:.2} s after the first publish",
        ours.outcome.requests * per_call,
        ours.elapsed_s
    );
    Ok((base, ours.stored_per_s))
}

pub async fn run(
    keel: SocketAddr,
    bare: SocketAddr,
    key: &str,
    duration: Duration,
) -> anyhow::Result<()> {
    let record = r#"{"name":"Ana","email":"ana@example.com","plan":"pro","n":1}"#.to_owned();
    let batch = format!("{{\"records\":[{}]}}", vec![record.as_str(); 100].join(","));

    // Single messages, 64 connections, as fast as 202s come back; then until stored.
    let (_, stored_rate) =
        publish_until_stored(keel, bare, key, duration, "single", &record, 1, 64).await?;
    verdict(
        &format!("publish→stored = {stored_rate:.0} messages/s"),
        stored_rate >= 30_000.0,
        "target ≥ 30,000/s",
    );

    // Batches of 100.
    let (base, stored_rate) =
        publish_until_stored(keel, bare, key, duration, "batch", &batch, 100, 16).await?;
    verdict(
        &format!(
            "publish→stored = {stored_rate:.0} messages/s (baseline parses {:.0}/s)",
            base.rate() * 100.0
        ),
        stored_rate >= 200_000.0,
        "target ≥ 200,000/s",
    );

    // Latency publish→stored at 10,000/s: ?wait=true answers when the row is stored.
    let paced = Target::post(
        keel,
        "/v1/collections/paced/records?wait=true",
        Some(key),
        record.clone(),
    );
    load::one(&paced).await?;
    let base = load::run(
        &Target::post(bare, "/v1/collections/paced/records", None, record.clone()),
        64,
        duration,
        Some(10_000.0),
        false,
    )
    .await;
    let ours = load::run(&paced, 64, duration, Some(10_000.0), false).await;
    println!();
    println!(
        "POST …/records?wait=true paced at 10,000/s, 64 connections (latency = publish→stored)"
    );
    row("bare axum, parse + 202 (baseline)", &base);
    row("keel, 201 once stored", &ours);
    verdict(
        &format!("p99 publish→stored = {:.2} ms", ours.p_ms(0.99)),
        ours.p_ms(0.99) <= 50.0,
        "target ≤ 50 ms",
    );
    Ok(())
}
