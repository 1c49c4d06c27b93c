//! `cargo run --release -p keel-bench` — SPEC §10's HTTP targets, each printed
//! beside its baseline measured in the same run:
//!
//! * `GET /hello/{u}` throughput vs a bare axum handler returning the same JSON
//!   (target ≥ 70%), and its p99 at half of Keel's measured maximum (≤ 5 ms);
//! * `GET /v1/next` durable increments with 64 clients (≥ 20,000/s, no duplicates)
//!   vs the bare handler counting in memory.
//!
//! * `keel serve` cold start to ready (≤ 100 ms) and idle RSS (≤ 30 MB), when the
//!   release `keel` binary has been built.
//! * a 1 GiB object uploaded and downloaded through the release binary, beside a
//!   plain file on the same disk, with the server's peak RSS (`--suite objects`).
//! * OTLP protobuf log ingest in batches of 1,000 beside decoding alone, full-text
//!   queries over a million stored lines beside the plain listing, and bytes on
//!   disk per million lines beside plain NDJSON (`--suite telemetry`).
//! * 10,000 HTTP monitors at 30 s checked by the release binary: CPU, peak RSS
//!   and start lateness beside the idle server and a bare timer-and-reqwest
//!   prober (`--suite monitors`).
//! * console pages over a million records and a million queued messages beside
//!   the JSON routes with the same data (`--suite console`).
//!
//! Servers and load generator share this process and its two cores, as a load
//! generator "on the same machine" must; each server runs alone while measured.

mod bus_vs_nats;
mod console;
mod load;
mod monitors;
mod noisy;
mod objects;
mod pipeline;
mod postgres;
mod servers;
mod soak;
mod startup;
mod telemetry;

/// The same allocator the `keel` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{collections::HashSet, time::Duration};

use clap::Parser;
use load::Target;

#[derive(Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent connections for the throughput runs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Where Keel's database goes (must be a real disk for fsync to mean anything).
    #[arg(long, default_value = "target/bench-data")]
    data_dir: std::path::PathBuf,
    /// The `keel` binary whose start-up and idle memory are measured (skipped if
    /// it does not exist; build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/keel")]
    keel_binary: std::path::PathBuf,
    /// Which measurements: http, pipeline, bus, noisy, soak, startup, postgres,
    /// objects, telemetry, monitors, console (comma-separated), or all.
    #[arg(long, default_value = "all")]
    suite: String,
    /// NATS server for the JetStream comparison.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// PostgreSQL server for `--suite postgres` (a scratch database per run is
    /// created on it and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Messages per bus comparison run.
    #[arg(long, default_value_t = 200_000)]
    bus_messages: usize,
    /// Lines stored for the query measurements of suite `telemetry`.
    #[arg(long, default_value_t = 1_000_000)]
    telemetry_lines: u64,
    /// Size of the object of suite `objects`, in MiB.
    #[arg(long, default_value_t = 1024)]
    object_mib: u64,
    /// kill -9 cycles of the crash soak (suite `soak`, needs the release binary).
    #[arg(long, default_value_t = 20)]
    kill_cycles: usize,
    /// Monitors of suite `monitors`.
    #[arg(long, default_value_t = 10_000)]
    monitors: usize,
    /// Their interval, in seconds.
    #[arg(long, default_value_t = 30)]
    monitor_interval_s: u64,
    /// Seconds suite `monitors` measures for, after one interval of warm-up.
    #[arg(long, default_value_t = 60)]
    monitor_seconds: u64,
    /// Internal: run as suite `monitors`' baseline prober against this URL.
    #[arg(long, hide = true)]
    bare_prober: Option<String>,
}

