//! `--suite postgres`: Keel on PostgreSQL beside Keel on SQLite and a `pgbench`
//! baseline of the same server's commit rate, in one run (issue 7):
//!
//! * `pgbench`: 64 clients, one single-row UPDATE per transaction — the most
//!   commits per second this PostgreSQL does on this machine;
//! * `GET /v1/next`, 64 connections, on SQLite and on PostgreSQL;
//! * publish → stored through the store worker, single records and batches of
//!   100, with 1, 2 and 4 worker replicas (each its own pool, as `keel serve
//!   --roles worker` processes would have) behind one api replica;
//! * the same with the bus on NATS JetStream (issue 8), when NATS is reachable;
//! * the bus alone (publish + consume + ack, 128 B messages) with 1, 2 and 4
//!   consumers, beside the SQLite bus and Keel's JetStream bus.
//!
//! Every server shares this process's two cores with the load generator.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use keel_server::app::Roles;
use keel_store::{
    bus::Bus,
    testing::{TestDatabase, TestNats},
    BackendSettings,
};

use crate::{
    bus_vs_nats,
    load::{self, Target},
    pipeline, row, servers,
};

pub struct Options<'a> {
    pub server_url: &'a str,
    pub data_dir: &'a Path,
    pub duration: Duration,
    pub bus_messages: usize,
    /// NATS with JetStream, for Keel's JetStream bus beside the PostgreSQL one.
    pub nats_url: &'a str,
}

async fn nats_reachable(url: &str) -> bool {
    async_nats::connect(url).await.is_ok()
}

