//! Console render time (SPEC §12: a page in ≤ 50 ms with 1,000,000 rows behind
//! it), beside the JSON API route that serves the same data, in one run: the
//! collection page over a million records, walked page by page by its cursors
//! (each page seen for the first time, so none is answered from the read cache),
//! and the queue pages (statistics and dead letters) over a million queued
//! messages. `--suite console`.

use std::{path::Path, time::Instant};

use keel_core::bus::{BusName, DeliveryPolicy};
use keel_store::{
    bus::{FilterScope, OutgoingMessage, Subscription},
    TenantId,
};
use serde_json::{json, Map, Value};

use crate::servers;

const ROWS: u64 = 1_000_000;
const BATCH: u64 = 10_000;
const RUNS: usize = 200;

/// p50 and p99 in ms.
fn spread(mut took: Vec<f64>) -> (f64, f64) {
    took.sort_by(f64::total_cmp);
    (
        crate::percentile(&took, 0.5),
        crate::percentile(&took, 0.99),
    )
}

/// p50 and p99 in ms of `RUNS` GETs of `url`, each checked to answer 200.
async fn latencies(
    client: &reqwest::Client,
    url: &str,
    auth: (&str, &str),
) -> anyhow::Result<(f64, f64)> {
    let (spread, _) = walk(client, url.to_owned(), auth, |_| Some(url.to_owned())).await?;
    Ok(spread)
}

/// `RUNS` successive pages from `first`, each GET timed to its last byte, the
/// next URL taken from the answer by `next`; returns p50/p99 and the URL after
/// the last page.
async fn walk(
    client: &reqwest::Client,
    first: String,
    auth: (&str, &str),
    next: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<((f64, f64), String)> {
    let mut url = first;
    let mut took = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let response = client.get(&url).header(auth.0, auth.1).send().await?;
        anyhow::ensure!(response.status() == 200, "{url}: {}", response.status());
        let body = response.text().await?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        url = next(&body).ok_or_else(|| anyhow::anyhow!("{url}: no next page"))?;
    }
    Ok((spread(took), url))
}

/// The console page's `rel="next"` link.
fn next_link(base: &str, html: &str) -> Option<String> {
    let marker = "rel=\"next\" href=\"";
    let at = html.find(marker)? + marker.len();
    let end = html[at..].find('"')?;
    Some(format!(
        "{base}{}",
        html[at..at + end].replace("&amp;", "&")
    ))
}