impl Args {
    fn wants(&self, suite: &str) -> bool {
        self.suite == "all" || self.suite.split(',').any(|s| s == suite)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(base) = &args.bare_prober {
        return runtime.block_on(monitors::bare_prober(
            base,
            args.monitors,
            Duration::from_secs(args.monitor_interval_s),
        ));
    }
    // The in-process suites share one Keel; the others run the release binary.
    let in_process = [
        "http",
        "pipeline",
        "noisy",
        "postgres",
        "telemetry",
        "bus",
        "console",
    ];
    if in_process.iter().any(|s| args.wants(s)) {
        runtime.block_on(run(&args))?;
    }
    if args.wants("monitors") {
        runtime.block_on(monitors::run(monitors::Options {
            binary: &args.keel_binary,
            data_dir: &args.data_dir,
            monitors: args.monitors,
            interval: Duration::from_secs(args.monitor_interval_s),
            window: Duration::from_secs(args.monitor_seconds),
        }))?;
    }
    if args.wants("objects") {
        runtime.block_on(objects::run(
            &args.keel_binary,
            &args.data_dir,
            args.object_mib,
        ))?;
    }
    if args.wants("soak") {
        runtime.block_on(soak::run(
            &args.keel_binary,
            &args.data_dir,
            args.kill_cycles,
        ))?;
    }
    if !args.wants("startup") {
        return Ok(());
    }
    if args.keel_binary.exists() {
        startup::run(&args.keel_binary, &args.data_dir)?;
    } else {
        println!(
            "\n(start-up and idle RSS skipped: {} not built)",
            args.keel_binary.display()
        );
    }
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let _ = std::fs::remove_dir_all(&args.data_dir);
    std::fs::create_dir_all(&args.data_dir)?;
    println!(
        "keel-bench: {} cores, {}s per run, {} connections, data in {}",
        num_cores(),
        args.seconds,
        args.connections,
        args.data_dir.display()
    );

    let keel = servers::start_keel(&args.data_dir, true).await?;
    let seed = r#"{"dateOfBirth":"1990-01-01"}"#.to_owned();
    load::one(&Target::put(keel.addr, "/hello/Ana", None, seed)).await?;
    let today = jiff::Zoned::now().date();
    let message = keel_core::greeter::greeting(
        &keel_core::greeter::Username::parse("Ana").expect("valid"),
        keel_core::greeter::DateOfBirth::from_stored(jiff::civil::date(1990, 1, 1)),
        today,
    );
    let bare = servers::start_bare_axum(message).await?;

    if args.wants("http") {
        http_suite(args, &keel, bare).await?;
    }
    if args.wants("pipeline") {
        pipeline::run(keel.addr, bare, &keel.operator_key, duration).await?;
    }
    if args.wants("noisy") {
        // Its own Keel, with every limit at its default.
        let defaults = servers::start_keel(&args.data_dir.join("noisy"), false).await?;
        noisy::run(defaults.addr, duration).await?;
    }
    if args.wants("postgres") {
        postgres::run(postgres::Options {
            server_url: &args.postgres_url,
            data_dir: &args.data_dir,
            duration,
            bus_messages: args.bus_messages / 4,
            nats_url: &args.nats_url,
        })
        .await?;
    }
    if args.wants("console") {
        console::run(&args.data_dir, &args.postgres_url).await?;
    }
    if args.wants("telemetry") {
        telemetry::run(&args.data_dir, duration, args.telemetry_lines).await?;
    }
    if args.wants("bus") {
        println!();
        println!(
            "Bus alone: publish + consume + ack, {} messages of 128 bytes, 100 in flight",
            args.bus_messages
        );
        let nats = bus_vs_nats::jetstream(&args.nats_url, args.bus_messages).await;
        let ours = bus_vs_nats::embedded(&args.data_dir, args.bus_messages).await?;
        match nats {
            Ok(nats) => {
                println!("  NATS JetStream, file storage (baseline)      {nats:>9.0} msg/s");
                println!("  keel embedded bus (SQLite, fsync per commit) {ours:>9.0} msg/s");
                verdict(
                    &format!("keel/JetStream = {:.2}×", ours / nats),
                    ours >= nats,
                    "target ≥ 1.0×",
                );
            }
            Err(e) => println!(
                "  keel embedded bus {ours:.0} msg/s; JetStream at {} unavailable: {e}",
                args.nats_url
            ),
        }
    }
    Ok(())
}

async fn http_suite(
    args: &Args,
    keel: &servers::KeelUnderTest,
    bare: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let keel_hello = Target::get(keel.addr, "/hello/Ana", None);
    let bare_hello = Target::get(bare, "/hello/Ana", None);
    warm_up(&keel_hello).await;
    warm_up(&bare_hello).await;
    let base = load::run(&bare_hello, args.connections, duration, None, false).await;
    let ours = load::run(&keel_hello, args.connections, duration, None, false).await;
    let ratio = ours.rate() / base.rate() * 100.0;
    println!();
    println!("GET /hello/{{u}}, {} connections", args.connections);
    row("bare axum (baseline)", &base);
    row("keel", &ours);
    verdict(
        &format!("keel/bare = {ratio:.1}%"),
        ratio >= 70.0,
        "target ≥ 70%",
    );

    let half = ours.rate() / 2.0;
    let paced = load::run(&keel_hello, args.connections, duration, Some(half), false).await;
    let paced_base = load::run(&bare_hello, args.connections, duration, Some(half), false).await;
    println!();
    println!("GET /hello/{{u}} paced at half of keel's maximum ({half:.0} req/s)");
    row("bare axum (baseline)", &paced_base);
    row("keel", &paced);
    verdict(
        &format!("keel p99 = {:.2} ms", paced.p_ms(0.99)),
        paced.p_ms(0.99) <= 5.0,
        "target ≤ 5 ms",
    );

    let keel_next = Target::get(keel.addr, "/v1/next", Some(&keel.operator_key));
    let bare_next = Target::get(bare, "/v1/next", None);
    let commits_before = keel
        .write_stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let writes_before = keel
        .write_stats
        .writes
        .load(std::sync::atomic::Ordering::Relaxed);
    let next_base = load::run(&bare_next, 64, duration, None, false).await;
    let next = load::run(&keel_next, 64, duration, None, true).await;
    let commits = keel
        .write_stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed)
        - commits_before;
    let writes = keel
        .write_stats
        .writes
        .load(std::sync::atomic::Ordering::Relaxed)
        - writes_before;
    let duplicates = count_duplicates(&next.bodies);
    println!();
    println!("GET /v1/next, 64 connections");
    row("bare axum, in-memory counter (baseline)", &next_base);
    row("keel, durable (fsync per commit)", &next);
    println!("    group commit: {commits} commits for {writes} writes (mean batch {:.1}, {:.0} fsyncs/s)", writes as f64 / commits.max(1) as f64, commits as f64 / next.elapsed.as_secs_f64());
    verdict(
        &format!(
            "keel = {:.0} increments/s, {duplicates} duplicates",
            next.rate()
        ),
        next.rate() >= 20_000.0 && duplicates == 0,
        "target ≥ 20,000/s, 0 duplicates",
    );
    Ok(())
}

pub(crate) fn row(label: &str, o: &load::Outcome) {
    println!(
        "  {label:<42} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}{}",
        o.rate(),
        o.p_ms(0.5),
        o.p_ms(0.99),
        o.errors,
        if o.late > 0 {
            format!("   late sends {}", o.late)
        } else {
            String::new()
        }
    );
}

pub(crate) fn verdict(what: &str, met: bool, target: &str) {
    println!(
        "  => {what} ({target}): {}",
        if met { "MET" } else { "MISSED" }
    );
}

async fn warm_up(target: &Target) {
    load::run(target, 8, Duration::from_millis(500), None, false).await;
}

fn count_duplicates(bodies: &[bytes::Bytes]) -> usize {
    let mut seen = HashSet::with_capacity(bodies.len());
    bodies
        .iter()
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .filter_map(|v| v["data"]["attributes"]["value"].as_i64())
        .filter(|v| !seen.insert(*v))
        .count()
}

fn num_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The `p` quantile (0–1) of `sorted`, by nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