pub async fn run(options: Options<'_>) -> anyhow::Result<()> {
    println!();
    println!("PostgreSQL mode (server {})", options.server_url);
    let pgbench = pgbench_commit_rate(options.server_url, options.duration).await;
    match &pgbench {
        Ok(tps) => println!(
            "  pgbench, 64 clients, 1-row UPDATE per commit (baseline) {tps:>9.0} commits/s"
        ),
        Err(e) => println!("  pgbench baseline unavailable: {e}"),
    }

    // GET /v1/next on each store.
    let sqlite = servers::start_keel(&options.data_dir.join("pg-mode-sqlite"), true).await?;
    let database = TestDatabase::create(options.server_url).await;
    let postgres = servers::start_keel_on(&database.url, true, Roles::ALL).await?;
    println!();
    println!("GET /v1/next, 64 connections");
    let mut rates = Vec::new();
    for (label, keel) in [
        ("keel on SQLite", &sqlite),
        ("keel on PostgreSQL", &postgres),
    ] {
        let target = Target::get(keel.addr, "/v1/next", Some(&keel.operator_key));
        load::run(&target, 8, Duration::from_millis(500), None, false).await;
        let outcome = load::run(&target, 64, options.duration, None, false).await;
        row(label, &outcome);
        rates.push(outcome.rate());
    }
    if let Ok(tps) = pgbench {
        println!(
            "    PostgreSQL: {:.0}% of pgbench's commit rate",
            rates[1] / tps * 100.0
        );
    }

    // Publish → stored with 1, 2, 4 worker replicas behind one api replica, with
    // the bus in PostgreSQL and (when NATS is reachable) on JetStream.
    let record = r#"{"name":"Ana","email":"ana@example.com","plan":"pro","n":1}"#;
    let batch = format!("{{\"records\":[{}]}}", vec![record; 100].join(","));
    let mut buses = vec![("embedded (PostgreSQL tables)", None)];
    if nats_reachable(options.nats_url).await {
        buses.push(("NATS JetStream", Some(options.nats_url)));
    }
    for (bus_label, nats_url) in buses {
        println!();
        println!(
            "Publish → stored on PostgreSQL, bus {bus_label}: one api replica, N worker replicas"
        );
        let mut summary = Vec::new();
        for replicas in [1usize, 2, 4] {
            let database = TestDatabase::create(options.server_url).await;
            let nats = nats_url.map(|url| TestNats::on(url, ""));
            let bus = nats
                .as_ref()
                .map_or("embedded".to_owned(), |n| n.url.clone());
            let api = servers::start_keel_on_bus(&database.url, &bus, true, api_only()?).await?;
            let mut workers = Vec::new();
            for _ in 0..replicas {
                workers.push(servers::start_worker_replica(&database.url, &bus, 8).await?);
            }
            let single = pipeline::publish_until_stored_quietly(
                api.addr,
                &api.operator_key,
                options.duration,
                "single",
                record,
                1,
                64,
            )
            .await?;
            let batched = pipeline::publish_until_stored_quietly(
                api.addr,
                &api.operator_key,
                options.duration,
                "batch",
                &batch,
                100,
                16,
            )
            .await?;
            for worker in workers {
                worker.shutdown(Duration::from_secs(5)).await?;
            }
            summary.push((replicas, single, batched));
        }
        println!(
            "  worker replicas   single: calls/s  stored/s     batches of 100: calls/s  stored/s"
        );
        for (replicas, single, batched) in &summary {
            println!(
                "  {replicas:>15}   {:>14.0}  {:>8.0}     {:>22.0}  {:>8.0}",
                single.calls_per_s, single.stored_per_s, batched.calls_per_s, batched.stored_per_s
            );
        }
    }

    // The bus alone.
    println!();
    let messages = options.bus_messages;
    println!("Bus alone: publish + consume + ack, {messages} messages of 128 bytes");
    let on_sqlite = bus_vs_nats::embedded(options.data_dir, messages).await?;
    println!("  SQLite bus, 1 consumer                      {on_sqlite:>9.0} msg/s");
    for consumers in [1usize, 2, 4] {
        let database = TestDatabase::create(options.server_url).await;
        let mut settings = BackendSettings::new(database.url.clone());
        settings.quotas.fanout_bytes_per_second = 1 << 40;
        let bus: Arc<dyn Bus> = keel_store::connect(&settings).await?.bus;
        let rate = bus_vs_nats::publish_and_consume(bus, messages, consumers).await?;
        println!("  PostgreSQL bus, {consumers} consumer(s)                {rate:>9.0} msg/s");
    }
    if nats_reachable(options.nats_url).await {
        for consumers in [1usize, 2, 4] {
            let nats = TestNats::on(options.nats_url, "");
            let mut settings = BackendSettings::new(format!(
                "sqlite://{}",
                options
                    .data_dir
                    .join(format!("nats-bus-{consumers}.db"))
                    .display()
            ));
            settings.bus = nats.url.clone();
            settings.quotas.fanout_bytes_per_second = 1 << 40;
            let bus: Arc<dyn Bus> = keel_store::connect(&settings).await?.bus;
            let rate = bus_vs_nats::publish_and_consume(bus, messages, consumers).await?;
            println!("  Keel's JetStream bus, {consumers} consumer(s)          {rate:>9.0} msg/s");
        }
    }
    println!("  (no SPEC target for PostgreSQL: reported beside SQLite and pgbench)");
    Ok(())
}

fn api_only() -> anyhow::Result<Roles> {
    Roles::parse("api").map_err(anyhow::Error::msg)
}

/// Commits per second `pgbench` reaches on a one-row UPDATE per transaction, 64
/// clients, on a scratch database of its own.
async fn pgbench_commit_rate(server_url: &str, duration: Duration) -> anyhow::Result<f64> {
    let database = TestDatabase::create(server_url).await;
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(
        script.path(),
        "\\set id random(1, 10000)\nUPDATE bench SET v = v + 1 WHERE id = :id;\n",
    )?;
    let psql = Command::new("psql")
        .arg(&database.url)
        .args([
            "-q",
            "-c",
            "CREATE TABLE bench (id int PRIMARY KEY, v bigint NOT NULL DEFAULT 0); INSERT INTO bench (id) SELECT generate_series(1, 10000);",
        ])
        .output()?;
    anyhow::ensure!(
        psql.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let output = tokio::task::spawn_blocking({
        let (url, script) = (database.url.clone(), script.path().to_owned());
        move || {
            Command::new("pgbench")
                .args(["-n", "-c", "64", "-j", "2", "-T"])
                .arg(duration.as_secs().max(1).to_string())
                .arg("-f")
                .arg(script)
                .arg(url)
                .output()
        }
    })
    .await??;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no tps in pgbench's output: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}