/// A console session for `key`, as a browser gets one: the cookie header.
async fn session(client: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let form = client.get(format!("{base}/console/sign-in")).send().await?;
    let nonce_cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("keel_sign_in="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no sign-in nonce"))?;
    let nonce = nonce_cookie.trim_start_matches("keel_sign_in=").to_owned();
    let signed = client
        .post(format!("{base}/console/sign-in"))
        .header("cookie", &nonce_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("nonce={nonce}&next=%2Fconsole&key={key}"))
        .send()
        .await?;
    signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("keel_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("sign-in answered {}", signed.status()))
}

fn row(what: &str, (p50, p99): (f64, f64)) {
    println!("  {what:<52} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms");
}

/// On the embedded store, then on PostgreSQL at `postgres_url` (a scratch
/// database, dropped after) when it answers.
pub async fn run(data_dir: &Path, postgres_url: &str) -> anyhow::Result<()> {
    let dir = data_dir.join("console");
    let _ = std::fs::remove_dir_all(&dir);
    let sqlite = servers::start_keel(&dir, true).await?;
    measure("SQLite", &sqlite, None).await?;
    drop(sqlite);
    if server_answers(postgres_url).await {
        let database = keel_store::testing::TestDatabase::create(postgres_url).await;
        let postgres =
            servers::start_keel_on(&database.url, true, keel_server::app::Roles::ALL).await?;
        measure("PostgreSQL", &postgres, Some(&database.url)).await?;
    } else {
        println!("\nConsole pages on PostgreSQL: skipped, {postgres_url} does not answer");
    }
    Ok(())
}

/// Whether the server of `url` (`postgres://[user@]host:port/…`) accepts a connection.
async fn server_answers(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or_default();
    let host_port = host_port.rsplit('@').next().unwrap_or_default();
    tokio::net::TcpStream::connect(host_port).await.is_ok()
}

/// `analyze`: the PostgreSQL database to `ANALYZE` after filling it, as
/// autovacuum does within a minute of a bulk load; until then the planner
/// thinks the tables hold a few rows and keyset pages sort a million.
async fn measure(
    backend: &str,
    keel: &servers::KeelUnderTest,
    analyze: Option<&str>,
) -> anyhow::Result<()> {
    let base = format!("http://{}", keel.addr);
    let tenant = TenantId::default_tenant();
    println!("\nConsole pages over {ROWS} rows on {backend}, beside the JSON API route with the same data ({RUNS} sequential GETs each)");

    let started = Instant::now();
    for batch in 0..ROWS / BATCH {
        let records = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                (
                    format!("r{n:08}"),
                    json!({"n": n, "customer": format!("c{}", n % 977), "total": n % 500}),
                )
            })
            .collect();
        keel.store.upsert_records(&tenant, "bench", records).await?;
    }
    let topic = BusName::parse("bench", "/topic").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let name = BusName::parse("work", "/name").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    keel.bus
        .put_subscription(
            &tenant,
            Subscription {
                topic: topic.clone(),
                name,
                filter: None,
                filter_scope: FilterScope::Attributes,
                target: json!({"type": "queue"}),
                delivery: DeliveryPolicy::default(),
                created_at: jiff::Timestamp::now(),
            },
        )
        .await?;
    for batch in 0..ROWS / BATCH {
        let messages = (0..BATCH)
            .map(|i| OutgoingMessage {
                body: json!({"order": batch * BATCH + i}),
                attributes: Map::new(),
                dedup_id: None,
            })
            .collect();
        keel.bus.publish(&tenant, &topic, messages).await?;
    }
    if let Some(url) = analyze {
        let done = std::process::Command::new("psql")
            .args([url, "-qc", "ANALYZE"])
            .status()?;
        anyhow::ensure!(done.success(), "psql ANALYZE: {done}");
    }
    println!("  (filled in {:.1} s)", started.elapsed().as_secs_f64());

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = session(&client, &base, &keel.operator_key).await?;
    let bearer = format!("Bearer {}", keel.operator_key);
    let as_page = ("cookie", cookie.as_str());
    let as_api = ("authorization", bearer.as_str());

    // The console walks the first RUNS pages, the API the RUNS after them: no
    // page is in the read cache when it is asked for.
    let (page_walk, after) = walk(
        &client,
        format!("{base}/console/collections/bench"),
        as_page,
        |html| next_link(&base, html),
    )
    .await?;
    let cursor = after
        .split_once("cursor=")
        .map(|(_, c)| c.to_owned())
        .ok_or_else(|| anyhow::anyhow!("{after}: no cursor"))?;
    let api = format!("{base}/v1/collections/bench/records?limit=50");
    let (api_walk, _) = walk(&client, format!("{api}&cursor={cursor}"), as_api, |json| {
        let page: Value = serde_json::from_str(json).ok()?;
        Some(format!("{api}&cursor={}", page["next_cursor"].as_str()?))
    })
    .await?;
    let queue_page = latencies(
        &client,
        &format!("{base}/console/queues/bench/work"),
        as_page,
    )
    .await?;
    let queue_api = latencies(&client, &format!("{base}/v1/queues/bench/work"), as_api).await?;
    let queues_page = latencies(&client, &format!("{base}/console/queues"), as_page).await?;
    row(
        &format!("GET /v1/collections/bench/records, {RUNS} pages (baseline)"),
        api_walk,
    );
    row(
        &format!("GET /console/collections/bench, {RUNS} pages"),
        page_walk,
    );
    row(
        "GET /v1/queues/bench/work (baseline: statistics)",
        queue_api,
    );
    row(
        "GET /console/queues/bench/work (statistics, dead letters)",
        queue_page,
    );
    row(
        "GET /console/queues (every queue's statistics)",
        queues_page,
    );
    let worst = [page_walk, queue_page, queues_page]
        .iter()
        .map(|(p50, _)| *p50)
        .fold(0.0, f64::max);
    crate::verdict(
        &format!("slowest console page p50 {worst:.2} ms"),
        worst <= 50.0,
        "target ≤ 50 ms with 1,000,000 rows behind it",
    );
    Ok(())
}
