//! Suite `noisy`: can one tenant starve another? A quiet tenant calls
//! `GET /v1/next` (durable increments) at a steady 500/s; its p99 is measured
//! alone (the baseline) and then while a noisy tenant, on 4 connections as fast as
//! it can, does what a review found stalled the shared writer:
//!
//! 1. publishes 1 MB messages to a topic with 100 subscriptions (100 MB a call:
//!    the fan-out quota refuses it);
//! 2. publishes a 1 MB attribute through 100 subscriptions whose filters hold 150
//!    `equals-ignore-case` conditions each (evaluated, matching nothing);
//! 3. publishes 150 KB messages copied to 100 subscriptions (15 MB a call, the
//!    heaviest fan-out the default quota accepts).
//!
//! Target (issue "hostile clients and tenants"): the quiet tenant's p99 < 50 ms.

use std::{net::SocketAddr, time::Duration};

use serde_json::{json, Value};

use crate::{
    load::{self, Target},
    row, verdict,
};

const QUIET_RATE: f64 = 500.0;

async fn register(addr: SocketAddr, email: &str) -> anyhow::Result<String> {
    let body = json!({"email": email, "password": "correct horse battery"}).to_string();
    let answer = load::one(&Target::post(addr, "/v1/users", None, body)).await?;
    let doc: Value = serde_json::from_slice(&answer)?;
    Ok(doc["data"]["attributes"]["api_key"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no key in {doc}"))?
        .to_owned())
}

async fn subscribe_many(
    addr: SocketAddr,
    key: &str,
    topic: &str,
    filter: Option<Value>,
) -> anyhow::Result<()> {
    for i in 0..100 {
        let mut body = json!({"target": {"type": "queue"}});
        if let Some(filter) = &filter {
            body["filter"] = filter.clone();
        }
        load::one(&Target::put(
            addr,
            &format!("/v1/topics/{topic}/subscriptions/s{i}"),
            Some(key),
            body.to_string(),
        ))
        .await?;
    }
    Ok(())
}

pub async fn run(addr: SocketAddr, duration: Duration) -> anyhow::Result<()> {
    let quiet_key = register(addr, "quiet@example.com").await?;
    let noisy_key = register(addr, "noisy@example.com").await?;
    let quiet = Target::get(addr, "/v1/next", Some(&quiet_key));

    subscribe_many(addr, &noisy_key, "wide", None).await?;
    let conditions: Vec<Value> = (0..150)
        .map(|i| json!({"equals-ignore-case": format!("value-{i}")}))
        .collect();
    subscribe_many(
        addr,
        &noisy_key,
        "filtered",
        Some(json!({"kind": conditions})),
    )
    .await?;
    subscribe_many(addr, &noisy_key, "medium", None).await?;

    let megabyte = "x".repeat(1_000_000);
    let attacks = [
        (
            "1 MB messages to 100 subscriptions (refused by the fan-out quota)",
            Target::post(
                addr,
                "/v1/topics/wide/messages",
                Some(&noisy_key),
                json!({"body": megabyte}).to_string(),
            ),
        ),
        (
            "1 MB attribute through 100 × 150 equals-ignore-case conditions",
            Target::post(
                addr,
                "/v1/topics/filtered/messages",
                Some(&noisy_key),
                json!({"body": 1, "attributes": {"kind": megabyte}}).to_string(),
            ),
        ),
        (
            "10 KB messages copied to 100 subscriptions (1 MB a call)",
            Target::post(
                addr,
                "/v1/topics/medium/messages",
                Some(&noisy_key),
                json!({"body": "y".repeat(10_000)}).to_string(),
            ),
        ),
    ];

    println!();
    println!(
        "Noisy neighbour: another tenant's GET /v1/next at {QUIET_RATE:.0}/s while one tenant floods"
    );
    let alone = load::run(&quiet, 8, duration, Some(QUIET_RATE), false).await;
    row("quiet tenant alone (baseline)", &alone);
    let mut worst: f64 = 0.0;
    for (what, attack) in &attacks {
        let (noisy, quieted) = tokio::join!(
            load::run(attack, 4, duration, None, false),
            load::run(&quiet, 8, duration, Some(QUIET_RATE), false),
        );
        println!("  while: {what}");
        row(
            "    noisy tenant (answers that were not 2xx = errors)",
            &noisy,
        );
        row("    quiet tenant", &quieted);
        worst = worst.max(quieted.p_ms(0.99));
    }
    verdict(
        &format!(
            "quiet tenant's worst p99 = {worst:.2} ms (alone {:.2} ms)",
            alone.p_ms(0.99)
        ),
        worst < 50.0,
        "target < 50 ms",
    );
    Ok(())
}
